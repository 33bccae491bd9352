/* Waiting on a shared-memory ring for the shared-memory backend: like the
 * ring's own blocking peek and reserve (a short yielding poll, then a
 * sleep on the ring's futex word, one liveness slice at most), but also
 * ended by a stop flag of this process, so that a link's shutdown or a
 * listener's stop wakes a reader, writer or acceptor parked in another
 * fiber or thread. The sleep itself is the ring's: a fiber parks (the
 * futex sleep runs on the scheduler's blocking pool), a thread sleeps. */
#include <errno.h>
#include <stdatomic.h>

#include <moirai/async/fiber.h>
#include <moirai/async/net.h>
#include <moirai/core/clock.h>
#include <moirai/transport/ring.h>

#include "link_shm.h"
#include "ring_internal.h"

/* Whether a look's answer ends the wait: everything but "nothing now",
 * and for a listener's accept ring also "every dialer left" unless no
 * dialer can attach any more. */
static bool peek_done(moirai_shm_ring_t *r, int rc, bool gone_idles)
{
    if (rc == -EAGAIN)
        return false;
    if (rc == -EPIPE && gone_idles)
        return moirai__shm_slots_exhausted(r);
    return true;
}

/* Seq_cst load of the stop flag: ordered after the load of the futex
 * word's value that the sleep compares against. A stopper sets the flag
 * and then bumps the word (moirai__shm_wake); if this load misses the
 * flag, the earlier load of the word also missed the bump, so the sleep
 * returns at once or is woken by it. */
static bool stopped(_Atomic uint32_t *stop)
{
    return atomic_load_explicit(stop, memory_order_seq_cst) != 0;
}

/* A fiber's sleep on its link's doorbell, at most one liveness slice:
 * parks in the runtime's reactor until the writer (or this side's
 * shutdown) writes a byte. Bytes are drained; a stale one costs one look.
 * Returns 0, or -ECANCELED when the fiber's task is cancelled. */
static int bell_wait(struct shm_bell *bell, uint64_t deadline)
{
    uint64_t until = moirai_deadline_after(bell->slice_ns != 0 ? bell->slice_ns : RING_SLICE_NS);
    if (deadline < until)
        until = deadline;
    char junk[64];
    ssize_t n = moirai_stream_read_timed(bell->io, until, junk, sizeof junk);
    if (n == -ECANCELED)
        return -ECANCELED;
    if (n <= 0 && n != -ETIMEDOUT)
        bell->broken = true; /* never expected (we hold a write end): use the futex */
    return 0;
}

int moirai__shm_wait_peek(moirai_shm_ring_t *r, _Atomic uint32_t *stop, bool gone_idles,
                          struct shm_bell *bell, uint64_t deadline, void **buf, size_t *len)
{
    struct ring_shared *sh = r->sh;
    uint64_t spin_start = 0;
    /* A fiber with a doorbell does not poll first: its yields would hold
     * the worker, and the doorbell's wake-up is the reactor wake-up a TCP
     * socket costs (measured: remote task round trips 1.02-1.34x TCP's
     * without the poll, 0.86-1.03x with it). */
    bool use_bell =
        bell != NULL && bell->io != NULL && !bell->broken && moirai_fiber_current() != NULL;
    for (int spins = 0;; spins++) {
        if (stopped(stop))
            return -ECANCELED;
        int rc = moirai_shm_ring_try_peek(r, buf, len);
        if (peek_done(r, rc, gone_idles))
            return rc;
        if (!use_bell && ring_keep_spinning(spins, &spin_start))
            continue;
        if (moirai_deadline_expired(deadline))
            return -ETIMEDOUT;
        /* The ring's protocol (ring_consume.c): announce the sleep, then
         * look once more; a commit in between either shows up in this
         * look or finds the flag and bumps data_seq. */
        uint32_t seq = atomic_load_explicit(&sh->data_seq, memory_order_acquire);
        (void)atomic_exchange_explicit(&sh->cons_waiting, 1, memory_order_seq_cst);
        rc = moirai_shm_ring_try_peek(r, buf, len);
        if (peek_done(r, rc, gone_idles))
            return rc;
        if (stopped(stop))
            return -ECANCELED;
        int w;
        if (use_bell && !bell->broken)
            w = bell_wait(bell, deadline);
        else
            w = moirai__ring_wait_futex(&sh->data_seq, seq, deadline);
        if (w != 0)
            return -ECANCELED;
        spins = -1; /* poll briefly again after each sleep */
    }
}

int moirai__shm_wait_reserve(moirai_shm_ring_t *r, _Atomic uint32_t *stop, uint64_t deadline,
                             size_t len, void **buf)
{
    struct ring_shared *sh = r->sh;
    uint64_t spin_start = 0;
    for (int spins = 0;; spins++) {
        if (stopped(stop))
            return -ECANCELED;
        int rc = moirai_shm_ring_try_reserve(r, len, buf);
        if (rc != -EAGAIN)
            return rc;
        if (ring_keep_spinning(spins, &spin_start))
            continue;
        if (moirai_deadline_expired(deadline))
            return -ETIMEDOUT;
        /* The ring's protocol (ring_produce.c), on the room side. */
        uint32_t seq = atomic_load_explicit(&sh->space_seq, memory_order_acquire);
        (void)atomic_exchange_explicit(&sh->prod_waiting, 1, memory_order_seq_cst);
        rc = moirai_shm_ring_try_reserve(r, len, buf);
        if (rc != -EAGAIN)
            return rc;
        if (stopped(stop))
            return -ECANCELED;
        if (moirai__ring_wait_futex(&sh->space_seq, seq, deadline) != 0)
            return -ECANCELED;
        spins = -1;
    }
}

void moirai__shm_wake(moirai_shm_ring_t *r)
{
    struct ring_shared *sh = r->sh;
    /* Seq_cst bumps, after the caller's store of its stop flag (see
     * stopped()). Both words: a consumer sleeps on data_seq, a producer
     * on space_seq; a bump nobody sleeps on only costs a look. */
    atomic_fetch_add_explicit(&sh->data_seq, 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(&sh->space_seq, 1, memory_order_seq_cst);
    moirai__ring_wake_futex(&sh->data_seq);
    moirai__ring_wake_futex(&sh->space_seq);
}

void moirai__shm_mark_gone(moirai_shm_ring_t *r)
{
    /* As moirai_shm_ring_detach() does, minus the unmapping: a release,
     * so everything this side committed or released before happens
     * before the peer's view of DETACHED (it drains committed messages
     * first), and seq_cst like the detach. The slot pointer and header
     * are fixed at attach, so another thread may be in a call on the
     * handle meanwhile; that call does not read its own slot. */
    atomic_store_explicit(&r->slot->state, RING_SLOT_DETACHED, memory_order_seq_cst);
    moirai__shm_wake(r);
}

bool moirai__shm_slots_exhausted(moirai_shm_ring_t *r)
{
    for (uint32_t i = 0; i < r->max_producers; i++) {
        /* Relaxed: a hint for when to renew the ring; a slot claimed a
         * moment later is seen at the next look. */
        if (atomic_load_explicit(&r->sh->producers[i].state, memory_order_relaxed) ==
            RING_SLOT_FREE)
            return false;
    }
    return true;
}
