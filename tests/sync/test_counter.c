/* moirai_counter_t: per-CPU slots sized from the topology, exact totals
 * under concurrency, -ENOMEM handled. */
#include <criterion/criterion.h>

#include <errno.h>

#include <moirai/core/alloc.h>
#include <moirai/core/topology.h>
#include <moirai/sync/counter.h>

#include "lock_test_util.h"
#include "oom.h"

Test(counter, create_rejects_null, .timeout = 10)
{
    cr_assert_eq(moirai_counter_create(NULL), -EINVAL);
    moirai_counter_destroy(NULL); /* allowed, does nothing */
}

Test(counter, slots_follow_topology, .timeout = 10)
{
    moirai_counter_t *c = NULL;
    cr_assert_eq(moirai_counter_create(&c), 0);
    cr_assert_eq(moirai_counter_slots(c), (size_t)moirai_topology_cpu_count());
    moirai_counter_destroy(c);

    /* A synthetic 2-node x 4-CPU machine gives 8 slots. */
    cr_assert_eq(moirai_topology_inject_uniform(2, 4), 0);
    cr_assert_eq(moirai_counter_create(&c), 0);
    cr_assert_eq(moirai_counter_slots(c), 8);
    moirai_counter_add(c, 5);
    cr_assert_eq(moirai_counter_read(c), 5);
    moirai_counter_destroy(c);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

Test(counter, add_read_single_thread, .timeout = 10)
{
    moirai_counter_t *c;
    cr_assert_eq(moirai_counter_create(&c), 0);
    cr_assert_eq(moirai_counter_read(c), 0, "a new counter is zero");
    moirai_counter_add(c, 10);
    moirai_counter_add(c, -3);
    cr_assert_eq(moirai_counter_read(c), 7);
    moirai_counter_add(c, -20);
    cr_assert_eq(moirai_counter_read(c), -13, "negative totals");
    moirai_counter_add(c, INT64_MAX);
    moirai_counter_add(c, 14);
    cr_assert_eq(moirai_counter_read(c), INT64_MIN, "arithmetic wraps modulo 2^64");
    moirai_counter_destroy(c);
}

/* OOM sweep: every allocation failure gives -ENOMEM and leaves the
 * out-pointer alone (leaks are LeakSanitizer's to catch). */
typedef struct oom_ctx {
    moirai_counter_t *out;
} oom_ctx_t;

static int oom_op(void *ctx)
{
    oom_ctx_t *o = ctx;
    return moirai_counter_create(&o->out);
}

static void oom_check(void *ctx, long n)
{
    oom_ctx_t *o = ctx;
    cr_assert_eq(o->out, (moirai_counter_t *)(uintptr_t)0x1,
                 "a failed create (allocation %ld failing) wrote the out-pointer", n);
}

Test(counter, create_reports_enomem, .timeout = 30)
{
    /* The topology is process-wide state allocated once: load it first so
     * the sweep counts only the counter's own allocations. */
    (void)moirai_topology_cpu_count();
    oom_ctx_t o = {.out = (moirai_counter_t *)(uintptr_t)0x1};
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(oom_op, oom_check, &o);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0, "create must allocate, so some run must fail");
    cr_assert_neq(o.out, (moirai_counter_t *)(uintptr_t)0x1);
    cr_assert_eq(moirai_counter_read(o.out), 0);
    moirai_counter_destroy(o.out);
}

/* Without the topology loaded, the sweep also fails its reading: each of
 * those failures must be the create's -ENOMEM, not a counter sized for
 * one CPU (which is what create returned before it loaded the topology
 * itself: the sweep then ended at its first run). Criterion runs each
 * test in a fresh process, so nothing has read the topology yet. */
Test(counter, create_reports_enomem_reading_the_topology, .init = moirai_test_live_unchecked,
     .timeout = 30)
{
    oom_ctx_t o = {.out = (moirai_counter_t *)(uintptr_t)0x1};
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(oom_op, oom_check, &o);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 1, "the topology's allocations and the counter's must each fail");
    cr_assert_eq(moirai_counter_read(o.out), 0);
    moirai_counter_destroy(o.out);
}

/* N threads x M adds of +3 and -1: the total is exact. */
typedef struct add_ctx {
    moirai_counter_t *c;
    long iters;
} add_ctx_t;

static void *add_worker(void *arg, int index)
{
    add_ctx_t *a = arg;
    (void)index;
    for (long i = 0; i < a->iters; i++) {
        moirai_counter_add(a->c, 3);
        moirai_counter_add(a->c, -1);
    }
    return NULL;
}

Test(counter, concurrent_adds_exact, .timeout = 60)
{
    add_ctx_t a = {.iters = test_iters(500000, 5000)};
    cr_assert_eq(moirai_counter_create(&a.c), 0);
    int n = test_threads();
    test_run_threads(n, add_worker, &a);
    cr_assert_eq(moirai_counter_read(a.c), 2L * n * a.iters);
    moirai_counter_destroy(a.c);
}
