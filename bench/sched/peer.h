/* moirai-bench, suite "sched": the C interface every peer module exports.
 *
 * Each peer (OpenMP with libgomp, OpenMP with LLVM's libomp, oneTBB,
 * Rayon) is built as its own shared module and loaded with
 * dlopen(RTLD_LOCAL) by bench/sched/bench_sched.c, which looks these
 * names up with dlsym; a module that does not export one is not a peer of
 * that case. The OpenMP runtimes both define the GOMP_* and omp_* symbols,
 * so they could not share one link; loaded locally, each module binds to
 * its own runtime. The Rust peer repeats these signatures in
 * bench/sched/rayon/src/lib.rs.
 *
 * Every function creates its runtime's pool of `threads` threads (or
 * prepares it) before its clock starts, measures only the workload on
 * CLOCK_MONOTONIC, and takes its pool down (so that no thread of it keeps
 * spinning into the next implementation's round) after the clock stops.
 * It returns the metric, or a negative value if the pool cannot be set
 * up. Results are handed back for the caller to check. None is
 * thread-safe: the bench calls them from one thread. */
#ifndef MOIRAI_BENCH_SCHED_PEER_H
#define MOIRAI_BENCH_SCHED_PEER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* fib(n) with every call a fork-join and no cutoff; `*result` gets the
 * value. Returns seconds. */
double moirai_peer_fib(int threads, int n, uint64_t *result);

/* `iters` parallel loops over 2 indices with an empty body, called one
 * after the other from the calling thread. Returns ns per loop. */
double moirai_peer_for_empty(int threads, uint64_t iters);

/* Sums data[0 .. n) in parallel into `*sum`. Returns seconds. */
double moirai_peer_reduce(int threads, const int32_t *data, size_t n, int64_t *sum);

/* Submits `tasks` empty tasks from the calling thread (not one of the
 * pool's) and waits until all have run. Returns seconds. */
double moirai_peer_spawn(int threads, uint64_t tasks);

/* Searches the skewed tree of tree.h with `nodes` nodes from the calling
 * thread, a fork-join at every node with two non-empty subtrees, into
 * `*sum`. Returns seconds. */
double moirai_peer_tree(int threads, uint64_t nodes, uint64_t *sum);

#ifdef __cplusplus
}
#endif

#endif
