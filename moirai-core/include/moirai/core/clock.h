/* Clock and deadlines.
 *
 * Moirai measures time in nanoseconds of CLOCK_MONOTONIC. A deadline is an
 * absolute point on that clock; MOIRAI_DEADLINE_NEVER means "wait forever".
 * Every timed Moirai call takes a deadline rather than a timeout, so a
 * retry loop keeps its original limit. */
#ifndef MOIRAI_CORE_CLOCK_H
#define MOIRAI_CORE_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/export.h>

/* The deadline that never arrives: a timed call given it waits as long as
 * its untimed form would. */
#define MOIRAI_DEADLINE_NEVER UINT64_MAX

/* Nanoseconds per microsecond. */
#define MOIRAI_NS_PER_US UINT64_C(1000)
/* Nanoseconds per millisecond. */
#define MOIRAI_NS_PER_MS UINT64_C(1000000)
/* Nanoseconds per second. */
#define MOIRAI_NS_PER_S UINT64_C(1000000000)

#ifdef __cplusplus
extern "C" {
#endif

/* Nanoseconds of CLOCK_MONOTONIC: never goes backwards, unaffected by
 * wall-clock changes, not meaningful across machines. Never blocks;
 * thread-safe (vDSO, no system call on x86-64). */
MOIRAI_CORE_API uint64_t moirai_clock_now_ns(void);

/* The deadline `timeout_ns` from now. Saturates: a timeout that would pass
 * UINT64_MAX, or MOIRAI_DEADLINE_NEVER itself, gives MOIRAI_DEADLINE_NEVER.
 * A timeout of 0 gives a deadline that has already arrived, which turns a
 * timed wait into a try. Thread-safe. */
MOIRAI_CORE_API uint64_t moirai_deadline_after(uint64_t timeout_ns);

/* Nanoseconds left until `deadline`: 0 once it has passed,
 * MOIRAI_DEADLINE_NEVER for a deadline of MOIRAI_DEADLINE_NEVER.
 * Thread-safe. */
MOIRAI_CORE_API uint64_t moirai_deadline_remaining(uint64_t deadline);

/* True once `deadline` has passed; never true for MOIRAI_DEADLINE_NEVER.
 * Thread-safe. */
MOIRAI_CORE_API bool moirai_deadline_expired(uint64_t deadline);

#ifdef __cplusplus
}
#endif

#endif
