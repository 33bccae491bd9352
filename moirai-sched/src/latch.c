/* Latches (see latch.h). */
#include <moirai/core/clock.h>
#include <moirai/core/park.h>
#include <moirai/core/spin.h>

#include "latch.h"
#include "sched_internal.h"

/* How long a thread that is not a worker spins before it parks: a join or
 * scope handed to the pool often finishes within a few microseconds, and a
 * cross-CPU futex wake costs 10-20 us (see moirai_park()). */
#define EXTERNAL_SPIN_NS (50 * MOIRAI_NS_PER_US)

void moirai__latch_set(moirai__latch_t *latch)
{
    /* Release: the waiter's acquire probe sees everything written before.
     * After the exchange the latch may be gone; only its address is used. */
    if (atomic_exchange_explicit(&latch->state, MOIRAI__LATCH_SET, memory_order_release) ==
        MOIRAI__LATCH_SLEEPY)
        moirai_unpark_all(&latch->state);
}

void moirai__latch_wait(moirai__latch_t *latch)
{
    if (moirai__latch_probe(latch))
        return;
    moirai__worker_t *w = moirai__worker_current();
    if (w != NULL) {
        moirai__worker_wait_latch(w, latch);
        return;
    }
    uint64_t deadline = moirai_clock_now_ns() + EXTERNAL_SPIN_NS;
    for (unsigned i = 1;; i++) {
        if (moirai__latch_probe(latch))
            return;
        moirai_cpu_relax();
        if ((i & 63) == 0 && moirai_clock_now_ns() >= deadline)
            break;
    }
    for (;;) {
        uint32_t v = MOIRAI__LATCH_UNSET;
        /* Acquire on failure: the state may be SET, and then the caller
         * must see the setter's writes. */
        if (atomic_compare_exchange_strong_explicit(&latch->state, &v, MOIRAI__LATCH_SLEEPY,
                                                    memory_order_acquire, memory_order_acquire) ||
            v == MOIRAI__LATCH_SLEEPY)
            moirai_park_nospin(&latch->state, MOIRAI__LATCH_SLEEPY, MOIRAI_DEADLINE_NEVER);
        if (moirai__latch_probe(latch))
            return;
    }
}
