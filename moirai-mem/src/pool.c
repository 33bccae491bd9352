/* Object pools: the public API, the per-thread fast paths and the creation
 * of objects from chunks. The depot lives in depot.c, the per-thread cache
 * tables in tcache.c; pool_internal.h describes the layout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <moirai/core/alloc.h>
#include <moirai/core/log.h>
#include <moirai/mem/pool.h>

#include "pool_internal.h"

/* Bytes before the first object of a chunk: the header, kept 16-aligned. */
#define CHUNK_HEADER ((sizeof(pool_chunk_t) + 15u) & ~(size_t)15u)

static void *default_chunk_alloc(void *arg, size_t size)
{
    (void)arg;
    return moirai_aligned_alloc(MOIRAI_CACHE_LINE, size);
}

static void default_chunk_free(void *arg, void *ptr, size_t size)
{
    (void)arg;
    (void)size;
    moirai_free(ptr);
}

static inline size_t align_up(size_t x, size_t a)
{
    return (x + a - 1) & ~(a - 1);
}

/* splitmix64's finaliser: spreads the pool id into a tag no caller data
 * is likely to hold by chance. */
static uint64_t mix64(uint64_t x)
{
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

void moirai_pool_config_init(moirai_pool_config_t *cfg, size_t object_size)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->object_size = object_size;
}

/* Creates up to `want` new objects into `dst`, allocating chunks as
 * needed and as the capacity allows. Returns how many it made. */
static uint32_t carve(struct moirai_pool *pool, void **dst, uint32_t want)
{
    uint32_t got = 0;
    pthread_mutex_lock(&pool->lock);
    while (got < want) {
        if (pool->carve_cur < pool->carve_end) {
            dst[got++] = pool->carve_cur;
            pool->carve_cur += pool->stride;
            continue;
        }
        size_t n = pool->chunk_objects;
        if (pool->capacity) {
            if (pool->chunk_total >= pool->capacity)
                break;
            if (n > pool->capacity - pool->chunk_total)
                n = (size_t)(pool->capacity - pool->chunk_total);
        }
        size_t slack = pool->alignment > 16 ? pool->alignment : 0;
        size_t size = CHUNK_HEADER + slack + n * pool->stride;
        pool_chunk_t *chunk = pool->chunk_alloc(pool->chunk_arg, size);
        if (!chunk)
            break;
        chunk->size = size;
        chunk->next = pool->chunks;
        pool->chunks = chunk;
        pool->chunk_total += n;
        pool->system_allocations++;
        char *first = (char *)align_up((uintptr_t)chunk + CHUNK_HEADER, pool->alignment);
        pool->carve_cur = first;
        pool->carve_end = first + n * pool->stride;
        /* Objects not handed out yet count as released: touching one, or
         * releasing one never allocated, is reported. */
        moirai__mem_poison(first, n * pool->stride);
    }
    pool->carved += got;
    pthread_mutex_unlock(&pool->lock);
    return got;
}

static void release_chunks(struct moirai_pool *pool)
{
    pool_chunk_t *chunk = pool->chunks;
    while (chunk) {
        pool_chunk_t *next = chunk->next;
        size_t size = chunk->size;
        /* The chunk allocator may write into the memory it gets back. */
        moirai__mem_unpoison(chunk, size);
        pool->chunk_free(pool->chunk_arg, chunk, size);
        chunk = next;
    }
    pool->chunks = NULL;
}

static void pool_free_all(struct moirai_pool *pool)
{
    release_chunks(pool);
    moirai__pool_mags_release(pool);
    pthread_mutex_destroy(&pool->lock);
    moirai_free(pool);
}

/* Creates `count` objects into full magazines in the depot. */
static int prepopulate(struct moirai_pool *pool, size_t count)
{
    while (count) {
        pool_magazine_t *mag = moirai__pool_mag_get_empty(pool);
        if (!mag)
            return -ENOMEM;
        uint32_t want = count < pool->mag_size ? (uint32_t)count : pool->mag_size;
        uint32_t got = carve(pool, mag->rounds, want);
        mag->count = got;
        /* Straight into the depot: these objects never count as outside. */
        moirai__pool_stack_push(pool, got ? &pool->full : &pool->empty, mag);
        if (got < want)
            return -ENOMEM;
        count -= got;
    }
    return 0;
}

/* Bytes of physical memory; SIZE_MAX when sysconf cannot say. */
static size_t physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0 || (unsigned long)pages > SIZE_MAX / (unsigned long)page)
        return SIZE_MAX;
    return (size_t)pages * (size_t)page;
}

int moirai__pool_new(struct moirai_pool **out, const moirai_pool_config_t *cfg)
{
    if (!out || !cfg)
        return -EINVAL;
    size_t size = cfg->object_size;
    size_t align = cfg->alignment;
    if (size == 0 || size > POOL_OBJECT_MAX)
        return -EINVAL;
    if (align == 0)
        align = size >= 16 ? 16 : 8;
    if ((align & (align - 1)) || align > POOL_ALIGN_MAX)
        return -EINVAL;
    if (align < sizeof(void *))
        align = sizeof(void *);
    if (cfg->magazine_size > POOL_MAGAZINE_MAX)
        return -EINVAL;
    if (cfg->capacity && cfg->prepopulate > cfg->capacity)
        return -EINVAL;
    if (!cfg->chunk_alloc != !cfg->chunk_free)
        return -EINVAL;
    size_t stride = align_up(size < sizeof(void *) ? sizeof(void *) : size, align);
    size_t chunk_objects = cfg->chunk_objects;
    if (chunk_objects == 0)
        chunk_objects = POOL_CHUNK_TARGET / stride ? POOL_CHUNK_TARGET / stride : 1;
    /* Keep every chunk request far from overflowing size_t. */
    if (chunk_objects > (SIZE_MAX / 4) / stride)
        return -EINVAL;
    /* The same bound for the prepopulated objects, and more of them than
     * the machine has memory is refused before the first chunk, instead
     * of allocating until the allocator gives up. */
    if (cfg->prepopulate > (SIZE_MAX / 4) / stride)
        return -EINVAL;
    if (cfg->prepopulate * stride > physical_memory())
        return -ENOMEM;

    struct moirai_pool *pool = moirai_aligned_alloc(MOIRAI_CACHE_LINE, sizeof(*pool));
    if (!pool)
        return -ENOMEM;
    memset(pool, 0, sizeof(*pool));
    pool->mag_size = cfg->magazine_size ? (uint32_t)cfg->magazine_size : POOL_MAGAZINE_DEFAULT;
    pool->object_size = size;
    pool->alignment = align;
    pool->stride = stride;
    pool->capacity = cfg->capacity;
    pool->chunk_objects = chunk_objects;
    pool->mag_stride =
        align_up(sizeof(pool_magazine_t) + pool->mag_size * sizeof(void *), MOIRAI_CACHE_LINE);
    pool->chunk_alloc = cfg->chunk_alloc ? cfg->chunk_alloc : default_chunk_alloc;
    pool->chunk_free = cfg->chunk_free ? cfg->chunk_free : default_chunk_free;
    pool->chunk_arg = cfg->chunk_arg;
    snprintf(pool->name, sizeof(pool->name), "%s", cfg->name ? cfg->name : "pool");
    atomic_init(&pool->full.top, 0);
    atomic_init(&pool->empty.top, 0);
    atomic_init(&pool->orphans, NULL);
    atomic_init(&pool->outside, 0);
    atomic_init(&pool->outside_peak, 0);
    atomic_init(&pool->nocache_frees, 0);
    atomic_init(&pool->nocache_failures, 0);
    if (pthread_mutex_init(&pool->lock, NULL) != 0) {
        moirai_free(pool);
        return -ENOMEM;
    }
    /* The released-object tag of checked builds: a hash of the address. */
    pool->tag = (uintptr_t)mix64((uint64_t)(uintptr_t)pool);
    *out = pool;
    return 0;
}

void moirai__pool_delete(struct moirai_pool *pool)
{
    pool_free_all(pool);
}

int moirai_pool_create(moirai_pool_t **out, const moirai_pool_config_t *cfg)
{
    if (!out || !cfg)
        return -EINVAL;
    struct moirai_pool *pool;
    int rc = moirai__pool_new(&pool, cfg);
    if (rc != 0)
        return rc;
    rc = moirai__pool_register_group(&pool, 1);
    if (rc != 0) {
        pool_free_all(pool);
        return rc;
    }
    rc = prepopulate(pool, cfg->prepopulate);
    if (rc != 0) {
        moirai__pool_unregister(pool);
        pool_free_all(pool);
        return rc;
    }
    *out = pool;
    return 0;
}

void moirai_pool_destroy(moirai_pool_t *pool)
{
    if (!pool)
        return;
    moirai__pool_unregister(pool);
    pool_free_all(pool);
}

/* ---- the slow paths (fast ones are in pool_internal.h) ---- */

void moirai__pool_double_release(struct moirai_pool *pool, void *obj)
{
    MOIRAI_LOG(MOIRAI_LOG_ERROR,
               "moirai_pool_free: object %p released twice (or never allocated) in pool '%s'", obj,
               pool->name);
    moirai__mem_print_stack();
    abort();
}

static void load(pool_tcache_t *c, pool_magazine_t *mag)
{
    c->loaded = mag;
    c->rounds = mag->rounds;
    moirai__pool_set_n(c, mag->count);
    c->cap = c->pool->mag_size;
}

/* Makes sure the cache has a loaded magazine (possibly empty). */
static int ensure_loaded(struct moirai_pool *pool, pool_tcache_t *c)
{
    if (c->loaded)
        return 0;
    pool_magazine_t *mag = moirai__pool_mag_get_empty(pool);
    if (!mag)
        return -ENOMEM;
    load(c, mag);
    return 0;
}

/* The objects moved between the two magazines of a cache at a time: half
 * a magazine (at least one).
 *
 * Bonwick's magazine layer swaps the two magazines whole: an allocation
 * that finds the loaded one empty and the previous one full exchanges
 * them, and a release that finds the loaded one full and the previous one
 * empty exchanges them back. After an exchange the loaded magazine is
 * exactly full or exactly empty, so a thread whose allocations and
 * releases of one pool alternate at random (a memory pool's classes under
 * mixed sizes do: a release of one class, an allocation of another) goes
 * through the slow path again at its very next opposite operation, about
 * once per magazine's worth of steps of that random walk. Moving half a
 * magazine instead leaves the loaded one half full, and a random walk
 * then takes about (cap / 2)^2 steps to reach either end: with a cap of
 * 64, the loop of sizeclass_churn_1t went through the slow paths 457
 * times in 200,000 pairs instead of 2,829 (callgrind). The copy is of
 * cap / 2 pointers, once per that many operations at least. */
static inline uint32_t transfer_size(const pool_tcache_t *c)
{
    return c->cap > 1 ? (uint32_t)(c->cap / 2) : 1;
}

/* Refills an empty loaded magazine: from the previous one, the depot, the
 * orphans, or (when `may_carve`) new objects, in that order. Returns 0
 * with c->n > 0, or -ENOMEM. Invariant kept: previous is NULL whenever
 * loaded is. */
static int refill(struct moirai_pool *pool, pool_tcache_t *c, bool may_carve)
{
    pool_magazine_t *prev = c->previous;
    if (prev && prev->count) {
        /* Objects in the previous magazine: up to half a magazine of them
         * move into the loaded one (see transfer_size()). */
        uint32_t move = transfer_size(c);
        if (move > prev->count)
            move = prev->count;
        prev->count -= move;
        memcpy(c->rounds, prev->rounds + prev->count, move * sizeof(void *));
        moirai__pool_set_n(c, move);
        return 0;
    }
    pool_magazine_t *full = moirai__pool_stack_pop(pool, &pool->full);
    if (full) {
        moirai__pool_outside_add(pool, full->count);
        /* Both our magazines are empty: keep one for releases, return the
         * other to the depot. */
        if (prev)
            moirai__pool_stack_push(pool, &pool->empty, prev);
        if (c->loaded)
            c->loaded->count = 0;
        c->previous = c->loaded;
        load(c, full);
        moirai__pool_bump(&c->depot_hits);
        return 0;
    }
    if (ensure_loaded(pool, c) != 0)
        return -ENOMEM;
    uint32_t got = moirai__pool_orphan_take(pool, c->rounds, c->cap);
    if (got) {
        moirai__pool_set_n(c, got);
        moirai__pool_bump(&c->depot_hits);
        return 0;
    }
    if (!may_carve)
        return -ENOMEM;
    got = carve(pool, c->rounds, c->cap);
    if (!got)
        return -ENOMEM;
    moirai__pool_outside_add(pool, got);
    moirai__pool_set_n(c, got);
    moirai__pool_bump(&c->fresh);
    return 0;
}

/* A bounded pool's allocation. Capacity bounds the objects in use, not
 * the objects that happen to sit in this thread's cache: when neither this
 * cache, the depot, the orphans nor the capacity has an object left, the
 * objects other threads' caches hold are taken back to the depot and the
 * refill is tried once more, while every other cache of the pool is held
 * still (moirai__pool_reclaim_begin()). -ENOMEM then means every object
 * was in use at that moment.
 *
 * Holding them all at once is what makes that exact. Taking the caches
 * back one at a time and refilling afterwards (as this did before) let
 * objects slip past: another allocating thread could take the reclaimed
 * objects from the depot before our refill, or move them from a cache not
 * yet visited into one already visited, and the allocation failed with
 * objects free in another thread's cache (tests/mem/test_pool_magazines.c,
 * orphans_*: 31 failed runs in 100). */
static int alloc_bounded(struct moirai_pool *pool, pool_tcache_t *c, void **out)
{
    moirai__pool_guard_lock(c);
    if (moirai__pool_n(c) == 0 && refill(pool, c, true) != 0) {
        /* The reclaimer takes the registry lock, then other caches'
         * guards; it must not hold ours meanwhile, or two reclaimers could
         * wait for each other. Once it holds the registry lock no other
         * reclaimer runs, so taking ours back cannot deadlock. */
        moirai__pool_guard_unlock(c);
        moirai__pool_reclaim_begin(pool, c);
        moirai__pool_guard_lock(c);
        /* No new objects under the registry lock: carving may call the
         * caller's chunk allocator, and the one attempt above failed. */
        int rc = moirai__pool_n(c) != 0 ? 0 : refill(pool, c, false);
        moirai__pool_reclaim_end(pool, c);
        if (rc != 0) {
            moirai__pool_bump(&c->failures);
            moirai__pool_guard_unlock(c);
            return -ENOMEM;
        }
    }
    uint32_t n = moirai__pool_n(c) - 1;
    void *obj = c->rounds[n];
    atomic_store_explicit(&c->n, n, memory_order_relaxed);
    moirai__pool_count_alloc(c, n);
    moirai__pool_guard_unlock(c);
    *out = moirai__pool_handout(pool, obj);
    return 0;
}

int moirai__pool_alloc_nocache(struct moirai_pool *pool)
{
    /* Relaxed: a statistic. */
    atomic_fetch_add_explicit(&pool->nocache_failures, 1, memory_order_relaxed);
    return -ENOMEM;
}

int moirai__pool_alloc_slow(struct moirai_pool *pool, pool_tcache_t *c, void **out)
{
    if (!c) {
        c = moirai__pool_cache_create(pool);
        if (!c)
            return moirai__pool_alloc_nocache(pool);
    }
    if (pool->capacity)
        return alloc_bounded(pool, c, out);
    if (moirai__pool_n(c) == 0 && refill(pool, c, true) != 0) {
        moirai__pool_bump(&c->failures);
        return -ENOMEM;
    }
    uint32_t n = moirai__pool_n(c) - 1;
    void *obj = c->rounds[n];
    atomic_store_explicit(&c->n, n, memory_order_relaxed);
    moirai__pool_count_alloc(c, n);
    *out = moirai__pool_handout(pool, obj);
    return 0;
}

int moirai__pool_alloc_other(struct moirai_pool *pool, void **out)
{
    return moirai__pool_alloc_cached(pool, moirai__pool_cache_of(pool), out);
}

int moirai_pool_alloc(moirai_pool_t *pool, void **out)
{
    return moirai__pool_alloc(pool, out);
}

/* Puts `obj` into the cache `c` (its guard held in a bounded pool). */
static void free_into(struct moirai_pool *pool, pool_tcache_t *c, void *obj)
{
    if (moirai__pool_n(c) == c->cap) {
        if (!c->loaded) {
            /* After a flush or at first use: no magazine at all. */
            if (ensure_loaded(pool, c) != 0)
                goto orphan;
        } else if (c->previous && c->previous->count < c->cap) {
            /* Room in the previous magazine: up to half a magazine moves
             * into it (see transfer_size()). */
            pool_magazine_t *prev = c->previous;
            uint32_t move = transfer_size(c);
            if (move > c->cap - prev->count)
                move = (uint32_t)(c->cap - prev->count);
            uint32_t n = (uint32_t)moirai__pool_n(c) - move;
            memcpy(prev->rounds + prev->count, c->rounds + n, move * sizeof(void *));
            prev->count += move;
            moirai__pool_set_n(c, n);
        } else {
            /* Both full (or no previous): the previous goes to the
             * depot, the loaded one becomes previous, and an empty one is
             * loaded. */
            pool_magazine_t *empty = moirai__pool_mag_get_empty(pool);
            if (!empty)
                goto orphan;
            if (c->previous)
                moirai__pool_mag_put(pool, c->previous);
            c->loaded->count = moirai__pool_n(c);
            c->previous = c->loaded;
            load(c, empty);
        }
    }
    uint32_t n = moirai__pool_n(c);
    c->rounds[n] = obj;
    atomic_store_explicit(&c->n, n + 1, memory_order_relaxed);
    moirai__pool_count_free(c);
    return;
orphan:
    /* No magazine to be had (out of memory): the release must not fail,
     * so the object waits in the orphan list for the next refill. */
    moirai__pool_orphan_push(pool, obj);
    moirai__pool_count_free(c);
    /* live went down with n unchanged. */
    atomic_store_explicit(&c->base, atomic_load_explicit(&c->base, memory_order_relaxed) - 1,
                          memory_order_relaxed);
}

void moirai__pool_free_nocache(struct moirai_pool *pool, void *obj)
{
    moirai__pool_orphan_push(pool, obj);
    /* Relaxed: a statistic. */
    atomic_fetch_add_explicit(&pool->nocache_frees, 1, memory_order_relaxed);
}

void moirai__pool_free_slow(struct moirai_pool *pool, pool_tcache_t *c, void *obj)
{
    if (!c) {
        c = moirai__pool_cache_create(pool);
        if (!c) {
            moirai__pool_free_nocache(pool, obj);
            return;
        }
    }
    if (pool->capacity) {
        moirai__pool_guard_lock(c);
        free_into(pool, c, obj);
        moirai__pool_guard_unlock(c);
        return;
    }
    free_into(pool, c, obj);
}

void moirai__pool_free_other(struct moirai_pool *pool, void *obj)
{
    moirai__pool_free_cached(pool, moirai__pool_cache_of(pool), obj);
}

void moirai_pool_free(moirai_pool_t *pool, void *obj)
{
    moirai__pool_free(pool, obj);
}

void moirai_pool_flush(moirai_pool_t *pool)
{
    if (!pool)
        return;
    pool_tcache_t *c = moirai__pool_cache_of(pool);
    if (!c)
        return;
    if (pool->capacity)
        moirai__pool_guard_lock(c);
    moirai__pool_cache_flush(c);
    if (pool->capacity)
        moirai__pool_guard_unlock(c);
}

int moirai_pool_stats(moirai_pool_t *pool, moirai_pool_stats_t *out)
{
    if (!pool || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    int64_t peak_sum = 0;
    moirai__pool_sum_caches(pool, out, &peak_sum);
    /* Relaxed: statistics. */
    out->frees += atomic_load_explicit(&pool->nocache_frees, memory_order_relaxed);
    out->failures += atomic_load_explicit(&pool->nocache_failures, memory_order_relaxed);
    out->cache_hits = out->allocations - out->depot_hits - out->fresh;
    out->in_use = out->allocations - out->frees;
    pthread_mutex_lock(&pool->lock);
    out->objects = pool->carved;
    out->system_allocations = pool->system_allocations;
    pthread_mutex_unlock(&pool->lock);
    /* Both are upper bounds of the true peak (see moirai_pool_stats_t);
     * the smaller is the better one. */
    int64_t outside_peak = atomic_load_explicit(&pool->outside_peak, memory_order_relaxed);
    uint64_t high = (uint64_t)(peak_sum < outside_peak ? peak_sum : outside_peak);
    if (high < out->in_use)
        high = out->in_use; /* only while running: counters read at different moments */
    out->high_water = high;
    return 0;
}

int moirai_pool_checks(void)
{
    int checks = 0;
    if (MOIRAI_MEM_ASAN)
        checks |= MOIRAI_POOL_CHECK_POISON | MOIRAI_POOL_CHECK_DOUBLE_RELEASE;
    if (POOL_TAG_CHECK)
        checks |= MOIRAI_POOL_CHECK_DOUBLE_RELEASE;
    return checks;
}

size_t moirai_pool_object_size(const moirai_pool_t *pool)
{
    return pool ? pool->object_size : 0;
}

size_t moirai_pool_alignment(const moirai_pool_t *pool)
{
    return pool ? pool->alignment : 0;
}
