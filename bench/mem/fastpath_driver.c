/* A small driver for counting the instructions of the allocation fast
 * paths under callgrind (scripts/callgrind-fastpath.sh), not part of
 * moirai-bench: wall-clock time under valgrind means nothing, instruction
 * counts do.
 *
 *   fastpath_driver IMPL CASE ITERS
 *
 * IMPL: "moirai" or "mimalloc" (loaded with dlopen, as moirai-bench does).
 * CASE: "pool" (64-byte objects; Moirai: one moirai_pool_t) or "sizeclass"
 * (sizes 16..256 bytes from the same table as moirai-bench; Moirai: one
 * moirai_mempool_t with the default classes, sized releases; mimalloc:
 * mi_free_size).
 *
 * The loop is the one of bench/mem/bench_mem.c's churn cases: 4096 live
 * objects, each iteration releases a pseudo-randomly chosen one and
 * allocates a new one into its slot. Only the function measured_loop()
 * runs with callgrind's collection on (--toggle-collect=measured_loop), so
 * the set-up and the final releases are not counted; dividing the
 * inclusive cost of the allocator's functions by ITERS gives the
 * instructions per release + allocation pair. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/mem/mempool.h>
#include <moirai/mem/pool.h>

#include "churn.h"

static void *(*p_mi_malloc)(size_t);
static void (*p_mi_free)(void *);
static void (*p_mi_free_size)(void *, size_t);

static moirai_pool_t *pool;
static moirai_mempool_t *mempool;
static int impl_moirai;
static int sized;

static void *slots[LIVE];
static uint16_t sizes[LIVE];
static uint16_t size_table[SIZE_TABLE];

static inline void *alloc_one(size_t n)
{
    void *p = NULL;
    if (impl_moirai) {
        if (sized ? moirai_mempool_alloc(mempool, n, &p) : moirai_pool_alloc(pool, &p))
            return NULL;
        return p;
    }
    return p_mi_malloc(n);
}

static inline void free_one(void *p, size_t n)
{
    if (impl_moirai) {
        if (sized)
            moirai_mempool_free(mempool, p, n);
        else
            moirai_pool_free(pool, p);
    } else if (sized) {
        p_mi_free_size(p, n);
    } else {
        p_mi_free(p);
    }
}

/* The measured part; noinline so that callgrind can toggle on it. */
static __attribute__((noinline)) int measured_loop(uint64_t iters)
{
    uint32_t s = 2463534242u;
    for (uint64_t it = 0; it < iters; it++) {
        uint32_t i = xorshift32(&s) & (LIVE - 1);
        size_t n = sized ? size_table[it & (SIZE_TABLE - 1)] : OBJECT_SIZE;
        free_one(slots[i], sizes[i]);
        void *p = alloc_one(n);
        if (!p)
            return -1;
        *(uint64_t *)p = it;
        slots[i] = p;
        sizes[i] = (uint16_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s moirai|mimalloc pool|sizeclass ITERS\n", argv[0]);
        return 2;
    }
    impl_moirai = strcmp(argv[1], "moirai") == 0;
    sized = strcmp(argv[2], "sizeclass") == 0;
    uint64_t iters = strtoull(argv[3], NULL, 10);
    if (!impl_moirai) {
        void *h = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            return 1;
        }
        *(void **)&p_mi_malloc = dlsym(h, "mi_malloc");
        *(void **)&p_mi_free = dlsym(h, "mi_free");
        *(void **)&p_mi_free_size = dlsym(h, "mi_free_size");
        if (!p_mi_malloc || !p_mi_free || !p_mi_free_size)
            return 1;
    } else if (sized) {
        moirai_mempool_config_t cfg;
        moirai_mempool_config_init(&cfg);
        if (moirai_mempool_create(&mempool, &cfg) != 0)
            return 1;
    } else {
        moirai_pool_config_t cfg;
        moirai_pool_config_init(&cfg, OBJECT_SIZE);
        if (moirai_pool_create(&pool, &cfg) != 0)
            return 1;
    }
    churn_size_table_fill(size_table);
    for (uint32_t i = 0; i < LIVE; i++) {
        size_t n = sized ? size_table[(i * 7u) % SIZE_TABLE] : OBJECT_SIZE;
        slots[i] = alloc_one(n);
        if (!slots[i])
            return 1;
        sizes[i] = (uint16_t)n;
    }
    int rc = measured_loop(iters);
    for (uint32_t i = 0; i < LIVE; i++)
        free_one(slots[i], sizes[i]);
    if (impl_moirai) {
        moirai_mempool_destroy(mempool);
        moirai_pool_destroy(pool);
    }
    return rc == 0 ? 0 : 1;
}
