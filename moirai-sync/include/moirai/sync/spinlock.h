/* Spinlocks: locks that never park.
 *
 * moirai_spinlock_t is a test-and-test-and-set lock: waiters spin on a
 * plain read (no cache-line traffic while the lock is held) with a pause
 * instruction and exponential backoff, and attempt the atomic exchange
 * only when the lock looks free. It is not fair.
 * moirai_ticketlock_t hands the lock out in arrival order (FIFO): each
 * locker draws a ticket and waits until it is served; waiters back off in
 * proportion to their distance from the head of the line.
 *
 * Use them only for critical sections of a few dozen instructions that
 * never block. A waiter whose holder is preempted burns CPU; after a
 * bounded amount of spinning it yields the CPU (sched_yield) between
 * attempts, so the holder can run when both share a CPU. Prefer
 * moirai_mutex_t (which spins briefly and then parks) when in doubt.
 *
 * Neither is recursive. Unlocking a lock one does not hold is undefined
 * (reported by the ThreadSanitizer build).
 *
 * Memory ordering: a successful lock acquires, unlock releases.
 *
 * Storage: 4 and 8 bytes, embeddable; MOIRAI_SPINLOCK_INIT,
 * MOIRAI_TICKETLOCK_INIT or the init functions. */
#ifndef MOIRAI_SYNC_SPINLOCK_H
#define MOIRAI_SYNC_SPINLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/atomic.h>
#include <moirai/sync/export.h>

/* The field is private: use only the functions below. */
typedef struct moirai_spinlock {
    MOIRAI_ATOMIC(uint32_t) priv_locked;
} moirai_spinlock_t;

/* The fields are private: use only the functions below. */
typedef struct moirai_ticketlock {
    MOIRAI_ATOMIC(uint32_t) priv_next;    /* next ticket to hand out */
    MOIRAI_ATOMIC(uint32_t) priv_serving; /* ticket allowed in */
} moirai_ticketlock_t;

/* The static initializer of an unlocked spinlock. */
#define MOIRAI_SPINLOCK_INIT                                                                       \
    {                                                                                              \
        .priv_locked = 0                                                                           \
    }
/* The static initializer of an unlocked ticket lock. */
#define MOIRAI_TICKETLOCK_INIT                                                                     \
    {                                                                                              \
        .priv_next = 0, .priv_serving = 0                                                          \
    }

#ifdef __cplusplus
extern "C" {
#endif

/* Initializes `lock` as unlocked. No other thread may use it yet. */
MOIRAI_SYNC_API void moirai_spinlock_init(moirai_spinlock_t *lock);

/* Ends the life of an unlocked, unused `lock` (for the ThreadSanitizer
 * build, and to drop its contention statistics, moirai/sync/lockstat.h;
 * releases nothing else). */
MOIRAI_SYNC_API void moirai_spinlock_destroy(moirai_spinlock_t *lock);

/* Acquires `lock`, spinning (never parking) until it is free. Acquire
 * ordering. Thread-safe. */
MOIRAI_SYNC_API void moirai_spinlock_lock(moirai_spinlock_t *lock);

/* Acquires `lock` if it is free now. Never spins. Returns true when held
 * (acquire), else false. */
MOIRAI_SYNC_API bool moirai_spinlock_try_lock(moirai_spinlock_t *lock);

/* Releases `lock`, which the caller holds. Never blocks. Release
 * ordering. */
MOIRAI_SYNC_API void moirai_spinlock_unlock(moirai_spinlock_t *lock);

/* Initializes `lock` as unlocked. No other thread may use it yet. */
MOIRAI_SYNC_API void moirai_ticketlock_init(moirai_ticketlock_t *lock);

/* Ends the life of an unlocked, unused `lock` (for the ThreadSanitizer
 * build, and to drop its contention statistics, moirai/sync/lockstat.h;
 * releases nothing else). */
MOIRAI_SYNC_API void moirai_ticketlock_destroy(moirai_ticketlock_t *lock);

/* Draws a ticket and spins (never parks) until it is served: lockers get
 * the lock in the order their tickets were drawn. Acquire ordering. At
 * most 2^32 - 1 threads may wait at once. */
MOIRAI_SYNC_API void moirai_ticketlock_lock(moirai_ticketlock_t *lock);

/* Acquires `lock` if it is free and nobody waits. Never spins. Returns
 * true when held (acquire), else false. */
MOIRAI_SYNC_API bool moirai_ticketlock_try_lock(moirai_ticketlock_t *lock);

/* Serves the next ticket. The caller must hold `lock`. Never blocks.
 * Release ordering. */
MOIRAI_SYNC_API void moirai_ticketlock_unlock(moirai_ticketlock_t *lock);

#ifdef __cplusplus
}
#endif

#endif
