/* The RT executor's state (internal; shared by executor.c, which runs
 * workers and dispatch, and admission.c, which decides what may join). */
#ifndef MOIRAI_RT_EXECUTOR_INTERNAL_H
#define MOIRAI_RT_EXECUTOR_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <moirai/rt/executor.h>

#include "hist.h"

struct moirai_rt_group {
    moirai_rt_executor_t *ex;
    uint64_t budget, period;
    uint64_t window_start, used, windows, throttles, total;
    uint64_t throttled_window; /* window number of the last throttle counted (+1) */
    int members;
    double member_u; /* utilization of its non-demoted tasks */
    struct moirai_rt_group *next;
};

struct moirai_rt_task {
    moirai_rt_executor_t *ex;
    uint64_t id;
    moirai_rt_task_config_t cfg; /* sections point at our copy */
    moirai_rt_task_section_t *sections;
    uint64_t deadline;     /* relative, resolved */
    uint64_t step;         /* longest step, resolved */
    uint64_t remote_block; /* lock waiting caused by other workers (from admission) */
    int prio;              /* FIFO/RR priority, resolved */
    int worker;
    uint64_t first_release, next_release;
    uint64_t released, finished; /* job counts; pending = released - finished */
    /* The job in progress (the oldest pending). */
    bool job_started, job_overrun;
    uint64_t job_exec, slice_used, rr_stamp;
    uint64_t throttle_mark; /* group window + 1 in which a throttle was counted */
    bool demoted, running, remove_pending;
    /* Statistics. */
    uint64_t completed, missed, skipped, overruns, failed, throttled;
    int64_t lateness_max;
    moirai__hist_t resp, lat;
    struct moirai_rt_task *next; /* the worker's list, admission order */
    int heap_idx;                /* position in the worker's release heap, or -1 */
    int ready_idx;               /* position in the worker's ready set, or -1 */
};

typedef struct moirai__rt_worker {
    moirai_rt_executor_t *ex;
    int index;
    pthread_t thread;
    bool thread_started;
    moirai_rt_task_t *tasks;
    int ntasks;
    /* A min-heap of the tasks by next release, so a dispatch finds what is
     * due in O(log n), and the set of tasks with a pending job, which the
     * ranking scans (usually a handful, whatever the number of tasks).
     * Both have room for `cap` tasks. */
    moirai_rt_task_t **heap, **ready;
    int heap_n, ready_n, cap;
    /* Bumped (under the executor's lock) to end the worker's sleep; the
     * worker reads it under the same lock before sleeping, so the lock
     * orders it and relaxed accesses suffice. */
    _Atomic uint32_t wake;
    uint64_t vtime; /* virtual clock: this worker's own time */
    uint64_t rr_counter;
    double u;
    moirai_rt_os_status_t os;
} moirai__rt_worker_t;

struct moirai_rt_executor {
    moirai_rt_executor_config_t cfg;
    int nworkers;
    moirai__rt_worker_t *w;
    int *cpus; /* copy of cfg.cpus, or NULL */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping;
    bool go; /* every worker started: they may run jobs */
    int started, start_error;
    int removers; /* threads waiting in remove for a step to end */
    uint64_t next_id;
    /* Bumped whenever the admitted set changes (add, remove, demote), so
     * an admission decided outside the lock knows whether it still holds. */
    uint64_t generation;
    moirai_rt_clock_t *clock;
    bool manual;
    moirai_rt_group_t *groups;
};

/* Admission (admission.c). With the lock held: moirai__snapshot_take
 * copies the admitted set and the candidate `t` (fully set up except its
 * worker); moirai__admission_group_check refuses a task its group's quota
 * cannot hold (-EBUSY, `why` filled). Without the lock:
 * moirai__admission_decide returns the worker for the candidate, or a
 * negative errno (-EBUSY with `why` filled). */
typedef struct moirai__snapshot moirai__snapshot_t;
int moirai__snapshot_take(moirai_rt_executor_t *ex, const moirai_rt_task_t *t,
                          moirai__snapshot_t **out);
void moirai__snapshot_free(moirai__snapshot_t *s);
int moirai__admission_decide(moirai__snapshot_t *s, moirai_rt_analysis_result_t *why);
int moirai__admission_group_check(const moirai_rt_task_t *t, moirai_rt_analysis_result_t *why);

/* Quota groups (group.c), with the executor's lock held: start the
 * windows up to `now`; whether the budget of the current window is spent
 * (false for NULL). */
void moirai__group_roll(moirai_rt_group_t *g, uint64_t now);
bool moirai__group_exhausted(moirai_rt_group_t *g, uint64_t now);

/* The utilization of one task. */
static inline double moirai__task_u(const moirai_rt_task_t *t)
{
    return (double)t->cfg.wcet_ns / (double)t->cfg.period_ns;
}

#endif
