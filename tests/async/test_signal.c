/* Signals delivered to a waiting fiber and to a waiting plain thread,
 * counts kept between waits, exactly one waiter per delivery, deadlines,
 * cancellation, invalid numbers and -ENOMEM. */
#include "async_test_util.h"
#include "oom.h"

#include <pthread.h>
#include <signal.h>

#include <moirai/async/signal.h>

struct waiter {
    moirai_signal_t *sig;
    moirai_event_t started;
    int rc;
};

static int wait_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct waiter *w = arg;
    moirai_event_set(&w->started);
    w->rc = moirai_signal_wait(w->sig);
    return 0;
}

static void *wait_thread(void *arg)
{
    struct waiter *w = arg;
    moirai_event_set(&w->started);
    w->rc = moirai_signal_wait_timed(w->sig, moirai_deadline_after(WAIT_NS));
    return NULL;
}

static void delivered_to_a_fiber(int signum)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct waiter w = {.rc = -1};
    cr_assert_eq(moirai_signal_create(&w.sig, rt, signum), 0);
    moirai_event_init(&w.started, MOIRAI_EVENT_MANUAL, false);
    moirai_handle_t *h = spawn_with_handle(rt, wait_fiber, &w, NULL);
    moirai_event_wait(&w.started);
    cr_assert_eq(raise(signum), 0);
    cr_assert_eq(join_and_release(h, NULL), 0);
    cr_assert_eq(w.rc, 1);
    moirai_signal_destroy(w.sig);
    moirai_event_destroy(&w.started);
    drop_runtime(rt);
}

Test(signal, sigterm_reaches_a_waiting_fiber, .timeout = 30)
{
    delivered_to_a_fiber(SIGTERM);
}

Test(signal, sigusr1_reaches_a_waiting_fiber, .timeout = 30)
{
    delivered_to_a_fiber(SIGUSR1);
}

static void delivered_to_a_thread(int signum)
{
    moirai_runtime_t *rt = make_runtime(1);
    struct waiter w = {.rc = -1};
    cr_assert_eq(moirai_signal_create(&w.sig, rt, signum), 0);
    moirai_event_init(&w.started, MOIRAI_EVENT_MANUAL, false);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, wait_thread, &w), 0);
    moirai_event_wait(&w.started);
    cr_assert_eq(raise(signum), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(w.rc, 1);
    moirai_signal_destroy(w.sig);
    moirai_event_destroy(&w.started);
    drop_runtime(rt);
}

Test(signal, sigint_reaches_a_waiting_plain_thread, .timeout = 30)
{
    delivered_to_a_thread(SIGINT);
}

Test(signal, sigterm_reaches_a_waiting_plain_thread, .timeout = 30)
{
    delivered_to_a_thread(SIGTERM);
}

/* Deliveries while nobody waits are kept for the next wait; two watchers
 * of one number both count every delivery. */
Test(signal, deliveries_are_kept_and_seen_by_every_watcher, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_signal_t *a = NULL, *b = NULL;
    cr_assert_eq(moirai_signal_create(&a, rt, SIGUSR2), 0);
    cr_assert_eq(moirai_signal_create(&b, rt, SIGUSR2), 0);
    cr_assert_eq(raise(SIGUSR2), 0);
    /* The first wait gets the delivery made before it. raise() runs the
     * handler before it returns, and the handler's byte reaches the
     * reactor in order: a second raise after the first was counted is
     * counted separately. */
    cr_assert_eq(moirai_signal_wait(a), 1);
    cr_assert_eq(moirai_signal_wait(b), 1);
    cr_assert_eq(raise(SIGUSR2), 0);
    cr_assert_eq(moirai_signal_wait(a), 1);
    cr_assert_eq(raise(SIGUSR2), 0);
    /* b has two (one per raise since its last wait) unless the reactor
     * has only seen one of them yet: then it returns 1 and 1 more. */
    int total = 0;
    while (total < 2) {
        int n = moirai_signal_wait_timed(b, moirai_deadline_after(WAIT_NS));
        cr_assert_gt(n, 0);
        total += n;
    }
    cr_assert_eq(total, 2);
    cr_assert_eq(moirai_signal_wait_timed(b, moirai_deadline_after(20 * MOIRAI_NS_PER_MS)),
                 -ETIMEDOUT);
    moirai_signal_destroy(a);
    moirai_signal_destroy(b);
    drop_runtime(rt);
}

/* Two fibers wait on one watcher: each delivery wakes exactly one. */
Test(signal, one_waiter_takes_each_delivery, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(2);
    moirai_signal_t *sig = NULL;
    cr_assert_eq(moirai_signal_create(&sig, rt, SIGUSR1), 0);
    struct waiter w[2];
    moirai_handle_t *h[2];
    for (int i = 0; i < 2; i++) {
        w[i].sig = sig;
        w[i].rc = 0;
        moirai_event_init(&w[i].started, MOIRAI_EVENT_MANUAL, false);
        h[i] = spawn_with_handle(rt, wait_fiber, &w[i], NULL);
        moirai_event_wait(&w[i].started);
    }
    cr_assert_eq(raise(SIGUSR1), 0);
    /* Exactly one returns: poll both handles until one is done. */
    int done = -1;
    uint64_t until = moirai_deadline_after(WAIT_NS);
    while (done < 0 && moirai_clock_now_ns() < until) {
        for (int i = 0; i < 2 && done < 0; i++)
            if (moirai_handle_try_join(h[i], NULL) != -EAGAIN)
                done = i;
        if (done < 0)
            moirai_fiber_sleep(MOIRAI_NS_PER_MS);
    }
    cr_assert_geq(done, 0);
    cr_assert_eq(w[done].rc, 1);
    moirai_fiber_sleep(20 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_handle_try_join(h[1 - done], NULL), -EAGAIN, "both waiters woke");
    cr_assert_eq(raise(SIGUSR1), 0);
    cr_assert_eq(join_and_release(h[1 - done], NULL), 0);
    cr_assert_eq(w[1 - done].rc, 1);
    moirai_handle_release(h[done]);
    for (int i = 0; i < 2; i++)
        moirai_event_destroy(&w[i].started);
    moirai_signal_destroy(sig);
    drop_runtime(rt);
}

Test(signal, deadline_and_cancellation, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_signal_t *sig = NULL;
    cr_assert_eq(moirai_signal_create(&sig, rt, SIGUSR1), 0);
    uint64_t deadline = moirai_deadline_after(20 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_signal_wait_timed(sig, deadline), -ETIMEDOUT);
    cr_assert_geq(moirai_clock_now_ns(), deadline);
    struct waiter w = {.sig = sig, .rc = 0};
    moirai_event_init(&w.started, MOIRAI_EVENT_MANUAL, false);
    moirai_handle_t *h = spawn_with_handle(rt, wait_fiber, &w, NULL);
    moirai_event_wait(&w.started);
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY); /* it runs: parked in its wait */
    cr_assert_eq(join_and_release(h, NULL), 0);
    cr_assert_eq(w.rc, -ECANCELED);
    moirai_event_destroy(&w.started);
    moirai_signal_destroy(sig);
    drop_runtime(rt);
}

Test(signal, invalid_numbers_and_null, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_signal_t *sig = (moirai_signal_t *)&rt; /* must stay untouched */
    cr_assert_eq(moirai_signal_create(&sig, rt, SIGKILL), -EINVAL);
    cr_assert_eq(moirai_signal_create(&sig, rt, SIGSTOP), -EINVAL);
    cr_assert_eq(moirai_signal_create(&sig, rt, 0), -EINVAL);
    cr_assert_eq(moirai_signal_create(&sig, rt, -1), -EINVAL);
    cr_assert_eq(moirai_signal_create(&sig, rt, NSIG), -EINVAL);
    cr_assert_eq(moirai_signal_create(&sig, NULL, SIGUSR1), -EINVAL);
    cr_assert_eq(moirai_signal_create(NULL, rt, SIGUSR1), -EINVAL);
    cr_assert_eq(sig, (moirai_signal_t *)&rt);
    cr_assert_eq(moirai_signal_wait(NULL), -EINVAL);
    cr_assert_eq(moirai_signal_wait_timed(NULL, 0), -EINVAL);
    moirai_signal_destroy(NULL);
    drop_runtime(rt);
}

static int oom_create(void *arg)
{
    moirai_signal_t *sig = NULL;
    int rc = moirai_signal_create(&sig, arg, SIGUSR1);
    if (rc == 0)
        moirai_signal_destroy(sig);
    return rc;
}

Test(signal, enomem_leaks_nothing, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_test_oom_install();
    cr_assert_gt(MOIRAI_TEST_OOM_SWEEP(oom_create, NULL, rt), 0);
    moirai_test_oom_uninstall();
    drop_runtime(rt);
}
