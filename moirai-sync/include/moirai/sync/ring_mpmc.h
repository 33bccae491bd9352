/* A bounded MPMC ring of `void *` items (Vyukov's array queue).
 *
 * Any number of producers and consumers. The capacity, fixed at creation,
 * is a power of two. Each cell carries a sequence number that says whose
 * turn it is, so a push or a pop is one CAS on its side's cursor plus a
 * store to the cell; producers and consumers never touch each other's
 * cursor on the fast path.
 *
 * Order: items come out in the order their pushes claimed a cell; the
 * items of one producer therefore come out in the order it pushed them.
 *
 * Blocking: the try_ functions never block. push/pop (and their _timed
 * variants) wait through the parking layer (moirai/core/park.h), so from a
 * fiber they park the fiber, not the thread. A waiting side announces
 * itself in a counter; the other side checks it with one load that hits a
 * line nobody writes while nobody waits, so with no waiter the fast path
 * makes no system call.
 *
 * Closing: moirai_ring_mpmc_close() makes every later push fail with
 * -EPIPE and wakes all waiters; pops keep returning the items already in
 * the ring and return -EPIPE once it is drained. Nothing accepted before
 * the close is lost.
 *
 * Memory ordering: a push is a release and the pop that takes its item an
 * acquire: what the producer wrote before pushing is visible to the
 * consumer after popping. */
#ifndef MOIRAI_SYNC_RING_MPMC_H
#define MOIRAI_SYNC_RING_MPMC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/core/clock.h>
#include <moirai/sync/export.h>

/* A bounded MPMC ring (see above). Opaque; created and destroyed by the functions below. */
typedef struct moirai_ring_mpmc moirai_ring_mpmc_t;

/* Largest capacity moirai_ring_mpmc_create() accepts. */
#define MOIRAI_RING_MPMC_MAX_CAPACITY ((size_t)1 << 32)

#ifdef __cplusplus
extern "C" {
#endif

/* Creates an empty ring of `capacity` items in `*out`. Returns 0, -EINVAL
 * if `out` is NULL or `capacity` is not a power of two between 2 and
 * MOIRAI_RING_MPMC_MAX_CAPACITY, or -ENOMEM (nothing is leaked). */
MOIRAI_SYNC_API int moirai_ring_mpmc_create(moirai_ring_mpmc_t **out, size_t capacity);

/* Destroys `ring` (NULL is ignored). Items still in it are the caller's.
 * No thread may be using or waiting on the ring. */
MOIRAI_SYNC_API void moirai_ring_mpmc_destroy(moirai_ring_mpmc_t *ring);

/* The capacity given at creation. Thread-safe. */
MOIRAI_SYNC_API size_t moirai_ring_mpmc_capacity(const moirai_ring_mpmc_t *ring);

/* Pushes `item` if there is room. Never blocks; thread-safe. Returns 0,
 * -EAGAIN when the ring is full (or a consumer has claimed the oldest cell
 * but not yet emptied it), or -EPIPE once the ring is closed. */
MOIRAI_SYNC_API int moirai_ring_mpmc_try_push(moirai_ring_mpmc_t *ring, void *item);

/* Pops the oldest item into `*out` if there is one. Never blocks;
 * thread-safe. Returns 0, -EAGAIN when the ring is empty (or the oldest
 * item is claimed by a producer that has not finished writing it), or
 * -EPIPE when the ring is closed and empty. */
MOIRAI_SYNC_API int moirai_ring_mpmc_try_pop(moirai_ring_mpmc_t *ring, void **out);

/* Pushes `item`, waiting while the ring is full: spins briefly, then parks.
 * Blocks. Returns 0, or -EPIPE if the ring is or becomes closed (the item
 * was then not pushed). */
MOIRAI_SYNC_API int moirai_ring_mpmc_push(moirai_ring_mpmc_t *ring, void *item);

/* Pops into `*out`, waiting while the ring is empty. Blocks. Returns 0, or
 * -EPIPE once the ring is closed and drained. */
MOIRAI_SYNC_API int moirai_ring_mpmc_pop(moirai_ring_mpmc_t *ring, void **out);

/* As moirai_ring_mpmc_push(), giving up at `deadline` (absolute,
 * moirai_clock_now_ns() scale; MOIRAI_DEADLINE_NEVER for none) with
 * -ETIMEDOUT. A deadline in the past makes it a try that reports
 * -ETIMEDOUT instead of -EAGAIN. */
MOIRAI_SYNC_API int moirai_ring_mpmc_push_timed(moirai_ring_mpmc_t *ring, void *item,
                                                uint64_t deadline);

/* As moirai_ring_mpmc_pop(), giving up at `deadline` with -ETIMEDOUT. */
MOIRAI_SYNC_API int moirai_ring_mpmc_pop_timed(moirai_ring_mpmc_t *ring, void **out,
                                               uint64_t deadline);

/* Closes the ring (idempotent) and wakes every waiter. Never blocks;
 * thread-safe. A push that returned 0 before the close took effect is
 * delivered; every push after it returns -EPIPE. */
MOIRAI_SYNC_API void moirai_ring_mpmc_close(moirai_ring_mpmc_t *ring);

/* True once moirai_ring_mpmc_close() has been called. Thread-safe. */
MOIRAI_SYNC_API bool moirai_ring_mpmc_is_closed(const moirai_ring_mpmc_t *ring);

/* The number of items in the ring at some instant during the call,
 * counting pushes and pops in progress (so it may briefly exceed what
 * try_pop can get). Thread-safe; for monitoring, not for control. */
MOIRAI_SYNC_API size_t moirai_ring_mpmc_size(const moirai_ring_mpmc_t *ring);

#ifdef __cplusplus
}
#endif

#endif
