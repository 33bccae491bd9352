/* Condition variable: a sequence counter on a futex word.
 *
 *   wait:      waiters += 1; s = seq; unlock mutex; park while seq == s;
 *              lock mutex; waiters -= 1
 *   signal:    if waiters > 0: seq += 1; unpark one
 *   broadcast: if waiters > 0: seq += 1; unpark all
 *
 * Why no wake-up is lost: the waiter's increment of `waiters` and its read
 * of `seq` happen before it unlocks the mutex; a signaller that changed the
 * predicate under the mutex did so after that unlock, so it sees the
 * waiter counted and its increment of `seq` comes after the waiter's read.
 * The futex compare in park then either sees the new `seq` (the park
 * returns at once) or queues the waiter before the unpark, which wakes it.
 *
 * All the atomics are relaxed: the mutex supplies the ordering (the
 * waiter's read happens before its unlock, the signaller's load of
 * `waiters` after its lock), and the futex compare is atomic with the
 * queueing in the kernel.
 *
 * The counter wraps at 2^32. A waiter that read it and was then delayed
 * for exactly 2^32 signals before parking would park on a value that looks
 * unchanged and sleep until the next signal; no real schedule produces
 * four billion signals inside that window.
 *
 * Broadcast wakes every waiter and they then contend for the mutex; the
 * parking layer has no requeue operation (it must also park fibers), and
 * the spinning in moirai_mutex_lock absorbs most of that contention. */
#include <moirai/sync/condvar.h>

#include <errno.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>

_Static_assert(sizeof(moirai_condvar_t) == 8, "moirai_condvar_t is 8 bytes in the ABI");

void moirai_condvar_init(moirai_condvar_t *condvar)
{
    atomic_init(&condvar->priv_seq, 0);
    atomic_init(&condvar->priv_waiters, 0);
}

void moirai_condvar_destroy(moirai_condvar_t *condvar)
{
    (void)condvar;
}

int moirai_condvar_wait_timed(moirai_condvar_t *condvar, moirai_mutex_t *mutex, uint64_t deadline)
{
    /* Relaxed: both happen before the mutex unlock below, which publishes
     * them to any signaller that changes the predicate under the mutex. */
    atomic_fetch_add_explicit(&condvar->priv_waiters, 1, memory_order_relaxed);
    uint32_t seq = atomic_load_explicit(&condvar->priv_seq, memory_order_relaxed);
    moirai_mutex_unlock(mutex);

    int rc = moirai_park_for(&condvar->priv_seq, seq, deadline, "condvar");

    moirai_mutex_lock(mutex);
    atomic_fetch_sub_explicit(&condvar->priv_waiters, 1, memory_order_relaxed);
    /* A timeout only counts if no signal arrived meanwhile: a signal's
     * wake-up may have picked this waiter, and reporting a timeout then
     * would make the caller treat that signal as lost. */
    if (rc == -ETIMEDOUT && atomic_load_explicit(&condvar->priv_seq, memory_order_relaxed) == seq)
        return -ETIMEDOUT;
    return 0;
}

void moirai_condvar_wait(moirai_condvar_t *condvar, moirai_mutex_t *mutex)
{
    (void)moirai_condvar_wait_timed(condvar, mutex, MOIRAI_DEADLINE_NEVER);
}

void moirai_condvar_signal(moirai_condvar_t *condvar)
{
    /* Relaxed: see the top of the file. */
    if (atomic_load_explicit(&condvar->priv_waiters, memory_order_relaxed) == 0)
        return;
    atomic_fetch_add_explicit(&condvar->priv_seq, 1, memory_order_relaxed);
    moirai_unpark_one(&condvar->priv_seq);
}

void moirai_condvar_broadcast(moirai_condvar_t *condvar)
{
    if (atomic_load_explicit(&condvar->priv_waiters, memory_order_relaxed) == 0)
        return;
    atomic_fetch_add_explicit(&condvar->priv_seq, 1, memory_order_relaxed);
    moirai_unpark_all(&condvar->priv_seq);
}
