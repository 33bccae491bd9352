/* Checked builds: AddressSanitizer reports a use after release (and a
 * touch of memory the pool never handed out), and a double release is
 * logged and aborts.
 *
 * The offending code runs in a forked child whose sanitizer reports go to
 * a private directory (set with __sanitizer_set_report_path) and whose
 * stderr is captured, so the test wrapper, which fails any test that
 * leaves a sanitizer report behind, sees nothing; this test checks the
 * child's exit and report instead. Expectations that need a check the
 * build lacks are skipped with the reason. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <criterion/criterion.h>

#include <moirai/mem/pool.h>

#include "asan_child.h"

#define POISON_DIR "/tmp/moirai-poison.XXXXXX"

/* How a child ended and what it said (its stderr and sanitizer reports). */
typedef struct child_result {
    int status;
    char text[16384];
} child_result_t;

static void run_child(void (*fn)(void), child_result_t *r)
{
    asan_run_child(POISON_DIR, fn, &r->status, r->text, sizeof(r->text));
}

static moirai_pool_t *make_pool(size_t size, size_t align)
{
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, size);
    cfg.alignment = align;
    moirai_pool_t *pool;
    if (moirai_pool_create(&pool, &cfg) != 0)
        abort();
    return pool;
}

/* The child bodies. Each does something the checks must catch; volatile
 * accesses keep the compiler from removing them. */

static void use_after_release(void)
{
    moirai_pool_t *pool = make_pool(64, 0);
    void *obj;
    moirai_pool_alloc(pool, &obj);
    memset(obj, 1, 64);
    moirai_pool_free(pool, obj);
    ((volatile char *)obj)[10] = 2;
}

static void read_after_release_other_thread_cache(void)
{
    moirai_pool_t *pool = make_pool(32, 0);
    void *a, *b;
    moirai_pool_alloc(pool, &a);
    moirai_pool_alloc(pool, &b);
    moirai_pool_free(pool, a);
    moirai_pool_flush(pool); /* a now sits in the depot */
    volatile char c = ((volatile char *)a)[0];
    (void)c;
}

static void overflow_into_padding(void)
{
    /* 20-byte objects 32 bytes apart: bytes 20..31 are not the caller's. */
    moirai_pool_t *pool = make_pool(20, 32);
    void *obj;
    moirai_pool_alloc(pool, &obj);
    ((volatile char *)obj)[19] = 1; /* fine */
    ((volatile char *)obj)[24] = 1; /* not */
}

static void touch_never_allocated(void)
{
    moirai_pool_t *pool = make_pool(64, 64);
    void *obj;
    moirai_pool_alloc(pool, &obj);
    ((volatile char *)obj)[64] = 1; /* the next object, still in the chunk */
}

static void double_release(void)
{
    moirai_pool_t *pool = make_pool(48, 0);
    void *obj, *other;
    moirai_pool_alloc(pool, &obj);
    moirai_pool_alloc(pool, &other);
    moirai_pool_free(pool, obj);
    moirai_pool_free(pool, other);
    moirai_pool_free(pool, obj);
}

static void clean_use(void)
{
    moirai_pool_t *pool = make_pool(64, 0);
    void *objs[300];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 300; i++) {
            moirai_pool_alloc(pool, &objs[i]);
            memset(objs[i], round, 64);
        }
        for (int i = 0; i < 300; i++)
            moirai_pool_free(pool, objs[i]);
    }
    moirai_pool_destroy(pool);
}

static void expect_asan_report(void (*fn)(void), const char *what)
{
    if (!HAVE_ASAN)
        cr_skip("needs an AddressSanitizer build (released objects are poisoned only there)");
    child_result_t *r = malloc(sizeof(*r));
    cr_assert_not_null(r);
    run_child(fn, r);
    cr_assert(!(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0),
              "%s was not caught; child said:\n%s", what, r->text);
    cr_assert_not_null(strstr(r->text, "use-after-poison"),
                       "%s: expected a use-after-poison report, got:\n%s", what, r->text);
    free(r);
}

Test(pool_poison, clean_use_reports_nothing, .timeout = 60)
{
    child_result_t *r = malloc(sizeof(*r));
    cr_assert_not_null(r);
    run_child(clean_use, r);
    cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0, "child said:\n%s", r->text);
    cr_assert_eq(r->text[0], '\0', "unexpected output:\n%s", r->text);
    free(r);
}

Test(pool_poison, use_after_release_is_reported, .timeout = 60)
{
    expect_asan_report(use_after_release, "a write after release");
}

Test(pool_poison, read_of_object_in_depot_is_reported, .timeout = 60)
{
    expect_asan_report(read_after_release_other_thread_cache, "a read of a flushed object");
}

Test(pool_poison, overflow_into_padding_is_reported, .timeout = 60)
{
    expect_asan_report(overflow_into_padding, "a write past the object size");
}

Test(pool_poison, never_allocated_memory_is_reported, .timeout = 60)
{
    expect_asan_report(touch_never_allocated, "a write into an object never handed out");
}

Test(pool_poison, double_release_aborts, .timeout = 60)
{
    if (!(moirai_pool_checks() & MOIRAI_POOL_CHECK_DOUBLE_RELEASE))
        cr_skip("this build of moirai-mem does not check releases (optimised, no "
                "AddressSanitizer; see moirai_pool_checks())");
    child_result_t *r = malloc(sizeof(*r));
    cr_assert_not_null(r);
    run_child(double_release, r);
    cr_assert(WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGABRT,
              "a double release must abort; child status %#x said:\n%s", r->status, r->text);
    cr_assert_not_null(strstr(r->text, "released twice"), "child said:\n%s", r->text);
    free(r);
}
