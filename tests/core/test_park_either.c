/* moirai_park_either(): one thread asleep on two words, woken by an unpark
 * of either; its errors; and the handle waiter that lets a scheduler's
 * worker help while a task joins a handle (moirai_handle_waiter_set()).
 *
 * Lost wake-ups show as hangs (each test has a timeout). Where the kernel
 * has futex_waitv the tests first wait until the sleeper is really in it
 * (/proc/self/task/<tid>/syscall); elsewhere (QEMU's aarch64 emulation)
 * the sliced fallback is what runs. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <moirai/core.h>

#include "futex_probe.h"
#include "test_scale.h"

Test(park_either, null_address_is_einval, .timeout = 10)
{
    _Atomic uint32_t a = 0;
    cr_assert_eq(moirai_park_either(NULL, 0, &a, 0, MOIRAI_DEADLINE_NEVER), -EINVAL);
    cr_assert_eq(moirai_park_either(&a, 0, NULL, 0, MOIRAI_DEADLINE_NEVER), -EINVAL);
}

Test(park_either, a_word_that_differs_returns_at_once, .timeout = 10)
{
    _Atomic uint32_t a = 0, b = 0;
    cr_assert_eq(moirai_park_either(&a, 1, &b, 0, MOIRAI_DEADLINE_NEVER), 0);
    cr_assert_eq(moirai_park_either(&a, 0, &b, 1, MOIRAI_DEADLINE_NEVER), 0);
    /* Checked before the deadline, as moirai_park() does. */
    cr_assert_eq(moirai_park_either(&a, 0, &b, 1, 0), 0);
}

Test(park_either, deadline_times_out_after_it, .timeout = 10)
{
    _Atomic uint32_t a = 0, b = 0;
    cr_assert_eq(moirai_park_either(&a, 0, &b, 0, 0), -ETIMEDOUT);
    uint64_t deadline = moirai_deadline_after(3 * MOIRAI_NS_PER_MS);
    int rc, spurious = 0;
    while ((rc = moirai_park_either(&a, 0, &b, 0, deadline)) == 0)
        spurious++;
    cr_assert_eq(rc, -ETIMEDOUT);
    cr_assert_geq(moirai_clock_now_ns(), deadline, "timed out before the deadline");
    cr_assert_lt(spurious, 1000);
}

/* A thread that parks on both words until `which` of them changes. */
typedef struct sleeper {
    _Atomic uint32_t a, b;
    _Atomic pid_t tid;
    _Atomic int done;
} sleeper_t;

static void *sleeper_main(void *arg)
{
    sleeper_t *s = arg;
    atomic_store(&s->tid, (pid_t)syscall(SYS_gettid));
    while (atomic_load(&s->a) == 0 && atomic_load(&s->b) == 0)
        (void)moirai_park_either(&s->a, 0, &s->b, 0, MOIRAI_DEADLINE_NEVER);
    atomic_store(&s->done, 1);
    return NULL;
}

/* Waits (up to about 2 s) until the sleeper sits in futex_waitv or in the
 * fallback's futex on `a`; proceeds anyway after that, since a kernel or
 * emulator may name the call differently (the test still holds: a lost
 * wake-up would hang it). */
static void wait_asleep(sleeper_t *s)
{
    pid_t t;
    while ((t = atomic_load(&s->tid)) == 0)
        sched_yield();
    for (int i = 0; i < 2000; i++) {
        if (in_syscall(t, 449) || in_futex_on(t, (const void *)&s->a))
            return;
        usleep(1000);
    }
}

static void wake_by(int which)
{
    sleeper_t s = {0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, sleeper_main, &s), 0);
    wait_asleep(&s);
    cr_assert_eq(atomic_load(&s.done), 0);
    _Atomic uint32_t *w = which == 0 ? &s.a : &s.b;
    atomic_store(w, 1);
    moirai_unpark_all(w);
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&s.done), 1);
}

Test(park_either, an_unpark_of_the_first_word_wakes, .timeout = 30)
{
    wake_by(0);
}

Test(park_either, an_unpark_of_the_second_word_wakes, .timeout = 30)
{
    wake_by(1);
}

/* Two threads hand a token back and forth, each waking the other through
 * a different one of the two words every time: a single lost wake-up
 * hangs the test. */
typedef struct relay {
    _Atomic uint32_t turn;  /* whose turn: 0 or 1 */
    _Atomic uint32_t other; /* a second word each side also sleeps on */
    long rounds;
} relay_t;

static void relay_side(relay_t *r, uint32_t me)
{
    for (long i = 0; i < r->rounds; i++) {
        uint32_t t;
        while ((t = atomic_load(&r->turn)) != me) {
            uint32_t o = atomic_load(&r->other);
            if (atomic_load(&r->turn) != me)
                (void)moirai_park_either(&r->turn, t, &r->other, o, MOIRAI_DEADLINE_NEVER);
        }
        atomic_store(&r->turn, 1 - me);
        /* Alternate which word carries the wake: the turn word itself, or
         * the other word (bumped, so the sleeper's compare fails). */
        if (i % 2 == 0) {
            moirai_unpark_all(&r->turn);
        } else {
            atomic_fetch_add(&r->other, 1);
            moirai_unpark_all(&r->other);
        }
    }
}

static void *relay_main(void *arg)
{
    relay_side(arg, 1);
    return NULL;
}

Test(park_either, relay_through_either_word_loses_no_wakeup, .timeout = 60)
{
    relay_t r = {.rounds = scaled(20000)};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, relay_main, &r), 0);
    relay_side(&r, 0);
    pthread_join(th, NULL);
}

/* A park hook that claims every thread: moirai_park_either() is for
 * threads, so it refuses with -EPERM. */
static bool claim_all(void *ctx)
{
    (void)ctx;
    return true;
}

static int no_park(void *ctx, _Atomic uint32_t *addr, uint32_t expected, uint64_t deadline)
{
    (void)ctx;
    (void)addr;
    (void)expected;
    (void)deadline;
    return 0;
}

static int no_unpark(void *ctx, _Atomic uint32_t *addr, int max)
{
    (void)ctx;
    (void)addr;
    (void)max;
    return 0;
}

Test(park_either, a_fiber_gets_eperm, .timeout = 10)
{
    static const moirai_park_hook_t hook = {claim_all, no_park, no_unpark, NULL};
    _Atomic uint32_t a = 0, b = 0;
    cr_assert_eq(moirai_park_hook_set(&hook), 0);
    int rc = moirai_park_either(&a, 0, &b, 0, MOIRAI_DEADLINE_NEVER);
    moirai_park_hook_set(NULL);
    cr_assert_eq(rc, -EPERM);
}

/* ---- the handle waiter ---- */

typedef struct waiter_log {
    int calls;
    moirai_handle_t *seen;
    uint64_t deadline;
} waiter_log_t;

/* A waiter that completes the handle itself, as a scheduler's worker does
 * when the task it runs meanwhile is the one joined. */
static int completing_waiter(void *arg, moirai_handle_t *handle, uint64_t deadline)
{
    waiter_log_t *log = arg;
    log->calls++;
    log->seen = handle;
    log->deadline = deadline;
    cr_assert_eq(moirai_handle_complete(handle, (void *)(uintptr_t)42), 0);
    return 0;
}

static int timing_out_waiter(void *arg, moirai_handle_t *handle, uint64_t deadline)
{
    (void)handle;
    waiter_log_t *log = arg;
    log->calls++;
    while (!moirai_deadline_expired(deadline))
        sched_yield();
    return -ETIMEDOUT;
}

Test(park_either, join_waits_through_this_threads_waiter, .timeout = 10)
{
    waiter_log_t log = {0};
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    moirai_handle_waiter_set(completing_waiter, &log);
    void *v = NULL;
    int rc = moirai_handle_join(h, &v);
    moirai_handle_waiter_set(NULL, NULL);
    cr_assert_eq(rc, 0);
    cr_assert_eq((uintptr_t)v, 42);
    cr_assert_eq(log.calls, 1);
    cr_assert_eq(log.seen, h);
    cr_assert_eq(log.deadline, MOIRAI_DEADLINE_NEVER);
    /* A finished handle never reaches the waiter. */
    moirai_handle_waiter_set(completing_waiter, &log);
    cr_assert_eq(moirai_handle_join(h, NULL), 0);
    moirai_handle_waiter_set(NULL, NULL);
    cr_assert_eq(log.calls, 1);
    moirai_handle_release(h);
}

Test(park_either, timed_join_passes_its_deadline_and_times_out, .timeout = 10)
{
    waiter_log_t log = {0};
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    moirai_handle_waiter_set(timing_out_waiter, &log);
    void *v = (void *)1;
    int rc = moirai_handle_join_timed(h, moirai_deadline_after(2 * MOIRAI_NS_PER_MS), &v);
    moirai_handle_waiter_set(NULL, NULL);
    cr_assert_eq(rc, -ETIMEDOUT);
    cr_assert_null(v);
    cr_assert_eq(log.calls, 1);
    cr_assert_not(moirai_handle_is_finished(h));
    moirai_handle_release(h);
}

static void *complete_later(void *arg)
{
    usleep(2000);
    moirai_handle_complete(arg, (void *)(uintptr_t)7);
    return NULL;
}

/* The waiter is the calling thread's alone, and NULL restores parking: a
 * waiter installed on another thread is never called here. */
static void *install_elsewhere(void *arg)
{
    moirai_handle_waiter_set(completing_waiter, arg);
    return NULL;
}

Test(park_either, the_waiter_is_thread_local_and_null_restores_parking, .timeout = 10)
{
    waiter_log_t log = {0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, install_elsewhere, &log), 0);
    pthread_join(th, NULL);
    moirai_handle_waiter_set(completing_waiter, &log);
    moirai_handle_waiter_set(NULL, NULL);
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(pthread_create(&th, NULL, complete_later, h), 0);
    void *v = NULL;
    cr_assert_eq(moirai_handle_join(h, &v), 0);
    pthread_join(th, NULL);
    cr_assert_eq((uintptr_t)v, 7);
    cr_assert_eq(log.calls, 0);
    moirai_handle_release(h);
}
