/* Internal layout of the object pool, shared by pool.c (the public API and
 * object creation), depot.c (magazines and the shared depot) and tcache.c
 * (per-thread caches and their registry). Never installed. */
#ifndef MOIRAI_MEM_POOL_INTERNAL_H
#define MOIRAI_MEM_POOL_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/core/cache.h>
#include <moirai/mem/pool.h>

#include "sanitize.h"

#define POOL_MAGAZINE_DEFAULT 64
#define POOL_MAGAZINE_MAX     4096
#define POOL_ALIGN_MAX        4096
#define POOL_OBJECT_MAX       ((size_t)1 << 30)
#define POOL_CHUNK_TARGET     ((size_t)64 * 1024)
/* Magazine storage grows in segments: segment k holds
 * POOL_MAG_SEG0 << k magazines, so a magazine's index maps to its segment
 * with one bit scan and segments never move once published. */
#define POOL_MAG_SEG0     16u
#define POOL_MAG_SEGMENTS 27

/* Checked builds detect a double release without AddressSanitizer by a
 * tag word written into every released object (see docs/mem.md). Under
 * AddressSanitizer the poison state of the object is the check instead.
 * Checked: unoptimised builds without NDEBUG (Meson's buildtype=debug), or
 * any build with -DMOIRAI_MEM_CHECKED=1. Not in optimised builds by
 * default: reading and writing the tag touches the object's cache line on
 * every release, which measured about 5 ns per release + allocation pair
 * (pool_churn_1t roughly doubled). */
#if !defined(MOIRAI_MEM_CHECKED)
#if !defined(NDEBUG) && !defined(__OPTIMIZE__)
#define MOIRAI_MEM_CHECKED 1
#else
#define MOIRAI_MEM_CHECKED 0
#endif
#endif
#if MOIRAI_MEM_CHECKED && !MOIRAI_MEM_ASAN
#define POOL_TAG_CHECK 1
#else
#define POOL_TAG_CHECK 0
#endif

/* A magazine: a stack of up to mag_size free objects. It is owned by one
 * thread's cache, or sits in one of the depot's stacks. Only `next` is
 * ever read by a thread that does not own the magazine (a Treiber-stack
 * pop reading a magazine another thread may just have taken), so it alone
 * is atomic; `count` and `rounds` pass between owners through the depot's
 * release/acquire operations. */
typedef struct pool_magazine {
    _Atomic uint32_t next; /* depot link: index + 1 of the next magazine, 0 ends */
    uint32_t index;        /* this magazine's index in the pool's storage */
    uint32_t count;        /* objects in rounds[] (while not loaded in a cache) */
    uint32_t reserved;
    void *rounds[];
} pool_magazine_t;

/* A lock-free stack of magazines. The top word packs a generation in the
 * high 32 bits and index + 1 of the top magazine in the low 32 bits (0:
 * empty). Every successful push and pop bumps the generation, so a pop
 * that read a stale top fails its compare-exchange even when the same
 * magazine is back on top (the ABA problem). Indices rather than pointers
 * keep the word 64 bits wide, so no 16-byte compare-exchange is needed. */
typedef struct pool_stack {
    _Alignas(MOIRAI_CACHE_LINE) _Atomic uint64_t top;
} pool_stack_t;

/* A thread's cache for one pool. Everything before `pool` is what the
 * fast paths touch, and shares the first cache line. Everything but the
 * guard and the counters is touched only by the owning thread (or by a
 * reclaimer holding the guard). Exactly two cache lines, so that a memory
 * pool's block of caches (one per class, see `block`) is indexed by a
 * shift.
 *
 * The counters cost the fast paths as little as they can: a release bumps
 * `frees`, an allocation compares `n` with `low`, and nothing else. The
 * objects this thread holds (its allocations less its releases, `live`)
 * are not counted one by one but follow from the cache: every allocation
 * takes one object out of the loaded magazine and every release puts one
 * in, so live + n only changes when a slow path loads, empties or fills
 * the magazine otherwise, and `base` records that sum. Its peak follows
 * from the lowest n since `base` last changed (`low`), folded into `peak`
 * each time `base` changes (moirai__pool_set_n()).
 *
 * The words another thread reads (n and the counters, by
 * moirai_pool_stats()) are atomics written with relaxed load + store by
 * whoever holds the cache, no read-modify-write, so they cost plain
 * moves; a reader sees each whole, and all of them consistent when the
 * pool is quiescent. */
typedef struct pool_tcache {
    /* Bounded pools only: held by the owner around every use of the
     * magazines below, and by another thread that takes them back to the
     * depot (moirai__pool_reclaim_begin()), so a pool at its capacity can reach
     * objects freed into other threads' caches. 0 free, 1 held. */
    _Atomic uint32_t guard;
    _Atomic uint32_t low; /* the lowest n since `base` last changed */
    /* n and cap are 64 bits wide although they never exceed
     * POOL_MAGAZINE_MAX: they index `rounds` as they are, with no
     * zero-extension on the fast paths. */
    _Atomic uint64_t n; /* objects in the loaded magazine */
    void **rounds;      /* loaded magazine's rounds, or NULL */
    uint64_t cap;       /* its capacity: mag_size, or 0 when none is loaded */
    /* allocations by this thread = live + frees */
    _Atomic uint64_t frees;
    /* live + n, where live = allocations - frees by this thread (may be
     * negative) */
    _Atomic int64_t base;
    /* the largest live reached before `base` last changed */
    _Atomic int64_t peak;
    struct moirai_pool *pool;
    pool_magazine_t *loaded;   /* NULL after a flush */
    pool_magazine_t *previous; /* the second magazine (any count), or NULL */
    _Atomic uint64_t depot_hits;
    _Atomic uint64_t fresh;
    _Atomic uint64_t failures;
    /* The pool's list of caches; changed and walked under the registry lock. */
    struct pool_tcache *list_next;
    struct pool_tcache *list_prev;
    /* A memory pool's caches of one thread are one allocation, one cache
     * per class in class order (moirai__pool_cache_create_group()): this
     * is its first cache, the one to free. NULL: allocated alone. */
    struct pool_tcache *block;
} __attribute__((aligned(MOIRAI_CACHE_LINE))) pool_tcache_t;

_Static_assert(sizeof(pool_tcache_t) == 2 * MOIRAI_CACHE_LINE,
               "a thread's cache is two cache lines, so a block is indexed by a shift");

struct moirai_pool {
    /* Read-only after creation; read on every fast path. */
    uint64_t id;   /* unique for the life of the process, never reused */
    uint32_t slot; /* index into each thread's cache table */
    uint32_t mag_size;
    size_t object_size; /* as the caller asked */
    size_t alignment;
    size_t stride;   /* distance between objects: object_size rounded up */
    size_t capacity; /* 0: unbounded */
    size_t chunk_objects;
    size_t mag_stride; /* bytes per magazine in storage, a multiple of MOIRAI_CACHE_LINE */
    uintptr_t tag;     /* the released-object tag of checked builds */
    moirai_pool_chunk_alloc_cb chunk_alloc;
    moirai_pool_chunk_free_cb chunk_free;
    void *chunk_arg;
    char name[32];

    /* The depot: non-empty magazines, empty magazines. */
    pool_stack_t full;
    pool_stack_t empty;

    /* Objects released when no magazine could be had (allocation failure
     * in the release path, which must not fail). A list linked through the
     * objects' first word: pushed one by one, taken all at once with an
     * exchange, so no pop ever reads a link another thread may rewrite. */
    _Alignas(MOIRAI_CACHE_LINE) void *_Atomic orphans;
    /* Objects outside the depot (held by callers or thread caches), and its
     * peak; updated once per magazine moved, never on the fast path. */
    _Atomic int64_t outside;
    _Atomic int64_t outside_peak;
    /* Releases by threads without a cache (their cache could not be
     * created) and allocation failures of such threads. */
    _Atomic uint64_t nocache_frees;
    _Atomic uint64_t nocache_failures;

    /* Creation of objects and magazines; never taken on the fast path. */
    _Alignas(MOIRAI_CACHE_LINE) pthread_mutex_t lock;
    char *carve_cur; /* next object of the current chunk */
    char *carve_end;
    struct pool_chunk *chunks;
    uint64_t chunk_total; /* objects in all chunks so far (<= capacity) */
    uint64_t carved;      /* objects handed out of chunks so far */
    uint64_t system_allocations;
    /* Magazine storage: segment pointers are written under `lock` before
     * any magazine in them is used, and read without it (a magazine index
     * reaches another thread only through the depot's release/acquire). */
    char *mag_segs[POOL_MAG_SEGMENTS];
    uint32_t mag_used; /* magazines handed out of storage */
    uint32_t mag_room; /* magazines the allocated segments hold */

    /* Under the registry lock (tcache.c): live caches and the folded
     * counters of caches whose threads exited. */
    pool_tcache_t *caches;
    uint64_t retired_frees;
    int64_t retired_live;
    int64_t retired_peak_sum;
    uint64_t retired_depot_hits;
    uint64_t retired_fresh;
    uint64_t retired_failures;
};

/* A chunk of objects, with this header at its start. */
typedef struct pool_chunk {
    struct pool_chunk *next;
    size_t size; /* as passed to chunk_alloc */
} pool_chunk_t;

/* ---- depot.c ---- */

/* The magazine with index `index` (which must exist). */
static inline pool_magazine_t *moirai__pool_mag_at(struct moirai_pool *pool, uint32_t index)
{
    uint32_t k = 31u - (uint32_t)__builtin_clz(index / POOL_MAG_SEG0 + 1u);
    uint32_t first = POOL_MAG_SEG0 * ((1u << k) - 1u);
    return (pool_magazine_t *)(pool->mag_segs[k] + (size_t)(index - first) * pool->mag_stride);
}

void moirai__pool_stack_push(struct moirai_pool *pool, pool_stack_t *stack, pool_magazine_t *mag);
pool_magazine_t *moirai__pool_stack_pop(struct moirai_pool *pool, pool_stack_t *stack);
/* An empty magazine from the depot, or a new one; NULL when out of memory. */
pool_magazine_t *moirai__pool_mag_get_empty(struct moirai_pool *pool);
/* Returns a magazine to the depot's full or empty stack by its count. */
void moirai__pool_mag_put(struct moirai_pool *pool, pool_magazine_t *mag);
/* Frees all magazine storage (pool destruction). */
void moirai__pool_mags_release(struct moirai_pool *pool);
/* Adds `delta` to the objects outside the depot and raises the peak. */
void moirai__pool_outside_add(struct moirai_pool *pool, int64_t delta);
void moirai__pool_orphan_push(struct moirai_pool *pool, void *obj);
/* Moves up to `room` orphans into `dst`; returns how many. */
uint32_t moirai__pool_orphan_take(struct moirai_pool *pool, void **dst, uint32_t room);

/* ---- pool.c: creation without registration (for groups) ---- */

/* Validates `cfg` and allocates an unregistered pool (no prepopulation).
 * Returns 0, -EINVAL or -ENOMEM, as moirai_pool_create(). */
int moirai__pool_new(struct moirai_pool **out, const moirai_pool_config_t *cfg);
/* Frees a pool that is not registered (or no longer). */
void moirai__pool_delete(struct moirai_pool *pool);

/* ---- tcache.c ---- */

/* The calling thread's cache table: entry `slot` serves the pool whose id
 * it records. Initial-exec TLS: the library is linked at start-up, and the
 * fast path then reads the table with one %fs-relative load instead of a
 * call to __tls_get_addr. */
typedef struct pool_tls_entry {
    uint64_t id;
    pool_tcache_t *cache;
} pool_tls_entry_t;

typedef struct pool_tls {
    /* The unbounded pool this thread used last, checked first. */
    uint64_t last_id;
    pool_tcache_t *last_cache;
    /* The memory pool this thread used last, by the id of its first class
     * pool, and this thread's block of caches for it (one per class, in
     * class order), checked first by the memory pool's fast paths. */
    uint64_t group_id;
    pool_tcache_t *group_block;
    pool_tls_entry_t *table;
    uint32_t len;
} pool_tls_t;

extern __thread pool_tls_t moirai__pool_tls __attribute__((tls_model("initial-exec")));

/* The calling thread's cache for the pool in `slot` with `id`, or NULL. */
static inline pool_tcache_t *moirai__pool_cache_at(uint32_t slot, uint64_t id)
{
    pool_tls_t *tls = &moirai__pool_tls;
    if (__builtin_expect(slot < tls->len, 1)) {
        pool_tls_entry_t *e = &tls->table[slot];
        if (__builtin_expect(e->id == id, 1)) {
            pool_tcache_t *c = e->cache;
            /* An entry carrying a live id always has its cache (ids start
             * at 1; both are set together); saying so spares the fast
             * paths a test. */
            if (!c)
                __builtin_unreachable();
            return c;
        }
    }
    return NULL;
}

static inline pool_tcache_t *moirai__pool_cache_of(const struct moirai_pool *pool)
{
    pool_tls_t *tls = &moirai__pool_tls;
    uint64_t id = pool->id;
    if (__builtin_expect(tls->last_id == id, 1)) {
        pool_tcache_t *c = tls->last_cache;
        if (!c)
            __builtin_unreachable();
        return c;
    }
    pool_tcache_t *c = moirai__pool_cache_at(pool->slot, id);
    /* Only an unbounded pool becomes the one used last: the fast paths
     * that check it first then need not test the capacity. */
    if (c && pool->capacity == 0) {
        tls->last_id = id;
        tls->last_cache = c;
    }
    return c;
}

/* Creates the calling thread's cache for `pool`; NULL when out of memory. */
pool_tcache_t *moirai__pool_cache_create(struct moirai_pool *pool);
/* Creates the calling thread's caches for the `n` pools of a group
 * registered by moirai__pool_register_group(), in one block: cache i
 * serves pools[i] and is the block's element i. The calling thread must
 * have no cache of any of them. Returns the block, or NULL when out of
 * memory (nothing created). */
pool_tcache_t *moirai__pool_cache_create_group(struct moirai_pool **pools, uint32_t n);
/* Returns the cache's magazines to the depot (it stays usable). */
void moirai__pool_cache_flush(pool_tcache_t *cache);
/* Registers `n` new pools: assigns consecutive slots and consecutive ids
 * (a memory pool relies on that to find its classes' caches). Returns 0
 * or -ENOMEM (nothing registered). */
int moirai__pool_register_group(struct moirai_pool **pools, uint32_t n);
/* Unregisters `pool` and frees every thread's cache of it. */
void moirai__pool_unregister(struct moirai_pool *pool);
/* Unregisters the `n` pools of a group and frees every thread's caches of
 * them, blocks included. */
void moirai__pool_unregister_group(struct moirai_pool **pools, uint32_t n);
/* Bounded pools: takes every other thread's cached objects back to the
 * depot and holds those caches still until moirai__pool_reclaim_end(), so
 * that `self`'s refill meanwhile sees every free object. Takes the
 * registry lock and each other cache's guard, and keeps them; the caller
 * holds no guard when it calls this, and may then take its own. */
void moirai__pool_reclaim_begin(struct moirai_pool *pool, pool_tcache_t *self);
/* Lets the caches held by moirai__pool_reclaim_begin() go. */
void moirai__pool_reclaim_end(struct moirai_pool *pool, pool_tcache_t *self);

/* Takes and releases a cache's guard (bounded pools). Acquire and
 * release: whoever holds it next sees the magazines as the last holder
 * left them. Held for a few instructions (one allocation or release that
 * may create a magazine or a chunk), or by a reclaimer for one pass over
 * the pool's caches and one refill, so a waiter spins briefly, then
 * yields the CPU. */
void moirai__pool_guard_wait(pool_tcache_t *c);
static inline bool moirai__pool_guard_try(pool_tcache_t *c)
{
    /* Acquire: pairs with the release in moirai__pool_guard_unlock(). */
    return atomic_exchange_explicit(&c->guard, 1, memory_order_acquire) == 0;
}
static inline void moirai__pool_guard_lock(pool_tcache_t *c)
{
    if (__builtin_expect(!moirai__pool_guard_try(c), 0))
        moirai__pool_guard_wait(c);
}
static inline void moirai__pool_guard_unlock(pool_tcache_t *c)
{
    atomic_store_explicit(&c->guard, 0, memory_order_release);
}

/* Sums the per-thread counters into `out` (fields the caches own). */
void moirai__pool_sum_caches(struct moirai_pool *pool, moirai_pool_stats_t *out, int64_t *peak_sum);

/* ---- pool.c: the fast paths, inline so the memory pool shares them ---- */

int moirai__pool_alloc_slow(struct moirai_pool *pool, pool_tcache_t *c, void **out);
void moirai__pool_free_slow(struct moirai_pool *pool, pool_tcache_t *c, void *obj);
/* An allocation by a thread whose cache could not be created: counts the
 * failure and returns -ENOMEM. */
int moirai__pool_alloc_nocache(struct moirai_pool *pool);
/* A release (already taken back) by a thread whose cache could not be
 * created: the object goes to the orphan list, which must not fail. */
void moirai__pool_free_nocache(struct moirai_pool *pool, void *obj);
__attribute__((noreturn, cold)) void moirai__pool_double_release(struct moirai_pool *pool,
                                                                 void *obj);

/* Owner-only counters: relaxed load and store, no read-modify-write (see
 * pool_tcache_t), so each costs a plain load and store. */
static inline void moirai__pool_bump(_Atomic uint64_t *counter)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* The objects in the loaded magazine of `c`. */
static inline uint64_t moirai__pool_n(const pool_tcache_t *c)
{
    return atomic_load_explicit(&c->n, memory_order_relaxed);
}

/* An allocation took the loaded magazine down to `n` objects: the peak of
 * live is base - low. */
static inline void moirai__pool_count_alloc(pool_tcache_t *c, uint64_t n)
{
    if (n < atomic_load_explicit(&c->low, memory_order_relaxed))
        atomic_store_explicit(&c->low, (uint32_t)n, memory_order_relaxed);
}

/* A release put its object into the loaded magazine. */
static inline void moirai__pool_count_free(pool_tcache_t *c)
{
    moirai__pool_bump(&c->frees);
}

/* Sets the loaded magazine's count to `n` other than by an allocation or
 * a release (a slow path loaded, emptied or filled it): live stays, so
 * `base` moves with n, and the peak reached so far is folded into `peak`
 * first. */
static inline void moirai__pool_set_n(pool_tcache_t *c, uint32_t n)
{
    int64_t base = atomic_load_explicit(&c->base, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&c->n, memory_order_relaxed);
    int64_t high = base - (int64_t)atomic_load_explicit(&c->low, memory_order_relaxed);
    if (high > atomic_load_explicit(&c->peak, memory_order_relaxed))
        atomic_store_explicit(&c->peak, high, memory_order_relaxed);
    atomic_store_explicit(&c->base, base + (int64_t)n - (int64_t)old, memory_order_relaxed);
    atomic_store_explicit(&c->n, n, memory_order_relaxed);
    atomic_store_explicit(&c->low, n, memory_order_relaxed);
}

/* The objects this thread's cache `c` handed out less those it took back
 * (live), and the largest that reached, as a reader on any thread sees
 * them (exact when the pool is quiescent). */
static inline int64_t moirai__pool_live(const pool_tcache_t *c)
{
    return atomic_load_explicit(&c->base, memory_order_relaxed) - (int64_t)moirai__pool_n(c);
}

static inline int64_t moirai__pool_peak(const pool_tcache_t *c)
{
    int64_t peak = atomic_load_explicit(&c->peak, memory_order_relaxed);
    int64_t high = atomic_load_explicit(&c->base, memory_order_relaxed) -
                   (int64_t)atomic_load_explicit(&c->low, memory_order_relaxed);
    return high > peak ? high : peak;
}

/* Hands `obj` to the caller: opens it for AddressSanitizer and clears the
 * released-object tag of checked builds. */
static inline void *moirai__pool_handout(struct moirai_pool *pool, void *obj)
{
    moirai__mem_unpoison(obj, pool->object_size);
#if POOL_TAG_CHECK
    *(uintptr_t *)obj = 0;
#else
    (void)pool;
#endif
    return obj;
}

/* Checks for a double release and closes the object. */
static inline void moirai__pool_take_back(struct moirai_pool *pool, void *obj)
{
#if MOIRAI_MEM_ASAN
    if (__builtin_expect(moirai__mem_is_poisoned(obj), 0))
        moirai__pool_double_release(pool, obj);
#elif POOL_TAG_CHECK
    if (__builtin_expect(*(uintptr_t *)obj == pool->tag, 0))
        moirai__pool_double_release(pool, obj);
    *(uintptr_t *)obj = pool->tag;
#endif
    moirai__mem_poison(obj, pool->stride);
}

/* The allocation fast path of an unbounded pool given the caller's cache
 * `c`: pop from the loaded magazine. No guard and no read of the pool
 * (its capacity) on the way, which is what lets the memory pool's classes,
 * never bounded, use it with nothing but the cache in hand. */
static inline int moirai__pool_alloc_unbounded(pool_tcache_t *c, void **out)
{
    uint64_t n = moirai__pool_n(c);
    if (__builtin_expect(n != 0, 1)) {
        void *obj = c->rounds[n - 1];
        atomic_store_explicit(&c->n, n - 1, memory_order_relaxed);
        moirai__pool_count_alloc(c, n - 1);
        *out = moirai__pool_handout(c->pool, obj);
        return 0;
    }
    return moirai__pool_alloc_slow(c->pool, c, out);
}

/* The release fast path of an unbounded pool given the caller's cache
 * `c`: push onto the loaded magazine. */
static inline void moirai__pool_free_unbounded(pool_tcache_t *c, void *obj)
{
    moirai__pool_take_back(c->pool, obj);
    uint64_t n = moirai__pool_n(c);
    if (__builtin_expect(n < c->cap, 1)) {
        c->rounds[n] = obj;
        atomic_store_explicit(&c->n, n + 1, memory_order_relaxed);
        moirai__pool_count_free(c);
        return;
    }
    moirai__pool_free_slow(c->pool, c, obj);
}

/* The allocation fast path given the caller's cache `c` (NULL when it
 * has none): pop from the loaded magazine. An unbounded pool goes
 * straight to moirai__pool_alloc_unbounded(); a bounded pool's cache is
 * used under its guard, so that another thread can take its objects back
 * (moirai__pool_reclaim_begin()). */
static inline int moirai__pool_alloc_cached(struct moirai_pool *pool, pool_tcache_t *c, void **out)
{
    if (__builtin_expect(c != NULL, 1)) {
        if (__builtin_expect(pool->capacity == 0, 1))
            return moirai__pool_alloc_unbounded(c, out);
        if (moirai__pool_guard_try(c)) {
            uint64_t n = moirai__pool_n(c);
            if (__builtin_expect(n != 0, 1)) {
                void *obj = c->rounds[n - 1];
                atomic_store_explicit(&c->n, n - 1, memory_order_relaxed);
                moirai__pool_count_alloc(c, n - 1);
                moirai__pool_guard_unlock(c);
                *out = moirai__pool_handout(pool, obj);
                return 0;
            }
            moirai__pool_guard_unlock(c);
        }
    }
    return moirai__pool_alloc_slow(pool, c, out);
}

/* The release fast path given the caller's cache `c` (or NULL): push onto
 * the loaded magazine, under the guard in a bounded pool as in
 * allocation. */
static inline void moirai__pool_free_cached(struct moirai_pool *pool, pool_tcache_t *c, void *obj)
{
    if (__builtin_expect(c != NULL, 1)) {
        if (__builtin_expect(pool->capacity == 0, 1)) {
            moirai__pool_free_unbounded(c, obj);
            return;
        }
        moirai__pool_take_back(pool, obj);
        if (moirai__pool_guard_try(c)) {
            uint64_t n = moirai__pool_n(c);
            if (__builtin_expect(n < c->cap, 1)) {
                c->rounds[n] = obj;
                atomic_store_explicit(&c->n, n + 1, memory_order_relaxed);
                moirai__pool_count_free(c);
                moirai__pool_guard_unlock(c);
                return;
            }
            moirai__pool_guard_unlock(c);
        }
    } else {
        moirai__pool_take_back(pool, obj);
    }
    moirai__pool_free_slow(pool, c, obj);
}

/* Allocation and release by a thread for which `pool` is not the
 * unbounded pool it used last (out of line, in pool.c). */
int moirai__pool_alloc_other(struct moirai_pool *pool, void **out);
void moirai__pool_free_other(struct moirai_pool *pool, void *obj);

/* The fast paths: the pool used last is unbounded, so its cache is used
 * without a test of the capacity; anything else goes out of line. */
static inline int moirai__pool_alloc_nocheck(struct moirai_pool *pool, void **out)
{
    pool_tls_t *tls = &moirai__pool_tls;
    if (__builtin_expect(tls->last_id == pool->id, 1)) {
        pool_tcache_t *c = tls->last_cache;
        if (!c)
            __builtin_unreachable();
        return moirai__pool_alloc_unbounded(c, out);
    }
    return moirai__pool_alloc_other(pool, out);
}

static inline void moirai__pool_free_nocheck(struct moirai_pool *pool, void *obj)
{
    pool_tls_t *tls = &moirai__pool_tls;
    if (__builtin_expect(tls->last_id == pool->id, 1)) {
        pool_tcache_t *c = tls->last_cache;
        if (!c)
            __builtin_unreachable();
        moirai__pool_free_unbounded(c, obj);
        return;
    }
    moirai__pool_free_other(pool, obj);
}

/* moirai_pool_alloc() and moirai_pool_free() inline, with their argument
 * checks, for other files of this library (the NUMA pool uses them). */
static inline int moirai__pool_alloc(struct moirai_pool *pool, void **out)
{
    if (__builtin_expect(!pool || !out, 0))
        return -EINVAL;
    return moirai__pool_alloc_nocheck(pool, out);
}

static inline void moirai__pool_free(struct moirai_pool *pool, void *obj)
{
    if (__builtin_expect(!pool || !obj, 0))
        return;
    moirai__pool_free_nocheck(pool, obj);
}

#endif
