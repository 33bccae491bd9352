/* Helpers shared by the channel tests: channel construction and a thread
 * runner. Header-only; asserting helpers run on the test thread. */
#ifndef MOIRAI_TEST_CHAN_UTIL_H
#define MOIRAI_TEST_CHAN_UTIL_H

#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>

#include <moirai/core.h>
#include <moirai/transport.h>

/* Waits in tests are bounded so that a lost wake-up fails instead of hanging. */
#define CHAN_WAIT_NS (30 * MOIRAI_NS_PER_S)

static inline moirai_chan_t *make_chan(size_t elem, size_t cap, bool oneshot)
{
    moirai_chan_config_t cfg;
    moirai_chan_config_init(&cfg);
    cfg.elem_size = elem;
    cfg.capacity = cap;
    cfg.oneshot = oneshot;
    moirai_chan_t *ch = NULL;
    cr_assert_eq(moirai_chan_create(&ch, &cfg), 0);
    cr_assert_not_null(ch);
    return ch;
}

static inline void drop_chan(moirai_chan_t *ch)
{
    cr_assert_eq(moirai_chan_destroy(ch), 0);
}

static inline pthread_t start_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, fn, arg), 0);
    return t;
}

/* Waits (polling, bounded) until `pred(arg)` holds; asserts it did. */
static inline void wait_until(bool (*pred)(void *), void *arg, const char *what)
{
    uint64_t until = moirai_deadline_after(CHAN_WAIT_NS);
    while (!pred(arg) && moirai_clock_now_ns() < until) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    cr_assert(pred(arg), "timed out waiting until %s", what);
}

/* The number of blocked senders and receivers, via the statistics. */
static inline uint64_t blocked_recvs(moirai_chan_t *ch)
{
    moirai_chan_stats_t st;
    cr_assert_eq(moirai_chan_stats(ch, &st), 0);
    return st.blocked_recvs;
}

static inline uint64_t blocked_sends(moirai_chan_t *ch)
{
    moirai_chan_stats_t st;
    cr_assert_eq(moirai_chan_stats(ch, &st), 0);
    return st.blocked_sends;
}

#endif
