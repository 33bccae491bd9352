/* Fork-join (see join.h). On a worker the frame for `b` lives on the
 * caller's stack and goes through the worker's own deque. A thread outside
 * the pool takes part: it claims one of the scheduler's guest slots and
 * acts as that worker until its join returns, so its halves go through
 * the guest's deque (the workers steal from it) and, while it waits for a
 * half a worker stole, it runs and steals work like a worker (TBB's arena
 * entry). With every guest slot taken, the frame for `b` goes into one of
 * the external slots while the caller runs `a` itself, and only when those
 * are all taken too is the whole join queued as one "cold" frame on the
 * injector while the caller waits. With cfg.callers_wait the caller does
 * not take part: every outside join is a cold frame. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/sched/join.h>

#include "latch.h"
#include "sched_internal.h"

/* The stealable half of a join. */
typedef struct join_frame {
    moirai__job_t job;
    moirai_join_fn fn;
    void *arg;
    moirai__latch_t latch; /* set once a thief has run fn */
} join_frame_t;

/* Runs on a thief only: the owner runs a frame it pops itself inline. */
static void join_frame_execute(moirai__job_t *job, moirai__worker_t *w)
{
    moirai__watchdog_job_begin(w, NULL);
    join_frame_t *f = (join_frame_t *)job;
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_BEGIN, "sched", "join", NULL, 0);
    f->fn(f->arg);
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_END, "sched", NULL, NULL, 0);
    moirai__latch_set(&f->latch); /* the last touch of the frame */
}

/* A join on worker `w`: push b's frame, run a, then take b back unless it
 * was stolen. Plain loads and stores only, unless b was stolen or a
 * sleeper needs waking. */
static inline __attribute__((always_inline)) void
join_on_worker(moirai__worker_t *w, moirai_join_fn a, void *arg_a, moirai_join_fn b, void *arg_b)
{
    join_frame_t f;
    f.job.execute = join_frame_execute;
    f.fn = b;
    f.arg = arg_b;
    moirai__latch_init(&f.latch);
    if (__builtin_expect(moirai__deque_push(w->deque, &f.job) != 0, 0)) {
        /* The deque could not grow: no parallelism, but no failure. */
        a(arg_a);
        b(arg_b);
        return;
    }
    moirai__stat_add(&w->stats.spawned, 1);
    moirai__sched_notify(w->sched);
    a(arg_a);
    for (;;) {
        moirai__job_t *job = moirai__deque_pop(w->deque);
        if (__builtin_expect(job == &f.job, 1)) {
            moirai__stat_add(&w->stats.executed, 1);
            b(arg_b);
            return;
        }
        if (job == NULL) {
            /* Thieves take the oldest jobs first, so with our frame gone
             * everything below it is gone too: b was stolen. */
            moirai__worker_wait_latch(w, &f.latch);
            return;
        }
        /* Something `a` left on the deque above our frame. */
        moirai__worker_execute(w, job);
    }
}

/* A whole join queued from outside the pool. */
typedef struct cold_frame {
    moirai__job_t job;
    moirai_join_fn a, b;
    void *arg_a, *arg_b;
    moirai__latch_t latch;
} cold_frame_t;

static void cold_frame_execute(moirai__job_t *job, moirai__worker_t *w)
{
    cold_frame_t *f = (cold_frame_t *)job;
    moirai__watchdog_job_begin(w, NULL);
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_BEGIN, "sched", "join", NULL, 0);
    join_on_worker(w, f->a, f->arg_a, f->b, f->arg_b);
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_END, "sched", NULL, NULL, 0);
    /* The caller counts the join finished for shutdown once this returns. */
    moirai__latch_set(&f->latch);
}

__thread moirai_sched_t *moirai__tls_participant __attribute__((tls_model("initial-exec")));

/* The calling thread's nesting depth of external joins (0 outside any). */
__thread uint32_t moirai__tls_ext_depth __attribute__((tls_model("initial-exec")));

moirai__job_t *moirai__sched_take_ext_slot(moirai_sched_t *s)
{
    /* Two passes at most: a lost race means another thread took the frame
     * or its caller took it back, and the next shallowest is as good. */
    for (int pass = 0; pass < 2; pass++) {
        int best = -1;
        uint32_t best_depth = UINT32_MAX;
        for (int i = 0; i < MOIRAI__EXT_SLOTS; i++) {
            /* Relaxed: only choosing; the CAS below decides. */
            if (atomic_load_explicit(&s->ext_slot[i].job, memory_order_relaxed) == NULL)
                continue;
            uint32_t d = atomic_load_explicit(&s->ext_slot[i].depth, memory_order_relaxed);
            if (d < best_depth) {
                best = i;
                best_depth = d;
            }
        }
        if (best < 0)
            return NULL;
        _Atomic(moirai__job_t *) *slot = &s->ext_slot[best].job;
        moirai__job_t *job = atomic_load_explicit(slot, memory_order_relaxed);
        /* Acquire on success: the caller published the frame with a
         * release CAS. Only one CAS can move this frame out of the slot,
         * the caller's or ours, so exactly one side runs b. */
        if (job != NULL && atomic_compare_exchange_strong_explicit(
                               slot, &job, NULL, memory_order_acquire, memory_order_relaxed)) {
            atomic_fetch_sub_explicit(&s->ext_used, 1, memory_order_relaxed);
            return job;
        }
    }
    return NULL;
}

/* Offers `f` in a free slot of `s`. Returns the slot, or NULL when all are
 * taken. */
static _Atomic(moirai__job_t *) *offer(moirai_sched_t *s, join_frame_t *f)
{
    /* Counted first, so that the count never says "empty" while a frame
     * sits in a slot. seq_cst: the Dekker half of the idle protocol (a
     * worker about to sleep re-reads the count). */
    atomic_fetch_add_explicit(&s->ext_used, 1, memory_order_seq_cst);
    /* Start where this thread's stack address points, so that concurrent
     * external callers spread over the slots. */
    unsigned start = (unsigned)((uintptr_t)f >> 6) % MOIRAI__EXT_SLOTS;
    for (unsigned k = 0; k < MOIRAI__EXT_SLOTS; k++) {
        _Atomic(moirai__job_t *) *slot = &s->ext_slot[(start + k) % MOIRAI__EXT_SLOTS].job;
        moirai__job_t *expected = NULL;
        /* Release: a worker that takes the frame sees it initialised and
         * everything the caller wrote before the join. */
        if (atomic_load_explicit(slot, memory_order_relaxed) == NULL &&
            atomic_compare_exchange_strong_explicit(slot, &expected, &f->job, memory_order_release,
                                                    memory_order_relaxed)) {
            /* Relaxed, and after the frame is visible: the depth only
             * guides which frame a worker prefers, so a stale one briefly
             * costs balance, never correctness. */
            atomic_store_explicit(&s->ext_slot[(start + k) % MOIRAI__EXT_SLOTS].depth,
                                  moirai__tls_ext_depth, memory_order_relaxed);
            return slot;
        }
    }
    atomic_fetch_sub_explicit(&s->ext_used, 1, memory_order_relaxed);
    return NULL;
}

/* The whole join queued as one cold frame, when every slot is taken. */
static void join_cold(moirai_sched_t *sched, moirai_join_fn a, void *arg_a, moirai_join_fn b,
                      void *arg_b)
{
    cold_frame_t f;
    f.job.execute = cold_frame_execute;
    f.a = a;
    f.arg_a = arg_a;
    f.b = b;
    f.arg_b = arg_b;
    moirai__latch_init(&f.latch);
    moirai__sched_inject(sched, &f.job, MOIRAI_PRIORITY_NORMAL);
    moirai__latch_wait(&f.latch);
}

/* Claims a free guest slot of `s`, or returns NULL when all are taken. */
static moirai__worker_t *guest_claim(moirai_sched_t *s)
{
    for (int k = 0; k < MOIRAI__GUEST_SLOTS; k++) {
        uint32_t expected = 0;
        /* Acquire on success: pairs with the previous guest's release in
         * guest_release(), so this thread sees the slot's deque, counters
         * and single-writer fields as that guest left them. */
        if (atomic_load_explicit(&s->guest_taken[k], memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong_explicit(&s->guest_taken[k], &expected, 1,
                                                    memory_order_acquire, memory_order_relaxed)) {
            /* Relaxed: only tells searching workers to look at the guest
             * slots (see find_work()); missing it costs parallelism. */
            atomic_fetch_add_explicit(&s->guests_active, 1, memory_order_relaxed);
            return &s->workers[s->nworkers + k];
        }
    }
    return NULL;
}

/* Gives guest slot `g` back. What the guest queued and nobody took yet
 * (tasks spawned inside the join, injector jobs it took in a batch) goes to
 * the injector: the caller returns now, and those jobs, already counted
 * for shutdown on this slot, are run and counted out by the workers. */
static void guest_release(moirai_sched_t *s, moirai__worker_t *g)
{
    /* Acquire: a job in the slot was published with release. */
    moirai__job_t *job = atomic_exchange_explicit(&g->lifo, NULL, memory_order_acquire);
    if (job != NULL)
        moirai__sched_inject(s, job, MOIRAI_PRIORITY_NORMAL);
    while ((job = moirai__deque_pop(g->deque)) != NULL)
        moirai__sched_inject(s, job, MOIRAI_PRIORITY_NORMAL);
    atomic_fetch_sub_explicit(&s->guests_active, 1, memory_order_relaxed);
    /* Release: the next guest of this slot, claiming it with acquire,
     * takes over the deque and counters as they are now. */
    atomic_store_explicit(&s->guest_taken[g->index - s->nworkers], 0, memory_order_release);
}

/* A join run by the calling thread as a guest worker of `sched`. Returns
 * false (nothing ran) when every guest slot is taken. */
static bool join_as_guest(moirai_sched_t *sched, moirai_join_fn a, void *arg_a, moirai_join_fn b,
                          void *arg_b)
{
    moirai__worker_t *g = guest_claim(sched);
    if (g == NULL)
        return false;
    /* The thread may be a worker (or guest) of another scheduler: that
     * identity comes back once the join is done. */
    moirai__worker_t *saved = moirai__tls_worker;
    g->home = saved;
    moirai__tls_worker = g;
    join_on_worker(g, a, arg_a, b, arg_b);
    moirai__tls_worker = saved;
    guest_release(sched, g);
    return true;
}

/* A join from a thread that is not one of `sched`'s workers: as a guest
 * worker if a guest slot is free, else through the external slots, or as
 * one cold frame while the caller waits (cfg.callers_wait). */
static void join_outside(moirai_sched_t *sched, moirai_join_fn a, void *arg_a, moirai_join_fn b,
                         void *arg_b);

/* A join from a thread that is not one of `sched`'s workers: b goes into
 * an external slot and the caller runs a, then takes b back unless a
 * worker took it. */
static void join_external(moirai_sched_t *sched, moirai_join_fn a, void *arg_a, moirai_join_fn b,
                          void *arg_b)
{
    join_frame_t f;
    f.job.execute = join_frame_execute;
    f.fn = b;
    f.arg = arg_b;
    moirai__latch_init(&f.latch);
    _Atomic(moirai__job_t *) *slot = offer(sched, &f);
    if (slot == NULL) {
        join_cold(sched, a, arg_a, b, arg_b);
        return;
    }
    /* (The guest slots were all taken when this thread tried them.) */
    moirai__sched_notify(sched);
    /* While this thread runs a (and b), joins nested in them use the slots
     * of the same scheduler, so that nested splits stay parallel. */
    moirai_sched_t *outer = moirai__tls_participant;
    moirai__tls_participant = sched;
    moirai__tls_ext_depth++;
    a(arg_a);
    moirai__job_t *expected = &f.job;
    /* Relaxed on success: the frame never left this thread. */
    if (atomic_compare_exchange_strong_explicit(slot, &expected, NULL, memory_order_relaxed,
                                                memory_order_relaxed)) {
        atomic_fetch_sub_explicit(&sched->ext_used, 1, memory_order_relaxed);
        b(arg_b);
        moirai__tls_ext_depth--;
        moirai__tls_participant = outer;
    } else {
        moirai__tls_ext_depth--;
        moirai__tls_participant = outer;
        /* A worker took b: wait for it (spin, then park). Acquire. */
        moirai__latch_wait(&f.latch);
    }
}

static void join_outside(moirai_sched_t *sched, moirai_join_fn a, void *arg_a, moirai_join_fn b,
                         void *arg_b)
{
    if (sched->cfg.callers_wait)
        join_cold(sched, a, arg_a, b, arg_b);
    else if (!join_as_guest(sched, a, arg_a, b, arg_b))
        join_external(sched, a, arg_a, b, arg_b);
}

int moirai_join(moirai_sched_t *sched, moirai_join_fn a, void *arg_a, moirai_join_fn b, void *arg_b)
{
    if (a == NULL || b == NULL)
        return -EINVAL;
    moirai__worker_t *w = moirai__worker_current();
    if (__builtin_expect(w != NULL && (sched == NULL || sched == w->sched), 1)) {
        join_on_worker(w, a, arg_a, b, arg_b);
        return 0;
    }
    /* Not a worker here when sched is NULL (see above): the scheduler of
     * an enclosing outside join, else the process default. */
    moirai_sched_t *outer = moirai__tls_participant;
    if (sched == NULL)
        sched = outer;
    if (sched == NULL) {
        int rc = moirai_sched_default(&sched);
        if (rc != 0)
            return rc;
    }
    if (sched == outer) {
        /* Nested in an external join already counted for shutdown: it
         * runs even once destroy has begun. */
        join_outside(sched, a, arg_a, b, arg_b);
        return 0;
    }
    int rc = moirai__sched_gate_enter(sched);
    if (rc != 0)
        return rc;
    join_outside(sched, a, arg_a, b, arg_b);
    /* Finished: release, as destroy reads it with acquire. */
    atomic_fetch_add_explicit(&sched->ext_finished, 1, memory_order_release);
    return 0;
}
