/* Channels and fibers: a blocked fiber parks only itself (its worker runs
 * the peer), ping-pong between fibers on one worker and between a fiber
 * and a thread, deadlines from a fiber, and cancellation of a fiber
 * blocked in send or receive (-ECANCELED, nothing taken or accepted). */
#include "chan_test_util.h"

#include <stdatomic.h>

#include "../async/async_test_util.h"

TestSuite(chan_fiber, .timeout = 60);

struct pair {
    moirai_chan_t *ping, *pong;
    uint64_t rounds;
};

static int pinger(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    struct pair *p = arg;
    for (uint64_t i = 0; i < p->rounds; i++) {
        uint64_t v = i, back = 0;
        int rc = moirai_chan_send_timed(p->ping, moirai_deadline_after(CHAN_WAIT_NS), &v);
        if (rc == 0)
            rc = moirai_chan_recv_timed(p->pong, moirai_deadline_after(CHAN_WAIT_NS), &back);
        if (rc != 0)
            return rc;
        if (back != i + 1)
            return -EILSEQ;
    }
    return 0;
}

static int ponger(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    struct pair *p = arg;
    for (uint64_t i = 0; i < p->rounds; i++) {
        uint64_t v;
        int rc = moirai_chan_recv_timed(p->ping, moirai_deadline_after(CHAN_WAIT_NS), &v);
        if (rc != 0)
            return rc;
        v++;
        rc = moirai_chan_send_timed(p->pong, moirai_deadline_after(CHAN_WAIT_NS), &v);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void *ponger_thread(void *arg)
{
    return (void *)(intptr_t)ponger(arg, NULL, NULL);
}

Test(chan_fiber, ping_pong_between_fibers_on_one_worker)
{
    /* One worker: if a blocked fiber blocked its thread, the peer fiber
     * could never run and the first timed wait would fail. */
    moirai_runtime_t *rt = make_runtime(1);
    size_t caps[] = {0, 1, MOIRAI_CHAN_UNBOUNDED};
    for (size_t k = 0; k < 3; k++) {
        struct pair p = {make_chan(8, caps[k], false), make_chan(8, caps[k], false), 2000};
        moirai_handle_t *a = spawn_with_handle(rt, pinger, &p, NULL);
        moirai_handle_t *b = spawn_with_handle(rt, ponger, &p, NULL);
        cr_assert_eq(join_and_release(a, NULL), 0);
        cr_assert_eq(join_and_release(b, NULL), 0);
        moirai_chan_stats_t st;
        cr_assert_eq(moirai_chan_stats(p.ping, &st), 0);
        cr_assert_eq(st.received, 2000);
        drop_chan(p.ping);
        drop_chan(p.pong);
    }
    drop_runtime(rt);
}

Test(chan_fiber, ping_pong_between_a_fiber_and_a_thread)
{
    moirai_runtime_t *rt = make_runtime(1);
    struct pair p = {make_chan(8, 0, false), make_chan(8, 0, false), 2000};
    pthread_t t = start_thread(ponger_thread, &p);
    cr_assert_eq(run_fiber(rt, pinger, &p, NULL), 0);
    void *rc;
    pthread_join(t, &rc);
    cr_assert_eq((intptr_t)rc, 0);
    drop_chan(p.ping);
    drop_chan(p.pong);
    drop_runtime(rt);
}

static int timed_waits(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    moirai_chan_t *ch = arg;
    uint64_t v = 1;
    if (moirai_chan_recv_timed(ch, moirai_deadline_after(2 * MOIRAI_NS_PER_MS), &v) != -ETIMEDOUT)
        return -EFAULT;
    if (moirai_chan_send_timed(ch, moirai_deadline_after(2 * MOIRAI_NS_PER_MS), &v) != -ETIMEDOUT)
        return -EFAULT; /* rendezvous: nobody receives */
    return 0;
}

Test(chan_fiber, deadlines_from_a_fiber)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_chan_t *ch = make_chan(8, 0, false);
    cr_assert_eq(run_fiber(rt, timed_waits, ch, NULL), 0);
    moirai_chan_stats_t st;
    cr_assert_eq(moirai_chan_stats(ch, &st), 0);
    cr_assert_eq(st.blocked_recvs, 1);
    cr_assert_eq(st.blocked_sends, 1);
    cr_assert_eq(st.sent + st.received, 0);
    /* A timed-out waiter left the queue: a try_send finds no receiver. */
    uint64_t v = 1;
    cr_assert_eq(moirai_chan_try_send(ch, &v), -EAGAIN);
    drop_chan(ch);
    drop_runtime(rt);
}

struct blocked_fiber {
    moirai_chan_t *ch;
    moirai_chan_dir_t dir;
    uint64_t value;
};

static int block_forever(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    struct blocked_fiber *b = arg;
    int rc = b->dir == MOIRAI_CHAN_SEND ? moirai_chan_send(b->ch, &b->value)
                                        : moirai_chan_recv(b->ch, &b->value);
    /* Cancellation is sticky: the next wait fails at once. */
    int again = b->dir == MOIRAI_CHAN_SEND ? moirai_chan_send(b->ch, &b->value)
                                           : moirai_chan_recv(b->ch, &b->value);
    if (again != -ECANCELED)
        return -EFAULT;
    return rc;
}

static bool blocked_once(void *arg)
{
    struct blocked_fiber *b = arg;
    return (b->dir == MOIRAI_CHAN_SEND ? blocked_sends(b->ch) : blocked_recvs(b->ch)) == 1;
}

Test(chan_fiber, cancel_wakes_a_blocked_fiber_with_ecanceled)
{
    moirai_runtime_t *rt = make_runtime(1);
    size_t caps[] = {0, 1};
    for (size_t k = 0; k < 2; k++) {
        for (int d = 0; d < 2; d++) {
            moirai_chan_t *ch = make_chan(8, caps[k], false);
            struct blocked_fiber b = {ch, d == 0 ? MOIRAI_CHAN_SEND : MOIRAI_CHAN_RECV, 5};
            uint64_t v = 1;
            if (b.dir == MOIRAI_CHAN_SEND && caps[k] == 1)
                cr_assert_eq(moirai_chan_try_send(ch, &v), 0); /* full */
            moirai_handle_t *h = spawn_with_handle(rt, block_forever, &b, NULL);
            wait_until(blocked_once, &b, "the fiber blocks");
            cr_assert_eq(moirai_handle_cancel(h), -EBUSY, "running (parked) tasks are cancelled");
            cr_assert_eq(join_and_release(h, NULL), -ECANCELED);
            /* Nothing was taken or accepted, and the queue is clean. */
            moirai_chan_stats_t st;
            cr_assert_eq(moirai_chan_stats(ch, &st), 0);
            cr_assert_eq(st.received, 0);
            cr_assert_eq(st.sent, b.dir == MOIRAI_CHAN_SEND && caps[k] == 1 ? 1 : 0);
            if (b.dir == MOIRAI_CHAN_RECV) {
                cr_assert_eq(b.value, 5, "the destination was not written");
                cr_assert_eq(moirai_chan_try_send(ch, &v), caps[k] == 0 ? -EAGAIN : 0);
            } else {
                cr_assert_eq(moirai_chan_try_recv(ch, &v), caps[k] == 0 ? -EAGAIN : 0);
            }
            cr_assert_eq(moirai_chan_destroy(ch), 0, "no waiter left behind");
        }
    }
    drop_runtime(rt);
}
