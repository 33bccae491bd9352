/* The park hook, through a test double: a "fake fiber" runtime.
 *
 * Threads that call fake_register() count as fibers: applies() is true on
 * them. The fake parks them on its own mutex and condition variable and
 * keeps a table of who waits on which address, so the test can see which
 * path every waiter took. Threads that did not register park on the futex;
 * /proc/self/task/<tid>/syscall shows them sleeping in futex() on the
 * word. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <moirai/core.h>

#include "futex_probe.h"

/* ---- The fake runtime ---- */

#define FAKE_SLOTS 16

typedef struct fake_waiter {
    _Atomic uint32_t *addr; /* NULL: slot free */
    bool woken;
} fake_waiter_t;

typedef struct fake_runtime {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    fake_waiter_t slots[FAKE_SLOTS];
    int parks;   /* park calls that reached the fake, under lock */
    int waiting; /* waiters currently in the table, under lock */
} fake_runtime_t;

static fake_runtime_t fake;
static __thread bool is_fake_fiber;

static void fake_init(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&fake.lock, NULL);
    pthread_cond_init(&fake.cond, &ca);
    pthread_condattr_destroy(&ca);
}

static void fake_register(void)
{
    is_fake_fiber = true;
}

static bool fake_applies(void *ctx)
{
    /* Hooks run on waiter threads, where Criterion's asserts must not be
     * used: a broken contract aborts the test process instead. */
    if (ctx != &fake)
        abort();
    return is_fake_fiber;
}

static int fake_park(void *ctx, _Atomic uint32_t *addr, uint32_t expected, uint64_t deadline)
{
    fake_runtime_t *rt = ctx;
    pthread_mutex_lock(&rt->lock);
    rt->parks++;
    /* Checked under the lock that wakers take: no lost wake-up. */
    if (atomic_load(addr) != expected) {
        pthread_mutex_unlock(&rt->lock);
        return 0;
    }
    if (moirai_deadline_expired(deadline)) {
        pthread_mutex_unlock(&rt->lock);
        return -ETIMEDOUT;
    }
    int slot = 0;
    while (slot < FAKE_SLOTS && rt->slots[slot].addr != NULL)
        slot++;
    if (slot >= FAKE_SLOTS)
        abort();
    rt->slots[slot] = (fake_waiter_t){addr, false};
    rt->waiting++;
    int rc = 0;
    while (!rt->slots[slot].woken) {
        if (deadline == MOIRAI_DEADLINE_NEVER) {
            pthread_cond_wait(&rt->cond, &rt->lock);
        } else {
            struct timespec ts = {(time_t)(deadline / MOIRAI_NS_PER_S),
                                  (long)(deadline % MOIRAI_NS_PER_S)};
            if (pthread_cond_timedwait(&rt->cond, &rt->lock, &ts) == ETIMEDOUT &&
                !rt->slots[slot].woken) {
                rc = -ETIMEDOUT;
                break;
            }
        }
    }
    rt->slots[slot].addr = NULL;
    rt->waiting--;
    pthread_mutex_unlock(&rt->lock);
    return rc;
}

static int fake_unpark(void *ctx, _Atomic uint32_t *addr, int max)
{
    fake_runtime_t *rt = ctx;
    int woken = 0;
    pthread_mutex_lock(&rt->lock);
    for (int i = 0; i < FAKE_SLOTS && woken < max; i++) {
        if (rt->slots[i].addr == addr && !rt->slots[i].woken) {
            rt->slots[i].woken = true;
            woken++;
        }
    }
    if (woken > 0)
        pthread_cond_broadcast(&rt->cond);
    pthread_mutex_unlock(&rt->lock);
    return woken;
}

/* Waiters of the fake on `addr` not woken yet. */
static int fake_waiting_on(_Atomic uint32_t *addr)
{
    int n = 0;
    pthread_mutex_lock(&fake.lock);
    for (int i = 0; i < FAKE_SLOTS; i++)
        n += fake.slots[i].addr == addr && !fake.slots[i].woken;
    pthread_mutex_unlock(&fake.lock);
    return n;
}

static int fake_parks(void)
{
    pthread_mutex_lock(&fake.lock);
    int n = fake.parks;
    pthread_mutex_unlock(&fake.lock);
    return n;
}

static const moirai_park_hook_t fake_hook = {
    .applies = fake_applies,
    .park = fake_park,
    .unpark = fake_unpark,
    .arg = &fake,
};

static void setup(void)
{
    fake_init();
    cr_assert_eq(moirai_park_hook_set(&fake_hook), 0);
}

static void teardown(void)
{
    moirai_park_hook_set(NULL);
}

/* ---- Waiter threads ---- */

typedef struct waiter {
    _Atomic uint32_t *word;
    bool fiber;
    bool spin; /* moirai_park rather than moirai_park_nospin */
    _Atomic pid_t tid;
    _Atomic int done;
    int rc;
} waiter_t;

static void *waiter_main(void *p)
{
    waiter_t *w = p;
    if (w->fiber)
        fake_register();
    atomic_store(&w->tid, (pid_t)syscall(SYS_gettid));
    w->rc = w->spin ? moirai_park(w->word, 0, MOIRAI_DEADLINE_NEVER)
                    : moirai_park_nospin(w->word, 0, MOIRAI_DEADLINE_NEVER);
    atomic_store(&w->done, 1);
    return NULL;
}

/* Starts a waiter and returns once it sleeps: in the fake when `via_hook`,
 * on the futex otherwise. */
static void start_waiter_expect(waiter_t *w, pthread_t *t, _Atomic uint32_t *word, bool fiber,
                                bool spin, bool via_hook)
{
    *w = (waiter_t){.word = word, .fiber = fiber, .spin = spin};
    int before = fake_waiting_on(word);
    cr_assert_eq(pthread_create(t, NULL, waiter_main, w), 0);
    pid_t tid;
    while ((tid = atomic_load(&w->tid)) == 0)
        sched_yield();
    if (via_hook) {
        while (fake_waiting_on(word) != before + 1)
            sched_yield();
    } else {
        while (!in_futex_on(tid, word))
            sched_yield();
    }
}

static void start_waiter(waiter_t *w, pthread_t *t, _Atomic uint32_t *word, bool fiber, bool spin)
{
    start_waiter_expect(w, t, word, fiber, spin, fiber);
}

static void wait_done(waiter_t *w)
{
    while (!atomic_load(&w->done))
        sched_yield();
}

/* ---- Tests ---- */

Test(park_hook, incomplete_hooks_are_rejected, .timeout = 10)
{
    moirai_park_hook_t h = fake_hook;
    h.applies = NULL;
    cr_assert_eq(moirai_park_hook_set(&h), -EINVAL);
    h = fake_hook;
    h.park = NULL;
    cr_assert_eq(moirai_park_hook_set(&h), -EINVAL);
    h = fake_hook;
    h.unpark = NULL;
    cr_assert_eq(moirai_park_hook_set(&h), -EINVAL);
    /* Nothing was installed: a "fiber" still parks on the futex. */
    fake_init();
    fake_register();
    _Atomic uint32_t word = 0;
    cr_assert_eq(moirai_park(&word, 0, 0), -ETIMEDOUT);
    cr_assert_eq(fake_parks(), 0);
    /* Removing is always allowed. */
    cr_assert_eq(moirai_park_hook_set(NULL), 0);
}

Test(park_hook, fibers_park_through_hook_threads_on_futex, .init = setup, .fini = teardown,
     .timeout = 30)
{
    _Atomic uint32_t word = 0;
    waiter_t fw, tw;
    pthread_t ft, tt;
    start_waiter(&fw, &ft, &word, true, true);
    start_waiter(&tw, &tt, &word, false, true);
    cr_assert_eq(fake_parks(), 1, "only the fiber reached the hook");
    cr_assert_eq(fake_waiting_on(&word), 1);
    cr_assert(in_futex_on(atomic_load(&tw.tid), &word));

    /* unpark_one prefers the hook's waiter... */
    cr_assert_eq(moirai_unpark_one(&word), 1);
    wait_done(&fw);
    cr_assert_eq(fake_waiting_on(&word), 0);
    cr_assert(in_futex_on(atomic_load(&tw.tid), &word), "the thread must still sleep");
    cr_assert_eq(atomic_load(&tw.done), 0);
    /* ...and falls back to the futex when the hook has none. */
    cr_assert_eq(moirai_unpark_one(&word), 1);
    wait_done(&tw);
    cr_assert_eq(moirai_unpark_one(&word), 0);
    pthread_join(ft, NULL);
    pthread_join(tt, NULL);
    cr_assert_eq(fw.rc, 0);
    cr_assert_eq(tw.rc, 0);
}

Test(park_hook, unpark_all_wakes_both_kinds, .init = setup, .fini = teardown, .timeout = 30)
{
    _Atomic uint32_t word = 0;
    waiter_t w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        start_waiter(&w[i], &t[i], &word, i < 2, i % 2 == 0);
    cr_assert_eq(fake_waiting_on(&word), 2);
    atomic_store(&word, 1);
    cr_assert_eq(moirai_unpark_all(&word), 4);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(w[i].rc, 0);
    }
    cr_assert_eq(fake_waiting_on(&word), 0);
}

Test(park_hook, removing_hook_restores_futex_path, .init = setup, .fini = teardown, .timeout = 30)
{
    cr_assert_eq(moirai_park_hook_set(NULL), 0);
    _Atomic uint32_t word = 0;
    waiter_t fw;
    pthread_t ft;
    /* A fiber, but with no hook installed it must sleep on the futex. */
    start_waiter_expect(&fw, &ft, &word, true, false, false);
    cr_assert_eq(fake_parks(), 0);
    cr_assert_eq(moirai_unpark_one(&word), 1);
    pthread_join(ft, NULL);
    cr_assert_eq(fw.rc, 0);
}

Test(park_hook, hook_sees_deadlines_and_mismatches, .init = setup, .fini = teardown, .timeout = 10)
{
    fake_register();
    _Atomic uint32_t word = 0;
    cr_assert_eq(moirai_park(&word, 0, 0), -ETIMEDOUT);
    cr_assert_eq(moirai_park_nospin(&word, 0, 0), -ETIMEDOUT);
    uint64_t deadline = moirai_deadline_after(2 * MOIRAI_NS_PER_MS);
    int rc;
    while ((rc = moirai_park(&word, 0, deadline)) == 0)
        ;
    cr_assert_eq(rc, -ETIMEDOUT);
    cr_assert_geq(moirai_clock_now_ns(), deadline);
    cr_assert_eq(moirai_park(&word, 1, MOIRAI_DEADLINE_NEVER), 0);
    cr_assert_geq(fake_parks(), 4, "every fiber park went to the hook");
}

/* A handle joined from a fiber parks through the hook; the completer, a
 * plain thread, does not need to know. */
static void *fiber_joiner(void *p)
{
    moirai_handle_t *h = p;
    fake_register();
    void *v = NULL;
    int rc = moirai_handle_join(h, &v);
    return rc == 0 ? v : NULL;
}

Test(park_hook, handle_join_from_fiber_uses_hook, .init = setup, .fini = teardown, .timeout = 30)
{
    moirai_handle_t *h = NULL;
    cr_assert_eq(moirai_handle_create(&h), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, fiber_joiner, h), 0);
    /* Wait until the joiner sleeps in the fake on some address. */
    for (;;) {
        pthread_mutex_lock(&fake.lock);
        int waiting = fake.waiting;
        pthread_mutex_unlock(&fake.lock);
        if (waiting == 1)
            break;
        sched_yield();
    }
    static int payload;
    cr_assert_eq(moirai_handle_complete(h, &payload), 0);
    void *v;
    pthread_join(t, &v);
    cr_assert_eq(v, &payload);
    cr_assert_geq(fake_parks(), 1);
    moirai_handle_release(h);
}
