/* moirai_rt_executor_metrics_collect: the RT executor's tasks (deadline
 * misses above all) and quota groups in the Prometheus text format, on
 * the virtual clock, parsed back and compared with the stats read
 * directly and with the misses the schedule must produce. */
#include <inttypes.h>
#include <stdio.h>

#include <moirai/rt/metrics.h>

#include "prom_test.h"
#include "rt_test_util.h"

static void task_labels(char *id, size_t len, const moirai_rt_task_t *t)
{
    snprintf(id, len, "%" PRIu64, moirai_rt_task_id(t));
}

/* Every per-task sample equals moirai_rt_executor_task_stats(). */
static void assert_task_matches(const prom_doc_t *d, moirai_rt_executor_t *ex,
                                const moirai_rt_task_t *t)
{
    moirai_rt_task_stats_t st;
    cr_assert_eq(moirai_rt_executor_task_stats(ex, t, &st), 0);
    char id[24];
    task_labels(id, sizeof(id), t);
    const char **l = PROM_LABELS("name", "rt", "task", id);
    cr_assert_eq(prom_value(d, "moirai_rt_jobs_released_total", l), (double)st.released);
    cr_assert_eq(prom_value(d, "moirai_rt_jobs_completed_total", l), (double)st.completed);
    cr_assert_eq(prom_value(d, "moirai_rt_deadline_misses_total", l), (double)st.missed);
    cr_assert_eq(prom_value(d, "moirai_rt_jobs_skipped_total", l), (double)st.skipped);
    cr_assert_eq(prom_value(d, "moirai_rt_budget_overruns_total", l), (double)st.overruns);
    cr_assert_eq(prom_value(d, "moirai_rt_jobs_failed_total", l), (double)st.failed);
    cr_assert_eq(prom_value(d, "moirai_rt_jobs_throttled_total", l), (double)st.throttled);
    cr_assert_eq(prom_value(d, "moirai_rt_task_demoted", l), (double)st.demoted);
    cr_assert_eq(prom_value(d, "moirai_rt_response_p99_seconds", l),
                 (double)st.response_p99_ns / 1e9);
    cr_assert_eq(prom_value(d, "moirai_rt_response_max_seconds", l),
                 (double)st.response_max_ns / 1e9);
    cr_assert_eq(prom_value(d, "moirai_rt_latency_p99_seconds", l),
                 (double)st.latency_p99_ns / 1e9);
    cr_assert_eq(prom_value(d, "moirai_rt_latency_max_seconds", l),
                 (double)st.latency_max_ns / 1e9);
    if (st.lateness_max_ns == INT64_MIN)
        cr_assert_null(prom_find(d, "moirai_rt_lateness_max_seconds", l));
    else
        cr_assert_eq(prom_value(d, "moirai_rt_lateness_max_seconds", l),
                     (double)st.lateness_max_ns / 1e9);
    char worker[16];
    snprintf(worker, sizeof(worker), "%d", st.worker);
    cr_assert_not_null(
        prom_find(d, "moirai_rt_jobs_released_total", PROM_LABELS("task", id, "worker", worker)));
}

Test(rt_metrics, deadline_misses_counted_exactly, .timeout = 30)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 1);
    /* A: budget 2, deadline 3, but every job takes 5: every job misses.
     * B: one unit, deadline 8: never misses. Ten periods of 10. */
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
    /* Before anything ran: no lateness sample yet. */
    prom_doc_t d;
    prom_test_collect(moirai_rt_executor_metrics_collect, ex, "rt", &d);
    cr_assert_eq(prom_count(&d, "moirai_rt_lateness_max_seconds"), 0);
    assert_task_matches(&d, ex, ta);
    prom_doc_free(&d);

    cr_assert_eq(moirai_rt_executor_run_until(ex, 99), 0);
    prom_test_collect(moirai_rt_executor_metrics_collect, ex, "rt", &d);
    char ida[24], idb[24];
    task_labels(ida, sizeof(ida), ta);
    task_labels(idb, sizeof(idb), tb);
    cr_assert_eq(prom_value(&d, "moirai_rt_jobs_released_total", PROM_LABELS("task", ida)), 10);
    cr_assert_eq(prom_value(&d, "moirai_rt_deadline_misses_total", PROM_LABELS("task", ida)), 10);
    cr_assert_eq(prom_value(&d, "moirai_rt_budget_overruns_total", PROM_LABELS("task", ida)), 10);
    cr_assert_eq(prom_value(&d, "moirai_rt_deadline_misses_total", PROM_LABELS("task", idb)), 0);
    cr_assert_eq(prom_value(&d, "moirai_rt_jobs_completed_total", PROM_LABELS("task", idb)), 10);
    /* A finishes 2 ns late; B's response is 6 ns (after A's 5). */
    cr_assert_eq(prom_value(&d, "moirai_rt_lateness_max_seconds", PROM_LABELS("task", ida)), 2e-9);
    cr_assert_eq(prom_value(&d, "moirai_rt_response_max_seconds", PROM_LABELS("task", idb)), 6e-9);
    assert_task_matches(&d, ex, ta);
    assert_task_matches(&d, ex, tb);
    const char **l = PROM_LABELS("name", "rt");
    cr_assert_eq(prom_value(&d, "moirai_rt_workers", l), 1);
    cr_assert_eq(prom_value(&d, "moirai_rt_active_workers", l), 1);
    cr_assert_eq(prom_value(&d, "moirai_rt_tasks", l), 2);
    cr_assert_eq(prom_value(&d, "moirai_rt_worker_utilization", PROM_LABELS("worker", "0")),
                 moirai_rt_executor_utilization(ex, 0));
    cr_assert_str_eq(prom_family(&d, "moirai_rt_deadline_misses_total")->type, "counter");
    prom_doc_free(&d);

    /* A removed task disappears from the export. */
    cr_assert_eq(moirai_rt_executor_remove(ex, ta), 0);
    prom_test_collect(moirai_rt_executor_metrics_collect, ex, "rt", &d);
    cr_assert_eq(prom_count(&d, "moirai_rt_deadline_misses_total"), 1);
    cr_assert_eq(prom_value(&d, "moirai_rt_tasks", l), 1);
    prom_doc_free(&d);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_metrics, groups_in_creation_order, .timeout = 30)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 2);
    moirai_rt_group_t *g0, *g1;
    moirai_rt_group_config_t gc;
    moirai_rt_group_config_init(&gc);
    gc.budget_ns = 2;
    gc.period_ns = 10;
    cr_assert_eq(moirai_rt_group_create(ex, &g0, &gc), 0);
    gc.budget_ns = 5;
    cr_assert_eq(moirai_rt_group_create(ex, &g1, &gc), 0);
    /* As in rt_dispatch.group_quota_throttles: budget 2, three steps of 1. */
    work_t a = {clk, 1, 3, 0, 0, 0};
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = work_fn;
    tc.arg = &a;
    tc.wcet_ns = 2;
    tc.max_step_ns = 1;
    tc.period_ns = 10;
    tc.group = g0;
    moirai_rt_task_t *t;
    cr_assert_eq(moirai_rt_executor_add(ex, &tc, &t, NULL), 0);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 15), 0);
    prom_doc_t d;
    prom_test_collect(moirai_rt_executor_metrics_collect, ex, "rt", &d);
    moirai_rt_group_stats_t gs;
    cr_assert_eq(moirai_rt_group_stats(g0, &gs), 0);
    cr_assert_eq(gs.throttles, 2);
    const char **l0 = PROM_LABELS("group", "0");
    cr_assert_eq(prom_value(&d, "moirai_rt_group_throttles_total", l0), 2);
    cr_assert_eq(prom_value(&d, "moirai_rt_group_windows_total", l0), (double)gs.windows);
    cr_assert_eq(prom_value(&d, "moirai_rt_group_used_seconds", l0), (double)gs.used_ns / 1e9);
    cr_assert_eq(prom_value(&d, "moirai_rt_group_charged_seconds_total", l0),
                 (double)gs.total_ns / 1e9);
    cr_assert_eq(prom_value(&d, "moirai_rt_group_charged_seconds_total", PROM_LABELS("group", "1")),
                 0);
    cr_assert_eq(prom_count(&d, "moirai_rt_group_windows_total"), 2);
    cr_assert_eq(prom_value(&d, "moirai_rt_jobs_throttled_total", NULL), 2);
    cr_assert_eq(prom_value(&d, "moirai_rt_active_workers", NULL), 1);
    cr_assert_eq(prom_count(&d, "moirai_rt_worker_utilization"), 2);
    prom_doc_free(&d);
    cr_assert_eq(moirai_rt_executor_remove(ex, t), 0);
    cr_assert_eq(moirai_rt_group_destroy(g0), 0);
    /* The remaining group is now the first of the live ones. */
    prom_test_collect(moirai_rt_executor_metrics_collect, ex, "rt", &d);
    cr_assert_eq(prom_count(&d, "moirai_rt_group_windows_total"), 1);
    cr_assert_not_null(prom_find(&d, "moirai_rt_group_windows_total", l0));
    prom_doc_free(&d);
    cr_assert_eq(moirai_rt_group_destroy(g1), 0);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_metrics, bad_arguments_and_oom, .timeout = 60)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = make_ex(&clk, MOIRAI_RT_POLICY_EDF, 1);
    moirai_prom_writer_t *w;
    cr_assert_eq(moirai_prom_writer_create(&w), 0);
    cr_assert_eq(moirai_rt_executor_metrics_collect(NULL, w, "x"), -EINVAL);
    cr_assert_eq(moirai_rt_executor_metrics_collect(ex, NULL, "x"), -EINVAL);
    cr_assert_eq(moirai_rt_executor_metrics_collect(ex, w, NULL), -EINVAL);
    cr_assert_eq(moirai_prom_writer_mark(w).families, 0);
    moirai_prom_writer_destroy(w);
    work_t a = {clk, 1, 1, 0, 0, 0};
    add(ex, &a, 1, 5, 10, 0, 0);
    moirai_rt_group_t *g;
    moirai_rt_group_config_t gc;
    moirai_rt_group_config_init(&gc);
    gc.budget_ns = 5;
    gc.period_ns = 10;
    cr_assert_eq(moirai_rt_group_create(ex, &g, &gc), 0);
    cr_assert_eq(moirai_rt_executor_run_until(ex, 25), 0);
    /* The snapshot's allocations and the writer's all fail in turn. */
    cr_assert_gt(prom_test_oom_sweep(moirai_rt_executor_metrics_collect, ex), 2);
    cr_assert_eq(moirai_rt_group_destroy(g), 0);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}
