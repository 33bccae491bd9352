/* Counting semaphore: the value is the futex word, waiters are counted
 * in a second word.
 *
 *   wait: loop { CAS value v -> v-1 while v > 0; waiters += 1;
 *                park while value == 0; waiters -= 1 }
 *   post: CAS value v -> v+n; if waiters > 0: unpark one (n == 1) or all
 *
 * Why no wake-up is lost: the waiter increments `waiters` and then the
 * futex compare reads `value`; the poster adds to `value` and then reads
 * `waiters`. Both pairs are sequentially consistent (a Dekker pair; the
 * futex compare runs after a full barrier in the kernel), so either the
 * poster sees the waiter and wakes it, or the waiter's compare sees the new
 * units and does not sleep. A woken waiter that loses the unit to a
 * newcomer parks again; the unit was not lost, it was taken. */
#include <moirai/sync/semaphore.h>

#include <errno.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>

#include "counted_wait.h"

_Static_assert(sizeof(moirai_semaphore_t) == 8, "moirai_semaphore_t is 8 bytes in the ABI");

int moirai_semaphore_init(moirai_semaphore_t *sem, uint32_t value)
{
    if (value > MOIRAI_SEMAPHORE_MAX)
        return -EINVAL;
    atomic_init(&sem->priv_value, value);
    atomic_init(&sem->priv_waiters, 0);
    return 0;
}

void moirai_semaphore_destroy(moirai_semaphore_t *sem)
{
    (void)sem;
}

/* Takes a unit if one is available. */
static inline bool take(moirai_semaphore_t *sem)
{
    /* Relaxed: the CAS validates the value. */
    uint32_t v = atomic_load_explicit(&sem->priv_value, memory_order_relaxed);
    while (v > 0) {
        /* Acquire on success: pairs with the post that added this unit. */
        if (atomic_compare_exchange_weak_explicit(&sem->priv_value, &v, v - 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return true;
    }
    return false;
}

bool moirai_semaphore_try_wait(moirai_semaphore_t *sem)
{
    return take(sem);
}

static bool sem_take(void *sem)
{
    return take(sem);
}

int moirai_semaphore_wait_timed(moirai_semaphore_t *sem, uint64_t deadline)
{
    /* The waiter half of the Dekker pair (see top). */
    return moirai__counted_wait(&sem->priv_value, &sem->priv_waiters, deadline, "semaphore",
                                sem_take, sem);
}

void moirai_semaphore_wait(moirai_semaphore_t *sem)
{
    (void)moirai_semaphore_wait_timed(sem, MOIRAI_DEADLINE_NEVER);
}

int moirai_semaphore_post_n(moirai_semaphore_t *sem, uint32_t n)
{
    if (n == 0)
        return 0;
    uint32_t v = atomic_load_explicit(&sem->priv_value, memory_order_relaxed);
    do {
        if (n > MOIRAI_SEMAPHORE_MAX - v)
            return -EOVERFLOW;
        /* Seq_cst on success: releases the poster's work to the taker's
         * acquire and is the poster half of the Dekker pair. */
    } while (!atomic_compare_exchange_weak_explicit(&sem->priv_value, &v, v + n,
                                                    memory_order_seq_cst, memory_order_relaxed));
    if (atomic_load_explicit(&sem->priv_waiters, memory_order_seq_cst) > 0) {
        if (n == 1)
            moirai_unpark_one(&sem->priv_value);
        else
            moirai_unpark_all(&sem->priv_value);
    }
    return 0;
}

int moirai_semaphore_post(moirai_semaphore_t *sem)
{
    return moirai_semaphore_post_n(sem, 1);
}

uint32_t moirai_semaphore_value(moirai_semaphore_t *sem)
{
    return atomic_load_explicit(&sem->priv_value, memory_order_relaxed);
}
