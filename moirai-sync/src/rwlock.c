/* Read-write lock with per-thread reader slots and writer preference.
 *
 * Shape: a distributed reader indicator (as in Hsieh and Weihl's
 * per-processor reader counts, or Linux's percpu-rwsem) in front of a
 * writer mutex.
 *
 *   reader enter:  slot += 1; if flags has WRITER: slot -= 1, wait until
 *                  WRITER clears, retry.
 *   reader exit:   slot -= 1; if a writer is parked draining: wake it.
 *   writer enter:  lock writer mutex; flags = WRITER; wait until every
 *                  slot reads 0.
 *   writer exit:   flags = 0 (wake parked readers); unlock writer mutex.
 *
 * The reader's "increment my slot, then read flags" and the writer's
 * "store flags, then read every slot" form a Dekker pair: with both sides
 * sequentially consistent, either the reader sees WRITER and backs off, or
 * the writer sees the reader's count and waits for it. The same pairing
 * between a reader's exit (decrement, read DRAIN_PARKED) and a draining
 * writer (set DRAIN_PARKED, park while the slot still holds the count it
 * read) means no exit goes unnoticed by a parked writer.
 *
 * Writers are never starved by readers: once WRITER is up, no new reader
 * enters, and those inside drain. Readers are not starved by writers
 * either: a writer lowers WRITER before it unlocks the writer mutex, so
 * readers woken then race the next writer fairly. */
#include <moirai/sync/rwlock.h>

#include <errno.h>
#include <stddef.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>

#include "lock_internal.h"
#include "lockstat_internal.h"
#include "tsan.h"

enum {
    WRITER = 1u,         /* a writer holds the lock or is draining readers */
    READERS_PARKED = 2u, /* readers may be parked on flags waiting for WRITER to clear */
    DRAIN_PARKED = 4u,   /* the writer may be parked on a slot waiting for readers to leave */
};

_Static_assert(sizeof(moirai_rwlock_t) == 64 * (1 + MOIRAI_RWLOCK_READER_SLOTS),
               "moirai_rwlock_t's size is part of the ABI");
_Static_assert(offsetof(moirai_rwlock_t, priv_slots) == 64, "slots start on their own line");
_Static_assert(sizeof(((moirai_rwlock_t *)0)->priv_slots[0]) == 64,
               "slot counters are 64 bytes apart, so never on one cache line");
_Static_assert((MOIRAI_RWLOCK_READER_SLOTS & (MOIRAI_RWLOCK_READER_SLOTS - 1)) == 0,
               "slot count is a power of two");

/* Slot numbers are handed out round-robin to threads on their first read
 * lock, so the first MOIRAI_RWLOCK_READER_SLOTS reader threads each own a
 * cache line. Stored plus one, so that 0 (the initial TLS value, in .tbss)
 * means "not assigned yet". initial-exec: one instruction to read, instead
 * of a __tls_get_addr call per read lock. */
static _Atomic uint32_t next_slot;
static __thread uint32_t thread_slot __attribute__((tls_model("initial-exec")));

static uint32_t assign_slot(void)
{
    /* Relaxed: only the distribution of numbers matters, not an order. */
    uint32_t s = atomic_fetch_add_explicit(&next_slot, 1, memory_order_relaxed) + 1;
    if (s == 0)
        s = 1;
    thread_slot = s;
    return s;
}

static inline _Atomic uint32_t *my_slot(moirai_rwlock_t *rw)
{
    uint32_t s = thread_slot;
    if (__builtin_expect(s == 0, 0))
        s = assign_slot();
    return &rw->priv_slots[(s - 1) & (MOIRAI_RWLOCK_READER_SLOTS - 1)].count;
}

/* Withdraws a reader announcement and wakes a writer that may be parked
 * on this slot waiting for it. */
static void read_retract(moirai_rwlock_t *rw, _Atomic uint32_t *slot)
{
    /* Seq_cst, with the load below: pairs with the writer's "set
     * DRAIN_PARKED, then park while the slot is unchanged" (see top). The
     * decrement also releases the read critical section to the writer. */
    atomic_fetch_sub_explicit(slot, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&rw->priv_flags, memory_order_seq_cst) & DRAIN_PARKED) {
        /* Called inside annotated lock operations only; the wake-up's own
         * synchronization must stay visible to TSan (see mutex.c). */
        moirai_tsan_pre_divert(rw);
        moirai_unpark_all(slot);
        moirai_tsan_post_divert(rw);
    }
}

/* Announces a reader; true when no writer is present, else withdrawn. */
static inline bool read_enter(moirai_rwlock_t *rw, _Atomic uint32_t *slot)
{
    /* Seq_cst increment then seq_cst load: the reader half of the Dekker
     * pair with the writer's store of WRITER and its reads of the slots.
     * The load is also the acquire that pairs with the release in the last
     * write unlock when it reads flags without WRITER. */
    atomic_fetch_add_explicit(slot, 1, memory_order_seq_cst);
    if (__builtin_expect(!(atomic_load_explicit(&rw->priv_flags, memory_order_seq_cst) & WRITER),
                         1))
        return true;
    read_retract(rw, slot);
    return false;
}

/* Raises WRITER before the writer reads the slots: the writer half of the
 * Dekker pair with read_enter(). Flags is 0 before it (the last writer's
 * exit cleared it; readers mark themselves parked only while WRITER is
 * up). An exchange, not a store: see CONTRIBUTING.md, "Atomics and
 * sanitizers". */
static inline void raise_writer(moirai_rwlock_t *rw)
{
    (void)atomic_exchange_explicit(&rw->priv_flags, WRITER, memory_order_seq_cst);
}

/* Waits until no writer is present and enters; -ETIMEDOUT at deadline. */
static int read_slow(moirai_rwlock_t *rw, _Atomic uint32_t *slot, uint64_t deadline)
{
    for (;;) {
        /* Relaxed: these loads only decide whether to keep waiting; the
         * ordering comes from read_enter()'s seq_cst load. */
        uint32_t f = atomic_load_explicit(&rw->priv_flags, memory_order_relaxed);
        while (f & WRITER) {
            if (!(f & READERS_PARKED)) {
                /* Announce a parked reader so the writer's unlock wakes us.
                 * Relaxed: the futex compare in park re-checks the word. */
                if (!atomic_compare_exchange_weak_explicit(&rw->priv_flags, &f, f | READERS_PARKED,
                                                           memory_order_relaxed,
                                                           memory_order_relaxed))
                    continue;
                f |= READERS_PARKED;
            }
            moirai_tsan_pre_divert(rw);
            int rc = moirai_park_for(&rw->priv_flags, f, deadline, "rwlock");
            moirai_tsan_post_divert(rw);
            f = atomic_load_explicit(&rw->priv_flags, memory_order_relaxed);
            if (rc == -ETIMEDOUT && (f & WRITER))
                return -ETIMEDOUT;
        }
        if (read_enter(rw, slot))
            return 0;
    }
}

/* read_slow(), timed for the contention statistics when they are on. */
static int read_contended(moirai_rwlock_t *rw, _Atomic uint32_t *slot, uint64_t deadline)
{
    uint64_t t0 = moirai__lockstat_start();
    int rc = read_slow(rw, slot, deadline);
    if (rc == 0)
        moirai__lockstat_acquired(rw, MOIRAI_LOCK_KIND_RWLOCK_READ, t0);
    return rc;
}

/* Lowers WRITER, wakes parked readers and hands the writer mutex on. */
static void write_exit(moirai_rwlock_t *rw)
{
    /* Release: readers that see flags without WRITER see the write
     * critical section (their seq_cst load acquires). */
    uint32_t old = atomic_exchange_explicit(&rw->priv_flags, 0, memory_order_release);
    if (old & READERS_PARKED) {
        moirai_tsan_pre_divert(rw);
        moirai_unpark_all(&rw->priv_flags);
        moirai_tsan_post_divert(rw);
    }
    moirai__mutex_unlock_raw(&rw->priv_writer);
}

/* The waiting part of write_drain(), from slot `i`, the first one it
 * found non-zero: waits for that slot and every later one to drain. On
 * success it records the contended write acquisition, whose wait began at
 * `t0` (the writer lock's own wait) or, when that is 0, now; returns 1.
 * -ETIMEDOUT at deadline, with WRITER still up. */
static int drain_wait(moirai_rwlock_t *rw, int i, uint64_t deadline, uint64_t t0)
{
    if (t0 == 0)
        t0 = moirai__lockstat_start();
    for (; i < MOIRAI_RWLOCK_READER_SLOTS; i++) {
        _Atomic uint32_t *slot = &rw->priv_slots[i].count;
        int spins = 0;
        uint32_t c;
        /* Seq_cst loads: the Dekker pair again; reading 0 is also the
         * acquire that pairs with the readers' releasing decrements. */
        while ((c = atomic_load_explicit(slot, memory_order_seq_cst)) != 0) {
            if (spins < MOIRAI__SPIN_PAUSES) {
                spins++;
                moirai_cpu_relax();
                continue;
            }
            if (!(atomic_load_explicit(&rw->priv_flags, memory_order_relaxed) & DRAIN_PARKED)) {
                /* Seq_cst: pairs with read_retract(); re-read the slot
                 * after it, so a reader that left before the bit was
                 * visible is seen by the loop condition. */
                atomic_fetch_or_explicit(&rw->priv_flags, DRAIN_PARKED, memory_order_seq_cst);
                continue;
            }
            moirai_tsan_pre_divert(rw);
            int rc = moirai_park_nospin_for(slot, c, deadline, "rwlock");
            moirai_tsan_post_divert(rw);
            if (rc == -ETIMEDOUT && atomic_load_explicit(slot, memory_order_seq_cst) != 0)
                return -ETIMEDOUT;
        }
    }
    /* Relaxed: only saves later readers a needless wake-up call. */
    atomic_fetch_and_explicit(&rw->priv_flags, ~(uint32_t)DRAIN_PARKED, memory_order_relaxed);
    moirai__lockstat_acquired(rw, MOIRAI_LOCK_KIND_RWLOCK_WRITE, t0);
    return 1;
}

/* Called with the writer mutex held: raises WRITER and waits for every
 * slot to drain. Returns 0 when no reader was in (nothing recorded), 1
 * when it had to wait (drain_wait() recorded the acquisition, its wait
 * starting at `t0` when that is not 0), -ETIMEDOUT at deadline with WRITER
 * still up. */
static int write_drain(moirai_rwlock_t *rw, uint64_t deadline, uint64_t t0)
{
    raise_writer(rw);
    for (int i = 0; i < MOIRAI_RWLOCK_READER_SLOTS; i++) {
        /* Seq_cst loads: the Dekker pair again; reading 0 is also the
         * acquire that pairs with the readers' releasing decrements. */
        if (atomic_load_explicit(&rw->priv_slots[i].count, memory_order_seq_cst) != 0)
            return drain_wait(rw, i, deadline, t0);
    }
    /* Relaxed: only saves later readers a needless wake-up call. */
    atomic_fetch_and_explicit(&rw->priv_flags, ~(uint32_t)DRAIN_PARKED, memory_order_relaxed);
    return 0;
}

/* The contended path of wrlock and wrlock_timed, after a failed first try
 * of the writer mutex: timed for the contention statistics when they are
 * on. Returns 0 with the write lock held, or -ETIMEDOUT without it. */
static int write_lock_slow(moirai_rwlock_t *rw, uint64_t deadline)
{
    uint64_t t0 = moirai__lockstat_start();
    int rc = moirai__mutex_lock_raw(&rw->priv_writer, deadline);
    if (rc != 0)
        return rc;
    rc = write_drain(rw, deadline, t0);
    if (rc == 0)
        moirai__lockstat_acquired(rw, MOIRAI_LOCK_KIND_RWLOCK_WRITE, t0);
    if (rc < 0) {
        write_exit(rw);
        return rc;
    }
    return 0;
}

void moirai_rwlock_init(moirai_rwlock_t *rwlock)
{
    /* Not moirai_mutex_init(): the writer mutex is used unannotated (the
     * rwlock is annotated as a whole) and shares the rwlock's address. */
    atomic_init(&rwlock->priv_writer.priv_state, 0);
    atomic_init(&rwlock->priv_flags, 0);
    for (int i = 0; i < MOIRAI_RWLOCK_READER_SLOTS; i++)
        atomic_init(&rwlock->priv_slots[i].count, 0);
    moirai_tsan_create(rwlock, MOIRAI_TSAN_NOT_STATIC);
}

void moirai_rwlock_destroy(moirai_rwlock_t *rwlock)
{
    moirai__lockstat_forget_if_known(rwlock);
    moirai_tsan_destroy(rwlock, MOIRAI_TSAN_NOT_STATIC);
}

void moirai_rwlock_rdlock(moirai_rwlock_t *rwlock)
{
    moirai_tsan_pre_lock(rwlock, MOIRAI_TSAN_READ);
    _Atomic uint32_t *slot = my_slot(rwlock);
    if (!read_enter(rwlock, slot))
        (void)read_contended(rwlock, slot, MOIRAI_DEADLINE_NEVER);
    moirai_tsan_post_lock(rwlock, MOIRAI_TSAN_READ);
}

bool moirai_rwlock_try_rdlock(moirai_rwlock_t *rwlock)
{
    moirai_tsan_pre_lock(rwlock, MOIRAI_TSAN_READ | MOIRAI_TSAN_TRY);
    bool ok = read_enter(rwlock, my_slot(rwlock));
    moirai_tsan_post_lock(rwlock,
                          MOIRAI_TSAN_READ | MOIRAI_TSAN_TRY | (ok ? 0u : MOIRAI_TSAN_TRY_FAIL));
    return ok;
}

int moirai_rwlock_rdlock_timed(moirai_rwlock_t *rwlock, uint64_t deadline)
{
    moirai_tsan_pre_lock(rwlock, MOIRAI_TSAN_READ | MOIRAI_TSAN_TRY);
    _Atomic uint32_t *slot = my_slot(rwlock);
    int rc = read_enter(rwlock, slot) ? 0 : read_contended(rwlock, slot, deadline);
    moirai_tsan_post_lock(rwlock, MOIRAI_TSAN_READ | MOIRAI_TSAN_TRY |
                                      (rc == 0 ? 0u : MOIRAI_TSAN_TRY_FAIL));
    return rc;
}

void moirai_rwlock_rdunlock(moirai_rwlock_t *rwlock)
{
    moirai_tsan_pre_unlock(rwlock, MOIRAI_TSAN_READ);
    read_retract(rwlock, my_slot(rwlock));
    moirai_tsan_post_unlock(rwlock, MOIRAI_TSAN_READ);
}

void moirai_rwlock_wrlock(moirai_rwlock_t *rwlock)
{
    moirai_tsan_pre_lock(rwlock, 0);
    /* A failed first try of the writer mutex, or readers to drain, take
     * the slow paths, which alone look at the contention statistics. */
    if (moirai__mutex_try_lock_raw(&rwlock->priv_writer))
        (void)write_drain(rwlock, MOIRAI_DEADLINE_NEVER, 0);
    else
        (void)write_lock_slow(rwlock, MOIRAI_DEADLINE_NEVER);
    moirai_tsan_post_lock(rwlock, 0);
}

bool moirai_rwlock_try_wrlock(moirai_rwlock_t *rwlock)
{
    moirai_tsan_pre_lock(rwlock, MOIRAI_TSAN_TRY);
    bool ok = moirai__mutex_try_lock_raw(&rwlock->priv_writer);
    if (ok) {
        /* With the seq_cst slot loads below: the writer half of the
         * Dekker pair. */
        raise_writer(rwlock);
        for (int i = 0; ok && i < MOIRAI_RWLOCK_READER_SLOTS; i++)
            ok = atomic_load_explicit(&rwlock->priv_slots[i].count, memory_order_seq_cst) == 0;
        if (!ok)
            write_exit(rwlock);
    }
    moirai_tsan_post_lock(rwlock, MOIRAI_TSAN_TRY | (ok ? 0u : MOIRAI_TSAN_TRY_FAIL));
    return ok;
}

int moirai_rwlock_wrlock_timed(moirai_rwlock_t *rwlock, uint64_t deadline)
{
    moirai_tsan_pre_lock(rwlock, MOIRAI_TSAN_TRY);
    int rc;
    if (moirai__mutex_try_lock_raw(&rwlock->priv_writer)) {
        rc = write_drain(rwlock, deadline, 0);
        if (rc < 0)
            write_exit(rwlock);
        else
            rc = 0;
    } else {
        rc = write_lock_slow(rwlock, deadline);
    }
    moirai_tsan_post_lock(rwlock, MOIRAI_TSAN_TRY | (rc == 0 ? 0u : MOIRAI_TSAN_TRY_FAIL));
    return rc;
}

void moirai_rwlock_wrunlock(moirai_rwlock_t *rwlock)
{
    moirai_tsan_pre_unlock(rwlock, 0);
    write_exit(rwlock);
    moirai_tsan_post_unlock(rwlock, 0);
}
