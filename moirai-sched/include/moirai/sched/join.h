/* Fork-join: run two functions, possibly in parallel, and return when both
 * are done.
 *
 * On a worker, moirai_join() pushes a frame for `b` onto the worker's own
 * deque and runs `a`; the frame lives on the caller's stack, so a join
 * allocates nothing. If no thief took `b`, the caller pops it and runs it
 * itself; if one did, the caller runs other work (its own deque first,
 * then stealing) until `b` is done, so waiting never blocks a worker and
 * recursion of any depth cannot deadlock. The price of a join is a deque
 * push and pop.
 *
 * From any other thread the caller takes part, as a guest worker: it
 * claims one of the scheduler's 4 guest slots (a worker's queues without a
 * thread of its own) and acts as that worker until the join returns. So
 * it runs `a` itself while the workers may steal `b` from its deque,
 * joins nested in `a` and `b` split further exactly as on a worker, and
 * when a worker took `b`, the caller runs and steals other work of the
 * pool (as a worker does; it may run unrelated tasks meanwhile) until `b`
 * is done, parking only when there is nothing to run. A join started
 * from outside therefore runs on the workers plus the caller: with
 * `workers = 1` that is two threads, and `workers = N - 1` gives N (see
 * moirai_sched_config_t.workers). Tasks the caller spawned inside the join
 * and nobody took yet are handed to the injector when it returns. With
 * more outside callers than guest slots, the others take part in a
 * simpler way: each offers `b` in one of 32 external slots, runs `a`, and
 * takes `b` back unless a worker took it (then it only waits); with those
 * slots full too, the whole join is queued on the injector and the caller
 * waits. With cfg.callers_wait set, the caller never takes part: the whole
 * join is queued on the injector and the caller sleeps until the workers
 * have run it, so exactly `workers` threads do the work.
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
 * running; from any other thread, the process's default scheduler
 * (moirai_sched_default()). From outside the pool the caller takes part
 * (see above) unless cfg.callers_wait. Blocks (helping, on a worker and on
 * an outside caller that takes part). Thread-safe. Returns 0, or
 * -EINVAL (NULL a or b), -ESHUTDOWN (destroy has begun, caller neither a
 * worker nor inside an external join accepted before), or -ENOMEM /
 * -EAGAIN (NULL `sched` and the default scheduler could not be created);
 * on error neither function has run. */
MOIRAI_SCHED_API int moirai_join(moirai_sched_t *sched, moirai_join_fn a, void *arg_a,
                                 moirai_join_fn b, void *arg_b);

#ifdef __cplusplus
}
#endif

#endif
