/* The consumer side of a shared-memory ring: peek at the oldest message
 * in place, release it, wait for one. The producers are not trusted:
 * every index and record header read from the shared pages is copied to
 * a local once and checked there (aligned, within the committed or
 * reserved room, within the data region, a known tag) before anything is
 * read through it; a failed check is -EPROTO and leaves the handle
 * broken, never an access outside the mapping. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include <moirai/core/clock.h>
#include <moirai/transport/ring.h>

#include "ring_internal.h"

/* The producers' tail, read once and checked against the consumer's own
 * head: at most one ring ahead, never behind, 8-byte aligned. Seq_cst:
 * the last look before a sleep is ordered after the store of
 * cons_waiting (see peek); it is also the acquire that pairs with the
 * producer's publish. */
static int load_tail(moirai_shm_ring_t *r, uint64_t *tail)
{
    uint64_t t = atomic_load_explicit(&r->sh->tail, memory_order_seq_cst);
    if (t - r->pos > r->size || (t & 7u) != 0)
        return -EPROTO; /* also catches t < pos: the difference wraps */
    *tail = t;
    return 0;
}

/* Gives the record at the head back to the producers: zeroes it on MPSC
 * rings (their "not yet committed" is a zero header, so released room
 * must read as zeros), then publishes the new head and wakes producers
 * that sleep for room. */
static void give_back(moirai_shm_ring_t *r, uint64_t rec)
{
    struct ring_shared *sh = r->sh;
    uint64_t off = r->pos & r->mask;
    if (r->mpsc) {
        /* The header word is atomic for the producers' and this side's
         * atomic accesses; the rest is payload nobody reads now. */
        atomic_store_explicit((_Atomic uint64_t *)(r->data + off), 0, memory_order_relaxed);
        memset(r->data + off + RING_REC_HDR, 0, rec - RING_REC_HDR);
    }
    r->pos += rec;
    /* Release: the reads and the zeroing of the record happen before a
     * producer that sees this head writes into the room. Seq_cst: ordered
     * before the look at prod_waiting, paired with the producer's seq_cst
     * store of it before its last look. */
    (void)atomic_exchange_explicit(&sh->head, r->pos, memory_order_seq_cst);
    if (atomic_load_explicit(&sh->prod_waiting, memory_order_seq_cst) != 0 &&
        atomic_exchange_explicit(&sh->prod_waiting, 0, memory_order_relaxed) != 0) {
        atomic_fetch_add_explicit(&sh->space_seq, 1, memory_order_release);
        moirai__ring_wake_futex(&sh->space_seq);
        r->stats.wakeups++;
    }
}

/* One look for a message. 0: it is pending (r->pend_*). -EAGAIN: none
 * committed at the head now. -EPROTO: a producer wrote garbage. Passes
 * over skip records. */
static int try_take(moirai_shm_ring_t *r)
{
    for (;;) {
        uint64_t head = r->pos;
        uint64_t off = head & r->mask;
        uint64_t contig = r->size - off;
        uint64_t avail;
        uint64_t w;
        if (!r->mpsc) {
            /* The cached tail is a lower bound of the real one. */
            if (r->other == head) {
                int rc = load_tail(r, &r->other);
                if (rc != 0)
                    return rc;
                if (r->other == head)
                    return -EAGAIN;
            }
            avail = r->other - head;
            /* Relaxed: the tail's acquire (load_tail) ordered the
             * producer's header and payload before this read. */
            w = atomic_load_explicit((_Atomic uint64_t *)(r->data + off), memory_order_relaxed);
        } else {
            /* Seq_cst: an acquire that pairs with the commit, and the
             * last look before a sleep (see peek). */
            w = atomic_load_explicit((_Atomic uint64_t *)(r->data + off), memory_order_seq_cst);
            if (w == 0)
                return -EAGAIN;
            uint64_t tail;
            int rc = load_tail(r, &tail);
            if (rc != 0)
                return rc;
            avail = tail - head;
        }
        uint32_t tag = (uint32_t)(w >> 32);
        uint64_t len = (uint32_t)w;
        uint64_t rec = ring_rec_size(len);
        /* The record must lie in the room the producers own and must not
         * wrap past the end of the data region. */
        if (rec > contig || rec > avail || (tag != RING_TAG_DATA && tag != RING_TAG_SKIP))
            return -EPROTO;
        if (tag == RING_TAG_SKIP) {
            give_back(r, rec);
            continue;
        }
        r->pend_pos = head;
        r->pend_rec = rec;
        r->pend_len = (size_t)len;
        r->pending = true;
        return 0;
    }
}

/* Why nothing more will come, or 0 while a producer may still send:
 * -EPIPE once every producer that attached detached; -ECONNRESET when a
 * producer died (SPSC), or on an MPSC ring when one died and its
 * reservation blocks the head, or when all are gone and one died. */
static int producers_gone(moirai_shm_ring_t *r)
{
    bool alive = false, dead = false, seen = false;
    bool probe = moirai__ring_should_probe(r);
    for (uint32_t i = 0; i < r->max_producers; i++) {
        switch (moirai__ring_peer(&r->sh->producers[i], &r->watch[i], probe)) {
        case RING_PEER_ABSENT:
            break;
        case RING_PEER_ALIVE:
            alive = seen = true;
            break;
        case RING_PEER_GONE:
            seen = true;
            break;
        case RING_PEER_DEAD:
            dead = seen = true;
            break;
        case RING_PEER_BAD:
            return -EPROTO;
        }
    }
    if (!r->mpsc)
        return dead ? -ECONNRESET : (seen && !alive) ? -EPIPE : 0;
    if (dead) {
        uint64_t tail;
        int rc = load_tail(r, &tail);
        if (rc != 0)
            return rc;
        /* Reserved room at the head that nobody committed: it may be the
         * dead producer's, and then it never will be. */
        if (tail != r->pos || !alive)
            return -ECONNRESET;
    }
    return (seen && !alive) ? -EPIPE : 0;
}

/* After a failed look: is there a reason to stop? Looks once more after
 * learning that producers are gone, since a producer may commit and then
 * exit between the first look and the liveness check; what it committed
 * is still delivered. */
static int check_gone(moirai_shm_ring_t *r)
{
    int gone = producers_gone(r);
    if (gone == 0)
        return 0;
    int rc = try_take(r);
    return rc == -EAGAIN ? gone : rc;
}

static int peek(moirai_shm_ring_t *r, uint64_t deadline, bool try_only, void **buf, size_t *len)
{
    if (r == NULL || buf == NULL || len == NULL || r->role != MOIRAI_SHM_RING_CONSUMER)
        return -EINVAL;
    if (r->broken)
        return -EPROTO;
    struct ring_shared *sh = r->sh;
    int rc = 0;
    if (!r->pending) {
        bool blocked = false;
        uint64_t spin_start = 0;
        for (int spins = 0;; spins++) {
            rc = try_take(r);
            if (rc != -EAGAIN)
                break;
            if (!blocked) {
                blocked = true;
                r->stats.blocked++;
            }
            if (!try_only && ring_keep_spinning(spins, &spin_start))
                continue;
            rc = check_gone(r);
            if (rc != 0)
                break;
            if (try_only) {
                rc = -EAGAIN;
                break;
            }
            if (moirai_deadline_expired(deadline)) {
                rc = -ETIMEDOUT;
                break;
            }
            /* Announce the sleep, then look once more: a commit between
             * the look above and the sleep either shows up in this look
             * or finds the flag (both seq_cst) and bumps data_seq. */
            uint32_t seq = atomic_load_explicit(&sh->data_seq, memory_order_acquire);
            (void)atomic_exchange_explicit(&sh->cons_waiting, 1, memory_order_seq_cst);
            rc = try_take(r);
            if (rc != -EAGAIN)
                break;
            if (moirai__ring_wait_futex(&sh->data_seq, seq, deadline) != 0) {
                rc = -ECANCELED;
                break;
            }
            r->stats.sleeps++;
        }
    }
    if (rc == -EPROTO)
        r->broken = true;
    if (rc != 0)
        return rc;
    *buf = r->data + (r->pend_pos & r->mask) + RING_REC_HDR;
    *len = r->pend_len;
    return 0;
}

int moirai_shm_ring_peek(moirai_shm_ring_t *r, void **buf, size_t *len)
{
    return peek(r, MOIRAI_DEADLINE_NEVER, false, buf, len);
}

int moirai_shm_ring_try_peek(moirai_shm_ring_t *r, void **buf, size_t *len)
{
    return peek(r, MOIRAI_DEADLINE_NEVER, true, buf, len);
}

int moirai_shm_ring_peek_timed(moirai_shm_ring_t *r, uint64_t deadline, void **buf, size_t *len)
{
    return peek(r, deadline, false, buf, len);
}

int moirai_shm_ring_release(moirai_shm_ring_t *r)
{
    if (r == NULL || r->role != MOIRAI_SHM_RING_CONSUMER || !r->pending)
        return -EINVAL;
    r->pending = false;
    r->stats.messages++;
    r->stats.bytes += r->pend_len;
    give_back(r, r->pend_rec);
    return 0;
}
