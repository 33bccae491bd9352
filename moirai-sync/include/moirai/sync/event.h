/* Event: a flag threads can wait for, in two flavours.
 *
 * Manual-reset: set() opens the event; every waiter, present and future,
 * passes until reset() closes it again.
 * Auto-reset: set() lets exactly one waiter through and closes the event
 * again as that waiter passes; with nobody waiting, the event stays open
 * until the next waiter arrives. Setting an auto-reset event that is
 * already open does nothing (sets do not accumulate, as with Windows
 * events; use a semaphore to count).
 *
 * A waiter is sure to pass only if the event is still set when it gets to
 * run: a set() followed at once by reset() may leave a manual-reset
 * event's waiters parked (there is no "pulse"). An auto-reset set() stays
 * until one waiter consumes it, so it is never lost.
 *
 * Memory ordering: set() releases; a wait that passes acquires, so what
 * the setter did before set() happens before the wait returns.
 *
 * Storage: 12 bytes, embeddable; MOIRAI_EVENT_INIT_MANUAL,
 * MOIRAI_EVENT_INIT_AUTO or moirai_event_init(). */
#ifndef MOIRAI_SYNC_EVENT_H
#define MOIRAI_SYNC_EVENT_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/atomic.h>
#include <moirai/core/clock.h>
#include <moirai/sync/export.h>

/* How a set event releases waiters. */
typedef enum moirai_event_mode {
    MOIRAI_EVENT_MANUAL = 0, /* stays set until reset */
    MOIRAI_EVENT_AUTO = 1,   /* each set releases one waiter */
} moirai_event_mode_t;

/* The fields are private: use only the functions below. */
typedef struct moirai_event {
    MOIRAI_ATOMIC(uint32_t) priv_state;   /* 1 set, 0 not set */
    MOIRAI_ATOMIC(uint32_t) priv_waiters; /* threads about to park or parked */
    uint32_t priv_mode;                   /* moirai_event_mode_t */
} moirai_event_t;

/* The static initializer of a manual-reset event that is not set. */
#define MOIRAI_EVENT_INIT_MANUAL                                                                   \
    {                                                                                              \
        .priv_state = 0, .priv_waiters = 0, .priv_mode = MOIRAI_EVENT_MANUAL                       \
    }
/* The static initializer of an auto-reset event that is not set. */
#define MOIRAI_EVENT_INIT_AUTO                                                                     \
    {                                                                                              \
        .priv_state = 0, .priv_waiters = 0, .priv_mode = MOIRAI_EVENT_AUTO                         \
    }

#ifdef __cplusplus
extern "C" {
#endif

/* Initializes `event` in `mode`, set when `initially_set`. No other thread
 * may use it yet. Returns 0, or -EINVAL for an unknown mode (nothing is
 * changed then). */
MOIRAI_SYNC_API int moirai_event_init(moirai_event_t *event, moirai_event_mode_t mode,
                                      bool initially_set);

/* Ends the life of `event`; no thread may be waiting. Releases nothing. */
MOIRAI_SYNC_API void moirai_event_destroy(moirai_event_t *event);

/* Sets `event`: a manual-reset event wakes every waiter; an auto-reset
 * one wakes one (if it was not already set). Never blocks; makes a system
 * call only when someone waits. Release ordering. Thread-safe. */
MOIRAI_SYNC_API void moirai_event_set(moirai_event_t *event);

/* Clears `event` (a no-op on one that is not set). Never blocks. Relaxed:
 * it publishes nothing. Thread-safe. */
MOIRAI_SYNC_API void moirai_event_reset(moirai_event_t *event);

/* Blocks (spins briefly, then parks) until `event` is set, then passes; on
 * an auto-reset event, passing clears it. Acquire ordering. */
MOIRAI_SYNC_API void moirai_event_wait(moirai_event_t *event);

/* Passes if `event` is set right now (clearing an auto-reset event).
 * Never blocks. Returns true when it passed (acquire), else false. */
MOIRAI_SYNC_API bool moirai_event_try_wait(moirai_event_t *event);

/* As moirai_event_wait(), giving up at `deadline` (absolute, on
 * moirai_clock_now_ns()'s scale; MOIRAI_DEADLINE_NEVER for none). Returns 0
 * when it passed (acquire), or -ETIMEDOUT. Blocks. */
MOIRAI_SYNC_API int moirai_event_wait_timed(moirai_event_t *event, uint64_t deadline);

/* True if `event` is set right now (a snapshot; acquire when true). Does
 * not consume an auto-reset event. Never blocks. */
MOIRAI_SYNC_API bool moirai_event_is_set(moirai_event_t *event);

#ifdef __cplusplus
}
#endif

#endif
