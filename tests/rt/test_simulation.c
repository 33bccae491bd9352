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
