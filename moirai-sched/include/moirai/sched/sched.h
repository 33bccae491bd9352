/* The work-stealing scheduler: a pool of worker threads that run tasks.
 *
 * Each worker owns a Chase-Lev deque (Lê, Pop, Cohen, Zappa Nardelli,
 * "Correct and Efficient Work-Stealing for Weak Memory Models", PPoPP 2013)
 * and, optionally, a LIFO slot holding its most recent spawn. Work that
 * arrives from outside the pool goes to a shared injector with one FIFO
 * level per priority. A worker with nothing to do steals from the others,
 * nearest first (same last-level cache, then same NUMA node, then the rest,
 * each tier in random order), taking up to half of a victim's deque at once.
 * A worker that finds nothing spins for a short while (`spin_ns`), then
 * parks through core's parking layer; at most half of the workers (at
 * least one) search at a time, the others park at once. A spawn wakes at
 * most one parked worker, and only when no worker is already searching
 * for work, so a burst of spawns does not stampede the pool (the throttle
 * Go and Tokio use). An idle pool uses no CPU.
 *
 * Where a task goes, and which runs next:
 *   - A NORMAL-priority spawn from a worker of the same scheduler goes to
 *     that worker's LIFO slot (the previous occupant moves to the deque), or
 *     straight to its deque when the LIFO slot is off.
 *   - Every other spawn (another priority, a locality hint, or a spawn from
 *     a thread that is not one of this scheduler's workers) goes to the
 *     injector at its priority level, or to the inbox of a worker on the
 *     hinted CPU or node.
 *   - Runtime jobs (moirai/sched/job.h) follow the same two rules, with
 *     no locality hint, and MOIRAI_SCHED_JOB_YIELD sends a NORMAL job
 *     from a worker to the injector too. Tasks and jobs of one injector
 *     level share one FIFO.
 *   - A worker looking for its next task takes, in this order: the
 *     injector's most urgent task if that task counts as more urgent than
 *     NORMAL; its LIFO slot; its own deque (newest first); its inbox; the
 *     injector's most urgent task at any level; then it steals.
 *
 * Priorities and aging: within the injector, the level with the most urgent
 * *effective* priority runs first (FIFO within a level). A level that has
 * had tasks waiting, none of which has been taken for k whole periods of
 * `aging_ns`, competes as k levels more urgent, on past CRITICAL; its
 * clock restarts whenever one of its tasks is taken or it becomes
 * non-empty; on a tie the naturally more urgent level wins. So while level
 * L (CRITICAL 0 to BACKGROUND 4) has tasks waiting, one of them is taken
 * within (L + 1) * aging_ns plus the run time of the task running and of
 * at most four tasks of other levels that waited as long: no level starves,
 * whatever the other levels' load (docs/sched.md states it with the
 * tests). With `aging_ns` MOIRAI_SCHED_STRICT_PRIORITIES the levels are
 * strict and lower ones can starve. Work in the workers' own deques counts
 * as NORMAL. Aging is
 * timed with CLOCK_MONOTONIC_COARSE, so periods are measured to within one
 * kernel tick (at most 4 ms).
 *
 * Watchdog (off by default): with `watchdog_ns` set, one thread of the
 * scheduler wakes every watchdog_ns / 2 (a timed park, no busy loop) and
 * looks at what each worker runs. A worker that has run the same job (a
 * task, a stolen join half, a runtime job) for longer than watchdog_ns is
 * reported once per stuck job through core's logging (moirai/core/log.h)
 * at warn level, naming the worker, the job's name (the task's attribute
 * name, the runtime job's name, or "(unnamed)") and how long it has run,
 * and counted in that worker's `watchdog_reports`. With
 * `watchdog_compensate` > 0 the watchdog also starts a compensating
 * worker for each stuck worker (up to that many at once), which runs
 * queued work so that the pool keeps going; a compensating worker exits
 * once the watchdog no longer needs it and it finds no work. Off costs
 * one predictable branch per job; on, one store per job by the worker
 * (the job's name) and no clock read: the watchdog samples the workers'
 * job counters and names. Time is wall time (a worker blocked in a
 * syscall must be caught), so a worker the OS keeps off the CPU in the
 * middle of a job looks stuck too: choose watchdog_ns well above the
 * machine's scheduling delays. A job's name must stay readable while the
 * watchdog may report it: until the scheduler is destroyed (string
 * literals are the usual case).
 *
 * Memory ordering: everything a spawner wrote before a successful spawn
 * happens before the task runs; everything a task wrote happens before its
 * handle reports it finished (see moirai/core/handle.h). */
#ifndef MOIRAI_SCHED_SCHED_H
#define MOIRAI_SCHED_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/core/executor.h>
#include <moirai/core/handle.h>
#include <moirai/core/task.h>
#include <moirai/sched/export.h>

/* A work-stealing scheduler (see above). Opaque; created and destroyed by the functions below. */
typedef struct moirai_sched moirai_sched_t;

/* How a worker picks the victim it steals from. */
typedef enum moirai_steal_strategy {
    /* Nearest first: workers on the same last-level cache, then the same
     * NUMA node, then the rest; random order within each tier. */
    MOIRAI_STEAL_LOCALITY = 0,
    /* Uniformly random over all other workers. */
    MOIRAI_STEAL_RANDOM = 1,
} moirai_steal_strategy_t;

/* What moirai_sched_destroy() does with work that has not started. */
typedef enum moirai_shutdown {
    /* Run everything already spawned, and what it spawns in turn, then stop. */
    MOIRAI_SHUTDOWN_DRAIN = 0,
    /* Run no task that has not started: their handles fail with -ECANCELED
     * and running tasks finish normally. Join frames, scopes and runtime
     * jobs (moirai/sched/job.h) still complete, since their owners are
     * waiting on them. */
    MOIRAI_SHUTDOWN_CANCEL = 1,
} moirai_shutdown_t;

/* Called after each spawned task with its CPU time, when configured. */
typedef void (*moirai_task_cpu_cb)(void *arg, const char *name, moirai_task_id_t id,
                                   uint64_t cpu_ns);

struct moirai_sched_idle_hooks; /* moirai/sched/job.h */

/* A worker start or exit hook (cfg.on_worker_start, cfg.on_worker_exit):
 * `arg` is cfg.worker_hook_arg, `index` the worker's index (what
 * moirai_sched_worker_index() returns on that thread). */
typedef void (*moirai_sched_worker_cb)(void *arg, int index);

/* Scheduler settings. Zero means the default in every field, so a zeroed
 * struct, MOIRAI_SCHED_CONFIG_INIT and moirai_sched_config_init() all give
 * the defaults; set what you need. A value out of a field's range is
 * -EINVAL from moirai_sched_create(), never clamped. */
typedef struct moirai_sched_config {
    /* Worker threads; 0: one per online CPU. A thread outside the pool
     * that calls moirai_join() or a parallel algorithm runs work too (see
     * callers_wait): with the default, N threads in all is workers = N - 1. */
    int workers;
    moirai_steal_strategy_t steal; /* victim order; 0: MOIRAI_STEAL_LOCALITY */
    bool steal_one;                /* take one job from a victim, not up to half its deque */
    bool no_lifo_slot;             /* do not keep the newest local spawn in a LIFO slot */
    bool pin_workers;              /* pin worker i to the topology's i-th CPU */
    /* How long an idle worker searches before parking. 0: 50 us;
     * MOIRAI_SCHED_NO_SPIN: it parks at once; else at most 1 s. */
    uint64_t spin_ns;
    /* Priority aging period (docs/sched.md, "Pick order, priorities and
     * aging"). 0: 10 ms; MOIRAI_SCHED_STRICT_PRIORITIES: no aging, so a
     * steady stream at one level starves every lower one; else at most
     * 60 s. */
    uint64_t aging_ns;
    size_t stack_size; /* worker stack bytes; 0: 8 MiB */
    /* Per-task CPU time (thread CPU clock read before and after each spawned
     * task; join halves are not tasks). NULL: off, and nothing is measured. */
    moirai_task_cpu_cb task_cpu;
    void *task_cpu_arg;             /* passed to task_cpu as `arg` */
    int blocking_max_threads;       /* spawn_blocking thread cap; 0: 64 */
    uint64_t blocking_keepalive_ns; /* idle blocking threads exit after this; 0: 10 s */
    /* Blocked-worker watchdog: report a worker that has run the same job
     * (task, join half, runtime job) for longer than this, once per stuck
     * job (see "Watchdog" above). 0: off, and it costs one predictable
     * branch per job; else at least MOIRAI_SCHED_WATCHDOG_MIN_NS. */
    uint64_t watchdog_ns;
    /* At most this many compensating workers the watchdog may run at once
     * while workers are stuck; 0: none. Needs watchdog_ns. */
    int watchdog_compensate;
    /* How idle regular workers wait, for a runtime that drives an event
     * loop from its idle workers (moirai/sched/job.h, "Idle hooks"). Not
     * copied: it must outlive the scheduler. NULL: workers park on a
     * futex. */
    const struct moirai_sched_idle_hooks *idle_hooks;
    /* Worker hooks (docs/sched.md, "Worker hooks"). on_worker_start runs on
     * each worker thread once it is a worker (moirai_sched_current() and
     * moirai_sched_worker_index() answer for it) and before it takes any
     * job; for the regular workers, before moirai_sched_create() returns.
     * on_worker_exit runs on the same thread after its last job, before
     * the thread ends; for the regular workers, before
     * moirai_sched_destroy() returns (also when create fails after
     * starting some workers: each started worker runs both). Compensating
     * workers run both on every thread started in their slot. The start
     * hook may spawn; the exit hook must not spawn, join or submit to this
     * scheduler (the pool has stopped: the work would never run), and
     * neither may destroy it. Both must return. NULL: no call. */
    moirai_sched_worker_cb on_worker_start;
    moirai_sched_worker_cb on_worker_exit;
    void *worker_hook_arg; /* passed to both hooks as `arg` */
    /* Whether a thread outside the pool that calls moirai_join() (and so
     * the parallel algorithms) waits without running any of the work.
     * false (the default): the caller takes part, as a guest worker, so
     * the work runs on `workers` + 1 threads (workers = 1 plus the caller
     * is two threads; for exactly N threads set workers = N - 1). true:
     * the whole join goes to the workers and the caller sleeps until it is
     * done, so exactly `workers` threads run it. */
    bool callers_wait;
} moirai_sched_config_t;

/* The default settings, as a static initialiser: all zero (see above). */
#define MOIRAI_SCHED_CONFIG_INIT                                                                   \
    {                                                                                              \
        0                                                                                          \
    }

/* spin_ns: idle workers park at once, without searching first. */
#define MOIRAI_SCHED_NO_SPIN UINT64_MAX

/* aging_ns: strict priority levels, no aging. */
#define MOIRAI_SCHED_STRICT_PRIORITIES UINT64_MAX

/* The shortest watchdog_ns accepted (1 ms): the watchdog thread wakes
 * every watchdog_ns / 2, and a shorter period would make it a busy loop. */
#define MOIRAI_SCHED_WATCHDOG_MIN_NS 1000000u

/* Per-worker counters. Each is written by one thread only, its worker
 * or (the last two) the watchdog thread, relaxed, and read racily: a snapshot is approximate while
 * the pool runs and exact once it is idle. */
typedef struct moirai_sched_worker_stats {
    uint64_t spawned;        /* tasks, join frames and runtime jobs this worker submitted */
    uint64_t executed;       /* tasks, join frames and runtime jobs this worker ran */
    uint64_t steal_attempts; /* attempts on another worker's deque or inbox */
    uint64_t steals;         /* attempts that took at least one job */
    uint64_t stolen;         /* jobs taken by those steals */
    uint64_t parks;          /* times the worker parked */
    uint64_t task_cpu_ns;    /* CPU time of spawned tasks, when task_cpu is set */
    /* Watchdog (written by the watchdog thread): */
    uint64_t watchdog_reports;     /* jobs this worker was reported stuck in */
    uint64_t compensating_started; /* times this slot was started as a compensating worker */
} moirai_sched_worker_stats_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Sets `*cfg` to MOIRAI_SCHED_CONFIG_INIT (all zero: the defaults). NULL:
 * nothing. */
MOIRAI_SCHED_API void moirai_sched_config_init(moirai_sched_config_t *cfg);

/* Creates a scheduler and starts its workers (cfg NULL: the defaults),
 * and the watchdog thread when watchdog_ns is set. Blocks until every
 * worker has started. Returns 0, -EINVAL (NULL out, workers < 0 or above
 * 1024, unknown strategy, spin_ns above 1 s or aging_ns above 60 s (other
 * than their named values), blocking_max_threads < 0, watchdog_ns not 0 and
 * below MOIRAI_SCHED_WATCHDOG_MIN_NS, watchdog_compensate < 0, or above 0
 * with the watchdog off, or workers plus watchdog_compensate above 1024),
 * -ENOMEM, or -EAGAIN if a thread cannot be created (nothing is left
 * behind). */
MOIRAI_SCHED_API int moirai_sched_create(moirai_sched_t **out, const moirai_sched_config_t *cfg);

/* Stops the scheduler as `how` says, joins its workers and its blocking
 * threads, and frees everything (the scheduler object itself once the
 * last reference taken with moirai_sched_retain() is released). Spawns
 * from outside the pool fail with -ESHUTDOWN from the moment it is called;
 * a spawn that races with it is either accepted (and then runs under DRAIN,
 * or its handle fails with -ECANCELED under CANCEL) or refused, never both
 * or neither. Tasks already accepted may still spawn (DRAIN runs what they
 * spawn, CANCEL discards it). Blocking tasks already accepted always run.
 * A thread that may spawn while another destroys holds a reference, so that
 * its spawns meet -ESHUTDOWN rather than freed memory. Blocks. Returns 0, -EINVAL (NULL sched or an
 * unknown `how`) or -EDEADLK (called from one of the scheduler's
 * workers, or from inside a join on it that an outside thread takes part
 * in as a guest, which destroy would wait for); on error nothing is
 * stopped. Called from a task running on the
 * scheduler's blocking pool it deadlocks (not detected). */
MOIRAI_SCHED_API int moirai_sched_destroy(moirai_sched_t *sched, moirai_shutdown_t how);

/* Takes a reference to `sched`, for a thread that may spawn on it while
 * another thread destroys it. Once destroy has begun, the holder may still
 * call moirai_sched_spawn(), moirai_sched_spawn_blocking(), moirai_join()
 * and the parallel loops (all -ESHUTDOWN), moirai_scope_run() and
 * moirai_pipeline_run() (their spawns fail with -ESHUTDOWN),
 * moirai_sched_executor() and moirai_sched_worker_count(); any other call
 * on a destroyed scheduler is undefined. NULL is ignored. Never blocks;
 * thread-safe; relaxed (the caller already holds a reference). */
MOIRAI_SCHED_API void moirai_sched_retain(moirai_sched_t *sched);

/* Drops a reference taken with moirai_sched_retain(); the last one (the
 * creator's is dropped by moirai_sched_destroy()) frees the scheduler
 * object. NULL is ignored. Never blocks; thread-safe; acq_rel (the last
 * release sees every holder's accesses before the free). */
MOIRAI_SCHED_API void moirai_sched_release(moirai_sched_t *sched);

/* Submits `fn(arg)` (see moirai_task_fn). `attr` NULL means the defaults.
 * With a `handle` (created with moirai_handle_create, not yet used for a
 * task), the task's result and status reach it; cancelling the handle
 * before the task starts means the task never runs and the handle fails
 * with -ECANCELED. Never blocks; thread-safe. Returns 0, -EINVAL (NULL
 * sched or fn, invalid attr, a handle already used), -ENOMEM, or
 * -ESHUTDOWN once destroy has begun; on error the task will not run and the
 * handle is untouched. */
MOIRAI_SCHED_API int moirai_sched_spawn(moirai_sched_t *sched, moirai_task_fn fn, void *arg,
                                        const moirai_task_attr_t *attr, moirai_handle_t *handle);

/* As moirai_sched_spawn(), but runs `fn` on the scheduler's separate pool
 * of blocking threads, for calls that block (syscalls, locks held long).
 * That pool starts empty, adds a thread whenever a task arrives and no
 * blocking thread is idle, up to `blocking_max_threads` (then tasks queue,
 * FIFO), and lets a thread exit after `blocking_keepalive_ns` idle.
 * Priority and locality in `attr` are ignored there. Same errors, plus
 * -EAGAIN if no blocking thread exists and none can be created. */
MOIRAI_SCHED_API int moirai_sched_spawn_blocking(moirai_sched_t *sched, moirai_task_fn fn,
                                                 void *arg, const moirai_task_attr_t *attr,
                                                 moirai_handle_t *handle);

/* The scheduler as a core executor (moirai/core/executor.h); spawns through
 * it behave as moirai_sched_spawn(). Valid until the scheduler is destroyed. */
MOIRAI_SCHED_API moirai_executor_t *moirai_sched_executor(moirai_sched_t *sched);

/* The scheduler whose worker is calling, or NULL on any other thread
 * (also on an outside thread while it takes part in a join as a guest). */
MOIRAI_SCHED_API moirai_sched_t *moirai_sched_current(void);

/* The calling worker's index (0 .. moirai_sched_worker_count()-1; a
 * compensating worker has an index of the configured workers or above),
 * or -1 on any other thread, including an outside thread taking part in a
 * join (a guest: it is not one of the workers). */
MOIRAI_SCHED_API int moirai_sched_worker_index(void);

/* Number of worker slots: the configured workers plus watchdog_compensate
 * slots for compensating workers (indices workers .. count-1), so that
 * moirai_sched_worker_index() is always below it. Returns -EINVAL for a
 * NULL sched. */
MOIRAI_SCHED_API int moirai_sched_worker_count(const moirai_sched_t *sched);

/* The stealing order of worker `worker`: fills `order` with up to `cap`
 * other worker indices, nearest tier first (the order before each tier is
 * shuffled), and `tiers` (if not NULL, `cap` entries) with each entry's
 * tier: 0 same last-level cache, 1 same NUMA node, 2 elsewhere; all 2
 * under MOIRAI_STEAL_RANDOM. Returns the number of entries, or -EINVAL. */
MOIRAI_SCHED_API int moirai_sched_victims(const moirai_sched_t *sched, int worker, int *order,
                                          int *tiers, int cap);

/* Copies worker `worker`'s counters. Returns 0 or -EINVAL. */
MOIRAI_SCHED_API int moirai_sched_worker_stats(const moirai_sched_t *sched, int worker,
                                               moirai_sched_worker_stats_t *out);

/* Sums every worker's counters into `*out`. Returns 0 or -EINVAL. */
MOIRAI_SCHED_API int moirai_sched_stats(const moirai_sched_t *sched,
                                        moirai_sched_worker_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif
