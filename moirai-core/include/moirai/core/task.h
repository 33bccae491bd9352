/* The task model: ids, priorities, attributes, the task function and its
 * cancellation token.
 *
 * A task is a function an executor runs once. Whoever spawns it may attach
 * attributes (a name, one of five priorities, a locality hint, a deadline)
 * and a completion handle (see handle.h) through which the result comes
 * back and cancellation goes in. */
#ifndef MOIRAI_CORE_TASK_H
#define MOIRAI_CORE_TASK_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/clock.h>
#include <moirai/core/export.h>

/* A task id: unique within the process, never reused, never 0. */
typedef uint64_t moirai_task_id_t;
#define MOIRAI_TASK_ID_NONE ((moirai_task_id_t)0)

/* Five priority levels, most urgent first. Schedulers run higher levels
 * first; how they avoid starving the lower ones is theirs to document. */
typedef enum moirai_priority {
    MOIRAI_PRIORITY_CRITICAL = 0,
    MOIRAI_PRIORITY_HIGH = 1,
    MOIRAI_PRIORITY_NORMAL = 2,
    MOIRAI_PRIORITY_LOW = 3,
    MOIRAI_PRIORITY_BACKGROUND = 4,
} moirai_priority_t;
/* The number of priority levels: priorities are 0 to MOIRAI_PRIORITY_COUNT - 1. */
#define MOIRAI_PRIORITY_COUNT 5

/* What a locality hint names. */
typedef enum moirai_locality {
    MOIRAI_LOCALITY_ANY = 0,  /* no preference */
    MOIRAI_LOCALITY_CPU = 1,  /* prefer the CPU with kernel number `locality_index` */
    MOIRAI_LOCALITY_NODE = 2, /* prefer NUMA node `locality_index` */
} moirai_locality_t;

/* Task attributes. Initialise with MOIRAI_TASK_ATTR_INIT or
 * moirai_task_attr_init() and then set what you need. Executors treat all
 * of them as hints except where their documentation promises more. */
typedef struct moirai_task_attr {
    const char *name;           /* for debugging; borrowed, must outlive the task; may be NULL */
    moirai_priority_t priority; /* MOIRAI_PRIORITY_NORMAL by default */
    moirai_locality_t locality; /* MOIRAI_LOCALITY_ANY by default */
    int locality_index;         /* CPU number or node index, per `locality` */
    /* Start deadline, absolute on moirai_clock_now_ns(): a task that has
     * not started by then does not run, and its handle fails with
     * -ETIMEDOUT (checked by moirai_handle_run(), which every executor of
     * Moirai runs tasks through; a task spawned without a handle has no
     * one to tell and runs regardless). A started task is never stopped by
     * it: that is what cancellation is for. 0 or MOIRAI_DEADLINE_NEVER:
     * none. */
    uint64_t deadline;
} moirai_task_attr_t;

/* The default task attributes, as a static initialiser: no name, normal
 * priority, no locality preference, no deadline. */
#define MOIRAI_TASK_ATTR_INIT                                                                      \
    {                                                                                              \
        NULL, MOIRAI_PRIORITY_NORMAL, MOIRAI_LOCALITY_ANY, -1, MOIRAI_DEADLINE_NEVER               \
    }

/* The cancellation token a running task polls. Opaque; only ever seen
 * through a pointer, which is NULL for a task spawned without a handle. */
typedef struct moirai_cancel_token moirai_cancel_token_t;

/* A task body. `arg` is what the spawner passed; `cancel` may be NULL.
 * Return 0 and optionally store a result in `*result` (which starts as
 * NULL), or return a negative errno, which becomes the handle's error. A
 * task that notices cancellation conventionally returns -ECANCELED. */
typedef int (*moirai_task_fn)(void *arg, const moirai_cancel_token_t *cancel, void **result);

#ifdef __cplusplus
extern "C" {
#endif

/* A fresh task id. Never blocks; thread-safe (one relaxed atomic
 * increment: ids are unique, not ordered between threads). */
MOIRAI_CORE_API moirai_task_id_t moirai_task_id_next(void);

/* Sets `*attr` to the defaults of MOIRAI_TASK_ATTR_INIT. */
MOIRAI_CORE_API void moirai_task_attr_init(moirai_task_attr_t *attr);

/* Checks `attr`: the priority is one of the five, the locality kind is
 * known, and a CPU or node hint names a CPU or node of the current
 * topology. Returns 0 or -EINVAL (also for NULL). */
MOIRAI_CORE_API int moirai_task_attr_validate(const moirai_task_attr_t *attr);

/* "critical", "high", "normal", "low", "background", or "unknown". */
MOIRAI_CORE_API const char *moirai_priority_name(moirai_priority_t priority);

/* True once cancellation of the task has been requested. NULL gives
 * false. Never blocks; thread-safe. Acquire: whatever the canceller wrote
 * before moirai_handle_cancel() is visible once this returns true. */
MOIRAI_CORE_API bool moirai_cancel_token_is_cancelled(const moirai_cancel_token_t *token);

/* Called once when a watched token is cancelled, on the cancelling thread
 * (or on the watcher, if the token was cancelled already). It must be
 * short and must not block: wake something, set a flag. */
typedef void (*moirai_cancel_cb)(void *arg);

/* Watches `token`: `cb(arg)` runs exactly once when the task is cancelled
 * while running, or at once (before this returns) if it already was. One
 * watch per token at a time; a fiber runtime holds its fibers' tokens'
 * watches. Never blocks; thread-safe. Seq_cst handshake with
 * moirai_handle_cancel(): a cancel that happens after this returns always
 * runs the callback, one before it runs it here. Returns 0, -EINVAL (NULL
 * token or cb) or -EBUSY (a watch is registered already). */
MOIRAI_CORE_API int moirai_cancel_token_watch(const moirai_cancel_token_t *token,
                                              moirai_cancel_cb cb, void *arg);

/* Removes the watch of `token`. If its callback is running on another
 * thread, waits for it to return (it is short), so afterwards the callback
 * neither runs nor will run and `arg` may be freed. Returns 0 (removed,
 * whether it had fired or not), -EINVAL (NULL) or -ENOENT (no watch). */
MOIRAI_CORE_API int moirai_cancel_token_unwatch(const moirai_cancel_token_t *token);

/* Storage for one cancel listener (moirai_cancel_token_listen()), owned
 * by the caller (on its stack, in its own struct). Its contents are
 * private; it needs no initialisation. */
typedef struct moirai_cancel_listener {
    void *priv[5];
} moirai_cancel_listener_t;

/* Listens on `token` with `listener`: `cb(arg)` runs exactly once when the
 * token is cancelled (on the cancelling thread, after the watch's
 * callback), or at once, before this returns, if it was already; if the
 * token is cancelled before moirai_cancel_token_unlisten() returns, the
 * callback has run exactly once by then (on the unlistening thread if it
 * got there before the canceller did). Any
 * number of listeners may listen on one token, unlike the one watch; they
 * run in the order they were added. The callback must be short and must
 * not block; it may call listen or unlisten (also on its own listener).
 * `listener` must stay valid, and the token's handle referenced, until
 * moirai_cancel_token_unlisten() has returned for it. Never blocks (a
 * short internal lock, never held across a callback); thread-safe.
 * Ordering: what the canceller wrote before moirai_handle_cancel() happens
 * before the callback. Returns 0, or -EINVAL (NULL token, listener or cb;
 * then the callback never runs). */
MOIRAI_CORE_API int moirai_cancel_token_listen(const moirai_cancel_token_t *token,
                                               moirai_cancel_listener_t *listener,
                                               moirai_cancel_cb cb, void *arg);

/* Removes `listener` from `token`. If its callback runs on another thread
 * right now, waits for it to return (it is short); if the token is
 * cancelled and the callback has not run yet, runs it here. So afterwards
 * the callback ran exactly once if the token is cancelled and never
 * otherwise, it will not run again, its effects are visible, and the
 * listener may be reused or freed. Returns 0 (removed, whether it had
 * fired or not), -EINVAL (NULL token or listener) or -ENOENT (not
 * listening: never listed, or removed already). */
MOIRAI_CORE_API int moirai_cancel_token_unlisten(const moirai_cancel_token_t *token,
                                                 moirai_cancel_listener_t *listener);

/* Waits until `token` is cancelled or `deadline` passes (absolute, on
 * moirai_clock_now_ns(); MOIRAI_DEADLINE_NEVER for none), whichever comes
 * first; a cancel wakes it at once. Parks through core's park layer, so
 * on a plain thread (or a scheduler task) it sleeps on a futex and in a
 * fiber it suspends the fiber. A NULL token (a task spawned without a
 * handle) is never cancelled, and neither is one whose task has finished
 * uncancelled: the wait lasts until the deadline. The token must stay
 * valid throughout (the running task's own token, or a token of a handle
 * the caller holds a reference to). Blocks; thread-safe. Acquire: what the
 * canceller wrote before cancelling is visible once this returns 0.
 * Returns 0 (cancelled; also at once if it already was), -ETIMEDOUT (the
 * deadline passed first) or, in a fiber whose own task was cancelled
 * while it waited on another token, -ECANCELED. */
MOIRAI_CORE_API int moirai_cancel_token_wait_timed(const moirai_cancel_token_t *token,
                                                   uint64_t deadline);

/* Sleeps until `deadline` (as moirai_cancel_token_wait_timed()), returning
 * early if `token` is cancelled. Blocks (parks a fiber); thread-safe.
 * Returns 0 (slept to the deadline) or -ECANCELED (cancelled before or
 * during the sleep; in a fiber, also when its own task was cancelled). */
MOIRAI_CORE_API int moirai_cancel_token_sleep_until(const moirai_cancel_token_t *token,
                                                    uint64_t deadline);

/* moirai_cancel_token_sleep_until() for `ns` nanoseconds from now. */
MOIRAI_CORE_API int moirai_cancel_token_sleep(const moirai_cancel_token_t *token, uint64_t ns);

#ifdef __cplusplus
}
#endif

#endif
