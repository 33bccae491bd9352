/* Long mixed runs of the scheduler (suite 'stress'): every task runs
 * exactly once under load from several directions at once, and shutdown
 * with pending work keeps its promises in both modes across many pool
 * shapes.
 *
 * Parameters (environment; counts divided by MOIRAI_TEST_SCALE, which is 10
 * under sanitizers):
 *   MOIRAI_SCHED_STRESS_TREES   task trees per external spawner (default
 *                               2000 of depth 4, or 16 of depth 11)
 *   MOIRAI_SCHED_STRESS_DEPTH   depth of each binary tree
 *   MOIRAI_SCHED_STRESS_CYCLES  create/destroy cycles            (default 64;
 *                               a quarter of it with every worker held)
 *   MOIRAI_SCHED_STRESS_ROOTS   tasks pending at each destroy    (default 2000)
 *
 * Tasks never call Criterion's asserts (they run on worker threads); they
 * count what they did and what went wrong, and the test thread checks. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/sched/join.h>
#include <moirai/sched/sched.h>
#include <moirai/sync/event.h>
#include <moirai/sync/waitgroup.h>

#include "leak_check.h"
#include "test_scale.h"

/* Bound on every wait: a lost task fails the test instead of hanging it. */
#define WAIT_NS (120 * MOIRAI_NS_PER_S)

static long param(const char *name, long def)
{
    long v = env_long(name, def) / env_long("MOIRAI_TEST_SCALE", 1);
    return v > 0 ? v : 1;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / MOIRAI_NS_PER_S), (long)(ns % MOIRAI_NS_PER_S)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* A little work, so that tasks overlap and queues fill. */
static void busy(unsigned n)
{
    for (volatile unsigned i = 0; i < n; i++)
        ;
}

/* ==== Mixed load ====
 *
 * Two external threads each spawn TREES binary trees of tasks, every
 * other root with a handle they join themselves, the rest detached at
 * varying priorities; every 8th tree they also run a join from outside.
 * Each tree node counts itself, spawns its two children (detached, at
 * varying priorities, so some go to the worker's own deque and some to the
 * injector) and runs a moirai_join() whose two halves count themselves.
 * Every counter must end at exactly 1. */

enum { SLOT_TASK, SLOT_HALF_A, SLOT_HALF_B, SLOTS_PER_NODE };

typedef struct mixed {
    moirai_sched_t *sched;
    int depth;
    long nodes_per_tree; /* 2^(depth+1) - 1 */
    long trees;          /* per spawner */
    long spawners;
    _Atomic int *slots;    /* SLOTS_PER_NODE per node of every tree */
    _Atomic int *external; /* two per tree: the halves of the external joins */
    moirai_waitgroup_t wg; /* one per task not yet finished */
    _Atomic long errors;
    _Atomic long bad_results;
} mixed_t;

static mixed_t mx;

static int node_depth(long node)
{
    int d = 0;
    for (long n = node + 1; n > 1; n >>= 1)
        d++;
    return d;
}

static void half_count(void *arg)
{
    _Atomic int *slot = arg;
    /* Relaxed: counters only; the test reads them after the waitgroup,
     * whose done/wait pair orders everything before it. */
    atomic_fetch_add_explicit(slot, 1, memory_order_relaxed);
    busy(200);
}

static int node_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    long g = (long)(uintptr_t)arg;
    long tree = g / mx.nodes_per_tree;
    long node = g % mx.nodes_per_tree;
    _Atomic int *slot = &mx.slots[g * SLOTS_PER_NODE];
    atomic_fetch_add_explicit(&slot[SLOT_TASK], 1, memory_order_relaxed);
    busy(500);
    if (node_depth(node) < mx.depth) {
        for (long k = 1; k <= 2; k++) {
            long child = tree * mx.nodes_per_tree + node * 2 + k;
            /* Three in four children stay on this worker (NORMAL, for
             * thieves to take); the others go to the injector at another
             * level. */
            moirai_task_attr_t a = MOIRAI_TASK_ATTR_INIT;
            a.priority = (moirai_priority_t)((child / 4) % MOIRAI_PRIORITY_COUNT);
            moirai_waitgroup_add(&mx.wg, 1);
            if (moirai_sched_spawn(mx.sched, node_task, (void *)(uintptr_t)child,
                                   (child % 4 == 0) ? &a : NULL, NULL) != 0) {
                atomic_fetch_add(&mx.errors, 1);
                moirai_waitgroup_done(&mx.wg);
            }
        }
    }
    if (moirai_join(NULL, half_count, &slot[SLOT_HALF_A], half_count, &slot[SLOT_HALF_B]) != 0)
        atomic_fetch_add(&mx.errors, 1);
    *result = (void *)(uintptr_t)(g + 1);
    moirai_waitgroup_done(&mx.wg);
    return 0;
}

static void *mixed_spawner(void *arg)
{
    long sp = (long)(intptr_t)arg;
    moirai_handle_t **handles = calloc((size_t)mx.trees, sizeof(*handles));
    if (handles == NULL) {
        atomic_fetch_add(&mx.errors, 1);
        return NULL;
    }
    for (long t = 0; t < mx.trees; t++) {
        long tree = sp * mx.trees + t;
        long root = tree * mx.nodes_per_tree;
        moirai_task_attr_t a = MOIRAI_TASK_ATTR_INIT;
        a.priority = (moirai_priority_t)(t % MOIRAI_PRIORITY_COUNT);
        moirai_waitgroup_add(&mx.wg, 1);
        int rc;
        if (t % 2 == 0) {
            if (moirai_handle_create(&handles[t]) != 0) {
                atomic_fetch_add(&mx.errors, 1);
                moirai_waitgroup_done(&mx.wg);
                continue;
            }
            rc = moirai_sched_spawn(mx.sched, node_task, (void *)(uintptr_t)root, &a, handles[t]);
        } else {
            rc = moirai_sched_spawn(mx.sched, node_task, (void *)(uintptr_t)root, &a, NULL);
        }
        if (rc != 0) {
            atomic_fetch_add(&mx.errors, 1);
            moirai_waitgroup_done(&mx.wg);
        }
        if (t % 8 == 0 && moirai_join(mx.sched, half_count, &mx.external[tree * 2], half_count,
                                      &mx.external[tree * 2 + 1]) != 0)
            atomic_fetch_add(&mx.errors, 1);
    }
    for (long t = 0; t < mx.trees; t += 2) {
        if (handles[t] == NULL)
            continue;
        void *v = NULL;
        long root = (sp * mx.trees + t) * mx.nodes_per_tree;
        if (moirai_handle_join_timed(handles[t], moirai_deadline_after(WAIT_NS), &v) != 0 ||
            (uintptr_t)v != (uintptr_t)root + 1)
            atomic_fetch_add(&mx.bad_results, 1);
        moirai_handle_release(handles[t]);
    }
    free(handles);
    return NULL;
}

/* Runs the mixed load on a pool made with `cfg`: `trees` trees of depth
 * `depth` per spawner, unless the environment says otherwise. Many shallow
 * trees keep every worker fed from the injector; few deep ones leave the
 * workers to steal from each other. */
static void run_mixed(const moirai_sched_config_t *cfg, int depth, long trees)
{
    memset(&mx, 0, sizeof(mx));
    mx.depth = (int)env_long("MOIRAI_SCHED_STRESS_DEPTH", depth);
    cr_assert_lt(mx.depth, 20);
    mx.nodes_per_tree = (2L << mx.depth) - 1;
    mx.trees = param("MOIRAI_SCHED_STRESS_TREES", trees);
    mx.spawners = 2;
    long total_trees = mx.spawners * mx.trees;
    long total_tasks = total_trees * mx.nodes_per_tree;
    mx.slots = calloc((size_t)(total_tasks * SLOTS_PER_NODE), sizeof(*mx.slots));
    mx.external = calloc((size_t)(total_trees * 2), sizeof(*mx.external));
    cr_assert_not_null(mx.slots);
    cr_assert_not_null(mx.external);
    moirai_waitgroup_init(&mx.wg);
    cr_assert_eq(moirai_sched_create(&mx.sched, cfg), 0);

    pthread_t th[2];
    for (long i = 0; i < mx.spawners; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, mixed_spawner, (void *)(intptr_t)i), 0);
    for (long i = 0; i < mx.spawners; i++)
        cr_assert_eq(pthread_join(th[i], NULL), 0);
    cr_assert_eq(moirai_waitgroup_wait_timed(&mx.wg, moirai_deadline_after(WAIT_NS)), 0,
                 "%u tasks never finished", moirai_waitgroup_count(&mx.wg));
    cr_assert_eq(atomic_load(&mx.errors), 0);
    cr_assert_eq(atomic_load(&mx.bad_results), 0, "a handle did not deliver its root's result");

    long sums[SLOTS_PER_NODE] = {0};
    for (long g = 0; g < total_tasks; g++)
        for (int k = 0; k < SLOTS_PER_NODE; k++) {
            int v = atomic_load_explicit(&mx.slots[g * SLOTS_PER_NODE + k], memory_order_relaxed);
            cr_assert_eq(v, 1, "node %ld slot %d ran %d times", g, k, v);
            sums[k] += v;
        }
    for (long t = 0; t < total_trees; t++)
        for (int k = 0; k < 2; k++) {
            int v = atomic_load(&mx.external[t * 2 + k]);
            cr_assert_eq(v, (t % mx.trees) % 8 == 0 ? 1 : 0, "external join %ld half %d: %d", t, k,
                         v);
        }
    for (int k = 0; k < SLOTS_PER_NODE; k++)
        cr_assert_eq(sums[k], total_tasks);

    /* Statistics: exact once idle; a worker bumps its count just after a
     * task returns, so wait for the last ones to land. */
    moirai_sched_worker_stats_t st;
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    for (;;) {
        cr_assert_eq(moirai_sched_stats(mx.sched, &st), 0);
        if (st.executed >= (uint64_t)total_tasks)
            break;
        cr_assert(!moirai_deadline_expired(deadline), "stats.executed %llu < %ld tasks run",
                  (unsigned long long)st.executed, total_tasks);
        sleep_ns(MOIRAI_NS_PER_MS);
    }
    cr_log_info("mixed: %d workers, %ld tasks, %ld join halves; executed %llu, steals %llu/%llu "
                "(%llu jobs), parks %llu",
                moirai_sched_worker_count(mx.sched), total_tasks, 2 * total_tasks,
                (unsigned long long)st.executed, (unsigned long long)st.steals,
                (unsigned long long)st.steal_attempts, (unsigned long long)st.stolen,
                (unsigned long long)st.parks);
    cr_assert_eq(moirai_sched_destroy(mx.sched, MOIRAI_SHUTDOWN_DRAIN), 0);
    free(mx.slots);
    free(mx.external);
}

LEAK_CHECKED_TEST(sched_stress, mixed_load_two_workers, .timeout = 600)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    run_mixed(&cfg, 4, 2000);
}

LEAK_CHECKED_TEST(sched_stress, mixed_load_four_workers_random_no_batch, .timeout = 600)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 4;
    cfg.steal = MOIRAI_STEAL_RANDOM;
    cfg.steal_one = true;
    cfg.spin_ns = MOIRAI_SCHED_NO_SPIN;
    run_mixed(&cfg, 4, 2000);
}

LEAK_CHECKED_TEST(sched_stress, mixed_load_deep_trees_two_workers, .timeout = 600)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    run_mixed(&cfg, 11, 16);
}

LEAK_CHECKED_TEST(sched_stress, mixed_load_deep_trees_four_workers_no_lifo, .timeout = 600)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 4;
    cfg.no_lifo_slot = true;
    run_mixed(&cfg, 11, 16);
}

LEAK_CHECKED_TEST(sched_stress, mixed_load_one_worker_no_lifo, .timeout = 600)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 1;
    cfg.no_lifo_slot = true;
    cfg.aging_ns = MOIRAI_SCHED_STRICT_PRIORITIES;
    run_mixed(&cfg, 4, 2000);
}

LEAK_CHECKED_TEST(sched_stress, mixed_load_three_workers_no_lifo_no_batch, .timeout = 600)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 3;
    cfg.no_lifo_slot = true;
    cfg.steal_one = true;
    cfg.aging_ns = MOIRAI_NS_PER_MS;
    run_mixed(&cfg, 4, 2000);
}

/* ==== Shutdown with pending work ====
 *
 * Each cycle creates a pool of another shape, spawns ROOTS tasks from the
 * test thread and destroys the pool at once, DRAIN and CANCEL in turn.
 * Every third root has a handle. Every fourth spawns two children when it
 * runs (one NORMAL, which stays local, one HIGH, which goes to the
 * injector), each with a handle; every fifth runs a moirai_join().
 *
 * DRAIN: everything ran exactly once, children included, and every handle
 * holds its result. CANCEL: nothing ran twice; a handle reports -ECANCELED
 * exactly when its task did not run, and its result when it did; a root
 * that ran completed its join (both halves); spawns from running tasks
 * were accepted. After destroy every handle is finished. */

enum { C_ROOT, C_CHILD0, C_CHILD1, C_HALF_A, C_HALF_B, C_COUNTERS };

typedef struct cycle {
    moirai_sched_t *sched;
    long roots;
    _Atomic int *ran;                /* C_COUNTERS per root */
    moirai_handle_t **root_handles;  /* every third root */
    moirai_handle_t **child_handles; /* two per root, created by the root */
    int *child_rc;                   /* two per root: the spawn's result */
    _Atomic long roots_ran;
    _Atomic long errors;
} cycle_t;

static cycle_t cy;

static int cycle_child_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    long i = (long)(uintptr_t)arg; /* root * 2 + k */
    atomic_fetch_add_explicit(&cy.ran[(i / 2) * C_COUNTERS + C_CHILD0 + i % 2], 1,
                              memory_order_relaxed);
    busy(100);
    *result = (void *)(uintptr_t)(i + 1);
    return 0;
}

static int cycle_root_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    long r = (long)(uintptr_t)arg;
    _Atomic int *ran = &cy.ran[r * C_COUNTERS];
    atomic_fetch_add_explicit(&ran[C_ROOT], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&cy.roots_ran, 1, memory_order_relaxed);
    busy(20000);
    if (r % 4 == 0) {
        for (long k = 0; k < 2; k++) {
            long i = r * 2 + k;
            moirai_handle_t *h = NULL;
            if (moirai_handle_create(&h) != 0) {
                atomic_fetch_add(&cy.errors, 1);
                continue;
            }
            moirai_task_attr_t a = MOIRAI_TASK_ATTR_INIT;
            a.priority = k ? MOIRAI_PRIORITY_HIGH : MOIRAI_PRIORITY_NORMAL;
            /* The test reads these after destroy, which joins this thread. */
            cy.child_handles[i] = h;
            cy.child_rc[i] =
                moirai_sched_spawn(cy.sched, cycle_child_task, (void *)(uintptr_t)i, &a, h);
        }
    }
    if (r % 5 == 0 &&
        moirai_join(NULL, half_count, &ran[C_HALF_A], half_count, &ran[C_HALF_B]) != 0)
        atomic_fetch_add(&cy.errors, 1);
    *result = (void *)(uintptr_t)(r + 1);
    return 0;
}

/* Checks one handle against whether its task ran. Returns 1 when it
 * reported -ECANCELED. */
static int check_handle(moirai_handle_t *h, int ran, uintptr_t value, const char *what, long i)
{
    void *v = NULL;
    int rc = moirai_handle_try_join(h, &v);
    cr_assert_neq(rc, -EAGAIN, "%s %ld: handle still pending after destroy", what, i);
    if (ran) {
        cr_assert_eq(rc, 0, "%s %ld ran but its handle reports %d", what, i, rc);
        cr_assert_eq((uintptr_t)v, value);
        return 0;
    }
    cr_assert_eq(rc, -ECANCELED, "%s %ld never ran but its handle reports %d", what, i, rc);
    return 1;
}

static void run_cycle(int c)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 1 + c % 4;
    cfg.no_lifo_slot = (c / 4) % 2 != 0;
    cfg.steal_one = (c / 8) % 2 != 0;
    cfg.steal = c % 3 == 2 ? MOIRAI_STEAL_RANDOM : MOIRAI_STEAL_LOCALITY;
    cfg.spin_ns = c % 5 == 0 ? MOIRAI_SCHED_NO_SPIN : cfg.spin_ns;
    cfg.aging_ns = c % 7 == 0 ? MOIRAI_SCHED_STRICT_PRIORITIES : cfg.aging_ns;
    /* Both modes for every worker count. */
    moirai_shutdown_t how = (c + c / 4) % 2 ? MOIRAI_SHUTDOWN_CANCEL : MOIRAI_SHUTDOWN_DRAIN;

    long n = cy.roots;
    memset(cy.ran, 0, (size_t)n * C_COUNTERS * sizeof(*cy.ran));
    memset(cy.root_handles, 0, (size_t)n * sizeof(*cy.root_handles));
    memset(cy.child_handles, 0, (size_t)n * 2 * sizeof(*cy.child_handles));
    for (long i = 0; i < 2 * n; i++)
        cy.child_rc[i] = 1; /* "never spawned" */
    atomic_store(&cy.errors, 0);
    atomic_store(&cy.roots_ran, 0);
    cr_assert_eq(moirai_sched_create(&cy.sched, &cfg), 0);

    for (long r = 0; r < n; r++) {
        moirai_task_attr_t a = MOIRAI_TASK_ATTR_INIT;
        a.priority = (moirai_priority_t)((r / 3) % MOIRAI_PRIORITY_COUNT);
        if (r % 3 == 0)
            cr_assert_eq(moirai_handle_create(&cy.root_handles[r]), 0);
        cr_assert_eq(moirai_sched_spawn(cy.sched, cycle_root_task, (void *)(uintptr_t)r,
                                        (r % 2) ? &a : NULL, cy.root_handles[r]),
                     0);
    }
    /* Destroy at once, or once an eighth or half of the roots ran, so
     * that tasks are running (and spawning) while destroy begins. */
    long progress = (c / 2) % 3 == 0 ? 0 : (c / 2) % 3 == 1 ? n / 8 : n / 2;
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (atomic_load_explicit(&cy.roots_ran, memory_order_relaxed) < progress) {
        cr_assert(!moirai_deadline_expired(deadline), "cycle %d: roots never ran", c);
        sleep_ns(20 * MOIRAI_NS_PER_US);
    }
    cr_assert_eq(moirai_sched_destroy(cy.sched, how), 0);
    cy.sched = NULL;
    cr_assert_eq(atomic_load(&cy.errors), 0);

    long ran = 0, cancelled = 0, spawned = n, child_spawns = 0;
    for (long r = 0; r < n; r++) {
        _Atomic int *cnt = &cy.ran[r * C_COUNTERS];
        int root = atomic_load_explicit(&cnt[C_ROOT], memory_order_relaxed);
        cr_assert(root == 0 || root == 1, "cycle %d: root %ld ran %d times", c, r, root);
        if (how == MOIRAI_SHUTDOWN_DRAIN)
            cr_assert_eq(root, 1, "cycle %d (drain): root %ld never ran", c, r);
        ran += root;
        if (cy.root_handles[r] != NULL) {
            cancelled += check_handle(cy.root_handles[r], root, (uintptr_t)r + 1, "root", r);
            moirai_handle_release(cy.root_handles[r]);
        } else if (!root) {
            cancelled++;
        }

        /* A root's join completes whenever the root ran, even under CANCEL. */
        int want_halves = root && r % 5 == 0;
        for (int k = C_HALF_A; k <= C_HALF_B; k++)
            cr_assert_eq(atomic_load_explicit(&cnt[k], memory_order_relaxed), want_halves,
                         "cycle %d: root %ld join half %d ran %d times (root ran %d)", c, r,
                         k - C_HALF_A, atomic_load(&cnt[k]), root);

        for (int k = 0; k < 2; k++) {
            long i = r * 2 + k;
            int child = atomic_load_explicit(&cnt[C_CHILD0 + k], memory_order_relaxed);
            if (!root || r % 4 != 0) {
                cr_assert_eq(child, 0);
                cr_assert_null(cy.child_handles[i]);
                continue;
            }
            cr_assert_not_null(cy.child_handles[i]);
            cr_assert_eq(cy.child_rc[i], 0,
                         "cycle %d: a running task's spawn during destroy failed with %d", c,
                         cy.child_rc[i]);
            child_spawns++;
            spawned++;
            cr_assert(child == 0 || child == 1, "cycle %d: child %ld ran %d times", c, i, child);
            if (how == MOIRAI_SHUTDOWN_DRAIN)
                cr_assert_eq(child, 1, "cycle %d (drain): child %ld never ran", c, i);
            ran += child;
            cancelled += check_handle(cy.child_handles[i], child, (uintptr_t)i + 1, "child", i);
            moirai_handle_release(cy.child_handles[i]);
        }
    }
    /* Detached tasks that did not run are counted as cancelled above, so
     * this holds by construction for them; for handled ones it is what the
     * handles said. */
    cr_assert_eq(ran + cancelled, spawned);
    cr_assert_geq(ran, progress);
    if (how == MOIRAI_SHUTDOWN_DRAIN)
        cr_assert_eq(cancelled, 0);
    cr_log_info("cycle %d: %d workers, lifo %d, batch %d, %s, %s: %ld spawned (%ld by tasks), "
                "%ld ran, %ld cancelled",
                c, cfg.workers, !cfg.no_lifo_slot, !cfg.steal_one,
                cfg.steal == MOIRAI_STEAL_RANDOM ? "random" : "locality",
                how == MOIRAI_SHUTDOWN_DRAIN ? "drain" : "cancel", spawned, child_spawns, ran,
                cancelled);
}

LEAK_CHECKED_TEST(sched_stress, create_destroy_cycles_with_pending_work, .timeout = 600)
{
    memset(&cy, 0, sizeof(cy));
    cy.roots = param("MOIRAI_SCHED_STRESS_ROOTS", 2000);
    long cycles = env_long("MOIRAI_SCHED_STRESS_CYCLES", 64) / env_long("MOIRAI_TEST_SCALE", 1);
    if (cycles < 8)
        cycles = 8; /* every shape and both modes at least once */
    cy.ran = calloc((size_t)cy.roots * C_COUNTERS, sizeof(*cy.ran));
    cy.root_handles = calloc((size_t)cy.roots, sizeof(*cy.root_handles));
    cy.child_handles = calloc((size_t)cy.roots * 2, sizeof(*cy.child_handles));
    cy.child_rc = calloc((size_t)cy.roots * 2, sizeof(*cy.child_rc));
    cr_assert(cy.ran && cy.root_handles && cy.child_handles && cy.child_rc);
    for (int c = 0; c < cycles; c++)
        run_cycle(c);
    free(cy.ran);
    free(cy.root_handles);
    free(cy.child_handles);
    free(cy.child_rc);
}

/* Destroy right after create, with nothing spawned, in both modes and every
 * shape: nothing to run, nothing leaked, no hang. */
LEAK_CHECKED_TEST(sched_stress, create_destroy_empty, .timeout = 600)
{
    long cycles = param("MOIRAI_SCHED_STRESS_CYCLES", 64);
    for (long c = 0; c < cycles; c++) {
        moirai_sched_config_t cfg;
        moirai_sched_config_init(&cfg);
        cfg.workers = 1 + (int)(c % 4);
        cfg.spin_ns = c % 2 ? MOIRAI_SCHED_NO_SPIN : cfg.spin_ns;
        moirai_sched_t *s = NULL;
        cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
        cr_assert_eq(
            moirai_sched_destroy(s, c % 3 ? MOIRAI_SHUTDOWN_DRAIN : MOIRAI_SHUTDOWN_CANCEL), 0);
    }
}

/* ==== Shutdown with every worker held ====
 *
 * The timing of the cycles above decides how much is still pending when
 * destroy begins. Here nothing is left to timing: every worker is held by
 * a gate task, each gate queues LOCAL_PER_GATE children on its own worker,
 * the test queues PENDING tasks on the injector, and destroy starts on
 * another thread while nothing can run. The test keeps spawning probes
 * until one fails with -ESHUTDOWN (destroy has begun; the probes accepted
 * before are pending work too), then opens the gates. Each gate then runs
 * a moirai_join() and spawns one late child.
 *
 * DRAIN: every task ran exactly once and every handle holds its result.
 * CANCEL: no pending task, probe or late child ran, and each of their
 * handles reports -ECANCELED; the late spawns were accepted (0); the gates
 * themselves finished normally and their joins completed. */

#define LOCAL_PER_GATE 16

/* The test's own waits here; the gates wait longer (WAIT_NS), so that a
 * stuck gate shows as the test's failure, not as the gate giving up. */
#define HELD_WAIT_NS (30 * MOIRAI_NS_PER_S)
#define MAX_PROBES   4096

enum { H_PENDING, H_LOCAL, H_LATE, H_PROBE, H_KINDS };

typedef struct held {
    moirai_sched_t *sched;
    int workers;
    long pending;
    long base[H_KINDS]; /* first task index of each kind */
    long ntasks;
    _Atomic int *ran;           /* per task index */
    moirai_handle_t **handles;  /* per task index (NULL: detached) */
    int *spawn_rc;              /* per task index spawned by a gate */
    moirai_handle_t *gates[64]; /* gate handles */
    _Atomic int halves[128];    /* two per gate */
    _Atomic int gates_started;
    _Atomic int gates_ready;
    moirai_event_t all_started;
    moirai_event_t open;
    _Atomic int errors;
    moirai_shutdown_t how;
    int destroy_rc;
} held_t;

static held_t hd;

static int held_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    long i = (long)(uintptr_t)arg;
    atomic_fetch_add_explicit(&hd.ran[i], 1, memory_order_relaxed);
    *result = (void *)(uintptr_t)(i + 1);
    return 0;
}

/* Spawns task `i` from a gate, with a handle; the test reads the handle
 * and the result after destroy, which joined this thread. */
static void gate_spawn(long i)
{
    if (moirai_handle_create(&hd.handles[i]) != 0) {
        atomic_fetch_add(&hd.errors, 1);
        return;
    }
    hd.spawn_rc[i] =
        moirai_sched_spawn(hd.sched, held_task, (void *)(uintptr_t)i, NULL, hd.handles[i]);
}

static int held_gate_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    long g = (long)(uintptr_t)arg;
    /* Until every worker holds a gate, an idle one could steal what this
     * one queues; so queue only once all gates run. */
    if (atomic_fetch_add(&hd.gates_started, 1) + 1 == hd.workers)
        moirai_event_set(&hd.all_started);
    if (moirai_event_wait_timed(&hd.all_started, moirai_deadline_after(WAIT_NS)) != 0)
        atomic_fetch_add(&hd.errors, 1);
    for (long k = 0; k < LOCAL_PER_GATE; k++)
        gate_spawn(hd.base[H_LOCAL] + g * LOCAL_PER_GATE + k);
    atomic_fetch_add(&hd.gates_ready, 1);
    if (moirai_event_wait_timed(&hd.open, moirai_deadline_after(WAIT_NS)) != 0)
        atomic_fetch_add(&hd.errors, 1);
    /* Destroy has begun: a join still completes, and a spawn is accepted. */
    if (moirai_join(NULL, half_count, &hd.halves[2 * g], half_count, &hd.halves[2 * g + 1]) != 0)
        atomic_fetch_add(&hd.errors, 1);
    gate_spawn(hd.base[H_LATE] + g);
    *result = (void *)(uintptr_t)(g + 1);
    return 0;
}

static void *held_destroyer(void *arg)
{
    (void)arg;
    hd.destroy_rc = moirai_sched_destroy(hd.sched, hd.how);
    return NULL;
}

static void run_held(int c)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 1 + c % 4;
    cfg.no_lifo_slot = (c / 4) % 2 != 0;
    cfg.steal_one = (c / 8) % 2 != 0;
    cfg.steal = c % 3 == 1 ? MOIRAI_STEAL_RANDOM : MOIRAI_STEAL_LOCALITY;
    cfg.spin_ns = c % 5 == 0 ? MOIRAI_SCHED_NO_SPIN : cfg.spin_ns;
    hd.how = (c + c / 4) % 2 ? MOIRAI_SHUTDOWN_CANCEL : MOIRAI_SHUTDOWN_DRAIN;
    hd.workers = cfg.workers;
    long total = hd.ntasks;
    memset(hd.ran, 0, (size_t)total * sizeof(*hd.ran));
    memset(hd.handles, 0, (size_t)total * sizeof(*hd.handles));
    for (long i = 0; i < total; i++)
        hd.spawn_rc[i] = 1; /* "never spawned" */
    memset(hd.gates, 0, sizeof(hd.gates));
    memset(hd.halves, 0, sizeof(hd.halves));
    atomic_store(&hd.gates_started, 0);
    atomic_store(&hd.gates_ready, 0);
    atomic_store(&hd.errors, 0);
    moirai_event_init(&hd.all_started, MOIRAI_EVENT_MANUAL, false);
    moirai_event_init(&hd.open, MOIRAI_EVENT_MANUAL, false);
    cr_assert_eq(moirai_sched_create(&hd.sched, &cfg), 0);

    for (long g = 0; g < hd.workers; g++) {
        cr_assert_eq(moirai_handle_create(&hd.gates[g]), 0);
        cr_assert_eq(
            moirai_sched_spawn(hd.sched, held_gate_task, (void *)(uintptr_t)g, NULL, hd.gates[g]),
            0);
    }
    uint64_t deadline = moirai_deadline_after(HELD_WAIT_NS);
    while (atomic_load(&hd.gates_ready) < hd.workers) {
        cr_assert(!moirai_deadline_expired(deadline),
                  "cycle %d: only %d of %d gates started: a queued gate was never taken by an "
                  "idle worker",
                  c, atomic_load(&hd.gates_started), hd.workers);
        sleep_ns(100 * MOIRAI_NS_PER_US);
    }
    for (long p = 0; p < hd.pending; p++) {
        long i = hd.base[H_PENDING] + p;
        moirai_task_attr_t a = MOIRAI_TASK_ATTR_INIT;
        a.priority = (moirai_priority_t)(p % MOIRAI_PRIORITY_COUNT);
        if (p % 2 == 0)
            cr_assert_eq(moirai_handle_create(&hd.handles[i]), 0);
        cr_assert_eq(
            moirai_sched_spawn(hd.sched, held_task, (void *)(uintptr_t)i, &a, hd.handles[i]), 0);
    }

    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, held_destroyer, NULL), 0);
    /* The workers are held, so destroy cannot finish (nor free the pool)
     * before the gates open: spawning from here is safe until then. */
    long probes = 0;
    deadline = moirai_deadline_after(HELD_WAIT_NS);
    for (;;) {
        cr_assert_lt(probes, MAX_PROBES, "cycle %d: destroy never began", c);
        cr_assert(!moirai_deadline_expired(deadline), "cycle %d: destroy never began", c);
        long i = hd.base[H_PROBE] + probes;
        cr_assert_eq(moirai_handle_create(&hd.handles[i]), 0);
        int rc = moirai_sched_spawn(hd.sched, held_task, (void *)(uintptr_t)i, NULL, hd.handles[i]);
        if (rc == -ESHUTDOWN) {
            cr_assert_not(moirai_handle_is_finished(hd.handles[i]),
                          "a rejected spawn touched the handle");
            moirai_handle_release(hd.handles[i]);
            hd.handles[i] = NULL;
            break;
        }
        cr_assert_eq(rc, 0);
        probes++;
        sleep_ns(50 * MOIRAI_NS_PER_US);
    }
    cr_assert_eq(atomic_load(&hd.ran[hd.base[H_PENDING]]), 0);
    moirai_event_set(&hd.open);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(hd.destroy_rc, 0);
    hd.sched = NULL;
    cr_assert_eq(atomic_load(&hd.errors), 0);

    bool drain = hd.how == MOIRAI_SHUTDOWN_DRAIN;
    for (long g = 0; g < hd.workers; g++) {
        void *v = NULL;
        cr_assert_eq(moirai_handle_try_join(hd.gates[g], &v), 0, "cycle %d: gate %ld", c, g);
        cr_assert_eq((uintptr_t)v, (uintptr_t)g + 1);
        moirai_handle_release(hd.gates[g]);
        cr_assert_eq(atomic_load(&hd.halves[2 * g]), 1, "cycle %d: a join during destroy", c);
        cr_assert_eq(atomic_load(&hd.halves[2 * g + 1]), 1, "cycle %d: a join during destroy", c);
    }
    long counted = 0;
    for (int kind = 0; kind < H_KINDS; kind++) {
        long n = kind == H_PENDING ? hd.pending
                 : kind == H_LOCAL ? (long)hd.workers * LOCAL_PER_GATE
                 : kind == H_LATE  ? hd.workers
                                   : probes;
        for (long k = 0; k < n; k++) {
            long i = hd.base[kind] + k;
            int ran = atomic_load_explicit(&hd.ran[i], memory_order_relaxed);
            if (kind == H_LOCAL || kind == H_LATE)
                cr_assert_eq(hd.spawn_rc[i], 0, "cycle %d: a gate's spawn (kind %d) failed with %d",
                             c, kind, hd.spawn_rc[i]);
            cr_assert_eq(ran, drain ? 1 : 0, "cycle %d (%s): task %ld of kind %d ran %d times", c,
                         drain ? "drain" : "cancel", k, kind, ran);
            counted++;
            if (hd.handles[i] == NULL)
                continue;
            void *v = NULL;
            int rc = moirai_handle_try_join(hd.handles[i], &v);
            cr_assert_eq(rc, drain ? 0 : -ECANCELED,
                         "cycle %d (%s): handle of task %ld of kind %d reports %d", c,
                         drain ? "drain" : "cancel", k, kind, rc);
            if (drain)
                cr_assert_eq((uintptr_t)v, (uintptr_t)i + 1);
            moirai_handle_release(hd.handles[i]);
        }
    }
    cr_log_info("held cycle %d: %d workers, %s: %ld tasks pending at destroy (%ld probes)", c,
                hd.workers, drain ? "drain" : "cancel", counted, probes);
}

LEAK_CHECKED_TEST(sched_stress, shutdown_with_every_worker_held, .timeout = 600)
{
    memset(&hd, 0, sizeof(hd));
    hd.pending = param("MOIRAI_SCHED_STRESS_ROOTS", 2000);
    hd.base[H_PENDING] = 0;
    hd.base[H_LOCAL] = hd.pending;
    hd.base[H_LATE] = hd.base[H_LOCAL] + 4 * LOCAL_PER_GATE;
    hd.base[H_PROBE] = hd.base[H_LATE] + 4;
    hd.ntasks = hd.base[H_PROBE] + MAX_PROBES;
    hd.ran = calloc((size_t)hd.ntasks, sizeof(*hd.ran));
    hd.handles = calloc((size_t)hd.ntasks, sizeof(*hd.handles));
    hd.spawn_rc = calloc((size_t)hd.ntasks, sizeof(*hd.spawn_rc));
    cr_assert(hd.ran && hd.handles && hd.spawn_rc);
    long cycles = env_long("MOIRAI_SCHED_STRESS_CYCLES", 64) / 4 / env_long("MOIRAI_TEST_SCALE", 1);
    if (cycles < 8)
        cycles = 8; /* every worker count in both modes */
    for (int c = 0; c < cycles; c++)
        run_held(c);
    free(hd.ran);
    free(hd.handles);
    free(hd.spawn_rc);
}
