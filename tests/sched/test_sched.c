/* The scheduler object: creation with every kind of configuration, the
 * documented errors (-ENOMEM by sweeping every allocation), tasks run
 * exactly once, handles, the executor interface, locality hints, pinning,
 * blocking work, both shutdown modes and the statistics. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/core/topology.h>
#include <moirai/sched/sched.h>
#include <moirai/sync/event.h>
#include <moirai/sync/waitgroup.h>

#include "leak_check.h"
#include "oom.h"
#include "sched_test_util.h"
#include "test_scale.h"

static moirai_sched_t *make(const moirai_sched_config_t *cfg)
{
    moirai_sched_t *s = NULL;
    cr_assert_eq(moirai_sched_create(&s, cfg), 0);
    cr_assert_not_null(s);
    return s;
}

/* ---- counting tasks ---- */

typedef struct counted {
    _Atomic unsigned char *hits;
    moirai_waitgroup_t wg;
} counted_t;

typedef struct hit_arg {
    counted_t *c;
    size_t index;
} hit_arg_t;

static int hit_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    hit_arg_t *h = arg;
    atomic_fetch_add_explicit(&h->c->hits[h->index], 1, memory_order_relaxed);
    moirai_waitgroup_done(&h->c->wg);
    return 0;
}

static void check_once(_Atomic unsigned char *hits, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(atomic_load(&hits[i]), 1, "task %zu ran %d times", i,
                     (int)atomic_load(&hits[i]));
}

/* Spawns n counted tasks from outside and waits for them. */
static void run_counted(moirai_sched_t *s, size_t n, const moirai_task_attr_t *attr)
{
    counted_t c;
    c.hits = calloc(n, 1);
    hit_arg_t *args = calloc(n, sizeof *args);
    cr_assert(c.hits != NULL && args != NULL);
    moirai_waitgroup_init(&c.wg);
    cr_assert_eq(moirai_waitgroup_add(&c.wg, (int32_t)n), 0);
    for (size_t i = 0; i < n; i++) {
        args[i] = (hit_arg_t){&c, i};
        cr_assert_eq(moirai_sched_spawn(s, hit_task, &args[i], attr, NULL), 0);
    }
    moirai_waitgroup_wait(&c.wg);
    check_once(c.hits, n);
    free(args);
    free(c.hits);
}

/* ---- creation ---- */

LEAK_CHECKED_TEST(sched, create_destroy_defaults, .timeout = 30)
{
    moirai_sched_t *s = make(NULL);
    cr_assert_eq(moirai_sched_worker_count(s), moirai_topology_cpu_count());
    cr_assert_null(moirai_sched_current());
    cr_assert_eq(moirai_sched_worker_index(), -1);
    cr_assert_eq(moirai_sched_executor(s), moirai_sched_executor(s));
    cr_assert_not_null(moirai_sched_executor(s));
    drop_sched(s);

    moirai_sched_config_t cfg = MOIRAI_SCHED_CONFIG_INIT, init;
    memset(&init, 0xa5, sizeof init);
    moirai_sched_config_init(&init);
    cr_assert_eq(init.workers, cfg.workers);
    cr_assert_eq(init.steal, cfg.steal);
    cr_assert_eq(init.steal_one, cfg.steal_one);
    cr_assert_eq(init.no_lifo_slot, cfg.no_lifo_slot);
    cr_assert_eq(init.pin_workers, cfg.pin_workers);
    cr_assert_eq(init.spin_ns, cfg.spin_ns);
    cr_assert_eq(init.aging_ns, cfg.aging_ns);
    cr_assert_eq(init.stack_size, cfg.stack_size);
    cr_assert_null(init.task_cpu);
    cr_assert_null(init.task_cpu_arg);
    cr_assert_eq(init.blocking_max_threads, cfg.blocking_max_threads);
    cr_assert_eq(init.blocking_keepalive_ns, cfg.blocking_keepalive_ns);
    moirai_sched_config_init(NULL);
    /* Zero means default in every field: the initialiser is all zero. */
    moirai_sched_config_t zero;
    memset(&zero, 0, sizeof zero);
    cr_assert_eq(memcmp(&zero, &init, sizeof zero), 0);
}

/* The ranges of spin_ns and aging_ns: above them -EINVAL (never clamped),
 * their named values and their maxima accepted. */
LEAK_CHECKED_TEST(sched, spin_and_aging_ranges, .timeout = 60)
{
    moirai_sched_config_t cfg;
    moirai_sched_t *s = NULL;
    moirai_sched_config_init(&cfg);
    cfg.workers = 1;
    cfg.spin_ns = MOIRAI_NS_PER_S + 1;
    cr_assert_eq(moirai_sched_create(&s, &cfg), -EINVAL);
    cfg.spin_ns = 0;
    cfg.aging_ns = 60 * MOIRAI_NS_PER_S + 1;
    cr_assert_eq(moirai_sched_create(&s, &cfg), -EINVAL);
    cr_assert_null(s);
    uint64_t spins[] = {MOIRAI_NS_PER_S, MOIRAI_SCHED_NO_SPIN};
    uint64_t agings[] = {60 * MOIRAI_NS_PER_S, MOIRAI_SCHED_STRICT_PRIORITIES};
    for (int i = 0; i < 2; i++) {
        cfg.spin_ns = spins[i];
        cfg.aging_ns = agings[i];
        s = make(&cfg);
        run_counted(s, 100, NULL);
        drop_sched(s);
    }
}

static void odd_config(moirai_sched_config_t *cfg)
{
    moirai_sched_t *s = make(cfg);
    cr_assert_eq(moirai_sched_worker_count(s), cfg->workers);
    run_counted(s, (size_t)scaled(2000), NULL);
    drop_sched(s);
}

LEAK_CHECKED_TEST(sched, odd_configurations, .timeout = 120)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 1;
    odd_config(&cfg);
    cfg.workers = 3; /* more workers than this machine's CPUs */
    odd_config(&cfg);
    cfg.no_lifo_slot = true;
    odd_config(&cfg);
    cfg.steal_one = true;
    odd_config(&cfg);
    cfg.steal = MOIRAI_STEAL_RANDOM;
    odd_config(&cfg);
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    cfg.pin_workers = true;
    cfg.spin_ns = MOIRAI_SCHED_NO_SPIN;
    cfg.aging_ns = MOIRAI_SCHED_STRICT_PRIORITIES;
    cfg.stack_size = 256 * 1024;
    cfg.blocking_max_threads = 1;
    odd_config(&cfg);
}

/* A worker thread that cannot be created: glibc accepts a stack of half
 * the address space in the attributes, and pthread_create then fails with
 * EAGAIN because it cannot be mapped. create reports -EAGAIN, stops and
 * joins the workers it had started, and leaves nothing behind. */
LEAK_CHECKED_TEST(sched, create_eagain_when_a_worker_cannot_start, .timeout = 30)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    cfg.stack_size = SIZE_MAX / 2;
    moirai_sched_t *s = (moirai_sched_t *)&cfg; /* must stay untouched */
    moirai_sched_t *const before = s;
    cr_assert_eq(moirai_sched_create(&s, &cfg), -EAGAIN);
    cr_assert_eq(s, before);
    /* The failure left nothing that stops the next scheduler working. */
    s = make_sched(2);
    cr_assert_eq(run_in_task(s, noop_task, NULL), 0);
    drop_sched(s);
}

LEAK_CHECKED_TEST(sched, einval, .timeout = 30)
{
    moirai_sched_config_t cfg;
    moirai_sched_t *s = (moirai_sched_t *)&cfg; /* must stay untouched */
    moirai_sched_t *const before = s;
    cr_assert_eq(moirai_sched_create(NULL, NULL), -EINVAL);
    moirai_sched_config_init(&cfg);
    cfg.workers = -1;
    cr_assert_eq(moirai_sched_create(&s, &cfg), -EINVAL);
    cfg.workers = 1025;
    cr_assert_eq(moirai_sched_create(&s, &cfg), -EINVAL);
    moirai_sched_config_init(&cfg);
    cfg.steal = (moirai_steal_strategy_t)7;
    cr_assert_eq(moirai_sched_create(&s, &cfg), -EINVAL);
    moirai_sched_config_init(&cfg);
    cfg.blocking_max_threads = -1;
    cr_assert_eq(moirai_sched_create(&s, &cfg), -EINVAL);
    cr_assert_eq(s, before);

    s = make_sched(2);
    cr_assert_eq(moirai_sched_destroy(NULL, MOIRAI_SHUTDOWN_DRAIN), -EINVAL);
    cr_assert_eq(moirai_sched_destroy(s, (moirai_shutdown_t)5), -EINVAL);
    cr_assert_eq(moirai_sched_spawn(NULL, hit_task, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_sched_spawn(s, NULL, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_sched_spawn_blocking(NULL, hit_task, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_sched_spawn_blocking(s, NULL, NULL, NULL, NULL), -EINVAL);
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    attr.priority = (moirai_priority_t)9;
    cr_assert_eq(moirai_sched_spawn(s, hit_task, NULL, &attr, NULL), -EINVAL);
    attr.priority = MOIRAI_PRIORITY_NORMAL;
    attr.locality = MOIRAI_LOCALITY_CPU;
    attr.locality_index = 1 << 20;
    cr_assert_eq(moirai_sched_spawn(s, hit_task, NULL, &attr, NULL), -EINVAL);
    cr_assert_null(moirai_sched_executor(NULL));
    cr_assert_eq(moirai_sched_worker_count(NULL), -EINVAL);

    moirai_sched_worker_stats_t st;
    cr_assert_eq(moirai_sched_worker_stats(NULL, 0, &st), -EINVAL);
    cr_assert_eq(moirai_sched_worker_stats(s, -1, &st), -EINVAL);
    cr_assert_eq(moirai_sched_worker_stats(s, 2, &st), -EINVAL);
    cr_assert_eq(moirai_sched_worker_stats(s, 0, NULL), -EINVAL);
    cr_assert_eq(moirai_sched_stats(NULL, &st), -EINVAL);
    cr_assert_eq(moirai_sched_stats(s, NULL), -EINVAL);
    int order[4];
    cr_assert_eq(moirai_sched_victims(NULL, 0, order, NULL, 4), -EINVAL);
    cr_assert_eq(moirai_sched_victims(s, 2, order, NULL, 4), -EINVAL);
    cr_assert_eq(moirai_sched_victims(s, -1, order, NULL, 4), -EINVAL);
    cr_assert_eq(moirai_sched_victims(s, 0, NULL, NULL, 4), -EINVAL);
    cr_assert_eq(moirai_sched_victims(s, 0, order, NULL, -1), -EINVAL);
    drop_sched(s);
}

LEAK_CHECKED_TEST(sched, victims, .timeout = 30)
{
    moirai_sched_t *s = make_sched(4);
    for (int w = 0; w < 4; w++) {
        int order[8], tiers[8];
        cr_assert_eq(moirai_sched_victims(s, w, order, tiers, 8), 3);
        int seen = 0;
        for (int i = 0; i < 3; i++) {
            cr_assert(order[i] >= 0 && order[i] < 4 && order[i] != w);
            cr_assert_eq(seen & (1 << order[i]), 0, "victim listed twice");
            seen |= 1 << order[i];
            cr_assert(tiers[i] >= 0 && tiers[i] <= 2);
            if (i > 0)
                cr_assert_geq(tiers[i], tiers[i - 1], "tiers out of order");
        }
        cr_assert_eq(moirai_sched_victims(s, w, order, NULL, 2), 2);
        cr_assert_eq(moirai_sched_victims(s, w, NULL, NULL, 0), 0);
    }
    drop_sched(s);
}

/* ---- out of memory ---- */

typedef struct create_ctx {
    moirai_sched_config_t cfg;
    moirai_sched_t *s;
} create_ctx_t;

static int create_op(void *p)
{
    create_ctx_t *c = p;
    return moirai_sched_create(&c->s, &c->cfg);
}

static void create_unchanged(void *p, long n)
{
    (void)n;
    create_ctx_t *c = p;
    cr_assert_null(c->s, "a failed create stored a scheduler");
}

LEAK_CHECKED_TEST(sched, oom_sweep_create, .timeout = 300)
{
    create_ctx_t c = {.s = NULL};
    moirai_sched_config_init(&c.cfg);
    c.cfg.workers = 2;
    /* The topology is loaded once per process, on first use; load it now
     * so that the sweep fails the scheduler's own allocations. */
    cr_assert_gt(moirai_topology_cpu_count(), 0);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(create_op, create_unchanged, &c);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0);
    cr_assert_not_null(c.s);
    run_counted(c.s, 100, NULL);
    drop_sched(c.s);
}

/* With the topology not read yet, a create whose reading of it fails for
 * memory returns -ENOMEM and stores nothing, instead of a scheduler of
 * one worker; the next create reads it and sizes itself by it. Criterion
 * runs each test in a fresh process, so no query has read it yet. */
LEAK_CHECKED_TEST(sched, create_surfaces_a_topology_read_failure,
                  .init = moirai_test_live_unchecked, .timeout = 60)
{
    moirai_sched_t *s = NULL;
    moirai_test_oom_install();
    moirai_test_oom_fail_at(0);
    int rc = moirai_sched_create(&s, NULL);
    moirai_test_oom_uninstall();
    cr_assert_eq(rc, -ENOMEM);
    cr_assert_null(s);
    cr_assert_eq(moirai_sched_create(&s, NULL), 0);
    cr_assert_eq(moirai_sched_worker_count(s), moirai_topology_cpu_count());
    drop_sched(s);
}

typedef struct spawn_ctx {
    moirai_sched_t *s;
    moirai_handle_t *h;
    _Atomic int runs;
    moirai_task_attr_t attr;
} spawn_ctx_t;

static int value_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    spawn_ctx_t *c = arg;
    atomic_fetch_add(&c->runs, 1);
    *result = c;
    return 0;
}

static int spawn_op(void *p)
{
    spawn_ctx_t *c = p;
    return moirai_sched_spawn(c->s, value_task, c, &c->attr, c->h);
}

static void spawn_unchanged(void *p, long n)
{
    (void)n;
    spawn_ctx_t *c = p;
    cr_assert_eq(atomic_load(&c->runs), 0, "a failed spawn ran its task");
    cr_assert_eq(moirai_handle_try_join(c->h, NULL), -EAGAIN, "a failed spawn touched the handle");
}

/* Each spawn runs on a fresh thread, whose caches (the task pool's, RCU's
 * registration) are empty, so that the spawn has to allocate. */
static void *oom_spawn_thread(void *p)
{
    spawn_ctx_t *c = p;
    long failures = MOIRAI_TEST_OOM_SWEEP(spawn_op, spawn_unchanged, c);
    return (void *)(intptr_t)failures;
}

static void oom_spawn_case(moirai_sched_t *s, const moirai_task_attr_t *attr)
{
    spawn_ctx_t c = {.s = s};
    c.attr = *attr;
    cr_assert_eq(moirai_handle_create(&c.h), 0);
    pthread_t t;
    void *failures;
    moirai_test_oom_install();
    cr_assert_eq(pthread_create(&t, NULL, oom_spawn_thread, &c), 0);
    pthread_join(t, &failures);
    moirai_test_oom_uninstall();
    cr_assert_gt((intptr_t)failures, 0, "the spawn never allocated");
    void *value = NULL;
    cr_assert_eq(moirai_handle_join(c.h, &value), 0);
    cr_assert_eq(value, &c);
    cr_assert_eq(atomic_load(&c.runs), 1);
    moirai_handle_release(c.h);
}

LEAK_CHECKED_TEST(sched, oom_sweep_spawn, .timeout = 300)
{
    moirai_sched_t *s = make_sched(2);
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    oom_spawn_case(s, &attr);
    attr.priority = MOIRAI_PRIORITY_LOW;
    oom_spawn_case(s, &attr);
    attr.priority = MOIRAI_PRIORITY_NORMAL;
    attr.locality = MOIRAI_LOCALITY_NODE;
    attr.locality_index = 0;
    oom_spawn_case(s, &attr);
    /* Still works. */
    run_counted(s, 1000, NULL);
    drop_sched(s);
}

/* ---- every task exactly once ---- */

LEAK_CHECKED_TEST(sched, fifty_thousand_external_tasks_once, .timeout = 120)
{
    moirai_sched_t *s = make_sched(2);
    size_t n = (size_t)scaled(50000);
    run_counted(s, n, NULL);
    moirai_sched_worker_stats_t st, sum = {0};
    cr_assert_eq(moirai_sched_stats(s, &st), 0);
    cr_assert_geq(st.executed, n);
    cr_assert_leq(st.steals, st.steal_attempts);
    cr_assert_geq(st.stolen, st.steals);
    for (int w = 0; w < 2; w++) {
        moirai_sched_worker_stats_t one;
        cr_assert_eq(moirai_sched_worker_stats(s, w, &one), 0);
        sum.executed += one.executed;
        sum.spawned += one.spawned;
        sum.steal_attempts += one.steal_attempts;
        sum.steals += one.steals;
    }
    /* The pool is idle: the snapshot is exact. */
    cr_assert_eq(sum.executed, st.executed);
    cr_assert_eq(sum.spawned, st.spawned);
    cr_assert_eq(sum.steals, st.steals);
    cr_assert_eq(sum.steal_attempts, st.steal_attempts);
    drop_sched(s);
}

/* A fan-out tree: each node spawns its two halves from inside a task. */
typedef struct tree {
    counted_t *c;
    size_t lo, hi;
} tree_t;

static int tree_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    tree_t *t = arg;
    if (t->hi - t->lo == 1) {
        atomic_fetch_add_explicit(&t->c->hits[t->lo], 1, memory_order_relaxed);
        moirai_waitgroup_done(&t->c->wg);
        free(t);
        return 0;
    }
    size_t mid = t->lo + (t->hi - t->lo) / 2;
    tree_t *l = malloc(sizeof *l), *r = malloc(sizeof *r);
    cr_assert(l != NULL && r != NULL);
    *l = (tree_t){t->c, t->lo, mid};
    *r = (tree_t){t->c, mid, t->hi};
    cr_assert_eq(moirai_sched_spawn(moirai_sched_current(), tree_task, l, NULL, NULL), 0);
    cr_assert_eq(moirai_sched_spawn(moirai_sched_current(), tree_task, r, NULL, NULL), 0);
    free(t);
    return 0;
}

static void fan_out(const moirai_sched_config_t *cfg)
{
    moirai_sched_t *s = make(cfg);
    size_t n = (size_t)scaled(50000);
    counted_t c;
    c.hits = calloc(n, 1);
    cr_assert_not_null(c.hits);
    moirai_waitgroup_init(&c.wg);
    cr_assert_eq(moirai_waitgroup_add(&c.wg, (int32_t)n), 0);
    tree_t *root = malloc(sizeof *root);
    *root = (tree_t){&c, 0, n};
    cr_assert_eq(moirai_sched_spawn(s, tree_task, root, NULL, NULL), 0);
    moirai_waitgroup_wait(&c.wg);
    check_once(c.hits, n);
    drop_sched(s);
    free(c.hits);
}

LEAK_CHECKED_TEST(sched, fan_out_tree_from_tasks_once, .timeout = 120)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    fan_out(&cfg);
    cfg.no_lifo_slot = true;
    cfg.steal_one = true;
    fan_out(&cfg);
    moirai_sched_config_init(&cfg);
    cfg.workers = 4;
    cfg.steal = MOIRAI_STEAL_RANDOM;
    fan_out(&cfg);
}

/* ---- handles ---- */

static int fail_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    return -EIO;
}

LEAK_CHECKED_TEST(sched, handles, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    spawn_ctx_t c = {.s = s};
    moirai_handle_t *h;
    void *value = NULL;

    /* The value reaches the joiner. */
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_sched_spawn(s, value_task, &c, NULL, h), 0);
    cr_assert_eq(moirai_handle_join(h, &value), 0);
    cr_assert_eq(value, &c);
    /* A handle serves one task. */
    cr_assert_eq(moirai_sched_spawn(s, value_task, &c, NULL, h), -EINVAL);
    moirai_handle_release(h);
    cr_assert_eq(atomic_load(&c.runs), 1);

    /* The task's error reaches the joiner. */
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_sched_spawn(s, fail_task, NULL, NULL, h), 0);
    cr_assert_eq(moirai_handle_join(h, &value), -EIO);
    cr_assert_null(value);
    moirai_handle_release(h);

    /* Cancelled before it starts: never runs. The only worker is held. */
    hold_t hold;
    hold_worker(s, &hold);
    moirai_handle_t *hs[3];
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(moirai_handle_create(&hs[i]), 0);
        attr.priority = i == 0 ? MOIRAI_PRIORITY_NORMAL : MOIRAI_PRIORITY_HIGH;
        attr.locality = i == 2 ? MOIRAI_LOCALITY_NODE : MOIRAI_LOCALITY_ANY;
        attr.locality_index = i == 2 ? 0 : -1;
        cr_assert_eq(moirai_sched_spawn(s, value_task, &c, &attr, hs[i]), 0);
        cr_assert_eq(moirai_handle_cancel(hs[i]), 0);
    }
    release_worker(&hold);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(moirai_handle_join(hs[i], &value), -ECANCELED);
        moirai_handle_release(hs[i]);
    }
    /* The caller may drop its reference at once. */
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_sched_spawn(s, value_task, &c, NULL, h), 0);
    moirai_handle_release(h);
    drop_sched(s);
    cr_assert_eq(atomic_load(&c.runs), 2, "a cancelled task ran");
}

LEAK_CHECKED_TEST(sched, executor_interface, .timeout = 30)
{
    moirai_sched_t *s = make_sched(2);
    moirai_executor_t *ex = moirai_sched_executor(s);
    spawn_ctx_t c = {.s = s};
    moirai_handle_t *h;
    void *value = NULL;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_executor_spawn(ex, value_task, &c, NULL, h), 0);
    cr_assert_eq(moirai_handle_join(h, &value), 0);
    cr_assert_eq(value, &c);
    moirai_handle_release(h);
    cr_assert_eq(moirai_executor_spawn(ex, NULL, NULL, NULL, NULL), -EINVAL);
    drop_sched(s);
    cr_assert_eq(atomic_load(&c.runs), 1);
}

/* ---- locality and pinning ---- */

LEAK_CHECKED_TEST(sched, locality_hints_run_once, .timeout = 120)
{
    int workers[] = {1, 2, 3};
    for (int k = 0; k < 3; k++) {
        moirai_sched_t *s = make_sched(workers[k]);
        moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
        for (int i = 0; i < moirai_topology_cpu_count(); i++) {
            moirai_cpu_info_t info;
            cr_assert_eq(moirai_topology_cpu_at(i, &info), 0);
            attr.locality = MOIRAI_LOCALITY_CPU;
            attr.locality_index = info.cpu;
            run_counted(s, (size_t)scaled(1000), &attr);
        }
        for (int node = 0; node < moirai_topology_node_count(); node++) {
            attr.locality = MOIRAI_LOCALITY_NODE;
            attr.locality_index = node;
            attr.priority = MOIRAI_PRIORITY_LOW; /* ignored for inboxes */
            run_counted(s, (size_t)scaled(1000), &attr);
        }
        drop_sched(s);
    }
}

static _Atomic int pin_wrong, pin_checked;

static int pin_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    moirai_cpu_info_t info;
    int index = moirai_sched_worker_index();
    cr_assert_geq(index, 0);
    cr_assert_eq(moirai_topology_cpu_at(index % moirai_topology_cpu_count(), &info), 0);
    if (sched_getcpu() != info.cpu)
        atomic_fetch_add(&pin_wrong, 1);
    atomic_fetch_add(&pin_checked, 1);
    return 0;
}

LEAK_CHECKED_TEST(sched, pinned_workers_run_on_their_cpu, .timeout = 60)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.pin_workers = true;
    moirai_sched_t *s = make(&cfg);
    int n = (int)scaled(2000);
    for (int i = 0; i < n; i++)
        cr_assert_eq(moirai_sched_spawn(s, pin_task, NULL, NULL, NULL), 0);
    drop_sched(s);
    cr_assert_eq(atomic_load(&pin_checked), n);
    cr_assert_eq(atomic_load(&pin_wrong), 0, "a pinned worker ran on another CPU");
}

/* ---- blocking work ---- */

LEAK_CHECKED_TEST(sched, spawn_blocking_runs, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    spawn_ctx_t c = {.s = s};
    moirai_handle_t *h[8];
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(moirai_handle_create(&h[i]), 0);
        cr_assert_eq(moirai_sched_spawn_blocking(s, value_task, &c, NULL, h[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        void *value = NULL;
        cr_assert_eq(moirai_handle_join(h[i], &value), 0);
        cr_assert_eq(value, &c);
        moirai_handle_release(h[i]);
    }
    cr_assert_eq(atomic_load(&c.runs), 8);
    drop_sched(s);
}

/* ---- shutdown ---- */

typedef struct child_ctx {
    _Atomic long runs;
} child_ctx_t;

static int count_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    atomic_fetch_add(&((child_ctx_t *)arg)->runs, 1);
    return 0;
}

/* Spawns a child from inside the pool, then counts itself. */
static int parent_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    cr_assert_eq(moirai_sched_spawn(moirai_sched_current(), count_task, arg, NULL, NULL), 0);
    return count_task(arg, cancel, result);
}

typedef struct opener {
    moirai_sched_t *sched;
    hold_t *hold;
    int probe_rc;
} opener_t;

/* Waits until destroy has begun (an external spawn is refused), checks
 * that refusal, and releases the held worker. */
static void *opener_thread(void *p)
{
    opener_t *o = p;
    child_ctx_t dummy = {0};
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    for (;;) {
        /* The held worker cannot run what is accepted before destroy
         * begins, but destroy (DRAIN) runs it later; CANCEL discards it. */
        int rc = moirai_sched_spawn(o->sched, count_task, &dummy, NULL, NULL);
        if (rc != 0) {
            o->probe_rc = rc;
            break;
        }
        cr_assert(!moirai_deadline_expired(deadline), "destroy never began");
        sched_yield();
    }
    release_worker(o->hold);
    return NULL;
}

LEAK_CHECKED_TEST(sched, destroy_drain_runs_everything_pending, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    hold_t hold;
    hold_worker(s, &hold);
    child_ctx_t c = {0};
    long n = scaled(2000);
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    for (long i = 0; i < n; i++) {
        attr.priority = (moirai_priority_t)(i % MOIRAI_PRIORITY_COUNT);
        cr_assert_eq(moirai_sched_spawn(s, parent_task, &c, &attr, NULL), 0);
    }
    opener_t o = {s, &hold, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, opener_thread, &o), 0);
    drop_sched(s);
    pthread_join(t, NULL);
    cr_assert_eq(o.probe_rc, -ESHUTDOWN);
    /* Every parent and every child it spawned during the drain. */
    cr_assert_eq(atomic_load(&c.runs), 2 * n);
}

LEAK_CHECKED_TEST(sched, destroy_cancel_discards_pending, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    hold_t hold;
    hold_worker(s, &hold);
    enum { N = 200 };
    spawn_ctx_t c = {.s = s};
    moirai_handle_t *h[N];
    for (int i = 0; i < N; i++) {
        cr_assert_eq(moirai_handle_create(&h[i]), 0);
        cr_assert_eq(moirai_sched_spawn(s, value_task, &c, NULL, h[i]), 0);
    }
    opener_t o = {s, &hold, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, opener_thread, &o), 0);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_CANCEL), 0);
    pthread_join(t, NULL);
    cr_assert_eq(o.probe_rc, -ESHUTDOWN);
    int ran = 0, cancelled = 0;
    for (int i = 0; i < N; i++) {
        void *value = NULL;
        int rc = moirai_handle_join(h[i], &value);
        if (rc == 0) {
            cr_assert_eq(value, &c);
            ran++;
        } else {
            cr_assert_eq(rc, -ECANCELED);
            cancelled++;
        }
        moirai_handle_release(h[i]);
    }
    cr_assert_eq(ran + cancelled, N);
    cr_assert_eq(ran, atomic_load(&c.runs));
    /* The worker was held until destroy had begun, so nothing queued
     * behind the held task ran. */
    cr_assert_eq(ran, 0);
}

static int destroy_self_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    return moirai_sched_destroy((moirai_sched_t *)arg, MOIRAI_SHUTDOWN_DRAIN);
}

LEAK_CHECKED_TEST(sched, destroy_from_worker_is_edeadlk, .timeout = 30)
{
    moirai_sched_t *s = make_sched(2);
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_sched_spawn(s, destroy_self_task, s, NULL, h), 0);
    cr_assert_eq(moirai_handle_join(h, NULL), -EDEADLK);
    moirai_handle_release(h);
    /* Nothing was stopped. */
    run_counted(s, 100, NULL);
    drop_sched(s);
}

/* After destroy has begun, external spawns (plain and blocking) and their
 * handles: refused with -ESHUTDOWN, the handle left as it was. */
typedef struct late {
    moirai_sched_t *sched;
    hold_t *hold;
    int spawn_rc, blocking_rc, reuse_rc;
    _Atomic int runs;
} late_t;

static int late_count(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    atomic_fetch_add(&((late_t *)arg)->runs, 1);
    return 0;
}

static void *late_thread(void *p)
{
    late_t *l = p;
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    /* Blocking spawns are accepted until destroy begins; they run at once
     * on the blocking pool, so each needs a fresh handle. */
    for (;;) {
        int rc = moirai_sched_spawn_blocking(l->sched, late_count, l, NULL, h);
        if (rc != 0) {
            l->blocking_rc = rc;
            break;
        }
        moirai_handle_release(h);
        cr_assert_eq(moirai_handle_create(&h), 0);
        cr_assert(!moirai_deadline_expired(deadline), "destroy never began");
        sched_yield();
    }
    l->spawn_rc = moirai_sched_spawn(l->sched, late_count, l, NULL, h);
    /* Refused spawns left the handle unused: it can still serve a task
     * (run here by the inline executor). */
    l->reuse_rc = moirai_executor_spawn(moirai_executor_inline(), late_count, l, NULL, h);
    cr_assert_eq(moirai_handle_join(h, NULL), 0);
    moirai_handle_release(h);
    release_worker(l->hold);
    return NULL;
}

LEAK_CHECKED_TEST(sched, eshutdown_once_destroy_began, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    hold_t hold;
    hold_worker(s, &hold);
    late_t l = {.sched = s, .hold = &hold};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, late_thread, &l), 0);
    drop_sched(s);
    pthread_join(t, NULL);
    cr_assert_eq(l.blocking_rc, -ESHUTDOWN);
    cr_assert_eq(l.spawn_rc, -ESHUTDOWN);
    cr_assert_eq(l.reuse_rc, 0);
}

/* ---- per-task CPU time ---- */

typedef struct cpu_ctx {
    _Atomic long calls;
    _Atomic long named;
} cpu_ctx_t;

static void on_task_cpu(void *ctx, const char *name, moirai_task_id_t id, uint64_t cpu_ns)
{
    (void)cpu_ns;
    cpu_ctx_t *c = ctx;
    cr_assert_neq(id, MOIRAI_TASK_ID_NONE);
    atomic_fetch_add(&c->calls, 1);
    if (name != NULL && strcmp(name, "timed") == 0)
        atomic_fetch_add(&c->named, 1);
}

LEAK_CHECKED_TEST(sched, task_cpu_callback_once_per_task, .timeout = 60)
{
    cpu_ctx_t c = {0};
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    cfg.task_cpu = on_task_cpu;
    cfg.task_cpu_arg = &c;
    moirai_sched_t *s = make(&cfg);
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    attr.name = "timed";
    long n = scaled(1000);
    run_counted(s, (size_t)n, &attr);
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    spawn_ctx_t v = {.s = s};
    cr_assert_eq(moirai_sched_spawn(s, value_task, &v, NULL, h), 0);
    cr_assert_eq(moirai_handle_join(h, NULL), 0);
    moirai_handle_release(h);
    drop_sched(s);
    cr_assert_eq(atomic_load(&c.calls), n + 1);
    cr_assert_eq(atomic_load(&c.named), n);
}

LEAK_CHECKED_TEST(sched, no_task_cpu_without_callback, .timeout = 30)
{
    moirai_sched_t *s = make_sched(2);
    run_counted(s, 100, NULL);
    moirai_sched_worker_stats_t st;
    cr_assert_eq(moirai_sched_stats(s, &st), 0);
    cr_assert_eq(st.task_cpu_ns, 0);
    drop_sched(s);
}

/* A task whose start deadline passes while it waits behind another on the
 * only worker fails with -ETIMEDOUT and never runs; one queued beside it
 * without a deadline still runs. Deterministic: the blocker is released
 * only once the clock is past the deadline. */
static int gate_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    moirai_event_wait((moirai_event_t *)arg);
    return 0;
}

LEAK_CHECKED_TEST(sched, start_deadline_passed_while_queued, .timeout = 60)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 1;
    moirai_sched_t *s = make(&cfg);
    moirai_event_t gate = MOIRAI_EVENT_INIT_MANUAL;
    cr_assert_eq(moirai_sched_spawn(s, gate_task, &gate, NULL, NULL), 0);
    child_ctx_t late = {0}, free_ = {0};
    moirai_handle_t *hl, *hf;
    cr_assert_eq(moirai_handle_create(&hl), 0);
    cr_assert_eq(moirai_handle_create(&hf), 0);
    moirai_task_attr_t attr;
    moirai_task_attr_init(&attr);
    attr.deadline = moirai_deadline_after(MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_sched_spawn(s, count_task, &late, &attr, hl), 0);
    cr_assert_eq(moirai_sched_spawn(s, count_task, &free_, NULL, hf), 0);
    while (moirai_clock_now_ns() <= attr.deadline)
        sched_yield();
    moirai_event_set(&gate);
    cr_assert_eq(moirai_handle_join(hl, NULL), -ETIMEDOUT);
    cr_assert_eq(moirai_handle_join(hf, NULL), 0);
    cr_assert_eq(atomic_load(&late.runs), 0);
    cr_assert_eq(atomic_load(&free_.runs), 1);
    moirai_handle_release(hl);
    moirai_handle_release(hf);
    drop_sched(s);
}
