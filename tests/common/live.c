/* The live-allocation check around every Criterion test (see
 * live_table.c for the bookkeeping): the linker sends Criterion's per-test
 * setup and body here (--wrap, tests/meson.build). */
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <moirai/core/topology.h>
#include <moirai/mem/pool.h>

#include "oom.h"

/* Builds what the library keeps for the life of the process or of this
 * thread, so that the test is not blamed for it. moirai-mem is optional:
 * a test binary that does not link it has weak NULL references. */
extern int moirai_pool_create(moirai_pool_t **, const moirai_pool_config_t *) __attribute__((weak));
extern void moirai_pool_config_init(moirai_pool_config_t *, size_t) __attribute__((weak));
extern int moirai_pool_alloc(moirai_pool_t *, void **) __attribute__((weak));
extern void moirai_pool_free(moirai_pool_t *, void *) __attribute__((weak));
extern void moirai_pool_destroy(moirai_pool_t *) __attribute__((weak));
extern void moirai_stack_cache_trim(void) __attribute__((weak));

static void live_warm_up(void)
{
    (void)moirai_topology_cpu_count();
    if (moirai_pool_create != NULL) {
        moirai_pool_config_t cfg;
        moirai_pool_t *pool;
        void *obj;
        moirai_pool_config_init(&cfg, 64);
        if (moirai_pool_create(&pool, &cfg) == 0) {
            if (moirai_pool_alloc(pool, &obj) == 0)
                moirai_pool_free(pool, obj);
            moirai_pool_destroy(pool);
        }
    }
}

void moirai_test_live_unchecked(void)
{
    /* Only a marker: see oom.h. */
}

/* A test's or suite's fixture. The worker's copy of a suite's data may
 * sit at an unaligned address (UBSan reports the plain access), so these
 * copy the fields instead of dereferencing them. */
enum {
    INIT = offsetof(struct criterion_test_extra_data, init),
    FINI = offsetof(struct criterion_test_extra_data, fini)
};

static void (*fixture_get(const struct criterion_test_extra_data *data, size_t field))(void)
{
    void (*fn)(void) = NULL;
    if (data != NULL)
        memcpy(&fn, (const char *)data + field, sizeof fn);
    return fn;
}

/* Runs the teardown fixture of `data`, if any, and clears it so that
 * Criterion does not run it a second time. */
static void fixture_run_once(struct criterion_test_extra_data *data)
{
    void (*fini)(void) = fixture_get(data, FINI);
    if (fini == NULL)
        return;
    void (*none)(void) = NULL;
    memcpy((char *)data + FINI, &none, sizeof none);
    fini();
}

void __real_criterion_internal_test_setup(void);
void __real_criterion_internal_test_main(void (*fn)(void));

/* Whether this test is counted: set by the setup, read by the body's
 * wrapper (both run on the test's thread, in its own process). */
static int live_checked;

void __wrap_criterion_internal_test_setup(void)
{
    moirai_test_oom_install();
    live_checked = fixture_get(criterion_current_test->data, INIT) != moirai_test_live_unchecked &&
                   fixture_get(criterion_current_suite->data, INIT) != moirai_test_live_unchecked;
    if (live_checked) {
        live_warm_up();
        moirai__test_live_start();
    }
    __real_criterion_internal_test_setup();
}

static void (*live_body)(void);

/* Runs the test's body, then its teardowns, then the check. Criterion
 * decides a test's result when its body returns, so the check must run
 * inside the body for a leak to fail the test; and the teardowns must run
 * before it, since they may free what the test made. A body that fails
 * returns through Criterion's own jump, skipping all of this, and the
 * teardowns then run as usual. */
static void live_body_then_check(void)
{
    live_body();
    fixture_run_once(criterion_current_test->data);
    fixture_run_once(criterion_current_suite->data);
    if (!live_checked)
        return;
    /* Blocks retired through RCU (a queue's consumed segments, a map's
     * removed entries) are freed after a grace period, on liburcu's
     * thread: wait for them (the trim does). Then free the idle nodes the
     * stack keeps for reuse, which the test did not leak. */
    if (moirai_stack_cache_trim != NULL)
        moirai_stack_cache_trim();
    long live = moirai__test_live_stop();
    if (live > 0 && moirai_test_oom_is_current()) {
        fprintf(stderr, "%s/%s: %ld block(s) made during the test are still live:\n",
                criterion_current_test->category, criterion_current_test->name, live);
        moirai__test_live_report();
        cr_assert_fail("%ld block(s) allocated through the hook leaked", live);
    }
}

void __wrap_criterion_internal_test_main(void (*fn)(void))
{
    live_body = fn;
    __real_criterion_internal_test_main(live_body_then_check);
}
