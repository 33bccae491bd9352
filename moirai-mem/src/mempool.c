/* Memory pools: size classes over object pools. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/mem/mempool.h>

#include "pool_internal.h"

static const size_t default_classes[] = {16,  32,  48,  64,  80,  96,  112, 128, 160, 192,
                                         224, 256, 320, 384, 448, 512, 640, 768, 896, 1024};

struct moirai_mempool {
    /* Read-only after creation; the fast paths read the first line and
     * one byte of `lookup`. */
    size_t max_class;
    /* The class pools were registered as a group: class c's pool has slot
     * base_slot + c and id base_id + c, and a thread's caches of them are
     * one block, cache c serving class c (moirai__pool_cache_create_group()),
     * so the fast paths find the caller's cache without reading the pool. */
    uint64_t base_id;
    uint32_t base_slot;
    uint32_t class_count;
    moirai_pool_t *pools[MOIRAI_MEMPOOL_MAX_CLASSES];
    size_t sizes[MOIRAI_MEMPOOL_MAX_CLASSES];
    /* Large blocks are rare and slow anyway: shared counters. */
    _Alignas(MOIRAI_CACHE_LINE) _Atomic uint64_t large_allocations;
    _Atomic uint64_t large_frees;
    _Atomic uint64_t large_failures;
    /* lookup[(size + 7) / 8] is the class of `size` for every size up to
     * max_class; part of the memory pool, so that finding the class costs
     * one load and not two. */
    _Alignas(MOIRAI_CACHE_LINE) uint8_t lookup[];
};

void moirai_mempool_config_init(moirai_mempool_config_t *cfg)
{
    if (cfg)
        memset(cfg, 0, sizeof(*cfg));
}

/* Frees a memory pool whose class pools are registered (all of them). */
static void mempool_free_all(moirai_mempool_t *mp)
{
    moirai__pool_unregister_group(mp->pools, mp->class_count);
    for (size_t i = 0; i < mp->class_count; i++)
        moirai__pool_delete(mp->pools[i]);
    moirai_free(mp);
}

/* Frees a memory pool whose first `made` class pools exist unregistered. */
static void mempool_free_unregistered(moirai_mempool_t *mp, size_t made)
{
    for (size_t i = 0; i < made; i++)
        moirai__pool_delete(mp->pools[i]);
    moirai_free(mp);
}

int moirai_mempool_create(moirai_mempool_t **out, const moirai_mempool_config_t *cfg)
{
    if (!out || !cfg)
        return -EINVAL;
    const size_t *classes = cfg->classes ? cfg->classes : default_classes;
    size_t count =
        cfg->classes ? cfg->class_count : sizeof(default_classes) / sizeof(default_classes[0]);
    if (count == 0 || count > MOIRAI_MEMPOOL_MAX_CLASSES)
        return -EINVAL;
    for (size_t i = 0; i < count; i++) {
        if (classes[i] == 0 || classes[i] % 8 || classes[i] > MOIRAI_MEMPOOL_MAX_CLASS_SIZE ||
            (i && classes[i] <= classes[i - 1]))
            return -EINVAL;
    }
    if (!cfg->chunk_alloc != !cfg->chunk_free)
        return -EINVAL;
    if (cfg->magazine_size > POOL_MAGAZINE_MAX)
        return -EINVAL;

    size_t max_class = classes[count - 1];
    size_t size = sizeof(struct moirai_mempool) + max_class / 8 + 1;
    moirai_mempool_t *mp = moirai_aligned_alloc(MOIRAI_CACHE_LINE, size);
    if (!mp)
        return -ENOMEM;
    memset(mp, 0, size);
    atomic_init(&mp->large_allocations, 0);
    atomic_init(&mp->large_frees, 0);
    atomic_init(&mp->large_failures, 0);
    for (size_t slot = 0, c = 0; slot <= max_class / 8; slot++) {
        while (classes[c] < slot * 8)
            c++;
        mp->lookup[slot] = (uint8_t)c;
    }
    mp->max_class = max_class;
    for (size_t i = 0; i < count; i++) {
        moirai_pool_config_t pc;
        moirai_pool_config_init(&pc, classes[i]);
        pc.alignment = classes[i] % 16 ? 8 : 16;
        pc.magazine_size = cfg->magazine_size;
        pc.chunk_alloc = cfg->chunk_alloc;
        pc.chunk_free = cfg->chunk_free;
        pc.chunk_arg = cfg->chunk_arg;
        char name[32];
        snprintf(name, sizeof(name), "%.20s/%zu", cfg->name ? cfg->name : "mempool", classes[i]);
        pc.name = name;
        int rc = moirai__pool_new(&mp->pools[i], &pc);
        if (rc != 0) {
            mempool_free_unregistered(mp, i);
            return rc;
        }
        mp->sizes[i] = classes[i];
    }
    int rc = moirai__pool_register_group(mp->pools, (uint32_t)count);
    if (rc != 0) {
        mempool_free_unregistered(mp, count);
        return rc;
    }
    mp->class_count = (uint32_t)count;
    mp->base_slot = mp->pools[0]->slot;
    mp->base_id = mp->pools[0]->id;
    *out = mp;
    return 0;
}

void moirai_mempool_destroy(moirai_mempool_t *mp)
{
    if (mp)
        mempool_free_all(mp);
}

static __attribute__((noinline, cold)) int large_alloc(moirai_mempool_t *mp, size_t size,
                                                       void **out)
{
    void *p = moirai_malloc(size);
    if (!p) {
        atomic_fetch_add_explicit(&mp->large_failures, 1, memory_order_relaxed);
        return -ENOMEM;
    }
    /* Relaxed: statistics. */
    atomic_fetch_add_explicit(&mp->large_allocations, 1, memory_order_relaxed);
    *out = p;
    return 0;
}

static __attribute__((noinline, cold)) void large_free(moirai_mempool_t *mp, void *ptr)
{
    atomic_fetch_add_explicit(&mp->large_frees, 1, memory_order_relaxed);
    moirai_free(ptr);
}

/* The calling thread's block of caches for `mp` when it is not the one
 * used last: found in the thread's table, or created. NULL when out of
 * memory. */
static pool_tcache_t *caches_slow(moirai_mempool_t *mp)
{
    /* The table entry of the first class holds the block's first cache:
     * a memory pool's class caches are only ever created as a block. */
    pool_tcache_t *block = moirai__pool_cache_at(mp->base_slot, mp->base_id);
    if (!block)
        block = moirai__pool_cache_create_group(mp->pools, mp->class_count);
    if (!block)
        return NULL;
    moirai__pool_tls.group_id = mp->base_id;
    moirai__pool_tls.group_block = block;
    return block;
}

/* True when `mp` is the memory pool the calling thread used last; its
 * block of caches (cache c serves class c) is then caches_last(). */
static inline bool is_last(const moirai_mempool_t *mp)
{
    return __builtin_expect(moirai__pool_tls.group_id == mp->base_id, 1);
}

static inline pool_tcache_t *caches_last(void)
{
    pool_tcache_t *block = moirai__pool_tls.group_block;
    /* Set together with a live id (ids start at 1); saying so spares the
     * fast paths a test. */
    if (!block)
        __builtin_unreachable();
    return block;
}

/* Allocation from class `c` by a thread for which `mp` is not the memory
 * pool it used last. Out of line, and reached by a tail call, so that the
 * fast path needs no stack frame. */
static __attribute__((noinline)) int alloc_other(moirai_mempool_t *mp, size_t c, void **out)
{
    pool_tcache_t *block = caches_slow(mp);
    if (!block)
        return moirai__pool_alloc_nocache(mp->pools[c]);
    return moirai__pool_alloc_unbounded(block + c, out);
}

/* Release into class `c`, as alloc_other(). */
static __attribute__((noinline)) void free_other(moirai_mempool_t *mp, size_t c, void *ptr)
{
    pool_tcache_t *block = caches_slow(mp);
    if (!block) {
        moirai__pool_take_back(mp->pools[c], ptr);
        moirai__pool_free_nocache(mp->pools[c], ptr);
        return;
    }
    moirai__pool_free_unbounded(block + c, ptr);
}

#if MOIRAI_MEM_ASAN
/* Closes the slack between the request and the class of a block just
 * allocated, so an overflow into it is reported. The first byte stays
 * open even for size 0: the release check reads it. */
static int close_slack(moirai_mempool_t *mp, size_t c, size_t size, void **out, int rc)
{
    if (rc == 0) {
        size_t open = size ? size : 1;
        moirai__mem_poison((char *)*out + open, mp->sizes[c] - open);
    }
    return rc;
}
#endif

int moirai_mempool_alloc(moirai_mempool_t *mp, size_t size, void **out)
{
    if (__builtin_expect(!mp || !out, 0))
        return -EINVAL;
    if (__builtin_expect(size > mp->max_class, 0))
        return large_alloc(mp, size, out);
    /* Size 0 maps to slot 0 of the lookup, the smallest class. */
    size_t c = mp->lookup[(size + 7) >> 3];
#if MOIRAI_MEM_ASAN
    return close_slack(mp, c, size, out,
                       is_last(mp) ? moirai__pool_alloc_unbounded(caches_last() + c, out)
                                   : alloc_other(mp, c, out));
#else
    if (is_last(mp))
        return moirai__pool_alloc_unbounded(caches_last() + c, out);
    return alloc_other(mp, c, out);
#endif
}

void moirai_mempool_free(moirai_mempool_t *mp, void *ptr, size_t size)
{
    if (__builtin_expect(!mp || !ptr, 0))
        return;
    if (__builtin_expect(size > mp->max_class, 0)) {
        large_free(mp, ptr);
        return;
    }
    size_t c = mp->lookup[(size + 7) >> 3];
    if (is_last(mp))
        moirai__pool_free_unbounded(caches_last() + c, ptr);
    else
        free_other(mp, c, ptr);
}

void moirai_mempool_flush(moirai_mempool_t *mp)
{
    if (!mp)
        return;
    for (size_t i = 0; i < mp->class_count; i++)
        moirai_pool_flush(mp->pools[i]);
}

size_t moirai_mempool_class_count(const moirai_mempool_t *mp)
{
    return mp ? mp->class_count : 0;
}

size_t moirai_mempool_class_size(const moirai_mempool_t *mp, size_t index)
{
    return mp && index < mp->class_count ? mp->sizes[index] : 0;
}

int moirai_mempool_class_of(const moirai_mempool_t *mp, size_t size)
{
    if (!mp)
        return -EINVAL;
    if (size == 0)
        size = 1;
    if (size > mp->max_class)
        return -ERANGE;
    return mp->lookup[(size + 7) >> 3];
}

int moirai_mempool_class_stats(moirai_mempool_t *mp, size_t index, moirai_pool_stats_t *out)
{
    if (!mp || !out || index >= mp->class_count)
        return -EINVAL;
    return moirai_pool_stats(mp->pools[index], out);
}

int moirai_mempool_stats(moirai_mempool_t *mp, moirai_mempool_stats_t *out)
{
    if (!mp || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < mp->class_count; i++) {
        moirai_pool_stats_t s;
        moirai_pool_stats(mp->pools[i], &s);
        out->small.allocations += s.allocations;
        out->small.frees += s.frees;
        out->small.failures += s.failures;
        out->small.cache_hits += s.cache_hits;
        out->small.depot_hits += s.depot_hits;
        out->small.fresh += s.fresh;
        out->small.system_allocations += s.system_allocations;
        out->small.objects += s.objects;
        out->small.in_use += s.in_use;
        out->small.high_water += s.high_water;
    }
    out->large_allocations = atomic_load_explicit(&mp->large_allocations, memory_order_relaxed);
    out->large_frees = atomic_load_explicit(&mp->large_frees, memory_order_relaxed);
    out->large_failures = atomic_load_explicit(&mp->large_failures, memory_order_relaxed);
    return 0;
}
