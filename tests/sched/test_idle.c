/* Idle means idle: workers that find nothing park, an idle pool uses no
 * measurable CPU, and parking never loses a wakeup, whether the work comes
 * from outside the pool or from a worker whose siblings are asleep.
 *
 * The CPU check is a property, not a speed: a pool that busy-waits burns
 * about one core-second per worker and second, a parked one next to
 * nothing; the bound (a fifth of a core-second) sits far from both. Every
 * wait for work is bounded by a generous deadline, so a lost wakeup fails
 * the test instead of hanging it. Tasks never call Criterion's asserts
 * (they run on worker threads); they record what they saw for the test
 * thread to check. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/sched/join.h>
#include <moirai/sched/sched.h>
#include <moirai/sync/event.h>
#include <moirai/sync/waitgroup.h>

#include "test_scale.h"

#define WAIT_NS (30 * MOIRAI_NS_PER_S)

static moirai_sched_t *make_sched(int workers, uint64_t spin_ns)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = workers;
    cfg.spin_ns = spin_ns == 0 ? MOIRAI_SCHED_NO_SPIN : spin_ns;
    moirai_sched_t *s = NULL;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    cr_assert_gt(moirai_sched_worker_count(s), 0);
    return s;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / MOIRAI_NS_PER_S), (long)(ns % MOIRAI_NS_PER_S)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static uint64_t process_cpu_ns(void)
{
    struct timespec ts;
    cr_assert_eq(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts), 0);
    return (uint64_t)ts.tv_sec * MOIRAI_NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Waits until every worker has parked at least `min_parks` times. A worker
 * with nothing to do must park after spin_ns; the deadline only turns "it
 * never does" into a failure. */
static void await_all_parked(moirai_sched_t *s, uint64_t min_parks)
{
    int n = moirai_sched_worker_count(s);
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    for (int w = 0; w < n; w++) {
        moirai_sched_worker_stats_t st;
        for (;;) {
            cr_assert_eq(moirai_sched_worker_stats(s, w, &st), 0);
            if (st.parks >= min_parks)
                break;
            cr_assert(!moirai_deadline_expired(deadline),
                      "worker %d of %d never parked while idle (parks %llu)", w, n,
                      (unsigned long long)st.parks);
            sleep_ns(MOIRAI_NS_PER_MS);
        }
    }
}

/* ---- Some work, of every kind, to run before idling ---- */

typedef struct work {
    moirai_sched_t *s;
    moirai_waitgroup_t wg;
    _Atomic long ran;
    _Atomic int errors;
} work_t;

static int leaf_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    work_t *w = arg;
    atomic_fetch_add_explicit(&w->ran, 1, memory_order_relaxed);
    moirai_waitgroup_done(&w->wg);
    return 0;
}

static void join_half(void *arg)
{
    work_t *w = arg;
    atomic_fetch_add_explicit(&w->ran, 1, memory_order_relaxed);
}

/* Spawns a few children locally and joins two halves. */
static int parent_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    work_t *w = arg;
    for (int i = 0; i < 8; i++) {
        moirai_waitgroup_add(&w->wg, 1);
        if (moirai_sched_spawn(w->s, leaf_task, w, NULL, NULL) != 0) {
            atomic_fetch_add(&w->errors, 1);
            moirai_waitgroup_done(&w->wg);
        }
    }
    if (moirai_join(NULL, join_half, w, join_half, w) != 0)
        atomic_fetch_add(&w->errors, 1);
    atomic_fetch_add_explicit(&w->ran, 1, memory_order_relaxed);
    moirai_waitgroup_done(&w->wg);
    return 0;
}

#define WORK_PARENTS 200

/* Runs WORK_PARENTS parents (each 8 leaves and a join) and an external
 * join, and checks that all of it ran. */
static void do_work(moirai_sched_t *s)
{
    static work_t w;
    memset(&w, 0, sizeof(w));
    w.s = s;
    moirai_waitgroup_init(&w.wg);
    cr_assert_eq(moirai_waitgroup_add(&w.wg, WORK_PARENTS), 0);
    for (int i = 0; i < WORK_PARENTS; i++)
        cr_assert_eq(moirai_sched_spawn(s, parent_task, &w, NULL, NULL), 0);
    cr_assert_eq(moirai_join(s, join_half, &w, join_half, &w), 0);
    cr_assert_eq(moirai_waitgroup_wait_timed(&w.wg, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(atomic_load(&w.errors), 0);
    cr_assert_eq(atomic_load(&w.ran), WORK_PARENTS * (8 + 2 + 1) + 2);
}

/* ---- An idle pool uses no CPU ---- */

/* Over one second of idling, the whole process (workers included) may use
 * at most this much CPU. */
#define IDLE_CPU_BOUND_NS (200 * MOIRAI_NS_PER_MS)

static void check_idle_cpu(int workers)
{
    moirai_sched_t *s = make_sched(workers, 50 * MOIRAI_NS_PER_US);
    do_work(s);
    sleep_ns(200 * MOIRAI_NS_PER_MS);
    await_all_parked(s, 1);

    moirai_sched_worker_stats_t before, after;
    cr_assert_eq(moirai_sched_stats(s, &before), 0);
    uint64_t cpu0 = process_cpu_ns();
    sleep_ns(MOIRAI_NS_PER_S);
    uint64_t cpu1 = process_cpu_ns();
    cr_assert_eq(moirai_sched_stats(s, &after), 0);
    uint64_t used = cpu1 - cpu0;
    cr_log_info("idle pool of %d workers: %.3f ms of CPU over 1 s, %llu parks in all, %llu while "
                "idle",
                moirai_sched_worker_count(s), (double)used / 1e6, (unsigned long long)after.parks,
                (unsigned long long)(after.parks - before.parks));
    cr_assert_lt(used, IDLE_CPU_BOUND_NS,
                 "an idle pool of %d workers used %.3f s of CPU in one second: it does not park",
                 moirai_sched_worker_count(s), (double)used / 1e9);
    cr_assert_gt(after.parks, 0);
    cr_assert_geq(after.executed, (uint64_t)WORK_PARENTS * 9);

    /* And it still works after the long sleep. */
    do_work(s);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(idle, idle_pool_uses_no_cpu, .timeout = 60)
{
    check_idle_cpu(0);
}

Test(idle, idle_pool_of_four_workers_uses_no_cpu, .timeout = 60)
{
    check_idle_cpu(4);
}

/* A pool that never got any work parks every worker too. */
Test(idle, fresh_pool_parks_every_worker, .timeout = 60)
{
    moirai_sched_t *s = make_sched(4, 50 * MOIRAI_NS_PER_US);
    await_all_parked(s, 1);
    moirai_sched_worker_stats_t st;
    cr_assert_eq(moirai_sched_stats(s, &st), 0);
    cr_assert_eq(st.executed, 0);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

/* ---- A spawn onto a sleeping pool runs ---- */

static int value_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    *result = arg;
    return 0;
}

typedef struct flag_task {
    moirai_event_t done;
    _Atomic int runs;
} flag_task_t;

static int flag_set_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    flag_task_t *f = arg;
    atomic_fetch_add_explicit(&f->runs, 1, memory_order_relaxed);
    moirai_event_set(&f->done);
    return 0;
}

/* Gaps between rounds: none (workers still busy or spinning), shorter and
 * longer than the spin, and long enough that everybody is parked. */
static const uint64_t gaps_ns[] = {0, 20 * MOIRAI_NS_PER_US, 200 * MOIRAI_NS_PER_US,
                                   2 * MOIRAI_NS_PER_MS, 5 * MOIRAI_NS_PER_MS};
#define NGAPS (sizeof(gaps_ns) / sizeof(gaps_ns[0]))

static void check_spawn_after_idle(int workers, uint64_t spin_ns)
{
    moirai_sched_t *s = make_sched(workers, spin_ns);
    do_work(s);
    await_all_parked(s, 1);
    long rounds = env_long("MOIRAI_SCHED_IDLE_ROUNDS", scaled(200));
    for (long r = 0; r < rounds; r++) {
        sleep_ns(gaps_ns[r % NGAPS]);
        if (r % 2 == 0) {
            moirai_handle_t *h = NULL;
            cr_assert_eq(moirai_handle_create(&h), 0);
            moirai_task_attr_t a = MOIRAI_TASK_ATTR_INIT;
            a.priority = (moirai_priority_t)(r / 2 % MOIRAI_PRIORITY_COUNT);
            cr_assert_eq(moirai_sched_spawn(s, value_task, (void *)(uintptr_t)(r + 1), &a, h), 0);
            void *v = NULL;
            cr_assert_eq(moirai_handle_join_timed(h, moirai_deadline_after(WAIT_NS), &v), 0,
                         "round %ld: a spawn onto an idle pool of %d never ran (lost wakeup)", r,
                         workers);
            cr_assert_eq((uintptr_t)v, (uintptr_t)r + 1);
            moirai_handle_release(h);
        } else {
            flag_task_t f;
            atomic_init(&f.runs, 0);
            moirai_event_init(&f.done, MOIRAI_EVENT_MANUAL, false);
            cr_assert_eq(moirai_sched_spawn(s, flag_set_task, &f, NULL, NULL), 0);
            cr_assert_eq(moirai_event_wait_timed(&f.done, moirai_deadline_after(WAIT_NS)), 0,
                         "round %ld: a detached spawn onto an idle pool of %d never ran", r,
                         workers);
            cr_assert_eq(atomic_load(&f.runs), 1);
        }
    }
    moirai_sched_worker_stats_t st;
    cr_assert_eq(moirai_sched_stats(s, &st), 0);
    cr_log_info("spawn after idle, %d workers, spin %llu ns: %ld rounds, %llu parks",
                moirai_sched_worker_count(s), (unsigned long long)spin_ns, rounds,
                (unsigned long long)st.parks);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(idle, spawn_after_idle_runs_one_worker, .timeout = 60)
{
    check_spawn_after_idle(1, 50 * MOIRAI_NS_PER_US);
}

Test(idle, spawn_after_idle_runs, .timeout = 60)
{
    check_spawn_after_idle(0, 50 * MOIRAI_NS_PER_US);
}

Test(idle, spawn_after_idle_runs_four_workers_no_spin, .timeout = 60)
{
    check_spawn_after_idle(4, 0);
}

/* A join from outside the pool onto a parked pool. moirai_join() has no
 * deadline: a lost wakeup shows as this test's timeout. */
static void count_half(void *arg)
{
    atomic_fetch_add_explicit((_Atomic int *)arg, 1, memory_order_relaxed);
}

Test(idle, external_join_after_idle_runs, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2, 0);
    long rounds = scaled(100);
    for (long r = 0; r < rounds; r++) {
        sleep_ns(gaps_ns[r % NGAPS]);
        _Atomic int a = 0, b = 0;
        cr_assert_eq(moirai_join(s, count_half, &a, count_half, &b), 0);
        cr_assert_eq(atomic_load(&a), 1);
        cr_assert_eq(atomic_load(&b), 1);
    }
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

/* ---- A spawn by a worker wakes a sleeping sibling ---- */

/* The parent spawns two children onto its own worker and then blocks
 * until the first one has run. The second spawn pushes the first out of
 * the LIFO slot into the deque (or both go to the deque), where only a
 * thief can take it while the parent blocks: so a sibling must be woken
 * for it. */
typedef struct wake_ctx {
    moirai_sched_t *s;
    moirai_event_t first_ran;
    moirai_waitgroup_t wg;
    _Atomic int first_runs;
    _Atomic int second_runs;
    _Atomic int first_worker;
    _Atomic int parent_worker;
    _Atomic int timed_out;
    _Atomic int errors;
} wake_ctx_t;

static int wake_first_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    wake_ctx_t *c = arg;
    atomic_fetch_add(&c->first_runs, 1);
    atomic_store(&c->first_worker, moirai_sched_worker_index());
    moirai_event_set(&c->first_ran);
    moirai_waitgroup_done(&c->wg);
    return 0;
}

static int wake_second_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    wake_ctx_t *c = arg;
    atomic_fetch_add(&c->second_runs, 1);
    moirai_waitgroup_done(&c->wg);
    return 0;
}

static int wake_parent_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    wake_ctx_t *c = arg;
    atomic_store(&c->parent_worker, moirai_sched_worker_index());
    if (moirai_sched_spawn(c->s, wake_first_task, c, NULL, NULL) != 0 ||
        moirai_sched_spawn(c->s, wake_second_task, c, NULL, NULL) != 0)
        atomic_fetch_add(&c->errors, 1);
    if (moirai_event_wait_timed(&c->first_ran, moirai_deadline_after(WAIT_NS)) != 0)
        atomic_store(&c->timed_out, 1);
    moirai_waitgroup_done(&c->wg);
    return 0;
}

static void check_worker_spawn_wakes(int workers, uint64_t spin_ns)
{
    moirai_sched_t *s = make_sched(workers, spin_ns);
    long rounds = env_long("MOIRAI_SCHED_IDLE_ROUNDS", scaled(200)) / 2;
    await_all_parked(s, 1);
    for (long r = 0; r < rounds; r++) {
        sleep_ns(gaps_ns[r % NGAPS]);
        wake_ctx_t c;
        memset(&c, 0, sizeof(c));
        c.s = s;
        moirai_event_init(&c.first_ran, MOIRAI_EVENT_MANUAL, false);
        moirai_waitgroup_init(&c.wg);
        cr_assert_eq(moirai_waitgroup_add(&c.wg, 3), 0);
        cr_assert_eq(moirai_sched_spawn(s, wake_parent_task, &c, NULL, NULL), 0);
        cr_assert_eq(moirai_waitgroup_wait_timed(&c.wg, moirai_deadline_after(2 * WAIT_NS)), 0);
        cr_assert_eq(atomic_load(&c.errors), 0);
        cr_assert_eq(atomic_load(&c.timed_out), 0,
                     "round %ld: a child spawned by a blocked worker was never stolen: no "
                     "sleeping sibling was woken",
                     r);
        cr_assert_eq(atomic_load(&c.first_runs), 1);
        cr_assert_eq(atomic_load(&c.second_runs), 1);
        cr_assert_neq(atomic_load(&c.first_worker), atomic_load(&c.parent_worker));
    }
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(idle, worker_spawn_wakes_a_sleeping_sibling, .timeout = 60)
{
    check_worker_spawn_wakes(2, 50 * MOIRAI_NS_PER_US);
}

Test(idle, worker_spawn_wakes_a_sleeping_sibling_four_workers_no_spin, .timeout = 60)
{
    check_worker_spawn_wakes(4, 0);
}

/* ---- A burst onto a parked pool runs each task exactly once ---- */

#define BURST 1000

typedef struct burst {
    _Atomic int runs[BURST];
    moirai_waitgroup_t wg;
} burst_t;

typedef struct burst_item {
    burst_t *b;
    int index;
} burst_item_t;

static int burst_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    burst_item_t *it = arg;
    atomic_fetch_add_explicit(&it->b->runs[it->index], 1, memory_order_relaxed);
    moirai_waitgroup_done(&it->b->wg);
    return 0;
}

static void check_burst(int workers, uint64_t spin_ns)
{
    moirai_sched_t *s = make_sched(workers, spin_ns);
    static burst_t b;
    static burst_item_t items[BURST];
    for (int round = 0; round < 3; round++) {
        memset(&b, 0, sizeof(b));
        moirai_waitgroup_init(&b.wg);
        /* Every worker has parked once; the sleep gives those that ran the
         * previous round time to park again (a chance, not a condition). */
        await_all_parked(s, 1);
        sleep_ns(5 * MOIRAI_NS_PER_MS);
        cr_assert_eq(moirai_waitgroup_add(&b.wg, BURST), 0);
        for (int i = 0; i < BURST; i++) {
            items[i] = (burst_item_t){&b, i};
            moirai_task_attr_t a = MOIRAI_TASK_ATTR_INIT;
            a.priority = (moirai_priority_t)(i % MOIRAI_PRIORITY_COUNT);
            cr_assert_eq(moirai_sched_spawn(s, burst_task, &items[i], (i % 7) ? &a : NULL, NULL),
                         0);
        }
        cr_assert_eq(moirai_waitgroup_wait_timed(&b.wg, moirai_deadline_after(WAIT_NS)), 0,
                     "round %d: %u of %d burst tasks never ran", round,
                     moirai_waitgroup_count(&b.wg), BURST);
        for (int i = 0; i < BURST; i++)
            cr_assert_eq(atomic_load(&b.runs[i]), 1, "round %d: task %d ran %d times", round, i,
                         atomic_load(&b.runs[i]));
    }
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
    for (int i = 0; i < BURST; i++)
        cr_assert_eq(atomic_load(&b.runs[i]), 1, "task %d ran again after its wait", i);
}

Test(idle, burst_onto_parked_pool_runs_each_once, .timeout = 60)
{
    check_burst(0, 50 * MOIRAI_NS_PER_US);
}

Test(idle, burst_onto_parked_pool_runs_each_once_one_worker, .timeout = 60)
{
    check_burst(1, 50 * MOIRAI_NS_PER_US);
}

Test(idle, burst_onto_parked_pool_runs_each_once_four_workers_no_spin, .timeout = 60)
{
    check_burst(4, 0);
}
