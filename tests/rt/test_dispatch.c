/* Dispatch on the virtual clock: EDF, RM, DM, FIFO and RR order,
 * preemption at step boundaries, periodic release, budgets (report, skip,
 * demote), deadline misses and lateness, quota-group throttling, removal,
 * and several workers on their own timelines. Every time and order is
 * exact: jobs take time only by advancing the virtual clock. */
#include "rt_test_util.h"

Test(rt_dispatch, edf_runs_earliest_deadline_first)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 1);
    work_t a = {clk, 2, 1, 0, 0, 0}, b = a, c = a;
    moirai_rt_task_t *ta = add(ex, &a, 2, 10, 10, 0, 0);
    moirai_rt_task_t *tb = add(ex, &b, 2, 4, 10, 0, 0);
    add(ex, &c, 2, 7, 10, 0, 0);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 10), 0);
    cr_assert_str_eq(events(MOIRAI_RT_EVENT_STEP), "BCA");
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_COMPLETE, 2, 0), 2);
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_COMPLETE, 3, 0), 4);
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_COMPLETE, 1, 0), 6);
    cr_assert_eq(moirai_rt_clock_now(clk), 10);
    moirai_rt_task_stats_t st;
    cr_assert_eq(moirai_rt_executor_task_stats(ex, ta, &st), 0);
    cr_assert_eq(st.released, 1);
    cr_assert_eq(st.completed, 1);
    cr_assert_eq(st.missed, 0);
    cr_assert_eq(st.response_min_ns, 6);
    cr_assert_eq(st.response_max_ns, 6);
    cr_assert_eq(st.response_p99_ns, 6);
    cr_assert_eq(st.latency_max_ns, 4);
    cr_assert_eq(st.lateness_max_ns, -4);
    cr_assert_eq(moirai_rt_executor_task_stats(ex, tb, &st), 0);
    cr_assert_eq(st.response_mean_ns, 2);
    cr_assert_eq(st.latency_max_ns, 0);
    cr_assert_eq(moirai_rt_executor_destroy(ex), 0);
    moirai_rt_clock_destroy(clk);
}

Test(rt_dispatch, rm_and_dm_order)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_RM, 1);
    work_t a = {clk, 1, 1, 0, 0, 0}, b = a, c = {clk, 2, 1, 0, 0, 0};
    add(ex, &a, 1, 0, 5, 0, 0);
    add(ex, &b, 1, 0, 3, 0, 0);
    add(ex, &c, 2, 0, 10, 0, 0);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 4), 0);
    cr_assert_str_eq(events(MOIRAI_RT_EVENT_STEP), "BAC");
    /* B's second job (released at 3) waits for C's step to end at 4. */
    cr_assert_eq(moirai_rt_executor_run_until(ex, 5), 0);
    cr_assert_str_eq(events(MOIRAI_RT_EVENT_STEP), "BACB");
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_STEP, 2, 1), 4);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);

    ex = make_ex(&clk, MOIRAI_RT_POLICY_DM, 1);
    work_t d = {clk, 1, 1, 0, 0, 0}, e = d, f = d;
    add(ex, &d, 1, 9, 10, 0, 0);
    add(ex, &e, 1, 3, 10, 0, 0);
    add(ex, &f, 1, 5, 10, 0, 0);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 10), 0);
    cr_assert_str_eq(events(MOIRAI_RT_EVENT_STEP), "BCA");
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_dispatch, fifo_by_priority_then_release)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_FIFO, 1);
    work_t a = {clk, 1, 1, 0, 0, 0}, b = a, c = a, d = {clk, 1, 3, 0, 0, 0};
    add(ex, &a, 1, 0, 20, 0, 5);
    add(ex, &b, 1, 0, 20, 0, 10);
    add(ex, &c, 1, 0, 20, 0, 5);
    /* D (priority 5, three steps) released first, at 0; A and C too. */
    add(ex, &d, 3, 0, 20, 0, 5);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 20), 0);
    /* B (10) first; then the priority-5 jobs in release order, ties by
     * admission: A, C, D; FIFO never rotates D's steps away. */
    cr_assert_str_eq(events(MOIRAI_RT_EVENT_STEP), "BACDDD");
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_dispatch, round_robin_rotates_by_slice)
{
    moirai_rt_clock_t *clk;
    cr_assert_eq(moirai_rt_clock_create_virtual(&clk, 0), 0);
    log_n = 0;
    moirai_rt_executor_config_t cfg;
    moirai_rt_executor_config_init(&cfg);
    cfg.policy = MOIRAI_RT_POLICY_RR;
    cfg.clock = clk;
    cfg.rr_slice_ns = 2;
    cfg.trace = tracer;
    moirai_rt_executor_t *ex;
    cr_assert_eq(moirai_rt_executor_create(&ex, &cfg), 0);
    work_t a = {clk, 1, 4, 0, 0, 0}, b = a, c = {clk, 1, 1, 0, 0, 0};
    add(ex, &a, 4, 0, 20, 0, 5);
    add(ex, &b, 4, 0, 20, 0, 5);
    /* A higher priority job arriving at 3 runs at the next boundary. */
    add(ex, &c, 1, 0, 20, 3, 9);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 20), 0);
    cr_assert_str_eq(events(MOIRAI_RT_EVENT_STEP), "AABCBAABB");
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_dispatch, urgent_job_preempts_at_step_boundary)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 1);
    work_t l = {clk, 1, 10, 0, 0, 0}, h = {clk, 2, 1, 0, 0, 0};
    add(ex, &l, 10, 100, 100, 0, 0);
    add(ex, &h, 2, 5, 100, 3, 0);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 50), 0);
    cr_assert_str_eq(events(MOIRAI_RT_EVENT_STEP), "AAABAAAAAAA");
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_STEP, 2, 0), 3);
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_COMPLETE, 2, 0), 5);
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_COMPLETE, 1, 0), 12);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_dispatch, periodic_release_is_exact)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 1);
    work_t a = {clk, 1, 1, 0, 0, 0};
    moirai_rt_task_t *t = add(ex, &a, 1, 0, 10, 0, 0);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 1000), 0);
    moirai_rt_task_stats_t st;
    cr_assert_eq(moirai_rt_executor_task_stats(ex, t, &st), 0);
    cr_assert_eq(st.released, 100);
    cr_assert_eq(st.completed, 100);
    cr_assert_eq(st.missed, 0);
    cr_assert_eq(st.response_max_ns, 1);
    cr_assert_eq(st.latency_max_ns, 0);
    for (int k = 0; k < 100; k++)
        cr_assert_eq(event_time(MOIRAI_RT_EVENT_RELEASE, 1, k), (uint64_t)k * 10);
    /* Runs resume where they stopped. */
    cr_assert_eq(moirai_rt_executor_run_until(ex, 1005), 0);
    cr_assert_eq(moirai_rt_executor_task_stats(ex, t, &st), 0);
    cr_assert_eq(st.released, 101);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_dispatch, overrun_report_counts_miss_and_lateness)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 1);
    /* Budget 2, deadline 3, but the job takes 5. */
    work_t a = {clk, 5, 1, 0, 0, 0}, b = {clk, 1, 1, 0, 0, 0};
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = work_fn;
    tc.arg = &a;
    tc.wcet_ns = 2;
    tc.deadline_ns = 3;
    tc.period_ns = 10;
    moirai_rt_task_t *ta, *tb;
    cr_assert_eq(moirai_rt_executor_add(ex, &tc, &ta, NULL), 0);
    tb = add(ex, &b, 1, 8, 10, 0, 0);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 10), 0);
    moirai_rt_task_stats_t st;
    cr_assert_eq(moirai_rt_executor_task_stats(ex, ta, &st), 0);
    cr_assert_eq(st.overruns, 1);
    cr_assert_eq(st.completed, 1);
    cr_assert_eq(st.missed, 1);
    cr_assert_eq(st.lateness_max_ns, 2);
    cr_assert_eq(moirai_rt_executor_task_stats(ex, tb, &st), 0);
    cr_assert_eq(st.missed, 0);
    cr_assert_eq(st.response_max_ns, 6);
    cr_assert_str_eq(events(MOIRAI_RT_EVENT_OVERRUN), "A");
    cr_assert_str_eq(events(MOIRAI_RT_EVENT_MISS), "A");
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_dispatch, overrun_skip_abandons_the_job)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 1);
    work_t a = {clk, 1, 5, 0, 0, 0};
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = work_fn;
    tc.arg = &a;
    tc.wcet_ns = 2;
    tc.max_step_ns = 1;
    tc.period_ns = 10;
    tc.overrun = MOIRAI_RT_OVERRUN_SKIP;
    moirai_rt_task_t *t;
    cr_assert_eq(moirai_rt_executor_add(ex, &tc, &t, NULL), 0);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 20), 0);
    moirai_rt_task_stats_t st;
    cr_assert_eq(moirai_rt_executor_task_stats(ex, t, &st), 0);
    /* Steps at 0, 1, 2: after the third the job has used 3 > 2. */
    cr_assert_eq(a.calls, 6);
    cr_assert_eq(st.skipped, 2);
    cr_assert_eq(st.overruns, 2);
    cr_assert_eq(st.completed, 0);
    cr_assert_eq(st.missed, 0);
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_SKIP, 1, 0), 3);
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_STEP, 1, 3), 10);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_dispatch, overrun_demote_frees_share_and_runs_in_background)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 1);
    work_t a = {clk, 1, 4, 0, 0, 0}, b = {clk, 3, 1, 0, 0, 0};
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = work_fn;
    tc.arg = &a;
    tc.wcet_ns = 2;
    tc.max_step_ns = 1;
    tc.period_ns = 10;
    tc.overrun = MOIRAI_RT_OVERRUN_DEMOTE;
    moirai_rt_task_t *ta;
    cr_assert_eq(moirai_rt_executor_add(ex, &tc, &ta, NULL), 0);
    add(ex, &b, 3, 20, 20, 0, 0);
    cr_assert_float_eq(moirai_rt_executor_utilization(ex, 0), 0.35, 1e-12);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 10), 0);
    /* A (deadline 10) steps at 0, 1, 2, is demoted at 3; B (real-time)
     * then runs 3..6 and A's last step comes after it. */
    cr_assert_str_eq(events(MOIRAI_RT_EVENT_STEP), "AAABA");
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_DEMOTE, 1, 0), 3);
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_COMPLETE, 1, 0), 7);
    cr_assert_float_eq(moirai_rt_executor_utilization(ex, 0), 0.15, 1e-12);
    moirai_rt_task_stats_t st;
    cr_assert_eq(moirai_rt_executor_task_stats(ex, ta, &st), 0);
    cr_assert_eq(st.demoted, 1);
    cr_assert_eq(moirai_rt_executor_active_workers(ex), 1);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_dispatch, group_quota_throttles)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 1);
    moirai_rt_group_t *g;
    moirai_rt_group_config_t gc;
    moirai_rt_group_config_init(&gc);
    gc.budget_ns = 2;
    gc.period_ns = 10;
    cr_assert_eq(moirai_rt_group_create(ex, &g, &gc), 0);
    /* Budget 2 per job, but each job takes three steps of 1. */
    work_t a = {clk, 1, 3, 0, 0, 0};
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = work_fn;
    tc.arg = &a;
    tc.wcet_ns = 2;
    tc.max_step_ns = 1;
    tc.period_ns = 10;
    tc.group = g;
    moirai_rt_task_t *t;
    cr_assert_eq(moirai_rt_executor_add(ex, &tc, &t, NULL), 0);
    cr_assert_eq(moirai_rt_group_destroy(g), -EBUSY);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 15), 0);
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_STEP, 1, 0), 0);
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_STEP, 1, 1), 1);
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_THROTTLE, 1, 0), 2);
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_STEP, 1, 2), 10);
    cr_assert_eq(event_time(MOIRAI_RT_EVENT_COMPLETE, 1, 0), 11);
    moirai_rt_task_stats_t st;
    cr_assert_eq(moirai_rt_executor_task_stats(ex, t, &st), 0);
    cr_assert_eq(st.missed, 1);
    cr_assert_eq(st.throttled, 2);
    moirai_rt_group_stats_t gs;
    cr_assert_eq(moirai_rt_group_stats(g, &gs), 0);
    cr_assert_eq(gs.total_ns, 4);
    cr_assert_eq(gs.used_ns, 2);
    cr_assert_eq(gs.windows, 2);
    cr_assert_eq(gs.throttles, 2);
    cr_assert_eq(moirai_rt_executor_remove(ex, t), 0);
    cr_assert_eq(moirai_rt_group_destroy(g), 0);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

static moirai_rt_executor_t *self_ex;
static moirai_rt_task_t *self_task;
static int self_calls;

static int remove_self(void *arg, moirai_rt_job_t *job)
{
    (void)job;
    moirai_rt_clock_advance(arg, 1);
    self_calls++;
    cr_assert_eq(moirai_rt_executor_destroy(self_ex), -EDEADLK);
    cr_assert_eq(moirai_rt_executor_run_until(self_ex, 100), -EDEADLK);
    cr_assert_eq(moirai_rt_executor_remove(self_ex, self_task), 0);
    return MOIRAI_RT_JOB_MORE;
}

Test(rt_dispatch, remove_stops_steps_and_frees_share)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 1);
    work_t a = {clk, 1, 1, 0, 0, 0};
    moirai_rt_task_t *t = add(ex, &a, 1, 0, 10, 0, 0);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 25), 0);
    cr_assert_eq(a.calls, 3);
    cr_assert_eq(moirai_rt_executor_remove(ex, t), 0);
    cr_assert_float_eq(moirai_rt_executor_utilization(ex, 0), 0.0, 1e-12);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 100), 0);
    cr_assert_eq(a.calls, 3);
    /* A task removing itself from its own step: no step after it. */
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = remove_self;
    tc.arg = clk;
    tc.wcet_ns = 5;
    tc.max_step_ns = 1;
    tc.period_ns = 10;
    self_ex = ex;
    cr_assert_eq(moirai_rt_executor_add(ex, &tc, &self_task, NULL), 0);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 200), 0);
    cr_assert_eq(self_calls, 1);
    cr_assert_eq(moirai_rt_executor_active_workers(ex), 0);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_dispatch, workers_keep_their_own_timelines)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 2);
    work_t a = {clk, 6, 1, 0, 0, 0}, b = a;
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = work_fn;
    tc.wcet_ns = 6;
    tc.period_ns = 10;
    tc.arg = &a;
    moirai_rt_task_t *ta, *tb;
    cr_assert_eq(moirai_rt_executor_add(ex, &tc, &ta, NULL), 0);
    tc.arg = &b;
    /* 0.6 + 0.6 does not fit one worker: packing puts B on worker 1. */
    cr_assert_eq(moirai_rt_executor_add(ex, &tc, &tb, NULL), 0);
    cr_assert_eq(moirai_rt_executor_active_workers(ex), 2);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 100), 0);
    moirai_rt_task_stats_t sa, sb;
    moirai_rt_executor_task_stats(ex, ta, &sa);
    moirai_rt_executor_task_stats(ex, tb, &sb);
    cr_assert_eq(sa.worker, 0);
    cr_assert_eq(sb.worker, 1);
    /* In parallel, each job completes 6 after its release. */
    cr_assert_eq(sa.completed, 10);
    cr_assert_eq(sb.completed, 10);
    cr_assert_eq(sa.response_max_ns, 6);
    cr_assert_eq(sb.response_max_ns, 6);
    cr_assert_eq(moirai_rt_clock_now(clk), 100);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_dispatch, pack_and_spread_placement)
{
    for (int spread = 0; spread < 2; spread++) {
        moirai_rt_clock_t *clk;
        cr_assert_eq(moirai_rt_clock_create_virtual(&clk, 0), 0);
        moirai_rt_executor_config_t cfg;
        moirai_rt_executor_config_init(&cfg);
        cfg.workers = 3;
        cfg.clock = clk;
        cfg.placement = spread ? MOIRAI_RT_PLACE_SPREAD : MOIRAI_RT_PLACE_PACK;
        moirai_rt_executor_t *ex;
        cr_assert_eq(moirai_rt_executor_create(&ex, &cfg), 0);
        work_t w = {clk, 1, 1, 0, 0, 0};
        for (int i = 0; i < 3; i++)
            add(ex, &w, 3, 0, 10, 0, 0);
        cr_assert_eq(moirai_rt_executor_active_workers(ex), spread ? 3 : 1);
        cr_assert_float_eq(moirai_rt_executor_utilization(ex, 0), spread ? 0.3 : 0.9, 1e-12);
        moirai_rt_executor_destroy(ex);
        moirai_rt_clock_destroy(clk);
    }
}

Test(rt_dispatch, clock_and_run_errors)
{
    moirai_rt_clock_t *clk;
    cr_assert_eq(moirai_rt_clock_create_virtual(&clk, 100), 0);
    cr_assert_eq(moirai_rt_clock_now(clk), 100);
    cr_assert_eq(moirai_rt_clock_advance(clk, UINT64_MAX), -EOVERFLOW);
    cr_assert_eq(moirai_rt_clock_now(clk), 100);
    cr_assert_eq(moirai_rt_clock_advance(moirai_rt_clock_real(), 1), -EINVAL);
    cr_assert_eq(moirai_rt_clock_advance(NULL, 1), -EINVAL);
    cr_assert(moirai_rt_clock_is_virtual(clk));
    cr_assert_not(moirai_rt_clock_is_virtual(moirai_rt_clock_real()));
    cr_assert_eq(moirai_rt_clock_create_virtual(NULL, 0), -EINVAL);
    moirai_rt_executor_config_t cfg;
    moirai_rt_executor_config_init(&cfg);
    cfg.clock = clk;
    moirai_rt_executor_t *ex;
    cr_assert_eq(moirai_rt_executor_create(&ex, &cfg), 0);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 99), -EINVAL);
    cr_assert_eq(moirai_rt_executor_run_until(NULL, 200), -EINVAL);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 200), 0);
    cr_assert_eq(moirai_rt_clock_now(clk), 200);
    moirai_rt_os_status_t os;
    cr_assert_eq(moirai_rt_executor_os_status(ex, 0, &os), 0);
    cr_assert(strstr(os.reason, "virtual clock"), "%s", os.reason);
    cr_assert_eq(moirai_rt_executor_os_status(ex, 1, &os), -EINVAL);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
    moirai_rt_clock_destroy(NULL);
    moirai_rt_clock_destroy(moirai_rt_clock_real());
    cr_assert_str_eq(moirai_rt_policy_name(MOIRAI_RT_POLICY_RR), "rr");
    cr_assert_str_eq(moirai_rt_policy_name((moirai_rt_policy_t)9), "unknown");
}

static moirai_rt_pi_mutex_t kept = MOIRAI_RT_PI_MUTEX_INIT;

static int keeps_lock(void *arg, moirai_rt_job_t *job)
{
    (void)job;
    moirai_rt_clock_advance(arg, 1);
    cr_assert_eq(moirai_rt_pi_mutex_lock(&kept), 0);
    return MOIRAI_RT_JOB_MORE;
}

Test(rt_dispatch, step_returning_with_a_lock_fails_the_job)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 1);
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = keeps_lock;
    tc.arg = clk;
    tc.period_ns = 100;
    tc.wcet_ns = 5;
    moirai_rt_task_t *t;
    cr_assert_eq(moirai_rt_executor_add(ex, &tc, &t, NULL), 0);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 50), 0);
    moirai_rt_task_stats_t st;
    cr_assert_eq(moirai_rt_executor_task_stats(ex, t, &st), 0);
    /* The job ended at its first step, counted failed, not completed. */
    cr_assert_eq(st.failed, 1);
    cr_assert_eq(st.completed, 0);
    cr_assert_str_eq(events(MOIRAI_RT_EVENT_STEP), "A");
    /* The lock is the caller's to release (the manual executor ran the step
     * on this thread). */
    cr_assert_eq(moirai_rt_pi_mutex_unlock(&kept), 0);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

static int failing_step(void *arg, moirai_rt_job_t *job)
{
    (void)job;
    moirai_rt_clock_advance(arg, 1);
    return -EIO;
}

static int varying_step(void *arg, moirai_rt_job_t *job)
{
    moirai_rt_clock_advance(arg, 1000 + moirai_rt_job_index(job) % 100);
    cr_assert_eq(moirai_rt_job_budget_left_ns(job), 2000);
    cr_assert_eq(moirai_rt_job_deadline_ns(job) - moirai_rt_job_release_ns(job), 5000);
    cr_assert_geq(moirai_rt_job_now_ns(job), moirai_rt_job_release_ns(job));
    return MOIRAI_RT_JOB_DONE;
}

Test(rt_dispatch, response_statistics_are_exact)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 1);
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = varying_step;
    tc.arg = clk;
    tc.period_ns = 5000;
    tc.wcet_ns = 2000;
    moirai_rt_task_t *t, *f;
    cr_assert_eq(moirai_rt_executor_add(ex, &tc, &t, NULL), 0);
    tc.fn = failing_step;
    tc.wcet_ns = 1;
    cr_assert_eq(moirai_rt_executor_add(ex, &tc, &f, NULL), 0);
    /* 100 jobs with responses 1000 .. 1099. The failing task has the same
     * deadlines; ties go to the earlier admission, so it runs after each. */
    cr_assert_eq(moirai_rt_executor_run_until(ex, 500000), 0);
    moirai_rt_task_stats_t st;
    cr_assert_eq(moirai_rt_executor_task_stats(ex, t, &st), 0);
    cr_assert_eq(st.completed, 100);
    cr_assert_eq(st.response_min_ns, 1000);
    cr_assert_eq(st.response_max_ns, 1099);
    cr_assert_eq(st.response_mean_ns, 1049);
    /* The 99th of 100 sorted values is 1098; the histogram's bucket may
     * round it up, never past the maximum. */
    cr_assert(st.response_p99_ns >= 1098 && st.response_p99_ns <= 1099, "p99 %llu",
              (unsigned long long)st.response_p99_ns);
    cr_assert_eq(st.lateness_max_ns, 1099 - 5000);
    cr_assert_eq(moirai_rt_executor_task_stats(ex, f, &st), 0);
    cr_assert_eq(st.failed, 100);
    cr_assert_eq(st.completed, 0);
    cr_assert_eq(st.response_max_ns, 0);
    cr_assert_eq(st.lateness_max_ns, INT64_MIN);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}
