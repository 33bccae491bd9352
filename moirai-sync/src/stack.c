/* Treiber's lock-free stack (R. K. Treiber, "Systems Programming: Coping
 * with Parallelism", IBM RJ 5118, 1986), made ABA-safe by RCU: a popped
 * node is retired and reused only after a grace period, so while a popper
 * holds a read-side critical section the node it read cannot leave and
 * come back, and a successful CAS on `top` really means nothing changed. */
#include "rcu_internal.h"

#include <errno.h>
#include <stdalign.h>
#include <stddef.h>

#include <moirai/core/alloc.h>
#include <moirai/sync/stack.h>

struct moirai_stack {
    /* Alone on its cache line: every push and pop writes it. */
    alignas(MOIRAI_FALSE_SHARING_RANGE) _Atomic(moirai__node_t *) top;
};

int moirai_stack_create(moirai_stack_t **out)
{
    if (out == NULL)
        return -EINVAL;
    moirai_stack_t *s = moirai_aligned_alloc(MOIRAI_FALSE_SHARING_RANGE, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    atomic_init(&s->top, NULL);
    *out = s;
    return 0;
}

void moirai_stack_destroy(moirai_stack_t *stack)
{
    if (stack == NULL)
        return;
    moirai__node_t *n = atomic_load_explicit(&stack->top, memory_order_acquire);
    while (n != NULL) {
        moirai__node_t *next = atomic_load_explicit(&n->next, memory_order_relaxed);
        moirai_free(n);
        n = next;
    }
    moirai_free(stack);
}

int moirai_stack_push(moirai_stack_t *stack, void *item)
{
    moirai__node_t *n = moirai__node_alloc();
    if (n == NULL)
        return -ENOMEM;
    n->item = item;
    moirai__node_t *top = atomic_load_explicit(&stack->top, memory_order_relaxed);
    for (;;) {
        /* Relaxed: the release CAS below publishes it with the item. */
        atomic_store_explicit(&n->next, top, memory_order_relaxed);
        /* release: a popper that acquires `top` sees item and next. No
         * read-side section is needed: push dereferences no shared node. */
        if (atomic_compare_exchange_weak_explicit(&stack->top, &top, n, memory_order_release,
                                                  memory_order_relaxed))
            return 0;
#ifdef MOIRAI_MUTANT_CAS_NO_RETRY
        /* Mutant: give up after one lost race and claim success. */
        moirai__node_release(n);
        return 0;
#endif
    }
}

int moirai_stack_try_pop(moirai_stack_t *stack, void **out)
{
    int rc = moirai__rcu_ensure();
    if (rc != 0)
        return rc;
    moirai__rcu_read_lock();
    /* acquire (here and on a failed CAS, which reloads `top`): pairs with
     * the push that published the node, so `next` and `item` are visible.
     * Every later write of `top` is a read-modify-write, so it continues
     * that push's release sequence. */
    moirai__node_t *top = atomic_load_explicit(&stack->top, memory_order_acquire);
    for (;;) {
        if (top == NULL) {
            moirai__rcu_read_unlock();
            return -EAGAIN;
        }
        /* `top` may be popped by another thread meanwhile; RCU keeps it
         * from being reused, so this load is safe and, if the CAS below
         * succeeds, still current. */
        moirai__node_t *next = atomic_load_explicit(&top->next, memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&stack->top, &top, next, memory_order_acquire,
                                                  memory_order_acquire))
            break;
    }
    moirai__rcu_read_unlock();
    /* The node is ours alone now: only the winner of the CAS reads item. */
    *out = top->item;
    moirai__node_retire(top);
    return 0;
}

bool moirai_stack_is_empty(const moirai_stack_t *stack)
{
    /* Relaxed: a snapshot that dereferences nothing. */
    return atomic_load_explicit(&((moirai_stack_t *)stack)->top, memory_order_relaxed) == NULL;
}

/* ---- the intrusive stack: the same algorithm on caller-owned nodes ---- */

void moirai_node_stack_init(moirai_node_stack_t *stack)
{
    atomic_init(&stack->top, NULL);
}

void moirai_node_stack_push(moirai_node_stack_t *stack, moirai_stack_node_t *node)
{
    moirai_stack_node_t *top = atomic_load_explicit(&stack->top, memory_order_relaxed);
    for (;;) {
        atomic_store_explicit(&node->next, top, memory_order_relaxed);
        /* release: publishes the node and the caller's object. */
        if (atomic_compare_exchange_weak_explicit(&stack->top, &top, node, memory_order_release,
                                                  memory_order_relaxed))
            return;
#ifdef MOIRAI_MUTANT_CAS_NO_RETRY
        return; /* Mutant: the node is silently dropped. */
#endif
    }
}

int moirai_node_stack_try_pop(moirai_node_stack_t *stack, moirai_stack_node_t **out)
{
    int rc = moirai__rcu_ensure();
    if (rc != 0)
        return rc;
    moirai__rcu_read_lock();
    /* acquire: as in moirai_stack_try_pop(). */
    moirai_stack_node_t *top = atomic_load_explicit(&stack->top, memory_order_acquire);
    for (;;) {
        if (top == NULL) {
            moirai__rcu_read_unlock();
            return -EAGAIN;
        }
        /* Safe to read and, if the CAS succeeds, still current: the
         * caller's reuse rule keeps a popped node out until our read-side
         * section has ended. */
        moirai_stack_node_t *next = atomic_load_explicit(&top->next, memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&stack->top, &top, next, memory_order_acquire,
                                                  memory_order_acquire))
            break;
    }
    moirai__rcu_read_unlock();
    *out = top;
    return 0;
}

bool moirai_node_stack_is_empty(const moirai_node_stack_t *stack)
{
    return atomic_load_explicit(&((moirai_node_stack_t *)stack)->top, memory_order_relaxed) == NULL;
}
