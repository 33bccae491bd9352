/* Wait group: counter and "waiters" bit in one futex word.
 *
 * Every change of the counter is a CAS that checks the bounds first, so a
 * rejected add leaves the word untouched. The change that brings the
 * counter to zero also clears the waiters bit and, if it was set, unparks
 * all. A waiter sets the bit before parking on the exact word it saw, so
 * a change between its read and its park makes the park return at once. */
#include <moirai/sync/waitgroup.h>

#include <errno.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>

#define WAITERS 0x80000000u
#define COUNT   0x7fffffffu

_Static_assert(sizeof(moirai_waitgroup_t) == 4, "moirai_waitgroup_t is 4 bytes in the ABI");
_Static_assert(MOIRAI_WAITGROUP_MAX == COUNT, "the counter has 31 bits");

void moirai_waitgroup_init(moirai_waitgroup_t *wg)
{
    atomic_init(&wg->priv_state, 0);
}

int moirai_waitgroup_add(moirai_waitgroup_t *wg, int32_t delta)
{
    /* Relaxed: the CAS below validates the value. */
    uint32_t old = atomic_load_explicit(&wg->priv_state, memory_order_relaxed);
    uint32_t next;
    do {
        int64_t count = (int64_t)(old & COUNT) + delta;
        if (count < 0)
            return -EINVAL;
        if (count > (int64_t)COUNT)
            return -EOVERFLOW;
        /* Reaching zero clears the waiters bit: we wake them all below. */
        next = count == 0 ? 0 : (uint32_t)count | (old & WAITERS);
        /* Release on success: publishes the caller's work to the waiter
         * whose acquire load reads zero; the CAS chain on the word forms a
         * release sequence, so all earlier done()s are published too. */
    } while (!atomic_compare_exchange_weak_explicit(&wg->priv_state, &old, next,
                                                    memory_order_release, memory_order_relaxed));
    if (next == 0 && (old & WAITERS))
        moirai_unpark_all(&wg->priv_state);
    return 0;
}

int moirai_waitgroup_done(moirai_waitgroup_t *wg)
{
    return moirai_waitgroup_add(wg, -1);
}

int moirai_waitgroup_wait_timed(moirai_waitgroup_t *wg, uint64_t deadline)
{
    /* Acquire: when this reads zero, the caller sees every task's work. */
    uint32_t state = atomic_load_explicit(&wg->priv_state, memory_order_acquire);
    while ((state & COUNT) != 0) {
        if (!(state & WAITERS)) {
            /* Announces a waiter; on failure `state` is reloaded (acquire,
             * in case it is now zero and we return) and the loop decides
             * again. Success is acquire only because C11 requires
             * success >= failure. */
            if (!atomic_compare_exchange_weak_explicit(&wg->priv_state, &state, state | WAITERS,
                                                       memory_order_acquire, memory_order_acquire))
                continue;
            state |= WAITERS;
        }
        int rc = moirai_park_for(&wg->priv_state, state, deadline, "waitgroup");
        state = atomic_load_explicit(&wg->priv_state, memory_order_acquire);
        if (rc == -ETIMEDOUT && (state & COUNT) != 0)
            return -ETIMEDOUT;
    }
    return 0;
}

void moirai_waitgroup_wait(moirai_waitgroup_t *wg)
{
    (void)moirai_waitgroup_wait_timed(wg, MOIRAI_DEADLINE_NEVER);
}

uint32_t moirai_waitgroup_count(moirai_waitgroup_t *wg)
{
    return atomic_load_explicit(&wg->priv_state, memory_order_relaxed) & COUNT;
}
