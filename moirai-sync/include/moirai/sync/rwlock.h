/* Read-write lock: readers in parallel on separate cache lines, writers
 * preferred.
 *
 * Readers announce themselves in one of MOIRAI_RWLOCK_READER_SLOTS counters,
 * each on its own cache line; a thread always uses the same slot. Two
 * readers on different slots therefore never write the same cache line,
 * which is what makes read-mostly workloads scale (a single shared reader
 * count bounces between CPUs on every lock and unlock). A writer first
 * takes the writer lock, then raises the "writer" flag, which turns new
 * readers away, and waits for the announced readers to drain. Writers are
 * therefore never starved by a stream of readers; readers get in between
 * two writers, because a writer lowers the flag before handing the writer
 * lock on. Waiting goes through moirai-core's parking layer.
 *
 * Not recursive: a thread that holds a read lock and asks for it again may
 * deadlock against a waiting writer. A read lock must be released by the
 * thread that took it (the slot is per thread). Misuse is undefined and is
 * reported by the ThreadSanitizer build.
 *
 * Memory ordering: a successful read lock acquires everything released by
 * the previous write unlock; a successful write lock acquires everything
 * released by previous write unlocks and read unlocks. Unlocks release.
 * Failed try and timed attempts order nothing.
 *
 * Storage: (1 + MOIRAI_RWLOCK_READER_SLOTS) * 64 = 576 bytes, embeddable
 * (no allocation); set up with MOIRAI_RWLOCK_INIT or moirai_rwlock_init().
 * Use a moirai_mutex_t where memory matters more than read scaling. */
#ifndef MOIRAI_SYNC_RWLOCK_H
#define MOIRAI_SYNC_RWLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/atomic.h>
#include <moirai/core/clock.h>
#include <moirai/sync/export.h>
#include <moirai/sync/mutex.h>

/* Number of reader counters (a power of two). More slots spread more
 * reader threads over separate cache lines; threads beyond that share. */
#define MOIRAI_RWLOCK_READER_SLOTS 8

/* Every field is private: use only the functions below. The counters sit
 * 64 bytes apart, which keeps them on distinct cache lines whatever the
 * alignment of the enclosing object. */
typedef struct moirai_rwlock {
    moirai_mutex_t priv_writer;         /* serialises writers */
    MOIRAI_ATOMIC(uint32_t) priv_flags; /* writer present, parked readers, parked writer */
    unsigned char priv_pad[56];         /* puts the reader slots 64 bytes in */
    struct {
        MOIRAI_ATOMIC(uint32_t) count; /* readers announced in this slot */
        unsigned char pad[60];
    } priv_slots[MOIRAI_RWLOCK_READER_SLOTS]; /* one reader counter per 64 bytes */
} moirai_rwlock_t;

/* Static initializer; equivalent to moirai_rwlock_init(). */
#define MOIRAI_RWLOCK_INIT                                                                         \
    {                                                                                              \
        .priv_writer = MOIRAI_MUTEX_INIT                                                           \
    }

#ifdef __cplusplus
extern "C" {
#endif

/* Initializes `rwlock` as unlocked. No other thread may use it yet. */
MOIRAI_SYNC_API void moirai_rwlock_init(moirai_rwlock_t *rwlock);

/* Ends the life of an unlocked, unused `rwlock` (for the ThreadSanitizer
 * build, and to drop its contention statistics, moirai/sync/lockstat.h;
 * releases nothing else). */
MOIRAI_SYNC_API void moirai_rwlock_destroy(moirai_rwlock_t *rwlock);

/* Acquires `rwlock` for reading, together with other readers. Blocks
 * (spins briefly, then parks) while a writer holds it or is waiting for
 * readers to drain. Acquire ordering. Thread-safe. */
MOIRAI_SYNC_API void moirai_rwlock_rdlock(moirai_rwlock_t *rwlock);

/* Acquires `rwlock` for reading if no writer holds or awaits it. Never
 * blocks. Returns true when the read lock is held (acquire), else false. */
MOIRAI_SYNC_API bool moirai_rwlock_try_rdlock(moirai_rwlock_t *rwlock);

/* As moirai_rwlock_rdlock(), giving up at `deadline` (absolute, on
 * moirai_clock_now_ns()'s scale; MOIRAI_DEADLINE_NEVER for none). Blocks.
 * Returns 0 with the read lock held (acquire), or -ETIMEDOUT without it. */
MOIRAI_SYNC_API int moirai_rwlock_rdlock_timed(moirai_rwlock_t *rwlock, uint64_t deadline);

/* Releases a read lock the calling thread holds. Never blocks; makes a
 * system call only when a writer is parked waiting for readers to drain.
 * Release ordering (towards the next writer). */
MOIRAI_SYNC_API void moirai_rwlock_rdunlock(moirai_rwlock_t *rwlock);

/* Acquires `rwlock` exclusively. Blocks (spins, then parks) until the
 * other writers are done and the readers have drained; new readers wait
 * from the moment this writer raises its flag. Acquire ordering. */
MOIRAI_SYNC_API void moirai_rwlock_wrlock(moirai_rwlock_t *rwlock);

/* Acquires `rwlock` exclusively if it is free of readers and writers right
 * now. Never blocks. Returns true when held (acquire), else false (readers
 * briefly turned away during the attempt retry by themselves). */
MOIRAI_SYNC_API bool moirai_rwlock_try_wrlock(moirai_rwlock_t *rwlock);

/* As moirai_rwlock_wrlock(), giving up at `deadline`. Blocks. Returns 0
 * with the lock held (acquire), or -ETIMEDOUT without it (waiting readers
 * are let in again). */
MOIRAI_SYNC_API int moirai_rwlock_wrlock_timed(moirai_rwlock_t *rwlock, uint64_t deadline);

/* Releases the write lock the caller holds, letting readers and the next
 * writer in. Never blocks; makes a system call only when someone is
 * parked. Release ordering. */
MOIRAI_SYNC_API void moirai_rwlock_wrunlock(moirai_rwlock_t *rwlock);

#ifdef __cplusplus
}
#endif

#endif
