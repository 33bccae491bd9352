/* Wait group: wait for a collection of tasks to finish (Go's
 * sync.WaitGroup).
 *
 * The counter starts at zero. moirai_waitgroup_add() raises it before work
 * is started, each piece of work calls moirai_waitgroup_done() when
 * finished, and moirai_waitgroup_wait() blocks until the counter is zero.
 * Misuse that Go punishes with a panic is reported here and changes
 * nothing: a change that would make the counter negative returns -EINVAL,
 * one that would overflow it returns -EOVERFLOW. A wait group may be
 * reused once a wait has returned; as in Go, an add from zero must not race
 * with a wait.
 *
 * Memory ordering: every done() (and every add() that brings the counter
 * to zero) releases; a wait that returns 0 acquires. So everything a task
 * did before its done() happens before the wait returns.
 *
 * Storage: 4 bytes, embeddable; MOIRAI_WAITGROUP_INIT or
 * moirai_waitgroup_init(). */
#ifndef MOIRAI_SYNC_WAITGROUP_H
#define MOIRAI_SYNC_WAITGROUP_H

#include <stdint.h>

#include <moirai/core/atomic.h>
#include <moirai/core/clock.h>
#include <moirai/sync/export.h>

/* The field is private: use only the functions below. */
typedef struct moirai_waitgroup {
    /* The counter in the low 31 bits, "waiters parked" in the top bit. */
    MOIRAI_ATOMIC(uint32_t) priv_state;
} moirai_waitgroup_t;

/* Static initializer (counter zero); equivalent to moirai_waitgroup_init(). */
#define MOIRAI_WAITGROUP_INIT                                                                      \
    {                                                                                              \
        .priv_state = 0                                                                            \
    }

/* The largest counter value. */
#define MOIRAI_WAITGROUP_MAX 0x7fffffff

#ifdef __cplusplus
extern "C" {
#endif

/* Initializes `wg` with a counter of zero. No other thread may use it yet. */
MOIRAI_SYNC_API void moirai_waitgroup_init(moirai_waitgroup_t *wg);

/* Adds `delta` (which may be negative) to the counter; when it reaches
 * zero, wakes every waiter. Never blocks. Thread-safe. Returns 0; -EINVAL
 * if the counter would become negative, -EOVERFLOW if it would exceed
 * MOIRAI_WAITGROUP_MAX (the counter is unchanged in both cases). Release
 * ordering. */
MOIRAI_SYNC_API int moirai_waitgroup_add(moirai_waitgroup_t *wg, int32_t delta);

/* moirai_waitgroup_add(wg, -1): returns 0, or -EINVAL (counter unchanged)
 * when it is already zero. Release ordering. */
MOIRAI_SYNC_API int moirai_waitgroup_done(moirai_waitgroup_t *wg);

/* Blocks (spins briefly, then parks) until the counter is zero; returns at
 * once if it is. Acquire ordering. Thread-safe; any number of waiters. */
MOIRAI_SYNC_API void moirai_waitgroup_wait(moirai_waitgroup_t *wg);

/* As moirai_waitgroup_wait(), giving up at `deadline` (absolute, on
 * moirai_clock_now_ns()'s scale; MOIRAI_DEADLINE_NEVER for none). Returns
 * 0 when the counter was zero (acquire), or -ETIMEDOUT. Blocks. */
MOIRAI_SYNC_API int moirai_waitgroup_wait_timed(moirai_waitgroup_t *wg, uint64_t deadline);

/* The counter's current value (a snapshot; relaxed). Never blocks. */
MOIRAI_SYNC_API uint32_t moirai_waitgroup_count(moirai_waitgroup_t *wg);

#ifdef __cplusplus
}
#endif

#endif
