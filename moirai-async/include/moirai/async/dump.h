/* Dumps of a fiber runtime: its scheduler and every fiber, on request.
 *
 * moirai_runtime_dump() writes the runtime's scheduler first (the report
 * of moirai_sched_dump(), moirai/sched/dump.h: workers, the job each runs,
 * which for a worker running a fiber is the fiber's name or "fiber",
 * stuck workers, queue lengths), then a summary of the runtime, then one
 * entry per live fiber:
 *
 *     fiber 42 "consumer": parked on channel 0x7f2a5c001040 for 153 ms, stack 1184/258048 bytes
 *
 * with the fiber's task id, its name (or "(unnamed)"), its state and its
 * stack's high-water mark over its usable size. States:
 *   - "running": on a worker now (the scheduler section names the worker
 *     and, with the watchdog on, for how long);
 *   - "runnable": queued on the scheduler (spawned, woken or yielded);
 *   - "parked on WHAT ADDRESS for N ms": in the wait table. WHAT is
 *     what the parking call said it waits for: "mutex", "rwlock",
 *     "condvar", "event", "semaphore", "barrier", "waitgroup", "once"
 *     (moirai-sync), "channel" (moirai-transport), "join", "cancel
 *     token" (core), "sleep", "I/O", "select" (moirai-async; a fiber's
 *     channel select waits as a "select"), or
 *     "unspecified" for a plain moirai_park() (core's moirai_park_for()
 *     is how a caller says it). N is counted on CLOCK_MONOTONIC_COARSE,
 *     to within one kernel tick (at most 4 ms).
 * Fibers that ended are not listed (their structs may be cached for
 * reuse).
 *
 * The high-water mark is the deepest point the fiber's stack reached
 * since the fiber started: fiber stacks are handed out zero-filled (a
 * reused stack is re-zeroed over what its last user dirtied), so the
 * lowest non-zero word marks it, found with one mincore() call and a scan
 * of the resident pages (moirai-async's stack.h). It is exact to a word
 * for a parked or runnable fiber; for a running one it may be short by
 * the frames being written during the scan. A frame that reserved stack
 * and never wrote to its lowest part (a large unused buffer) is not seen.
 *
 * Backtraces (MOIRAI_RUNTIME_DUMP_BACKTRACES): a running fiber's stack is
 * its worker's, and the scheduler section shows it (the signal interrupts
 * the fiber's code, so the frames are the fiber's, down to its entry). A
 * parked or runnable fiber's entry reads "backtrace: not available": its
 * saved context holds only the stack pointer and the callee-saved
 * registers of its last switch, and unwinding from there would need an
 * unwinder started from a synthesised context (libunwind's
 * unw_init_local2) on a stack that another worker may resume at any
 * moment; Moirai does not do that.
 *
 * Consistency: the registry of fibers is walked under its lock, so every
 * fiber listed is alive (allocated) while it is read; each figure is one
 * atomic read, so a fiber that changes state during the dump shows either
 * state, never a mix within one field. Shutdown: once
 * moirai_runtime_destroy() has begun, a dump returns -ESHUTDOWN; a dump
 * that began earlier finishes first (destroy waits for it); a runtime
 * already destroyed gives -ESHUTDOWN, never a read of freed memory. */
#ifndef MOIRAI_ASYNC_DUMP_H
#define MOIRAI_ASYNC_DUMP_H

#include <stdio.h>

#include <moirai/async/export.h>
#include <moirai/async/runtime.h>

/* Flags of moirai_runtime_dump(). */
/* Also take backtraces of the workers that run jobs (passed on to
 * moirai_sched_dump() as MOIRAI_SCHED_DUMP_BACKTRACES; same value). */
#define MOIRAI_RUNTIME_DUMP_BACKTRACES 1u

#ifdef __cplusplus
extern "C" {
#endif

/* Writes a report of `rt` to `out` (see above) and flushes it. `flags`:
 * 0 or MOIRAI_RUNTIME_DUMP_BACKTRACES. Blocks the calling thread while it
 * writes (a fiber that calls it blocks its worker: a pthread mutex, not a
 * fiber park); while it walks the fibers, spawning a fiber that needs a
 * new fiber struct and freeing one wait for it. Any thread. Reads the
 * fibers' state racily (see above); orders nothing. Returns 0, -EINVAL
 * (NULL rt or out, unknown flags), -ESHUTDOWN (destroy has begun, or `rt`
 * is not the live runtime), or -EIO (writing to `out` failed; part of the
 * report may have been written). */
MOIRAI_ASYNC_API int moirai_runtime_dump(moirai_runtime_t *rt, FILE *out, unsigned flags);

#ifdef __cplusplus
}
#endif

#endif
