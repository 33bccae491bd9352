/* Completion handles: every state transition and return code of handle.h.
 * Leak checks ride on the ASan build (LeakSanitizer fails the run). */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include <moirai/core.h>

#include "leak_check.h"

static moirai_handle_t *new_handle(void)
{
    moirai_handle_t *h = NULL;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_not_null(h);
    return h;
}

static int sentinel_storage;
#define SENTINEL ((void *)&sentinel_storage)

Test(handle, create_gives_pending_handle_with_fresh_id, .timeout = 10)
{
    cr_assert_eq(moirai_handle_create(NULL), -EINVAL);
    moirai_handle_t *a = new_handle();
    moirai_handle_t *b = new_handle();
    cr_assert_neq(moirai_handle_id(a), MOIRAI_TASK_ID_NONE);
    cr_assert_neq(moirai_handle_id(a), moirai_handle_id(b));
    cr_assert_not(moirai_handle_is_finished(a));
    void *v = SENTINEL;
    cr_assert_eq(moirai_handle_try_join(a, &v), -EAGAIN);
    cr_assert_null(v);
    cr_assert_not(moirai_cancel_token_is_cancelled(moirai_handle_token(a)));
    cr_assert_eq((const void *)moirai_handle_token(a), (const void *)a);
    moirai_handle_release(a);
    moirai_handle_release(b);
}

Test(handle, null_arguments, .timeout = 10)
{
    void *v = SENTINEL;
    cr_assert_eq(moirai_handle_complete(NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_handle_fail(NULL, -EIO), -EINVAL);
    cr_assert_eq(moirai_handle_cancel(NULL), -EINVAL);
    cr_assert_eq(moirai_handle_join(NULL, &v), -EINVAL);
    cr_assert_null(v);
    v = SENTINEL;
    cr_assert_eq(moirai_handle_join_timed(NULL, 0, &v), -EINVAL);
    cr_assert_null(v);
    v = SENTINEL;
    cr_assert_eq(moirai_handle_try_join(NULL, &v), -EINVAL);
    cr_assert_null(v);
    cr_assert_not(moirai_handle_is_finished(NULL));
    cr_assert_not(moirai_handle_try_start(NULL));
    cr_assert_null(moirai_handle_token(NULL));
    cr_assert_eq(moirai_handle_id(NULL), MOIRAI_TASK_ID_NONE);
    moirai_handle_retain(NULL);
    moirai_handle_release(NULL);
}

Test(handle, complete_then_every_join_flavour_sees_value, .timeout = 10)
{
    int payload = 42;
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_handle_complete(h, &payload), 0);
    cr_assert(moirai_handle_is_finished(h));
    void *v = NULL;
    cr_assert_eq(moirai_handle_join(h, &v), 0);
    cr_assert_eq(v, &payload);
    v = NULL;
    cr_assert_eq(moirai_handle_try_join(h, &v), 0);
    cr_assert_eq(v, &payload);
    v = NULL;
    /* A finished handle reports its result even with a deadline passed. */
    cr_assert_eq(moirai_handle_join_timed(h, 0, &v), 0);
    cr_assert_eq(v, &payload);
    cr_assert_eq(moirai_handle_join(h, NULL), 0);
    /* Completion does not start the task nor set the token. */
    cr_assert_not(moirai_handle_try_start(h));
    cr_assert_not(moirai_cancel_token_is_cancelled(moirai_handle_token(h)));
    moirai_handle_release(h);
}

Test(handle, second_completion_is_ealready_and_first_value_stands, .timeout = 10)
{
    int first = 1, second = 2;
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_handle_complete(h, &first), 0);
    cr_assert_eq(moirai_handle_complete(h, &second), -EALREADY);
    cr_assert_eq(moirai_handle_fail(h, -EIO), -EALREADY);
    cr_assert_eq(moirai_handle_cancel(h), -EALREADY);
    void *v = NULL;
    cr_assert_eq(moirai_handle_join(h, &v), 0);
    cr_assert_eq(v, &first);
    moirai_handle_release(h);
}

Test(handle, fail_with_non_negative_is_einval_and_changes_nothing, .timeout = 10)
{
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_handle_fail(h, 0), -EINVAL);
    cr_assert_eq(moirai_handle_fail(h, EIO), -EINVAL);
    cr_assert_not(moirai_handle_is_finished(h));
    cr_assert_eq(moirai_handle_try_join(h, NULL), -EAGAIN);
    /* Still pending: it can start. */
    cr_assert(moirai_handle_try_start(h));
    cr_assert_eq(moirai_handle_fail(h, -EIO), 0);
    void *v = SENTINEL;
    cr_assert_eq(moirai_handle_join(h, &v), -EIO);
    cr_assert_null(v);
    v = SENTINEL;
    cr_assert_eq(moirai_handle_try_join(h, &v), -EIO);
    cr_assert_null(v);
    cr_assert_eq(moirai_handle_complete(h, SENTINEL), -EALREADY);
    cr_assert_eq(moirai_handle_join(h, NULL), -EIO);
    moirai_handle_release(h);
}

Test(handle, pending_can_be_failed_without_starting, .timeout = 10)
{
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_handle_fail(h, -ENOENT), 0);
    cr_assert_not(moirai_handle_try_start(h));
    cr_assert_eq(moirai_handle_join(h, NULL), -ENOENT);
    moirai_handle_release(h);
}

Test(handle, try_start_moves_pending_to_running_once, .timeout = 10)
{
    moirai_handle_t *h = new_handle();
    cr_assert(moirai_handle_try_start(h));
    cr_assert_not(moirai_handle_try_start(h));
    cr_assert_not(moirai_handle_is_finished(h));
    cr_assert_eq(moirai_handle_try_join(h, NULL), -EAGAIN);
    cr_assert_eq(moirai_handle_complete(h, SENTINEL), 0);
    cr_assert_not(moirai_handle_try_start(h));
    void *v = NULL;
    cr_assert_eq(moirai_handle_try_join(h, &v), 0);
    cr_assert_eq(v, SENTINEL);
    moirai_handle_release(h);
}

Test(handle, join_timed_times_out_then_succeeds_after_completion, .timeout = 20)
{
    moirai_handle_t *h = new_handle();
    void *v = SENTINEL;
    /* Deadlines in the past: 0, and one nanosecond ago. */
    cr_assert_eq(moirai_handle_join_timed(h, 0, &v), -ETIMEDOUT);
    cr_assert_null(v);
    cr_assert_eq(moirai_handle_join_timed(h, moirai_clock_now_ns() - 1, NULL), -ETIMEDOUT);
    /* A short future deadline: returns only once it has passed. */
    uint64_t deadline = moirai_deadline_after(5 * MOIRAI_NS_PER_MS);
    v = SENTINEL;
    cr_assert_eq(moirai_handle_join_timed(h, deadline, &v), -ETIMEDOUT);
    cr_assert_geq(moirai_clock_now_ns(), deadline);
    cr_assert_null(v);
    /* The timeouts left the handle as it was. */
    cr_assert_not(moirai_handle_is_finished(h));
    cr_assert(moirai_handle_try_start(h));
    cr_assert_eq(moirai_handle_complete(h, SENTINEL), 0);
    cr_assert_eq(moirai_handle_join_timed(h, moirai_deadline_after(MOIRAI_NS_PER_S), &v), 0);
    cr_assert_eq(v, SENTINEL);
    moirai_handle_release(h);
}

Test(handle, cancel_pending_finishes_with_ecanceled, .timeout = 10)
{
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_handle_cancel(h), 0);
    cr_assert(moirai_handle_is_finished(h));
    cr_assert_not(moirai_handle_try_start(h));
    cr_assert(moirai_cancel_token_is_cancelled(moirai_handle_token(h)));
    void *v = SENTINEL;
    cr_assert_eq(moirai_handle_join(h, &v), -ECANCELED);
    cr_assert_null(v);
    cr_assert_eq(moirai_handle_try_join(h, NULL), -ECANCELED);
    cr_assert_eq(moirai_handle_join_timed(h, 0, NULL), -ECANCELED);
    cr_assert_eq(moirai_handle_cancel(h), -EALREADY);
    cr_assert_eq(moirai_handle_complete(h, SENTINEL), -EALREADY);
    cr_assert_eq(moirai_handle_fail(h, -EIO), -EALREADY);
    moirai_handle_release(h);
}

Test(handle, cancel_running_sets_token_and_returns_ebusy, .timeout = 10)
{
    moirai_handle_t *h = new_handle();
    cr_assert(moirai_handle_try_start(h));
    const moirai_cancel_token_t *token = moirai_handle_token(h);
    cr_assert_not(moirai_cancel_token_is_cancelled(token));
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    cr_assert(moirai_cancel_token_is_cancelled(token));
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    /* Cancellation is cooperative: the handle is not finished... */
    cr_assert_not(moirai_handle_is_finished(h));
    cr_assert_eq(moirai_handle_try_join(h, NULL), -EAGAIN);
    /* ...and the task may still complete it normally. */
    cr_assert_eq(moirai_handle_complete(h, SENTINEL), 0);
    void *v = NULL;
    cr_assert_eq(moirai_handle_join(h, &v), 0);
    cr_assert_eq(v, SENTINEL);
    cr_assert_eq(moirai_handle_cancel(h), -EALREADY);
    cr_assert(moirai_cancel_token_is_cancelled(token));
    moirai_handle_release(h);
}

/* ---- Threads: joiners, cancellation seen by a running task ---- */

typedef struct joiner {
    moirai_handle_t *handle;
    int mode; /* 0 join, 1 join_timed far deadline, 2 try_join polling */
    int rc;
    void *value;
    int observed; /* the completer's plain write, read after joining */
    const int *shared;
} joiner_t;

static void *joiner_main(void *p)
{
    joiner_t *j = p;
    switch (j->mode) {
    case 0:
        j->rc = moirai_handle_join(j->handle, &j->value);
        break;
    case 1:
        j->rc = moirai_handle_join_timed(j->handle, moirai_deadline_after(60 * MOIRAI_NS_PER_S),
                                         &j->value);
        break;
    default:
        while ((j->rc = moirai_handle_try_join(j->handle, &j->value)) == -EAGAIN)
            sched_yield();
        break;
    }
    /* Plain read: the handle's release/acquire must make it visible (TSan
     * reports a race otherwise). */
    if (j->rc == 0 && j->shared != NULL)
        j->observed = *j->shared;
    moirai_handle_release(j->handle);
    return NULL;
}

#define JOINERS 9

LEAK_CHECKED_TEST(handle, many_joiners_all_get_the_same_value, .timeout = 30)
{
    static int shared;
    moirai_handle_t *h = new_handle();
    pthread_t threads[JOINERS];
    joiner_t joiners[JOINERS];
    for (int i = 0; i < JOINERS; i++) {
        moirai_handle_retain(h); /* each joiner owns a reference */
        joiners[i] = (joiner_t){.handle = h, .mode = i % 3, .rc = 1, .shared = &shared};
        cr_assert_eq(pthread_create(&threads[i], NULL, joiner_main, &joiners[i]), 0);
    }
    cr_assert(moirai_handle_try_start(h));
    shared = 7777; /* plain write, published by the completion */
    cr_assert_eq(moirai_handle_complete(h, &shared), 0);
    moirai_handle_release(h);
    for (int i = 0; i < JOINERS; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(joiners[i].rc, 0, "joiner %d (mode %d) rc %d", i, joiners[i].mode,
                     joiners[i].rc);
        cr_assert_eq(joiners[i].value, &shared);
        cr_assert_eq(joiners[i].observed, 7777);
    }
}

LEAK_CHECKED_TEST(handle, cancel_pending_wakes_joiners_with_ecanceled, .timeout = 30)
{
    moirai_handle_t *h = new_handle();
    pthread_t threads[JOINERS];
    joiner_t joiners[JOINERS];
    for (int i = 0; i < JOINERS; i++) {
        moirai_handle_retain(h);
        joiners[i] = (joiner_t){.handle = h, .mode = i % 3, .rc = 1, .value = SENTINEL};
        cr_assert_eq(pthread_create(&threads[i], NULL, joiner_main, &joiners[i]), 0);
    }
    cr_assert_eq(moirai_handle_cancel(h), 0);
    cr_assert_not(moirai_handle_try_start(h));
    for (int i = 0; i < JOINERS; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(joiners[i].rc, -ECANCELED);
        cr_assert_null(joiners[i].value);
    }
    moirai_handle_release(h);
}

Test(handle, fail_wakes_joiners_with_the_error, .timeout = 30)
{
    moirai_handle_t *h = new_handle();
    pthread_t threads[JOINERS];
    joiner_t joiners[JOINERS];
    for (int i = 0; i < JOINERS; i++) {
        moirai_handle_retain(h);
        joiners[i] = (joiner_t){.handle = h, .mode = i % 3, .rc = 1, .value = SENTINEL};
        cr_assert_eq(pthread_create(&threads[i], NULL, joiner_main, &joiners[i]), 0);
    }
    cr_assert(moirai_handle_try_start(h));
    cr_assert_eq(moirai_handle_fail(h, -EPIPE), 0);
    for (int i = 0; i < JOINERS; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(joiners[i].rc, -EPIPE);
        cr_assert_null(joiners[i].value);
    }
    moirai_handle_release(h);
}

/* A running task polls its token; the canceller's plain write before
 * cancelling must be visible once the token reads cancelled. */
typedef struct cancel_probe {
    moirai_handle_t *handle;
    _Atomic int started;
    int reason; /* written by the canceller before cancelling */
    int seen_reason;
} cancel_probe_t;

static int polling_task(void *arg, const moirai_cancel_token_t *token, void **result)
{
    cancel_probe_t *probe = arg;
    atomic_store_explicit(&probe->started, 1, memory_order_release);
    while (!moirai_cancel_token_is_cancelled(token))
        sched_yield();
    probe->seen_reason = probe->reason;
    *result = NULL;
    return -ECANCELED;
}

static void *run_polling_task(void *p)
{
    cancel_probe_t *probe = p;
    int rc = moirai_handle_run(probe->handle, polling_task, probe);
    return (void *)(intptr_t)rc;
}

Test(handle, token_publishes_cancellers_writes_to_running_task, .timeout = 30)
{
    cancel_probe_t probe = {.handle = new_handle()};
    pthread_t thread;
    cr_assert_eq(pthread_create(&thread, NULL, run_polling_task, &probe), 0);
    while (!atomic_load_explicit(&probe.started, memory_order_acquire))
        sched_yield();
    probe.reason = 99;
    cr_assert_eq(moirai_handle_cancel(probe.handle), -EBUSY);
    void *status;
    pthread_join(thread, &status);
    cr_assert_eq((int)(intptr_t)status, -ECANCELED);
    cr_assert_eq(probe.seen_reason, 99);
    cr_assert_eq(moirai_handle_join(probe.handle, NULL), -ECANCELED);
    moirai_handle_release(probe.handle);
}

/* ---- Lifetime ---- */

typedef struct completer {
    moirai_handle_t *handle;
    void *value;
} completer_t;

static void *complete_and_release(void *p)
{
    completer_t *c = p;
    moirai_handle_complete(c->handle, c->value);
    moirai_handle_release(c->handle);
    return NULL;
}

LEAK_CHECKED_TEST(handle, creator_may_release_before_completion, .timeout = 10)
{
    moirai_handle_t *h = new_handle();
    moirai_handle_retain(h); /* the "executor" reference */
    completer_t c = {h, SENTINEL};
    moirai_handle_release(h); /* the creator walks away first */
    pthread_t thread;
    cr_assert_eq(pthread_create(&thread, NULL, complete_and_release, &c), 0);
    pthread_join(thread, NULL);
    /* The last release freed it; LeakSanitizer checks nothing remains. */
}

LEAK_CHECKED_TEST(handle, executor_may_release_before_creator_joins, .timeout = 10)
{
    moirai_handle_t *h = new_handle();
    moirai_handle_retain(h);
    completer_t c = {h, SENTINEL};
    pthread_t thread;
    cr_assert_eq(pthread_create(&thread, NULL, complete_and_release, &c), 0);
    pthread_join(thread, NULL);
    void *v = NULL;
    cr_assert_eq(moirai_handle_join(h, &v), 0);
    cr_assert_eq(v, SENTINEL);
    moirai_handle_release(h);
}

LEAK_CHECKED_TEST(handle, pending_handle_released_by_all_is_freed, .timeout = 10)
{
    moirai_handle_t *h = new_handle();
    moirai_handle_retain(h);
    moirai_handle_retain(h);
    moirai_handle_release(h);
    moirai_handle_release(h);
    cr_assert_not(moirai_handle_is_finished(h)); /* still referenced once */
    moirai_handle_release(h);
}

/* ---- moirai_handle_run ---- */

typedef struct run_probe {
    int calls;
    int status;
    void *result;
    const moirai_cancel_token_t *token;
    void *initial_result;
    moirai_handle_t *complete_self;
} run_probe_t;

static int probe_task(void *arg, const moirai_cancel_token_t *token, void **result)
{
    run_probe_t *probe = arg;
    probe->calls++;
    probe->token = token;
    probe->initial_result = *result;
    if (probe->complete_self != NULL)
        moirai_handle_complete(probe->complete_self, SENTINEL);
    *result = probe->result;
    return probe->status;
}

LEAK_CHECKED_TEST(handle, run_completes_with_task_result, .timeout = 10)
{
    int payload = 5;
    run_probe_t probe = {.result = &payload, .initial_result = SENTINEL};
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_handle_run(h, probe_task, &probe), 0);
    cr_assert_eq(probe.calls, 1);
    cr_assert_eq(probe.token, moirai_handle_token(h));
    cr_assert_null(probe.initial_result);
    void *v = NULL;
    cr_assert_eq(moirai_handle_join(h, &v), 0);
    cr_assert_eq(v, &payload);
    /* The handle served its task: it cannot run again. */
    cr_assert_eq(moirai_handle_run(h, probe_task, &probe), -ECANCELED);
    cr_assert_eq(probe.calls, 1);
    moirai_handle_release(h);
}

Test(handle, run_fails_with_task_error, .timeout = 10)
{
    run_probe_t probe = {.status = -EIO, .result = SENTINEL};
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_handle_run(h, probe_task, &probe), -EIO);
    void *v = SENTINEL;
    cr_assert_eq(moirai_handle_join(h, &v), -EIO);
    cr_assert_null(v);
    moirai_handle_release(h);
}

Test(handle, run_treats_positive_status_as_that_errno, .timeout = 10)
{
    run_probe_t probe = {.status = EIO};
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_handle_run(h, probe_task, &probe), -EIO);
    cr_assert_eq(moirai_handle_join(h, NULL), -EIO);
    moirai_handle_release(h);
}

Test(handle, run_on_cancelled_handle_never_calls_task, .timeout = 10)
{
    run_probe_t probe = {0};
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_handle_cancel(h), 0);
    cr_assert_eq(moirai_handle_run(h, probe_task, &probe), -ECANCELED);
    cr_assert_eq(probe.calls, 0);
    cr_assert_eq(moirai_handle_join(h, NULL), -ECANCELED);
    moirai_handle_release(h);
}

Test(handle, run_without_handle_passes_null_token, .timeout = 10)
{
    run_probe_t probe = {
        .status = -ENOENT, .token = (const void *)SENTINEL, .initial_result = SENTINEL};
    cr_assert_eq(moirai_handle_run(NULL, probe_task, &probe), -ENOENT);
    cr_assert_eq(probe.calls, 1);
    cr_assert_null(probe.token);
    cr_assert_null(probe.initial_result);
    probe.status = 0;
    cr_assert_eq(moirai_handle_run(NULL, probe_task, &probe), 0);
    cr_assert_eq(probe.calls, 2);
}

Test(handle, run_reports_ealready_when_task_completed_its_handle, .timeout = 10)
{
    int other = 3;
    moirai_handle_t *h = new_handle();
    run_probe_t probe = {.result = &other, .complete_self = h};
    cr_assert_eq(moirai_handle_run(h, probe_task, &probe), -EALREADY);
    void *v = NULL;
    cr_assert_eq(moirai_handle_join(h, &v), 0);
    cr_assert_eq(v, SENTINEL, "the task's own completion stands");
    moirai_handle_release(h);
}
