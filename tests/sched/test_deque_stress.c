/* Stress for the Chase-Lev deque (internal), suite "stress".
 *
 * 1. Growth under fire: round after round, the owner pushes long bursts
 *    onto a fresh 2-slot deque, so it doubles many times while thieves
 *    (single or batch steals) are reading it; a ring freed too early is a
 *    use-after-free under ASan, and a missing ordering a race under TSan.
 * 2. Mixed owner traffic: random bursts of pushes and pops against the
 *    thieves, long enough for every last-job race between pop and steal.
 * 3. Every thread an owner and a thief, as workers are: each pushes and
 *    pops its own deque and batch-steals from the others'.
 *
 * Each checks that every job is taken exactly once and that whoever takes
 * it sees the contents written before its push. Sizes are scaled() (the
 * sanitizer builds divide them by 10) and can be overridden:
 *   MOIRAI_DEQUE_STRESS_THIEVES  thieves / extra workers (default 3, max 8)
 *   MOIRAI_DEQUE_STRESS_JOBS     jobs per test (default 8,000,000)
 *   MOIRAI_DEQUE_STRESS_BURST    longest burst (default 4096) */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "deque.h"
#include "test_scale.h"

#define MAX_THREADS 9 /* owner + up to 8 */

typedef struct fake_job {
    uint64_t id;
    uint64_t seal;
} fake_job_t;

#define SEAL(id) ((id)*UINT64_C(0x9E3779B97F4A7C15) ^ UINT64_C(0x2545F4914F6CDD1D))

static int thieves_param(void)
{
    long t = env_long("MOIRAI_DEQUE_STRESS_THIEVES", 3);
    return t > MAX_THREADS - 1 ? MAX_THREADS - 1 : (int)t;
}

static long jobs_param(void)
{
    return scaled(env_long("MOIRAI_DEQUE_STRESS_JOBS", 8000000));
}

static long burst_param(void)
{
    return env_long("MOIRAI_DEQUE_STRESS_BURST", 4096);
}

static uint32_t next_rand(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* The jobs and their tally. Worker threads only count problems; the test
 * thread asserts (Criterion asserts belong on the test's thread). */
typedef struct tally {
    fake_job_t *jobs;
    _Atomic uint32_t *taken;
    long n;
    atomic_long bad;   /* invented jobs or contents not visible */
    atomic_long total; /* jobs taken so far, by anyone */
} tally_t;

static void tally_init(tally_t *t, long n)
{
    t->n = n;
    t->jobs = calloc((size_t)n, sizeof(*t->jobs));
    t->taken = calloc((size_t)n, sizeof(*t->taken));
    cr_assert(t->jobs != NULL && t->taken != NULL);
    atomic_init(&t->bad, 0);
    atomic_init(&t->total, 0);
}

/* Fills in job `id` (plain writes, published by the push). */
static struct moirai__job *tally_job(tally_t *t, long id)
{
    t->jobs[id].id = (uint64_t)id;
    t->jobs[id].seal = SEAL((uint64_t)id);
    return (struct moirai__job *)&t->jobs[id];
}

static void tally_take(tally_t *t, struct moirai__job *j)
{
    fake_job_t *f = (fake_job_t *)j;
    if (f < t->jobs || f >= t->jobs + t->n || f->seal != SEAL(f->id)) {
        atomic_fetch_add_explicit(&t->bad, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&t->taken[f->id], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->total, 1, memory_order_relaxed);
}

static void tally_check_and_free(tally_t *t, const char *what)
{
    cr_assert_eq(atomic_load(&t->bad), 0, "%s: invented job or contents not visible", what);
    for (long i = 0; i < t->n; i++)
        cr_assert_eq(atomic_load_explicit(&t->taken[i], memory_order_relaxed), 1,
                     "%s: job %ld taken %u times", what, i,
                     atomic_load_explicit(&t->taken[i], memory_order_relaxed));
    cr_assert_eq(atomic_load(&t->total), t->n);
    free(t->jobs);
    free(t->taken);
}

/* ---- 1 and 2: one owner, several thieves ------------------------------ */

typedef struct race {
    tally_t tally;
    _Atomic(moirai__deque_t *) deque; /* the current round's deque */
    moirai__deque_t *own[MAX_THREADS];
    int thieves;
    bool batch;
    atomic_int started;
    atomic_uint round;    /* bumped (release) when `deque` changes */
    atomic_uint finished; /* thieves done with the current round */
    atomic_bool done;     /* no more rounds */
    atomic_bool round_over;
} race_t;

typedef struct thief_arg {
    race_t *race;
    int index;
} thief_arg_t;

/* Steals from the round's deque until the round is over and the deque is
 * empty, then reports and waits for the next round. */
static void *thief(void *p)
{
    thief_arg_t *a = p;
    race_t *r = a->race;
    moirai__deque_t *mine = r->own[a->index];
    uint32_t rng = 0x9e3779b9u ^ (uint32_t)(a->index + 1) * 2654435761u;
    unsigned seen_round = 0;
    atomic_fetch_add_explicit(&r->started, 1, memory_order_relaxed);
    for (;;) {
        /* acquire: pairs with the owner's release of `round`, making the
         * new deque (and its creation) visible. */
        unsigned rd;
        while ((rd = atomic_load_explicit(&r->round, memory_order_acquire)) == seen_round) {
            if (atomic_load_explicit(&r->done, memory_order_acquire))
                return NULL;
            sched_yield();
        }
        seen_round = rd;
        moirai__deque_t *d = atomic_load_explicit(&r->deque, memory_order_relaxed);
        for (;;) {
            /* Read before the steal: once the round is over, the deque
             * only shrinks, so an empty steal then means empty for good. */
            bool over = atomic_load_explicit(&r->round_over, memory_order_acquire);
            struct moirai__job *j = NULL;
            moirai__steal_t st;
            if (r->batch) {
                size_t max = (next_rand(&rng) & 3) == 0 ? SIZE_MAX : 1 + next_rand(&rng) % 64;
                if (moirai__deque_steal_batch(d, mine, &j, max, &st) > 0) {
                    tally_take(&r->tally, j);
                    while ((j = moirai__deque_pop(mine)) != NULL)
                        tally_take(&r->tally, j);
                }
            } else {
                st = moirai__deque_steal(d, &j);
                if (st == MOIRAI__STEAL_SUCCESS)
                    tally_take(&r->tally, j);
            }
            if (st == MOIRAI__STEAL_EMPTY && over)
                break;
        }
        /* release: the owner may destroy the deque once every thief has
         * left it; our reads of it happen before. */
        atomic_fetch_add_explicit(&r->finished, 1, memory_order_release);
    }
}

/* Runs the owner on this thread: rounds on fresh deques of 2 slots, each
 * round pushing `per_round` jobs in bursts of up to `max_burst`, popping
 * a random share after each burst when `pops` is set. */
static void run_race(int thieves, bool batch, long n, long per_round, long max_burst, bool pops)
{
    race_t *r = calloc(1, sizeof(*r));
    cr_assert_not_null(r);
    tally_init(&r->tally, n);
    r->thieves = thieves;
    r->batch = batch;
    for (int i = 0; i < thieves; i++)
        cr_assert_eq(moirai__deque_create(&r->own[i], 1), 0);
    pthread_t tids[MAX_THREADS];
    thief_arg_t args[MAX_THREADS];
    for (int i = 0; i < thieves; i++) {
        args[i] = (thief_arg_t){.race = r, .index = i};
        cr_assert_eq(pthread_create(&tids[i], NULL, thief, &args[i]), 0);
    }
    while (atomic_load_explicit(&r->started, memory_order_relaxed) < thieves)
        sched_yield();

    uint32_t rng = 0x2545f491u ^ (uint32_t)thieves ^ (batch ? 0x1000u : 0u);
    long next = 0, failures = 0;
    unsigned round = 0;
    while (next < n) {
        moirai__deque_t *d;
        cr_assert_eq(moirai__deque_create(&d, 1), 0);
        atomic_store_explicit(&r->round_over, false, memory_order_relaxed);
        atomic_store_explicit(&r->finished, 0, memory_order_relaxed);
        atomic_store_explicit(&r->deque, d, memory_order_relaxed);
        /* release: publishes the deque and the resets above. */
        atomic_store_explicit(&r->round, ++round, memory_order_release);
        long end = next + per_round < n ? next + per_round : n;
        while (next < end) {
            long burst = 1 + (long)(next_rand(&rng) % (uint32_t)max_burst);
            if (burst > end - next)
                burst = end - next;
            for (long k = 0; k < burst; k++, next++)
                if (moirai__deque_push(d, tally_job(&r->tally, next)) != 0)
                    failures++;
            if (pops) {
                long m = (long)(next_rand(&rng) % (uint32_t)(burst + 1));
                for (long k = 0; k < m; k++) {
                    struct moirai__job *j = moirai__deque_pop(d);
                    if (j == NULL)
                        break;
                    tally_take(&r->tally, j);
                }
            }
        }
        /* release: pairs with the thieves' acquire before their last
         * steal, so an empty steal after it is final. */
        atomic_store_explicit(&r->round_over, true, memory_order_release);
        struct moirai__job *j;
        while ((j = moirai__deque_pop(d)) != NULL)
            tally_take(&r->tally, j);
        /* acquire: pairs with each thief's release when it leaves. */
        while (atomic_load_explicit(&r->finished, memory_order_acquire) < (unsigned)thieves)
            sched_yield();
        cr_assert_eq(moirai__deque_size(d), 0);
        moirai__deque_destroy(d);
    }
    atomic_store_explicit(&r->done, true, memory_order_release);
    for (int i = 0; i < thieves; i++) {
        cr_assert_eq(pthread_join(tids[i], NULL), 0);
        cr_assert_eq(moirai__deque_size(r->own[i]), 0);
        moirai__deque_destroy(r->own[i]);
    }
    cr_assert_eq(failures, 0);
    tally_check_and_free(&r->tally, batch ? "batch thieves" : "single thieves");
    free(r);
}

Test(deque_stress, growth_while_thieves_steal, .timeout = 300)
{
    long n = jobs_param(), burst = burst_param();
    /* Short rounds: each fresh 2-slot deque grows to a burst's size
     * (up to 11 doublings) while the thieves take from it, and many
     * rounds give many growths. */
    for (int thieves = 1; thieves <= thieves_param(); thieves++) {
        run_race(thieves, false, n / 2, burst, burst, false);
        run_race(thieves, true, n / 2, burst, burst, false);
    }
}

Test(deque_stress, owner_pushes_and_pops_against_thieves, .timeout = 300)
{
    long n = jobs_param();
    /* Short bursts: the deque is often at 0 or 1 jobs, where pop and
     * steal race for the last one. */
    for (int thieves = 1; thieves <= thieves_param(); thieves++) {
        run_race(thieves, false, n / 2, n, 8, true);
        run_race(thieves, true, n / 2, n, 8, true);
        run_race(thieves, true, n / 4, 64 * 1024, 512, true);
    }
}

/* ---- 3: every thread a worker ----------------------------------------- */

typedef struct workers {
    tally_t tally;
    moirai__deque_t *deques[MAX_THREADS];
    int count;
    long per_worker;
    atomic_int started;
} workers_t;

typedef struct worker_arg {
    workers_t *w;
    int index;
} worker_arg_t;

/* Worker `index` creates jobs index*per_worker .. +per_worker-1 in random
 * bursts onto its own deque, pops some back, and when its own deque is
 * empty batch-steals from a random other worker. It stops once every job
 * has been taken by someone. */
static void *worker(void *p)
{
    worker_arg_t *a = p;
    workers_t *w = a->w;
    moirai__deque_t *mine = w->deques[a->index];
    uint32_t rng = 0x6c078965u * (uint32_t)(a->index + 1);
    long next = (long)a->index * w->per_worker, end = next + w->per_worker;
    atomic_fetch_add_explicit(&w->started, 1, memory_order_relaxed);
    while (atomic_load_explicit(&w->started, memory_order_relaxed) < w->count)
        sched_yield();
    while (atomic_load_explicit(&w->tally.total, memory_order_relaxed) < w->tally.n) {
        if (next < end) {
            long burst = 1 + (long)(next_rand(&rng) % 256);
            for (long k = 0; k < burst && next < end; k++, next++)
                if (moirai__deque_push(mine, tally_job(&w->tally, next)) != 0)
                    atomic_fetch_add_explicit(&w->tally.bad, 1, memory_order_relaxed);
        }
        /* Work off part of the own deque, as a worker does... */
        long m = (long)(next_rand(&rng) % 200);
        struct moirai__job *j = NULL;
        for (long k = 0; k < m && (j = moirai__deque_pop(mine)) != NULL; k++)
            tally_take(&w->tally, j);
        /* ...and steal when it ran dry. */
        if (j == NULL && w->count > 1) {
            int victim =
                (a->index + 1 + (int)(next_rand(&rng) % (uint32_t)(w->count - 1))) % w->count;
            moirai__steal_t st;
            if (moirai__deque_steal_batch(w->deques[victim], mine, &j, 32, &st) > 0)
                tally_take(&w->tally, j);
        }
    }
    return NULL;
}

Test(deque_stress, workers_push_pop_and_batch_steal, .timeout = 300)
{
    workers_t *w = calloc(1, sizeof(*w));
    cr_assert_not_null(w);
    w->count = thieves_param() + 1;
    w->per_worker = jobs_param() / w->count;
    tally_init(&w->tally, w->per_worker * w->count);
    for (int i = 0; i < w->count; i++)
        cr_assert_eq(moirai__deque_create(&w->deques[i], 1), 0);
    pthread_t tids[MAX_THREADS];
    worker_arg_t args[MAX_THREADS];
    for (int i = 0; i < w->count; i++) {
        args[i] = (worker_arg_t){.w = w, .index = i};
        cr_assert_eq(pthread_create(&tids[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < w->count; i++)
        cr_assert_eq(pthread_join(tids[i], NULL), 0);
    for (int i = 0; i < w->count; i++) {
        cr_assert_eq(moirai__deque_size(w->deques[i]), 0);
        moirai__deque_destroy(w->deques[i]);
    }
    tally_check_and_free(&w->tally, "workers");
    free(w);
}
