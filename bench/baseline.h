/* moirai-bench --baseline / --write-baseline: regression detection against
 * ratios stored in the repository (bench/baselines/<suite>.txt).
 *
 * What is stored is the ratio Moirai / peer of each case, never a time:
 * ratios measured in one run cancel most of what differs between machines
 * (clock speed, load at the moment), times do not. A stored entry is the
 * band [low, high] of the ratios seen over the runs that wrote it, so a
 * case whose ratio swings with the machine's load (contended locks on two
 * shared CPUs) carries a wide band and a steady one a narrow band.
 *
 * A file holds one entry per line, "#" starting a comment:
 *   <case> <impl> <low> <high> <runs>
 * e.g. "handle_complete_join pthread 0.82 1.31 3". Anything else is a
 * malformed line, reported with its file and line number.
 *
 * The verdict on a measured ratio r against an entry, with worse = r / high:
 *   worse <= warn factor              fine, nothing printed;
 *   warn < worse <= fail factor       reported as a possible regression;
 *   worse > fail factor               the runner measures the case twice
 *                                     more; only if the median of the three
 *                                     ratios is still beyond the fail
 *                                     factor is it a regression, and the
 *                                     run's exit status says so.
 * See docs/benchmarks.md for the factors and why. */
#ifndef MOIRAI_BENCH_BASELINE_H
#define MOIRAI_BENCH_BASELINE_H

#include <stdbool.h>
#include <stddef.h>

#include "bench.h"

/* Reported, but never a failure: within what noise does on a quiet run. */
#define BASELINE_WARN_FACTOR 1.5
/* A failure when the median of three measurements is this much worse than
 * the worst ratio the baseline ever saw. */
#define BASELINE_FAIL_FACTOR 3.0

typedef enum baseline_verdict {
    BASELINE_FINE,    /* within the warn factor, or no entry to compare with */
    BASELINE_WARN,    /* beyond the warn factor */
    BASELINE_SUSPECT, /* beyond the fail factor: measure again */
} baseline_verdict_t;

/* Reads the baseline files of every suite in `suites` (names, `count` of
 * them, repeats allowed) from `dir`. A suite without a file has no
 * entries. Returns 0, or -1 with a message on stderr (malformed file, out
 * of memory, a file that exists but cannot be read). */
int baseline_load(const char *dir, const char *const *suites, size_t count);

/* The verdict on `ratio` (Moirai / `impl`) of case `c`; sets `*worse` to
 * ratio / high (0 when there is no entry). */
baseline_verdict_t baseline_judge(const bench_case_t *c, const char *impl, double ratio,
                                  double *worse);

/* Widens (or adds) the entry of case `c` and `impl` by `ratio`, for
 * baseline_write(). Returns 0, or -1 when out of memory. */
int baseline_update(const bench_case_t *c, const char *impl, double ratio);

/* Writes the file of every suite that baseline_update() touched to `dir`,
 * keeping the entries loaded for cases this run did not measure. Returns 0,
 * or -1 with a message on stderr. */
int baseline_write(const char *dir);

/* Frees everything loaded or updated. */
void baseline_free(void);

#endif
