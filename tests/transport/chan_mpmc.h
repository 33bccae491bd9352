/* The many-producer many-consumer check shared by test_chan_mpmc.c (short
 * runs) and test_chan_stress.c (10^6 messages): producers and consumers,
 * half threads and half fibers, over one channel; every message is
 * received exactly once, each consumer sees each producer's messages in
 * the order they were sent, and the last producer leaving closes the
 * channel so that consumers end on -EPIPE after draining. */
#ifndef MOIRAI_TEST_CHAN_MPMC_H
#define MOIRAI_TEST_CHAN_MPMC_H

#include "chan_test_util.h"

#include <stdatomic.h>
#include <stdlib.h>

#include <moirai/async.h>

#define MPMC_MAX 8

struct mpmc;

struct mpmc_role {
    struct mpmc *m;
    int id;
    int rc;
    uint64_t count; /* messages sent or received */
};

struct mpmc {
    moirai_chan_t *ch;
    int producers, consumers;
    uint64_t per_producer;
    _Atomic uint8_t *seen; /* producers * per_producer receive counts */
    struct mpmc_role prod[MPMC_MAX], cons[MPMC_MAX];
};

static int mpmc_produce(struct mpmc_role *r)
{
    struct mpmc *m = r->m;
    for (uint64_t s = 0; s < m->per_producer; s++) {
        uint64_t v = ((uint64_t)r->id << 32) | s;
        int rc = moirai_chan_send(m->ch, &v);
        if (rc != 0)
            return rc;
        r->count++;
    }
    return moirai_chan_sender_drop(m->ch);
}

static int mpmc_consume(struct mpmc_role *r)
{
    struct mpmc *m = r->m;
    uint64_t next[MPMC_MAX] = {0}; /* the least sequence still possible per producer */
    for (;;) {
        uint64_t v;
        int rc = moirai_chan_recv(m->ch, &v);
        if (rc == -EPIPE)
            return 0;
        if (rc != 0)
            return rc;
        uint64_t p = v >> 32, s = v & 0xffffffffu;
        if (p >= (uint64_t)m->producers || s >= m->per_producer)
            return -ERANGE; /* garbage */
        if (s < next[p])
            return -EILSEQ; /* this producer's order was broken */
        next[p] = s + 1;
        atomic_fetch_add_explicit(&m->seen[p * m->per_producer + s], 1, memory_order_relaxed);
        r->count++;
    }
}

static void *mpmc_thread_produce(void *arg)
{
    struct mpmc_role *r = arg;
    r->rc = mpmc_produce(r);
    return NULL;
}

static void *mpmc_thread_consume(void *arg)
{
    struct mpmc_role *r = arg;
    r->rc = mpmc_consume(r);
    return NULL;
}

static int mpmc_fiber_produce(void *arg, const moirai_cancel_token_t *c, void **res)
{
    (void)c;
    (void)res;
    return mpmc_produce(arg);
}

static int mpmc_fiber_consume(void *arg, const moirai_cancel_token_t *c, void **res)
{
    (void)c;
    (void)res;
    return mpmc_consume(arg);
}

/* Runs `producers` x `consumers` over a channel of capacity `cap` with
 * `total` messages; roles with an odd index are fibers of `rt`, the
 * others threads (all threads when rt is NULL). */
static void mpmc_run(moirai_runtime_t *rt, size_t cap, int producers, int consumers, uint64_t total)
{
    cr_assert(producers <= MPMC_MAX && consumers <= MPMC_MAX);
    struct mpmc *m = calloc(1, sizeof *m);
    cr_assert_not_null(m);
    moirai_chan_config_t cfg;
    moirai_chan_config_init(&cfg);
    cfg.elem_size = 8;
    cfg.capacity = cap;
    cfg.close_on_last_sender = true;
    cr_assert_eq(moirai_chan_create(&m->ch, &cfg), 0);
    m->producers = producers;
    m->consumers = consumers;
    m->per_producer = total / (uint64_t)producers;
    if (m->per_producer == 0)
        m->per_producer = 1;
    m->seen = calloc((size_t)producers * m->per_producer, 1);
    cr_assert_not_null(m->seen);
    for (int i = 0; i < producers; i++)
        cr_assert_eq(moirai_chan_sender_add(m->ch), 0);

    pthread_t threads[2 * MPMC_MAX];
    moirai_handle_t *handles[2 * MPMC_MAX];
    int nt = 0, nh = 0;
    for (int i = 0; i < consumers + producers; i++) {
        bool prod = i >= consumers;
        struct mpmc_role *r = prod ? &m->prod[i - consumers] : &m->cons[i];
        r->m = m;
        r->id = prod ? i - consumers : i;
        if (rt != NULL && r->id % 2 == 1) {
            handles[nh] = NULL;
            cr_assert_eq(moirai_handle_create(&handles[nh]), 0);
            cr_assert_eq(moirai_fiber_spawn(rt, prod ? mpmc_fiber_produce : mpmc_fiber_consume, r,
                                            NULL, handles[nh]),
                         0);
            nh++;
        } else {
            threads[nt++] = start_thread(prod ? mpmc_thread_produce : mpmc_thread_consume, r);
        }
    }
    for (int i = 0; i < nt; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < nh; i++) {
        /* Fibers report through their role; the handle only ends them. */
        int rc = moirai_handle_join_timed(handles[i], moirai_deadline_after(120 * MOIRAI_NS_PER_S),
                                          NULL);
        cr_assert_eq(rc, 0, "a fiber ended with %d", rc);
        moirai_handle_release(handles[i]);
    }
    uint64_t sent = 0, received = 0;
    for (int i = 0; i < producers; i++) {
        cr_assert_eq(m->prod[i].rc, 0, "producer %d: %d", i, m->prod[i].rc);
        sent += m->prod[i].count;
    }
    for (int i = 0; i < consumers; i++) {
        cr_assert_eq(m->cons[i].rc, 0, "consumer %d: %d (-EILSEQ: order, -ERANGE: garbage)", i,
                     m->cons[i].rc);
        received += m->cons[i].count;
    }
    uint64_t n = (uint64_t)producers * m->per_producer;
    cr_assert_eq(sent, n);
    cr_assert_eq(received, n, "received %lu of %lu", received, n);
    for (uint64_t k = 0; k < n; k++)
        cr_assert_eq(atomic_load_explicit(&m->seen[k], memory_order_relaxed), 1,
                     "message %lu of producer %lu received %u times", k % m->per_producer,
                     k / m->per_producer, atomic_load(&m->seen[k]));
    moirai_chan_stats_t st;
    cr_assert_eq(moirai_chan_stats(m->ch, &st), 0);
    cr_assert_eq(st.sent, n);
    cr_assert_eq(st.received, n);
    cr_assert_eq(st.bytes_sent, 8 * n);
    cr_assert_eq(st.len, 0);
    cr_assert(moirai_chan_is_closed(m->ch));
    cr_assert_eq(moirai_chan_destroy(m->ch), 0);
    free((void *)m->seen);
    free(m);
}

#endif
