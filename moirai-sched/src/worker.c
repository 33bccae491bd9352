/* Workers: how a worker finds work and runs it. The pick order over its
 * own queues, stealing, searching, and the entry points (the worker
 * threads' loops, help-while-waiting for latches and handles). See sched.h
 * for the rules and sched_internal.h for the idle protocol.
 *
 * Sleeping and waking are in idle.c: a worker enters it only once its
 * search found nothing, so the path from one job to the next (pick, steal,
 * search) stays in this file, with its static helpers inlinable. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/core/park.h>
#include <moirai/core/spin.h>
#include <moirai/sched/job.h>

#include "moirai_probe.h"
#include "sched_internal.h"

__thread moirai__worker_t *moirai__tls_worker __attribute__((tls_model("initial-exec")));

/* Most jobs one batch steal takes (it takes up to half of the victim's). */
#define STEAL_BATCH_MAX 32

/* ---- Local queues ---- */

static moirai__job_t *take_lifo(moirai__worker_t *v)
{
    /* Look before the exchange, so that an empty slot costs a load, not
     * a locked instruction. Acquire: the job's contents were published by
     * the release half of the pusher's exchange. */
    if (atomic_load_explicit(&v->lifo, memory_order_relaxed) == NULL)
        return NULL;
    return atomic_exchange_explicit(&v->lifo, NULL, memory_order_acquire);
}

static moirai__job_t *take_inbox(moirai__worker_t *v)
{
    if (atomic_load_explicit(&v->inbox_count, memory_order_relaxed) <= 0)
        return NULL;
    void *item;
    if (moirai_queue_try_pop(v->inbox, &item) != 0)
        return NULL; /* being pushed, or taken by someone else */
    atomic_fetch_sub_explicit(&v->inbox_count, 1, memory_order_relaxed);
    return item;
}

/* Most NORMAL injector jobs a worker takes at once. */
#define INJECTOR_BATCH 16

/* Takes the injector's most urgent job; from the NORMAL level, a batch:
 * the first is returned and the rest go to the worker's deque, pushed
 * newest first so that the owner pops them oldest first (FIFO kept), and
 * thieves may take them from there. A batch costs one update of the
 * injector's shared counts instead of one per job, which matters when one
 * thread feeds the pool from outside. */
static moirai__job_t *take_injector_batch(moirai__worker_t *w)
{
    moirai__job_t *batch[INJECTOR_BATCH];
    moirai_sched_t *s = w->sched;
    size_t n = moirai__injector_pop_many(&s->inj, MOIRAI_PRIORITY_COUNT, batch, INJECTOR_BATCH,
                                         s->nworkers);
    if (n == 0)
        return NULL;
    size_t kept = 1;
    for (size_t i = n - 1; i >= 1; i--) {
        if (moirai__deque_push(w->deque, batch[i]) != 0) {
            /* No room: run the rest here, in order, one by one. */
            for (size_t k = 1; k <= i; k++)
                moirai__worker_execute(w, batch[k]);
            break;
        }
        kept++;
    }
    if (kept > 1)
        moirai__sched_notify(s);
    return batch[0];
}

/* One pass over the worker's own sources in the documented order: urgent
 * injector work, LIFO slot, deque, inbox, injector at any level. */
static moirai__job_t *pick_local(moirai__worker_t *w)
{
    moirai_sched_t *s = w->sched;
    moirai__job_t *job;
    /* A guest leaves the injector to the workers: what is queued there
     * (root tasks, runtime jobs at any level) is theirs, and the outside
     * caller should return as soon as its own join is done. */
    bool inj = !w->guest && moirai__injector_maybe(&s->inj);
    if (inj && (job = moirai__injector_pop(&s->inj, MOIRAI_PRIORITY_NORMAL)) != NULL)
        return job;
    if ((job = take_lifo(w)) != NULL)
        return job;
    if ((job = moirai__deque_pop(w->deque)) != NULL)
        return job;
    if ((job = take_inbox(w)) != NULL)
        return job;
    if (inj)
        return take_injector_batch(w);
    return NULL;
}

/* ---- Stealing ---- */

static moirai__job_t *steal_from(moirai__worker_t *w, moirai__worker_t *v)
{
    moirai_sched_t *s = w->sched;
    moirai__job_t *job = NULL;
    moirai__stat_add(&w->stats.steal_attempts, 1);
    size_t got;
    if (!s->cfg.steal_one) {
        moirai__steal_t st;
        got = moirai__deque_steal_batch(v->deque, w->deque, &job, STEAL_BATCH_MAX, &st);
    } else {
        got = moirai__deque_steal(v->deque, &job) == MOIRAI__STEAL_SUCCESS ? 1 : 0;
    }
    if (got == 0 && (job = take_lifo(v)) != NULL)
        got = 1;
    if (got == 0 && (job = take_inbox(v)) != NULL)
        got = 1;
    if (got == 0)
        return NULL;
    MOIRAI_PROBE3(steal, w->index, v->index, got);
    moirai__stat_add(&w->stats.steals, 1);
    moirai__stat_add(&w->stats.stolen, got);
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_INSTANT, "sched", "steal", "jobs", (int64_t)got);
    return job;
}

moirai__job_t *moirai__worker_steal_guests(moirai__worker_t *w)
{
    moirai_sched_t *s = w->sched;
    for (int k = 0; k < MOIRAI__GUEST_SLOTS; k++) {
        moirai__worker_t *g = &s->workers[s->nworkers + k];
        /* Relaxed: only choosing; an empty or released slot's deque is
         * empty, and the steal's own CAS decides. */
        if (g == w || atomic_load_explicit(&s->guest_taken[k], memory_order_relaxed) == 0)
            continue;
        moirai__job_t *job = steal_from(w, g);
        if (job != NULL)
            return job;
    }
    return NULL;
}

/* One round over every victim, tier by tier, each tier from a random
 * start. */
static moirai__job_t *steal(moirai__worker_t *w)
{
    const moirai__victims_t *vs = &w->victims;
    int start = 0;
    for (int t = 0; t < MOIRAI__TIERS; t++) {
        int end = vs->tier_end[t];
        int n = end - start;
        if (n > 0) {
            int off = (int)(moirai__victims_rand(&w->rng) % (uint32_t)n);
            for (int i = 0; i < n; i++) {
                int k = off + i;
                if (k >= n)
                    k -= n;
                moirai__job_t *job = steal_from(w, &w->sched->workers[vs->order[start + k]]);
                if (job != NULL)
                    return job;
            }
        }
        start = end;
    }
    return NULL;
}

/* ---- Searching ---- */

/* Counts w as searching, unless half of the workers (at least one)
 * search already, as Tokio limits it: more thieves than that find nothing
 * more, and on a machine with fewer CPUs than threads they take CPU time
 * from the workers and spawners that do have work. Returns whether w
 * searches. */
static bool search_begin(moirai__worker_t *w)
{
    if (w->searching)
        return true;
    moirai_sched_t *s = w->sched;
    /* Relaxed: a heuristic; two workers that pass at once both search. */
    uint64_t v = atomic_load_explicit(&s->idle, memory_order_relaxed);
    if (2 * (uint64_t)MOIRAI__IDLE_SEARCHING(v) >= (uint64_t)s->nworkers &&
        MOIRAI__IDLE_SEARCHING(v) != 0)
        return false;
    w->searching = true;
    /* Relaxed is enough: being counted as searching only suppresses wakes,
     * and a searcher re-checks every queue before it sleeps. */
    atomic_fetch_add_explicit(&s->idle, MOIRAI__IDLE_SEARCHER, memory_order_relaxed);
    return true;
}

static void search_end(moirai__worker_t *w)
{
    if (!w->searching)
        return;
    w->searching = false;
    /* seq_cst: pairs with a spawner's seq_cst count-then-read: if that
     * spawner saw this worker searching and so woke nobody, this RMW comes
     * after its read, and the wake below covers its job. */
    uint64_t prev =
        atomic_fetch_sub_explicit(&w->sched->idle, MOIRAI__IDLE_SEARCHER, memory_order_seq_cst);
    /* The last searcher to find work wakes a sleeper whatever it sees: a
     * spawner that found it searching woke nobody, and the job that spawner
     * left may sit in any worker's deque, which this worker cannot cheaply
     * see (Go's resetspinning and Tokio's transition_worker_from_searching
     * do the same). The woken worker searches, and sleeps again if it finds
     * nothing. */
    if (MOIRAI__IDLE_SEARCHING(prev) == 1 && MOIRAI__IDLE_SLEEPING(prev) != 0)
        moirai__idle_wake_one(w->sched, NULL);
}

/* search_end() after a poll of outside work: the fiber the poll woke sits
 * in this worker's LIFO slot and runs next, on this worker, so a sleeper
 * is woken only if some other job waits. Without this, every I/O event
 * would wake a second worker that searches for nothing (spin_ns) and
 * sleeps again. The Dekker pair of search_end() still holds: the
 * decrement comes before the look (both seq_cst), so a spawner that saw
 * this worker searching, and woke nobody, has its job seen here. */
static void search_end_after_poll(moirai__worker_t *w)
{
    if (!w->searching)
        return;
    w->searching = false;
    uint64_t prev =
        atomic_fetch_sub_explicit(&w->sched->idle, MOIRAI__IDLE_SEARCHER, memory_order_seq_cst);
    /* A guest's deque is not in moirai__idle_work_queued(): it counts as work too. */
    if (MOIRAI__IDLE_SEARCHING(prev) == 1 && MOIRAI__IDLE_SLEEPING(prev) != 0 &&
        (moirai__idle_work_queued(w->sched, w) ||
         atomic_load_explicit(&w->sched->guests_active, memory_order_seq_cst) > 0))
        moirai__idle_wake_one(w->sched, NULL);
}

/* Runs the idle hooks' poll on a hooked worker. */
static void poll_outside(moirai__worker_t *w, bool busy)
{
    const moirai_sched_idle_hooks_t *h = w->sched->cfg.idle_hooks;
    w->poll_tick = 0;
    h->poll(h->arg, w->index, busy);
}

/* Looks for work: the local pick, then searching (stealing) for up to
 * spin_ns, or one look around if enough workers search already (a worker
 * waiting for a latch always searches: its wait should end without a
 * wake-up). Returns a job, or NULL (still counted as searching if it
 * was) when nothing turned up, the latch (if any) was set, or the pool
 * stops. */
static moirai__job_t *find_work(moirai__worker_t *w, const moirai__helping_t *h)
{
    moirai__job_t *job = pick_local(w);
    if (job != NULL) {
        search_end(w);
        return job;
    }
    /* No job at hand: from here the time is not the last job's. */
    moirai__watchdog_idle(w);
    moirai_sched_t *s = w->sched;
    bool spin = search_begin(w) || h != NULL;
    uint64_t deadline = 0;
    for (unsigned round = 0;; round++) {
        if (atomic_load_explicit(&s->ext_used, memory_order_relaxed) > 0 &&
            (job = moirai__sched_take_ext_slot(s)) != NULL)
            break;
        if (w->victims.count > 0 && (job = steal(w)) != NULL)
            break;
        /* Relaxed: a guest's pushes are plain deque pushes like a
         * worker's; a guest seen late only costs parallelism, and the guest
         * runs its own jobs itself. */
        if (atomic_load_explicit(&s->guests_active, memory_order_relaxed) > 0 &&
            (job = moirai__worker_steal_guests(w)) != NULL)
            break;
        if ((job = pick_local(w)) != NULL)
            break;
        /* A hooked worker that has just run a job also looks for outside
         * work while it searches (at once, then every 32 rounds): the I/O
         * a fiber just parked for may be ready already, and the search
         * spin would otherwise delay it by up to spin_ns. A worker that
         * was woken does not: it would take that I/O from the worker that
         * is running the other end of the exchange, on a warm cache. */
        if (w->hooked && h == NULL && w->just_ran && round % 32 == 0) {
            poll_outside(w, false);
            if ((job = pick_local(w)) != NULL) {
                search_end_after_poll(w);
                return job;
            }
        }
        if (h != NULL && moirai__helping_done(h))
            return NULL;
        if (atomic_load_explicit(&s->stop, memory_order_relaxed) || !spin)
            return NULL;
        uint64_t now = moirai_clock_now_ns();
        if (round == 0)
            deadline = now + s->cfg.spin_ns;
        else if (now >= deadline)
            return NULL;
        /* Every 16 rounds (a few microseconds) the search gives its CPU
         * to any thread waiting for it: on a CPU shared with other work,
         * the thread this worker's search is waiting for (the other end
         * of an exchange, often just woken on this CPU) would otherwise
         * wait out the whole spin_ns. Alone on its CPU, the call returns
         * at once. */
        if (round % 16 == 15)
            sched_yield();
        else
            for (int i = 0; i < 8; i++)
                moirai_cpu_relax();
    }
    search_end(w);
    return job;
}

/* ---- Entry points ---- */

/* Runs the scheduler's jobs, and sleeps when there are none, until what
 * `h` waits for is over. */
static void help_until(moirai__worker_t *w, const moirai__helping_t *h)
{
    /* The job that waits; the jobs run meanwhile, and the idle spells,
     * replace its name for the watchdog, which gets it back below. */
    const char *waiting =
        w->watchdog ? atomic_load_explicit(&w->stats.job_name, memory_order_relaxed) : NULL;
    while (!moirai__helping_done(h)) {
        moirai__job_t *job = find_work(w, h);
        if (job != NULL) {
            moirai__worker_execute(w, job);
            continue;
        }
        if (moirai__helping_done(h))
            break;
        moirai__idle_sleep(w, h);
    }
    /* Not searching any more: it goes back to the job that waited. */
    search_end(w);
    if (w->watchdog)
        atomic_store_explicit(&w->stats.job_name, waiting, memory_order_relaxed);
}

void moirai__worker_wait_latch(moirai__worker_t *w, moirai__latch_t *latch)
{
    moirai__helping_t h = {.latch = latch};
    help_until(w, &h);
}

/* The handle waiter (moirai_handle_waiter_set()) of every worker thread:
 * a task that joins a handle runs the scheduler's other work meanwhile, so
 * a join of a child queued behind it (on one worker, or with every worker
 * joining) cannot deadlock. */
static int wait_handle(void *arg, moirai_handle_t *handle, uint64_t deadline)
{
    moirai__helping_t h = {.handle = handle, .deadline = deadline};
    help_until(arg, &h);
    return moirai_handle_is_finished(handle) ? 0 : -ETIMEDOUT;
}

int moirai__worker_push(moirai__worker_t *w, moirai__job_t *job)
{
    int rc = moirai__deque_push(w->deque, job);
    if (rc != 0)
        return rc;
    moirai__stat_add(&w->stats.spawned, 1);
    moirai__sched_notify(w->sched);
    return 0;
}

/* Names the calling worker's thread "moirai-w<index>" (a compensating
 * one "moirai-c<index>"), so that top -H, gdb and the lanes of a trace
 * (docs/observability.md) tell workers apart. Best effort: the kernel
 * limits names to 15 bytes, and a failure changes nothing else. */
static void name_thread(const moirai__worker_t *w, char kind)
{
    char name[16];
    snprintf(name, sizeof name, "moirai-%c%d", kind, w->index);
    (void)pthread_setname_np(pthread_self(), name);
}

/* Runs a worker start or exit hook (cfg.on_worker_start / _exit), if
 * set, on the worker's own thread. */
static void worker_hook(moirai__worker_t *w, moirai_sched_worker_cb hook)
{
    if (hook != NULL)
        hook(w->sched->cfg.worker_hook_arg, w->index);
}

void *moirai__worker_main(void *arg)
{
    moirai__worker_t *w = arg;
    moirai_sched_t *s = w->sched;
    moirai__tls_worker = w;
    moirai_handle_waiter_set(wait_handle, w);
    name_thread(w, 'w');
    if (s->cfg.pin_workers) {
        /* Best effort: a CPU the topology names (for example a synthetic
         * one) may not exist here; the worker then runs unpinned. */
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    /* The start hook runs before the worker counts as started, so that
     * create returns only after every regular worker's hook has returned
     * (the release below publishes what it wrote to create's caller). */
    worker_hook(w, s->cfg.on_worker_start);
    atomic_fetch_add_explicit(&s->started, 1, memory_order_release);
    moirai_unpark_all(&s->started);

    while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
        moirai__job_t *job = find_work(w, NULL);
        if (job != NULL) {
            moirai__worker_execute(w, job);
            w->just_ran = true;
            if (w->hooked && ++w->poll_tick >= MOIRAI_SCHED_IDLE_POLL_JOBS)
                poll_outside(w, true);
            continue;
        }
        w->just_ran = false;
        if (moirai__idle_sleep(w, NULL)) {
            poll_outside(w, false);
            search_end_after_poll(w);
        }
    }
    search_end(w);
    /* Still a worker for the hook; destroy joins this thread afterwards,
     * so the hook's writes happen before destroy returns. */
    worker_hook(w, s->cfg.on_worker_exit);
    moirai_handle_waiter_set(NULL, NULL);
    moirai__tls_worker = NULL;
    return NULL;
}

void *moirai__worker_comp_main(void *arg)
{
    moirai__worker_t *w = arg;
    moirai_sched_t *s = w->sched;
    moirai__tls_worker = w;
    moirai_handle_waiter_set(wait_handle, w);
    name_thread(w, 'c');
    worker_hook(w, s->cfg.on_worker_start);
    int k = w->index - s->nregular;
    while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
        moirai__job_t *job = find_work(w, NULL);
        if (job != NULL) {
            moirai__worker_execute(w, job);
            continue;
        }
        /* find_work() returns NULL only with the worker's own queues empty
         * (its deque and LIFO slot are its own, and no hint targets a
         * compensating slot), so nothing is left behind. Relaxed: see
         * comp_wanted. */
        if (k >= atomic_load_explicit(&s->comp_wanted, memory_order_relaxed))
            break;
        moirai__idle_sleep(w, NULL);
    }
    search_end(w);
    moirai__watchdog_idle(w);
    worker_hook(w, s->cfg.on_worker_exit);
    moirai_handle_waiter_set(NULL, NULL);
    moirai__tls_worker = NULL;
    /* Release: the watchdog, reading it with acquire, joins the thread and
     * may start the slot afresh, seeing everything this thread wrote. */
    atomic_store_explicit(&w->comp_state, MOIRAI__COMP_EXITED, memory_order_release);
    return NULL;
}
