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
};

static int spawn_once(void *p)
{
    struct spawn_ctx *c = p;
    int rc = moirai_fiber_spawn(c->rt, return_one, NULL, NULL, c->h);
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
    struct spawn_ctx c = {rt, NULL};
    cr_assert_eq(moirai_handle_create(&c.h), 0);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(spawn_once, handle_untouched, &c);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0);
    moirai_handle_release(c.h);
    /* Still works. */
    void *v = NULL;
    cr_assert_eq(run_fiber(rt, return_one, NULL, &v), 0);
    cr_assert_eq(v, (void *)1);
    drop_runtime(rt);
}
