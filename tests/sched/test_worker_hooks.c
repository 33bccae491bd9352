/* Worker start and exit hooks (moirai_sched_config_t.on_worker_start /
 * on_worker_exit): each regular worker runs the start hook exactly once,
 * on its own thread, as that worker, before create returns, and the exit
 * hook exactly once on the same thread before destroy returns; tasks of a
 * worker run on the thread its start hook ran on; the start hook may
 * spawn; compensating workers run both hooks once per thread; per-worker
 * state set up in the hooks works with a combinable.
 *
 * Hooks never call Criterion's asserts (they run on workers): they record
 * what they saw and the test thread checks it afterwards. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <moirai/sched/combinable.h>
#include <moirai/sched/parallel.h>

#include "sched_test_util.h"

#define MAXW 8

typedef struct hooks {
    _Atomic int starts[MAXW];
    _Atomic int exits[MAXW];
    pthread_t start_thread[MAXW]; /* written by worker i's thread only */
    _Atomic int thread_mismatch;  /* exit ran on another thread than start */
    _Atomic int wrong_identity;   /* index or current scheduler wrong in a hook */
    _Atomic int bad_index;
    moirai_sched_t *_Atomic sched_seen[MAXW];
    /* Optional: spawn a task from the start hook onto the worker's pool. */
    int spawn_from_start;
    _Atomic int spawned_ran;
    _Atomic int spawn_failed;
} hooks_t;

static int spawned_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    atomic_fetch_add(&((hooks_t *)arg)->spawned_ran, 1);
    return 0;
}

static void on_start(void *arg, int index)
{
    hooks_t *h = arg;
    if (index < 0 || index >= MAXW) {
        atomic_store(&h->bad_index, 1);
        return;
    }
    if (moirai_sched_worker_index() != index || moirai_sched_current() == NULL)
        atomic_store(&h->wrong_identity, 1);
    atomic_store(&h->sched_seen[index], moirai_sched_current());
    h->start_thread[index] = pthread_self();
    atomic_fetch_add(&h->starts[index], 1);
    if (h->spawn_from_start &&
        moirai_sched_spawn(moirai_sched_current(), spawned_task, h, NULL, NULL) != 0)
        atomic_store(&h->spawn_failed, 1);
}

static void on_exit_hook(void *arg, int index)
{
    hooks_t *h = arg;
    if (index < 0 || index >= MAXW) {
        atomic_store(&h->bad_index, 1);
        return;
    }
    if (moirai_sched_worker_index() != index || moirai_sched_current() == NULL)
        atomic_store(&h->wrong_identity, 1);
    if (!pthread_equal(h->start_thread[index], pthread_self()))
        atomic_store(&h->thread_mismatch, 1);
    atomic_fetch_add(&h->exits[index], 1);
}

static moirai_sched_config_t hooked_cfg(hooks_t *h, int workers)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = workers;
    cfg.on_worker_start = on_start;
    cfg.on_worker_exit = on_exit_hook;
    cfg.worker_hook_arg = h;
    return cfg;
}

/* A task recording whether it runs on the thread of its worker's start
 * hook. */
typedef struct thread_check {
    hooks_t *h;
    _Atomic int mismatches;
    _Atomic int runs;
} thread_check_t;

static void check_body(void *arg, size_t b, size_t e)
{
    (void)b;
    (void)e;
    thread_check_t *t = arg;
    int i = moirai_sched_worker_index();
    if (i < 0)
        return; /* the caller taking part */
    atomic_fetch_add(&t->runs, 1);
    if (!pthread_equal(t->h->start_thread[i], pthread_self()))
        atomic_fetch_add(&t->mismatches, 1);
}

Test(worker_hooks, once_per_worker_on_its_thread, .timeout = 60)
{
    enum { W = 3 };
    static hooks_t h;
    memset(&h, 0, sizeof h);
    moirai_sched_config_t cfg = hooked_cfg(&h, W);
    moirai_sched_t *s;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    /* Every start hook has returned before create did. */
    for (int i = 0; i < W; i++) {
        cr_assert_eq(atomic_load(&h.starts[i]), 1, "worker %d started %d times", i,
                     atomic_load(&h.starts[i]));
        cr_assert_eq(atomic_load(&h.exits[i]), 0);
        cr_assert_eq(atomic_load(&h.sched_seen[i]), s, "worker %d saw another scheduler", i);
    }
    thread_check_t t;
    memset(&t, 0, sizeof t);
    t.h = &h;
    for (int round = 0; round < 10; round++)
        cr_assert_eq(moirai_parallel_for(s, 0, 1000, 1, check_body, &t), 0);
    cr_assert_eq(atomic_load(&t.mismatches), 0,
                 "a worker ran a task on another thread than its start hook's");
    drop_sched(s);
    for (int i = 0; i < W; i++) {
        cr_assert_eq(atomic_load(&h.starts[i]), 1);
        cr_assert_eq(atomic_load(&h.exits[i]), 1, "worker %d exited %d times", i,
                     atomic_load(&h.exits[i]));
    }
    for (int i = W; i < MAXW; i++)
        cr_assert_eq(atomic_load(&h.starts[i]) + atomic_load(&h.exits[i]), 0);
    cr_assert_eq(atomic_load(&h.thread_mismatch), 0, "an exit hook ran on another thread");
    cr_assert_eq(atomic_load(&h.wrong_identity), 0, "a hook did not run as its worker");
    cr_assert_eq(atomic_load(&h.bad_index), 0);
}

Test(worker_hooks, start_hook_may_spawn, .timeout = 60)
{
    enum { W = 2 };
    static hooks_t h;
    memset(&h, 0, sizeof h);
    h.spawn_from_start = 1;
    moirai_sched_config_t cfg = hooked_cfg(&h, W);
    moirai_sched_t *s;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    drop_sched(s); /* DRAIN runs what the hooks spawned */
    cr_assert_eq(atomic_load(&h.spawn_failed), 0);
    cr_assert_eq(atomic_load(&h.spawned_ran), W);
}

/* Only one hook set: the other is simply not called. */
Test(worker_hooks, one_hook_alone, .timeout = 30)
{
    static hooks_t h;
    memset(&h, 0, sizeof h);
    moirai_sched_config_t cfg = hooked_cfg(&h, 2);
    cfg.on_worker_start = NULL;
    moirai_sched_t *s;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    drop_sched(s);
    cr_assert_eq(atomic_load(&h.starts[0]) + atomic_load(&h.starts[1]), 0);
    cr_assert_eq(atomic_load(&h.exits[0]), 1);
    cr_assert_eq(atomic_load(&h.exits[1]), 1);
}

/* A compensating worker runs both hooks on its own thread, once per
 * thread started in its slot. */
Test(worker_hooks, compensating_worker_runs_hooks, .timeout = 60)
{
    static hooks_t h;
    memset(&h, 0, sizeof h);
    moirai_sched_config_t cfg = hooked_cfg(&h, 1);
    cfg.watchdog_ns = 20 * 1000 * 1000;
    cfg.watchdog_compensate = 1;
    moirai_sched_t *s;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    hold_t hold;
    hold_worker(s, &hold);
    /* Wait for the watchdog to start a compensating worker in slot 1. */
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (atomic_load(&h.starts[1]) == 0 && moirai_clock_now_ns() < deadline)
        sched_yield();
    release_worker(&hold);
    cr_assert_geq(atomic_load(&h.starts[1]), 1, "no compensating worker started");
    drop_sched(s);
    cr_assert_eq(atomic_load(&h.starts[0]), 1);
    cr_assert_eq(atomic_load(&h.exits[0]), 1);
    cr_assert_eq(atomic_load(&h.exits[1]), atomic_load(&h.starts[1]),
                 "compensating slot: %d starts, %d exits", atomic_load(&h.starts[1]),
                 atomic_load(&h.exits[1]));
    cr_assert_eq(atomic_load(&h.thread_mismatch), 0);
    cr_assert_eq(atomic_load(&h.wrong_identity), 0);
}

/* The pattern the hooks are for: each worker sets up its value of a
 * combinable when it starts (say, a connection or a buffer) and the
 * values are combined at the end. */
typedef struct prealloc {
    moirai_combinable_t *c;
    _Atomic int failed;
} prealloc_t;

static void prealloc_start(void *arg, int index)
{
    prealloc_t *p = arg;
    long *v;
    if (moirai_combinable_local(p->c, (void **)&v) != 0)
        atomic_store(&p->failed, 1);
    else
        *v = 1000 + index;
}

static void sum_long(void *arg, void *acc, const void *value)
{
    (void)arg;
    *(long *)acc += *(const long *)value;
}

Test(worker_hooks, hooks_set_up_combinable_values, .timeout = 30)
{
    /* The combinable needs the scheduler, which exists only once create
     * returns, and the start hooks run inside create: the hooks' values
     * go through the thread lookup of a combinable without a scheduler. */
    static prealloc_t p;
    moirai_combinable_config_t ccfg;
    moirai_combinable_config_init(&ccfg, sizeof(long));
    cr_assert_eq(moirai_combinable_create(&p.c, &ccfg), 0);
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    cfg.on_worker_start = prealloc_start;
    cfg.worker_hook_arg = &p;
    moirai_sched_t *s;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    drop_sched(s);
    cr_assert_eq(atomic_load(&p.failed), 0);
    long sum = 0;
    cr_assert_eq(moirai_combinable_combine(p.c, sum_long, NULL, &sum), 0);
    cr_assert_eq(sum, 1000 + 1001);
    moirai_combinable_destroy(p.c);
}

/* The default configuration has no hooks. */
Test(worker_hooks, defaults_are_null, .timeout = 10)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cr_assert_null(cfg.on_worker_start);
    cr_assert_null(cfg.on_worker_exit);
    cr_assert_null(cfg.worker_hook_arg);
    moirai_sched_config_t zero;
    memset(&zero, 0, sizeof zero);
    cr_assert_eq(zero.on_worker_start, cfg.on_worker_start);
}
