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
    /* Nothing was added: the stack is empty exactly when no earlier item
     * was accepted (its full contents are checked after the sweep). */
    cr_assert_eq(moirai_queue_is_empty(p->s), p->item == 0, "failure %ld changed the stack", n);
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

static int h_push(void *c, void *item, unsigned thread)
{
    (void)thread;
    return moirai_queue_push(c, item);
}

static int h_pop(void *c, void **item, unsigned thread)
{
    (void)thread;
    return moirai_queue_try_pop(c, item);
}

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
typedef struct pushers {
    moirai_queue_t *c;
    uint64_t per_thread;
    unsigned index;
    _Atomic uint64_t *failed;
} pushers_t;

static void *pusher(void *p)
{
    pushers_t *a = p;
    for (uint64_t i = 0; i < a->per_thread; i++)
        if (moirai_queue_push(a->c, harness_item(a->index, i)) != 0)
            atomic_fetch_add(a->failed, 1);
    return NULL;
}

Test(queue, concurrent_pushes_all_arrive, .timeout = 60)
{
    enum { T = 4 };
    _Atomic uint64_t failed = 0;
    uint64_t n = harness_scaled(250000);
    moirai_queue_t *c;
    cr_assert_eq(moirai_queue_create(&c), 0);
    pthread_t t[T];
    pushers_t a[T];
    for (unsigned i = 0; i < T; i++) {
        a[i] = (pushers_t){c, n, i, &failed};
        cr_assert_eq(pthread_create(&t[i], NULL, pusher, &a[i]), 0);
    }
    for (unsigned i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&failed), 0);
    uint8_t *seen = calloc(T * n, 1);
    int64_t last[T] = {-1, -1, -1, -1};
    uint64_t count = 0, bad = 0;
    void *out;
    while (moirai_queue_try_pop(c, &out) == 0) {
        uint64_t v = (uint64_t)(uintptr_t)out;
        uint64_t prod = v >> HARNESS_SEQ_BITS, seq = v & HARNESS_SEQ_MASK;
        if (prod >= T || seq >= n || seen[prod * n + seq]++) {
            bad++;
            continue;
        }
        /* FIFO: each pusher's items come out in the order pushed. */
        if ((int64_t)seq <= last[prod])
            bad++;
        last[prod] = (int64_t)seq;
        count++;
    }
    free(seen);
    cr_assert_eq(bad, 0, "%lu items invented, duplicated or out of FIFO order", (unsigned long)bad);
    cr_assert_eq(count, T * n, "%lu of %lu items arrived", (unsigned long)count,
                 (unsigned long)(T * n));
    moirai_queue_destroy(c);
}

/* Every thread pushes and pops in turn: dequeued nodes come back through
 * the node cache while other threads still race on the queue's ends, the
 * pattern that breaks a Michael-Scott queue without safe reclamation. */
typedef struct churn {
    moirai_queue_t *s;
    uint64_t rounds;
    _Atomic uint64_t lost;
    _Atomic uint64_t empty; /* pops that found nothing: impossible here */
} churn_t;

static void *churn_thread(void *p)
{
    churn_t *c = p;
    for (uint64_t i = 0; i < c->rounds; i++) {
        if (moirai_queue_push(c->s, (void *)(uintptr_t)(i + 1)) != 0) {
            atomic_fetch_add(&c->lost, 1);
            continue;
        }
        void *out;
        /* Every thread pops only after pushing, so the container never
         * holds fewer than the 16 base items: a pop can find it empty
         * only if an accepted item was lost. */
        if (moirai_queue_try_pop(c->s, &out) != 0)
            atomic_fetch_add(&c->empty, 1);
    }
    return NULL;
}

Test(queue, push_pop_churn_keeps_count, .timeout = 60)
{
    churn_t c = {.rounds = harness_scaled(200000)};
    cr_assert_eq(moirai_queue_create(&c.s), 0);
    /* A base of items; pushes and pops balance around it. */
    for (uintptr_t i = 0; i < 16; i++)
        cr_assert_eq(moirai_queue_push(c.s, (void *)(UINTPTR_MAX - i)), 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, churn_thread, &c), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&c.lost), 0);
    cr_assert_eq(atomic_load(&c.empty), 0, "%lu pops found it empty: items were lost",
                 (unsigned long)atomic_load(&c.empty));
    /* Exactly 16 items remain (pushes and pops balanced). */
    int left = 0;
    void *out;
    while (moirai_queue_try_pop(c.s, &out) == 0)
        left++;
    cr_assert_eq(left, 16, "%d items left, expected 16", left);
    moirai_queue_destroy(c.s);
}

/* What a producer writes before pushing is visible after the pop (the
 * ThreadSanitizer build checks the ordering). */
typedef struct payload {
    uint64_t value;
    uint64_t check;
} payload_t;

typedef struct pub {
    moirai_queue_t *s;
    uint64_t n;
    _Atomic uint64_t bad;
    _Atomic int producer_done;
} pub_t;

static void *pub_producer(void *p)
{
    pub_t *c = p;
    for (uint64_t i = 0; i < c->n; i++) {
        payload_t *pl = malloc(sizeof(*pl));
        pl->value = i;
        pl->check = ~i;
        while (moirai_queue_push(c->s, pl) != 0)
            sched_yield();
    }
    atomic_store(&c->producer_done, 1);
    return NULL;
}

Test(queue, push_publishes_item_contents, .timeout = 60)
{
    pub_t c = {.n = harness_scaled(50000)};
    cr_assert_eq(moirai_queue_create(&c.s), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, pub_producer, &c), 0);
    uint64_t got = 0;
    for (bool done = false;;) {
        void *out;
        if (moirai_queue_try_pop(c.s, &out) != 0) {
            /* Empty after the producer returned: nothing more will come
             * (the count below shows whether something was lost). */
            if (done)
                break;
            done = atomic_load(&c.producer_done);
            sched_yield();
            continue;
        }
        payload_t *pl = out;
        if (pl->check != ~pl->value)
            atomic_fetch_add(&c.bad, 1);
        free(pl);
        got++;
    }
    pthread_join(t, NULL);
    cr_assert_eq(got, c.n, "%lu of %lu items arrived", (unsigned long)got, (unsigned long)c.n);
    cr_assert_eq(atomic_load(&c.bad), 0);
    moirai_queue_destroy(c.s);
}
