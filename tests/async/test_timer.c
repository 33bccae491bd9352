/* Timer objects: firing, disarming, re-arming, waiting from fibers and
 * threads, and their errors. */
#include "async_test_util.h"
#include "oom.h"

#include <pthread.h>

static moirai_runtime_t *rt;

static void setup(void)
{
    rt = make_runtime(2);
}

static void teardown(void)
{
    drop_runtime(rt);
}

TestSuite(timer, .init = setup, .fini = teardown, .timeout = 60);

struct waited {
    moirai_timer_t *t;
    uint64_t deadline;
    _Atomic int started;
    int rc;
    uint64_t woke_at;
};

static int wait_fiber(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    struct waited *w = arg;
    atomic_store(&w->started, 1);
    w->rc = moirai_timer_wait_timed(w->t, w->deadline);
    w->woke_at = moirai_clock_now_ns();
    return 0;
}

static void wait_started(struct waited *w)
{
    while (!atomic_load(&w->started))
        sched_yield();
}

Test(timer, fires_at_its_deadline_and_wakes_the_waiter)
{
    moirai_timer_t *t;
    cr_assert_eq(moirai_timer_create(&t, rt), 0);
    uint64_t deadline = moirai_deadline_after(20 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_timer_arm(t, deadline), 0);
    struct waited w = {.t = t, .deadline = moirai_deadline_after(WAIT_NS)};
    cr_assert_eq(run_fiber(rt, wait_fiber, &w, NULL), 0);
    cr_assert_eq(w.rc, 0);
    cr_assert_geq(w.woke_at, deadline, "woke before the deadline");
    /* Fired stays fired: a later wait returns at once. */
    cr_assert_eq(moirai_timer_wait(t), 0);
    cr_assert_eq(moirai_timer_disarm(t), -EALREADY);
    moirai_timer_destroy(t);
}

Test(timer, disarm_wakes_waiters_with_eagain_and_it_never_fires)
{
    moirai_timer_t *t;
    cr_assert_eq(moirai_timer_create(&t, rt), 0);
    cr_assert_eq(moirai_timer_arm(t, moirai_deadline_after(200 * MOIRAI_NS_PER_MS)), 0);
    struct waited w = {.t = t, .deadline = moirai_deadline_after(WAIT_NS)};
    moirai_handle_t *h = spawn_with_handle(rt, wait_fiber, &w, NULL);
    wait_started(&w);
    cr_assert_eq(moirai_timer_disarm(t), 0);
    cr_assert_eq(join_and_release(h, NULL), 0);
    cr_assert_eq(w.rc, -EAGAIN);
    /* Past the old deadline it is still idle. */
    moirai_fiber_sleep(300 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_timer_wait(t), -EAGAIN);
    cr_assert_eq(moirai_timer_disarm(t), -EALREADY);
    moirai_timer_destroy(t);
}

Test(timer, rearm_moves_the_deadline_for_waiters)
{
    moirai_timer_t *t;
    cr_assert_eq(moirai_timer_create(&t, rt), 0);
    cr_assert_eq(moirai_timer_arm(t, moirai_deadline_after(30 * MOIRAI_NS_PER_S)), 0);
    struct waited w = {.t = t, .deadline = moirai_deadline_after(WAIT_NS)};
    moirai_handle_t *h = spawn_with_handle(rt, wait_fiber, &w, NULL);
    wait_started(&w);
    uint64_t sooner = moirai_deadline_after(10 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_timer_arm(t, sooner), 0);
    cr_assert_eq(join_and_release(h, NULL), 0);
    cr_assert_eq(w.rc, 0);
    cr_assert_geq(w.woke_at, sooner);
    /* A fired timer re-armed waits again. */
    cr_assert_eq(moirai_timer_arm(t, moirai_deadline_after(5 * MOIRAI_NS_PER_MS)), 0);
    cr_assert_eq(moirai_timer_wait_timed(t, moirai_deadline_after(WAIT_NS)), 0);
    moirai_timer_destroy(t);
}

Test(timer, wait_deadline_and_plain_thread)
{
    moirai_timer_t *t;
    cr_assert_eq(moirai_timer_create(&t, rt), 0);
    cr_assert_eq(moirai_timer_arm(t, moirai_deadline_after(30 * MOIRAI_NS_PER_S)), 0);
    /* The test thread is a plain thread: it sleeps in the kernel. */
    cr_assert_eq(moirai_timer_wait_timed(t, moirai_deadline_after(5 * MOIRAI_NS_PER_MS)),
                 -ETIMEDOUT);
    cr_assert_eq(moirai_timer_arm(t, moirai_deadline_after(5 * MOIRAI_NS_PER_MS)), 0);
    cr_assert_eq(moirai_timer_wait_timed(t, moirai_deadline_after(WAIT_NS)), 0);
    moirai_timer_destroy(t);
}

static int cancelled_wait(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    struct waited *w = arg;
    atomic_store(&w->started, 1);
    w->rc = moirai_timer_wait(w->t);
    return 0;
}

Test(timer, cancelling_the_fiber_ends_its_wait)
{
    moirai_timer_t *t;
    cr_assert_eq(moirai_timer_create(&t, rt), 0);
    cr_assert_eq(moirai_timer_arm(t, moirai_deadline_after(60 * MOIRAI_NS_PER_S)), 0);
    struct waited w = {.t = t};
    moirai_handle_t *h = spawn_with_handle(rt, cancelled_wait, &w, NULL);
    wait_started(&w);
    moirai_fiber_sleep(5 * MOIRAI_NS_PER_MS);
    moirai_handle_cancel(h);
    cr_assert_eq(join_and_release(h, NULL), 0);
    cr_assert_eq(w.rc, -ECANCELED);
    /* The timer is untouched by the waiter's cancellation. */
    cr_assert_eq(moirai_timer_disarm(t), 0);
    moirai_timer_destroy(t);
}

/* Many timers armed and disarmed from two fibers while the reactor fires
 * others: every armed-and-not-disarmed timer fires exactly once. */
#define CHURN 512

struct churn {
    moirai_timer_t *t[CHURN];
    int disarmed[CHURN];
};

static int churn_fiber(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    struct churn *ch = arg;
    for (int i = 0; i < CHURN; i++)
        cr_assert_eq(
            moirai_timer_arm(ch->t[i], moirai_deadline_after((uint64_t)(i % 7) * MOIRAI_NS_PER_MS)),
            0);
    for (int i = 0; i < CHURN; i += 2)
        ch->disarmed[i] = moirai_timer_disarm(ch->t[i]) == 0;
    return 0;
}

Test(timer, churn_fires_exactly_the_timers_left_armed)
{
    struct churn ch = {{0}, {0}};
    for (int i = 0; i < CHURN; i++)
        cr_assert_eq(moirai_timer_create(&ch.t[i], rt), 0);
    cr_assert_eq(run_fiber(rt, churn_fiber, &ch, NULL), 0);
    for (int i = 0; i < CHURN; i++) {
        int rc = moirai_timer_wait_timed(ch.t[i], moirai_deadline_after(WAIT_NS));
        /* Disarmed before it fired: idle for ever; else it fired. */
        cr_assert_eq(rc, ch.disarmed[i] ? -EAGAIN : 0, "timer %d", i);
        moirai_timer_destroy(ch.t[i]);
    }
}

Test(timer, bad_input)
{
    moirai_timer_t *t;
    cr_assert_eq(moirai_timer_create(NULL, rt), -EINVAL);
    cr_assert_eq(moirai_timer_create(&t, NULL), -EINVAL);
    cr_assert_eq(moirai_timer_arm(NULL, 1), -EINVAL);
    cr_assert_eq(moirai_timer_disarm(NULL), -EINVAL);
    cr_assert_eq(moirai_timer_wait(NULL), -EINVAL);
    cr_assert_eq(moirai_timer_create(&t, rt), 0);
    cr_assert_eq(moirai_timer_arm(t, MOIRAI_DEADLINE_NEVER), -EINVAL);
    cr_assert_eq(moirai_timer_wait(t), -EAGAIN, "an idle timer is never waited for");
    moirai_timer_destroy(t);
    moirai_timer_destroy(NULL);
}

Test(timer, create_out_of_memory_changes_nothing)
{
    moirai_timer_t *t = NULL;
    moirai_test_oom_install();
    moirai_test_oom_fail_at(0);
    int rc = moirai_timer_create(&t, rt);
    moirai_test_oom_fail_at(-1);
    moirai_test_oom_uninstall();
    cr_assert_eq(rc, -ENOMEM);
    cr_assert_null(t);
    cr_assert_eq(moirai_timer_create(&t, rt), 0);
    moirai_timer_destroy(t);
}
