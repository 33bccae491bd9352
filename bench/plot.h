/* moirai-bench --plot: an SVG chart of the ratios Moirai / peer.
 *
 * The runner records every implementation's outcome as it reports it
 * (a median, a missing peer, a failed run); plot_write() then draws one
 * row per case and peer: the ratio of Moirai's median to the peer's on a
 * logarithmic axis, with the 1.0 line marked. Every metric is "lower is
 * better", so a ratio left of 1.0 means Moirai is faster and a ratio
 * right of it is a miss, drawn in red. Missing peers and failed runs get
 * a row saying so, never a bar. The SVG is written directly, with no
 * library. */
#ifndef MOIRAI_BENCH_PLOT_H
#define MOIRAI_BENCH_PLOT_H

#include <stdbool.h>

#include "bench.h"

/* What happened to one implementation of a case. */
typedef enum plot_outcome {
    PLOT_MEASURED, /* `value` is its median */
    PLOT_MISSING,  /* not built; `why` says why */
    PLOT_FAILED,   /* its run reported an error or a wrong result */
} plot_outcome_t;

/* Records one implementation's outcome (impl index 0 is Moirai's). Copies
 * what it keeps. Returns 0, or -1 when out of memory. */
int plot_record(const bench_case_t *c, size_t impl, plot_outcome_t outcome, double value,
                const char *why);

/* Writes the chart of everything recorded to `path`, with `subtitle`
 * (how the run was made) under the title. Returns 0, or -1 with a message
 * on stderr when the file cannot be written. */
int plot_write(const char *path, const char *subtitle);

#endif
