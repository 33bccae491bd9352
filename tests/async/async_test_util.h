/* Helpers shared by moirai-async's tests: a runtime with a given number of
 * workers, and running one fiber function from the test thread to its
 * result. Waits are bounded by WAIT_NS so that a lost wake-up fails the
 * test instead of hanging it. Header-only; asserting functions run on the
 * test thread only. */
#ifndef MOIRAI_TEST_ASYNC_UTIL_H
#define MOIRAI_TEST_ASYNC_UTIL_H

#include <criterion/criterion.h>

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include <moirai/async.h>
#include <moirai/core.h>
#include <moirai/sched.h>
#include <moirai/sync.h>

#define WAIT_NS (30 * MOIRAI_NS_PER_S)

/* A runtime on a scheduler of its own with `workers` workers. */
static inline moirai_runtime_t *make_runtime(int workers)
{
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = workers;
    moirai_runtime_config_t rc;
    moirai_runtime_config_init(&rc);
    rc.sched_config = &sc;
    moirai_runtime_t *rt = NULL;
    cr_assert_eq(moirai_runtime_create(&rt, &rc), 0);
    cr_assert_not_null(rt);
    return rt;
}

static inline void drop_runtime(moirai_runtime_t *rt)
{
    cr_assert_eq(moirai_runtime_destroy(rt), 0);
}

/* Spawns fn(arg) as a fiber with a handle. */
static inline moirai_handle_t *spawn_with_handle(moirai_runtime_t *rt, moirai_task_fn fn, void *arg,
                                                 const moirai_fiber_attr_t *attr)
{
    moirai_handle_t *h = NULL;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_fiber_spawn(rt, fn, arg, attr, h), 0);
    return h;
}

/* Joins `h` from the test thread within WAIT_NS and releases it; returns
 * the fiber's status and stores its value. */
static inline int join_and_release(moirai_handle_t *h, void **value)
{
    int rc = moirai_handle_join_timed(h, moirai_deadline_after(WAIT_NS), value);
    cr_assert_neq(rc, -ETIMEDOUT, "a fiber did not finish within the bound");
    moirai_handle_release(h);
    return rc;
}

/* Runs fn(arg) as one fiber and returns its status (value in *value). */
static inline int run_fiber(moirai_runtime_t *rt, moirai_task_fn fn, void *arg, void **value)
{
    return join_and_release(spawn_with_handle(rt, fn, arg, NULL), value);
}

/* A fiber that occupies its worker until `release` is set, without ever
 * parking (it spins on purpose: tests use it to hold the only worker). */
struct holder {
    _Atomic int running;
    _Atomic int release;
};

static inline int hold_worker(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct holder *h = arg;
    atomic_store(&h->running, 1);
    while (!atomic_load(&h->release))
        ;
    return 0;
}

/* Spawns hold_worker and waits until it runs, so that whatever is spawned
 * next queues behind it rather than racing it to the worker. */
static inline moirai_handle_t *hold_the_worker(moirai_runtime_t *rt, struct holder *h)
{
    atomic_init(&h->running, 0);
    atomic_init(&h->release, 0);
    moirai_handle_t *handle = spawn_with_handle(rt, hold_worker, h, NULL);
    uint64_t until = moirai_deadline_after(WAIT_NS);
    while (!atomic_load(&h->running) && moirai_clock_now_ns() < until)
        sched_yield();
    cr_assert(atomic_load(&h->running), "the holder fiber never ran");
    return handle;
}

/* The runtime's statistics once every fiber has ended (a fiber's counts
 * are added after its handle completes, when its stack is retired). */
static inline moirai_runtime_stats_t idle_stats(moirai_runtime_t *rt)
{
    moirai_runtime_stats_t st;
    uint64_t until = moirai_deadline_after(WAIT_NS);
    for (;;) {
        cr_assert_eq(moirai_runtime_stats(rt, &st), 0);
        if (st.fibers_alive == 0 || moirai_clock_now_ns() > until)
            break;
        moirai_fiber_sleep(MOIRAI_NS_PER_MS);
    }
    cr_assert_eq(st.fibers_alive, 0, "fibers still alive after the bound");
    return st;
}

#endif
