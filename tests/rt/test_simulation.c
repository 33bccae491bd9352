/* The exact tests against brute force: for random small task sets (fixed
 * seed), response-time analysis says schedulable exactly when a
 * simulation of preemptive fixed priorities over the hyperperiod finds no
 * deadline miss, and the EDF demand test says schedulable exactly when a
 * simulation of preemptive EDF finds none. Jobs are released
 * synchronously at 0 and periodically, the worst case for both
 * (constrained deadlines). Both verdicts must occur, so the check is not
 * vacuous. */
#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <moirai/rt/analysis.h>

#define MAX_TASKS 4
#define SETS      600

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic across runs and platforms. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

static uint64_t range(uint64_t lo, uint64_t hi)
{
    return lo + rng() % (hi - lo + 1);
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Simulates in unit steps until the hyperperiod plus the largest deadline;
 * returns true when some job misses its deadline. */
static bool simulate(const moirai_rt_analysis_task_t *ts, size_t n, bool edf)
{
    uint64_t h = 1, dmax = 0;
    for (size_t i = 0; i < n; i++) {
        h = h / gcd(h, ts[i].period_ns) * ts[i].period_ns;
        uint64_t d = ts[i].deadline_ns ? ts[i].deadline_ns : ts[i].period_ns;
        if (d > dmax)
            dmax = d;
    }
    uint64_t remaining[MAX_TASKS] = {0}, deadline[MAX_TASKS] = {0};
    for (uint64_t t = 0; t < h + dmax; t++) {
        for (size_t i = 0; i < n; i++) {
            if (remaining[i] && deadline[i] <= t)
                return true;
            if (t % ts[i].period_ns == 0 && t < h) {
                if (remaining[i])
                    return true; /* the previous job is still running at its period */
                remaining[i] = ts[i].wcet_ns;
                deadline[i] = t + (ts[i].deadline_ns ? ts[i].deadline_ns : ts[i].period_ns);
            }
        }
        int run = -1;
        for (size_t i = 0; i < n; i++) {
            if (!remaining[i])
                continue;
            if (run < 0 || (edf ? deadline[i] < deadline[run] : ts[i].priority > ts[run].priority))
                run = (int)i;
        }
        if (run >= 0)
            remaining[run]--;
    }
    for (size_t i = 0; i < n; i++)
        if (remaining[i])
            return true;
    return false;
}

static size_t random_set(moirai_rt_analysis_task_t *ts, double max_u)
{
    for (;;) {
        size_t n = (size_t)range(2, MAX_TASKS);
        double u = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t t = range(3, 12);
            uint64_t c = range(1, t / 2 + 1);
            uint64_t d = range(c, t);
            ts[i] = (moirai_rt_analysis_task_t){t, d, c, 0, 0};
            u += (double)c / (double)t;
        }
        if (u <= max_u)
            return n;
    }
}

Test(rt_simulation, rta_is_exact_for_deadline_monotonic)
{
    int yes = 0, no = 0;
    for (int s = 0; s < SETS; s++) {
        moirai_rt_analysis_task_t ts[MAX_TASKS];
        size_t n = random_set(ts, 1.5);
        cr_assert_eq(
            moirai_rt_analysis_assign_priorities(ts, n, MOIRAI_RT_ORDER_DEADLINE_MONOTONIC), 0);
        moirai_rt_analysis_result_t r;
        cr_assert_eq(moirai_rt_analysis_rta(ts, n, &r, NULL), 0);
        bool miss = simulate(ts, n, false);
        cr_assert_eq(r.schedulable, !miss, "set %d: analysis %d, simulation miss %d: %s", s,
                     r.schedulable, miss, r.reason);
        r.schedulable ? yes++ : no++;
    }
    cr_assert_gt(yes, 50);
    cr_assert_gt(no, 50);
}

Test(rt_simulation, edf_demand_is_exact)
{
    int yes = 0, no = 0;
    for (int s = 0; s < SETS; s++) {
        moirai_rt_analysis_task_t ts[MAX_TASKS];
        size_t n = random_set(ts, 1.0);
        moirai_rt_analysis_result_t r;
        cr_assert_eq(moirai_rt_analysis_edf(ts, n, &r), 0);
        bool miss = simulate(ts, n, true);
        cr_assert_eq(r.schedulable, !miss, "set %d: analysis %d, simulation miss %d: %s", s,
                     r.schedulable, miss, r.reason);
        r.schedulable ? yes++ : no++;
    }
    cr_assert_gt(yes, 50);
    cr_assert_gt(no, 50);
}

Test(rt_simulation, partitions_pass_per_cpu)
{
    /* Every placement a partitioning reports is schedulable on each CPU
     * by simulation. */
    for (int s = 0; s < 200; s++) {
        moirai_rt_analysis_task_t ts[MAX_TASKS], cpu_set[MAX_TASKS];
        size_t n = random_set(ts, 1.8);
        int cpu[MAX_TASKS];
        moirai_rt_analysis_result_t r;
        cr_assert_eq(moirai_rt_analysis_partition(ts, n, 2,
                                                  s % 2 ? MOIRAI_RT_FIT_WORST : MOIRAI_RT_FIT_FIRST,
                                                  MOIRAI_RT_TEST_EDF, cpu, &r),
                     0);
        if (!r.schedulable)
            continue;
        for (int c = 0; c < 2; c++) {
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (cpu[i] == c)
                    cpu_set[k++] = ts[i];
            cr_assert_not(simulate(cpu_set, k, true), "set %d cpu %d misses", s, c);
        }
    }
}

/* ---- the executor against its own admission ---- */

#include <moirai/rt.h>

typedef struct sim_work {
    moirai_rt_clock_t *clock;
    uint64_t step_ns;
    int steps, cur;
    uint64_t job;
    bool started;
} sim_work_t;

static int sim_step(void *arg, moirai_rt_job_t *job)
{
    sim_work_t *w = arg;
    if (!w->started || moirai_rt_job_index(job) != w->job) {
        w->started = true;
        w->job = moirai_rt_job_index(job);
        w->cur = 0;
    }
    moirai_rt_clock_advance(w->clock, w->step_ns);
    return ++w->cur < w->steps ? MOIRAI_RT_JOB_MORE : MOIRAI_RT_JOB_DONE;
}

/* Random task sets offered to an executor on the virtual clock, every job
 * taking exactly its budget in steps of its declared longest step, with
 * random first releases: whatever admission accepted never misses a
 * deadline over two hyperperiods, under every policy. (Admission is
 * sufficient, so this checks it is never optimistic about the
 * dispatcher's non-preemptive steps.) */
Test(rt_simulation, admitted_sets_never_miss)
{
    static const moirai_rt_policy_t policies[] = {MOIRAI_RT_POLICY_EDF, MOIRAI_RT_POLICY_RM,
                                                  MOIRAI_RT_POLICY_DM, MOIRAI_RT_POLICY_FIFO,
                                                  MOIRAI_RT_POLICY_RR};
    int admitted_total = 0, refused_total = 0;
    for (int s = 0; s < 250; s++) {
        moirai_rt_policy_t policy = policies[s % 5];
        moirai_rt_clock_t *clk;
        cr_assert_eq(moirai_rt_clock_create_virtual(&clk, 0), 0);
        moirai_rt_executor_config_t cfg;
        moirai_rt_executor_config_init(&cfg);
        cfg.policy = policy;
        cfg.clock = clk;
        cfg.rr_slice_ns = 20;
        moirai_rt_executor_t *ex;
        cr_assert_eq(moirai_rt_executor_create(&ex, &cfg), 0);
        sim_work_t work[6];
        moirai_rt_task_t *tasks[6];
        int n = 0;
        uint64_t h = 1;
        int offered = (int)range(2, 6);
        for (int i = 0; i < offered; i++) {
            uint64_t period = 10 * range(4, 24);
            uint64_t step = range(1, 10);
            int steps = (int)range(1, 6);
            uint64_t wcet = step * (uint64_t)steps;
            if (wcet > period)
                continue;
            uint64_t deadline = range(wcet, period);
            work[n] = (sim_work_t){clk, step, steps, 0, 0, false};
            moirai_rt_task_config_t tc;
            moirai_rt_task_config_init(&tc);
            tc.fn = sim_step;
            tc.arg = &work[n];
            tc.period_ns = period;
            tc.deadline_ns = deadline;
            tc.wcet_ns = wcet;
            tc.max_step_ns = step;
            tc.priority = (int)range(1, 4);
            tc.start_ns = range(1, 40);
            if (moirai_rt_executor_add(ex, &tc, &tasks[n], NULL) == 0) {
                h = h / gcd(h, period) * period;
                n++;
            } else {
                refused_total++;
            }
        }
        admitted_total += n;
        cr_assert_eq(moirai_rt_executor_run_until(ex, 2 * h + 100), 0);
        for (int i = 0; i < n; i++) {
            moirai_rt_task_stats_t st;
            cr_assert_eq(moirai_rt_executor_task_stats(ex, tasks[i], &st), 0);
            cr_assert_eq(st.missed, 0, "set %d (%s) task %d: %llu of %llu jobs missed", s,
                         moirai_rt_policy_name(policy), i, (unsigned long long)st.missed,
                         (unsigned long long)st.completed);
            cr_assert_eq(st.overruns, 0);
            cr_assert_geq(st.completed + 1, st.released);
        }
        moirai_rt_executor_destroy(ex);
        moirai_rt_clock_destroy(clk);
    }
    cr_assert_gt(admitted_total, 300);
    cr_assert_gt(refused_total, 50);
}
