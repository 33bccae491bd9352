/* The injector: one intrusive FIFO per priority level, with counts and
 * aging time stamps (see injector.h and the priority rules in sched.h). */
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "injector.h"

/* Aging periods counted at most: far more than the five levels need,
 * small enough that subtracting it from a level cannot overflow. */
#define AGING_PERIODS_MAX 1024

/* ThreadSanitizer annotations for the levels' consumer try-lock (the
 * project's rule for custom locks): TSan then knows it is a lock, lists it
 * in reports and checks lock order. No-ops in other builds. */
#if defined(__SANITIZE_THREAD__)
#define INJECTOR_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define INJECTOR_TSAN 1
#endif
#endif
#ifdef INJECTOR_TSAN
#include <sanitizer/tsan_interface.h>
#define tsan_create(a)      __tsan_mutex_create((void *)(a), __tsan_mutex_not_static)
#define tsan_pre_trylock(a) __tsan_mutex_pre_lock((void *)(a), __tsan_mutex_try_lock)
#define tsan_post_trylock(a, ok)                                                                   \
    __tsan_mutex_post_lock((void *)(a),                                                            \
                           __tsan_mutex_try_lock | ((ok) ? 0u : __tsan_mutex_try_lock_failed), 0)
#define tsan_pre_unlock(a)  ((void)__tsan_mutex_pre_unlock((void *)(a), 0))
#define tsan_post_unlock(a) __tsan_mutex_post_unlock((void *)(a), 0)
#else
#define tsan_create(a)           ((void)(a))
#define tsan_pre_trylock(a)      ((void)(a))
#define tsan_post_trylock(a, ok) ((void)(a), (void)(ok))
#define tsan_pre_unlock(a)       ((void)(a))
#define tsan_post_unlock(a)      ((void)(a))
#endif

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

void moirai__injector_init(moirai__injector_t *inj, uint64_t aging_ns)
{
    inj->aging_ns = aging_ns;
    uint64_t now = aging_now();
    for (int l = 0; l < MOIRAI_PRIORITY_COUNT; l++) {
        moirai__injector_level_t *lv = &inj->level[l];
        atomic_init(&inj->count[l], 0);
        atomic_init(&inj->since[l], now);
        lv->stub.execute = NULL;
        atomic_init(&lv->stub.next, NULL);
        atomic_init(&lv->back, &lv->stub);
        lv->front = &lv->stub;
        atomic_init(&lv->lock, 0);
        tsan_create(&lv->lock);
    }
}

/* ---- One level: Vyukov's intrusive MPSC queue ----
 *
 * The list runs from `front` (oldest) to `back` (newest) through `next`;
 * the stub keeps it from ever being empty, so a producer always has a
 * previous node to link from. A producer makes its job the new back with
 * one exchange and then links the old back to it; between the two, the
 * list is cut after the old back, and the consumer sees the jobs before
 * the cut only (a push in flight, which the level's count still shows). */

static void level_push(moirai__injector_level_t *lv, moirai__job_t *job)
{
    /* Relaxed: published by the release store that links the job in. */
    atomic_store_explicit(&job->next, NULL, memory_order_relaxed);
    /* acq_rel: acquire so that our store to prev->next comes after the
     * previous producer's initialisation of it; release so that the next
     * producer's store to job->next comes after ours above. */
    moirai__job_t *prev = atomic_exchange_explicit(&lv->back, job, memory_order_acq_rel);
    /* Release: the consumer, reading the link with acquire, sees the job
     * and everything its pusher wrote before the push. */
    atomic_store_explicit(&prev->next, job, memory_order_release);
}

/* Takes the oldest linked job, or returns NULL (empty, or the next job's
 * push is in flight). Caller holds the level's lock. A job is returned
 * only once its own `next` is linked, so no producer writes to it again. */
static moirai__job_t *level_pop_locked(moirai__injector_level_t *lv)
{
    moirai__job_t *front = lv->front;
    /* Acquire on every link read: pairs with the producers' release. */
    moirai__job_t *next = atomic_load_explicit(&front->next, memory_order_acquire);
    if (front == &lv->stub) {
        if (next == NULL)
            return NULL;
        lv->front = next;
        front = next;
        next = atomic_load_explicit(&front->next, memory_order_acquire);
    }
    if (next != NULL) {
        lv->front = next;
        return front;
    }
    /* `front` is the last linked job. Unless a push is in flight after it,
     * it is also the back: put the stub behind it, so that it can leave. */
    if (front != atomic_load_explicit(&lv->back, memory_order_acquire))
        return NULL;
    level_push(lv, &lv->stub);
    next = atomic_load_explicit(&front->next, memory_order_acquire);
    if (next != NULL) {
        lv->front = next;
        return front;
    }
    return NULL; /* another producer got in before the stub, still linking */
}

/* The level's consumer lock, tried once: a worker that finds it taken
 * looks elsewhere, as for a push in flight. Acquire on success, release on
 * unlock: `front` is handed from one consumer to the next. */
static bool level_trylock(moirai__injector_level_t *lv)
{
    tsan_pre_trylock(&lv->lock);
    bool ok = atomic_load_explicit(&lv->lock, memory_order_relaxed) == 0 &&
              atomic_exchange_explicit(&lv->lock, 1, memory_order_acquire) == 0;
    tsan_post_trylock(&lv->lock, ok);
    return ok;
}

static void level_unlock(moirai__injector_level_t *lv)
{
    tsan_pre_unlock(&lv->lock);
    atomic_store_explicit(&lv->lock, 0, memory_order_release);
    tsan_post_unlock(&lv->lock);
}

void moirai__injector_push(moirai__injector_t *inj, moirai__job_t *job, int prio)
{
    /* Counted before the push (see injector.h). seq_cst: this is the word
     * the idle protocol's re-check reads. */
    int64_t before = atomic_fetch_add_explicit(&inj->count[prio], 1, memory_order_seq_cst);
    if (before == 0 && inj->aging_ns != 0) {
        /* The level becomes non-empty: its aging clock restarts. A racing
         * pop may overwrite it with its own, equally recent, time. */
        restart_clock(inj, prio, aging_now());
    }
    level_push(&inj->level[prio], job);
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
        if (aging != 0) {
            if (now == 0)
                now = aging_now();
            uint64_t since = atomic_load_explicit(&inj->since[l], memory_order_relaxed);
            /* Whole aging periods waited, each one level more urgent, and
             * on past CRITICAL: a level that waited more than l periods
             * beats a CRITICAL one taken from within the last period, so
             * a CRITICAL stream cannot starve it. Capped so the
             * subtraction cannot overflow. */
            uint64_t periods = now > since ? (now - since) / aging : 0;
            eff = l - (int64_t)(periods < AGING_PERIODS_MAX ? periods : AGING_PERIODS_MAX);
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
    moirai__injector_level_t *lv = &inj->level[best];
    if (!level_trylock(lv))
        return 0; /* another worker is taking from this level */
    size_t got = 0;
    while (got < want) {
        moirai__job_t *job = level_pop_locked(lv);
        if (job == NULL)
            break; /* the next one is being pushed */
        out[got++] = job;
    }
    level_unlock(lv);
    if (got == 0)
        return 0;
    if (aging != 0) {
        /* A task of this level was taken: its clock restarts. */
        restart_clock(inj, best, now != 0 ? now : aging_now());
    }
    atomic_fetch_sub_explicit(&inj->count[best], (int64_t)got, memory_order_relaxed);
    return got;
}
