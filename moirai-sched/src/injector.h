/* The injector: where work from outside the pool, and work with a priority
 * other than NORMAL, waits (internal; the rules users see are in sched.h).
 *
 * One intrusive FIFO per priority level, linked through each job's own
 * `next` word (job.h), so pushing never allocates and never fails: a
 * runtime job's submit (a fiber's wake-up) must not be able to fail. Each
 * level is Vyukov's intrusive MPSC queue (a stub node, producers exchange
 * the back pointer and then link the previous back to their job) with its
 * single consumer side behind a try-lock: producers are wait-free (one
 * exchange and one store), and a worker that finds the consumer side
 * taken treats the level as momentarily empty, as a push in flight. Plus
 * per-level counts, all five in one cache line (the summary: a worker
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

#include "job.h"

/* One level's FIFO. The producers' word and the consumer's fields sit on
 * separate line pairs (the adjacent-line prefetcher moves lines in pairs). */
typedef struct moirai__injector_level {
    /* The newest job (or the stub): producers exchange it. */
    alignas(128) _Atomic(moirai__job_t *) back;
    /* The oldest job (or the stub): the consumer's, under `lock`. */
    alignas(128) moirai__job_t *front;
    _Atomic uint32_t lock; /* 1 while a worker pops from this level */
    moirai__job_t stub;    /* keeps the list non-empty (see injector.c) */
} moirai__injector_level_t;

typedef struct moirai__injector {
    /* Jobs per level, pushed or being pushed and not yet popped. All five
     * share one cache line, which is the summary: a worker checks the
     * injector by reading that one line, and a push updates only it. */
    alignas(64) _Atomic int64_t count[MOIRAI_PRIORITY_COUNT];
    /* When a job of the level was last taken or the level became
     * non-empty (aging). Written by poppers; its own line. */
    alignas(64) _Atomic uint64_t since[MOIRAI_PRIORITY_COUNT];
    /* Read-only after init. */
    alignas(64) uint64_t aging_ns; /* 0: strict levels */
    moirai__injector_level_t level[MOIRAI_PRIORITY_COUNT];
} moirai__injector_t;

/* Makes every level empty. Allocates nothing, cannot fail. */
void moirai__injector_init(moirai__injector_t *inj, uint64_t aging_ns);

/* Appends `job` to level `prio` (0 CRITICAL .. 4 BACKGROUND). Never
 * blocks, never fails, allocates nothing; `job` must not be queued
 * anywhere else until a pop returns it. The count update is a seq_cst
 * read-modify-write: a spawner that then reads the idle state (seq_cst)
 * either sees a worker that announced it is going to sleep, or that
 * worker's re-check sees the count (Dekker). Release: the popper sees
 * everything written before the push. */
void moirai__injector_push(moirai__injector_t *inj, moirai__job_t *job, int prio);

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
 * no such job, when the job of the chosen level is still being pushed, or
 * when another worker is popping from that level. Once returned, a job is
 * never touched by the injector again (its owner may push it anew).
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
