/* Schedulability analysis: pure functions over a task set.
 *
 * A task set is an array of moirai_rt_analysis_task_t: each task releases
 * a job every `period_ns` (periodic, or sporadic with that minimum
 * separation), each job needs at most `wcet_ns` of one CPU and must finish
 * within `deadline_ns` of its release (constrained deadlines: wcet <=
 * deadline <= period). The functions never allocate more than a small
 * scratch array, never block, and are thread-safe (they touch only their
 * arguments). Every result says why: the first task that fails, the value
 * that failed and the limit it exceeded, in numbers and in a sentence.
 *
 * The tests and their sources:
 *   - utilization U = sum C/T;
 *   - Liu & Layland's bound for rate-monotonic priorities, U <= n(2^(1/n)-1)
 *     (JACM 1973; sufficient, implicit deadlines);
 *   - the hyperbolic bound, prod(U_i + 1) <= 2 (Bini, Buttazzo, Buttazzo,
 *     IEEE TC 2003; sufficient, implicit deadlines, tighter than L&L);
 *   - exact response-time analysis for fixed priorities with blocking,
 *     R = C + B + sum_{hp} ceil(R/T_j) C_j (Joseph & Pandya 1986; Audsley et
 *     al. 1993), exact for preemptive fixed priorities with constrained
 *     deadlines and B = 0;
 *   - the EDF processor-demand test for constrained deadlines,
 *     dbf(t) + b(t) <= t at every absolute deadline t up to the synchronous
 *     busy period (Baruah, Rosier, Howell 1990; blocking as in Baruah 2006),
 *     exact for preemptive EDF with b = 0;
 *   - blocking terms from the lock protocols (priority inheritance and the
 *     immediate priority ceiling; Sha, Rajkumar, Lehoczky 1990);
 *   - partitioned multiprocessor assignment, first-fit or worst-fit
 *     decreasing by utilization, each CPU checked by the exact test.
 *
 * Times are integers in nanoseconds (any unit works as long as it is the
 * same for every field); sums that would overflow 64 bits are -EOVERFLOW,
 * never wrapped. */
#ifndef MOIRAI_RT_ANALYSIS_H
#define MOIRAI_RT_ANALYSIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/rt/export.h>

/* One task as the analysis sees it. */
typedef struct moirai_rt_analysis_task {
    uint64_t period_ns;   /* > 0 */
    uint64_t deadline_ns; /* relative; 0 means the period */
    uint64_t wcet_ns;     /* > 0 and <= the deadline */
    /* Fixed priority, larger is more urgent (as SCHED_FIFO's); tasks of
     * equal priority are counted as interfering with each other. Only the
     * fixed-priority tests read it. */
    int priority;
    /* Longest time a job can be blocked by lower-priority (or, under EDF,
     * later-deadline) work: lock critical sections, non-preemptive steps.
     * moirai_rt_analysis_blocking() computes it from critical sections. */
    uint64_t blocking_ns;
} moirai_rt_analysis_task_t;

/* Which priority order moirai_rt_analysis_assign_priorities() gives. */
typedef enum moirai_rt_order {
    MOIRAI_RT_ORDER_RATE_MONOTONIC = 0,     /* shorter period: more urgent */
    MOIRAI_RT_ORDER_DEADLINE_MONOTONIC = 1, /* shorter relative deadline: more urgent */
} moirai_rt_order_t;

/* The per-CPU test a partitioning uses. */
typedef enum moirai_rt_test {
    MOIRAI_RT_TEST_EDF = 0, /* processor demand (exact) */
    MOIRAI_RT_TEST_RTA = 1, /* response-time analysis with the tasks' priorities */
} moirai_rt_test_t;

/* How a partitioning chooses among the CPUs that pass. */
typedef enum moirai_rt_fit {
    /* Tasks by decreasing utilization; each on the lowest-numbered CPU that
     * still passes: packs the set onto few CPUs. */
    MOIRAI_RT_FIT_FIRST = 0,
    /* Tasks by decreasing utilization; each on the least-loaded CPU that
     * still passes: spreads the load. */
    MOIRAI_RT_FIT_WORST = 1,
} moirai_rt_fit_t;

/* A lock protocol, for the blocking terms. */
typedef enum moirai_rt_protocol {
    /* Priority inheritance: a job can be blocked once per lower-priority
     * job and once per lock, whichever bound is smaller. */
    MOIRAI_RT_PROTOCOL_INHERIT = 0,
    /* Immediate priority ceiling: a job is blocked at most once, by the
     * longest critical section of a lower-priority task on a lock whose
     * ceiling is at least its priority. */
    MOIRAI_RT_PROTOCOL_CEILING = 1,
} moirai_rt_protocol_t;

/* One critical section: task `task` (an index into the set) holds lock
 * `lock` (any small non-negative number naming it) for at most
 * `length_ns` per job. Nested sections are listed as separate entries
 * with their outer length. */
typedef struct moirai_rt_section {
    int task;
    int lock;
    uint64_t length_ns;
} moirai_rt_section_t;

/* What a test concluded, and why. */
typedef struct moirai_rt_analysis_result {
    /* The verdict. For the exact tests (RTA without blocking, EDF demand
     * without blocking) false means a deadline can be missed; for the
     * bounds it means only that the bound could not show schedulability. */
    bool schedulable;
    bool exact;         /* whether the test is exact (necessary and sufficient) */
    int task;           /* index of the first task found to fail, or -1 */
    int cpu;            /* partitioning: the CPU concerned, or -1 */
    double utilization; /* total U of the set (of the CPU, per-CPU tests) */
    double bound;       /* the bound compared against, where one is */
    uint64_t value_ns;  /* RTA: the failing task's response; EDF: demand at at_ns */
    uint64_t limit_ns;  /* RTA: its deadline; EDF: at_ns */
    uint64_t at_ns;     /* EDF: the interval length where demand exceeded supply */
    char reason[200];   /* one sentence: why (schedulable or not) */
} moirai_rt_analysis_result_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Checks one task: period > 0, wcet > 0, wcet <= deadline <= period (after
 * a 0 deadline became the period). Returns 0 or -EINVAL (also for NULL). */
MOIRAI_RT_API int moirai_rt_analysis_task_validate(const moirai_rt_analysis_task_t *task);

/* U = sum wcet/period into `*out`. Returns 0, or -EINVAL (NULL tasks with
 * n > 0, NULL out, an invalid task). */
MOIRAI_RT_API int moirai_rt_analysis_utilization(const moirai_rt_analysis_task_t *tasks, size_t n,
                                                 double *out);

/* Liu & Layland's bound for n tasks, n(2^(1/n) - 1); 1 for n <= 1. */
MOIRAI_RT_API double moirai_rt_analysis_ll_bound(size_t n);

/* Rate-monotonic schedulability by Liu & Layland's bound (sufficient).
 * Returns 0 with `*result` filled, or -EINVAL (NULL arguments, an invalid
 * task, a deadline shorter than its period: the bound assumes D = T). */
MOIRAI_RT_API int moirai_rt_analysis_rm_ll(const moirai_rt_analysis_task_t *tasks, size_t n,
                                           moirai_rt_analysis_result_t *result);

/* Rate-monotonic schedulability by the hyperbolic bound (sufficient).
 * Same arguments and errors as moirai_rt_analysis_rm_ll(). */
MOIRAI_RT_API int moirai_rt_analysis_rm_hyperbolic(const moirai_rt_analysis_task_t *tasks, size_t n,
                                                   moirai_rt_analysis_result_t *result);

/* Sets each task's `priority` for rate- or deadline-monotonic order:
 * n for the most urgent down to 1, ties broken by index (earlier is more
 * urgent). Returns 0 or -EINVAL (NULL tasks with n > 0, invalid task,
 * unknown order). On error nothing is changed. */
MOIRAI_RT_API int moirai_rt_analysis_assign_priorities(moirai_rt_analysis_task_t *tasks, size_t n,
                                                       moirai_rt_order_t order);

/* Response-time analysis with the tasks' priorities and blocking terms.
 * `response` (optional, n entries) receives each task's worst-case
 * response time, or UINT64_MAX where the iteration passed the deadline.
 * The result names the first failing task in index order. Returns 0,
 * -EINVAL (NULL tasks with n > 0, NULL result, invalid task) or
 * -EOVERFLOW (a response would pass 2^64 ns). */
MOIRAI_RT_API int moirai_rt_analysis_rta(const moirai_rt_analysis_task_t *tasks, size_t n,
                                         moirai_rt_analysis_result_t *result, uint64_t *response);

/* The EDF processor-demand test: U <= 1 and, for every absolute deadline
 * t of the synchronous arrival pattern up to the busy period,
 * dbf(t) + b(t) <= t, where b(t) is the largest blocking term of a task
 * with deadline <= t. The result gives the first t that fails and its
 * demand. Returns 0, -EINVAL (as above), -EOVERFLOW, or -ERANGE when more
 * than 10 million deadlines would have to be checked (periods with a huge
 * busy period; nothing is concluded then). */
MOIRAI_RT_API int moirai_rt_analysis_edf(const moirai_rt_analysis_task_t *tasks, size_t n,
                                         moirai_rt_analysis_result_t *result);

/* Blocking terms from critical sections under `protocol`, for tasks on one
 * CPU with their priorities set: each lock's ceiling is the highest
 * priority of a task using it; task i can be blocked by sections of tasks
 * with lower priority on locks whose ceiling is >= its priority. Writes
 * B_i into `blocking` (n entries; may be the tasks' own blocking_ns
 * through a separate array). Returns 0 or -EINVAL (NULL arrays with
 * counts, a section naming a task out of range, a negative lock, unknown
 * protocol). */
MOIRAI_RT_API int moirai_rt_analysis_blocking(const moirai_rt_analysis_task_t *tasks, size_t n,
                                              const moirai_rt_section_t *sections, size_t count,
                                              moirai_rt_protocol_t protocol, uint64_t *blocking);

/* Partitions the set onto `cpus` CPUs: tasks by decreasing utilization
 * (ties by index), each placed by `fit` on a CPU where `test` still passes
 * with it. `cpu_of` (n entries) receives each task's CPU. If a task fits
 * nowhere the result names it (schedulable false) and `cpu_of` holds -1
 * for it and for those not yet placed. Returns 0, -EINVAL (NULL arguments,
 * cpus < 1 or > 1024, invalid task, unknown fit or test), -ENOMEM,
 * -EOVERFLOW or -ERANGE (from the per-CPU test). */
MOIRAI_RT_API int moirai_rt_analysis_partition(const moirai_rt_analysis_task_t *tasks, size_t n,
                                               int cpus, moirai_rt_fit_t fit, moirai_rt_test_t test,
                                               int *cpu_of, moirai_rt_analysis_result_t *result);

#ifdef __cplusplus
}
#endif

#endif
