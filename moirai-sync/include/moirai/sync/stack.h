/* Lock-free LIFO stacks (Treiber), in two forms:
 *
 *   moirai_stack_t       a stack of `void *` items. Each item lives in a
 *                        small node the stack allocates; a popped node is
 *                        reused only after an RCU grace period. Nodes are
 *                        recycled through a per-thread cache, so in a
 *                        steady state neither push nor pop calls the
 *                        allocator, but a recycled node is cold in cache.
 *                        Up to about 6 MiB of idle nodes are kept for
 *                        reuse process-wide; beyond that they are freed.
 *   moirai_node_stack_t  an intrusive stack: the caller embeds a
 *                        moirai_stack_node_t in its own objects. Nothing is
 *                        allocated, push cannot fail, and the caller
 *                        decides when popped nodes are reused (after a
 *                        grace period, see below), e.g. a batch at a time,
 *                        which keeps them warm. This is the fast one: a
 *                        free list, a work stack.
 *
 * Both are ABA-safe and never read freed memory for the same reason: a
 * popped node is not reused before an RCU grace period (see
 * moirai/sync/rcu.h), so while a popper is inside its read-side critical
 * section the node it read cannot leave the stack and come back. No
 * double-width CAS or tagged pointers are needed.
 *
 * Threads: nothing to do. A thread is registered with RCU on its first
 * operation that needs it (a pop; a push of an item) and unregistered
 * when it exits (see moirai/sync/rcu.h for
 * the one case where a foreign thread must call
 * moirai_rcu_thread_unregister() itself).
 *
 * Memory ordering: push is a release and a successful pop an acquire, so
 * everything the pushing thread wrote before moirai_stack_push() is
 * visible to the thread that pops that item.
 *
 * Progress: push and pop are lock-free (a thread retries only when another
 * thread's operation succeeded). Neither blocks. */
#ifndef MOIRAI_SYNC_STACK_H
#define MOIRAI_SYNC_STACK_H

#include <stdbool.h>

#include <moirai/core/atomic.h>
#include <moirai/sync/export.h>

/* A lock-free stack of `void *` items (see above). Opaque; created and destroyed by
 * the functions below. */
typedef struct moirai_stack moirai_stack_t;

/* A link of the intrusive stack: embed it in your object (anywhere) and
 * get back to the object with offsetof. Its content is the stack's. */
typedef struct moirai_stack_node {
    MOIRAI_ATOMIC(struct moirai_stack_node *) next;
} moirai_stack_node_t;

/* The intrusive stack: public fixed-size storage, so it can live in a
 * struct or a static variable. Every push and pop writes it; give it a
 * cache line of its own if other hot data would share its line. */
typedef struct moirai_node_stack {
    MOIRAI_ATOMIC(moirai_stack_node_t *) top;
} moirai_node_stack_t;

/* Static initializer of an empty moirai_node_stack_t. */
#define MOIRAI_NODE_STACK_INIT                                                                     \
    {                                                                                              \
        NULL                                                                                       \
    }

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the stack of items ---- */

/* Creates an empty stack in `*out`. Returns 0, -EINVAL if `out` is NULL, or
 * -ENOMEM (then `*out` is untouched). */
MOIRAI_SYNC_API int moirai_stack_create(moirai_stack_t **out);

/* Destroys `stack` (NULL is ignored) and the nodes still in it; the items
 * themselves are the caller's. No other thread may be using the stack. */
MOIRAI_SYNC_API void moirai_stack_destroy(moirai_stack_t *stack);

/* Pushes `item` (any value, NULL included). Never blocks; thread-safe.
 * Returns 0, or -ENOMEM when no node could be allocated (the stack is then
 * unchanged). */
MOIRAI_SYNC_API int moirai_stack_push(moirai_stack_t *stack, void *item);

/* Pops the most recently pushed item into `*out`. Never blocks;
 * thread-safe. Returns 0, -EAGAIN when the stack is empty (`*out`
 * untouched), or -ENOMEM if this thread's first RCU registration failed. */
MOIRAI_SYNC_API int moirai_stack_try_pop(moirai_stack_t *stack, void **out);

/* True when the stack held no item at the moment of the call (a snapshot:
 * other threads may change it at once). Never blocks; thread-safe. */
MOIRAI_SYNC_API bool moirai_stack_is_empty(const moirai_stack_t *stack);

/* Frees the idle nodes kept for reuse by moirai_stack_t: the calling
 * thread's cache and the process-wide one, after waiting for the nodes
 * still in their grace period (as moirai_rcu_barrier()). Other threads'
 * caches are freed when those threads exit. For a program that wants the
 * memory back after a burst, or a leak checker that wants nothing left at
 * exit. Stacks keep working; later pushes allocate again.
 * May block (a grace period); must not be called inside a read-side
 * critical section or from an RCU callback. Thread-safe. Memory ordering:
 * none the caller can observe (only idle nodes are freed). Never fails. */
MOIRAI_SYNC_API void moirai_stack_cache_trim(void);

/* ---- the intrusive stack ----
 *
 * The reuse rule: a node returned by moirai_node_stack_try_pop() must not
 * be pushed again (onto any node stack) nor freed until a grace period has
 * passed since the pop returned. Collect popped nodes and call
 * moirai_rcu_synchronize() before reusing the batch (it blocks; do it
 * outside any read-side section), or free them with moirai_rcu_call().
 * A node that was never popped (still in the stack, or never pushed) has
 * no such constraint. */

/* Initializes `stack` empty (same as MOIRAI_NODE_STACK_INIT). Not
 * thread-safe with respect to other operations on it. */
MOIRAI_SYNC_API void moirai_node_stack_init(moirai_node_stack_t *stack);

/* Pushes `node` (not in any stack; see the reuse rule). Never blocks,
 * never fails; thread-safe. Release: what the caller wrote to the object
 * before pushing is visible to the thread that pops it. */
MOIRAI_SYNC_API void moirai_node_stack_push(moirai_node_stack_t *stack, moirai_stack_node_t *node);

/* Pops the most recently pushed node into `*out`. Never blocks;
 * thread-safe; registers the thread with RCU on first use. Acquire.
 * Returns 0, -EAGAIN when the stack is empty (`*out` untouched), or
 * -ENOMEM if this thread's first RCU registration failed. */
MOIRAI_SYNC_API int moirai_node_stack_try_pop(moirai_node_stack_t *stack,
                                              moirai_stack_node_t **out);

/* True when the stack held no node at the moment of the call. */
MOIRAI_SYNC_API bool moirai_node_stack_is_empty(const moirai_node_stack_t *stack);

#ifdef __cplusplus
}
#endif

#endif
