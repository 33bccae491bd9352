/* moirai_park_either(): one thread asleep on two futex words at once.
 *
 * A scheduler's worker that helps while a task joins a handle must wake
 * for either of two things: the handle finishing (its completer unparks
 * the handle's word) or new work for the worker (the scheduler unparks a
 * word of the worker's own). Neither waker knows the other's word, and
 * sleeping on one word with a timeout to look at the other would either
 * wake an idle worker over and over or leave work waiting, so the wait
 * uses futex_waitv (Linux 5.16), which queues the thread on both words
 * atomically with comparing them.
 *
 * Where the kernel lacks futex_waitv (ENOSYS: before 5.16, or under
 * QEMU's user-mode emulation), the thread sleeps on `addr` alone in
 * slices of FALLBACK_SLICE_NS and re-reads `addr2` between them: an
 * unpark of `addr2` is then seen up to one slice late, never lost. */
#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>

#include "park_internal.h"

#define FALLBACK_SLICE_NS (1 * MOIRAI_NS_PER_MS)

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449 /* the same number on every architecture */
#endif

/* Set once futex_waitv has returned ENOSYS (relaxed: every thread that
 * has not seen it yet simply finds ENOSYS itself). */
static _Atomic int waitv_missing;

static int sleep_sliced(_Atomic uint32_t *addr, uint32_t expected, _Atomic uint32_t *addr2,
                        uint32_t expected2, uint64_t deadline)
{
    /* Relaxed: the caller re-reads its conditions with acquire. */
    if (atomic_load_explicit(addr2, memory_order_relaxed) != expected2)
        return 0;
    uint64_t slice = moirai_clock_now_ns() + FALLBACK_SLICE_NS;
    int rc = moirai_park_nospin(addr, expected, slice < deadline ? slice : deadline);
    return rc == -ETIMEDOUT && !moirai_deadline_expired(deadline) ? 0 : rc;
}

int moirai_park_either(MOIRAI_ATOMIC(uint32_t) *addr, uint32_t expected,
                       MOIRAI_ATOMIC(uint32_t) *addr2, uint32_t expected2, uint64_t deadline)
{
    if (addr == NULL || addr2 == NULL)
        return -EINVAL;
    if (moirai__park_hook_applies())
        return -EPERM;
    /* Relaxed: shortcuts only; the kernel compares both words again. */
    if (atomic_load_explicit(addr, memory_order_relaxed) != expected ||
        atomic_load_explicit(addr2, memory_order_relaxed) != expected2)
        return 0;
    if (moirai_deadline_expired(deadline))
        return -ETIMEDOUT;
    if (atomic_load_explicit(&waitv_missing, memory_order_relaxed))
        return sleep_sliced(addr, expected, addr2, expected2, deadline);

    struct futex_waitv w[2] = {
        {.val = expected, .uaddr = (uintptr_t)addr, .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG},
        {.val = expected2, .uaddr = (uintptr_t)addr2, .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG},
    };
    struct timespec ts, *timeout = NULL;
    if (deadline != MOIRAI_DEADLINE_NEVER) {
        ts.tv_sec = (time_t)(deadline / MOIRAI_NS_PER_S);
        ts.tv_nsec = (long)(deadline % MOIRAI_NS_PER_S);
        timeout = &ts;
    }
    /* Counted as a sleeper on both words before the kernel compares them,
     * seq_cst, as futex_wait() in park.c does for one. */
    _Atomic uint32_t *c1 = moirai__park_sleepers(addr), *c2 = moirai__park_sleepers(addr2);
    atomic_fetch_add_explicit(c1, 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(c2, 1, memory_order_seq_cst);
    long rc = syscall(SYS_futex_waitv, w, 2u, 0u, timeout, CLOCK_MONOTONIC);
    int err = errno;
    /* Relaxed: only the wakers' checks need ordering. */
    atomic_fetch_sub_explicit(c2, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(c1, 1, memory_order_relaxed);
    if (rc >= 0)
        return 0;
    if (err == ETIMEDOUT)
        return -ETIMEDOUT;
    if (err == ENOSYS) {
        atomic_store_explicit(&waitv_missing, 1, memory_order_relaxed);
        return sleep_sliced(addr, expected, addr2, expected2, deadline);
    }
    /* EAGAIN (a word differed), EINTR, or a spurious wake-up: the caller
     * re-checks. */
    return 0;
}
