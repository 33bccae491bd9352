/* Scopes: structured concurrency.
 *
 * moirai_scope_run() calls `body(arg, scope)`; the body spawns tasks into
 * the scope, and so may those tasks. moirai_scope_run() returns only when
 * the body and every task spawned into the scope have finished, so tasks
 * may borrow anything on the caller's stack. The first error reaches the
 * caller: the first non-zero value returned by the body or by a task
 * becomes the scope's result and cancels the scope. Cancelling a scope
 * (moirai_scope_cancel(), or that first error) means: spawns into it fail
 * with -ECANCELED, tasks that have not started never run, and running
 * tasks see their cancel token fire.
 *
 * If the scheduler is destroyed with MOIRAI_SHUTDOWN_CANCEL while a scope
 * waits, the scope is cancelled: its tasks that have not started never run
 * and moirai_scope_run() still returns.
 *
 * While it waits, a worker that called moirai_scope_run() runs other work;
 * any other thread parks. With a NULL scheduler on a thread that is not a
 * worker, the scope is serial: everything runs on the caller, the body
 * first, then the spawned tasks in spawn order (as moirai_join() and the
 * parallel loops run serially there).
 *
 * Memory ordering: what the spawner wrote before moirai_scope_spawn()
 * happens before the task runs; everything the body and the tasks wrote
 * happens before moirai_scope_run() returns. */
#ifndef MOIRAI_SCHED_SCOPE_H
#define MOIRAI_SCHED_SCOPE_H

#include <stdbool.h>

#include <moirai/core/task.h>
#include <moirai/sched/export.h>
#include <moirai/sched/sched.h>

/* Opaque; valid only inside moirai_scope_run(), for the body and the
 * scope's tasks. */
typedef struct moirai_scope moirai_scope_t;

/* The body of a scope. Its return value is handled like a task's. */
typedef int (*moirai_scope_fn)(void *arg, moirai_scope_t *scope);

#ifdef __cplusplus
extern "C" {
#endif

/* Runs `body(arg, scope)` and waits for every task spawned into the scope.
 * `sched` NULL means the scheduler of the calling worker; on any other
 * thread, a serial scope on the caller (see above). Blocks. Returns 0 when the body and all tasks
 * returned 0; otherwise the first non-zero value any of them returned (a task that never ran
 * because the scope was cancelled contributes nothing), or -ECANCELED if the scope was cancelled
 * with no error; -EINVAL for a NULL body; -ENOMEM if the scope cannot be set up (the body has not
 * run). */
MOIRAI_SCHED_API int moirai_scope_run(moirai_sched_t *sched, moirai_scope_fn body, void *arg);

/* Spawns `fn(arg, cancel, result)` into `scope` with attributes `attr`
 * (NULL: defaults); `cancel` is the scope's token and `result` is
 * discarded. Thread-safe; call it from the body or from a task of the
 * scope. Never blocks. Returns 0, -EINVAL (NULL scope or fn, invalid attr),
 * -ECANCELED (the scope is cancelled; the task will not run), -ENOMEM or
 * -ESHUTDOWN. */
MOIRAI_SCHED_API int moirai_scope_spawn(moirai_scope_t *scope, moirai_task_fn fn, void *arg,
                                        const moirai_task_attr_t *attr);

/* Cancels the scope (see above). Idempotent; thread-safe; never blocks. */
MOIRAI_SCHED_API void moirai_scope_cancel(moirai_scope_t *scope);

/* True once the scope is cancelled. Acquire. */
MOIRAI_SCHED_API bool moirai_scope_is_cancelled(const moirai_scope_t *scope);

/* The scope's cancellation token, the one its tasks receive. */
MOIRAI_SCHED_API const moirai_cancel_token_t *moirai_scope_token(const moirai_scope_t *scope);

#ifdef __cplusplus
}
#endif

#endif
