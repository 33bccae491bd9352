/* The injectable clock of the RT executor.
 *
 * The executor reads time only through a moirai_rt_clock_t. The real
 * clock is CLOCK_MONOTONIC (the scale of moirai_clock_now_ns()); an
 * executor on it runs worker threads that sleep until each release with
 * clock_nanosleep(TIMER_ABSTIME). A virtual clock moves only when told to
 * (as Tokio's paused clock): an executor on it has no threads, and the
 * caller drives it with moirai_rt_executor_run_until(), while job
 * functions "take time" by advancing the clock. Dispatch order, budgets
 * and deadline misses are then exact and free of timing noise. */
#ifndef MOIRAI_RT_CLOCK_H
#define MOIRAI_RT_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/rt/export.h>

/* A clock, real or virtual (see above). Opaque; obtained from the functions below. */
typedef struct moirai_rt_clock moirai_rt_clock_t;

#ifdef __cplusplus
extern "C" {
#endif

/* The real clock (static; destroy ignores it). Thread-safe. */
MOIRAI_RT_API moirai_rt_clock_t *moirai_rt_clock_real(void);

/* Creates a virtual clock reading `start_ns`. Returns 0, -EINVAL (NULL
 * out) or -ENOMEM. */
MOIRAI_RT_API int moirai_rt_clock_create_virtual(moirai_rt_clock_t **out, uint64_t start_ns);

/* Frees a virtual clock no executor uses any more. Ignores NULL and the
 * real clock. */
MOIRAI_RT_API void moirai_rt_clock_destroy(moirai_rt_clock_t *clock);

/* Now, in nanoseconds. Never blocks; thread-safe (a virtual clock's
 * reading is a relaxed load: it orders nothing). NULL reads the real
 * clock. */
MOIRAI_RT_API uint64_t moirai_rt_clock_now(const moirai_rt_clock_t *clock);

/* Moves a virtual clock forward by `ns`. Never blocks; thread-safe.
 * Returns 0, -EINVAL (NULL, or the real clock, which cannot be moved) or
 * -EOVERFLOW (it would pass UINT64_MAX; nothing changes). */
MOIRAI_RT_API int moirai_rt_clock_advance(moirai_rt_clock_t *clock, uint64_t ns);

/* Whether `clock` is virtual (false for NULL and the real clock). */
MOIRAI_RT_API bool moirai_rt_clock_is_virtual(const moirai_rt_clock_t *clock);

#ifdef __cplusplus
}
#endif

#endif
