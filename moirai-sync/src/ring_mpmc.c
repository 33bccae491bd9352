/* Bounded MPMC ring after Dmitry Vyukov's "Bounded MPMC queue"
 * (1024cores.net, 2010).
 *
 * Cell i of a ring with capacity C holds a sequence number. For the push
 * that claims position p (cell p mod C) the cell is free when seq == p; the
 * producer claims p with a CAS on the `enq` cursor, writes the item and
 * sets seq = p + 1 (release). The consumer that claims p with a CAS on
 * `deq` waits for seq == p + 1, reads the item and sets seq = p + C
 * (release), handing the cell to the push of round p + C. Producers and
 * consumers share only the cells, never a cursor.
 *
 * Closing sets the top bit of `enq`, so the set of claimed positions is
 * frozen by the same atomic operation that rejects later pushes: a
 * consumer that finds the ring empty and `enq` closed at its position
 * knows no item can ever arrive (-EPIPE), and no push that succeeded is
 * lost.
 *
 * Waiting. A blocked consumer waits for "enq moved past deq", a blocked
 * producer for "deq moved", and each side's fast path checks whether the
 * other side has waiters only after its cursor CAS. The CAS and that
 * check are seq_cst, as are the waiter's registration and its re-reading
 * of both cursors, which gives the Dekker argument: either the waiter sees
 * the cursor move (and does not sleep) or the fast path sees the waiter
 * (and wakes it). On x86 the seq_cst CAS is the same lock cmpxchg and the
 * seq_cst load a plain mov, so the fast path pays nothing for it. A waiter
 * that sees a position claimed but not yet written (the other side is
 * between its CAS and its store) cannot sleep on that, so it polls with a
 * short timeout; that happens only when a thread is descheduled inside
 * those few instructions. */
#include "rcu_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/park.h>
#include <moirai/core/spin.h>
#include <moirai/sync/ring_mpmc.h>

/* Top bit of `enq`: the ring is closed. */
#define CLOSED ((SIZE_MAX >> 1) + 1)

/* Retries of the try_ operation before a blocking call registers as a
 * waiter (moirai_park() spins a little more before sleeping). */
#define SPIN_TRIES 64

/* How long a waiter sleeps when the other side is between its CAS and its
 * store (see above): long enough not to burn the CPU the descheduled
 * thread needs, short enough that a missed wake-up costs little. */
#define INFLIGHT_POLL_NS (100 * MOIRAI_NS_PER_US)

typedef struct cell {
    _Atomic size_t seq;
    void *data; /* plain: ordered by seq's release/acquire */
} cell_t;

/* One side's waiters: how many, and the word they park on, which the
 * other side bumps before unparking so that a waiter that has not slept
 * yet does not sleep. Its own line: written only when someone waits. */
typedef struct waiters {
    alignas(MOIRAI_FALSE_SHARING_RANGE) _Atomic uint32_t count;
    _Atomic uint32_t epoch;
} waiters_t;

struct moirai_ring_mpmc {
    alignas(MOIRAI_FALSE_SHARING_RANGE) _Atomic size_t enq; /* next push position | CLOSED */
    alignas(MOIRAI_FALSE_SHARING_RANGE) _Atomic size_t deq; /* next pop position */
    waiters_t consumers;                                    /* waiting for an item */
    waiters_t producers;                                    /* waiting for room */
    alignas(MOIRAI_FALSE_SHARING_RANGE) size_t mask;        /* read-only: shared by all */
    /* On a line of their own, so that using the first cells never
     * invalidates `mask`. */
    alignas(MOIRAI_FALSE_SHARING_RANGE) cell_t cells[];
};

int moirai_ring_mpmc_create(moirai_ring_mpmc_t **out, size_t capacity)
{
    if (out == NULL || capacity < 2 || capacity > MOIRAI_RING_MPMC_MAX_CAPACITY ||
        (capacity & (capacity - 1)) != 0)
        return -EINVAL;
    moirai_ring_mpmc_t *r =
        moirai_aligned_alloc(MOIRAI_FALSE_SHARING_RANGE, sizeof(*r) + capacity * sizeof(cell_t));
    if (r == NULL)
        return -ENOMEM;
    atomic_init(&r->enq, 0);
    atomic_init(&r->deq, 0);
    atomic_init(&r->consumers.count, 0);
    atomic_init(&r->consumers.epoch, 0);
    atomic_init(&r->producers.count, 0);
    atomic_init(&r->producers.epoch, 0);
    r->mask = capacity - 1;
    for (size_t i = 0; i < capacity; i++) {
        atomic_init(&r->cells[i].seq, i);
        r->cells[i].data = NULL;
    }
    *out = r;
    return 0;
}

void moirai_ring_mpmc_destroy(moirai_ring_mpmc_t *ring)
{
    moirai_free(ring);
}

size_t moirai_ring_mpmc_capacity(const moirai_ring_mpmc_t *ring)
{
    return ring->mask + 1;
}

static void wake(waiters_t *w)
{
    /* release: pairs with the waiter's acquire load of the epoch (it must
     * not be reordered before the cell store this wake-up announces). */
    atomic_fetch_add_explicit(&w->epoch, 1, memory_order_release);
    moirai_unpark_one(&w->epoch);
}

int moirai_ring_mpmc_try_push(moirai_ring_mpmc_t *ring, void *item)
{
    size_t pos = atomic_load_explicit(&ring->enq, memory_order_relaxed);
    cell_t *cell;
    for (;;) {
        if (pos & CLOSED)
            return -EPIPE;
        cell = &ring->cells[pos & ring->mask];
        /* acquire: pairs with the consumer's release that emptied the
         * cell, so our write of data comes after its read. */
        size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)(seq - pos);
        if (dif == 0) {
            /* seq_cst: one half of the waiter handshake (top of file).
             * Relaxed on failure: we only re-read the cursor. */
            if (atomic_compare_exchange_weak_explicit(&ring->enq, &pos, pos + 1,
                                                      memory_order_seq_cst, memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return -EAGAIN; /* the cell still holds the item of round pos - C */
        } else {
            pos = atomic_load_explicit(&ring->enq, memory_order_relaxed);
        }
    }
    cell->data = item;
#ifdef MOIRAI_MUTANT_RELAXED_RING_PUBLISH
    /* Mutant: publish without release; a consumer may read data unwritten. */
    atomic_store_explicit(&cell->seq, pos + 1, memory_order_relaxed);
#else
    /* release: the consumer that acquires seq == pos + 1 sees data. */
    atomic_store_explicit(&cell->seq, pos + 1, memory_order_release);
#endif
    if (atomic_load_explicit(&ring->consumers.count, memory_order_seq_cst) != 0)
        wake(&ring->consumers);
    return 0;
}

int moirai_ring_mpmc_try_pop(moirai_ring_mpmc_t *ring, void **out)
{
    size_t pos = atomic_load_explicit(&ring->deq, memory_order_relaxed);
    cell_t *cell;
    for (;;) {
        cell = &ring->cells[pos & ring->mask];
        /* acquire: pairs with the producer's release of seq = pos + 1. */
        size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)(seq - (pos + 1));
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&ring->deq, &pos, pos + 1,
                                                      memory_order_seq_cst, memory_order_relaxed))
                break;
        } else if (dif < 0) {
            /* Nothing published at pos. Relaxed: once closed, enq never
             * changes again, so reading it closed at pos is final. */
            size_t enq = atomic_load_explicit(&ring->enq, memory_order_relaxed);
            if ((enq & CLOSED) && (enq & ~CLOSED) == pos)
                return -EPIPE;
            return -EAGAIN;
        } else {
            pos = atomic_load_explicit(&ring->deq, memory_order_relaxed);
        }
    }
    *out = cell->data;
    /* release: the producer of round pos + C acquires this and only then
     * overwrites data. */
    atomic_store_explicit(&cell->seq, pos + ring->mask + 1, memory_order_release);
    if (atomic_load_explicit(&ring->producers.count, memory_order_seq_cst) != 0)
        wake(&ring->producers);
    return 0;
}

/* Registers on `w`, re-reads both cursors and sleeps if the ring is still
 * full (`for_room`) or empty. Returns 0 to make the caller retry, or
 * -ETIMEDOUT once `deadline` has passed. */
static int wait_on(moirai_ring_mpmc_t *ring, waiters_t *w, bool for_room, uint64_t deadline)
{
    /* Read the epoch before registering: any wake-up aimed at us bumps it
     * afterwards, which makes moirai_park() return at once. acquire:
     * pairs with close()'s release bump. */
    uint32_t epoch = atomic_load_explicit(&w->epoch, memory_order_acquire);
    atomic_fetch_add_explicit(&w->count, 1, memory_order_seq_cst);
    size_t enq = atomic_load_explicit(&ring->enq, memory_order_seq_cst);
    size_t deq = atomic_load_explicit(&ring->deq, memory_order_seq_cst);
    size_t claimed = enq & ~CLOSED;
    uint64_t until = deadline;
    /* The position whose cell we wait for, and the seq that means "ready". */
    size_t pos = for_room ? claimed : deq;
    size_t ready = for_room ? claimed : deq + 1;
    bool idle = for_room ? claimed - deq >= ring->mask + 1 : claimed == deq;
    if (enq & CLOSED) {
        /* The try_ call now fails with -EPIPE, unless a consumer still
         * has an item in flight to collect. */
        if (for_room || idle) {
            atomic_fetch_sub_explicit(&w->count, 1, memory_order_relaxed);
            return 0;
        }
        idle = false;
    }
    if (!idle) {
        size_t seq = atomic_load_explicit(&ring->cells[pos & ring->mask].seq, memory_order_acquire);
        if ((intptr_t)(seq - ready) >= 0) {
            /* Ready, or already taken by another thread: retry now. */
            atomic_fetch_sub_explicit(&w->count, 1, memory_order_relaxed);
            return 0;
        }
        /* Claimed by the other side but not written yet, and its wake-up
         * may miss us (top of file): poll rather than spin on a possibly
         * descheduled thread. */
        uint64_t poll = moirai_deadline_after(INFLIGHT_POLL_NS);
        if (poll < until)
            until = poll;
    }
    int rc = moirai_park(&w->epoch, epoch, until);
    /* Relaxed: an over-count only costs the other side a spare wake. */
    atomic_fetch_sub_explicit(&w->count, 1, memory_order_relaxed);
    if (rc == -ETIMEDOUT && until != deadline)
        rc = 0;
    return rc;
}

int moirai_ring_mpmc_push_timed(moirai_ring_mpmc_t *ring, void *item, uint64_t deadline)
{
    for (;;) {
        int rc = moirai_ring_mpmc_try_push(ring, item);
        for (int i = 0; rc == -EAGAIN && i < SPIN_TRIES; i++) {
            moirai_cpu_relax();
            rc = moirai_ring_mpmc_try_push(ring, item);
        }
        if (rc != -EAGAIN)
            return rc;
        if (wait_on(ring, &ring->producers, true, deadline) == -ETIMEDOUT) {
            rc = moirai_ring_mpmc_try_push(ring, item);
            return rc == -EAGAIN ? -ETIMEDOUT : rc;
        }
    }
}

int moirai_ring_mpmc_pop_timed(moirai_ring_mpmc_t *ring, void **out, uint64_t deadline)
{
    for (;;) {
        int rc = moirai_ring_mpmc_try_pop(ring, out);
        for (int i = 0; rc == -EAGAIN && i < SPIN_TRIES; i++) {
            moirai_cpu_relax();
            rc = moirai_ring_mpmc_try_pop(ring, out);
        }
        if (rc != -EAGAIN)
            return rc;
        if (wait_on(ring, &ring->consumers, false, deadline) == -ETIMEDOUT) {
            rc = moirai_ring_mpmc_try_pop(ring, out);
            return rc == -EAGAIN ? -ETIMEDOUT : rc;
        }
    }
}

int moirai_ring_mpmc_push(moirai_ring_mpmc_t *ring, void *item)
{
    return moirai_ring_mpmc_push_timed(ring, item, MOIRAI_DEADLINE_NEVER);
}

int moirai_ring_mpmc_pop(moirai_ring_mpmc_t *ring, void **out)
{
    return moirai_ring_mpmc_pop_timed(ring, out, MOIRAI_DEADLINE_NEVER);
}

void moirai_ring_mpmc_close(moirai_ring_mpmc_t *ring)
{
    /* seq_cst: a waiter that re-reads enq after registering either sees
     * CLOSED or has its epoch bumped below. */
    size_t prev = atomic_fetch_or_explicit(&ring->enq, CLOSED, memory_order_seq_cst);
    if (prev & CLOSED)
        return;
    atomic_fetch_add_explicit(&ring->consumers.epoch, 1, memory_order_release);
    atomic_fetch_add_explicit(&ring->producers.epoch, 1, memory_order_release);
    moirai_unpark_all(&ring->consumers.epoch);
    moirai_unpark_all(&ring->producers.epoch);
}

bool moirai_ring_mpmc_is_closed(const moirai_ring_mpmc_t *ring)
{
    return (atomic_load_explicit(&((moirai_ring_mpmc_t *)ring)->enq, memory_order_acquire) &
            CLOSED) != 0;
}

size_t moirai_ring_mpmc_size(const moirai_ring_mpmc_t *ring)
{
    moirai_ring_mpmc_t *r = (moirai_ring_mpmc_t *)ring;
    /* deq first: enq only grows, so enq read later is >= this deq. */
    size_t deq = atomic_load_explicit(&r->deq, memory_order_acquire);
    size_t enq = atomic_load_explicit(&r->enq, memory_order_acquire) & ~CLOSED;
    return enq - deq;
}
