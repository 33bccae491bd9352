/* RCU plumbing shared by moirai-sync's lock-free containers (internal,
 * never installed).
 *
 * Two things live here:
 *
 * 1. A fast path for "this thread is registered with RCU", so the stack,
 *    the queue and the map pay one thread-local load per operation for
 *    automatic registration, and read-side sections for registered threads.
 *
 * 2. A node cache, used by the stack of `void *` items (moirai_stack_t),
 *    which stores each item in a small node it allocates. A node that
 *    leaves the stack may still be read by a thread that lost a race for
 *    it, so it is retired, not freed: it becomes reusable only after an RCU
 *    grace period, which is what makes the Treiber stack ABA-safe. Paying
 *    moirai_malloc() and a call_rcu() per item would cost more than the
 *    lock-free operation itself, so retired nodes are collected per thread,
 *    handed to call_rcu() a batch at a time, and after the grace period go
 *    to a process-wide depot from which allocating threads take them back.
 *    (liburcu's call_rcu thread runs a batch every 10 ms or so, so a
 *    recycled node is cold in cache: the intrusive moirai_node_stack_t,
 *    whose caller decides when to reuse, is the fast stack.)
 *
 * ThreadSanitizer cannot see liburcu 0.13's grace periods (the library is
 * not instrumented and orders readers with membarrier()). We model them: every
 * read-side unlock releases a sync object and every grace-period completion
 * we observe (synchronize, barrier, our own reclamation callbacks) acquires
 * it, which is exactly the ordering RCU guarantees. */
#ifndef MOIRAI_SYNC_RCU_INTERNAL_H
#define MOIRAI_SYNC_RCU_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* liburcu's inline read-side fast path (see moirai__rcu_read_lock()).
 * liburcu's README allows _LGPL_SOURCE in code under an LGPL- or
 * GPL-compatible licence, which MIT is; what it inlines is the few-line
 * read-side lock and unlock. */
#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE
#endif
#include <urcu/urcu-memb.h>

#ifdef CONFIG_RCU_TLS
/* liburcu-memb is loaded with the program (we link it), so its reader
 * state can be reached with one %fs-relative load instead of a
 * __tls_get_addr() call per read-side lock and unlock. */
extern __thread struct urcu_reader urcu_memb_reader __attribute__((tls_model("initial-exec")));
#endif

#include <moirai/core/cache.h>
#include <moirai/sync/rcu.h>

#if defined(__SANITIZE_THREAD__)
#define MOIRAI_RCU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MOIRAI_RCU_TSAN 1
#endif
#endif

#define MOIRAI__LIKELY(x)   __builtin_expect(!!(x), 1)
#define MOIRAI__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* A container node. 40 bytes: every field has one owner at a time.
 *   next  the container's link. Atomic because a thread that lost a race
 *         for this node may still load it after the node has been removed.
 *   item  the user's item; written before the node is published, read by
 *         the thread that removes it (or, in the queue, by dequeuers racing
 *         for it before their CAS).
 *   link  private chains: a thread's free list, its retirement batch, a
 *         depot batch.
 *   u     while a retirement batch waits for its grace period its first
 *         node lends `rcu` to liburcu and its second node holds the
 *         batch's last node and length in `batch` (so that reclaiming a
 *         batch touches two nodes, not all of them); afterwards the first
 *         node keeps them. */
typedef struct moirai__node {
    _Atomic(struct moirai__node *) next;
    void *item;
    struct moirai__node *link;
    union {
        struct rcu_head rcu; /* liburcu's own head: the batch reclaim needs no trampoline */
        struct {
            struct moirai__node *tail;
            size_t count;
        } batch;
    } u;
} moirai__node_t;

/* Per-thread state. `registered` is set once the thread is registered with
 * liburcu and its exit hook is armed. */
typedef struct moirai__rcu_tls {
    bool registered;
    moirai__node_t *free_list; /* ready for reuse: grace period passed */
    size_t free_count;
    moirai__node_t *retired;      /* removed, waiting to be handed to call_rcu */
    moirai__node_t *retired_last; /* the oldest of them, end of the chain */
    size_t retired_count;
} moirai__rcu_tls_t;

/* initial-exec: one %fs-relative load instead of a __tls_get_addr() call;
 * the library is small and linked at start-up, which that model needs. */
extern __thread moirai__rcu_tls_t moirai__rcu_tls
    __attribute__((visibility("hidden"), tls_model("initial-exec")));

/* Number of retired nodes handed to call_rcu() at once. */
#define MOIRAI__RETIRE_BATCH 128

/* Registers the calling thread if needed: 0 or -ENOMEM. */
int moirai__rcu_register_slow(void);

static inline int moirai__rcu_ensure(void)
{
    if (MOIRAI__LIKELY(moirai__rcu_tls.registered))
        return 0;
    return moirai__rcu_register_slow();
}

#ifdef MOIRAI_RCU_TSAN
#include <sanitizer/tsan_interface.h>
/* The object through which read-side unlocks release and grace-period
 * completions acquire (see the top of this file). */
extern char moirai__rcu_tsan_sync __attribute__((visibility("hidden")));
#define MOIRAI__RCU_TSAN_RELEASE() __tsan_release(&moirai__rcu_tsan_sync)
#define MOIRAI__RCU_TSAN_ACQUIRE() __tsan_acquire(&moirai__rcu_tsan_sync)
#else
#define MOIRAI__RCU_TSAN_RELEASE() ((void)0)
#define MOIRAI__RCU_TSAN_ACQUIRE() ((void)0)
#endif

/* Read-side critical section for a thread known to be registered: inline,
 * one thread-local load and store each (plus, on unlock, a check whether a
 * grace period waits for us). */

static inline void moirai__rcu_read_lock(void)
{
    urcu_memb_read_lock();
}

static inline void moirai__rcu_read_unlock(void)
{
    MOIRAI__RCU_TSAN_RELEASE();
    urcu_memb_read_unlock();
}

/* Takes a node from the cache (or allocates one); NULL when out of memory.
 * Registers the thread so that its cache is released when it exits. The
 * node's fields are unspecified. */
moirai__node_t *moirai__node_alloc_slow(void);

static inline moirai__node_t *moirai__node_alloc(void)
{
    moirai__rcu_tls_t *t = &moirai__rcu_tls;
    moirai__node_t *n = t->free_list;
    if (MOIRAI__LIKELY(n != NULL)) {
        moirai__node_t *next = n->link;
        t->free_list = next;
        t->free_count--;
        /* Nodes come back cold (a grace period is milliseconds): start
         * fetching the next one now, for the next allocation. */
        if (next != NULL)
            __builtin_prefetch(next, 1);
        return n;
    }
    return moirai__node_alloc_slow();
}

/* Returns a node that was never published (or whose container is being
 * destroyed, so that no reader can exist) straight to this thread's cache. */
void moirai__node_release(moirai__node_t *n);

/* Hands a removed node over for reuse after a grace period. The caller must
 * be registered (it removed the node under moirai__rcu_read_lock()). Never
 * blocks. */
void moirai__node_retire_flush(void);

static inline void moirai__node_retire(moirai__node_t *n)
{
    moirai__rcu_tls_t *t = &moirai__rcu_tls;
    n->link = t->retired;
    if (t->retired == NULL)
        t->retired_last = n;
    t->retired = n;
    if (MOIRAI__UNLIKELY(++t->retired_count >= MOIRAI__RETIRE_BATCH))
        moirai__node_retire_flush();
}

#endif
