/* Dumps: a readable report of a scheduler's state, on request.
 *
 * moirai_sched_dump() writes, for one scheduler: its workers and what each
 * does (the job it runs and for how long, looking for work, or parked),
 * which workers the watchdog has flagged as stuck, the length of every
 * queue (each injector level, each worker's LIFO slot, deque and inbox,
 * the blocking pool's FIFO) and, on request, a backtrace of each worker
 * that runs a job. docs/observability.md ("Dumps") shows a sample and
 * describes every line.
 *
 * What each worker runs is known only with the watchdog on
 * (cfg.watchdog_ns, moirai/sched/sched.h): that is when workers publish
 * the name of each job they start, and the watchdog's samples give how
 * long it has run. The time is the watchdog's: "for at least N ms" counts
 * from the first sample that saw the job, so it is short by at most one
 * watchdog period (watchdog_ns / 2), and a job started since the last
 * sample reads "running "name" (not sampled yet)". Without the watchdog a
 * worker reads as "parked" or "active", with its counters.
 *
 * Every figure is read racily while the pool runs, each as one atomic
 * load: a figure is a value it really had, but two figures may come from
 * slightly different moments. Queue lengths are exact once the queues
 * are quiet (no push or pop in flight), as for a task blocked on a
 * worker with a known number queued behind it.
 *
 * Backtraces (MOIRAI_SCHED_DUMP_BACKTRACES) use glibc's backtrace(),
 * which unwinds with the unwind tables (.eh_frame) every x86-64 and
 * aarch64 object carries, so no frame pointers are needed. A worker that
 * runs a job is another thread: the dump sends it MOIRAI_SCHED_DUMP_SIGNAL,
 * whose handler takes the backtrace of the interrupted code into a
 * buffer the dump owns, and waits for it up to 200 ms. Limits, each
 * printed as "backtrace: not available (why)" instead of frames:
 *   - a worker that does not take the signal within 200 ms (it blocks
 *     the signal, or it sits in a raw system call under ThreadSanitizer,
 *     which delays signals until the thread leaves it);
 *   - a process that installed its own handler for the signal: the dump
 *     never replaces it;
 *   - idle and parked workers, which run nothing worth a backtrace.
 * A signalled worker's trace starts at the signal frame (the kernel's
 * return trampoline in libc, the first "??" line) over the interrupted
 * code; for a worker running a fiber it ends at the fiber's first frame.
 * Symbol names come from dladdr(), so only exported (dynamic) symbols are
 * named; other frames print as an address inside their object, which
 * `addr2line -e OBJECT OFFSET` resolves.
 *
 * Shutdown: from the moment moirai_sched_destroy() has begun (after its
 * argument checks passed), a dump returns -ESHUTDOWN; a dump that began
 * earlier finishes first (destroy waits for it, briefly), so a report is
 * always of a live scheduler. A pointer to a scheduler already destroyed
 * gives -ESHUTDOWN too, never a read of freed memory: live schedulers are
 * found in a process-wide registry, never through the pointer alone. (A
 * new scheduler created at the same address is, of course, dumped.) */
#ifndef MOIRAI_SCHED_DUMP_H
#define MOIRAI_SCHED_DUMP_H

#include <signal.h>
#include <stdio.h>

#include <moirai/sched/export.h>
#include <moirai/sched/sched.h>

/* Flags of moirai_sched_dump(). */
/* Also take a backtrace of each worker that runs a job (see above). */
#define MOIRAI_SCHED_DUMP_BACKTRACES 1u

/* The signal a dump with backtraces sends to a worker that runs a job:
 * SIGRTMAX - 3, a real-time signal (not a constant in glibc, hence a
 * macro that reads SIGRTMAX). */
#define MOIRAI_SCHED_DUMP_SIGNAL (SIGRTMAX - 3)

#ifdef __cplusplus
extern "C" {
#endif

/* Writes a report of `sched` to `out` (see above), as lines of text, and
 * flushes it. `flags`: 0 or MOIRAI_SCHED_DUMP_BACKTRACES. Blocks while it
 * writes (and up to 200 ms per unanswered backtrace); one dump runs at a
 * time in the process (dumps of other schedulers, and destroys, wait for
 * it). Any thread, including a worker of `sched` (its own backtrace is
 * taken directly) and a fiber. Reads the workers' state racily (see
 * above): nothing the report reads is ordered with the workers' own
 * work. Returns 0, -EINVAL (NULL sched or out, unknown flags),
 * -ESHUTDOWN (destroy has begun, or `sched` is not a live scheduler), or
 * -EIO (writing to `out` failed; part of the report may have been
 * written). */
MOIRAI_SCHED_API int moirai_sched_dump(moirai_sched_t *sched, FILE *out, unsigned flags);

/* Makes signal `signo` (SIGUSR2, say; `kill -USR2 PID`) dump every live
 * scheduler, with `flags` as moirai_sched_dump() takes them, to file
 * descriptor `fd` (STDERR_FILENO, say), followed by a line
 * "moirai-sched: N live schedulers dumped". The handler only writes one
 * byte to a pipe; a dedicated thread (started here, blocked on that pipe
 * while nothing is asked, so it costs no CPU) writes the dumps, so a
 * dump never runs inside a signal handler. Signals that arrive while a
 * dump is being written are merged into one more dump. Fibers are not
 * included: a program with a fiber runtime calls moirai_runtime_dump()
 * (moirai/async/dump.h) from its own signal-watching thread instead. For
 * the rest of the process: there is no uninstall, and the pipe and the
 * thread stay. `fd` is not closed and must stay open. Never blocks
 * (beyond starting the thread). Thread-safe. Returns 0, -EINVAL (signo
 * not a catchable signal, or MOIRAI_SCHED_DUMP_SIGNAL; fd < 0; unknown
 * flags; fd not open), -EBUSY (already installed, or the process has its own handler
 * for `signo`), -EMFILE or -ENFILE (no descriptor for the pipe or the
 * duplicate of `fd`), -ENOMEM,
 * or -EAGAIN (the thread cannot be created); on error nothing is
 * installed. */
MOIRAI_SCHED_API int moirai_sched_dump_on_signal(int signo, int fd, unsigned flags);

#ifdef __cplusplus
}
#endif

#endif
