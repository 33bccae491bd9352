/* Timers: a deadline that fibers and threads can wait for, re-armed and
 * disarmed at will, and usable as an arm of moirai_select() (Go's
 * time.Timer, without the channel).
 *
 * A timer is idle, armed or fired. Arming (from any state) sets a new
 * deadline; at that deadline the runtime's reactor fires it, which wakes
 * every waiter. Disarming an armed timer makes it idle; waiters then
 * return -EAGAIN. Arming and disarming take the runtime's timer lock
 * (O(log n) in the armed timers and parked deadlines) and never allocate.
 *
 * Memory ordering: whatever the armer wrote before moirai_timer_arm()
 * happens before a waiter returns 0 for that arming. */
#ifndef MOIRAI_ASYNC_TIMER_H
#define MOIRAI_ASYNC_TIMER_H

#include <stdint.h>

#include <moirai/async/export.h>
#include <moirai/async/runtime.h>

/* A timer of a runtime. Opaque. */
typedef struct moirai_timer moirai_timer_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Creates an idle timer of `rt`; destroy it before the runtime. Never
 * blocks; thread-safe. Returns 0, -EINVAL (NULL out or rt) or -ENOMEM. */
MOIRAI_ASYNC_API int moirai_timer_create(moirai_timer_t **out, moirai_runtime_t *rt);

/* Disarms and frees the timer; waiters must be gone (a waiter left is a
 * use after free). If the reactor is firing it right now, waits for that
 * (a few instructions). NULL is ignored. */
MOIRAI_ASYNC_API void moirai_timer_destroy(moirai_timer_t *timer);

/* Arms the timer for `deadline` (absolute, moirai_clock_now_ns() scale),
 * replacing any earlier arming; a deadline already past fires at once (on
 * the reactor thread). Never blocks; thread-safe. Returns 0, or -EINVAL
 * (NULL timer, or MOIRAI_DEADLINE_NEVER: disarm instead). Release. */
MOIRAI_ASYNC_API int moirai_timer_arm(moirai_timer_t *timer, uint64_t deadline);

/* Disarms the timer. Returns 0 if it was armed (it will not fire for that
 * arming), -EALREADY if it had fired or was idle, -EINVAL for NULL. Never
 * blocks; thread-safe. */
MOIRAI_ASYNC_API int moirai_timer_disarm(moirai_timer_t *timer);

/* Waits until the timer fires (a re-arm while waiting moves the deadline
 * for the waiters too). Returns 0 once it has fired (at once if it had
 * fired already), -EAGAIN if it is idle or is disarmed while waiting,
 * -ETIMEDOUT (the `_timed` deadline), -ECANCELED (the calling fiber's task
 * was cancelled), -EINVAL (NULL). May block (parks a fiber). Acquire. */
MOIRAI_ASYNC_API int moirai_timer_wait(moirai_timer_t *timer);
MOIRAI_ASYNC_API int moirai_timer_wait_timed(moirai_timer_t *timer, uint64_t deadline);

#ifdef __cplusplus
}
#endif

#endif
