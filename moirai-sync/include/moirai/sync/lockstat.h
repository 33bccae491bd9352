/* Lock contention statistics for moirai-sync's mutex, rwlock and spinlocks.
 *
 * Off by default. While off, the locks run exactly the code they run
 * without this feature: the switch is read only on the contended slow path
 * (after a lock's first attempt has failed), never on the uncontended fast
 * path, so an uncontended lock costs the same with the feature built in.
 *
 * While on, every contended acquisition is recorded: an acquisition is
 * contended when the lock's first attempt finds it held (for a write lock
 * of a rwlock, also when readers must drain first). The wait runs from that
 * failed attempt to the moment the lock is held, spinning and parking
 * included, read on moirai_clock_now_ns(). Acquisitions that succeed at
 * once are not counted; neither are timed attempts that give up
 * (-ETIMEDOUT) nor try attempts.
 *
 * Records live in a process-wide registry, created lazily, in two tables:
 *   per lock   keyed by the lock's address and kind (a rwlock has a read
 *              and a write record);
 *   per name   a lock may be given a name (moirai_lock_stats_name(), or
 *              MOIRAI_LOCK_STATS_NAME_HERE() for its call site); every
 *              contended acquisition of a named lock is also added to its
 *              name's record, so several locks with one name sum up. Name
 *              records outlive the locks (they keep the history of a call
 *              site when its locks come and go).
 *
 * Cost when on: two clock reads and one short critical section on an
 * internal registry lock per contended acquisition, taken after the lock
 * was acquired (so inside the caller's critical section), plus one
 * allocation the first time a lock contends. Uncontended acquisitions
 * still cost nothing extra.
 *
 * Memory: a record the registry cannot allocate is dropped, never waited
 * for: the lock is acquired as usual, the wait is not recorded, and
 * moirai_lock_stats_dropped() counts it. Recording never blocks on
 * anything but the registry's internal lock and never fails the lock.
 * A lock's per-lock records are removed by its destroy function
 * (moirai_mutex_destroy() and the others) or by moirai_lock_stats_forget();
 * call one of them before the memory of a lock that was named or contended
 * while statistics were on is reused for another lock, or the new lock
 * inherits the old one's records and name.
 *
 * Memory ordering (liburcu style, per function below): every function
 * takes the registry's internal lock, so the registry is linearizable: a
 * reader sees every record whose acquisition returned before the reader
 * started (happens before) and none that started after it returned. The
 * switch itself is a relaxed flag: a lock that contends concurrently with
 * moirai_lock_stats_enable() may or may not be recorded. */
#ifndef MOIRAI_SYNC_LOCKSTAT_H
#define MOIRAI_SYNC_LOCKSTAT_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/sync/export.h>

/* Buckets of the wait-time histogram: bucket 0 counts waits of 0 and 1 ns,
 * bucket i (1 <= i < 31) waits in [2^i, 2^(i+1)) ns, and the last bucket
 * (31) every wait of 2^31 ns (about 2.1 s) or more. */
#define MOIRAI_LOCK_STATS_BUCKETS 32

/* The longest name, in bytes, including the terminating NUL. */
#define MOIRAI_LOCK_STATS_NAME_MAX 128

/* What a record counts. */
typedef enum moirai_lock_kind {
    MOIRAI_LOCK_KIND_MUTEX = 0,        /* moirai_mutex_lock / lock_timed */
    MOIRAI_LOCK_KIND_RWLOCK_READ = 1,  /* moirai_rwlock_rdlock / rdlock_timed */
    MOIRAI_LOCK_KIND_RWLOCK_WRITE = 2, /* moirai_rwlock_wrlock / wrlock_timed */
    MOIRAI_LOCK_KIND_SPIN = 3,         /* moirai_spinlock_lock */
    MOIRAI_LOCK_KIND_TICKET = 4,       /* moirai_ticketlock_lock */
    MOIRAI_LOCK_KIND_COUNT = 5         /* the number of kinds (not a kind) */
} moirai_lock_kind_t;

/* One record: a copy, owned by the caller. */
typedef struct moirai_lock_stats {
    /* The name the lock (or, for a per-name record, the locks) carry, NULL
     * for an unnamed lock. Names are interned and never freed: the string
     * stays valid for the life of the process. */
    const char *name;
    /* The lock, for a per-lock record; NULL for a per-name sum. */
    const void *lock;
    moirai_lock_kind_t kind;
    uint64_t contended;                       /* contended acquisitions */
    uint64_t total_wait_ns;                   /* sum of their waits */
    uint64_t max_wait_ns;                     /* the longest of them */
    uint64_t hist[MOIRAI_LOCK_STATS_BUCKETS]; /* log2 histogram of the waits, sums to contended */
} moirai_lock_stats_t;

/* The callback of moirai_lock_stats_foreach(): receives one record (valid
 * only during the call); returns 0 to go on, anything else to stop. */
typedef int (*moirai_lock_stats_cb)(void *arg, const moirai_lock_stats_t *stats);

/* Names the call site: `MOIRAI_LOCK_STATS_NAME_HERE(&m)` names lock `&m`
 * "file.c:123" (this file and line). Returns what moirai_lock_stats_name()
 * returns (-ENAMETOOLONG when "file:line" does not fit
 * MOIRAI_LOCK_STATS_NAME_MAX). */
#define MOIRAI_LOCK_STATS_NAME_HERE(lock)                                                          \
    moirai_lock_stats_name((lock), __FILE__ ":" MOIRAI_LOCK_STATS_STR_(__LINE__))
/* Internal to MOIRAI_LOCK_STATS_NAME_HERE: the line number as a string
 * (two steps, so that __LINE__ is expanded before it is quoted). */
#define MOIRAI_LOCK_STATS_STR_(x) MOIRAI_LOCK_STATS_STR2_(x)
/* Internal to MOIRAI_LOCK_STATS_NAME_HERE: quotes its argument. */
#define MOIRAI_LOCK_STATS_STR2_(x) #x

#ifdef __cplusplus
extern "C" {
#endif

/* Turns recording on (`on` true) or off, for every lock in the process.
 * Never blocks. Thread-safe. Relaxed: locks contending at the same time may
 * still see the old setting; records already taken are kept (see
 * moirai_lock_stats_reset()). */
MOIRAI_SYNC_API void moirai_lock_stats_enable(bool on);

/* Whether recording is on. Never blocks. Thread-safe. Relaxed. */
MOIRAI_SYNC_API bool moirai_lock_stats_enabled(void);

/* Gives `lock` (the address of a moirai_mutex_t, moirai_rwlock_t,
 * moirai_spinlock_t or moirai_ticketlock_t) the name `name` (copied). From
 * then on its contended acquisitions are also added to the name's record;
 * naming it again moves it to the new name (what was added to the old one
 * stays there). Creates the name's record, so moirai_lock_stats_get_name()
 * knows the name from now on, with zero counts. Works whether recording is
 * on or off. May block briefly on the registry lock; allocates. Thread-safe;
 * ordered as described at the top of this file.
 * Errors: -EINVAL when `lock` or `name` is NULL or `name` is empty;
 * -ENAMETOOLONG when `name` needs more than MOIRAI_LOCK_STATS_NAME_MAX
 * bytes with its NUL; -ENOMEM when the registry cannot allocate (nothing
 * changed then). */
MOIRAI_SYNC_API int moirai_lock_stats_name(const void *lock, const char *name);

/* Removes `lock`'s per-lock records and its name (its name's record keeps
 * what was added to it). The destroy functions of the locks call it. Does
 * nothing for NULL or a lock the registry does not know. May block briefly
 * on the registry lock; never allocates. Thread-safe. */
MOIRAI_SYNC_API void moirai_lock_stats_forget(const void *lock);

/* Copies `lock`'s record of kind `kind` into `*out` (out->lock = lock,
 * out->name its name or NULL). A lock that is named, or contended in
 * another kind, but not in `kind` gives a record of zeros. May block
 * briefly on the registry lock; never allocates. Thread-safe; sees every
 * acquisition that returned before the call (see the top).
 * Errors: -EINVAL when `lock` or `out` is NULL or `kind` is not a kind;
 * -ENOENT when the registry knows nothing of `lock` (never named, never
 * contended while recording was on, or forgotten). `*out` is unchanged on
 * error. */
MOIRAI_SYNC_API int moirai_lock_stats_get(const void *lock, moirai_lock_kind_t kind,
                                          moirai_lock_stats_t *out);

/* Copies the sum over all locks named `name` of their kind-`kind`
 * acquisitions into `*out` (out->lock = NULL, out->name the interned name).
 * Same blocking, thread-safety and ordering as moirai_lock_stats_get().
 * Errors: -EINVAL when `name` or `out` is NULL or `kind` is not a kind;
 * -ENOENT when no lock was ever given the name `name` (an unknown name).
 * `*out` is unchanged on error. */
MOIRAI_SYNC_API int moirai_lock_stats_get_name(const char *name, moirai_lock_kind_t kind,
                                               moirai_lock_stats_t *out);

/* Calls `cb(arg, record)` for every non-empty record: one per name and
 * kind (the sum over the locks with that name; lock NULL), and one per
 * unnamed lock and kind (name NULL). Named locks appear only in their
 * name's sum (read one with moirai_lock_stats_get()); records with no
 * contended acquisition are skipped. Takes a snapshot first, under the
 * registry lock, and calls `cb` outside it: the callback may call any
 * function here, take any lock, and sees a consistent instant (every
 * acquisition that returned before the call, see the top). Allocates the
 * snapshot. Thread-safe.
 * Returns 0 once every record was visited, or the first non-zero value a
 * callback returned (the walk stops there). Errors: -EINVAL when `cb` is
 * NULL; -ENOMEM when the snapshot cannot be allocated (no callback ran). */
MOIRAI_SYNC_API int moirai_lock_stats_foreach(moirai_lock_stats_cb cb, void *arg);

/* Sets every count of every record, and the dropped count, to zero. Names
 * and the locks' names stay. Does not change the switch. May block briefly
 * on the registry lock. Thread-safe: an acquisition that returns
 * concurrently is counted either before (and cleared) or after. */
MOIRAI_SYNC_API void moirai_lock_stats_reset(void);

/* The number of contended acquisitions not recorded because the registry
 * could not allocate their record, since start or the last reset. Never
 * fails. Same ordering as moirai_lock_stats_get(). */
MOIRAI_SYNC_API uint64_t moirai_lock_stats_dropped(void);

#ifdef __cplusplus
}
#endif

#endif
