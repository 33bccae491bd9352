/* Helpers for the tests of moirai-sync's blocking primitives.
 *
 * Parameters come from the environment, with defaults sized for a quick
 * plain run; every count is divided by MOIRAI_TEST_SCALE (set by the test
 * meson under sanitizers) so sanitized runs stay short. The invariants
 * checked never depend on the values.
 *
 *   MOIRAI_SYNC_THREADS    threads per contended test        (default 4)
 *   MOIRAI_SYNC_ITERS      operations per thread             (default per test)
 *   MOIRAI_SYNC_STRESS_MS  duration of each stress phase, ms (default 2000)
 */
#ifndef MOIRAI_TEST_LOCK_UTIL_H
#define MOIRAI_TEST_LOCK_UTIL_H

#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <moirai/core/clock.h>

#include "test_scale.h"

/* The sanitizer slow-down divisor, at least 1. */
static inline long test_scale(void)
{
    return env_long("MOIRAI_TEST_SCALE", 1);
}

/* Integer parameter `name` from the environment, else `def`. */
static inline long test_param(const char *name, long def)
{
    return env_long(name, def);
}

/* An iteration count: the parameter divided by the scale, at least `min`. */
static inline long test_iters(long def, long min)
{
    long v = test_param("MOIRAI_SYNC_ITERS", def) / test_scale();
    return v >= min ? v : min;
}

/* Thread count for contended tests (not scaled: races need threads). */
static inline int test_threads(void)
{
    long v = test_param("MOIRAI_SYNC_THREADS", 4);
    return (int)(v < 2 ? 2 : v > 64 ? 64 : v);
}

/* Duration of a stress phase in ns, scaled down under sanitizers. */
static inline uint64_t test_stress_ns(void)
{
    long ms = test_param("MOIRAI_SYNC_STRESS_MS", 2000) / test_scale();
    return (uint64_t)(ms < 50 ? 50 : ms) * MOIRAI_NS_PER_MS;
}

/* A deadline `ms` milliseconds away. */
static inline uint64_t test_deadline_ms(uint64_t ms)
{
    return moirai_deadline_after(ms * MOIRAI_NS_PER_MS);
}

static inline void test_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Runs fn(arg, i) on `n` threads (i = 0..n-1) and joins them all. */
typedef struct test_thread_ctx {
    void *(*fn)(void *arg, int index);
    void *arg;
    int index;
} test_thread_ctx_t;

static void *test_thread_tramp(void *p)
{
    test_thread_ctx_t *c = p;
    return c->fn(c->arg, c->index);
}

static inline void test_run_threads(int n, void *(*fn)(void *arg, int index), void *arg)
{
    pthread_t *tids = calloc((size_t)n, sizeof *tids);
    test_thread_ctx_t *ctx = calloc((size_t)n, sizeof *ctx);
    cr_assert(tids != NULL && ctx != NULL);
    for (int i = 0; i < n; i++) {
        ctx[i] = (test_thread_ctx_t){fn, arg, i};
        cr_assert_eq(pthread_create(&tids[i], NULL, test_thread_tramp, &ctx[i]), 0);
    }
    for (int i = 0; i < n; i++)
        cr_assert_eq(pthread_join(tids[i], NULL), 0);
    free(ctx);
    free(tids);
}

/* Starts one thread running fn(arg); join with pthread_join. */
static inline pthread_t test_spawn(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, fn, arg), 0);
    return t;
}

/* Spins (yielding) until `*flag` reaches at least `value`. Bounded by the
 * test's own timeout. */
static inline void test_await_at_least(_Atomic long *flag, long value)
{
    while (atomic_load_explicit(flag, memory_order_acquire) < value)
        sched_yield();
}

#endif
