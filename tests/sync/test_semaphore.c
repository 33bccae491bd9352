/* moirai_semaphore_t: counting, try/timed, post n, bounds, no lost
 * wake-ups. */
#include <criterion/criterion.h>

#include <errno.h>

#include <moirai/core/clock.h>
#include <moirai/sync/semaphore.h>

#include "lock_test_util.h"

Test(semaphore, init_and_bounds, .timeout = 10)
{
    moirai_semaphore_t s = MOIRAI_SEMAPHORE_INIT(2);
    cr_assert_eq(moirai_semaphore_init(&s, MOIRAI_SEMAPHORE_MAX + 1u), -EINVAL);
    cr_assert_eq(moirai_semaphore_value(&s), 2, "a rejected init changed the semaphore");
    cr_assert_eq(moirai_semaphore_init(&s, MOIRAI_SEMAPHORE_MAX), 0);
    cr_assert_eq(moirai_semaphore_post(&s), -EOVERFLOW);
    cr_assert_eq(moirai_semaphore_value(&s), MOIRAI_SEMAPHORE_MAX);
    cr_assert(moirai_semaphore_try_wait(&s));
    cr_assert_eq(moirai_semaphore_post_n(&s, 2), -EOVERFLOW);
    cr_assert_eq(moirai_semaphore_value(&s), MOIRAI_SEMAPHORE_MAX - 1, "rejected post_n added");
    cr_assert_eq(moirai_semaphore_post(&s), 0);
    moirai_semaphore_destroy(&s);
}

Test(semaphore, counting_try_and_timed, .timeout = 20)
{
    moirai_semaphore_t s;
    cr_assert_eq(moirai_semaphore_init(&s, 0), 0);
    cr_assert_not(moirai_semaphore_try_wait(&s));
    uint64_t deadline = test_deadline_ms(20);
    cr_assert_eq(moirai_semaphore_wait_timed(&s, deadline), -ETIMEDOUT);
    cr_assert(moirai_clock_now_ns() >= deadline);
    cr_assert_eq(moirai_semaphore_wait_timed(&s, 0), -ETIMEDOUT);
    cr_assert_eq(moirai_semaphore_post_n(&s, 0), 0);
    cr_assert_eq(moirai_semaphore_value(&s), 0, "post_n(0) adds nothing");
    cr_assert_eq(moirai_semaphore_post_n(&s, 3), 0);
    cr_assert_eq(moirai_semaphore_value(&s), 3);
    cr_assert(moirai_semaphore_try_wait(&s));
    cr_assert_eq(moirai_semaphore_wait_timed(&s, 0), 0, "a unit is there: no waiting needed");
    moirai_semaphore_wait(&s);
    cr_assert_not(moirai_semaphore_try_wait(&s));
    cr_assert_eq(moirai_semaphore_value(&s), 0);
}

/* Producers post, consumers wait; every unit posted is taken exactly once.
 * A lost wake-up leaves a consumer asleep with units available, and the
 * run never finishes (the test times out). */
typedef struct pc_ctx {
    moirai_semaphore_t s;
    long per_producer;
    int producers, consumers;
    int mode; /* 0 wait, 1 timed, 2 try loop */
    _Atomic long taken;
} pc_ctx_t;

static void *pc_producer(void *arg, int index)
{
    pc_ctx_t *c = arg;
    (void)index;
    for (long i = 0; i < c->per_producer; i++)
        cr_assert_eq(moirai_semaphore_post(&c->s), 0);
    return NULL;
}

static void *pc_consumer(void *arg, int index)
{
    pc_ctx_t *c = arg;
    long total = c->per_producer * c->producers;
    long mine = total / c->consumers + (index == 0 ? total % c->consumers : 0);
    for (long i = 0; i < mine; i++) {
        if (c->mode == 1) {
            cr_assert_eq(moirai_semaphore_wait_timed(&c->s, test_deadline_ms(60000)), 0);
        } else if (c->mode == 2) {
            while (!moirai_semaphore_try_wait(&c->s))
                sched_yield();
        } else {
            moirai_semaphore_wait(&c->s);
        }
        atomic_fetch_add(&c->taken, 1);
    }
    return NULL;
}

static void *pc_producers(void *arg)
{
    pc_ctx_t *c = arg;
    test_run_threads(c->producers, pc_producer, c);
    return NULL;
}

static void run_pc(int producers, int consumers, int mode)
{
    static pc_ctx_t c;
    c = (pc_ctx_t){.s = MOIRAI_SEMAPHORE_INIT(0),
                   .per_producer = test_iters(100000, 1000),
                   .producers = producers,
                   .consumers = consumers,
                   .mode = mode};
    pthread_t p = test_spawn(pc_producers, &c);
    test_run_threads(consumers, pc_consumer, &c);
    pthread_join(p, NULL);
    cr_assert_eq(atomic_load(&c.taken), c.per_producer * producers);
    cr_assert_eq(moirai_semaphore_value(&c.s), 0, "units left over: some were duplicated");
}

Test(semaphore, no_lost_wakeup_1p1c, .timeout = 60)
{
    run_pc(1, 1, 0);
}

Test(semaphore, no_lost_wakeup_2p4c, .timeout = 60)
{
    run_pc(2, 4, 0);
}

Test(semaphore, no_lost_wakeup_timed_2p2c, .timeout = 60)
{
    run_pc(2, 2, 1);
}

Test(semaphore, trywait_loop_2p2c, .timeout = 60)
{
    run_pc(2, 2, 2);
}

/* post_n wakes every parked waiter it has units for. */
typedef struct postn_ctx {
    moirai_semaphore_t s;
    _Atomic long passed;
} postn_ctx_t;

static void *postn_waiter(void *arg, int index)
{
    postn_ctx_t *c = arg;
    (void)index;
    moirai_semaphore_wait(&c->s);
    atomic_fetch_add(&c->passed, 1);
    return NULL;
}

static void *postn_group(void *arg)
{
    test_run_threads(test_threads(), postn_waiter, arg);
    return NULL;
}

Test(semaphore, post_n_wakes_n_parked_waiters, .timeout = 30)
{
    static postn_ctx_t c;
    c = (postn_ctx_t){.s = MOIRAI_SEMAPHORE_INIT(0)};
    int n = test_threads();
    pthread_t g = test_spawn(postn_group, &c);
    test_sleep_ms(30); /* let them park */
    cr_assert_eq(atomic_load(&c.passed), 0, "a waiter passed without a unit");
    cr_assert_eq(moirai_semaphore_post_n(&c.s, (uint32_t)n - 1), 0);
    test_await_at_least(&c.passed, n - 1);
    cr_assert_eq(moirai_semaphore_post(&c.s), 0);
    pthread_join(g, NULL);
    cr_assert_eq(atomic_load(&c.passed), n);
    cr_assert_eq(moirai_semaphore_value(&c.s), 0);
}

/* A binary semaphore as a lock: N threads x M increments. */
typedef struct binlock_ctx {
    moirai_semaphore_t s;
    long plain;
    long iters;
} binlock_ctx_t;

static void *binlock_worker(void *arg, int index)
{
    binlock_ctx_t *c = arg;
    (void)index;
    for (long i = 0; i < c->iters; i++) {
        moirai_semaphore_wait(&c->s);
        c->plain++;
        cr_assert_eq(moirai_semaphore_post(&c->s), 0);
    }
    return NULL;
}

Test(semaphore, binary_semaphore_excludes, .timeout = 60)
{
    static binlock_ctx_t c;
    c = (binlock_ctx_t){.s = MOIRAI_SEMAPHORE_INIT(1), .iters = test_iters(100000, 1000)};
    int n = test_threads();
    test_run_threads(n, binlock_worker, &c);
    cr_assert_eq(c.plain, (long)n * c.iters);
    cr_assert_eq(moirai_semaphore_value(&c.s), 1);
}

/* try_wait never fails while a unit is there. The semaphore starts with
 * exactly the units every thread will take, so whenever a thread tries,
 * at least its own remaining units are in it: a false answer is a lie,
 * whatever the interleaving (a compare-and-swap that lost a race to
 * another taker must retry, not give up). The threads start together so
 * that their tries overlap. */
typedef struct trywait_ctx {
    moirai_semaphore_t s;
    long per_thread;
    int threads;
    _Atomic long ready;
    _Atomic long refused;
} trywait_ctx_t;

static void *trywait_taker(void *arg, int index)
{
    trywait_ctx_t *c = arg;
    (void)index;
    atomic_fetch_add(&c->ready, 1);
    test_await_at_least(&c->ready, c->threads);
    long refused = 0;
    for (long i = 0; i < c->per_thread; i++) {
        if (!moirai_semaphore_try_wait(&c->s))
            refused++;
    }
    atomic_fetch_add(&c->refused, refused);
    return NULL;
}

Test(semaphore, try_wait_never_fails_while_units_remain, .timeout = 60)
{
    static trywait_ctx_t c;
    c = (trywait_ctx_t){.per_thread = test_iters(1000000, 50000), .threads = test_threads()};
    cr_assert_eq(moirai_semaphore_init(&c.s, (uint32_t)(c.per_thread * c.threads)), 0);
    test_run_threads(c.threads, trywait_taker, &c);
    cr_assert_eq(atomic_load(&c.refused), 0, "try_wait refused %ld times with units left",
                 atomic_load(&c.refused));
    cr_assert_eq(moirai_semaphore_value(&c.s), 0);
}
