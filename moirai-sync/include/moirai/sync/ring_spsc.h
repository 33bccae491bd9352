/* A bounded single-producer single-consumer ring of `void *` items.
 *
 * Exactly one thread pushes and exactly one thread pops at any time (the
 * roles may pass to other threads if the hand-over itself synchronizes,
 * e.g. through a mutex or a thread join). The capacity, fixed at creation,
 * is a power of two.
 *
 * Each side keeps its cursor on its own cache line together with a cached
 * copy of the other side's cursor, and re-reads the other side's line only
 * when the cached copy says the ring is full (producer) or empty
 * (consumer). A push or pop therefore costs one store to the side's own
 * line, and the batch functions move many items for one such store.
 *
 * Non-blocking only: a blocking variant would have to check for a waiter
 * after every publish, which needs a full fence per item and would cost
 * this ring its advantage. Use the MPMC ring (moirai/sync/ring_mpmc.h)
 * when a side must sleep.
 *
 * Memory ordering: a push is a release and the pop that takes its item an
 * acquire: what the producer wrote before pushing is visible to the
 * consumer after popping. */
#ifndef MOIRAI_SYNC_RING_SPSC_H
#define MOIRAI_SYNC_RING_SPSC_H

#include <stddef.h>

#include <moirai/sync/export.h>

/* A bounded SPSC ring (see above). Opaque; created and destroyed by the functions below. */
typedef struct moirai_ring_spsc moirai_ring_spsc_t;

/* Largest capacity moirai_ring_spsc_create() accepts. */
#define MOIRAI_RING_SPSC_MAX_CAPACITY ((size_t)1 << 32)

#ifdef __cplusplus
extern "C" {
#endif

/* Creates an empty ring of `capacity` items in `*out`. Returns 0, -EINVAL
 * if `out` is NULL or `capacity` is not a power of two between 1 and
 * MOIRAI_RING_SPSC_MAX_CAPACITY, or -ENOMEM. */
MOIRAI_SYNC_API int moirai_ring_spsc_create(moirai_ring_spsc_t **out, size_t capacity);

/* Destroys `ring` (NULL is ignored). Items still in it are the caller's.
 * Neither side may be using the ring. */
MOIRAI_SYNC_API void moirai_ring_spsc_destroy(moirai_ring_spsc_t *ring);

/* The capacity given at creation. Any thread. */
MOIRAI_SYNC_API size_t moirai_ring_spsc_capacity(const moirai_ring_spsc_t *ring);

/* Producer only. Pushes `item`. Never blocks. Returns 0, or -EAGAIN when
 * the ring is full. */
MOIRAI_SYNC_API int moirai_ring_spsc_try_push(moirai_ring_spsc_t *ring, void *item);

/* Consumer only. Pops the oldest item into `*out`. Never blocks. Returns
 * 0, or -EAGAIN when the ring is empty (`*out` untouched). */
MOIRAI_SYNC_API int moirai_ring_spsc_try_pop(moirai_ring_spsc_t *ring, void **out);

/* Producer only. Pushes as many of items[0..count) as fit, in order, and
 * publishes them together. Never blocks. Returns how many were pushed
 * (0 when the ring is full or `count` is 0). */
MOIRAI_SYNC_API size_t moirai_ring_spsc_push_batch(moirai_ring_spsc_t *ring, void *const *items,
                                                   size_t count);

/* Consumer only. Pops up to `count` items, oldest first, into out[0..).
 * Never blocks. Returns how many were popped (0 when the ring is empty). */
MOIRAI_SYNC_API size_t moirai_ring_spsc_pop_batch(moirai_ring_spsc_t *ring, void **out,
                                                  size_t count);

/* The number of items in the ring at some instant during the call. Any
 * thread; exact when called by the producer or the consumer while the
 * other side is idle. */
MOIRAI_SYNC_API size_t moirai_ring_spsc_size(const moirai_ring_spsc_t *ring);

#ifdef __cplusplus
}
#endif

#endif
