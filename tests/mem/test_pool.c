/* Object pools: arguments, alignment, capacity, prepopulation, statistics,
 * per-thread caches across threads, destruction with cached objects,
 * custom chunk allocators and every allocation failure. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <moirai/core/alloc.h>
#include <moirai/core/error.h>
#include <moirai/mem/pool.h>

#include "oom.h"
#include "ptr_distinct.h"

static moirai_pool_t *make_pool(size_t size, size_t capacity, size_t magazine)
{
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, size);
    cfg.capacity = capacity;
    cfg.magazine_size = magazine;
    moirai_pool_t *pool = NULL;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), 0);
    cr_assert_not_null(pool);
    return pool;
}

static moirai_pool_stats_t stats_of(moirai_pool_t *pool)
{
    moirai_pool_stats_t s;
    cr_assert_eq(moirai_pool_stats(pool, &s), 0);
    return s;
}

/* The identities every snapshot of a quiescent pool satisfies. */
static void assert_stats_consistent(const moirai_pool_stats_t *s)
{
    cr_assert_eq(s->allocations, s->cache_hits + s->depot_hits + s->fresh,
                 "allocations %lu != cache %lu + depot %lu + fresh %lu",
                 (unsigned long)s->allocations, (unsigned long)s->cache_hits,
                 (unsigned long)s->depot_hits, (unsigned long)s->fresh);
    cr_assert_eq(s->in_use, s->allocations - s->frees);
    cr_assert_geq(s->high_water, s->in_use);
    cr_assert_leq(s->high_water, s->objects);
    cr_assert_leq(s->in_use, s->objects);
}

Test(pool, invalid_arguments, .timeout = 10)
{
    moirai_pool_config_t cfg;
    moirai_pool_t *pool = (moirai_pool_t *)0x1;
    moirai_pool_config_init(&cfg, 32);
    cr_assert_eq(moirai_pool_create(NULL, &cfg), -EINVAL);
    cr_assert_eq(moirai_pool_create(&pool, NULL), -EINVAL);

    cfg.object_size = 0;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), -EINVAL);
    cfg.object_size = ((size_t)1 << 30) + 1;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), -EINVAL);
    cfg.object_size = 32;

    cfg.alignment = 24; /* not a power of two */
    cr_assert_eq(moirai_pool_create(&pool, &cfg), -EINVAL);
    cfg.alignment = 8192;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), -EINVAL);
    cfg.alignment = 0;

    cfg.magazine_size = 4097;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), -EINVAL);
    cfg.magazine_size = 0;

    cfg.capacity = 10;
    cfg.prepopulate = 11;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), -EINVAL);
    cfg.capacity = 0;
    cfg.prepopulate = 0;

    cfg.chunk_objects = SIZE_MAX / 8;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), -EINVAL);
    cfg.chunk_objects = 0;

    /* prepopulate × stride overflowing, then absurd (more than the
     * machine's memory): refused at once. Before the bound, the first
     * allocated until the allocator failed, the second until the machine
     * ran out of memory. */
    cfg.prepopulate = SIZE_MAX / 8;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), -EINVAL);
    cfg.prepopulate = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE) / 32 * 2;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), -ENOMEM);
    cfg.prepopulate = 0;

    cfg.chunk_alloc = (moirai_pool_chunk_alloc_cb)0x1;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), -EINVAL);
    cfg.chunk_alloc = NULL;
    cfg.chunk_free = (moirai_pool_chunk_free_cb)0x1;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), -EINVAL);
    cr_assert_eq(pool, (moirai_pool_t *)0x1, "out must be untouched on error");

    pool = make_pool(32, 0, 0);
    void *obj = (void *)0x1;
    cr_assert_eq(moirai_pool_alloc(NULL, &obj), -EINVAL);
    cr_assert_eq(moirai_pool_alloc(pool, NULL), -EINVAL);
    cr_assert_eq(obj, (void *)0x1);
    moirai_pool_stats_t s;
    cr_assert_eq(moirai_pool_stats(NULL, &s), -EINVAL);
    cr_assert_eq(moirai_pool_stats(pool, NULL), -EINVAL);
    moirai_pool_free(NULL, obj); /* does nothing */
    moirai_pool_free(pool, NULL);
    moirai_pool_flush(NULL);
    moirai_pool_destroy(NULL);
    moirai_pool_config_init(NULL, 1);
    cr_assert_eq(moirai_pool_object_size(NULL), 0);
    cr_assert_eq(moirai_pool_alignment(NULL), 0);
    s = stats_of(pool);
    cr_assert_eq(s.allocations, 0);
    cr_assert_eq(s.frees, 0);
    moirai_pool_destroy(pool);
}

Test(pool, alloc_free_and_exact_stats_single_thread, .timeout = 30)
{
    enum { N = 1000 };
    moirai_pool_t *pool = make_pool(48, 0, 16);
    cr_assert_eq(moirai_pool_object_size(pool), 48);
    cr_assert_eq(moirai_pool_alignment(pool), 16);
    static void *objs[N], *copy[N];
    for (int i = 0; i < N; i++) {
        cr_assert_eq(moirai_pool_alloc(pool, &objs[i]), 0);
        cr_assert_eq((uintptr_t)objs[i] % 16, 0);
        memset(objs[i], i & 0xff, 48); /* the whole object is usable */
    }
    for (int i = 0; i < N; i++)
        for (int b = 0; b < 48; b++)
            cr_assert_eq(((unsigned char *)objs[i])[b], i & 0xff, "objects overlap");
    memcpy(copy, objs, sizeof(objs));
    cr_assert(all_distinct(copy, N));

    moirai_pool_stats_t s = stats_of(pool);
    assert_stats_consistent(&s);
    cr_assert_eq(s.allocations, N);
    cr_assert_eq(s.frees, 0);
    cr_assert_eq(s.in_use, N);
    cr_assert_eq(s.high_water, N);
    cr_assert_eq(s.failures, 0);
    cr_assert_eq(s.fresh, (N + 15) / 16, "one fresh refill per magazine of 16");
    cr_assert_geq(s.objects, N);
    cr_assert_geq(s.system_allocations, 1);

    for (int i = 0; i < N; i++)
        moirai_pool_free(pool, objs[i]);
    s = stats_of(pool);
    assert_stats_consistent(&s);
    cr_assert_eq(s.frees, N);
    cr_assert_eq(s.in_use, 0);
    cr_assert_eq(s.high_water, N, "the peak stays");

    /* Reuse: allocating again creates no objects and asks no chunks. */
    uint64_t objects = s.objects, chunks = s.system_allocations;
    for (int i = 0; i < N; i++)
        cr_assert_eq(moirai_pool_alloc(pool, &objs[i]), 0);
    s = stats_of(pool);
    assert_stats_consistent(&s);
    cr_assert_eq(s.objects, objects);
    cr_assert_eq(s.system_allocations, chunks);
    cr_assert_eq(s.high_water, N);
    memcpy(copy, objs, sizeof(objs));
    cr_assert(all_distinct(copy, N));
    for (int i = 0; i < N; i++)
        moirai_pool_free(pool, objs[i]);
    moirai_pool_destroy(pool);
}

Test(pool, alignment_and_small_objects, .timeout = 30)
{
    static const size_t aligns[] = {0, 8, 16, 32, 64, 128, 256, 1024, 4096};
    static const size_t sizes[] = {1, 7, 8, 24, 100, 4096};
    for (size_t a = 0; a < sizeof(aligns) / sizeof(aligns[0]); a++) {
        for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
            moirai_pool_config_t cfg;
            moirai_pool_config_init(&cfg, sizes[z]);
            cfg.alignment = aligns[a];
            cfg.chunk_objects = 5; /* several chunks, one per refill */
            cfg.magazine_size = 5;
            moirai_pool_t *pool;
            cr_assert_eq(moirai_pool_create(&pool, &cfg), 0);
            size_t want = aligns[a] ? aligns[a] : (sizes[z] >= 16 ? 16 : 8);
            cr_assert_eq(moirai_pool_alignment(pool), want);
            void *objs[40];
            for (int i = 0; i < 40; i++) {
                cr_assert_eq(moirai_pool_alloc(pool, &objs[i]), 0);
                cr_assert_eq((uintptr_t)objs[i] % want, 0, "size %zu align %zu: %p", sizes[z], want,
                             objs[i]);
                memset(objs[i], 0xa5, sizes[z]);
            }
            cr_assert(all_distinct(objs, 40));
            /* Distinct objects never overlap: sorted, each ends before the next. */
            for (int i = 1; i < 40; i++)
                cr_assert_geq((uintptr_t)objs[i] - (uintptr_t)objs[i - 1], sizes[z]);
            moirai_pool_stats_t s = stats_of(pool);
            cr_assert_eq(s.system_allocations, 8, "40 objects in chunks of 5");
            for (int i = 0; i < 40; i++)
                moirai_pool_free(pool, objs[i]);
            moirai_pool_destroy(pool);
        }
    }
}

Test(pool, magazine_of_one, .timeout = 30)
{
    moirai_pool_t *pool = make_pool(16, 0, 1);
    void *objs[100];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 100; i++)
            cr_assert_eq(moirai_pool_alloc(pool, &objs[i]), 0);
        cr_assert(all_distinct(objs, 100));
        for (int i = 0; i < 100; i++)
            moirai_pool_free(pool, objs[i]);
    }
    moirai_pool_stats_t s = stats_of(pool);
    assert_stats_consistent(&s);
    cr_assert_eq(s.objects, 100);
    cr_assert_eq(s.in_use, 0);
    cr_assert_gt(s.depot_hits, 0, "magazines of one cycle through the depot");
    moirai_pool_destroy(pool);
}

Test(pool, capacity_is_exact_single_thread, .timeout = 30)
{
    enum { CAP = 100 };
    moirai_pool_t *pool = make_pool(64, CAP, 8);
    void *objs[CAP];
    for (int i = 0; i < CAP; i++)
        cr_assert_eq(moirai_pool_alloc(pool, &objs[i]), 0, "allocation %d of %d", i, CAP);
    void *extra = (void *)0x1;
    cr_assert_eq(moirai_pool_alloc(pool, &extra), -ENOMEM);
    cr_assert_eq(moirai_pool_alloc(pool, &extra), -ENOMEM);
    cr_assert_eq(extra, (void *)0x1);
    moirai_pool_stats_t s = stats_of(pool);
    assert_stats_consistent(&s);
    cr_assert_eq(s.objects, CAP);
    cr_assert_eq(s.failures, 2);
    cr_assert_eq(s.in_use, CAP);

    /* One back, one out again: the same object. */
    moirai_pool_free(pool, objs[7]);
    cr_assert_eq(moirai_pool_alloc(pool, &extra), 0);
    cr_assert_eq(extra, objs[7]);
    cr_assert_eq(moirai_pool_alloc(pool, &extra), -ENOMEM);
    for (int i = 0; i < CAP; i++)
        moirai_pool_free(pool, objs[i]);
    s = stats_of(pool);
    cr_assert_eq(s.objects, CAP);
    cr_assert_eq(s.in_use, 0);
    moirai_pool_destroy(pool);
}

/* ---- capacity under contention ---- */

enum { CAP_THREADS = 4, CAP_OBJECTS = 1000 };

typedef struct cap_arg {
    moirai_pool_t *pool;
    pthread_barrier_t *start;
    pthread_barrier_t *done; /* all stopped allocating before any releases */
    void *got[CAP_OBJECTS];
    size_t count;
    int last_rc;
    bool release_and_flush;
} cap_arg_t;

static void *cap_thread(void *p)
{
    cap_arg_t *a = p;
    pthread_barrier_wait(a->start);
    int rc;
    while ((rc = moirai_pool_alloc(a->pool, &a->got[a->count])) == 0) {
        if (++a->count == CAP_OBJECTS)
            break;
    }
    a->last_rc = rc;
    pthread_barrier_wait(a->done);
    if (a->release_and_flush) {
        for (size_t i = 0; i < a->count; i++)
            moirai_pool_free(a->pool, a->got[i]);
        moirai_pool_flush(a->pool);
    }
    return NULL;
}

static size_t run_cap_round(moirai_pool_t *pool, cap_arg_t *args, bool release)
{
    pthread_barrier_t start, done;
    pthread_barrier_init(&start, NULL, CAP_THREADS);
    pthread_barrier_init(&done, NULL, CAP_THREADS);
    pthread_t th[CAP_THREADS];
    for (int t = 0; t < CAP_THREADS; t++) {
        memset(&args[t], 0, sizeof(args[t]));
        args[t].pool = pool;
        args[t].start = &start;
        args[t].done = &done;
        args[t].release_and_flush = release;
        cr_assert_eq(pthread_create(&th[t], NULL, cap_thread, &args[t]), 0);
    }
    size_t total = 0;
    for (int t = 0; t < CAP_THREADS; t++) {
        pthread_join(th[t], NULL);
        cr_assert_eq(args[t].last_rc, -ENOMEM, "thread %d stopped with %d", t, args[t].last_rc);
        total += args[t].count;
    }
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&done);
    return total;
}

Test(pool, capacity_is_exact_under_contention, .timeout = 60)
{
    enum { CAP = 777 };
    for (int rep = 0; rep < 5; rep++) {
        moirai_pool_t *pool = make_pool(32, CAP, 8);
        static cap_arg_t args[CAP_THREADS];
        /* Round 1: every thread allocates until refused; all CAP objects
         * are handed out exactly once between them. */
        size_t total = run_cap_round(pool, args, false);
        cr_assert_eq(total, CAP);
        static void *all[CAP];
        size_t k = 0;
        for (int t = 0; t < CAP_THREADS; t++)
            for (size_t i = 0; i < args[t].count; i++)
                all[k++] = args[t].got[i];
        cr_assert(all_distinct(all, CAP), "an object was handed out twice");
        moirai_pool_stats_t s = stats_of(pool);
        assert_stats_consistent(&s);
        cr_assert_eq(s.objects, CAP);
        cr_assert_eq(s.in_use, CAP);
        cr_assert_eq(s.failures, CAP_THREADS);
        /* Release everything from this thread (cross-thread frees), flush,
         * and let new threads compete again: still exactly CAP. */
        for (size_t i = 0; i < CAP; i++)
            moirai_pool_free(pool, all[i]);
        moirai_pool_flush(pool);
        total = run_cap_round(pool, args, true);
        cr_assert_eq(total, CAP);
        s = stats_of(pool);
        assert_stats_consistent(&s);
        cr_assert_eq(s.objects, CAP);
        cr_assert_eq(s.in_use, 0);
        moirai_pool_destroy(pool);
    }
}

Test(pool, prepopulate, .timeout = 30)
{
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, 40);
    cfg.prepopulate = 500;
    cfg.capacity = 500;
    cfg.magazine_size = 32;
    moirai_pool_t *pool;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), 0);
    moirai_pool_stats_t s = stats_of(pool);
    cr_assert_eq(s.objects, 500);
    cr_assert_geq(s.system_allocations, 1);
    cr_assert_eq(s.allocations, 0);
    cr_assert_eq(s.high_water, 0);
    uint64_t chunks = s.system_allocations;
    static void *objs[500];
    for (int i = 0; i < 500; i++)
        cr_assert_eq(moirai_pool_alloc(pool, &objs[i]), 0);
    void *extra;
    cr_assert_eq(moirai_pool_alloc(pool, &extra), -ENOMEM);
    s = stats_of(pool);
    assert_stats_consistent(&s);
    cr_assert_eq(s.fresh, 0, "everything came from the depot");
    cr_assert_eq(s.depot_hits, (500 + 31) / 32);
    cr_assert_eq(s.system_allocations, chunks);
    cr_assert(all_distinct(objs, 500));
    for (int i = 0; i < 500; i++)
        moirai_pool_free(pool, objs[i]);
    moirai_pool_destroy(pool);
}

/* ---- threads ---- */

typedef struct xfer_arg {
    moirai_pool_t *pool;
    void **objs;
    size_t n;
} xfer_arg_t;

static void *free_all_thread(void *p)
{
    xfer_arg_t *a = p;
    for (size_t i = 0; i < a->n; i++)
        moirai_pool_free(a->pool, a->objs[i]);
    return NULL; /* exiting returns this thread's cache to the depot */
}

static void *alloc_all_thread(void *p)
{
    xfer_arg_t *a = p;
    for (size_t i = 0; i < a->n; i++)
        if (moirai_pool_alloc(a->pool, &a->objs[i]) != 0)
            return (void *)1;
    return NULL;
}

Test(pool, cross_thread_free_and_exit_flush, .timeout = 60)
{
    enum { N = 10000 };
    moirai_pool_t *pool = make_pool(24, 0, 0);
    static void *objs[N], *again[N];
    xfer_arg_t a = {pool, objs, N};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, alloc_all_thread, &a), 0);
    void *rc;
    pthread_join(th, &rc);
    cr_assert_null(rc);
    moirai_pool_stats_t s = stats_of(pool);
    cr_assert_eq(s.in_use, N);
    uint64_t objects = s.objects;

    /* Another thread frees them all, then exits. */
    cr_assert_eq(pthread_create(&th, NULL, free_all_thread, &a), 0);
    pthread_join(th, NULL);
    s = stats_of(pool);
    assert_stats_consistent(&s);
    cr_assert_eq(s.frees, N);
    cr_assert_eq(s.in_use, 0);

    /* Their objects are back in the depot: this thread gets them all
     * without creating one. */
    for (int i = 0; i < N; i++)
        cr_assert_eq(moirai_pool_alloc(pool, &again[i]), 0);
    s = stats_of(pool);
    assert_stats_consistent(&s);
    cr_assert_eq(s.objects, objects);
    cr_assert_gt(s.depot_hits, 0);
    cr_assert_leq(s.high_water, s.objects);
    memcpy(objs, again, sizeof(again));
    cr_assert(all_distinct(objs, N));
    for (int i = 0; i < N; i++)
        moirai_pool_free(pool, again[i]);
    moirai_pool_destroy(pool);
}

typedef struct hold_arg {
    moirai_pool_t *pool;
    pthread_barrier_t *cached, *destroyed;
    moirai_pool_t *pool2; /* allocated from after the first is destroyed */
    int rc2;
    void *obj2;
} hold_arg_t;

static void *hold_thread(void *p)
{
    hold_arg_t *a = p;
    void *objs[100];
    for (int i = 0; i < 100; i++)
        moirai_pool_alloc(a->pool, &objs[i]);
    for (int i = 0; i < 100; i++)
        moirai_pool_free(a->pool, objs[i]); /* now cached by this thread */
    pthread_barrier_wait(a->cached);
    pthread_barrier_wait(a->destroyed);
    /* A new pool, likely in the destroyed one's slot: this thread's stale
     * entry must not be used. */
    a->rc2 = moirai_pool_alloc(a->pool2, &a->obj2);
    if (a->rc2 == 0)
        moirai_pool_free(a->pool2, a->obj2);
    return NULL; /* exit: the destroyed pool's cache must be skipped */
}

Test(pool, destroy_while_threads_cache_objects, .timeout = 30)
{
    pthread_barrier_t cached, destroyed;
    pthread_barrier_init(&cached, NULL, 2);
    pthread_barrier_init(&destroyed, NULL, 2);
    hold_arg_t a = {make_pool(32, 0, 0), &cached, &destroyed, NULL, -1, NULL};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, hold_thread, &a), 0);
    pthread_barrier_wait(&cached);
    moirai_pool_destroy(a.pool); /* the thread still caches 100 objects */
    a.pool2 = make_pool(32, 0, 0);
    pthread_barrier_wait(&destroyed);
    pthread_join(th, NULL);
    cr_assert_eq(a.rc2, 0);
    moirai_pool_stats_t s = stats_of(a.pool2);
    assert_stats_consistent(&s);
    cr_assert_eq(s.allocations, 1);
    cr_assert_eq(s.frees, 1);
    cr_assert_eq(s.in_use, 0);
    moirai_pool_destroy(a.pool2);
    pthread_barrier_destroy(&cached);
    pthread_barrier_destroy(&destroyed);
}

Test(pool, many_pools_grow_the_thread_table, .timeout = 30)
{
    enum { POOLS = 70 };
    static moirai_pool_t *pools[POOLS];
    static void *objs[POOLS];
    for (int i = 0; i < POOLS; i++) {
        pools[i] = make_pool((size_t)(8 + i), 0, 4);
        cr_assert_eq(moirai_pool_alloc(pools[i], &objs[i]), 0);
        memset(objs[i], i, (size_t)(8 + i));
    }
    /* Destroy every other pool and make new ones in the freed slots. */
    for (int i = 0; i < POOLS; i += 2) {
        moirai_pool_free(pools[i], objs[i]);
        moirai_pool_destroy(pools[i]);
        pools[i] = make_pool(16, 0, 4);
        cr_assert_eq(moirai_pool_alloc(pools[i], &objs[i]), 0);
        memset(objs[i], i, 16);
    }
    for (int i = 0; i < POOLS; i++) {
        moirai_pool_stats_t s = stats_of(pools[i]);
        cr_assert_eq(s.allocations, 1, "pool %d", i);
        cr_assert_eq(s.in_use, 1);
        cr_assert_eq(((unsigned char *)objs[i])[0], i);
        moirai_pool_free(pools[i], objs[i]);
        moirai_pool_destroy(pools[i]);
    }
}

/* ---- custom chunk allocators ---- */

typedef struct chunk_arg {
    atomic_long live_bytes;
    atomic_int chunks;
    atomic_int fail; /* refuse every chunk when set */
} chunk_arg_t;

static void *ctx_chunk_alloc(void *ctx, size_t size)
{
    chunk_arg_t *c = ctx;
    if (atomic_load(&c->fail))
        return NULL;
    void *p = malloc(size);
    if (p) {
        atomic_fetch_add(&c->live_bytes, (long)size);
        atomic_fetch_add(&c->chunks, 1);
    }
    return p;
}

static void ctx_chunk_free(void *ctx, void *ptr, size_t size)
{
    chunk_arg_t *c = ctx;
    atomic_fetch_sub(&c->live_bytes, (long)size);
    atomic_fetch_sub(&c->chunks, 1);
    free(ptr);
}

Test(pool, custom_chunk_allocator, .timeout = 30)
{
    chunk_arg_t ctx = {0, 0, 0};
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, 100);
    cfg.alignment = 64; /* more than malloc gives: the pool aligns inside */
    cfg.chunk_objects = 10;
    cfg.chunk_alloc = ctx_chunk_alloc;
    cfg.chunk_free = ctx_chunk_free;
    cfg.chunk_arg = &ctx;
    cfg.magazine_size = 4;
    moirai_pool_t *pool;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), 0);
    void *objs[35];
    for (int i = 0; i < 35; i++) {
        cr_assert_eq(moirai_pool_alloc(pool, &objs[i]), 0);
        cr_assert_eq((uintptr_t)objs[i] % 64, 0);
    }
    cr_assert_eq(atomic_load(&ctx.chunks), 4);
    moirai_pool_stats_t s = stats_of(pool);
    cr_assert_eq(s.system_allocations, 4);

    /* The chunk allocator refuses: the pool reports exhaustion (what a
     * NUMA pool uses to fall back to another node), and recovers. */
    atomic_store(&ctx.fail, 1);
    void *more[10];
    int got = 0;
    int rc;
    while ((rc = moirai_pool_alloc(pool, &more[got])) == 0)
        got++;
    cr_assert_eq(rc, -ENOMEM);
    cr_assert_eq(got, 5, "the 4th chunk still had 5 objects");
    atomic_store(&ctx.fail, 0);
    cr_assert_eq(moirai_pool_alloc(pool, &more[got]), 0);
    got++;
    for (int i = 0; i < got; i++)
        moirai_pool_free(pool, more[i]);
    /* Destroy returns every chunk, with objects still allocated. */
    moirai_pool_destroy(pool);
    cr_assert_eq(atomic_load(&ctx.chunks), 0);
    cr_assert_eq(atomic_load(&ctx.live_bytes), 0);
}

/* ---- allocation failures ---- */

typedef struct oom_ctx {
    moirai_pool_t *pool;
    size_t prepopulate;
} oom_ctx_t;

static int op_create(void *p)
{
    oom_ctx_t *c = p;
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, 64);
    cfg.prepopulate = c->prepopulate;
    cfg.magazine_size = 8;
    cfg.chunk_objects = 16;
    moirai_pool_t *pool = (moirai_pool_t *)0x1;
    int rc = moirai_pool_create(&pool, &cfg);
    if (rc != 0) {
        cr_assert_eq(pool, (moirai_pool_t *)0x1);
        return rc;
    }
    c->pool = pool;
    return 0;
}

Test(pool, oom_create, .timeout = 60)
{
    oom_ctx_t c = {NULL, 100};
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(op_create, NULL, &c);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 3, "create with prepopulation allocates several times");
    moirai_pool_stats_t s = stats_of(c.pool);
    cr_assert_eq(s.objects, 100);
    moirai_pool_destroy(c.pool);
}

/* A create that fails where the pool registry must grow (16 slots, then
 * 32, 64, ...) frees the pool it had made: every failing run leaves the
 * live blocks as they were, and so does the whole test (live.c). The
 * registry's own growth is not counted: it is process-lifetime state grown
 * from a block made before the test. */
typedef struct oom_grow_ctx {
    oom_ctx_t create;
    long live_before;
} oom_grow_ctx_t;

static int op_create_counted(void *p)
{
    oom_grow_ctx_t *c = p;
    c->live_before = moirai__test_live_now();
    return op_create(&c->create);
}

static void create_left_nothing(void *p, long n)
{
    oom_grow_ctx_t *c = p;
    cr_assert_eq(moirai__test_live_now(), c->live_before,
                 "a create failing at allocation %ld left %ld block(s) live", n,
                 moirai__test_live_now() - c->live_before);
}

Test(pool, oom_create_growing_the_registry, .timeout = 60)
{
    enum { POOLS = 40 };
    moirai_pool_t *pools[POOLS];
    long most = 0;
    moirai_test_oom_install();
    for (int i = 0; i < POOLS; i++) {
        oom_grow_ctx_t c = {{NULL, 0}, 0};
        long failures = MOIRAI_TEST_OOM_SWEEP(op_create_counted, create_left_nothing, &c);
        cr_assert_gt(failures, 0);
        most = failures > most ? failures : most;
        pools[i] = c.create.pool;
    }
    moirai_test_oom_uninstall();
    /* One allocation for the pool, one more where the registry grew: the
     * growth was among the failures swept. */
    cr_assert_geq(most, 2, "no create had to grow the registry");
    for (int i = 0; i < POOLS; i++)
        moirai_pool_destroy(pools[i]);
}

/* A whole life in a fresh thread: the first allocation (thread table,
 * cache, magazine, chunk), more allocations and releases across magazines
 * and chunks, and destruction. */
static void *life_thread(void *p)
{
    moirai_pool_t *pool = p;
    void *objs[40];
    int n = 0, rc = 0;
    for (; n < 40; n++)
        if ((rc = moirai_pool_alloc(pool, &objs[n])) != 0)
            break;
    for (int i = 0; i < n; i++)
        moirai_pool_free(pool, objs[i]);
    return (void *)(intptr_t)rc;
}

static int op_life(void *p)
{
    oom_ctx_t *c = p;
    c->prepopulate = 0;
    int rc = op_create(c);
    if (rc != 0)
        return rc;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, life_thread, c->pool), 0);
    void *ret;
    pthread_join(th, &ret);
    rc = (int)(intptr_t)ret;
    moirai_pool_stats_t s = stats_of(c->pool);
    assert_stats_consistent(&s);
    cr_assert_eq(s.in_use, 0, "a failed allocation leaves nothing allocated");
    if (rc != 0)
        cr_assert_eq(s.failures, 1);
    moirai_pool_destroy(c->pool);
    c->pool = NULL;
    return rc;
}

Test(pool, oom_first_use_in_a_thread, .timeout = 60)
{
    oom_ctx_t c = {NULL, 0};
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(op_life, NULL, &c);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 5);
}

/* Releases never fail, even when every allocation they might need fails:
 * objects then wait in the orphan list, and none is lost. */
typedef struct free_oom_arg {
    moirai_pool_t *pool;
    void **objs;
    int n;
    long fail_at;
} free_oom_arg_t;

static void *free_oom_thread(void *p)
{
    free_oom_arg_t *a = p;
    moirai_test_oom_fail_at(a->fail_at);
    for (int i = 0; i < a->n; i++)
        moirai_pool_free(a->pool, a->objs[i]);
    moirai_test_oom_fail_at(-1);
    return NULL;
}

Test(pool, oom_release_loses_nothing, .timeout = 120)
{
    enum { CAP = 50 };
    moirai_test_oom_install();
    for (long fail_at = 0; fail_at < 6; fail_at++) {
        for (int variant = 0; variant < 2; variant++) {
            moirai_test_oom_fail_at(-1);
            moirai_pool_t *pool = make_pool(32, CAP, 1);
            void *objs[CAP];
            for (int i = 0; i < CAP; i++)
                cr_assert_eq(moirai_pool_alloc(pool, &objs[i]), 0);
            /* variant 1: the releasing thread has a cache already. */
            free_oom_arg_t a = {pool, objs, CAP, fail_at};
            if (variant == 1) {
                void *mine;
                moirai_pool_free(pool, objs[0]);
                cr_assert_eq(moirai_pool_alloc(pool, &mine), 0);
                cr_assert_eq(mine, objs[0]);
                moirai_pool_flush(pool);
                a.objs = objs;
            }
            pthread_t th;
            cr_assert_eq(pthread_create(&th, NULL, free_oom_thread, &a), 0);
            pthread_join(th, NULL);
            moirai_pool_stats_t s = stats_of(pool);
            assert_stats_consistent(&s);
            cr_assert_eq(s.frees, CAP + (variant == 1));
            cr_assert_eq(s.in_use, 0);
            /* Every object can be had again, exactly CAP of them. */
            void *again[CAP];
            for (int i = 0; i < CAP; i++)
                cr_assert_eq(moirai_pool_alloc(pool, &again[i]), 0, "fail_at %ld object %d",
                             fail_at, i);
            void *extra;
            cr_assert_eq(moirai_pool_alloc(pool, &extra), -ENOMEM);
            cr_assert(all_distinct(again, CAP));
            for (int i = 0; i < CAP; i++)
                moirai_pool_free(pool, again[i]);
            moirai_pool_destroy(pool);
        }
    }
    moirai_test_oom_uninstall();
}

Test(pool, checks_match_the_build, .timeout = 10)
{
    int checks = moirai_pool_checks();
#if defined(__SANITIZE_ADDRESS__)
    cr_assert_eq(checks, MOIRAI_POOL_CHECK_POISON | MOIRAI_POOL_CHECK_DOUBLE_RELEASE);
#else
    cr_assert_eq(checks & MOIRAI_POOL_CHECK_POISON, 0);
#endif
}
