/* Fiber stacks (internal): the size rules and their errors; the guard
 * page and the two mappings per stack; -ENOMEM from the allocator (every
 * allocation) and from mmap (under a tight RLIMIT_AS, in a child); the
 * high-water mark, exact to the word for direct writes and bounded after
 * a known-depth recursion on a fiber; the canary; re-zeroing and trimming
 * on reset; the cache (reuse, capacity, other sizes, counters, several
 * threads taking and returning stacks with each stack handed out zeroed
 * and to one holder at a time); and a guard-page overflow in a child,
 * which must die by SIGABRT naming the fiber, while a fault elsewhere
 * still reaches the previous handler. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <moirai/async/runtime.h>
#include <moirai/core/alloc.h>

#include "asan_child.h"
#include "fctx.h"
#include "oom.h"
#include "stack.h"
#include "test_scale.h"

#if defined(__SANITIZE_THREAD__)
#define HAVE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HAVE_TSAN 1
#endif
#endif
#ifndef HAVE_TSAN
#define HAVE_TSAN 0
#endif
/* asan_child.h keys HAVE_ASAN on gcc's macro; clang 14 answers only
 * __has_feature. */
#if HAVE_ASAN
#define ANY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ANY_ASAN 1
#endif
#endif
#ifndef ANY_ASAN
#define ANY_ASAN 0
#endif
#if HAVE_TSAN || ANY_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

static size_t page(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static moirai__stack_t *make(size_t size)
{
    moirai__stack_t *s = NULL;
    cr_assert_eq(moirai__stack_create(&s, size), 0);
    cr_assert_not_null(s);
    return s;
}

/* Resident pages of the stack's usable range. */
static size_t resident_pages(const moirai__stack_t *s)
{
    size_t n = s->size / page(), count = 0;
    unsigned char *vec = malloc(n);
    cr_assert_eq(mincore(s->lo, s->size, vec), 0);
    for (size_t i = 0; i < n; i++)
        count += vec[i] & 1;
    free(vec);
    return count;
}

/* The permissions /proc/self/maps gives the mapping holding `addr`, and
 * its bounds. */
static void mapping_of(const void *addr, char perms[5], uintptr_t *lo, uintptr_t *hi)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    cr_assert_not_null(f);
    perms[0] = '\0';
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long a, b;
        char p[5];
        if (sscanf(line, "%lx-%lx %4s", &a, &b, p) == 3 && (uintptr_t)addr >= a &&
            (uintptr_t)addr < b) {
            memcpy(perms, p, 5);
            *lo = a;
            *hi = b;
            break;
        }
    }
    fclose(f);
}

/* ---- sizes ---- */

Test(stack, size_rules, .timeout = 10)
{
    size_t u = 7;
    cr_assert_eq(moirai__stack_size(0, &u), 0);
    cr_assert_eq(u, MOIRAI_FIBER_STACK_DEFAULT);
    cr_assert_eq(moirai__stack_size(MOIRAI_FIBER_STACK_MIN, &u), 0);
    cr_assert_eq(u, MOIRAI_FIBER_STACK_MIN);
    cr_assert_eq(moirai__stack_size(MOIRAI_FIBER_STACK_MIN + 1, &u), 0);
    cr_assert_eq(u, MOIRAI_FIBER_STACK_MIN + page());
    cr_assert_eq(moirai__stack_size(MOIRAI_FIBER_STACK_MAX, &u), 0);
    cr_assert_eq(u, MOIRAI_FIBER_STACK_MAX);
    u = 7;
    cr_assert_eq(moirai__stack_size(1, &u), -EINVAL);
    cr_assert_eq(moirai__stack_size(MOIRAI_FIBER_STACK_MIN - 1, &u), -EINVAL);
    cr_assert_eq(moirai__stack_size(MOIRAI_FIBER_STACK_MAX + 1, &u), -EINVAL);
    cr_assert_eq(moirai__stack_size(SIZE_MAX, &u), -EINVAL);
    cr_assert_eq(u, 7, "a rejected size must not be stored");
}

Test(stack, create_rejects_bad_arguments, .timeout = 10)
{
    moirai__stack_t *s = (moirai__stack_t *)&s;
    cr_assert_eq(moirai__stack_create(NULL, 0), -EINVAL);
    cr_assert_eq(moirai__stack_create(&s, MOIRAI_FIBER_STACK_MIN - 1), -EINVAL);
    cr_assert_eq(moirai__stack_create(&s, MOIRAI_FIBER_STACK_MAX + 1), -EINVAL);
    cr_assert_eq(s, (moirai__stack_t *)&s, "a failed create must not touch *out");
    moirai__stack_destroy(NULL);
}

Test(stack, layout_guard_page_and_two_mappings, .timeout = 10)
{
    moirai__stack_t *s = make(MOIRAI_FIBER_STACK_MIN + 1);
    char perms[5];
    uintptr_t a, b;

    cr_assert_eq(s->size, MOIRAI_FIBER_STACK_MIN + page());
    cr_assert_eq((uintptr_t)s->lo % page(), 0);
    cr_assert_eq((char *)s->guard + page(), (char *)s->lo);
    mapping_of(s->guard, perms, &a, &b);
    cr_assert_str_eq(perms, "---p", "the guard page must be inaccessible");
    cr_assert_eq(a, (uintptr_t)s->guard);
    cr_assert_eq(b, (uintptr_t)s->lo, "the guard is a mapping of its own");
    mapping_of(s->lo, perms, &a, &b);
    cr_assert_str_eq(perms, "rw-p");
    cr_assert_eq(a, (uintptr_t)s->lo);
    cr_assert_eq(b, (uintptr_t)moirai__stack_hi(s));
    cr_assert_eq(resident_pages(s), 0, "a fresh stack touches nothing");
    void *guard = s->guard;
    moirai__stack_destroy(s);
    mapping_of(guard, perms, &a, &b);
    cr_assert_str_eq(perms, "", "destroy unmaps the stack");
}

/* ---- -ENOMEM ---- */

static moirai__stack_t *oom_stack;

static int oom_create(void *ctx)
{
    (void)ctx;
    return moirai__stack_create(&oom_stack, 0);
}

Test(stack, create_reports_allocation_failure, .timeout = 30)
{
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(oom_create, NULL, NULL);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0);
    moirai__stack_destroy(oom_stack);
}

/* mmap failing: in a child, with the address space limited to what is
 * mapped already. The child exits 0 only when create returned -ENOMEM and
 * left *out alone. */
static void mmap_failure_child(void)
{
    struct rlimit rl = {.rlim_cur = 0, .rlim_max = RLIM_INFINITY};
    moirai__stack_t *s = (moirai__stack_t *)&rl;
    /* Allocate the descriptor's memory ahead: only mmap may fail. */
    void *warm = moirai_malloc(64);
    moirai_free(warm);
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        _exit(2);
    int rc = moirai__stack_create(&s, 0);
    _exit(rc == -ENOMEM && s == (moirai__stack_t *)&rl ? 0 : 3);
}

Test(stack, create_reports_mmap_failure, .timeout = 30)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        mmap_failure_child();
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
}

/* ---- high-water mark and canary ---- */

Test(stack, high_water_is_exact_for_direct_writes, .timeout = 10)
{
    moirai__stack_t *s = make(0);
    char *hi = moirai__stack_hi(s);
    /* Depths on either side of page boundaries, deep enough to leave
     * untouched pages between the write and the top. */
    size_t depths[] = {8, 16, 4088, 4096, 4104, 12288, 100000, 200000, s->size - 64};

    cr_assert_eq(moirai__stack_used(s), 0);
    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
        size_t d = depths[i];
        *(volatile uint64_t *)(hi - d) = 0x0100000000000000ull; /* only the top byte set */
        cr_assert_eq(moirai__stack_used(s), d, "wrote at depth %zu", d);
        cr_assert(moirai__stack_check(s), "the canary lies below depth %zu", d);
        cr_assert_eq(moirai__stack_reset(s), d);
        cr_assert_eq(moirai__stack_used(s), 0, "reset left something at depth %zu", d);
    }
    /* A non-zero byte inside a word counts the whole word. */
    hi[-3] = 1;
    cr_assert_eq(moirai__stack_used(s), 8);
    moirai__stack_reset(s);
    moirai__stack_destroy(s);
}

Test(stack, canary_reports_writes_into_the_bottom_line, .timeout = 10)
{
    moirai__stack_t *s = make(MOIRAI_FIBER_STACK_MIN);
    char *lo = s->lo;

    cr_assert(moirai__stack_check(s));
    cr_assert_eq(resident_pages(s), 0, "checking the canary must not touch it");
    lo[MOIRAI__STACK_CANARY] = 1; /* just above the canary */
    cr_assert(moirai__stack_check(s));
    lo[MOIRAI__STACK_CANARY - 1] = 1;
    cr_assert_not(moirai__stack_check(s));
    moirai__stack_reset(s);
    cr_assert(moirai__stack_check(s));
    lo[0] = 0x7f;
    cr_assert_not(moirai__stack_check(s));
    cr_assert_eq(moirai__stack_used(s), s->size);
    moirai__stack_reset(s);
    cr_assert(moirai__stack_check(s));
    moirai__stack_destroy(s);
}

Test(stack, reset_returns_far_zero_pages_to_the_kernel, .timeout = 10)
{
    moirai__stack_t *s = make(0);
    char *hi = moirai__stack_hi(s);

    memset(hi - 200 * 1024, 0xab, 200 * 1024);
    cr_assert_eq(moirai__stack_reset(s), 200 * 1024);
    cr_assert_geq(resident_pages(s), 50, "a re-zeroed range stays resident for the next user");
    /* Shallow users from now on: every reset is exact, and within 64 of
     * them the exact pass hands the deep user's zero pages back. */
    for (int i = 0; i < 64; i++) {
        memset(hi - 1000, 0xcd, 1000);
        cr_assert_eq(moirai__stack_reset(s), 1000, "reset %d", i);
    }
    cr_assert_leq(resident_pages(s), 3, "the deep user's zero pages were kept");
    cr_assert_eq(moirai__stack_used(s), 0);
    moirai__stack_destroy(s);
}

/* Users going deeper than every earlier one, through the window's floor:
 * each figure exact. */
Test(stack, reset_follows_users_below_the_window, .timeout = 10)
{
    moirai__stack_t *s = make(0);
    char *hi = moirai__stack_hi(s);
    size_t depths[] = {3000, 2000, 9000, 9000, 40000, 41000, 504, 150000, 8};

    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
        /* A contiguous use, as frames make (depths are whole words). */
        memset(hi - depths[i], 0x11, depths[i]);
        size_t got = moirai__stack_reset(s);
        cr_assert_eq(got, depths[i], "user %zu: %zu", i, got);
        cr_assert_eq(moirai__stack_used(s), 0);
    }
    moirai__stack_destroy(s);
}

/* The documented miss: a user whose only writes below the floor lie under
 * an unwritten hole spanning the floor's page is measured low, and the
 * periodic exact pass finds and clears what it left within 64 resets. */
Test(stack, window_miss_heals_at_the_next_exact_pass, .timeout = 10)
{
    moirai__stack_t *s = make(0);
    char *hi = moirai__stack_hi(s);
    size_t reported_deep = 0;

    memset(hi - 2000, 0x11, 2000);
    cr_assert_eq(moirai__stack_reset(s), 2000); /* exact: floor one page below */
    memset(hi - 2000, 0x22, 2000);
    *(volatile uint64_t *)(hi - 100000) = 1; /* below a 90 KiB hole */
    cr_assert_eq(moirai__stack_reset(s), 2000, "the window pass cannot see under the hole");
    for (int i = 0; i < 64; i++) {
        memset(hi - 2000, 0x33, 2000);
        size_t used = moirai__stack_reset(s);
        if (used == 100000)
            reported_deep++;
        else
            cr_assert_eq(used, 2000, "reset %d", i);
    }
    cr_assert_eq(reported_deep, 1, "the exact pass reports the stale word once");
    cr_assert_eq(moirai__stack_used(s), 0, "and clears it");
    moirai__stack_destroy(s);
}

/* A fiber recursing to a known depth: the mark covers the deepest frame's
 * local and is at most a few frames' worth of bookkeeping beyond it. */
struct deep {
    moirai__fctx_t main, fiber;
    int depth;
    uintptr_t deepest; /* lowest address of a local written on the fiber */
};

static __attribute__((noinline)) void recurse(struct deep *d, int n)
{
    volatile uint64_t local[32];
    for (int i = 0; i < 32; i++)
        local[i] = 0x1111111111111111ull * (uint64_t)(n + 1);
    if ((uintptr_t)&local[0] < d->deepest)
        d->deepest = (uintptr_t)&local[0];
    if (n > 0)
        recurse(d, n - 1);
    __asm__ volatile("" : : "r"(local) : "memory"); /* no tail call */
}

static void deep_entry(void *arg)
{
    struct deep *d = arg;
    recurse(d, d->depth);
    moirai__fctx_switch_final(&d->fiber, &d->main);
}

Test(stack, high_water_after_known_depth_recursion, .timeout = 10)
{
    moirai__stack_t *s = make(0);
    struct deep d = {.depth = 200, .deepest = UINTPTR_MAX};

    moirai__fctx_thread_init(&d.main);
    moirai__fctx_init(&d.fiber, s->lo, s->size, deep_entry, &d);
    moirai__fctx_switch(&d.main, &d.fiber);
    moirai__fctx_destroy(&d.fiber);
    size_t reached = (uintptr_t)moirai__stack_hi(s) - d.deepest;
    size_t used = moirai__stack_used(s);
    cr_assert_geq(reached, 200 * 32 * 8, "201 frames of 256 bytes");
    cr_assert_geq(used, reached, "used %zu, the deepest local was at depth %zu", used, reached);
    /* Below the deepest local lie only what that frame saved and, under a
     * sanitizer, its runtime's calls. */
    size_t slack = (ANY_ASAN || HAVE_TSAN) ? 4096 : 256;
    cr_assert_leq(used, reached + slack, "used %zu, the deepest local was at depth %zu", used,
                  reached);
    cr_assert(moirai__stack_check(s));
    moirai__stack_reset(s);
    cr_assert_eq(moirai__stack_used(s), 0);
    moirai__stack_destroy(s);
}

/* ---- the cache ---- */

static moirai__stack_pool_t *make_pool(size_t size, size_t capacity)
{
    moirai__stack_pool_t *p = NULL;
    cr_assert_eq(moirai__stack_pool_create(&p, size, capacity), 0);
    cr_assert_not_null(p);
    return p;
}

static void expect_stats(moirai__stack_pool_t *p, uint64_t mapped, uint64_t cached)
{
    moirai__stack_pool_stats_t st;
    moirai__stack_pool_stats(p, &st);
    cr_assert_eq(st.mapped, mapped, "mapped %llu", (unsigned long long)st.mapped);
    cr_assert_eq(st.cached, cached, "cached %llu", (unsigned long long)st.cached);
}

Test(stack_pool, rejects_bad_arguments, .timeout = 10)
{
    moirai__stack_pool_t *p = (moirai__stack_pool_t *)&p;
    moirai__stack_t *s = (moirai__stack_t *)&s;

    cr_assert_eq(moirai__stack_pool_create(NULL, 0, 4), -EINVAL);
    cr_assert_eq(moirai__stack_pool_create(&p, MOIRAI_FIBER_STACK_MIN - 1, 4), -EINVAL);
    cr_assert_eq(moirai__stack_pool_create(&p, MOIRAI_FIBER_STACK_MAX + 1, 4), -EINVAL);
    cr_assert_eq(p, (moirai__stack_pool_t *)&p);
    p = make_pool(0, 4);
    cr_assert_eq(moirai__stack_pool_stack_size(p), MOIRAI_FIBER_STACK_DEFAULT);
    cr_assert_eq(moirai__stack_pool_get(NULL, 0, &s), -EINVAL);
    cr_assert_eq(moirai__stack_pool_get(p, 0, NULL), -EINVAL);
    cr_assert_eq(moirai__stack_pool_get(p, 1, &s), -EINVAL);
    cr_assert_eq(moirai__stack_pool_get(p, MOIRAI_FIBER_STACK_MAX + 1, &s), -EINVAL);
    cr_assert_eq(s, (moirai__stack_t *)&s);
    expect_stats(p, 0, 0);
    moirai__stack_pool_destroy(p);
    moirai__stack_pool_destroy(NULL);
}

Test(stack_pool, reuses_cached_stacks_zeroed, .timeout = 10)
{
    moirai__stack_pool_t *p = make_pool(MOIRAI_FIBER_STACK_MIN, 2);
    moirai__stack_t *a, *b, *c;

    cr_assert_eq(moirai__stack_pool_get(p, 0, &a), 0);
    cr_assert_eq(moirai__stack_pool_get(p, MOIRAI_FIBER_STACK_MIN, &b), 0);
    cr_assert_eq(moirai__stack_pool_get(p, 0, &c), 0);
    cr_assert(a != b && b != c && a != c);
    expect_stats(p, 3, 0);
    memset((char *)moirai__stack_hi(a) - 3000, 0x5a, 3000);
    cr_assert_eq(moirai__stack_pool_put(p, a), 3000);
    expect_stats(p, 3, 1);
    memset((char *)moirai__stack_hi(b) - 5000, 0x5a, 5000);
    cr_assert_eq(moirai__stack_pool_put(p, b), 5000);
    expect_stats(p, 3, 2);
    cr_assert_eq(moirai__stack_pool_put(p, c), 0);
    expect_stats(p, 2, 2); /* over capacity: unmapped */

    moirai__stack_t *x;
    cr_assert_eq(moirai__stack_pool_get(p, 0, &x), 0);
    cr_assert_eq(x, b, "the most recently returned stack comes back first");
    cr_assert_eq(moirai__stack_used(x), 0, "a reused stack is handed out zeroed");
    cr_assert(moirai__stack_check(x));
    expect_stats(p, 2, 1);
    moirai__stack_pool_stats_t st;
    moirai__stack_pool_stats(p, &st);
    cr_assert_eq(st.high_water, 5000);
    moirai__stack_pool_put(p, x);
    moirai__stack_pool_destroy(p);
}

Test(stack_pool, other_sizes_bypass_the_cache, .timeout = 10)
{
    moirai__stack_pool_t *p = make_pool(0, 4);
    moirai__stack_t *s;

    cr_assert_eq(moirai__stack_pool_get(p, MOIRAI_FIBER_STACK_MIN, &s), 0);
    cr_assert_eq(s->size, MOIRAI_FIBER_STACK_MIN);
    expect_stats(p, 1, 0);
    moirai__stack_pool_put(p, s);
    expect_stats(p, 0, 0);
    moirai__stack_pool_destroy(p);
}

Test(stack_pool, capacity_zero_caches_nothing, .timeout = 10)
{
    moirai__stack_pool_t *p = make_pool(0, 0);
    moirai__stack_t *s;

    cr_assert_eq(moirai__stack_pool_get(p, 0, &s), 0);
    moirai__stack_pool_put(p, s);
    expect_stats(p, 0, 0);
    moirai__stack_pool_destroy(p);
}

static moirai__stack_pool_t *oom_pool;

static int oom_pool_create(void *ctx)
{
    (void)ctx;
    return moirai__stack_pool_create(&oom_pool, 0, 8);
}

static moirai__stack_t *oom_got;

static int oom_pool_get(void *ctx)
{
    return moirai__stack_pool_get(ctx, 0, &oom_got);
}

static void pool_unchanged(void *ctx, long n)
{
    (void)n;
    expect_stats(ctx, 0, 0);
}

Test(stack_pool, reports_allocation_failure, .timeout = 30)
{
    moirai_test_oom_install();
    cr_assert_gt(MOIRAI_TEST_OOM_SWEEP(oom_pool_create, NULL, NULL), 0);
    /* A get with the cache empty allocates a descriptor. */
    cr_assert_gt(MOIRAI_TEST_OOM_SWEEP(oom_pool_get, pool_unchanged, oom_pool), 0);
    expect_stats(oom_pool, 1, 0);
    /* A get from the cache allocates nothing. */
    moirai__stack_pool_put(oom_pool, oom_got);
    moirai_test_oom_fail_at(0);
    cr_assert_eq(moirai__stack_pool_get(oom_pool, 0, &oom_got), 0);
    moirai_test_oom_uninstall();
    moirai__stack_pool_put(oom_pool, oom_got);
    moirai__stack_pool_destroy(oom_pool);
}

/* Threads taking and returning stacks: every stack comes out zeroed and
 * is held by one thread at a time (each holder stamps it and finds its
 * stamp intact before returning it). */
struct churn {
    moirai__stack_pool_t *pool;
    long rounds;
    atomic_long bad;
};

static void *churn_thread(void *p)
{
    struct churn *c = p;
    uint64_t me = (uint64_t)(uintptr_t)pthread_self() | 1;

    for (long i = 0; i < c->rounds; i++) {
        moirai__stack_t *s;
        if (moirai__stack_pool_get(c->pool, 0, &s) != 0) {
            atomic_fetch_add_explicit(&c->bad, 1, memory_order_relaxed);
            continue;
        }
        volatile uint64_t *top = (uint64_t *)moirai__stack_hi(s) - 1 - (size_t)(i % 64);
        if (moirai__stack_used(s) != 0)
            atomic_fetch_add_explicit(&c->bad, 1, memory_order_relaxed);
        *top = me;
        sched_yield();
        if (*top != me)
            atomic_fetch_add_explicit(&c->bad, 1, memory_order_relaxed);
        moirai__stack_pool_put(c->pool, s);
    }
    return NULL;
}

Test(stack_pool, threads_share_the_cache_safely, .timeout = 60)
{
    struct churn c = {.pool = make_pool(MOIRAI_FIBER_STACK_MIN, 2), .rounds = scaled(20000)};
    pthread_t th[3];

    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, churn_thread, &c), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&c.bad), 0);
    moirai__stack_pool_stats_t st;
    moirai__stack_pool_stats(c.pool, &st);
    cr_assert_eq(st.mapped, st.cached, "every stack was returned");
    cr_assert_leq(st.cached, 2);
    cr_assert_eq(st.high_water, 64 * 8);
    moirai__stack_pool_destroy(c.pool);
}

/* ---- overflow ---- */

static struct deep overflow_state;

/* Recurses until the stack runs out; `limit` is never reached (it only
 * tells the compiler the recursion may end). */
static volatile int runaway_limit = 1 << 30;

static __attribute__((noinline)) void runaway(int n)
{
    volatile char frame[512];
    frame[0] = (char)n;
    frame[511] = (char)n;
    if (n < runaway_limit)
        runaway(n + 1);
    __asm__ volatile("" : : "r"(frame) : "memory"); /* no tail call */
}

static void overflow_entry(void *arg)
{
    (void)arg;
    runaway(0);
}

/* Runs a fiber that recurses without end on a minimum-size stack. */
static void overflow_child(void)
{
    moirai__stack_t *s;
    if (moirai__stack_thread_prepare() != 0 || moirai__stack_create(&s, 0) != 0)
        _exit(2);
    if (moirai__stack_create(&s, MOIRAI_FIBER_STACK_MIN) != 0)
        _exit(2);
    moirai__fctx_thread_init(&overflow_state.main);
    moirai__fctx_init(&overflow_state.fiber, s->lo, s->size, overflow_entry, NULL);
    moirai__stack_set_current(s, "runaway-fiber", 4242);
    moirai__fctx_switch(&overflow_state.main, &overflow_state.fiber);
    _exit(3);
}

Test(stack_overflow, guard_hit_names_the_fiber_and_aborts, .timeout = 30)
{
    int status;
    char text[8192];

    asan_run_child("/tmp/moirai-stack.XXXXXX", overflow_child, &status, text, sizeof(text));
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "child status %#x, said:\n%s",
              status, text);
    char expect[128];
    snprintf(expect, sizeof(expect),
             "moirai: fiber 'runaway-fiber' (id 4242) overflowed its stack of %zu bytes\n",
             MOIRAI_FIBER_STACK_MIN);
    cr_assert_not_null(strstr(text, expect), "child said:\n%s", text);
}

/* A SIGSEGV outside any fiber stack, with a fiber stack registered. */
static void other_fault_child(void)
{
    moirai__stack_t *s;
#if HAVE_TSAN || ANY_ASAN
    /* The sanitizer's report of this fault goes to the child's captured
     * stderr, not to the report directory that fails the test run. */
    __sanitizer_set_report_fd((void *)(uintptr_t)STDERR_FILENO);
#endif
    if (moirai__stack_create(&s, 0) != 0)
        _exit(2);
    moirai__stack_set_current(s, "bystander", 7);
    /* An address no mapping covers, laundered so that the compiler does
     * not see the null page. */
    uintptr_t addr = 16;
    __asm__ volatile("" : "+r"(addr));
    *(volatile int *)addr = 1;
    _exit(3);
}

Test(stack_overflow, other_faults_reach_the_previous_handler, .timeout = 30)
{
    int status;
    char text[8192];

    asan_run_child("/tmp/moirai-stack.XXXXXX", other_fault_child, &status, text, sizeof(text));
    cr_assert_null(strstr(text, "moirai:"), "blamed a fiber:\n%s", text);
#if ANY_ASAN || HAVE_TSAN
    /* The sanitizer's handler was installed first (ThreadSanitizer keeps
     * its own under its sigaction interceptor): it reports the fault and
     * exits non-zero. */
    cr_assert(strstr(text, "SEGV") != NULL || strstr(text, "DEADLYSIGNAL") != NULL,
              "child status %#x, said:\n%s", status, text);
    cr_assert(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
#else
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "child status %#x, said:\n%s",
              status, text);
#endif
}

/* The alternate signal stack is per thread, installed once and unmapped
 * when the thread exits. */
static void *altstack_thread(void *p)
{
    stack_t *out = p;
    cr_assert_eq(moirai__stack_thread_prepare(), 0);
    cr_assert_eq(moirai__stack_thread_prepare(), 0);
    cr_assert_eq(sigaltstack(NULL, out), 0);
    return NULL;
}

Test(stack_overflow, alternate_stack_is_per_thread_and_released, .timeout = 10)
{
    stack_t ss;
    pthread_t th;
    unsigned char v;

    cr_assert_eq(pthread_create(&th, NULL, altstack_thread, &ss), 0);
    pthread_join(th, NULL);
    cr_assert_eq(ss.ss_flags & SS_DISABLE, 0);
    cr_assert_geq(ss.ss_size, 16 * 1024);
    if (ss.ss_size == 64 * 1024) {
        /* Ours (a sanitizer may have installed one first, then it is
         * the sanitizer's to release): unmapped at thread exit. */
        cr_assert_eq(mincore(ss.ss_sp, page(), &v), -1);
        cr_assert_eq(errno, ENOMEM);
    }
}

/* Runs `child` in a fork and returns its exit code (asserting it exited). */
static int run_child(void (*child)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        child();
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "child status %#x", status);
    return WEXITSTATUS(status);
}

/* With every pthread key taken, prepare fails with -EAGAIN and installs
 * nothing; with one freed, it succeeds. Exit 0: as documented. */
static void no_key_child(void)
{
    pthread_key_t keys[2048], k;
    int n = 0;
    while (n < 2048 && pthread_key_create(&k, NULL) == 0)
        keys[n++] = k;
    if (n == 0 || n == 2048)
        _exit(2);
    struct sigaction before, after;
    sigaction(SIGSEGV, NULL, &before);
    if (moirai__stack_thread_prepare() != -EAGAIN)
        _exit(3);
    sigaction(SIGSEGV, NULL, &after);
    if (after.sa_handler != before.sa_handler)
        _exit(4);
    pthread_key_delete(keys[--n]);
    _exit(moirai__stack_thread_prepare() == 0 ? 0 : 5);
}

Test(stack_overflow, prepare_reports_no_pthread_key_and_can_retry, .timeout = 30)
{
    cr_assert_eq(run_child(no_key_child), 0);
}

/* With no address space left, the signal stack cannot be mapped: -ENOMEM.
 * Exit 0: as documented; 6: a sanitizer had already given the thread a
 * signal stack, which prepare then uses (nothing to map). */
static void no_altstack_child(void)
{
    stack_t have;
    if (sigaltstack(NULL, &have) == 0 && !(have.ss_flags & SS_DISABLE))
        _exit(6);
    struct rlimit rl = {.rlim_cur = 0, .rlim_max = RLIM_INFINITY};
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        _exit(2);
    if (moirai__stack_thread_prepare() != -ENOMEM)
        _exit(3);
    if (sigaltstack(NULL, &have) != 0 || !(have.ss_flags & SS_DISABLE))
        _exit(4);
    _exit(0);
}

Test(stack_overflow, prepare_reports_no_memory_for_the_signal_stack, .timeout = 30)
{
    int rc = run_child(no_altstack_child);
    if (rc == 6 && (ANY_ASAN || HAVE_TSAN))
        cr_skip_test("the sanitizer runtime installed a signal stack of its own");
    cr_assert_eq(rc, 0);
}
