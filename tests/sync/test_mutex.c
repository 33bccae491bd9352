/* moirai_mutex_t: exclusion, try/timed semantics, parking and wake-up.
 *
 * test_mutex.c is also linked against the relaxed-unlock mutant
 * (MOIRAI_TEST_MUTANT, suite 'mutants'): the exact-count test below
 * increments a plain, non-atomic counter under the lock, so an unlock
 * that does not release is a data race ThreadSanitizer reports, and the
 * run must fail. */
#include <criterion/criterion.h>

#include <errno.h>

#include <moirai/core/clock.h>
#include <moirai/sync/mutex.h>

#include "lock_test_util.h"

/* ---- single-threaded semantics ---- */

Test(mutex, static_init_try_and_unlock, .timeout = 10)
{
    moirai_mutex_t m = MOIRAI_MUTEX_INIT;
    cr_assert(moirai_mutex_try_lock(&m), "a fresh mutex is free");
    cr_assert_not(moirai_mutex_try_lock(&m), "a held mutex cannot be taken again");
    moirai_mutex_unlock(&m);
    cr_assert(moirai_mutex_try_lock(&m), "unlock frees it");
    moirai_mutex_unlock(&m);
    moirai_mutex_lock(&m);
    cr_assert_not(moirai_mutex_try_lock(&m));
    moirai_mutex_unlock(&m);
}

Test(mutex, init_destroy_reuse, .timeout = 10)
{
    moirai_mutex_t m;
    for (int round = 0; round < 3; round++) {
        moirai_mutex_init(&m);
        moirai_mutex_lock(&m);
        cr_assert_not(moirai_mutex_try_lock(&m));
        moirai_mutex_unlock(&m);
        moirai_mutex_destroy(&m);
    }
}

Test(mutex, timedlock_free_and_timeout, .timeout = 20)
{
    moirai_mutex_t m = MOIRAI_MUTEX_INIT;
    /* Free: succeeds even with a deadline in the past. */
    cr_assert_eq(moirai_mutex_lock_timed(&m, 0), 0);
    /* Held by us: a past deadline and a short one both time out. */
    cr_assert_eq(moirai_mutex_lock_timed(&m, 0), -ETIMEDOUT);
    uint64_t deadline = test_deadline_ms(20);
    cr_assert_eq(moirai_mutex_lock_timed(&m, deadline), -ETIMEDOUT);
    cr_assert(moirai_clock_now_ns() >= deadline, "timedlock returned before its deadline");
    /* The timeout left the word in its "waiters" state; unlock must still
     * free the mutex. */
    moirai_mutex_unlock(&m);
    cr_assert(moirai_mutex_try_lock(&m));
    moirai_mutex_unlock(&m);
    cr_assert_eq(moirai_mutex_lock_timed(&m, MOIRAI_DEADLINE_NEVER), 0);
    moirai_mutex_unlock(&m);
}

/* ---- exact counts: N threads x M increments under the lock ---- */

typedef struct count_ctx {
    moirai_mutex_t m;
    long plain;            /* incremented only under the lock: no atomics */
    _Atomic int inside;    /* threads inside the critical section */
    _Atomic long overlaps; /* times two threads were inside at once */
    long iters;
    int mode; /* 0 lock, 1 trylock loop, 2 timedlock */
} count_ctx_t;

static void *count_worker(void *arg, int index)
{
    count_ctx_t *c = arg;
    (void)index;
    for (long i = 0; i < c->iters; i++) {
        switch (c->mode) {
        case 0:
            moirai_mutex_lock(&c->m);
            break;
        case 1:
            while (!moirai_mutex_try_lock(&c->m))
                sched_yield();
            break;
        default:
            cr_assert_eq(moirai_mutex_lock_timed(&c->m, test_deadline_ms(60000)), 0);
            break;
        }
        if (atomic_fetch_add_explicit(&c->inside, 1, memory_order_relaxed) != 0)
            atomic_fetch_add_explicit(&c->overlaps, 1, memory_order_relaxed);
        c->plain++;
        atomic_fetch_sub_explicit(&c->inside, 1, memory_order_relaxed);
        moirai_mutex_unlock(&c->m);
    }
    return NULL;
}

static void run_count(int mode, long iters)
{
    static count_ctx_t c;
    c = (count_ctx_t){.m = MOIRAI_MUTEX_INIT, .iters = iters, .mode = mode};
    int n = test_threads();
    test_run_threads(n, count_worker, &c);
    cr_assert_eq(atomic_load(&c.overlaps), 0, "two threads were inside the lock at once");
    cr_assert_eq(c.plain, (long)n * iters, "lost increments: %ld of %ld", c.plain, (long)n * iters);
}

Test(mutex, exact_count_lock, .timeout = 60)
{
    run_count(0, test_iters(200000, 2000));
}

Test(mutex, exact_count_trylock, .timeout = 60)
{
    run_count(1, test_iters(50000, 1000));
}

Test(mutex, exact_count_timedlock, .timeout = 60)
{
    run_count(2, test_iters(50000, 1000));
}

/* ---- parking: waiters that exhaust their spin sleep and are woken ---- */

typedef struct park_ctx {
    moirai_mutex_t m;
    _Atomic long held;
    _Atomic long acquired;
    int timed;
} park_ctx_t;

static void *park_waiter(void *arg, int index)
{
    park_ctx_t *c = arg;
    (void)index;
    if (c->timed)
        cr_assert_eq(moirai_mutex_lock_timed(&c->m, test_deadline_ms(60000)), 0);
    else
        moirai_mutex_lock(&c->m);
    atomic_fetch_add(&c->acquired, 1);
    moirai_mutex_unlock(&c->m);
    return NULL;
}

static void *park_holder(void *arg)
{
    park_ctx_t *c = arg;
    moirai_mutex_lock(&c->m);
    atomic_store(&c->held, 1);
    /* Hold long enough that every waiter spins out and parks. */
    test_sleep_ms(50);
    cr_assert_eq(atomic_load(&c->acquired), 0, "a waiter got in while the lock was held");
    moirai_mutex_unlock(&c->m);
    return NULL;
}

static void run_park(int timed)
{
    static park_ctx_t c;
    c = (park_ctx_t){.m = MOIRAI_MUTEX_INIT, .timed = timed};
    pthread_t h = test_spawn(park_holder, &c);
    test_await_at_least(&c.held, 1);
    int n = test_threads();
    test_run_threads(n, park_waiter, &c);
    pthread_join(h, NULL);
    cr_assert_eq(atomic_load(&c.acquired), n, "every parked waiter must be woken");
    cr_assert(moirai_mutex_try_lock(&c.m), "the mutex ends free");
    moirai_mutex_unlock(&c.m);
}

Test(mutex, parked_waiters_all_woken, .timeout = 30)
{
    run_park(0);
}

Test(mutex, parked_timed_waiters_all_woken, .timeout = 30)
{
    run_park(1);
}

/* A waiter that times out must not strand the wake-up of another waiter. */
typedef struct strand_ctx {
    moirai_mutex_t m;
    _Atomic long phase;
    int timed_rc;
} strand_ctx_t;

static void *strand_timed(void *arg)
{
    strand_ctx_t *c = arg;
    c->timed_rc = moirai_mutex_lock_timed(&c->m, test_deadline_ms(30));
    atomic_store(&c->phase, 1);
    return NULL;
}

static void *strand_blocking(void *arg)
{
    strand_ctx_t *c = arg;
    moirai_mutex_lock(&c->m);
    atomic_store(&c->phase, 2);
    moirai_mutex_unlock(&c->m);
    return NULL;
}

Test(mutex, timeout_does_not_strand_other_waiters, .timeout = 30)
{
    static strand_ctx_t c;
    c = (strand_ctx_t){.m = MOIRAI_MUTEX_INIT};
    moirai_mutex_lock(&c.m);
    pthread_t blocking = test_spawn(strand_blocking, &c);
    pthread_t timed = test_spawn(strand_timed, &c);
    pthread_join(timed, NULL);
    cr_assert_eq(c.timed_rc, -ETIMEDOUT);
    cr_assert_eq(atomic_load(&c.phase), 1, "the blocking waiter got in while the lock was held");
    moirai_mutex_unlock(&c.m);
    pthread_join(blocking, NULL);
    cr_assert_eq(atomic_load(&c.phase), 2, "the blocking waiter was woken");
}

/* Data published under the lock is seen whole by the next holder (plain
 * fields: a missing acquire/release is a race for ThreadSanitizer and a
 * torn record for the check). */
typedef struct publish_ctx {
    moirai_mutex_t m;
    long a, b, c;
    long iters;
} publish_ctx_t;

static void *publish_worker(void *arg, int index)
{
    publish_ctx_t *p = arg;
    (void)index;
    for (long i = 0; i < p->iters; i++) {
        moirai_mutex_lock(&p->m);
        cr_assert(p->a == p->b && p->b == p->c, "torn record %ld %ld %ld", p->a, p->b, p->c);
        p->a++;
        p->b++;
        p->c++;
        moirai_mutex_unlock(&p->m);
    }
    return NULL;
}

Test(mutex, publication_is_whole, .timeout = 60)
{
    static publish_ctx_t p;
    p = (publish_ctx_t){.m = MOIRAI_MUTEX_INIT, .iters = test_iters(100000, 1000)};
    int n = test_threads();
    test_run_threads(n, publish_worker, &p);
    cr_assert_eq(p.a, (long)n * p.iters);
    cr_assert_eq(p.c, (long)n * p.iters);
}
