/* RCU glue over liburcu's memb flavour, and the node cache of the lock-free
 * containers (see rcu_internal.h for the design). */
#include "rcu_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <moirai/core/alloc.h>
#include <moirai/sync/rcu.h>
#include <moirai/sync/stack.h>

/* moirai_rcu_head_t is handed to liburcu as a struct rcu_head, so it must
 * begin with the same layout: a wfcqueue link and liburcu's callback. */
_Static_assert(sizeof(moirai_rcu_head_t) >= sizeof(struct rcu_head),
               "moirai_rcu_head_t must contain struct rcu_head");
_Static_assert(_Alignof(moirai_rcu_head_t) == _Alignof(struct rcu_head),
               "moirai_rcu_head_t must match struct rcu_head");
_Static_assert(offsetof(moirai_rcu_head_t, next) == offsetof(struct rcu_head, next),
               "moirai_rcu_head_t.next must overlay struct rcu_head.next");
_Static_assert(sizeof(((moirai_rcu_head_t *)0)->next) == sizeof(struct cds_wfcq_node),
               "moirai_rcu_head_t.next must overlay a cds_wfcq_node");
_Static_assert(offsetof(moirai_rcu_head_t, func) == offsetof(struct rcu_head, func),
               "moirai_rcu_head_t.func must overlay struct rcu_head.func");

__thread moirai__rcu_tls_t moirai__rcu_tls;

#ifdef MOIRAI_RCU_TSAN
char moirai__rcu_tsan_sync;
#endif

/* The pthread key whose destructor unregisters a thread when it exits.
 * Its value is never read; a non-NULL value only arms the destructor. */
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static int exit_key_err;

/* Depot of node batches whose grace period has passed, linked through the
 * first node's `item` field (free for reuse once the grace period is over).
 * Allocating threads take the whole depot with one exchange, which is
 * ABA-free, unlike popping a single batch. Its size is bounded so that a
 * burst of removals does not pin memory forever: beyond 128Ki nodes (about
 * 6 MiB with malloc's overhead) batches are freed. The count is
 * approximate (relaxed): it only bounds memory. */
#define DEPOT_MAX_NODES ((size_t)1 << 17)
static _Atomic(moirai__node_t *) depot;
static _Atomic size_t depot_nodes;

static void thread_exit(void *arg)
{
    (void)arg;
    moirai_rcu_thread_unregister();
}

static void exit_key_init(void)
{
    exit_key_err = pthread_key_create(&exit_key, thread_exit);
}

int moirai__rcu_register_slow(void)
{
    moirai__rcu_tls_t *t = &moirai__rcu_tls;
    if (t->registered)
        return 0;
    if (pthread_once(&exit_key_once, exit_key_init) != 0 || exit_key_err != 0)
        return -ENOMEM;
    /* Arm the exit hook before registering, so that a registered thread
     * always gets unregistered: liburcu keeps a pointer to the thread's
     * reader state, which dies with the thread. */
    if (pthread_setspecific(exit_key, t) != 0)
        return -ENOMEM;
    urcu_memb_register_thread();
    t->registered = true;
    return 0;
}

/* Used where the API has no error return. The exit hook can only fail to
 * arm when the process uses more than 32 pthread keys and memory runs out;
 * going on unregistered would let a grace period end under a reader. */
static void register_or_abort(void)
{
    if (MOIRAI__UNLIKELY(moirai__rcu_ensure() != 0)) {
        fputs("moirai: cannot register this thread with RCU (out of memory)\n", stderr);
        abort();
    }
}

/* Frees a chain of nodes linked through `link` (a free list, or a batch
 * whose grace period has passed). */
static void free_chain(moirai__node_t *n)
{
    while (n != NULL) {
        moirai__node_t *next = n->link;
        moirai_free(n);
        n = next;
    }
}

/* Frees this thread's free list. */
static void free_list_release(moirai__rcu_tls_t *t)
{
    free_chain(t->free_list);
    t->free_list = NULL;
    t->free_count = 0;
}

int moirai_rcu_thread_register(void)
{
    return moirai__rcu_ensure();
}

void moirai_rcu_thread_unregister(void)
{
    moirai__rcu_tls_t *t = &moirai__rcu_tls;
    if (!t->registered)
        return;
    /* call_rcu() needs a registered caller, so hand the last batch over
     * before leaving. */
    moirai__node_retire_flush();
    free_list_release(t);
    urcu_memb_unregister_thread();
    t->registered = false;
    /* Disarm the exit hook (a no-op when called from it). */
    (void)pthread_setspecific(exit_key, NULL);
}

void moirai_rcu_read_lock(void)
{
    register_or_abort();
    urcu_memb_read_lock();
}

void moirai_rcu_read_unlock(void)
{
    moirai__rcu_read_unlock();
}

void moirai_rcu_synchronize(void)
{
    urcu_memb_synchronize_rcu();
    MOIRAI__RCU_TSAN_ACQUIRE();
}

/* What liburcu calls for a moirai_rcu_call(): the grace period is over,
 * which ThreadSanitizer cannot see through liburcu (uninstrumented), so it
 * is told here, before the caller's callback frees what readers used. */
static void rcu_trampoline(struct rcu_head *rh)
{
    moirai_rcu_head_t *head = (moirai_rcu_head_t *)rh;
    MOIRAI__RCU_TSAN_ACQUIRE();
    head->cb(head);
}

void moirai_rcu_call(moirai_rcu_head_t *head, moirai_rcu_cb fn)
{
    /* liburcu's call_rcu() enters a read-side critical section itself. */
    register_or_abort();
    head->cb = fn;
    MOIRAI__RCU_TSAN_RELEASE();
    /* The head begins with a struct rcu_head (asserted above). */
    urcu_memb_call_rcu((struct rcu_head *)head, rcu_trampoline);
}

void moirai_rcu_barrier(void)
{
    register_or_abort();
    urcu_memb_barrier();
    MOIRAI__RCU_TSAN_ACQUIRE();
}

/* ---- node cache ---- */

/* Runs on liburcu's call_rcu thread once the batch's grace period is over:
 * no thread can still hold a reference to any of its nodes. */
static void batch_reclaim(struct rcu_head *head)
{
    MOIRAI__RCU_TSAN_ACQUIRE();
    moirai__node_t *first = (moirai__node_t *)((char *)head - offsetof(moirai__node_t, u.rcu));
    moirai__node_t *second = first->link;
    moirai__node_t *last = second != NULL ? second->u.batch.tail : first;
    size_t count = second != NULL ? second->u.batch.count : 1;
    if (atomic_load_explicit(&depot_nodes, memory_order_relaxed) + count > DEPOT_MAX_NODES) {
        free_chain(first);
        return;
    }
    /* liburcu is done with the rcu head (callbacks may free it). */
    first->u.batch.tail = last;
    first->u.batch.count = count;
    atomic_fetch_add_explicit(&depot_nodes, count, memory_order_relaxed);
    moirai__node_t *old = atomic_load_explicit(&depot, memory_order_relaxed);
    do {
        first->item = old;
        /* release: the taker's acquire exchange sees the batch's links and
         * (through the acquire above) every reader's last access. */
    } while (!atomic_compare_exchange_weak_explicit(&depot, &old, first, memory_order_release,
                                                    memory_order_relaxed));
}

moirai__node_t *moirai__node_alloc_slow(void)
{
    if (moirai__rcu_ensure() != 0)
        return NULL;
    moirai__rcu_tls_t *t = &moirai__rcu_tls;
    /* Peek first (relaxed) so that an empty depot costs no write. */
    if (atomic_load_explicit(&depot, memory_order_relaxed) != NULL) {
        moirai__node_t *b = atomic_exchange_explicit(&depot, NULL, memory_order_acquire);
        size_t got = 0;
        while (b != NULL) {
            moirai__node_t *next_batch = b->item;
            b->u.batch.tail->link = t->free_list;
            t->free_list = b;
            got += b->u.batch.count;
            b = next_batch;
        }
        atomic_fetch_sub_explicit(&depot_nodes, got, memory_order_relaxed);
        t->free_count += got;
        moirai__node_t *n = t->free_list;
        if (n != NULL) {
            t->free_list = n->link;
            t->free_count--;
            return n;
        }
    }
    return moirai_malloc(sizeof(moirai__node_t));
}

void moirai__node_release(moirai__node_t *n)
{
    moirai__rcu_tls_t *t = &moirai__rcu_tls;
    if (!t->registered) {
        /* No exit hook would return it: give it back to the allocator. */
        moirai_free(n);
        return;
    }
    n->link = t->free_list;
    t->free_list = n;
    t->free_count++;
}

void moirai__node_retire_flush(void)
{
    moirai__rcu_tls_t *t = &moirai__rcu_tls;
    moirai__node_t *first = t->retired;
    if (first == NULL)
        return;
    /* The second node's `u` is free while the batch waits: it carries the
     * batch's end and length to batch_reclaim(). */
    moirai__node_t *second = first->link;
    if (second != NULL) {
        second->u.batch.tail = t->retired_last;
        second->u.batch.count = t->retired_count;
    }
    t->retired = NULL;
    t->retired_last = NULL;
    t->retired_count = 0;
    MOIRAI__RCU_TSAN_RELEASE();
    urcu_memb_call_rcu((struct rcu_head *)&first->u.rcu, batch_reclaim);
}

void moirai_stack_cache_trim(void)
{
    moirai__rcu_tls_t *t = &moirai__rcu_tls;
    /* Hand this thread's retired nodes over, then let every pending batch
     * pass its grace period, so that they all reach the depot (or are
     * freed) before it is emptied. */
    if (t->registered)
        moirai__node_retire_flush();
    moirai_rcu_barrier();
    free_list_release(t);
    /* acquire: pairs with batch_reclaim()'s release, so the batches'
     * links are visible. */
    moirai__node_t *b = atomic_exchange_explicit(&depot, NULL, memory_order_acquire);
    size_t freed = 0;
    while (b != NULL) {
        moirai__node_t *next_batch = b->item;
        freed += b->u.batch.count;
        free_chain(b); /* a batch's chain ends at its last node */
        b = next_batch;
    }
    atomic_fetch_sub_explicit(&depot_nodes, freed, memory_order_relaxed);
}
