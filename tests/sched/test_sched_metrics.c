/* moirai_sched_metrics_collect: the scheduler's counters in the
 * Prometheus text format, parsed back and compared with the stats read
 * directly. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include <criterion/criterion.h>

#include <moirai/core/handle.h>
#include <moirai/sched/metrics.h>
#include <moirai/sched/sched.h>

#include "prom_test.h"

static int nothing(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    return 0;
}

/* Spawns `n` tasks from outside and joins every one. */
static void run_tasks(moirai_sched_t *s, int n)
{
    for (int i = 0; i < n; i++) {
        moirai_handle_t *h;
        cr_assert_eq(moirai_handle_create(&h), 0);
        cr_assert_eq(moirai_sched_spawn(s, nothing, NULL, NULL, h), 0);
        cr_assert_eq(moirai_handle_join(h, NULL), 0);
        moirai_handle_release(h);
    }
}

static moirai_sched_t *make_sched(int workers)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = workers;
    moirai_sched_t *s;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    return s;
}

/* The sum over workers of the samples of `family` labelled name=`name`. */
static double sum_of(const prom_doc_t *d, const char *family, const char *name)
{
    double sum = 0;
    for (int i = 0; i < d->nsamples; i++) {
        const prom_sample_t *s = &d->samples[i];
        if (!strcmp(s->name, family) && s->nlabels == 2 && !strcmp(s->label_value[0], name))
            sum += s->value;
    }
    return sum;
}

Test(sched_metrics, executed_counts_exactly_the_tasks_run, .timeout = 60)
{
    enum { N = 137 };
    moirai_sched_t *s = make_sched(2);
    run_tasks(s, N);
    moirai_sched_worker_stats_t before[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(moirai_sched_worker_stats(s, i, &before[i]), 0);
    prom_doc_t d;
    prom_test_collect(moirai_sched_metrics_collect, s, "main", &d);
    /* Every job joined happened before its handle completed, so the
     * counts are exact now. */
    cr_assert_eq(sum_of(&d, "moirai_sched_executed_total", "main"), N);
    int workers = moirai_sched_worker_count(s);
    cr_assert_eq(workers, 2);
    cr_assert_eq(prom_value(&d, "moirai_sched_workers", PROM_LABELS("name", "main")), workers);
    cr_assert_eq(prom_count(&d, "moirai_sched_executed_total"), workers);
    /* Every worker's counters against moirai_sched_worker_stats(): those
     * that move only while jobs run are exact now; idle workers may still
     * search and park (steal attempts, steals, parks), so those lie
     * between a read before the collection and one after it. */
    for (int i = 0; i < workers; i++) {
        moirai_sched_worker_stats_t st;
        cr_assert_eq(moirai_sched_worker_stats(s, i, &st), 0);
        char idx[16];
        snprintf(idx, sizeof(idx), "%d", i);
        const char **l = PROM_LABELS("name", "main", "worker", idx);
        cr_assert_eq(prom_value(&d, "moirai_sched_executed_total", l), (double)st.executed);
        cr_assert_eq(prom_value(&d, "moirai_sched_spawned_total", l), (double)st.spawned);
        cr_assert_eq(prom_value(&d, "moirai_sched_task_cpu_seconds_total", l),
                     (double)st.task_cpu_ns / 1e9);
        cr_assert_eq(prom_value(&d, "moirai_sched_watchdog_reports_total", l),
                     (double)st.watchdog_reports);
        cr_assert_eq(prom_value(&d, "moirai_sched_compensating_started_total", l),
                     (double)st.compensating_started);
        cr_assert_leq(prom_value(&d, "moirai_sched_steal_attempts_total", l),
                      (double)st.steal_attempts);
        cr_assert_geq(prom_value(&d, "moirai_sched_steal_attempts_total", l),
                      (double)before[i].steal_attempts);
        cr_assert_leq(prom_value(&d, "moirai_sched_steals_total", l), (double)st.steals);
        cr_assert_geq(prom_value(&d, "moirai_sched_steals_total", l), (double)before[i].steals);
        cr_assert_leq(prom_value(&d, "moirai_sched_stolen_jobs_total", l), (double)st.stolen);
        cr_assert_geq(prom_value(&d, "moirai_sched_stolen_jobs_total", l),
                      (double)before[i].stolen);
        cr_assert_leq(prom_value(&d, "moirai_sched_parks_total", l), (double)st.parks);
        cr_assert_geq(prom_value(&d, "moirai_sched_parks_total", l), (double)before[i].parks);
    }
    for (int f = 0; f < d.nfamilies; f++)
        cr_assert(!strcmp(d.families[f].type, "counter") ||
                  !strcmp(d.families[f].name, "moirai_sched_workers"));
    prom_doc_free(&d);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(sched_metrics, two_schedulers_in_one_registry, .timeout = 60)
{
    moirai_sched_t *a = make_sched(1), *b = make_sched(2);
    run_tasks(a, 5);
    run_tasks(b, 9);
    moirai_metrics_registry_t *reg;
    cr_assert_eq(moirai_metrics_registry_create(&reg), 0);
    cr_assert_eq(moirai_metrics_registry_add(reg, "a", moirai_sched_metrics_collect, a), 0);
    cr_assert_eq(moirai_metrics_registry_add(reg, "b", moirai_sched_metrics_collect, b), 0);
    moirai_prom_writer_t *w;
    cr_assert_eq(moirai_prom_writer_create(&w), 0);
    cr_assert_eq(moirai_metrics_registry_write(reg, w), 0);
    prom_doc_t d;
    prom_test_render_parse(w, &d); /* fails if a family appears twice */
    cr_assert_eq(sum_of(&d, "moirai_sched_executed_total", "a"), 5);
    cr_assert_eq(sum_of(&d, "moirai_sched_executed_total", "b"), 9);
    cr_assert_eq(prom_count(&d, "moirai_sched_executed_total"),
                 moirai_sched_worker_count(a) + moirai_sched_worker_count(b));
    prom_doc_free(&d);
    moirai_prom_writer_destroy(w);
    moirai_metrics_registry_destroy(reg);
    cr_assert_eq(moirai_sched_destroy(a, MOIRAI_SHUTDOWN_DRAIN), 0);
    cr_assert_eq(moirai_sched_destroy(b, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(sched_metrics, bad_arguments, .timeout = 30)
{
    moirai_sched_t *s = make_sched(1);
    moirai_prom_writer_t *w;
    cr_assert_eq(moirai_prom_writer_create(&w), 0);
    cr_assert_eq(moirai_sched_metrics_collect(NULL, w, "x"), -EINVAL);
    cr_assert_eq(moirai_sched_metrics_collect(s, NULL, "x"), -EINVAL);
    cr_assert_eq(moirai_sched_metrics_collect(s, w, NULL), -EINVAL);
    cr_assert_eq(moirai_prom_writer_mark(w).families, 0);
    /* A family of the same name declared otherwise: refused, nothing added. */
    cr_assert(moirai_prom_writer_family(w, "moirai_sched_parks_total", MOIRAI_PROM_GAUGE, NULL) >=
              0);
    moirai_prom_mark_t before = moirai_prom_writer_mark(w);
    cr_assert_eq(moirai_sched_metrics_collect(s, w, "x"), -EINVAL);
    cr_assert_eq(moirai_prom_writer_mark(w).records, before.records);
    cr_assert_eq(moirai_prom_writer_mark(w).families, before.families);
    moirai_prom_writer_destroy(w);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(sched_metrics, oom_leaves_the_writer_unchanged, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    run_tasks(s, 3);
    cr_assert_gt(prom_test_oom_sweep(moirai_sched_metrics_collect, s), 0);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}
