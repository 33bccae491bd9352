/* Latches: one-shot completion flags a worker can wait on while it keeps
 * running other work (internal, shared by join, scopes, parallel loops and
 * pipelines).
 *
 * A latch starts unset; moirai__latch_set() sets it once. A waiter that is a
 * worker of a scheduler runs that scheduler's other jobs until the latch is
 * set (so waiting never blocks a worker and nested waits cannot deadlock);
 * any other waiter spins briefly, then parks through core's parking layer.
 *
 * Lifetime: the latch usually lives on the waiter's stack, and the waiter
 * may return the moment it sees the latch set. So moirai__latch_set() sets
 * the state with one atomic exchange and, after that, touches nothing but
 * the address it passes to moirai_unpark_all() when a waiter had parked
 * (a futex wake on an address whose owner has gone is harmless; parkers
 * tolerate spurious wakes). */
#ifndef MOIRAI_SCHED_LATCH_H
#define MOIRAI_SCHED_LATCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct moirai__latch {
    _Atomic uint32_t state; /* MOIRAI__LATCH_UNSET, _SLEEPY or _SET */
} moirai__latch_t;

#define MOIRAI__LATCH_UNSET  0u
#define MOIRAI__LATCH_SLEEPY 1u /* unset, and a waiter has parked or is about to */
#define MOIRAI__LATCH_SET    2u

#define MOIRAI__LATCH_INIT                                                                         \
    {                                                                                              \
        MOIRAI__LATCH_UNSET                                                                        \
    }

static inline void moirai__latch_init(moirai__latch_t *latch)
{
    atomic_init(&latch->state, MOIRAI__LATCH_UNSET);
}

/* True once set. Acquire: the waiter sees everything written before the
 * set. */
static inline bool moirai__latch_probe(moirai__latch_t *latch)
{
    return atomic_load_explicit(&latch->state, memory_order_acquire) == MOIRAI__LATCH_SET;
}

/* Sets the latch and wakes a parked waiter. Release. Call once. */
void moirai__latch_set(moirai__latch_t *latch);

/* Returns when the latch is set (see above for how it waits). Acquire. */
void moirai__latch_wait(moirai__latch_t *latch);

#endif
