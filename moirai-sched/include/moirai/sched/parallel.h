/* Parallel algorithms over index ranges, built on moirai_join().
 *
 * The range [begin, end) is split in halves recursively, each split a
 * join, until a piece is no longer than the grain; each piece is handed to
 * the body in one call. With grain 0 the grain is automatic: the range is
 * cut into about 8 pieces per worker (at least one index each), enough
 * for stealing to balance uneven work without paying a join per index.
 *
 * Every function blocks until all the work is done and may be called from
 * a worker (which helps) or from any other thread, which takes part in
 * the work as moirai_join()'s outside caller does (so `workers = 1` plus
 * the caller is two threads), unless the scheduler was created with
 * callers_wait (then only its workers run it). `sched` NULL means the
 * scheduler of the calling worker; from any other thread a NULL `sched`
 * runs everything on the caller. Memory ordering: as moirai_join(). */
#ifndef MOIRAI_SCHED_PARALLEL_H
#define MOIRAI_SCHED_PARALLEL_H

#include <stddef.h>

#include <moirai/sched/export.h>
#include <moirai/sched/join.h>
#include <moirai/sched/sched.h>

/* Processes indices [begin, end). */
typedef void (*moirai_for_fn)(void *arg, size_t begin, size_t end);

/* How parallel_reduce folds. An accumulator is `acc_size` bytes that the
 * library places on its own stack frames (at most MOIRAI_REDUCE_ACC_MAX). */
typedef struct moirai_reduce_desc {
    size_t acc_size;                        /* accumulator bytes, 1 to MOIRAI_REDUCE_ACC_MAX */
    void (*identity)(void *arg, void *acc); /* acc = neutral value */
    void (*chunk)(void *arg, size_t begin, size_t end, void *acc); /* fold [begin, end) into acc */
    void (*combine)(void *arg, void *acc, const void *right);      /* acc = acc (+) right */
} moirai_reduce_desc_t;

/* The largest accumulator moirai_parallel_reduce() accepts, in bytes.
 * moirai_parallel_reduce_fallible() (moirai/sched/parallel_fallible.h)
 * takes accumulators of any size, and callbacks that can fail. */
#define MOIRAI_REDUCE_ACC_MAX 256

#ifdef __cplusplus
extern "C" {
#endif

/* Calls `body(arg, b, e)` on disjoint pieces covering [begin, end), in
 * parallel. Returns 0 (also for an empty range, with no call), -EINVAL
 * (NULL body, begin > end) or -ESHUTDOWN; on error body has not run. */
MOIRAI_SCHED_API int moirai_parallel_for(moirai_sched_t *sched, size_t begin, size_t end,
                                         size_t grain, moirai_for_fn body, void *arg);

/* Folds [begin, end) into `result` (acc_size bytes): each piece starts from
 * identity, is folded by chunk, and pieces are combined left to right in
 * index order, so an associative `combine` gives the same result as a
 * sequential fold, whatever the schedule. An empty range gives identity.
 * Returns 0, -EINVAL (NULL desc, result or callback, acc_size 0 or above
 * MOIRAI_REDUCE_ACC_MAX, begin > end) or -ESHUTDOWN. */
MOIRAI_SCHED_API int moirai_parallel_reduce(moirai_sched_t *sched, size_t begin, size_t end,
                                            size_t grain, const moirai_reduce_desc_t *desc,
                                            void *arg, void *result);

/* Calls fns[i](args[i]) for every i < n, in parallel, and returns when all
 * have returned. `args` may be NULL (every argument NULL). Returns 0,
 * -EINVAL (NULL fns, or a NULL entry: then nothing has run) or -ESHUTDOWN. */
MOIRAI_SCHED_API int moirai_parallel_invoke(moirai_sched_t *sched, const moirai_join_fn *fns,
                                            void *const *args, size_t n);

#ifdef __cplusplus
}
#endif

#endif
