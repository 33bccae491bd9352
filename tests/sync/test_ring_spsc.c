/* The bounded SPSC ring: argument checks, allocation failure, full/empty
 * and FIFO with wrap-around for single and batch operations (including
 * batches that straddle the end of the array and partial batches), and a
 * producer/consumer pair moving tagged items, singly and in batches, with
 * nothing lost, duplicated, invented or reordered. */
#include "container_harness.h"

#include <moirai/sync/ring_spsc.h>

#include "oom.h"

static int sentinel_storage;
#define SENTINEL ((void *)&sentinel_storage)

Test(ring_spsc, create_rejects_bad_arguments, .timeout = 10)
{
    moirai_ring_spsc_t *r = SENTINEL;
    cr_assert_eq(moirai_ring_spsc_create(NULL, 8), -EINVAL);
    size_t bad[] = {
        0,       3, 6, 100, MOIRAI_RING_SPSC_MAX_CAPACITY * 2, MOIRAI_RING_SPSC_MAX_CAPACITY + 1,
        SIZE_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(moirai_ring_spsc_create(&r, bad[i]), -EINVAL, "capacity %zu", bad[i]);
        cr_assert_eq((void *)r, SENTINEL);
    }
    moirai_ring_spsc_destroy(NULL);
}

Test(ring_spsc, capacity_one_works, .timeout = 10)
{
    moirai_ring_spsc_t *r;
    cr_assert_eq(moirai_ring_spsc_create(&r, 1), 0);
    cr_assert_eq(moirai_ring_spsc_capacity(r), 1);
    void *out;
    for (uintptr_t i = 0; i < 10; i++) {
        cr_assert_eq(moirai_ring_spsc_try_push(r, (void *)i), 0);
        cr_assert_eq(moirai_ring_spsc_try_push(r, SENTINEL), -EAGAIN);
        cr_assert_eq(moirai_ring_spsc_try_pop(r, &out), 0);
        cr_assert_eq((uintptr_t)out, i);
        cr_assert_eq(moirai_ring_spsc_try_pop(r, &out), -EAGAIN);
    }
    moirai_ring_spsc_destroy(r);
}

static int create_op(void *ctx)
{
    return moirai_ring_spsc_create(ctx, 1024);
}

static void create_unchanged(void *ctx, long n)
{
    cr_assert_eq(*(void **)ctx, SENTINEL, "failure %ld touched *out", n);
}

Test(ring_spsc, create_reports_enomem, .timeout = 30)
{
    moirai_ring_spsc_t *r = SENTINEL;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(create_op, create_unchanged, &r);
    moirai_test_oom_uninstall();
    cr_assert_geq(failures, 1);
    moirai_ring_spsc_destroy(r);
}

Test(ring_spsc, full_empty_fifo_and_wraparound, .timeout = 10)
{
    moirai_ring_spsc_t *r;
    cr_assert_eq(moirai_ring_spsc_create(&r, 8), 0);
    void *out = SENTINEL;
    cr_assert_eq(moirai_ring_spsc_try_pop(r, &out), -EAGAIN);
    cr_assert_eq(out, SENTINEL);
    uintptr_t next_in = 0, next_out = 0;
    for (int round = 0; round < 100; round++) {
        size_t fill = (size_t)round % 9;
        for (size_t i = 0; i < fill; i++)
            cr_assert_eq(moirai_ring_spsc_try_push(r, (void *)next_in++), 0);
        cr_assert_eq(moirai_ring_spsc_size(r), fill);
        if (fill == 8)
            cr_assert_eq(moirai_ring_spsc_try_push(r, SENTINEL), -EAGAIN);
        for (size_t i = 0; i < fill; i++) {
            cr_assert_eq(moirai_ring_spsc_try_pop(r, &out), 0);
            cr_assert_eq((uintptr_t)out, next_out++);
        }
        cr_assert_eq(moirai_ring_spsc_try_pop(r, &out), -EAGAIN);
    }
    moirai_ring_spsc_destroy(r);
}

Test(ring_spsc, batches_wrap_and_stop_at_full_or_empty, .timeout = 10)
{
    moirai_ring_spsc_t *r;
    cr_assert_eq(moirai_ring_spsc_create(&r, 8), 0);
    void *in[20], *out[20];
    uintptr_t next_in = 0, next_out = 0;
    cr_assert_eq(moirai_ring_spsc_push_batch(r, in, 0), 0);
    cr_assert_eq(moirai_ring_spsc_pop_batch(r, out, 0), 0);
    cr_assert_eq(moirai_ring_spsc_pop_batch(r, out, 5), 0);
    /* Batch sizes 1..11 against a ring of 8, with the cursors starting
     * at every offset: batches straddle the array's end and get cut at
     * full and at empty. */
    for (int round = 0; round < 200; round++) {
        size_t want = 1 + (size_t)round % 11;
        size_t room = 8 - moirai_ring_spsc_size(r);
        for (size_t i = 0; i < want; i++)
            in[i] = (void *)(next_in + i);
        size_t pushed = moirai_ring_spsc_push_batch(r, in, want);
        cr_assert_eq(pushed, want < room ? want : room);
        next_in += pushed;
        size_t take = 1 + (size_t)(round * 7) % 11;
        size_t have = moirai_ring_spsc_size(r);
        size_t popped = moirai_ring_spsc_pop_batch(r, out, take);
        cr_assert_eq(popped, take < have ? take : have);
        for (size_t i = 0; i < popped; i++)
            cr_assert_eq((uintptr_t)out[i], next_out++, "round %d item %zu", round, i);
    }
    /* Drain with single pops: order continues across the two APIs. */
    void *one;
    while (moirai_ring_spsc_try_pop(r, &one) == 0)
        cr_assert_eq((uintptr_t)one, next_out++);
    cr_assert_eq(next_out, next_in);
    moirai_ring_spsc_destroy(r);
}

/* ---- producer / consumer ---- */

Test(ring_spsc, pair_single_items, .timeout = 60)
{
    harness_spsc_pair("single items", 64, harness_scaled(1000000), false, 32);
}

Test(ring_spsc, pair_batches, .timeout = 60)
{
    harness_spsc_pair("batches", 64, harness_scaled(1000000), true, 32);
}

Test(ring_spsc, pair_tiny_ring, .timeout = 60)
{
    harness_spsc_pair("tiny ring", 2, harness_scaled(200000), false, 32);
}

/* What the producer writes before pushing is visible after the pop (the
 * ThreadSanitizer build checks the ordering). */
typedef struct pair {
    moirai_ring_spsc_t *r;
    uint64_t n;
} pair_t;

typedef struct payload {
    uint64_t value;
    uint64_t check;
} payload_t;

static void *pub_producer(void *p)
{
    pair_t *c = p;
    for (uint64_t i = 0; i < c->n; i++) {
        payload_t *pl = malloc(sizeof(*pl));
        pl->value = i;
        pl->check = ~i;
        while (moirai_ring_spsc_try_push(c->r, pl) != 0)
            sched_yield();
    }
    return NULL;
}

Test(ring_spsc, push_publishes_item_contents, .timeout = 60)
{
    pair_t c = {.n = harness_scaled(50000)};
    cr_assert_eq(moirai_ring_spsc_create(&c.r, 16), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, pub_producer, &c), 0);
    uint64_t bad = 0;
    for (uint64_t i = 0; i < c.n;) {
        void *out;
        if (moirai_ring_spsc_try_pop(c.r, &out) != 0) {
            sched_yield();
            continue;
        }
        payload_t *pl = out;
        if (pl->value != i || pl->check != ~i)
            bad++;
        free(pl);
        i++;
    }
    pthread_join(t, NULL);
    cr_assert_eq(bad, 0);
    moirai_ring_spsc_destroy(c.r);
}
