/* Condition variable for moirai_mutex_t.
 *
 * A sequence counter on a futex word: a waiter reads the counter while it
 * still holds the mutex, unlocks, and parks while the counter is
 * unchanged; signal and broadcast bump the counter and unpark one or all.
 * Because the waiter reads the counter before it lets the mutex go, a
 * signal sent after the predicate changed under the mutex always either
 * changes the counter before the waiter parks (the park returns at once)
 * or finds the waiter parked and wakes it: no wake-up is lost. Waiting
 * goes through moirai-core's parking layer.
 *
 * Rules, as for POSIX condition variables: change the predicate while
 * holding the mutex; wait in a loop that re-checks the predicate, because
 * a wait may return without a signal (spuriously, or because a signal and
 * a waiter that arrived just before it raced); all waiters of one condvar
 * at a time use the same mutex. Signal and broadcast may be called with or
 * without the mutex held.
 *
 * Memory ordering: the condvar orders nothing by itself; the mutex does
 * (the waiter returns holding it, after the signaller's critical section
 * if the signaller changed the predicate under it).
 *
 * Storage: 8 bytes, embeddable; MOIRAI_CONDVAR_INIT or
 * moirai_condvar_init(). */
#ifndef MOIRAI_SYNC_CONDVAR_H
#define MOIRAI_SYNC_CONDVAR_H

#include <stdint.h>

#include <moirai/core/atomic.h>
#include <moirai/core/clock.h>
#include <moirai/sync/export.h>
#include <moirai/sync/mutex.h>

/* The fields are private: use only the functions below. */
typedef struct moirai_condvar {
    MOIRAI_ATOMIC(uint32_t) priv_seq;     /* bumped by every signal and broadcast */
    MOIRAI_ATOMIC(uint32_t) priv_waiters; /* threads between wait's start and its relock */
} moirai_condvar_t;

/* Static initializer; equivalent to moirai_condvar_init(). */
#define MOIRAI_CONDVAR_INIT                                                                        \
    {                                                                                              \
        .priv_seq = 0, .priv_waiters = 0                                                           \
    }

#ifdef __cplusplus
extern "C" {
#endif

/* Initializes `condvar`. No other thread may use it yet. */
MOIRAI_SYNC_API void moirai_condvar_init(moirai_condvar_t *condvar);

/* Ends the life of `condvar`; no thread may be waiting on it. Releases
 * nothing (present for symmetry and future checks). */
MOIRAI_SYNC_API void moirai_condvar_destroy(moirai_condvar_t *condvar);

/* Atomically releases `mutex` (which the caller holds) and parks until a
 * signal or broadcast, then re-acquires `mutex` before returning. Blocks.
 * May return spuriously: re-check the predicate. */
MOIRAI_SYNC_API void moirai_condvar_wait(moirai_condvar_t *condvar, moirai_mutex_t *mutex);

/* As moirai_condvar_wait(), giving up at `deadline` (absolute, on
 * moirai_clock_now_ns()'s scale; MOIRAI_DEADLINE_NEVER for none). Always
 * returns holding `mutex`. Returns 0 when woken (or spuriously), or
 * -ETIMEDOUT when the deadline passed with no signal or broadcast since the
 * wait began. Blocks. */
MOIRAI_SYNC_API int moirai_condvar_wait_timed(moirai_condvar_t *condvar, moirai_mutex_t *mutex,
                                              uint64_t deadline);

/* Wakes at least one thread waiting on `condvar`, if any. Never blocks;
 * makes a system call only when a thread is waiting. Thread-safe. */
MOIRAI_SYNC_API void moirai_condvar_signal(moirai_condvar_t *condvar);

/* Wakes every thread waiting on `condvar`. Never blocks; makes a system
 * call only when a thread is waiting. Thread-safe. */
MOIRAI_SYNC_API void moirai_condvar_broadcast(moirai_condvar_t *condvar);

#ifdef __cplusplus
}
#endif

#endif
