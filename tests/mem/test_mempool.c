/* Memory pools: class lists, the size-to-class mapping, every size up to
 * past the largest class, alignment, statistics, releases on other
 * threads, allocation failures, and (AddressSanitizer) the slack between
 * a request and its class. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <moirai/core/error.h>
#include <moirai/mem/mempool.h>

#include "asan_child.h"
#include "oom.h"

static const size_t defaults[] = {16,  32,  48,  64,  80,  96,  112, 128, 160, 192,
                                  224, 256, 320, 384, 448, 512, 640, 768, 896, 1024};

static moirai_mempool_t *make_default(void)
{
    moirai_mempool_config_t cfg;
    moirai_mempool_config_init(&cfg);
    moirai_mempool_t *mp = NULL;
    cr_assert_eq(moirai_mempool_create(&mp, &cfg), 0);
    return mp;
}

Test(mempool, invalid_arguments, .timeout = 10)
{
    moirai_mempool_config_t cfg;
    moirai_mempool_config_init(&cfg);
    moirai_mempool_t *mp = (moirai_mempool_t *)0x1;
    cr_assert_eq(moirai_mempool_create(NULL, &cfg), -EINVAL);
    cr_assert_eq(moirai_mempool_create(&mp, NULL), -EINVAL);
    size_t bad_order[] = {16, 16, 32};
    size_t bad_multiple[] = {16, 20};
    size_t zero[] = {0, 16};
    size_t too_big[] = {16, 65536 + 8};
    size_t many[65];
    for (int i = 0; i < 65; i++)
        many[i] = (size_t)(i + 1) * 8;
    struct {
        size_t *classes;
        size_t count;
    } bad[] = {{bad_order, 3}, {bad_multiple, 2}, {zero, 2}, {too_big, 2}, {many, 65}, {many, 0}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.classes = bad[i].classes;
        cfg.class_count = bad[i].count;
        cr_assert_eq(moirai_mempool_create(&mp, &cfg), -EINVAL, "case %zu", i);
    }
    moirai_mempool_config_init(&cfg);
    cfg.magazine_size = 5000;
    cr_assert_eq(moirai_mempool_create(&mp, &cfg), -EINVAL);
    moirai_mempool_config_init(&cfg);
    cfg.chunk_free = (moirai_pool_chunk_free_cb)0x1;
    cr_assert_eq(moirai_mempool_create(&mp, &cfg), -EINVAL);
    cr_assert_eq(mp, (moirai_mempool_t *)0x1);

    mp = make_default();
    void *p = (void *)0x1;
    cr_assert_eq(moirai_mempool_alloc(NULL, 8, &p), -EINVAL);
    cr_assert_eq(moirai_mempool_alloc(mp, 8, NULL), -EINVAL);
    cr_assert_eq(p, (void *)0x1);
    moirai_mempool_free(NULL, p, 8); /* does nothing */
    moirai_mempool_free(mp, NULL, 8);
    moirai_mempool_flush(NULL);
    moirai_mempool_destroy(NULL);
    moirai_mempool_config_init(NULL);
    moirai_mempool_stats_t s;
    moirai_pool_stats_t ps;
    cr_assert_eq(moirai_mempool_stats(NULL, &s), -EINVAL);
    cr_assert_eq(moirai_mempool_stats(mp, NULL), -EINVAL);
    cr_assert_eq(moirai_mempool_class_stats(mp, 20, &ps), -EINVAL);
    cr_assert_eq(moirai_mempool_class_stats(mp, 0, NULL), -EINVAL);
    cr_assert_eq(moirai_mempool_class_stats(NULL, 0, &ps), -EINVAL);
    cr_assert_eq(moirai_mempool_class_of(NULL, 8), -EINVAL);
    cr_assert_eq(moirai_mempool_class_count(NULL), 0);
    cr_assert_eq(moirai_mempool_class_size(NULL, 0), 0);
    cr_assert_eq(moirai_mempool_class_size(mp, 20), 0);
    moirai_mempool_destroy(mp);
}

Test(mempool, default_classes_and_mapping, .timeout = 10)
{
    moirai_mempool_t *mp = make_default();
    cr_assert_eq(moirai_mempool_class_count(mp), 20);
    for (size_t i = 0; i < 20; i++)
        cr_assert_eq(moirai_mempool_class_size(mp, i), defaults[i]);
    /* Every size maps to the smallest class that holds it. */
    for (size_t size = 0; size <= 1024; size++) {
        int c = moirai_mempool_class_of(mp, size);
        cr_assert_geq(c, 0);
        size_t need = size ? size : 1;
        cr_assert_geq(defaults[c], need, "size %zu -> class %d", size, c);
        if (c > 0)
            cr_assert_lt(defaults[c - 1], need, "size %zu -> class %d", size, c);
    }
    cr_assert_eq(moirai_mempool_class_of(mp, 1025), -ERANGE);
    cr_assert_eq(moirai_mempool_class_of(mp, SIZE_MAX), -ERANGE);
    moirai_mempool_destroy(mp);
}

Test(mempool, every_size_allocates_usable_aligned_blocks, .timeout = 60)
{
    enum { MAX = 1100 };
    moirai_mempool_t *mp = make_default();
    static unsigned char *blocks[MAX + 1];
    for (size_t size = 0; size <= MAX; size++) {
        cr_assert_eq(moirai_mempool_alloc(mp, size, (void **)&blocks[size]), 0);
        cr_assert_eq((uintptr_t)blocks[size] % 16, 0, "size %zu", size);
        memset(blocks[size], (int)(size & 0xff), size);
    }
    for (size_t size = 0; size <= MAX; size++)
        for (size_t b = 0; b < size; b++)
            cr_assert_eq(blocks[size][b], size & 0xff, "block of %zu overwritten", size);
    moirai_mempool_stats_t s;
    cr_assert_eq(moirai_mempool_stats(mp, &s), 0);
    cr_assert_eq(s.small.allocations, 1025);
    cr_assert_eq(s.small.in_use, 1025);
    cr_assert_eq(s.large_allocations, MAX - 1024);
    moirai_pool_stats_t c16;
    cr_assert_eq(moirai_mempool_class_stats(mp, 0, &c16), 0);
    cr_assert_eq(c16.allocations, 17, "sizes 0..16 use the 16-byte class");
    for (size_t size = 0; size <= MAX; size++)
        moirai_mempool_free(mp, blocks[size], size);
    cr_assert_eq(moirai_mempool_stats(mp, &s), 0);
    cr_assert_eq(s.small.frees, 1025);
    cr_assert_eq(s.small.in_use, 0);
    cr_assert_eq(s.large_frees, MAX - 1024);
    cr_assert_eq(s.large_failures, 0);
    cr_assert_eq(s.small.allocations, s.small.cache_hits + s.small.depot_hits + s.small.fresh);
    moirai_mempool_destroy(mp);
}

Test(mempool, caller_classes, .timeout = 10)
{
    size_t classes[] = {8, 24, 200};
    moirai_mempool_config_t cfg;
    moirai_mempool_config_init(&cfg);
    cfg.classes = classes;
    cfg.class_count = 3;
    cfg.magazine_size = 4;
    cfg.name = "custom";
    moirai_mempool_t *mp;
    cr_assert_eq(moirai_mempool_create(&mp, &cfg), 0);
    cr_assert_eq(moirai_mempool_class_of(mp, 8), 0);
    cr_assert_eq(moirai_mempool_class_of(mp, 9), 1);
    cr_assert_eq(moirai_mempool_class_of(mp, 25), 2);
    cr_assert_eq(moirai_mempool_class_of(mp, 201), -ERANGE);
    void *p[60];
    for (int i = 0; i < 60; i++) {
        size_t size = (size_t)(i * 5);
        cr_assert_eq(moirai_mempool_alloc(mp, size, &p[i]), 0);
        cr_assert_eq((uintptr_t)p[i] % 8, 0);
        memset(p[i], 7, size);
    }
    for (int i = 0; i < 60; i++)
        moirai_mempool_free(mp, p[i], (size_t)(i * 5));
    moirai_mempool_stats_t s;
    cr_assert_eq(moirai_mempool_stats(mp, &s), 0);
    cr_assert_eq(s.small.allocations, 41, "sizes 0..200 in steps of 5");
    cr_assert_eq(s.large_allocations, 19);
    cr_assert_eq(s.small.in_use, 0);
    moirai_mempool_destroy(mp);
}

static long chunk_bytes;
static int chunk_count;

static void *count_chunk_alloc(void *ctx, size_t size)
{
    cr_assert_eq(ctx, &chunk_bytes);
    chunk_bytes += (long)size;
    chunk_count++;
    return malloc(size);
}

static void count_chunk_free(void *ctx, void *ptr, size_t size)
{
    cr_assert_eq(ctx, &chunk_bytes);
    chunk_bytes -= (long)size;
    chunk_count--;
    free(ptr);
}

Test(mempool, chunk_allocator_serves_every_class, .timeout = 10)
{
    moirai_mempool_config_t cfg;
    moirai_mempool_config_init(&cfg);
    cfg.chunk_alloc = count_chunk_alloc;
    cfg.chunk_free = count_chunk_free;
    cfg.chunk_arg = &chunk_bytes;
    moirai_mempool_t *mp;
    cr_assert_eq(moirai_mempool_create(&mp, &cfg), 0);
    cr_assert_eq(chunk_count, 0, "no chunk before first use");
    void *p[20];
    for (size_t c = 0; c < 20; c++)
        cr_assert_eq(moirai_mempool_alloc(mp, defaults[c], &p[c]), 0);
    cr_assert_eq(chunk_count, 20, "one chunk per class");
    moirai_mempool_stats_t s;
    cr_assert_eq(moirai_mempool_stats(mp, &s), 0);
    cr_assert_eq(s.small.system_allocations, 20);
    for (size_t c = 0; c < 20; c++)
        moirai_mempool_free(mp, p[c], defaults[c]);
    moirai_mempool_destroy(mp);
    cr_assert_eq(chunk_count, 0);
    cr_assert_eq(chunk_bytes, 0);
}

typedef struct xfer {
    moirai_mempool_t *mp;
    void *blocks[2000];
} xfer_t;

static size_t size_of(int i)
{
    return (size_t)(i * 37) % 1500;
}

static void *alloc_thread(void *p)
{
    xfer_t *x = p;
    for (int i = 0; i < 2000; i++) {
        if (moirai_mempool_alloc(x->mp, size_of(i), &x->blocks[i]) != 0)
            return (void *)1;
        memset(x->blocks[i], i & 0xff, size_of(i));
    }
    return NULL;
}

Test(mempool, release_on_another_thread_and_flush, .timeout = 30)
{
    xfer_t *x = calloc(1, sizeof(*x));
    x->mp = make_default();
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, alloc_thread, x), 0);
    void *rc;
    pthread_join(th, &rc);
    cr_assert_null(rc);
    for (int i = 0; i < 2000; i++) {
        for (size_t b = 0; b < size_of(i); b++)
            cr_assert_eq(((unsigned char *)x->blocks[i])[b], i & 0xff);
        moirai_mempool_free(x->mp, x->blocks[i], size_of(i));
    }
    moirai_mempool_flush(x->mp);
    moirai_mempool_stats_t s;
    cr_assert_eq(moirai_mempool_stats(x->mp, &s), 0);
    cr_assert_eq(s.small.in_use, 0);
    cr_assert_eq(s.small.allocations + s.large_allocations, 2000);
    cr_assert_eq(s.small.frees + s.large_frees, 2000);
    /* The same thread allocates them all again without new objects. */
    uint64_t objects = s.small.objects;
    cr_assert_eq(pthread_create(&th, NULL, alloc_thread, x), 0);
    pthread_join(th, &rc);
    cr_assert_null(rc);
    cr_assert_eq(moirai_mempool_stats(x->mp, &s), 0);
    cr_assert_eq(s.small.objects, objects);
    for (int i = 0; i < 2000; i++)
        moirai_mempool_free(x->mp, x->blocks[i], size_of(i));
    moirai_mempool_destroy(x->mp);
    free(x);
}

Test(mempool, classes_find_their_caches_among_fragmented_pools, .timeout = 30)
{
    /* Fragment the pool registry: every other slot free. */
    enum { SINGLES = 40 };
    static moirai_pool_t *single[SINGLES];
    for (int i = 0; i < SINGLES; i++) {
        moirai_pool_config_t pc;
        moirai_pool_config_init(&pc, 16);
        cr_assert_eq(moirai_pool_create(&single[i], &pc), 0);
    }
    for (int i = 0; i < SINGLES; i += 2) {
        moirai_pool_destroy(single[i]);
        single[i] = NULL;
    }
    moirai_mempool_t *a = make_default();
    moirai_mempool_t *b = make_default();
    /* Every class of both serves and counts its own blocks. */
    for (int round = 0; round < 2; round++) {
        void *pa[20], *pb[20];
        for (size_t c = 0; c < 20; c++) {
            cr_assert_eq(moirai_mempool_alloc(a, defaults[c], &pa[c]), 0);
            cr_assert_eq(moirai_mempool_alloc(b, defaults[c] - 1, &pb[c]), 0);
            memset(pa[c], 1, defaults[c]);
            memset(pb[c], 2, defaults[c] - 1);
        }
        for (size_t c = 0; c < 20; c++) {
            moirai_mempool_free(a, pa[c], defaults[c]);
            moirai_mempool_free(b, pb[c], defaults[c] - 1);
        }
    }
    for (size_t c = 0; c < 20; c++) {
        moirai_pool_stats_t s;
        cr_assert_eq(moirai_mempool_class_stats(a, c, &s), 0);
        cr_assert_eq(s.allocations, 2, "class %zu", c);
        cr_assert_eq(s.in_use, 0);
        cr_assert_eq(moirai_mempool_class_stats(b, c, &s), 0);
        cr_assert_eq(s.allocations, 2, "class %zu", c);
    }
    for (int i = 1; i < SINGLES; i += 2) {
        void *p;
        cr_assert_eq(moirai_pool_alloc(single[i], &p), 0);
        moirai_pool_free(single[i], p);
        moirai_pool_stats_t s;
        cr_assert_eq(moirai_pool_stats(single[i], &s), 0);
        cr_assert_eq(s.allocations, 1);
        moirai_pool_destroy(single[i]);
    }
    moirai_mempool_destroy(a);
    moirai_mempool_destroy(b);
}

/* ---- a thread's caches of many memory pools (one block per memory pool,
 * found through the memory pool used last or the thread's table) ---- */

/* A size of class `c` of the default list, varied by `k` (steps between
 * classes are at least 16, so the size stays in its class). */
static size_t class_size(size_t c, size_t k)
{
    return defaults[c] - k % 8;
}

/* Allocates one block of every class from each of `mps`, class by class
 * and memory pool by memory pool (so every call switches memory pool),
 * writes a byte pattern, checks all of them, and releases them. */
static void use_all(moirai_mempool_t **mps, size_t n)
{
    void **blocks = calloc(n * 20, sizeof(void *));
    cr_assert_not_null(blocks);
    for (size_t c = 0; c < 20; c++)
        for (size_t k = 0; k < n; k++) {
            void **b = &blocks[k * 20 + c];
            cr_assert_eq(moirai_mempool_alloc(mps[k], class_size(c, k), b), 0);
            memset(*b, (int)(k * 20 + c) & 0xff, class_size(c, k));
        }
    for (size_t k = 0; k < n; k++)
        for (size_t c = 0; c < 20; c++)
            for (size_t i = 0; i < class_size(c, k); i++)
                cr_assert_eq(((unsigned char *)blocks[k * 20 + c])[i], (k * 20 + c) & 0xff,
                             "memory pool %zu class %zu overlaps another block", k, c);
    for (size_t c = 20; c-- > 0;)
        for (size_t k = n; k-- > 0;)
            moirai_mempool_free(mps[k], blocks[k * 20 + c], class_size(c, k));
    free(blocks);
}

Test(mempool, many_memory_pools_alive_at_once, .timeout = 30)
{
    /* 48 memory pools of 20 classes: the thread's table grows to 960
     * entries and more, a block of caches per memory pool. */
    enum { M = 48 };
    moirai_mempool_t *mps[M];
    for (int k = 0; k < M; k++)
        mps[k] = make_default();
    use_all(mps, M);
    use_all(mps, M);
    for (int k = 0; k < M; k++) {
        moirai_mempool_stats_t s;
        cr_assert_eq(moirai_mempool_stats(mps[k], &s), 0);
        cr_assert_eq(s.small.allocations, 40, "memory pool %d", k);
        cr_assert_eq(s.small.frees, 40);
        cr_assert_eq(s.small.in_use, 0);
        cr_assert_eq(s.small.high_water, 20, "one block per class at most");
        cr_assert_eq(s.small.fresh, 20, "the second round reused the first's blocks");
        for (size_t c = 0; c < 20; c++) {
            moirai_pool_stats_t cs;
            cr_assert_eq(moirai_mempool_class_stats(mps[k], c, &cs), 0);
            cr_assert_eq(cs.allocations, 2, "memory pool %d class %zu", k, c);
        }
    }
    /* Every other one goes; new ones take their slots (new ids, perhaps
     * the same addresses): the thread's stale entries must not match. */
    for (int k = 0; k < M; k += 2) {
        moirai_mempool_destroy(mps[k]);
        mps[k] = make_default();
    }
    use_all(mps, M);
    for (int k = 0; k < M; k++) {
        moirai_mempool_stats_t s;
        cr_assert_eq(moirai_mempool_stats(mps[k], &s), 0);
        cr_assert_eq(s.small.allocations, k % 2 ? 60 : 20, "memory pool %d", k);
        cr_assert_eq(s.small.in_use, 0);
    }
    for (int k = 0; k < M; k++)
        moirai_mempool_destroy(mps[k]);
}

Test(mempool, one_thread_alternates_between_two_memory_pools, .timeout = 30)
{
    enum { K = 300 };
    moirai_mempool_t *mp[2] = {make_default(), make_default()};
    static void *blocks[2][K];
    for (int i = 0; i < K; i++)
        for (int m = 0; m < 2; m++) {
            size_t size = (size_t)(i * 13 + m * 7) % 300 + 1;
            cr_assert_eq(moirai_mempool_alloc(mp[m], size, &blocks[m][i]), 0);
            memset(blocks[m][i], m ? 0xbb : 0xaa, size);
        }
    for (int i = 0; i < K; i++)
        for (int m = 0; m < 2; m++) {
            size_t size = (size_t)(i * 13 + m * 7) % 300 + 1;
            for (size_t b = 0; b < size; b++)
                cr_assert_eq(((unsigned char *)blocks[m][i])[b], m ? 0xbb : 0xaa);
        }
    for (int m = 0; m < 2; m++) {
        moirai_mempool_stats_t s;
        cr_assert_eq(moirai_mempool_stats(mp[m], &s), 0);
        cr_assert_eq(s.small.allocations, K);
        cr_assert_eq(s.small.in_use, K);
        cr_assert_eq(s.small.high_water, K, "exact with one thread");
    }
    for (int i = 0; i < K; i++)
        for (int m = 0; m < 2; m++)
            moirai_mempool_free(mp[m], blocks[m][i], (size_t)(i * 13 + m * 7) % 300 + 1);
    for (int m = 0; m < 2; m++) {
        moirai_mempool_stats_t s;
        cr_assert_eq(moirai_mempool_stats(mp[m], &s), 0);
        cr_assert_eq(s.small.frees, K);
        cr_assert_eq(s.small.in_use, 0);
        cr_assert_eq(s.small.high_water, K, "the peak stays");
        moirai_mempool_destroy(mp[m]);
    }
}

/* Threads that cache blocks of a memory pool the main thread then
 * destroys, and go on with memory pools created afterwards. */
enum { HOLDERS = 3, HELD = 200 };

typedef struct holder {
    moirai_mempool_t *first;
    moirai_mempool_t *second; /* set by the main thread after destroying `first` */
    pthread_barrier_t *cached, *destroyed;
    uint64_t allocations; /* of `second` and of its own memory pool */
    int failed;
} holder_t;

static void *holder_thread(void *p)
{
    holder_t *h = p;
    void *blocks[HELD];
    for (int i = 0; i < HELD; i++) {
        if (moirai_mempool_alloc(h->first, (size_t)i % 200 + 1, &blocks[i]) != 0)
            h->failed = 1;
    }
    for (int i = 0; i < HELD; i++)
        if (blocks[i])
            moirai_mempool_free(h->first, blocks[i], (size_t)i % 200 + 1);
    /* The released blocks sit in this thread's caches of `first`. */
    pthread_barrier_wait(h->cached);
    pthread_barrier_wait(h->destroyed);
    /* `first` is gone: this thread's block of caches for it, and the
     * memory pool it used last, must not be taken for `second`'s, which
     * may have the same slots and even the same address. */
    moirai_mempool_t *own;
    moirai_mempool_config_t cfg;
    moirai_mempool_config_init(&cfg);
    if (moirai_mempool_create(&own, &cfg) != 0) {
        h->failed = 1;
        return NULL;
    }
    moirai_mempool_t *mps[2] = {h->second, own};
    for (int i = 0; i < HELD; i++) {
        for (int m = 0; m < 2; m++) {
            if (moirai_mempool_alloc(mps[m], (size_t)i % 200 + 1, &blocks[i]) != 0) {
                h->failed = 1;
                continue;
            }
            memset(blocks[i], 0x5a, (size_t)i % 200 + 1);
            moirai_mempool_free(mps[m], blocks[i], (size_t)i % 200 + 1);
        }
    }
    moirai_mempool_stats_t s;
    if (moirai_mempool_stats(own, &s) != 0 || s.small.allocations != HELD || s.small.in_use != 0)
        h->failed = 1;
    moirai_mempool_destroy(own);
    return NULL;
}

Test(mempool, destroyed_while_other_threads_cache_its_blocks, .timeout = 30)
{
    pthread_barrier_t cached, destroyed;
    pthread_barrier_init(&cached, NULL, HOLDERS + 1);
    pthread_barrier_init(&destroyed, NULL, HOLDERS + 1);
    moirai_mempool_t *first = make_default();
    holder_t h[HOLDERS];
    pthread_t th[HOLDERS];
    for (int t = 0; t < HOLDERS; t++) {
        h[t] = (holder_t){first, NULL, &cached, &destroyed, 0, 0};
        cr_assert_eq(pthread_create(&th[t], NULL, holder_thread, &h[t]), 0);
    }
    pthread_barrier_wait(&cached);
    moirai_mempool_stats_t s;
    cr_assert_eq(moirai_mempool_stats(first, &s), 0);
    cr_assert_eq(s.small.allocations, HOLDERS * HELD);
    cr_assert_eq(s.small.in_use, 0);
    moirai_mempool_destroy(first);
    moirai_mempool_t *second = make_default();
    for (int t = 0; t < HOLDERS; t++)
        h[t].second = second;
    pthread_barrier_wait(&destroyed);
    for (int t = 0; t < HOLDERS; t++) {
        pthread_join(th[t], NULL);
        cr_assert_eq(h[t].failed, 0, "thread %d", t);
    }
    /* The threads exited: their caches of `second` went back to it. */
    cr_assert_eq(moirai_mempool_stats(second, &s), 0);
    cr_assert_eq(s.small.allocations, HOLDERS * HELD);
    cr_assert_eq(s.small.frees, HOLDERS * HELD);
    cr_assert_eq(s.small.in_use, 0);
    moirai_mempool_destroy(second);
    pthread_barrier_destroy(&cached);
    pthread_barrier_destroy(&destroyed);
}

static void *cache_and_exit(void *p)
{
    moirai_mempool_t **mp = p;
    void *blocks[2][500];
    /* Two memory pools in turn, blocks of a few classes each. */
    for (int i = 0; i < 500; i++)
        for (int m = 0; m < 2; m++)
            if (moirai_mempool_alloc(mp[m], (size_t)(i % 3) * 64 + 40, &blocks[m][i]) != 0)
                return (void *)1;
    for (int i = 0; i < 500; i++)
        for (int m = 0; m < 2; m++)
            moirai_mempool_free(mp[m], blocks[m][i], (size_t)(i % 3) * 64 + 40);
    return NULL;
}

Test(mempool, thread_exit_returns_cached_blocks, .timeout = 30)
{
    moirai_mempool_t *mp[2] = {make_default(), make_default()};
    pthread_t th;
    void *rc;
    cr_assert_eq(pthread_create(&th, NULL, cache_and_exit, mp), 0);
    pthread_join(th, &rc);
    cr_assert_null(rc);
    uint64_t objects[2];
    for (int m = 0; m < 2; m++) {
        moirai_mempool_stats_t s;
        cr_assert_eq(moirai_mempool_stats(mp[m], &s), 0);
        cr_assert_eq(s.small.allocations, 500);
        cr_assert_eq(s.small.frees, 500);
        cr_assert_eq(s.small.in_use, 0);
        objects[m] = s.small.objects;
    }
    /* Another thread needs every one of those blocks again: had the exit
     * left them in the dead thread's caches, new ones would be made. */
    cr_assert_eq(pthread_create(&th, NULL, cache_and_exit, mp), 0);
    pthread_join(th, &rc);
    cr_assert_null(rc);
    for (int m = 0; m < 2; m++) {
        moirai_mempool_stats_t s;
        cr_assert_eq(moirai_mempool_stats(mp[m], &s), 0);
        cr_assert_eq(s.small.objects, objects[m], "memory pool %d made new blocks", m);
        cr_assert_eq(s.small.allocations, 1000);
        cr_assert_eq(s.small.in_use, 0);
        moirai_mempool_destroy(mp[m]);
    }
}

/* ---- allocation failures ---- */

static moirai_mempool_t *oom_mp;

static int op_create(void *ctx)
{
    (void)ctx;
    moirai_mempool_config_t cfg;
    moirai_mempool_config_init(&cfg);
    moirai_mempool_t *mp = (moirai_mempool_t *)0x1;
    int rc = moirai_mempool_create(&mp, &cfg);
    if (rc != 0) {
        cr_assert_eq(mp, (moirai_mempool_t *)0x1);
        return rc;
    }
    oom_mp = mp;
    return 0;
}

static void *first_use_thread(void *p)
{
    moirai_mempool_t *mp = p;
    void *small, *large;
    int rc = moirai_mempool_alloc(mp, 100, &small);
    if (rc != 0)
        return (void *)(intptr_t)rc;
    rc = moirai_mempool_alloc(mp, 5000, &large);
    moirai_mempool_free(mp, small, 100);
    if (rc == 0)
        moirai_mempool_free(mp, large, 5000);
    return (void *)(intptr_t)rc;
}

static int op_first_use(void *ctx)
{
    (void)ctx;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, first_use_thread, oom_mp), 0);
    void *rc;
    pthread_join(th, &rc);
    return (int)(intptr_t)rc;
}

Test(mempool, oom, .timeout = 60)
{
    moirai_test_oom_install();
    cr_assert_gt(MOIRAI_TEST_OOM_SWEEP(op_create, NULL, NULL), 20, "one pool per class");
    cr_assert_gt(MOIRAI_TEST_OOM_SWEEP(op_first_use, NULL, NULL), 3);
    /* A large block that cannot be had. */
    void *p = (void *)0x1;
    moirai_test_oom_fail_at(0);
    cr_assert_eq(moirai_mempool_alloc(oom_mp, 5000, &p), -ENOMEM);
    cr_assert_eq(p, (void *)0x1);
    moirai_test_oom_uninstall();
    moirai_mempool_stats_t s;
    cr_assert_eq(moirai_mempool_stats(oom_mp, &s), 0);
    cr_assert_eq(s.large_failures, 1);
    cr_assert_eq(s.small.in_use, 0);
    cr_assert_eq(s.large_allocations, s.large_frees);
    moirai_mempool_destroy(oom_mp);
}

static void *release_only(void *p)
{
    void **args = p;
    /* This thread has no caches of the memory pool, and none can be made:
     * the block goes to its class's orphans. */
    moirai_test_oom_fail_all();
    moirai_mempool_free(args[0], args[1], 100);
    moirai_test_oom_fail_at(-1);
    return NULL;
}

Test(mempool, oom_release_by_a_thread_without_caches, .timeout = 30)
{
    moirai_mempool_t *mp = make_default();
    void *p;
    cr_assert_eq(moirai_mempool_alloc(mp, 100, &p), 0);
    moirai_mempool_flush(mp); /* the block's class has nothing cached */
    moirai_test_oom_install();
    void *args[2] = {mp, p};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, release_only, args), 0);
    pthread_join(th, NULL);
    moirai_test_oom_uninstall();
    moirai_mempool_stats_t s;
    cr_assert_eq(moirai_mempool_stats(mp, &s), 0);
    cr_assert_eq(s.small.allocations, 1);
    cr_assert_eq(s.small.frees, 1);
    cr_assert_eq(s.small.in_use, 0);
    /* The orphaned block is served again once the depot has nothing
     * left, before any new object is made. */
    uint64_t objects = s.small.objects;
    static void *held[1000];
    int n = 0;
    for (; n < 1000; n++) {
        cr_assert_eq(moirai_mempool_alloc(mp, 100, &held[n]), 0);
        if (held[n] == p)
            break;
    }
    cr_assert_lt(n, 1000, "the orphaned block comes back");
    cr_assert_eq(moirai_mempool_stats(mp, &s), 0);
    cr_assert_eq(s.small.objects, objects);
    for (int i = 0; i <= n; i++)
        moirai_mempool_free(mp, held[i], 100);
    moirai_mempool_destroy(mp);
}

/* ---- the slack between a request and its class (AddressSanitizer) ---- */

/* The child of the test below: an access ASan must report. */
static void write_past_request_child(void)
{
    moirai_mempool_config_t cfg;
    moirai_mempool_config_init(&cfg);
    moirai_mempool_t *mp;
    char *p;
    if (moirai_mempool_create(&mp, &cfg) != 0 || moirai_mempool_alloc(mp, 20, (void **)&p) != 0)
        _exit(3);
    p[19] = 1;                    /* fine */
    ((volatile char *)p)[24] = 1; /* inside the 32-byte class, past the request */
}

Test(mempool, write_past_the_request_is_reported, .timeout = 60)
{
    if (!HAVE_ASAN)
        cr_skip("needs an AddressSanitizer build (the slack is poisoned only there)");
    asan_expect_report("/tmp/moirai-mempool.XXXXXX", write_past_request_child, "use-after-poison");
}
