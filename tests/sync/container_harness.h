/* A producer x consumer harness for moirai-sync's containers (stack,
 * queue, MPMC ring, SPSC ring), shared by their quick tests and the stress
 * test. Header-only: each test executable includes it once.
 *
 * Producer p pushes the items (p << 40) | seq for seq = 0 .. n-1.
 * Consumers pop until every item has been taken (or, for closable
 * containers, until the container is closed and drained) and check:
 *   - nothing is duplicated: every item sets its bit in a shared bitmap
 *     exactly once;
 *   - nothing is lost: at the end every bit is set and the container is
 *     empty;
 *   - nothing is invented: every popped value decodes to a real
 *     (producer, seq);
 *   - per-producer FIFO (queues and rings): each consumer sees each
 *     producer's sequence numbers strictly increasing.
 * Worker threads only count violations; the test thread asserts, because
 * Criterion's asserts must run on the test's own thread. */
#ifndef MOIRAI_TEST_CONTAINER_HARNESS_H
#define MOIRAI_TEST_CONTAINER_HARNESS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/core.h>
#include <moirai/sync/ring_spsc.h>

#include "test_scale.h"

#define HARNESS_SEQ_BITS    40
#define HARNESS_SEQ_MASK    ((UINT64_C(1) << HARNESS_SEQ_BITS) - 1)
#define HARNESS_MAX_THREADS 16

static inline void *harness_item(unsigned producer, uint64_t seq)
{
    return (void *)(uintptr_t)(((uint64_t)producer << HARNESS_SEQ_BITS) | seq);
}

/* How a container is driven. push/pop return 0, -EAGAIN (try again) or
 * -EPIPE (closed); a blocking container's pop returns -EPIPE once it is
 * closed and drained, which is how its consumers stop. */
typedef struct harness_ops {
    int (*push)(void *c, void *item, unsigned thread);
    int (*pop)(void *c, void **item, unsigned thread);
    void (*close)(void *c); /* NULL: consumers stop when all items are in */
    bool fifo;
    /* Unbounded containers: producers stay at most this many items ahead
     * of the consumers, to bound memory (0: no bound). */
    uint64_t max_in_flight;
} harness_ops_t;

typedef struct harness_result {
    uint64_t expected;
    uint64_t consumed;
    uint64_t unique;     /* bits set at the end */
    uint64_t duplicates; /* items seen twice */
    uint64_t invalid;    /* items that decode to no real (producer, seq) */
    uint64_t fifo_violations;
    uint64_t push_errors; /* push results other than 0 / -EAGAIN */
    uint64_t pop_errors;  /* pop results other than 0 / -EAGAIN / -EPIPE */
} harness_result_t;

typedef struct harness {
    const harness_ops_t *ops;
    void *c;
    unsigned producers, consumers;
    uint64_t per_producer;
    _Atomic uint64_t *bitmap;
    _Atomic uint64_t pushed, consumed;
    _Atomic int producers_done;
    _Atomic uint64_t duplicates, invalid, fifo_violations, push_errors, pop_errors;
} harness_t;

typedef struct harness_arg {
    harness_t *h;
    unsigned index;
} harness_arg_t;

static void *harness_producer(void *p)
{
    harness_arg_t *a = p;
    harness_t *h = a->h;
    bool throttle = h->ops->max_in_flight != 0;
    for (uint64_t seq = 0; seq < h->per_producer; seq++) {
        if (throttle) {
            /* If items get lost the gap never closes: give the throttle up
             * after a second rather than hang (memory is then bounded by
             * the item count only). */
            uint64_t give_up = moirai_deadline_after(MOIRAI_NS_PER_S);
            while (throttle && atomic_load_explicit(&h->pushed, memory_order_relaxed) -
                                       atomic_load_explicit(&h->consumed, memory_order_relaxed) >=
                                   h->ops->max_in_flight) {
                sched_yield();
                if (moirai_deadline_expired(give_up))
                    throttle = false;
            }
        }
        int rc;
        while ((rc = h->ops->push(h->c, harness_item(a->index, seq), a->index)) == -EAGAIN)
            sched_yield();
        if (rc != 0) {
            atomic_fetch_add(&h->push_errors, 1);
            return NULL;
        }
        atomic_fetch_add_explicit(&h->pushed, 1, memory_order_relaxed);
    }
    return NULL;
}

static void *harness_consumer(void *p)
{
    harness_arg_t *a = p;
    harness_t *h = a->h;
    uint64_t total = (uint64_t)h->producers * h->per_producer;
    int64_t last[HARNESS_MAX_THREADS];
    for (unsigned i = 0; i < HARNESS_MAX_THREADS; i++)
        last[i] = -1;
    for (;;) {
        if (h->ops->close == NULL && atomic_load(&h->consumed) >= total)
            break;
        /* Read before popping: if every producer had returned before
         * this pop, an empty container stays empty, so stop and let the
         * final count show what was lost (rather than wait for it). */
        bool done = atomic_load(&h->producers_done);
        void *v;
        int rc = h->ops->pop(h->c, &v, a->index);
        if (rc == -EAGAIN) {
            if (h->ops->close == NULL && done)
                break;
            sched_yield();
            continue;
        }
        if (rc == -EPIPE && h->ops->close != NULL)
            break;
        if (rc != 0) {
            atomic_fetch_add(&h->pop_errors, 1);
            break;
        }
        uint64_t item = (uint64_t)(uintptr_t)v;
        uint64_t prod = item >> HARNESS_SEQ_BITS;
        uint64_t seq = item & HARNESS_SEQ_MASK;
        if (prod >= h->producers || seq >= h->per_producer) {
            atomic_fetch_add(&h->invalid, 1);
        } else {
            uint64_t idx = prod * h->per_producer + seq;
            uint64_t bit = UINT64_C(1) << (idx % 64);
            if (atomic_fetch_or_explicit(&h->bitmap[idx / 64], bit, memory_order_relaxed) & bit)
                atomic_fetch_add(&h->duplicates, 1);
            if (h->ops->fifo) {
                if ((int64_t)seq <= last[prod])
                    atomic_fetch_add(&h->fifo_violations, 1);
                last[prod] = (int64_t)seq;
            }
        }
        atomic_fetch_add_explicit(&h->consumed, 1, memory_order_relaxed);
    }
    return NULL;
}

/* Runs one shape to completion and returns what was observed. */
static inline harness_result_t harness_run(const harness_ops_t *ops, void *c, unsigned producers,
                                           unsigned consumers, uint64_t per_producer)
{
    cr_assert(producers >= 1 && producers <= HARNESS_MAX_THREADS);
    cr_assert(consumers >= 1 && consumers <= HARNESS_MAX_THREADS);
    harness_t h;
    memset(&h, 0, sizeof(h));
    h.ops = ops;
    h.c = c;
    h.producers = producers;
    h.consumers = consumers;
    h.per_producer = per_producer;
    uint64_t total = producers * per_producer;
    size_t words = (size_t)(total / 64 + 1);
    h.bitmap = calloc(words, sizeof(*h.bitmap));
    cr_assert_not_null(h.bitmap);

    pthread_t pt[HARNESS_MAX_THREADS], ct[HARNESS_MAX_THREADS];
    harness_arg_t pa[HARNESS_MAX_THREADS], ca[HARNESS_MAX_THREADS];
    for (unsigned i = 0; i < consumers; i++) {
        ca[i] = (harness_arg_t){&h, i};
        cr_assert_eq(pthread_create(&ct[i], NULL, harness_consumer, &ca[i]), 0);
    }
    for (unsigned i = 0; i < producers; i++) {
        pa[i] = (harness_arg_t){&h, i};
        cr_assert_eq(pthread_create(&pt[i], NULL, harness_producer, &pa[i]), 0);
    }
    for (unsigned i = 0; i < producers; i++)
        pthread_join(pt[i], NULL);
    atomic_store(&h.producers_done, 1);
    if (ops->close != NULL)
        ops->close(c);
    for (unsigned i = 0; i < consumers; i++)
        pthread_join(ct[i], NULL);

    harness_result_t r = {
        .expected = total,
        .consumed = atomic_load(&h.consumed),
        .duplicates = atomic_load(&h.duplicates),
        .invalid = atomic_load(&h.invalid),
        .fifo_violations = atomic_load(&h.fifo_violations),
        .push_errors = atomic_load(&h.push_errors),
        .pop_errors = atomic_load(&h.pop_errors),
    };
    for (size_t i = 0; i < words; i++)
        r.unique += (uint64_t)__builtin_popcountll(atomic_load(&h.bitmap[i]));
    free(h.bitmap);
    return r;
}

/* Asserts the invariants of one run. */
#define harness_assert_ok(r, what)                                                                 \
    do {                                                                                           \
        harness_result_t r_ = (r);                                                                 \
        cr_assert_eq(r_.push_errors, 0, "%s: %lu pushes failed", (what),                           \
                     (unsigned long)r_.push_errors);                                               \
        cr_assert_eq(r_.pop_errors, 0, "%s: %lu pops failed", (what),                              \
                     (unsigned long)r_.pop_errors);                                                \
        cr_assert_eq(r_.invalid, 0, "%s: %lu invented items", (what), (unsigned long)r_.invalid);  \
        cr_assert_eq(r_.duplicates, 0, "%s: %lu duplicated items", (what),                         \
                     (unsigned long)r_.duplicates);                                                \
        cr_assert_eq(r_.unique, r_.expected, "%s: %lu of %lu items arrived (%lu lost)", (what),    \
                     (unsigned long)r_.unique, (unsigned long)r_.expected,                         \
                     (unsigned long)(r_.expected - r_.unique));                                    \
        cr_assert_eq(r_.consumed, r_.expected, "%s: %lu pops for %lu items", (what),               \
                     (unsigned long)r_.consumed, (unsigned long)r_.expected);                      \
        cr_assert_eq(r_.fifo_violations, 0, "%s: %lu per-producer FIFO violations", (what),        \
                     (unsigned long)r_.fifo_violations);                                           \
    } while (0)

/* Defines the harness adapters NAME_push and NAME_pop for a container
 * whose push and pop take no thread index (the index is not needed). */
#define HARNESS_DEFINE_ADAPTERS(name, push_fn, pop_fn)                                             \
    static int name##_push(void *c, void *item, unsigned thread)                                   \
    {                                                                                              \
        (void)thread;                                                                              \
        return push_fn(c, item);                                                                   \
    }                                                                                              \
    static int name##_pop(void *c, void **item, unsigned thread)                                   \
    {                                                                                              \
        (void)thread;                                                                              \
        return pop_fn(c, item);                                                                    \
    }

/* ---- Shared tests of the unbounded containers (stack, queue) ----
 * Each drives the container through its harness_ops_t and asserts on the
 * test's own thread. */

/* The order one pusher's items must come out in when nobody pops while
 * they go in. */
typedef enum harness_order {
    HARNESS_FIFO, /* in the order pushed */
    HARNESS_LIFO, /* newest first */
} harness_order_t;

typedef struct harness_pushers {
    const harness_ops_t *ops;
    void *c;
    uint64_t per_thread;
    unsigned index;
    _Atomic uint64_t *failed;
} harness_pushers_t;

static void *harness_pusher(void *p)
{
    harness_pushers_t *a = p;
    for (uint64_t i = 0; i < a->per_thread; i++)
        if (a->ops->push(a->c, harness_item(a->index, i), a->index) != 0)
            atomic_fetch_add(a->failed, 1);
    return NULL;
}

/* Pushers only, all at once, then this thread drains `c` (empty at the
 * start): the purest contention on the push CAS. Every item must be there
 * exactly once, each pusher's items in `order`. */
static inline void harness_concurrent_pushes(const harness_ops_t *ops, void *c, unsigned threads,
                                             uint64_t n, harness_order_t order)
{
    cr_assert(threads >= 1 && threads <= HARNESS_MAX_THREADS);
    _Atomic uint64_t failed = 0;
    pthread_t t[HARNESS_MAX_THREADS];
    harness_pushers_t a[HARNESS_MAX_THREADS];
    for (unsigned i = 0; i < threads; i++) {
        a[i] = (harness_pushers_t){ops, c, n, i, &failed};
        cr_assert_eq(pthread_create(&t[i], NULL, harness_pusher, &a[i]), 0);
    }
    for (unsigned i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&failed), 0);
    uint8_t *seen = calloc(threads * n, 1);
    cr_assert_not_null(seen);
    int64_t last[HARNESS_MAX_THREADS];
    for (unsigned i = 0; i < HARNESS_MAX_THREADS; i++)
        last[i] = -1;
    uint64_t count = 0, bad = 0;
    void *out;
    while (ops->pop(c, &out, 0) == 0) {
        uint64_t v = (uint64_t)(uintptr_t)out;
        uint64_t prod = v >> HARNESS_SEQ_BITS, seq = v & HARNESS_SEQ_MASK;
        if (prod >= threads || seq >= n || seen[prod * n + seq]++) {
            bad++;
            continue;
        }
        if (order == HARNESS_FIFO ? (int64_t)seq <= last[prod]
                                  : last[prod] >= 0 && (int64_t)seq >= last[prod])
            bad++;
        last[prod] = (int64_t)seq;
        count++;
    }
    free(seen);
    cr_assert_eq(bad, 0, "%lu items invented, duplicated or out of %s order", (unsigned long)bad,
                 order == HARNESS_FIFO ? "FIFO" : "LIFO");
    cr_assert_eq(count, threads * n, "%lu of %lu items arrived", (unsigned long)count,
                 (unsigned long)(threads * n));
}

typedef struct harness_churn {
    const harness_ops_t *ops;
    void *c;
    uint64_t rounds;
    _Atomic uint64_t lost;
    _Atomic uint64_t empty; /* pops that found nothing: impossible here */
} harness_churn_t;

static void *harness_churn_thread(void *p)
{
    harness_churn_t *c = p;
    for (uint64_t i = 0; i < c->rounds; i++) {
        if (c->ops->push(c->c, (void *)(uintptr_t)(i + 1), 0) != 0) {
            atomic_fetch_add(&c->lost, 1);
            continue;
        }
        void *out;
        /* Every thread pops only after pushing, so the container never
         * holds fewer than the 16 base items: a pop can find it empty
         * only if an accepted item was lost. */
        if (c->ops->pop(c->c, &out, 0) != 0)
            atomic_fetch_add(&c->empty, 1);
    }
    return NULL;
}

/* Four threads push and pop in turn on `c` (empty at the start) around a
 * base of 16 items, `rounds` times each: popped nodes come back through
 * the node cache while other threads still race on the container. No pop
 * may find it empty, and exactly the 16 base items must remain. */
static inline void harness_churn(const harness_ops_t *ops, void *c, uint64_t rounds)
{
    harness_churn_t h = {.ops = ops, .c = c, .rounds = rounds};
    /* A base of items; pushes and pops balance around it. */
    for (uintptr_t i = 0; i < 16; i++)
        cr_assert_eq(ops->push(c, (void *)(UINTPTR_MAX - i), 0), 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, harness_churn_thread, &h), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&h.lost), 0);
    cr_assert_eq(atomic_load(&h.empty), 0, "%lu pops found it empty: items were lost",
                 (unsigned long)atomic_load(&h.empty));
    /* Exactly 16 items remain (pushes and pops balanced). */
    int left = 0;
    void *out;
    while (ops->pop(c, &out, 0) == 0)
        left++;
    cr_assert_eq(left, 16, "%d items left, expected 16", left);
}

/* What a producer writes before pushing is visible after the pop (the
 * ThreadSanitizer build checks the ordering). */
typedef struct harness_payload {
    uint64_t value;
    uint64_t check;
} harness_payload_t;

typedef struct harness_pub {
    const harness_ops_t *ops;
    void *c;
    uint64_t n;
    _Atomic int producer_done;
} harness_pub_t;

static void *harness_pub_producer(void *p)
{
    harness_pub_t *c = p;
    for (uint64_t i = 0; i < c->n; i++) {
        harness_payload_t *pl = malloc(sizeof(*pl));
        pl->value = i;
        pl->check = ~i;
        while (c->ops->push(c->c, pl, 0) != 0)
            sched_yield();
    }
    atomic_store(&c->producer_done, 1);
    return NULL;
}

/* One producer pushes `n` payloads into `c` (empty at the start) while
 * this thread pops them with ops->pop: every payload must arrive with the
 * contents written before its push (and in push order if ops->fifo). */
static inline void harness_publication(const harness_ops_t *ops, void *c, uint64_t n)
{
    harness_pub_t h = {.ops = ops, .c = c, .n = n};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, harness_pub_producer, &h), 0);
    uint64_t got = 0, bad = 0;
    for (bool done = false;;) {
        void *out;
        if (ops->pop(c, &out, 0) != 0) {
            /* Empty after the producer returned: nothing more will come
             * (the count below shows whether something was lost). */
            if (done)
                break;
            done = atomic_load(&h.producer_done);
            sched_yield();
            continue;
        }
        harness_payload_t *pl = out;
        /* A FIFO container must also deliver them in push order. */
        if (pl->check != ~pl->value || (ops->fifo && pl->value != got))
            bad++;
        free(pl);
        got++;
    }
    pthread_join(t, NULL);
    cr_assert_eq(got, n, "%lu of %lu items arrived", (unsigned long)got, (unsigned long)n);
    cr_assert_eq(bad, 0);
}

/* ---- The SPSC ring: one producer, one consumer ---- */

#define HARNESS_SPSC_MAX_BATCH 64

typedef struct harness_spsc_pair {
    moirai_ring_spsc_t *r;
    uint64_t n;
    bool batch;
    size_t max_batch;
} harness_spsc_pair_t;

/* Batch sizes 1 .. max: a pseudo-random sequence, so that batches meet
 * the ring's wrap-around, full and empty states at every offset. */
static inline size_t harness_spsc_batch(unsigned *x, size_t max)
{
    *x = *x * 1103515245u + 12345u;
    return 1 + (*x >> 16) % max;
}

static void *harness_spsc_producer(void *p)
{
    harness_spsc_pair_t *c = p;
    uint64_t seq = 0;
    unsigned x = 12345;
    while (seq < c->n) {
        if (c->batch) {
            void *items[HARNESS_SPSC_MAX_BATCH];
            size_t want = harness_spsc_batch(&x, c->max_batch);
            if (want > c->n - seq)
                want = (size_t)(c->n - seq);
            for (size_t i = 0; i < want; i++)
                items[i] = harness_item(0, seq + i);
            size_t done = 0;
            while (done < want) {
                size_t k = moirai_ring_spsc_push_batch(c->r, items + done, want - done);
                if (k == 0)
                    sched_yield();
                done += k;
            }
            seq += want;
        } else {
            while (moirai_ring_spsc_try_push(c->r, harness_item(0, seq)) != 0)
                sched_yield();
            seq++;
        }
    }
    return NULL;
}

/* Moves `n` items through a fresh ring of `capacity` from a producer
 * thread to this thread, with single or batch operations (batches of 1 ..
 * max_batch items). One producer, so "nothing lost, duplicated, invented
 * or reordered" is exactly "the items are 0, 1, 2, ... in order". */
static inline void harness_spsc_pair(const char *what, size_t capacity, uint64_t n, bool batch,
                                     size_t max_batch)
{
    cr_assert(max_batch >= 1 && max_batch <= HARNESS_SPSC_MAX_BATCH);
    harness_spsc_pair_t c = {.n = n, .batch = batch, .max_batch = max_batch};
    cr_assert_eq(moirai_ring_spsc_create(&c.r, capacity), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, harness_spsc_producer, &c), 0);
    uint64_t expect = 0, wrong = 0;
    unsigned x = 777;
    while (expect < n) {
        void *items[HARNESS_SPSC_MAX_BATCH];
        size_t got;
        if (batch)
            got = moirai_ring_spsc_pop_batch(c.r, items, harness_spsc_batch(&x, max_batch));
        else
            got = moirai_ring_spsc_try_pop(c.r, &items[0]) == 0 ? 1 : 0;
        if (got == 0) {
            sched_yield();
            continue;
        }
        for (size_t i = 0; i < got; i++)
            if ((uintptr_t)items[i] != (uintptr_t)harness_item(0, expect++))
                wrong++;
    }
    pthread_join(t, NULL);
    cr_assert_eq(wrong, 0, "%s: %lu items lost, duplicated or out of order", what,
                 (unsigned long)wrong);
    void *extra;
    cr_assert_eq(moirai_ring_spsc_try_pop(c.r, &extra), -EAGAIN, "%s: an item was invented", what);
    moirai_ring_spsc_destroy(c.r);
}

/* MOIRAI_TEST_SCALE (set under sanitizers) divides iteration counts. */
static inline uint64_t harness_scaled(uint64_t n)
{
    return (uint64_t)scaled((long)n);
}

/* An environment variable holding a positive count, or `fallback`. */
static inline uint64_t harness_env_count(const char *name, uint64_t fallback)
{
    return (uint64_t)env_long(name, (long)fallback);
}

#endif
