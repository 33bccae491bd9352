/* The lock-free stack: LIFO order, empty and error paths, allocation
 * failures, publication of pushed data, and producer x consumer shapes
 * with nothing lost, duplicated or invented. The shapes also catch the
 * cas_no_retry mutant (a push that gives up after one lost CAS loses its
 * item). */
#include "container_harness.h"

#include <moirai/sync/rcu.h>
#include <moirai/sync/stack.h>

#include "oom.h"

static int sentinel_storage;
#define SENTINEL ((void *)&sentinel_storage)

Test(stack, create_rejects_null_out, .timeout = 10)
{
    cr_assert_eq(moirai_stack_create(NULL), -EINVAL);
}

Test(stack, empty_pop_is_eagain_and_leaves_out_untouched, .timeout = 10)
{
    moirai_stack_t *s;
    cr_assert_eq(moirai_stack_create(&s), 0);
    cr_assert(moirai_stack_is_empty(s));
    void *out = SENTINEL;
    cr_assert_eq(moirai_stack_try_pop(s, &out), -EAGAIN);
    cr_assert_eq(out, SENTINEL);
    moirai_stack_destroy(s);
    moirai_stack_destroy(NULL);
}

Test(stack, lifo_order_and_null_items, .timeout = 10)
{
    moirai_stack_t *s;
    cr_assert_eq(moirai_stack_create(&s), 0);
    for (uintptr_t i = 0; i < 1000; i++)
        cr_assert_eq(moirai_stack_push(s, (void *)i), 0); /* item 0 is NULL */
    cr_assert_not(moirai_stack_is_empty(s));
    for (uintptr_t i = 1000; i-- > 0;) {
        void *out = SENTINEL;
        cr_assert_eq(moirai_stack_try_pop(s, &out), 0);
        cr_assert_eq((uintptr_t)out, i);
    }
    cr_assert(moirai_stack_is_empty(s));
    void *out;
    cr_assert_eq(moirai_stack_try_pop(s, &out), -EAGAIN);
    moirai_stack_destroy(s);
}

Test(stack, destroy_frees_remaining_nodes, .timeout = 10)
{
    /* The ASan build's LeakSanitizer checks that nothing leaks. */
    moirai_stack_t *s;
    cr_assert_eq(moirai_stack_create(&s), 0);
    for (uintptr_t i = 0; i < 100; i++)
        cr_assert_eq(moirai_stack_push(s, (void *)i), 0);
    moirai_stack_destroy(s);
}

static int create_op(void *ctx)
{
    moirai_stack_t **out = ctx;
    return moirai_stack_create(out);
}

static void create_unchanged(void *ctx, long n)
{
    moirai_stack_t **out = ctx;
    cr_assert_eq((void *)*out, SENTINEL, "failure %ld touched *out", n);
}

Test(stack, create_reports_enomem, .timeout = 30)
{
    moirai_stack_t *s = SENTINEL;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(create_op, create_unchanged, &s);
    moirai_test_oom_uninstall();
    cr_assert_geq(failures, 1);
    moirai_stack_destroy(s);
}

typedef struct push_ctx {
    moirai_stack_t *s;
    uintptr_t item;
} push_ctx_t;

static int push_op(void *ctx)
{
    push_ctx_t *p = ctx;
    return moirai_stack_push(p->s, (void *)p->item);
}

static void push_unchanged(void *ctx, long n)
{
    push_ctx_t *p = ctx;
    /* Nothing was added: the stack is empty exactly when no earlier item
     * was accepted (its full contents are checked after the sweep). */
    cr_assert_eq(moirai_stack_is_empty(p->s), p->item == 0, "failure %ld changed the stack", n);
}

Test(stack, push_reports_enomem_and_keeps_earlier_items, .timeout = 30)
{
    /* A fresh process: this thread's node cache is empty, so every push
     * must allocate. */
    push_ctx_t p;
    cr_assert_eq(moirai_stack_create(&p.s), 0);
    moirai_test_oom_install();
    for (p.item = 0; p.item < 64; p.item++) {
        long failures = MOIRAI_TEST_OOM_SWEEP(push_op, push_unchanged, &p);
        cr_assert_geq(failures, 1, "push %lu did not allocate", (unsigned long)p.item);
    }
    moirai_test_oom_uninstall();
    for (uintptr_t i = 64; i-- > 0;) {
        void *out;
        cr_assert_eq(moirai_stack_try_pop(p.s, &out), 0, "item %lu lost", (unsigned long)i);
        cr_assert_eq((uintptr_t)out, i);
    }
    void *out;
    cr_assert_eq(moirai_stack_try_pop(p.s, &out), -EAGAIN, "an item was invented");
    moirai_stack_destroy(p.s);
}

/* ---- concurrency ---- */

static int h_push(void *c, void *item, unsigned thread)
{
    (void)thread;
    return moirai_stack_push(c, item);
}

static int h_pop(void *c, void **item, unsigned thread)
{
    (void)thread;
    return moirai_stack_try_pop(c, item);
}

static const harness_ops_t stack_ops = {
    .push = h_push,
    .pop = h_pop,
    .fifo = false,
    .max_in_flight = 100000,
};

static void run_shape(unsigned producers, unsigned consumers, uint64_t per_producer)
{
    moirai_stack_t *s;
    cr_assert_eq(moirai_stack_create(&s), 0);
    harness_result_t r = harness_run(&stack_ops, s, producers, consumers, per_producer);
    harness_assert_ok(r, "stack");
    cr_assert(moirai_stack_is_empty(s));
    moirai_stack_destroy(s);
}

Test(stack, shape_1x1, .timeout = 60)
{
    run_shape(1, 1, harness_scaled(200000));
}

Test(stack, shape_2x2, .timeout = 60)
{
    run_shape(2, 2, harness_scaled(100000));
}

Test(stack, shape_4x4, .timeout = 60)
{
    run_shape(4, 4, harness_scaled(50000));
}

Test(stack, shape_8x1, .timeout = 60)
{
    run_shape(8, 1, harness_scaled(25000));
}

/* Pushers only, all at once, then one thread drains: the purest
 * contention on the push CAS. Every item must be there exactly once (newest first per pusher). */
typedef struct pushers {
    moirai_stack_t *c;
    uint64_t per_thread;
    unsigned index;
    _Atomic uint64_t *failed;
} pushers_t;

static void *pusher(void *p)
{
    pushers_t *a = p;
    for (uint64_t i = 0; i < a->per_thread; i++)
        if (moirai_stack_push(a->c, harness_item(a->index, i)) != 0)
            atomic_fetch_add(a->failed, 1);
    return NULL;
}

Test(stack, concurrent_pushes_all_arrive, .timeout = 60)
{
    enum { T = 4 };
    _Atomic uint64_t failed = 0;
    uint64_t n = harness_scaled(250000);
    moirai_stack_t *c;
    cr_assert_eq(moirai_stack_create(&c), 0);
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
    while (moirai_stack_try_pop(c, &out) == 0) {
        uint64_t v = (uint64_t)(uintptr_t)out;
        uint64_t prod = v >> HARNESS_SEQ_BITS, seq = v & HARNESS_SEQ_MASK;
        if (prod >= T || seq >= n || seen[prod * n + seq]++) {
            bad++;
            continue;
        }
        /* LIFO: each pusher's items come out newest first. */
        if (last[prod] >= 0 && (int64_t)seq >= last[prod])
            bad++;
        last[prod] = (int64_t)seq;
        count++;
    }
    free(seen);
    cr_assert_eq(bad, 0, "%lu items invented, duplicated or out of LIFO order", (unsigned long)bad);
    cr_assert_eq(count, T * n, "%lu of %lu items arrived", (unsigned long)count,
                 (unsigned long)(T * n));
    moirai_stack_destroy(c);
}

/* Every thread pushes and pops in turn: a popped node goes back into the
 * same stack through the node cache while other threads still race on
 * it, the pattern that breaks a Treiber stack without ABA protection. */
typedef struct churn {
    moirai_stack_t *s;
    uint64_t rounds;
    _Atomic uint64_t lost;
    _Atomic uint64_t empty; /* pops that found nothing: impossible here */
} churn_t;

static void *churn_thread(void *p)
{
    churn_t *c = p;
    for (uint64_t i = 0; i < c->rounds; i++) {
        if (moirai_stack_push(c->s, (void *)(uintptr_t)(i + 1)) != 0) {
            atomic_fetch_add(&c->lost, 1);
            continue;
        }
        void *out;
        /* Every thread pops only after pushing, so the container never
         * holds fewer than the 16 base items: a pop can find it empty
         * only if an accepted item was lost. */
        if (moirai_stack_try_pop(c->s, &out) != 0)
            atomic_fetch_add(&c->empty, 1);
    }
    return NULL;
}

Test(stack, push_pop_churn_keeps_count, .timeout = 60)
{
    churn_t c = {.rounds = harness_scaled(200000)};
    cr_assert_eq(moirai_stack_create(&c.s), 0);
    /* A base of items; pushes and pops balance around it. */
    for (uintptr_t i = 0; i < 16; i++)
        cr_assert_eq(moirai_stack_push(c.s, (void *)(UINTPTR_MAX - i)), 0);
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
    while (moirai_stack_try_pop(c.s, &out) == 0)
        left++;
    cr_assert_eq(left, 16, "%d items left, expected 16", left);
    moirai_stack_destroy(c.s);
}

/* What a producer writes before pushing is visible after the pop (the
 * ThreadSanitizer build checks the ordering). */
typedef struct payload {
    uint64_t value;
    uint64_t check;
} payload_t;

typedef struct pub {
    moirai_stack_t *s;
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
        while (moirai_stack_push(c->s, pl) != 0)
            sched_yield();
    }
    atomic_store(&c->producer_done, 1);
    return NULL;
}

Test(stack, push_publishes_item_contents, .timeout = 60)
{
    pub_t c = {.n = harness_scaled(50000)};
    cr_assert_eq(moirai_stack_create(&c.s), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, pub_producer, &c), 0);
    uint64_t got = 0;
    for (bool done = false;;) {
        void *out;
        if (moirai_stack_try_pop(c.s, &out) != 0) {
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
    moirai_stack_destroy(c.s);
}

/* ---- the intrusive stack ---- */

typedef struct obj {
    moirai_stack_node_t node;
    uintptr_t value;
    _Atomic int in_stack; /* 1 between a push and the pop that takes it */
    moirai_rcu_head_t rcu;
} obj_t;

static obj_t *obj_of(moirai_stack_node_t *n)
{
    return (obj_t *)((char *)n - offsetof(obj_t, node));
}

static moirai_node_stack_t static_stack = MOIRAI_NODE_STACK_INIT;

Test(node_stack, static_init_empty_and_lifo, .timeout = 10)
{
    moirai_stack_node_t *out = SENTINEL;
    cr_assert(moirai_node_stack_is_empty(&static_stack));
    cr_assert_eq(moirai_node_stack_try_pop(&static_stack, &out), -EAGAIN);
    cr_assert_eq((void *)out, SENTINEL);
    moirai_node_stack_t s;
    moirai_node_stack_init(&s);
    cr_assert(moirai_node_stack_is_empty(&s));
    obj_t objs[100];
    for (uintptr_t i = 0; i < 100; i++) {
        objs[i].value = i;
        moirai_node_stack_push(&s, &objs[i].node);
    }
    cr_assert_not(moirai_node_stack_is_empty(&s));
    for (uintptr_t i = 100; i-- > 0;) {
        cr_assert_eq(moirai_node_stack_try_pop(&s, &out), 0);
        cr_assert_eq(obj_of(out), &objs[i]);
        cr_assert_eq(obj_of(out)->value, i);
    }
    cr_assert_eq(moirai_node_stack_try_pop(&s, &out), -EAGAIN);
}

/* Harness adapter: one object per item, freed after a grace period (the
 * reuse rule) through moirai_rcu_call(). */
static void free_obj(moirai_rcu_head_t *head)
{
    free((char *)head - offsetof(obj_t, rcu));
}

static int n_push(void *c, void *item, unsigned thread)
{
    (void)thread;
    obj_t *o = malloc(sizeof(*o));
    if (o == NULL)
        return -ENOMEM;
    o->value = (uintptr_t)item;
    moirai_node_stack_push(c, &o->node);
    return 0;
}

static int n_pop(void *c, void **item, unsigned thread)
{
    (void)thread;
    moirai_stack_node_t *n;
    int rc = moirai_node_stack_try_pop(c, &n);
    if (rc != 0)
        return rc;
    obj_t *o = obj_of(n);
    *item = (void *)o->value;
    moirai_rcu_call(&o->rcu, free_obj);
    return 0;
}

static const harness_ops_t node_stack_ops = {
    .push = n_push,
    .pop = n_pop,
    .fifo = false,
    .max_in_flight = 100000,
};

static void run_node_shape(unsigned producers, unsigned consumers, uint64_t per_producer)
{
    moirai_node_stack_t s = MOIRAI_NODE_STACK_INIT;
    harness_result_t r = harness_run(&node_stack_ops, &s, producers, consumers, per_producer);
    harness_assert_ok(r, "node stack");
    cr_assert(moirai_node_stack_is_empty(&s));
    moirai_rcu_barrier(); /* every object freed before the test ends */
}

Test(node_stack, shape_1x1, .timeout = 60)
{
    run_node_shape(1, 1, harness_scaled(100000));
}

Test(node_stack, shape_2x2, .timeout = 60)
{
    run_node_shape(2, 2, harness_scaled(50000));
}

Test(node_stack, shape_4x4, .timeout = 60)
{
    run_node_shape(4, 4, harness_scaled(25000));
}

Test(node_stack, shape_8x1, .timeout = 60)
{
    run_node_shape(8, 1, harness_scaled(12500));
}

/* Threads recycle a small pool of objects by the reuse rule (a batch of
 * popped objects goes back into use after moirai_rcu_synchronize()), the
 * way the benchmark and a free list use the stack. Every object records
 * whether it is in the stack: a push of an object already in it, or a pop
 * of one that is not, is counted, as is a pop that finds the stack empty
 * although the popper's own push is unmatched. (ABA itself needs a popper
 * to stall inside a window of a few instructions; in trials without the
 * grace period this test did not hit it, so it is no proof of ABA safety:
 * the argument in stack.c is.) */
enum { POOL = 32, RECYCLERS = 4 };

typedef struct recycle {
    moirai_node_stack_t s;
    obj_t objs[RECYCLERS][POOL];
    uint64_t rounds;
    _Atomic uint64_t double_push, bad_pop, empty;
} recycle_t;

typedef struct recycle_arg {
    recycle_t *r;
    unsigned id;
} recycle_arg_t;

static void *recycler(void *p)
{
    recycle_arg_t *a = p;
    recycle_t *r = a->r;
    obj_t *ready[POOL], *popped[POOL];
    size_t nready = POOL, npopped = 0;
    for (size_t i = 0; i < POOL; i++)
        ready[i] = &r->objs[a->id][i];
    for (uint64_t i = 0; i < r->rounds; i++) {
        obj_t *o = ready[--nready];
        if (atomic_exchange(&o->in_stack, 1) != 0)
            atomic_fetch_add(&r->double_push, 1);
        moirai_node_stack_push(&r->s, &o->node);
        moirai_stack_node_t *n;
        if (moirai_node_stack_try_pop(&r->s, &n) != 0) {
            /* Impossible: our own push is not matched yet. */
            atomic_fetch_add(&r->empty, 1);
            break;
        }
        obj_t *got = obj_of(n);
        if (atomic_exchange(&got->in_stack, 0) != 1)
            atomic_fetch_add(&r->bad_pop, 1);
        popped[npopped++] = got;
        if (nready == 0) {
            moirai_rcu_synchronize();
            for (size_t k = 0; k < npopped; k++)
                ready[k] = popped[k];
            nready = npopped;
            npopped = 0;
        }
    }
    return NULL;
}

Test(node_stack, recycling_by_the_reuse_rule_keeps_every_node, .timeout = 60)
{
    recycle_t *r = calloc(1, sizeof(*r));
    moirai_node_stack_init(&r->s);
    r->rounds = harness_scaled(200000);
    pthread_t t[RECYCLERS];
    recycle_arg_t a[RECYCLERS];
    for (unsigned i = 0; i < RECYCLERS; i++) {
        a[i] = (recycle_arg_t){r, i};
        cr_assert_eq(pthread_create(&t[i], NULL, recycler, &a[i]), 0);
    }
    for (unsigned i = 0; i < RECYCLERS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&r->empty), 0, "a pop found the stack empty: a node was lost");
    cr_assert_eq(atomic_load(&r->double_push), 0);
    cr_assert_eq(atomic_load(&r->bad_pop), 0, "popped an object that was not in the stack");
    cr_assert(moirai_node_stack_is_empty(&r->s));
    free(r);
}
