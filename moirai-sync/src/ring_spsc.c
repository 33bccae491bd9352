/* Bounded SPSC ring with cached cursors (the Lamport queue with the
 * "cached index" refinement used by e.g. Rigtorp's SPSCQueue and the
 * FastForward / MCRingBuffer papers).
 *
 * `write` and `read` count pushes and pops since creation (free-running,
 * so full is write - read == capacity and no slot is wasted). Each side
 * owns one cache line holding its cursor and its last view of the other
 * cursor; it reads the other line only when that view says full / empty. */
#include "rcu_internal.h"

#include <errno.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/sync/ring_spsc.h>

struct moirai_ring_spsc {
    /* Producer's line. */
    alignas(MOIRAI_FALSE_SHARING_RANGE) _Atomic size_t write;
    size_t read_cache; /* producer's view of `read` */
    /* Consumer's line. */
    alignas(MOIRAI_FALSE_SHARING_RANGE) _Atomic size_t read;
    size_t write_cache; /* consumer's view of `write` */
    /* Read-only after creation: stays shared in both caches. */
    alignas(MOIRAI_FALSE_SHARING_RANGE) size_t mask;
    /* The slots start on a line of their own, so that writing the first
     * ones never invalidates `mask` in the consumer's cache. */
    alignas(MOIRAI_FALSE_SHARING_RANGE) void *slots[];
};

int moirai_ring_spsc_create(moirai_ring_spsc_t **out, size_t capacity)
{
    if (out == NULL || capacity == 0 || capacity > MOIRAI_RING_SPSC_MAX_CAPACITY ||
        (capacity & (capacity - 1)) != 0)
        return -EINVAL;
    moirai_ring_spsc_t *r =
        moirai_aligned_alloc(MOIRAI_FALSE_SHARING_RANGE, sizeof(*r) + capacity * sizeof(void *));
    if (r == NULL)
        return -ENOMEM;
    atomic_init(&r->write, 0);
    atomic_init(&r->read, 0);
    r->read_cache = 0;
    r->write_cache = 0;
    r->mask = capacity - 1;
    *out = r;
    return 0;
}

void moirai_ring_spsc_destroy(moirai_ring_spsc_t *ring)
{
    moirai_free(ring);
}

size_t moirai_ring_spsc_capacity(const moirai_ring_spsc_t *ring)
{
    return ring->mask + 1;
}

/* Producer: free slots, refreshing the view of `read` only if `want`
 * slots do not fit in the cached view. */
static inline size_t room(moirai_ring_spsc_t *r, size_t write, size_t want)
{
    size_t cap = r->mask + 1;
    size_t free_slots = cap - (write - r->read_cache);
    if (free_slots < want) {
        /* acquire: the consumer read those slots before releasing `read`,
         * so overwriting them now cannot race with its reads. */
        r->read_cache = atomic_load_explicit(&r->read, memory_order_acquire);
        free_slots = cap - (write - r->read_cache);
    }
    return free_slots;
}

/* Consumer: available items, refreshing the view of `write` only if fewer
 * than `want` are known. */
static inline size_t avail(moirai_ring_spsc_t *r, size_t read, size_t want)
{
    size_t n = r->write_cache - read;
    if (n < want) {
        /* acquire: pairs with the producer's release of `write`, so the
         * slots below it hold the items. */
        r->write_cache = atomic_load_explicit(&r->write, memory_order_acquire);
        n = r->write_cache - read;
    }
    return n;
}

int moirai_ring_spsc_try_push(moirai_ring_spsc_t *ring, void *item)
{
    /* Relaxed: only this thread writes `write`. */
    size_t write = atomic_load_explicit(&ring->write, memory_order_relaxed);
    if (room(ring, write, 1) == 0)
        return -EAGAIN;
    ring->slots[write & ring->mask] = item;
    /* release: publishes the slot to the consumer's acquire. */
    atomic_store_explicit(&ring->write, write + 1, memory_order_release);
    return 0;
}

int moirai_ring_spsc_try_pop(moirai_ring_spsc_t *ring, void **out)
{
    /* Relaxed: only this thread writes `read`. */
    size_t read = atomic_load_explicit(&ring->read, memory_order_relaxed);
    if (avail(ring, read, 1) == 0)
        return -EAGAIN;
    *out = ring->slots[read & ring->mask];
    /* release: hands the slot back after our read of it. */
    atomic_store_explicit(&ring->read, read + 1, memory_order_release);
    return 0;
}

/* How many of `n` slots from `cursor` on lie before the end of the array:
 * a batch copies at most two contiguous runs, this one and then the rest
 * from the array's start. */
static inline size_t run_before_wrap(const moirai_ring_spsc_t *r, size_t cursor, size_t n)
{
    size_t first = r->mask + 1 - (cursor & r->mask);
    return first < n ? first : n;
}

size_t moirai_ring_spsc_push_batch(moirai_ring_spsc_t *ring, void *const *items, size_t count)
{
    size_t write = atomic_load_explicit(&ring->write, memory_order_relaxed);
    size_t n = room(ring, write, count);
    if (n > count)
        n = count;
    if (n == 0)
        return 0;
    size_t first = run_before_wrap(ring, write, n);
    memcpy(&ring->slots[write & ring->mask], items, first * sizeof(void *));
    memcpy(&ring->slots[0], items + first, (n - first) * sizeof(void *));
    /* release: publishes the slots to the consumer's acquire. */
    atomic_store_explicit(&ring->write, write + n, memory_order_release);
    return n;
}

size_t moirai_ring_spsc_pop_batch(moirai_ring_spsc_t *ring, void **out, size_t count)
{
    size_t read = atomic_load_explicit(&ring->read, memory_order_relaxed);
    size_t n = avail(ring, read, count);
    if (n > count)
        n = count;
    if (n == 0)
        return 0;
    size_t first = run_before_wrap(ring, read, n);
    memcpy(out, &ring->slots[read & ring->mask], first * sizeof(void *));
    memcpy(out + first, &ring->slots[0], (n - first) * sizeof(void *));
    /* release: hands the slots back after our reads of them. */
    atomic_store_explicit(&ring->read, read + n, memory_order_release);
    return n;
}

size_t moirai_ring_spsc_size(const moirai_ring_spsc_t *ring)
{
    moirai_ring_spsc_t *r = (moirai_ring_spsc_t *)ring;
    /* read first: write only grows, so it is >= this read. */
    size_t read = atomic_load_explicit(&r->read, memory_order_acquire);
    size_t write = atomic_load_explicit(&r->write, memory_order_acquire);
    return write - read;
}
