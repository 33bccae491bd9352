/* The executor interface: how any module submits work without linking the
 * scheduler.
 *
 * An executor is a struct whose first member is a moirai_executor_t (a
 * pointer to its operations). moirai-core ships two real executors: an
 * inline one that runs each task on the caller, and a thread-per-task one.
 * moirai-sched provides the work-stealing one.
 *
 * Writing an executor: ops->spawn receives arguments already validated,
 * and a handle (or NULL) already bound to this task and retained for the
 * executor. It must either return a negative errno without having run or
 * kept anything, or return 0 and later, exactly once, call
 * moirai_handle_run(handle, fn, arg) followed by
 * moirai_handle_release(handle). */
#ifndef MOIRAI_CORE_EXECUTOR_H
#define MOIRAI_CORE_EXECUTOR_H

#include <moirai/core/export.h>
#include <moirai/core/handle.h>
#include <moirai/core/task.h>

/* An executor: something that runs tasks. Only ever seen through a pointer. */
typedef struct moirai_executor moirai_executor_t;

/* The operations an executor implements (see "Writing an executor" above). */
typedef struct moirai_executor_ops {
    /* Accepts `fn(arg)` for one later run, with its attributes and handle, or
     * returns a negative errno having kept nothing. Called by
     * moirai_executor_spawn() after it has checked the arguments. */
    int (*spawn)(moirai_executor_t *executor, moirai_task_fn fn, void *arg,
                 const moirai_task_attr_t *attr, moirai_handle_t *handle);
} moirai_executor_ops_t;

/* The part every executor starts with: an executor's own struct has this as
 * its first member, so a pointer to it is a moirai_executor_t pointer. */
struct moirai_executor {
    const moirai_executor_ops_t *ops; /* its operations, shared by all executors of its kind */
};

#ifdef __cplusplus
extern "C" {
#endif

/* Submits `fn(arg)` to `executor` with attributes `attr` (NULL for the
 * defaults) and an optional completion `handle`. The task runs exactly
 * once, unless `handle` is cancelled before it starts, in which case it
 * never runs and the handle finishes with -ECANCELED.
 *
 * A handle serves one task: it must never have been given to a spawn
 * before. The executor keeps its own reference, so the caller may release
 * the handle at once if it does not want the result.
 *
 * Returns 0, or: -EINVAL for a NULL executor or function, invalid
 * attributes, or a handle already used; -ENOMEM; -EAGAIN when the system
 * cannot create a thread; -ESHUTDOWN once the executor is shutting down.
 * On error the function never runs and the handle is left as it was.
 * Whether it blocks depends on the executor (the inline one runs the task
 * before returning). Thread-safe for every executor Moirai ships. */
MOIRAI_CORE_API int moirai_executor_spawn(moirai_executor_t *executor, moirai_task_fn fn, void *arg,
                                          const moirai_task_attr_t *attr, moirai_handle_t *handle);

/* The inline executor: spawn runs the task on the calling thread before
 * returning. Useful in tests and as a fallback. Static; never freed;
 * thread-safe. */
MOIRAI_CORE_API moirai_executor_t *moirai_executor_inline(void);

/* Creates an executor that starts one thread per task. A CPU or node
 * locality hint pins the thread to that CPU or to the node's CPUs; the
 * task name (first 15 bytes) becomes the thread name; priorities and
 * deadlines are ignored (use moirai-rt for those). Returns 0, -EINVAL for
 * NULL, or -ENOMEM. */
MOIRAI_CORE_API int moirai_executor_thread_create(moirai_executor_t **out);

/* Shuts the thread executor down: new spawns fail with -ESHUTDOWN, then it
 * waits for every task already accepted to finish, joins their threads and
 * frees the executor. Blocks. Must not be called from one of its own
 * tasks. NULL is ignored. */
MOIRAI_CORE_API void moirai_executor_thread_destroy(moirai_executor_t *executor);

#ifdef __cplusplus
}
#endif

#endif
