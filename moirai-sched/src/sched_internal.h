/* The scheduler's internals shared by sched.c, sched_lifecycle.c,
 * sched_query.c, worker.c, idle.c, join.c, latch.c and injector.c
 * (internal; the behaviour users see is in sched.h).
 *
 * Layout: a moirai_sched owns an array of workers, the injector, the pool
 * of heap tasks, the idle state and the sleeper list. Each worker owns a
 * Chase-Lev deque, a LIFO slot and an inbox (for locality hints).
 *
 * Idle protocol (after Go's and Tokio's): `idle` packs the number of
 * searching workers (low 32 bits) and of sleeping ones (high 32 bits).
 *   - A worker that finds nothing in its own queues becomes searching
 *     (steals) for spin_ns, then sleeps: under the sleeper lock it adds
 *     itself to the sleeper list and moves itself from searching to
 *     sleeping with one seq_cst read-modify-write of `idle`, then re-checks
 *     every queue, and only then parks on its own futex word (or on the
 *     latch it waits for).
 *   - Whoever makes a job visible (spawn, join push, batch steal leftovers)
 *     then reads `idle`; if nobody is searching and somebody sleeps, it
 *     wakes one sleeper, which counts as searching from then on.
 *   - A searching worker that finds work stops searching; if it was the
 *     last searcher and somebody sleeps, it wakes one more sleeper (the
 *     work a spawner left while it searched may sit in any deque).
 * Lost wake-ups: a pusher's job is counted by a seq_cst RMW (injector,
 * inbox) before it reads `idle` with seq_cst, and the sleeper's RMW of
 * `idle` precedes its seq_cst re-check, so one of the two sees the other.
 * This holds for every pusher onto the injector alike: spawns, cold join
 * frames and runtime jobs (moirai_sched_job_submit() from any thread goes
 * through moirai__sched_inject(), which counts, then notifies). Deque and
 * LIFO pushes by a worker (local spawns, joins, runtime jobs submitted
 * NORMAL on a worker) are plain release stores; a wake missed there only
 * costs parallelism, since the pushing worker runs its own jobs itself
 * (see moirai__sched_notify()).
 *
 * Guests (join.c): an outside thread inside a join acts as a worker slot
 * of its own (index nworkers and up), so all of the above applies to it
 * as to a worker: its pushes are plain deque pushes, it searches and
 * sleeps on a latch as a waiting worker does, and what it spawns is
 * counted on its slot's tasks_in, which destroy sums with the workers'.
 *
 * Shutdown accounting: every heap task, every external join frame and
 * every runtime job submission is counted once when accepted (`gate` for
 * external spawns and external job submissions, the worker's own
 * `tasks_in` for spawns and submissions from a worker) and once when
 * finished or discarded (the executing worker's `tasks_out`, or
 * `ext_finished` when an accepted external spawn could not be queued).
 * All counts only grow; destroy reads the finished side first and the
 * accepted side second, and the pool is quiescent when they are equal
 * (see sched_lifecycle.c). External spawns and joins are refused once destroy has
 * set the gate's SHUT bit, so nothing new arrives from outside after
 * that; external job submissions are never refused (they add to `gate`
 * past the SHUT bit), and job.h makes the runtime responsible for
 * letting every one of them return before destroy does. */
#ifndef MOIRAI_SCHED_SCHED_INTERNAL_H
#define MOIRAI_SCHED_SCHED_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/cache.h>
#include <moirai/core/clock.h>
#include <moirai/core/executor.h>
#include <moirai/core/handle.h>
#include <moirai/core/trace.h>
#include <moirai/mem/pool.h>
#include <moirai/sched/sched.h>
#include <moirai/sync/queue.h>

#include "blocking.h"
#include "deque.h"
#include "injector.h"
#include "job.h"
#include "latch.h"
#include "victims.h"

/* External join slots per scheduler (see struct moirai_sched). */
#define MOIRAI__EXT_SLOTS 32

/* Guest worker slots per scheduler (see struct moirai_sched). */
#define MOIRAI__GUEST_SLOTS 4

/* `idle` fields. */
#define MOIRAI__IDLE_SEARCHER     UINT64_C(1)
#define MOIRAI__IDLE_SLEEPER      (UINT64_C(1) << 32)
#define MOIRAI__IDLE_SEARCHING(v) ((uint32_t)((v)&0xffffffffu))
#define MOIRAI__IDLE_SLEEPING(v)  ((uint32_t)((v) >> 32))

/* `comp_state` of a compensating slot. */
#define MOIRAI__COMP_IDLE    0u /* no thread */
#define MOIRAI__COMP_RUNNING 1u /* a thread runs in the slot */
#define MOIRAI__COMP_EXITED  2u /* its thread has returned and awaits pthread_join */

/* `gate`: destroy has begun, and the count of accepted external spawns
 * (tasks and external join frames). */
#define MOIRAI__GATE_SHUT  (UINT64_C(1) << 63)
#define MOIRAI__GATE_COUNT (MOIRAI__GATE_SHUT - 1)

/* A worker's counters: written by the worker only (relaxed load plus
 * store, no read-modify-write), read by anyone. One cache line of its own
 * so that readers do not disturb the hot fields. */
typedef struct moirai__worker_stats {
    alignas(MOIRAI_CACHE_LINE) _Atomic uint64_t spawned;
    _Atomic uint64_t executed;
    _Atomic uint64_t steal_attempts;
    _Atomic uint64_t steals;
    _Atomic uint64_t stolen;
    _Atomic uint64_t parks;
    _Atomic uint64_t task_cpu_ns;
    /* The name of the job the worker runs (never NULL while it runs one:
     * "(unnamed)" then), or NULL while it looks for work; written only with
     * the watchdog on (see moirai__watchdog_job_begin()). With `executed`,
     * what the watchdog samples. On this line, which the worker writes for
     * every job anyway. */
    _Atomic(const char *) job_name;
    /* Written by the watchdog thread only (single writer). */
    _Atomic uint64_t watchdog_reports;
    _Atomic uint64_t compensating_started;
} moirai__worker_stats_t;

/* Adds `n` to a single-writer counter (the owner is the only writer, so a
 * relaxed load and store suffice and cost no locked instruction). */
static inline void moirai__stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

typedef struct moirai__worker {
    /* What thieves touch. */
    alignas(MOIRAI_CACHE_LINE) _Atomic(moirai__job_t *) lifo;
    moirai__deque_t *deque;
    moirai_queue_t *inbox;
    _Atomic int64_t inbox_count; /* raised before the push, lowered after the pop */

    /* The owner's. */
    alignas(MOIRAI_CACHE_LINE) struct moirai_sched *sched;
    int index;
    int cpu;  /* kernel CPU number this worker is associated with */
    int node; /* its NUMA node */
    uint32_t rng;
    bool searching; /* this worker counts itself in `idle` as searching */
    bool watchdog;  /* cfg.watchdog_ns != 0: publish job names (read-only) */
    bool guest;     /* a guest slot (index >= nworkers; read-only) */
    moirai__victims_t victims;
    pthread_t thread;
    /* For a compensating slot: written by the watchdog thread (which
     * starts and joins those), read by destroy after joining it. */
    bool thread_started;
    /* Compensating slots only: MOIRAI__COMP_* (see watchdog.c). */
    _Atomic uint32_t comp_state;
    /* Heap tasks (and external join frames) accepted by spawns from this
     * worker, and those this worker finished or discarded. Single writer;
     * tasks_out is stored with release so that destroy, reading it with
     * acquire, also sees the accepting increment of every task it counts. */
    _Atomic uint64_t tasks_in;
    _Atomic uint64_t tasks_out;

    /* Sleeping. `park_word` is 1 while the worker sleeps on it; `listed` is
     * true while it is in the sleeper list (written under the sleeper lock,
     * read by the worker with acquire); `wake_addr` is what a waker
     * unparks (the park word, the latch the worker waits for, or
     * `join_word` while a task on it joins a handle: SLEEPY while the
     * worker sleeps on it, turned back by a waker as a latch is). */
    alignas(MOIRAI_CACHE_LINE) _Atomic uint32_t park_word;
    _Atomic uint32_t join_word;
    _Atomic bool listed;
    _Atomic uint32_t *wake_addr; /* under the sleeper lock */
    int sleep_slot;              /* index in the sleeper list, under the lock */
    /* Idle hooks (cfg.idle_hooks) serve this worker: a regular one. */
    bool hooked;
    uint32_t poll_tick; /* jobs run since the last poll hook call (owner only) */
    bool just_ran;      /* the last thing it did was run a job (owner only) */
    /* Guest slots only: the thread's own identity while it is this guest
     * (a worker of another scheduler, or NULL), which the queries report. */
    struct moirai__worker *home;

    moirai__worker_stats_t stats;
} moirai__worker_t;

struct moirai_sched {
    moirai_executor_t executor;          /* moirai_sched_executor(); first member */
    moirai_executor_t blocking_executor; /* what moirai_sched_spawn_blocking() uses */
    moirai_executor_t owned_executor;    /* what moirai__sched_spawn_owned() uses */
    moirai_sched_config_t cfg;           /* with defaults filled in */
    int nworkers;                        /* slots: regular workers, then compensating ones */
    int nregular;                        /* cfg.workers: the slots started at create */
    int nslots;                          /* nworkers plus MOIRAI__GUEST_SLOTS guest slots */
    moirai__worker_t *workers;
    moirai_pool_t *task_pool;
    moirai__blocking_t *blocking;
    moirai__injector_t inj;

    alignas(MOIRAI_CACHE_LINE) _Atomic uint64_t idle; /* see above */

    /* Written by every external spawn and join: on lines of its own (two,
     * for the adjacent-line prefetcher), away from `stop` and `cancel`,
     * which searching workers read in every round. Sharing them cost an
     * external spawn a cache miss on every CAS (1M spawns: 107-120 ms). */
    alignas(2 * MOIRAI_CACHE_LINE) _Atomic uint64_t gate; /* see above */
    /* References (moirai_sched_retain()): the creator's, dropped by
     * destroy, plus one per retain. The struct itself (the gate and the
     * executors a late spawn reads) is freed with the last one; destroy
     * frees everything else. */
    _Atomic uint32_t refs;
    _Atomic uint64_t ext_finished; /* accepted external jobs finished or never queued */

    alignas(2 * MOIRAI_CACHE_LINE) _Atomic uint32_t
        cancel;               /* CANCEL shutdown: discard tasks popped from now on */
    _Atomic uint32_t stop;    /* workers leave their loops */
    _Atomic uint32_t started; /* workers that have started (create waits) */
    _Atomic uint32_t locality_rr;

    pthread_mutex_t sleep_lock;
    moirai__worker_t **sleepers; /* `nsleepers` entries, under sleep_lock */
    int nsleepers;

    /* The watchdog (watchdog.c); NULL when off. */
    struct moirai__watchdog *watchdog;
    /* How many compensating workers the watchdog wants running: slot
     * nregular + k retires when it finds no work and k >= this. Written by
     * the watchdog thread, read relaxed by compensating workers (a stale
     * value delays a retirement by one look for work, or keeps one more
     * worker a little longer). */
    _Atomic int32_t comp_wanted;

    /* External join slots (join.c): a thread that is not a worker offers
     * the `b` half of its join here while it runs `a` itself; a searching
     * worker may take it (CAS slot -> NULL), else the caller takes it back
     * the same way. `ext_used` counts occupied slots (raised before the
     * slot is filled, lowered after it is emptied), so a worker checks all
     * of them with one load. `depth` is the join's nesting depth on the
     * offering thread: a worker takes the shallowest frame, the biggest
     * piece of work, as a thief takes the oldest job of a deque. */
    alignas(MOIRAI_CACHE_LINE) _Atomic int64_t ext_used;

    /* Guest slots (join.c): workers[nworkers .. nslots-1] are worker
     * structs without a thread of their own. A thread outside the pool
     * that joins claims one (CAS on `guest_taken[k]`, 0 -> 1) and acts as
     * that worker until its outermost join returns: its join halves go
     * through the slot's deque, which the workers steal from, and while it
     * waits for a stolen half it runs and steals work like a worker.
     * `guests_active` counts claimed slots, so a searching worker checks
     * them all with one load. */
    _Atomic int32_t guests_active;
    _Atomic uint32_t guest_taken[MOIRAI__GUEST_SLOTS];
    /* The process-wide registry of live schedulers that dumps look in
     * (dump.c), under its lock. */
    struct moirai_sched *dump_prev, *dump_next;
    struct {
        alignas(MOIRAI_CACHE_LINE) _Atomic(moirai__job_t *) job;
        _Atomic uint32_t depth;
    } ext_slot[MOIRAI__EXT_SLOTS];
};

/* The worker running on this thread (NULL on any other thread). Set once
 * by each worker thread at start; initial-exec TLS so that reading it is
 * one instruction. Defined in worker.c. */
extern __thread moirai__worker_t *moirai__tls_worker __attribute__((tls_model("initial-exec")));

static inline moirai__worker_t *moirai__worker_current(void)
{
    return moirai__tls_worker;
}

/* The scheduler whose external join the calling thread (not a worker) is
 * running `a` or `b` of, or NULL: nested joins on that thread go through
 * the same external slots (see join.c). Defined in join.c. */
extern __thread struct moirai_sched *moirai__tls_participant
    __attribute__((tls_model("initial-exec")));

/* The nesting depth of external joins on the calling thread (0 outside
 * any). Defined in join.c. */
extern __thread uint32_t moirai__tls_ext_depth __attribute__((tls_model("initial-exec")));

/* Steals a job for `w` from a guest slot of `s` (other than `w`), or
 * returns NULL. Any worker or guest; acquire as any steal. Never blocks.
 * Defined in worker.c. */
moirai__job_t *moirai__worker_steal_guests(moirai__worker_t *w);

/* True if `w` is a guest slot (a thread from outside acting as a worker
 * for the duration of a join), not one of the pool's own threads. */
static inline bool moirai__worker_is_guest(const moirai__worker_t *w)
{
    return w->guest;
}

/* Takes a job from an external join slot of `s`, or returns NULL (none,
 * or lost the race). Any thread; acquire (the frame's contents were
 * published by the caller's release CAS). Never blocks. */
moirai__job_t *moirai__sched_take_ext_slot(struct moirai_sched *s);

/* The thread body of worker `arg` (a moirai__worker_t). */
void *moirai__worker_main(void *arg);

void moirai__sched_inject(struct moirai_sched *s, moirai__job_t *job, int prio);

/* The execute function of runtime jobs (runtime_job.c). */
void moirai__runtime_job_execute(moirai__job_t *header, moirai__worker_t *w);

/* Runs `job` on `w` and counts it in w's `executed`. A guest does not run
 * runtime jobs (a fiber runtime's jobs expect one of the pool's own
 * threads, with its idle hooks and thread context): one that reaches a
 * guest, stolen from a worker's deque where it counted as NORMAL, goes to
 * the injector at NORMAL instead. Tasks and join frames run anywhere. */
static inline void moirai__worker_execute(moirai__worker_t *w, moirai__job_t *job)
{
    if (__builtin_expect(w->guest, 0) && job->execute == moirai__runtime_job_execute) {
        moirai__sched_inject(w->sched, job, MOIRAI_PRIORITY_NORMAL);
        return;
    }
    moirai__stat_add(&w->stats.executed, 1);
    job->execute(job, w);
}

/* ---- Idle workers (idle.c) ---- */

/* Wakes one sleeper of `s`, unless some worker is searching (then that
 * one will find the work) or nobody sleeps; `prefer` (may be NULL) is
 * woken if it is among the sleepers. Takes the sleeper lock. Thread-safe. */
void moirai__idle_wake_one(struct moirai_sched *s, moirai__worker_t *prefer);

/* Wakes every sleeper (shutdown). Thread-safe. */
void moirai__idle_wake_all(struct moirai_sched *s);

/* What a worker that helps waits for: a latch, or a handle until a
 * deadline. A NULL moirai__helping_t pointer means nothing (the worker's
 * loop). */
typedef struct moirai__helping {
    moirai__latch_t *latch;
    moirai_handle_t *handle;
    uint64_t deadline;
} moirai__helping_t;

/* True once the latch is set, or the handle finished or its deadline
 * passed. Acquire (both probes are). Inline: the search loop (worker.c)
 * asks it every round while helping, and help_until() after every job. */
static inline bool moirai__helping_done(const moirai__helping_t *h)
{
    if (h->latch != NULL)
        return moirai__latch_probe(h->latch);
    return moirai_handle_is_finished(h->handle) || moirai_deadline_expired(h->deadline);
}

/* True if any queue of the pool may hold a job, not counting the LIFO
 * slot of `skip_lifo` (NULL: every queue). seq_cst loads of the counts
 * pair with the pushers' seq_cst RMWs. Never blocks. */
bool moirai__idle_work_queued(struct moirai_sched *s, const moirai__worker_t *skip_lifo);

/* Worker `w` (owner thread only) sleeps until woken for work (then
 * returns counted as searching), or until what `h` (may be NULL) waits
 * for is over or the pool stops (then returns not counted). A hooked
 * worker that waits for nothing waits in the idle hook; returns true when
 * the hook says outside work is ready. Details in idle.c. */
bool moirai__idle_sleep(moirai__worker_t *w, const moirai__helping_t *h);

/* Call after making a job visible to other workers. Reads `idle` (one
 * load) and wakes a sleeper only if nobody searches and somebody sleeps.
 * The load is seq_cst: after a seq_cst RMW (injector and inbox counts) it
 * completes the Dekker pattern described at the top of this file. After a
 * plain deque or LIFO push it may miss a worker that is just going to
 * sleep; that worker's wake-up is then merely late (the pusher runs the
 * job itself if nobody steals it), and a fence on every join would cost
 * more than it saves. Never blocks. Thread-safe. */
static inline void moirai__sched_notify(struct moirai_sched *s)
{
    uint64_t v = atomic_load_explicit(&s->idle, memory_order_seq_cst);
    if (__builtin_expect(MOIRAI__IDLE_SLEEPING(v) != 0 && MOIRAI__IDLE_SEARCHING(v) == 0, 0))
        moirai__idle_wake_one(s, NULL);
}

/* Worker `w` pushes `job` onto its own deque and notifies. Owner thread
 * only. Returns 0 or -ENOMEM (the deque could not grow; nothing queued). */
int moirai__worker_push(moirai__worker_t *w, moirai__job_t *job);

/* Queues `job` on `s`'s injector at priority `prio` and notifies. Any
 * thread. Does not count the job for shutdown (callers that need it do).
 * Never fails: the injector is intrusive (see injector.h). */
void moirai__sched_inject(struct moirai_sched *s, moirai__job_t *job, int prio);

/* Worker `w` puts `job` where its local NORMAL spawns go: the LIFO slot
 * (the previous occupant moves to the deque) unless cfg.no_lifo_slot is set,
 * else the deque. Does not count or notify. Owner thread only. Returns 0,
 * or -ENOMEM when the deque could not grow; then `job` is not queued
 * (unless a thief already took it from the slot: then 0) and everything
 * else is as before. */
/* Inline: it is most of a local spawn, and a call costs about a tenth of
 * one (callgrind: 9 more instructions per spawn out of line). */
static inline int moirai__worker_push_local(moirai__worker_t *w, moirai__job_t *job)
{
    if (w->sched->cfg.no_lifo_slot)
        return moirai__deque_push(w->deque, job);
    /* acq_rel: release publishes the job to a thief that takes the slot;
     * acquire pairs with our own earlier publication of `prev`. */
    moirai__job_t *prev = atomic_exchange_explicit(&w->lifo, job, memory_order_acq_rel);
    if (prev != NULL && moirai__deque_push(w->deque, prev) != 0) {
        /* Put the previous occupant back. Only thieves take from the slot
         * meanwhile, so it holds `job` or nothing: if a thief took `job`,
         * it is queued after all. */
        moirai__job_t *cur = atomic_exchange_explicit(&w->lifo, prev, memory_order_acq_rel);
        if (cur == job)
            return -ENOMEM;
    }
    return 0;
}

/* Adds `n` (possibly negative) to w's count of accepted jobs (tasks_in).
 * Owner thread only: single writer, relaxed load and store. */
static inline void moirai__worker_count_in(moirai__worker_t *w, int64_t n)
{
    atomic_store_explicit(&w->tasks_in,
                          atomic_load_explicit(&w->tasks_in, memory_order_relaxed) + (uint64_t)n,
                          memory_order_relaxed);
}

/* Worker `w` waits for `latch`: it runs jobs of its scheduler, in the
 * usual pick order and stealing, until the latch is set; when it finds no
 * work for spin_ns it sleeps on the latch (still wakeable for new work).
 * Blocks (helping). Owner thread only. Acquire (as moirai__latch_wait). */
void moirai__worker_wait_latch(moirai__worker_t *w, moirai__latch_t *latch);

/* Accepts an external (non-worker) spawn or join for shutdown accounting:
 * -ESHUTDOWN once destroy has begun, else 0 and the job is counted.
 * One CAS on `gate` (acq_rel: a destroy that sets the shut bit afterwards
 * sees the count). */
int moirai__sched_gate_enter(struct moirai_sched *s);

/* Spawns `fn(arg)` as moirai_sched_spawn() does (same routing, same
 * errors, no handle), but the task runs even after
 * moirai_sched_destroy(MOIRAI_SHUTDOWN_CANCEL) has begun: for tasks whose
 * owner waits for them (scope and pipeline tasks), which check
 * moirai__sched_cancelling() to skip the user's work. `attr` NULL means
 * the defaults. Never blocks; thread-safe. Returns 0, -EINVAL (NULL s or
 * fn, invalid attr), -ENOMEM or -ESHUTDOWN (external caller, destroy has
 * begun); on error the task will not run. */
int moirai__sched_spawn_owned(struct moirai_sched *s, moirai_task_fn fn, void *arg,
                              const moirai_task_attr_t *attr);

/* True once moirai_sched_destroy(MOIRAI_SHUTDOWN_CANCEL) has begun.
 * Relaxed (a hint: tasks that see it late just run their work). Never
 * blocks; thread-safe. */
bool moirai__sched_cancelling(const struct moirai_sched *s);

/* Sets the pool's executors (moirai_sched_executor() and its blocking and
 * owned kin) and creates the object pool of its heap tasks: the parts of
 * `s` that only sched.c, which knows the task object, can build. Called
 * once by create (sched_lifecycle.c) on a zeroed `s`. Returns 0 or
 * moirai_pool_create()'s error. */
int moirai__sched_tasks_create(struct moirai_sched *s);

/* ---- Dumps (dump.c) ---- */

/* Adds `s` to the registry of live schedulers that moirai_sched_dump()
 * accepts. Create calls it last, once `s` is complete. Never fails. */
void moirai__dump_register(struct moirai_sched *s);

/* Takes `s` out of the registry, waiting for a dump in progress to end:
 * from its return, every dump of `s` returns -ESHUTDOWN. Destroy calls it
 * first, once its argument checks passed. */
void moirai__dump_unregister(struct moirai_sched *s);

/* Dumps every live scheduler to `out`, one after the other, under the
 * registry lock, then a line with their number. Returns 0 or -EIO. */
int moirai__dump_all(FILE *out, unsigned flags);

/* ---- Watchdog (watchdog.c) ---- */

/* The name the watchdog reports for a job without one. */
extern const char moirai__watchdog_unnamed[];

/* Worker `w` starts a job called `name` (NULL: unnamed). With the watchdog
 * off this is one predictable branch. On, one store: release, because the
 * watchdog thread reads the string it points to (on x86-64 a release
 * store is a plain store). The job sequence the watchdog pairs it with is
 * w's `executed` counter, which moirai__worker_execute() bumps anyway; no
 * clock is read here. Owner thread only. */
static inline void moirai__watchdog_job_begin(moirai__worker_t *w, const char *name)
{
    if (__builtin_expect(w->watchdog, 0))
        atomic_store_explicit(&w->stats.job_name, name != NULL ? name : moirai__watchdog_unnamed,
                              memory_order_release);
}

/* Worker `w` has no job to run right now (it searches, sleeps, or waits
 * for a latch): the watchdog must not count the time against the last
 * job. Off the per-job path. Owner thread only. */
static inline void moirai__watchdog_idle(moirai__worker_t *w)
{
    if (w->watchdog)
        atomic_store_explicit(&w->stats.job_name, NULL, memory_order_relaxed);
}

/* Starts the watchdog thread of `s` (cfg.watchdog_ns != 0). Returns 0,
 * -ENOMEM or -EAGAIN (nothing started). Called by create, after the
 * workers have started. */
int moirai__watchdog_start(struct moirai_sched *s);

/* What the watchdog last saw of slot `i` (dump.c): the job's name, its
 * sequence (the slot's `executed` then), when it was first seen and
 * whether it was reported stuck. Returns false (outputs unset) when the
 * watchdog is off or saw the slot idle. Takes the watchdog's view lock,
 * which a scan holds once per period. Any thread while `s` lives. */
bool moirai__watchdog_view(struct moirai_sched *s, int i, const char **name, uint64_t *seq,
                           uint64_t *since, bool *reported);

/* Stops and joins the watchdog thread, joins every compensating thread it
 * started that has exited, and frees its state; compensating workers still
 * running are left to stop_workers(). Idempotent; does nothing when off. */
void moirai__watchdog_stop(struct moirai_sched *s);

/* The thread body of a compensating worker `arg` (a moirai__worker_t in a
 * slot at or above nregular): runs work like any worker, and returns once
 * the pool stops, or once it finds no work and the watchdog no longer
 * wants it. Defined in worker.c. */
void *moirai__worker_comp_main(void *arg);

/* Wakes worker `w` if it is in the sleeper list (counting it as
 * searching), so that it looks again (a compensating worker that may now
 * retire). Takes the sleeper lock. Thread-safe. */
void moirai__idle_wake_worker(struct moirai_sched *s, moirai__worker_t *w);

/* Counts an accepted job as finished on worker `w` (release store; see
 * tasks_out). Owner thread only. */
static inline void moirai__worker_job_done(moirai__worker_t *w)
{
    atomic_store_explicit(&w->tasks_out,
                          atomic_load_explicit(&w->tasks_out, memory_order_relaxed) + 1,
                          memory_order_release);
}

#endif
