/* The timer heap: parked fibers with a deadline, earliest first.
 *
 * A binary min-heap of waiter pointers under its own lock; each waiter
 * remembers its index so an early wake-up removes it in O(log n) at once,
 * and nothing stale is left for the reactor to skip. Lock order is always
 * bucket lock, then timer lock: parkers and unparkers hold the bucket
 * already, and the reactor, which starts from the heap, looks at the
 * earliest waiter, drops the timer lock, takes that waiter's bucket lock and
 * then the timer lock again, and acts only if the same waiter is still the
 * earliest (a waiter in the heap is parked, so its fiber is alive and its
 * bucket pointer stays valid while the timer lock is held).
 *
 * The heap's capacity grows when fibers are spawned (one slot per live
 * fiber), so adding a waiter never allocates and parking never fails. */
#include <errno.h>
#include <stdint.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>

#include "async_internal.h"

int moirai__timers_init(moirai__timers_t *t)
{
    moirai__lock_init(&t->lock);
    t->count = 0;
    atomic_init(&t->capacity, 64);
    t->heap = moirai_calloc(64, sizeof(*t->heap));
    return t->heap == NULL ? -ENOMEM : 0;
}

void moirai__timers_fini(moirai__timers_t *t)
{
    moirai_free(t->heap);
    t->heap = NULL;
}

int moirai__timers_reserve(moirai__timers_t *t, size_t fibers)
{
    /* Relaxed: a stale (smaller) capacity only sends us to the lock. */
    size_t cap = atomic_load_explicit(&t->capacity, memory_order_relaxed);
    if (fibers <= cap)
        return 0;
    size_t want = cap;
    while (want < fibers) {
        if (want > SIZE_MAX / 2 / sizeof(*t->heap))
            return -ENOMEM;
        want *= 2;
    }
    /* Allocated outside the lock (the allocator may be slow); copied in
     * under it, where the heap may have changed meanwhile. */
    moirai__waiter_t **bigger = moirai_calloc(want, sizeof(*bigger));
    if (bigger == NULL)
        return -ENOMEM;
    moirai__lock_acquire(&t->lock);
    moirai__waiter_t **old = NULL;
    if (want > atomic_load_explicit(&t->capacity, memory_order_relaxed)) {
        for (size_t i = 0; i < t->count; i++)
            bigger[i] = t->heap[i];
        old = t->heap;
        t->heap = bigger;
        atomic_store_explicit(&t->capacity, want, memory_order_relaxed);
        bigger = NULL;
    }
    moirai__lock_release(&t->lock);
    moirai_free(old);
    moirai_free(bigger);
    return 0;
}

static void place(moirai__timers_t *t, size_t i, moirai__waiter_t *w)
{
    t->heap[i] = w;
    w->heap_index = i;
}

static void sift_up(moirai__timers_t *t, size_t i)
{
    moirai__waiter_t *w = t->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (t->heap[parent]->deadline <= w->deadline)
            break;
        place(t, i, t->heap[parent]);
        i = parent;
    }
    place(t, i, w);
}

static void sift_down(moirai__timers_t *t, size_t i)
{
    moirai__waiter_t *w = t->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= t->count)
            break;
        if (child + 1 < t->count && t->heap[child + 1]->deadline < t->heap[child]->deadline)
            child++;
        if (t->heap[child]->deadline >= w->deadline)
            break;
        place(t, i, t->heap[child]);
        i = child;
    }
    place(t, i, w);
}

bool moirai__timers_add(moirai__timers_t *t, moirai__waiter_t *w)
{
    moirai__lock_acquire(&t->lock);
    /* The capacity covers every live fiber (moirai__timers_reserve at
     * spawn) and a fiber is in the heap at most once. */
    size_t i = t->count++;
    place(t, i, w);
    sift_up(t, i);
    bool earliest = t->heap[0] == w;
    moirai__lock_release(&t->lock);
    return earliest;
}

static void remove_at(moirai__timers_t *t, size_t i)
{
    moirai__waiter_t *gone = t->heap[i];
    gone->heap_index = MOIRAI__NOT_IN_HEAP;
    size_t last = --t->count;
    if (i == last)
        return;
    place(t, i, t->heap[last]);
    if (i > 0 && t->heap[(i - 1) / 2]->deadline > t->heap[i]->deadline)
        sift_up(t, i);
    else
        sift_down(t, i);
}

void moirai__timers_remove(moirai__timers_t *t, moirai__waiter_t *w)
{
    /* Only this fiber's own park adds it, under the bucket lock the caller
     * holds, so reading the index before taking the timer lock is safe. */
    if (w->deadline == MOIRAI_DEADLINE_NEVER)
        return;
    moirai__lock_acquire(&t->lock);
    if (w->heap_index != MOIRAI__NOT_IN_HEAP)
        remove_at(t, w->heap_index);
    moirai__lock_release(&t->lock);
}

bool moirai__timers_set(moirai__timers_t *t, moirai__waiter_t *w, uint64_t deadline,
                        void (*and_then)(moirai__waiter_t *w))
{
    moirai__lock_acquire(&t->lock);
    if (w->heap_index != MOIRAI__NOT_IN_HEAP)
        remove_at(t, w->heap_index);
    bool earliest = false;
    w->deadline = deadline;
    if (deadline != MOIRAI_DEADLINE_NEVER) {
        /* The capacity covers every timer object (reserved at create). */
        size_t i = t->count++;
        place(t, i, w);
        sift_up(t, i);
        earliest = t->heap[0] == w;
    }
    if (and_then != NULL)
        and_then(w);
    moirai__lock_release(&t->lock);
    return earliest;
}

uint64_t moirai__timers_expire(moirai_runtime_t *rt, uint64_t now)
{
    moirai__timers_t *t = &rt->timers;
    for (;;) {
        moirai__lock_acquire(&t->lock);
        if (t->count == 0) {
            moirai__lock_release(&t->lock);
            return MOIRAI_DEADLINE_NEVER;
        }
        moirai__waiter_t *w = t->heap[0];
        if (w->deadline > now) {
            uint64_t next = w->deadline;
            moirai__lock_release(&t->lock);
            return next;
        }
        if (w->fiber == NULL) {
            /* A timer object: its state word (`addr`) changes only under
             * this lock, so a re-arm racing with the expiry cannot be
             * fired by it. `busy` covers the notify after the lock. */
            remove_at(t, 0);
            uint32_t st = atomic_load_explicit(w->addr, memory_order_relaxed);
            /* Release: a waiter that reads FIRED with acquire. */
            atomic_store_explicit(w->addr, (st & ~MOIRAI__TIMER_MASK) | MOIRAI__TIMER_FIRED,
                                  memory_order_release);
            atomic_store_explicit(&w->busy, 1, memory_order_relaxed);
            moirai__lock_release(&t->lock);
            w->notify(w);
            /* Release: its destroy, reading it with acquire, may free it. */
            atomic_store_explicit(&w->busy, 0, memory_order_release);
            continue;
        }
        moirai__bucket_t *b = w->bucket;
        moirai__lock_release(&t->lock);

        moirai__lock_acquire(&b->lock);
        moirai__lock_acquire(&t->lock);
        /* Still the earliest, still queued in b: it timed out. Otherwise
         * it was woken (or another waiter came first); look again. */
        bool expired =
            t->count > 0 && t->heap[0] == w && w->bucket == b && w->queued && w->deadline <= now;
        if (expired)
            remove_at(t, 0);
        moirai__lock_release(&t->lock);
        if (expired)
            moirai__waitq_dequeue_locked(w, -ETIMEDOUT);
        moirai__lock_release(&b->lock);
        if (expired)
            moirai__fiber_resume(w->fiber);
    }
}
