/* The NUMA-aware pool: one object pool per node, distance-ordered fallback.
 *
 * Finding an object's node. Every chunk a node pool asks for is placed in
 * a block aligned to `block` (a power of two chosen at creation, larger
 * than any chunk the node pools will request), with a header at the start
 * of the block naming the pool and the node, and the chunk right after the
 * header. Any object lies inside its chunk, hence inside its block, so
 * `obj & ~(block - 1)` is its header: one mask and one load, no registry
 * and no lock on the release path. The alignment costs address space
 * only: the block is allocated for the header and chunk, not to its full
 * alignment.
 *
 * Placement. A block is whole pages, bound to its node with
 * moirai_numa_range_policy_set(BIND, MOVE) before the header is written,
 * so the first touch already lands on the node; its policy is reset to the
 * default before it goes back to the allocator (moirai_numa_free() does
 * the same for the same reason).
 *
 * The fast paths are the object pool's own inline ones (pool_internal.h,
 * as the memory pool uses them), so a NUMA pool allocation is the object
 * pool's plus finding the caller's node and, on release, the header load.
 *
 * Counting. The node pools count allocations and frees per thread at no
 * shared cost. This file adds counters only for the slow path (a node that
 * could not serve), so they are plain relaxed atomics. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#define HAVE_RSEQ 1
#endif
#endif

#include <moirai/core/alloc.h>
#include <moirai/core/cache.h>
#include <moirai/core/error.h>
#include <moirai/core/log.h>
#include <moirai/mem/numa.h>
#include <moirai/mem/numa_pool.h>
#include <moirai/mem/pool.h>

#include "pool_internal.h"

#define HEADER_MAGIC UINT64_C(0x6d6f697261694e50) /* "moiraiNP" */
/* What an object pool's default chunk holds, per pool.h: about 64 KiB. */
#define DEFAULT_CHUNK_BYTES ((size_t)64 * 1024)
/* The largest block alignment accepted; a configuration needing more is
 * refused as too large to be had. */
#define MAX_BLOCK ((size_t)1 << 40)

/* The header at the start of every block. */
typedef struct block_header {
    uint64_t magic;
    const moirai_numa_pool_t *owner;
    int node;
} block_header_t;

/* One node. The slow-path counters are written by any thread that falls
 * back, so each node has its own cache line. */
typedef struct node_slot {
    moirai_numa_pool_t *owner;
    moirai_pool_t *pool;
    int node;
    /* Relaxed: statistics only; they order nothing. */
    atomic_uint_fast64_t fallback_in;
    atomic_uint_fast64_t fallback_out;
    atomic_uint_fast64_t failures;
} __attribute__((aligned(MOIRAI_CACHE_LINE))) node_slot_t;

struct moirai_numa_pool {
    int nodes;
    size_t block; /* alignment of every block: a power of two */
    size_t hdr;   /* offset of the chunk in its block */
    size_t page;
    int *order;         /* nodes x nodes: row n is the fallback order from n */
    node_slot_t *slots; /* nodes entries */
    atomic_bool oversize_logged;
};

void moirai_numa_pool_config_init(moirai_numa_pool_config_t *cfg, size_t object_size)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->object_size = object_size;
}

static size_t round_up(size_t v, size_t to)
{
    return (v + to - 1) / to * to;
}

static size_t next_pow2(size_t v)
{
    size_t p = 1;

    while (p < v)
        p <<= 1;
    return p;
}

/* Chooses the block alignment and header offset for `cfg`, above the
 * largest chunk the node pools can request. The object pool asks for
 * chunks of at most `chunk_objects` objects (default: about 64 KiB of
 * them; prepopulation is carved in chunks of the same size) plus its own
 * chunk header and alignment slack; doubling covers whatever it adds
 * beyond the objects. Returns 0, -EINVAL for values moirai_pool_create()
 * rejects too (this runs first and must not overflow on them), or -ENOMEM
 * when the blocks would be absurdly large. */
static int choose_block(moirai_numa_pool_t *np, const moirai_numa_pool_config_t *cfg)
{
    size_t align = cfg->alignment, size = cfg->object_size, stride, objects, bytes;

    if (align == 0)
        align = size >= 16 ? 16 : 8;
    if (align > 4096 || (align & (align - 1)) != 0 || size > ((size_t)1 << 30))
        return MOIRAI_EINVAL;
    if (align < sizeof(void *))
        align = sizeof(void *);
    if (size < sizeof(void *))
        size = sizeof(void *);
    stride = round_up(size, align);
    objects = cfg->chunk_objects;
    if (objects == 0)
        objects = DEFAULT_CHUNK_BYTES / stride ? DEFAULT_CHUNK_BYTES / stride : 1;
    if (objects > (SIZE_MAX / 4) / stride)
        return MOIRAI_EINVAL;
    np->hdr = align > MOIRAI_CACHE_LINE ? align : MOIRAI_CACHE_LINE;
    bytes = objects * stride + np->hdr + align + np->page;
    if (bytes > MAX_BLOCK / 2)
        return MOIRAI_ENOMEM;
    np->block = next_pow2(2 * bytes);
    return 0;
}

/* ---- chunks ---- */

static void *chunk_alloc(void *arg, size_t size)
{
    node_slot_t *slot = arg;
    moirai_numa_pool_t *np = slot->owner;
    block_header_t *h;
    size_t len;
    char *base;

    if (size > np->block - np->hdr) {
        /* The object pool asked for more than choose_block() allowed for;
         * serving it would put objects beyond the reach of their header.
         * Refusing makes the node look exhausted, which is safe. */
        if (!atomic_exchange_explicit(&np->oversize_logged, true, memory_order_relaxed))
            MOIRAI_LOG(MOIRAI_LOG_ERROR,
                       "numa_pool: a chunk of %zu bytes exceeds the %zu-byte block; refused", size,
                       np->block - np->hdr);
        return NULL;
    }
    len = round_up(np->hdr + size, np->page);
    base = moirai_aligned_alloc(np->block, len);
    if (base == NULL)
        return NULL;
    if (moirai_numa_range_policy_set(base, len, MOIRAI_NUMA_POLICY_BIND, &slot->node, 1,
                                     MOIRAI_NUMA_MOVE) != 0) {
        moirai_free(base);
        return NULL;
    }
    h = (block_header_t *)base;
    h->magic = HEADER_MAGIC;
    h->owner = np;
    h->node = slot->node;
    return base + np->hdr;
}

static void chunk_free(void *arg, void *ptr, size_t size)
{
    node_slot_t *slot = arg;
    moirai_numa_pool_t *np = slot->owner;
    char *base = (char *)ptr - np->hdr;

    /* A stale pointer into a freed block must not find a valid header. */
    ((block_header_t *)base)->magic = 0;
    (void)moirai_numa_range_policy_set(base, round_up(np->hdr + size, np->page),
                                       MOIRAI_NUMA_POLICY_DEFAULT, NULL, 0, 0);
    moirai_free(base);
}

/* ---- the caller's node ---- */

/* Asking core for the caller's node costs a getcpu and a search of the
 * topology, more than the rest of an allocation. Each thread therefore
 * remembers the node of the CPU it last saw, and checks the CPU through
 * the rseq area glibc (2.35 and later) registers with the kernel, which
 * the kernel keeps current at every migration: reading it is one load.
 *
 * The remembered answer is only as good as the topology it came from.
 * The topology may change only while no NUMA pool exists (numa_pool.h),
 * and every pool creation bumps `topology_epoch`; a remembered node from
 * an older epoch is not used. Relaxed suffices: a pool is handed to the
 * threads that use it through the caller's own synchronisation, which
 * orders the bump in create before any load in a later allocation (read
 * coherence then rules out seeing the older value). */
static atomic_ulong topology_epoch;

typedef struct home_cache {
    unsigned long epoch; /* 0: nothing remembered (epochs start at 1) */
    int cpu;
    int node;
} home_cache_t;

static __thread home_cache_t home_cache __attribute__((tls_model("initial-exec")));

/* The CPU this thread runs on from the rseq area, or -1 when there is
 * none (glibc too old, registration disabled or failed). */
static inline int rseq_cpu(void)
{
#if defined(HAVE_RSEQ) && (defined(__x86_64__) || defined(__aarch64__))
    if (__rseq_size > 0) {
        const volatile struct rseq *rs =
            (const volatile struct rseq *)((const char *)__builtin_thread_pointer() +
                                           __rseq_offset);
        /* The kernel writes -1 or -2 (as uint32) before registration. */
        return (int)rs->cpu_id;
    }
#endif
    return -1;
}

static int home_node(const moirai_numa_pool_t *np)
{
    unsigned long epoch = atomic_load_explicit(&topology_epoch, memory_order_relaxed);
    int cpu = rseq_cpu(), node;

    if (cpu >= 0 && home_cache.cpu == cpu && home_cache.epoch == epoch)
        return home_cache.node % np->nodes;
    node = moirai_numa_current_node();
    /* Remember it only if the thread did not move while core looked it
     * up, so the pair describes one CPU. */
    if (cpu >= 0 && rseq_cpu() == cpu)
        home_cache = (home_cache_t){.epoch = epoch, .cpu = cpu, .node = node};
    return node % np->nodes;
}

/* ---- create / destroy ---- */

static void destroy_partial(moirai_numa_pool_t *np, int created)
{
    for (int n = 0; n < created; n++)
        moirai_pool_destroy(np->slots[n].pool);
    moirai_free(np->slots);
    moirai_free(np->order);
    moirai_free(np);
}

int moirai_numa_pool_create(moirai_numa_pool_t **out, const moirai_numa_pool_config_t *cfg)
{
    moirai_numa_pool_t *np;
    size_t order_bytes, slots_bytes;
    long page = sysconf(_SC_PAGESIZE);
    int nodes, rc;

    if (out == NULL || cfg == NULL || cfg->object_size == 0)
        return MOIRAI_EINVAL;
    nodes = moirai_numa_node_count();
    if (__builtin_mul_overflow((size_t)nodes, (size_t)nodes, &order_bytes) ||
        __builtin_mul_overflow(order_bytes, sizeof(int), &order_bytes) ||
        __builtin_mul_overflow((size_t)nodes, sizeof(node_slot_t), &slots_bytes))
        return MOIRAI_ENOMEM;

    np = moirai_calloc(1, sizeof(*np));
    if (np == NULL)
        return MOIRAI_ENOMEM;
    np->nodes = nodes;
    atomic_init(&np->oversize_logged, false);
    np->page = page > 0 ? (size_t)page : 4096;
    rc = choose_block(np, cfg);
    if (rc != 0) {
        moirai_free(np);
        return rc;
    }
    np->order = moirai_malloc(order_bytes);
    np->slots = moirai_aligned_alloc(MOIRAI_CACHE_LINE, slots_bytes);
    if (np->order == NULL || np->slots == NULL) {
        destroy_partial(np, 0);
        return MOIRAI_ENOMEM;
    }
    memset(np->slots, 0, slots_bytes);
    for (int n = 0; n < nodes; n++) {
        /* Cannot fail: n is a node of the topology and the row has room. */
        (void)moirai_numa_nodes_by_distance(n, np->order + (size_t)n * (size_t)nodes, nodes);
        np->slots[n].owner = np;
        np->slots[n].node = n;
        atomic_init(&np->slots[n].fallback_in, 0);
        atomic_init(&np->slots[n].fallback_out, 0);
        atomic_init(&np->slots[n].failures, 0);
    }

    for (int n = 0; n < nodes; n++) {
        moirai_pool_config_t pc;
        char name[96];

        moirai_pool_config_init(&pc, cfg->object_size);
        pc.alignment = cfg->alignment;
        pc.capacity = cfg->node_capacity;
        pc.prepopulate = cfg->prepopulate;
        pc.magazine_size = cfg->magazine_size;
        pc.chunk_objects = cfg->chunk_objects;
        pc.chunk_alloc = chunk_alloc;
        pc.chunk_free = chunk_free;
        pc.chunk_arg = &np->slots[n];
        snprintf(name, sizeof(name), "%s/node%d", cfg->name ? cfg->name : "numa_pool", n);
        pc.name = name;
        rc = moirai_pool_create(&np->slots[n].pool, &pc);
        if (rc != 0) {
            destroy_partial(np, n);
            return rc;
        }
    }
    /* Remembered nodes may predate a topology change: forget them. */
    atomic_fetch_add_explicit(&topology_epoch, 1, memory_order_relaxed);
    *out = np;
    return 0;
}

void moirai_numa_pool_destroy(moirai_numa_pool_t *pool)
{
    if (pool != NULL)
        destroy_partial(pool, pool->nodes);
}

/* ---- allocation ---- */

/* Serves from `first`, then in distance order from it. */
static int alloc_from(moirai_numa_pool_t *np, int first, void **out)
{
    node_slot_t *home = &np->slots[first];
    const int *order;

    if (__builtin_expect(moirai__pool_alloc(home->pool, out) == 0, 1))
        return 0;
    atomic_fetch_add_explicit(&home->fallback_out, 1, memory_order_relaxed);
    order = np->order + (size_t)first * (size_t)np->nodes;
    /* order[0] is `first` itself. */
    for (int i = 1; i < np->nodes; i++) {
        node_slot_t *slot = &np->slots[order[i]];

        if (moirai_pool_alloc(slot->pool, out) == 0) {
            atomic_fetch_add_explicit(&slot->fallback_in, 1, memory_order_relaxed);
            return 0;
        }
    }
    atomic_fetch_add_explicit(&home->failures, 1, memory_order_relaxed);
    return MOIRAI_ENOMEM;
}

int moirai_numa_pool_alloc(moirai_numa_pool_t *pool, void **out)
{
    if (pool == NULL || out == NULL)
        return MOIRAI_EINVAL;
    return alloc_from(pool, home_node(pool), out);
}

int moirai_numa_pool_alloc_on(moirai_numa_pool_t *pool, int node, void **out)
{
    if (pool == NULL || out == NULL || node < 0 || node >= pool->nodes)
        return MOIRAI_EINVAL;
    return alloc_from(pool, node, out);
}

static const block_header_t *header_of(const moirai_numa_pool_t *np, const void *obj)
{
    return (const block_header_t *)((uintptr_t)obj & ~(uintptr_t)(np->block - 1));
}

void moirai_numa_pool_free(moirai_numa_pool_t *pool, void *obj)
{
    const block_header_t *h;

    if (pool == NULL || obj == NULL)
        return;
    h = header_of(pool, obj);
    if (__builtin_expect(h->magic != HEADER_MAGIC || h->owner != pool, 0)) {
        /* Returning it to some node pool would corrupt that pool. */
        moirai_log_write(MOIRAI_LOG_ERROR,
                         "numa_pool: %p released to pool %p, which did not allocate it", obj,
                         (void *)pool);
        abort();
    }
    moirai__pool_free(pool->slots[h->node].pool, obj);
}

int moirai_numa_pool_node_of(const moirai_numa_pool_t *pool, const void *obj)
{
    const block_header_t *h;

    if (pool == NULL || obj == NULL)
        return MOIRAI_EINVAL;
    h = header_of(pool, obj);
    if (h->magic != HEADER_MAGIC || h->owner != pool)
        return MOIRAI_EINVAL;
    return h->node;
}

void moirai_numa_pool_flush(moirai_numa_pool_t *pool)
{
    if (pool == NULL)
        return;
    for (int n = 0; n < pool->nodes; n++)
        moirai_pool_flush(pool->slots[n].pool);
}

int moirai_numa_pool_node_count(const moirai_numa_pool_t *pool)
{
    return pool != NULL ? pool->nodes : 0;
}

int moirai_numa_pool_node_stats(moirai_numa_pool_t *pool, int node,
                                moirai_numa_pool_node_stats_t *out)
{
    node_slot_t *slot;
    int rc;

    if (pool == NULL || out == NULL || node < 0 || node >= pool->nodes)
        return MOIRAI_EINVAL;
    slot = &pool->slots[node];
    rc = moirai_pool_stats(slot->pool, &out->pool);
    if (rc != 0)
        return rc;
    out->fallback_in = atomic_load_explicit(&slot->fallback_in, memory_order_relaxed);
    out->fallback_out = atomic_load_explicit(&slot->fallback_out, memory_order_relaxed);
    out->failures = atomic_load_explicit(&slot->failures, memory_order_relaxed);
    /* Both terms are exact at quiescence; while threads allocate, the
     * snapshot may see a fallback counted before its allocation. */
    out->local =
        out->pool.allocations > out->fallback_in ? out->pool.allocations - out->fallback_in : 0;
    return 0;
}
