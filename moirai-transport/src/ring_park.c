/* How a fiber waits on a shared-memory ring: the one part of the ring
 * that needs moirai-async and moirai-sched (the fuzz target, which builds
 * the ring alone, supplies its own three functions for a process without
 * fibers). */
#include <errno.h>
#include <sched.h>

#include <moirai/async/fiber.h>
#include <moirai/async/runtime.h>
#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/sched/sched.h>

#include "ring_internal.h"

bool moirai__ring_in_fiber(void)
{
    return moirai_fiber_current() != NULL;
}

void moirai__ring_yield(void)
{
    /* A fiber yields itself, never its worker thread. */
    if (moirai_fiber_current() != NULL)
        moirai_fiber_yield();
    else
        sched_yield();
}

struct blocking_wait {
    _Atomic uint32_t *word;
    uint32_t expected;
    uint64_t deadline;
};

static int blocking_wait_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct blocking_wait *b = arg;
    moirai__ring_thread_wait(b->word, b->expected, b->deadline);
    return 0;
}

/* A fiber's wait: another process wakes the word with FUTEX_WAKE, which
 * no fiber parking can hear, so one thread of the scheduler's blocking
 * pool sleeps on the futex (one slice at most) while the fiber parks in
 * the join. */
int moirai__ring_fiber_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline)
{
    const moirai_cancel_token_t *token = moirai_fiber_token();
    if (moirai_cancel_token_is_cancelled(token))
        return -ECANCELED;
    moirai_runtime_t *rt = moirai_runtime_current();
    moirai_handle_t *h = NULL;
    struct blocking_wait b = {word, expected, deadline};
    if (rt != NULL && moirai_handle_create(&h) == 0) {
        if (moirai_sched_spawn_blocking(moirai_runtime_sched(rt), blocking_wait_task, &b, NULL,
                                        h) == 0) {
            /* The task reads `b` on this stack and the shared word: wait
             * for its end whatever happens (one slice at most), also when
             * the fiber is cancelled meanwhile. */
            while (moirai_handle_join(h, NULL) == -ECANCELED) {
            }
            moirai_handle_release(h);
            return moirai_cancel_token_is_cancelled(token) ? -ECANCELED : 0;
        }
        moirai_handle_release(h);
    }
    /* No blocking thread to be had: look again after a millisecond,
     * parking the fiber meanwhile. */
    uint64_t until = moirai_deadline_after(MOIRAI_NS_PER_MS);
    if (deadline < until)
        until = deadline;
    return moirai_fiber_sleep_until(until) == -ECANCELED ? -ECANCELED : 0;
}
