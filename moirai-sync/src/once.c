/* Once: a four-state futex word.
 *
 *   NOT_RUN -> RUNNING            (CAS by the caller that will run fn)
 *   RUNNING -> RUNNING_WAITERS    (CAS by a caller about to park)
 *   RUNNING(_WAITERS) -> DONE     (exchange after fn returns; unpark all
 *                                  when someone announced itself)
 *
 * The fast path of a completed once is one acquire load. */
#include <moirai/sync/once.h>

#include <errno.h>
#include <stddef.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>

enum { NOT_RUN = 0, RUNNING = 1, RUNNING_WAITERS = 2, DONE = 3 };

_Static_assert(sizeof(moirai_once_t) == 4, "moirai_once_t is 4 bytes in the ABI");

void moirai_once_init(moirai_once_t *once)
{
    atomic_init(&once->priv_state, NOT_RUN);
}

bool moirai_once_done(moirai_once_t *once)
{
    /* Acquire: pairs with the release exchange after the initializer. */
    return atomic_load_explicit(&once->priv_state, memory_order_acquire) == DONE;
}

static void once_slow(moirai_once_t *once, moirai_once_cb fn, void *arg)
{
    uint32_t state = NOT_RUN;
    /* Acquire on failure: if the state read is DONE we return and must see
     * the initializer. Winning needs no ordering (it only grants the right
     * to run fn), but C11 forbids a success order weaker than the failure
     * order, so it is acquire too; on x86 and ARMv8 this costs nothing. */
    if (atomic_compare_exchange_strong_explicit(&once->priv_state, &state, RUNNING,
                                                memory_order_acquire, memory_order_acquire)) {
        fn(arg);
        /* Release: publishes everything fn did to the acquire loads of the
         * fast path and of the waiters below. */
        uint32_t old = atomic_exchange_explicit(&once->priv_state, DONE, memory_order_release);
        if (old == RUNNING_WAITERS)
            moirai_unpark_all(&once->priv_state);
        return;
    }
    while (state != DONE) {
        if (state == RUNNING) {
            /* Announces a waiter; the park re-checks. On failure `state`
             * is reloaded (acquire: it may read DONE, after which we
             * return) and the loop decides again. Success is acquire only
             * because C11 requires success >= failure. */
            if (!atomic_compare_exchange_weak_explicit(&once->priv_state, &state, RUNNING_WAITERS,
                                                       memory_order_acquire, memory_order_acquire))
                continue;
            state = RUNNING_WAITERS;
        }
        moirai_park_for(&once->priv_state, state, MOIRAI_DEADLINE_NEVER, "once");
        /* Acquire: when this reads DONE we return and must see fn's work. */
        state = atomic_load_explicit(&once->priv_state, memory_order_acquire);
    }
}

int moirai_once_call(moirai_once_t *once, moirai_once_cb fn, void *arg)
{
    if (once == NULL || fn == NULL)
        return -EINVAL;
    if (__builtin_expect(moirai_once_done(once), 1))
        return 0;
    once_slow(once, fn, arg);
    return 0;
}
