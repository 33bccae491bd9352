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
#include <stdint.h>

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

/* Owner only. Pushes `job` at the bottom, growing the ring when full.
 * Release: a thief that steals `job` sees everything written before the
 * push. Returns 0, or -ENOMEM if the ring had to grow and could not (the
 * deque is unchanged). */
int moirai__deque_push(moirai__deque_t *deque, struct moirai__job *job);

/* Owner only. Pops the newest job, or NULL when empty. */
struct moirai__job *moirai__deque_pop(moirai__deque_t *deque);

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
