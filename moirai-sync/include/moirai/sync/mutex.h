/* Mutex: a futex-based lock with bounded adaptive spinning.
 *
 * The lock word has three states (Drepper, "Futexes Are Tricky", mutex2):
 * free, locked, and locked with possible waiters. An uncontended lock is
 * one compare-and-swap and an unlock one exchange, with no system call;
 * only an unlock that finds the "waiters" state wakes a sleeper. A
 * contended locker first spins for a short, bounded time (a hand-over
 * between CPUs takes well under a microsecond, a sleep and wake-up tens of
 * microseconds), unless other waiters are already parked, and then parks
 * through moirai-core's parking layer, so the same mutex parks a fiber
 * instead of its thread once a fiber runtime installs its park hook.
 *
 * The mutex is not recursive and not fair: a running thread may take the
 * lock ahead of a sleeping one (that is what makes it fast). Lock and
 * unlock return nothing: relocking a mutex one holds deadlocks, unlocking
 * one that is free or held by another thread is undefined. Both are bugs
 * the ThreadSanitizer build reports.
 *
 * Memory ordering: every successful lock is an acquire and every unlock a
 * release, so each critical section happens after the one that held the
 * lock before it. A failed try_lock or lock_timed orders nothing.
 *
 * Storage: 4 bytes, embeddable anywhere (stack, struct, static), set up
 * with MOIRAI_MUTEX_INIT or moirai_mutex_init(). */
#ifndef MOIRAI_SYNC_MUTEX_H
#define MOIRAI_SYNC_MUTEX_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/atomic.h>
#include <moirai/core/clock.h>
#include <moirai/sync/export.h>

/* The field is private: use only the functions below. */
typedef struct moirai_mutex {
    MOIRAI_ATOMIC(uint32_t) priv_state; /* 0 free, 1 locked, 2 locked with possible waiters */
} moirai_mutex_t;

/* Static initializer: `moirai_mutex_t m = MOIRAI_MUTEX_INIT;`. Equivalent
 * to moirai_mutex_init(); such a mutex needs no moirai_mutex_destroy(). */
#define MOIRAI_MUTEX_INIT                                                                          \
    {                                                                                              \
        .priv_state = 0                                                                            \
    }

#ifdef __cplusplus
extern "C" {
#endif

/* Initializes `mutex` as unlocked. Not thread-safe with respect to other
 * uses of the same mutex (no other thread may touch it yet). Never fails. */
MOIRAI_SYNC_API void moirai_mutex_init(moirai_mutex_t *mutex);

/* Ends the life of an unlocked `mutex` that no thread is using or waiting
 * for; the memory may then be reused. Needed to tell the ThreadSanitizer
 * build that the lock is gone, and to drop the lock's contention
 * statistics (moirai/sync/lockstat.h) if it has any; it releases nothing
 * else. */
MOIRAI_SYNC_API void moirai_mutex_destroy(moirai_mutex_t *mutex);

/* Acquires `mutex`, spinning briefly and then parking (blocks) until it is
 * free. Thread-safe. Acquire ordering. */
MOIRAI_SYNC_API void moirai_mutex_lock(moirai_mutex_t *mutex);

/* Acquires `mutex` if it is free right now. Never blocks or spins.
 * Returns true when the caller now holds the lock (acquire ordering), false
 * when another thread holds it (no ordering). Thread-safe. */
MOIRAI_SYNC_API bool moirai_mutex_try_lock(moirai_mutex_t *mutex);

/* As moirai_mutex_lock(), giving up at `deadline` (absolute, on
 * moirai_clock_now_ns()'s scale; MOIRAI_DEADLINE_NEVER waits forever, a
 * deadline in the past makes it a try_lock that may spin briefly). Blocks.
 * Returns 0 with the lock held (acquire ordering), or -ETIMEDOUT without it
 * once the deadline has passed. Thread-safe. */
MOIRAI_SYNC_API int moirai_mutex_lock_timed(moirai_mutex_t *mutex, uint64_t deadline);

/* Releases `mutex`, which the caller must hold, and wakes one parked
 * waiter if there may be any (one system call in that case only). Never
 * blocks. Release ordering. */
MOIRAI_SYNC_API void moirai_mutex_unlock(moirai_mutex_t *mutex);

#ifdef __cplusplus
}
#endif

#endif
