/* The fiber runtime's metrics in the Prometheus text format (see
 * moirai/core/prom.h), labelled {name}, from moirai_runtime_stats():
 *
 *   moirai_runtime_fibers_spawned_total    fibers accepted by spawn
 *   moirai_runtime_fibers_alive            gauge: spawned and not yet finished
 *   moirai_runtime_switches_total          switches into fibers
 *   moirai_runtime_parks_total             times a fiber parked (waits, sleeps)
 *   moirai_runtime_stacks_mapped           gauge: stacks mapped, in use or cached
 *   moirai_runtime_stacks_cached           gauge: of those, cached for reuse
 *   moirai_runtime_stack_high_water_bytes  gauge: most stack any finished fiber used
 *   moirai_runtime_timers_armed_total      sleeps and deadline parks handed to the reactor
 *   moirai_runtime_watchdog_reports_total  the scheduler watchdog's reports
 *
 * The runtime's scheduler has its own collector: register
 * moirai_sched_metrics_collect() with moirai_runtime_sched(rt) for the
 * workers' counters. */
#ifndef MOIRAI_ASYNC_METRICS_H
#define MOIRAI_ASYNC_METRICS_H

#include <moirai/async/export.h>
#include <moirai/core/prom.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the metrics above of the runtime `runtime` (a moirai_runtime_t *)
 * into `w`, labelled name="`name`". A moirai_metrics_collect_cb. Never
 * blocks (the counters are read relaxed: approximate while fibers run,
 * exact once idle); callable from any thread, a fiber of the runtime
 * included (one thread at a time per writer). Returns 0, -EINVAL
 * (`runtime`, `w` or `name` NULL) or -ENOMEM; on error `w` is as it was. */
MOIRAI_ASYNC_API int moirai_runtime_metrics_collect(void *runtime, moirai_prom_writer_t *w,
                                                    const char *name);

#ifdef __cplusplus
}
#endif

#endif
