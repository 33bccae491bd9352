/* Spinlocks: test-and-test-and-set with exponential backoff, and a ticket
 * lock with proportional backoff (Mellor-Crummey and Scott, "Algorithms
 * for Scalable Synchronization on Shared-Memory Multiprocessors", 1991).
 *
 * Both fall back to sched_yield() once a waiter has spun for a while: on
 * an oversubscribed machine (or a VM whose vCPU is descheduled) the holder
 * may not be running at all, and yielding is the only way to let it. A
 * yield is not parking: the thread stays runnable, nothing waits for a
 * wake-up, so the parking layer is not involved. */
#include <moirai/sync/spinlock.h>

#include <sched.h>

#include "lock_internal.h"
#include "lockstat_internal.h"
#include "tsan.h"

/* Backoff limits, in pause instructions. */
#define BACKOFF_MIN 4
#define BACKOFF_MAX 1024
/* Pauses a waiter spends before it starts yielding between attempts. A
 * pause takes 10-140 cycles on bare metal, and about 80 ns on the VMs we
 * measured (the hypervisor intercepts pause loops), so this is roughly
 * 10-100 us: far longer than any critical section a spinlock is meant
 * for, so reaching it means the holder is probably not running. */
#define YIELD_AFTER 1024u

_Static_assert(sizeof(moirai_spinlock_t) == 4, "moirai_spinlock_t is 4 bytes in the ABI");
_Static_assert(sizeof(moirai_ticketlock_t) == 8, "moirai_ticketlock_t is 8 bytes in the ABI");

/* Spins `n` pauses, or yields once the waiter has spun `*spent` pauses
 * past YIELD_AFTER. */
static void spin_wait(uint32_t n, uint32_t *spent)
{
    if (*spent >= YIELD_AFTER) {
        sched_yield();
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        moirai_cpu_relax();
    *spent += n;
}

void moirai_spinlock_init(moirai_spinlock_t *lock)
{
    atomic_init(&lock->priv_locked, 0);
    moirai_tsan_create(lock, MOIRAI_TSAN_NOT_STATIC);
}

void moirai_spinlock_destroy(moirai_spinlock_t *lock)
{
    moirai__lockstat_forget_if_known(lock);
    moirai_tsan_destroy(lock, MOIRAI_TSAN_NOT_STATIC);
}

static inline bool spin_try(moirai_spinlock_t *lock)
{
    /* Acquire on success: the critical section must see the previous
     * holder's release. The relaxed load first keeps a busy lock's line
     * shared instead of stealing it with a failing exchange. */
    return atomic_load_explicit(&lock->priv_locked, memory_order_relaxed) == 0 &&
           atomic_exchange_explicit(&lock->priv_locked, 1, memory_order_acquire) == 0;
}

/* The contended path of moirai_spinlock_lock(), after a failed first try;
 * timed for the contention statistics when they are on. */
static void spin_slow(moirai_spinlock_t *lock)
{
    uint64_t t0 = moirai__lockstat_start();
    uint32_t backoff = BACKOFF_MIN, spent = 0;
    do {
        /* Test: wait for the lock to look free, reading only. */
        while (atomic_load_explicit(&lock->priv_locked, memory_order_relaxed) != 0) {
            spin_wait(backoff, &spent);
            if (backoff < BACKOFF_MAX)
                backoff *= 2;
        }
    } while (!spin_try(lock));
    moirai__lockstat_acquired(lock, MOIRAI_LOCK_KIND_SPIN, t0);
}

void moirai_spinlock_lock(moirai_spinlock_t *lock)
{
    moirai_tsan_pre_lock(lock, 0);
    if (!spin_try(lock))
        spin_slow(lock);
    moirai_tsan_post_lock(lock, 0);
}

bool moirai_spinlock_try_lock(moirai_spinlock_t *lock)
{
    moirai_tsan_pre_lock(lock, MOIRAI_TSAN_TRY);
    bool ok = spin_try(lock);
    moirai_tsan_post_lock(lock, MOIRAI_TSAN_TRY | (ok ? 0u : MOIRAI_TSAN_TRY_FAIL));
    return ok;
}

void moirai_spinlock_unlock(moirai_spinlock_t *lock)
{
    moirai_tsan_pre_unlock(lock, 0);
    /* Release: publishes the critical section to the next acquirer. */
    atomic_store_explicit(&lock->priv_locked, 0, memory_order_release);
    moirai_tsan_post_unlock(lock, 0);
}

void moirai_ticketlock_init(moirai_ticketlock_t *lock)
{
    atomic_init(&lock->priv_next, 0);
    atomic_init(&lock->priv_serving, 0);
    moirai_tsan_create(lock, MOIRAI_TSAN_NOT_STATIC);
}

void moirai_ticketlock_destroy(moirai_ticketlock_t *lock)
{
    moirai__lockstat_forget_if_known(lock);
    moirai_tsan_destroy(lock, MOIRAI_TSAN_NOT_STATIC);
}

void moirai_ticketlock_lock(moirai_ticketlock_t *lock)
{
    moirai_tsan_pre_lock(lock, 0);
    /* Relaxed: drawing a ticket orders nothing; the acquire is the load of
     * `serving` that admits us. */
    uint32_t ticket = atomic_fetch_add_explicit(&lock->priv_next, 1, memory_order_relaxed);
    uint32_t spent = 0;
    /* The statistics' clock starts when the first look finds another
     * ticket served (the contended path); 0 while not started or off. */
    uint64_t t0 = 0;
    bool first = true;
    for (;;) {
        /* Acquire: pairs with the release store of the unlock that serves
         * our ticket. */
        uint32_t serving = atomic_load_explicit(&lock->priv_serving, memory_order_acquire);
        if (serving == ticket)
            break;
        if (first) {
            first = false;
            t0 = moirai__lockstat_start();
        }
        /* Proportional backoff: the further back in line, the longer the
         * wait, so the line is not polled by everyone at once. Unsigned
         * subtraction handles wrap-around. */
        spin_wait((ticket - serving) * BACKOFF_MIN, &spent);
    }
    moirai__lockstat_acquired(lock, MOIRAI_LOCK_KIND_TICKET, t0);
    moirai_tsan_post_lock(lock, 0);
}

bool moirai_ticketlock_try_lock(moirai_ticketlock_t *lock)
{
    moirai_tsan_pre_lock(lock, MOIRAI_TSAN_TRY);
    /* Acquire: when the lock is free, `serving` was last written by the
     * previous holder's release store; reading it acquires that critical
     * section. The CAS then only claims the ticket (relaxed). */
    uint32_t serving = atomic_load_explicit(&lock->priv_serving, memory_order_acquire);
    uint32_t expected = serving;
    bool ok = atomic_compare_exchange_strong_explicit(&lock->priv_next, &expected, serving + 1,
                                                      memory_order_relaxed, memory_order_relaxed);
    moirai_tsan_post_lock(lock, MOIRAI_TSAN_TRY | (ok ? 0u : MOIRAI_TSAN_TRY_FAIL));
    return ok;
}

void moirai_ticketlock_unlock(moirai_ticketlock_t *lock)
{
    moirai_tsan_pre_unlock(lock, 0);
    /* Only the holder writes `serving`, so a relaxed load and a plain
     * increment suffice; release publishes the critical section to the
     * next ticket's acquire load. */
    uint32_t serving = atomic_load_explicit(&lock->priv_serving, memory_order_relaxed);
    atomic_store_explicit(&lock->priv_serving, serving + 1, memory_order_release);
    moirai_tsan_post_unlock(lock, 0);
}
