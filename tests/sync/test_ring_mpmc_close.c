/* moirai_ring_mpmc_close() racing producers that are mid-push.
 *
 * Several producers push numbered items through every push path (blocking,
 * try, timed) until a push fails with -EPIPE; several consumers pop
 * through every pop path until -EPIPE; the test thread closes the ring at
 * a random point: after a random number of accepted pushes, at once, or
 * while the ring is full and every producer is waiting for room. The
 * promise checked exactly (moirai/sync/ring_mpmc.h, "Closing"):
 *   - every item whose push returned 0 is received exactly once;
 *   - no item whose push failed is received, and once a producer's push
 *     has failed with -EPIPE every later push fails too;
 *   - each consumer sees each producer's items in push order;
 *   - consumers stop only with -EPIPE, which stays final, and only when
 *     the ring is drained.
 * The container harness closes only after every producer is done, so it
 * never has a close land between a producer's claim of a cell and its
 * write of the item.
 *
 * The random seed is printed with any failure; MOIRAI_TEST_SEED replays
 * one. Worker threads only count violations; the test thread asserts. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <moirai/core/clock.h>
#include <moirai/sync/ring_mpmc.h>

#include "test_scale.h"

enum {
    PRODUCERS = 4,
    CONSUMERS = 3,
    CAPACITY = 8,           /* small: producers often wait for room */
    MAX_SEQ = 1 << 16,      /* items per producer at most */
    MAX_CLOSE_AFTER = 4000, /* accepted pushes before the close, at most */
};

typedef struct close_ctx {
    moirai_ring_mpmc_t *ring;
    _Atomic long accepted_total;
    _Atomic long violations;    /* wrong return codes, items out of range */
    _Atomic long late_accepts;  /* pushes that succeeded after one failed with -EPIPE */
    _Atomic long order_errors;  /* a consumer saw a producer's items out of order */
    _Atomic long unfinal_epipe; /* -EPIPE from a pop, then something else */
    _Atomic long received_total;
    long accepted[PRODUCERS]; /* per producer: pushes that returned 0 */
    int refused[PRODUCERS];   /* per producer: a push returned -EPIPE */
    _Atomic unsigned char received[PRODUCERS][MAX_SEQ];
} close_ctx_t;

static void *item_of(int p, long seq)
{
    return (void *)(uintptr_t)(((uint64_t)(p + 1) << 32) | (uint64_t)seq);
}

/* Short deadlines, so timed waits often expire and retry, and race with
 * the close's wake-ups. */
static uint64_t soon(void)
{
    return moirai_deadline_after(50 * MOIRAI_NS_PER_US);
}

/* One push by path `how`: 0 blocking, 1 try (retried while full), 2 timed
 * (retried when it times out). Returns 0 or -EPIPE, or another code that
 * is a violation. */
static int push_by(moirai_ring_mpmc_t *r, int how, void *item)
{
    int rc;
    switch (how % 3) {
    case 0:
        return moirai_ring_mpmc_push(r, item);
    case 1:
        while ((rc = moirai_ring_mpmc_try_push(r, item)) == -EAGAIN)
            sched_yield();
        return rc;
    default:
        while ((rc = moirai_ring_mpmc_push_timed(r, item, soon())) == -ETIMEDOUT)
            ;
        return rc;
    }
}

static int pop_by(moirai_ring_mpmc_t *r, int how, void **out)
{
    int rc;
    switch (how % 3) {
    case 0:
        return moirai_ring_mpmc_pop(r, out);
    case 1:
        while ((rc = moirai_ring_mpmc_try_pop(r, out)) == -EAGAIN)
            sched_yield();
        return rc;
    default:
        while ((rc = moirai_ring_mpmc_pop_timed(r, out, soon())) == -ETIMEDOUT)
            ;
        return rc;
    }
}

typedef struct worker {
    close_ctx_t *c;
    int index;
    int how;
} worker_t;

static void *producer(void *arg)
{
    worker_t *w = arg;
    close_ctx_t *c = w->c;
    long seq = 0;
    for (; seq < MAX_SEQ; seq++) {
        int rc = push_by(c->ring, w->how, item_of(w->index, seq));
        if (rc == -EPIPE)
            break;
        if (rc != 0) {
            atomic_fetch_add(&c->violations, 1);
            return NULL;
        }
        c->accepted[w->index] = seq + 1;
        atomic_fetch_add(&c->accepted_total, 1);
    }
    if (seq < MAX_SEQ) {
        c->refused[w->index] = 1;
        /* Closed: every path keeps refusing. The refused items carry
         * numbers no accepted item has, so a delivery shows up. */
        if (!moirai_ring_mpmc_is_closed(c->ring))
            atomic_fetch_add(&c->violations, 1);
        for (int how = 0; how < 3; how++)
            if (push_by(c->ring, how, item_of(w->index, seq)) != -EPIPE)
                atomic_fetch_add(&c->late_accepts, 1);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    worker_t *w = arg;
    close_ctx_t *c = w->c;
    long last[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++)
        last[p] = -1;
    void *out;
    int rc;
    while ((rc = pop_by(c->ring, w->how, &out)) == 0) {
        uint64_t v = (uint64_t)(uintptr_t)out;
        uint64_t p = (v >> 32) - 1, seq = v & UINT32_MAX;
        if (p >= PRODUCERS || seq >= MAX_SEQ) {
            atomic_fetch_add(&c->violations, 1);
            continue;
        }
        if ((long)seq <= last[p])
            atomic_fetch_add(&c->order_errors, 1);
        last[p] = (long)seq;
        atomic_fetch_add(&c->received[p][seq], 1);
        atomic_fetch_add(&c->received_total, 1);
    }
    if (rc != -EPIPE)
        atomic_fetch_add(&c->violations, 1);
    /* -EPIPE is final, on every path. */
    for (int how = 0; how < 3; how++)
        if (pop_by(c->ring, how, &out) != -EPIPE)
            atomic_fetch_add(&c->unfinal_epipe, 1);
    return NULL;
}

/* How a round closes the ring. */
enum close_kind {
    CLOSE_AFTER_RANDOM, /* after a random number of accepted pushes */
    CLOSE_AT_ONCE,      /* before or during the first pushes */
    CLOSE_WHEN_FULL,    /* consumers start after the close; producers wait for room */
};

/* Runs one round and checks it; returns how many producers were refused. */
static long run_round(close_ctx_t *c, enum close_kind kind, long close_after, int shift,
                      unsigned seed, int round)
{
    memset(c, 0, sizeof(*c));
    cr_assert_eq(moirai_ring_mpmc_create(&c->ring, CAPACITY), 0);
    worker_t pw[PRODUCERS], cw[CONSUMERS];
    pthread_t pt[PRODUCERS], ct[CONSUMERS];
    for (int i = 0; i < PRODUCERS; i++) {
        pw[i] = (worker_t){c, i, i + shift};
        cr_assert_eq(pthread_create(&pt[i], NULL, producer, &pw[i]), 0);
    }
    for (int i = 0; i < CONSUMERS; i++)
        cw[i] = (worker_t){c, i, i + shift};
    if (kind != CLOSE_WHEN_FULL)
        for (int i = 0; i < CONSUMERS; i++)
            cr_assert_eq(pthread_create(&ct[i], NULL, consumer, &cw[i]), 0);

    if (kind == CLOSE_AFTER_RANDOM) {
        while (atomic_load(&c->accepted_total) < close_after)
            sched_yield();
    } else if (kind == CLOSE_WHEN_FULL) {
        while (atomic_load(&c->accepted_total) < CAPACITY)
            sched_yield();
        /* Let the producers reach their waits (any state is correct;
         * this only makes "waiting for room" the common one). */
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    moirai_ring_mpmc_close(c->ring);
    if (kind == CLOSE_WHEN_FULL)
        for (int i = 0; i < CONSUMERS; i++)
            cr_assert_eq(pthread_create(&ct[i], NULL, consumer, &cw[i]), 0);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(pt[i], NULL);
    for (int i = 0; i < CONSUMERS; i++)
        pthread_join(ct[i], NULL);

    const char *what = kind == CLOSE_AFTER_RANDOM ? "after pushes"
                       : kind == CLOSE_AT_ONCE    ? "at once"
                                                  : "when full";
    cr_assert_eq(atomic_load(&c->violations), 0, "seed %u round %d (close %s): %ld bad codes", seed,
                 round, what, atomic_load(&c->violations));
    cr_assert_eq(atomic_load(&c->late_accepts), 0,
                 "seed %u round %d: a push succeeded after one failed with -EPIPE", seed, round);
    cr_assert_eq(atomic_load(&c->unfinal_epipe), 0,
                 "seed %u round %d: a pop returned something else after -EPIPE", seed, round);
    cr_assert_eq(atomic_load(&c->order_errors), 0,
                 "seed %u round %d: a consumer saw a producer's items out of order", seed, round);
    long total = 0, refusals = 0;
    for (int p = 0; p < PRODUCERS; p++) {
        /* A producer stops only when refused, or when it has pushed all
         * its items before the close (rare: the test thread was not
         * scheduled in time); in a round that closes a full ring nobody
         * consumed before the close, so every producer was refused. */
        cr_assert(c->refused[p] || c->accepted[p] == MAX_SEQ,
                  "producer %d stopped after %ld items without being refused", p, c->accepted[p]);
        if (kind == CLOSE_WHEN_FULL)
            cr_assert(c->refused[p], "precondition: producer %d was refused", p);
        refusals += c->refused[p];
        total += c->accepted[p];
        /* Items above accepted[p] were never offered; the refused one is
         * accepted[p] itself (none when the producer pushed all MAX_SEQ
         * before the close). */
        for (long s = 0; s <= c->accepted[p] && s < MAX_SEQ; s++) {
            unsigned got = atomic_load(&c->received[p][s]);
            unsigned want = s < c->accepted[p];
            if (got != want)
                cr_assert_fail("seed %u round %d (close %s, after %ld): %s item %d/%ld "
                               "(producer accepted %ld) received %u times",
                               seed, round, what, close_after, want ? "accepted" : "refused", p, s,
                               c->accepted[p], got);
        }
    }
    cr_assert_eq(total, atomic_load(&c->accepted_total));
    cr_assert_eq(atomic_load(&c->received_total), total,
                 "seed %u round %d: %ld items received, %ld accepted", seed, round,
                 atomic_load(&c->received_total), total);
    if (kind == CLOSE_WHEN_FULL)
        cr_assert_eq(total, CAPACITY, "precondition: the ring was full at the close");
    else if (kind == CLOSE_AFTER_RANDOM)
        cr_assert_geq(total, close_after);
    cr_assert_eq(moirai_ring_mpmc_size(c->ring), 0);
    void *out;
    cr_assert_eq(moirai_ring_mpmc_try_pop(c->ring, &out), -EPIPE);
    cr_assert_eq(moirai_ring_mpmc_try_push(c->ring, &out), -EPIPE);
    moirai_ring_mpmc_destroy(c->ring);
    return refusals;
}

Test(ring_mpmc_close, close_races_producers_mid_push, .timeout = 120)
{
    static close_ctx_t c;
    unsigned seed = (unsigned)env_long("MOIRAI_TEST_SEED", (long)(time(NULL) & 0x7fffffff));
    cr_log_info("seed %u", seed);
    unsigned state = seed;
    long rounds = scaled(200);
    if (rounds < 30)
        rounds = 30;
    long refusals = 0;
    for (int round = 0; round < rounds; round++) {
        /* Mostly random points; every fourth round one of the extremes. */
        enum close_kind kind = round % 8 == 3   ? CLOSE_AT_ONCE
                               : round % 8 == 7 ? CLOSE_WHEN_FULL
                                                : CLOSE_AFTER_RANDOM;
        long close_after = rand_r(&state) % (scaled(MAX_CLOSE_AFTER) + 1);
        refusals += run_round(&c, kind, close_after, rand_r(&state) % 3, seed, round);
    }
    cr_log_info("%ld rounds, %ld of %ld producers refused mid-stream", rounds, refusals,
                rounds * PRODUCERS);
}
