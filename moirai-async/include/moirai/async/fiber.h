/* Fibers: tasks with a stack of their own, which can wait.
 *
 * A fiber is spawned like a task (the same function shape, attributes and
 * optional completion handle) and runs on the runtime's scheduler workers,
 * in the same five priority levels, with the same aging. When it waits on
 * anything Moirai provides, it is suspended and its worker runs other
 * work; it resumes later, possibly on another worker. Its stack is mmap'ed
 * with a guard page below it; running past it ends the process with a
 * message naming the fiber.
 *
 * What a fiber must not do: block its worker thread in the kernel for
 * long (read(2) on a socket, sleep(3), pthread_mutex_lock on a long-held
 * lock). Use Moirai's waits, moirai_fiber_sleep() and moirai-async's I/O,
 * or moirai_sched_spawn_blocking(). Thread-local variables belong to
 * the worker, not the fiber, and may change across any wait: use fiber-
 * local storage. */
#ifndef MOIRAI_ASYNC_FIBER_H
#define MOIRAI_ASYNC_FIBER_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/async/export.h>
#include <moirai/async/runtime.h>
#include <moirai/core/handle.h>
#include <moirai/core/task.h>

/* A running fiber. Opaque; the runtime owns it, and moirai_fiber_current()
 * gives the caller's own. */
typedef struct moirai_fiber moirai_fiber_t;

/* Fiber attributes: the task attributes (name, priority, locality) plus a
 * stack size. Fill with moirai_fiber_attr_init(). The name is borrowed:
 * it must outlive the fiber, and with the scheduler's watchdog on it must
 * stay readable until the scheduler is destroyed (the watchdog may report
 * it a moment after the fiber ended); a string literal is the usual case.
 * The locality hint places the fiber's first run only. */
typedef struct moirai_fiber_attr {
    moirai_task_attr_t task; /* name, priority, locality (and the rest of the task attributes) */
    size_t stack_size;       /* usable bytes; 0: the runtime's default */
} moirai_fiber_attr_t;

/* A fiber-local storage key. */
typedef struct moirai_fiber_key {
    uint32_t index;
} moirai_fiber_key_t;

/* Destroys a fiber-local value when its fiber ends (called on the fiber). */
typedef void (*moirai_fiber_local_cb)(void *value);

/* Keys per process. */
#define MOIRAI_FIBER_KEYS_MAX 64

#ifdef __cplusplus
extern "C" {
#endif

/* Sets `*attr` to the defaults: MOIRAI_TASK_ATTR_INIT and the runtime's
 * stack size. NULL is ignored. */
MOIRAI_ASYNC_API void moirai_fiber_attr_init(moirai_fiber_attr_t *attr);

/* Starts `fn(arg)` as a fiber of `rt` (attr NULL: defaults). With a
 * `handle` (fresh from moirai_handle_create), the result reaches it;
 * cancelling the handle before the fiber first runs means it never runs
 * (-ECANCELED), and cancelling it later wakes the fiber from its current
 * or next cancellable wait (see moirai_fiber_sleep()). Never blocks;
 * thread-safe, from any thread or fiber. Returns 0, -EINVAL (NULL rt or
 * fn, invalid attributes, stack_size out of range, a handle already
 * used), -ENOMEM (no memory or no stack could be mapped), or -ESHUTDOWN
 * (the runtime is being destroyed); on error nothing runs and the handle
 * is untouched. */
MOIRAI_ASYNC_API int moirai_fiber_spawn(moirai_runtime_t *rt, moirai_task_fn fn, void *arg,
                                        const moirai_fiber_attr_t *attr, moirai_handle_t *handle);

/* The calling fiber, or NULL on a plain thread. Never blocks. */
MOIRAI_ASYNC_API moirai_fiber_t *moirai_fiber_current(void);

/* Lets other work run: the fiber goes to the back of its priority level
 * and resumes later, possibly on another worker. Returns 0, or -EPERM on
 * a plain thread (nothing happens). */
MOIRAI_ASYNC_API int moirai_fiber_yield(void);

/* Suspends the calling fiber for at least `ns` nanoseconds (0: a yield);
 * on a plain thread, sleeps the thread. Costs no CPU while asleep (a
 * reactor timer). Returns 0, or -ECANCELED when the fiber's handle is
 * cancelled before or while it sleeps (it then returns at once). */
MOIRAI_ASYNC_API int moirai_fiber_sleep(uint64_t ns);

/* As moirai_fiber_sleep() until the absolute `deadline`
 * (moirai_clock_now_ns() scale). A deadline already passed yields.
 * -EINVAL for MOIRAI_DEADLINE_NEVER (a sleep must end). */
MOIRAI_ASYNC_API int moirai_fiber_sleep_until(uint64_t deadline);

/* The cancellation token of the calling fiber (NULL on a plain thread or
 * for a fiber spawned without a handle). Never blocks. */
MOIRAI_ASYNC_API const moirai_cancel_token_t *moirai_fiber_token(void);

/* The fiber's task id (also its handle's id, when it has one). */
MOIRAI_ASYNC_API moirai_task_id_t moirai_fiber_id(const moirai_fiber_t *fiber);

/* The fiber's name from its attributes, or NULL. */
MOIRAI_ASYNC_API const char *moirai_fiber_name(const moirai_fiber_t *fiber);

/* The most stack bytes the fiber has used so far, to within a word
 * (read from the stack's untouched zero fill). Call it on the fiber
 * itself, or on a fiber known to be parked. */
MOIRAI_ASYNC_API size_t moirai_fiber_stack_used(const moirai_fiber_t *fiber);

/* Creates a fiber-local key; `destructor` (may be NULL) runs on each
 * fiber's non-NULL value when that fiber ends. Returns 0, -EINVAL (NULL
 * key) or -EAGAIN (all MOIRAI_FIBER_KEYS_MAX keys in use). Thread-safe. */
MOIRAI_ASYNC_API int moirai_fiber_key_create(moirai_fiber_key_t *key,
                                             moirai_fiber_local_cb destructor);

/* Frees `key` for reuse; values still set are not destroyed. Returns 0 or
 * -EINVAL (not a created key). */
MOIRAI_ASYNC_API int moirai_fiber_key_delete(moirai_fiber_key_t key);

/* The calling fiber's value for `key`, or NULL (none set, not a fiber, or
 * not a created key). Never blocks. */
MOIRAI_ASYNC_API void *moirai_fiber_local_get(moirai_fiber_key_t key);

/* Sets the calling fiber's value for `key`. The fiber's first non-NULL
 * value allocates its table of values. Returns 0, -EINVAL (not a created
 * key), -EPERM (not a fiber) or -ENOMEM (no table; nothing is set). */
MOIRAI_ASYNC_API int moirai_fiber_local_set(moirai_fiber_key_t key, void *value);

#ifdef __cplusplus
}
#endif

#endif
