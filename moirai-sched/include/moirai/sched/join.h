/* Fork-join: run two functions, possibly in parallel, and return when both
 * are done.
 *
 * On a worker, moirai_join() pushes a frame for `b` onto the worker's own
 * deque and runs `a`; the frame lives on the caller's stack, so a join
 * allocates nothing. If no thief took `b`, the caller pops it and runs it
 * itself; if one did, the caller runs other work (its own deque first,
 * then stealing) until `b` is done, so waiting never blocks a worker and
 * recursion of any depth cannot deadlock. The price of a join is a deque
 * push and pop. From any other thread, the caller takes part: it offers
 * the frame for `b` in one of the scheduler's external slots (waking an
 * idle worker as a spawn would), runs `a` itself, then takes `b` back and
 * runs it unless a worker took it meanwhile, in which case it waits for
 * that worker (a short spin, then it parks). Joins nested inside `a` or
 * `b` on that thread (with `sched` NULL or the same scheduler) work the
 * same way, so nested splits stay parallel. When every slot is in use,
 * the whole join is queued on the injector as one frame on the caller's
 * stack, and the caller waits until a worker has run it.
 *
 * Memory ordering: what the caller wrote before the join happens before
 * `a` and `b` run; everything `a` and `b` wrote happens before the join
 * returns. */
#ifndef MOIRAI_SCHED_JOIN_H
#define MOIRAI_SCHED_JOIN_H

#include <moirai/sched/export.h>
#include <moirai/sched/sched.h>

/* One half of a join, or one of parallel_invoke's functions. */
typedef void (*moirai_join_fn)(void *arg);

#ifdef __cplusplus
extern "C" {
#endif

/* Runs `a(arg_a)` and `b(arg_b)`, possibly in parallel, and returns when
 * both have returned. `sched` NULL means the scheduler of the calling
 * worker, or of the external join whose `a` or `b` the calling thread is
 * running; from any other thread, a NULL `sched` runs `a` then `b` on the
 * caller. Blocks (helping, on a worker). Thread-safe. Returns 0, or
 * -EINVAL (NULL a or b) or -ESHUTDOWN (destroy has begun, caller neither a
 * worker nor inside an external join accepted before); on error neither
 * function has run. */
MOIRAI_SCHED_API int moirai_join(moirai_sched_t *sched, moirai_join_fn a, void *arg_a,
                                 moirai_join_fn b, void *arg_b);

#ifdef __cplusplus
}
#endif

#endif
