/* The injector: where work from outside the pool, and work with a priority
 * other than NORMAL, waits (internal; the rules users see are in sched.h).
 *
 * One FIFO per priority level (moirai_queue_t, a lock-free MPMC queue),
 * plus per-level counts, all five in one cache line (the summary: a worker
 * that finds the injector empty reads that one line), and a per-level
 * "served since" time stamp for aging.
 *
 * Counts are raised before the job is pushed and lowered after it is
 * popped, so a count may briefly say "something is there" while a pop
 * still finds nothing (a push in flight); never the other way round. The
 * idle protocol relies on that: a worker about to sleep that sees a
 * non-zero summary keeps searching instead.
 *
 * Thread-safety: every function but init and fini may be called from any
 * thread at once. */
#ifndef MOIRAI_SCHED_INJECTOR_H
#define MOIRAI_SCHED_INJECTOR_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/core/task.h>
#include <moirai/sync/queue.h>

#include "job.h"

typedef struct moirai__injector {
    /* Jobs per level, pushed or being pushed and not yet popped. All five
     * share one cache line, which is the summary: a worker checks the
     * injector by reading that one line, and a push updates only it. */
    alignas(64) _Atomic int64_t count[MOIRAI_PRIORITY_COUNT];
    /* When a job of the level was last taken or the level became
     * non-empty (aging). Written by poppers; its own line. */
    alignas(64) _Atomic uint64_t since[MOIRAI_PRIORITY_COUNT];
    /* Read-only after init. */
    alignas(64) moirai_queue_t *queue[MOIRAI_PRIORITY_COUNT];
    uint64_t aging_ns; /* 0: strict levels */
} moirai__injector_t;

/* Creates the level queues. Returns 0 or -ENOMEM (nothing left allocated). */
int moirai__injector_init(moirai__injector_t *inj, uint64_t aging_ns);

/* Frees the queues. The jobs still queued are not touched (the caller
 * drains them first with moirai__injector_pop()). No other thread may use
 * the injector any more. */
void moirai__injector_fini(moirai__injector_t *inj);

/* Appends `job` to level `prio` (0 CRITICAL .. 4 BACKGROUND). Never blocks.
 * The count update is a seq_cst read-modify-write: a spawner that then
 * reads the idle state (seq_cst) either sees a worker that announced it is
 * going to sleep, or that worker's re-check sees the count (Dekker).
 * Release: the popper sees everything written before the push. Returns 0
 * or -ENOMEM (the queue needed a segment; nothing was queued and the
 * counts are back where they were). */
int moirai__injector_push(moirai__injector_t *inj, moirai__job_t *job, int prio);

/* True when the injector may hold a job: relaxed loads of the five
 * counts, all in one cache line (a hint, exact only when no push or pop
 * is in flight). */
static inline bool moirai__injector_maybe(const moirai__injector_t *inj)
{
    int64_t any = 0;
    for (int l = 0; l < MOIRAI_PRIORITY_COUNT; l++)
        any |= atomic_load_explicit(&inj->count[l], memory_order_relaxed);
    return any != 0;
}

/* As moirai__injector_maybe(), with seq_cst loads: the re-check of a
 * worker about to sleep, after its seq_cst announcement (see
 * moirai__injector_push()). */
static inline bool moirai__injector_maybe_seq_cst(const moirai__injector_t *inj)
{
    int64_t any = 0;
    for (int l = 0; l < MOIRAI_PRIORITY_COUNT; l++)
        any |= atomic_load_explicit(&inj->count[l], memory_order_seq_cst);
    return any != 0;
}

/* Takes the oldest job of the level with the most urgent effective
 * priority (see sched.h for aging), but only if that effective priority
 * is more urgent than (numerically below) `below`; pass
 * MOIRAI_PRIORITY_COUNT to take from any level. Returns NULL when there is
 * no such job, or when the job of the chosen level is still being pushed.
 * Never blocks. Acquire: the caller sees what the pusher wrote. */
moirai__job_t *moirai__injector_pop(moirai__injector_t *inj, int below);

/* As moirai__injector_pop(), but when the chosen level is NORMAL it takes
 * up to `max` of its oldest jobs at once (and no more than the level's
 * count divided by `share`, plus one, so that `share` workers get similar
 * batches), oldest first in `out`. One update of the counts per batch.
 * Returns how many were taken (0 as pop's NULL). */
size_t moirai__injector_pop_many(moirai__injector_t *inj, int below, moirai__job_t **out,
                                 size_t max, int share);

#endif
