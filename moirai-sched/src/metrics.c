/* The scheduler's collector for the Prometheus export: each worker's
 * counters as one sample per family (see moirai/sched/metrics.h). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include <moirai/sched/metrics.h>
#include <moirai/sched/sched.h>

/* One counter of moirai_sched_worker_stats_t; `divisor` 0 writes the
 * field as an exact integer, otherwise as field / divisor (nanoseconds to
 * seconds, the base unit Prometheus names prefer; a division, because it
 * rounds once where multiplying by an inexact 1e-9 rounds twice). */
typedef struct field {
    const char *name;
    const char *help;
    size_t offset;
    double divisor;
} field_t;

#define FIELD(name, help, member, divisor)                                                         \
    {                                                                                              \
        name, help, offsetof(moirai_sched_worker_stats_t, member), divisor                         \
    }

static const field_t fields[] = {
    FIELD("moirai_sched_spawned_total",
          "Tasks, join frames and runtime jobs this worker submitted.", spawned, 0),
    FIELD("moirai_sched_executed_total", "Tasks, join frames and runtime jobs this worker ran.",
          executed, 0),
    FIELD("moirai_sched_steal_attempts_total", "Attempts on another worker's deque or inbox.",
          steal_attempts, 0),
    FIELD("moirai_sched_steals_total", "Steal attempts that took at least one job.", steals, 0),
    FIELD("moirai_sched_stolen_jobs_total", "Jobs taken by steals.", stolen, 0),
    FIELD("moirai_sched_parks_total", "Times the worker parked.", parks, 0),
    FIELD("moirai_sched_task_cpu_seconds_total",
          "CPU time of spawned tasks (when the scheduler's task_cpu is set).", task_cpu_ns, 1e9),
    FIELD("moirai_sched_watchdog_reports_total", "Jobs this worker was reported stuck in.",
          watchdog_reports, 0),
    FIELD("moirai_sched_compensating_started_total",
          "Times this slot was started as a compensating worker.", compensating_started, 0),
};

static int emit_worker(moirai_prom_writer_t *w, const moirai_sched_worker_stats_t *st,
                       const moirai_prom_label_t *labels)
{
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const field_t *f = &fields[i];
        int id = moirai_prom_writer_family(w, f->name, MOIRAI_PROM_COUNTER, f->help);
        if (id < 0)
            return id;
        uint64_t v = *(const uint64_t *)((const char *)st + f->offset);
        int err = f->divisor != 0
                      ? moirai_prom_writer_sample(w, id, labels, 2, (double)v / f->divisor)
                      : moirai_prom_writer_sample_u64(w, id, labels, 2, v);
        if (err)
            return err;
    }
    return 0;
}

static int emit(moirai_sched_t *sched, moirai_prom_writer_t *w, const char *name)
{
    int workers = moirai_sched_worker_count(sched);
    if (workers < 0)
        return workers;
    moirai_prom_label_t labels[2] = {{"name", name}, {"worker", NULL}};
    int id =
        moirai_prom_writer_family(w, "moirai_sched_workers", MOIRAI_PROM_GAUGE,
                                  "Worker slots of the scheduler (compensating ones included).");
    int err = id < 0 ? id : moirai_prom_writer_sample_u64(w, id, labels, 1, (uint64_t)workers);
    /* Worker by worker: the writer files each sample under its family, so
     * the output still holds each family once. */
    for (int i = 0; i < workers && !err; i++) {
        moirai_sched_worker_stats_t st;
        char index[16];
        err = moirai_sched_worker_stats(sched, i, &st);
        if (err)
            break;
        snprintf(index, sizeof(index), "%d", i);
        labels[1].value = index;
        err = emit_worker(w, &st, labels);
    }
    return err;
}

int moirai_sched_metrics_collect(void *sched, moirai_prom_writer_t *w, const char *name)
{
    if (!sched || !w || !name)
        return -EINVAL;
    moirai_prom_mark_t mark = moirai_prom_writer_mark(w);
    int err = emit(sched, w, name);
    if (err)
        moirai_prom_writer_rollback(w, mark);
    return err;
}
