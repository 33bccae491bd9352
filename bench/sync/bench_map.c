/* moirai-bench, suite "sync": the concurrent hash map.
 *
 * map_lookup_90_10_2t
 *   Two threads share one table pre-filled with 2^16 entries whose keys
 *   are 64-bit integers drawn from a key space of 2^17. Each thread runs
 *   iters / 2 operations on random keys of that space: 90% lookups, 5%
 *   inserts (add-or-fail), 5% removes; about half of each kind hits, so the
 *   size stays near 2^16. Values are derived from their key and every hit
 *   is checked; so is the final size against the threads' successful
 *   inserts and removes. Metric: wall-clock ns per operation (both threads
 *   together). Implementations:
 *     moirai  moirai_map_t: 8-byte keys through its built-in hash.
 *     urcu    liburcu's rculfhash used directly, as its documentation
 *             shows: memb flavour, CDS_LFHT_AUTO_RESIZE and
 *             CDS_LFHT_ACCOUNTING, nodes with the key inline, a 64-bit integer mix (MurmurHash3's
 * finalizer) as the hash, call_rcu() to free removed nodes, liburcu's read lock called as functions
 * (no _LGPL_SOURCE, as in Moirai).
 *
 * Both lock-free tables start at the bucket count their own sizing policy
 * keeps for 2^16 entries, so that neither resizes while it is measured:
 * 2^17 for Moirai (twice the entries), 2^16 for rculfhash (one per entry).
 * Pre-sizing also keeps the urcu peer clear of liburcu 0.13's auto-resize
 * stall (see "Resizing" in moirai-sync/src/map_resize.c): a table left to grow
 * from a few buckets sometimes stops growing and then runs orders of
 * magnitude slower, which would measure that bug rather than the table.
 *     rwlock  a pthread_rwlock_t around a chained hash table with 2^16
 *             buckets (the load stays near 1) and the same integer mix;
 *             lookups take the read lock, updates the write lock.
 *
 * Set-up (creating and filling the table, registering threads with RCU,
 * creating the threads) and tear-down are outside the measured section:
 * the threads meet at a spinning start line, each times its own loop, and
 * the run reports (latest end - earliest start) / operations. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#include <moirai/sync/map.h>
#include <moirai/sync/rcu.h>

#include "../bench.h"

#define CACHE_LINE 64
#define PREFILL    (UINT64_C(1) << 16)
#define KEY_SPACE  (UINT64_C(1) << 17)
#define RW_BUCKETS (UINT64_C(1) << 16)
#define LOOKUP_PCT 90
#define INSERT_PCT 5
#define THREADS    2

/* The value stored for a key: never 0, so a hit is easy to tell apart. */
static inline uint64_t value_of(uint64_t key)
{
    return key * 2 + 1;
}

/* MurmurHash3's 64-bit finalizer: the peers' hash. */
static inline uint64_t mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

/* xorshift64*: each thread's key and operation stream. */
static inline uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* ---- shared driver ---- */

typedef enum impl_kind { K_MOIRAI, K_URCU, K_RWLOCK } impl_kind_t;

typedef struct thread_out {
    _Alignas(CACHE_LINE) uint64_t start, end;
    uint64_t ops;
    int64_t inserted, removed; /* successful ones */
    uint64_t bad;              /* hits with a wrong value, failed calls */
} thread_out_t;

struct urcu_table;
struct rw_table;

typedef struct run_ctx {
    impl_kind_t kind;
    moirai_map_t *map;
    struct urcu_table *ut;
    struct rw_table *rt;
    _Alignas(CACHE_LINE) atomic_int ready;
    thread_out_t out[THREADS];
} run_ctx_t;

typedef struct run_arg {
    run_ctx_t *c;
    int id;
} run_arg_t;

static void start_line(run_ctx_t *c)
{
    /* acq_rel: both threads' set-up happens before either measures. */
    atomic_fetch_add_explicit(&c->ready, 1, memory_order_acq_rel);
    while (atomic_load_explicit(&c->ready, memory_order_acquire) < THREADS)
        sched_yield();
}

/* ---- urcu peer: rculfhash used directly ---- */

typedef struct urcu_node {
    struct cds_lfht_node lfht;
    struct rcu_head rcu;
    uint64_t key;
    uint64_t value;
} urcu_node_t;

typedef struct urcu_table {
    struct cds_lfht *ht;
} urcu_table_t;

static int urcu_match(struct cds_lfht_node *node, const void *key)
{
    const urcu_node_t *n = caa_container_of(node, urcu_node_t, lfht);
    return n->key == *(const uint64_t *)key;
}

static void urcu_free_node(struct rcu_head *head)
{
    free(caa_container_of(head, urcu_node_t, rcu));
}

static bool urcu_insert(urcu_table_t *t, uint64_t key)
{
    urcu_node_t *n = malloc(sizeof *n);
    if (n == NULL)
        return false;
    cds_lfht_node_init(&n->lfht);
    n->key = key;
    n->value = value_of(key);
    urcu_memb_read_lock();
    struct cds_lfht_node *got = cds_lfht_add_unique(t->ht, mix64(key), urcu_match, &key, &n->lfht);
    urcu_memb_read_unlock();
    if (got != &n->lfht) {
        free(n);
        return false;
    }
    return true;
}

static bool urcu_remove(urcu_table_t *t, uint64_t key)
{
    struct cds_lfht_iter iter;
    bool done = false;
    urcu_memb_read_lock();
    cds_lfht_lookup(t->ht, mix64(key), urcu_match, &key, &iter);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&iter);
    if (node != NULL && cds_lfht_del(t->ht, node) == 0) {
        urcu_memb_call_rcu(&caa_container_of(node, urcu_node_t, lfht)->rcu, urcu_free_node);
        done = true;
    }
    urcu_memb_read_unlock();
    return done;
}

/* Returns the value found, 0 when absent. */
static uint64_t urcu_lookup(urcu_table_t *t, uint64_t key)
{
    struct cds_lfht_iter iter;
    uint64_t v = 0;
    urcu_memb_read_lock();
    cds_lfht_lookup(t->ht, mix64(key), urcu_match, &key, &iter);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&iter);
    if (node != NULL)
        v = caa_container_of(node, urcu_node_t, lfht)->value;
    urcu_memb_read_unlock();
    return v;
}

static void urcu_destroy(urcu_table_t *t)
{
    struct cds_lfht_iter iter;
    struct cds_lfht_node *node;
    urcu_memb_read_lock();
    cds_lfht_for_each(t->ht, &iter, node)
    {
        if (cds_lfht_del(t->ht, node) == 0)
            urcu_memb_call_rcu(&caa_container_of(node, urcu_node_t, lfht)->rcu, urcu_free_node);
    }
    urcu_memb_read_unlock();
    urcu_memb_barrier();
    cds_lfht_destroy(t->ht, NULL);
    free(t);
}

static uint64_t urcu_count(urcu_table_t *t)
{
    long before, after;
    unsigned long count;
    urcu_memb_read_lock();
    cds_lfht_count_nodes(t->ht, &before, &count, &after);
    urcu_memb_read_unlock();
    return count;
}

/* ---- rwlock peer: a chained table under one pthread_rwlock_t ---- */

typedef struct rw_node {
    struct rw_node *next;
    uint64_t key;
    uint64_t value;
} rw_node_t;

typedef struct rw_table {
    pthread_rwlock_t lock;
    uint64_t count;
    rw_node_t *buckets[RW_BUCKETS];
} rw_table_t;

static inline rw_node_t **rw_slot(rw_table_t *t, uint64_t key)
{
    return &t->buckets[mix64(key) & (RW_BUCKETS - 1)];
}

static bool rw_insert(rw_table_t *t, uint64_t key)
{
    rw_node_t *n = malloc(sizeof *n);
    if (n == NULL)
        return false;
    n->key = key;
    n->value = value_of(key);
    pthread_rwlock_wrlock(&t->lock);
    rw_node_t **slot = rw_slot(t, key);
    for (rw_node_t *p = *slot; p != NULL; p = p->next) {
        if (p->key == key) {
            pthread_rwlock_unlock(&t->lock);
            free(n);
            return false;
        }
    }
    n->next = *slot;
    *slot = n;
    t->count++;
    pthread_rwlock_unlock(&t->lock);
    return true;
}

static bool rw_remove(rw_table_t *t, uint64_t key)
{
    rw_node_t *gone = NULL;
    pthread_rwlock_wrlock(&t->lock);
    for (rw_node_t **pp = rw_slot(t, key); *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->key == key) {
            gone = *pp;
            *pp = gone->next;
            t->count--;
            break;
        }
    }
    pthread_rwlock_unlock(&t->lock);
    free(gone);
    return gone != NULL;
}

static uint64_t rw_lookup(rw_table_t *t, uint64_t key)
{
    uint64_t v = 0;
    pthread_rwlock_rdlock(&t->lock);
    for (rw_node_t *p = *rw_slot(t, key); p != NULL; p = p->next) {
        if (p->key == key) {
            v = p->value;
            break;
        }
    }
    pthread_rwlock_unlock(&t->lock);
    return v;
}

static void rw_destroy(rw_table_t *t)
{
    for (uint64_t b = 0; b < RW_BUCKETS; b++) {
        rw_node_t *p = t->buckets[b];
        while (p != NULL) {
            rw_node_t *next = p->next;
            free(p);
            p = next;
        }
    }
    pthread_rwlock_destroy(&t->lock);
    free(t);
}

/* ---- Moirai ---- */

static bool moirai_insert(moirai_map_t *m, uint64_t key)
{
    int rc = moirai_map_insert(m, &key, sizeof key, (void *)(uintptr_t)value_of(key));
    return rc == 0;
}

static bool moirai_remove(moirai_map_t *m, uint64_t key)
{
    return moirai_map_remove(m, &key, sizeof key, NULL) == 0;
}

static uint64_t moirai_lookup(moirai_map_t *m, uint64_t key)
{
    void *v = NULL;
    if (moirai_map_lookup(m, &key, sizeof key, &v) != 0)
        return 0;
    return (uint64_t)(uintptr_t)v;
}

/* ---- the workload ---- */

/* One thread's loop, specialised per implementation by the compiler
 * (the switch is on a constant in each inlined copy). */
static inline __attribute__((always_inline)) void work(run_ctx_t *c, thread_out_t *o,
                                                       impl_kind_t kind, uint64_t seed)
{
    uint64_t s = seed;
    for (uint64_t i = 0; i < o->ops; i++) {
        uint64_t r = rnd(&s);
        uint64_t key = (r >> 8) & (KEY_SPACE - 1);
        unsigned pct = (unsigned)((r >> 32) % 100);
        if (pct < LOOKUP_PCT) {
            uint64_t v = kind == K_MOIRAI ? moirai_lookup(c->map, key)
                         : kind == K_URCU ? urcu_lookup(c->ut, key)
                                          : rw_lookup(c->rt, key);
            o->bad += v != 0 && v != value_of(key);
        } else if (pct < LOOKUP_PCT + INSERT_PCT) {
            bool ok = kind == K_MOIRAI ? moirai_insert(c->map, key)
                      : kind == K_URCU ? urcu_insert(c->ut, key)
                                       : rw_insert(c->rt, key);
            o->inserted += ok;
        } else {
            bool ok = kind == K_MOIRAI ? moirai_remove(c->map, key)
                      : kind == K_URCU ? urcu_remove(c->ut, key)
                                       : rw_remove(c->rt, key);
            o->removed += ok;
        }
    }
}

static void *run_thread(void *p)
{
    run_arg_t *a = p;
    run_ctx_t *c = a->c;
    thread_out_t *o = &c->out[a->id];
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(a->id + 1) ^ bench_now_ns();
    if (seed == 0)
        seed = 1;

    /* Registration is a one-time cost per thread: outside the loop. */
    if (c->kind == K_URCU)
        urcu_memb_register_thread();
    else if (c->kind == K_MOIRAI && moirai_rcu_thread_register() != 0)
        o->bad++;

    start_line(c);
    o->start = bench_now_ns();
    switch (c->kind) {
    case K_MOIRAI:
        work(c, o, K_MOIRAI, seed);
        break;
    case K_URCU:
        work(c, o, K_URCU, seed);
        break;
    default:
        work(c, o, K_RWLOCK, seed);
        break;
    }
    o->end = bench_now_ns();

    if (c->kind == K_URCU)
        urcu_memb_unregister_thread();
    return NULL;
}

/* Builds the table for `kind`, pre-filled with PREFILL distinct keys;
 * false when out of memory. */
static bool setup(run_ctx_t *c)
{
    uint64_t s = 0x243f6a8885a308d3ull;
    switch (c->kind) {
    case K_MOIRAI:
        if (moirai_map_create(&c->map, &(moirai_map_config_t){.initial_buckets = 2 * PREFILL}) != 0)
            return false;
        break;
    case K_URCU:
        c->ut = malloc(sizeof *c->ut);
        if (c->ut == NULL)
            return false;
        c->ut->ht = cds_lfht_new_flavor(PREFILL, 1, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
                                        &urcu_memb_flavor, NULL);
        if (c->ut->ht == NULL) {
            free(c->ut);
            return false;
        }
        /* The runner's thread fills and empties the table, so it must be
         * an RCU reader. Moirai's runs register it with liburcu too and
         * liburcu refuses a second registration: share Moirai's
         * (idempotent, it lasts until the thread exits). */
        if (moirai_rcu_thread_register() != 0) {
            cds_lfht_destroy(c->ut->ht, NULL);
            free(c->ut);
            return false;
        }
        break;
    default:
        c->rt = calloc(1, sizeof *c->rt);
        if (c->rt == NULL)
            return false;
        pthread_rwlock_init(&c->rt->lock, NULL);
        break;
    }
    uint64_t filled = 0;
    while (filled < PREFILL) {
        uint64_t key = rnd(&s) & (KEY_SPACE - 1);
        bool ok = c->kind == K_MOIRAI ? moirai_insert(c->map, key)
                  : c->kind == K_URCU ? urcu_insert(c->ut, key)
                                      : rw_insert(c->rt, key);
        filled += ok;
    }
    return true;
}

static uint64_t table_count(run_ctx_t *c)
{
    switch (c->kind) {
    case K_MOIRAI:
        return moirai_map_count(c->map);
    case K_URCU:
        return urcu_count(c->ut);
    default:
        return c->rt->count;
    }
}

static void teardown(run_ctx_t *c)
{
    switch (c->kind) {
    case K_MOIRAI:
        moirai_map_destroy(c->map);
        break;
    case K_URCU:
        urcu_destroy(c->ut);
        break;
    default:
        rw_destroy(c->rt);
        break;
    }
}

static double run_case(impl_kind_t kind, uint64_t iters)
{
    run_ctx_t *c = aligned_alloc(CACHE_LINE, sizeof(run_ctx_t));
    if (c == NULL)
        return -1.0;
    *c = (run_ctx_t){.kind = kind};
    if (!setup(c)) {
        free(c);
        return -1.0;
    }
    c->out[0].ops = iters / 2 + iters % 2;
    c->out[1].ops = iters / 2;

    run_arg_t args[THREADS] = {{c, 0}, {c, 1}};
    pthread_t tids[THREADS];
    int started = 0;
    for (; started < THREADS; started++)
        if (pthread_create(&tids[started], NULL, run_thread, &args[started]) != 0)
            break;
    if (started < THREADS) {
        /* Let a thread already at the start line through with no work. */
        c->out[0].ops = c->out[1].ops = 0;
        atomic_fetch_add(&c->ready, THREADS);
    }
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);

    double result = -1.0;
    if (started == THREADS) {
        int64_t expect = (int64_t)PREFILL;
        uint64_t bad = 0, begin = UINT64_MAX, end = 0;
        for (int i = 0; i < THREADS; i++) {
            expect += c->out[i].inserted - c->out[i].removed;
            bad += c->out[i].bad;
            begin = c->out[i].start < begin ? c->out[i].start : begin;
            end = c->out[i].end > end ? c->out[i].end : end;
        }
        if (bad == 0 && (int64_t)table_count(c) == expect)
            result = (double)(end - begin) / (double)iters;
    }
    teardown(c);
    free(c);
    return result;
}

static double map_moirai(uint64_t iters)
{
    return run_case(K_MOIRAI, iters);
}

static double map_urcu(uint64_t iters)
{
    return run_case(K_URCU, iters);
}

static double map_rwlock(uint64_t iters)
{
    return run_case(K_RWLOCK, iters);
}

static const bench_impl_t map_impls[] = {
    {"moirai", map_moirai, NULL},
    {"urcu", map_urcu, NULL},
    {"rwlock", map_rwlock, NULL},
};

static const bench_case_t sync_map_cases[] = {
    {"sync", "map_lookup_90_10_2t", "ns_per_op", 4000000, 400000, map_impls,
     sizeof map_impls / sizeof map_impls[0]},
};

const bench_case_t *bench_sync_map_cases(size_t *count)
{
    *count = sizeof sync_map_cases / sizeof sync_map_cases[0];
    return sync_map_cases;
}
