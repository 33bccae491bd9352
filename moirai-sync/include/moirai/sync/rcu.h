/* Safe memory reclamation for Moirai's lock-free containers, through
 * liburcu's memb flavour.
 *
 * Moirai's lock-free stack, queue and map free a removed node only after a
 * grace period: once every thread that might still be reading it has left
 * its read-side critical section. liburcu's memb flavour needs each thread
 * that reads to be registered. Moirai does that for you: the first Moirai
 * call that reads under RCU on a thread registers it, and the thread is
 * unregistered automatically when it exits (a pthread key destructor).
 * A foreign thread therefore needs to call nothing. It may call
 * moirai_rcu_thread_register() up front to move the one-time cost out of a
 * hot path, and must call moirai_rcu_thread_unregister() itself only if it
 * leaves by a path that skips pthread key destructors (for example a
 * longjmp out of the thread function that never returns).
 *
 * Memory ordering: everything written before moirai_rcu_read_unlock() by
 * readers happens-before the reclamation callbacks of a grace period that
 * starts after it, as liburcu guarantees. */
#ifndef MOIRAI_SYNC_RCU_H
#define MOIRAI_SYNC_RCU_H

#include <moirai/sync/export.h>

/* Embed this in an object that will be reclaimed after a grace period. Its
 * fields belong to moirai_rcu_call() until the callback runs. */
typedef struct moirai_rcu_head {
    struct moirai_rcu_head *next;               /* liburcu's call_rcu queue link */
    void (*func)(struct moirai_rcu_head *head); /* what liburcu calls: Moirai's trampoline */
    void (*cb)(struct moirai_rcu_head *head);   /* the caller's callback */
} moirai_rcu_head_t;

/* A reclamation callback: receives the head given to moirai_rcu_call(), from
 * which it finds the enclosing object (offsetof) to free it. */
typedef void (*moirai_rcu_cb)(moirai_rcu_head_t *head);

#ifdef __cplusplus
extern "C" {
#endif

/* Registers the calling thread with RCU if it is not already; idempotent.
 * Returns 0, or -ENOMEM if the thread-exit hook could not be set up. */
MOIRAI_SYNC_API int moirai_rcu_thread_register(void);

/* Unregisters the calling thread if it is registered; idempotent. Must not
 * be called inside a read-side critical section. */
MOIRAI_SYNC_API void moirai_rcu_thread_unregister(void);

/* Enters / leaves a read-side critical section (nestable; registers the
 * thread on first use). Never blocks. Objects reachable from an
 * RCU-protected pointer read inside stay valid until the matching unlock. */
MOIRAI_SYNC_API void moirai_rcu_read_lock(void);
MOIRAI_SYNC_API void moirai_rcu_read_unlock(void);

/* Waits for a full grace period. Blocks; must not be called inside a
 * read-side critical section. */
MOIRAI_SYNC_API void moirai_rcu_synchronize(void);

/* Calls `fn(head)` on liburcu's call_rcu thread after a grace period.
 * Never blocks (may allocate inside liburcu on first use per thread).
 * Memory ordering: everything the calling thread did before this call, and
 * every read-side critical section that ended before the grace period,
 * happens-before `fn` runs (ThreadSanitizer is told so too, so a callback
 * that frees the object is not reported as racing with its readers). */
MOIRAI_SYNC_API void moirai_rcu_call(moirai_rcu_head_t *head, moirai_rcu_cb fn);

/* Waits until every callback queued with moirai_rcu_call() before this
 * call has run. Blocks; use before unloading or at shutdown. */
MOIRAI_SYNC_API void moirai_rcu_barrier(void);

#ifdef __cplusplus
}
#endif

#endif
