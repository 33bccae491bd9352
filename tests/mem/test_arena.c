/* Bump arenas: arguments, alignment, no overlap, chunks for large
 * requests, reset keeping the first chunk, allocation failures, and (in an
 * AddressSanitizer build) use after reset. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <moirai/core/error.h>
#include <moirai/mem/arena.h>

#include "asan_child.h"
#include "oom.h"

static moirai_arena_stats_t stats_of(moirai_arena_t *a)
{
    moirai_arena_stats_t s;
    cr_assert_eq(moirai_arena_stats(a, &s), 0);
    return s;
}

Test(arena, invalid_arguments, .timeout = 10)
{
    moirai_arena_t *a = (moirai_arena_t *)0x1;
    cr_assert_eq(moirai_arena_create(NULL, 0), -EINVAL);
    cr_assert_eq(moirai_arena_create(&a, 255), -EINVAL);
    cr_assert_eq(moirai_arena_create(&a, ((size_t)1 << 30) + 1), -EINVAL);
    cr_assert_eq(a, (moirai_arena_t *)0x1);
    cr_assert_eq(moirai_arena_create(&a, 256), 0);
    void *p = (void *)0x1;
    cr_assert_eq(moirai_arena_alloc(NULL, 8, 0, &p), -EINVAL);
    cr_assert_eq(moirai_arena_alloc(a, 8, 0, NULL), -EINVAL);
    cr_assert_eq(moirai_arena_alloc(a, 8, 3, &p), -EINVAL);
    cr_assert_eq(moirai_arena_alloc(a, 8, 8192, &p), -EINVAL);
    cr_assert_eq(moirai_arena_alloc(a, SIZE_MAX, 0, &p), -ENOMEM);
    cr_assert_eq(moirai_arena_alloc(a, SIZE_MAX - 8, 64, &p), -ENOMEM);
    cr_assert_eq(p, (void *)0x1);
    moirai_arena_stats_t s;
    cr_assert_eq(moirai_arena_stats(NULL, &s), -EINVAL);
    cr_assert_eq(moirai_arena_stats(a, NULL), -EINVAL);
    s = stats_of(a);
    cr_assert_eq(s.allocations, 0);
    cr_assert_eq(s.chunks, 1);
    moirai_arena_reset(NULL);
    moirai_arena_destroy(NULL);
    moirai_arena_destroy(a);
}

typedef struct span {
    uintptr_t at;
    size_t size;
} span_t;

static int cmp_span(const void *x, const void *y)
{
    const span_t *a = x, *b = y;
    return a->at < b->at ? -1 : a->at > b->at;
}

Test(arena, alignment_and_no_overlap, .timeout = 30)
{
    enum { N = 3000 };
    moirai_arena_t *a;
    cr_assert_eq(moirai_arena_create(&a, 4096), 0);
    static span_t spans[N];
    size_t bytes = 0;
    uint32_t rng = 12345;
    for (int i = 0; i < N; i++) {
        rng = rng * 1103515245u + 12345u;
        size_t size = (rng >> 8) % 700;                 /* 0..699; some exceed a quarter chunk */
        size_t align = (size_t)1 << ((rng >> 20) % 13); /* 1..4096 */
        void *p;
        cr_assert_eq(moirai_arena_alloc(a, size, align, &p), 0);
        cr_assert_eq((uintptr_t)p % align, 0, "size %zu align %zu", size, align);
        size_t real = size ? size : 1;
        memset(p, i & 0xff, real);
        spans[i] = (span_t){(uintptr_t)p, real};
        bytes += real;
    }
    moirai_arena_stats_t s = stats_of(a);
    cr_assert_eq(s.allocations, N);
    cr_assert_eq(s.bytes_allocated, bytes);
    cr_assert_gt(s.chunks, 1);
    cr_assert_geq(s.bytes_reserved, bytes);
    /* Every allocation kept its bytes (none overwrote another). */
    for (int i = 0; i < N; i++)
        for (size_t b = 0; b < spans[i].size; b++)
            cr_assert_eq(((unsigned char *)spans[i].at)[b], i & 0xff);
    qsort(spans, N, sizeof(spans[0]), cmp_span);
    for (int i = 1; i < N; i++)
        cr_assert_geq(spans[i].at, spans[i - 1].at + spans[i - 1].size, "overlap");
    moirai_arena_destroy(a);
}

Test(arena, large_request_gets_its_own_chunk, .timeout = 10)
{
    moirai_arena_t *a;
    cr_assert_eq(moirai_arena_create(&a, 1024), 0);
    char *x, *big, *y;
    cr_assert_eq(moirai_arena_alloc(a, 16, 16, (void **)&x), 0);
    cr_assert_eq(moirai_arena_alloc(a, 5000, 64, (void **)&big), 0);
    cr_assert_eq((uintptr_t)big % 64, 0);
    memset(big, 1, 5000);
    cr_assert_eq(moirai_arena_alloc(a, 16, 16, (void **)&y), 0);
    cr_assert_eq(y, x + 16, "small requests continue in the current chunk");
    moirai_arena_stats_t s = stats_of(a);
    cr_assert_eq(s.chunks, 2);
    cr_assert_eq(s.bytes_reserved, 1024 + 5000 + 64);
    moirai_arena_destroy(a);
}

Test(arena, reset_keeps_the_first_chunk, .timeout = 10)
{
    moirai_arena_t *a;
    cr_assert_eq(moirai_arena_create(&a, 512), 0);
    void *first;
    cr_assert_eq(moirai_arena_alloc(a, 100, 0, &first), 0);
    for (int phase = 0; phase < 5; phase++) {
        for (int i = 0; i < 50; i++) {
            void *p;
            cr_assert_eq(moirai_arena_alloc(a, 100, 0, &p), 0);
            memset(p, phase, 100);
        }
        moirai_arena_stats_t s = stats_of(a);
        cr_assert_gt(s.chunks, 1);
        moirai_arena_reset(a);
        s = stats_of(a);
        cr_assert_eq(s.chunks, 1);
        cr_assert_eq(s.bytes_reserved, 512);
        cr_assert_eq(s.allocations, 0);
        cr_assert_eq(s.bytes_allocated, 0);
        cr_assert_eq(s.resets, (uint64_t)phase + 1);
        void *again;
        cr_assert_eq(moirai_arena_alloc(a, 100, 0, &again), 0);
        cr_assert_eq(again, first, "the first chunk is reused from its start");
    }
    moirai_arena_destroy(a);
}

/* ---- allocation failures ---- */

static moirai_arena_t *oom_arena;

static int op_create(void *ctx)
{
    (void)ctx;
    moirai_arena_t *a = (moirai_arena_t *)0x1;
    int rc = moirai_arena_create(&a, 1024);
    if (rc != 0) {
        cr_assert_eq(a, (moirai_arena_t *)0x1);
        return rc;
    }
    oom_arena = a;
    return 0;
}

static moirai_arena_stats_t before;

static int op_grow(void *ctx)
{
    (void)ctx;
    before = stats_of(oom_arena);
    void *fits, *small, *big;
    cr_assert_eq(moirai_arena_alloc(oom_arena, 100, 0, &fits), 0); /* no chunk needed */
    int rc = moirai_arena_alloc(oom_arena, 1000, 0, &small);       /* needs a new chunk */
    if (rc != 0)
        return rc;
    return moirai_arena_alloc(oom_arena, 3000, 0, &big); /* needs its own */
}

static void grow_unchanged(void *ctx, long n)
{
    (void)ctx;
    moirai_arena_stats_t s = stats_of(oom_arena);
    /* The failing allocation changed nothing; in run 1 the one before it
     * succeeded. */
    cr_assert_eq(s.chunks, before.chunks + (n == 1));
    cr_assert_eq(s.allocations, before.allocations + 1 + (n == 1));
    cr_assert_eq(s.bytes_allocated, before.bytes_allocated + 100 + (n == 1 ? 1000 : 0));
    moirai_arena_reset(oom_arena);
}

Test(arena, oom, .timeout = 30)
{
    moirai_test_oom_install();
    cr_assert_eq(MOIRAI_TEST_OOM_SWEEP(op_create, NULL, NULL), 2);
    cr_assert_eq(MOIRAI_TEST_OOM_SWEEP(op_grow, grow_unchanged, NULL), 2);
    moirai_test_oom_uninstall();
    moirai_arena_stats_t s = stats_of(oom_arena);
    cr_assert_eq(s.chunks, 3);
    moirai_arena_destroy(oom_arena);
}

/* ---- use after reset (AddressSanitizer) ---- */

/* The child of the test below: an access ASan must report. */
static void use_after_reset_child(void)
{
    moirai_arena_t *a;
    char *p;
    if (moirai_arena_create(&a, 1024) != 0 || moirai_arena_alloc(a, 32, 0, (void **)&p) != 0)
        _exit(3);
    p[31] = 1; /* fine */
    moirai_arena_reset(a);
    ((volatile char *)p)[0] = 1; /* not */
}

Test(arena, use_after_reset_is_reported, .timeout = 60)
{
    if (!HAVE_ASAN)
        cr_skip("needs an AddressSanitizer build (arena memory is poisoned only there)");
    asan_expect_report("/tmp/moirai-arena.XXXXXX", use_after_reset_child, "use-after-poison");
}
