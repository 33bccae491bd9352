/* Sleeping: a fiber parks on a word nobody wakes, with a deadline, so the
 * reactor's timer resumes it; a plain thread sleeps in the kernel. */
#include <errno.h>
#include <time.h>

#include <moirai/core/clock.h>

#include "async_internal.h"

static void thread_sleep_until(uint64_t deadline)
{
    struct timespec ts = {(time_t)(deadline / MOIRAI_NS_PER_S), (long)(deadline % MOIRAI_NS_PER_S)};
    /* Absolute on CLOCK_MONOTONIC, the clock of Moirai deadlines: a signal
     * interrupting the sleep simply resumes it with the same target. */
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

int moirai_fiber_sleep_until(uint64_t deadline)
{
    /* A sleep must end; waiting for a cancellation alone is a park. */
    if (deadline == MOIRAI_DEADLINE_NEVER)
        return -EINVAL;
    struct moirai_fiber *f = moirai__fiber_self();
    if (f == NULL) {
        if (!moirai_deadline_expired(deadline))
            thread_sleep_until(deadline);
        return 0;
    }
    const moirai_cancel_token_t *token = moirai_handle_token(f->handle);
    for (;;) {
        /* The token is sticky: a cancelled fiber never sleeps again. */
        if (moirai_cancel_token_is_cancelled(token))
            return -ECANCELED;
        if (moirai_deadline_expired(deadline)) {
            moirai_fiber_yield();
            return 0;
        }
        /* `f` is still the caller: a fiber only ever runs itself. */
        int rc = moirai__waitq_park(f, &f->sleep_word, 0, deadline);
        if (rc == -ETIMEDOUT)
            return 0;
        if (rc == -ECANCELED)
            return -ECANCELED;
    }
}

int moirai_fiber_sleep(uint64_t ns)
{
    if (ns == 0) {
        if (moirai__fiber_self() != NULL)
            moirai_fiber_yield();
        return 0;
    }
    return moirai_fiber_sleep_until(moirai_deadline_after(ns));
}
