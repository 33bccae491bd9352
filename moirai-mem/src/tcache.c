/* Per-thread caches of the object pools and the registry of live pools.
 *
 * Each thread has a table of cache pointers indexed by pool slot; an entry
 * is valid when its id equals the pool's (ids are never reused, so an entry
 * left behind by a destroyed pool simply stops matching). The registry maps
 * slots to live pools. One process-wide mutex guards the registry and every
 * pool's list of caches; it is taken only when a thread first uses a pool,
 * when a thread exits, when a pool is created or destroyed, and when
 * statistics are read, never on the allocation path. */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include <moirai/core/alloc.h>

#include "pool_internal.h"

__thread pool_tls_t moirai__pool_tls __attribute__((tls_model("initial-exec")));

typedef struct registry_slot {
    struct moirai_pool *pool; /* NULL: free */
    uint64_t id;
} registry_slot_t;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static registry_slot_t *registry;
static uint32_t registry_len;
static uint64_t registry_next_id = 1;

static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static int exit_key_err;

static void thread_exit(void *arg);

static void exit_key_create(void)
{
    exit_key_err = pthread_key_create(&exit_key, thread_exit);
}

int moirai__pool_register_group(struct moirai_pool **pools, uint32_t n)
{
    pthread_mutex_lock(&registry_lock);
    /* The first run of n free slots. */
    uint32_t slot = 0, run = 0;
    while (slot + run < registry_len && run < n) {
        if (registry[slot + run].pool) {
            slot += run + 1;
            run = 0;
        } else {
            run++;
        }
    }
    if (slot + n > registry_len) {
        uint32_t len = registry_len ? registry_len : 16;
        while (len < slot + n)
            len *= 2;
        registry_slot_t *grown = moirai_realloc(registry, len * sizeof(*grown));
        if (!grown) {
            pthread_mutex_unlock(&registry_lock);
            return -ENOMEM;
        }
        memset(grown + registry_len, 0, (len - registry_len) * sizeof(*grown));
        registry = grown;
        registry_len = len;
    }
    for (uint32_t i = 0; i < n; i++) {
        pools[i]->slot = slot + i;
        pools[i]->id = registry_next_id++;
        registry[slot + i].pool = pools[i];
        registry[slot + i].id = pools[i]->id;
    }
    pthread_mutex_unlock(&registry_lock);
    return 0;
}

/* Folds a cache's counters into its pool and unlinks it. Registry lock held. */
static void cache_retire(pool_tcache_t *c)
{
    struct moirai_pool *pool = c->pool;
    pool->retired_frees += atomic_load_explicit(&c->frees, memory_order_relaxed);
    pool->retired_live += moirai__pool_live(c);
    pool->retired_peak_sum += moirai__pool_peak(c);
    pool->retired_depot_hits += atomic_load_explicit(&c->depot_hits, memory_order_relaxed);
    pool->retired_fresh += atomic_load_explicit(&c->fresh, memory_order_relaxed);
    pool->retired_failures += atomic_load_explicit(&c->failures, memory_order_relaxed);
    if (c->list_prev)
        c->list_prev->list_next = c->list_next;
    else
        pool->caches = c->list_next;
    if (c->list_next)
        c->list_next->list_prev = c->list_prev;
}

void moirai__pool_unregister_group(struct moirai_pool **pools, uint32_t n)
{
    pthread_mutex_lock(&registry_lock);
    for (uint32_t i = 0; i < n; i++) {
        registry[pools[i]->slot].pool = NULL;
        registry[pools[i]->slot].id = 0;
    }
    /* Threads still holding these caches never dereference them again:
     * their table entries no longer match a live pool's id. A block is
     * freed through its first cache, which is in pools[0]'s list; that
     * list goes last, so the other lists are walked while every block
     * still exists. */
    for (uint32_t i = n; i-- > 0;) {
        pool_tcache_t *c = pools[i]->caches;
        while (c) {
            pool_tcache_t *next = c->list_next;
            if (!c->block || c->block == c)
                moirai_free(c);
            c = next;
        }
        pools[i]->caches = NULL;
    }
    pthread_mutex_unlock(&registry_lock);
}

void moirai__pool_unregister(struct moirai_pool *pool)
{
    moirai__pool_unregister_group(&pool, 1);
}

void moirai__pool_cache_flush(pool_tcache_t *c)
{
    struct moirai_pool *pool = c->pool;
    if (c->loaded) {
        c->loaded->count = moirai__pool_n(c);
        moirai__pool_mag_put(pool, c->loaded);
    }
    if (c->previous)
        moirai__pool_mag_put(pool, c->previous);
    c->loaded = NULL;
    c->previous = NULL;
    moirai__pool_set_n(c, 0);
    c->rounds = NULL;
    c->cap = 0;
}

/* pthread key destructor: runs when a thread that used a pool exits.
 * Returns the thread's cached objects to their depots. */
static void thread_exit(void *arg)
{
    (void)arg;
    pool_tls_entry_t *table = moirai__pool_tls.table;
    uint32_t len = moirai__pool_tls.len;
    pthread_mutex_lock(&registry_lock);
    for (uint32_t slot = 0; slot < len; slot++) {
        pool_tcache_t *c = table[slot].cache;
        /* Only caches of pools still alive: a destroyed pool freed its
         * caches already. */
        if (!c || slot >= registry_len || !registry[slot].pool ||
            registry[slot].id != table[slot].id) {
            table[slot].cache = NULL;
            continue;
        }
        moirai__pool_cache_flush(c);
        cache_retire(c);
        if (!c->block) {
            moirai_free(c);
            table[slot].cache = NULL;
        }
    }
    /* The blocks of caches, each through its first cache. A group's first
     * pool has its lowest slot, so going down reads every other cache of
     * a block before the block is freed. */
    for (uint32_t slot = len; slot-- > 0;) {
        pool_tcache_t *c = table[slot].cache;
        if (c && c->block == c)
            moirai_free(c);
    }
    pthread_mutex_unlock(&registry_lock);
    moirai__pool_tls.table = NULL;
    moirai__pool_tls.len = 0;
    moirai__pool_tls.last_id = 0; /* its cache is freed */
    moirai__pool_tls.last_cache = NULL;
    moirai__pool_tls.group_id = 0; /* so is its block */
    moirai__pool_tls.group_block = NULL;
    moirai_free(table);
}

/* Makes the calling thread's table hold at least `slots` entries.
 * Returns false when out of memory (the table unchanged). */
static bool table_reserve(uint32_t slots)
{
    pthread_once(&exit_key_once, exit_key_create);
    if (exit_key_err)
        return false;
    if (slots <= moirai__pool_tls.len)
        return true;
    uint32_t len = moirai__pool_tls.len ? moirai__pool_tls.len : 8;
    while (len < slots)
        len *= 2;
    pool_tls_entry_t *grown = moirai_realloc(moirai__pool_tls.table, len * sizeof(*grown));
    if (!grown)
        return false;
    memset(grown + moirai__pool_tls.len, 0, (len - moirai__pool_tls.len) * sizeof(*grown));
    moirai__pool_tls.table = grown;
    moirai__pool_tls.len = len;
    /* The key's value only needs to be non-NULL for the destructor to
     * run; it reads the table from TLS itself. Cannot fail once the key
     * exists, except for ENOMEM in glibc's second-level table. */
    return pthread_setspecific(exit_key, grown) == 0;
}

/* Initialises the cache `c` of `pool` and links it into the pool's list
 * (registry lock held), in block `block` (or NULL). */
static void cache_init(pool_tcache_t *c, struct moirai_pool *pool, pool_tcache_t *block)
{
    memset(c, 0, sizeof(*c));
    c->pool = pool;
    c->block = block;
    atomic_init(&c->guard, 0);
    atomic_init(&c->frees, 0);
    atomic_init(&c->n, 0);
    atomic_init(&c->low, 0);
    atomic_init(&c->base, 0);
    atomic_init(&c->peak, 0);
    atomic_init(&c->depot_hits, 0);
    atomic_init(&c->fresh, 0);
    atomic_init(&c->failures, 0);
    c->list_next = pool->caches;
    if (pool->caches)
        pool->caches->list_prev = c;
    pool->caches = c;
}

pool_tcache_t *moirai__pool_cache_create(struct moirai_pool *pool)
{
    uint32_t slot = pool->slot;
    if (!table_reserve(slot + 1))
        return NULL;
    pool_tcache_t *c = moirai_aligned_alloc(MOIRAI_CACHE_LINE, sizeof(*c));
    if (!c)
        return NULL;
    pthread_mutex_lock(&registry_lock);
    cache_init(c, pool, NULL);
    pthread_mutex_unlock(&registry_lock);
    moirai__pool_tls.table[slot].id = pool->id;
    moirai__pool_tls.table[slot].cache = c;
    return c;
}

pool_tcache_t *moirai__pool_cache_create_group(struct moirai_pool **pools, uint32_t n)
{
    /* The group's slots are consecutive (moirai__pool_register_group()). */
    uint32_t base = pools[0]->slot;
    if (!table_reserve(base + n))
        return NULL;
    pool_tcache_t *block = moirai_aligned_alloc(MOIRAI_CACHE_LINE, (size_t)n * sizeof(*block));
    if (!block)
        return NULL;
    pthread_mutex_lock(&registry_lock);
    for (uint32_t i = 0; i < n; i++)
        cache_init(&block[i], pools[i], block);
    pthread_mutex_unlock(&registry_lock);
    for (uint32_t i = 0; i < n; i++) {
        moirai__pool_tls.table[base + i].id = pools[i]->id;
        moirai__pool_tls.table[base + i].cache = &block[i];
    }
    return block;
}

void moirai__pool_sum_caches(struct moirai_pool *pool, moirai_pool_stats_t *out, int64_t *peak_sum)
{
    pthread_mutex_lock(&registry_lock);
    uint64_t frees = pool->retired_frees;
    int64_t live = pool->retired_live;
    int64_t peaks = pool->retired_peak_sum;
    uint64_t depot_hits = pool->retired_depot_hits;
    uint64_t fresh = pool->retired_fresh;
    uint64_t failures = pool->retired_failures;
    for (pool_tcache_t *c = pool->caches; c; c = c->list_next) {
        /* Relaxed: statistics; each counter is a single word its owner
         * stores whole, so the read is never torn. */
        frees += atomic_load_explicit(&c->frees, memory_order_relaxed);
        live += moirai__pool_live(c);
        peaks += moirai__pool_peak(c);
        depot_hits += atomic_load_explicit(&c->depot_hits, memory_order_relaxed);
        fresh += atomic_load_explicit(&c->fresh, memory_order_relaxed);
        failures += atomic_load_explicit(&c->failures, memory_order_relaxed);
    }
    pthread_mutex_unlock(&registry_lock);
    out->allocations = (uint64_t)((int64_t)frees + live);
    out->frees = frees;
    out->depot_hits = depot_hits;
    out->fresh = fresh;
    out->failures = failures;
    *peak_sum = peaks;
}

void moirai__pool_guard_wait(pool_tcache_t *c)
{
    unsigned spins = 0;
    do {
        /* Relaxed: only a hint that the guard may be free; the exchange
         * in moirai__pool_guard_try() acquires. */
        while (atomic_load_explicit(&c->guard, memory_order_relaxed) != 0) {
            if (++spins > 64)
                sched_yield();
        }
    } while (!moirai__pool_guard_try(c));
}

void moirai__pool_reclaim_begin(struct moirai_pool *pool, pool_tcache_t *self)
{
    /* The registry lock keeps every cache of the pool alive (a thread that
     * exits flushes and frees its caches under it) and the list stable,
     * and lets one reclaimer at a time hold guards. No thread takes the
     * registry lock while it holds a guard, so the owners, who only ever
     * take their own guard, just wait for it. */
    pthread_mutex_lock(&registry_lock);
    for (pool_tcache_t *c = pool->caches; c; c = c->list_next) {
        if (c == self)
            continue;
        moirai__pool_guard_lock(c);
        moirai__pool_cache_flush(c);
    }
}

void moirai__pool_reclaim_end(struct moirai_pool *pool, pool_tcache_t *self)
{
    for (pool_tcache_t *c = pool->caches; c; c = c->list_next)
        if (c != self)
            moirai__pool_guard_unlock(c);
    pthread_mutex_unlock(&registry_lock);
}
