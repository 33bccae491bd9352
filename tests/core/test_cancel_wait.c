/* Waiting on a cancel token (moirai_cancel_token_wait_timed, sleep_until,
 * sleep) and cancel listeners (moirai_cancel_token_listen / unlisten): a
 * cancelled wait returns long before its far deadline, an uncancelled one
 * at its deadline, sleeps report -ECANCELED, every listener runs exactly
 * once, and never after unlisten. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <moirai/core.h>

#define FAR_NS  (60ull * 1000000000ull) /* a deadline no test reaches */
#define WIDE_NS (5ull * 1000000000ull)  /* the wide bound for "at once" */

static moirai_handle_t *running_handle(void)
{
    moirai_handle_t *h = NULL;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert(moirai_handle_try_start(h));
    return h;
}

static void finish(moirai_handle_t *h)
{
    moirai_handle_complete(h, NULL);
    moirai_handle_release(h);
}

/* Cancels `arg` (a handle) after a short pause, from another thread. */
static void *canceller(void *arg)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    moirai_handle_cancel(arg);
    return NULL;
}

/* ---- waits ---- */

Test(cancel_wait, cancelled_wait_returns_long_before_the_deadline, .timeout = 30)
{
    moirai_handle_t *h = running_handle();
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, canceller, h), 0);
    uint64_t t0 = moirai_clock_now_ns();
    cr_assert_eq(moirai_cancel_token_wait_timed(moirai_handle_token(h), t0 + FAR_NS), 0);
    uint64_t took = moirai_clock_now_ns() - t0;
    cr_assert_lt(took, WIDE_NS, "a cancel 20 ms in woke the wait after %llu ns",
                 (unsigned long long)took);
    cr_assert(moirai_cancel_token_is_cancelled(moirai_handle_token(h)));
    pthread_join(th, NULL);
    finish(h);
}

Test(cancel_wait, already_cancelled_returns_at_once, .timeout = 10)
{
    moirai_handle_t *h = running_handle();
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    cr_assert_eq(moirai_cancel_token_wait_timed(moirai_handle_token(h), MOIRAI_DEADLINE_NEVER), 0);
    cr_assert_eq(moirai_cancel_token_sleep_until(moirai_handle_token(h), MOIRAI_DEADLINE_NEVER),
                 -ECANCELED);
    cr_assert_eq(moirai_cancel_token_sleep(moirai_handle_token(h), FAR_NS), -ECANCELED);
    finish(h);
}

Test(cancel_wait, uncancelled_wait_times_out_at_the_deadline, .timeout = 10)
{
    moirai_handle_t *h = running_handle();
    uint64_t deadline = moirai_deadline_after(20 * 1000 * 1000);
    cr_assert_eq(moirai_cancel_token_wait_timed(moirai_handle_token(h), deadline), -ETIMEDOUT);
    cr_assert_geq(moirai_clock_now_ns(), deadline);
    cr_assert_eq(moirai_cancel_token_sleep(moirai_handle_token(h), 1000000), 0);
    finish(h);
}

Test(cancel_wait, null_token_is_never_cancelled, .timeout = 10)
{
    uint64_t deadline = moirai_deadline_after(10 * 1000 * 1000);
    cr_assert_eq(moirai_cancel_token_wait_timed(NULL, deadline), -ETIMEDOUT);
    cr_assert_geq(moirai_clock_now_ns(), deadline);
    deadline = moirai_deadline_after(10 * 1000 * 1000);
    cr_assert_eq(moirai_cancel_token_sleep_until(NULL, deadline), 0);
    cr_assert_geq(moirai_clock_now_ns(), deadline);
}

/* A finished, uncancelled task can no longer be cancelled: the wait runs
 * to its deadline, and a cancel attempt changes nothing. */
Test(cancel_wait, finished_token_waits_to_the_deadline, .timeout = 10)
{
    moirai_handle_t *h = running_handle();
    moirai_handle_complete(h, NULL);
    cr_assert_eq(moirai_handle_cancel(h), -EALREADY);
    uint64_t deadline = moirai_deadline_after(10 * 1000 * 1000);
    cr_assert_eq(moirai_cancel_token_wait_timed(moirai_handle_token(h), deadline), -ETIMEDOUT);
    moirai_handle_release(h);
}

/* A joiner parked on the same word is woken by the cancel too, parks
 * again, and still gets the task's result. */
static void *joiner(void *arg)
{
    void *v = NULL;
    int rc = moirai_handle_join(arg, &v);
    return rc == 0 ? v : NULL;
}

Test(cancel_wait, joiner_survives_the_cancel_wake_up, .timeout = 30)
{
    moirai_handle_t *h = running_handle();
    pthread_t j, c;
    cr_assert_eq(pthread_create(&j, NULL, joiner, h), 0);
    cr_assert_eq(pthread_create(&c, NULL, canceller, h), 0);
    cr_assert_eq(
        moirai_cancel_token_wait_timed(moirai_handle_token(h), moirai_deadline_after(FAR_NS)), 0);
    pthread_join(c, NULL);
    static int value;
    cr_assert_eq(moirai_handle_complete(h, &value), 0);
    void *got = NULL;
    pthread_join(j, &got);
    cr_assert_eq(got, &value);
    moirai_handle_release(h);
}

/* Several waiters on one token all wake. */
typedef struct waiter {
    moirai_handle_t *h;
    int rc;
} waiter_t;

static void *wait_main(void *arg)
{
    waiter_t *w = arg;
    w->rc =
        moirai_cancel_token_sleep_until(moirai_handle_token(w->h), moirai_deadline_after(FAR_NS));
    return NULL;
}

Test(cancel_wait, every_waiter_wakes, .timeout = 30)
{
    moirai_handle_t *h = running_handle();
    waiter_t w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (waiter_t){h, 1};
        cr_assert_eq(pthread_create(&th[i], NULL, wait_main, &w[i]), 0);
    }
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(w[i].rc, -ECANCELED);
    }
    finish(h);
}

/* A task of an executor (here core's thread-per-task one) sleeps on its
 * own token; cancelling the handle ends the sleep with -ECANCELED. */
static _Atomic int task_started;

static int sleeping_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)result;
    atomic_store(&task_started, 1);
    return moirai_cancel_token_sleep(cancel, FAR_NS);
}

Test(cancel_wait, task_sleep_ends_with_ecanceled, .timeout = 30)
{
    moirai_executor_t *ex = NULL;
    cr_assert_eq(moirai_executor_thread_create(&ex), 0);
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_executor_spawn(ex, sleeping_task, NULL, NULL, h), 0);
    while (!atomic_load(&task_started))
        sched_yield();
    uint64_t t0 = moirai_clock_now_ns();
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    cr_assert_eq(moirai_handle_join(h, NULL), -ECANCELED);
    cr_assert_lt(moirai_clock_now_ns() - t0, WIDE_NS);
    moirai_handle_release(h);
    moirai_executor_thread_destroy(ex);
}

/* ---- listeners ---- */

static void count_cb(void *arg)
{
    atomic_fetch_add_explicit((_Atomic int *)arg, 1, memory_order_relaxed);
}

Test(cancel_listen, bad_arguments, .timeout = 10)
{
    _Atomic int n = 0;
    moirai_cancel_listener_t l;
    moirai_handle_t *h = running_handle();
    const moirai_cancel_token_t *t = moirai_handle_token(h);
    cr_assert_eq(moirai_cancel_token_listen(NULL, &l, count_cb, (void *)&n), -EINVAL);
    cr_assert_eq(moirai_cancel_token_listen(t, NULL, count_cb, (void *)&n), -EINVAL);
    cr_assert_eq(moirai_cancel_token_listen(t, &l, NULL, (void *)&n), -EINVAL);
    cr_assert_eq(moirai_cancel_token_unlisten(NULL, &l), -EINVAL);
    cr_assert_eq(moirai_cancel_token_unlisten(t, NULL), -EINVAL);
    cr_assert_eq(moirai_cancel_token_listen(t, &l, count_cb, (void *)&n), 0);
    cr_assert_eq(moirai_cancel_token_unlisten(t, &l), 0);
    cr_assert_eq(moirai_cancel_token_unlisten(t, &l), -ENOENT);
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    cr_assert_eq(atomic_load(&n), 0); /* removed before the cancel */
    finish(h);
}

/* Several parties, beside the one watch: each runs exactly once. */
Test(cancel_listen, many_listeners_and_the_watch_each_run_once, .timeout = 10)
{
    enum { N = 16 };
    _Atomic int n[N];
    _Atomic int watched = 0;
    moirai_cancel_listener_t l[N];
    moirai_handle_t *h = running_handle();
    const moirai_cancel_token_t *t = moirai_handle_token(h);
    cr_assert_eq(moirai_cancel_token_watch(t, count_cb, (void *)&watched), 0);
    for (int i = 0; i < N; i++) {
        atomic_init(&n[i], 0);
        cr_assert_eq(moirai_cancel_token_listen(t, &l[i], count_cb, (void *)&n[i]), 0);
    }
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(atomic_load(&n[i]), 1, "listener %d ran %d times", i, atomic_load(&n[i]));
        cr_assert_eq(moirai_cancel_token_unlisten(t, &l[i]), 0);
    }
    cr_assert_eq(atomic_load(&watched), 1);
    cr_assert_eq(moirai_cancel_token_unwatch(t), 0);
    finish(h);
}

Test(cancel_listen, runs_at_once_when_already_cancelled, .timeout = 10)
{
    _Atomic int n = 0;
    moirai_cancel_listener_t l;
    moirai_handle_t *h = running_handle();
    const moirai_cancel_token_t *t = moirai_handle_token(h);
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    cr_assert_eq(moirai_cancel_token_listen(t, &l, count_cb, (void *)&n), 0);
    cr_assert_eq(atomic_load(&n), 1);
    cr_assert_eq(moirai_cancel_token_unlisten(t, &l), 0);
    finish(h);
}

/* A pending handle cancelled before it ever ran fires its listeners too. */
Test(cancel_listen, cancel_of_a_pending_handle_fires, .timeout = 10)
{
    _Atomic int n = 0;
    moirai_cancel_listener_t l;
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    const moirai_cancel_token_t *t = moirai_handle_token(h);
    cr_assert_eq(moirai_cancel_token_listen(t, &l, count_cb, (void *)&n), 0);
    cr_assert_eq(moirai_handle_cancel(h), 0);
    cr_assert_eq(atomic_load(&n), 1);
    cr_assert_eq(moirai_cancel_token_unlisten(t, &l), 0);
    moirai_handle_release(h);
}

/* A callback that removes its own listener (and could then free it). */
typedef struct self_remover {
    moirai_cancel_listener_t l;
    const moirai_cancel_token_t *t;
    _Atomic int runs;
    int rc;
} self_remover_t;

static void remove_self(void *arg)
{
    self_remover_t *s = arg;
    atomic_fetch_add(&s->runs, 1);
    s->rc = moirai_cancel_token_unlisten(s->t, &s->l);
}

Test(cancel_listen, callback_may_remove_its_own_listener, .timeout = 10)
{
    moirai_handle_t *h = running_handle();
    self_remover_t *s = moirai_malloc(sizeof *s);
    cr_assert_not_null(s);
    s->t = moirai_handle_token(h);
    atomic_init(&s->runs, 0);
    s->rc = 1;
    cr_assert_eq(moirai_cancel_token_listen(s->t, &s->l, remove_self, s), 0);
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    cr_assert_eq(atomic_load(&s->runs), 1);
    cr_assert_eq(s->rc, 0);
    cr_assert_eq(moirai_cancel_token_unlisten(s->t, &s->l), -ENOENT);
    moirai_free(s);
    finish(h);
}

/* Listeners added and removed by several threads while another cancels:
 * none runs twice, none runs after its unlisten returned, every one added
 * after moirai_handle_cancel() has returned runs at once, and every one
 * whose unlisten began after the token turned has run by its return. */
typedef struct racer {
    moirai_handle_t *h;
    _Atomic int *start;
    _Atomic int *cancel_done;
    int fired_after_unlisten;
    int bad_runs;
} racer_t;

static void *race_main(void *arg)
{
    racer_t *r = arg;
    const moirai_cancel_token_t *t = moirai_handle_token(r->h);
    while (!atomic_load(r->start))
        sched_yield();
    for (int i = 0; i < 200; i++) {
        _Atomic int n = 0;
        moirai_cancel_listener_t l;
        bool after = atomic_load(r->cancel_done) != 0;
        cr_assert_eq(moirai_cancel_token_listen(t, &l, count_cb, (void *)&n), 0);
        if (after && atomic_load(&n) != 1)
            r->bad_runs++;
        bool cancelled = moirai_cancel_token_is_cancelled(t);
        cr_assert_eq(moirai_cancel_token_unlisten(t, &l), 0);
        int seen = atomic_load(&n);
        if (seen > 1 || (cancelled && seen != 1))
            r->bad_runs++;
        /* After unlisten, nothing more may arrive. */
        sched_yield();
        if (atomic_load(&n) != seen)
            r->fired_after_unlisten++;
    }
    return NULL;
}

Test(cancel_listen, racing_listen_unlisten_and_cancel, .timeout = 60)
{
    for (int round = 0; round < 20; round++) {
        moirai_handle_t *h = running_handle();
        _Atomic int start = 0, cancel_done = 0;
        racer_t r[3];
        pthread_t th[3];
        for (int i = 0; i < 3; i++) {
            r[i] = (racer_t){h, &start, &cancel_done, 0, 0};
            cr_assert_eq(pthread_create(&th[i], NULL, race_main, &r[i]), 0);
        }
        atomic_store(&start, 1);
        for (int k = 0; k < round * 5; k++)
            sched_yield();
        moirai_handle_cancel(h);
        atomic_store(&cancel_done, 1);
        for (int i = 0; i < 3; i++) {
            pthread_join(th[i], NULL);
            cr_assert_eq(r[i].bad_runs, 0);
            cr_assert_eq(r[i].fired_after_unlisten, 0);
        }
        finish(h);
    }
}
