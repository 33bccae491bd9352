/* Barrier: a countdown plus a generation number on a futex word.
 *
 *   wait: g = generation; if (remaining -= 1) reaches 0: remaining = count,
 *         generation += 1, unpark all; else park while generation == g.
 *
 * Reading `generation` before arriving is safe: the generation cannot
 * complete without our arrival. The last arriver resets `remaining` before
 * it publishes the new generation, so a participant that leaves and
 * arrives again at once counts against the new generation. */
#include <moirai/sync/barrier.h>

#include <errno.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>

_Static_assert(sizeof(moirai_barrier_t) == 12, "moirai_barrier_t is 12 bytes in the ABI");

int moirai_barrier_init(moirai_barrier_t *barrier, uint32_t count)
{
    if (count == 0 || count > UINT32_MAX / 2)
        return -EINVAL;
    atomic_init(&barrier->priv_remaining, count);
    atomic_init(&barrier->priv_generation, 0);
    barrier->priv_count = count;
    return 0;
}

void moirai_barrier_destroy(moirai_barrier_t *barrier)
{
    (void)barrier;
}

int moirai_barrier_wait(moirai_barrier_t *barrier)
{
    /* Acquire: pairs with the release increment of the previous generation,
     * so this participant sees that generation's reset of `remaining`. */
    uint32_t gen = atomic_load_explicit(&barrier->priv_generation, memory_order_acquire);
    /* Acq_rel: the decrements form one release sequence, so the last
     * arriver's acquire sees every participant's work; its release part
     * publishes this participant's work into that sequence. */
    if (atomic_fetch_sub_explicit(&barrier->priv_remaining, 1, memory_order_acq_rel) == 1) {
        /* Relaxed: published by the release increment below. */
        atomic_store_explicit(&barrier->priv_remaining, barrier->priv_count, memory_order_relaxed);
        /* Release: hands everything gathered above to the waiters'
         * acquire loads of the generation. */
        atomic_fetch_add_explicit(&barrier->priv_generation, 1, memory_order_release);
        moirai_unpark_all(&barrier->priv_generation);
        return MOIRAI_BARRIER_SERIAL;
    }
    /* Acquire: pairs with the last arriver's release increment. */
    while (atomic_load_explicit(&barrier->priv_generation, memory_order_acquire) == gen)
        moirai_park_for(&barrier->priv_generation, gen, MOIRAI_DEADLINE_NEVER, "barrier");
    return 0;
}
