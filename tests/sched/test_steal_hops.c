/* A job that travels through two deques before it runs: spawned onto the
 * owner's deque, batch-stolen by thief A (the first job runs on A, the
 * rest are pushed onto A's own deque) and stolen from there by thief B.
 * B must see what the owner wrote before the push, through two hand-offs
 * (the owner's release to A, A's release to B), and every job must be
 * taken exactly once.
 *
 * The threads take turns through relaxed flags, which order nothing, so
 * that the only happens-before path from the owner to B is the one through
 * the two deques: with a release missing on either hop, ThreadSanitizer
 * reports B's read of the plain payload. The counts of each hop are exact,
 * so the test also proves that the second hop happened. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <moirai/core/clock.h>

#include "deque.h"

/* The scheduler's batch limit (worker.c's STEAL_BATCH_MAX). */
#define BATCH_MAX 32
#define WAIT_NS   (30 * MOIRAI_NS_PER_S)

/* A job as the deque sees it: an opaque pointer. Its fields are plain, so
 * that a read without happens-before is a data race TSan reports. */
typedef struct hop_job {
    uint64_t id;
    uint64_t payload[3];
} hop_job_t;

static uint64_t expected(uint64_t id, int k)
{
    return (id + 1) * UINT64_C(0x9E3779B97F4A7C15) + (uint64_t)k;
}

typedef struct hops {
    moirai__deque_t *owner; /* the spawner's deque (the test thread's) */
    moirai__deque_t *a_own; /* thief A's own deque */
    hop_job_t *jobs;
    long n;
    /* 0: pushing; 1: pushed, A may steal; 2: A stole, B may steal;
     * 3: B is done. Relaxed everywhere (see the top of the file). */
    atomic_int phase;
    bool race; /* A pops its own deque while B steals from it */
    _Atomic uint32_t *taken;
    atomic_long by_a_batch; /* jobs A's batch steal took */
    atomic_long by_a_pop;   /* jobs A popped back from its own deque */
    atomic_long by_b;       /* jobs B stole from A: the second hop */
    atomic_long bad;        /* invented jobs, wrong payloads, timeouts */
} hops_t;

/* Counts a taken job and checks its payload (plain reads). */
static void take(hops_t *h, struct moirai__job *j)
{
    hop_job_t *f = (hop_job_t *)j;
    bool ok = f >= h->jobs && f < h->jobs + h->n;
    for (int k = 0; ok && k < 3; k++)
        ok = f->payload[k] == expected(f->id, k);
    if (!ok) {
        atomic_fetch_add_explicit(&h->bad, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&h->taken[f->id], 1, memory_order_relaxed);
}

/* Waits until the phase reaches `want`; false (and counted as bad) if
 * WAIT_NS passed first, so that a lost turn fails instead of hanging. */
static bool await_phase(hops_t *h, int want)
{
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (atomic_load_explicit(&h->phase, memory_order_relaxed) < want) {
        if (moirai_clock_now_ns() > deadline) {
            atomic_fetch_add_explicit(&h->bad, 1, memory_order_relaxed);
            return false;
        }
        sched_yield();
    }
    return true;
}

static void *thief_a(void *p)
{
    hops_t *h = p;
    if (!await_phase(h, 1))
        return NULL;
    struct moirai__job *first = NULL;
    moirai__steal_t st = MOIRAI__STEAL_EMPTY;
    size_t got = moirai__deque_steal_batch(h->owner, h->a_own, &first, BATCH_MAX, &st);
    atomic_store_explicit(&h->by_a_batch, (long)got, memory_order_relaxed);
    atomic_store_explicit(&h->phase, 2, memory_order_relaxed);
    if (got == 0)
        return NULL;
    take(h, first);
    /* In the race, A works through its own deque (newest first) while B
     * steals from the other end; otherwise it waits for B to finish, and
     * whatever B left is popped after. */
    if (!h->race && !await_phase(h, 3))
        return NULL;
    long popped = 0;
    struct moirai__job *j;
    while ((j = moirai__deque_pop(h->a_own)) != NULL) {
        take(h, j);
        popped++;
    }
    atomic_store_explicit(&h->by_a_pop, popped, memory_order_relaxed);
    return NULL;
}

static void *thief_b(void *p)
{
    hops_t *h = p;
    if (!await_phase(h, 2))
        return NULL;
    long stolen = 0;
    for (;;) {
        struct moirai__job *j = NULL;
        moirai__steal_t st = moirai__deque_steal(h->a_own, &j);
        if (st == MOIRAI__STEAL_EMPTY)
            break;
        if (st == MOIRAI__STEAL_SUCCESS) {
            take(h, j);
            stolen++;
        }
    }
    atomic_store_explicit(&h->by_b, stolen, memory_order_relaxed);
    atomic_store_explicit(&h->phase, 3, memory_order_relaxed);
    return NULL;
}

/* One round with `n` jobs; returns how many took the second hop. */
static long run_round(long n, bool race)
{
    hops_t h = {.n = n, .race = race};
    h.jobs = calloc((size_t)n, sizeof(*h.jobs));
    h.taken = calloc((size_t)n, sizeof(*h.taken));
    cr_assert(h.jobs != NULL && h.taken != NULL);
    /* Both deques start at 2 slots, so that the pushes and A's batch grow
     * them on the way. */
    cr_assert_eq(moirai__deque_create(&h.owner, 1), 0);
    cr_assert_eq(moirai__deque_create(&h.a_own, 1), 0);
    atomic_init(&h.phase, 0);
    atomic_init(&h.by_a_batch, 0);
    atomic_init(&h.by_a_pop, 0);
    atomic_init(&h.by_b, 0);
    atomic_init(&h.bad, 0);

    /* The thieves start before the payloads are written: thread creation
     * is a happens-before edge, and it must not be the one that covers
     * them. */
    pthread_t a, b;
    cr_assert_eq(pthread_create(&a, NULL, thief_a, &h), 0);
    cr_assert_eq(pthread_create(&b, NULL, thief_b, &h), 0);
    for (long i = 0; i < n; i++) {
        h.jobs[i].id = (uint64_t)i;
        for (int k = 0; k < 3; k++)
            h.jobs[i].payload[k] = expected((uint64_t)i, k);
        cr_assert_eq(moirai__deque_push(h.owner, (struct moirai__job *)&h.jobs[i]), 0);
    }
    atomic_store_explicit(&h.phase, 1, memory_order_relaxed);
    cr_assert_eq(pthread_join(a, NULL), 0);
    cr_assert_eq(pthread_join(b, NULL), 0);
    long by_owner = 0;
    struct moirai__job *j;
    while ((j = moirai__deque_pop(h.owner)) != NULL) {
        take(&h, j);
        by_owner++;
    }

    cr_assert_eq(atomic_load(&h.bad), 0, "a job seen without its payload, or a lost turn");
    for (long i = 0; i < n; i++)
        cr_assert_eq(atomic_load(&h.taken[i]), 1, "job %ld of %ld taken %u times", i, n,
                     atomic_load(&h.taken[i]));
    /* Nobody else touched the owner's deque, so A's batch is exactly half
     * of it rounded up, at most the batch limit. */
    long want = (n + 1) / 2 < BATCH_MAX ? (n + 1) / 2 : BATCH_MAX;
    long batch = atomic_load(&h.by_a_batch);
    long by_b = atomic_load(&h.by_b);
    cr_assert_eq(batch, want, "n %ld", n);
    cr_assert_eq(by_owner, n - batch);
    cr_assert_eq(1 + atomic_load(&h.by_a_pop) + by_b, batch);
    if (!race)
        cr_assert_eq(by_b, batch - 1, "B must take every job A pushed (n %ld)", n);
    cr_assert_eq(moirai__deque_size(h.owner), 0);
    cr_assert_eq(moirai__deque_size(h.a_own), 0);
    moirai__deque_destroy(h.owner);
    moirai__deque_destroy(h.a_own);
    free(h.jobs);
    free(h.taken);
    return by_b;
}

/* Turn by turn: the owner pushes, A batch-steals, B steals everything A
 * pushed. Sizes from a batch of one (nothing for B) past the batch limit. */
Test(steal_hops, batch_stolen_jobs_stolen_again_see_their_payload, .timeout = 60)
{
    static const long sizes[] = {1, 2, 3, 4, 7, 16, 63, 64, 65, 200};
    long second_hop = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        second_hop += run_round(sizes[i], false);
    /* 0+0+1+1+3+7+31+31+31+31: every job A pushed took the second hop. */
    cr_assert_eq(second_hop, 136);
}

/* As above, but A pops its own deque from the bottom while B steals from
 * the top, so the two race for the last jobs: each is still taken once. */
Test(steal_hops, second_thief_races_the_batch_thief_for_its_jobs, .timeout = 60)
{
    for (int round = 0; round < 50; round++)
        (void)run_round(3 + round % 61, true);
}
