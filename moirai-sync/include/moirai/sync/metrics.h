/* The lock contention statistics (moirai/sync/lockstat.h) in the
 * Prometheus text format (see moirai/core/prom.h), one series per record
 * that moirai_lock_stats_foreach() visits:
 *
 *   moirai_lock_contended_total{name,lock,kind}     contended acquisitions
 *   moirai_lock_wait_seconds{name,lock,kind}        histogram of their waits
 *                                                   (log2 buckets, 1 ns to 2^31 ns)
 *   moirai_lock_wait_max_seconds{name,lock,kind}    gauge: the longest wait
 *   moirai_lock_stats_dropped_total{name}           records lost to allocation failures
 *
 * `lock` is the lock's name for a per-name sum, or "0x<address>" for an
 * unnamed lock; `kind` is mutex, rwlock_read, rwlock_write, spin or
 * ticket. The statistics are process-wide, so one registration covers
 * every lock. A moirai_lock_stats_reset() is a counter reset to a scraper. */
#ifndef MOIRAI_SYNC_METRICS_H
#define MOIRAI_SYNC_METRICS_H

#include <moirai/core/prom.h>
#include <moirai/sync/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the metrics above into `w`, labelled name="`name`". A
 * moirai_metrics_collect_cb: register it with
 * moirai_metrics_registry_add(reg, name, moirai_lock_stats_metrics_collect,
 * NULL); `unused` is ignored and may be NULL. Blocks only on the
 * statistics' internal lock, briefly, to take a snapshot; thread-safe (one
 * thread at a time per writer). Memory ordering: the counts are a snapshot
 * taken under that lock, as moirai_lock_stats_foreach() takes it. Returns
 * 0, -EINVAL (`w` or `name` NULL) or -ENOMEM; on error `w` is as it was. */
MOIRAI_SYNC_API int moirai_lock_stats_metrics_collect(void *unused, moirai_prom_writer_t *w,
                                                      const char *name);

#ifdef __cplusplus
}
#endif

#endif
