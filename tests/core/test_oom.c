/* Allocation failure sweeps over the tasking APIs that allocate: every
 * failing run must return -ENOMEM, change nothing and leak nothing (the
 * ASan build's LeakSanitizer checks the last part).
 *
 * Each sweep fails the 0th, 1st, 2nd ... allocation of one call until the
 * call succeeds without a failure injected. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>

#include <moirai/core.h>

#include "leak_check.h"
#include "oom.h"

static void install(void)
{
    moirai_test_oom_install();
}

static void uninstall(void)
{
    moirai_test_oom_uninstall();
}

/* Far more allocation points than any of these calls has. */
#define SWEEP_LIMIT 64

static int sentinel_storage;
#define SENTINEL ((void *)&sentinel_storage)

LEAK_CHECKED_TEST(oom, handle_create, .init = install, .fini = uninstall, .timeout = 30)
{
    long failures = 0;
    for (long n = 0; n < SWEEP_LIMIT; n++) {
        moirai_handle_t *h = SENTINEL;
        moirai_test_oom_fail_at(n);
        int rc = moirai_handle_create(&h);
        moirai_test_oom_fail_at(-1);
        if (rc == 0) {
            cr_assert_neq((void *)h, SENTINEL);
            cr_assert_not(moirai_handle_is_finished(h));
            moirai_handle_release(h);
            break;
        }
        cr_assert_eq(rc, -ENOMEM, "allocation %ld: rc %d", n, rc);
        cr_assert_eq((void *)h, SENTINEL, "out must be untouched on failure");
        failures++;
    }
    cr_assert_geq(failures, 1, "the sweep never reached an allocation");
}

LEAK_CHECKED_TEST(oom, executor_thread_create, .init = install, .fini = uninstall, .timeout = 30)
{
    long failures = 0;
    for (long n = 0; n < SWEEP_LIMIT; n++) {
        moirai_executor_t *ex = SENTINEL;
        moirai_test_oom_fail_at(n);
        int rc = moirai_executor_thread_create(&ex);
        moirai_test_oom_fail_at(-1);
        if (rc == 0) {
            cr_assert_neq((void *)ex, SENTINEL);
            moirai_executor_thread_destroy(ex);
            break;
        }
        cr_assert_eq(rc, -ENOMEM, "allocation %ld: rc %d", n, rc);
        cr_assert_eq((void *)ex, SENTINEL);
        failures++;
    }
    cr_assert_geq(failures, 1);
}

static int count_task(void *arg, const moirai_cancel_token_t *token, void **result)
{
    (void)token;
    atomic_fetch_add_explicit((_Atomic int *)arg, 1, memory_order_relaxed);
    *result = arg;
    return 0;
}

/* Sweeps moirai_executor_spawn() on a thread executor with `attr`; returns
 * how many runs failed. */
static long sweep_spawn(const moirai_task_attr_t *attr, bool with_handle)
{
    moirai_executor_t *ex = NULL;
    cr_assert_eq(moirai_executor_thread_create(&ex), 0);
    _Atomic int failed_runs[SWEEP_LIMIT] = {0};
    _Atomic int retry_runs = 0;
    moirai_handle_t *handles[SWEEP_LIMIT] = {0};
    long failures = 0;
    bool succeeded = false;
    for (long n = 0; n < SWEEP_LIMIT && !succeeded; n++) {
        moirai_handle_t *h = NULL;
        if (with_handle)
            cr_assert_eq(moirai_handle_create(&h), 0);
        moirai_test_oom_fail_at(n);
        int rc = moirai_executor_spawn(ex, count_task, &failed_runs[n], attr, h);
        moirai_test_oom_fail_at(-1);
        if (rc == 0) {
            succeeded = true;
            /* This run's task is the one that must run, once. */
            handles[n] = h;
            continue;
        }
        cr_assert_eq(rc, -ENOMEM, "allocation %ld: rc %d", n, rc);
        failures++;
        if (h != NULL) {
            /* Unchanged: still pending... */
            cr_assert_eq(moirai_handle_try_join(h, NULL), -EAGAIN);
            cr_assert_not(moirai_cancel_token_is_cancelled(moirai_handle_token(h)));
            /* ...and unbound: it serves a later spawn. */
            cr_assert_eq(moirai_executor_spawn(ex, count_task, &retry_runs, NULL, h), 0);
            void *v = NULL;
            cr_assert_eq(moirai_handle_join(h, &v), 0);
            cr_assert_eq(v, (void *)&retry_runs);
            moirai_handle_release(h);
        }
    }
    cr_assert(succeeded, "spawn never succeeded");
    moirai_executor_thread_destroy(ex);
    /* Destroy waited for every accepted task: a refused one never ran. */
    for (long n = 0; n < SWEEP_LIMIT; n++) {
        /* Runs 0 .. failures-1 failed; run `failures` succeeded. */
        int expected = n == failures ? 1 : 0;
        cr_assert_eq(atomic_load(&failed_runs[n]), expected, "run %ld", n);
        if (handles[n] != NULL) {
            void *v = NULL;
            cr_assert_eq(moirai_handle_join(handles[n], &v), 0);
            cr_assert_eq(v, (void *)&failed_runs[n]);
            moirai_handle_release(handles[n]);
        }
    }
    cr_assert_eq(atomic_load(&retry_runs), with_handle ? failures : 0);
    return failures;
}

LEAK_CHECKED_TEST(oom, executor_spawn_on_thread_executor, .init = install, .fini = uninstall,
                  .timeout = 60)
{
    /* The task record. */
    cr_assert_geq(sweep_spawn(NULL, true), 1);
    cr_assert_geq(sweep_spawn(NULL, false), 1);
}

LEAK_CHECKED_TEST(oom, executor_spawn_with_locality, .init = install, .fini = uninstall,
                  .timeout = 60)
{
    /* The task record and the CPU mask. */
    moirai_cpu_info_t info;
    cr_assert_eq(moirai_topology_cpu_at(0, &info), 0);
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    attr.locality = MOIRAI_LOCALITY_CPU;
    attr.locality_index = info.cpu;
    cr_assert_geq(sweep_spawn(&attr, true), 2);
    attr.locality = MOIRAI_LOCALITY_NODE;
    attr.locality_index = 0;
    cr_assert_geq(sweep_spawn(&attr, true), 2);
}
