/* An unbounded lock-free MPMC FIFO queue of `void *` items.
 *
 * Any number of threads may push and pop concurrently. Items come out in
 * the order their pushes took effect; in particular the items of one
 * pushing thread come out in the order it pushed them. Items are stored
 * in array segments of 1024 that the queue allocates as it grows and
 * frees, after an RCU grace period (see moirai/sync/rcu.h), once drained:
 * one allocation per 1024 items, and no thread ever reads freed memory.
 * Memory: about 16 bytes per item in the queue plus up to two partly used
 * 16 KiB segments.
 *
 * Threads: nothing to do. A thread is registered with RCU on its first
 * push or pop and unregistered when it exits (see moirai/sync/rcu.h for
 * the one case where a foreign thread must call
 * moirai_rcu_thread_unregister() itself).
 *
 * Memory ordering: push is a release and a successful pop an acquire, so
 * everything the pushing thread wrote before moirai_queue_push() is
 * visible to the thread that pops that item.
 *
 * Progress: push and pop are lock-free (a push retries only when a pop
 * took its slot before it was written, a pop only when it took such a
 * slot). Neither blocks. */
#ifndef MOIRAI_SYNC_QUEUE_H
#define MOIRAI_SYNC_QUEUE_H

#include <stdbool.h>

#include <moirai/sync/export.h>

/* An unbounded MPMC queue (see above). Opaque; created and destroyed by the functions below. */
typedef struct moirai_queue moirai_queue_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Creates an empty queue in `*out`. Returns 0, -EINVAL if `out` is NULL, or
 * -ENOMEM (then `*out` is untouched and nothing is leaked). */
MOIRAI_SYNC_API int moirai_queue_create(moirai_queue_t **out);

/* Destroys `queue` (NULL is ignored) and the segments still in it; the items
 * themselves are the caller's. No other thread may be using the queue. */
MOIRAI_SYNC_API void moirai_queue_destroy(moirai_queue_t *queue);

/* Appends `item` (any value, NULL included). Never blocks; thread-safe.
 * Returns 0, or -ENOMEM when the push needed a new segment and it could
 * not be allocated, or this thread's first RCU registration failed (the
 * queue is then unchanged: every item accepted earlier is still in it). */
MOIRAI_SYNC_API int moirai_queue_push(moirai_queue_t *queue, void *item);

/* Removes the oldest item into `*out`. Never blocks; thread-safe. Returns
 * 0, -EAGAIN when the queue is empty (`*out` untouched), or -ENOMEM if
 * this thread's first RCU registration failed. */
MOIRAI_SYNC_API int moirai_queue_try_pop(moirai_queue_t *queue, void **out);

/* True when the queue held no item at the moment of the call (a snapshot;
 * a push in progress may make it report false while try_pop still finds
 * nothing). Never blocks; thread-safe. */
MOIRAI_SYNC_API bool moirai_queue_is_empty(moirai_queue_t *queue);

#ifdef __cplusplus
}
#endif

#endif
