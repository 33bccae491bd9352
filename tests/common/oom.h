/* The failing allocator used by every module's out-of-memory tests.
 *
 * moirai_test_oom_install() puts a counting allocator in front of the C
 * library's. It counts every allocation Moirai makes (malloc, calloc,
 * realloc and aligned allocations; frees are not counted) and can make the
 * n-th one from a chosen point fail. Frees always reach the C library, so
 * memory allocated before installing, or while another allocator was
 * installed, may be freed through it and the other way round: it may be
 * installed and removed at any quiet point.
 *
 * The counters are atomics, so threads may allocate concurrently; which
 * thread receives the failure is then up to the scheduler. fail_at() and
 * install/uninstall themselves are meant for quiet points (no allocation
 * in flight on another thread).
 *
 * A sweep proves an operation handles every allocation failure:
 *
 *     static int op(void *ctx) { return moirai_thing_create(ctx); }
 *     static void unchanged(void *ctx, long n) { ...cr_assert state as before... }
 *
 *     moirai_test_oom_install();
 *     MOIRAI_TEST_OOM_SWEEP(op, unchanged, &ctx);
 *     moirai_test_oom_uninstall();
 *
 * It runs op with failure at n = 0, 1, 2, ... until op succeeds, asserting
 * every earlier run returned -ENOMEM and calling the check after each.
 * Leaks on the failing paths are left to LeakSanitizer (the ASan build). */
#ifndef MOIRAI_TEST_OOM_H
#define MOIRAI_TEST_OOM_H

#include <errno.h>
#include <stddef.h>

#include <moirai/core/error.h>

/* Installs the test allocator (failing on plan, and counting live blocks
 * for live.c), with no failure planned and the count at 0. Every
 * Criterion test already runs under it (live.c installs it before the
 * test); a test calls this again after installing an allocator of its
 * own. */
void moirai_test_oom_install(void);

/* Non-zero when the test allocator is the installed one. */
int moirai_test_oom_is_current(void);

/* Makes the n-th allocation from now fail (0-based: 0 fails the very next
 * one); n == -1 means never. Resets the count to 0. Only that one
 * allocation fails; later ones succeed again. */
void moirai_test_oom_fail_at(long n);

/* Makes every allocation from now on fail, until the next fail_at() or
 * uninstall. Resets the count to 0. */
void moirai_test_oom_fail_all(void);
/* Allocations attempted (failed ones included) since the last fail_at(),
 * fail_all() or install. */
long moirai_test_oom_count(void);

/* Stops planned failures. The test allocator stays installed: it also
 * counts live blocks for every test (live.c). */
void moirai_test_oom_uninstall(void);

/* live.c's bookkeeping, called by the test allocator: a block was made
 * (counted when the test is running, or as `counted` says), or is gone
 * (returns whether it was counted). */
void moirai__test_live_made(void *p, size_t size);
void moirai__test_live_made_as(void *p, size_t size, int counted);
int moirai__test_live_gone(void *p);
/* Starts counting the blocks made from now on; stops and returns how many
 * of them are live (-1: some could not be tracked); prints them. */
void moirai__test_live_start(void);
/* Counted blocks live now (tests of what a call frees). */
long moirai__test_live_now(void);
long moirai__test_live_stop(void);
void moirai__test_live_report(void);

/* Marks a test that live.c does not check, as `.init =
 * moirai_test_live_unchecked`. For a test that needs the process as fresh
 * as Criterion leaves it (no topology read yet: live.c's warm-up would
 * read it), or that replaces the library's process-lifetime state (loads
 * another topology), whose new blocks are then rightly still live. It
 * does nothing itself. */
void moirai_test_live_unchecked(void);

/* The result of one sweep. */
typedef struct moirai_test_oom_sweep_result {
    long failures;    /* runs that returned -ENOMEM (the successful one is run `failures`) */
    int rc;           /* what the last run returned: 0 unless the sweep stopped early */
    long allocations; /* allocations the last run attempted */
} moirai_test_oom_sweep_result_t;

/* Runs `op(ctx)` with the n-th allocation failing for n = 0, 1, 2, ...
 * It stops at the first run that returns something other than -ENOMEM
 * (success, or a wrong error the caller should report) or after `limit`
 * runs (rc is then -ENOMEM). After every -ENOMEM run it calls
 * `after_failure(ctx, n)` when that is not NULL. Requires install(). Leaves
 * failure disabled (fail_at(-1)) when it returns. */
moirai_test_oom_sweep_result_t moirai_test_oom_sweep(int (*op)(void *ctx),
                                                     void (*after_failure)(void *ctx, long n),
                                                     void *ctx, long limit);

/* The largest number of runs a sweep makes; far above what any single
 * Moirai operation allocates. */
#define MOIRAI_TEST_OOM_LIMIT 100000L

/* Sweeps `op` and asserts with Criterion that it ended in success after
 * only -ENOMEM failures; evaluates to the number of failing runs (a
 * caller that knows `op` allocates can assert it is > 0). Needs
 * <criterion/criterion.h>. */
#define MOIRAI_TEST_OOM_SWEEP(op, after_failure, ctx)                                              \
    __extension__({                                                                                \
        moirai_test_oom_sweep_result_t moirai_oom_r_ =                                             \
            moirai_test_oom_sweep((op), (after_failure), (ctx), MOIRAI_TEST_OOM_LIMIT);            \
        cr_assert_eq(moirai_oom_r_.rc, 0,                                                          \
                     "OOM sweep: the run with allocation %ld failing returned %d (%s); "           \
                     "expected -ENOMEM, or 0 once no allocation fails",                            \
                     moirai_oom_r_.failures, moirai_oom_r_.rc, moirai_err_name(moirai_oom_r_.rc)); \
        moirai_oom_r_.failures;                                                                    \
    })

#endif
