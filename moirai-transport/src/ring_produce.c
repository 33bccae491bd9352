/* The producer side of a shared-memory ring: reserve room in place,
 * commit it, wait for room. The consumer is not trusted: the head it
 * publishes is checked against this side's tail before it is used, and
 * every write lands at an offset computed from local, validated values
 * and bounded by the data region. */
#include <errno.h>
#include <stdatomic.h>

#include <moirai/core/clock.h>
#include <moirai/transport/ring.h>

#include "ring_internal.h"

/* The consumer's head, read from the shared page and checked against
 * `tail` (the producers' index this side read first): it can never pass
 * the tail nor lag it by more than the ring. 1: `tail` is stale (the head
 * passed it, which happens legitimately on MPSC rings: read the tail
 * again). */
static int load_head(moirai_shm_ring_t *r, uint64_t tail, uint64_t *head)
{
    /* Acquire: the consumer's reads of (and, on MPSC rings, its zeroing
     * of) the released room happen before this side writes into it.
     * Seq_cst: the last look before a sleep must be ordered after the
     * store of prod_waiting (see reserve). */
    uint64_t h = atomic_load_explicit(&r->sh->head, memory_order_seq_cst);
    if (h > tail)
        return r->mpsc ? 1 : -EPROTO;
    if (tail - h > r->size || (h & 7u) != 0)
        return -EPROTO;
    *head = h;
    return 0;
}

/* The header word of the record at index `pos`. */
static _Atomic uint64_t *rec_word(moirai_shm_ring_t *r, uint64_t pos)
{
    return (_Atomic uint64_t *)(r->data + (pos & r->mask));
}

/* Wakes the consumer if it said it sleeps. Seq_cst load, paired with the
 * seq_cst publish just before it and with the consumer's seq_cst store of
 * cons_waiting before its last look: either the consumer saw the publish
 * or this load sees its flag. */
static void wake_consumer(moirai_shm_ring_t *r)
{
    struct ring_shared *sh = r->sh;
    if (atomic_load_explicit(&sh->cons_waiting, memory_order_seq_cst) != 0 &&
        atomic_exchange_explicit(&sh->cons_waiting, 0, memory_order_relaxed) != 0) {
        /* Release on the bump so a consumer that reads the new value
         * also sees the publish. */
        atomic_fetch_add_explicit(&sh->data_seq, 1, memory_order_release);
        moirai__ring_wake_futex(&sh->data_seq);
        r->stats.wakeups++;
    }
}

/* Marks the `rec` bytes at `pos` as a record to pass over (the room from
 * `pos` to the end of the data region, which a record of `need` bytes
 * does not fit into). */
static void write_skip(moirai_shm_ring_t *r, uint64_t pos, uint64_t rec)
{
    uint64_t w = ((uint64_t)RING_TAG_SKIP << 32) | (rec - RING_REC_HDR);
    /* SPSC: relaxed, the tail's release store publishes it. MPSC: the
     * header is the publication (seq_cst, see wake_consumer). */
    atomic_store_explicit(rec_word(r, pos), w,
                          r->mpsc ? memory_order_seq_cst : memory_order_relaxed);
}

/* One attempt to reserve a record of `rec` bytes. 0: reserved at
 * r->pend_pos. -EAGAIN: no room now. -EPROTO: the consumer's index is
 * impossible. Passes over the end of the data region with a skip record
 * when the record does not fit before it. */
static int try_take(moirai_shm_ring_t *r, uint64_t rec)
{
    struct ring_shared *sh = r->sh;
    /* The tail last seen behind the head: a legitimate head passes a
     * tail only after the tail moved on, so seeing the same tail behind
     * the head twice means the head is garbage (and retrying would spin
     * forever on a static lie). */
    uint64_t stale_tail = UINT64_MAX;
    for (;;) {
        uint64_t tail;
        if (r->mpsc) {
            /* Acquire: pairs with the CAS of the producer that moved the
             * tail, so its skip record (if any) is not rewritten. */
            tail = atomic_load_explicit(&sh->tail, memory_order_acquire);
            if ((tail & 7u) != 0)
                return -EPROTO;
        } else {
            tail = r->pos;
        }
        uint64_t off = tail & r->mask;
        uint64_t contig = r->size - off;
        uint64_t need = rec <= contig ? rec : contig;
        /* The cached head is a lower bound of the real one: room it
         * shows is there; only when it shows too little re-read it. */
        uint64_t head = r->other;
        if (head > tail || tail - head + need > r->size) {
            int rc = load_head(r, tail, &head);
            if (rc == 1) {
                if (tail == stale_tail)
                    return -EPROTO;
                stale_tail = tail;
                continue;
            }
            if (rc < 0)
                return rc;
            if (head < r->other && !r->mpsc)
                return -EPROTO; /* a head never moves back */
            r->other = head;
            if (tail - head + need > r->size)
                return -EAGAIN;
        }
        if (r->mpsc) {
            /* Relaxed: the room is published by each record's header
             * (seq_cst at commit), not by the tail. */
            if (!atomic_compare_exchange_weak_explicit(&sh->tail, &tail, tail + need,
                                                       memory_order_relaxed, memory_order_relaxed))
                continue;
        }
        if (need != rec) {
            /* The record does not fit before the end: pass over the end
             * now, then look for room at the start. */
            write_skip(r, tail, need);
            if (!r->mpsc) {
                r->pos = tail + need;
                (void)atomic_exchange_explicit(&sh->tail, r->pos, memory_order_seq_cst);
            }
            wake_consumer(r);
            continue;
        }
        r->pend_pos = tail;
        if (!r->mpsc)
            r->pos = tail + rec;
        return 0;
    }
}

/* Reserve with waiting: `try_only` never sleeps; otherwise spins briefly
 * and then sleeps on space_seq until `deadline`. */
static int reserve(moirai_shm_ring_t *r, uint64_t deadline, bool try_only, size_t len, void **buf)
{
    if (r == NULL || buf == NULL || r->role != MOIRAI_SHM_RING_PRODUCER || r->pending)
        return -EINVAL;
    if (r->broken)
        return -EPROTO;
    if (len > r->size - RING_REC_HDR)
        return -EMSGSIZE;
    struct ring_shared *sh = r->sh;
    uint64_t rec = ring_rec_size(len);
    bool blocked = false;
    uint64_t spin_start = 0;
    for (int spins = 0;; spins++) {
        /* A consumer that detached will never make room nor read. */
        uint32_t st = atomic_load_explicit(&sh->consumer.state, memory_order_acquire);
        if (st == RING_SLOT_DETACHED)
            return -EPIPE;
        int rc = try_take(r, rec);
        if (rc == 0)
            break;
        if (rc != -EAGAIN) {
            r->broken = true;
            return rc;
        }
        if (!blocked) {
            blocked = true;
            r->stats.blocked++;
        }
        if (!try_only && ring_keep_spinning(spins, &spin_start))
            continue;
        enum ring_peer cons =
            moirai__ring_peer(&sh->consumer, &r->watch[0], moirai__ring_should_probe(r));
        if (cons == RING_PEER_DEAD)
            return -ECONNRESET;
        if (cons == RING_PEER_GONE)
            return -EPIPE;
        if (cons == RING_PEER_BAD) {
            r->broken = true;
            return -EPROTO;
        }
        if (try_only)
            return -EAGAIN;
        if (moirai_deadline_expired(deadline))
            return -ETIMEDOUT;
        /* Announce the sleep, then look once more: a release between the
         * look above and the sleep either shows up in this look or finds
         * the flag (both seq_cst) and bumps space_seq. */
        uint32_t seq = atomic_load_explicit(&sh->space_seq, memory_order_acquire);
        (void)atomic_exchange_explicit(&sh->prod_waiting, 1, memory_order_seq_cst);
        rc = try_take(r, rec);
        if (rc == 0)
            break;
        if (rc != -EAGAIN) {
            r->broken = true;
            return rc;
        }
        if (moirai__ring_wait_futex(&sh->space_seq, seq, deadline) != 0)
            return -ECANCELED;
        r->stats.sleeps++;
    }
    r->pending = true;
    r->pend_rec = rec;
    r->pend_len = len;
    *buf = r->data + (r->pend_pos & r->mask) + RING_REC_HDR;
    return 0;
}

int moirai_shm_ring_reserve(moirai_shm_ring_t *r, size_t len, void **buf)
{
    return reserve(r, MOIRAI_DEADLINE_NEVER, false, len, buf);
}

int moirai_shm_ring_try_reserve(moirai_shm_ring_t *r, size_t len, void **buf)
{
    return reserve(r, MOIRAI_DEADLINE_NEVER, true, len, buf);
}

int moirai_shm_ring_reserve_timed(moirai_shm_ring_t *r, uint64_t deadline, size_t len, void **buf)
{
    return reserve(r, deadline, false, len, buf);
}

int moirai_shm_ring_commit(moirai_shm_ring_t *r)
{
    if (r == NULL || r->role != MOIRAI_SHM_RING_PRODUCER || !r->pending)
        return -EINVAL;
    uint64_t w = ((uint64_t)RING_TAG_DATA << 32) | (uint64_t)r->pend_len;
    if (r->mpsc) {
        /* The header is the publication: seq_cst, a release for the
         * payload written before it and ordered before the look at
         * cons_waiting (wake_consumer). */
        (void)atomic_exchange_explicit(rec_word(r, r->pend_pos), w, memory_order_seq_cst);
    } else {
        /* Relaxed header, then the tail: seq_cst, a release for header
         * and payload, and ordered before the look at cons_waiting. */
        atomic_store_explicit(rec_word(r, r->pend_pos), w, memory_order_relaxed);
        (void)atomic_exchange_explicit(&r->sh->tail, r->pos, memory_order_seq_cst);
    }
    r->pending = false;
    r->stats.messages++;
    r->stats.bytes += r->pend_len;
    wake_consumer(r);
    return 0;
}
