/* The concurrent hash map: a thin layer over liburcu's rculfhash.
 *
 * rculfhash is a lock-free split-ordered list (Shalev and Shavit, "Split-
 * ordered lists: lock-free extensible hash tables", JACM 2006) whose
 * bucket array can be resized while readers and updaters keep going. It
 * offers exactly the primitives this map needs: add_unique (add-or-fail),
 * add_replace (atomic insert-or-replace), del, resize, and RCU-protected
 * lookup and traversal. What the map adds is the Moirai contract:
 * byte-string keys copied into the entry, a built-in hash (map_hash.c),
 * reclamation through moirai_rcu_call(), allocation through
 * moirai_malloc(), a cheap entry count, a resizing policy of its own driven
 * by one resizer thread (map_resize.c: liburcu's automatic resizing can
 * stall for good), and ThreadSanitizer annotations for the hand-offs
 * liburcu (built without TSan) makes invisibly.
 *
 * This file holds the entries and every operation on them: create and
 * destroy, updates, lookups, iteration and the entry count.
 *
 * Entries are immutable after publication; replace publishes a new entry
 * and retires the old one, so a reader never sees a half-written value. */
#include "map_internal.h"

#include <moirai/sync/map.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <urcu/rculfhash.h>

#include <moirai/core/alloc.h>
#include <moirai/core/cache.h>
#include <moirai/sync/mutex.h>
#include <moirai/sync/rcu.h>

/* ThreadSanitizer cannot see the atomics inside liburcu (an uninstrumented
 * library, and 0.13 predates its TSan support), so it would report an
 * entry's hand-off from its inserter to its readers as a race. These
 * annotations state the happens-before edge that rculfhash's commit
 * barriers really provide: the inserter releases the entry before the add,
 * a reader acquires it before reading its fields. Reclamation needs no
 * per-entry annotation: rcu_internal.h models every grace period (each
 * read-side unlock releases, each reclamation callback acquires). */
#ifdef MOIRAI_RCU_TSAN
#define tsan_acquire(p) __tsan_acquire((void *)(p))
#define tsan_release(p) __tsan_release((void *)(p))
#else
#define tsan_acquire(p) ((void)(p))
#define tsan_release(p) ((void)(p))
#endif

/* Enters a read-side critical section, registering the thread with RCU on
 * its first call (one thread-local load afterwards). Returns 0, or -ENOMEM
 * if that registration failed (see rcu.h). */
static inline int read_lock(void)
{
    int rc = moirai__rcu_ensure();
    if (MOIRAI__UNLIKELY(rc != 0))
        return rc;
    moirai__rcu_read_lock();
    return 0;
}

static inline void read_unlock(void)
{
    moirai__rcu_read_unlock();
}

/* One entry. The rculfhash node comes first so that liburcu's 8-byte
 * alignment requirement (it keeps flags in the low bits of `next`) holds
 * for any malloc'd entry; the key bytes follow inline. */
typedef struct map_node {
    struct cds_lfht_node lfht;
    moirai_rcu_head_t rcu; /* reclamation; also links entries in destroy */
    /* The value. Written in place by fetch_add and update (compare-and-
     * swap); remove and replace, after unlinking the entry, exchange it
     * for DEAD, so an update that comes later fails its compare-and-swap
     * and retries on the current entry instead of being lost. */
    _Atomic uintptr_t value;
    size_t key_len;
    unsigned char key[];
} map_node_t;

/* The value of an unlinked entry (see map_node_t): the address of an
 * object of this library, so no pointer a caller owns equals it; user
 * values equal to it are refused. */
static const char dead_mark;
#define DEAD ((uintptr_t)&dead_mark)

/* What the match callback compares an entry with. */
typedef struct map_key {
    const void *bytes;
    size_t len;
} map_key_t;

/* ------------------------------------------------------------------------
 * Hashing and comparing keys (the hash itself is in map_internal.h and
 * map_hash.c). */

static inline unsigned long node_hash(const moirai_map_t *map, const void *key, size_t len)
{
    if (MOIRAI__LIKELY(map->hash == NULL))
        return (unsigned long)hash_bytes(key, len, map->secret);
    return (unsigned long)map->hash(map->hash_arg, key, len);
}

/* Key equality: lengths first, then bytes; keys up to 16 bytes with two
 * possibly overlapping loads per side instead of a call to memcmp. */
static inline bool key_equal(const unsigned char *x, const unsigned char *y, size_t len)
{
    if (len >= 8 && len <= 16) {
        uint64_t a, b, c, d;
        memcpy(&a, x, 8);
        memcpy(&b, y, 8);
        memcpy(&c, x + len - 8, 8);
        memcpy(&d, y + len - 8, 8);
        return ((a ^ b) | (c ^ d)) == 0;
    }
    if (len >= 4 && len < 8) {
        uint32_t a, b, c, d;
        memcpy(&a, x, 4);
        memcpy(&b, y, 4);
        memcpy(&c, x + len - 4, 4);
        memcpy(&d, y + len - 4, 4);
        return ((a ^ b) | (c ^ d)) == 0;
    }
    return len == 0 || memcmp(x, y, len) == 0;
}

/* ------------------------------------------------------------------------
 * Entry count. */

/* The slot this thread bumps: threads are dealt slots round-robin on first
 * use, so up to slot_mask + 1 concurrent updaters never share a line.
 * Stored plus one, so that 0 means "not dealt yet" without a second
 * thread-local flag. */
static _Thread_local unsigned thread_slot_plus1;
static atomic_uint next_thread_slot;

static inline atomic_long *count_slot(moirai_map_t *map)
{
    if (MOIRAI__UNLIKELY(thread_slot_plus1 == 0)) {
        /* Relaxed: the number only spreads threads over slots; any value
         * is correct (on wrap-around the sum is 0 and the thread is just
         * dealt again on its next update). */
        thread_slot_plus1 =
            atomic_fetch_add_explicit(&next_thread_slot, 1, memory_order_relaxed) + 1;
    }
    return &map->slots[(thread_slot_plus1 - 1) & map->slot_mask].n;
}

/* Updaters look at the load factor when their slot's counter crosses a
 * multiple of this (a power of two): rarely enough to cost nothing,
 * often enough that a map grows before its chains get long. */
#define CHECK_EVERY 32

static inline void count_add(moirai_map_t *map, long delta)
{
    /* Relaxed: the count is statistics and orders nothing; the entry's
     * publication is ordered by liburcu's commit barriers. */
    long now = atomic_fetch_add_explicit(count_slot(map), delta, memory_order_relaxed) + delta;
    if (MOIRAI__UNLIKELY((now & (CHECK_EVERY - 1)) == 0))
        moirai__map_resize_check(map);
}

size_t moirai_map_count(const moirai_map_t *map)
{
    if (map == NULL)
        return 0;
    long sum = 0;
    for (size_t i = 0; i <= map->slot_mask; i++) {
        /* Relaxed: see count_add(). An update that happened-before this
         * call is still seen, by coherence. */
        sum += atomic_load_explicit(&map->slots[i].n, memory_order_relaxed);
    }
    return sum > 0 ? (size_t)sum : 0;
}

/* ------------------------------------------------------------------------
 * Entries. */

static int match_key(struct cds_lfht_node *lnode, const void *arg)
{
    const map_node_t *node = caa_container_of(lnode, map_node_t, lfht);
    const map_key_t *key = arg;

    /* The entry was published by an add with a full barrier after its
     * fields were written and liburcu read the pointer with dependency
     * ordering: tell TSan. */
    tsan_acquire(node);
    return node->key_len == key->len && key_equal(node->key, key->bytes, key->len);
}

static map_node_t *node_new(const void *key, size_t len, void *value)
{
    if (len > SIZE_MAX - sizeof(map_node_t))
        return NULL;
    map_node_t *node = moirai_malloc(sizeof(map_node_t) + len);
    if (node == NULL)
        return NULL;
    cds_lfht_node_init(&node->lfht);
    atomic_init(&node->value, (uintptr_t)value);
    node->key_len = len;
    if (len > 0)
        memcpy(node->key, key, len);
    /* Everything written so far (and by the caller before the call) is
     * published by the add that follows. */
    tsan_release(node);
    return node;
}

static void free_node_rcu(moirai_rcu_head_t *head)
{
    map_node_t *node = caa_container_of(head, map_node_t, rcu);
    /* The grace period has ended: every read-side critical section that
     * could see this entry happened before (moirai_rcu_call() told TSan). */
    moirai_free(node);
}

/* Frees an unlinked entry after a grace period. */
static void node_retire(map_node_t *node)
{
    moirai_rcu_call(&node->rcu, free_node_rcu);
}

static inline bool bad_key(const void *key, size_t len)
{
    return key == NULL && len > 0;
}

/* ------------------------------------------------------------------------
 * Create and destroy. */

int moirai_map_create(moirai_map_t **out, const moirai_map_config_t *cfg)
{
    static const moirai_map_config_t defaults = {0};
    if (out == NULL)
        return -EINVAL;
    if (cfg == NULL)
        cfg = &defaults;
    if (cfg->initial_buckets > MOIRAI_MAP_MAX_INITIAL_BUCKETS)
        return -EINVAL;
    size_t buckets = moirai__map_round_pow2(cfg->initial_buckets == 0 ? 16 : cfg->initial_buckets);

    /* One counter slot per possible CPU (a power of two, at most 64) keeps
     * concurrent updaters on separate lines without a large map header. */
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    size_t slots = moirai__map_round_pow2(cpus > 0 ? (size_t)cpus : 1);
    if (slots > 64)
        slots = 64;

    moirai_map_t *map = moirai_aligned_alloc(MOIRAI_CACHE_LINE,
                                             sizeof(moirai_map_t) + slots * sizeof(count_slot_t));
    if (map == NULL)
        return -ENOMEM;
    map->hash = cfg->hash;
    map->hash_arg = cfg->hash_arg;
    map->secret =
        seed_mix(cfg->hash == NULL && cfg->seed == 0 ? moirai__map_hash_seed(map) : cfg->seed);
    map->slot_mask = slots - 1;
    for (size_t i = 0; i < slots; i++)
        atomic_init(&map->slots[i].n, 0);
    map->min_buckets = buckets;
    atomic_init(&map->buckets, buckets);
    atomic_init(&map->resizes, 0);
    atomic_init(&map->queued, 0);
    map->resize_next = NULL;
    for (size_t i = 0; i < MOIRAI__MAP_STRIPES; i++)
        moirai_mutex_init(&map->stripes[i]);

    int rc = moirai__map_resize_acquire();
    if (rc != 0) {
        moirai_free(map);
        return rc;
    }
    /* No liburcu flags: Moirai resizes the table itself (see map_resize.c)
     * and counts its entries itself, so liburcu's per-CPU accounting
     * would only add an atomic to every update. A minimum allocation of
     * one bucket lets the table shrink back to its initial size. */
    map->ht = cds_lfht_new_flavor(buckets, 1, 0, 0, &urcu_memb_flavor, NULL);
    if (map->ht == NULL) {
        moirai__map_resize_release();
        moirai_free(map);
        return -ENOMEM;
    }
    *out = map;
    return 0;
}

void moirai_map_destroy(moirai_map_t *map)
{
    if (map == NULL)
        return;

    /* No updater runs any more (the contract), so no new request can come;
     * wait for one in flight to finish before the table goes. */
    moirai__map_resize_forget(map);

    /* liburcu refuses to destroy a table that still holds entries, so
     * unlink them all first, chaining them through their rcu heads. No
     * other thread uses the map (the contract), so they can be freed as
     * soon as the table is gone; the read lock only satisfies rculfhash's
     * calling convention. */
    moirai_rcu_head_t *list = NULL;
    struct cds_lfht_iter iter;
    struct cds_lfht_node *lnode;
    moirai_rcu_read_lock();
    cds_lfht_for_each(map->ht, &iter, lnode)
    {
        map_node_t *node = caa_container_of(lnode, map_node_t, lfht);
        if (cds_lfht_del(map->ht, lnode) == 0) {
            node->rcu.next = list;
            list = &node->rcu;
        }
    }
    moirai_rcu_read_unlock();

    /* It cannot fail on an empty table with no resize in flight. */
    int rc = cds_lfht_destroy(map->ht, NULL);
    (void)rc;

    while (list != NULL) {
        map_node_t *node = caa_container_of(list, map_node_t, rcu);
        list = list->next;
        moirai_free(node);
    }
    moirai_free(map);
    moirai__map_resize_release();

    /* Entries removed earlier wait in the RCU callback queue; wait for
     * them so that destroy frees everything it owned. */
    moirai_rcu_barrier();
}

/* ------------------------------------------------------------------------
 * Updates and lookups. */

/* The current value of a published entry, or DEAD once it is unlinked.
 * Acquire: pairs with the release of the insert (liburcu's barrier, and
 * atomic_init before it) or of the fetch_add / update that stored it, so
 * the caller sees what the storing thread wrote before. */
static inline uintptr_t node_value(map_node_t *node)
{
    return atomic_load_explicit(&node->value, memory_order_acquire);
}

/* Takes the final value of an entry this thread has just unlinked and
 * marks it DEAD. Acquire-release: every fetch_add or update that succeeded
 * on the entry before the exchange is part of the value returned, and one
 * that comes later sees DEAD and retries on the current entry. */
static inline void *node_seal(map_node_t *node)
{
    return (void *)atomic_exchange_explicit(&node->value, DEAD, memory_order_acq_rel);
}

/* The common start of insert_unique and replace: checks the arguments,
 * hashes the key, builds the new entry and enters a read-side critical
 * section. Returns 0 with `*node` and `*hash` set and the read lock held,
 * or -EINVAL / -ENOMEM with nothing held or allocated. */
static inline int add_begin(moirai_map_t *map, const void *key, size_t len, void *value,
                            map_node_t **node, unsigned long *hash)
{
    if (map == NULL || bad_key(key, len) || (uintptr_t)value == DEAD)
        return -EINVAL;
    *hash = node_hash(map, key, len);
    *node = node_new(key, len, value);
    if (*node == NULL)
        return -ENOMEM;
    int rc = read_lock();
    if (rc != 0)
        moirai_free(*node);
    return rc;
}

/* The first entry with key `mk` in `map`, or NULL; under the read lock. */
static inline struct cds_lfht_node *find(moirai_map_t *map, unsigned long hash, const map_key_t *mk)
{
    struct cds_lfht_iter iter;
    cds_lfht_lookup(map->ht, hash, match_key, mk, &iter);
    return cds_lfht_iter_get_node(&iter);
}

/* The live entry of `mk` and its value, or NULL; under the read lock. An
 * entry found DEAD was unlinked after the lookup reached it: look again,
 * which finds its successor or nothing (the unlinked entry is never found
 * again, so this ends). */
static inline map_node_t *find_live(moirai_map_t *map, unsigned long hash, const map_key_t *mk,
                                    uintptr_t *value)
{
    for (;;) {
        struct cds_lfht_node *lnode = find(map, hash, mk);
        if (lnode == NULL)
            return NULL;
        map_node_t *node = caa_container_of(lnode, map_node_t, lfht);
        uintptr_t v = node_value(node);
        if (v != DEAD) {
            *value = v;
            return node;
        }
    }
}

int moirai_map_insert_unique(moirai_map_t *map, const void *key, size_t len, void *value,
                             void **existing)
{
    map_node_t *node;
    unsigned long hash;
    int rc = add_begin(map, key, len, value, &node, &hash);
    if (rc != 0)
        return rc;
    map_key_t mk = {key, len};
    for (;;) {
        /* add_unique publishes with a full barrier before and after its
         * commit, or returns the entry that is present. */
        struct cds_lfht_node *got = cds_lfht_add_unique(map->ht, hash, match_key, &mk, &node->lfht);
        if (got == &node->lfht) {
            read_unlock();
            count_add(map, 1);
            return 0;
        }
        uintptr_t v = node_value(caa_container_of(got, map_node_t, lfht));
        if (v == DEAD)
            continue; /* being removed: try again, it is gone now */
        if (existing != NULL)
            *existing = (void *)v;
        read_unlock();
        /* Never published: no reader can hold it, free it now. */
        moirai_free(node);
        return -EEXIST;
    }
}

int moirai_map_insert(moirai_map_t *map, const void *key, size_t len, void *value)
{
    return moirai_map_insert_unique(map, key, len, value, NULL);
}

int moirai_map_replace(moirai_map_t *map, const void *key, size_t len, void *value, void **old)
{
    map_node_t *node;
    unsigned long hash;
    int rc = add_begin(map, key, len, value, &node, &hash);
    if (rc != 0)
        return rc;
    map_key_t mk = {key, len};
    /* add_replace swaps the new entry in for the old one in one atomic
     * step (full barriers around it), or adds it if the key is absent. */
    struct cds_lfht_node *got = cds_lfht_add_replace(map->ht, hash, match_key, &mk, &node->lfht);
    if (got == NULL) {
        read_unlock();
        count_add(map, 1);
        if (old != NULL)
            *old = NULL;
        return 0;
    }
    map_node_t *prev = caa_container_of(got, map_node_t, lfht);
    void *pv = node_seal(prev);
    if (old != NULL)
        *old = pv;
    node_retire(prev);
    read_unlock();
    return 1;
}

int moirai_map_remove(moirai_map_t *map, const void *key, size_t len, void **old)
{
    if (map == NULL || bad_key(key, len))
        return -EINVAL;
    unsigned long hash = node_hash(map, key, len);
    map_key_t mk = {key, len};

    int rc = read_lock();
    if (rc != 0)
        return rc;
    for (;;) {
        struct cds_lfht_node *lnode = find(map, hash, &mk);
        if (lnode == NULL) {
            read_unlock();
            return -ENOENT;
        }
        map_node_t *node = caa_container_of(lnode, map_node_t, lfht);
        /* del fails only if another thread removed or replaced this entry
         * since our lookup; look again to remove what is current. */
        if (cds_lfht_del(map->ht, lnode) == 0) {
            void *v = node_seal(node);
            if (old != NULL)
                *old = v;
            node_retire(node);
            read_unlock();
            count_add(map, -1);
            return 0;
        }
    }
}

int moirai_map_lookup(moirai_map_t *map, const void *key, size_t len, void **value)
{
    if (map == NULL || bad_key(key, len))
        return -EINVAL;
    unsigned long hash = node_hash(map, key, len);
    map_key_t mk = {key, len};

    int rc = read_lock();
    if (rc != 0)
        return rc;
    uintptr_t v;
    if (find_live(map, hash, &mk, &v) != NULL) {
        if (value != NULL)
            *value = (void *)v;
    } else {
        rc = -ENOENT;
    }
    read_unlock();
    return rc;
}

/* Inserts a new entry for an absent key with `value`; under the read
 * lock. Returns 1 with the entry published, or 0 if the key turned out to
 * be present (the entry is freed, nothing published), or -ENOMEM. */
static int add_new(moirai_map_t *map, unsigned long hash, const map_key_t *mk, void *value)
{
    map_node_t *node = node_new(mk->bytes, mk->len, value);
    if (node == NULL)
        return -ENOMEM;
    for (;;) {
        struct cds_lfht_node *got = cds_lfht_add_unique(map->ht, hash, match_key, mk, &node->lfht);
        if (got == &node->lfht) {
            count_add(map, 1);
            return 1;
        }
        /* A DEAD entry is being removed: adding again finds it gone. */
        if (node_value(caa_container_of(got, map_node_t, lfht)) != DEAD) {
            moirai_free(node);
            return 0;
        }
    }
}

/* The compare-and-swap step of fetch_add and update on a live entry.
 * Acquire-release: the new value is published to later readers (release)
 * and a failed or successful step sees the previous writer's data
 * (acquire), as the header promises. */
static inline bool value_cas(map_node_t *node, uintptr_t *expected, uintptr_t desired)
{
    return atomic_compare_exchange_weak_explicit(&node->value, expected, desired,
                                                 memory_order_acq_rel, memory_order_acquire);
}

int moirai_map_fetch_add(moirai_map_t *map, const void *key, size_t len, intptr_t delta,
                         intptr_t *old)
{
    if (map == NULL || bad_key(key, len))
        return -EINVAL;
    if ((uintptr_t)delta == DEAD)
        return -EOVERFLOW; /* the value an absent key would get */
    unsigned long hash = node_hash(map, key, len);
    map_key_t mk = {key, len};

    int rc = read_lock();
    if (rc != 0)
        return rc;
    for (;;) {
        uintptr_t v;
        map_node_t *node = find_live(map, hash, &mk, &v);
        if (node == NULL) {
            rc = add_new(map, hash, &mk, (void *)(uintptr_t)delta);
            if (rc == 0)
                continue; /* someone else inserted it: add to theirs */
            if (rc == 1 && old != NULL)
                *old = 0;
            break;
        }
        /* Unsigned arithmetic: wraps like a two's-complement intptr_t
         * without the undefined behaviour of a signed overflow. */
        while (v != DEAD) {
            uintptr_t sum = v + (uintptr_t)delta;
            if (sum == DEAD) {
                read_unlock();
                return -EOVERFLOW;
            }
            if (value_cas(node, &v, sum)) {
                if (old != NULL)
                    *old = (intptr_t)v;
                read_unlock();
                return 0;
            }
        }
        /* The entry was unlinked under us: update its successor. */
    }
    read_unlock();
    return rc;
}

int moirai_map_update(moirai_map_t *map, const void *key, size_t len, moirai_map_update_cb fn,
                      void *arg, void **value)
{
    if (map == NULL || fn == NULL || bad_key(key, len))
        return -EINVAL;
    unsigned long hash = node_hash(map, key, len);
    map_key_t mk = {key, len};

    int rc = read_lock();
    if (rc != 0)
        return rc;
    for (;;) {
        uintptr_t v;
        void *nv = NULL;
        map_node_t *node = find_live(map, hash, &mk, &v);
        if (node == NULL) {
            rc = fn(arg, key, len, NULL, 0, &nv);
            if (rc == 0 && (uintptr_t)nv == DEAD)
                rc = -EINVAL;
            if (rc != 0)
                break;
            rc = add_new(map, hash, &mk, nv);
            if (rc == 0)
                continue; /* inserted meanwhile: compute from its value */
            if (rc == 1 && value != NULL)
                *value = nv;
            break;
        }
        while (v != DEAD) {
            rc = fn(arg, key, len, (void *)v, 1, &nv);
            if (rc == 0 && (uintptr_t)nv == DEAD)
                rc = -EINVAL;
            if (rc != 0) {
                read_unlock();
                return rc;
            }
            if (value_cas(node, &v, (uintptr_t)nv)) {
                if (value != NULL)
                    *value = nv;
                read_unlock();
                return 0;
            }
        }
    }
    read_unlock();
    return rc;
}

int moirai_map_get_or_insert(moirai_map_t *map, const void *key, size_t len,
                             moirai_map_ctor_cb ctor, moirai_map_value_cb dtor, void *arg,
                             void **value)
{
    if (map == NULL || ctor == NULL || bad_key(key, len))
        return -EINVAL;
    unsigned long hash = node_hash(map, key, len);
    map_key_t mk = {key, len};

    /* Fast path: the key is present, one lock-free lookup. */
    int rc = read_lock();
    if (rc != 0)
        return rc;
    uintptr_t v = 0;
    if (find_live(map, hash, &mk, &v) != NULL) {
        read_unlock();
        if (value != NULL)
            *value = (void *)v;
        return 0;
    }
    read_unlock();

    /* Slow path. The stripe lock makes construction exactly-once among
     * get_or_insert calls: whoever holds it and still finds the key absent
     * constructs and inserts before releasing it, so every later holder
     * finds the entry. The constructor runs outside any RCU read-side
     * critical section (it may block or allocate at length). Stripes by
     * the hash's high bits, which the bucket index does not use. */
    moirai_mutex_t *stripe = &map->stripes[(hash >> 26) & (MOIRAI__MAP_STRIPES - 1)];
    moirai_mutex_lock(stripe);
    moirai__rcu_read_lock();
    bool found = find_live(map, hash, &mk, &v) != NULL;
    moirai__rcu_read_unlock();
    if (found) {
        moirai_mutex_unlock(stripe);
        if (value != NULL)
            *value = (void *)v;
        return 0;
    }
    void *nv = NULL;
    rc = ctor(arg, key, len, &nv);
    if (rc == 0 && (uintptr_t)nv == DEAD) {
        if (dtor != NULL)
            dtor(arg, nv);
        rc = -EINVAL;
    }
    if (rc != 0) {
        moirai_mutex_unlock(stripe);
        return rc;
    }
    moirai__rcu_read_lock();
    for (;;) {
        rc = add_new(map, hash, &mk, nv);
        if (rc != 0)
            break;
        /* A call that does not take the stripe lock added the key after
         * our check: its entry wins, ours is disposed of. */
        if (find_live(map, hash, &mk, &v) != NULL)
            break;
    }
    moirai__rcu_read_unlock();
    moirai_mutex_unlock(stripe);
    if (rc == 1) {
        if (value != NULL)
            *value = nv;
        return 1;
    }
    if (dtor != NULL)
        dtor(arg, nv);
    if (rc < 0)
        return rc;
    if (value != NULL)
        *value = (void *)v;
    return 0;
}

int moirai_map_iterate(moirai_map_t *map, moirai_map_iter_cb cb, void *arg)
{
    if (map == NULL || cb == NULL)
        return -EINVAL;
    struct cds_lfht_iter iter;
    struct cds_lfht_node *lnode;

    int rc = read_lock();
    if (rc != 0)
        return rc;
    cds_lfht_for_each(map->ht, &iter, lnode)
    {
        map_node_t *node = caa_container_of(lnode, map_node_t, lfht);
        tsan_acquire(node);
        uintptr_t v = node_value(node);
        if (v == DEAD) {
            /* Unlinked after the traversal reached it. A replace put its
             * successor in its place, which the traversal has passed:
             * report the key's current value, if any (a key removed and
             * re-inserted may then be visited twice, as documented). */
            map_key_t mk = {node->key, node->key_len};
            if (find_live(map, node_hash(map, node->key, node->key_len), &mk, &v) == NULL)
                continue;
        }
        rc = cb(arg, node->key, node->key_len, (void *)v);
        if (rc != 0)
            break;
    }
    read_unlock();
    return rc;
}
