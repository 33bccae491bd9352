/* Helpers shared by the RT executor tests on the virtual clock: a trace
 * recorder and a job function that "takes time" by advancing the clock. */
#ifndef MOIRAI_RT_TEST_UTIL_H
#define MOIRAI_RT_TEST_UTIL_H

#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include <moirai/rt.h>

#define LOG_CAP 4096

typedef struct rec {
    moirai_rt_event_t ev;
    uint64_t task, job, time;
    int worker;
} rec_t;

static rec_t log_v[LOG_CAP];
static int log_n;

static void tracer(void *arg, moirai_rt_event_t ev, uint64_t task, uint64_t job, int worker,
                   uint64_t time)
{
    (void)arg;
    if (log_n < LOG_CAP)
        log_v[log_n++] = (rec_t){ev, task, job, time, worker};
}

/* The tasks (as letters, id 1 = 'A') of every event `ev`, in order. */
__attribute__((unused)) static const char *events(moirai_rt_event_t ev)
{
    static char s[LOG_CAP + 1];
    int k = 0;
    for (int i = 0; i < log_n; i++)
        if (log_v[i].ev == ev)
            s[k++] = (char)('A' + log_v[i].task - 1);
    s[k] = 0;
    return s;
}

/* The time of the n-th (0-based) event `ev` of task `task`, or UINT64_MAX. */
__attribute__((unused)) static uint64_t event_time(moirai_rt_event_t ev, uint64_t task, int nth)
{
    for (int i = 0; i < log_n; i++)
        if (log_v[i].ev == ev && log_v[i].task == task && nth-- == 0)
            return log_v[i].time;
    return UINT64_MAX;
}

/* A job of `steps` steps, each advancing the virtual clock by `step_ns`. */
typedef struct work {
    moirai_rt_clock_t *clock;
    uint64_t step_ns;
    int steps;
    int cur;
    uint64_t job;
    int calls;
} work_t;

static int work_fn(void *arg, moirai_rt_job_t *job)
{
    work_t *w = arg;
    if (moirai_rt_job_index(job) != w->job || w->calls == 0) {
        w->job = moirai_rt_job_index(job);
        w->cur = 0;
    }
    w->calls++;
    cr_assert_eq(moirai_rt_clock_advance(w->clock, w->step_ns), 0);
    return ++w->cur < w->steps ? MOIRAI_RT_JOB_MORE : MOIRAI_RT_JOB_DONE;
}

/* A virtual-clock executor with the tracer. */
__attribute__((unused)) static moirai_rt_executor_t *make_ex(moirai_rt_clock_t **clock,
                                                             moirai_rt_policy_t policy, int workers)
{
    log_n = 0;
    cr_assert_eq(moirai_rt_clock_create_virtual(clock, 0), 0);
    moirai_rt_executor_config_t cfg;
    moirai_rt_executor_config_init(&cfg);
    cfg.policy = policy;
    cfg.workers = workers;
    cfg.clock = *clock;
    cfg.trace = tracer;
    moirai_rt_executor_t *ex = NULL;
    cr_assert_eq(moirai_rt_executor_create(&ex, &cfg), 0);
    return ex;
}

/* Admits a task of `steps` steps of `step_ns` (C, D, T given), asserting
 * success. */
__attribute__((unused)) static moirai_rt_task_t *add(moirai_rt_executor_t *ex, work_t *w,
                                                     uint64_t c, uint64_t d, uint64_t t,
                                                     uint64_t start, int prio)
{
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = work_fn;
    tc.arg = w;
    tc.wcet_ns = c;
    tc.deadline_ns = d;
    tc.period_ns = t;
    tc.start_ns = start;
    tc.priority = prio;
    tc.max_step_ns = w->step_ns <= c ? w->step_ns : 0;
    moirai_rt_task_t *task = NULL;
    moirai_rt_analysis_result_t why;
    int rc = moirai_rt_executor_add(ex, &tc, &task, &why);
    cr_assert_eq(rc, 0, "add: %d %s", rc, why.reason);
    return task;
}

#endif
