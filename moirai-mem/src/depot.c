/* The object pool's shared depot: magazine storage, the two lock-free
 * magazine stacks (full and empty) and the orphan list.
 *
 * Threads come here once per magazine (every mag_size allocations or
 * releases at most), so this is the only shared state the pool touches in
 * steady state. The stacks are Treiber stacks (R. K. Treiber, "Systems
 * Programming: Coping with Parallelism", IBM RJ 5118, 1986) whose top word
 * carries a generation counter against ABA; see pool_stack_t. */
#include <errno.h>
#include <string.h>

#include <moirai/core/alloc.h>

#include "pool_internal.h"

void moirai__pool_stack_push(struct moirai_pool *pool, pool_stack_t *stack, pool_magazine_t *mag)
{
    (void)pool;
    /* Relaxed first read: the compare-exchange below validates it. */
    uint64_t old = atomic_load_explicit(&stack->top, memory_order_relaxed);
    uint64_t desired;
    do {
        /* Relaxed: the release on the exchange below publishes `next`
         * together with the magazine's count and rounds. */
        atomic_store_explicit(&mag->next, (uint32_t)old, memory_order_relaxed);
        desired = (((old >> 32) + 1u) << 32) | (uint64_t)(mag->index + 1u);
        /* Release: whoever pops this magazine must see its contents (and,
         * transitively, the storage segment it lives in). On failure only
         * the new top value is needed, so relaxed. */
    } while (!atomic_compare_exchange_weak_explicit(&stack->top, &old, desired,
                                                    memory_order_release, memory_order_relaxed));
}

pool_magazine_t *moirai__pool_stack_pop(struct moirai_pool *pool, pool_stack_t *stack)
{
    /* Acquire: reading the top magazine's `next` and its storage segment
     * requires the push that put it there to be visible. */
    uint64_t old = atomic_load_explicit(&stack->top, memory_order_acquire);
    for (;;) {
        uint32_t top = (uint32_t)old;
        if (top == 0)
            return NULL;
        pool_magazine_t *mag = moirai__pool_mag_at(pool, top - 1u);
        /* This may be stale if another thread popped `mag` meanwhile; the
         * generation in `old` then no longer matches and the exchange
         * fails. Magazine storage is never freed while the pool lives, so
         * the read itself is always of valid memory. */
        uint32_t next = atomic_load_explicit(&mag->next, memory_order_relaxed);
        uint64_t desired = (((old >> 32) + 1u) << 32) | (uint64_t)next;
        /* Acquire on success: the magazine's contents were released by its
         * push (the release sequence of `top` carries it through later
         * exchanges). Acquire on failure: we read the new top's magazine. */
        if (atomic_compare_exchange_weak_explicit(&stack->top, &old, desired, memory_order_acquire,
                                                  memory_order_acquire))
            return mag;
    }
}

/* Takes a magazine out of storage, adding a segment when needed. */
static pool_magazine_t *mag_new(struct moirai_pool *pool)
{
    pool_magazine_t *mag = NULL;
    pthread_mutex_lock(&pool->lock);
    if (pool->mag_used == pool->mag_room) {
        /* Segment k starts at index SEG0 * (2^k - 1) and holds SEG0 << k. */
        uint32_t k = 31u - (uint32_t)__builtin_clz(pool->mag_room / POOL_MAG_SEG0 + 1u);
        if (k >= POOL_MAG_SEGMENTS)
            goto out;
        size_t count = (size_t)POOL_MAG_SEG0 << k;
        char *seg = moirai_aligned_alloc(MOIRAI_CACHE_LINE, count * pool->mag_stride);
        if (!seg)
            goto out;
        pool->mag_segs[k] = seg;
        pool->mag_room += (uint32_t)count;
    }
    uint32_t index = pool->mag_used++;
    mag = moirai__pool_mag_at(pool, index);
    atomic_init(&mag->next, 0);
    mag->index = index;
    mag->count = 0;
    mag->reserved = 0;
out:
    pthread_mutex_unlock(&pool->lock);
    return mag;
}

pool_magazine_t *moirai__pool_mag_get_empty(struct moirai_pool *pool)
{
    pool_magazine_t *mag = moirai__pool_stack_pop(pool, &pool->empty);
    return mag ? mag : mag_new(pool);
}

void moirai__pool_mag_put(struct moirai_pool *pool, pool_magazine_t *mag)
{
    if (mag->count) {
        moirai__pool_outside_add(pool, -(int64_t)mag->count);
        moirai__pool_stack_push(pool, &pool->full, mag);
    } else {
        moirai__pool_stack_push(pool, &pool->empty, mag);
    }
}

void moirai__pool_mags_release(struct moirai_pool *pool)
{
    for (int k = 0; k < POOL_MAG_SEGMENTS; k++) {
        moirai_free(pool->mag_segs[k]);
        pool->mag_segs[k] = NULL;
    }
    pool->mag_used = 0;
    pool->mag_room = 0;
}

void moirai__pool_outside_add(struct moirai_pool *pool, int64_t delta)
{
    /* Relaxed: a statistic; no other memory depends on it. */
    int64_t now = atomic_fetch_add_explicit(&pool->outside, delta, memory_order_relaxed) + delta;
    if (delta <= 0)
        return;
    int64_t peak = atomic_load_explicit(&pool->outside_peak, memory_order_relaxed);
    while (now > peak &&
           !atomic_compare_exchange_weak_explicit(&pool->outside_peak, &peak, now,
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* The orphan link lives in the second word when the object has one, so
 * that the first word keeps the released-object tag of checked builds. */
static inline void **orphan_link(struct moirai_pool *pool, void *obj)
{
    return (void **)((char *)obj + (pool->stride >= 2 * sizeof(void *) ? sizeof(void *) : 0));
}

void moirai__pool_orphan_push(struct moirai_pool *pool, void *obj)
{
    void **link = orphan_link(pool, obj);
    moirai__pool_outside_add(pool, -1);
    void *head = atomic_load_explicit(&pool->orphans, memory_order_relaxed);
    do {
        /* The object is poisoned; open the link word only while writing
         * it, and close it before publishing, since the taker may open it
         * at once. */
        moirai__mem_unpoison(link, sizeof(*link));
        *link = head;
        moirai__mem_poison(link, sizeof(*link));
        /* Release: the taker reads the link we just wrote. */
    } while (!atomic_compare_exchange_weak_explicit(&pool->orphans, &head, obj,
                                                    memory_order_release, memory_order_relaxed));
}

static void *link_read(struct moirai_pool *pool, void *obj)
{
    void **link = orphan_link(pool, obj);
    moirai__mem_unpoison(link, sizeof(*link));
    void *next = *link;
    moirai__mem_poison(link, sizeof(*link));
    return next;
}

uint32_t moirai__pool_orphan_take(struct moirai_pool *pool, void **dst, uint32_t room)
{
    if (!room || !atomic_load_explicit(&pool->orphans, memory_order_relaxed))
        return 0;
    /* Acquire: pairs with the pushes' release, making their links
     * visible. Taking the whole list means no other thread reads these
     * links while we walk them. */
    void *list = atomic_exchange_explicit(&pool->orphans, NULL, memory_order_acquire);
    uint32_t got = 0;
    while (list && got < room) {
        dst[got++] = list;
        list = link_read(pool, list);
    }
    if (list) {
        /* Give back what did not fit: find the tail and splice the rest in
         * front of whatever was pushed meanwhile. */
        void *tail = list;
        for (void *next; (next = link_read(pool, tail)) != NULL;)
            tail = next;
        void **link = orphan_link(pool, tail);
        void *head = atomic_load_explicit(&pool->orphans, memory_order_relaxed);
        do {
            moirai__mem_unpoison(link, sizeof(*link));
            *link = head;
            moirai__mem_poison(link, sizeof(*link));
            /* Release: the next taker reads the links of this chain. */
        } while (!atomic_compare_exchange_weak_explicit(
            &pool->orphans, &head, list, memory_order_release, memory_order_relaxed));
    }
    moirai__pool_outside_add(pool, got);
    return got;
}
