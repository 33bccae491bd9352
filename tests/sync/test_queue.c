/* The lock-free queue: FIFO order, empty and error paths, allocation
 * failures (nothing already accepted is lost), publication of pushed data,
 * and producer x consumer shapes with nothing lost, duplicated or invented
 * and per-producer FIFO. The shapes also catch the early_free mutant (a
 * dequeued node freed before its grace period): the sanitizer builds
 * report the use after free of the threads still reading it. */
#include "container_harness.h"

#include <moirai/sync/queue.h>

#include "oom.h"

static int sentinel_storage;
#define SENTINEL ((void *)&sentinel_storage)

Test(queue, create_rejects_null_out, .timeout = 10)
{
    cr_assert_eq(moirai_queue_create(NULL), -EINVAL);
}

Test(queue, empty_pop_is_eagain_and_leaves_out_untouched, .timeout = 10)
{
    moirai_queue_t *s;
    cr_assert_eq(moirai_queue_create(&s), 0);
    cr_assert(moirai_queue_is_empty(s));
    void *out = SENTINEL;
    cr_assert_eq(moirai_queue_try_pop(s, &out), -EAGAIN);
    cr_assert_eq(out, SENTINEL);
    moirai_queue_destroy(s);
    moirai_queue_destroy(NULL);
}

Test(queue, fifo_order_and_null_items, .timeout = 10)
{
    moirai_queue_t *s;
    cr_assert_eq(moirai_queue_create(&s), 0);
    for (uintptr_t i = 0; i < 1000; i++)
        cr_assert_eq(moirai_queue_push(s, (void *)i), 0); /* item 0 is NULL */
    cr_assert_not(moirai_queue_is_empty(s));
    for (uintptr_t i = 0; i < 1000; i++) {
        void *out = SENTINEL;
        cr_assert_eq(moirai_queue_try_pop(s, &out), 0);
        cr_assert_eq((uintptr_t)out, i);
    }
    cr_assert(moirai_queue_is_empty(s));
    void *out;
    cr_assert_eq(moirai_queue_try_pop(s, &out), -EAGAIN);
    moirai_queue_destroy(s);
}

Test(queue, destroy_frees_remaining_nodes, .timeout = 10)
{
    /* The ASan build's LeakSanitizer checks that nothing leaks. */
    moirai_queue_t *s;
    cr_assert_eq(moirai_queue_create(&s), 0);
    for (uintptr_t i = 0; i < 100; i++)
        cr_assert_eq(moirai_queue_push(s, (void *)i), 0);
    moirai_queue_destroy(s);
}

static int create_op(void *ctx)
{
    moirai_queue_t **out = ctx;
    return moirai_queue_create(out);
}

static void create_unchanged(void *ctx, long n)
{
    moirai_queue_t **out = ctx;
    cr_assert_eq((void *)*out, SENTINEL, "failure %ld touched *out", n);
}

Test(queue, create_reports_enomem, .timeout = 30)
{
    moirai_queue_t *s = SENTINEL;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(create_op, create_unchanged, &s);
    moirai_test_oom_uninstall();
    cr_assert_geq(failures, 1);
    moirai_queue_destroy(s);
}

typedef struct push_ctx {
    moirai_queue_t *s;
    uintptr_t item;
} push_ctx_t;

static int push_op(void *ctx)
{
    push_ctx_t *p = ctx;
    return moirai_queue_push(p->s, (void *)p->item);
}

static void push_unchanged(void *ctx, long n)
{
    push_ctx_t *p = ctx;
    /* Nothing was added: the queue is empty exactly when no earlier item
     * was accepted (its full contents are checked after the sweep). */
    cr_assert_eq(moirai_queue_is_empty(p->s), p->item == 0, "failure %ld changed the queue", n);
}

Test(queue, push_reports_enomem_and_keeps_earlier_items, .timeout = 60)
{
    /* Pushes allocate only when they start a new segment, so sweep every
     * push of enough items to fill several: each failing run must return
     * -ENOMEM and leave the queue as it was. */
    enum { ITEMS = 5000 };
    push_ctx_t p;
    cr_assert_eq(moirai_queue_create(&p.s), 0);
    long failures = 0;
    moirai_test_oom_install();
    for (p.item = 0; p.item < ITEMS; p.item++)
        failures += MOIRAI_TEST_OOM_SWEEP(push_op, push_unchanged, &p);
    moirai_test_oom_uninstall();
    cr_assert_geq(failures, 2, "only %ld pushes allocated", failures);
    for (uintptr_t i = 0; i < ITEMS; i++) {
        void *out;
        cr_assert_eq(moirai_queue_try_pop(p.s, &out), 0, "item %lu lost", (unsigned long)i);
        cr_assert_eq((uintptr_t)out, i);
    }
    void *out;
    cr_assert_eq(moirai_queue_try_pop(p.s, &out), -EAGAIN, "an item was invented");
    moirai_queue_destroy(p.s);
}

/* ---- concurrency ---- */

HARNESS_DEFINE_ADAPTERS(h, moirai_queue_push, moirai_queue_try_pop)

static const harness_ops_t queue_ops = {
    .push = h_push,
    .pop = h_pop,
    .fifo = true,
    .max_in_flight = 100000,
};

static void run_shape(unsigned producers, unsigned consumers, uint64_t per_producer)
{
    moirai_queue_t *s;
    cr_assert_eq(moirai_queue_create(&s), 0);
    harness_result_t r = harness_run(&queue_ops, s, producers, consumers, per_producer);
    harness_assert_ok(r, "queue");
    cr_assert(moirai_queue_is_empty(s));
    moirai_queue_destroy(s);
}

Test(queue, shape_1x1, .timeout = 60)
{
    run_shape(1, 1, harness_scaled(200000));
}

Test(queue, shape_2x2, .timeout = 60)
{
    run_shape(2, 2, harness_scaled(100000));
}

Test(queue, shape_4x4, .timeout = 60)
{
    run_shape(4, 4, harness_scaled(50000));
}

Test(queue, shape_8x1, .timeout = 60)
{
    run_shape(8, 1, harness_scaled(25000));
}

/* Pushers only, all at once, then one thread drains: the purest
 * contention on the push CAS. Every item must be there exactly once, in each pusher's order. */
Test(queue, concurrent_pushes_all_arrive, .timeout = 60)
{
    moirai_queue_t *c;
    cr_assert_eq(moirai_queue_create(&c), 0);
    harness_concurrent_pushes(&queue_ops, c, 4, harness_scaled(250000), HARNESS_FIFO);
    moirai_queue_destroy(c);
}

/* Every thread pushes and pops in turn: dequeued nodes come back through
 * the node cache while other threads still race on the queue's ends, the
 * pattern that breaks a Michael-Scott queue without safe reclamation. */
Test(queue, push_pop_churn_keeps_count, .timeout = 60)
{
    moirai_queue_t *c;
    cr_assert_eq(moirai_queue_create(&c), 0);
    harness_churn(&queue_ops, c, harness_scaled(200000));
    moirai_queue_destroy(c);
}

/* What a producer writes before pushing is visible after the pop (the
 * ThreadSanitizer build checks the ordering). */
Test(queue, push_publishes_item_contents, .timeout = 60)
{
    moirai_queue_t *c;
    cr_assert_eq(moirai_queue_create(&c), 0);
    harness_publication(&queue_ops, c, harness_scaled(50000));
    moirai_queue_destroy(c);
}
