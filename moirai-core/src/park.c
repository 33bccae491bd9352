/* The parking layer: futexes for threads, a hook for fiber runtimes.
 *
 * Waiting uses FUTEX_WAIT_BITSET because it takes an absolute timeout on
 * CLOCK_MONOTONIC, the clock of Moirai deadlines, so a retried wait keeps
 * its original limit without recomputing a relative timeout. Every futex is
 * process-private (FUTEX_PRIVATE_FLAG): the kernel then keys it by address
 * alone, skipping the shared-mapping lookup. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>
#include <moirai/core/spin.h>

#include "moirai_probe.h"
#include "park_internal.h"

/* How long moirai_park() spins before sleeping. A cross-CPU futex wake
 * costs 10-20 us on the VMs Moirai is developed on; a few microseconds of
 * spinning catch hand-offs that complete within that time at a fraction of
 * the cost, while a longer spin only burns the waker's CPU on a busy
 * machine. */
#define PARK_SPIN_NS (4 * MOIRAI_NS_PER_US)

/* Pauses checked between clock reads while spinning: reading the clock costs
 * about as much as a few pause instructions, so it is not done on every
 * iteration. */
#define PARK_SPIN_BATCH 16

/* Threads about to sleep, or asleep, in FUTEX_WAIT, counted per hash of
 * the address they wait on. A waker whose bucket count is zero skips the
 * FUTEX_WAKE system call (160-200 ns even with nobody to wake), which
 * matters most when the waiters are fibers woken through the hook.
 *
 * Why no wake-up is lost: the sleeper raises the count (a seq_cst
 * read-modify-write) before the kernel compares the word, and the waker
 * changes the word before reading the count with a seq_cst
 * read-modify-write too; both are full barriers on the targets Moirai
 * supports (a locked instruction on x86-64, ldaxr/stlxr on aarch64, where
 * a release store followed by an acquire load is not reordered), so either
 * the waker sees the count or the kernel sees the new word. Buckets are on
 * lines of their own: a count shared between unrelated locks would make
 * every wake of one write the line the other's waiters spin on. */
#define SLEEPER_BUCKETS 64

static struct {
    _Alignas(64) _Atomic uint32_t n;
} sleepers[SLEEPER_BUCKETS];

_Atomic uint32_t *moirai__park_sleepers(const void *addr)
{
    uint64_t h = ((uint64_t)(uintptr_t)addr >> 2) * UINT64_C(0x9E3779B97F4A7C15);
    return &sleepers[h >> (64 - 6)].n;
}

_Static_assert(SLEEPER_BUCKETS == 64, "moirai__park_sleepers() takes the top 6 bits");

/* The installed hook, or NULL. */
static _Atomic(const moirai_park_hook_t *) park_hook = NULL;

static const moirai_park_hook_t *hook_get(void)
{
    /* Acquire pairs with the release store in moirai_park_hook_set(): a
     * thread that sees the hook pointer sees the fields it points to. */
    return atomic_load_explicit(&park_hook, memory_order_acquire);
}

bool moirai__park_hook_applies(void)
{
    const moirai_park_hook_t *hook = hook_get();
    return hook != NULL && hook->applies(hook->arg);
}

int moirai_park_hook_set(const moirai_park_hook_t *hook)
{
    if (hook != NULL && (hook->applies == NULL || hook->park == NULL || hook->unpark == NULL))
        return -EINVAL;
    atomic_store_explicit(&park_hook, hook, memory_order_release);
    return 0;
}

/* Sleeps on the futex at `addr` while it holds `expected`, until woken, the
 * deadline, a signal or a spurious wake-up. */
static int futex_wait(_Atomic uint32_t *addr, uint32_t expected, uint64_t deadline)
{
    /* Relaxed: this is only a shortcut. The kernel re-reads the word
     * atomically with queueing the waiter, which is what prevents a lost
     * wake-up, and callers order their data with their own acquire load. */
    if (atomic_load_explicit(addr, memory_order_relaxed) != expected)
        return 0;

    struct timespec ts;
    struct timespec *timeout = NULL;
    if (deadline != MOIRAI_DEADLINE_NEVER) {
        /* Checked before sleeping so a deadline that has passed reports
         * -ETIMEDOUT without a system call. */
        if (moirai_deadline_expired(deadline))
            return -ETIMEDOUT;
        ts.tv_sec = (time_t)(deadline / MOIRAI_NS_PER_S);
        ts.tv_nsec = (long)(deadline % MOIRAI_NS_PER_S);
        timeout = &ts;
    }
    _Atomic uint32_t *count = moirai__park_sleepers(addr);
    MOIRAI_PROBE3(park, addr, expected, deadline);
    atomic_fetch_add_explicit(count, 1, memory_order_seq_cst);
    long rc = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected,
                      timeout, NULL, FUTEX_BITSET_MATCH_ANY);
    int err = errno;
    /* Relaxed: only the waker's check above needs ordering. */
    atomic_fetch_sub_explicit(count, 1, memory_order_relaxed);
    errno = err;
    if (rc == -1 && errno == ETIMEDOUT)
        return -ETIMEDOUT;
    /* Woken, EAGAIN (the word differed), EINTR (a signal) or anything else:
     * the caller re-checks its condition, which is always correct. */
    return 0;
}

static int futex_wake(_Atomic uint32_t *addr, int count)
{
    /* An RMW, not a load: it orders the caller's change of the word before
     * the look at the count (see `sleepers`). */
    if (atomic_fetch_add_explicit(moirai__park_sleepers(addr), 0, memory_order_seq_cst) == 0)
        return 0;
    long rc =
        syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, count, NULL, NULL, 0);
    MOIRAI_PROBE2(unpark, addr, rc);
    return rc > 0 ? (int)rc : 0;
}

int moirai_park_nospin(_Atomic uint32_t *addr, uint32_t expected, uint64_t deadline)
{
    const moirai_park_hook_t *hook = hook_get();
    if (hook != NULL && hook->applies(hook->arg))
        return hook->park(hook->arg, addr, expected, deadline);
    return futex_wait(addr, expected, deadline);
}

int moirai_park(_Atomic uint32_t *addr, uint32_t expected, uint64_t deadline)
{
    const moirai_park_hook_t *hook = hook_get();
    /* A hooked waiter is not spun: suspending a fiber costs far less than a
     * futex round trip, and spinning would hold up the fibers queued behind
     * it on the same worker. */
    if (hook != NULL && hook->applies(hook->arg))
        return hook->park(hook->arg, addr, expected, deadline);

    uint64_t spin_until = 0;
    for (;;) {
        for (int i = 0; i < PARK_SPIN_BATCH; i++) {
            /* Relaxed: see futex_wait(); the caller re-reads with acquire. */
            if (atomic_load_explicit(addr, memory_order_relaxed) != expected)
                return 0;
            moirai_cpu_relax();
        }
        uint64_t now = moirai_clock_now_ns();
        if (spin_until == 0)
            spin_until = now + PARK_SPIN_NS;
        else if (now >= spin_until)
            break;
        if (deadline != MOIRAI_DEADLINE_NEVER && now >= deadline)
            return -ETIMEDOUT;
    }
    return futex_wait(addr, expected, deadline);
}

int moirai_unpark_one(_Atomic uint32_t *addr)
{
    const moirai_park_hook_t *hook = hook_get();
    if (hook != NULL && hook->unpark(hook->arg, addr, 1) > 0)
        return 1;
    return futex_wake(addr, 1);
}

int moirai_unpark_all(_Atomic uint32_t *addr)
{
    const moirai_park_hook_t *hook = hook_get();
    int woken = 0;
    if (hook != NULL) {
        woken = hook->unpark(hook->arg, addr, INT_MAX);
        if (woken < 0)
            woken = 0;
    }
    int futex_woken = futex_wake(addr, INT_MAX);
    /* Saturate rather than overflow; nobody can count that many waiters. */
    return futex_woken > INT_MAX - woken ? INT_MAX : woken + futex_woken;
}

/* What the hooked park in progress on this thread waits for (see
 * moirai_park_for()). Set just before the hook's park and cleared after
 * it, through noinline accessors with a compiler barrier: a fiber may
 * come back from the hook on another thread, and the address of this
 * thread-local must then be computed afresh, never reused. */
/* Initial-exec: one instruction to reach, instead of a __tls_get_addr
 * call per park (the general-dynamic model of a shared library). */
static __thread const char *park_what __attribute__((tls_model("initial-exec")));

__attribute__((noinline)) static void park_what_set(const char *what)
{
    park_what = what;
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) const char *moirai_park_what(void)
{
    __asm__ volatile("" ::: "memory");
    return park_what;
}

static int park_hooked_for(const moirai_park_hook_t *hook, _Atomic uint32_t *addr,
                           uint32_t expected, uint64_t deadline, const char *what)
{
    park_what_set(what);
    int rc = hook->park(hook->arg, addr, expected, deadline);
    park_what_set(NULL);
    return rc;
}

int moirai_park_for(_Atomic uint32_t *addr, uint32_t expected, uint64_t deadline, const char *what)
{
    const moirai_park_hook_t *hook = hook_get();
    if (hook != NULL && hook->applies(hook->arg))
        return park_hooked_for(hook, addr, expected, deadline, what);
    return moirai_park(addr, expected, deadline);
}

int moirai_park_nospin_for(_Atomic uint32_t *addr, uint32_t expected, uint64_t deadline,
                           const char *what)
{
    const moirai_park_hook_t *hook = hook_get();
    if (hook != NULL && hook->applies(hook->arg))
        return park_hooked_for(hook, addr, expected, deadline, what);
    return futex_wait(addr, expected, deadline);
}
