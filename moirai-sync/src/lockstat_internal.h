/* The locks' side of the contention statistics (internal, never
 * installed): the switch they read on their slow paths and the call that
 * records one contended acquisition. See moirai/sync/lockstat.h for the
 * feature and lockstat.c for the registry.
 *
 * A slow path does
 *
 *     uint64_t t0 = moirai__lockstat_start();   // 0 when recording is off
 *     ... wait and acquire ...
 *     moirai__lockstat_acquired(lock, kind, t0); // no-op when t0 == 0
 *
 * and nothing is read on the fast path, which is what keeps an uncontended
 * lock's cost unchanged. Include after tsan.h's configuration (a source
 * that defines MOIRAI_TSAN_NO_ANNOTATIONS does so before any include). */
#ifndef MOIRAI_SYNC_LOCKSTAT_INTERNAL_H
#define MOIRAI_SYNC_LOCKSTAT_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/clock.h>
#include <moirai/sync/lockstat.h>

#include "tsan.h"

/* The switch. Relaxed everywhere: it only decides whether to measure; the
 * records themselves are ordered by the registry lock. Hidden (not in the
 * ABI). */
extern _Atomic bool moirai__lockstat_on;

/* Registry records for lock addresses exist (a hint, relaxed): lets a
 * destroy function skip the registry entirely when nothing was recorded. */
extern _Atomic uint64_t moirai__lockstat_locks;

/* Records one contended acquisition of `lock` of kind `kind` whose wait
 * started at `start_ns` (moirai_clock_now_ns()); ends it now. Takes the
 * registry lock; may allocate; a record it cannot allocate is counted as
 * dropped. Never fails, never waits for memory. */
void moirai__lockstat_record(const void *lock, moirai_lock_kind_t kind, uint64_t start_ns);

/* The start of a contended wait: its time when recording is on, else 0. */
static inline uint64_t moirai__lockstat_start(void)
{
    if (__builtin_expect(!atomic_load_explicit(&moirai__lockstat_on, memory_order_relaxed), 1))
        return 0;
    uint64_t now = moirai_clock_now_ns();
    return now != 0 ? now : 1;
}

/* Ends a contended wait that began at `start_ns` (0: not measured) with
 * `lock` acquired. Called inside an annotated lock operation: the
 * registry's own locking must stay visible to ThreadSanitizer, hence the
 * divert (as around parking). */
static inline void moirai__lockstat_acquired(const void *lock, moirai_lock_kind_t kind,
                                             uint64_t start_ns)
{
    if (start_ns == 0)
        return;
    moirai_tsan_pre_divert(lock);
    moirai__lockstat_record(lock, kind, start_ns);
    moirai_tsan_post_divert(lock);
}

/* For the destroy functions: forgets `lock`'s records if there may be any
 * (one relaxed load otherwise). Relaxed is enough: whoever recorded for
 * this lock used it before it is destroyed, and the program must order
 * that use before the destroy (a join, the lock itself), so the count
 * stored with the record is visible here. */
static inline void moirai__lockstat_forget_if_known(const void *lock)
{
    if (atomic_load_explicit(&moirai__lockstat_locks, memory_order_relaxed) != 0)
        moirai_lock_stats_forget(lock);
}

#endif
