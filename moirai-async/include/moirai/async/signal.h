/* Waiting for a POSIX signal from a fiber or a thread.
 *
 * A moirai_signal_t watches one signal number with a libuv uv_signal_t on
 * the runtime's reactor thread: while it exists, the signal no longer has
 * its default action (SIGTERM no longer ends the process) and each
 * delivery is counted; moirai_signal_wait() parks a fiber (or sleeps a
 * thread) until there is a count to take. Deliveries that arrive while
 * nobody waits are kept, so a signal raised between two waits is not
 * lost; the kernel merges deliveries of a standard signal that is already
 * pending, so the count is "at least one since the last wait", not a
 * precise number of kill() calls. Several watchers of one signal number
 * each see every delivery. When the last watcher of a number is
 * destroyed, the signal's previous disposition is restored. */
#ifndef MOIRAI_ASYNC_SIGNAL_H
#define MOIRAI_ASYNC_SIGNAL_H

#include <stdint.h>

#include <moirai/async/export.h>
#include <moirai/async/runtime.h>

/* A watched signal (see above). Opaque. */
typedef struct moirai_signal moirai_signal_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Starts watching `signum` on `rt`'s reactor and stores the watcher in
 * `*out`. Blocks briefly (parks a fiber, sleeps a thread) until the
 * reactor has installed the handler; not cancellable. Thread-safe.
 * Deliveries after it returns are counted. Returns 0, or -EINVAL (NULL
 * out or rt; `signum` not a signal number, or SIGKILL or SIGSTOP, which
 * cannot be caught), -ENOMEM, or another negative errno from libuv
 * (-EMFILE: no descriptor for its signal pipe). `*out` is untouched on
 * error. */
MOIRAI_ASYNC_API int moirai_signal_create(moirai_signal_t **out, moirai_runtime_t *rt, int signum);

/* Waits until the signal has been delivered since the last wait took the
 * count, and returns that count (> 0, at most INT_MAX), resetting it.
 * Parks a fiber or sleeps a plain thread. Several waiters may wait on
 * one watcher: each delivery is counted once, and one waiter takes the
 * whole count; the others keep waiting. Thread-safe. Returns the count,
 * or -EINVAL (NULL sig), -ECANCELED (the calling fiber's handle was
 * cancelled before or during the wait; the count is left for the next
 * wait). */
MOIRAI_ASYNC_API int moirai_signal_wait(moirai_signal_t *sig);

/* As moirai_signal_wait(), also returning -ETIMEDOUT once `deadline`
 * (absolute, moirai_clock_now_ns() scale; MOIRAI_DEADLINE_NEVER: none)
 * has passed without a delivery. */
MOIRAI_ASYNC_API int moirai_signal_wait_timed(moirai_signal_t *sig, uint64_t deadline);

/* Stops watching and frees `sig`. Blocks briefly until the reactor has
 * removed the watcher (not cancellable). Nobody may be waiting on `sig`,
 * and it must be destroyed before its runtime. NULL is ignored. */
MOIRAI_ASYNC_API void moirai_signal_destroy(moirai_signal_t *sig);

#ifdef __cplusplus
}
#endif

#endif
