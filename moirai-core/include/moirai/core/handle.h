/* Completion handles: the one-shot result channel between a task and
 * whoever waits for it.
 *
 * A handle is completed exactly once, with a value (moirai_handle_complete)
 * or an error (moirai_handle_fail, or -ECANCELED when it is cancelled before
 * its task starts). Any number of threads may join it, at once or later;
 * waiters park through core's parking layer, so nothing polls.
 *
 * Lifetime: handles are reference counted. moirai_handle_create() returns
 * one reference; an executor that accepts the handle holds another until
 * the task has completed it. Either side may release first.
 *
 * Life of a handle:  pending --try_start--> running --complete/fail--> finished
 *                    pending --cancel / complete / fail--------------> finished
 *
 * Memory ordering: completing is a release and every call that observes a
 * finished handle (join, join_timed, try_join, is_finished) is an acquire,
 * so everything the task wrote before completing is visible to a joiner
 * that saw the result. */
#ifndef MOIRAI_CORE_HANDLE_H
#define MOIRAI_CORE_HANDLE_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/atomic.h>
#include <moirai/core/export.h>
#include <moirai/core/task.h>

/* A completion handle (see above). Opaque; reference counted. */
typedef struct moirai_handle moirai_handle_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Creates a pending handle with a fresh task id and one reference owned by
 * the caller. Returns 0, -EINVAL if `out` is NULL, or -ENOMEM. */
MOIRAI_CORE_API int moirai_handle_create(moirai_handle_t **out);

/* Adds a reference. Thread-safe (relaxed increment: the caller already
 * holds a reference, so the handle cannot vanish meanwhile). */
MOIRAI_CORE_API void moirai_handle_retain(moirai_handle_t *handle);

/* Drops a reference; the last one frees the handle. A pending handle whose
 * every reference is released is simply freed. Thread-safe (release
 * decrement, acquire on the final one). NULL is ignored. */
MOIRAI_CORE_API void moirai_handle_release(moirai_handle_t *handle);

/* The task id the handle was created with. Thread-safe. */
MOIRAI_CORE_API moirai_task_id_t moirai_handle_id(const moirai_handle_t *handle);

/* ---- The task's side (executors call these) ---- */

/* Moves a pending handle to running. Returns true if the task should run
 * now; false if it was cancelled (it is already finished with -ECANCELED
 * and its task must not run) or was already started or finished.
 * Thread-safe; never blocks. */
MOIRAI_CORE_API bool moirai_handle_try_start(moirai_handle_t *handle);

/* Finishes the handle with `value` and wakes every joiner. Returns 0, or
 * -EALREADY if the handle was already finished (the first result stands),
 * or -EINVAL for NULL. Thread-safe; never blocks (waking may cost a system
 * call). Release ordering. */
MOIRAI_CORE_API int moirai_handle_complete(moirai_handle_t *handle, void *value);

/* Finishes the handle with the negative errno `error`. Returns 0,
 * -EINVAL if `error` is not negative or `handle` is NULL (nothing
 * changes), or -EALREADY. Same ordering as moirai_handle_complete(). */
MOIRAI_CORE_API int moirai_handle_fail(moirai_handle_t *handle, int error);

/* The cancellation token of the task behind `handle` (NULL for NULL). */
MOIRAI_CORE_API const moirai_cancel_token_t *moirai_handle_token(const moirai_handle_t *handle);

/* Runs `fn(arg)` as the task of `handle`: starts the handle, calls the
 * function with the handle's token, and completes the handle with its
 * result or error. If the handle cannot start (cancelled first) the
 * function is not called and -ECANCELED is returned. If the task's start
 * deadline (moirai_task_attr_t.deadline, given to the spawn) has passed,
 * the handle fails with -ETIMEDOUT and the function is not called.
 * `handle` may be NULL: the function is then just called with a NULL
 * token. Returns the task's status (0 or its negative errno), -ECANCELED
 * or -ETIMEDOUT as above, or -EALREADY if
 * the task completed its own handle some other way. Blocks for as long as
 * the function runs. */
MOIRAI_CORE_API int moirai_handle_run(moirai_handle_t *handle, moirai_task_fn fn, void *arg);

/* ---- The waiter's side ---- */

/* Waits until the handle is finished. On success returns 0 and stores the
 * value in `*value` (if `value` is not NULL); otherwise returns the error
 * (-ECANCELED, or whatever the task failed with) and stores NULL. Blocks:
 * parks the calling thread (or fiber, under a fiber runtime), or waits
 * through the thread's waiter if one is installed (moirai_handle_waiter_set():
 * a moirai-sched worker runs other work meanwhile). Any number of
 * threads may join concurrently, each gets the same result. Returns
 * -EINVAL for a NULL handle, and -ECANCELED without a result when the
 * joiner is itself a fiber whose own handle was cancelled while it waited
 * (the joined handle is left as it was). */
MOIRAI_CORE_API int moirai_handle_join(moirai_handle_t *handle, void **value);

/* As moirai_handle_join(), but gives up at `deadline` (absolute,
 * moirai_clock_now_ns() scale) with -ETIMEDOUT, leaving the handle as it
 * was. A deadline already passed makes this a try_join that reports
 * -ETIMEDOUT. */
MOIRAI_CORE_API int moirai_handle_join_timed(moirai_handle_t *handle, uint64_t deadline,
                                             void **value);

/* As moirai_handle_join() but never blocks: -EAGAIN if not finished yet. */
MOIRAI_CORE_API int moirai_handle_try_join(moirai_handle_t *handle, void **value);

/* True once the handle is finished. Never blocks; acquire. */
MOIRAI_CORE_API bool moirai_handle_is_finished(const moirai_handle_t *handle);

/* For runtimes that wait for several things at once (moirai-async's
 * select): announces a waiter on `handle`, so that its completion calls
 * moirai_unpark_all() on the returned word, and returns that word with the
 * value to park against in `*expected`. The word changes (and is unparked)
 * when the handle finishes, and may also change for other reasons: re-check
 * with moirai_handle_is_finished() after a wake. Returns NULL when the
 * handle has finished already, or for a NULL argument. The word lives as
 * long as the handle. Never blocks; thread-safe; acquire (a NULL return
 * makes the result readable, as moirai_handle_is_finished() does). */
MOIRAI_CORE_API MOIRAI_ATOMIC(uint32_t) *moirai_handle_wait_word(moirai_handle_t *handle,
                                                                 uint32_t *expected);

/* A thread's way of waiting for a handle other than sleeping: a
 * scheduler installs one on each worker thread so that a task joining a
 * handle runs the scheduler's other work meanwhile instead of blocking the
 * worker (the task it waits for may be queued behind it). It must return
 * 0 once `handle` is finished and -ETIMEDOUT once `deadline` has passed
 * (absolute, moirai_clock_now_ns() scale; MOIRAI_DEADLINE_NEVER for none),
 * and may return 0 early (the join re-checks and calls it again). */
typedef int (*moirai_handle_waiter_cb)(void *arg, moirai_handle_t *handle, uint64_t deadline);

/* Makes moirai_handle_join() and moirai_handle_join_timed() on the calling
 * thread wait through `cb(arg, ...)` instead of parking, except from a
 * fiber whose runtime's park hook applies (a fiber parks). NULL `cb`
 * restores parking. Thread-local: affects only the calling thread. Never
 * blocks; never fails. */
MOIRAI_CORE_API void moirai_handle_waiter_set(moirai_handle_waiter_cb cb, void *arg);

/* Requests cancellation. Cancellation is cooperative:
 *   - pending: the handle finishes with -ECANCELED now, joiners wake, and
 *     the task will never run. Returns 0.
 *   - running: the task's token turns cancelled; the task decides whether
 *     to stop. Returns -EBUSY.
 *   - finished: nothing changes. Returns -EALREADY.
 * Returns -EINVAL for NULL. Thread-safe; never blocks. Release ordering on
 * the token. */
MOIRAI_CORE_API int moirai_handle_cancel(moirai_handle_t *handle);

#ifdef __cplusplus
}
#endif

#endif
