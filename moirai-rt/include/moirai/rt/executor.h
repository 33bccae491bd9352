/* The RT executor: admitted periodic tasks dispatched by policy on
 * dedicated worker threads.
 *
 * Each worker is a thread of its own (pinned to a chosen CPU when `cpus`
 * is given) that owns a partition of the tasks: tasks are placed at
 * admission (first fit, "pack", or worst fit, "spread") and never
 * migrate. A worker releases each task's jobs at absolute times (it sleeps
 * with clock_nanosleep(TIMER_ABSTIME) until the next release), runs the
 * ready job its policy ranks first, one step at a time, and re-ranks after
 * every step, so a more urgent job preempts at the next step boundary.
 *
 * Admission: moirai_rt_executor_add() admits a task only if the exact
 * test of the policy still passes on some worker with it: the processor
 * demand test for EDF, response-time analysis for RM, DM, FIFO and RR.
 * The blocking term of each task counts the longest step of any less
 * urgent task on its worker (steps do not preempt each other) plus the
 * time it can wait for a lock that tasks on other workers hold (from the
 * declared critical sections). A rejection is -EBUSY with the reason in
 * the caller's result and changes nothing; removal frees the share.
 *
 * Budgets: each step is timed on the executor's clock and charged to the
 * job and to the task's quota group. A job past its budget is an overrun,
 * handled as the task's `overrun` says. Enforcement is at step
 * boundaries: a step is never interrupted, so a job that must be stopped
 * promptly needs short steps (or polls moirai_rt_job_budget_left_ns()).
 *
 * Beside moirai-sched: the workers are ordinary threads of the process;
 * a moirai-sched pool in the same process runs best-effort work on the
 * remaining CPU time (under SCHED_FIFO the RT workers preempt it).
 *
 * Memory ordering: everything written before add() happens before the
 * task's first step; each step happens before the next step of the same
 * task and before a stats read that reports its completion. */
#ifndef MOIRAI_RT_EXECUTOR_H
#define MOIRAI_RT_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/rt/analysis.h>
#include <moirai/rt/clock.h>
#include <moirai/rt/export.h>
#include <moirai/rt/os.h>
#include <moirai/rt/task.h>

/* An RT executor (see above). Opaque; created and destroyed by the functions below. */
typedef struct moirai_rt_executor moirai_rt_executor_t;
/* A task admitted to an executor. Opaque; moirai_rt_executor_add() returns it. */
typedef struct moirai_rt_task moirai_rt_task_t;

/* Where admission puts a task that does not name a worker. */
typedef enum moirai_rt_placement {
    MOIRAI_RT_PLACE_PACK = 0,   /* the lowest-numbered worker that passes: idle workers sleep */
    MOIRAI_RT_PLACE_SPREAD = 1, /* the least-loaded worker that passes */
} moirai_rt_placement_t;

/* Events reported to a trace callback. */
typedef enum moirai_rt_event {
    MOIRAI_RT_EVENT_RELEASE = 0,  /* a job was released */
    MOIRAI_RT_EVENT_STEP = 1,     /* a step is about to run */
    MOIRAI_RT_EVENT_COMPLETE = 2, /* a job completed (in time or not) */
    MOIRAI_RT_EVENT_MISS = 3,     /* a job completed or was abandoned past its deadline */
    MOIRAI_RT_EVENT_OVERRUN = 4,  /* a job used up its budget */
    MOIRAI_RT_EVENT_SKIP = 5,     /* a job was abandoned (overrun SKIP) */
    MOIRAI_RT_EVENT_DEMOTE = 6,   /* a task left the real-time set (overrun DEMOTE) */
    MOIRAI_RT_EVENT_THROTTLE = 7, /* a ready job was held back by its group's quota */
} moirai_rt_event_t;

/* Called for each event with the task's id (moirai_rt_task_id()), the
 * job index, the worker and the executor's clock. Runs on the worker (or
 * the run_until caller) with the executor's lock held: it must be short
 * and must not call the executor. */
typedef void (*moirai_rt_trace_cb)(void *arg, moirai_rt_event_t event, uint64_t task_id,
                                   uint64_t job, int worker, uint64_t time_ns);

/* How to build an executor. Initialise with moirai_rt_executor_config_init();
 * the default of each field is noted on it. */
typedef struct moirai_rt_executor_config {
    moirai_rt_policy_t policy; /* EDF */
    int workers;               /* 0: 1; at most 256 */
    const int *cpus;           /* pin worker i to CPU cpus[i] (workers entries); NULL: no pinning */
    moirai_rt_placement_t placement; /* PACK */
    /* NULL: the real clock and worker threads. A virtual clock: no threads;
     * the caller drives the executor with moirai_rt_executor_run_until(). */
    moirai_rt_clock_t *clock;
    moirai_rt_os_request_t os; /* policy for the worker threads; NONE */
    bool os_required;          /* fail create when `os` cannot be applied (false: fall back) */
    uint64_t rr_slice_ns;      /* RR time slice; 0: 1 ms */
    moirai_rt_trace_cb trace;  /* NULL: none */
    void *trace_arg;           /* passed to `trace` as `arg` */
} moirai_rt_executor_config_t;

/* Quota group configuration: the group's tasks together may run at most
 * `budget_ns` in every window of `period_ns`. */
typedef struct moirai_rt_group_config {
    uint64_t budget_ns; /* required, > 0, <= period */
    uint64_t period_ns; /* required, > 0 */
} moirai_rt_group_config_t;

/* The counters of a quota group, as moirai_rt_group_stats() reports them. */
typedef struct moirai_rt_group_stats {
    uint64_t used_ns;   /* charged in the current window */
    uint64_t windows;   /* windows started so far */
    uint64_t throttles; /* windows in which the budget ran out with work ready */
    uint64_t total_ns;  /* charged since creation */
} moirai_rt_group_stats_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Zeroes `*cfg` (EDF, one worker, real clock, no OS policy). */
MOIRAI_RT_API void moirai_rt_executor_config_init(moirai_rt_executor_config_t *cfg);

/* Creates an executor (cfg NULL: defaults) and, on the real clock, starts
 * its workers, pins them and applies the OS policy; blocks until they run.
 * Returns 0; -EINVAL (NULL out, unknown policy or placement, workers < 0
 * or > 256, a CPU that is not online, a real clock passed as `clock`... any
 * field out of range, an OS request out of range); -ENOMEM; -EAGAIN (a
 * thread could not be created); or, with os_required, the error that
 * refused the OS policy (-EPERM, -EBUSY). Nothing is left behind on error. */
MOIRAI_RT_API int moirai_rt_executor_create(moirai_rt_executor_t **out,
                                            const moirai_rt_executor_config_t *cfg);

/* Stops the workers (a running step finishes first), joins them and frees
 * every task and group. Blocks. No other call on `ex` may be in flight or
 * follow (as for any destroy). Returns 0, -EINVAL (NULL) or -EDEADLK
 * (called from a job step). */
MOIRAI_RT_API int moirai_rt_executor_destroy(moirai_rt_executor_t *ex);

/* Admits a task. With `why` (optional), the analysis result that decided
 * is stored there either way. Never blocks beyond the executor's lock,
 * which it holds only to copy the admitted set and to commit: the
 * analysis runs on the copy without it (and again if the set changed
 * meanwhile), so workers keep dispatching. Thread-safe, callable from a
 * job step.
 * Returns 0 with `*out` (optional) set; -EINVAL (NULL ex or cfg or fn,
 * period 0, wcet 0, wcet > deadline, deadline > period, unknown overrun,
 * priority outside 0..99, worker out of range, a group of another
 * executor, a section with a negative lock or longer than wcet,
 * max_step_ns > wcet); -EBUSY (the test fails on every allowed worker:
 * `why->reason` says which task misses and by how much; nothing
 * changed); -ENOMEM; -EOVERFLOW / -ERANGE (the analysis could not
 * conclude; nothing changed); -ESHUTDOWN (destroy has begun). */
MOIRAI_RT_API int moirai_rt_executor_add(moirai_rt_executor_t *ex,
                                         const moirai_rt_task_config_t *cfg, moirai_rt_task_t **out,
                                         moirai_rt_analysis_result_t *why);

/* Removes `task` and frees its share; no step of it runs after this
 * returns. Blocks while one of its steps runs on another thread; from the
 * task's own step it takes effect when the step returns. Returns 0 or
 * -EINVAL (NULL, or a task of another executor). */
MOIRAI_RT_API int moirai_rt_executor_remove(moirai_rt_executor_t *ex, moirai_rt_task_t *task);

/* Copies `task`'s counters. Thread-safe (taken under the executor's lock,
 * so consistent). Returns 0 or -EINVAL. */
MOIRAI_RT_API int moirai_rt_executor_task_stats(moirai_rt_executor_t *ex,
                                                const moirai_rt_task_t *task,
                                                moirai_rt_task_stats_t *out);

/* A task's id: unique in the executor, in admission order from 1. */
MOIRAI_RT_API uint64_t moirai_rt_task_id(const moirai_rt_task_t *task);

/* Drives an executor on a virtual clock: releases and runs every job due
 * up to `until_ns`, each worker in turn on its own timeline (the clock is
 * set to the worker's time before each of its steps; steps advance it),
 * and leaves the clock at `until_ns`. Blocks while steps run. Returns 0,
 * -EINVAL (NULL, a real-clock executor, until before the clock) or
 * -EDEADLK (called from a step). */
MOIRAI_RT_API int moirai_rt_executor_run_until(moirai_rt_executor_t *ex, uint64_t until_ns);

/* The OS policy outcome of worker `worker`. Returns 0 or -EINVAL. */
MOIRAI_RT_API int moirai_rt_executor_os_status(const moirai_rt_executor_t *ex, int worker,
                                               moirai_rt_os_status_t *out);

/* Utilization admitted on `worker` (demoted tasks excluded). Returns it,
 * or a negative value for bad arguments. */
MOIRAI_RT_API double moirai_rt_executor_utilization(moirai_rt_executor_t *ex, int worker);

/* Workers with at least one admitted task (the others sleep). */
MOIRAI_RT_API int moirai_rt_executor_active_workers(moirai_rt_executor_t *ex);

/* The number of workers. */
MOIRAI_RT_API int moirai_rt_executor_worker_count(const moirai_rt_executor_t *ex);

/* Zeroes `*cfg`. */
MOIRAI_RT_API void moirai_rt_group_config_init(moirai_rt_group_config_t *cfg);

/* Creates a quota group of `ex`: its tasks together run at most budget_ns
 * per period_ns window (windows start at creation, on the executor's
 * clock); when the budget is used up, their ready jobs wait for the next
 * window (counted as throttles). Admission also refuses a task whose
 * utilization would take the group's tasks above budget/period. Returns 0,
 * -EINVAL (NULL, budget 0 or above the period, period 0) or -ENOMEM. */
MOIRAI_RT_API int moirai_rt_group_create(moirai_rt_executor_t *ex, moirai_rt_group_t **out,
                                         const moirai_rt_group_config_t *cfg);

/* Frees an empty group. Returns 0, -EINVAL (NULL) or -EBUSY (tasks use it). */
MOIRAI_RT_API int moirai_rt_group_destroy(moirai_rt_group_t *group);

/* Copies the group's counters (under the executor's lock). 0 or -EINVAL. */
MOIRAI_RT_API int moirai_rt_group_stats(moirai_rt_group_t *group, moirai_rt_group_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif
