/* A task that joins a handle on one of the scheduler's workers helps: it
 * runs the scheduler's other work while it waits (issue 15, point 1), so
 * joining a child queued behind it cannot deadlock, even on one worker or
 * with every worker joining; it still wakes for new work and for the
 * handle's completion while it sleeps, and a timed join times out.
 *
 * Joins inside tasks are timed (WAIT_NS): without helping they time out
 * instead of hanging, and the assertion names the failure. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/sched/sched.h>

#include "sched_test_util.h"
#include "test_scale.h"

typedef struct fib_arg {
    moirai_sched_t *sched;
    int n;
    _Atomic long *spawned;
} fib_arg_t;

/* fib(n) by spawning fib(n-1) as a child task, computing fib(n-2)
 * inline, and joining the child's handle. */
static int fib_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    fib_arg_t *a = arg;
    if (a->n < 2) {
        *result = (void *)(intptr_t)a->n;
        return 0;
    }
    fib_arg_t child = {a->sched, a->n - 1, a->spawned}, inl = {a->sched, a->n - 2, a->spawned};
    moirai_handle_t *h;
    int rc = moirai_handle_create(&h);
    if (rc != 0)
        return rc;
    rc = moirai_sched_spawn(a->sched, fib_task, &child, NULL, h);
    if (rc != 0) {
        moirai_handle_release(h);
        return rc;
    }
    atomic_fetch_add(a->spawned, 1);
    void *x = NULL, *y = NULL;
    rc = fib_task(&inl, cancel, &y);
    int jrc = moirai_handle_join_timed(h, moirai_deadline_after(WAIT_NS), &x);
    moirai_handle_release(h);
    if (jrc != 0)
        return jrc;
    if (rc != 0)
        return rc;
    *result = (void *)((intptr_t)x + (intptr_t)y);
    return 0;
}

static long fib_ref(int n)
{
    long a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        long t = a + b;
        a = b;
        b = t;
    }
    return a;
}

static void check_fib(int workers, int n)
{
    moirai_sched_t *s = make_sched(workers);
    _Atomic long spawned = 0;
    fib_arg_t a = {s, n, &spawned};
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_sched_spawn(s, fib_task, &a, NULL, h), 0);
    void *v = NULL;
    int rc = moirai_handle_join_timed(h, moirai_deadline_after(WAIT_NS), &v);
    cr_assert_eq(rc, 0, "fib(%d) on %d worker(s) failed: %d (-ETIMEDOUT: a join deadlocked)", n,
                 workers, rc);
    cr_assert_eq((long)(intptr_t)v, fib_ref(n));
    /* One child per call with n >= 2: fib(n+1) - 1 of them. */
    cr_assert_eq(atomic_load(&spawned), fib_ref(n + 1) - 1);
    moirai_handle_release(h);
    drop_sched(s);
}

Test(handle_join, a_child_joined_on_the_only_worker_runs, .timeout = 60)
{
    check_fib(1, 2);
}

Test(handle_join, recursive_spawn_and_join_on_one_worker, .timeout = 60)
{
    check_fib(1, 16);
}

Test(handle_join, recursive_spawn_and_join_with_every_worker_joining, .timeout = 60)
{
    check_fib(2, 18);
}

/* ---- sleeping inside a join: woken for new work, and by the handle ---- */

typedef struct sleepy_join {
    moirai_handle_t *awaited; /* completed from outside, at the end */
    _Atomic int joining;
    _Atomic int ran; /* outside tasks run while the join waited */
    int ran_at_return;
    int rc;
} sleepy_join_t;

static int joiner_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    sleepy_join_t *j = arg;
    atomic_store(&j->joining, 1);
    void *v = NULL;
    j->rc = moirai_handle_join_timed(j->awaited, moirai_deadline_after(WAIT_NS), &v);
    j->ran_at_return = atomic_load(&j->ran);
    return j->rc == 0 && (uintptr_t)v == 99 ? 0 : -EPROTO;
}

static int count_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    atomic_fetch_add(&((sleepy_join_t *)arg)->ran, 1);
    return 0;
}

Test(handle_join, a_joining_worker_runs_new_work_and_wakes_on_completion, .timeout = 60)
{
    /* One worker, busy in the joiner task: the outside tasks can only run
     * inside its join, and only if a spawn wakes it there. */
    moirai_sched_t *s = make_sched(1);
    sleepy_join_t j = {0};
    cr_assert_eq(moirai_handle_create(&j.awaited), 0);
    moirai_handle_t *jh;
    cr_assert_eq(moirai_handle_create(&jh), 0);
    cr_assert_eq(moirai_sched_spawn(s, joiner_task, &j, NULL, jh), 0);
    cr_assert(await_flag(&j.joining));
    const int n = 20;
    for (int i = 0; i < n; i++) {
        /* Give the worker time to fall asleep in the join now and then,
         * so that a spawn has to wake it. */
        if (i % 5 == 0)
            usleep(2000);
        moirai_handle_t *h;
        cr_assert_eq(moirai_handle_create(&h), 0);
        cr_assert_eq(moirai_sched_spawn(s, count_task, &j, NULL, h), 0);
        cr_assert_eq(moirai_handle_join_timed(h, moirai_deadline_after(WAIT_NS), NULL), 0,
                     "an outside task never ran while the only worker joined");
        moirai_handle_release(h);
    }
    cr_assert_not(moirai_handle_is_finished(jh));
    usleep(2000);
    /* Completed from this thread, not a task: only the handle's word can
     * wake the sleeping worker. */
    cr_assert_eq(moirai_handle_complete(j.awaited, (void *)(uintptr_t)99), 0);
    cr_assert_eq(moirai_handle_join_timed(jh, moirai_deadline_after(WAIT_NS), NULL), 0);
    cr_assert_eq(j.rc, 0);
    cr_assert_eq(j.ran_at_return, n);
    moirai_handle_release(jh);
    moirai_handle_release(j.awaited);
    drop_sched(s);
}

typedef struct timed_join {
    moirai_handle_t *never;
    int rc;
    void *value;
} timed_join_t;

static int timed_joiner(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    timed_join_t *t = arg;
    t->value = (void *)1;
    uint64_t deadline = moirai_deadline_after(5 * MOIRAI_NS_PER_MS);
    t->rc = moirai_handle_join_timed(t->never, deadline, &t->value);
    return moirai_clock_now_ns() >= deadline ? 0 : -EPROTO;
}

Test(handle_join, a_timed_join_on_a_worker_times_out, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    timed_join_t t = {0};
    cr_assert_eq(moirai_handle_create(&t.never), 0);
    cr_assert_eq(run_in_task(s, timed_joiner, &t), 0, "returned before its deadline");
    cr_assert_eq(t.rc, -ETIMEDOUT);
    cr_assert_null(t.value);
    cr_assert_not(moirai_handle_is_finished(t.never));
    moirai_handle_release(t.never);
    drop_sched(s);
}
