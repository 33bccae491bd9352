/* moirai_once_t: exactly once under concurrency, late callers blocked
 * until the initializer returns, errors reported. */
#include <criterion/criterion.h>

#include <errno.h>

#include <moirai/sync/once.h>

#include "lock_test_util.h"

static void never_called(void *arg)
{
    (void)arg;
    cr_assert_fail("the initializer ran on a rejected call");
}

Test(once, rejects_null, .timeout = 10)
{
    moirai_once_t o = MOIRAI_ONCE_INIT;
    cr_assert_eq(moirai_once_call(NULL, never_called, NULL), -EINVAL);
    cr_assert_eq(moirai_once_call(&o, NULL, NULL), -EINVAL);
    cr_assert_not(moirai_once_done(&o), "a rejected call marked the once done");
}

static void count_call(void *arg)
{
    (*(int *)arg)++;
}

Test(once, runs_once_single_thread, .timeout = 10)
{
    moirai_once_t o;
    moirai_once_init(&o);
    int calls = 0;
    cr_assert_not(moirai_once_done(&o));
    for (int i = 0; i < 5; i++)
        cr_assert_eq(moirai_once_call(&o, count_call, &calls), 0);
    cr_assert_eq(calls, 1);
    cr_assert(moirai_once_done(&o));
}

/* N threads start together; the initializer sleeps so the others arrive
 * while it runs. Every caller must return only after the initializer did:
 * it checks the plain fields the initializer wrote. */
typedef struct race_ctx {
    moirai_once_t once;
    pthread_barrier_t start;
    int calls;    /* plain: written by the initializer only */
    long payload; /* plain: written by the initializer only */
    int sleep_ms;
    _Atomic long early_returns;
} race_ctx_t;

static void slow_init(void *arg)
{
    race_ctx_t *c = arg;
    c->calls++;
    if (c->sleep_ms)
        test_sleep_ms(c->sleep_ms);
    c->payload = 0x5eed;
}

static void *race_worker(void *arg, int index)
{
    race_ctx_t *c = arg;
    (void)index;
    pthread_barrier_wait(&c->start);
    cr_assert_eq(moirai_once_call(&c->once, slow_init, c), 0);
    if (c->payload != 0x5eed || c->calls != 1)
        atomic_fetch_add(&c->early_returns, 1);
    return NULL;
}

static void run_race(int sleep_ms)
{
    static race_ctx_t c;
    int n = test_threads();
    c = (race_ctx_t){.once = MOIRAI_ONCE_INIT, .sleep_ms = sleep_ms};
    pthread_barrier_init(&c.start, NULL, (unsigned)n);
    test_run_threads(n, race_worker, &c);
    pthread_barrier_destroy(&c.start);
    cr_assert_eq(c.calls, 1, "the initializer ran %d times", c.calls);
    cr_assert_eq(atomic_load(&c.early_returns), 0, "a caller returned before the initializer");
    cr_assert(moirai_once_done(&c.once));
}

Test(once, exactly_once_slow_initializer, .timeout = 30)
{
    /* Waiters park while the initializer sleeps. */
    run_race(30);
}

Test(once, exactly_once_many_rounds, .timeout = 60)
{
    long rounds = test_iters(2000, 50);
    for (long r = 0; r < rounds; r++)
        run_race(0);
}
