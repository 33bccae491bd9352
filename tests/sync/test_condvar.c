/* moirai_condvar_t: no lost wake-ups, broadcast reaches everyone, timed
 * waits time out holding the mutex. */
#include <criterion/criterion.h>

#include <errno.h>

#include <moirai/core/clock.h>
#include <moirai/sync/condvar.h>
#include <moirai/sync/mutex.h>

#include "lock_test_util.h"

Test(condvar, static_init_signal_without_waiters, .timeout = 10)
{
    moirai_condvar_t cv = MOIRAI_CONDVAR_INIT;
    /* Nobody waits: both are no-ops and must not block. */
    moirai_condvar_signal(&cv);
    moirai_condvar_broadcast(&cv);
    moirai_condvar_init(&cv);
    moirai_condvar_signal(&cv);
    moirai_condvar_destroy(&cv);
}

Test(condvar, timedwait_times_out_holding_mutex, .timeout = 20)
{
    moirai_condvar_t cv = MOIRAI_CONDVAR_INIT;
    moirai_mutex_t m = MOIRAI_MUTEX_INIT;
    moirai_mutex_lock(&m);
    uint64_t deadline = test_deadline_ms(20);
    cr_assert_eq(moirai_condvar_wait_timed(&cv, &m, deadline), -ETIMEDOUT);
    cr_assert(moirai_clock_now_ns() >= deadline, "returned before the deadline");
    cr_assert_not(moirai_mutex_try_lock(&m), "timedwait must return holding the mutex");
    /* A deadline already past times out at once, still holding the mutex. */
    cr_assert_eq(moirai_condvar_wait_timed(&cv, &m, 0), -ETIMEDOUT);
    cr_assert_not(moirai_mutex_try_lock(&m));
    moirai_mutex_unlock(&m);
}

/* ---- timed wait that is signalled returns 0 ---- */

typedef struct flag_ctx {
    moirai_condvar_t cv;
    moirai_mutex_t m;
    int flag;            /* protected by m */
    int waiting;         /* protected by m: waiters that entered */
    int woken;           /* protected by m */
    _Atomic long rcs_ok; /* timed waits that returned 0 with the flag set */
} flag_ctx_t;

static void *flag_timed_waiter(void *arg, int index)
{
    flag_ctx_t *c = arg;
    (void)index;
    moirai_mutex_lock(&c->m);
    c->waiting++;
    while (!c->flag) {
        int rc = moirai_condvar_wait_timed(&c->cv, &c->m, test_deadline_ms(60000));
        cr_assert_eq(rc, 0, "a signalled timed wait reported %d", rc);
    }
    c->woken++;
    moirai_mutex_unlock(&c->m);
    atomic_fetch_add(&c->rcs_ok, 1);
    return NULL;
}

static void *flag_waiter(void *arg, int index)
{
    flag_ctx_t *c = arg;
    (void)index;
    moirai_mutex_lock(&c->m);
    c->waiting++;
    while (!c->flag)
        moirai_condvar_wait(&c->cv, &c->m);
    c->woken++;
    moirai_mutex_unlock(&c->m);
    return NULL;
}

typedef struct group_arg {
    flag_ctx_t *c;
    void *(*fn)(void *, int);
    int n;
} group_arg_t;

static void *group_main(void *arg)
{
    group_arg_t *g = arg;
    test_run_threads(g->n, g->fn, g->c);
    return NULL;
}

/* Waits until `n` waiters have entered their wait loop, then sets the
 * flag and wakes them with a single broadcast (or one signal per waiter). */
static void release_waiters(flag_ctx_t *c, int n, int broadcast)
{
    for (;;) {
        moirai_mutex_lock(&c->m);
        int w = c->waiting;
        moirai_mutex_unlock(&c->m);
        if (w == n)
            break;
        sched_yield();
    }
    moirai_mutex_lock(&c->m);
    c->flag = 1;
    if (broadcast)
        moirai_condvar_broadcast(&c->cv);
    moirai_mutex_unlock(&c->m);
    if (!broadcast) {
        /* Signals after the unlock: allowed, and the harder case. */
        for (int i = 0; i < n; i++)
            moirai_condvar_signal(&c->cv);
    }
}

static void run_flag(void *(*fn)(void *, int), int broadcast)
{
    static flag_ctx_t c;
    c = (flag_ctx_t){.cv = MOIRAI_CONDVAR_INIT, .m = MOIRAI_MUTEX_INIT};
    int n = test_threads();
    group_arg_t g = {&c, fn, n};
    pthread_t t = test_spawn(group_main, &g);
    release_waiters(&c, n, broadcast);
    pthread_join(t, NULL);
    cr_assert_eq(c.woken, n, "every waiter must return");
}

Test(condvar, one_broadcast_wakes_all, .timeout = 30)
{
    run_flag(flag_waiter, 1);
}

Test(condvar, one_broadcast_wakes_all_timed, .timeout = 30)
{
    run_flag(flag_timed_waiter, 1);
}

Test(condvar, one_signal_per_waiter_wakes_all, .timeout = 30)
{
    run_flag(flag_waiter, 0);
}

/* ---- a bounded queue: producers and consumers with signal only ----
 *
 * A lost wake-up leaves a thread asleep while the queue could serve it:
 * the run then never finishes and the test times out. Items are summed
 * to check nothing is lost or duplicated. */
#define QCAP 4

typedef struct queue_ctx {
    moirai_mutex_t m;
    moirai_condvar_t not_empty, not_full;
    long items[QCAP];
    int head, count;
    long per_producer;
    int producers, consumers;
    long consumed_sum; /* protected by m */
    long consumed;     /* protected by m */
    int timed;
} queue_ctx_t;

static void q_wait(queue_ctx_t *q, moirai_condvar_t *cv)
{
    if (q->timed) {
        /* A timeout is only a spurious return for this loop. */
        (void)moirai_condvar_wait_timed(cv, &q->m, test_deadline_ms(5));
    } else {
        moirai_condvar_wait(cv, &q->m);
    }
}

static void *q_producer(void *arg, int index)
{
    queue_ctx_t *q = arg;
    for (long i = 0; i < q->per_producer; i++) {
        long item = ((long)index << 40) | (i + 1);
        moirai_mutex_lock(&q->m);
        while (q->count == QCAP)
            q_wait(q, &q->not_full);
        q->items[(q->head + q->count) % QCAP] = item;
        q->count++;
        moirai_condvar_signal(&q->not_empty);
        moirai_mutex_unlock(&q->m);
    }
    return NULL;
}

static void *q_consumer(void *arg, int index)
{
    queue_ctx_t *q = arg;
    long total = q->per_producer * q->producers;
    /* Consumers split the items: the first takes the remainder. */
    long mine = total / q->consumers + (index == 0 ? total % q->consumers : 0);
    for (long i = 0; i < mine; i++) {
        moirai_mutex_lock(&q->m);
        while (q->count == 0)
            q_wait(q, &q->not_empty);
        long item = q->items[q->head];
        q->head = (q->head + 1) % QCAP;
        q->count--;
        q->consumed_sum += item;
        q->consumed++;
        moirai_condvar_signal(&q->not_full);
        moirai_mutex_unlock(&q->m);
    }
    return NULL;
}

static void *q_run_producers(void *arg)
{
    queue_ctx_t *q = arg;
    test_run_threads(q->producers, q_producer, q);
    return NULL;
}

static void run_queue(int producers, int consumers, int timed)
{
    static queue_ctx_t q;
    q = (queue_ctx_t){.m = MOIRAI_MUTEX_INIT,
                      .not_empty = MOIRAI_CONDVAR_INIT,
                      .not_full = MOIRAI_CONDVAR_INIT,
                      .per_producer = test_iters(50000, 500),
                      .producers = producers,
                      .consumers = consumers,
                      .timed = timed};
    pthread_t p = test_spawn(q_run_producers, &q);
    test_run_threads(consumers, q_consumer, &q);
    pthread_join(p, NULL);
    long expect_sum = 0;
    for (int pi = 0; pi < producers; pi++)
        for (long i = 0; i < q.per_producer; i++)
            expect_sum += ((long)pi << 40) | (i + 1);
    cr_assert_eq(q.consumed, q.per_producer * producers);
    cr_assert_eq(q.consumed_sum, expect_sum, "items lost or duplicated");
    cr_assert_eq(q.count, 0);
}

Test(condvar, queue_1p1c_no_lost_wakeup, .timeout = 60)
{
    run_queue(1, 1, 0);
}

Test(condvar, queue_2p2c_no_lost_wakeup, .timeout = 60)
{
    run_queue(2, 2, 0);
}

Test(condvar, queue_4p1c_no_lost_wakeup, .timeout = 60)
{
    run_queue(4, 1, 0);
}

Test(condvar, queue_2p2c_timed, .timeout = 60)
{
    run_queue(2, 2, 1);
}

/* ---- strict ping-pong: every signal must be received ---- */

typedef struct pingpong {
    moirai_mutex_t m;
    moirai_condvar_t cv;
    long turn; /* protected by m: even = ping's move, odd = pong's */
    long rounds;
} pingpong_t;

static void *pp_player(void *arg, int index)
{
    pingpong_t *p = arg;
    for (long r = 0; r < p->rounds; r++) {
        moirai_mutex_lock(&p->m);
        while ((p->turn & 1) != index)
            moirai_condvar_wait(&p->cv, &p->m);
        p->turn++;
        moirai_condvar_signal(&p->cv);
        moirai_mutex_unlock(&p->m);
    }
    return NULL;
}

Test(condvar, ping_pong, .timeout = 60)
{
    static pingpong_t p;
    p = (pingpong_t){
        .m = MOIRAI_MUTEX_INIT, .cv = MOIRAI_CONDVAR_INIT, .rounds = test_iters(20000, 500)};
    test_run_threads(2, pp_player, &p);
    cr_assert_eq(p.turn, 2 * p.rounds);
}
