/* Parallel loops and reductions whose pieces can fail, that a cancel token
 * stops, and whose accumulator may be of any size.
 *
 * They split [begin, end) exactly as moirai_parallel_for() and
 * moirai_parallel_reduce() do (moirai/sched/parallel.h: recursive halving
 * with moirai_join(), grain 0 for about 8 pieces per worker, `sched` NULL
 * for the calling worker's scheduler or, on any other thread, everything
 * on the caller; called from outside the pool with a scheduler, the
 * caller takes part as moirai_join()'s does, so `workers = 1` plus the
 * caller is two threads unless the scheduler has callers_wait), with two
 * differences:
 *
 *   - Stopping. A piece's callback returns 0 to go on or a non-zero value
 *     (a negative errno by convention) to stop the loop. The first
 *     non-zero value recorded is the loop's result. From the moment it is
 *     recorded, no piece starts and no range is split any more: each
 *     piece and each split checks first. Pieces already running finish
 *     (nothing interrupts a callback), and the call returns once they
 *     have. A cancel token works the same way: a piece or split that finds
 *     it cancelled records -ECANCELED (unless an error was recorded
 *     first) and stops the loop. Which of two pieces failing at once is
 *     recorded first depends on the schedule; a loop without failures
 *     whose token is cancelled after every piece has started returns 0.
 *   - Accumulators of any size (moirai_parallel_reduce_fallible()): up to
 *     256 bytes, aligned no more than max_align_t, they live on the
 *     splitting frames' stacks, as in moirai_parallel_reduce(); others are
 *     allocated through core's allocation hook, one per split, just before
 *     the split (a failed allocation stops the loop with -ENOMEM, as a
 *     failing piece does), and freed once combined.
 *
 * The loop's first error is recorded with a seq_cst compare-and-swap and
 * each piece and split checks for it with a seq_cst load (a plain load on
 * x86-64) and, with a token, one acquire load of the token: so a check
 * that comes after the recording in that single total order sees it, and
 * its piece does not start.
 *
 * Memory ordering: as moirai_join(): everything the callbacks wrote
 * happens before the call returns, on success and on error. */
#ifndef MOIRAI_SCHED_PARALLEL_FALLIBLE_H
#define MOIRAI_SCHED_PARALLEL_FALLIBLE_H

#include <stddef.h>

#include <moirai/core/task.h>
#include <moirai/sched/export.h>
#include <moirai/sched/sched.h>

/* Processes indices [begin, end). Returns 0, or non-zero to stop the loop
 * with that value. */
typedef int (*moirai_for_fallible_fn)(void *arg, size_t begin, size_t end);

/* How moirai_parallel_reduce_fallible() folds. Each callback returns 0, or
 * non-zero to stop the reduction with that value. Every accumulator that
 * `identity` set up successfully is passed to `destroy` exactly once,
 * except the final one of a successful reduction, which moves into the
 * caller's `result` (copied bytewise: the caller owns what it holds). */
typedef struct moirai_reduce_fallible_desc {
    size_t acc_size;  /* accumulator bytes, 1 to MOIRAI_REDUCE_FALLIBLE_ACC_MAX */
    size_t acc_align; /* a power of two up to 4096; 0: that of max_align_t */
    /* acc = the neutral value (acc is uninitialised memory). On failure
     * acc is taken as never set up: destroy is not called on it. */
    int (*identity)(void *arg, void *acc);
    /* Folds [begin, end) into acc. On failure acc must still be fit for
     * destroy. */
    int (*chunk)(void *arg, size_t begin, size_t end, void *acc);
    /* acc = acc (+) right; `right` is destroyed afterwards, so combine may
     * move what it owns into acc (leaving right fit for destroy). On
     * failure both must still be fit for destroy. */
    int (*combine)(void *arg, void *acc, void *right);
    /* Releases what an accumulator owns; NULL: nothing to release. */
    void (*destroy)(void *arg, void *acc);
} moirai_reduce_fallible_desc_t;

/* The largest accumulator moirai_parallel_reduce_fallible() accepts (1 GiB). */
#define MOIRAI_REDUCE_FALLIBLE_ACC_MAX ((size_t)1 << 30)

#ifdef __cplusplus
extern "C" {
#endif

/* Calls `body(arg, b, e)` on disjoint pieces covering [begin, end), in
 * parallel, until one returns non-zero or `cancel` (may be NULL) is
 * cancelled; see the top of this file. Blocks until every piece that
 * started has returned; a worker caller helps meanwhile. Thread-safe.
 * Returns 0 (every piece ran and returned 0; also for an empty range,
 * with no call), the first non-zero value a piece returned, -ECANCELED
 * (the token was seen cancelled before some piece started), -EINVAL (NULL
 * body, begin > end; body has not run) or -ESHUTDOWN (called from outside
 * the pool once its destroy has begun; body has not run). */
MOIRAI_SCHED_API int moirai_parallel_for_fallible(moirai_sched_t *sched, size_t begin, size_t end,
                                                  size_t grain, moirai_for_fallible_fn body,
                                                  void *arg, const moirai_cancel_token_t *cancel);

/* Folds [begin, end) into `result` (acc_size bytes) as
 * moirai_parallel_reduce() does (pieces start from identity, are folded by
 * chunk and combined left to right in index order, so an associative
 * combine gives the sequential result; an empty range gives identity),
 * until a callback fails or `cancel` (may be NULL) is cancelled; see the
 * top of this file. Blocks until every piece that started has returned;
 * a worker caller helps meanwhile. Thread-safe. Returns 0 and writes
 * `result`; or, leaving `result` untouched and every accumulator
 * destroyed, the first non-zero value a callback returned, -ECANCELED,
 * -ENOMEM (an accumulator above 256 bytes could not be allocated),
 * -EINVAL (NULL desc, result, identity, chunk or combine, acc_size 0 or
 * above MOIRAI_REDUCE_FALLIBLE_ACC_MAX, acc_align not 0 and not a power of
 * two up to 4096, begin > end; nothing has run) or -ESHUTDOWN (as for
 * moirai_parallel_for_fallible()). */
MOIRAI_SCHED_API int moirai_parallel_reduce_fallible(moirai_sched_t *sched, size_t begin,
                                                     size_t end, size_t grain,
                                                     const moirai_reduce_fallible_desc_t *desc,
                                                     void *arg, const moirai_cancel_token_t *cancel,
                                                     void *result);

#ifdef __cplusplus
}
#endif

#endif
