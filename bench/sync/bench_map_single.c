/* moirai-bench, suite "sync": what one map operation costs, one thread.
 *
 * map_lookup_120k_1t
 *   One thread looks up random present keys in a table of 122,880
 *   entries (64-bit integer keys). Every hit's value is checked. Metric:
 *   ns per lookup.
 * map_insert_remove_120k_1t
 *   One thread inserts a key that is not in the table and removes it
 *   again, on the same table of 122,880 entries (its size stays put).
 *   Metric: ns per insert + remove pair.
 *
 * Implementations:
 *   moirai  moirai_map_t with 8-byte keys and its built-in hash; removed
 *           entries are freed after an RCU grace period.
 *   urcu    liburcu's rculfhash used directly: memb flavour, nodes with
 *           the key inline, malloc and call_rcu() for nodes, MurmurHash3's
 *           finalizer as the hash, read lock called as functions.
 * Both tables are created at the size their own policy keeps for this
 * many entries, so neither resizes while measured. Set-up (filling) and
 * tear-down are outside the timed loop. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <urcu/rculfhash.h>
#include <urcu/urcu-memb.h>

#include <moirai/sync/map.h>
#include <moirai/sync/rcu.h>

#include "../bench.h"

#define ENTRIES    122880u
#define KEY_STRIDE 2u /* present keys are even, fresh ones odd */

static inline uint64_t mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

static inline uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* A present key, drawn at random. */
static inline uint64_t present_key(uint64_t *s)
{
    return (rnd(s) % ENTRIES) * KEY_STRIDE;
}

/* ---- Moirai ---- */

static moirai_map_t *moirai_filled(void)
{
    moirai_map_t *m;
    if (moirai_map_create(&m, &(moirai_map_config_t){.initial_buckets = 2 * ENTRIES}) != 0)
        return NULL;
    for (uint64_t i = 0; i < ENTRIES; i++) {
        uint64_t k = i * KEY_STRIDE;
        if (moirai_map_insert(m, &k, sizeof k, (void *)(uintptr_t)(k + 1)) != 0) {
            moirai_map_destroy(m);
            return NULL;
        }
    }
    return m;
}

static double lookup_moirai(uint64_t iters)
{
    moirai_map_t *m = moirai_filled();
    if (m == NULL)
        return -1.0;
    uint64_t s = 0x9e3779b97f4a7c15ull, bad = 0;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t k = present_key(&s);
        void *v = NULL;
        bad += moirai_map_lookup(m, &k, sizeof k, &v) != 0 || (uintptr_t)v != k + 1;
    }
    uint64_t t1 = bench_now_ns();
    moirai_map_destroy(m);
    return bad == 0 ? (double)(t1 - t0) / (double)iters : -1.0;
}

static double insert_remove_moirai(uint64_t iters)
{
    moirai_map_t *m = moirai_filled();
    if (m == NULL)
        return -1.0;
    uint64_t s = 0x243f6a8885a308d3ull, bad = 0;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t k = present_key(&s) + 1; /* odd: absent */
        bad += moirai_map_insert(m, &k, sizeof k, NULL) != 0;
        bad += moirai_map_remove(m, &k, sizeof k, NULL) != 0;
    }
    uint64_t t1 = bench_now_ns();
    bad += moirai_map_count(m) != ENTRIES;
    moirai_map_destroy(m);
    return bad == 0 ? (double)(t1 - t0) / (double)iters : -1.0;
}

/* ---- urcu ---- */

typedef struct unode {
    struct cds_lfht_node lfht;
    struct rcu_head rcu;
    uint64_t key, value;
} unode_t;

static int umatch(struct cds_lfht_node *n, const void *key)
{
    return caa_container_of(n, unode_t, lfht)->key == *(const uint64_t *)key;
}

static void ufree(struct rcu_head *h)
{
    free(caa_container_of(h, unode_t, rcu));
}

static bool uinsert(struct cds_lfht *ht, uint64_t k, uint64_t v)
{
    unode_t *n = malloc(sizeof *n);
    if (n == NULL)
        return false;
    cds_lfht_node_init(&n->lfht);
    n->key = k;
    n->value = v;
    urcu_memb_read_lock();
    struct cds_lfht_node *got = cds_lfht_add_unique(ht, mix64(k), umatch, &k, &n->lfht);
    urcu_memb_read_unlock();
    if (got != &n->lfht) {
        free(n);
        return false;
    }
    return true;
}

static bool uremove(struct cds_lfht *ht, uint64_t k)
{
    struct cds_lfht_iter it;
    bool done = false;
    urcu_memb_read_lock();
    cds_lfht_lookup(ht, mix64(k), umatch, &k, &it);
    struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
    if (n != NULL && cds_lfht_del(ht, n) == 0) {
        urcu_memb_call_rcu(&caa_container_of(n, unode_t, lfht)->rcu, ufree);
        done = true;
    }
    urcu_memb_read_unlock();
    return done;
}

static struct cds_lfht *urcu_filled(void)
{
    /* The runner thread must be an RCU reader; Moirai's registration is
     * liburcu's (see bench_map.c). */
    if (moirai_rcu_thread_register() != 0)
        return NULL;
    struct cds_lfht *ht = cds_lfht_new_flavor(131072, 1, 0, 0, &urcu_memb_flavor, NULL);
    if (ht == NULL)
        return NULL;
    for (uint64_t i = 0; i < ENTRIES; i++)
        if (!uinsert(ht, i * KEY_STRIDE, i * KEY_STRIDE + 1))
            return NULL;
    return ht;
}

static void urcu_destroy(struct cds_lfht *ht)
{
    struct cds_lfht_iter it;
    struct cds_lfht_node *n;
    urcu_memb_read_lock();
    cds_lfht_for_each(ht, &it, n)
    {
        if (cds_lfht_del(ht, n) == 0)
            urcu_memb_call_rcu(&caa_container_of(n, unode_t, lfht)->rcu, ufree);
    }
    urcu_memb_read_unlock();
    urcu_memb_barrier();
    cds_lfht_destroy(ht, NULL);
}

static double lookup_urcu(uint64_t iters)
{
    struct cds_lfht *ht = urcu_filled();
    if (ht == NULL)
        return -1.0;
    uint64_t s = 0x9e3779b97f4a7c15ull, bad = 0;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t k = present_key(&s);
        struct cds_lfht_iter it;
        urcu_memb_read_lock();
        cds_lfht_lookup(ht, mix64(k), umatch, &k, &it);
        struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
        bad += n == NULL || caa_container_of(n, unode_t, lfht)->value != k + 1;
        urcu_memb_read_unlock();
    }
    uint64_t t1 = bench_now_ns();
    urcu_destroy(ht);
    return bad == 0 ? (double)(t1 - t0) / (double)iters : -1.0;
}

static double insert_remove_urcu(uint64_t iters)
{
    struct cds_lfht *ht = urcu_filled();
    if (ht == NULL)
        return -1.0;
    uint64_t s = 0x243f6a8885a308d3ull, bad = 0;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t k = present_key(&s) + 1;
        bad += !uinsert(ht, k, 0);
        bad += !uremove(ht, k);
    }
    uint64_t t1 = bench_now_ns();
    urcu_destroy(ht);
    return bad == 0 ? (double)(t1 - t0) / (double)iters : -1.0;
}

static const bench_impl_t lookup_impls[] = {
    {"moirai", lookup_moirai, NULL},
    {"urcu", lookup_urcu, NULL},
};

static const bench_impl_t insert_remove_impls[] = {
    {"moirai", insert_remove_moirai, NULL},
    {"urcu", insert_remove_urcu, NULL},
};

static const bench_case_t sync_map_single_cases[] = {
    {"sync", "map_lookup_120k_1t", "ns_per_op", 4000000, 400000, lookup_impls,
     sizeof lookup_impls / sizeof lookup_impls[0]},
    {"sync", "map_insert_remove_120k_1t", "ns_per_op", 2000000, 200000, insert_remove_impls,
     sizeof insert_remove_impls / sizeof insert_remove_impls[0]},
};

const bench_case_t *bench_sync_map_single_cases(size_t *count)
{
    *count = sizeof sync_map_single_cases / sizeof sync_map_single_cases[0];
    return sync_map_single_cases;
}
