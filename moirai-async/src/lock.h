/* A tiny spinlock for the runtime's own short critical sections
 * (internal).
 *
 * Why not moirai-sync's spinlock: a fiber that parks takes a wait-queue
 * lock and the worker releases it after the switch, on the worker's own
 * stack, which ThreadSanitizer sees as another thread; moirai-sync's locks
 * carry ThreadSanitizer mutex annotations that would call that a misuse.
 * This lock is plain atomics, which ThreadSanitizer checks as such: the
 * acquiring exchange and the releasing store order the critical sections.
 *
 * Test-and-test-and-set; after a bounded spin a waiter yields the CPU so a
 * preempted holder sharing the CPU can finish. Critical sections are a few
 * dozen instructions and never block. */
#ifndef MOIRAI_ASYNC_LOCK_H
#define MOIRAI_ASYNC_LOCK_H

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include <moirai/core/spin.h>

typedef struct moirai__lock {
    _Atomic uint32_t locked;
} moirai__lock_t;

static inline void moirai__lock_init(moirai__lock_t *l)
{
    atomic_init(&l->locked, 0);
}

static inline void moirai__lock_acquire(moirai__lock_t *l)
{
    for (unsigned spins = 0;; spins++) {
        /* Acquire: the previous holder's critical section happens before ours. */
        if (atomic_exchange_explicit(&l->locked, 1, memory_order_acquire) == 0)
            return;
        while (atomic_load_explicit(&l->locked, memory_order_relaxed) != 0) {
            moirai_cpu_relax();
            if ((++spins & 1023) == 0)
                sched_yield();
        }
    }
}

static inline void moirai__lock_release(moirai__lock_t *l)
{
    /* Release: publishes the critical section to the next holder. */
    atomic_store_explicit(&l->locked, 0, memory_order_release);
}

#endif
