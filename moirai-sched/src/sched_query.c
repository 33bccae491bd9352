/* What callers ask of a scheduler: the current pool and worker, the
 * worker count, the victim order, and the statistics.
 *
 * Separate from sched.c and sched_lifecycle.c because these calls only
 * read: they neither accept work nor change a pool, and may be made from
 * any thread while the pool runs (the statistics are a racy snapshot by
 * contract). */
#include <errno.h>
#include <string.h>

#include "sched_internal.h"

/* ---- Queries ---- */

moirai_sched_t *moirai_sched_current(void)
{
    moirai__worker_t *w = moirai__worker_current();
    /* A guest (an outside thread inside a join) is not a worker: it
     * reports what the thread is otherwise. */
    while (w != NULL && moirai__worker_is_guest(w))
        w = w->home;
    return w != NULL ? w->sched : NULL;
}

int moirai_sched_worker_index(void)
{
    moirai__worker_t *w = moirai__worker_current();
    while (w != NULL && moirai__worker_is_guest(w))
        w = w->home;
    return w != NULL ? w->index : -1;
}

int moirai_sched_worker_count(const moirai_sched_t *sched)
{
    return sched != NULL ? sched->nworkers : -EINVAL;
}

int moirai_sched_victims(const moirai_sched_t *sched, int worker, int *order, int *tiers, int cap)
{
    if (sched == NULL || worker < 0 || worker >= sched->nworkers || cap < 0 ||
        (order == NULL && cap > 0))
        return -EINVAL;
    const moirai__victims_t *v = &sched->workers[worker].victims;
    int n = v->count < cap ? v->count : cap;
    for (int i = 0; i < n; i++) {
        order[i] = v->order[i];
        if (tiers != NULL)
            tiers[i] = moirai__victims_tier(v, i);
    }
    return n;
}

static void stats_read(const moirai__worker_t *w, moirai_sched_worker_stats_t *out)
{
    /* Relaxed: the counters are a racy snapshot by contract. */
    moirai__worker_stats_t *st = (moirai__worker_stats_t *)&w->stats;
    out->spawned = atomic_load_explicit(&st->spawned, memory_order_relaxed);
    out->executed = atomic_load_explicit(&st->executed, memory_order_relaxed);
    out->steal_attempts = atomic_load_explicit(&st->steal_attempts, memory_order_relaxed);
    out->steals = atomic_load_explicit(&st->steals, memory_order_relaxed);
    out->stolen = atomic_load_explicit(&st->stolen, memory_order_relaxed);
    out->parks = atomic_load_explicit(&st->parks, memory_order_relaxed);
    out->task_cpu_ns = atomic_load_explicit(&st->task_cpu_ns, memory_order_relaxed);
    out->watchdog_reports = atomic_load_explicit(&st->watchdog_reports, memory_order_relaxed);
    out->compensating_started =
        atomic_load_explicit(&st->compensating_started, memory_order_relaxed);
}

int moirai_sched_worker_stats(const moirai_sched_t *sched, int worker,
                              moirai_sched_worker_stats_t *out)
{
    if (sched == NULL || out == NULL || worker < 0 || worker >= sched->nworkers)
        return -EINVAL;
    stats_read(&sched->workers[worker], out);
    return 0;
}

int moirai_sched_stats(const moirai_sched_t *sched, moirai_sched_worker_stats_t *out)
{
    if (sched == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    /* Guest slots too: what outside callers ran inside joins. */
    for (int i = 0; i < sched->nslots; i++) {
        moirai_sched_worker_stats_t one;
        stats_read(&sched->workers[i], &one);
        out->spawned += one.spawned;
        out->executed += one.executed;
        out->steal_attempts += one.steal_attempts;
        out->steals += one.steals;
        out->stolen += one.stolen;
        out->parks += one.parks;
        out->task_cpu_ns += one.task_cpu_ns;
        out->watchdog_reports += one.watchdog_reports;
        out->compensating_started += one.compensating_started;
    }
    return 0;
}
