/* A NUMA-aware object pool: one object pool (moirai/mem/pool.h) per node.
 *
 * Each topology node gets its own pool, whose chunks are allocated through
 * the allocation hook and bound to that node (moirai/mem/numa.h: a node
 * maps to a kernel node, so on a synthetic topology the binding lands on
 * the real node the mapping names). A thread is served from the pool of
 * the node it runs on (moirai_numa_current_node(), which follows core's
 * topology and so also a synthetic one). Each thread remembers the node
 * of the CPU it last ran on and notices a move through the rseq area
 * glibc registers with the kernel, so finding the node costs one load on
 * the common path (without rseq, it asks core every time). When that node is exhausted (its
 * pool reached `node_capacity`, or its memory cannot be had), the request
 * falls back to the other nodes in distance order: nearest first, ties to
 * the lower node index (moirai_numa_nodes_by_distance()). Only when every
 * node is exhausted does allocation fail with -ENOMEM.
 *
 * A released object always goes back to the pool of the node it came
 * from, whichever thread releases it: the node is found from the object's
 * address in O(1) (every chunk sits in a block aligned to a power of two
 * with a small header at its start naming the node), so release costs one
 * load more than moirai_pool_free().
 *
 * The per-thread caching, lock-freedom, capacity semantics (objects cached
 * by other threads are not taken from them), poisoning and double-release
 * checks are those of moirai/mem/pool.h, per node. Like the object pool,
 * this pool runs no constructor or destructor.
 *
 * The pool fixes its node count and fallback order when it is created:
 * do not inject or reload a topology while one exists. If a thread is on
 * a node the pool does not know (the topology grew since), its node number
 * is taken modulo the pool's node count.
 *
 * Thread-safety: every function except create and destroy may be called
 * from any thread at any time. */
#ifndef MOIRAI_MEM_NUMA_POOL_H
#define MOIRAI_MEM_NUMA_POOL_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/mem/export.h>
#include <moirai/mem/pool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An opaque NUMA-aware pool. */
typedef struct moirai_numa_pool moirai_numa_pool_t;

/* How to build one. Fill it with moirai_numa_pool_config_init() and change
 * what you need; fields left 0 or NULL take their defaults. The fields
 * mean what the same fields of moirai_pool_config_t mean, per node. */
typedef struct moirai_numa_pool_config {
    size_t object_size; /* bytes per object (required, >= 1) */
    size_t alignment;   /* power of two up to 4096, or 0 for the default */
    /* Objects each node's pool may ever create, or 0 for no bound (a node
     * is then exhausted only when memory cannot be had). */
    size_t node_capacity;
    size_t prepopulate;   /* objects created on every node at creation */
    size_t magazine_size; /* objects per per-thread magazine (0: default) */
    size_t chunk_objects; /* objects per chunk (0: default) */
    const char *name;     /* for log messages (copied), or NULL */
} moirai_numa_pool_config_t;

/* Counters of one node. Exact when the pool is quiescent; while threads
 * use it a snapshot may mix moments (see moirai_pool_stats_t). At
 * quiescence, summed over all nodes:
 *   sum(fallback_out) == sum(fallback_in) + sum(failures)
 * and for each node pool.allocations == local + fallback_in. */
typedef struct moirai_numa_pool_node_stats {
    /* The node's own object pool: allocations it served, frees, objects
     * created (never more than node_capacity), in use, chunks, ... */
    moirai_pool_stats_t pool;
    /* Allocations this node served to callers whose first choice it was. */
    uint64_t local;
    /* Allocations this node served because the caller's first choice, a
     * different node, was exhausted. */
    uint64_t fallback_in;
    /* Allocations whose first choice was this node but that it could not
     * serve: each was then served by another node or failed. */
    uint64_t fallback_out;
    /* Allocations whose first choice was this node and that no node could
     * serve (they returned -ENOMEM). */
    uint64_t failures;
} moirai_numa_pool_node_stats_t;

/* Fills `*cfg` with defaults for objects of `object_size` bytes. Does
 * nothing when `cfg` is NULL. */
MOIRAI_MEM_API void moirai_numa_pool_config_init(moirai_numa_pool_config_t *cfg,
                                                 size_t object_size);

/* Creates a pool with one node pool per node of the current topology and
 * prepopulates each. Does not block beyond the allocator and the memory
 * policy calls. Returns 0 with `*out` set; -EINVAL for NULL arguments or
 * any value moirai_pool_create() rejects (object_size 0 or above 1 GiB, a
 * bad alignment, magazine_size above 4096, prepopulate above a set
 * node_capacity, a chunk_objects whose chunks would overflow); -ENOMEM
 * when memory cannot be had, or chunks so large (over 2^39 bytes) that
 * their aligned blocks could not be. On error `*out` is untouched and
 * nothing is leaked. */
MOIRAI_MEM_API int moirai_numa_pool_create(moirai_numa_pool_t **out,
                                           const moirai_numa_pool_config_t *cfg);

/* Destroys the pool and every node pool, returning all chunks (objects
 * still allocated included; their pages lose the node binding). The caller
 * must ensure no thread uses the pool any more. NULL does nothing. */
MOIRAI_MEM_API void moirai_numa_pool_destroy(moirai_numa_pool_t *pool);

/* Allocates one object, first from the calling thread's node, then from
 * the other nodes in distance order. Lock-free on the common path (the
 * thread's cache of its node's pool). Returns 0 with `*out` set, -EINVAL
 * for NULL arguments, or -ENOMEM when no node can serve (`*out` is then
 * untouched). */
MOIRAI_MEM_API int moirai_numa_pool_alloc(moirai_numa_pool_t *pool, void **out);

/* As moirai_numa_pool_alloc(), but treats `node` as the first choice and
 * falls back in distance order from it. Returns 0, -EINVAL for NULL
 * arguments or a node outside 0 .. moirai_numa_pool_node_count() - 1, or
 * -ENOMEM. */
MOIRAI_MEM_API int moirai_numa_pool_alloc_on(moirai_numa_pool_t *pool, int node, void **out);

/* Releases `obj`, which must have come from this pool; any thread may
 * release it, and it returns to the node it came from. NULL does nothing.
 * Never fails; lock-free. An object whose block does not name this pool
 * (a pointer from elsewhere, detectable only when its block is readable)
 * is logged and aborts the process: it is a bug, like a bad free(). */
MOIRAI_MEM_API void moirai_numa_pool_free(moirai_numa_pool_t *pool, void *obj);

/* The node whose pool `obj` (an object of this pool, allocated or not)
 * belongs to. Returns the node, or -EINVAL for NULL arguments. */
MOIRAI_MEM_API int moirai_numa_pool_node_of(const moirai_numa_pool_t *pool, const void *obj);

/* Moves the calling thread's cached objects of every node back to their
 * node's depot (moirai_pool_flush() on each node pool). NULL does
 * nothing. */
MOIRAI_MEM_API void moirai_numa_pool_flush(moirai_numa_pool_t *pool);

/* The number of nodes the pool was created with, or 0 for NULL. */
MOIRAI_MEM_API int moirai_numa_pool_node_count(const moirai_numa_pool_t *pool);

/* Fills `*out` with the counters of `node`. Takes that node pool's
 * internal lock briefly. Returns 0, or -EINVAL for NULL arguments or a
 * node out of range. */
MOIRAI_MEM_API int moirai_numa_pool_node_stats(moirai_numa_pool_t *pool, int node,
                                               moirai_numa_pool_node_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif
