/* Cancellation: a fiber cancelled before it first runs never runs; one
 * cancelled while parked, sleeping or joining wakes with -ECANCELED; waits
 * that cannot fail (a mutex) keep waiting; the token is visible. */
#include "async_test_util.h"

#include <stdatomic.h>

static _Atomic int ran;

static int mark_ran(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    atomic_fetch_add(&ran, 1);
    return 0;
}

Test(fiber_cancel, cancelled_before_first_run_never_runs, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    /* The only worker is busy, so the next fibers stay queued. */
    struct holder hold;
    moirai_handle_t *holder = hold_the_worker(rt, &hold);
    moirai_handle_t *hs[10];
    for (int i = 0; i < 10; i++) {
        hs[i] = spawn_with_handle(rt, mark_ran, NULL, NULL);
        cr_assert_eq(moirai_handle_cancel(hs[i]), 0);
    }
    atomic_store(&hold.release, 1);
    cr_assert_eq(join_and_release(holder, NULL), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(join_and_release(hs[i], NULL), -ECANCELED);
    drop_runtime(rt); /* waits for the cancelled fibers to be retired */
    cr_assert_eq(atomic_load(&ran), 0);
}

struct parked {
    moirai_event_t started;
    moirai_event_t never; /* nobody sets it */
    int how;
};

static int park_somewhere(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)result;
    struct parked *p = arg;
    moirai_event_set(&p->started);
    int rc;
    switch (p->how) {
    case 0: /* sleeping */
        rc = moirai_fiber_sleep(60 * MOIRAI_NS_PER_S);
        break;
    case 1: { /* joining a handle nobody completes */
        moirai_handle_t *h = NULL;
        moirai_handle_create(&h);
        rc = moirai_handle_join(h, NULL);
        moirai_handle_release(h);
        break;
    }
    default: /* a timed join with a far deadline */ {
        moirai_handle_t *h = NULL;
        moirai_handle_create(&h);
        rc = moirai_handle_join_timed(h, moirai_deadline_after(60 * MOIRAI_NS_PER_S), NULL);
        moirai_handle_release(h);
        break;
    }
    }
    if (!moirai_cancel_token_is_cancelled(cancel))
        return -EFAULT;
    /* Sleeping after a cancellation returns at once. */
    if (moirai_fiber_sleep(60 * MOIRAI_NS_PER_S) != -ECANCELED)
        return -EFAULT;
    return rc;
}

Test(fiber_cancel, parked_sleeping_and_joining_fibers_wake_with_ecanceled, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(2);
    for (int how = 0; how < 3; how++) {
        struct parked p = {.how = how};
        moirai_event_init(&p.started, MOIRAI_EVENT_MANUAL, false);
        moirai_event_init(&p.never, MOIRAI_EVENT_MANUAL, false);
        moirai_handle_t *h = spawn_with_handle(rt, park_somewhere, &p, NULL);
        moirai_event_wait(&p.started);
        /* Once started, give it a moment to park; a cancel that arrives
         * before it parks must work just the same. */
        if (how == 1)
            moirai_fiber_sleep(10 * MOIRAI_NS_PER_MS);
        cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
        cr_assert_eq(join_and_release(h, NULL), -ECANCELED, "wait kind %d", how);
    }
    drop_runtime(rt);
}

/* A cancelled fiber waiting for a mutex keeps waiting (a lock cannot
 * fail) and gets the lock when it is released. */
struct locker {
    moirai_mutex_t lock;
    moirai_event_t waiting;
    int got;
};

static int lock_after_cancel(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)result;
    struct locker *l = arg;
    moirai_event_set(&l->waiting);
    moirai_mutex_lock(&l->lock);
    l->got = 1;
    moirai_mutex_unlock(&l->lock);
    return moirai_cancel_token_is_cancelled(cancel) ? -ECANCELED : 0;
}

Test(fiber_cancel, cancelled_fiber_still_gets_its_lock, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct locker l = {0};
    moirai_mutex_init(&l.lock);
    moirai_event_init(&l.waiting, MOIRAI_EVENT_MANUAL, false);
    moirai_mutex_lock(&l.lock);
    moirai_handle_t *h = spawn_with_handle(rt, lock_after_cancel, &l, NULL);
    moirai_event_wait(&l.waiting);
    moirai_fiber_sleep(10 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    moirai_fiber_sleep(10 * MOIRAI_NS_PER_MS);
    cr_assert_eq(l.got, 0, "a lock must not be granted by a cancellation");
    moirai_mutex_unlock(&l.lock);
    cr_assert_eq(join_and_release(h, NULL), -ECANCELED);
    cr_assert_eq(l.got, 1);
    drop_runtime(rt);
}

/* Many cancels racing many sleeps and wake-ups: every fiber ends exactly
 * once, with 0 or -ECANCELED, and nothing hangs. */
static int sleepy(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    for (int i = 0; i < 3; i++) {
        int rc = moirai_fiber_sleep(MOIRAI_NS_PER_MS);
        if (rc != 0)
            return rc;
    }
    return 0;
}

Test(fiber_cancel, cancel_races_sleep, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    enum { N = 2000 };
    static moirai_handle_t *hs[N];
    for (int i = 0; i < N; i++)
        hs[i] = spawn_with_handle(rt, sleepy, NULL, NULL);
    for (int i = 0; i < N; i += 2)
        moirai_handle_cancel(hs[i]);
    int ok = 0, cancelled = 0;
    for (int i = 0; i < N; i++) {
        int rc = join_and_release(hs[i], NULL);
        cr_assert(rc == 0 || rc == -ECANCELED, "fiber %d ended with %d", i, rc);
        ok += rc == 0;
        cancelled += rc == -ECANCELED;
        if (i % 2 == 1)
            cr_assert_eq(rc, 0);
    }
    cr_assert_eq(ok + cancelled, N);
    moirai_runtime_stats_t st;
    drop_runtime(rt);
    (void)st;
}
