/* Alignment helpers: constants and macros, the cache-line size from the
 * topology, cache-line-aligned allocation (and its allocation failures),
 * prefetching. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include <moirai/core/topology.h>
#include <moirai/mem/align.h>

#include "oom.h"

struct padded {
    long head;
    MOIRAI_CACHE_PAD(pad0, sizeof(long));
    long tail;
};

struct aligned_member {
    char c;
    MOIRAI_CACHE_ALIGNED long v;
};

struct exact_line {
    char bytes[64];
    MOIRAI_CACHE_PAD(pad0, 64); /* a full line: never zero-sized */
    char next;
};

Test(align, constants_and_macros, .timeout = 10)
{
    cr_assert_eq(MOIRAI_CACHE_LINE, 64);
    cr_assert_eq(offsetof(struct padded, tail), 64);
    cr_assert_eq(offsetof(struct aligned_member, v), 64);
    cr_assert_eq(_Alignof(struct aligned_member), 64);
    cr_assert_eq(offsetof(struct exact_line, next), 128);
    _Static_assert(MOIRAI_CACHE_PAD_SIZE(0) == 0, "constant expression");
    cr_assert_eq(MOIRAI_CACHE_PAD_SIZE(1), 63);
    cr_assert_eq(MOIRAI_CACHE_PAD_SIZE(64), 0);
    cr_assert_eq(MOIRAI_CACHE_PAD_SIZE(65), 63);
    cr_assert_eq(MOIRAI_CACHE_PAD_SIZE(100), 28);
    cr_assert_eq(MOIRAI_ALIGN_UP((size_t)0, 16), 0);
    cr_assert_eq(MOIRAI_ALIGN_UP((size_t)1, 16), 16);
    cr_assert_eq(MOIRAI_ALIGN_UP((size_t)16, 16), 16);
    cr_assert_eq(MOIRAI_ALIGN_UP((size_t)17, 16), 32);
    cr_assert_eq(MOIRAI_ALIGN_UP((uint32_t)4095, 4096), 4096u);
    cr_assert_eq(MOIRAI_ALIGN_DOWN((size_t)17, 16), 16);
    cr_assert_eq(MOIRAI_ALIGN_DOWN((size_t)15, 16), 0);
    cr_assert(MOIRAI_IS_ALIGNED((void *)0x1000, 4096));
    cr_assert(!MOIRAI_IS_ALIGNED((void *)0x1008, 16));
    cr_assert(MOIRAI_IS_ALIGNED((void *)0x1008, 8));
}

Test(align, cache_line_size_is_the_topology_s, .timeout = 10)
{
    size_t line = moirai_cache_line_size();
    cr_assert_eq(line, (size_t)moirai_topology_cache_line_size());
    cr_assert_gt(line, 0);
    cr_assert_eq(line & (line - 1), 0, "a power of two");
}

Test(align, aligned_allocation, .timeout = 10)
{
    size_t line = moirai_cache_line_size();
    size_t align = line > 64 ? line : 64;
    static const size_t sizes[] = {1, 63, 64, 65, 100, 4096, 100000};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned char *p = moirai_cache_aligned_alloc(sizes[i]);
        cr_assert_not_null(p);
        cr_assert(MOIRAI_IS_ALIGNED(p, align), "%p for %zu bytes", (void *)p, sizes[i]);
        /* The whole last line belongs to the allocation. */
        memset(p, 0x5a, MOIRAI_ALIGN_UP(sizes[i], align));
        moirai_cache_aligned_free(p);
    }
    cr_assert_null(moirai_cache_aligned_alloc(0));
    cr_assert_null(moirai_cache_aligned_alloc(SIZE_MAX));
    cr_assert_null(moirai_cache_aligned_alloc(SIZE_MAX - 10));
    moirai_cache_aligned_free(NULL);

    unsigned char *z = moirai_cache_aligned_calloc(10, 30);
    cr_assert_not_null(z);
    cr_assert(MOIRAI_IS_ALIGNED(z, align));
    for (size_t i = 0; i < MOIRAI_ALIGN_UP((size_t)300, align); i++)
        cr_assert_eq(z[i], 0);
    moirai_cache_aligned_free(z);
    cr_assert_null(moirai_cache_aligned_calloc(SIZE_MAX / 2, 3));
    cr_assert_null(moirai_cache_aligned_calloc(0, 8));
}

Test(align, prefetch_changes_nothing, .timeout = 10)
{
    static char buf[1000];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)i;
    moirai_prefetch_read(buf);
    moirai_prefetch_write(buf + 500);
    moirai_prefetch_read(NULL); /* prefetches never fault */
    moirai_prefetch_range(buf + 3, sizeof(buf) - 3);
    moirai_prefetch_range(buf, 0);
    MOIRAI_PREFETCH_READ(buf, 0);
    MOIRAI_PREFETCH_WRITE(buf, 1);
    for (size_t i = 0; i < sizeof(buf); i++)
        cr_assert_eq(buf[i], (char)i);
}

static void *oom_result;

static int op_alloc(void *ctx)
{
    (void)ctx;
    oom_result = moirai_cache_aligned_alloc(200);
    return oom_result ? 0 : -ENOMEM;
}

static int op_calloc(void *ctx)
{
    (void)ctx;
    oom_result = moirai_cache_aligned_calloc(4, 50);
    return oom_result ? 0 : -ENOMEM;
}

Test(align, oom, .timeout = 10)
{
    (void)moirai_cache_line_size(); /* the topology is read outside the sweep */
    moirai_test_oom_install();
    cr_assert_eq(MOIRAI_TEST_OOM_SWEEP(op_alloc, NULL, NULL), 1);
    moirai_cache_aligned_free(oom_result);
    cr_assert_eq(MOIRAI_TEST_OOM_SWEEP(op_calloc, NULL, NULL), 1);
    moirai_cache_aligned_free(oom_result);
    moirai_test_oom_uninstall();
}
