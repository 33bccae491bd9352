/* The wait table: how a fiber parks on an address and how wakers find it.
 *
 * The table hashes addresses into buckets, each a lock and a FIFO list of
 * waiter entries (embedded in the fibers). Parking checks the word and
 * queues the entry under the bucket lock, and keeps the lock until the
 * fiber has switched out (the worker releases it): an unparker, which
 * dequeues under the same lock, can therefore never see a fiber that is
 * still on its stack, and a change of the word followed by an unpark either
 * happens before the check (the fiber does not park) or finds the entry.
 *
 * A waiter leaves its bucket in exactly one of three ways, each under the
 * bucket lock, and whoever takes it off resumes it: an unpark (result 0),
 * its deadline (the timer side, -ETIMEDOUT), or a cancellation of its
 * fiber (-ECANCELED).
 *
 * Cancellation: the canceller sets `cancel_pending` and then reads
 * `wait_bucket`; a parking fiber publishes `wait_bucket` and then reads
 * `cancel_pending`, all four seq_cst, so at least one side sees the other:
 * either the canceller finds the entry queued, or the fiber sees the flag
 * before it switches out. A cancellation is delivered to one wait; the
 * flag is consumed by whoever delivers it. */
#include <errno.h>
#include <stdint.h>

#include <moirai/core/clock.h>

#include "async_internal.h"

/* Zero-initialised static storage: every bucket unlocked and empty. */
static moirai__bucket_t buckets[MOIRAI__BUCKETS];

static moirai__bucket_t *bucket_of(const void *addr)
{
    /* Fibonacci hashing of the address without its low (alignment) bits. */
    uint64_t h = ((uint64_t)(uintptr_t)addr >> 2) * UINT64_C(0x9E3779B97F4A7C15);
    return &buckets[h >> (64 - 8)];
}

_Static_assert(MOIRAI__BUCKETS == 256, "bucket_of() takes the top 8 bits");

static void enqueue(moirai__bucket_t *b, moirai__waiter_t *w)
{
    w->next = NULL;
    w->prev = b->tail;
    if (b->tail != NULL)
        b->tail->next = w;
    else
        b->head = w;
    b->tail = w;
    w->bucket = b;
    w->queued = true;
}

static void unlink_waiter(moirai__waiter_t *w)
{
    moirai__bucket_t *b = w->bucket;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        b->head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        b->tail = w->prev;
    w->next = w->prev = NULL;
    w->queued = false;
}

void moirai__waitq_dequeue_locked(moirai__waiter_t *w, int result)
{
    unlink_waiter(w);
    w->result = result;
    /* Seq_cst: the waiter half of the cancellation handshake reads it. */
    if (w->fiber != NULL)
        atomic_store_explicit(&w->fiber->wait_bucket, NULL, memory_order_seq_cst);
}

bool moirai__waitq_watch(moirai__waiter_t *w, _Atomic uint32_t *addr, uint32_t expected)
{
    moirai__bucket_t *b = bucket_of(addr);
    moirai__lock_acquire(&b->lock);
    /* Relaxed: as in moirai__waitq_park, the bucket lock orders the check
     * against an unparker's dequeue. */
    bool queued = atomic_load_explicit(addr, memory_order_relaxed) == expected;
    if (queued) {
        w->addr = addr;
        w->fiber = NULL;
        w->deadline = MOIRAI_DEADLINE_NEVER;
        w->heap_index = MOIRAI__NOT_IN_HEAP;
        w->result = 0;
        enqueue(b, w);
    }
    moirai__lock_release(&b->lock);
    return queued;
}

bool moirai__waitq_unwatch(moirai__waiter_t *w)
{
    moirai__bucket_t *b = bucket_of(w->addr);
    moirai__lock_acquire(&b->lock);
    bool queued = w->queued;
    if (queued)
        unlink_waiter(w);
    moirai__lock_release(&b->lock);
    return queued;
}

static void release_bucket(void *arg)
{
    moirai__lock_release(&((moirai__bucket_t *)arg)->lock);
}

int moirai__waitq_park(struct moirai_fiber *f, _Atomic uint32_t *addr, uint32_t expected,
                       uint64_t deadline)
{
    if (deadline != MOIRAI_DEADLINE_NEVER && moirai_deadline_expired(deadline))
        return -ETIMEDOUT;
    /* A cancellation that found the fiber running is delivered here. */
    if (atomic_load_explicit(&f->cancel_pending, memory_order_relaxed) &&
        atomic_exchange_explicit(&f->cancel_pending, 0, memory_order_acquire))
        return -ECANCELED;

    moirai_runtime_t *rt = f->rt;
    moirai__bucket_t *b = bucket_of(addr);
    moirai__waiter_t *w = &f->wait;
    moirai__lock_acquire(&b->lock);
    /* Relaxed: the bucket lock orders this check against the unparker's
     * dequeue, and the caller re-reads its data with acquire afterwards. */
    if (atomic_load_explicit(addr, memory_order_relaxed) != expected) {
        moirai__lock_release(&b->lock);
        return 0;
    }
    w->addr = addr;
    w->fiber = f;
    w->deadline = deadline;
    w->result = 0;
    enqueue(b, w);
    (void)atomic_exchange_explicit(&f->wait_bucket, b, memory_order_seq_cst);
    if (atomic_load_explicit(&f->cancel_pending, memory_order_seq_cst)) {
        moirai__waitq_dequeue_locked(w, 0);
        moirai__lock_release(&b->lock);
        atomic_store_explicit(&f->cancel_pending, 0, memory_order_relaxed);
        return -ECANCELED;
    }
    if (deadline != MOIRAI_DEADLINE_NEVER) {
        atomic_fetch_add_explicit(&rt->timers_armed, 1, memory_order_relaxed);
        if (moirai__timers_add(&rt->timers, w))
            moirai__reactor_kick(rt->reactor);
    }
    f->parks++;
    moirai__fiber_parking(f, addr);
    moirai__fiber_switch_out(f, release_bucket, b);
    /* Whoever dequeued the entry wrote the result under the bucket lock and
     * then resumed the fiber through the scheduler, which orders it before
     * this read. */
    return w->result;
}

int moirai__waitq_unpark(_Atomic uint32_t *addr, int max)
{
    moirai__bucket_t *b = bucket_of(addr);
    moirai__waiter_t *woken = NULL;
    int n = 0;
    moirai__lock_acquire(&b->lock);
    moirai__waiter_t *w = b->head;
    while (w != NULL) {
        moirai__waiter_t *next = w->next;
        if (w->addr == addr && (w->fiber == NULL || n < max)) {
            if (w->fiber != NULL) {
                moirai__timers_remove(&w->fiber->rt->timers, w);
                n++;
            }
            moirai__waitq_dequeue_locked(w, 0);
            /* Chain the woken through `next` (free now) to resume them
             * after the lock is released. */
            w->next = woken;
            woken = w;
        }
        w = next;
    }
    moirai__lock_release(&b->lock);
    /* Resumed in reverse order of waiting would be unfair: reverse the
     * chain first so the longest waiter runs first. */
    moirai__waiter_t *fifo = NULL;
    while (woken != NULL) {
        moirai__waiter_t *next = woken->next;
        woken->next = fifo;
        fifo = woken;
        woken = next;
    }
    while (fifo != NULL) {
        moirai__waiter_t *next = fifo->next;
        fifo->next = NULL;
        /* A watcher's notify may end its owner's wait: `fifo` is not
         * touched after it. */
        if (fifo->fiber != NULL)
            moirai__fiber_resume(fifo->fiber);
        else
            fifo->notify(fifo);
        fifo = next;
    }
    return n;
}

void moirai__waitq_cancel(struct moirai_fiber *f)
{
    (void)atomic_exchange_explicit(&f->cancel_pending, 1, memory_order_seq_cst);
    moirai__bucket_t *b = atomic_load_explicit(&f->wait_bucket, memory_order_seq_cst);
    if (b == NULL)
        return;
    moirai__lock_acquire(&b->lock);
    moirai__waiter_t *w = &f->wait;
    bool found = w->queued && w->bucket == b;
    if (found) {
        moirai__timers_remove(&f->rt->timers, w);
        moirai__waitq_dequeue_locked(w, -ECANCELED);
        /* Delivered: the fiber's next wait blocks normally. */
        atomic_store_explicit(&f->cancel_pending, 0, memory_order_relaxed);
    }
    moirai__lock_release(&b->lock);
    if (found)
        moirai__fiber_resume(f);
}
