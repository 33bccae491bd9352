/* The concurrent hash map's internals shared by its source files (never
 * installed): the map object, the inline core of the built-in hash, and
 * the calls between the entries and the resizer.
 *
 * The map is three files with one purpose each: map.c holds the entries
 * and every operation on them (create, destroy, updates, lookups), which
 * is the liburcu-facing part; map_hash.c the built-in hash; map_resize.c
 * the resizing policy and the process-wide resizer thread, which run on
 * their own schedule and never on a lookup. The short-key hash stays
 * static inline here, so a lookup or an update inlines it exactly as it
 * did when the map was one file; only keys longer than 16 bytes call out,
 * as they always did. */
#ifndef MOIRAI_SYNC_MAP_INTERNAL_H
#define MOIRAI_SYNC_MAP_INTERNAL_H

#include "rcu_internal.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <moirai/core/cache.h>
#include <moirai/sync/map.h>
#include <moirai/sync/mutex.h>

struct cds_lfht;

/* Stripes of get_or_insert's insert lock (a power of two). */
#define MOIRAI__MAP_STRIPES 64

/* The largest bucket array the map asks liburcu for. */
#define MOIRAI__MAP_MAX_BUCKETS ((size_t)1 << 40)

/* A per-thread-group entry counter on its own cache line, so that updaters
 * on different CPUs do not bounce one line between them. */
typedef struct count_slot {
    _Alignas(MOIRAI_CACHE_LINE) atomic_long n;
} count_slot_t;

struct moirai_map {
    /* Read by every call. */
    struct cds_lfht *ht;
    moirai_map_hash_cb hash; /* NULL: the built-in hash with `secret` */
    void *hash_arg;
    uint64_t secret; /* seed_mix(seed) */
    size_t slot_mask;
    /* Resizing (see map_resize.c); touched only when an updater finds
     * the load out of bounds, by the resizer thread, and by destroy. */
    size_t min_buckets;
    _Atomic size_t buckets;    /* bucket array size, as last resized */
    _Atomic uint64_t resizes;  /* resizes done, for moirai_map_stats() */
    _Atomic uint32_t queued;   /* 1 from a resize request until the resizer is done */
    moirai_map_t *resize_next; /* link in the resizer's queue */
    /* get_or_insert's insert locks, by hash (see there). */
    moirai_mutex_t stripes[MOIRAI__MAP_STRIPES];
    count_slot_t slots[]; /* slot_mask + 1 of them */
};

/* The power of two at or above `n`, at most MOIRAI__MAP_MAX_BUCKETS. */
static inline size_t moirai__map_round_pow2(size_t n)
{
    size_t p = 1;
    while (p < n && p < MOIRAI__MAP_MAX_BUCKETS)
        p <<= 1;
    return p;
}

/* ------------------------------------------------------------------------
 * The built-in hash (its long-key loop and the seed are in map_hash.c).
 *
 * Design after wyhash (Wang Yi): the core step multiplies two 64-bit words
 * into a 128-bit product and XORs its halves ("mum"), which spreads every
 * input bit across the whole word in one multiplication. Keys up to 16
 * bytes are read as two possibly overlapping words without a loop and cost
 * two multiplications; long keys feed 16 bytes per step (three independent
 * lanes of 16 bytes above 48 bytes, so the multiplications overlap in the
 * pipeline). The constants are odd 64-bit values with balanced bits (from
 * SplitMix64 and the golden ratio). The seed is mixed once per map, not
 * once per key. */

static const uint64_t K0 = 0x9e3779b97f4a7c15ull;
static const uint64_t K1 = 0xbf58476d1ce4e5b9ull;
static const uint64_t K2 = 0x94d049bb133111ebull;
static const uint64_t K3 = 0xd6e8feb86659fd93ull;

static inline uint64_t mum(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* Unaligned little-endian reads; memcpy compiles to a single load. */
static inline uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint64_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

/* The per-map secret derived from a seed. */
static inline uint64_t seed_mix(uint64_t seed)
{
    return seed ^ mum(seed ^ K0, K1);
}

static inline uint64_t hash_final(uint64_t a, uint64_t b, size_t len, uint64_t secret)
{
    return mum(K1 ^ len, mum(a ^ K1, b ^ secret ^ K2) ^ K3);
}

/* Keys longer than 16 bytes (map_hash.c): out of line, the short path
 * below is inlined. */
uint64_t moirai__map_hash_long(const unsigned char *p, size_t len, uint64_t secret);

/* A random seed for a map created without one; `salt` (the map's address)
 * varies it when the system has no entropy yet. Never 0. */
uint64_t moirai__map_hash_seed(const void *salt);

static inline __attribute__((always_inline)) uint64_t hash_bytes(const void *key, size_t len,
                                                                 uint64_t secret)
{
    const unsigned char *p = key;
    uint64_t a, b;
    if (MOIRAI__UNLIKELY(len > 16))
        return moirai__map_hash_long(p, len, secret);
    if (len >= 8) {
        /* Two possibly overlapping words cover every byte of 8..16. */
        a = rd64(p);
        b = rd64(p + len - 8);
    } else if (len >= 4) {
        a = rd32(p);
        b = rd32(p + len - 4);
    } else if (len > 0) {
        a = ((uint64_t)p[0] << 16) | ((uint64_t)p[len >> 1] << 8) | p[len - 1];
        b = 0;
    } else {
        a = 0;
        b = 0;
    }
    return hash_final(a, b, len, secret);
}

/* ------------------------------------------------------------------------
 * The resizer (map_resize.c). */

/* Queues `map` for the resizer if its load is out of bounds. Called by an
 * updater whose counter slot crossed a multiple of its check interval. */
void moirai__map_resize_check(moirai_map_t *map);

/* Counts a new map in and starts the resizer with the first one.
 * Returns 0 or -EAGAIN (the system refused a thread). */
int moirai__map_resize_acquire(void);

/* Counts a map out; the last one stops and joins the resizer. */
void moirai__map_resize_release(void);

/* Waits until the resizer no longer holds `map`. */
void moirai__map_resize_forget(moirai_map_t *map);

#endif /* MOIRAI_SYNC_MAP_INTERNAL_H */
