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
