/* The Chase-Lev deque (internal): argument checks; empty, LIFO pop and
 * FIFO steal; growth over many doublings, also while the live jobs wrap
 * around the ring; allocation failure in create (every allocation) and in
 * a push that must grow (the deque keeps every job, in order); the sizes
 * and order of batch steals, including a destination that cannot grow;
 * and an owner racing 1..3 thieves (single and batch steals) with every job
 * taken exactly once and its contents visible to whoever took it. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <moirai/core/alloc.h>

#include "deque.h"
#include "oom.h"

/* Distinct fake job pointers for the single-threaded tests: the deque never
 * dereferences a job. 0 is skipped so that no job is NULL. */
#define JOB(i)   ((struct moirai__job *)(uintptr_t)(((uintptr_t)(i) + 1) * 16))
#define INDEX(j) ((long)((uintptr_t)(j) / 16) - 1)

static moirai__deque_t *make(unsigned log2)
{
    moirai__deque_t *d = NULL;
    cr_assert_eq(moirai__deque_create(&d, log2), 0);
    cr_assert_not_null(d);
    return d;
}

/* Steals jobs from .. to-1 and asserts they come in that (FIFO) order. */
static void expect_run(moirai__deque_t *d, long from, long to)
{
    for (long i = from; i < to; i++) {
        struct moirai__job *j = NULL;
        cr_assert_eq(moirai__deque_steal(d, &j), MOIRAI__STEAL_SUCCESS, "job %ld", i);
        cr_assert_eq(INDEX(j), i);
    }
}

/* Steals everything left and asserts it is exactly jobs from .. to-1 in
 * FIFO order. */
static void expect_steals(moirai__deque_t *d, long from, long to)
{
    expect_run(d, from, to);
    struct moirai__job *j = JOB(-2);
    cr_assert_eq(moirai__deque_steal(d, &j), MOIRAI__STEAL_EMPTY);
    cr_assert_eq(j, JOB(-2), "a failed steal must not touch *out");
    cr_assert_eq(moirai__deque_size(d), 0);
}

Test(deque, create_rejects_bad_arguments, .timeout = 10)
{
    moirai__deque_t *d = (moirai__deque_t *)JOB(7);
    cr_assert_eq(moirai__deque_create(NULL, 4), -EINVAL);
    unsigned bad[] = {0, 31, 32, 64, 1000, ~0u};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(moirai__deque_create(&d, bad[i]), -EINVAL, "log2 %u", bad[i]);
        cr_assert_eq(d, (moirai__deque_t *)JOB(7));
    }
    /* Both ends of the accepted range pass the check. The ring of 2^30
     * slots (8 GiB) is only attempted: its allocation is made to fail, and
     * -ENOMEM rather than -EINVAL shows 30 was accepted. */
    moirai__deque_destroy(make(1));
    moirai__deque_destroy(make(16));
    moirai_test_oom_install();
    moirai_test_oom_fail_at(1);
    int rc = moirai__deque_create(&d, 30);
    moirai_test_oom_uninstall();
    cr_assert_eq(rc, -ENOMEM);
    cr_assert_eq(d, (moirai__deque_t *)JOB(7));
    moirai__deque_destroy(NULL);
}

static int create_op(void *ctx)
{
    return moirai__deque_create(ctx, 3);
}

static void create_unchanged(void *ctx, long n)
{
    cr_assert_eq(*(moirai__deque_t **)ctx, (moirai__deque_t *)JOB(7), "failure %ld touched *out",
                 n);
}

Test(deque, create_reports_enomem_at_each_allocation, .timeout = 30)
{
    moirai__deque_t *d = (moirai__deque_t *)JOB(7);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(create_op, create_unchanged, &d);
    moirai_test_oom_uninstall();
    /* The deque and its first ring. */
    cr_assert_eq(failures, 2);
    cr_assert_eq(moirai__deque_size(d), 0);
    moirai__deque_destroy(d);
}

Test(deque, empty_pop_and_steal, .timeout = 10)
{
    moirai__deque_t *d = make(2);
    moirai__deque_t *dest = make(2);
    cr_assert_null(moirai__deque_pop(d));
    expect_steals(d, 0, 0);
    struct moirai__job *first = JOB(-2);
    moirai__steal_t st = MOIRAI__STEAL_SUCCESS;
    cr_assert_eq(moirai__deque_steal_batch(d, dest, &first, 8, &st), 0);
    cr_assert_eq(st, MOIRAI__STEAL_EMPTY);
    cr_assert_eq(first, JOB(-2));
    cr_assert_eq(moirai__deque_size(dest), 0);
    /* Empty again after being used, from either end. */
    cr_assert_eq(moirai__deque_push(d, JOB(0)), 0);
    cr_assert_eq(moirai__deque_pop(d), JOB(0));
    cr_assert_null(moirai__deque_pop(d));
    cr_assert_null(moirai__deque_pop(d));
    cr_assert_eq(moirai__deque_push(d, JOB(1)), 0);
    expect_steals(d, 1, 2);
    cr_assert_null(moirai__deque_pop(d));
    moirai__deque_destroy(d);
    moirai__deque_destroy(dest);
}

Test(deque, pop_is_lifo, .timeout = 10)
{
    moirai__deque_t *d = make(4);
    for (long round = 0; round < 3; round++) {
        for (long i = 0; i < 16; i++)
            cr_assert_eq(moirai__deque_push(d, JOB(i)), 0);
        cr_assert_eq(moirai__deque_size(d), 16);
        for (long i = 15; i >= 0; i--)
            cr_assert_eq(INDEX(moirai__deque_pop(d)), i);
        cr_assert_null(moirai__deque_pop(d));
    }
    moirai__deque_destroy(d);
}

Test(deque, steal_is_fifo, .timeout = 10)
{
    moirai__deque_t *d = make(4);
    for (long round = 0; round < 3; round++) {
        for (long i = 0; i < 16; i++)
            cr_assert_eq(moirai__deque_push(d, JOB(round * 16 + i)), 0);
        expect_steals(d, round * 16, round * 16 + 16);
    }
    moirai__deque_destroy(d);
}

Test(deque, both_ends_meet, .timeout = 10)
{
    /* Steals take the oldest, pops the newest, down to the last job, which
     * either end may take. */
    moirai__deque_t *d = make(3);
    for (long n = 1; n <= 9; n++) {
        for (long i = 0; i < n; i++)
            cr_assert_eq(moirai__deque_push(d, JOB(i)), 0);
        long lo = 0, hi = n - 1;
        for (long k = 0; k < n; k++) {
            struct moirai__job *j;
            if (k % 2 == 0) {
                cr_assert_eq(moirai__deque_steal(d, &j), MOIRAI__STEAL_SUCCESS);
                cr_assert_eq(INDEX(j), lo++);
            } else {
                cr_assert_eq(INDEX(moirai__deque_pop(d)), hi--);
            }
            cr_assert_eq(moirai__deque_size(d), (size_t)(n - k - 1));
        }
        cr_assert_null(moirai__deque_pop(d));
    }
    moirai__deque_destroy(d);
}

Test(deque, growth_preserves_every_job, .timeout = 30)
{
    /* From 2 slots to 2^17 (16 doublings), with a steal after every third
     * push, so the live jobs wrap around the ring when it grows. */
    moirai__deque_t *d = make(1);
    const long n = 150000;
    long stolen = 0;
    for (long i = 0; i < n; i++) {
        cr_assert_eq(moirai__deque_push(d, JOB(i)), 0, "push %ld", i);
        if (i % 3 == 2) {
            struct moirai__job *j;
            cr_assert_eq(moirai__deque_steal(d, &j), MOIRAI__STEAL_SUCCESS);
            cr_assert_eq(INDEX(j), stolen++);
        }
    }
    cr_assert_eq(moirai__deque_size(d), (size_t)(n - stolen));
    /* The rest pops newest first, down to the oldest not stolen. */
    for (long i = n - 1; i >= stolen; i--)
        cr_assert_eq(INDEX(moirai__deque_pop(d)), i);
    cr_assert_null(moirai__deque_pop(d));
    expect_steals(d, 0, 0);
    moirai__deque_destroy(d);
}

Test(deque, growth_then_steal_all_in_order, .timeout = 30)
{
    moirai__deque_t *d = make(1);
    for (long i = 0; i < 5000; i++)
        cr_assert_eq(moirai__deque_push(d, JOB(i)), 0);
    expect_steals(d, 0, 5000);
    moirai__deque_destroy(d);
}

/* A full deque whose live jobs wrap around the end of its ring of 4:
 * jobs 1..4 at indices 1..4. */
static moirai__deque_t *full_wrapped(void)
{
    moirai__deque_t *d = make(2);
    cr_assert_eq(moirai__deque_push(d, JOB(0)), 0);
    cr_assert_eq(moirai__deque_push(d, JOB(1)), 0);
    struct moirai__job *j;
    cr_assert_eq(moirai__deque_steal(d, &j), MOIRAI__STEAL_SUCCESS);
    cr_assert_eq(j, JOB(0));
    for (long i = 2; i <= 4; i++)
        cr_assert_eq(moirai__deque_push(d, JOB(i)), 0);
    cr_assert_eq(moirai__deque_size(d), 4);
    return d;
}

typedef struct push_ctx {
    moirai__deque_t *d;
    long job;
} push_ctx_t;

static int push_op(void *ctx)
{
    push_ctx_t *c = ctx;
    return moirai__deque_push(c->d, JOB(c->job));
}

static void push_unchanged(void *ctx, long n)
{
    push_ctx_t *c = ctx;
    cr_assert_eq(moirai__deque_size(c->d), 4, "failure %ld changed the size", n);
}

Test(deque, push_that_cannot_grow_keeps_every_job, .timeout = 30)
{
    moirai__deque_t *d = full_wrapped();
    push_ctx_t c = {.d = d, .job = 5};
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(push_op, push_unchanged, &c);
    moirai_test_oom_uninstall();
    cr_assert_eq(failures, 1, "one growth, one allocation");
    cr_assert_eq(moirai__deque_size(d), 5);
    expect_steals(d, 1, 6);
    moirai__deque_destroy(d);

    /* The same failure, then the owner's end: nothing lost, LIFO intact,
     * and the deque still grows later. */
    d = full_wrapped();
    moirai_test_oom_install();
    moirai_test_oom_fail_at(0);
    cr_assert_eq(moirai__deque_push(d, JOB(5)), -ENOMEM);
    moirai_test_oom_uninstall();
    for (long i = 4; i >= 1; i--)
        cr_assert_eq(INDEX(moirai__deque_pop(d)), i);
    cr_assert_null(moirai__deque_pop(d));
    for (long i = 0; i < 9; i++)
        cr_assert_eq(moirai__deque_push(d, JOB(i)), 0);
    expect_steals(d, 0, 9);
    moirai__deque_destroy(d);
}

/* Fills `d` with jobs from .. to-1. */
static void fill(moirai__deque_t *d, long from, long to)
{
    for (long i = from; i < to; i++)
        cr_assert_eq(moirai__deque_push(d, JOB(i)), 0);
}

Test(deque, steal_batch_takes_half_rounded_up_in_order, .timeout = 30)
{
    size_t maxes[] = {0, 1, 2, 3, 5, 1000, SIZE_MAX};
    for (long n = 1; n <= 40; n++) {
        for (size_t m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
            size_t max = maxes[m];
            moirai__deque_t *victim = make(2);
            moirai__deque_t *dest = make(1);
            fill(victim, 0, n);
            /* Jobs already on `dest` stay below the batch; at 3 of 2
             * slots, dest has grown once and grows again for big batches. */
            fill(dest, 1000, 1003);
            size_t want = ((size_t)n + 1) / 2;
            size_t cap = max == 0 ? 1 : max;
            if (want > cap)
                want = cap;
            struct moirai__job *first = NULL;
            moirai__steal_t st = MOIRAI__STEAL_EMPTY;
            size_t got = moirai__deque_steal_batch(victim, dest, &first, max, &st);
            cr_assert_eq(got, want, "n %ld max %zu", n, max);
            cr_assert_eq(st, MOIRAI__STEAL_SUCCESS);
            cr_assert_eq(first, JOB(0));
            cr_assert_eq(moirai__deque_size(dest), 3 + want - 1);
            cr_assert_eq(moirai__deque_size(victim), (size_t)n - want);
            /* dest: its own jobs, then 1 .. want-1 in order; the victim
             * keeps want .. n-1. */
            expect_run(dest, 1000, 1003);
            expect_steals(dest, 1, (long)want);
            expect_steals(victim, (long)want, n);
            moirai__deque_destroy(dest);
            moirai__deque_destroy(victim);
        }
    }
}

Test(deque, steal_batch_pushes_so_the_owner_pops_the_newest, .timeout = 10)
{
    moirai__deque_t *victim = make(4);
    moirai__deque_t *dest = make(4);
    fill(victim, 0, 10);
    struct moirai__job *first = NULL;
    moirai__steal_t st;
    cr_assert_eq(moirai__deque_steal_batch(victim, dest, &first, 100, &st), 5);
    cr_assert_eq(first, JOB(0));
    for (long i = 4; i >= 1; i--)
        cr_assert_eq(INDEX(moirai__deque_pop(dest)), i);
    cr_assert_null(moirai__deque_pop(dest));
    for (long i = 9; i >= 5; i--)
        cr_assert_eq(INDEX(moirai__deque_pop(victim)), i);
    cr_assert_null(moirai__deque_pop(victim));
    moirai__deque_destroy(victim);
    moirai__deque_destroy(dest);
}

Test(deque, steal_batch_shortens_when_dest_cannot_grow, .timeout = 30)
{
    /* dest is full (2 of 2), the victim offers 20: the batch wants 10,
     * and every growth fails, so it takes exactly one, into *first. */
    moirai__deque_t *victim = make(5);
    moirai__deque_t *dest = make(1);
    fill(victim, 0, 20);
    fill(dest, 100, 102);
    /* Every growth fails, to reach the shortening of a batch all the way
     * down to one job. */
    moirai_test_oom_install();
    moirai_test_oom_fail_all();
    struct moirai__job *first = NULL;
    moirai__steal_t st = MOIRAI__STEAL_EMPTY;
    size_t got = moirai__deque_steal_batch(victim, dest, &first, 100, &st);
    moirai_test_oom_uninstall();
    cr_assert_eq(got, 1);
    cr_assert_eq(st, MOIRAI__STEAL_SUCCESS);
    cr_assert_eq(first, JOB(0));
    expect_steals(dest, 100, 102);
    expect_steals(victim, 1, 20);
    moirai__deque_destroy(victim);
    moirai__deque_destroy(dest);

    /* One failing allocation at each point: the batch may be shorter, but
     * every job is in exactly one place, in order: *first, then dest
     * (above its own jobs), then the victim. Failures 0 .. 2 hit the
     * three growths of dest (2 -> 16 slots); 3 and later hit nothing. */
    for (long n = 0; n < 5; n++) {
        victim = make(5);
        dest = make(1);
        fill(victim, 0, 20);
        fill(dest, 100, 102);
        moirai_test_oom_install();
        moirai_test_oom_fail_at(n);
        first = NULL;
        got = moirai__deque_steal_batch(victim, dest, &first, 100, &st);
        moirai_test_oom_uninstall();
        cr_assert_eq(st, MOIRAI__STEAL_SUCCESS);
        /* A failure halves the wish (10 -> 5), which then fits once the
         * later growths succeed. */
        cr_assert_eq(got, n < 3 ? 5 : 10, "failure at %ld", n);
        cr_assert_eq(first, JOB(0));
        expect_run(dest, 100, 102);
        expect_steals(dest, 1, (long)got);
        expect_steals(victim, (long)got, 20);
        moirai__deque_destroy(dest);
        moirai__deque_destroy(victim);
    }
}

/* ---- An owner racing thieves ------------------------------------------ */

/* A job the racing tests hand around: `seal` is written (plainly) by the
 * owner before the push and checked by whoever takes the job, so a missing
 * release/acquire shows up as a wrong value here and as a race under TSan. */
typedef struct fake_job {
    uint64_t id;
    uint64_t seal;
} fake_job_t;

#define SEAL(id)    ((id)*UINT64_C(0x9E3779B97F4A7C15) ^ UINT64_C(0x5DEECE66D))
#define MAX_THIEVES 4

typedef struct race {
    moirai__deque_t *deque;            /* the owner's */
    moirai__deque_t *own[MAX_THIEVES]; /* each batch thief's own deque */
    fake_job_t *jobs;
    _Atomic uint32_t *taken; /* per job: how often it was taken */
    long n;
    long max_burst;
    int thieves;
    bool batch;
    atomic_int started;     /* thieves running */
    atomic_bool done;       /* the owner pushes nothing more */
    atomic_long bad;        /* invented jobs or wrong seals */
    atomic_long by_thieves; /* jobs the thieves took */
} race_t;

typedef struct thief_arg {
    race_t *race;
    int index;
} thief_arg_t;

static void take(race_t *r, struct moirai__job *j)
{
    fake_job_t *f = (fake_job_t *)j;
    if (f < r->jobs || f >= r->jobs + r->n || f->seal != SEAL(f->id)) {
        atomic_fetch_add_explicit(&r->bad, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&r->taken[f->id], 1, memory_order_relaxed);
}

static uint32_t next_rand(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static void *thief(void *p)
{
    thief_arg_t *a = p;
    race_t *r = a->race;
    moirai__deque_t *mine = r->own[a->index];
    uint32_t rng = 0x1234567u + (uint32_t)a->index * 7919u;
    long count = 0;
    atomic_fetch_add_explicit(&r->started, 1, memory_order_relaxed);
    for (;;) {
        /* Read before the steal: once the owner is done, an empty deque
         * stays empty. */
        bool done = atomic_load_explicit(&r->done, memory_order_acquire);
        struct moirai__job *j = NULL;
        moirai__steal_t st;
        if (r->batch) {
            size_t max = 1 + next_rand(&rng) % 16;
            size_t got = moirai__deque_steal_batch(r->deque, mine, &j, max, &st);
            if (got > 0) {
                take(r, j);
                count++;
                /* Work through the rest from the own deque, while the
                 * other thieves may steal from it too. */
                while ((j = moirai__deque_pop(mine)) != NULL) {
                    take(r, j);
                    count++;
                }
            }
        } else {
            st = moirai__deque_steal(r->deque, &j);
            if (st == MOIRAI__STEAL_SUCCESS) {
                take(r, j);
                count++;
            }
        }
        if (st == MOIRAI__STEAL_EMPTY && r->batch && r->thieves > 1) {
            /* Help a fellow batch thief: steals racing its push and pop. */
            int other =
                (a->index + 1 + (int)(next_rand(&rng) % (unsigned)(r->thieves - 1))) % r->thieves;
            if (moirai__deque_steal(r->own[other], &j) == MOIRAI__STEAL_SUCCESS) {
                take(r, j);
                count++;
                continue;
            }
        }
        if (st == MOIRAI__STEAL_EMPTY && done)
            break;
    }
    atomic_fetch_add_explicit(&r->by_thieves, count, memory_order_relaxed);
    return NULL;
}

/* One owner (this thread) pushes `n` jobs in random bursts of up to
 * `max_burst` onto a deque that starts at 2 slots (so it grows while being
 * stolen from), popping a random share back after each burst; `thieves`
 * threads steal meanwhile. Every job must be taken exactly once. Returns
 * how many the thieves took. */
static long run_race(int thieves, bool batch, long n, long max_burst, uint32_t seed)
{
    race_t r = {.n = n, .max_burst = max_burst, .thieves = thieves, .batch = batch};
    cr_assert_leq(thieves, MAX_THIEVES);
    r.jobs = calloc((size_t)n, sizeof(*r.jobs));
    r.taken = calloc((size_t)n, sizeof(*r.taken));
    cr_assert(r.jobs != NULL && r.taken != NULL);
    atomic_init(&r.started, 0);
    atomic_init(&r.done, false);
    atomic_init(&r.bad, 0);
    atomic_init(&r.by_thieves, 0);
    cr_assert_eq(moirai__deque_create(&r.deque, 1), 0);
    for (int i = 0; i < thieves; i++)
        cr_assert_eq(moirai__deque_create(&r.own[i], 1), 0);

    pthread_t tids[MAX_THIEVES];
    thief_arg_t args[MAX_THIEVES];
    for (int i = 0; i < thieves; i++) {
        args[i] = (thief_arg_t){.race = &r, .index = i};
        cr_assert_eq(pthread_create(&tids[i], NULL, thief, &args[i]), 0);
    }
    /* Start only once the thieves run, so that they do race the owner
     * (relaxed: a count, ordering nothing). */
    while (atomic_load_explicit(&r.started, memory_order_relaxed) < thieves)
        sched_yield();
    uint32_t rng = seed | 1u;
    long pushed = 0, push_failures = 0;
    while (pushed < n) {
        long burst = 1 + (long)(next_rand(&rng) % (uint32_t)max_burst);
        if (burst > n - pushed)
            burst = n - pushed;
        for (long k = 0; k < burst; k++, pushed++) {
            r.jobs[pushed].id = (uint64_t)pushed;
            r.jobs[pushed].seal = SEAL((uint64_t)pushed);
            if (moirai__deque_push(r.deque, (struct moirai__job *)&r.jobs[pushed]) != 0)
                push_failures++;
        }
        long pops = (long)(next_rand(&rng) % (uint32_t)(burst + 1));
        for (long k = 0; k < pops; k++) {
            struct moirai__job *j = moirai__deque_pop(r.deque);
            if (j == NULL)
                break;
            take(&r, j);
        }
        if (next_rand(&rng) % 64 == 0)
            sched_yield(); /* let the thieves catch up and empty it */
    }
    atomic_store_explicit(&r.done, true, memory_order_release);
    struct moirai__job *j;
    while ((j = moirai__deque_pop(r.deque)) != NULL)
        take(&r, j);
    for (int i = 0; i < thieves; i++)
        cr_assert_eq(pthread_join(tids[i], NULL), 0);

    cr_assert_eq(push_failures, 0);
    cr_assert_eq(atomic_load(&r.bad), 0, "invented job or job seen without its contents");
    for (long i = 0; i < n; i++)
        cr_assert_eq(atomic_load_explicit(&r.taken[i], memory_order_relaxed), 1,
                     "job %ld taken %u times (thieves %d, batch %d)", i,
                     atomic_load_explicit(&r.taken[i], memory_order_relaxed), thieves, batch);
    cr_assert_eq(moirai__deque_size(r.deque), 0);
    cr_assert_null(moirai__deque_pop(r.deque));
    for (int i = 0; i < thieves; i++) {
        cr_assert_eq(moirai__deque_size(r.own[i]), 0);
        moirai__deque_destroy(r.own[i]);
    }
    moirai__deque_destroy(r.deque);
    long stolen = atomic_load(&r.by_thieves);
    free(r.jobs);
    free(r.taken);
    return stolen;
}

Test(deque, owner_and_thieves_take_each_job_exactly_once, .timeout = 60)
{
    for (int thieves = 1; thieves <= 3; thieves++)
        for (uint32_t seed = 1; seed <= 4; seed++)
            run_race(thieves, false, 20000, 64, seed * 2654435761u);
}

Test(deque, owner_and_batch_thieves_take_each_job_exactly_once, .timeout = 60)
{
    for (int thieves = 1; thieves <= 3; thieves++)
        for (uint32_t seed = 1; seed <= 4; seed++)
            run_race(thieves, true, 20000, 64, seed * 40503u);
}
