/* The allocation hook, and the failing allocator tests are built on. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <moirai/core/alloc.h>
#include <moirai/core/error.h>

#include "oom.h"

/* An allocator that forwards to libc and records every call. */
typedef struct recorder {
    int mallocs, callocs, reallocs, aligned, frees;
    size_t last_size, last_count, last_alignment;
    void *last_ptr;
} recorder_t;

static void *rec_malloc(void *ctx, size_t size)
{
    recorder_t *r = ctx;

    r->mallocs++;
    r->last_size = size;
    return malloc(size);
}

static void *rec_calloc(void *ctx, size_t count, size_t size)
{
    recorder_t *r = ctx;

    r->callocs++;
    r->last_count = count;
    r->last_size = size;
    return calloc(count, size);
}

static void *rec_realloc(void *ctx, void *ptr, size_t size)
{
    recorder_t *r = ctx;

    r->reallocs++;
    r->last_ptr = ptr;
    r->last_size = size;
    return realloc(ptr, size);
}

static void *rec_aligned(void *ctx, size_t alignment, size_t size)
{
    recorder_t *r = ctx;
    void *p;

    r->aligned++;
    r->last_alignment = alignment;
    r->last_size = size;
    return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}

static void rec_free(void *ctx, void *ptr)
{
    recorder_t *r = ctx;

    r->frees++;
    r->last_ptr = ptr;
    free(ptr);
}

static moirai_allocator_t recording(recorder_t *r)
{
    return (moirai_allocator_t){rec_malloc, rec_calloc, rec_realloc, rec_aligned, rec_free, r};
}

static int same_allocator(const moirai_allocator_t *a, const moirai_allocator_t *b)
{
    return a->malloc_fn == b->malloc_fn && a->calloc_fn == b->calloc_fn &&
           a->realloc_fn == b->realloc_fn && a->aligned_alloc_fn == b->aligned_alloc_fn &&
           a->free_fn == b->free_fn && a->arg == b->arg;
}

Test(alloc, default_allocator_works, .timeout = 10)
{
    moirai_allocator_t a;
    unsigned char *p, *z;

    moirai_allocator_get(&a);
    cr_assert(a.malloc_fn && a.calloc_fn && a.realloc_fn && a.aligned_alloc_fn && a.free_fn);

    p = moirai_malloc(100);
    cr_assert_not_null(p);
    memset(p, 0xab, 100);
    p = moirai_realloc(p, 10000);
    cr_assert_not_null(p);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(p[i], 0xab, "realloc lost byte %d", i);
    moirai_free(p);

    z = moirai_calloc(1000, 4);
    cr_assert_not_null(z);
    for (int i = 0; i < 4000; i++)
        cr_assert_eq(z[i], 0);
    moirai_free(z);

    p = moirai_realloc(NULL, 16);
    cr_assert_not_null(p, "realloc(NULL, n) allocates");
    moirai_free(p);
    moirai_free(NULL);
}

Test(alloc, set_rejects_null_functions_and_keeps_the_old_allocator, .timeout = 10)
{
    static recorder_t rec;
    moirai_allocator_t installed = recording(&rec), before, after;

    cr_assert_eq(moirai_allocator_set(&installed), 0);
    moirai_allocator_get(&before);
    cr_assert(same_allocator(&before, &installed));

    for (int hole = 0; hole < 5; hole++) {
        moirai_allocator_t bad = recording(&rec);

        switch (hole) {
        case 0:
            bad.malloc_fn = NULL;
            break;
        case 1:
            bad.calloc_fn = NULL;
            break;
        case 2:
            bad.realloc_fn = NULL;
            break;
        case 3:
            bad.aligned_alloc_fn = NULL;
            break;
        default:
            bad.free_fn = NULL;
            break;
        }
        bad.arg = &bad; /* a different arg, so a partial install would show */
        cr_assert_eq(moirai_allocator_set(&bad), MOIRAI_EINVAL, "hole %d", hole);
        moirai_allocator_get(&after);
        cr_assert(same_allocator(&after, &before), "a rejected allocator changed state (hole %d)",
                  hole);
    }
    /* Still in service. */
    moirai_free(moirai_malloc(8));
    cr_assert_eq(rec.mallocs, 1);
    cr_assert_eq(rec.frees, 1);
    cr_assert_eq(moirai_allocator_set(NULL), 0);
}

Test(alloc, custom_allocator_sees_every_call_with_its_ctx, .timeout = 10)
{
    static recorder_t rec;
    moirai_allocator_t mine = recording(&rec), libc_default, restored;
    void *p, *q, *a;

    /* Every test starts under the test allocator (tests/common/live.c):
     * start this one from the C library's. */
    cr_assert_eq(moirai_allocator_set(NULL), 0);
    moirai_allocator_get(&libc_default);
    cr_assert_eq(moirai_allocator_set(&mine), 0);

    p = moirai_malloc(24);
    cr_assert_eq(rec.mallocs, 1);
    cr_assert_eq(rec.last_size, 24);
    q = moirai_calloc(3, 8);
    cr_assert_eq(rec.callocs, 1);
    cr_assert_eq(rec.last_count, 3);
    cr_assert_eq(rec.last_size, 8);
    p = moirai_realloc(p, 48);
    cr_assert_eq(rec.reallocs, 1);
    cr_assert_eq(rec.last_size, 48);
    a = moirai_aligned_alloc(256, 100);
    cr_assert_eq(rec.aligned, 1);
    cr_assert_eq(rec.last_alignment, 256);
    cr_assert_eq(rec.last_size, 100, "size is not rounded");
    moirai_free(a);
    cr_assert_eq(rec.frees, 1);
    cr_assert_eq(rec.last_ptr, a);
    moirai_free(p);
    moirai_free(q);
    moirai_free(NULL);
    cr_assert_eq(rec.frees, 3, "moirai_free(NULL) reached the allocator");

    /* NULL restores the C library's allocator. */
    cr_assert_eq(moirai_allocator_set(NULL), 0);
    moirai_allocator_get(&restored);
    cr_assert(same_allocator(&restored, &libc_default));
    moirai_free(moirai_malloc(8));
    cr_assert_eq(rec.mallocs, 1);
}

Test(alloc, calloc_overflow_returns_null_without_calling_the_allocator, .timeout = 10)
{
    static recorder_t rec;
    moirai_allocator_t mine = recording(&rec);

    cr_assert_eq(moirai_allocator_set(&mine), 0);
    cr_assert_null(moirai_calloc(SIZE_MAX / 2 + 1, 2));
    cr_assert_null(moirai_calloc(2, SIZE_MAX / 2 + 1));
    cr_assert_null(moirai_calloc(SIZE_MAX, SIZE_MAX));
    cr_assert_eq(rec.callocs, 0, "an overflowing calloc reached the allocator");
    /* Zero in either place is not an overflow. */
    moirai_free(moirai_calloc(0, SIZE_MAX));
    moirai_free(moirai_calloc(SIZE_MAX, 0));
    cr_assert_eq(rec.callocs, 2);
    cr_assert_eq(moirai_allocator_set(NULL), 0);
}

Test(alloc, aligned_alloc_honours_alignment, .timeout = 10)
{
    for (size_t align = 1; align <= 65536; align *= 2) {
        size_t expect = align < sizeof(void *) ? sizeof(void *) : align;

        for (size_t size = 1; size <= 3 * align + 1; size = size * 3 + 1) {
            unsigned char *p = moirai_aligned_alloc(align, size);

            cr_assert_not_null(p, "alignment %zu size %zu", align, size);
            cr_assert_eq((uintptr_t)p % expect, 0, "alignment %zu gave %p", align, (void *)p);
            memset(p, 0x5a, size);
            moirai_free(p);
        }
    }
}

Test(alloc, aligned_alloc_raises_small_alignment_and_rejects_non_powers_of_two, .timeout = 10)
{
    static recorder_t rec;
    moirai_allocator_t mine = recording(&rec);
    const size_t bad[] = {0, 3, 5, 12, 24, 48, 100, 4097, SIZE_MAX};

    cr_assert_eq(moirai_allocator_set(&mine), 0);
    for (size_t align = 1; align < sizeof(void *); align *= 2) {
        moirai_free(moirai_aligned_alloc(align, 10));
        cr_assert_eq(rec.last_alignment, sizeof(void *), "alignment %zu was not raised", align);
    }
    rec.aligned = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_null(moirai_aligned_alloc(bad[i], 64), "alignment %zu accepted", bad[i]);
    cr_assert_eq(rec.aligned, 0, "a rejected alignment reached the allocator");
    cr_assert_eq(moirai_allocator_set(NULL), 0);
}

/* ---- the OOM helper ---- */

Test(oom_helper, fails_exactly_the_chosen_allocation, .timeout = 10)
{
    void *p[6];

    moirai_test_oom_install();
    moirai_test_oom_fail_at(2);
    p[0] = moirai_malloc(8);
    p[1] = moirai_calloc(1, 8);
    p[2] = moirai_malloc(8);
    p[3] = moirai_aligned_alloc(64, 8);
    p[4] = moirai_malloc(8);
    cr_assert_not_null(p[0]);
    cr_assert_not_null(p[1]);
    cr_assert_null(p[2], "allocation 2 should have failed");
    cr_assert_not_null(p[3]);
    cr_assert_not_null(p[4]);
    cr_assert_eq(moirai_test_oom_count(), 5);
    for (int i = 0; i < 5; i++)
        moirai_free(p[i]);
    cr_assert_eq(moirai_test_oom_count(), 5, "frees are not counted");

    /* A failing realloc leaves the block alone. */
    p[5] = moirai_malloc(4);
    cr_assert_not_null(p[5]);
    memcpy(p[5], "abc", 4);
    moirai_test_oom_fail_at(0);
    cr_assert_null(moirai_realloc(p[5], 4096));
    cr_assert_str_eq(p[5], "abc");
    moirai_free(p[5]);

    moirai_test_oom_fail_at(-1);
    for (int i = 0; i < 100; i++) {
        void *q = moirai_malloc(1);

        cr_assert_not_null(q, "fail_at(-1) still failed");
        moirai_free(q);
    }
    cr_assert_eq(moirai_test_oom_count(), 100);
    moirai_test_oom_uninstall();
}

Test(oom_helper, install_replaces_another_allocator_and_uninstall_keeps_it, .timeout = 10)
{
    static recorder_t rec;
    moirai_allocator_t mine = recording(&rec);

    cr_assert_eq(moirai_allocator_set(&mine), 0);
    cr_assert_not(moirai_test_oom_is_current());
    moirai_test_oom_install();
    cr_assert(moirai_test_oom_is_current());
    moirai_free(moirai_malloc(8));
    cr_assert_eq(rec.mallocs, 0, "the test allocator forwards to libc, not the previous one");
    /* Uninstall stops the failures and keeps the allocator: it is also
     * the live-allocation counter every test runs under. */
    moirai_test_oom_fail_all();
    moirai_test_oom_uninstall();
    cr_assert(moirai_test_oom_is_current());
    void *p = moirai_malloc(8);
    cr_assert_not_null(p, "an allocation failed after uninstall");
    moirai_free(p);
}

/* An operation with three allocations that undoes itself on failure. */
typedef struct three {
    void *a, *b, *c;
    long checked[8];
    int checks;
} three_t;

static int make_three(void *ctx)
{
    three_t *t = ctx;
    void *a = moirai_malloc(16), *b = NULL, *c = NULL;

    if (a == NULL)
        goto fail;
    b = moirai_calloc(2, 16);
    if (b == NULL)
        goto fail;
    c = moirai_aligned_alloc(64, 16);
    if (c == NULL)
        goto fail;
    t->a = a;
    t->b = b;
    t->c = c;
    return 0;
fail:
    moirai_free(a);
    moirai_free(b);
    return MOIRAI_ENOMEM;
}

static void three_unchanged(void *ctx, long n)
{
    three_t *t = ctx;

    cr_assert(t->a == NULL && t->b == NULL && t->c == NULL);
    if (t->checks < 8)
        t->checked[t->checks] = n;
    t->checks++;
}

Test(oom_helper, sweep_fails_each_allocation_in_turn, .timeout = 10)
{
    static three_t t;
    long failures;

    moirai_test_oom_install();
    failures = MOIRAI_TEST_OOM_SWEEP(make_three, three_unchanged, &t);
    cr_assert_eq(failures, 3);
    cr_assert_eq(t.checks, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(t.checked[i], i);
    cr_assert(t.a && t.b && t.c);
    /* The sweep leaves failure switched off. */
    void *q = moirai_malloc(1);
    cr_assert_not_null(q);
    moirai_free(q);
    moirai_free(t.a);
    moirai_free(t.b);
    moirai_free(t.c);
    moirai_test_oom_uninstall();
}

static int wrong_error_at_second(void *ctx)
{
    int *runs = ctx;
    void *p = moirai_malloc(1);

    (*runs)++;
    if (p == NULL)
        return *runs == 2 ? MOIRAI_EINVAL : MOIRAI_ENOMEM;
    moirai_free(p);
    p = moirai_malloc(1);
    if (p == NULL)
        return *runs == 2 ? MOIRAI_EINVAL : MOIRAI_ENOMEM;
    moirai_free(p);
    return 0;
}

Test(oom_helper, sweep_stops_at_a_wrong_error, .timeout = 10)
{
    int runs = 0;
    moirai_test_oom_sweep_result_t r;

    moirai_test_oom_install();
    r = moirai_test_oom_sweep(wrong_error_at_second, NULL, &runs, MOIRAI_TEST_OOM_LIMIT);
    cr_assert_eq(r.rc, MOIRAI_EINVAL);
    cr_assert_eq(r.failures, 1);
    cr_assert_eq(runs, 2);
    cr_assert_eq(r.allocations, 2, "run 1 made allocation 0 and failed allocation 1");
    moirai_test_oom_uninstall();
}

static int never_succeeds(void *ctx)
{
    (void)ctx;
    return MOIRAI_ENOMEM;
}

Test(oom_helper, sweep_gives_up_at_the_limit, .timeout = 10)
{
    moirai_test_oom_sweep_result_t r;

    moirai_test_oom_install();
    r = moirai_test_oom_sweep(never_succeeds, NULL, NULL, 50);
    cr_assert_eq(r.rc, MOIRAI_ENOMEM);
    cr_assert_eq(r.failures, 50);
    moirai_test_oom_uninstall();
}

#define OOM_THREADS    4
#define OOM_PER_THREAD 2000
static atomic_int oom_nulls;

static void *alloc_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < OOM_PER_THREAD; i++) {
        void *p = moirai_malloc(32);

        if (p == NULL)
            atomic_fetch_add(&oom_nulls, 1);
        moirai_free(p);
    }
    return NULL;
}

Test(oom_helper, counts_exactly_across_threads, .timeout = 30)
{
    pthread_t th[OOM_THREADS];

    moirai_test_oom_install();
    moirai_test_oom_fail_at(OOM_THREADS * OOM_PER_THREAD / 2 + 17);
    for (int t = 0; t < OOM_THREADS; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, alloc_many, NULL), 0);
    for (int t = 0; t < OOM_THREADS; t++)
        pthread_join(th[t], NULL);
    cr_assert_eq(moirai_test_oom_count(), OOM_THREADS * OOM_PER_THREAD);
    cr_assert_eq(atomic_load(&oom_nulls), 1, "exactly one allocation fails");
    moirai_test_oom_uninstall();
}
