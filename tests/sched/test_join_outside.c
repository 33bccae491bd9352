/* moirai_join() from a thread outside the pool: the caller takes part as
 * a guest worker (it steals while it waits for a half a worker took), or,
 * with cfg.callers_wait, runs none of the work; what a guest leaves queued
 * still runs; destroy from inside such a join is refused. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/sched/job.h>
#include <moirai/sched/join.h>
#include <moirai/sched/parallel.h>
#include <moirai/sched/sched.h>

#include "leak_check.h"
#include "sched_test_util.h"

/* ---- the caller steals while it waits ---- */

typedef struct steal_case {
    moirai_sched_t *sched;
    pthread_t caller;
    _Atomic int b_started;
    _Atomic int y_ran;
    _Atomic int y_on_caller;
    _Atomic int x_gave_up;
} steal_case_t;

static void y_half(void *p)
{
    steal_case_t *c = p;
    atomic_store(&c->y_on_caller, pthread_equal(pthread_self(), c->caller) ? 1 : 0);
    atomic_store(&c->y_ran, 1);
}

/* Waits for y: with one worker, which runs x, only the caller can run y
 * meanwhile, and only if it steals while it waits for b. */
static void x_half(void *p)
{
    steal_case_t *c = p;
    if (!await_flag(&c->y_ran))
        atomic_store(&c->x_gave_up, 1);
}

static void b_half(void *p)
{
    steal_case_t *c = p;
    atomic_store(&c->b_started, 1);
    cr_assert_eq(moirai_join(NULL, x_half, c, y_half, c), 0);
}

/* Runs on the caller and holds it until a worker has taken b, so that b
 * is certainly stolen. */
static void a_half(void *p)
{
    steal_case_t *c = p;
    cr_assert(await_flag(&c->b_started));
}

/* Before guest workers, an outside caller whose half was stolen only
 * slept: y stayed on the worker's deque behind x, and x gave up. */
LEAK_CHECKED_TEST(join_outside, caller_runs_work_of_a_stolen_half, .timeout = 120)
{
    moirai_sched_t *s = make_sched(1);
    steal_case_t c = {.sched = s, .caller = pthread_self()};
    cr_assert_eq(moirai_join(s, a_half, &c, b_half, &c), 0);
    cr_assert_eq(atomic_load(&c.x_gave_up), 0, "the caller did not run y while it waited");
    cr_assert_eq(atomic_load(&c.y_ran), 1);
    cr_assert_eq(atomic_load(&c.y_on_caller), 1);
    /* What the caller ran as a guest is in the pool's counters. */
    moirai_sched_worker_stats_t st;
    cr_assert_eq(moirai_sched_stats(s, &st), 0);
    cr_assert_geq(st.steals, 2); /* b by the worker, y by the caller */
    drop_sched(s);
}

/* ---- who runs the pieces ---- */

typedef struct pieces {
    pthread_t caller;
    _Atomic long runs;
    _Atomic long on_caller;
    _Atomic uint8_t seen[1000];
} pieces_t;

static void piece(void *arg, size_t begin, size_t end)
{
    pieces_t *p = arg;
    bool mine = pthread_equal(pthread_self(), p->caller);
    for (size_t i = begin; i < end; i++) {
        atomic_fetch_add(&p->seen[i], 1);
        atomic_fetch_add(&p->runs, 1);
        if (mine)
            atomic_fetch_add(&p->on_caller, 1);
        /* A little work per index, so that the workers get to steal. */
        for (volatile int k = 0; k < 2000; k++) {
        }
    }
}

static void run_pieces(bool callers_wait, pieces_t *p)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 1;
    cfg.callers_wait = callers_wait;
    moirai_sched_t *s;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    p->caller = pthread_self();
    cr_assert_eq(moirai_parallel_for(s, 0, 1000, 1, piece, p), 0);
    cr_assert_eq(atomic_load(&p->runs), 1000);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(atomic_load(&p->seen[i]), 1, "index %d ran %d times", i,
                     (int)atomic_load(&p->seen[i]));
    drop_sched(s);
}

/* The default: the caller runs the first half of the top split itself,
 * so it always runs some pieces (index 0 among them). */
LEAK_CHECKED_TEST(join_outside, caller_takes_part_by_default, .timeout = 60)
{
    static pieces_t p;
    run_pieces(false, &p);
    cr_assert_gt(atomic_load(&p.on_caller), 0);
}

/* callers_wait: exactly the workers run the work; the caller runs none. */
LEAK_CHECKED_TEST(join_outside, callers_wait_runs_nothing_on_the_caller, .timeout = 60)
{
    static pieces_t p;
    run_pieces(true, &p);
    cr_assert_eq(atomic_load(&p.on_caller), 0);
}

static void mark_thread(void *arg)
{
    pieces_t *p = arg;
    atomic_fetch_add(&p->runs, 1);
    if (pthread_equal(pthread_self(), p->caller))
        atomic_fetch_add(&p->on_caller, 1);
}

LEAK_CHECKED_TEST(join_outside, callers_wait_join_runs_both_halves_on_workers, .timeout = 60)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    cfg.callers_wait = true;
    moirai_sched_t *s;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    static pieces_t p;
    p.caller = pthread_self();
    for (int i = 0; i < 100; i++)
        cr_assert_eq(moirai_join(s, mark_thread, &p, mark_thread, &p), 0);
    cr_assert_eq(atomic_load(&p.runs), 200);
    cr_assert_eq(atomic_load(&p.on_caller), 0);
    drop_sched(s);
}

/* ---- what a guest leaves queued ---- */

typedef struct spawner {
    moirai_sched_t *sched;
    _Atomic long done;
} spawner_t;

static int count_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    atomic_fetch_add(&((spawner_t *)arg)->done, 1);
    return 0;
}

/* Spawns from the caller, as a guest: the tasks go to the guest's own
 * queues, and those still there when the join returns must run anyway. */
static void spawn_many(void *arg)
{
    spawner_t *sp = arg;
    for (int i = 0; i < 200; i++)
        cr_assert_eq(moirai_sched_spawn(sp->sched, count_task, sp, NULL, NULL), 0);
}

LEAK_CHECKED_TEST(join_outside, tasks_spawned_by_the_caller_all_run, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    spawner_t sp = {.sched = s};
    for (int round = 0; round < 20; round++)
        cr_assert_eq(moirai_join(s, spawn_many, &sp, spawn_many, &sp), 0);
    drop_sched(s);
    cr_assert_eq(atomic_load(&sp.done), 20 * 2 * 200);
}

/* ---- destroy from inside ---- */

typedef struct inner_destroy {
    moirai_sched_t *sched;
    int rc;
} inner_destroy_t;

static void try_destroy(void *arg)
{
    inner_destroy_t *d = arg;
    d->rc = moirai_sched_destroy(d->sched, MOIRAI_SHUTDOWN_DRAIN);
}

static void idle_half(void *arg)
{
    (void)arg;
}

/* The caller runs `a` itself: destroying the pool from there would wait
 * for the join that is calling it. */
LEAK_CHECKED_TEST(join_outside, destroy_from_inside_is_edeadlk, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    inner_destroy_t d = {s, 0};
    cr_assert_eq(moirai_join(s, try_destroy, &d, idle_half, NULL), 0);
    cr_assert_eq(d.rc, -EDEADLK);
    /* Outside a join it is a plain thread again. */
    cr_assert_null(moirai_sched_current());
    cr_assert_eq(moirai_sched_worker_index(), -1);
    drop_sched(s);
}

/* ---- more callers than guest slots ---- */

typedef struct many {
    moirai_sched_t *sched;
    _Atomic long leaves;
} many_t;

typedef struct tree {
    many_t *m;
    int depth;
} tree_t;

static void tree(void *arg)
{
    tree_t *t = arg;
    if (t->depth == 0) {
        atomic_fetch_add(&t->m->leaves, 1);
        return;
    }
    tree_t l = {t->m, t->depth - 1}, r = {t->m, t->depth - 1};
    cr_assert_eq(moirai_join(t->m->sched, tree, &l, tree, &r), 0);
}

static void *outside_thread(void *arg)
{
    for (int i = 0; i < 20; i++) {
        tree_t t = {arg, 8};
        tree(&t);
    }
    return NULL;
}

/* Eight outside threads, more than there are guest slots: the rest go
 * through the external slots or the injector; every leaf runs once. */
LEAK_CHECKED_TEST(join_outside, more_callers_than_guest_slots, .timeout = 120)
{
    moirai_sched_t *s = make_sched(2);
    many_t m = {.sched = s};
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, outside_thread, &m), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&m.leaves), 8L * 20 * 256);
    drop_sched(s);
}

/* ---- runtime jobs stay on the workers ---- */

typedef struct rt_job {
    moirai_sched_job_t job; /* first: the callback gets this pointer */
    pthread_t caller;
    _Atomic int ran;
    _Atomic int on_caller;
} rt_job_t;

static void rt_job_run(moirai_sched_job_t *job)
{
    rt_job_t *r = (rt_job_t *)(void *)job;
    atomic_store(&r->on_caller, pthread_equal(pthread_self(), r->caller) ? 1 : 0);
    atomic_store(&r->ran, 1);
}

typedef struct rt_case {
    moirai_sched_t *sched;
    rt_job_t jobs[64];
} rt_case_t;

/* Submits runtime jobs from the caller inside the join; a fiber runtime's
 * jobs expect one of the pool's own threads, never the guest. */
static void submit_jobs(void *arg)
{
    rt_case_t *c = arg;
    for (int i = 0; i < 64; i++) {
        moirai_sched_job_init(&c->jobs[i].job, rt_job_run, "rt");
        cr_assert_eq(moirai_sched_job_submit(c->sched, &c->jobs[i].job, MOIRAI_PRIORITY_NORMAL, 0),
                     0);
    }
}

/* Keeps the caller busy in the join, stealing, while the jobs run. */
static void spin_tree(void *arg)
{
    tree_t *t = arg;
    tree(t);
}

LEAK_CHECKED_TEST(join_outside, runtime_jobs_never_run_on_the_caller, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    static rt_case_t c;
    c.sched = s;
    for (int i = 0; i < 64; i++) {
        c.jobs[i].caller = pthread_self();
        atomic_init(&c.jobs[i].ran, 0);
        atomic_init(&c.jobs[i].on_caller, 0);
    }
    many_t m = {.sched = s};
    tree_t t = {&m, 10};
    cr_assert_eq(moirai_join(s, submit_jobs, &c, spin_tree, &t), 0);
    drop_sched(s);
    for (int i = 0; i < 64; i++) {
        cr_assert_eq(atomic_load(&c.jobs[i].ran), 1);
        cr_assert_eq(atomic_load(&c.jobs[i].on_caller), 0, "job %d ran on the caller", i);
    }
    cr_assert_eq(atomic_load(&m.leaves), 1024);
}
