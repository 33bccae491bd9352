/* Long producer x consumer runs of every lock-free container (suite
 * 'stress'): shapes 1x1, 2x2, 4x4 and 8x1 (the SPSC ring: 1x1 with single
 * and batch operations), items tagged producer << 40 | seq, checked for
 * nothing lost, nothing duplicated, nothing invented and per-producer FIFO
 * (queues and rings).
 *
 * Parameters (environment):
 *   MOIRAI_STRESS_ITEMS  items per container over all its shapes
 *                        (default 10^7, i.e. 2 * 10^7 operations)
 *   MOIRAI_TEST_SCALE    divides that count (10 under sanitizers)
 * Each shape moves a quarter of the items. */
#include "container_harness.h"

#include <moirai/sync/queue.h>
#include <moirai/sync/rcu.h>
#include <moirai/sync/ring_mpmc.h>
#include <moirai/sync/ring_spsc.h>
#include <moirai/sync/stack.h>

static uint64_t items_per_container(void)
{
    return harness_scaled(harness_env_count("MOIRAI_STRESS_ITEMS", 10000000));
}

typedef struct shape {
    unsigned producers, consumers;
} shape_t;

static const shape_t shapes[] = {{1, 1}, {2, 2}, {4, 4}, {8, 1}};
#define SHAPES (sizeof(shapes) / sizeof(shapes[0]))

typedef void *(*create_fn)(void);
typedef void (*destroy_fn)(void *c);

static void run_all_shapes(const char *name, const harness_ops_t *ops, create_fn create,
                           destroy_fn destroy)
{
    uint64_t per_shape = items_per_container() / SHAPES;
    for (size_t i = 0; i < SHAPES; i++) {
        void *c = create();
        uint64_t per_producer = per_shape / shapes[i].producers;
        harness_result_t r =
            harness_run(ops, c, shapes[i].producers, shapes[i].consumers, per_producer);
        char what[64];
        snprintf(what, sizeof(what), "%s %ux%u", name, shapes[i].producers, shapes[i].consumers);
        harness_assert_ok(r, what);
        destroy(c);
    }
}

/* ---- stack ---- */

HARNESS_DEFINE_ADAPTERS(stack, moirai_stack_push, moirai_stack_try_pop)

static void *stack_create(void)
{
    moirai_stack_t *s;
    cr_assert_eq(moirai_stack_create(&s), 0);
    return s;
}

static void stack_destroy(void *c)
{
    cr_assert(moirai_stack_is_empty(c));
    moirai_stack_destroy(c);
}

Test(containers_stress, stack, .timeout = 900)
{
    static const harness_ops_t ops = {
        .push = stack_push, .pop = stack_pop, .fifo = false, .max_in_flight = 100000};
    run_all_shapes("stack", &ops, stack_create, stack_destroy);
}

/* ---- intrusive stack: an object per item, freed a grace period after
 * its pop (the reuse rule) ---- */

typedef struct obj {
    moirai_stack_node_t node;
    void *item;
    moirai_rcu_head_t rcu;
} obj_t;

static void free_obj(moirai_rcu_head_t *head)
{
    free((char *)head - offsetof(obj_t, rcu));
}

static int node_push(void *c, void *item, unsigned thread)
{
    (void)thread;
    obj_t *o = malloc(sizeof(*o));
    if (o == NULL)
        return -ENOMEM;
    o->item = item;
    moirai_node_stack_push(c, &o->node);
    return 0;
}

static int node_pop(void *c, void **item, unsigned thread)
{
    (void)thread;
    moirai_stack_node_t *n;
    int rc = moirai_node_stack_try_pop(c, &n);
    if (rc != 0)
        return rc;
    obj_t *o = (obj_t *)((char *)n - offsetof(obj_t, node));
    *item = o->item;
    moirai_rcu_call(&o->rcu, free_obj);
    return 0;
}

static void *node_create(void)
{
    moirai_node_stack_t *s = malloc(sizeof(*s));
    cr_assert_not_null(s);
    moirai_node_stack_init(s);
    return s;
}

static void node_destroy(void *c)
{
    cr_assert(moirai_node_stack_is_empty(c));
    moirai_rcu_barrier();
    free(c);
}

Test(containers_stress, node_stack, .timeout = 900)
{
    static const harness_ops_t ops = {
        .push = node_push, .pop = node_pop, .fifo = false, .max_in_flight = 100000};
    run_all_shapes("node_stack", &ops, node_create, node_destroy);
}

/* ---- queue ---- */

HARNESS_DEFINE_ADAPTERS(queue, moirai_queue_push, moirai_queue_try_pop)

static void *queue_create(void)
{
    moirai_queue_t *q;
    cr_assert_eq(moirai_queue_create(&q), 0);
    return q;
}

static void queue_destroy(void *c)
{
    cr_assert(moirai_queue_is_empty(c));
    moirai_queue_destroy(c);
}

Test(containers_stress, queue, .timeout = 900)
{
    static const harness_ops_t ops = {
        .push = queue_push, .pop = queue_pop, .fifo = true, .max_in_flight = 100000};
    run_all_shapes("queue", &ops, queue_create, queue_destroy);
}

/* ---- MPMC ring: blocking operations, closed at the end ---- */

static int mpmc_push(void *c, void *item, unsigned thread)
{
    /* Every fourth thread uses short timed waits, retried on time-out. */
    if (thread % 4 != 3)
        return moirai_ring_mpmc_push(c, item);
    int rc;
    while ((rc = moirai_ring_mpmc_push_timed(
                c, item, moirai_deadline_after(20 * MOIRAI_NS_PER_US))) == -ETIMEDOUT)
        ;
    return rc;
}

static int mpmc_pop(void *c, void **item, unsigned thread)
{
    if (thread % 4 != 3)
        return moirai_ring_mpmc_pop(c, item);
    int rc;
    while ((rc = moirai_ring_mpmc_pop_timed(
                c, item, moirai_deadline_after(20 * MOIRAI_NS_PER_US))) == -ETIMEDOUT)
        ;
    return rc;
}

static void mpmc_close(void *c)
{
    moirai_ring_mpmc_close(c);
}

static void *mpmc_create(void)
{
    moirai_ring_mpmc_t *r;
    cr_assert_eq(moirai_ring_mpmc_create(&r, 256), 0);
    return r;
}

static void mpmc_destroy(void *c)
{
    cr_assert_eq(moirai_ring_mpmc_size(c), 0);
    moirai_ring_mpmc_destroy(c);
}

Test(containers_stress, ring_mpmc_blocking, .timeout = 900)
{
    static const harness_ops_t ops = {
        .push = mpmc_push, .pop = mpmc_pop, .close = mpmc_close, .fifo = true};
    run_all_shapes("ring_mpmc", &ops, mpmc_create, mpmc_destroy);
}

/* ---- MPMC ring: try_ operations ---- */

HARNESS_DEFINE_ADAPTERS(mpmc_try, moirai_ring_mpmc_try_push, moirai_ring_mpmc_try_pop)

Test(containers_stress, ring_mpmc_try, .timeout = 900)
{
    static const harness_ops_t ops = {.push = mpmc_try_push, .pop = mpmc_try_pop, .fifo = true};
    run_all_shapes("ring_mpmc try", &ops, mpmc_create, mpmc_destroy);
}

/* ---- SPSC ring ---- */

Test(containers_stress, ring_spsc, .timeout = 900)
{
    uint64_t n = items_per_container();
    harness_spsc_pair("spsc single", 1024, n / 2, false, 64);
    harness_spsc_pair("spsc batch", 1024, n / 2, true, 64);
}
