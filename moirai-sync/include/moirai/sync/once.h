/* Once: run an initializer exactly once, however many threads ask.
 *
 * The first caller runs the function; callers that arrive while it runs
 * block (spin briefly, then park) until it has returned; later callers
 * return at once after a single acquire load. The function must not call
 * moirai_once_call() on the same once (that deadlocks) and must return
 * (C has no exceptions; a longjmp out of it leaves the once "running"
 * forever).
 *
 * Memory ordering: everything the initializer did happens before every
 * moirai_once_call() on the same once returns, in every thread.
 *
 * Storage: 4 bytes, embeddable; MOIRAI_ONCE_INIT or moirai_once_init(). */
#ifndef MOIRAI_SYNC_ONCE_H
#define MOIRAI_SYNC_ONCE_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/atomic.h>
#include <moirai/sync/export.h>

/* The field is private: use only the functions below. */
typedef struct moirai_once {
    MOIRAI_ATOMIC(uint32_t) priv_state; /* not run, running, running with waiters, done */
} moirai_once_t;

/* Static initializer; equivalent to moirai_once_init(). */
#define MOIRAI_ONCE_INIT                                                                           \
    {                                                                                              \
        .priv_state = 0                                                                            \
    }

/* The initializer: receives the `arg` given to moirai_once_call(). */
typedef void (*moirai_once_cb)(void *arg);

#ifdef __cplusplus
extern "C" {
#endif

/* Initializes `once` as not yet run. No other thread may use it yet. */
MOIRAI_SYNC_API void moirai_once_init(moirai_once_t *once);

/* Runs `fn(arg)` if no call on `once` has run it yet; otherwise waits
 * until that run has returned (blocks) or returns at once if it has.
 * Thread-safe. Returns 0 once the initializer has completed (in this call
 * or an earlier one), or -EINVAL when `once` or `fn` is NULL (nothing is
 * run then). Acquire (and, for the thread that runs `fn`, release)
 * ordering as described above. */
MOIRAI_SYNC_API int moirai_once_call(moirai_once_t *once, moirai_once_cb fn, void *arg);

/* True once the initializer of `once` has returned. Never blocks; acquire
 * ordering when it returns true. */
MOIRAI_SYNC_API bool moirai_once_done(moirai_once_t *once);

#ifdef __cplusplus
}
#endif

#endif
