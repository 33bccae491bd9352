/* Event: a set flag as the futex word, waiters counted in a second word.
 *
 *   wait (manual): while !state: waiters += 1; park while state == 0;
 *                  waiters -= 1
 *   wait (auto):   as manual, but pass only by a CAS state 1 -> 0, so
 *                  exactly one waiter passes per set
 *   set:           old = exchange(state, 1); if old == 0 and waiters > 0:
 *                  unpark all (manual) or one (auto)
 *
 * No wake-up is lost for the same reason as in the semaphore: a waiter's
 * increment of `waiters` and its futex compare of `state` pair with the
 * setter's exchange and its read of `waiters`, all sequentially
 * consistent. An auto-reset waiter woken for a set that a newcomer then
 * consumes parks again: that set released exactly one waiter, the
 * newcomer. */
#include <moirai/sync/event.h>

#include <errno.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>

#include "counted_wait.h"

_Static_assert(sizeof(moirai_event_t) == 12, "moirai_event_t is 12 bytes in the ABI");

int moirai_event_init(moirai_event_t *event, moirai_event_mode_t mode, bool initially_set)
{
    if (mode != MOIRAI_EVENT_MANUAL && mode != MOIRAI_EVENT_AUTO)
        return -EINVAL;
    atomic_init(&event->priv_state, initially_set ? 1u : 0u);
    atomic_init(&event->priv_waiters, 0);
    event->priv_mode = (uint32_t)mode;
    return 0;
}

void moirai_event_destroy(moirai_event_t *event)
{
    (void)event;
}

bool moirai_event_is_set(moirai_event_t *event)
{
    /* Acquire: pairs with the release part of set's exchange. */
    return atomic_load_explicit(&event->priv_state, memory_order_acquire) != 0;
}

bool moirai_event_try_wait(moirai_event_t *event)
{
    if (event->priv_mode == MOIRAI_EVENT_MANUAL)
        return moirai_event_is_set(event);
    uint32_t expected = 1;
    /* Acquire on success: pairs with the set we consume. Strong: a
     * spurious failure would make try_wait lie. */
    return atomic_compare_exchange_strong_explicit(&event->priv_state, &expected, 0,
                                                   memory_order_acquire, memory_order_relaxed);
}

static bool event_take(void *event)
{
    return moirai_event_try_wait(event);
}

int moirai_event_wait_timed(moirai_event_t *event, uint64_t deadline)
{
    /* The waiter half of the Dekker pair (see top). */
    return moirai__counted_wait(&event->priv_state, &event->priv_waiters, deadline, "event",
                                event_take, event);
}

void moirai_event_wait(moirai_event_t *event)
{
    (void)moirai_event_wait_timed(event, MOIRAI_DEADLINE_NEVER);
}

void moirai_event_set(moirai_event_t *event)
{
    /* Seq_cst: releases the setter's work to the waiter's acquire and is
     * the setter half of the Dekker pair with the waiter count. */
    uint32_t old = atomic_exchange_explicit(&event->priv_state, 1, memory_order_seq_cst);
    if (old != 0)
        return;
    if (atomic_load_explicit(&event->priv_waiters, memory_order_seq_cst) == 0)
        return;
    if (event->priv_mode == MOIRAI_EVENT_MANUAL)
        moirai_unpark_all(&event->priv_state);
    else
        moirai_unpark_one(&event->priv_state);
}

void moirai_event_reset(moirai_event_t *event)
{
    /* Relaxed: a reset publishes nothing to anyone. */
    atomic_store_explicit(&event->priv_state, 0, memory_order_relaxed);
}
