/* The bounded MPMC ring: argument checks, allocation failure, full/empty
 * try_ semantics and wrap-around, timed waits, closing (nothing accepted
 * is lost, every waiter is released), blocking hand-offs in both
 * directions, publication of pushed data, and producer x consumer shapes
 * with try_, blocking and timed operations: nothing lost, duplicated or
 * invented, per-producer FIFO. Under ThreadSanitizer the shapes catch the
 * relaxed_ring_publish mutant (a cell published without release). */
#include "container_harness.h"

#include <unistd.h>

#include <moirai/sync/ring_mpmc.h>

#include "oom.h"

static int sentinel_storage;
#define SENTINEL ((void *)&sentinel_storage)

Test(ring_mpmc, create_rejects_bad_arguments, .timeout = 10)
{
    moirai_ring_mpmc_t *r = SENTINEL;
    cr_assert_eq(moirai_ring_mpmc_create(NULL, 8), -EINVAL);
    size_t bad[] = {0,
                    1,
                    3,
                    6,
                    12,
                    1000,
                    MOIRAI_RING_MPMC_MAX_CAPACITY * 2,
                    MOIRAI_RING_MPMC_MAX_CAPACITY + 1,
                    SIZE_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(moirai_ring_mpmc_create(&r, bad[i]), -EINVAL, "capacity %zu", bad[i]);
        cr_assert_eq((void *)r, SENTINEL);
    }
    cr_assert_eq(moirai_ring_mpmc_create(&r, 2), 0);
    cr_assert_eq(moirai_ring_mpmc_capacity(r), 2);
    moirai_ring_mpmc_destroy(r);
    moirai_ring_mpmc_destroy(NULL);
}

static int create_op(void *ctx)
{
    return moirai_ring_mpmc_create(ctx, 1024);
}

static void create_unchanged(void *ctx, long n)
{
    cr_assert_eq(*(void **)ctx, SENTINEL, "failure %ld touched *out", n);
}

Test(ring_mpmc, create_reports_enomem, .timeout = 30)
{
    moirai_ring_mpmc_t *r = SENTINEL;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(create_op, create_unchanged, &r);
    moirai_test_oom_uninstall();
    cr_assert_geq(failures, 1);
    moirai_ring_mpmc_destroy(r);
}

Test(ring_mpmc, full_empty_fifo_and_wraparound, .timeout = 10)
{
    moirai_ring_mpmc_t *r;
    cr_assert_eq(moirai_ring_mpmc_create(&r, 8), 0);
    void *out = SENTINEL;
    cr_assert_eq(moirai_ring_mpmc_try_pop(r, &out), -EAGAIN);
    cr_assert_eq(out, SENTINEL);
    uintptr_t next_in = 0, next_out = 0;
    /* Many rounds, each filling the ring to a different level, so every
     * cell wraps many times. */
    for (int round = 0; round < 100; round++) {
        size_t fill = (size_t)round % 9;
        for (size_t i = 0; i < fill; i++)
            cr_assert_eq(moirai_ring_mpmc_try_push(r, (void *)next_in++), 0);
        cr_assert_eq(moirai_ring_mpmc_size(r), fill);
        if (fill == 8)
            cr_assert_eq(moirai_ring_mpmc_try_push(r, SENTINEL), -EAGAIN);
        for (size_t i = 0; i < fill; i++) {
            cr_assert_eq(moirai_ring_mpmc_try_pop(r, &out), 0);
            cr_assert_eq((uintptr_t)out, next_out++);
        }
        cr_assert_eq(moirai_ring_mpmc_try_pop(r, &out), -EAGAIN);
    }
    cr_assert_eq(moirai_ring_mpmc_size(r), 0);
    moirai_ring_mpmc_destroy(r);
}

Test(ring_mpmc, timed_waits_time_out_and_change_nothing, .timeout = 10)
{
    moirai_ring_mpmc_t *r;
    cr_assert_eq(moirai_ring_mpmc_create(&r, 2), 0);
    void *out = SENTINEL;
    cr_assert_eq(moirai_ring_mpmc_pop_timed(r, &out, moirai_deadline_after(5 * MOIRAI_NS_PER_MS)),
                 -ETIMEDOUT);
    cr_assert_eq(moirai_ring_mpmc_pop_timed(r, &out, 0), -ETIMEDOUT);
    cr_assert_eq(out, SENTINEL);
    cr_assert_eq(moirai_ring_mpmc_push_timed(r, (void *)1, 0), 0);
    cr_assert_eq(moirai_ring_mpmc_push(r, (void *)2), 0);
    cr_assert_eq(
        moirai_ring_mpmc_push_timed(r, (void *)3, moirai_deadline_after(5 * MOIRAI_NS_PER_MS)),
        -ETIMEDOUT);
    cr_assert_eq(moirai_ring_mpmc_push_timed(r, (void *)3, 0), -ETIMEDOUT);
    cr_assert_eq(moirai_ring_mpmc_size(r), 2);
    cr_assert_eq(moirai_ring_mpmc_pop_timed(r, &out, MOIRAI_DEADLINE_NEVER), 0);
    cr_assert_eq((uintptr_t)out, 1);
    cr_assert_eq(moirai_ring_mpmc_pop(r, &out), 0);
    cr_assert_eq((uintptr_t)out, 2);
    moirai_ring_mpmc_destroy(r);
}

Test(ring_mpmc, close_rejects_pushes_and_drains_pops, .timeout = 10)
{
    moirai_ring_mpmc_t *r;
    cr_assert_eq(moirai_ring_mpmc_create(&r, 4), 0);
    cr_assert_not(moirai_ring_mpmc_is_closed(r));
    for (uintptr_t i = 0; i < 3; i++)
        cr_assert_eq(moirai_ring_mpmc_try_push(r, (void *)i), 0);
    moirai_ring_mpmc_close(r);
    moirai_ring_mpmc_close(r); /* idempotent */
    cr_assert(moirai_ring_mpmc_is_closed(r));
    cr_assert_eq(moirai_ring_mpmc_try_push(r, SENTINEL), -EPIPE);
    cr_assert_eq(moirai_ring_mpmc_push(r, SENTINEL), -EPIPE);
    cr_assert_eq(moirai_ring_mpmc_push_timed(r, SENTINEL, MOIRAI_DEADLINE_NEVER), -EPIPE);
    void *out;
    cr_assert_eq(moirai_ring_mpmc_try_pop(r, &out), 0);
    cr_assert_eq((uintptr_t)out, 0);
    cr_assert_eq(moirai_ring_mpmc_pop(r, &out), 0);
    cr_assert_eq((uintptr_t)out, 1);
    cr_assert_eq(moirai_ring_mpmc_pop_timed(r, &out, MOIRAI_DEADLINE_NEVER), 0);
    cr_assert_eq((uintptr_t)out, 2);
    out = SENTINEL;
    cr_assert_eq(moirai_ring_mpmc_try_pop(r, &out), -EPIPE);
    cr_assert_eq(moirai_ring_mpmc_pop(r, &out), -EPIPE);
    cr_assert_eq(moirai_ring_mpmc_pop_timed(r, &out, MOIRAI_DEADLINE_NEVER), -EPIPE);
    cr_assert_eq(out, SENTINEL);
    moirai_ring_mpmc_destroy(r);
}

typedef struct waiter {
    moirai_ring_mpmc_t *r;
    void *item;
    int rc;
    _Atomic int started;
} waiter_t;

static void *blocked_pop(void *p)
{
    waiter_t *w = p;
    atomic_store(&w->started, 1);
    w->rc = moirai_ring_mpmc_pop(w->r, &w->item);
    return NULL;
}

static void *blocked_push(void *p)
{
    waiter_t *w = p;
    atomic_store(&w->started, 1);
    w->rc = moirai_ring_mpmc_push(w->r, w->item);
    return NULL;
}

static void wait_started(waiter_t *w)
{
    while (!atomic_load(&w->started))
        usleep(1000);
    usleep(20000); /* most likely parked by now; correct either way */
}

Test(ring_mpmc, push_wakes_a_blocked_consumer, .timeout = 30)
{
    moirai_ring_mpmc_t *r;
    cr_assert_eq(moirai_ring_mpmc_create(&r, 4), 0);
    for (int round = 0; round < 20; round++) {
        waiter_t w = {.r = r, .item = SENTINEL};
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, blocked_pop, &w), 0);
        wait_started(&w);
        cr_assert_eq(moirai_ring_mpmc_try_push(r, (void *)(uintptr_t)(round + 100)), 0);
        pthread_join(t, NULL);
        cr_assert_eq(w.rc, 0);
        cr_assert_eq((uintptr_t)w.item, (uintptr_t)(round + 100));
    }
    moirai_ring_mpmc_destroy(r);
}

Test(ring_mpmc, pop_wakes_a_blocked_producer, .timeout = 30)
{
    moirai_ring_mpmc_t *r;
    cr_assert_eq(moirai_ring_mpmc_create(&r, 2), 0);
    uintptr_t next_in = 0, next_out = 0;
    cr_assert_eq(moirai_ring_mpmc_try_push(r, (void *)next_in++), 0);
    cr_assert_eq(moirai_ring_mpmc_try_push(r, (void *)next_in++), 0);
    for (int round = 0; round < 20; round++) {
        waiter_t w = {.r = r, .item = (void *)next_in++};
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, blocked_push, &w), 0);
        wait_started(&w);
        void *out;
        cr_assert_eq(moirai_ring_mpmc_try_pop(r, &out), 0);
        cr_assert_eq((uintptr_t)out, next_out++);
        pthread_join(t, NULL);
        cr_assert_eq(w.rc, 0);
        cr_assert_eq(moirai_ring_mpmc_size(r), 2);
    }
    moirai_ring_mpmc_destroy(r);
}

Test(ring_mpmc, close_releases_every_waiter, .timeout = 30)
{
    moirai_ring_mpmc_t *empty, *full;
    cr_assert_eq(moirai_ring_mpmc_create(&empty, 4), 0);
    cr_assert_eq(moirai_ring_mpmc_create(&full, 2), 0);
    cr_assert_eq(moirai_ring_mpmc_try_push(full, (void *)1), 0);
    cr_assert_eq(moirai_ring_mpmc_try_push(full, (void *)2), 0);
    waiter_t pops[3], pushes[3];
    pthread_t pt[3], qt[3];
    for (int i = 0; i < 3; i++) {
        pops[i] = (waiter_t){.r = empty, .item = SENTINEL};
        pushes[i] = (waiter_t){.r = full, .item = SENTINEL};
        cr_assert_eq(pthread_create(&pt[i], NULL, blocked_pop, &pops[i]), 0);
        cr_assert_eq(pthread_create(&qt[i], NULL, blocked_push, &pushes[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        wait_started(&pops[i]);
        wait_started(&pushes[i]);
    }
    moirai_ring_mpmc_close(empty);
    moirai_ring_mpmc_close(full);
    for (int i = 0; i < 3; i++) {
        pthread_join(pt[i], NULL);
        pthread_join(qt[i], NULL);
        cr_assert_eq(pops[i].rc, -EPIPE);
        cr_assert_eq(pops[i].item, SENTINEL);
        cr_assert_eq(pushes[i].rc, -EPIPE);
    }
    /* The items accepted before the close are still delivered. */
    void *out;
    cr_assert_eq(moirai_ring_mpmc_pop(full, &out), 0);
    cr_assert_eq((uintptr_t)out, 1);
    cr_assert_eq(moirai_ring_mpmc_pop(full, &out), 0);
    cr_assert_eq((uintptr_t)out, 2);
    cr_assert_eq(moirai_ring_mpmc_pop(full, &out), -EPIPE);
    moirai_ring_mpmc_destroy(empty);
    moirai_ring_mpmc_destroy(full);
}

/* ---- concurrency ---- */

HARNESS_DEFINE_ADAPTERS(ring_try, moirai_ring_mpmc_try_push, moirai_ring_mpmc_try_pop)

/* Blocking operations; odd-numbered threads use short timed waits, so
 * time-outs race with wake-ups too. A timed-out wait is retried. */
static int blocking_push(void *c, void *item, unsigned thread)
{
    if (thread % 2 == 0)
        return moirai_ring_mpmc_push(c, item);
    int rc;
    while ((rc = moirai_ring_mpmc_push_timed(
                c, item, moirai_deadline_after(50 * MOIRAI_NS_PER_US))) == -ETIMEDOUT)
        ;
    return rc;
}

static int blocking_pop(void *c, void **item, unsigned thread)
{
    if (thread % 2 == 0)
        return moirai_ring_mpmc_pop(c, item);
    int rc;
    while ((rc = moirai_ring_mpmc_pop_timed(
                c, item, moirai_deadline_after(50 * MOIRAI_NS_PER_US))) == -ETIMEDOUT)
        ;
    return rc;
}

static void close_ring(void *c)
{
    moirai_ring_mpmc_close(c);
}

static const harness_ops_t try_ops = {.push = ring_try_push, .pop = ring_try_pop, .fifo = true};
static const harness_ops_t blocking_ops = {
    .push = blocking_push, .pop = blocking_pop, .close = close_ring, .fifo = true};

static void run_shape(const harness_ops_t *ops, size_t capacity, unsigned producers,
                      unsigned consumers, uint64_t per_producer)
{
    moirai_ring_mpmc_t *r;
    cr_assert_eq(moirai_ring_mpmc_create(&r, capacity), 0);
    harness_result_t res = harness_run(ops, r, producers, consumers, per_producer);
    harness_assert_ok(res, ops == &try_ops ? "ring_mpmc try" : "ring_mpmc blocking");
    cr_assert_eq(moirai_ring_mpmc_size(r), 0);
    moirai_ring_mpmc_destroy(r);
}

Test(ring_mpmc, try_shape_1x1, .timeout = 60)
{
    run_shape(&try_ops, 64, 1, 1, harness_scaled(200000));
}

Test(ring_mpmc, try_shape_2x2, .timeout = 60)
{
    run_shape(&try_ops, 64, 2, 2, harness_scaled(100000));
}

Test(ring_mpmc, try_shape_4x4, .timeout = 60)
{
    run_shape(&try_ops, 16, 4, 4, harness_scaled(50000));
}

Test(ring_mpmc, try_shape_8x1, .timeout = 60)
{
    run_shape(&try_ops, 16, 8, 1, harness_scaled(25000));
}

Test(ring_mpmc, blocking_shape_1x1, .timeout = 60)
{
    run_shape(&blocking_ops, 64, 1, 1, harness_scaled(200000));
}

Test(ring_mpmc, blocking_shape_2x2, .timeout = 60)
{
    run_shape(&blocking_ops, 8, 2, 2, harness_scaled(100000));
}

Test(ring_mpmc, blocking_shape_4x4, .timeout = 60)
{
    run_shape(&blocking_ops, 4, 4, 4, harness_scaled(50000));
}

Test(ring_mpmc, blocking_shape_8x1, .timeout = 60)
{
    run_shape(&blocking_ops, 2, 8, 1, harness_scaled(25000));
}

/* What a producer writes before pushing is visible after the pop, in
 * push order (the ThreadSanitizer build checks the ordering). The blocking
 * operations take and publish slots through try_push / try_pop, so the try
 * operations cover them too. */
Test(ring_mpmc, push_publishes_item_contents, .timeout = 60)
{
    moirai_ring_mpmc_t *r;
    cr_assert_eq(moirai_ring_mpmc_create(&r, 16), 0);
    harness_publication(&try_ops, r, harness_scaled(50000));
    moirai_ring_mpmc_destroy(r);
}
