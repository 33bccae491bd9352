/* moirai_runtime_metrics_collect: the fiber runtime's counters in the
 * Prometheus text format, parsed back and compared with
 * moirai_runtime_stats() once the runtime is idle; collected from a fiber
 * too. */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <criterion/criterion.h>

#include <moirai/async/fiber.h>
#include <moirai/async/metrics.h>
#include <moirai/async/runtime.h>
#include <moirai/core/handle.h>
#include <moirai/sched/metrics.h>

#include "prom_test.h"

static int yielder(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    moirai_fiber_yield();
    return 0;
}

/* Waits (bounded) until no fiber is alive: a fiber's end is counted just
 * after its handle completes, so the counts are exact only then. */
static void wait_idle(moirai_runtime_t *rt)
{
    for (int i = 0; i < 10000; i++) {
        moirai_runtime_stats_t st;
        cr_assert_eq(moirai_runtime_stats(rt, &st), 0);
        if (st.fibers_alive == 0)
            return;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    cr_assert_fail("fibers still alive after 10 s");
}

static void spawn_join(moirai_runtime_t *rt, moirai_task_fn fn, void *arg, int n)
{
    for (int i = 0; i < n; i++) {
        moirai_handle_t *h;
        cr_assert_eq(moirai_handle_create(&h), 0);
        cr_assert_eq(moirai_fiber_spawn(rt, fn, arg, NULL, h), 0);
        cr_assert_eq(moirai_handle_join(h, NULL), 0);
        moirai_handle_release(h);
    }
}

Test(async_metrics, counts_match_the_stats, .timeout = 60)
{
    enum { N = 25 };
    moirai_runtime_t *rt;
    cr_assert_eq(moirai_runtime_create(&rt, NULL), 0);
    spawn_join(rt, yielder, NULL, N);
    wait_idle(rt);
    moirai_runtime_stats_t st;
    cr_assert_eq(moirai_runtime_stats(rt, &st), 0);
    prom_doc_t d;
    prom_test_collect(moirai_runtime_metrics_collect, rt, "rt", &d);
    const char **l = PROM_LABELS("name", "rt");
    cr_assert_eq(prom_value(&d, "moirai_runtime_fibers_spawned_total", l), N);
    cr_assert_eq(prom_value(&d, "moirai_runtime_fibers_alive", l), 0);
    /* Each fiber was switched into at least twice (start, after its yield). */
    cr_assert_geq(prom_value(&d, "moirai_runtime_switches_total", l), 2 * N);
    cr_assert_eq(prom_value(&d, "moirai_runtime_switches_total", l), (double)st.switches);
    cr_assert_eq(prom_value(&d, "moirai_runtime_parks_total", l), (double)st.parks);
    cr_assert_eq(prom_value(&d, "moirai_runtime_stacks_mapped", l), (double)st.stacks_mapped);
    cr_assert_eq(prom_value(&d, "moirai_runtime_stacks_cached", l), (double)st.stacks_cached);
    cr_assert_eq(prom_value(&d, "moirai_runtime_stack_high_water_bytes", l),
                 (double)st.stack_high_water);
    cr_assert_gt(st.stack_high_water, 0);
    cr_assert_eq(prom_value(&d, "moirai_runtime_timers_armed_total", l), (double)st.timers_armed);
    cr_assert_eq(prom_value(&d, "moirai_runtime_watchdog_reports_total", l),
                 (double)st.watchdog_reports);
    cr_assert_str_eq(prom_family(&d, "moirai_runtime_fibers_alive")->type, "gauge");
    cr_assert_eq(d.nsamples, 9);
    prom_doc_free(&d);
    cr_assert_eq(moirai_runtime_destroy(rt), 0);
}

typedef struct from_fiber {
    moirai_metrics_registry_t *reg;
    moirai_prom_writer_t *w;
} from_fiber_t;

static int collect_in_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    from_fiber_t *f = arg;
    return moirai_metrics_registry_write(f->reg, f->w);
}

Test(async_metrics, registry_written_from_a_fiber, .timeout = 60)
{
    moirai_runtime_t *rt;
    cr_assert_eq(moirai_runtime_create(&rt, NULL), 0);
    from_fiber_t f;
    cr_assert_eq(moirai_metrics_registry_create(&f.reg), 0);
    cr_assert_eq(moirai_prom_writer_create(&f.w), 0);
    cr_assert_eq(moirai_metrics_registry_add(f.reg, "io", moirai_runtime_metrics_collect, rt), 0);
    cr_assert_eq(moirai_metrics_registry_add(f.reg, "io", moirai_sched_metrics_collect,
                                             moirai_runtime_sched(rt)),
                 0);
    spawn_join(rt, collect_in_fiber, &f, 1);
    prom_doc_t d;
    prom_test_render_parse(f.w, &d);
    /* Written from the fiber: every family of both collectors, once.
     * The fiber's own spawn may or may not be counted yet (the counter is
     * raised after the fiber was handed to the scheduler, and read
     * racily), so the exact check comes after it ended. */
    cr_assert_eq(prom_count(&d, "moirai_runtime_fibers_spawned_total"), 1);
    cr_assert_eq(prom_count(&d, "moirai_runtime_fibers_alive"), 1);
    cr_assert_eq(prom_value(&d, "moirai_sched_workers", PROM_LABELS("name", "io")),
                 moirai_sched_worker_count(moirai_runtime_sched(rt)));
    prom_doc_free(&d);
    wait_idle(rt);
    moirai_prom_writer_reset(f.w);
    cr_assert_eq(moirai_metrics_registry_write(f.reg, f.w), 0);
    prom_test_render_parse(f.w, &d);
    cr_assert_eq(prom_value(&d, "moirai_runtime_fibers_spawned_total", NULL), 1);
    cr_assert_eq(prom_value(&d, "moirai_runtime_fibers_alive", NULL), 0);
    prom_doc_free(&d);
    moirai_prom_writer_destroy(f.w);
    moirai_metrics_registry_destroy(f.reg);
    cr_assert_eq(moirai_runtime_destroy(rt), 0);
}

Test(async_metrics, bad_arguments_and_oom, .timeout = 60)
{
    moirai_runtime_t *rt;
    cr_assert_eq(moirai_runtime_create(&rt, NULL), 0);
    moirai_prom_writer_t *w;
    cr_assert_eq(moirai_prom_writer_create(&w), 0);
    cr_assert_eq(moirai_runtime_metrics_collect(NULL, w, "x"), -EINVAL);
    cr_assert_eq(moirai_runtime_metrics_collect(rt, NULL, "x"), -EINVAL);
    cr_assert_eq(moirai_runtime_metrics_collect(rt, w, NULL), -EINVAL);
    cr_assert_eq(moirai_prom_writer_mark(w).families, 0);
    moirai_prom_writer_destroy(w);
    /* Idle: the counters hold still while the sweep compares texts. */
    cr_assert_gt(prom_test_oom_sweep(moirai_runtime_metrics_collect, rt), 0);
    cr_assert_eq(moirai_runtime_destroy(rt), 0);
}

/* ---- the registry's lock from fibers ---- */

enum { WRITERS = 4, WRITES = 20 };
static atomic_int inside, most_inside, collect_calls;

/* A collector that parks its fiber while the registry's lock is held, so
 * the fiber may resume (and unlock) on another worker. */
static int sleepy_collect(void *arg, moirai_prom_writer_t *w, const char *name)
{
    (void)arg;
    int now = atomic_fetch_add_explicit(&inside, 1, memory_order_relaxed) + 1;
    int most = atomic_load_explicit(&most_inside, memory_order_relaxed);
    while (now > most && !atomic_compare_exchange_weak_explicit(
                             &most_inside, &most, now, memory_order_relaxed, memory_order_relaxed))
        ;
    moirai_fiber_sleep(100000);
    atomic_fetch_add_explicit(&inside, -1, memory_order_relaxed);
    atomic_fetch_add_explicit(&collect_calls, 1, memory_order_relaxed);
    moirai_prom_label_t l[] = {{"name", name}};
    int f = moirai_prom_writer_family(w, "sleepy", MOIRAI_PROM_GAUGE, NULL);
    return f < 0 ? f : moirai_prom_writer_sample(w, f, l, 1, 1);
}

static int fiber_writer(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    moirai_metrics_registry_t *reg = arg;
    moirai_prom_writer_t *w;
    int err = moirai_prom_writer_create(&w);
    for (int i = 0; i < WRITES && !err; i++) {
        moirai_prom_writer_reset(w);
        err = moirai_metrics_registry_write(reg, w);
        const char *text;
        size_t len;
        if (!err)
            err = moirai_prom_writer_render(w, &text, &len);
        prom_doc_t d = {0};
        if (!err && (!prom_parse(text, len, &d) || d.nsamples != 1))
            err = -EPROTO;
        prom_doc_free(&d);
    }
    moirai_prom_writer_destroy(w);
    return err;
}

Test(async_metrics, registry_lock_parks_fibers, .timeout = 120)
{
    moirai_runtime_config_t cfg;
    moirai_runtime_config_init(&cfg);
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = 2;
    cfg.sched_config = &sc;
    moirai_runtime_t *rt;
    cr_assert_eq(moirai_runtime_create(&rt, &cfg), 0);
    moirai_metrics_registry_t *reg;
    cr_assert_eq(moirai_metrics_registry_create(&reg), 0);
    cr_assert_eq(moirai_metrics_registry_add(reg, "s", sleepy_collect, NULL), 0);
    moirai_handle_t *h[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        cr_assert_eq(moirai_handle_create(&h[i]), 0);
        cr_assert_eq(moirai_fiber_spawn(rt, fiber_writer, reg, NULL, h[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++) {
        cr_assert_eq(moirai_handle_join(h[i], NULL), 0);
        moirai_handle_release(h[i]);
    }
    /* Every write ran the collector exactly once, one at a time. */
    cr_assert_eq(atomic_load(&collect_calls), WRITERS * WRITES);
    cr_assert_eq(atomic_load(&most_inside), 1);
    moirai_metrics_registry_destroy(reg);
    cr_assert_eq(moirai_runtime_destroy(rt), 0);
}
