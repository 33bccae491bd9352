/* One wait for every I/O operation (see iowait.h). */
#include <errno.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>

#include "async_internal.h"
#include "iowait.h"

int moirai__iowait_check(void)
{
    struct moirai_fiber *f = moirai__fiber_self();
    if (f != NULL && moirai_cancel_token_is_cancelled(moirai_handle_token(f->handle)))
        return -ECANCELED;
    return 0;
}

int moirai__iowait_park(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline)
{
    return moirai__iowait_park_for(word, expected, deadline, "I/O");
}

int moirai__iowait_park_for(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline,
                            const char *what)
{
    if (moirai_deadline_expired(deadline))
        return -ETIMEDOUT;
    /* Sticky cancellation, checked before every park: the wait table
     * delivers a cancellation to one park only. When that park's
     * -ECANCELED loses to readiness that fired at the same moment,
     * moirai__io_wait reports the readiness and the operation retries its
     * system call; if that finds EAGAIN (the edge was stale), the
     * operation waits again, and without this check that second park
     * would block with the cancellation already consumed. */
    int rc = moirai__iowait_check();
    if (rc != 0)
        return rc;
    /* No spin: an I/O wait is long next to a switch, and a fiber that
     * spins holds its worker. moirai_park passes a fiber's cancellation
     * on as -ECANCELED. */
    rc = moirai_park_nospin_for(word, expected, deadline, what);
    if (rc == 0 && moirai__iowait_check() != 0)
        return -ECANCELED;
    return rc;
}
