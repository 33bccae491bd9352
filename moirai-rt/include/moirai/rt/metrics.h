/* The RT executor's metrics in the Prometheus text format (see
 * moirai/core/prom.h). Times are in seconds of the executor's clock.
 *
 * The executor, labelled {name}:
 *
 *   moirai_rt_workers                      gauge: worker threads
 *   moirai_rt_active_workers               gauge: workers with a task not demoted
 *   moirai_rt_tasks                        gauge: admitted tasks
 *   moirai_rt_worker_utilization{worker}   gauge: utilization admitted on the worker
 *
 * Each admitted task, labelled {name,task="<moirai_rt_task_id>",worker},
 * from the counters moirai_rt_executor_task_stats() reports:
 *
 *   moirai_rt_jobs_released_total          jobs released
 *   moirai_rt_jobs_completed_total         jobs completed
 *   moirai_rt_deadline_misses_total        jobs finished or abandoned after their deadline
 *   moirai_rt_jobs_skipped_total           jobs abandoned by MOIRAI_RT_OVERRUN_SKIP
 *   moirai_rt_budget_overruns_total        jobs that used more than their budget
 *   moirai_rt_jobs_failed_total            jobs whose step failed or kept a lock
 *   moirai_rt_jobs_throttled_total         times the group quota held a ready job back
 *   moirai_rt_task_demoted                 gauge: 1 once demoted (MOIRAI_RT_OVERRUN_DEMOTE)
 *   moirai_rt_response_p99_seconds         gauge: 99th-percentile response time
 *   moirai_rt_response_max_seconds         gauge: longest response time
 *   moirai_rt_latency_p99_seconds          gauge: 99th-percentile start latency
 *   moirai_rt_latency_max_seconds          gauge: longest start latency
 *   moirai_rt_lateness_max_seconds         gauge: largest completion - deadline (negative:
 *                                          early); no sample before the first completion
 *
 * (the response and latency gauges are 0 before the first completion, as
 * in moirai_rt_task_stats_t). Each quota group, labelled {name,group}
 * where group is its position among the executor's live groups in
 * creation order (from 0), from the counters moirai_rt_group_stats()
 * reports:
 *
 *   moirai_rt_group_used_seconds           gauge: charged in the current window
 *   moirai_rt_group_windows_total          windows started
 *   moirai_rt_group_throttles_total        windows whose budget ran out with work ready
 *   moirai_rt_group_charged_seconds_total  charged since creation */
#ifndef MOIRAI_RT_METRICS_H
#define MOIRAI_RT_METRICS_H

#include <moirai/core/prom.h>
#include <moirai/rt/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the metrics above of the RT executor `executor` (a
 * moirai_rt_executor_t *) into `w`, labelled name="`name`". A
 * moirai_metrics_collect_cb. Copies every task's and group's counters
 * under the executor's lock in one pass (a consistent snapshot; no
 * allocation while the lock is held) and writes them after releasing
 * it. Thread-safe with respect to the executor; must not be called from
 * a job step or a trace callback (the lock is not recursive). Returns 0,
 * -EINVAL (`executor`, `w` or `name` NULL) or -ENOMEM; on error `w` is as
 * it was. */
MOIRAI_RT_API int moirai_rt_executor_metrics_collect(void *executor, moirai_prom_writer_t *w,
                                                     const char *name);

#ifdef __cplusplus
}
#endif

#endif
