/* Select: wait for the first of several things to become ready — a
 * socket readable or writable, a timer fired, a handle finished, a park
 * word changed — and learn which. Nothing is consumed: select reports
 * readiness, and the caller then does the operation (a read right after
 * "readable" finds data, or at worst waits a little again, since
 * readiness can be taken by another reader meanwhile). The arms that did
 * not win are left untouched: no data read, no timer disarmed, no
 * handle joined. Channels (moirai-transport) join as another kind.
 *
 * When several arms are ready at once, the scan starts at a rotating
 * position, so that no arm always wins over another.
 *
 * From a fiber, select parks the fiber; from a plain thread, it sleeps.
 * A runtime must exist (handles and words are watched through its wait
 * table). Memory ordering: as the arm's own wait (a finished handle's
 * result is readable; a word's new value, read with acquire, is). */
#ifndef MOIRAI_ASYNC_SELECT_H
#define MOIRAI_ASYNC_SELECT_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/async/export.h>
#include <moirai/async/net.h>
#include <moirai/async/timer.h>
#include <moirai/core/atomic.h>
#include <moirai/core/handle.h>

/* What an arm waits for. */
typedef enum moirai_select_kind {
    MOIRAI_SELECT_READABLE = 1, /* `io` has data, a connection to accept, or end of stream */
    MOIRAI_SELECT_WRITABLE = 2, /* `io` has room to write (or an error to report) */
    MOIRAI_SELECT_TIMER = 3,    /* `timer` has fired */
    MOIRAI_SELECT_HANDLE = 4,   /* `handle` has finished */
    /* `*word != expected`, or an unpark on `word` (moirai_unpark_one/all):
     * re-check the condition behind the word after select returns. */
    MOIRAI_SELECT_WORD = 5,
} moirai_select_kind_t;

/* One arm; only the fields of its kind are read. */
typedef struct moirai_select_arm {
    moirai_select_kind_t kind;
    moirai_io_t *io;
    moirai_timer_t *timer;
    moirai_handle_t *handle;
    MOIRAI_ATOMIC(uint32_t) *word;
    uint32_t expected;
} moirai_select_arm_t;

/* The most arms one select takes. */
#define MOIRAI_SELECT_MAX_ARMS 32

#ifdef __cplusplus
extern "C" {
#endif

/* Waits until one of the `n` arms is ready and returns its index. May
 * block (parks a fiber). Thread-safe. Returns the index, or -EINVAL
 * (NULL arms, n 0 or above MOIRAI_SELECT_MAX_ARMS, an unknown kind or a
 * NULL object), -EBADF (a closed handle), -EBUSY (another fiber or thread
 * waits on the same direction of an `io`, possibly this select's own
 * other arm), -EPERM (no runtime exists), -ETIMEDOUT (the `_timed`
 * deadline), -ECANCELED (the calling fiber's task was cancelled). */
MOIRAI_ASYNC_API int moirai_select(const moirai_select_arm_t *arms, size_t n);
MOIRAI_ASYNC_API int moirai_select_timed(uint64_t deadline, const moirai_select_arm_t *arms,
                                         size_t n);

#ifdef __cplusplus
}
#endif

#endif
