/* The concurrent hash map's built-in hash: the long-key loop and
 * moirai_map_hash(), and the random seed of a map created without one.
 *
 * Separate from map.c because the hash is a self-contained function of
 * bytes (after wyhash; the design is described in map_internal.h, whose
 * inline short-key path every lookup uses) and knows nothing of entries,
 * RCU or liburcu. */
#include "map_internal.h"

#include <stdint.h>
#include <sys/random.h>
#include <time.h>

#include <moirai/sync/map.h>

/* Keys longer than 16 bytes: out of line, the short path is inlined. */
uint64_t moirai__map_hash_long(const unsigned char *p, size_t len, uint64_t secret)
{
    size_t i = len;
    if (i > 48) {
        uint64_t s1 = secret, s2 = secret;
        do {
            secret = mum(rd64(p) ^ K1, rd64(p + 8) ^ secret);
            s1 = mum(rd64(p + 16) ^ K2, rd64(p + 24) ^ s1);
            s2 = mum(rd64(p + 32) ^ K3, rd64(p + 40) ^ s2);
            p += 48;
            i -= 48;
        } while (i > 48);
        secret ^= s1 ^ s2;
    }
    while (i > 16) {
        secret = mum(rd64(p) ^ K1, rd64(p + 8) ^ secret);
        p += 16;
        i -= 16;
    }
    /* The last 16 bytes, overlapping what the loop consumed when the
     * length is not a multiple of 16. */
    return hash_final(rd64(p + i - 16), rd64(p + i - 8), len, secret);
}

uint64_t moirai_map_hash(const void *key, size_t len, uint64_t seed)
{
    return hash_bytes(key, len, seed_mix(seed));
}

uint64_t moirai__map_hash_seed(const void *salt)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
        /* No entropy yet (early boot) or no getrandom: a mix of the clock
         * and an address still varies between runs. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)salt;
    }
    seed = mum(seed ^ K2, K3);
    return seed != 0 ? seed : K0;
}
