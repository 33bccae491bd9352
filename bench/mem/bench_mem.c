/* moirai-bench, suite "mem": object pools and memory pools against general
 * allocators.
 *
 * Peers: glibc malloc ("glibc"), jemalloc ("jemalloc"), tcmalloc
 * ("tcmalloc", the minimal variant) and mimalloc ("mimalloc"), each called
 * through its own prefixed entry points: mallocx/dallocx/sdallocx,
 * tc_malloc/tc_free/tc_free_sized, mi_malloc/mi_free/mi_free_size. Linking
 * them normally would replace malloc for the whole process: every
 * allocator would then run on top of the last one linked, and glibc's
 * number would be jemalloc's. Instead tcmalloc and mimalloc are loaded with
 * dlopen(RTLD_LOCAL), and jemalloc (whose shared library cannot be
 * dlopen()ed: its initial-exec TLS does not fit glibc's reserve) is linked
 * from a copy of its static archive with the standard names renamed (see
 * bench/meson.build). Each then serves only the calls made to it here, and
 * the rest of the process keeps glibc. Every implementation runs the same
 * loop, inlined once per implementation, reaching its allocator with one
 * call (through the PLT for Moirai, glibc and jemalloc, through a function
 * pointer from dlsym for the others). A peer that cannot be loaded is
 * reported missing with the reason.
 *
 * pool_churn_1t
 *   One thread keeps 4096 live 64-byte objects; each operation releases
 *   the object in a pseudo-randomly chosen slot and allocates a new one
 *   into it, writing one word of it. Moirai: one moirai_pool_t. Metric: ns
 *   per operation (one release + one allocation).
 *
 * pool_churn_2t
 *   The same on two threads at once, each with its own 4096 slots, both
 *   using one pool (one allocator). Metric: wall-clock ns per operation of
 *   both threads together (latest end - earliest start) / (2 * iters).
 *
 * pool_cross_thread_free
 *   One thread allocates 64-byte objects and passes them through a
 *   single-producer single-consumer ring (4096 slots) to the other, which
 *   checks and releases them: every release is on another thread than the
 *   allocation. The ring is the same for all. Metric: wall-clock ns per
 *   object. The consumer checks the sequence numbers it receives; a lost
 *   or duplicated object fails the run.
 *
 * sizeclass_churn_1t
 *   As pool_churn_1t with sizes drawn uniformly from 16..256 bytes.
 *   Moirai: one moirai_mempool_t with the default classes, released with
 *   the size. Peers release sized where they can (sdallocx,
 *   tc_free_sized, mi_free_size; glibc free).
 *
 * Set-up (filling the slots, creating threads and pools) and tear-down
 * are outside the measured section. */
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/mem/mempool.h>
#include <moirai/mem/pool.h>

#include <moirai/core/spin.h>

#include "../bench.h"
#include "churn.h"

#define RING_SLOTS 4096u

/* Waiting on the other side of the ring: spin briefly, then yield, so that
 * on a machine with more runnable threads than CPUs the waiter does not
 * burn the time slice the other side needs. */
static inline void backoff(unsigned spins)
{
    if (spins < 64)
        moirai_cpu_relax();
    else
        sched_yield();
}

/* ---- the allocators under test ---- */

/* One allocator, as the loops see it. `ctx` is the Moirai pool. */
typedef struct api {
    void *ctx;
} api_t;

#ifdef MOIRAI_BENCH_HAVE_JEMALLOC
/* jemalloc's non-standard API, from the renamed static archive (see
 * bench/meson.build). */
void *mallocx(size_t size, int flags);
void dallocx(void *ptr, int flags);
void sdallocx(void *ptr, size_t size, int flags);
#endif

static void *(*p_mi_malloc)(size_t);
static void (*p_mi_free)(void *);
static void (*p_mi_free_size)(void *, size_t);
static void *(*p_je_mallocx)(size_t, int);
static void (*p_je_dallocx)(void *, int);
static void (*p_je_sdallocx)(void *, size_t, int);
static void *(*p_tc_malloc)(size_t);
static void (*p_tc_free)(void *);
static void (*p_tc_free_sized)(void *, size_t);

static inline void *moirai_a(api_t *a, size_t n)
{
    (void)n;
    void *p;
    return moirai_pool_alloc(a->ctx, &p) == 0 ? p : NULL;
}
static inline void moirai_f(api_t *a, void *p, size_t n)
{
    (void)n;
    moirai_pool_free(a->ctx, p);
}
static inline void *moirai_sa(api_t *a, size_t n)
{
    void *p;
    return moirai_mempool_alloc(a->ctx, n, &p) == 0 ? p : NULL;
}
static inline void moirai_sf(api_t *a, void *p, size_t n)
{
    moirai_mempool_free(a->ctx, p, n);
}
static inline void *glibc_a(api_t *a, size_t n)
{
    (void)a;
    return malloc(n);
}
static inline void glibc_f(api_t *a, void *p, size_t n)
{
    (void)a;
    (void)n;
    free(p);
}
static inline void *mi_a(api_t *a, size_t n)
{
    (void)a;
    return p_mi_malloc(n);
}
static inline void mi_f(api_t *a, void *p, size_t n)
{
    (void)a;
    (void)n;
    p_mi_free(p);
}
static inline void mi_sf(api_t *a, void *p, size_t n)
{
    (void)a;
    p_mi_free_size(p, n);
}
static inline void *je_a(api_t *a, size_t n)
{
    (void)a;
    return p_je_mallocx(n, 0);
}
static inline void je_f(api_t *a, void *p, size_t n)
{
    (void)a;
    (void)n;
    p_je_dallocx(p, 0);
}
static inline void je_sf(api_t *a, void *p, size_t n)
{
    (void)a;
    p_je_sdallocx(p, n, 0);
}
static inline void *tc_a(api_t *a, size_t n)
{
    (void)a;
    return p_tc_malloc(n);
}
static inline void tc_f(api_t *a, void *p, size_t n)
{
    (void)a;
    (void)n;
    p_tc_free(p);
}
static inline void tc_sf(api_t *a, void *p, size_t n)
{
    (void)a;
    p_tc_free_sized(p, n);
}

/* ---- the generic bodies, inlined once per allocator ---- */

typedef void *(*alloc_fn)(api_t *, size_t);
typedef void (*free_fn)(api_t *, void *, size_t);

static uint16_t size_table[SIZE_TABLE];

typedef struct start_line {
    _Atomic int ready;
    _Atomic int go;
} start_line_t;

static void start_line_wait(start_line_t *line)
{
    /* Release/acquire order each thread's set-up before the go signal;
     * nothing measured depends on it. */
    atomic_fetch_add_explicit(&line->ready, 1, memory_order_release);
    while (!atomic_load_explicit(&line->go, memory_order_acquire))
        moirai_cpu_relax();
}

static void start_line_release(start_line_t *line, int threads)
{
    while (atomic_load_explicit(&line->ready, memory_order_acquire) < threads)
        sched_yield();
    atomic_store_explicit(&line->go, 1, memory_order_release);
}

/* One thread's churn state. */
typedef struct churn {
    api_t *api;
    start_line_t *line; /* NULL: single-threaded, no waiting */
    uint64_t iters;
    uint32_t seed;
    bool mixed; /* sizes from size_table, else OBJECT_SIZE */
    bool failed;
    uint64_t t0, t1;
    void *slots[LIVE];
    uint16_t sizes[LIVE];
} churn_t;

static inline __attribute__((always_inline)) void churn_body(churn_t *w, alloc_fn A, free_fn F)
{
    bool ok = true;
    uint32_t filled = 0;
    for (; filled < LIVE; filled++) {
        size_t n = w->mixed ? size_table[(filled * 7u) % SIZE_TABLE] : OBJECT_SIZE;
        void *p = A(w->api, n);
        if (!p) {
            ok = false;
            break;
        }
        *(uint64_t *)p = filled;
        w->slots[filled] = p;
        w->sizes[filled] = (uint16_t)n;
    }
    if (w->line)
        start_line_wait(w->line);
    uint32_t s = w->seed;
    void **slots = w->slots;
    uint64_t it = 0;
    w->t0 = bench_now_ns();
    for (; ok && it < w->iters; it++) {
        uint32_t i = xorshift32(&s) & (LIVE - 1);
        size_t n = w->mixed ? size_table[it & (SIZE_TABLE - 1)] : OBJECT_SIZE;
        F(w->api, slots[i], w->sizes[i]);
        void *p = A(w->api, n);
        if (__builtin_expect(!p, 0)) {
            /* The slot's object is released: move the last one into it so
             * the drain below releases each live object once. */
            slots[i] = slots[--filled];
            w->sizes[i] = w->sizes[filled];
            ok = false;
            break;
        }
        *(uint64_t *)p = it;
        slots[i] = p;
        w->sizes[i] = (uint16_t)n;
    }
    w->t1 = bench_now_ns();
    for (uint32_t i = 0; i < filled; i++)
        F(w->api, slots[i], w->sizes[i]);
    w->failed = !ok;
}

typedef struct ring {
    _Alignas(64) _Atomic uint64_t head; /* next slot the consumer reads */
    _Alignas(64) _Atomic uint64_t tail; /* next slot the producer writes */
    _Alignas(64) void *slots[RING_SLOTS];
} ring_t;

typedef struct xfree {
    api_t *api;
    ring_t *ring;
    start_line_t *line;
    uint64_t iters;
    uint64_t t0, t1;
    bool failed;
} xfree_t;

static inline __attribute__((always_inline)) void xfree_producer(xfree_t *x, alloc_fn A)
{
    ring_t *r = x->ring;
    uint64_t head = 0;
    start_line_wait(x->line);
    x->t0 = bench_now_ns();
    for (uint64_t it = 0; it < x->iters; it++) {
        void *p = A(x->api, OBJECT_SIZE);
        if (__builtin_expect(!p, 0)) {
            /* Tell the consumer with a NULL, which it counts as a failure. */
            x->failed = true;
        } else {
            *(uint64_t *)p = it;
        }
        for (unsigned spins = 0; it - head >= RING_SLOTS; spins++) {
            /* Acquire: the consumer is done with the slot before we reuse it. */
            head = atomic_load_explicit(&r->head, memory_order_acquire);
            if (it - head >= RING_SLOTS)
                backoff(spins);
        }
        r->slots[it % RING_SLOTS] = p;
        /* Release: publishes the slot and the object's contents. */
        atomic_store_explicit(&r->tail, it + 1, memory_order_release);
    }
}

static inline __attribute__((always_inline)) void xfree_consumer(xfree_t *x, free_fn F)
{
    ring_t *r = x->ring;
    uint64_t tail = 0;
    start_line_wait(x->line);
    x->t0 = bench_now_ns();
    for (uint64_t it = 0; it < x->iters; it++) {
        for (unsigned spins = 0; it >= tail; spins++) {
            /* Acquire: the slot and the object's contents. */
            tail = atomic_load_explicit(&r->tail, memory_order_acquire);
            if (it >= tail)
                backoff(spins);
        }
        void *p = r->slots[it % RING_SLOTS];
        if (!p || *(uint64_t *)p != it)
            x->failed = true;
        if (p)
            F(x->api, p, OBJECT_SIZE);
        atomic_store_explicit(&r->head, it + 1, memory_order_release);
    }
    x->t1 = bench_now_ns();
}

/* ---- the runs ---- */

static double run_churn_1t(api_t *api, uint64_t iters, bool mixed, void (*body)(churn_t *))
{
    churn_t *w = calloc(1, sizeof(*w));
    if (!w)
        return -1;
    w->api = api;
    w->iters = iters;
    w->seed = 2463534242u;
    w->mixed = mixed;
    body(w);
    double r = w->failed ? -1 : (double)(w->t1 - w->t0) / (double)iters;
    free(w);
    return r;
}

/* Runs `threads` functions on `args` (each with a start line) and joins
 * them. Returns the number started. */
static int run_threads(void *(*fn[])(void *), void *args[], int threads, start_line_t *line)
{
    pthread_t th[2];
    int started = 0;
    for (; started < threads; started++)
        if (pthread_create(&th[started], NULL, fn[started], args[started]) != 0)
            break;
    if (started == threads)
        start_line_release(line, threads);
    else
        atomic_store_explicit(&line->go, 1, memory_order_release);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    return started;
}

static double run_churn_2t(api_t *api, uint64_t iters, void *(*thread)(void *))
{
    start_line_t line = {0, 0};
    churn_t *w = calloc(2, sizeof(*w));
    if (!w)
        return -1;
    void *(*fn[2])(void *) = {thread, thread};
    void *args[2] = {&w[0], &w[1]};
    for (int i = 0; i < 2; i++) {
        w[i].api = api;
        w[i].line = &line;
        w[i].iters = iters;
        w[i].seed = 2463534242u + (uint32_t)i * 7919u;
        w[i].failed = true;
    }
    double r = -1;
    if (run_threads(fn, args, 2, &line) == 2 && !w[0].failed && !w[1].failed) {
        uint64_t t0 = w[0].t0 < w[1].t0 ? w[0].t0 : w[1].t0;
        uint64_t t1 = w[0].t1 > w[1].t1 ? w[0].t1 : w[1].t1;
        r = (double)(t1 - t0) / (double)(2 * iters);
    }
    free(w);
    return r;
}

static double run_xfree(api_t *api, uint64_t iters, void *(*producer)(void *),
                        void *(*consumer)(void *))
{
    start_line_t line = {0, 0};
    ring_t *ring = aligned_alloc(64, sizeof(ring_t));
    if (!ring)
        return -1;
    atomic_init(&ring->head, 0);
    atomic_init(&ring->tail, 0);
    xfree_t x[2] = {{api, ring, &line, iters, 0, 0, false}, {api, ring, &line, iters, 0, 0, false}};
    void *(*fn[2])(void *) = {producer, consumer};
    void *args[2] = {&x[0], &x[1]};
    double r = -1;
    if (run_threads(fn, args, 2, &line) == 2 && !x[0].failed && !x[1].failed) {
        uint64_t t0 = x[0].t0 < x[1].t0 ? x[0].t0 : x[1].t0;
        r = (double)(x[1].t1 - t0) / (double)iters;
    }
    free(ring);
    return r;
}

/* ---- per-allocator instances ---- */

/* Set-up and tear-down of the Moirai pools for one round. */
static bool moirai_pool_setup(api_t *api)
{
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, OBJECT_SIZE);
    cfg.name = "bench";
    moirai_pool_t *pool;
    if (moirai_pool_create(&pool, &cfg) != 0)
        return false;
    api->ctx = pool;
    return true;
}

static void moirai_pool_teardown(api_t *api)
{
    moirai_pool_destroy(api->ctx);
}

static bool moirai_mempool_setup(api_t *api)
{
    moirai_mempool_config_t cfg;
    moirai_mempool_config_init(&cfg);
    moirai_mempool_t *mp;
    if (moirai_mempool_create(&mp, &cfg) != 0)
        return false;
    api->ctx = mp;
    return true;
}

static void moirai_mempool_teardown(api_t *api)
{
    moirai_mempool_destroy(api->ctx);
}

static bool no_setup(api_t *api)
{
    api->ctx = NULL;
    return true;
}

static void no_teardown(api_t *api)
{
    (void)api;
}

/* Generates the four runs of one allocator: A/F allocate and release
 * fixed objects, SA/SF mixed sizes; SETUP/TEARDOWN and SSETUP/STEARDOWN
 * prepare the `api` of the fixed and mixed cases. */
#define DEFINE_IMPL(name, A, F, SA, SF, SETUP, TEARDOWN, SSETUP, STEARDOWN)                        \
    static void churn_fixed_##name(churn_t *w)                                                     \
    {                                                                                              \
        churn_body(w, A, F);                                                                       \
    }                                                                                              \
    static void churn_mixed_##name(churn_t *w)                                                     \
    {                                                                                              \
        churn_body(w, SA, SF);                                                                     \
    }                                                                                              \
    static void *churn_thread_##name(void *arg)                                                    \
    {                                                                                              \
        churn_body(arg, A, F);                                                                     \
        return NULL;                                                                               \
    }                                                                                              \
    static void *producer_##name(void *arg)                                                        \
    {                                                                                              \
        xfree_producer(arg, A);                                                                    \
        return NULL;                                                                               \
    }                                                                                              \
    static void *consumer_##name(void *arg)                                                        \
    {                                                                                              \
        xfree_consumer(arg, F);                                                                    \
        return NULL;                                                                               \
    }                                                                                              \
    static double pool_churn_1t_##name(uint64_t iters)                                             \
    {                                                                                              \
        api_t api;                                                                                 \
        if (!SETUP(&api))                                                                          \
            return -1;                                                                             \
        double r = run_churn_1t(&api, iters, false, churn_fixed_##name);                           \
        TEARDOWN(&api);                                                                            \
        return r;                                                                                  \
    }                                                                                              \
    static double pool_churn_2t_##name(uint64_t iters)                                             \
    {                                                                                              \
        api_t api;                                                                                 \
        if (!SETUP(&api))                                                                          \
            return -1;                                                                             \
        double r = run_churn_2t(&api, iters, churn_thread_##name);                                 \
        TEARDOWN(&api);                                                                            \
        return r;                                                                                  \
    }                                                                                              \
    static double pool_cross_thread_free_##name(uint64_t iters)                                    \
    {                                                                                              \
        api_t api;                                                                                 \
        if (!SETUP(&api))                                                                          \
            return -1;                                                                             \
        double r = run_xfree(&api, iters, producer_##name, consumer_##name);                       \
        TEARDOWN(&api);                                                                            \
        return r;                                                                                  \
    }                                                                                              \
    static double sizeclass_churn_1t_##name(uint64_t iters)                                        \
    {                                                                                              \
        api_t api;                                                                                 \
        if (!SSETUP(&api))                                                                         \
            return -1;                                                                             \
        double r = run_churn_1t(&api, iters, true, churn_mixed_##name);                            \
        STEARDOWN(&api);                                                                           \
        return r;                                                                                  \
    }

DEFINE_IMPL(moirai, moirai_a, moirai_f, moirai_sa, moirai_sf, moirai_pool_setup,
            moirai_pool_teardown, moirai_mempool_setup, moirai_mempool_teardown)
DEFINE_IMPL(glibc, glibc_a, glibc_f, glibc_a, glibc_f, no_setup, no_teardown, no_setup, no_teardown)
DEFINE_IMPL(jemalloc, je_a, je_f, je_a, je_sf, no_setup, no_teardown, no_setup, no_teardown)
DEFINE_IMPL(tcmalloc, tc_a, tc_f, tc_a, tc_sf, no_setup, no_teardown, no_setup, no_teardown)
DEFINE_IMPL(mimalloc, mi_a, mi_f, mi_a, mi_sf, no_setup, no_teardown, no_setup, no_teardown)

/* ---- loading the peers ---- */

static char tc_missing[160], mi_missing[160];

/* Opens `soname` locally and resolves `count` symbols into `out`. Returns
 * NULL, or why not (in `why`). */
static const char *load_peer(const char *soname, const char *const *names, void **out[], int count,
                             char *why, size_t why_size)
{
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(why, why_size, "dlopen: %s", dlerror());
        return why;
    }
    for (int i = 0; i < count; i++) {
        *out[i] = dlsym(h, names[i]);
        if (!*out[i]) {
            snprintf(why, why_size, "%s has no %s", soname, names[i]);
            return why;
        }
    }
    /* Kept open for the life of the process: the allocator's memory and
     * thread caches must stay valid. */
    return NULL;
}

#define IMPLS(case_name)                                                                           \
    static bench_impl_t case_name##_impls[] = {                                                    \
        {"moirai", case_name##_moirai, NULL},     {"glibc", case_name##_glibc, NULL},              \
        {"jemalloc", case_name##_jemalloc, NULL}, {"tcmalloc", case_name##_tcmalloc, NULL},        \
        {"mimalloc", case_name##_mimalloc, NULL},                                                  \
    }

IMPLS(pool_churn_1t);
IMPLS(pool_churn_2t);
IMPLS(pool_cross_thread_free);
IMPLS(sizeclass_churn_1t);

#define IMPL_COUNT 5

static bench_case_t cases[] = {
    {"mem", "pool_churn_1t", "ns_per_op", 20000000, 2000000, pool_churn_1t_impls, IMPL_COUNT},
    {"mem", "pool_churn_2t", "ns_per_op", 20000000, 2000000, pool_churn_2t_impls, IMPL_COUNT},
    {"mem", "pool_cross_thread_free", "ns_per_op", 10000000, 1000000, pool_cross_thread_free_impls,
     IMPL_COUNT},
    {"mem", "sizeclass_churn_1t", "ns_per_op", 20000000, 2000000, sizeclass_churn_1t_impls,
     IMPL_COUNT},
};

/* Marks peer `impl_index` missing in every case. */
static void mark_missing(size_t impl_index, const char *why)
{
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        bench_impl_t *impl = (bench_impl_t *)&cases[c].impls[impl_index];
        impl->run = NULL;
        impl->missing = why;
    }
}

const bench_case_t *bench_mem_cases(size_t *count)
{
    static bool loaded;
    if (!loaded) {
        loaded = true;
        churn_size_table_fill(size_table);

#ifdef MOIRAI_BENCH_HAVE_JEMALLOC
        p_je_mallocx = mallocx;
        p_je_dallocx = dallocx;
        p_je_sdallocx = sdallocx;
#else
        mark_missing(2, "libjemalloc_pic.a or objcopy not found at build time");
#endif

        static const char *const tc_names[] = {"tc_malloc", "tc_free", "tc_free_sized"};
        void **tc_out[] = {(void **)&p_tc_malloc, (void **)&p_tc_free, (void **)&p_tc_free_sized};
        if (load_peer("libtcmalloc_minimal.so.4", tc_names, tc_out, 3, tc_missing,
                      sizeof(tc_missing)))
            mark_missing(3, tc_missing);

        static const char *const mi_names[] = {"mi_malloc", "mi_free", "mi_free_size"};
        void **mi_out[] = {(void **)&p_mi_malloc, (void **)&p_mi_free, (void **)&p_mi_free_size};
        if (load_peer("libmimalloc.so.2", mi_names, mi_out, 3, mi_missing, sizeof(mi_missing)))
            mark_missing(4, mi_missing);
    }
    *count = sizeof(cases) / sizeof(cases[0]);
    return cases;
}
