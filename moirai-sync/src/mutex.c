/* Mutex: three-state futex lock with bounded adaptive spinning.
 *
 * States of the lock word (Drepper, "Futexes Are Tricky", 2011, mutex2):
 *
 *   FREE       nobody holds the lock
 *   LOCKED     held, and no thread has parked since it was taken
 *   CONTENDED  held, and a thread may be parked on the word
 *
 * lock:   CAS FREE -> LOCKED; on failure spin a bounded number of rounds
 *         re-reading the word and retrying the CAS when it reads FREE; then
 *         exchange in CONTENDED and park while the exchange did not return
 *         FREE. A thread that parks has always stored CONTENDED first, so
 *         the unlock that frees the lock sees it and wakes someone.
 * unlock: exchange in FREE; if the old value was CONTENDED, unpark one.
 *
 * A woken thread takes the lock with the exchange, so it re-establishes
 * CONTENDED for the threads that may still be parked (at worst one needless
 * wake-up later; never a lost one).
 *
 * Spinning: see MOIRAI__SPIN_PAUSES in lock_internal.h for why a short,
 * bounded spin comes before parking, and lock_slow() for when it is
 * skipped.
 *
 * MOIRAI_MUTANT_RELAXED_UNLOCK builds a deliberately broken mutex whose
 * unlock does not release, for the mutant suite (tests/sync/meson.build):
 * the data-race test in test_mutex.c must then fail under ThreadSanitizer.
 * TSan trusts annotated locks and ignores the atomics inside them, so the
 * mutant also drops the annotations; TSan then judges the orderings of the
 * atomics themselves. */
#ifdef MOIRAI_MUTANT_RELAXED_UNLOCK
#define MOIRAI_TSAN_NO_ANNOTATIONS 1
#define UNLOCK_ORDER               memory_order_relaxed
#else
#define UNLOCK_ORDER memory_order_release
#endif

#include <moirai/sync/mutex.h>

#include <errno.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>

#include "lock_internal.h"
#include "lockstat_internal.h"
#include "tsan.h"

enum { FREE = 0, LOCKED = 1, CONTENDED = 2 };

_Static_assert(sizeof(moirai_mutex_t) == 4, "moirai_mutex_t is 4 bytes in the ABI");
_Static_assert(_Alignof(moirai_mutex_t) == 4, "moirai_mutex_t is 4-byte aligned in the ABI");
_Static_assert(sizeof(_Atomic uint32_t) == sizeof(uint32_t), "the lock word is a plain futex word");

bool moirai__mutex_try_lock_raw(moirai_mutex_t *mutex)
{
    uint32_t expected = FREE;
    /* Acquire on success: the critical section must see everything the
     * previous holder wrote before its release in unlock. Relaxed on
     * failure: we learn nothing and take nothing. */
    return atomic_compare_exchange_strong_explicit(&mutex->priv_state, &expected, LOCKED,
                                                   memory_order_acquire, memory_order_relaxed);
}

/* The contended path of lock and lock_timed. */
static int lock_slow(moirai_mutex_t *mutex, uint64_t deadline)
{
    /* Spin, adaptively: only while no thread is parked (parking_lot and
     * WebKit's WTF::Lock do the same). Once someone sleeps the lock is
     * contended for longer than a spin covers, and a spinner would only
     * take the cache line away from the holder and the thread being woken.
     * Between looks at the word we pause 1, 2, 4 ... 16 times, so a long
     * wait reads the line rarely. Relaxed loads: we only look; the CAS
     * acquires. */
    uint32_t pauses = 1;
    for (uint32_t spent = 0; spent < MOIRAI__SPIN_PAUSES; spent += pauses) {
        uint32_t state = atomic_load_explicit(&mutex->priv_state, memory_order_relaxed);
        if (state == FREE) {
            /* Acquire on success, as in try_lock. Taking it as LOCKED even if
             * threads are parked is safe: a parked thread that wakes stores
             * CONTENDED again before it parks once more. */
            if (atomic_compare_exchange_weak_explicit(&mutex->priv_state, &state, LOCKED,
                                                      memory_order_acquire, memory_order_relaxed))
                return 0;
        }
        if (state == CONTENDED)
            break;
        for (uint32_t i = 0; i < pauses; i++)
            moirai_cpu_relax();
        if (pauses < 16)
            pauses *= 2;
    }

    /* Park. The exchange announces a (possible) waiter before we sleep, so
     * the unlock that frees the word will wake us; acquire because, when it
     * returns FREE, we now hold the lock. */
    uint32_t old = atomic_exchange_explicit(&mutex->priv_state, CONTENDED, memory_order_acquire);
    while (old != FREE) {
        moirai_tsan_pre_divert(mutex);
        int rc = moirai_park_nospin_for(&mutex->priv_state, CONTENDED, deadline, "mutex");
        moirai_tsan_post_divert(mutex);
        old = atomic_exchange_explicit(&mutex->priv_state, CONTENDED, memory_order_acquire);
        /* Try once more after a timeout before giving up: if a wake-up was
         * meant for us we take the lock rather than strand it, and if not
         * we leave CONTENDED behind, which costs at most a spare wake. */
        if (old != FREE && rc == -ETIMEDOUT)
            return -ETIMEDOUT;
    }
    return 0;
}

/* The contended path of the public lock and lock_timed: lock_slow(), timed
 * for the contention statistics when they are on (lockstat_internal.h).
 * Internal users of the raw mutex (the rwlock's writer lock) record under
 * their own kind instead. */
static int lock_contended(moirai_mutex_t *mutex, uint64_t deadline)
{
    uint64_t t0 = moirai__lockstat_start();
    int rc = lock_slow(mutex, deadline);
    if (rc == 0)
        moirai__lockstat_acquired(mutex, MOIRAI_LOCK_KIND_MUTEX, t0);
    return rc;
}

int moirai__mutex_lock_raw(moirai_mutex_t *mutex, uint64_t deadline)
{
    if (moirai__mutex_try_lock_raw(mutex))
        return 0;
    return lock_slow(mutex, deadline);
}

void moirai__mutex_unlock_raw(moirai_mutex_t *mutex)
{
    /* Release: publishes the critical section to the next holder's acquire.
     * An exchange rather than a store because we must learn atomically
     * whether someone announced itself as parked. */
    uint32_t old = atomic_exchange_explicit(&mutex->priv_state, FREE, UNLOCK_ORDER);
    if (old == CONTENDED) {
        /* Every caller is inside an annotated unlock, where TSan ignores
         * synchronization; the wake-up must be seen: a parking hook hands
         * the woken fiber to another thread through its own locks. */
        moirai_tsan_pre_divert(mutex);
        moirai_unpark_one(&mutex->priv_state);
        moirai_tsan_post_divert(mutex);
    }
}

void moirai_mutex_init(moirai_mutex_t *mutex)
{
    atomic_init(&mutex->priv_state, FREE);
    moirai_tsan_create(mutex, MOIRAI_TSAN_NOT_STATIC);
}

void moirai_mutex_destroy(moirai_mutex_t *mutex)
{
    moirai__lockstat_forget_if_known(mutex);
    moirai_tsan_destroy(mutex, MOIRAI_TSAN_NOT_STATIC);
}

void moirai_mutex_lock(moirai_mutex_t *mutex)
{
    moirai_tsan_pre_lock(mutex, 0);
    if (!moirai__mutex_try_lock_raw(mutex))
        (void)lock_contended(mutex, MOIRAI_DEADLINE_NEVER);
    moirai_tsan_post_lock(mutex, 0);
}

bool moirai_mutex_try_lock(moirai_mutex_t *mutex)
{
    moirai_tsan_pre_lock(mutex, MOIRAI_TSAN_TRY);
    bool ok = moirai__mutex_try_lock_raw(mutex);
    moirai_tsan_post_lock(mutex, ok ? MOIRAI_TSAN_TRY : MOIRAI_TSAN_TRY | MOIRAI_TSAN_TRY_FAIL);
    return ok;
}

int moirai_mutex_lock_timed(moirai_mutex_t *mutex, uint64_t deadline)
{
    /* TSan sees a timed lock as a try: it may fail, and a failure must not
     * count as a lock for its deadlock detector. */
    moirai_tsan_pre_lock(mutex, MOIRAI_TSAN_TRY);
    int rc = moirai__mutex_try_lock_raw(mutex) ? 0 : lock_contended(mutex, deadline);
    moirai_tsan_post_lock(mutex,
                          rc == 0 ? MOIRAI_TSAN_TRY : MOIRAI_TSAN_TRY | MOIRAI_TSAN_TRY_FAIL);
    return rc;
}

void moirai_mutex_unlock(moirai_mutex_t *mutex)
{
    moirai_tsan_pre_unlock(mutex, 0);
    moirai__mutex_unlock_raw(mutex);
    moirai_tsan_post_unlock(mutex, 0);
}
