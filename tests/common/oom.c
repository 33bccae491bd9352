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

/* True when this allocation is the one planned to fail. */
static int oom_should_fail(void)
{
    long ticket = atomic_fetch_add_explicit(&oom_count, 1, memory_order_relaxed);
    if (atomic_load_explicit(&oom_fail_every, memory_order_relaxed))
        return 1;

    return ticket == atomic_load_explicit(&oom_fail_at, memory_order_relaxed);
}

static void *oom_malloc(void *arg, size_t size)
{
    (void)arg;
    void *p = oom_should_fail() ? NULL : malloc(size);
    moirai__test_live_made(p, size);
    return p;
}

static void *oom_calloc(void *arg, size_t count, size_t size)
{
    (void)arg;
    void *p = oom_should_fail() ? NULL : calloc(count, size);
    moirai__test_live_made(p, count * size);
    return p;
}

static void *oom_realloc(void *arg, void *ptr, size_t size)
{
    (void)arg;
    /* A failed realloc leaves `ptr` allocated, as the C function does. */
    if (oom_should_fail())
        return NULL;
    /* A block grown from one the test did not make stays uncounted: the
     * library's process-lifetime tables grow this way. */
    int counted = moirai__test_live_gone(ptr);
    void *p = realloc(ptr, size);
    if (p == NULL && ptr != NULL)
        moirai__test_live_made_as(ptr, size, counted);
    else if (ptr == NULL)
        moirai__test_live_made(p, size);
    else
        moirai__test_live_made_as(p, size, counted);
    return p;
}

static void *oom_aligned_alloc(void *arg, size_t alignment, size_t size)
{
    void *p;

    (void)arg;
    if (oom_should_fail() || posix_memalign(&p, alignment, size) != 0)
        return NULL;
    moirai__test_live_made(p, size);
    return p;
}

static void oom_free(void *arg, void *ptr)
{
    (void)arg;
    moirai__test_live_gone(ptr);
    free(ptr);
}

static const moirai_allocator_t test_allocator = {
    .malloc_fn = oom_malloc,
    .calloc_fn = oom_calloc,
    .realloc_fn = oom_realloc,
    .aligned_alloc_fn = oom_aligned_alloc,
    .free_fn = oom_free,
    .arg = NULL,
};

int moirai_test_oom_is_current(void)
{
    moirai_allocator_t cur;
    moirai_allocator_get(&cur);
    return cur.malloc_fn == oom_malloc && cur.free_fn == oom_free;
}

void moirai_test_oom_install(void)
{
    moirai_test_oom_fail_at(-1);
    if (!moirai_test_oom_is_current())
        (void)moirai_allocator_set(&test_allocator);
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
    /* The allocator stays: it is also the live-allocation counter every
     * test runs under (live.c). Only the failures stop. */
    moirai_test_oom_fail_at(-1);
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
