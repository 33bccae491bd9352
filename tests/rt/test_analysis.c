/* Schedulability analysis against published and hand-verified task sets,
 * with exact values asserted, plus every documented error.
 *
 * Sets (C, T) or (C, D, T), any time unit:
 *   - Liu & Layland (JACM 1973): the bound n(2^(1/n) - 1).
 *   - Burns & Wellings, "Real-Time Systems and Programming Languages",
 *     response-time example: a (3, 7), b (3, 12), c (5, 20) under RM has
 *     R = 3, 6, 20 (U = 0.80, above the L&L bound 0.7798, yet schedulable).
 *   - The three-task set (1, 4), (2, 6), (3, 10) used in Buttazzo's "Hard
 *     Real-Time Computing Systems" teaching material: U = 0.883 fails both
 *     bounds, RTA gives R = 1, 3, 10.
 *   - Buttazzo's RM-versus-EDF example (2, 5), (4, 7): U = 0.971; under RM
 *     the second task's response iterates 6 -> 8 > 7 (misses), under EDF
 *     the set is schedulable.
 *   - Hyperbolic bound (Bini, Buttazzo, Buttazzo 2003): (2, 4), (2, 6) has
 *     U = 0.833 above L&L's 0.828 but prod(U + 1) = 2 exactly: accepted.
 * Each iteration is spelled out next to its assertion. */
#include <criterion/criterion.h>

#include <errno.h>
#include <math.h>
#include <string.h>

#include <moirai/rt/analysis.h>

#include "oom.h"

#define T3(c, d, t)                                                                                \
    {                                                                                              \
        (t), (d), (c), 0, 0                                                                        \
    }

Test(rt_analysis, liu_layland_bound_values)
{
    cr_assert_float_eq(moirai_rt_analysis_ll_bound(0), 1.0, 1e-12);
    cr_assert_float_eq(moirai_rt_analysis_ll_bound(1), 1.0, 1e-12);
    cr_assert_float_eq(moirai_rt_analysis_ll_bound(2), 0.8284271247, 1e-9);
    cr_assert_float_eq(moirai_rt_analysis_ll_bound(3), 0.7797631497, 1e-9);
    /* It falls towards ln 2. */
    cr_assert_float_eq(moirai_rt_analysis_ll_bound(100000), log(2.0), 1e-5);
}

Test(rt_analysis, burns_wellings_rta)
{
    moirai_rt_analysis_task_t ts[] = {T3(3, 0, 7), T3(3, 0, 12), T3(5, 0, 20)};
    cr_assert_eq(moirai_rt_analysis_assign_priorities(ts, 3, MOIRAI_RT_ORDER_RATE_MONOTONIC), 0);
    cr_assert_eq(ts[0].priority, 3);
    cr_assert_eq(ts[1].priority, 2);
    cr_assert_eq(ts[2].priority, 1);
    moirai_rt_analysis_result_t r;
    cr_assert_eq(moirai_rt_analysis_rm_ll(ts, 3, &r), 0);
    cr_assert_not(r.schedulable, "U %.4f is above the L&L bound: %s", r.utilization, r.reason);
    cr_assert_float_eq(r.utilization, 3.0 / 7 + 3.0 / 12 + 5.0 / 20, 1e-12);
    uint64_t resp[3];
    cr_assert_eq(moirai_rt_analysis_rta(ts, 3, &r, resp), 0);
    /* c: 5 -> 5+3+3=11 -> 5+6+3=14 -> 5+6+6=17 -> 5+9+6=20 -> 20. */
    cr_assert_eq(resp[0], 3);
    cr_assert_eq(resp[1], 6);
    cr_assert_eq(resp[2], 20);
    cr_assert(r.schedulable, "%s", r.reason);
    cr_assert(r.exact);
    cr_assert_eq(r.task, -1);
    cr_assert(strstr(r.reason, "least slack 0 ns"), "%s", r.reason);
}

Test(rt_analysis, rta_beats_both_bounds)
{
    moirai_rt_analysis_task_t ts[] = {T3(1, 0, 4), T3(2, 0, 6), T3(3, 0, 10)};
    cr_assert_eq(moirai_rt_analysis_assign_priorities(ts, 3, MOIRAI_RT_ORDER_RATE_MONOTONIC), 0);
    moirai_rt_analysis_result_t r;
    cr_assert_eq(moirai_rt_analysis_rm_ll(ts, 3, &r), 0);
    cr_assert_not(r.schedulable);
    cr_assert_not(r.exact);
    cr_assert_eq(moirai_rt_analysis_rm_hyperbolic(ts, 3, &r), 0);
    cr_assert_not(r.schedulable, "1.25 * 1.333 * 1.3 = 2.1667 > 2: %s", r.reason);
    uint64_t resp[3];
    cr_assert_eq(moirai_rt_analysis_rta(ts, 3, &r, resp), 0);
    /* 3: 6 -> 3+2+2=7 -> 3+2+4=9 -> 3+3+4=10 -> 3+3+4=10. */
    cr_assert_eq(resp[0], 1);
    cr_assert_eq(resp[1], 3);
    cr_assert_eq(resp[2], 10);
    cr_assert(r.schedulable);
}

Test(rt_analysis, rm_versus_edf)
{
    moirai_rt_analysis_task_t ts[] = {T3(2, 0, 5), T3(4, 0, 7)};
    cr_assert_eq(moirai_rt_analysis_assign_priorities(ts, 2, MOIRAI_RT_ORDER_RATE_MONOTONIC), 0);
    moirai_rt_analysis_result_t r;
    uint64_t resp[2];
    cr_assert_eq(moirai_rt_analysis_rta(ts, 2, &r, resp), 0);
    cr_assert_not(r.schedulable);
    cr_assert(r.exact);
    cr_assert_eq(r.task, 1);
    cr_assert_eq(resp[0], 2);
    cr_assert_eq(resp[1], UINT64_MAX);
    /* 4+2=6 -> 4 + ceil(6/5)*2 = 8 > 7. */
    cr_assert_eq(r.value_ns, 8);
    cr_assert_eq(r.limit_ns, 7);
    cr_assert(strstr(r.reason, "task 1") && strstr(r.reason, "by 1 ns"), "%s", r.reason);
    cr_assert_eq(moirai_rt_analysis_edf(ts, 2, &r), 0);
    cr_assert(r.schedulable, "%s", r.reason);
    cr_assert(r.exact);
}

Test(rt_analysis, hyperbolic_accepts_what_ll_rejects)
{
    moirai_rt_analysis_task_t ts[] = {T3(2, 0, 4), T3(2, 0, 6)};
    moirai_rt_analysis_result_t r;
    cr_assert_eq(moirai_rt_analysis_rm_ll(ts, 2, &r), 0);
    cr_assert_not(r.schedulable);
    cr_assert_float_eq(r.bound, 0.8284271247, 1e-9);
    cr_assert_eq(moirai_rt_analysis_rm_hyperbolic(ts, 2, &r), 0);
    cr_assert(r.schedulable, "1.5 * 4/3 = 2: %s", r.reason);
    cr_assert_float_eq(r.bound, 2.0, 1e-12);
}

Test(rt_analysis, edf_demand_failure_names_the_interval)
{
    /* (C, D, T) = (2, 2, 4), (2, 3, 6): U = 0.833 but in [0, 3] both jobs
     * must run: demand 4 > 3. Busy period 4, so t = 2 (ok) and 3 (fails). */
    moirai_rt_analysis_task_t ts[] = {T3(2, 2, 4), T3(2, 3, 6)};
    moirai_rt_analysis_result_t r;
    cr_assert_eq(moirai_rt_analysis_edf(ts, 2, &r), 0);
    cr_assert_not(r.schedulable);
    cr_assert(r.exact);
    cr_assert_eq(r.at_ns, 3);
    cr_assert_eq(r.value_ns, 4);
    cr_assert_eq(r.task, 1);
    cr_assert(strstr(r.reason, "interval of 3 ns") && strstr(r.reason, "demand is 4 ns"), "%s",
              r.reason);
}

Test(rt_analysis, edf_demand_success_reports_busy_period)
{
    /* (1,2,4), (2,4,6), (3,8,12): busy period 6 -> 7 -> 9 -> 10 -> 10.
     * Deadlines <= 10: 2, 6, 10 | 4, 10 | 8: dbf = 1, 4, 10, 3, 10, 7. */
    moirai_rt_analysis_task_t ts[] = {T3(1, 2, 4), T3(2, 4, 6), T3(3, 8, 12)};
    moirai_rt_analysis_result_t r;
    cr_assert_eq(moirai_rt_analysis_edf(ts, 3, &r), 0);
    cr_assert(r.schedulable, "%s", r.reason);
    cr_assert_eq(r.at_ns, 10);
    cr_assert(strstr(r.reason, "6 deadlines checked"), "%s", r.reason);
}

Test(rt_analysis, edf_utilization_limits)
{
    moirai_rt_analysis_task_t full[] = {T3(2, 0, 4), T3(3, 0, 6)};
    moirai_rt_analysis_result_t r;
    cr_assert_eq(moirai_rt_analysis_edf(full, 2, &r), 0);
    cr_assert(r.schedulable, "U = 1 exactly fits under EDF: %s", r.reason);
    moirai_rt_analysis_task_t over[] = {T3(3, 0, 4), T3(2, 0, 6)};
    cr_assert_eq(moirai_rt_analysis_edf(over, 2, &r), 0);
    cr_assert_not(r.schedulable);
    cr_assert(strstr(r.reason, "exceeds 1"), "%s", r.reason);
    cr_assert_eq(moirai_rt_analysis_edf(NULL, 0, &r), 0);
    cr_assert(r.schedulable);
}

Test(rt_analysis, blocking_terms_inherit_and_ceiling)
{
    /* Priorities 3 > 2 > 1. Sections: task 1 holds L0 for 2; task 2 holds
     * L0 for 3 and L1 for 4; task 0 uses L0 and L1 for 1 each, so both
     * ceilings are 3.
     *   ceiling: B0 = max{2,3,4} = 4; B1 = max{3,4} = 4; B2 = 0.
     *   inherit: B0 = min(per task 2+4, per lock 3+4) = 6;
     *            B1 = min(per task 4, per lock 3+4) = 4; B2 = 0. */
    moirai_rt_analysis_task_t ts[] = {T3(2, 0, 10), T3(3, 0, 15), T3(5, 0, 30)};
    ts[0].priority = 3;
    ts[1].priority = 2;
    ts[2].priority = 1;
    moirai_rt_section_t cs[] = {{1, 0, 2}, {2, 0, 3}, {2, 1, 4}, {0, 0, 1}, {0, 1, 1}};
    uint64_t b[3];
    cr_assert_eq(moirai_rt_analysis_blocking(ts, 3, cs, 5, MOIRAI_RT_PROTOCOL_CEILING, b), 0);
    cr_assert_eq(b[0], 4);
    cr_assert_eq(b[1], 4);
    cr_assert_eq(b[2], 0);
    cr_assert_eq(moirai_rt_analysis_blocking(ts, 3, cs, 5, MOIRAI_RT_PROTOCOL_INHERIT, b), 0);
    cr_assert_eq(b[0], 6);
    cr_assert_eq(b[1], 4);
    cr_assert_eq(b[2], 0);
    /* Fed into RTA: R0 = 2 + 6 = 8 <= 10; the result is no longer exact. */
    for (int i = 0; i < 3; i++)
        ts[i].blocking_ns = b[i];
    uint64_t resp[3];
    moirai_rt_analysis_result_t r;
    cr_assert_eq(moirai_rt_analysis_rta(ts, 3, &r, resp), 0);
    cr_assert_eq(resp[0], 8);
    cr_assert_not(r.exact);
    /* R1 = 3 + 4 + ceil(R/10)*2: 7 -> 9 -> 9. */
    cr_assert_eq(resp[1], 9);
    /* Blocking large enough to break task 0. */
    ts[0].blocking_ns = 9;
    cr_assert_eq(moirai_rt_analysis_rta(ts, 3, &r, NULL), 0);
    cr_assert_not(r.schedulable);
    cr_assert_eq(r.task, 0);
    cr_assert(strstr(r.reason, "blocking 9 ns"), "%s", r.reason);
}

Test(rt_analysis, partition_first_fit_packs_worst_fit_strands)
{
    /* U = 0.6, 0.5, 0.4, 0.3, 0.2 on 2 CPUs under EDF (total 2.0).
     * First fit: 0.6->0, 0.5->1, 0.4->0 (1.0), 0.3->1, 0.2->1 (1.0).
     * Worst fit: 0.6->0, 0.5->1, 0.4->1, 0.3->0, then both CPUs hold 0.9
     * and 0.2 fits on neither. */
    moirai_rt_analysis_task_t ts[] = {T3(6, 0, 10), T3(5, 0, 10), T3(4, 0, 10), T3(3, 0, 10),
                                      T3(2, 0, 10)};
    int cpu[5];
    moirai_rt_analysis_result_t r;
    cr_assert_eq(
        moirai_rt_analysis_partition(ts, 5, 2, MOIRAI_RT_FIT_FIRST, MOIRAI_RT_TEST_EDF, cpu, &r),
        0);
    cr_assert(r.schedulable, "%s", r.reason);
    int want_ff[] = {0, 1, 0, 1, 1};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(cpu[i], want_ff[i], "task %d on %d", i, cpu[i]);
    cr_assert(strstr(r.reason, "on 2 of 2 CPUs"), "%s", r.reason);
    cr_assert_eq(
        moirai_rt_analysis_partition(ts, 5, 2, MOIRAI_RT_FIT_WORST, MOIRAI_RT_TEST_EDF, cpu, &r),
        0);
    cr_assert_not(r.schedulable);
    cr_assert_eq(r.task, 4);
    cr_assert_eq(cpu[4], -1);
    cr_assert(strstr(r.reason, "task 4") && strstr(r.reason, "fits on none of 2 CPUs"), "%s",
              r.reason);
    /* Utilization above the number of CPUs is refused with the reason. */
    moirai_rt_analysis_task_t heavy[] = {T3(8, 0, 10), T3(8, 0, 10), T3(8, 0, 10)};
    cr_assert_eq(
        moirai_rt_analysis_partition(heavy, 3, 2, MOIRAI_RT_FIT_FIRST, MOIRAI_RT_TEST_RTA, cpu, &r),
        0);
    cr_assert_not(r.schedulable);
    cr_assert_eq(r.task, 2);
}

Test(rt_analysis, bad_input)
{
    moirai_rt_analysis_result_t r;
    double u;
    moirai_rt_analysis_task_t zero_period[] = {T3(1, 0, 0)};
    moirai_rt_analysis_task_t zero_wcet[] = {T3(0, 0, 10)};
    moirai_rt_analysis_task_t wcet_over_deadline[] = {T3(5, 4, 10)};
    moirai_rt_analysis_task_t deadline_over_period[] = {T3(1, 11, 10)};
    const moirai_rt_analysis_task_t *bad[] = {zero_period, zero_wcet, wcet_over_deadline,
                                              deadline_over_period};
    int cpu[1];
    uint64_t b[1];
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(moirai_rt_analysis_utilization(bad[i], 1, &u), -EINVAL);
        cr_assert_eq(moirai_rt_analysis_rta(bad[i], 1, &r, NULL), -EINVAL);
        cr_assert_eq(moirai_rt_analysis_edf(bad[i], 1, &r), -EINVAL);
        cr_assert_eq(moirai_rt_analysis_rm_ll(bad[i], 1, &r), -EINVAL);
        cr_assert_eq(moirai_rt_analysis_rm_hyperbolic(bad[i], 1, &r), -EINVAL);
        cr_assert_eq(moirai_rt_analysis_partition(bad[i], 1, 1, 0, 0, cpu, &r), -EINVAL);
        cr_assert_eq(moirai_rt_analysis_task_validate(bad[i]), -EINVAL);
    }
    moirai_rt_analysis_task_t ok[] = {T3(1, 2, 10)};
    cr_assert_eq(moirai_rt_analysis_rm_ll(ok, 1, &r), -EINVAL, "L&L needs D = T");
    cr_assert_eq(moirai_rt_analysis_rta(NULL, 1, &r, NULL), -EINVAL);
    cr_assert_eq(moirai_rt_analysis_rta(ok, 1, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_rt_analysis_utilization(ok, 1, NULL), -EINVAL);
    cr_assert_eq(moirai_rt_analysis_assign_priorities(ok, 1, (moirai_rt_order_t)7), -EINVAL);
    cr_assert_eq(moirai_rt_analysis_partition(ok, 1, 0, 0, 0, cpu, &r), -EINVAL);
    cr_assert_eq(moirai_rt_analysis_partition(ok, 1, 1025, 0, 0, cpu, &r), -EINVAL);
    cr_assert_eq(moirai_rt_analysis_partition(ok, 1, 1, (moirai_rt_fit_t)9, 0, cpu, &r), -EINVAL);
    cr_assert_eq(moirai_rt_analysis_partition(ok, 1, 1, 0, (moirai_rt_test_t)9, cpu, &r), -EINVAL);
    moirai_rt_section_t bad_cs[] = {{3, 0, 1}};
    cr_assert_eq(moirai_rt_analysis_blocking(ok, 1, bad_cs, 1, 0, b), -EINVAL);
    moirai_rt_section_t neg_lock[] = {{0, -1, 1}};
    cr_assert_eq(moirai_rt_analysis_blocking(ok, 1, neg_lock, 1, 0, b), -EINVAL);
    cr_assert_eq(moirai_rt_analysis_blocking(ok, 1, NULL, 0, (moirai_rt_protocol_t)5, b), -EINVAL);
    /* Assign leaves priorities alone on error. */
    moirai_rt_analysis_task_t two[] = {T3(1, 0, 10), T3(0, 0, 5)};
    two[0].priority = 42;
    cr_assert_eq(moirai_rt_analysis_assign_priorities(two, 2, 0), -EINVAL);
    cr_assert_eq(two[0].priority, 42);
}

Test(rt_analysis, overflow_and_range)
{
    /* Response times that would pass 2^64. */
    moirai_rt_analysis_task_t big[] = {{UINT64_MAX, UINT64_MAX, UINT64_MAX / 2, 2, 0},
                                       {UINT64_MAX, UINT64_MAX, UINT64_MAX / 2, 1, UINT64_MAX}};
    moirai_rt_analysis_result_t r;
    cr_assert_eq(moirai_rt_analysis_rta(big, 2, &r, NULL), -EOVERFLOW);
    /* A busy period with over ten million deadlines: periods of 1 and 2
     * ns with U = 1 and a long job. */
    moirai_rt_analysis_task_t many[] = {T3(1, 0, 2), T3(50000000, 0, 100000000)};
    cr_assert_eq(moirai_rt_analysis_edf(many, 2, &r), -ERANGE);
}

static moirai_rt_analysis_task_t oom_set[] = {T3(6, 0, 10), T3(5, 0, 10), T3(4, 0, 10)};
static int oom_cpu[3] = {7, 7, 7};

static int partition_op(void *ctx)
{
    moirai_rt_analysis_result_t r;
    (void)ctx;
    return moirai_rt_analysis_partition(oom_set, 3, 2, MOIRAI_RT_FIT_FIRST, MOIRAI_RT_TEST_EDF,
                                        oom_cpu, &r);
}

static void partition_unchanged(void *ctx, long n)
{
    (void)ctx;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(oom_cpu[i], 7, "failure %ld wrote cpu_of", n);
}

Test(rt_analysis, partition_out_of_memory)
{
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(partition_op, partition_unchanged, NULL);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0);
    cr_assert_eq(oom_cpu[0], 0);
    cr_assert_eq(oom_cpu[1], 1);
}
