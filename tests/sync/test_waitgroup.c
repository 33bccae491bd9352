/* moirai_waitgroup_t: Go semantics, misuse reported without changing the
 * counter, waiters woken exactly when the count reaches zero. */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include <moirai/core/clock.h>
#include <moirai/sync/waitgroup.h>

#include "lock_test_util.h"

Test(waitgroup, zero_does_not_block, .timeout = 10)
{
    moirai_waitgroup_t wg = MOIRAI_WAITGROUP_INIT;
    moirai_waitgroup_wait(&wg);
    cr_assert_eq(moirai_waitgroup_wait_timed(&wg, 0), 0);
    cr_assert_eq(moirai_waitgroup_count(&wg), 0);
}

Test(waitgroup, misuse_is_reported_and_changes_nothing, .timeout = 10)
{
    moirai_waitgroup_t wg;
    moirai_waitgroup_init(&wg);
    cr_assert_eq(moirai_waitgroup_done(&wg), -EINVAL, "done on zero must be rejected");
    cr_assert_eq(moirai_waitgroup_count(&wg), 0);
    cr_assert_eq(moirai_waitgroup_add(&wg, -1), -EINVAL);
    cr_assert_eq(moirai_waitgroup_add(&wg, 2), 0);
    cr_assert_eq(moirai_waitgroup_add(&wg, -3), -EINVAL, "would go negative");
    cr_assert_eq(moirai_waitgroup_count(&wg), 2, "a rejected add changed the counter");
    cr_assert_eq(moirai_waitgroup_add(&wg, INT32_MAX), -EOVERFLOW);
    cr_assert_eq(moirai_waitgroup_count(&wg), 2, "a rejected add changed the counter");
    cr_assert_eq(moirai_waitgroup_add(&wg, MOIRAI_WAITGROUP_MAX - 2), 0, "up to the maximum");
    cr_assert_eq(moirai_waitgroup_count(&wg), MOIRAI_WAITGROUP_MAX);
    cr_assert_eq(moirai_waitgroup_add(&wg, 1), -EOVERFLOW);
    cr_assert_eq(moirai_waitgroup_add(&wg, -(int32_t)MOIRAI_WAITGROUP_MAX), 0);
    cr_assert_eq(moirai_waitgroup_count(&wg), 0);
    cr_assert_eq(moirai_waitgroup_add(&wg, 0), 0, "adding zero is allowed");
}

Test(waitgroup, timedwait_times_out, .timeout = 20)
{
    moirai_waitgroup_t wg = MOIRAI_WAITGROUP_INIT;
    cr_assert_eq(moirai_waitgroup_add(&wg, 1), 0);
    uint64_t deadline = test_deadline_ms(20);
    cr_assert_eq(moirai_waitgroup_wait_timed(&wg, deadline), -ETIMEDOUT);
    cr_assert(moirai_clock_now_ns() >= deadline);
    cr_assert_eq(moirai_waitgroup_wait_timed(&wg, 0), -ETIMEDOUT);
    cr_assert_eq(moirai_waitgroup_count(&wg), 1, "a timed-out wait changed the counter");
    cr_assert_eq(moirai_waitgroup_done(&wg), 0);
    cr_assert_eq(moirai_waitgroup_wait_timed(&wg, 0), 0);
}

/* Workers write their results (plain memory) and call done; the waiter
 * must see every result. Several waiters wait at once, some timed. */
typedef struct work_ctx {
    moirai_waitgroup_t wg;
    long results[64];
    int n;
    _Atomic long waiters_ok;
    _Atomic long go;
} work_ctx_t;

static void *work_worker(void *arg, int index)
{
    work_ctx_t *c = arg;
    test_await_at_least(&c->go, 1);
    c->results[index] = index * 7 + 1;
    cr_assert_eq(moirai_waitgroup_done(&c->wg), 0);
    return NULL;
}

static void *work_waiter(void *arg, int index)
{
    work_ctx_t *c = arg;
    if (index % 2)
        cr_assert_eq(moirai_waitgroup_wait_timed(&c->wg, test_deadline_ms(60000)), 0);
    else
        moirai_waitgroup_wait(&c->wg);
    for (int i = 0; i < c->n; i++)
        cr_assert_eq(c->results[i], i * 7 + 1, "a waiter returned before worker %d was done", i);
    atomic_fetch_add(&c->waiters_ok, 1);
    return NULL;
}

static void *work_waiters(void *arg)
{
    test_run_threads(4, work_waiter, arg);
    return NULL;
}

static void *work_workers(void *arg)
{
    work_ctx_t *c = arg;
    test_run_threads(c->n, work_worker, c);
    return NULL;
}

Test(waitgroup, waiters_see_all_work, .timeout = 60)
{
    static work_ctx_t c;
    long rounds = test_iters(200, 10);
    for (long r = 0; r < rounds; r++) {
        memset(&c, 0, sizeof c);
        c.n = test_threads();
        cr_assert_eq(moirai_waitgroup_add(&c.wg, c.n), 0);
        pthread_t waiters = test_spawn(work_waiters, &c);
        pthread_t workers = test_spawn(work_workers, &c);
        /* In the first round make the waiters park before work starts. */
        if (r == 0)
            test_sleep_ms(30);
        atomic_store(&c.go, 1);
        pthread_join(workers, NULL);
        pthread_join(waiters, NULL);
        cr_assert_eq(atomic_load(&c.waiters_ok), 4);
        cr_assert_eq(moirai_waitgroup_count(&c.wg), 0);
    }
}

/* Concurrent add/done pairs never lose a count: the final count is what
 * was added minus what was done. */
typedef struct churn_ctx {
    moirai_waitgroup_t wg;
    long iters;
} churn_ctx_t;

static void *churn_worker(void *arg, int index)
{
    churn_ctx_t *c = arg;
    (void)index;
    for (long i = 0; i < c->iters; i++) {
        cr_assert_eq(moirai_waitgroup_add(&c->wg, 2), 0);
        cr_assert_eq(moirai_waitgroup_done(&c->wg), 0);
    }
    return NULL;
}

Test(waitgroup, concurrent_add_done_exact, .timeout = 60)
{
    static churn_ctx_t c;
    c = (churn_ctx_t){.wg = MOIRAI_WAITGROUP_INIT, .iters = test_iters(100000, 1000)};
    int n = test_threads();
    test_run_threads(n, churn_worker, &c);
    cr_assert_eq(moirai_waitgroup_count(&c.wg), (uint32_t)(n * c.iters));
    cr_assert_eq(moirai_waitgroup_add(&c.wg, -(int32_t)(n * c.iters)), 0);
    moirai_waitgroup_wait(&c.wg);
}
