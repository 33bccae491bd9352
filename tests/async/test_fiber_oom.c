/* Allocation failure: creating a runtime and spawning a fiber fail with
 * -ENOMEM at every allocation they make, leave nothing behind, and the
 * runtime keeps working afterwards. */
#include "async_test_util.h"

#include "oom.h"

static int create_destroy(void *ctx)
{
    (void)ctx;
    moirai_runtime_t *rt = NULL;
    int rc = moirai_runtime_create(&rt, NULL);
    if (rc != 0)
        return rc;
    return moirai_runtime_destroy(rt);
}

static void nothing_left(void *ctx, long n)
{
    (void)ctx;
    cr_assert_null(moirai_runtime_current(), "failed create %ld left a runtime behind", n);
}

Test(fiber_oom, runtime_create_fails_cleanly_at_every_allocation, .timeout = 300)
{
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(create_destroy, nothing_left, NULL);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0);
}

static int return_one(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    *result = (void *)1;
    return 0;
}

struct spawn_ctx {
    moirai_runtime_t *rt;
    moirai_handle_t *h;
    const moirai_fiber_attr_t *attr;
};

static int spawn_once(void *p)
{
    struct spawn_ctx *c = p;
    int rc = moirai_fiber_spawn(c->rt, return_one, NULL, c->attr, c->h);
    if (rc == 0) {
        void *v = NULL;
        rc = moirai_handle_join(c->h, &v);
        if (rc == 0 && v != (void *)1)
            rc = -EFAULT;
    }
    return rc;
}

static void handle_untouched(void *p, long n)
{
    struct spawn_ctx *c = p;
    cr_assert_not(moirai_handle_is_finished(c->h), "failed spawn %ld touched the handle", n);
    moirai_runtime_stats_t st;
    moirai_runtime_stats(c->rt, &st);
    cr_assert_eq(st.fibers_alive, 0, "failed spawn %ld left a fiber counted", n);
}

Test(fiber_oom, spawn_fails_cleanly_at_every_allocation, .timeout = 300)
{
    moirai_runtime_config_t rc;
    moirai_runtime_config_init(&rc);
    /* No cached stacks: every spawn maps (and allocates) a fresh one. */
    rc.stack_cache = 1;
    moirai_runtime_t *rt = NULL;
    cr_assert_eq(moirai_runtime_create(&rt, &rc), 0);
    /* Plain, and with a locality hint (its first run goes through a
     * scheduler task, one more allocation that can fail). */
    moirai_fiber_attr_t hinted;
    moirai_fiber_attr_init(&hinted);
    hinted.task.locality = MOIRAI_LOCALITY_CPU;
    moirai_cpu_info_t cpu;
    cr_assert_eq(moirai_topology_cpu_at(0, &cpu), 0);
    hinted.task.locality_index = cpu.cpu;
    const moirai_fiber_attr_t *attrs[2] = {NULL, &hinted};
    long failures[2];
    for (int k = 0; k < 2; k++) {
        /* The previous sweep's last fiber may still be retiring. */
        idle_stats(rt);
        struct spawn_ctx c = {rt, NULL, attrs[k]};
        cr_assert_eq(moirai_handle_create(&c.h), 0);
        moirai_test_oom_install();
        failures[k] = MOIRAI_TEST_OOM_SWEEP(spawn_once, handle_untouched, &c);
        moirai_test_oom_uninstall();
        moirai_handle_release(c.h);
    }
    cr_assert_gt(failures[0], 0);
    cr_assert_gt(failures[1], failures[0], "the hinted spawn allocates a task too");
    /* Still works. */
    void *v = NULL;
    cr_assert_eq(run_fiber(rt, return_one, NULL, &v), 0);
    cr_assert_eq(v, (void *)1);
    drop_runtime(rt);
}

/* The first fiber-local value allocates the fiber's table: -ENOMEM then,
 * and nothing is set. The single worker runs only this fiber meanwhile,
 * so the failure lands on that allocation. */
static int local_set_oom(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    moirai_fiber_key_t *key = arg;
    moirai_test_oom_fail_at(0);
    int rc = moirai_fiber_local_set(*key, (void *)1);
    moirai_test_oom_fail_at(-1);
    if (rc != -ENOMEM || moirai_fiber_local_get(*key) != NULL)
        return -EFAULT;
    if (moirai_fiber_local_set(*key, (void *)1) != 0 || moirai_fiber_local_get(*key) != (void *)1)
        return -EFAULT;
    return 0;
}

Test(fiber_oom, first_local_value_reports_enomem, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_fiber_key_t key;
    cr_assert_eq(moirai_fiber_key_create(&key, NULL), 0);
    /* Installed first: the fiber plans its failure on this allocator. */
    moirai_test_oom_install();
    moirai_handle_t *h = spawn_with_handle(rt, local_set_oom, &key, NULL);
    int rc = join_and_release(h, NULL);
    moirai_test_oom_uninstall();
    cr_assert_eq(rc, 0);
    cr_assert_eq(moirai_fiber_key_delete(key), 0);
    drop_runtime(rt);
}
