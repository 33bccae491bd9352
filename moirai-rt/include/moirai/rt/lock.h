/* Real-time locks: a priority-inheritance mutex and an immediate
 * priority-ceiling mutex.
 *
 * Both stop unbounded priority inversion: a high-priority thread waiting
 * for a lock that a low-priority thread holds would otherwise also wait
 * for every medium-priority thread that preempts the holder.
 *
 *   - moirai_rt_pi_mutex_t is the kernel's priority-inheritance futex
 *     (FUTEX_LOCK_PI): the lock word holds the owner's thread id; an
 *     uncontended lock and unlock are one compare-and-swap each in user
 *     space; a contended lock sleeps in the kernel, which lends the
 *     waiter's priority to the owner until it unlocks (transitively along a
 *     chain of PI locks). Inheritance needs the threads to run under
 *     SCHED_FIFO / SCHED_RR (or SCHED_DEADLINE) to matter.
 *   - moirai_rt_ceiling_mutex_t raises its owner at once to the lock's
 *     ceiling priority (the highest priority of any thread that uses it),
 *     so nothing that also uses the lock can preempt the owner, and
 *     restores the owner's priority on unlock. The raise applies to
 *     threads under SCHED_FIFO / SCHED_RR (the RT executor's workers when
 *     an OS policy is in force); a SCHED_OTHER thread is not raised (that
 *     would need privilege and would change its class). Underneath, the
 *     lock is the same PI futex, so waiting is still inheritance-safe.
 *
 * Both feed blocking terms into the analysis (moirai_rt_analysis_blocking
 * with MOIRAI_RT_PROTOCOL_INHERIT or _CEILING; the RT executor computes
 * them from each task's declared critical sections).
 *
 * Unlike moirai_mutex_t, lock and unlock return an int: a lock taken again
 * by its owner is -EDEADLK and an unlock by a thread that does not own it
 * is -EPERM, as real-time code must not deadlock silently. Neither is
 * recursive. Memory ordering: a successful lock is an acquire, an unlock a
 * release; a failed lock orders nothing. Storage is public and fixed so
 * the locks embed anywhere; zero-filled memory is an unlocked PI mutex. */
#ifndef MOIRAI_RT_LOCK_H
#define MOIRAI_RT_LOCK_H

#include <stdint.h>

#include <moirai/rt/export.h>

/* The fields are private: use only the functions below. */
typedef struct moirai_rt_pi_mutex {
    uint32_t priv_word; /* owner tid | FUTEX_WAITERS, 0 when free */
} moirai_rt_pi_mutex_t;

/* The static initializer of an unlocked priority-inheritance mutex. */
#define MOIRAI_RT_PI_MUTEX_INIT                                                                    \
    {                                                                                              \
        0                                                                                          \
    }

/* A priority-ceiling mutex (see above). The fields are private: use only the functions below. */
typedef struct moirai_rt_ceiling_mutex {
    moirai_rt_pi_mutex_t priv_lock; /* the lock itself, a PI mutex */
    int priv_ceiling;               /* 1..99 */
    int priv_saved;                 /* owner's priority before the raise */
    int priv_raised;                /* whether lock raised the owner */
} moirai_rt_ceiling_mutex_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Initializes `mutex` as unlocked (as MOIRAI_RT_PI_MUTEX_INIT or zeroed
 * memory). Not thread-safe with respect to other uses of the mutex. */
MOIRAI_RT_API void moirai_rt_pi_mutex_init(moirai_rt_pi_mutex_t *mutex);

/* Ends the life of an unlocked mutex (tells ThreadSanitizer; frees
 * nothing). Ignores NULL. */
MOIRAI_RT_API void moirai_rt_pi_mutex_destroy(moirai_rt_pi_mutex_t *mutex);

/* Acquires `mutex`, sleeping in the kernel with priority inheritance while
 * another thread owns it (blocks). Thread-safe; acquire ordering. Returns
 * 0, -EINVAL (NULL), or -EDEADLK if the caller already owns it (nothing
 * changes). */
MOIRAI_RT_API int moirai_rt_pi_mutex_lock(moirai_rt_pi_mutex_t *mutex);

/* Acquires `mutex` only if it is free. Never blocks. Returns 0, -EBUSY
 * (another thread owns it), -EDEADLK (the caller owns it) or -EINVAL. */
MOIRAI_RT_API int moirai_rt_pi_mutex_try_lock(moirai_rt_pi_mutex_t *mutex);

/* As lock, giving up at `deadline` (absolute, moirai_clock_now_ns() scale;
 * MOIRAI_DEADLINE_NEVER waits forever). Blocks. Returns 0, -ETIMEDOUT
 * (without the lock), -EDEADLK or -EINVAL. */
MOIRAI_RT_API int moirai_rt_pi_mutex_lock_timed(moirai_rt_pi_mutex_t *mutex, uint64_t deadline);

/* Releases `mutex`; if threads wait, the kernel hands it to the most urgent
 * one and ends the inheritance. Never blocks. Release ordering. Returns
 * 0, -EINVAL (NULL) or -EPERM (the caller does not own it; nothing
 * changes). */
MOIRAI_RT_API int moirai_rt_pi_mutex_unlock(moirai_rt_pi_mutex_t *mutex);

/* Initializes `mutex` as unlocked with ceiling priority `ceiling` (1..99,
 * SCHED_FIFO's range: the highest priority of the threads that will use
 * it). Returns 0 or -EINVAL (NULL, ceiling out of range). */
MOIRAI_RT_API int moirai_rt_ceiling_mutex_init(moirai_rt_ceiling_mutex_t *mutex, int ceiling);

/* Ends the life of an unlocked ceiling mutex. Ignores NULL. */
MOIRAI_RT_API void moirai_rt_ceiling_mutex_destroy(moirai_rt_ceiling_mutex_t *mutex);

/* Acquires `mutex` and, if the caller runs under SCHED_FIFO or SCHED_RR
 * below the ceiling, raises it to the ceiling until unlock (blocks while
 * another thread owns it). Thread-safe; acquire ordering. Returns 0,
 * -EINVAL, or -EDEADLK (the caller owns it already; nothing changes). */
MOIRAI_RT_API int moirai_rt_ceiling_mutex_lock(moirai_rt_ceiling_mutex_t *mutex);

/* As lock, only if free. Never blocks. 0, -EBUSY, -EDEADLK or -EINVAL. */
MOIRAI_RT_API int moirai_rt_ceiling_mutex_try_lock(moirai_rt_ceiling_mutex_t *mutex);

/* Releases `mutex` and restores the priority the owner had before lock.
 * Never blocks. Release ordering. Returns 0, -EINVAL or -EPERM (not the
 * owner; nothing changes). Nested ceiling locks must unlock in reverse
 * order for the priorities to come back right. */
MOIRAI_RT_API int moirai_rt_ceiling_mutex_unlock(moirai_rt_ceiling_mutex_t *mutex);

/* The ceiling given at init, or -EINVAL for NULL. */
MOIRAI_RT_API int moirai_rt_ceiling_mutex_ceiling(const moirai_rt_ceiling_mutex_t *mutex);

/* How many moirai-rt locks the calling thread holds right now. Never
 * blocks. The RT executor uses it to check that a job step releases what
 * it took. */
MOIRAI_RT_API int moirai_rt_locks_held(void);

#ifdef __cplusplus
}
#endif

#endif
