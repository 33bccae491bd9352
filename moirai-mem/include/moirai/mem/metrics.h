/* The memory pools' metrics in the Prometheus text format (see
 * moirai/core/prom.h).
 *
 * An object pool (moirai_pool_t), labelled {name}:
 *
 *   moirai_pool_allocations_total       successful allocations
 *   moirai_pool_frees_total             releases
 *   moirai_pool_failures_total          allocations that failed (-ENOMEM)
 *   moirai_pool_cache_hits_total        allocations served by a thread cache
 *   moirai_pool_depot_hits_total        allocations that refilled a cache from the depot
 *   moirai_pool_fresh_total             allocations that created objects from a chunk
 *   moirai_pool_chunks_total            chunks obtained from the chunk allocator
 *   moirai_pool_objects                 gauge: objects created so far
 *   moirai_pool_in_use                  gauge: objects held by callers
 *   moirai_pool_high_water              gauge: the peak of in_use (see moirai_pool_stats_t)
 *
 * A memory pool (moirai_mempool_t): the same ten families named
 * moirai_mempool_... with one sample per size class, labelled
 * {name,class="<class size in bytes>"}, and for its large blocks, labelled
 * {name}: moirai_mempool_large_allocations_total,
 * moirai_mempool_large_frees_total, moirai_mempool_large_failures_total.
 *
 * Each value is a field of moirai_pool_stats_t or moirai_mempool_stats_t,
 * read by moirai_pool_stats() or moirai_mempool_class_stats() (exact when
 * the pool is quiescent). */
#ifndef MOIRAI_MEM_METRICS_H
#define MOIRAI_MEM_METRICS_H

#include <moirai/core/prom.h>
#include <moirai/mem/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the metrics above of the object pool `pool` (a moirai_pool_t *)
 * into `w`, labelled name="`name`". A moirai_metrics_collect_cb. Takes the
 * pool's internal lock briefly (as moirai_pool_stats()); thread-safe with
 * respect to the pool (one thread at a time per writer). Returns 0,
 * -EINVAL (`pool`, `w` or `name` NULL) or -ENOMEM; on error `w` is as it
 * was. */
MOIRAI_MEM_API int moirai_pool_metrics_collect(void *pool, moirai_prom_writer_t *w,
                                               const char *name);

/* Writes the metrics above of the memory pool `mempool` (a
 * moirai_mempool_t *) into `w`, labelled name="`name`", one sample per
 * size class and the large blocks. A moirai_metrics_collect_cb. Takes each
 * class pool's internal lock briefly; thread-safe with respect to the
 * memory pool. Returns 0, -EINVAL (`mempool`, `w` or `name` NULL) or
 * -ENOMEM; on error `w` is as it was. */
MOIRAI_MEM_API int moirai_mempool_metrics_collect(void *mempool, moirai_prom_writer_t *w,
                                                  const char *name);

#ifdef __cplusplus
}
#endif

#endif
