/* The scheduler's metrics in the Prometheus text format (see
 * moirai/core/prom.h), one sample per worker:
 *
 *   moirai_sched_workers{name}                          gauge: worker slots
 *   moirai_sched_spawned_total{name,worker}             jobs the worker submitted
 *   moirai_sched_executed_total{name,worker}            jobs the worker ran
 *   moirai_sched_steal_attempts_total{name,worker}      steal attempts
 *   moirai_sched_steals_total{name,worker}              attempts that took work
 *   moirai_sched_stolen_jobs_total{name,worker}         jobs those steals took
 *   moirai_sched_parks_total{name,worker}               times the worker parked
 *   moirai_sched_task_cpu_seconds_total{name,worker}    CPU time of tasks (task_cpu set)
 *   moirai_sched_watchdog_reports_total{name,worker}    jobs reported stuck
 *   moirai_sched_compensating_started_total{name,worker}  compensating starts
 *
 * Each counter is a field of moirai_sched_worker_stats_t, read as
 * moirai_sched_worker_stats() reads it (approximate while the pool runs,
 * exact once it is idle). */
#ifndef MOIRAI_SCHED_METRICS_H
#define MOIRAI_SCHED_METRICS_H

#include <moirai/core/prom.h>
#include <moirai/sched/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the metrics above of the scheduler `sched` (a moirai_sched_t *)
 * into `w`, labelled name="`name`" and worker="<index>". A
 * moirai_metrics_collect_cb: register it with
 * moirai_metrics_registry_add(reg, name, moirai_sched_metrics_collect,
 * sched). Never blocks; thread-safe with respect to the scheduler (one
 * thread at a time per writer). Returns 0, -EINVAL (`sched`, `w` or
 * `name` NULL) or -ENOMEM; on error `w` is as it was. */
MOIRAI_SCHED_API int moirai_sched_metrics_collect(void *sched, moirai_prom_writer_t *w,
                                                  const char *name);

#ifdef __cplusplus
}
#endif

#endif
