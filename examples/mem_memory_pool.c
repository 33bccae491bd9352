/* moirai-mem: a memory pool for variable-size blocks, by size class.
 *
 * A memory pool with classes of 32, 128 and 512 bytes: each request is
 * served by the smallest class that fits (a pool of its own with per-thread
 * caches), and a request above the largest class goes to moirai_malloc().
 * The caller passes the size again on release, so blocks carry no header.
 * Exits non-zero if a block lands in the wrong class or the counters do
 * not match what was allocated. */
#include <moirai/core.h>
#include <moirai/mem.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const size_t classes[] = {32, 128, 512};
static const size_t requests[] = {1, 32, 33, 100, 128, 129, 512, 513, 4096};
/* The class each request must use: an index into classes, or LARGE. */
#define LARGE (-ERANGE) /* what moirai_mempool_class_of() says above the classes */
static const int expected_class[] = {0, 0, 1, 1, 1, 2, 2, LARGE, LARGE};

enum { REQUESTS = sizeof(requests) / sizeof(requests[0]) };

int main(void)
{
    moirai_mempool_config_t cfg;
    moirai_mempool_config_init(&cfg);
    cfg.classes = classes;
    cfg.class_count = sizeof(classes) / sizeof(classes[0]);
    cfg.name = "blocks";
    moirai_mempool_t *mp;
    int rc = moirai_mempool_create(&mp, &cfg);
    if (rc != 0) {
        fprintf(stderr, "moirai_mempool_create: %s\n", moirai_strerror(rc));
        return 1;
    }

    int bad = 0;
    void *blocks[REQUESTS];
    for (size_t i = 0; i < REQUESTS; i++) {
        if (moirai_mempool_class_of(mp, requests[i]) != expected_class[i]) {
            fprintf(stderr, "%zu bytes: class %d, expected %d\n", requests[i],
                    moirai_mempool_class_of(mp, requests[i]), expected_class[i]);
            bad++;
        }
        if (moirai_mempool_alloc(mp, requests[i], &blocks[i]) != 0)
            return 1;
        memset(blocks[i], (int)i, requests[i]); /* the whole block is usable */
    }
    /* Blocks of one class are disjoint: each still holds its own bytes. */
    for (size_t i = 0; i < REQUESTS; i++) {
        const unsigned char *p = blocks[i];
        for (size_t k = 0; k < requests[i]; k++)
            bad += p[k] != (unsigned char)i;
    }
    for (size_t i = 0; i < REQUESTS; i++)
        moirai_mempool_free(mp, blocks[i], requests[i]); /* the size again */

    moirai_mempool_stats_t st;
    moirai_mempool_stats(mp, &st);
    printf("memory pool: %zu classes, %llu small and %llu large allocations, "
           "%llu small and %llu large frees, %d misplaced\n",
           moirai_mempool_class_count(mp), (unsigned long long)st.small.allocations,
           (unsigned long long)st.large_allocations, (unsigned long long)st.small.frees,
           (unsigned long long)st.large_frees, bad);
    moirai_mempool_destroy(mp);
    return bad == 0 && st.small.allocations == 7 && st.large_allocations == 2 &&
                   st.small.frees == 7 && st.large_frees == 2
               ? 0
               : 1;
}
