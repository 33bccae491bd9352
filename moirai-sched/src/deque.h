/* The per-worker Chase-Lev work-stealing deque (internal).
 *
 * The C11 formulation of Lê, Pop, Cohen and Zappa Nardelli, "Correct and
 * Efficient Work-Stealing for Weak Memory Models" (PPoPP 2013), growable:
 * the owner pushes and pops at the bottom (LIFO), thieves steal from the top
 * (FIFO). The store-load orderings that the paper gets from standalone
 * seq_cst fences are put on the atomic operations themselves (ThreadSanitizer
 * does not model standalone fences).
 *
 * Growing replaces the ring with one twice the size; the old ring may still
 * be read by a thief that loaded it before the switch, so it is retired, not
 * freed, until moirai__deque_destroy() (the retired rings together are smaller
 * than the live one).
 *
 * Thread-safety: push and pop only from the owner; steal from any thread. */
#ifndef MOIRAI_SCHED_DEQUE_H
#define MOIRAI_SCHED_DEQUE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <errno.h>
#include <stdalign.h>
#include <stdint.h>

#include <moirai/core/cache.h>

struct moirai__job;

typedef struct moirai__deque moirai__deque_t;

/* Outcome of a steal attempt. */
typedef enum moirai__steal {
    MOIRAI__STEAL_EMPTY = 0,   /* nothing to take */
    MOIRAI__STEAL_SUCCESS = 1, /* took a job */
    MOIRAI__STEAL_RETRY = 2,   /* lost a race with the owner or another thief */
} moirai__steal_t;

/* Allocates a deque with room for 2^capacity_log2 jobs before it grows.
 * Returns 0, -EINVAL (capacity_log2 outside 1..30) or -ENOMEM. */
int moirai__deque_create(moirai__deque_t **out, unsigned capacity_log2);

/* Frees the deque and every retired ring. The jobs still in it are not
 * touched. No other thread may use it any more. */
void moirai__deque_destroy(moirai__deque_t *deque);

/* Push and pop are inline, with only the ring's growth out of line: they
 * are most of the cost of a join, and the calls alone cost a fifth of it
 * (fib(30) through moirai_join on 2 workers: 7.2 ms with both called, 5.8
 * ms inline). */

/* One ring of 2^k slots. Retired rings are chained through `retired` and
 * are never written again: a thief that loaded one before the switch reads
 * only slots that were filled before the switch (see grow()). */
typedef struct moirai__deque_ring {
    int64_t mask;                       /* capacity - 1; capacity is a power of two */
    struct moirai__deque_ring *retired; /* the next older retired ring (owner only) */
    _Atomic(struct moirai__job *) slots[];
} moirai__deque_ring_t;

struct moirai__deque {
    /* Thieves' line: every successful steal writes `top`. */
    alignas(MOIRAI_FALSE_SHARING_RANGE) _Atomic int64_t top;
    /* Owner's line: the owner writes `bottom` on every push and pop, and
     * the thieves read it and `ring` together, so they share one line. */
    alignas(MOIRAI_FALSE_SHARING_RANGE) _Atomic int64_t bottom;
    _Atomic(moirai__deque_ring_t *) ring;
    /* Owner only: a value `top` had at some point. `top` only grows, so
     * bottom - top_cache over-estimates the size; push reloads `top` only
     * when that estimate says full, which keeps push off the thieves' line. */
    int64_t top_cache;
    moirai__deque_ring_t *retired; /* rings replaced by growth, newest first */
};

_Static_assert(sizeof(struct moirai__deque) == 2 * MOIRAI_FALSE_SHARING_RANGE,
               "top and bottom must sit on separate cache-line pairs");

/* Owner only: the slow half of reserve (deque.c). */
moirai__deque_ring_t *moirai__deque_reserve_slow(moirai__deque_t *d, moirai__deque_ring_t *r,
                                                 int64_t bottom, int64_t need);

/* Owner only. Makes room for `need` more jobs (growing as often as needed)
 * and returns the ring to write to, or NULL when growth failed. */
static inline moirai__deque_ring_t *moirai__deque_reserve(moirai__deque_t *d, int64_t bottom,
                                                          int64_t need)
{
    /* Relaxed: only the owner stores `ring`. */
    moirai__deque_ring_t *r = atomic_load_explicit(&d->ring, memory_order_relaxed);
    if (__builtin_expect(bottom - d->top_cache + need <= r->mask + 1, 1))
        return r;
    return moirai__deque_reserve_slow(d, r, bottom, need);
}

/* Owner only. Pushes `job` at the bottom, growing the ring when full.
 * Release: a thief that steals `job` sees everything written before the
 * push. Returns 0, or -ENOMEM if the ring had to grow and could not (the
 * deque is unchanged). */
static inline int moirai__deque_push(moirai__deque_t *deque, struct moirai__job *job)
{
    /* Relaxed: only the owner stores `bottom`. */
    int64_t b = atomic_load_explicit(&deque->bottom, memory_order_relaxed);
    moirai__deque_ring_t *r = moirai__deque_reserve(deque, b, 1);
    if (r == NULL)
        return -ENOMEM;
    /* Relaxed: the release store of `bottom` publishes it. */
    atomic_store_explicit(&r->slots[b & r->mask], job, memory_order_relaxed);
    /* release: a thief that reads the new `bottom` (seq_cst, so acquire)
     * sees the slot and everything the owner wrote before the push. */
    atomic_store_explicit(&deque->bottom, b + 1, memory_order_release);
    return 0;
}

/* Owner only. Pops the newest job, or NULL when empty. */
static inline struct moirai__job *moirai__deque_pop(moirai__deque_t *deque)
{
    /* Relaxed: only the owner stores `bottom` and `ring`. */
    int64_t b = atomic_load_explicit(&deque->bottom, memory_order_relaxed);
    /* Empty fast path without the locked store: `top` only grows, so any
     * value read now is a lower bound of the current one, and t >= b
     * proves the deque empty. Relaxed, since nothing is read on the
     * strength of it. */
    if (atomic_load_explicit(&deque->top, memory_order_relaxed) >= b)
        return NULL;
    moirai__deque_ring_t *r = atomic_load_explicit(&deque->ring, memory_order_relaxed);
    b--;
    /* seq_cst store then seq_cst load (the paper's fence): claims slot b
     * before looking at `top`. A thief loads `top` then `bottom`, both
     * seq_cst, so in the total order either the thief sees the smaller
     * `bottom` and leaves slot b alone, or the owner sees the thief's
     * advanced `top` and, when only one job is left, both go through the
     * CAS below. The store is an exchange: see CONTRIBUTING.md, "Atomics
     * and sanitizers" (under QEMU a plain one let a job run twice). */
    (void)atomic_exchange_explicit(&deque->bottom, b, memory_order_seq_cst);
    int64_t t = atomic_load_explicit(&deque->top, memory_order_seq_cst);
    /* A seq_cst load is an acquire, so `t` may serve as push's cached
     * view of `top` (see reserve()). */
    deque->top_cache = t;
    if (t > b) {
        /* Empty after all (a thief took the last job). release, not
         * relaxed: a thief that reads this `bottom` must still synchronize
         * with the pushes before it (C17 dropped same-thread stores from
         * release sequences, and TSan follows that). */
        atomic_store_explicit(&deque->bottom, b + 1, memory_order_release);
        return NULL;
    }
    /* Relaxed: the owner wrote the slot itself. */
    struct moirai__job *job = atomic_load_explicit(&r->slots[b & r->mask], memory_order_relaxed);
    if (t < b)
        return job; /* more than one job: no thief can reach slot b */
    /* The last job: race the thieves for it with the same CAS they use.
     * seq_cst keeps it in the total order with their loads (see above);
     * on failure nothing is read, so relaxed. */
    if (!atomic_compare_exchange_strong_explicit(&deque->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        job = NULL;
    /* The deque is empty either way: top == b + 1. release as above. */
    atomic_store_explicit(&deque->bottom, b + 1, memory_order_release);
    return job;
}

/* Any thread. Tries to take the oldest job into `*out`. Acquire: on
 * success the thief sees everything the pusher wrote before the push. */
moirai__steal_t moirai__deque_steal(moirai__deque_t *deque, struct moirai__job **out);

/* Any thread but `victim`'s owner; `dest` must be the caller's own deque.
 * Steals up to half of `victim`'s jobs, rounded up (size 1 -> 1, 2 -> 1,
 * 3 -> 2, 4 -> 2, ...; the size is observed once, at the start), at most
 * `max` (0 counts as 1), one CAS each (the owner pops the other end without
 * a CAS, so a single CAS over several jobs would race with it): the oldest
 * goes to `*first`, the rest are pushed onto `dest` in their original order
 * (the oldest deepest). A lost race or an emptied victim ends the batch
 * early. Room on `dest` is made before anything is taken, since a taken job
 * cannot be handed back: if `dest` cannot grow (out of memory) the batch is
 * shortened to what fits, so every job taken is in `*first` or in `dest`.
 * Returns how many were taken (`*status` MOIRAI__STEAL_SUCCESS), or 0 with
 * MOIRAI__STEAL_EMPTY or MOIRAI__STEAL_RETRY in `*status`. Ordering as for
 * steal (acquire per job) and push (release per job pushed onto `dest`). */
size_t moirai__deque_steal_batch(moirai__deque_t *victim, moirai__deque_t *dest,
                                 struct moirai__job **first, size_t max, moirai__steal_t *status);

/* Number of jobs, racy: exact only when no other thread uses the deque. */
size_t moirai__deque_size(const moirai__deque_t *deque);

#endif
