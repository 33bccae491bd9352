/* The priority-inheritance mutex on the kernel's PI futex.
 *
 * Protocol (futex(2), "Priority-inheritance futexes"): the 32-bit word is
 * 0 when free and the owner's thread id when held; the kernel sets
 * FUTEX_WAITERS in it while threads sleep on it. Lock tries 0 -> tid in
 * user space and otherwise asks the kernel (FUTEX_LOCK_PI2, which takes a
 * CLOCK_MONOTONIC deadline; FUTEX_LOCK_PI on kernels before 5.14, whose
 * deadline is on CLOCK_REALTIME). Unlock tries tid -> 0 and otherwise asks
 * the kernel (FUTEX_UNLOCK_PI), which hands the lock to the most urgent
 * waiter. */
#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <moirai/core/clock.h>
#include <moirai/rt/lock.h>

#include "lock_internal.h"
#include "tsan.h"

#ifndef FUTEX_LOCK_PI2
#define FUTEX_LOCK_PI2 13
#endif

_Static_assert(sizeof(moirai_rt_pi_mutex_t) == sizeof(_Atomic uint32_t),
               "the public storage holds the futex word");

/* The caller's thread id and held-lock count. Initial-exec TLS: a fixed
 * offset from the thread pointer, instead of a __tls_get_addr call per
 * access (the default for a shared library), which would cost more than
 * the uncontended lock itself. The 8 bytes fit glibc's static TLS
 * reserve even when the library is loaded with dlopen. */
static __thread struct {
    uint32_t tid;
    int held;
} self __attribute__((tls_model("initial-exec")));
#define cached_tid self.tid
#define held_count self.held

uint32_t moirai__lock_tid(void)
{
    if (!cached_tid)
        cached_tid = (uint32_t)syscall(SYS_gettid);
    return cached_tid;
}

void moirai__lock_held_add(int delta)
{
    held_count += delta;
}

int moirai_rt_locks_held(void)
{
    return held_count;
}

static _Atomic uint32_t *word_of(moirai_rt_pi_mutex_t *m)
{
    return (_Atomic uint32_t *)&m->priv_word;
}

static long futex_pi(_Atomic uint32_t *word, int op, const struct timespec *ts)
{
    return syscall(SYS_futex, word, op | FUTEX_PRIVATE_FLAG, 0, ts, NULL, 0);
}

/* Whether FUTEX_LOCK_PI2 exists; cleared on the first ENOSYS. Relaxed:
 * every thread may discover it independently. */
static _Atomic bool have_lock_pi2 = true;

/* The kernel part of a contended lock. Returns 0, -ETIMEDOUT or -EDEADLK. */
static int lock_kernel(_Atomic uint32_t *word, uint64_t deadline)
{
    for (;;) {
        struct timespec ts, *tsp = NULL;
        int op = FUTEX_LOCK_PI;
        if (deadline != MOIRAI_DEADLINE_NEVER) {
            if (atomic_load_explicit(&have_lock_pi2, memory_order_relaxed)) {
                op = FUTEX_LOCK_PI2;
                ts.tv_sec = (time_t)(deadline / MOIRAI_NS_PER_S);
                ts.tv_nsec = (long)(deadline % MOIRAI_NS_PER_S);
            } else {
                /* FUTEX_LOCK_PI measures on CLOCK_REALTIME: translate. */
                struct timespec real;
                clock_gettime(CLOCK_REALTIME, &real);
                uint64_t left = moirai_deadline_remaining(deadline);
                uint64_t at =
                    (uint64_t)real.tv_sec * MOIRAI_NS_PER_S + (uint64_t)real.tv_nsec + left;
                ts.tv_sec = (time_t)(at / MOIRAI_NS_PER_S);
                ts.tv_nsec = (long)(at % MOIRAI_NS_PER_S);
            }
            tsp = &ts;
        }
        if (futex_pi(word, op, tsp) == 0)
            return 0;
        switch (errno) {
        case ENOSYS:
            if (op == FUTEX_LOCK_PI2) {
                atomic_store_explicit(&have_lock_pi2, false, memory_order_relaxed);
                continue;
            }
            return -ENOSYS;
        case EINTR:
        case EAGAIN: /* the owner is exiting: try again */
            continue;
        case ETIMEDOUT:
            return -ETIMEDOUT;
        case EDEADLK:
            return -EDEADLK;
        default:
            return -errno;
        }
    }
}

int moirai__pi_lock(moirai_rt_pi_mutex_t *mutex, uint64_t deadline, bool try_only)
{
    _Atomic uint32_t *word = word_of(mutex);
    uint32_t tid = moirai__lock_tid();
    uint32_t expected = 0;
    /* Acquire: the critical section reads what the previous owner wrote
     * before its release. */
    if (atomic_compare_exchange_strong_explicit(word, &expected, tid, memory_order_acquire,
                                                memory_order_relaxed)) {
        held_count++;
        return 0;
    }
    if ((expected & FUTEX_TID_MASK) == tid)
        return -EDEADLK;
    if (try_only)
        return -EBUSY;
    int rc = lock_kernel(word, deadline);
    if (rc == 0) {
        /* The kernel wrote our tid into the word; this load orders our
         * critical section after the previous owner's (the kernel's own
         * locking orders the hand-over; the acquire load makes it visible
         * to the C memory model). */
        (void)atomic_load_explicit(word, memory_order_acquire);
        held_count++;
    }
    return rc;
}

int moirai__pi_unlock(moirai_rt_pi_mutex_t *mutex)
{
    _Atomic uint32_t *word = word_of(mutex);
    uint32_t tid = moirai__lock_tid();
    uint32_t expected = tid;
    /* Release: the critical section's writes reach the next owner. */
    if (atomic_compare_exchange_strong_explicit(word, &expected, 0, memory_order_release,
                                                memory_order_relaxed)) {
        held_count--;
        return 0;
    }
    if ((expected & FUTEX_TID_MASK) != tid)
        return -EPERM;
    /* Waiters are queued: the kernel hands over. A release store is not
     * possible here (the kernel writes the word), so an atomic RMW that
     * changes nothing publishes our writes first. */
    (void)atomic_fetch_or_explicit(word, 0, memory_order_release);
    if (futex_pi(word, FUTEX_UNLOCK_PI, NULL) != 0)
        return -errno;
    held_count--;
    return 0;
}

void moirai_rt_pi_mutex_init(moirai_rt_pi_mutex_t *mutex)
{
    if (!mutex)
        return;
    atomic_init(word_of(mutex), 0);
    rt_tsan_create(mutex);
}

void moirai_rt_pi_mutex_destroy(moirai_rt_pi_mutex_t *mutex)
{
    if (mutex)
        rt_tsan_destroy(mutex);
}

int moirai_rt_pi_mutex_lock(moirai_rt_pi_mutex_t *mutex)
{
    return moirai_rt_pi_mutex_lock_timed(mutex, MOIRAI_DEADLINE_NEVER);
}

int moirai_rt_pi_mutex_lock_timed(moirai_rt_pi_mutex_t *mutex, uint64_t deadline)
{
    if (!mutex)
        return -EINVAL;
    /* TSan sees every lock as a try: it can fail (recursion, deadline). */
    rt_tsan_pre_lock(mutex, RT_TSAN_TRY);
    int rc = moirai__pi_lock(mutex, deadline, false);
    rt_tsan_post_lock(mutex, rc == 0 ? RT_TSAN_TRY : RT_TSAN_TRY | RT_TSAN_TRY_FAIL);
    return rc;
}

int moirai_rt_pi_mutex_try_lock(moirai_rt_pi_mutex_t *mutex)
{
    if (!mutex)
        return -EINVAL;
    rt_tsan_pre_lock(mutex, RT_TSAN_TRY);
    int rc = moirai__pi_lock(mutex, MOIRAI_DEADLINE_NEVER, true);
    rt_tsan_post_lock(mutex, rc == 0 ? RT_TSAN_TRY : RT_TSAN_TRY | RT_TSAN_TRY_FAIL);
    return rc;
}

int moirai_rt_pi_mutex_unlock(moirai_rt_pi_mutex_t *mutex)
{
    if (!mutex)
        return -EINVAL;
    /* Ownership is checked before TSan is told, so a refused unlock is not
     * recorded as one. */
    if ((atomic_load_explicit(word_of(mutex), memory_order_relaxed) & FUTEX_TID_MASK) !=
        moirai__lock_tid())
        return -EPERM;
    rt_tsan_pre_unlock(mutex);
    int rc = moirai__pi_unlock(mutex);
    rt_tsan_post_unlock(mutex);
    return rc;
}
