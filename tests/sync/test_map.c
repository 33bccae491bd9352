/* The concurrent hash map, one thread at a time: every function's
 * semantics and error paths, keys of odd shapes, the built-in hash,
 * resizing from one bucket, the OOM sweep of every allocating call, and a
 * small two-thread publication check. The long concurrent runs are in
 * test_map_stress.c. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <moirai/core/alloc.h>
#include <moirai/sync/map.h>
#include <moirai/sync/rcu.h>

#include "oom.h"

#define V(x) ((void *)(uintptr_t)(x))

static moirai_map_t *new_map(size_t buckets)
{
    moirai_map_config_t cfg = {.initial_buckets = buckets, .seed = 42};
    moirai_map_t *map = NULL;
    cr_assert_eq(moirai_map_create(&map, &cfg), 0);
    cr_assert_not_null(map);
    return map;
}

static void *lookup_or(moirai_map_t *map, const void *key, size_t len, void *dflt)
{
    void *v = dflt;
    int rc = moirai_map_lookup(map, key, len, &v);
    cr_assert(rc == 0 || rc == -ENOENT, "lookup returned %d", rc);
    return v;
}

#define SKEY(s) (s), strlen(s)

/* ------------------------------------------------------------------------
 * Create and destroy. */

Test(map, create_defaults_and_destroy, .timeout = 30)
{
    moirai_map_t *map = NULL;
    cr_assert_eq(moirai_map_create(&map, NULL), 0);
    cr_assert_not_null(map);
    cr_assert_eq(moirai_map_count(map), 0);
    cr_assert_eq(moirai_map_lookup(map, SKEY("x"), NULL), -ENOENT);
    moirai_map_destroy(map);

    moirai_map_config_t zero = {0};
    cr_assert_eq(moirai_map_create(&map, &zero), 0);
    cr_assert_eq(moirai_map_insert(map, SKEY("a"), V(1)), 0);
    moirai_map_destroy(map);

    /* A non-power-of-two size is rounded up, the maximum is accepted. */
    moirai_map_config_t odd = {.initial_buckets = 1000};
    cr_assert_eq(moirai_map_create(&map, &odd), 0);
    cr_assert_eq(moirai_map_insert(map, SKEY("a"), V(1)), 0);
    moirai_map_destroy(map);

    moirai_map_destroy(NULL);
}

Test(map, create_invalid, .timeout = 30)
{
    cr_assert_eq(moirai_map_create(NULL, NULL), -EINVAL);
    moirai_map_t *map = (moirai_map_t *)V(0x1234);
    moirai_map_config_t big = {.initial_buckets = MOIRAI_MAP_MAX_INITIAL_BUCKETS + 1};
    cr_assert_eq(moirai_map_create(&map, &big), -EINVAL);
    cr_assert_eq(map, (moirai_map_t *)V(0x1234), "out must be untouched on error");
}

Test(map, destroy_frees_entries_and_removed_ones, .timeout = 30)
{
    /* Under ASan, LeakSanitizer turns anything destroy forgets into a
     * failure; here we also check destroy copes with a populated map and
     * with entries still waiting for their grace period. */
    moirai_map_t *map = new_map(4);
    char key[16];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        cr_assert_eq(moirai_map_insert(map, key, (size_t)n, V(i)), 0);
    }
    for (int i = 0; i < 1000; i += 2) {
        int n = snprintf(key, sizeof key, "k%d", i);
        cr_assert_eq(moirai_map_remove(map, key, (size_t)n, NULL), 0);
    }
    for (int i = 1; i < 1000; i += 4) {
        int n = snprintf(key, sizeof key, "k%d", i);
        cr_assert_eq(moirai_map_replace(map, key, (size_t)n, V(i + 1), NULL), 1);
    }
    cr_assert_eq(moirai_map_count(map), 500);
    moirai_map_destroy(map);
}

/* ------------------------------------------------------------------------
 * Insert, insert_unique, replace, remove, lookup. */

Test(map, insert_then_lookup, .timeout = 30)
{
    moirai_map_t *map = new_map(0);
    cr_assert_eq(moirai_map_insert(map, SKEY("alpha"), V(1)), 0);
    cr_assert_eq(moirai_map_insert(map, SKEY("beta"), V(2)), 0);
    cr_assert_eq(moirai_map_insert(map, SKEY("nullval"), NULL), 0);

    void *v = V(99);
    cr_assert_eq(moirai_map_lookup(map, SKEY("alpha"), &v), 0);
    cr_assert_eq(v, V(1));
    cr_assert_eq(moirai_map_lookup(map, SKEY("beta"), &v), 0);
    cr_assert_eq(v, V(2));
    cr_assert_eq(moirai_map_lookup(map, SKEY("nullval"), &v), 0);
    cr_assert_null(v, "NULL is a valid value");
    /* Presence test without copying the value. */
    cr_assert_eq(moirai_map_lookup(map, SKEY("beta"), NULL), 0);

    v = V(99);
    cr_assert_eq(moirai_map_lookup(map, SKEY("gamma"), &v), -ENOENT);
    cr_assert_eq(v, V(99), "value untouched on -ENOENT");
    cr_assert_eq(moirai_map_count(map), 3);
    moirai_map_destroy(map);
}

Test(map, insert_existing_fails_and_keeps_value, .timeout = 30)
{
    moirai_map_t *map = new_map(0);
    cr_assert_eq(moirai_map_insert(map, SKEY("k"), V(1)), 0);
    cr_assert_eq(moirai_map_insert(map, SKEY("k"), V(2)), -EEXIST);
    cr_assert_eq(lookup_or(map, SKEY("k"), NULL), V(1));
    cr_assert_eq(moirai_map_count(map), 1);
    moirai_map_destroy(map);
}

Test(map, insert_unique_reports_existing, .timeout = 30)
{
    moirai_map_t *map = new_map(0);
    void *existing = V(77);
    cr_assert_eq(moirai_map_insert_unique(map, SKEY("k"), V(1), &existing), 0);
    cr_assert_eq(existing, V(77), "existing written only on -EEXIST");
    cr_assert_eq(moirai_map_insert_unique(map, SKEY("k"), V(2), &existing), -EEXIST);
    cr_assert_eq(existing, V(1));
    cr_assert_eq(moirai_map_insert_unique(map, SKEY("k"), V(3), NULL), -EEXIST);
    cr_assert_eq(lookup_or(map, SKEY("k"), NULL), V(1));
    cr_assert_eq(moirai_map_count(map), 1);
    moirai_map_destroy(map);
}

Test(map, replace_inserts_or_replaces, .timeout = 30)
{
    moirai_map_t *map = new_map(0);
    void *old = V(77);
    cr_assert_eq(moirai_map_replace(map, SKEY("k"), V(1), &old), 0, "absent: inserted");
    cr_assert_null(old);
    cr_assert_eq(moirai_map_count(map), 1);
    cr_assert_eq(moirai_map_replace(map, SKEY("k"), V(2), &old), 1, "present: replaced");
    cr_assert_eq(old, V(1));
    cr_assert_eq(moirai_map_replace(map, SKEY("k"), V(3), NULL), 1);
    cr_assert_eq(lookup_or(map, SKEY("k"), NULL), V(3));
    cr_assert_eq(moirai_map_count(map), 1, "replacing does not change the count");
    moirai_map_destroy(map);
}

Test(map, remove_returns_value, .timeout = 30)
{
    moirai_map_t *map = new_map(0);
    cr_assert_eq(moirai_map_insert(map, SKEY("a"), V(1)), 0);
    cr_assert_eq(moirai_map_insert(map, SKEY("b"), V(2)), 0);

    void *old = V(77);
    cr_assert_eq(moirai_map_remove(map, SKEY("a"), &old), 0);
    cr_assert_eq(old, V(1));
    cr_assert_eq(moirai_map_lookup(map, SKEY("a"), NULL), -ENOENT);
    cr_assert_eq(lookup_or(map, SKEY("b"), NULL), V(2), "other keys unaffected");

    old = V(77);
    cr_assert_eq(moirai_map_remove(map, SKEY("a"), &old), -ENOENT);
    cr_assert_eq(old, V(77), "old untouched on -ENOENT");
    cr_assert_eq(moirai_map_remove(map, SKEY("never"), NULL), -ENOENT);
    cr_assert_eq(moirai_map_remove(map, SKEY("b"), NULL), 0);
    cr_assert_eq(moirai_map_count(map), 0);

    /* A removed key can come back. */
    cr_assert_eq(moirai_map_insert(map, SKEY("a"), V(5)), 0);
    cr_assert_eq(lookup_or(map, SKEY("a"), NULL), V(5));
    moirai_map_destroy(map);
}

Test(map, invalid_arguments, .timeout = 30)
{
    moirai_map_t *map = new_map(0);
    void *v = V(7);
    cr_assert_eq(moirai_map_insert(NULL, SKEY("k"), V(1)), -EINVAL);
    cr_assert_eq(moirai_map_insert(map, NULL, 3, V(1)), -EINVAL);
    cr_assert_eq(moirai_map_insert_unique(NULL, SKEY("k"), V(1), &v), -EINVAL);
    cr_assert_eq(moirai_map_insert_unique(map, NULL, 3, V(1), &v), -EINVAL);
    cr_assert_eq(moirai_map_replace(NULL, SKEY("k"), V(1), &v), -EINVAL);
    cr_assert_eq(moirai_map_replace(map, NULL, 3, V(1), &v), -EINVAL);
    cr_assert_eq(moirai_map_remove(NULL, SKEY("k"), &v), -EINVAL);
    cr_assert_eq(moirai_map_remove(map, NULL, 3, &v), -EINVAL);
    cr_assert_eq(moirai_map_lookup(NULL, SKEY("k"), &v), -EINVAL);
    cr_assert_eq(moirai_map_lookup(map, NULL, 3, &v), -EINVAL);
    cr_assert_eq(moirai_map_iterate(NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_map_iterate(map, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_map_count(NULL), 0);
    cr_assert_eq(v, V(7), "no out-parameter written on -EINVAL");
    cr_assert_eq(moirai_map_count(map), 0, "nothing inserted by a rejected call");
    moirai_map_destroy(map);
}

/* ------------------------------------------------------------------------
 * Keys. */

Test(map, keys_are_bytes, .timeout = 30)
{
    moirai_map_t *map = new_map(0);
    /* The empty key, with a NULL or a non-NULL pointer, is one key. */
    cr_assert_eq(moirai_map_insert(map, NULL, 0, V(10)), 0);
    cr_assert_eq(moirai_map_insert(map, "", 0, V(11)), -EEXIST);
    cr_assert_eq(lookup_or(map, "zzz", 0, NULL), V(10));

    /* Embedded NULs and prefixes are distinct keys. */
    const char a[] = {'a', 0, 'b'};
    const char b[] = {'a', 0, 'c'};
    cr_assert_eq(moirai_map_insert(map, a, 3, V(1)), 0);
    cr_assert_eq(moirai_map_insert(map, b, 3, V(2)), 0);
    cr_assert_eq(moirai_map_insert(map, a, 1, V(3)), 0);
    cr_assert_eq(moirai_map_insert(map, a, 2, V(4)), 0);
    cr_assert_eq(lookup_or(map, a, 3, NULL), V(1));
    cr_assert_eq(lookup_or(map, b, 3, NULL), V(2));
    cr_assert_eq(lookup_or(map, "a", 1, NULL), V(3));
    cr_assert_eq(lookup_or(map, a, 2, NULL), V(4));

    /* The key is copied: the caller's buffer may change afterwards. */
    char buf[8] = "mutable";
    cr_assert_eq(moirai_map_insert(map, buf, 7, V(5)), 0);
    memcpy(buf, "changed", 7);
    cr_assert_eq(lookup_or(map, "mutable", 7, NULL), V(5));
    cr_assert_eq(moirai_map_lookup(map, buf, 7, NULL), -ENOENT);

    /* A long key (several hash loop rounds). */
    size_t big = 4099;
    unsigned char *k = malloc(big);
    cr_assert_not_null(k);
    for (size_t i = 0; i < big; i++)
        k[i] = (unsigned char)(i * 31 + 7);
    cr_assert_eq(moirai_map_insert(map, k, big, V(6)), 0);
    cr_assert_eq(lookup_or(map, k, big, NULL), V(6));
    k[big - 1] ^= 1;
    cr_assert_eq(moirai_map_lookup(map, k, big, NULL), -ENOENT, "last byte counts");
    k[big - 1] ^= 1;
    k[0] ^= 0x80;
    cr_assert_eq(moirai_map_lookup(map, k, big, NULL), -ENOENT, "first byte counts");
    free(k);

    cr_assert_eq(moirai_map_count(map), 7);
    moirai_map_destroy(map);
}

/* All keys collide: the map must still tell them apart by their bytes. */
static uint64_t constant_hash(void *ctx, const void *key, size_t len)
{
    (void)key;
    (void)len;
    atomic_fetch_add_explicit((atomic_long *)ctx, 1, memory_order_relaxed);
    return 0x5555;
}

Test(map, custom_hash_with_collisions, .timeout = 60)
{
    atomic_long calls = 0;
    moirai_map_config_t cfg = {.hash = constant_hash, .hash_arg = &calls};
    moirai_map_t *map = NULL;
    cr_assert_eq(moirai_map_create(&map, &cfg), 0);
    enum { N = 300 };
    for (uint32_t i = 0; i < N; i++)
        cr_assert_eq(moirai_map_insert(map, &i, sizeof i, V(i + 1)), 0);
    cr_assert_gt(atomic_load(&calls), 0, "the custom hash is used, with its ctx");
    for (uint32_t i = 0; i < N; i++) {
        cr_assert_eq(moirai_map_insert(map, &i, sizeof i, V(0)), -EEXIST);
        cr_assert_eq(lookup_or(map, &i, sizeof i, NULL), V(i + 1));
    }
    for (uint32_t i = 0; i < N; i += 2)
        cr_assert_eq(moirai_map_remove(map, &i, sizeof i, NULL), 0);
    for (uint32_t i = 0; i < N; i++) {
        int rc = moirai_map_lookup(map, &i, sizeof i, NULL);
        cr_assert_eq(rc, i % 2 ? 0 : -ENOENT, "key %u", i);
    }
    cr_assert_eq(moirai_map_count(map), N / 2);

    /* Colliding keys that are prefixes of each other, or differ only in
     * their last byte, are still distinct: equal hashes fall back to the
     * full length and bytes. */
    const char *const words[] = {"", "a", "ab", "abc", "abd", "abcd"};
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(moirai_map_insert(map, words[i], strlen(words[i]), V(1000 + i)), 0, "%s",
                     words[i]);
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(lookup_or(map, words[i], strlen(words[i]), NULL), V(1000 + i), "%s", words[i]);
    moirai_map_destroy(map);
}

/* ------------------------------------------------------------------------
 * The built-in hash. */

Test(map, builtin_hash_properties, .timeout = 60)
{
    /* Deterministic, seed-dependent, and reads exactly `len` bytes: each
     * key sits in a heap block of its exact size, so ASan reports any
     * over-read. */
    cr_assert_eq(moirai_map_hash(NULL, 0, 1), moirai_map_hash("", 0, 1));
    cr_assert_neq(moirai_map_hash(NULL, 0, 1), moirai_map_hash(NULL, 0, 2));

    enum { MAXLEN = 130 };
    for (size_t len = 0; len <= MAXLEN; len++) {
        unsigned char *k = malloc(len ? len : 1);
        cr_assert_not_null(k);
        for (size_t i = 0; i < len; i++)
            k[i] = (unsigned char)(i * 131 + len);
        uint64_t h = moirai_map_hash(k, len, 7);
        cr_assert_eq(h, moirai_map_hash(k, len, 7), "deterministic");
        cr_assert_neq(h, moirai_map_hash(k, len, 8), "seed matters (len %zu)", len);
        /* Every single-bit flip changes the hash, and the changed hash
         * differs in both halves of the word (the map uses low bits for
         * buckets and high bits for ordering). */
        for (size_t bit = 0; bit < len * 8; bit++) {
            k[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            uint64_t h2 = moirai_map_hash(k, len, 7);
            k[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            cr_assert_neq(h, h2, "len %zu bit %zu", len, bit);
            cr_assert_neq((uint32_t)h, (uint32_t)h2, "low half, len %zu bit %zu", len, bit);
            cr_assert_neq(h >> 32, h2 >> 32, "high half, len %zu bit %zu", len, bit);
        }
        free(k);
    }

    /* Same bytes, different length: different hashes (zero padding does
     * not collide). */
    unsigned char zeros[64] = {0};
    for (size_t len = 0; len < 64; len++)
        cr_assert_neq(moirai_map_hash(zeros, len, 3), moirai_map_hash(zeros, len + 1, 3), "len %zu",
                      len);

    /* Sequential integer keys spread evenly over 256 buckets by their low
     * bits: with 65536 keys, every bucket gets 256 on average; a bucket
     * outside [128, 384] would mean a badly biased hash (the chance of
     * that for a good hash is below 1e-20). */
    static unsigned buckets[256];
    memset(buckets, 0, sizeof buckets);
    for (uint32_t i = 0; i < 65536; i++)
        buckets[moirai_map_hash(&i, sizeof i, 99) & 255]++;
    for (int b = 0; b < 256; b++)
        cr_assert(buckets[b] >= 128 && buckets[b] <= 384, "bucket %d holds %u", b, buckets[b]);
}

/* ------------------------------------------------------------------------
 * Iterate and count. */

typedef struct visit {
    unsigned char seen[512];
    int calls;
    int stop_after;
    moirai_map_t *map;
    bool remove;
} visit_t;

static int visit_cb(void *arg, const void *key, size_t len, void *value)
{
    visit_t *v = arg;
    cr_assert_eq(len, sizeof(uint32_t));
    uint32_t k;
    memcpy(&k, key, sizeof k);
    cr_assert_lt(k, 512);
    cr_assert_eq(value, V(k * 3), "value belongs to key %u", k);
    v->seen[k]++;
    v->calls++;
    if (v->remove)
        cr_assert_eq(moirai_map_remove(v->map, key, len, NULL), 0);
    if (v->stop_after > 0 && v->calls == v->stop_after)
        return 42;
    return 0;
}

Test(map, iterate_visits_each_entry_once, .timeout = 30)
{
    moirai_map_t *map = new_map(2);
    visit_t v = {0};
    cr_assert_eq(moirai_map_iterate(map, visit_cb, &v), 0);
    cr_assert_eq(v.calls, 0, "empty map: no call");

    for (uint32_t k = 0; k < 512; k++)
        cr_assert_eq(moirai_map_insert(map, &k, sizeof k, V(k * 3)), 0);
    for (uint32_t k = 1; k < 512; k += 3)
        cr_assert_eq(moirai_map_remove(map, &k, sizeof k, NULL), 0);
    memset(&v, 0, sizeof v);
    cr_assert_eq(moirai_map_iterate(map, visit_cb, &v), 0);
    for (uint32_t k = 0; k < 512; k++)
        cr_assert_eq(v.seen[k], k % 3 == 1 ? 0 : 1, "key %u seen %d times", k, v.seen[k]);
    cr_assert_eq((size_t)v.calls, moirai_map_count(map));

    /* A non-zero return stops the walk and is passed through. */
    memset(&v, 0, sizeof v);
    v.stop_after = 10;
    cr_assert_eq(moirai_map_iterate(map, visit_cb, &v), 42);
    cr_assert_eq(v.calls, 10);

    /* The callback may update the map: remove everything while walking. */
    memset(&v, 0, sizeof v);
    v.map = map;
    v.remove = true;
    cr_assert_eq(moirai_map_iterate(map, visit_cb, &v), 0);
    cr_assert_eq(moirai_map_count(map), 0);
    for (uint32_t k = 0; k < 512; k++)
        cr_assert_eq(moirai_map_lookup(map, &k, sizeof k, NULL), -ENOENT);
    moirai_map_destroy(map);
}

Test(map, count_follows_updates, .timeout = 30)
{
    moirai_map_t *map = new_map(0);
    cr_assert_eq(moirai_map_count(map), 0);
    cr_assert_eq(moirai_map_insert(map, SKEY("a"), V(1)), 0);
    cr_assert_eq(moirai_map_replace(map, SKEY("b"), V(2), NULL), 0);
    cr_assert_eq(moirai_map_count(map), 2);
    cr_assert_eq(moirai_map_insert(map, SKEY("a"), V(1)), -EEXIST);
    cr_assert_eq(moirai_map_insert_unique(map, SKEY("b"), V(1), NULL), -EEXIST);
    cr_assert_eq(moirai_map_replace(map, SKEY("b"), V(3), NULL), 1);
    cr_assert_eq(moirai_map_remove(map, SKEY("zz"), NULL), -ENOENT);
    cr_assert_eq(moirai_map_count(map), 2, "failed calls and replacements count nothing");
    cr_assert_eq(moirai_map_remove(map, SKEY("a"), NULL), 0);
    cr_assert_eq(moirai_map_count(map), 1);
    moirai_map_destroy(map);
}

/* ------------------------------------------------------------------------
 * Resizing. */

/* Resizing is asynchronous (the resizer thread): wait for it, bounded by
 * the test's timeout. */
static moirai_map_stats_t wait_for_buckets(moirai_map_t *map, bool (*done)(moirai_map_stats_t *))
{
    moirai_map_stats_t st;
    for (;;) {
        cr_assert_eq(moirai_map_stats(map, &st), 0);
        if (done(&st))
            return st;
        usleep(1000);
    }
}

static bool load_at_most_one(moirai_map_stats_t *st)
{
    return st->buckets >= st->entries;
}

static bool back_to_one_bucket(moirai_map_stats_t *st)
{
    return st->buckets == 1;
}

Test(map, grows_and_shrinks_from_one_bucket, .timeout = 120)
{
    moirai_map_t *map = new_map(1);
    moirai_map_stats_t st;
    cr_assert_eq(moirai_map_stats(map, &st), 0);
    cr_assert_eq(st.buckets, 1);
    cr_assert_eq(st.entries, 0);
    cr_assert_eq(st.resizes, 0);

    enum { N = 100000 };
    uint64_t resizes = 0;
    for (int round = 0; round < 2; round++) {
        for (uint64_t k = 0; k < N; k++)
            cr_assert_eq(moirai_map_insert(map, &k, sizeof k, V(k + round)), 0);
        cr_assert_eq(moirai_map_count(map), N);
        /* The resizer grows the table until the load is at most 1. */
        st = wait_for_buckets(map, load_at_most_one);
        cr_assert_eq(st.entries, N);
        cr_assert_geq(st.buckets, N);
        cr_assert_gt(st.resizes, resizes, "the table grew");
        resizes = st.resizes;
        for (uint64_t k = 0; k < N; k++) {
            void *v = NULL;
            cr_assert_eq(moirai_map_lookup(map, &k, sizeof k, &v), 0, "key %lu", k);
            cr_assert_eq(v, V(k + round));
        }
        for (uint64_t k = 0; k < N; k++)
            cr_assert_eq(moirai_map_remove(map, &k, sizeof k, NULL), 0);
        cr_assert_eq(moirai_map_count(map), 0);
        /* Emptied, it shrinks back to its initial size. */
        st = wait_for_buckets(map, back_to_one_bucket);
        cr_assert_gt(st.resizes, resizes, "the table shrank");
        resizes = st.resizes;
        for (uint64_t k = 0; k < N; k += 97)
            cr_assert_eq(moirai_map_lookup(map, &k, sizeof k, NULL), -ENOENT);
    }
    moirai_map_destroy(map);
}

static bool at_most_1024_buckets(moirai_map_stats_t *st)
{
    return st->buckets <= 1024;
}

Test(map, never_shrinks_below_initial_size, .timeout = 60)
{
    moirai_map_t *map = new_map(1000); /* rounded up to 1024 */
    moirai_map_stats_t st;
    cr_assert_eq(moirai_map_stats(map, &st), 0);
    cr_assert_eq(st.buckets, 1024);
    for (uint64_t k = 0; k < 4096; k++)
        cr_assert_eq(moirai_map_insert(map, &k, sizeof k, V(1)), 0);
    st = wait_for_buckets(map, load_at_most_one);
    cr_assert_geq(st.buckets, 4096);
    for (uint64_t k = 0; k < 4096; k++)
        cr_assert_eq(moirai_map_remove(map, &k, sizeof k, NULL), 0);
    /* Wait until the shrink request is served: the size comes down, but
     * to the initial 1024, not below. */
    st = wait_for_buckets(map, at_most_1024_buckets);
    cr_assert_eq(st.buckets, 1024);
    moirai_map_destroy(map);
}

Test(map, stats_invalid, .timeout = 30)
{
    moirai_map_t *map = new_map(0);
    moirai_map_stats_t st;
    cr_assert_eq(moirai_map_stats(NULL, &st), -EINVAL);
    cr_assert_eq(moirai_map_stats(map, NULL), -EINVAL);
    moirai_map_destroy(map);
}

/* Maps come and go on several threads while each grows: the resizer is
 * started with the first map and joined with the last, maps are destroyed
 * while queued for resizing, and none of that disturbs the others. */
static void *map_lifecycle_thread(void *arg)
{
    atomic_int *bad = arg;
    for (int i = 0; i < 40; i++) {
        moirai_map_config_t cfg = {.initial_buckets = 1};
        moirai_map_t *map = NULL;
        if (moirai_map_create(&map, &cfg) != 0) {
            atomic_fetch_add(bad, 1);
            continue;
        }
        for (uint32_t k = 0; k < 300; k++)
            if (moirai_map_insert(map, &k, sizeof k, V(k + 1)) != 0)
                atomic_fetch_add(bad, 1);
        for (uint32_t k = 0; k < 300; k++) {
            void *v = NULL;
            if (moirai_map_lookup(map, &k, sizeof k, &v) != 0 || v != V(k + 1))
                atomic_fetch_add(bad, 1);
        }
        moirai_map_destroy(map);
    }
    return NULL;
}

Test(map, maps_created_and_destroyed_concurrently, .timeout = 120)
{
    atomic_int bad = 0;
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, map_lifecycle_thread, &bad), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_join(th[i], NULL), 0);
    cr_assert_eq(atomic_load(&bad), 0);
}

/* ------------------------------------------------------------------------
 * Out of memory: every allocating call returns -ENOMEM and changes
 * nothing. */

typedef struct oom_ctx {
    moirai_map_t *map;
    moirai_map_t *created;
    void *old;
    int expect_count;
} oom_ctx_t;

static int op_create(void *arg)
{
    oom_ctx_t *c = arg;
    moirai_map_config_t cfg = {.initial_buckets = 8};
    return moirai_map_create(&c->created, &cfg);
}

static void check_not_created(void *arg, long n)
{
    oom_ctx_t *c = arg;
    cr_assert_null(c->created, "out written by failing create (allocation %ld)", n);
}

static void check_unchanged(void *arg, long n)
{
    oom_ctx_t *c = arg;
    cr_assert_eq(moirai_map_count(c->map), (size_t)c->expect_count, "allocation %ld", n);
    cr_assert_eq(lookup_or(c->map, SKEY("present"), NULL), V(1), "allocation %ld", n);
    cr_assert_eq(moirai_map_lookup(c->map, SKEY("absent"), NULL), -ENOENT, "allocation %ld", n);
    cr_assert_eq(c->old, V(0xdead), "out written on failure (allocation %ld)", n);
}

static int op_insert(void *arg)
{
    oom_ctx_t *c = arg;
    return moirai_map_insert(c->map, SKEY("absent"), V(2));
}

static int op_insert_unique(void *arg)
{
    oom_ctx_t *c = arg;
    return moirai_map_insert_unique(c->map, SKEY("absent"), V(2), &c->old);
}

static int op_replace_absent(void *arg)
{
    oom_ctx_t *c = arg;
    return moirai_map_replace(c->map, SKEY("absent"), V(2), &c->old);
}

static int op_replace_present(void *arg)
{
    oom_ctx_t *c = arg;
    int rc = moirai_map_replace(c->map, SKEY("present"), V(3), &c->old);
    return rc == 1 ? 0 : rc;
}

Test(map, oom_every_allocating_call, .timeout = 60)
{
    /* Register this thread with RCU up front, so that the only
     * allocations the sweeps see are the map's own. */
    cr_assert_eq(moirai_rcu_thread_register(), 0);
    oom_ctx_t c = {0};
    moirai_test_oom_install();

    long fails = MOIRAI_TEST_OOM_SWEEP(op_create, check_not_created, &c);
    cr_assert_gt(fails, 0, "create allocates");
    cr_assert_not_null(c.created);
    moirai_map_destroy(c.created);

    int (*const ops[])(void *) = {op_insert, op_insert_unique, op_replace_absent,
                                  op_replace_present};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        moirai_test_oom_fail_at(-1);
        cr_assert_eq(moirai_map_create(&c.map, NULL), 0);
        cr_assert_eq(moirai_map_insert(c.map, SKEY("present"), V(1)), 0);
        c.expect_count = 1;
        c.old = V(0xdead);
        fails = MOIRAI_TEST_OOM_SWEEP(ops[i], check_unchanged, &c);
        cr_assert_gt(fails, 0, "op %zu allocates", i);
        /* And the successful run did its job. */
        if (ops[i] == op_replace_present) {
            cr_assert_eq(c.old, V(1));
            cr_assert_eq(lookup_or(c.map, SKEY("present"), NULL), V(3));
        } else {
            cr_assert_eq(lookup_or(c.map, SKEY("absent"), NULL), V(2));
            cr_assert_eq(moirai_map_count(c.map), 2);
        }
        /* Calls that do not allocate are unaffected by failures. */
        moirai_test_oom_fail_at(0);
        cr_assert_eq(moirai_map_lookup(c.map, SKEY("present"), NULL), 0);
        cr_assert_eq(moirai_map_remove(c.map, SKEY("present"), NULL), 0);
        cr_assert_eq(moirai_test_oom_count(), 0, "lookup and remove do not allocate");
        moirai_test_oom_fail_at(-1);
        moirai_map_destroy(c.map);
    }
    moirai_test_oom_uninstall();
}

/* ------------------------------------------------------------------------
 * Publication across threads: a reader that finds a value sees the object
 * the writer filled in before inserting it. Run under TSan this also
 * checks the hand-off annotations; the long version is in the stress
 * test. */

typedef struct payload {
    uint64_t key;
    uint64_t check;
} payload_t;

typedef struct pub {
    moirai_map_t *map;
    payload_t *items;
    int n;
    atomic_int found;
} pub_t;

static void *pub_reader(void *arg)
{
    pub_t *p = arg;
    for (int i = 0; i < p->n; i++) {
        uint64_t k = (uint64_t)i;
        void *v = NULL;
        while (moirai_map_lookup(p->map, &k, sizeof k, &v) != 0)
            sched_yield();
        /* Criterion's asserts belong on the main thread: count here. */
        payload_t *pl = v;
        if (pl->key == k && pl->check == k * 0x9e3779b97f4a7c15ull)
            atomic_fetch_add_explicit(&p->found, 1, memory_order_relaxed);
    }
    return NULL;
}

Test(map, lookup_sees_what_insert_published, .timeout = 60)
{
    pub_t p = {.map = new_map(1), .n = 2000};
    p.items = calloc((size_t)p.n, sizeof *p.items);
    cr_assert_not_null(p.items);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, pub_reader, &p), 0);
    for (int i = 0; i < p.n; i++) {
        uint64_t k = (uint64_t)i;
        p.items[i].key = k;
        p.items[i].check = k * 0x9e3779b97f4a7c15ull;
        cr_assert_eq(moirai_map_insert(p.map, &k, sizeof k, &p.items[i]), 0);
    }
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(atomic_load(&p.found), p.n, "every value found complete");
    moirai_map_destroy(p.map);
    free(p.items);
}
