/* The unbounded MPMC queue: a linked list of array segments, each filled
 * and drained with fetch-and-add (FAAArrayQueue, P. Ramalhete and A.
 * Correia, 2016), with RCU instead of hazard pointers for the segments.
 *
 * Why this and not Michael-Scott or liburcu's wfcqueue (both measured, see
 * the queue_unbounded_2p2c benchmark): Michael-Scott needs a node per item
 * and two CASes per push that fail and retry under contention, and with
 * RCU its nodes can be reused only a grace period later (about 10 ms with
 * liburcu's call_rcu thread), by which time they are cold in cache.
 * wfcqueue also needs a node per item and makes its dequeuers take a
 * mutex. Here a push is one fetch-and-add and one CAS on a slot, a pop one
 * fetch-and-add and one exchange, nothing retries in the common case, and
 * memory is allocated and reclaimed one segment of SEG_SLOTS items at a
 * time.
 *
 * A segment's `enq` counts pushes that claimed a slot in it (it runs past
 * SEG_SLOTS when the segment is full) and `deq` pops that did. Slot i is
 * claimed by exactly one push (the one whose fetch-and-add returned i) and
 * one pop. The push writes the item and moves the slot from EMPTY to FULL
 * with a CAS; the pop exchanges the state for TAKEN: if it saw FULL it has
 * the item, if it saw EMPTY it came first, and the push's CAS fails and
 * the push retries at a new index. Hence nothing is lost or duplicated,
 * and items leave in the order their CASes succeeded.
 *
 * Reclamation: every access to a segment happens inside a read-side
 * critical section; the pop that moves `head` past a drained segment
 * retires it with call_rcu, after making sure `tail` no longer points to
 * it. */
#include "rcu_internal.h"

#include <errno.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/sync/queue.h>

/* Slots per segment: 16 KiB of slots, so allocation and reclamation cost
 * little per item. */
#define SEG_SLOTS 1024

enum { SLOT_EMPTY = 0, SLOT_FULL = 1, SLOT_TAKEN = 2 };

typedef struct slot {
    _Atomic uint32_t state;
    void *item; /* plain: published by the release CAS on state */
} slot_t;

typedef struct segment {
    /* Pops' line and pushes' line: the two hot counters never share. */
    alignas(MOIRAI_FALSE_SHARING_RANGE) _Atomic uint64_t deq;
    alignas(MOIRAI_FALSE_SHARING_RANGE) _Atomic uint64_t enq;
    alignas(MOIRAI_FALSE_SHARING_RANGE) _Atomic(struct segment *) next;
    moirai_rcu_head_t rcu;
    alignas(MOIRAI_FALSE_SHARING_RANGE) slot_t slots[SEG_SLOTS];
} segment_t;

struct moirai_queue {
    alignas(MOIRAI_FALSE_SHARING_RANGE) _Atomic(segment_t *) head;
    alignas(MOIRAI_FALSE_SHARING_RANGE) _Atomic(segment_t *) tail;
};

static segment_t *segment_new(void)
{
    segment_t *s = moirai_aligned_alloc(MOIRAI_FALSE_SHARING_RANGE, sizeof(*s));
    if (s == NULL)
        return NULL;
    atomic_init(&s->deq, 0);
    atomic_init(&s->enq, 0);
    atomic_init(&s->next, NULL);
    /* All slots EMPTY (0). The memset is plain; the segment is published
     * by a release CAS before any other thread can see it. */
    memset(s->slots, 0, sizeof(s->slots));
    return s;
}

static void segment_reclaim(moirai_rcu_head_t *head)
{
    /* A grace period has passed (moirai_rcu_call() told TSan so). */
    moirai_free((char *)head - offsetof(segment_t, rcu));
}

int moirai_queue_create(moirai_queue_t **out)
{
    if (out == NULL)
        return -EINVAL;
    moirai_queue_t *q = moirai_aligned_alloc(MOIRAI_FALSE_SHARING_RANGE, sizeof(*q));
    if (q == NULL)
        return -ENOMEM;
    segment_t *s = segment_new();
    if (s == NULL) {
        moirai_free(q);
        return -ENOMEM;
    }
    atomic_init(&q->head, s);
    atomic_init(&q->tail, s);
    *out = q;
    return 0;
}

void moirai_queue_destroy(moirai_queue_t *queue)
{
    if (queue == NULL)
        return;
    segment_t *s = atomic_load_explicit(&queue->head, memory_order_acquire);
    while (s != NULL) {
        segment_t *next = atomic_load_explicit(&s->next, memory_order_acquire);
        moirai_free(s);
        s = next;
    }
    moirai_free(queue);
}

int moirai_queue_push(moirai_queue_t *queue, void *item)
{
    int rc = moirai__rcu_ensure();
    if (rc != 0)
        return rc;
    /* A segment allocated for a push that then lost the race to link it;
     * kept for the next attempt, freed (never published) at the end. */
    segment_t *fresh = NULL;
    rc = 0;
    moirai__rcu_read_lock();
    for (;;) {
        /* acquire: the segment was published by a release CAS. */
        segment_t *tail = atomic_load_explicit(&queue->tail, memory_order_acquire);
        /* Relaxed: the index only has to be unique; the slot's CAS and
         * exchange carry the ordering. */
        uint64_t idx = atomic_fetch_add_explicit(&tail->enq, 1, memory_order_relaxed);
        if (idx < SEG_SLOTS) {
            slot_t *slot = &tail->slots[idx];
            slot->item = item;
            uint32_t expect = SLOT_EMPTY;
            /* release: the pop that exchanges FULL out sees the item. */
            if (atomic_compare_exchange_strong_explicit(&slot->state, &expect, SLOT_FULL,
                                                        memory_order_release, memory_order_relaxed))
                break;
            continue; /* a pop got there first and burned the slot */
        }
        /* The segment is full: link a new one holding our item, or help
         * whoever did so move `tail`. */
        segment_t *next = atomic_load_explicit(&tail->next, memory_order_acquire);
        if (next == NULL) {
            if (fresh == NULL) {
                fresh = segment_new();
                if (fresh == NULL) {
                    rc = -ENOMEM; /* nothing of ours is in the queue */
                    break;
                }
            }
            fresh->slots[0].item = item;
            atomic_store_explicit(&fresh->slots[0].state, SLOT_FULL, memory_order_relaxed);
            atomic_store_explicit(&fresh->enq, 1, memory_order_relaxed);
            /* release: publishes the segment and the item in it. */
            if (atomic_compare_exchange_strong_explicit(
                    &tail->next, &next, fresh, memory_order_release, memory_order_acquire)) {
                atomic_compare_exchange_strong_explicit(&queue->tail, &tail, fresh,
                                                        memory_order_release, memory_order_relaxed);
                fresh = NULL;
                break;
            }
            /* Lost: `next` now holds the winner's segment. */
        }
        atomic_compare_exchange_strong_explicit(&queue->tail, &tail, next, memory_order_release,
                                                memory_order_relaxed);
    }
    moirai__rcu_read_unlock();
    if (fresh != NULL)
        moirai_free(fresh); /* never published */
    return rc;
}

int moirai_queue_try_pop(moirai_queue_t *queue, void **out)
{
    int rc = moirai__rcu_ensure();
    if (rc != 0)
        return rc;
    rc = -EAGAIN;
    moirai__rcu_read_lock();
    for (;;) {
        segment_t *head = atomic_load_explicit(&queue->head, memory_order_acquire);
        /* Empty unless a claimed slot is left or a later segment exists.
         * Relaxed loads: a stale answer is an ordinary race with a push
         * that had not completed; the exchange below decides. */
        uint64_t deq = atomic_load_explicit(&head->deq, memory_order_relaxed);
        uint64_t enq = atomic_load_explicit(&head->enq, memory_order_relaxed);
        if (deq >= enq && atomic_load_explicit(&head->next, memory_order_acquire) == NULL)
            break;
        uint64_t idx = atomic_fetch_add_explicit(&head->deq, 1, memory_order_relaxed);
        if (idx < SEG_SLOTS) {
            /* acq_rel: acquire the item if FULL; release so a push that
             * finds TAKEN is ordered after us (it retries elsewhere). */
            uint32_t prev =
                atomic_exchange_explicit(&head->slots[idx].state, SLOT_TAKEN, memory_order_acq_rel);
            if (prev == SLOT_FULL) {
                *out = head->slots[idx].item;
                rc = 0;
                break;
            }
            continue; /* its push has not written yet: it will retry */
        }
        /* Drained: move on to the next segment, if any. */
        segment_t *next = atomic_load_explicit(&head->next, memory_order_acquire);
        if (next == NULL)
            break;
        /* `tail` must never point to a retired segment: move it first. */
        segment_t *expect = head;
        atomic_compare_exchange_strong_explicit(&queue->tail, &expect, next, memory_order_release,
                                                memory_order_relaxed);
        if (atomic_compare_exchange_strong_explicit(&queue->head, &head, next, memory_order_release,
                                                    memory_order_relaxed)) {
#ifdef MOIRAI_MUTANT_EARLY_FREE
            /* Mutant: free the drained segment at once; pops and pushes
             * that claimed slots in it may still be using it. */
            (void)segment_reclaim;
            moirai_free(head);
#else
            moirai_rcu_call(&head->rcu, segment_reclaim);
#endif
        }
    }
    moirai__rcu_read_unlock();
    return rc;
}

bool moirai_queue_is_empty(moirai_queue_t *queue)
{
    moirai_rcu_read_lock();
    segment_t *head = atomic_load_explicit(&queue->head, memory_order_acquire);
    uint64_t deq = atomic_load_explicit(&head->deq, memory_order_relaxed);
    uint64_t enq = atomic_load_explicit(&head->enq, memory_order_relaxed);
    if (enq > SEG_SLOTS)
        enq = SEG_SLOTS;
    bool empty = deq >= enq && atomic_load_explicit(&head->next, memory_order_acquire) == NULL;
    moirai_rcu_read_unlock();
    return empty;
}
