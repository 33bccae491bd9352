/* The fiber runtime: stackful fibers on a moirai-sched scheduler, with a
 * reactor (a libuv loop on a thread of its own) for timers.
 *
 * A runtime owns a scheduler (or borrows one), a cache of fiber stacks and
 * the reactor. While a runtime exists, it has installed core's parking hook
 * (moirai/core/park.h): every Moirai wait (a moirai-sync lock, condvar,
 * semaphore or wait group, moirai_handle_join(), a scope) called from one
 * of its fibers suspends only that fiber, and its worker runs other
 * fibers and tasks; the same calls from a plain thread still block the
 * thread. At most one runtime exists per process at a time, because the
 * parking hook is process-wide.
 *
 * Memory ordering: everything a spawner wrote before a successful
 * moirai_fiber_spawn() happens before the fiber runs; everything a fiber
 * wrote happens before its handle reports it finished. A fiber that
 * parks on one worker and resumes on another sees everything it wrote
 * itself (the hand-over is a release/acquire pair). */
#ifndef MOIRAI_ASYNC_RUNTIME_H
#define MOIRAI_ASYNC_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/async/export.h>
#include <moirai/core/executor.h>
#include <moirai/sched/sched.h>

/* A fiber runtime (see above). Opaque; created and destroyed by the functions below. */
typedef struct moirai_runtime moirai_runtime_t;

/* How to build a runtime. Fill it with moirai_runtime_config_init(); a
 * zeroed field means its default. */
typedef struct moirai_runtime_config {
    /* The scheduler whose workers run the fibers; borrowed, must outlive
     * the runtime. NULL: the runtime creates one from `sched_config` and
     * destroys it with itself. */
    moirai_sched_t *sched;
    /* Used only when `sched` is NULL. NULL: the scheduler's defaults. */
    const moirai_sched_config_t *sched_config;
    /* Default usable stack bytes per fiber (rounded up to whole pages; a
     * guard page is added below). 0: MOIRAI_FIBER_STACK_DEFAULT. At least
     * MOIRAI_FIBER_STACK_MIN, at most MOIRAI_FIBER_STACK_MAX. */
    size_t stack_size;
    /* Stacks of the default size kept for reuse after their fibers end.
     * 0: 1024. */
    size_t stack_cache;
} moirai_runtime_config_t;

/* 256 KiB: a parked fiber costs its touched pages (typically 8 KiB of
 * RSS), not this; address space is plentiful on 64-bit Linux. */
#define MOIRAI_FIBER_STACK_DEFAULT ((size_t)256 * 1024)
#define MOIRAI_FIBER_STACK_MIN     ((size_t)16 * 1024)
#define MOIRAI_FIBER_STACK_MAX     ((size_t)1024 * 1024 * 1024)

/* Counters. Read racily: approximate while fibers run, exact once idle. */
typedef struct moirai_runtime_stats {
    uint64_t fibers_spawned;   /* fibers accepted by spawn */
    uint64_t fibers_alive;     /* spawned and not yet finished */
    uint64_t switches;         /* switches into fibers */
    uint64_t parks;            /* times a fiber parked (waits, sleeps) */
    uint64_t stacks_mapped;    /* stacks currently mapped, in use or cached */
    uint64_t stacks_cached;    /* of those, cached for reuse */
    uint64_t stack_high_water; /* most stack bytes any finished fiber used */
    uint64_t timers_armed;     /* sleeps and deadline parks handed to the reactor */
    uint64_t watchdog_reports; /* the scheduler's watchdog reports (its workers' sum) */
} moirai_runtime_stats_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Sets every field of `*cfg` to its default (all zero). NULL is ignored. */
MOIRAI_ASYNC_API void moirai_runtime_config_init(moirai_runtime_config_t *cfg);

/* Creates a runtime (cfg NULL: all defaults), starts its reactor thread
 * and installs the parking hook. Blocks until the reactor runs. Returns
 * 0, -EINVAL (NULL out, stack_size out of range), -EBUSY (another
 * runtime exists), -ENOMEM, -EAGAIN (a thread could not be created), or
 * an error of moirai_sched_create(); on error nothing is left behind. */
MOIRAI_ASYNC_API int moirai_runtime_create(moirai_runtime_t **out,
                                           const moirai_runtime_config_t *cfg);

/* Waits until every fiber has finished, stops the reactor, removes the
 * parking hook, destroys the scheduler if the runtime created it, and
 * frees everything. Blocks. Returns 0, -EINVAL (NULL), or -EDEADLK when
 * called from a fiber or a worker of the runtime's scheduler (nothing is
 * stopped then). */
MOIRAI_ASYNC_API int moirai_runtime_destroy(moirai_runtime_t *rt);

/* The runtime's scheduler (never NULL). Thread-safe. */
MOIRAI_ASYNC_API moirai_sched_t *moirai_runtime_sched(moirai_runtime_t *rt);

/* The runtime as a core executor: each spawn through it starts a fiber
 * with the default stack. Valid until the runtime is destroyed. */
MOIRAI_ASYNC_API moirai_executor_t *moirai_runtime_executor(moirai_runtime_t *rt);

/* The runtime that exists, or NULL. Thread-safe (acquire). */
MOIRAI_ASYNC_API moirai_runtime_t *moirai_runtime_current(void);

/* Copies the counters into `*out`. Never blocks. Returns 0 or -EINVAL. */
MOIRAI_ASYNC_API int moirai_runtime_stats(const moirai_runtime_t *rt, moirai_runtime_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif
