/* The injector: one lock-free FIFO per priority level, with counts and
 * aging time stamps (see injector.h and the priority rules in sched.h). */
#include <errno.h>
#include <stddef.h>
#include <time.h>

#include "injector.h"

/* Aging time, in nanoseconds of CLOCK_MONOTONIC_COARSE: a fifth of the
 * cost of the precise clock (3.7 ns against 20.6 ns here), read on every
 * injector pop, and its resolution (one kernel tick, at most 4 ms) is
 * fine for periods of milliseconds. Only the injector's own time stamps
 * are on this clock. */
static uint64_t aging_now(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Restarts a level's aging clock. The store is skipped while the coarse
 * clock has not moved, so that poppers do not keep writing the line every
 * producer and worker reads. */
static void restart_clock(moirai__injector_t *inj, int level, uint64_t now)
{
    if (atomic_load_explicit(&inj->since[level], memory_order_relaxed) != now)
        atomic_store_explicit(&inj->since[level], now, memory_order_relaxed);
}

int moirai__injector_init(moirai__injector_t *inj, uint64_t aging_ns)
{
    inj->aging_ns = aging_ns;
    uint64_t now = aging_now();
    for (int l = 0; l < MOIRAI_PRIORITY_COUNT; l++) {
        atomic_init(&inj->count[l], 0);
        atomic_init(&inj->since[l], now);
        if (moirai_queue_create(&inj->queue[l]) != 0) {
            for (int k = 0; k < l; k++) {
                moirai_queue_destroy(inj->queue[k]);
                inj->queue[k] = NULL;
            }
            return -ENOMEM;
        }
    }
    return 0;
}

void moirai__injector_fini(moirai__injector_t *inj)
{
    for (int l = 0; l < MOIRAI_PRIORITY_COUNT; l++)
        moirai_queue_destroy(inj->queue[l]);
}

int moirai__injector_push(moirai__injector_t *inj, moirai__job_t *job, int prio)
{
    /* Counted before the push (see injector.h). seq_cst: this is the word
     * the idle protocol's re-check reads. */
    int64_t before = atomic_fetch_add_explicit(&inj->count[prio], 1, memory_order_seq_cst);
    if (before == 0 && inj->aging_ns != 0) {
        /* The level becomes non-empty: its aging clock restarts. A racing
         * pop may overwrite it with its own, equally recent, time. */
        restart_clock(inj, prio, aging_now());
    }
    if (moirai_queue_push(inj->queue[prio], job) != 0) { /* release */
        atomic_fetch_sub_explicit(&inj->count[prio], 1, memory_order_relaxed);
        return -ENOMEM;
    }
    return 0;
}

moirai__job_t *moirai__injector_pop(moirai__injector_t *inj, int below)
{
    moirai__job_t *job = NULL;
    return moirai__injector_pop_many(inj, below, &job, 1, 1) == 1 ? job : NULL;
}

size_t moirai__injector_pop_many(moirai__injector_t *inj, int below, moirai__job_t **out,
                                 size_t max, int share)
{
    if (!moirai__injector_maybe(inj))
        return 0;
    uint64_t aging = inj->aging_ns;
    uint64_t now = 0;
    int best = -1;
    int64_t best_eff = MOIRAI_PRIORITY_COUNT;
    for (int l = 0; l < MOIRAI_PRIORITY_COUNT; l++) {
        if (atomic_load_explicit(&inj->count[l], memory_order_relaxed) <= 0)
            continue;
        int64_t eff = l;
        if (aging != 0 && l > 0) {
            if (now == 0)
                now = aging_now();
            uint64_t since = atomic_load_explicit(&inj->since[l], memory_order_relaxed);
            /* Whole aging periods waited, each one level more urgent. */
            uint64_t periods = now > since ? (now - since) / aging : 0;
            eff = periods >= (uint64_t)l ? 0 : l - (int64_t)periods;
        }
        /* Strictly more urgent only: on a tie the naturally more urgent
         * level (scanned first) wins. */
        if (eff < best_eff) {
            best_eff = eff;
            best = l;
        }
    }
    if (best < 0 || best_eff >= below)
        return 0;
    /* Only the NORMAL level is taken in batches: the rest of a batch waits
     * in a worker's deque, where work counts as NORMAL, so a batch of any
     * other level would change its priority. */
    size_t want = 1;
    if (best == MOIRAI_PRIORITY_NORMAL && max > 1) {
        int64_t count = atomic_load_explicit(&inj->count[best], memory_order_relaxed);
        int64_t fair = count / (share > 0 ? share : 1) + 1;
        want = fair < (int64_t)max ? (size_t)fair : max;
    }
    size_t got = 0;
    while (got < want) {
        void *item;
        if (moirai_queue_try_pop(inj->queue[best], &item) != 0)
            break; /* being pushed, or taken by another worker meanwhile */
        out[got++] = item;
    }
    if (got == 0)
        return 0;
    if (aging != 0) {
        /* A task of this level was taken: its clock restarts. */
        restart_clock(inj, best, now != 0 ? now : aging_now());
    }
    atomic_fetch_sub_explicit(&inj->count[best], (int64_t)got, memory_order_relaxed);
    return got;
}
