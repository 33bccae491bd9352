/* moirai-bench, suite "transport": the Moirai side of the channel cases
 * (moirai/transport/chan.h); see bench_transport.c for the cases and
 * their peers.
 *
 * chan_bounded_1p1c: a bounded channel of 1024 8-byte elements between
 *   the bench thread (producer) and one consumer thread, which waits at a
 *   barrier before the clock starts and checks the order of what it gets.
 * chan_pingpong: two rendezvous channels (capacity 0) between the bench
 *   thread and an echo thread.
 * chan_fibers_4p4c: a runtime of 2 workers (created before the clock,
 *   destroyed after), 4 producer and 4 consumer fibers over one bounded
 *   channel of 1024 8-byte elements; the fibers are spawned first and wait
 *   at a start gate (a manual-reset moirai_event_t) that opens as the clock
 *   starts; the last producer closes the channel, the consumers receive
 *   until -EPIPE; the bench thread waits on a moirai_waitgroup_t. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <moirai/async/fiber.h>
#include <moirai/async/runtime.h>
#include <moirai/core/error.h>
#include <moirai/sync/event.h>
#include <moirai/sync/waitgroup.h>
#include <moirai/transport/chan.h>

#include "../bench.h"
#include "transport_moirai.h"

#define CAPACITY 1024
#define WORKERS  2
#define FIBERS   4 /* producers, and consumers */

static double per_op(uint64_t t0, uint64_t t1, uint64_t ops)
{
    return (double)(t1 - t0) / (double)(ops ? ops : 1);
}

static moirai_chan_t *chan_make(size_t capacity)
{
    moirai_chan_config_t cfg;
    moirai_chan_config_init(&cfg);
    cfg.elem_size = sizeof(uint64_t);
    cfg.capacity = capacity;
    moirai_chan_t *ch = NULL;
    int err = moirai_chan_create(&ch, &cfg);
    if (err != 0) {
        fprintf(stderr, "transport: moirai_chan_create: %s\n", moirai_strerror(err));
        return NULL;
    }
    return ch;
}

/* ---- chan_bounded_1p1c ---- */

typedef struct bounded_arg {
    moirai_chan_t *ch;
    pthread_barrier_t start;
    uint64_t n;
    bool ok;
} bounded_arg_t;

static void *bounded_consumer(void *arg)
{
    bounded_arg_t *a = arg;
    pthread_barrier_wait(&a->start);
    a->ok = true;
    for (uint64_t i = 0; i < a->n; i++) {
        uint64_t v;
        if (moirai_chan_recv(a->ch, &v) != 0 || v != i) {
            a->ok = false;
            break;
        }
    }
    return NULL;
}

double moirai_bench_chan_bounded(uint64_t n)
{
    bounded_arg_t a = {.ch = chan_make(CAPACITY), .n = n, .ok = false};
    if (!a.ch)
        return -1.0;
    pthread_barrier_init(&a.start, NULL, 2);
    pthread_t consumer;
    if (pthread_create(&consumer, NULL, bounded_consumer, &a) != 0) {
        pthread_barrier_destroy(&a.start);
        moirai_chan_destroy(a.ch);
        return -1.0;
    }
    pthread_barrier_wait(&a.start);
    uint64_t t0 = bench_now_ns();
    bool sent = true;
    for (uint64_t i = 0; i < n; i++) {
        if (moirai_chan_send(a.ch, &i) != 0) {
            sent = false;
            break;
        }
    }
    if (!sent)
        moirai_chan_close(a.ch); /* the consumer must not wait forever */
    pthread_join(consumer, NULL);
    uint64_t t1 = bench_now_ns();
    pthread_barrier_destroy(&a.start);
    moirai_chan_destroy(a.ch);
    return sent && a.ok ? per_op(t0, t1, n) : -1.0;
}

/* ---- chan_pingpong ---- */

typedef struct pingpong_arg {
    moirai_chan_t *ping, *pong;
    pthread_barrier_t start;
    uint64_t n;
    bool ok;
} pingpong_arg_t;

static void *pingpong_echo(void *arg)
{
    pingpong_arg_t *a = arg;
    pthread_barrier_wait(&a->start);
    a->ok = true;
    for (uint64_t i = 0; i < a->n; i++) {
        uint64_t v;
        if (moirai_chan_recv(a->ping, &v) != 0 || v != i) {
            a->ok = false;
            break;
        }
        v++;
        if (moirai_chan_send(a->pong, &v) != 0) {
            a->ok = false;
            break;
        }
    }
    return NULL;
}

double moirai_bench_chan_pingpong(uint64_t n)
{
    pingpong_arg_t a = {.ping = chan_make(0), .pong = chan_make(0), .n = n, .ok = false};
    if (!a.ping || !a.pong) {
        moirai_chan_destroy(a.ping);
        moirai_chan_destroy(a.pong);
        return -1.0;
    }
    pthread_barrier_init(&a.start, NULL, 2);
    pthread_t echo;
    if (pthread_create(&echo, NULL, pingpong_echo, &a) != 0) {
        pthread_barrier_destroy(&a.start);
        moirai_chan_destroy(a.ping);
        moirai_chan_destroy(a.pong);
        return -1.0;
    }
    pthread_barrier_wait(&a.start);
    uint64_t t0 = bench_now_ns();
    bool ok = true;
    for (uint64_t i = 0; i < n && ok; i++) {
        uint64_t v = i;
        ok = moirai_chan_send(a.ping, &v) == 0 && moirai_chan_recv(a.pong, &v) == 0 && v == i + 1;
    }
    uint64_t t1 = bench_now_ns();
    if (!ok) {
        /* Unblock the echo thread wherever it waits. */
        moirai_chan_close(a.ping);
        moirai_chan_close(a.pong);
    }
    pthread_join(echo, NULL);
    pthread_barrier_destroy(&a.start);
    moirai_chan_destroy(a.ping);
    moirai_chan_destroy(a.pong);
    return ok && a.ok ? per_op(t0, t1, n) : -1.0;
}

/* ---- chan_fibers_4p4c ---- */

typedef struct fibers_arg {
    moirai_chan_t *ch;
    moirai_event_t start;
    _Atomic uint32_t arrived;   /* fibers at the gate (polled by the bench) */
    _Atomic uint32_t producing; /* producers not finished yet */
    _Atomic uint64_t count, sum;
    _Atomic int error;
    uint64_t per;
    moirai_waitgroup_t wg;
} fibers_arg_t;

/* A producer's start: the shared state and its index. */
typedef struct producer_start {
    fibers_arg_t *a;
    uint64_t p;
} producer_start_t;

static int producer_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    producer_start_t *ps = arg;
    fibers_arg_t *a = ps->a;
    /* Relaxed: a count the bench thread polls; the gate orders the rest. */
    atomic_fetch_add_explicit(&a->arrived, 1, memory_order_relaxed);
    moirai_event_wait(&a->start);
    for (uint64_t i = 0; i < a->per; i++) {
        uint64_t v = ps->p + i * FIBERS;
        int err = moirai_chan_send(a->ch, &v);
        if (err != 0) {
            atomic_store_explicit(&a->error, err, memory_order_relaxed);
            break;
        }
    }
    /* acq_rel: the last producer closes after every other producer's
     * sends (close happens before the -EPIPE each consumer sees). */
    if (atomic_fetch_sub_explicit(&a->producing, 1, memory_order_acq_rel) == 1)
        moirai_chan_close(a->ch);
    moirai_waitgroup_done(&a->wg);
    return 0;
}

static int consumer_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    fibers_arg_t *a = arg;
    atomic_fetch_add_explicit(&a->arrived, 1, memory_order_relaxed);
    moirai_event_wait(&a->start);
    uint64_t k = 0, s = 0, v;
    int err;
    while ((err = moirai_chan_recv(a->ch, &v)) == 0) {
        k++;
        s += v;
    }
    if (err != -EPIPE)
        atomic_store_explicit(&a->error, err, memory_order_relaxed);
    /* Relaxed: the wait group's wait orders these before the bench reads. */
    atomic_fetch_add_explicit(&a->count, k, memory_order_relaxed);
    atomic_fetch_add_explicit(&a->sum, s, memory_order_relaxed);
    moirai_waitgroup_done(&a->wg);
    return 0;
}

double moirai_bench_chan_fibers(uint64_t n)
{
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = WORKERS;
    moirai_runtime_config_t rc;
    moirai_runtime_config_init(&rc);
    rc.sched_config = &sc;
    moirai_runtime_t *rt;
    int err = moirai_runtime_create(&rt, &rc);
    if (err != 0) {
        fprintf(stderr, "transport: moirai_runtime_create: %s\n", moirai_strerror(err));
        return -1.0;
    }
    fibers_arg_t *a = calloc(1, sizeof(*a));
    producer_start_t starts[FIBERS];
    double t = -1.0;
    if (!a || !(a->ch = chan_make(CAPACITY)))
        goto out;
    a->per = n / FIBERS ? n / FIBERS : 1;
    uint64_t total = a->per * FIBERS;
    moirai_event_init(&a->start, MOIRAI_EVENT_MANUAL, false);
    moirai_waitgroup_init(&a->wg);
    atomic_init(&a->producing, FIBERS);
    moirai_waitgroup_add(&a->wg, 2 * FIBERS);
    uint32_t spawned = 0;
    for (int i = 0; i < FIBERS && err == 0; i++) {
        err = moirai_fiber_spawn(rt, consumer_fiber, a, NULL, NULL);
        spawned += err == 0;
    }
    for (int i = 0; i < FIBERS && err == 0; i++) {
        starts[i] = (producer_start_t){a, (uint64_t)i};
        err = moirai_fiber_spawn(rt, producer_fiber, &starts[i], NULL, NULL);
        spawned += err == 0;
    }
    if (err != 0) {
        /* Let the spawned ones finish: close the channel, open the gate. */
        fprintf(stderr, "transport: moirai_fiber_spawn: %s\n", moirai_strerror(err));
        moirai_waitgroup_add(&a->wg, -(int32_t)(2 * FIBERS - spawned));
        moirai_chan_close(a->ch);
        moirai_event_set(&a->start);
        moirai_waitgroup_wait(&a->wg);
    } else {
        while (atomic_load_explicit(&a->arrived, memory_order_relaxed) < 2 * FIBERS) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
        uint64_t t0 = bench_now_ns();
        moirai_event_set(&a->start);
        moirai_waitgroup_wait(&a->wg);
        uint64_t t1 = bench_now_ns();
        uint64_t count = atomic_load_explicit(&a->count, memory_order_relaxed);
        uint64_t sum = atomic_load_explicit(&a->sum, memory_order_relaxed);
        int ferr = atomic_load_explicit(&a->error, memory_order_relaxed);
        if (ferr != 0)
            fprintf(stderr, "transport: chan_fibers_4p4c: %s\n", moirai_strerror(ferr));
        else if (count != total || sum != total * (total - 1) / 2)
            fprintf(stderr, "transport: chan_fibers_4p4c: %llu messages received of %llu\n",
                    (unsigned long long)count, (unsigned long long)total);
        else
            t = per_op(t0, t1, total);
    }
    moirai_event_destroy(&a->start);
    moirai_chan_destroy(a->ch);
out:
    free(a);
    err = moirai_runtime_destroy(rt);
    return err == 0 ? t : -1.0;
}
