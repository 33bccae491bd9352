/* moirai_pool_metrics_collect and moirai_mempool_metrics_collect: the
 * pools' counters in the Prometheus text format, parsed back and compared
 * with the stats read directly. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include <criterion/criterion.h>

#include <moirai/mem/mempool.h>
#include <moirai/mem/metrics.h>
#include <moirai/mem/pool.h>

#include "prom_test.h"

static int make_mempool(moirai_mempool_t **mp)
{
    moirai_mempool_config_t cfg;
    moirai_mempool_config_init(&cfg);
    return moirai_mempool_create(mp, &cfg);
}

Test(mem_metrics, pool_counts_exactly, .timeout = 30)
{
    enum { N = 40, FREED = 15, CAP = 40 };
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, 48);
    cfg.capacity = CAP;
    moirai_pool_t *pool;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), 0);
    void *objs[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(moirai_pool_alloc(pool, &objs[i]), 0);
    void *extra;
    cr_assert_eq(moirai_pool_alloc(pool, &extra), -ENOMEM); /* at the capacity: one failure */
    for (int i = 0; i < FREED; i++)
        moirai_pool_free(pool, objs[i]);

    prom_doc_t d;
    prom_test_collect(moirai_pool_metrics_collect, pool, "objs", &d);
    const char **l = PROM_LABELS("name", "objs");
    cr_assert_eq(prom_value(&d, "moirai_pool_allocations_total", l), N);
    cr_assert_eq(prom_value(&d, "moirai_pool_frees_total", l), FREED);
    cr_assert_eq(prom_value(&d, "moirai_pool_failures_total", l), 1);
    cr_assert_eq(prom_value(&d, "moirai_pool_in_use", l), N - FREED);
    moirai_pool_stats_t st;
    cr_assert_eq(moirai_pool_stats(pool, &st), 0);
    cr_assert_eq(prom_value(&d, "moirai_pool_cache_hits_total", l), (double)st.cache_hits);
    cr_assert_eq(prom_value(&d, "moirai_pool_depot_hits_total", l), (double)st.depot_hits);
    cr_assert_eq(prom_value(&d, "moirai_pool_fresh_total", l), (double)st.fresh);
    cr_assert_eq(prom_value(&d, "moirai_pool_chunks_total", l), (double)st.system_allocations);
    cr_assert_eq(prom_value(&d, "moirai_pool_objects", l), (double)st.objects);
    cr_assert_eq(prom_value(&d, "moirai_pool_high_water", l), (double)st.high_water);
    cr_assert_str_eq(prom_family(&d, "moirai_pool_in_use")->type, "gauge");
    cr_assert_str_eq(prom_family(&d, "moirai_pool_frees_total")->type, "counter");
    cr_assert_eq(d.nfamilies, 10);
    cr_assert_eq(d.nsamples, 10);
    prom_doc_free(&d);
    for (int i = FREED; i < N; i++)
        moirai_pool_free(pool, objs[i]);
    moirai_pool_destroy(pool);
}

Test(mem_metrics, mempool_per_class_and_large, .timeout = 30)
{
    moirai_mempool_t *mp;
    cr_assert_eq(make_mempool(&mp), 0);
    size_t classes = moirai_mempool_class_count(mp);
    cr_assert_geq(classes, 2);
    size_t small = moirai_mempool_class_size(mp, 0);
    size_t second = moirai_mempool_class_size(mp, 1);
    size_t large = moirai_mempool_class_size(mp, classes - 1) + 1;
    void *a[3], *b, *big;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(moirai_mempool_alloc(mp, small, &a[i]), 0);
    cr_assert_eq(moirai_mempool_alloc(mp, second, &b), 0);
    cr_assert_eq(moirai_mempool_alloc(mp, large, &big), 0);
    moirai_mempool_free(mp, a[0], small);
    moirai_mempool_free(mp, big, large);

    prom_doc_t d;
    prom_test_collect(moirai_mempool_metrics_collect, mp, "blocks", &d);
    char c0[24], c1[24];
    snprintf(c0, sizeof(c0), "%zu", small);
    snprintf(c1, sizeof(c1), "%zu", second);
    cr_assert_eq(prom_value(&d, "moirai_mempool_allocations_total", PROM_LABELS("class", c0)), 3);
    cr_assert_eq(prom_value(&d, "moirai_mempool_frees_total", PROM_LABELS("class", c0)), 1);
    cr_assert_eq(prom_value(&d, "moirai_mempool_in_use", PROM_LABELS("class", c0)), 2);
    cr_assert_eq(prom_value(&d, "moirai_mempool_allocations_total", PROM_LABELS("class", c1)), 1);
    cr_assert_eq(prom_count(&d, "moirai_mempool_allocations_total"), (int)classes);
    for (size_t i = 0; i < classes; i++) {
        moirai_pool_stats_t st;
        cr_assert_eq(moirai_mempool_class_stats(mp, i, &st), 0);
        char c[24];
        snprintf(c, sizeof(c), "%zu", moirai_mempool_class_size(mp, i));
        const char **l = PROM_LABELS("name", "blocks", "class", c);
        cr_assert_eq(prom_value(&d, "moirai_mempool_allocations_total", l), (double)st.allocations);
        cr_assert_eq(prom_value(&d, "moirai_mempool_objects", l), (double)st.objects);
        cr_assert_eq(prom_value(&d, "moirai_mempool_high_water", l), (double)st.high_water);
    }
    const char **l = PROM_LABELS("name", "blocks");
    cr_assert_eq(prom_value(&d, "moirai_mempool_large_allocations_total", l), 1);
    cr_assert_eq(prom_value(&d, "moirai_mempool_large_frees_total", l), 1);
    cr_assert_eq(prom_value(&d, "moirai_mempool_large_failures_total", l), 0);
    prom_doc_free(&d);
    moirai_mempool_free(mp, a[1], small);
    moirai_mempool_free(mp, a[2], small);
    moirai_mempool_free(mp, b, second);
    moirai_mempool_destroy(mp);
}

Test(mem_metrics, pool_and_mempool_in_one_registry, .timeout = 30)
{
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, 16);
    moirai_pool_t *p1, *p2;
    moirai_mempool_t *mp;
    cr_assert_eq(moirai_pool_create(&p1, &cfg), 0);
    cr_assert_eq(moirai_pool_create(&p2, &cfg), 0);
    cr_assert_eq(make_mempool(&mp), 0);
    void *o;
    cr_assert_eq(moirai_pool_alloc(p2, &o), 0);
    moirai_metrics_registry_t *reg;
    cr_assert_eq(moirai_metrics_registry_create(&reg), 0);
    cr_assert_eq(moirai_metrics_registry_add(reg, "p1", moirai_pool_metrics_collect, p1), 0);
    cr_assert_eq(moirai_metrics_registry_add(reg, "mp", moirai_mempool_metrics_collect, mp), 0);
    cr_assert_eq(moirai_metrics_registry_add(reg, "p2", moirai_pool_metrics_collect, p2), 0);
    moirai_prom_writer_t *w;
    cr_assert_eq(moirai_prom_writer_create(&w), 0);
    cr_assert_eq(moirai_metrics_registry_write(reg, w), 0);
    prom_doc_t d;
    prom_test_render_parse(w, &d);
    cr_assert_eq(prom_value(&d, "moirai_pool_in_use", PROM_LABELS("name", "p1")), 0);
    cr_assert_eq(prom_value(&d, "moirai_pool_in_use", PROM_LABELS("name", "p2")), 1);
    cr_assert_eq(prom_count(&d, "moirai_pool_in_use"), 2);
    prom_doc_free(&d);
    moirai_prom_writer_destroy(w);
    moirai_metrics_registry_destroy(reg);
    moirai_pool_free(p2, o);
    moirai_pool_destroy(p1);
    moirai_pool_destroy(p2);
    moirai_mempool_destroy(mp);
}

Test(mem_metrics, bad_arguments, .timeout = 30)
{
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, 16);
    moirai_pool_t *p;
    cr_assert_eq(moirai_pool_create(&p, &cfg), 0);
    moirai_prom_writer_t *w;
    cr_assert_eq(moirai_prom_writer_create(&w), 0);
    cr_assert_eq(moirai_pool_metrics_collect(NULL, w, "x"), -EINVAL);
    cr_assert_eq(moirai_pool_metrics_collect(p, NULL, "x"), -EINVAL);
    cr_assert_eq(moirai_pool_metrics_collect(p, w, NULL), -EINVAL);
    cr_assert_eq(moirai_mempool_metrics_collect(NULL, w, "x"), -EINVAL);
    cr_assert_eq(moirai_mempool_metrics_collect(w, NULL, "x"), -EINVAL);
    cr_assert_eq(moirai_mempool_metrics_collect(w, w, NULL), -EINVAL);
    cr_assert_eq(moirai_prom_writer_mark(w).families, 0);
    moirai_prom_writer_destroy(w);
    moirai_pool_destroy(p);
}

Test(mem_metrics, oom_leaves_the_writer_unchanged, .timeout = 60)
{
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, 16);
    moirai_pool_t *p;
    moirai_mempool_t *mp;
    cr_assert_eq(moirai_pool_create(&p, &cfg), 0);
    cr_assert_eq(make_mempool(&mp), 0);
    cr_assert_gt(prom_test_oom_sweep(moirai_pool_metrics_collect, p), 0);
    cr_assert_gt(prom_test_oom_sweep(moirai_mempool_metrics_collect, mp), 0);
    moirai_mempool_destroy(mp);
    moirai_pool_destroy(p);
}
