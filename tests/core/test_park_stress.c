/* Parking under load: hand-offs that must lose no wake-up.
 *
 * Every wait carries a generous deadline; a lost wake-up therefore shows as
 * a counted timeout (and a failed assertion) instead of a hung test.
 *
 * Parameters (environment, defaults in brackets, divided by
 * MOIRAI_TEST_SCALE where noted):
 *   MOIRAI_STRESS_THREADS   threads in the ring and consumers   [4]
 *   MOIRAI_STRESS_ROUNDS    laps of the ring (scaled)           [5000]
 *   MOIRAI_STRESS_TOKENS    tokens per producer (scaled)        [50000] */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <moirai/core.h>

#include "test_scale.h"

#define WAIT_LIMIT (30 * MOIRAI_NS_PER_S)

/* ---- A ring: thread i waits for its turn, bumps a plain counter, passes
 * the turn to thread i+1. Each thread parks on its own word. ---- */

typedef struct ring {
    int threads;
    long laps;
    _Atomic uint32_t *turn; /* one word per thread: 1 = your turn */
    long counter;           /* plain: only the turn holder touches it */
    _Atomic int timeouts;
} ring_t;

typedef struct ring_member {
    ring_t *ring;
    int index;
} ring_member_t;

static void *ring_main(void *p)
{
    ring_member_t *m = p;
    ring_t *r = m->ring;
    _Atomic uint32_t *mine = &r->turn[m->index];
    _Atomic uint32_t *next = &r->turn[(m->index + 1) % r->threads];
    for (long lap = 0; lap < r->laps; lap++) {
        uint64_t deadline = moirai_deadline_after(WAIT_LIMIT);
        while (atomic_load_explicit(mine, memory_order_acquire) == 0) {
            /* Alternate the two entry points so both are exercised. */
            int rc =
                (lap & 1) ? moirai_park_nospin(mine, 0, deadline) : moirai_park(mine, 0, deadline);
            if (rc == -ETIMEDOUT) {
                atomic_fetch_add(&r->timeouts, 1);
                return NULL;
            }
        }
        atomic_store_explicit(mine, 0, memory_order_relaxed);
        r->counter++;
        atomic_store_explicit(next, 1, memory_order_release);
        moirai_unpark_one(next);
    }
    return NULL;
}

Test(park_stress, ring_handoff_counts_exactly, .timeout = 200)
{
    ring_t r = {.threads = (int)env_long("MOIRAI_STRESS_THREADS", 4),
                .laps = scaled(env_long("MOIRAI_STRESS_ROUNDS", 5000))};
    if (r.threads < 2)
        r.threads = 2;
    r.turn = calloc((size_t)r.threads, sizeof(*r.turn));
    ring_member_t *members = calloc((size_t)r.threads, sizeof(*members));
    pthread_t *threads = calloc((size_t)r.threads, sizeof(*threads));
    cr_assert(r.turn && members && threads);
    for (int i = 0; i < r.threads; i++) {
        members[i] = (ring_member_t){&r, i};
        cr_assert_eq(pthread_create(&threads[i], NULL, ring_main, &members[i]), 0);
    }
    atomic_store_explicit(&r.turn[0], 1, memory_order_release);
    moirai_unpark_one(&r.turn[0]);
    for (int i = 0; i < r.threads; i++)
        pthread_join(threads[i], NULL);
    cr_assert_eq(atomic_load(&r.timeouts), 0, "a wake-up was lost");
    cr_assert_eq(r.counter, r.laps * r.threads);
    free(r.turn);
    free(members);
    free(threads);
}

/* ---- A semaphore: producers post tokens and unpark one; consumers take
 * tokens or park while there are none. The classic lost-wake-up shape. ---- */

typedef struct sem {
    _Atomic uint32_t tokens;
    long per_consumer;
    long per_producer;
    _Atomic long consumed;
    _Atomic int timeouts;
    bool broadcast; /* wake with unpark_all instead of unpark_one */
} sem_t_;

static void *producer_main(void *p)
{
    sem_t_ *s = p;
    for (long i = 0; i < s->per_producer; i++) {
        /* Release: a consumer that takes the token sees what was produced. */
        atomic_fetch_add_explicit(&s->tokens, 1, memory_order_release);
        if (s->broadcast)
            moirai_unpark_all(&s->tokens);
        else
            moirai_unpark_one(&s->tokens);
    }
    return NULL;
}

static void *consumer_main(void *p)
{
    sem_t_ *s = p;
    for (long taken = 0; taken < s->per_consumer;) {
        uint32_t t = atomic_load_explicit(&s->tokens, memory_order_acquire);
        if (t > 0) {
            if (atomic_compare_exchange_weak_explicit(&s->tokens, &t, t - 1, memory_order_acquire,
                                                      memory_order_relaxed)) {
                taken++;
                atomic_fetch_add_explicit(&s->consumed, 1, memory_order_relaxed);
            }
            continue;
        }
        /* Thirty seconds without a wake-up while producers are still
         * posting can only be a lost wake-up. */
        if (moirai_park(&s->tokens, 0, moirai_deadline_after(WAIT_LIMIT)) == -ETIMEDOUT) {
            atomic_fetch_add(&s->timeouts, 1);
            return NULL;
        }
    }
    return NULL;
}

static void run_semaphore(bool broadcast)
{
    int consumers = (int)env_long("MOIRAI_STRESS_THREADS", 4);
    int producers = 2;
    long per_producer = scaled(env_long("MOIRAI_STRESS_TOKENS", 50000));
    /* Make the total divide evenly between consumers. */
    per_producer -= per_producer % consumers;
    if (per_producer == 0)
        per_producer = consumers;
    sem_t_ s = {.per_producer = per_producer,
                .per_consumer = per_producer * producers / consumers,
                .broadcast = broadcast};
    pthread_t threads[64];
    cr_assert_leq(consumers + producers, 64);
    for (int i = 0; i < consumers; i++)
        cr_assert_eq(pthread_create(&threads[i], NULL, consumer_main, &s), 0);
    for (int i = 0; i < producers; i++)
        cr_assert_eq(pthread_create(&threads[consumers + i], NULL, producer_main, &s), 0);
    for (int i = 0; i < consumers + producers; i++)
        pthread_join(threads[i], NULL);
    cr_assert_eq(atomic_load(&s.timeouts), 0, "a consumer slept through available tokens");
    cr_assert_eq(atomic_load(&s.consumed), per_producer * producers);
    cr_assert_eq(atomic_load(&s.tokens), 0);
}

Test(park_stress, semaphore_unpark_one_loses_nothing, .timeout = 200)
{
    run_semaphore(false);
}

Test(park_stress, semaphore_unpark_all_loses_nothing, .timeout = 200)
{
    run_semaphore(true);
}
