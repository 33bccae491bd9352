/* moirai-bench: the contract between the runner and the benchmark suites.
 *
 * A case measures one operation for Moirai and for each named peer. The
 * runner calls every implementation of a case in turn, round after round
 * (A B C A B C ...), so machine noise hits all of them alike, and reports
 * the median of the rounds and the ratio Moirai / peer. Every metric is
 * "lower is better".
 *
 * Iterations: for "ns_per_op" cases the runner first times a short probe
 * (iters / 64) of every implementation and lowers `iters` (never raises
 * it) so that one round of the slowest implementation takes about a fixed
 * budget (1 s, 0.2 s with --quick); all implementations then run the same
 * count; if the warm-up round then shows rounds would still overrun the
 * budget by half, the count is lowered again. So `run` must accept any
 * count from 1 up, and the whole run stays bounded on a slow or noisy
 * machine. "seconds" cases run as registered.
 *
 * An implementation's `run` performs `iters` operations (or, for cases
 * whose metric is "seconds", one whole workload scaled by `iters`) and
 * returns the metric's value for that round: nanoseconds per operation, or
 * seconds. It measures only the operation, not its set-up (thread
 * creation, allocation of the test data), and must leave no threads or
 * memory behind. If a round cannot run (a thread cannot be created, an
 * allocation fails) or its work comes back wrong (a lost or wrong result),
 * `run` returns a negative value; the runner reports the implementation as
 * failed and exits non-zero rather than print a number for broken work.
 * A peer that was not built has `run` NULL and `missing` saying why; the
 * runner reports it and never invents a number. */
#ifndef MOIRAI_BENCH_H
#define MOIRAI_BENCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct bench_impl {
    const char *impl;              /* "moirai", "pthread", "ck", ... */
    double (*run)(uint64_t iters); /* NULL when the peer is missing */
    const char *missing;           /* why `run` is NULL, else NULL */
} bench_impl_t;

typedef struct bench_case {
    const char *suite;         /* "core", "sync", ... */
    const char *name;          /* "handle_complete_join", ... */
    const char *metric;        /* "ns_per_op" or "seconds" */
    uint64_t iters;            /* per round in a full run (at most) */
    uint64_t quick_iters;      /* per round with --quick (at most) */
    const bench_impl_t *impls; /* impls[0] is Moirai's */
    size_t impl_count;
} bench_case_t;

/* Each suite returns its cases (static storage) and their number. */
typedef const bench_case_t *(*bench_suite_fn)(size_t *count);

const bench_case_t *bench_core_cases(size_t *count);
const bench_case_t *bench_sync_locks_cases(size_t *count);
const bench_case_t *bench_sync_map_cases(size_t *count);
const bench_case_t *bench_sync_map_count_cases(size_t *count);
const bench_case_t *bench_sync_map_single_cases(size_t *count);
const bench_case_t *bench_sync_containers_cases(size_t *count);
const bench_case_t *bench_mem_cases(size_t *count);
const bench_case_t *bench_sched_cases(size_t *count);
const bench_case_t *bench_async_cases(size_t *count);
const bench_case_t *bench_async_io_cases(size_t *count);
const bench_case_t *bench_rt_cases(size_t *count);
const bench_case_t *bench_transport_cases(size_t *count);
const bench_case_t *bench_transport_mpi_cases(size_t *count);

/* The transport suite's two-process cases start their second process as
 * moirai-bench itself with this first argument (see bench/transport/proc.h);
 * main() hands such a run to bench_child_main() before anything else. */
#define BENCH_CHILD_FLAG "--transport-child"
int bench_child_main(int argc, char **argv);

/* Wall-clock nanoseconds (CLOCK_MONOTONIC), for implementations timing
 * their own measured section. */
uint64_t bench_now_ns(void);

#endif
