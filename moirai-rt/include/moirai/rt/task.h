/* Real-time constraints: what a task promises and what it is promised.
 *
 * A periodic task releases a job every `period_ns` from its first release;
 * each job must finish within `deadline_ns` of its release (constrained:
 * wcet <= deadline <= period) and may use at most `wcet_ns` of its
 * worker's time (its budget). A job is a function the executor calls in
 * steps: it returns MOIRAI_RT_JOB_MORE to be called again (a preemption
 * point: the executor may run a more urgent job first) or
 * MOIRAI_RT_JOB_DONE when the job is complete. A job that needs no
 * preemption points is one step. */
#ifndef MOIRAI_RT_TASK_H
#define MOIRAI_RT_TASK_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/rt/export.h>

/* How an executor orders ready jobs. Zero is EDF. */
typedef enum moirai_rt_policy {
    MOIRAI_RT_POLICY_EDF = 0,  /* earliest absolute deadline first */
    MOIRAI_RT_POLICY_RM = 1,   /* rate monotonic: shortest period first */
    MOIRAI_RT_POLICY_DM = 2,   /* deadline monotonic: shortest relative deadline first */
    MOIRAI_RT_POLICY_FIFO = 3, /* highest `priority` first, then earliest release */
    MOIRAI_RT_POLICY_RR = 4,   /* highest `priority` first, round robin by time slice */
} moirai_rt_policy_t;

/* What happens when a job has used its whole budget and is not done. The
 * overrun is always counted. */
typedef enum moirai_rt_overrun {
    MOIRAI_RT_OVERRUN_REPORT = 0, /* only count it; the job runs on */
    MOIRAI_RT_OVERRUN_SKIP = 1,   /* abandon the job (never called again; counted skipped) */
    /* The task leaves the real-time set (its share is freed for admission)
     * and its jobs, this one included, run only when no real-time job is
     * ready on its worker. */
    MOIRAI_RT_OVERRUN_DEMOTE = 2,
} moirai_rt_overrun_t;

/* What a job step returns (or a negative errno: the job failed, and is
 * counted so). */
#define MOIRAI_RT_JOB_DONE 0
#define MOIRAI_RT_JOB_MORE 1

/* The job being run; valid only during the step it is passed to. */
typedef struct moirai_rt_job moirai_rt_job_t;

/* A job step. `arg` is the task's; `job` describes the current job. */
typedef int (*moirai_rt_job_fn)(void *arg, moirai_rt_job_t *job);

/* A critical section a task's job runs: lock `lock` (an executor-wide
 * number the user chooses) held for at most `length_ns` per job. Locks
 * must be taken and released within one step. */
typedef struct moirai_rt_task_section {
    int lock;
    uint64_t length_ns;
} moirai_rt_task_section_t;

/* A quota group of an executor (moirai_rt_group_create() in
 * moirai/rt/executor.h). Opaque. */
typedef struct moirai_rt_group moirai_rt_group_t;

/* A task. Initialise with moirai_rt_task_config_init(); a zero field is its
 * default. */
typedef struct moirai_rt_task_config {
    const char *name;     /* borrowed for the task's life; may be NULL */
    moirai_rt_job_fn fn;  /* required */
    void *arg;            /* passed to fn */
    uint64_t period_ns;   /* required, > 0 */
    uint64_t deadline_ns; /* relative; 0: the period */
    uint64_t wcet_ns;     /* the budget: required, > 0, <= deadline */
    uint64_t start_ns;    /* absolute first release on the executor's clock; 0: at admission */
    int priority;         /* FIFO and RR: 1..99, larger more urgent; 0: 1. Ignored otherwise */
    moirai_rt_overrun_t overrun;              /* REPORT */
    uint64_t max_step_ns;                     /* longest step (non-preemptive region); 0: wcet */
    int worker;                               /* 0: placement chooses; n >= 1: worker n - 1 */
    moirai_rt_group_t *group;                 /* quota group of the same executor, or NULL */
    const moirai_rt_task_section_t *sections; /* copied at admission */
    size_t section_count; /* entries in `sections` (which may be NULL only when this is 0) */
} moirai_rt_task_config_t;

/* What happened to a task's jobs. Times are on the executor's clock. */
typedef struct moirai_rt_task_stats {
    uint64_t released;  /* jobs released */
    uint64_t completed; /* jobs that returned DONE */
    uint64_t missed;    /* jobs that finished (or were abandoned) after their deadline */
    uint64_t skipped;   /* jobs abandoned by MOIRAI_RT_OVERRUN_SKIP */
    uint64_t overruns;  /* jobs that used more than their budget */
    uint64_t failed;    /* jobs whose step returned an error or kept a lock */
    uint64_t throttled; /* times the task's group quota held a ready job back */
    /* Response time (completion - release) of completed jobs. p99 comes
     * from a log-linear histogram: within 1/32 (3%) above the true value,
     * never above the maximum. All 0 before the first completion. */
    uint64_t response_min_ns, /* the shortest response time */
        response_mean_ns,     /* the mean response time */
        response_max_ns,      /* the longest response time */
        response_p99_ns;      /* the 99th-percentile response time (see above) */
    /* Start latency (first step's start - release), the release jitter. */
    uint64_t latency_min_ns, /* the shortest start latency */
        latency_mean_ns,     /* the mean start latency */
        latency_max_ns,      /* the longest start latency */
        latency_p99_ns;      /* the 99th-percentile start latency (histogram as above) */
    /* Largest completion - deadline over completed jobs (negative: every
     * job finished early); INT64_MIN before the first completion. */
    int64_t lateness_max_ns;
    int worker;  /* the worker it runs on */
    int demoted; /* 1 after MOIRAI_RT_OVERRUN_DEMOTE took effect */
} moirai_rt_task_stats_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Zeroes `*cfg` (every field at its default; worker 0 = any). */
MOIRAI_RT_API void moirai_rt_task_config_init(moirai_rt_task_config_t *cfg);

/* The job's index (0 for the first job of its task). */
MOIRAI_RT_API uint64_t moirai_rt_job_index(const moirai_rt_job_t *job);
/* The job's release time and absolute deadline. */
MOIRAI_RT_API uint64_t moirai_rt_job_release_ns(const moirai_rt_job_t *job);
MOIRAI_RT_API uint64_t moirai_rt_job_deadline_ns(const moirai_rt_job_t *job);
/* Budget left before this step began (wcet minus the time its earlier
 * steps used; 0 once overrun). A long job may poll it to stop early. */
MOIRAI_RT_API uint64_t moirai_rt_job_budget_left_ns(const moirai_rt_job_t *job);
/* The executor's clock reading now. */
MOIRAI_RT_API uint64_t moirai_rt_job_now_ns(const moirai_rt_job_t *job);

/* "edf", "rm", "dm", "fifo", "rr", or "unknown". */
MOIRAI_RT_API const char *moirai_rt_policy_name(moirai_rt_policy_t policy);

#ifdef __cplusplus
}
#endif

#endif
