/* The transports' metrics in the Prometheus text format (see
 * moirai/core/prom.h).
 *
 * A channel (moirai_chan_t), labelled {name}, from moirai_chan_stats():
 *
 *   moirai_chan_sent_total            elements accepted by sends
 *   moirai_chan_received_total        elements returned by receives
 *   moirai_chan_sent_bytes_total      sent times the element size
 *   moirai_chan_received_bytes_total  received times the element size
 *   moirai_chan_blocked_sends_total   sends that had to wait
 *   moirai_chan_blocked_recvs_total   receives that had to wait
 *   moirai_chan_len                   gauge: elements buffered now
 *
 * A shared-memory ring handle (moirai_shm_ring_t), labelled
 * {name,role="producer"|"consumer"}, from moirai_shm_ring_stats() (the
 * counters of this process's handle only):
 *
 *   moirai_shm_ring_messages_total    committed (producer) or released (consumer)
 *   moirai_shm_ring_bytes_total       payload bytes of those messages
 *   moirai_shm_ring_blocked_total     reserves or peeks that found no room or no message
 *   moirai_shm_ring_sleeps_total      futex waits
 *   moirai_shm_ring_wakeups_total     futex wakes issued to the peers
 *   moirai_shm_ring_size_bytes        gauge: the data region's size
 *
 * A batcher (moirai_batch_t), labelled {name}, from moirai_batch_stats():
 *
 *   moirai_batch_messages_total          messages accepted by send
 *   moirai_batch_bytes_total             their payload bytes
 *   moirai_batch_batches_total           batches the sink took
 *   moirai_batch_sent_messages_total     messages in those batches
 *   moirai_batch_flushes_total{reason}   batches by why they went out:
 *                                        reason="idle", "size", "deadline", "explicit"
 *   moirai_batch_sink_errors_total       sink calls that failed
 *   moirai_batch_max_batch_messages      gauge: the largest batch
 *   moirai_batch_max_wait_seconds        gauge: the longest a message waited
 *   moirai_batch_size_messages           histogram of messages per batch, with
 *                                        le = 1, 3, 7, ..., 32767 (bucket i of
 *                                        moirai_batch_stats_t.hist holds
 *                                        [2^i, 2^(i+1)) messages) and +Inf */
#ifndef MOIRAI_TRANSPORT_METRICS_H
#define MOIRAI_TRANSPORT_METRICS_H

#include <moirai/core/prom.h>
#include <moirai/transport/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the metrics above of the channel `chan` (a moirai_chan_t *) into
 * `w`, labelled name="`name`". A moirai_metrics_collect_cb. Waits only for
 * the channel's short internal lock; thread-safe with respect to the
 * channel (one thread at a time per writer). Returns 0, -EINVAL (`chan`,
 * `w` or `name` NULL) or -ENOMEM; on error `w` is as it was. */
MOIRAI_TRANSPORT_API int moirai_chan_metrics_collect(void *chan, moirai_prom_writer_t *w,
                                                     const char *name);

/* Writes the metrics above of the ring handle `ring` (a
 * moirai_shm_ring_t *) into `w`, labelled name="`name`" and its role. A
 * moirai_metrics_collect_cb. Never blocks. Not thread-safe with respect
 * to the handle: its counters are plain fields of the handle, read as
 * moirai_shm_ring_stats() reads them, so call it on the thread that uses
 * the handle or while no call on the handle is in flight. Returns 0,
 * -EINVAL (`ring`, `w` or `name` NULL) or -ENOMEM; on error `w` is as it
 * was. */
MOIRAI_TRANSPORT_API int moirai_shm_ring_metrics_collect(void *ring, moirai_prom_writer_t *w,
                                                         const char *name);

/* Writes the metrics above of the batcher `batch` (a moirai_batch_t *)
 * into `w`, labelled name="`name`". A moirai_metrics_collect_cb. Takes
 * the batcher's lock briefly; thread-safe with respect to the batcher.
 * Returns 0, -EINVAL (`batch`, `w` or `name` NULL) or -ENOMEM; on error
 * `w` is as it was. */
MOIRAI_TRANSPORT_API int moirai_batch_metrics_collect(void *batch, moirai_prom_writer_t *w,
                                                      const char *name);

#ifdef __cplusplus
}
#endif

#endif
