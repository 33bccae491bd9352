/* The counting, failing allocator for out-of-memory tests. */
#include <stdatomic.h>
#include <stdlib.h>

#include <moirai/core/alloc.h>
#include <moirai/core/error.h>

#include "oom.h"

/* Relaxed throughout: the counters order no other memory. Each allocation
 * takes a unique ticket from `oom_count`, so exactly one allocation (the
 * one drawing ticket `oom_fail_at`) fails even when threads race. */
static atomic_long oom_count;
static atomic_long oom_fail_at = -1;
/* Non-zero: every allocation fails (moirai_test_oom_fail_all()). */
static atomic_int oom_fail_every;
static moirai_allocator_t oom_previous;
static int oom_installed;

/* True when this allocation is the one planned to fail. */
static int oom_should_fail(void)
{
    long ticket = atomic_fetch_add_explicit(&oom_count, 1, memory_order_relaxed);
    if (atomic_load_explicit(&oom_fail_every, memory_order_relaxed))
        return 1;

    return ticket == atomic_load_explicit(&oom_fail_at, memory_order_relaxed);
}

static void *oom_malloc(void *ctx, size_t size)
{
    (void)ctx;
    return oom_should_fail() ? NULL : malloc(size);
}

static void *oom_calloc(void *ctx, size_t count, size_t size)
{
    (void)ctx;
    return oom_should_fail() ? NULL : calloc(count, size);
}

static void *oom_realloc(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    /* A failed realloc leaves `ptr` allocated, as the C function does. */
    return oom_should_fail() ? NULL : realloc(ptr, size);
}

static void *oom_aligned_alloc(void *ctx, size_t alignment, size_t size)
{
    void *p;

    (void)ctx;
    if (oom_should_fail() || posix_memalign(&p, alignment, size) != 0)
        return NULL;
    return p;
}

static void oom_free(void *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

void moirai_test_oom_install(void)
{
    static const moirai_allocator_t counting = {
        .malloc_fn = oom_malloc,
        .calloc_fn = oom_calloc,
        .realloc_fn = oom_realloc,
        .aligned_alloc_fn = oom_aligned_alloc,
        .free_fn = oom_free,
        .arg = NULL,
    };

    if (!oom_installed) {
        moirai_allocator_get(&oom_previous);
        oom_installed = 1;
    }
    moirai_test_oom_fail_at(-1);
    (void)moirai_allocator_set(&counting);
}

void moirai_test_oom_fail_all(void)
{
    atomic_store_explicit(&oom_count, 0, memory_order_relaxed);
    atomic_store_explicit(&oom_fail_every, 1, memory_order_relaxed);
}

void moirai_test_oom_fail_at(long n)
{
    atomic_store_explicit(&oom_fail_every, 0, memory_order_relaxed);
    /* Disable first, so that an allocation slipping in between the two
     * stores cannot match the new target against the old count. */
    atomic_store_explicit(&oom_fail_at, -1, memory_order_relaxed);
    atomic_store_explicit(&oom_count, 0, memory_order_relaxed);
    atomic_store_explicit(&oom_fail_at, n < 0 ? -1 : n, memory_order_relaxed);
}

long moirai_test_oom_count(void)
{
    return atomic_load_explicit(&oom_count, memory_order_relaxed);
}

void moirai_test_oom_uninstall(void)
{
    if (!oom_installed)
        return;
    moirai_test_oom_fail_at(-1);
    (void)moirai_allocator_set(&oom_previous);
    oom_installed = 0;
}

moirai_test_oom_sweep_result_t moirai_test_oom_sweep(int (*op)(void *ctx),
                                                     void (*after_failure)(void *ctx, long n),
                                                     void *ctx, long limit)
{
    moirai_test_oom_sweep_result_t r = {.failures = 0, .rc = MOIRAI_ENOMEM, .allocations = 0};

    for (long n = 0; n < limit; n++) {
        moirai_test_oom_fail_at(n);
        r.rc = op(ctx);
        r.allocations = moirai_test_oom_count();
        moirai_test_oom_fail_at(-1);
        if (r.rc != MOIRAI_ENOMEM)
            return r;
        r.failures++;
        if (after_failure != NULL)
            after_failure(ctx, n);
    }
    return r;
}
