/* moirai_event_t: manual-reset releases everyone until reset; auto-reset
 * releases exactly one waiter per set. */
#include <criterion/criterion.h>

#include <errno.h>

#include <moirai/core/clock.h>
#include <moirai/sync/event.h>

#include "lock_test_util.h"

Test(event, init_rejects_bad_mode, .timeout = 10)
{
    moirai_event_t e = MOIRAI_EVENT_INIT_MANUAL;
    cr_assert_eq(moirai_event_init(&e, (moirai_event_mode_t)7, true), -EINVAL);
    cr_assert_not(moirai_event_is_set(&e), "a rejected init changed the event");
    cr_assert_eq(moirai_event_init(&e, MOIRAI_EVENT_AUTO, true), 0);
    cr_assert(moirai_event_is_set(&e));
    moirai_event_destroy(&e);
}

Test(event, manual_semantics, .timeout = 20)
{
    moirai_event_t e;
    cr_assert_eq(moirai_event_init(&e, MOIRAI_EVENT_MANUAL, false), 0);
    cr_assert_not(moirai_event_try_wait(&e));
    uint64_t deadline = test_deadline_ms(20);
    cr_assert_eq(moirai_event_wait_timed(&e, deadline), -ETIMEDOUT);
    cr_assert(moirai_clock_now_ns() >= deadline);
    moirai_event_set(&e);
    moirai_event_set(&e); /* idempotent */
    for (int i = 0; i < 3; i++) {
        cr_assert(moirai_event_try_wait(&e), "a manual event stays set");
        cr_assert_eq(moirai_event_wait_timed(&e, 0), 0);
        moirai_event_wait(&e);
    }
    moirai_event_reset(&e);
    cr_assert_not(moirai_event_is_set(&e));
    cr_assert_eq(moirai_event_wait_timed(&e, 0), -ETIMEDOUT);
    moirai_event_reset(&e); /* reset of a clear event is a no-op */
    cr_assert_not(moirai_event_try_wait(&e));
}

Test(event, auto_semantics, .timeout = 20)
{
    moirai_event_t e = MOIRAI_EVENT_INIT_AUTO;
    cr_assert_not(moirai_event_try_wait(&e));
    cr_assert_eq(moirai_event_wait_timed(&e, test_deadline_ms(10)), -ETIMEDOUT);
    moirai_event_set(&e);
    moirai_event_set(&e); /* sets do not accumulate */
    cr_assert(moirai_event_is_set(&e));
    cr_assert(moirai_event_is_set(&e), "is_set does not consume");
    cr_assert(moirai_event_try_wait(&e), "the set is there for the first waiter");
    cr_assert_not(moirai_event_try_wait(&e), "and consumed by it");
    moirai_event_set(&e);
    cr_assert_eq(moirai_event_wait_timed(&e, 0), 0);
    cr_assert_not(moirai_event_is_set(&e));
    moirai_event_set(&e);
    moirai_event_wait(&e);
    moirai_event_set(&e);
    moirai_event_reset(&e);
    cr_assert_not(moirai_event_try_wait(&e), "reset clears an auto event too");
}

/* Manual: one set releases every parked waiter. */
typedef struct ev_ctx {
    moirai_event_t e;
    _Atomic long passed;
    int timed;
    long payload; /* plain: written before set, read after wait */
} ev_ctx_t;

static void *ev_waiter(void *arg, int index)
{
    ev_ctx_t *c = arg;
    if (c->timed && index % 2)
        cr_assert_eq(moirai_event_wait_timed(&c->e, test_deadline_ms(60000)), 0);
    else
        moirai_event_wait(&c->e);
    cr_assert_eq(c->payload, 42, "set does not publish the setter's writes");
    atomic_fetch_add(&c->passed, 1);
    return NULL;
}

static void *ev_group(void *arg)
{
    test_run_threads(test_threads(), ev_waiter, arg);
    return NULL;
}

Test(event, manual_set_releases_all, .timeout = 30)
{
    static ev_ctx_t c;
    c = (ev_ctx_t){.e = MOIRAI_EVENT_INIT_MANUAL, .timed = 1};
    pthread_t g = test_spawn(ev_group, &c);
    test_sleep_ms(30); /* let them park */
    cr_assert_eq(atomic_load(&c.passed), 0, "a waiter passed an unset event");
    c.payload = 42;
    moirai_event_set(&c.e);
    pthread_join(g, NULL);
    cr_assert_eq(atomic_load(&c.passed), test_threads());
    cr_assert(moirai_event_is_set(&c.e), "a manual event stays set after releasing waiters");
}

/* Auto: with N waiters parked, each set releases exactly one. The main
 * thread sets only after the previous release was consumed (otherwise two
 * sets would legitimately coalesce). Conservation proves "exactly one":
 * if any set released two waiters, the last sets would find nobody and
 * leave the event set at the end. */
Test(event, auto_set_releases_exactly_one, .timeout = 60)
{
    static ev_ctx_t c;
    c = (ev_ctx_t){.e = MOIRAI_EVENT_INIT_AUTO, .timed = 1, .payload = 42};
    int n = test_threads();
    pthread_t g = test_spawn(ev_group, &c);
    test_sleep_ms(30); /* let them park */
    for (int i = 0; i < n; i++) {
        cr_assert_eq(atomic_load(&c.passed), i, "more waiters passed than sets were made");
        moirai_event_set(&c.e);
        test_await_at_least(&c.passed, i + 1);
        /* The passing waiter consumed the set before counting itself. */
        cr_assert_not(moirai_event_is_set(&c.e));
    }
    pthread_join(g, NULL);
    cr_assert_eq(atomic_load(&c.passed), n);
    cr_assert_not(moirai_event_is_set(&c.e), "a set was left over: one set released two");
}

/* Auto-reset hand-off in both directions: strict alternation, nothing
 * lost (a lost wake-up hangs the run). */
typedef struct pp_ctx {
    moirai_event_t ping, pong;
    long rounds;
    long count; /* plain, alternately written by both threads */
} pp_ctx_t;

static void *pp_thread(void *arg, int index)
{
    pp_ctx_t *c = arg;
    for (long r = 0; r < c->rounds; r++) {
        if (index == 0) {
            c->count++;
            moirai_event_set(&c->ping);
            moirai_event_wait(&c->pong);
        } else {
            moirai_event_wait(&c->ping);
            c->count++;
            moirai_event_set(&c->pong);
        }
    }
    return NULL;
}

Test(event, auto_ping_pong, .timeout = 60)
{
    static pp_ctx_t c;
    c = (pp_ctx_t){.ping = MOIRAI_EVENT_INIT_AUTO,
                   .pong = MOIRAI_EVENT_INIT_AUTO,
                   .rounds = test_iters(20000, 500)};
    test_run_threads(2, pp_thread, &c);
    cr_assert_eq(c.count, 2 * c.rounds);
}
