/* Counting semaphore.
 *
 * wait takes one unit, parking while there is none; post adds units and
 * wakes parked waiters. Not fair: a thread arriving while a woken waiter
 * is on its way may take the unit first (the woken one waits again).
 *
 * Memory ordering: post releases; a wait that takes a unit acquires, so
 * what a poster did before posting happens before the wait that takes a
 * unit of that post returns (as with sem_post / sem_wait).
 *
 * Storage: 8 bytes, embeddable; MOIRAI_SEMAPHORE_INIT(value) or
 * moirai_semaphore_init(). */
#ifndef MOIRAI_SYNC_SEMAPHORE_H
#define MOIRAI_SYNC_SEMAPHORE_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/atomic.h>
#include <moirai/core/clock.h>
#include <moirai/sync/export.h>

/* The fields are private: use only the functions below. */
typedef struct moirai_semaphore {
    MOIRAI_ATOMIC(uint32_t) priv_value;   /* available units */
    MOIRAI_ATOMIC(uint32_t) priv_waiters; /* threads about to park or parked */
} moirai_semaphore_t;

/* The largest value a semaphore can hold. */
#define MOIRAI_SEMAPHORE_MAX 0x7fffffffu

/* Static initializer with `value` (<= MOIRAI_SEMAPHORE_MAX) units. */
#define MOIRAI_SEMAPHORE_INIT(value)                                                               \
    {                                                                                              \
        .priv_value = (value), .priv_waiters = 0                                                   \
    }

#ifdef __cplusplus
extern "C" {
#endif

/* Initializes `sem` with `value` units. No other thread may use it yet.
 * Returns 0, or -EINVAL when `value` exceeds MOIRAI_SEMAPHORE_MAX (nothing
 * is changed then). */
MOIRAI_SYNC_API int moirai_semaphore_init(moirai_semaphore_t *sem, uint32_t value);

/* Ends the life of `sem`; no thread may be waiting. Releases nothing. */
MOIRAI_SYNC_API void moirai_semaphore_destroy(moirai_semaphore_t *sem);

/* Takes one unit, blocking (spins briefly, then parks) until one is
 * available. Acquire ordering. Thread-safe. */
MOIRAI_SYNC_API void moirai_semaphore_wait(moirai_semaphore_t *sem);

/* Takes one unit if one is available now. Never blocks. Returns true when
 * a unit was taken (acquire), false otherwise. */
MOIRAI_SYNC_API bool moirai_semaphore_try_wait(moirai_semaphore_t *sem);

/* As moirai_semaphore_wait(), giving up at `deadline` (absolute, on
 * moirai_clock_now_ns()'s scale; MOIRAI_DEADLINE_NEVER for none). Returns 0
 * with a unit taken (acquire), or -ETIMEDOUT without one. Blocks. */
MOIRAI_SYNC_API int moirai_semaphore_wait_timed(moirai_semaphore_t *sem, uint64_t deadline);

/* Adds one unit and wakes a parked waiter if there is one. Never blocks.
 * Returns 0, or -EOVERFLOW (nothing added) when the value is already
 * MOIRAI_SEMAPHORE_MAX. Release ordering. Thread-safe. */
MOIRAI_SYNC_API int moirai_semaphore_post(moirai_semaphore_t *sem);

/* Adds `n` units at once and wakes parked waiters: one when n == 1, all
 * of them otherwise (those that find no unit left park again). Never
 * blocks.
 * Returns 0 (n == 0 does nothing), or -EOVERFLOW (nothing added) when the
 * value would exceed MOIRAI_SEMAPHORE_MAX. Release ordering. */
MOIRAI_SYNC_API int moirai_semaphore_post_n(moirai_semaphore_t *sem, uint32_t n);

/* The number of available units (a snapshot; relaxed). Never blocks. */
MOIRAI_SYNC_API uint32_t moirai_semaphore_value(moirai_semaphore_t *sem);

#ifdef __cplusplus
}
#endif

#endif
