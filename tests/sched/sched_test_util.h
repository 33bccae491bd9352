/* Helpers shared by the tests of moirai-sched's public API: a scheduler
 * made and destroyed with the defaults, waits bounded by WAIT_NS, and the
 * pieces the shutdown tests put together (a task that holds a worker, a
 * destroy running on a thread of its own, a probe for "destroy has
 * begun").
 *
 * The functions that assert run on the test thread only (Criterion's
 * asserts belong there); hold_task() runs on a worker and the destroyer on
 * its own thread, and neither asserts. Header-only. */
#ifndef MOIRAI_TEST_SCHED_UTIL_H
#define MOIRAI_TEST_SCHED_UTIL_H

#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/sched/sched.h>

/* Every wait on another thread is bounded by this: long enough for any
 * noisy machine, short enough that a lost wake-up fails instead of hangs. */
#define WAIT_NS (30 * MOIRAI_NS_PER_S)

/* A scheduler with `workers` workers (0: one per CPU), defaults otherwise. */
static inline moirai_sched_t *make_sched(int workers)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = workers;
    moirai_sched_t *s = NULL;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    cr_assert_not_null(s);
    return s;
}

/* Destroys `s` with MOIRAI_SHUTDOWN_DRAIN and asserts that it succeeded. */
static inline void drop_sched(moirai_sched_t *s)
{
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

/* Waits until `*flag` is non-zero; false if WAIT_NS passed first. */
static inline bool await_flag(_Atomic int *flag)
{
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (atomic_load(flag) == 0) {
        if (moirai_clock_now_ns() > deadline)
            return false;
        sched_yield();
    }
    return true;
}

/* Runs `fn(arg)` as a task of `s` and returns its status. */
static inline int run_in_task(moirai_sched_t *s, moirai_task_fn fn, void *arg)
{
    moirai_handle_t *h = NULL;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_sched_spawn(s, fn, arg, NULL, h), 0);
    int rc = moirai_handle_join_timed(h, moirai_deadline_after(WAIT_NS), NULL);
    cr_assert_neq(rc, -ETIMEDOUT, "the task never finished");
    moirai_handle_release(h);
    return rc;
}

/* A task that does nothing and succeeds. */
static inline int noop_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    return 0;
}

/* ---- Holding a worker ---- */

/* A worker held by hold_task() until the test releases it. */
typedef struct hold {
    _Atomic int started; /* hold_task() is running */
    _Atomic int release; /* set by the test: hold_task() may return */
} hold_t;

/* Task: says it started, then holds its worker until `release` is set.
 * The wait is not bounded: every test releases the hold, and one that
 * did not would fail by its Criterion timeout. */
static inline int hold_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    hold_t *h = arg;
    atomic_store(&h->started, 1);
    while (!atomic_load(&h->release))
        sched_yield();
    return 0;
}

/* Spawns hold_task() onto `s` from outside and waits until a worker runs
 * it, so that worker runs nothing else until release_worker(). */
static inline void hold_worker(moirai_sched_t *s, hold_t *h)
{
    atomic_init(&h->started, 0);
    atomic_init(&h->release, 0);
    cr_assert_eq(moirai_sched_spawn(s, hold_task, h, NULL, NULL), 0);
    cr_assert(await_flag(&h->started), "the holding task never started");
}

/* Lets the hold_task() of `h` return; any thread may call it. */
static inline void release_worker(hold_t *h)
{
    atomic_store(&h->release, 1);
}

/* ---- Destroy on a thread of its own ---- */

/* A moirai_sched_destroy() running on its own thread. */
typedef struct destroyer {
    moirai_sched_t *sched;
    moirai_shutdown_t how;
    int rc; /* what destroy returned; read after finish_destroy() */
    pthread_t thread;
} destroyer_t;

/* Thread body of start_destroy(): destroys and keeps the result. */
static inline void *destroyer_main(void *arg)
{
    destroyer_t *d = arg;
    d->rc = moirai_sched_destroy(d->sched, d->how);
    return NULL;
}

/* Starts moirai_sched_destroy(s, how) on a new thread; does not wait. */
static inline void start_destroy(destroyer_t *d, moirai_sched_t *s, moirai_shutdown_t how)
{
    d->sched = s;
    d->how = how;
    d->rc = 1; /* "never returned" */
    cr_assert_eq(pthread_create(&d->thread, NULL, destroyer_main, d), 0);
}

/* Joins the thread of start_destroy() and returns what destroy returned. */
static inline int finish_destroy(destroyer_t *d)
{
    cr_assert_eq(pthread_join(d->thread, NULL), 0);
    return d->rc;
}

/* Returns true once destroy of `s` has begun, seen as a spawn from this
 * thread refused with -ESHUTDOWN; false if WAIT_NS passed first. Spawns
 * accepted before that run noop_task(). */
static inline bool await_shutdown(moirai_sched_t *s)
{
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (moirai_clock_now_ns() < deadline) {
        if (moirai_sched_spawn(s, noop_task, NULL, NULL, NULL) == -ESHUTDOWN)
            return true;
        sched_yield();
    }
    return false;
}

#endif
