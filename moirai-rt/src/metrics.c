/* The RT executor's collector for the Prometheus export (see
 * moirai/rt/metrics.h).
 *
 * Tasks and groups live under the executor's lock and may be removed as
 * soon as it is released, so their counters are copied under the lock
 * into a snapshot and written from the copy. The snapshot is allocated
 * before taking the lock (the dispatcher needs it between every two
 * steps, and an allocation may be slow): the tasks are counted, the room
 * allocated, and the count checked again under the lock, retrying in the
 * rare case that admissions raced past it. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <moirai/core/alloc.h>
#include <moirai/rt/metrics.h>

#include "executor_internal.h"

typedef struct task_snap {
    uint64_t id;
    int worker;
    int demoted;
    uint64_t released, completed, missed, skipped, overruns, failed, throttled;
    uint64_t resp_p99, resp_max, lat_p99, lat_max;
    int64_t lateness_max; /* INT64_MIN before the first completion */
} task_snap_t;

typedef struct group_snap {
    uint64_t used, windows, throttles, total;
} group_snap_t;

typedef struct snap {
    task_snap_t *tasks;
    group_snap_t *groups;
    size_t ntasks, ngroups;
    int active_workers;
} snap_t;

/* With the lock held: how many tasks and groups there are. */
static void count_locked(moirai_rt_executor_t *ex, size_t *tasks, size_t *groups)
{
    *tasks = 0;
    for (int i = 0; i < ex->nworkers; i++)
        *tasks += (size_t)ex->w[i].ntasks;
    *groups = 0;
    for (moirai_rt_group_t *g = ex->groups; g; g = g->next)
        (*groups)++;
}

/* With the lock held: copies everything into `s`, which has room for
 * exactly the current counts. Mirrors moirai_rt_executor_task_stats()
 * and moirai_rt_group_stats(). */
static void fill_locked(moirai_rt_executor_t *ex, snap_t *s)
{
    size_t k = 0;
    s->active_workers = 0;
    for (int i = 0; i < ex->nworkers; i++) {
        /* Active as moirai_rt_executor_active_workers() counts it: a task
         * that is not demoted. */
        bool active = false;
        for (moirai_rt_task_t *t = ex->w[i].tasks; t && k < s->ntasks; t = t->next) {
            active |= !t->demoted;
            task_snap_t *o = &s->tasks[k++];
            *o = (task_snap_t){.id = t->id,
                               .worker = t->worker,
                               .demoted = t->demoted,
                               .released = t->released,
                               .completed = t->completed,
                               .missed = t->missed,
                               .skipped = t->skipped,
                               .overruns = t->overruns,
                               .failed = t->failed,
                               .throttled = t->throttled,
                               .lateness_max = t->lateness_max};
            if (t->resp.count) {
                o->resp_max = t->resp.max;
                o->resp_p99 = moirai__hist_percentile(&t->resp, 990);
            }
            if (t->lat.count) {
                o->lat_max = t->lat.max;
                o->lat_p99 = moirai__hist_percentile(&t->lat, 990);
            }
        }
        s->active_workers += active;
    }
    /* The list holds the newest group first; the snapshot is in creation
     * order, so a group keeps its label while newer ones come and go. */
    uint64_t now = moirai_rt_clock_now(ex->clock);
    size_t j = s->ngroups;
    for (moirai_rt_group_t *g = ex->groups; g; g = g->next) {
        moirai__group_roll(g, now);
        s->groups[--j] = (group_snap_t){g->used, g->windows + 1, g->throttles, g->total};
    }
}

static int take_snapshot(moirai_rt_executor_t *ex, snap_t *s)
{
    for (;;) {
        size_t nt, ng;
        pthread_mutex_lock(&ex->lock);
        count_locked(ex, &nt, &ng);
        pthread_mutex_unlock(&ex->lock);
        /* One more of each than needed, so calloc never sees 0. */
        task_snap_t *tasks = moirai_calloc(nt + 1, sizeof(*tasks));
        group_snap_t *groups = moirai_calloc(ng + 1, sizeof(*groups));
        if (!tasks || !groups) {
            moirai_free(tasks);
            moirai_free(groups);
            return -ENOMEM;
        }
        size_t nt2, ng2;
        pthread_mutex_lock(&ex->lock);
        count_locked(ex, &nt2, &ng2);
        if (nt2 == nt && ng2 == ng) {
            *s = (snap_t){tasks, groups, nt, ng, 0};
            fill_locked(ex, s);
            pthread_mutex_unlock(&ex->lock);
            return 0;
        }
        pthread_mutex_unlock(&ex->lock);
        moirai_free(tasks);
        moirai_free(groups);
    }
}

static int emit(moirai_prom_writer_t *w, const char *family, moirai_prom_type_t type,
                const char *help, const moirai_prom_label_t *labels, size_t nlabels, double value)
{
    int id = moirai_prom_writer_family(w, family, type, help);
    return id < 0 ? id : moirai_prom_writer_sample(w, id, labels, nlabels, value);
}

static int emit_u64(moirai_prom_writer_t *w, const char *family, moirai_prom_type_t type,
                    const char *help, const moirai_prom_label_t *labels, size_t nlabels,
                    uint64_t value)
{
    int id = moirai_prom_writer_family(w, family, type, help);
    return id < 0 ? id : moirai_prom_writer_sample_u64(w, id, labels, nlabels, value);
}

#define C MOIRAI_PROM_COUNTER
#define G MOIRAI_PROM_GAUGE

static int emit_task(moirai_prom_writer_t *w, const task_snap_t *t, const char *name)
{
    char id[24], worker[16];
    snprintf(id, sizeof(id), "%" PRIu64, t->id);
    snprintf(worker, sizeof(worker), "%d", t->worker);
    moirai_prom_label_t l[] = {{"name", name}, {"task", id}, {"worker", worker}};
    int err = emit_u64(w, "moirai_rt_jobs_released_total", C, "Jobs released.", l, 3, t->released);
    if (!err)
        err = emit_u64(w, "moirai_rt_jobs_completed_total", C, "Jobs that completed.", l, 3,
                       t->completed);
    if (!err)
        err = emit_u64(w, "moirai_rt_deadline_misses_total", C,
                       "Jobs that finished (or were abandoned) after their deadline.", l, 3,
                       t->missed);
    if (!err)
        err = emit_u64(w, "moirai_rt_jobs_skipped_total", C,
                       "Jobs abandoned by the SKIP overrun policy.", l, 3, t->skipped);
    if (!err)
        err = emit_u64(w, "moirai_rt_budget_overruns_total", C,
                       "Jobs that used more than their budget.", l, 3, t->overruns);
    if (!err)
        err = emit_u64(w, "moirai_rt_jobs_failed_total", C,
                       "Jobs whose step returned an error or kept a lock.", l, 3, t->failed);
    if (!err)
        err = emit_u64(w, "moirai_rt_jobs_throttled_total", C,
                       "Times the task's group quota held a ready job back.", l, 3, t->throttled);
    if (!err)
        err = emit_u64(w, "moirai_rt_task_demoted", G,
                       "1 once the task left the real-time set (DEMOTE overrun policy).", l, 3,
                       (uint64_t)(t->demoted != 0));
    if (!err)
        err = emit(w, "moirai_rt_response_p99_seconds", G,
                   "99th-percentile response time (0 before the first completion).", l, 3,
                   (double)t->resp_p99 / 1e9);
    if (!err)
        err = emit(w, "moirai_rt_response_max_seconds", G, "Longest response time.", l, 3,
                   (double)t->resp_max / 1e9);
    if (!err)
        err =
            emit(w, "moirai_rt_latency_p99_seconds", G,
                 "99th-percentile start latency (release jitter).", l, 3, (double)t->lat_p99 / 1e9);
    if (!err)
        err = emit(w, "moirai_rt_latency_max_seconds", G, "Longest start latency.", l, 3,
                   (double)t->lat_max / 1e9);
    /* Lateness has no neutral value before the first completion (0 would
     * claim a job finished exactly at its deadline): no sample then. */
    if (!err && t->lateness_max != INT64_MIN)
        err = emit(w, "moirai_rt_lateness_max_seconds", G,
                   "Largest completion time minus deadline (negative: every job was early).", l, 3,
                   (double)t->lateness_max / 1e9);
    return err;
}

static int emit_group(moirai_prom_writer_t *w, const group_snap_t *g, size_t index,
                      const char *name)
{
    char group[24];
    snprintf(group, sizeof(group), "%zu", index);
    moirai_prom_label_t l[] = {{"name", name}, {"group", group}};
    int err = emit(w, "moirai_rt_group_used_seconds", G, "Time charged in the current window.", l,
                   2, (double)g->used / 1e9);
    if (!err)
        err = emit_u64(w, "moirai_rt_group_windows_total", C, "Quota windows started.", l, 2,
                       g->windows);
    if (!err)
        err = emit_u64(w, "moirai_rt_group_throttles_total", C,
                       "Windows in which the budget ran out with work ready.", l, 2, g->throttles);
    if (!err)
        err = emit(w, "moirai_rt_group_charged_seconds_total", C, "Time charged since creation.", l,
                   2, (double)g->total / 1e9);
    return err;
}

static int emit_all(moirai_rt_executor_t *ex, const snap_t *s, moirai_prom_writer_t *w,
                    const char *name)
{
    moirai_prom_label_t l[] = {{"name", name}, {"worker", NULL}};
    int err = emit_u64(w, "moirai_rt_workers", G, "Worker threads of the executor.", l, 1,
                       (uint64_t)ex->nworkers);
    if (!err)
        err = emit_u64(w, "moirai_rt_active_workers", G,
                       "Workers with at least one task that is not demoted.", l, 1,
                       (uint64_t)s->active_workers);
    if (!err)
        err = emit_u64(w, "moirai_rt_tasks", G, "Admitted tasks.", l, 1, (uint64_t)s->ntasks);
    for (int i = 0; i < ex->nworkers && !err; i++) {
        char worker[16];
        snprintf(worker, sizeof(worker), "%d", i);
        l[1].value = worker;
        err = emit(w, "moirai_rt_worker_utilization", G,
                   "Utilization admitted on the worker (demoted tasks excluded).", l, 2,
                   moirai_rt_executor_utilization(ex, i));
    }
    for (size_t i = 0; i < s->ntasks && !err; i++)
        err = emit_task(w, &s->tasks[i], name);
    for (size_t i = 0; i < s->ngroups && !err; i++)
        err = emit_group(w, &s->groups[i], i, name);
    return err;
}

int moirai_rt_executor_metrics_collect(void *executor, moirai_prom_writer_t *w, const char *name)
{
    if (!executor || !w || !name)
        return -EINVAL;
    moirai_rt_executor_t *ex = executor;
    snap_t s;
    int err = take_snapshot(ex, &s);
    if (err)
        return err;
    moirai_prom_mark_t mark = moirai_prom_writer_mark(w);
    err = emit_all(ex, &s, w, name);
    if (err)
        moirai_prom_writer_rollback(w, mark);
    moirai_free(s.tasks);
    moirai_free(s.groups);
    return err;
}
