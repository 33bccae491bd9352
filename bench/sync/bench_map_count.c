/* moirai-bench, suite "sync": counting into a concurrent map.
 *
 * map_count_90_10
 *   Two threads count occurrences of keys into one shared table, the
 *   inner loop of a parallel word or log-line counter. The table starts
 *   with 2^16 keys (64-bit integers) at count 0. Each thread runs iters / 2
 *   updates "count[key] += 1": 90% on a random existing key, 10% on a key
 *   no one has seen (the table grows by iters / 10 entries). At the end the
 *   counts must add up to iters and the table must hold 2^16 + the new
 *   keys, or the run is reported as failed. Metric: wall-clock ns per
 *   update (both threads together). Implementations:
 *     moirai   moirai_map_fetch_add(): one call per update, no allocation
 *              for an existing key.
 *     moirai_lookup_insert
 *              the same map used the way it had to be before fetch_add:
 *              the value points to a counter; look up and add atomically,
 *              or allocate a counter, insert_unique, and on -EEXIST free
 *              it and add to the one that won.
 *     urcu     liburcu's rculfhash used as its documentation shows: look
 *              up under the read lock and add atomically to the node's
 *              counter; for a missing key allocate a node, add_unique, and
 *              on losing a race free it and add to the winner. Nodes with
 *              the key inline, MurmurHash3's finalizer as the hash, memb
 *              flavour, read lock called as functions (no _LGPL_SOURCE, as
 *              in Moirai), no automatic resizing (the table is pre-sized).
 *     sharded  64 shards, each a pthread_mutex_t over a chained table with
 *              the same hash: lock the key's shard, find or add, increment.
 *
 * Every table is created at the size its own policy wants for the final
 * number of entries, so none resizes while it is measured (and the urcu
 * peer stays clear of liburcu 0.13's auto-resize stall, see
 * moirai-sync/src/map_resize.c). Set-up, thread creation and tear-down are
 * outside the measured section: the threads meet at a start line, each
 * times its own loop, and the run reports (latest end - earliest start) /
 * updates. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <urcu/rculfhash.h>
#include <urcu/urcu-memb.h>

#include <moirai/sync/map.h>
#include <moirai/sync/rcu.h>

#include "../bench.h"

#define CACHE_LINE 64
#define PREFILL    (UINT64_C(1) << 16)
#define EXIST_PCT  90
#define THREADS    2
#define SHARDS     64
#define NEW_BASE   (UINT64_C(1) << 40)

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

/* xorshift64*: each thread's key stream. */
static inline uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

typedef enum impl_kind { K_MOIRAI, K_MOIRAI_OLD, K_URCU, K_SHARDED } impl_kind_t;

typedef struct thread_out {
    _Alignas(CACHE_LINE) uint64_t start, end;
    uint64_t ops;
    uint64_t fresh; /* new keys this thread counted */
    uint64_t bad;   /* failed calls */
} thread_out_t;

/* ---- urcu peer ---- */

typedef struct urcu_node {
    struct cds_lfht_node lfht;
    struct rcu_head rcu;
    uint64_t key;
    uint64_t count; /* updated with __atomic_fetch_add */
} urcu_node_t;

static int urcu_match(struct cds_lfht_node *node, const void *key)
{
    return caa_container_of(node, urcu_node_t, lfht)->key == *(const uint64_t *)key;
}

static bool urcu_count_key(struct cds_lfht *ht, uint64_t key)
{
    unsigned long hash = mix64(key);
    struct cds_lfht_iter iter;
    urcu_memb_read_lock();
    cds_lfht_lookup(ht, hash, urcu_match, &key, &iter);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&iter);
    if (node == NULL) {
        urcu_node_t *n = malloc(sizeof *n);
        if (n == NULL) {
            urcu_memb_read_unlock();
            return false;
        }
        cds_lfht_node_init(&n->lfht);
        n->key = key;
        n->count = 1;
        node = cds_lfht_add_unique(ht, hash, urcu_match, &key, &n->lfht);
        if (node == &n->lfht) {
            urcu_memb_read_unlock();
            return true;
        }
        free(n);
    }
    /* Relaxed: a counter; the node's publication is ordered by liburcu. */
    __atomic_fetch_add(&caa_container_of(node, urcu_node_t, lfht)->count, 1, __ATOMIC_RELAXED);
    urcu_memb_read_unlock();
    return true;
}

static void urcu_free_node(struct rcu_head *head)
{
    free(caa_container_of(head, urcu_node_t, rcu));
}

/* Sums the counts and entries, then empties and destroys the table. */
static void urcu_finish(struct cds_lfht *ht, uint64_t *sum, uint64_t *entries)
{
    struct cds_lfht_iter iter;
    struct cds_lfht_node *node;
    urcu_memb_read_lock();
    cds_lfht_for_each(ht, &iter, node)
    {
        *sum += caa_container_of(node, urcu_node_t, lfht)->count;
        (*entries)++;
        if (cds_lfht_del(ht, node) == 0)
            urcu_memb_call_rcu(&caa_container_of(node, urcu_node_t, lfht)->rcu, urcu_free_node);
    }
    urcu_memb_read_unlock();
    urcu_memb_barrier();
    cds_lfht_destroy(ht, NULL);
}

/* ---- sharded peer ---- */

typedef struct sh_node {
    struct sh_node *next;
    uint64_t key;
    uint64_t count;
} sh_node_t;

typedef struct shard {
    _Alignas(CACHE_LINE) pthread_mutex_t lock;
    uint64_t mask;
    sh_node_t **buckets;
} shard_t;

static bool sharded_count_key(shard_t *shards, uint64_t key)
{
    uint64_t h = mix64(key);
    shard_t *s = &shards[h & (SHARDS - 1)];
    sh_node_t **slot = &s->buckets[(h >> 6) & s->mask];
    pthread_mutex_lock(&s->lock);
    for (sh_node_t *p = *slot; p != NULL; p = p->next) {
        if (p->key == key) {
            p->count++;
            pthread_mutex_unlock(&s->lock);
            return true;
        }
    }
    sh_node_t *n = malloc(sizeof *n);
    if (n != NULL) {
        n->key = key;
        n->count = 1;
        n->next = *slot;
        *slot = n;
    }
    pthread_mutex_unlock(&s->lock);
    return n != NULL;
}

/* ---- the run ---- */

typedef struct run_ctx {
    impl_kind_t kind;
    moirai_map_t *map;
    struct cds_lfht *ht;
    shard_t *shards;
    _Alignas(CACHE_LINE) atomic_int ready;
    thread_out_t out[THREADS];
} run_ctx_t;

typedef struct run_arg {
    run_ctx_t *c;
    int id;
} run_arg_t;

/* Counting before moirai_map_fetch_add(): values point to counters. */
static bool old_count_key(moirai_map_t *map, uint64_t key)
{
    void *v;
    if (moirai_map_lookup(map, &key, sizeof key, &v) == 0) {
        /* Relaxed: a counter; the map's insert published it. */
        __atomic_fetch_add((uint64_t *)v, 1, __ATOMIC_RELAXED);
        return true;
    }
    uint64_t *n = malloc(sizeof *n);
    if (n == NULL)
        return false;
    *n = 1;
    void *existing;
    int rc = moirai_map_insert_unique(map, &key, sizeof key, n, &existing);
    if (rc == 0)
        return true;
    free(n);
    if (rc != -EEXIST)
        return false;
    __atomic_fetch_add((uint64_t *)existing, 1, __ATOMIC_RELAXED);
    return true;
}

static inline bool count_key(run_ctx_t *c, impl_kind_t kind, uint64_t key)
{
    switch (kind) {
    case K_MOIRAI:
        return moirai_map_fetch_add(c->map, &key, sizeof key, 1, NULL) >= 0;
    case K_MOIRAI_OLD:
        return old_count_key(c->map, key);
    case K_URCU:
        return urcu_count_key(c->ht, key);
    default:
        return sharded_count_key(c->shards, key);
    }
}

static inline __attribute__((always_inline)) void work(run_ctx_t *c, thread_out_t *o,
                                                       impl_kind_t kind, uint64_t seed, int id)
{
    uint64_t s = seed;
    uint64_t next_new = NEW_BASE + ((uint64_t)id << 32);
    for (uint64_t i = 0; i < o->ops; i++) {
        uint64_t r = rnd(&s);
        uint64_t key;
        if ((r >> 32) % 100 < EXIST_PCT) {
            key = (r >> 8) & (PREFILL - 1);
        } else {
            key = next_new++;
            o->fresh++;
        }
        o->bad += !count_key(c, kind, key);
    }
}

static void *run_thread(void *p)
{
    run_arg_t *a = p;
    run_ctx_t *c = a->c;
    thread_out_t *o = &c->out[a->id];
    uint64_t seed = (0x9e3779b97f4a7c15ull * (uint64_t)(a->id + 1)) ^ bench_now_ns();
    if (seed == 0)
        seed = 1;
    /* Registration is a one-time cost per thread: outside the loop. */
    if (c->kind == K_URCU)
        urcu_memb_register_thread();
    else if ((c->kind == K_MOIRAI || c->kind == K_MOIRAI_OLD) && moirai_rcu_thread_register() != 0)
        o->bad++;
    /* acq_rel: both threads' set-up happens before either measures. */
    atomic_fetch_add_explicit(&c->ready, 1, memory_order_acq_rel);
    while (atomic_load_explicit(&c->ready, memory_order_acquire) < THREADS)
        sched_yield();
    o->start = bench_now_ns();
    switch (c->kind) {
    case K_MOIRAI:
        work(c, o, K_MOIRAI, seed, a->id);
        break;
    case K_MOIRAI_OLD:
        work(c, o, K_MOIRAI_OLD, seed, a->id);
        break;
    case K_URCU:
        work(c, o, K_URCU, seed, a->id);
        break;
    default:
        work(c, o, K_SHARDED, seed, a->id);
        break;
    }
    o->end = bench_now_ns();
    if (c->kind == K_URCU)
        urcu_memb_unregister_thread();
    return NULL;
}

/* Sums the counters the values point to, and frees them. */
static int sum_and_free_counters(void *arg, const void *key, size_t len, void *value)
{
    (void)key;
    (void)len;
    uint64_t *acc = arg;
    acc[0] += *(uint64_t *)value;
    acc[1]++;
    free(value);
    return 0;
}

static int sum_counts(void *arg, const void *key, size_t len, void *value)
{
    (void)key;
    (void)len;
    uint64_t *acc = arg;
    acc[0] += (uint64_t)(uintptr_t)value;
    acc[1]++;
    return 0;
}

/* Builds the table pre-filled with PREFILL keys at count 0, sized for
 * `final` entries. */
static bool setup(run_ctx_t *c, uint64_t final)
{
    switch (c->kind) {
    case K_MOIRAI:
    case K_MOIRAI_OLD: {
        moirai_map_config_t cfg = {.initial_buckets = (size_t)pow2_at_least(2 * final)};
        if (moirai_map_create(&c->map, &cfg) != 0)
            return false;
        for (uint64_t k = 0; k < PREFILL; k++) {
            void *v = NULL;
            if (c->kind == K_MOIRAI_OLD && (v = calloc(1, sizeof(uint64_t))) == NULL)
                return false;
            if (moirai_map_insert(c->map, &k, sizeof k, v) != 0) {
                free(v);
                return false;
            }
        }
        return true;
    }
    case K_URCU:
        /* The runner thread fills and empties the table, so it must be an
         * RCU reader; Moirai's registration is liburcu's (see bench_map.c). */
        if (moirai_rcu_thread_register() != 0)
            return false;
        /* Pre-sized, so no automatic resizing (nor its accounting). */
        c->ht = cds_lfht_new_flavor(pow2_at_least(final), 1, 0, 0, &urcu_memb_flavor, NULL);
        if (c->ht == NULL)
            return false;
        for (uint64_t k = 0; k < PREFILL; k++) {
            if (!urcu_count_key(c->ht, k))
                return false;
        }
        return true;
    default: {
        c->shards = aligned_alloc(CACHE_LINE, SHARDS * sizeof(shard_t));
        if (c->shards == NULL)
            return false;
        uint64_t per = pow2_at_least(final / SHARDS + 1);
        for (int i = 0; i < SHARDS; i++) {
            pthread_mutex_init(&c->shards[i].lock, NULL);
            c->shards[i].mask = per - 1;
            c->shards[i].buckets = calloc(per, sizeof(sh_node_t *));
            if (c->shards[i].buckets == NULL)
                return false;
        }
        for (uint64_t k = 0; k < PREFILL; k++)
            if (!sharded_count_key(c->shards, k))
                return false;
        return true;
    }
    }
}

/* Sums the counts and entries and frees the table. The urcu table was
 * pre-filled through its counting path, so its prefill counts 1 each. */
static void finish(run_ctx_t *c, uint64_t *sum, uint64_t *entries)
{
    *sum = 0;
    *entries = 0;
    switch (c->kind) {
    case K_MOIRAI:
    case K_MOIRAI_OLD: {
        uint64_t acc[2] = {0, 0};
        if (c->map != NULL) {
            moirai_map_iterate(c->map, c->kind == K_MOIRAI ? sum_counts : sum_and_free_counters,
                               acc);
            moirai_map_destroy(c->map);
        }
        *sum = acc[0];
        *entries = acc[1];
        break;
    }
    case K_URCU:
        if (c->ht != NULL) {
            urcu_finish(c->ht, sum, entries);
            *sum -= PREFILL;
        }
        break;
    default:
        if (c->shards == NULL)
            break;
        for (int i = 0; i < SHARDS; i++) {
            for (uint64_t b = 0; c->shards[i].buckets != NULL && b <= c->shards[i].mask; b++) {
                sh_node_t *p = c->shards[i].buckets[b];
                while (p != NULL) {
                    sh_node_t *next = p->next;
                    *sum += p->count;
                    (*entries)++;
                    free(p);
                    p = next;
                }
            }
            free(c->shards[i].buckets);
            pthread_mutex_destroy(&c->shards[i].lock);
        }
        *sum -= PREFILL;
        free(c->shards);
        break;
    }
}

static double run_case(impl_kind_t kind, uint64_t iters)
{
    run_ctx_t *c = aligned_alloc(CACHE_LINE, sizeof(run_ctx_t));
    if (c == NULL)
        return -1.0;
    *c = (run_ctx_t){.kind = kind};
    uint64_t final = PREFILL + iters / 10 + iters / 50 + 64;
    double result = -1.0;
    if (setup(c, final)) {
        c->out[0].ops = iters / 2 + iters % 2;
        c->out[1].ops = iters / 2;
        run_arg_t args[THREADS] = {{c, 0}, {c, 1}};
        pthread_t tids[THREADS];
        int started = 0;
        for (; started < THREADS; started++)
            if (pthread_create(&tids[started], NULL, run_thread, &args[started]) != 0)
                break;
        if (started < THREADS) {
            c->out[0].ops = c->out[1].ops = 0;
            atomic_fetch_add(&c->ready, THREADS);
        }
        for (int i = 0; i < started; i++)
            pthread_join(tids[i], NULL);
        uint64_t sum, entries, fresh = 0, bad = 0, begin = UINT64_MAX, end = 0;
        for (int i = 0; i < THREADS; i++) {
            fresh += c->out[i].fresh;
            bad += c->out[i].bad;
            begin = c->out[i].start < begin ? c->out[i].start : begin;
            end = c->out[i].end > end ? c->out[i].end : end;
        }
        finish(c, &sum, &entries);
        if (started == THREADS && bad == 0 && sum == iters && entries == PREFILL + fresh)
            result = (double)(end - begin) / (double)iters;
    } else {
        finish(c, &(uint64_t){0}, &(uint64_t){0});
    }
    free(c);
    return result;
}

static double count_moirai(uint64_t iters)
{
    return run_case(K_MOIRAI, iters);
}

static double count_moirai_old(uint64_t iters)
{
    return run_case(K_MOIRAI_OLD, iters);
}

static double count_urcu(uint64_t iters)
{
    return run_case(K_URCU, iters);
}

static double count_sharded(uint64_t iters)
{
    return run_case(K_SHARDED, iters);
}

static const bench_impl_t count_impls[] = {
    {"moirai", count_moirai, NULL},
    {"moirai_lookup_insert", count_moirai_old, NULL},
    {"urcu", count_urcu, NULL},
    {"sharded", count_sharded, NULL},
};

static const bench_case_t sync_map_count_cases[] = {
    {"sync", "map_count_90_10", "ns_per_op", 2000000, 200000, count_impls,
     sizeof count_impls / sizeof count_impls[0]},
};

const bench_case_t *bench_sync_map_count_cases(size_t *count)
{
    *count = sizeof sync_map_count_cases / sizeof sync_map_count_cases[0];
    return sync_map_count_cases;
}
