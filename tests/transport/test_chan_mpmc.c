/* Many producers, many consumers, threads and fibers mixed, every kind of
 * channel: short runs of the check in chan_mpmc.h (the long ones are in
 * test_chan_stress.c). */
#include "chan_mpmc.h"

#include "../async/async_test_util.h"
#include "test_scale.h"

static moirai_runtime_t *rt;

static void setup(void)
{
    rt = make_runtime(2);
}

static void teardown(void)
{
    drop_runtime(rt);
}

TestSuite(chan_mpmc, .init = setup, .fini = teardown, .timeout = 120);

#define SHORT_RUN scaled(40000)

Test(chan_mpmc, bounded_64_4x4)
{
    mpmc_run(rt, 64, 4, 4, SHORT_RUN);
}

Test(chan_mpmc, bounded_1_4x4)
{
    mpmc_run(rt, 1, 4, 4, SHORT_RUN / 4);
}

Test(chan_mpmc, unbounded_4x4)
{
    mpmc_run(rt, MOIRAI_CHAN_UNBOUNDED, 4, 4, SHORT_RUN);
}

Test(chan_mpmc, rendezvous_4x4)
{
    mpmc_run(rt, 0, 4, 4, SHORT_RUN / 4);
}

Test(chan_mpmc, one_producer_one_consumer_keeps_total_order)
{
    /* With one consumer the per-producer order check sees everything. */
    mpmc_run(rt, 16, 1, 1, SHORT_RUN);
    mpmc_run(rt, 0, 1, 1, SHORT_RUN / 4);
}

Test(chan_mpmc, threads_only_without_fibers)
{
    mpmc_run(NULL, 8, 4, 4, SHORT_RUN / 2);
}

/* A one-shot raced by many senders: exactly one wins. */
struct race {
    moirai_chan_t *ch;
    uint64_t id;
    int rc;
};

static void *race_send(void *arg)
{
    struct race *r = arg;
    r->rc = moirai_chan_send(r->ch, &r->id);
    return NULL;
}

Test(chan_mpmc, oneshot_raced_by_eight_senders_delivers_one)
{
    for (int round = 0; round < 20; round++) {
        moirai_chan_t *ch = make_chan(8, 1, true);
        struct race r[8];
        pthread_t t[8];
        for (int i = 0; i < 8; i++) {
            r[i] = (struct race){.ch = ch, .id = (uint64_t)i};
            t[i] = start_thread(race_send, &r[i]);
        }
        int winners = 0;
        uint64_t winner = 99;
        for (int i = 0; i < 8; i++) {
            pthread_join(t[i], NULL);
            if (r[i].rc == 0) {
                winners++;
                winner = r[i].id;
            } else {
                cr_assert_eq(r[i].rc, -EPIPE);
            }
        }
        cr_assert_eq(winners, 1);
        uint64_t v;
        cr_assert_eq(moirai_chan_recv(ch, &v), 0);
        cr_assert_eq(v, winner);
        cr_assert_eq(moirai_chan_recv(ch, &v), -EPIPE);
        drop_chan(ch);
    }
}

/* Close in the middle of traffic: every element whose send returned 0 is
 * received exactly once, none whose send returned -EPIPE is received, and
 * every blocked sender and receiver ends. Producers and consumers are
 * threads and fibers. */
#define CLOSE_MAX 200000

struct close_run {
    moirai_chan_t *ch;
    _Atomic uint8_t seen[4][CLOSE_MAX];
    uint64_t accepted[4];
    int rc[8];
};

struct close_role {
    struct close_run *c;
    int id;
};

static int close_produce(struct close_role *r)
{
    uint64_t s = 0;
    for (; s < CLOSE_MAX; s++) {
        uint64_t v = ((uint64_t)r->id << 32) | s;
        int rc = moirai_chan_send(r->c->ch, &v);
        if (rc == -EPIPE)
            break;
        if (rc != 0)
            return rc;
    }
    r->c->accepted[r->id] = s;
    return 0;
}

static int close_consume(struct close_role *r)
{
    for (;;) {
        uint64_t v;
        int rc = moirai_chan_recv(r->c->ch, &v);
        if (rc == -EPIPE)
            return 0;
        if (rc != 0)
            return rc;
        uint64_t p = v >> 32, s = v & 0xffffffffu;
        if (p >= 4 || s >= CLOSE_MAX)
            return -ERANGE;
        atomic_fetch_add_explicit(&r->c->seen[p][s], 1, memory_order_relaxed);
    }
}

static int close_fiber(void *arg, const moirai_cancel_token_t *c, void **res)
{
    (void)c;
    (void)res;
    struct close_role *r = arg;
    return r->id >= 4 ? close_consume(&(struct close_role){r->c, r->id - 4}) : close_produce(r);
}

static void *close_thread(void *arg)
{
    struct close_role *r = arg;
    int rc = close_fiber(arg, NULL, NULL);
    r->c->rc[r->id] = rc;
    return NULL;
}

static void close_during_traffic(size_t cap)
{
    struct close_run *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    c->ch = make_chan(8, cap, false);
    struct close_role roles[8];
    pthread_t threads[8];
    moirai_handle_t *handles[8];
    for (int i = 0; i < 8; i++) {
        roles[i] = (struct close_role){c, i};
        if (i % 2 == 1)
            handles[i] = spawn_with_handle(rt, close_fiber, &roles[i], NULL);
        else
            threads[i] = start_thread(close_thread, &roles[i]);
    }
    /* Let traffic flow, then close. */
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
    cr_assert_eq(moirai_chan_close(c->ch), 0);
    for (int i = 0; i < 8; i++) {
        if (i % 2 == 1)
            cr_assert_eq(join_and_release(handles[i], NULL), 0, "role %d", i);
        else {
            pthread_join(threads[i], NULL);
            cr_assert_eq(c->rc[i], 0, "role %d: %d", i, c->rc[i]);
        }
    }
    uint64_t total = 0;
    for (int p = 0; p < 4; p++) {
        for (uint64_t s = 0; s < CLOSE_MAX; s++) {
            unsigned want = s < c->accepted[p] ? 1 : 0;
            cr_assert_eq(atomic_load(&c->seen[p][s]), want,
                         "producer %d element %lu: received %u times, accepted %lu", p, s,
                         atomic_load(&c->seen[p][s]), c->accepted[p]);
        }
        total += c->accepted[p];
    }
    moirai_chan_stats_t st;
    cr_assert_eq(moirai_chan_stats(c->ch, &st), 0);
    cr_assert_eq(st.sent, total);
    cr_assert_eq(st.received, total);
    drop_chan(c->ch);
    free(c);
}

Test(chan_mpmc, close_during_traffic_loses_and_duplicates_nothing)
{
    size_t caps[] = {0, 1, 64, MOIRAI_CHAN_UNBOUNDED};
    for (size_t k = 0; k < 4; k++)
        close_during_traffic(caps[k]);
}
