/* Memory pools: variable-size blocks from size classes.
 *
 * A memory pool serves blocks up to its largest size class from one object
 * pool per class (moirai/mem/pool.h), so it has the same per-thread
 * caching: the common allocation and release touch only the calling
 * thread's memory. A request is rounded up to the smallest class that
 * holds it. Larger requests go to moirai_malloc() (the allocation hook).
 *
 * The default classes are 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224,
 * 256, 320, 384, 448, 512, 640, 768, 896 and 1024 bytes (steps of 16 up to
 * 128, then four classes per doubling, so no block wastes more than a
 * quarter of itself above 128 bytes). A caller may choose its own list.
 *
 * Releases are sized: moirai_mempool_free() takes the size the block was
 * allocated with (as Solaris' kmem_free() and C++14 sized delete do). It
 * finds the class from the size, so no header precedes the blocks and no
 * lookup by address is needed.
 *
 * Safety in checked builds is that of the object pools: released blocks
 * are poisoned for AddressSanitizer, and in an AddressSanitizer build the
 * bytes between the requested size and the class size are poisoned too,
 * so an overflow into them is reported. A double release aborts.
 *
 * Thread-safety: every function except create and destroy may be called
 * from any thread at any time. */
#ifndef MOIRAI_MEM_MEMPOOL_H
#define MOIRAI_MEM_MEMPOOL_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/mem/export.h>
#include <moirai/mem/pool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An opaque memory pool. */
typedef struct moirai_mempool moirai_mempool_t;

/* The most size classes a memory pool can have, and the largest class. */
#define MOIRAI_MEMPOOL_MAX_CLASSES    64
#define MOIRAI_MEMPOOL_MAX_CLASS_SIZE 65536

/* How to build a memory pool. Fill it with moirai_mempool_config_init();
 * fields left 0 or NULL take their defaults. */
typedef struct moirai_mempool_config {
    /* The size classes in bytes, strictly increasing, each a multiple of 8
     * and at most MOIRAI_MEMPOOL_MAX_CLASS_SIZE; NULL for the defaults. */
    const size_t *classes;
    size_t class_count; /* entries in `classes` (1..MOIRAI_MEMPOOL_MAX_CLASSES) */
    /* Objects per magazine of each class's pool (0: the pool default). */
    size_t magazine_size;
    /* Chunk allocator for every class's pool (both NULL: the default);
     * see moirai_pool_config_t. Large blocks always use moirai_malloc(). */
    moirai_pool_chunk_alloc_cb chunk_alloc;
    moirai_pool_chunk_free_cb chunk_free;
    void *chunk_arg;
    const char *name; /* for log messages (copied), or NULL */
} moirai_mempool_config_t;

/* Counters of a memory pool: the classes' pool counters summed, plus the
 * large blocks. Exact when quiescent, like moirai_pool_stats_t. */
typedef struct moirai_mempool_stats {
    moirai_pool_stats_t small;  /* all classes together (high_water: the sum of theirs) */
    uint64_t large_allocations; /* blocks above the largest class */
    uint64_t large_frees;       /* large blocks freed */
    uint64_t large_failures;    /* large allocations that failed (-ENOMEM) */
} moirai_mempool_stats_t;

/* Fills `*cfg` with the defaults. Does nothing when `cfg` is NULL. */
MOIRAI_MEM_API void moirai_mempool_config_init(moirai_mempool_config_t *cfg);

/* Creates a memory pool (no blocks are made until first used). Thread-safe
 * with respect to other pools. Returns 0 and stores it in `*out`; -EINVAL
 * for NULL arguments, a class list that is empty, too long, not strictly
 * increasing, not multiples of 8 or above the largest class, or only one of
 * chunk_alloc / chunk_free; -ENOMEM. On error `*out` is untouched and
 * nothing is leaked. */
MOIRAI_MEM_API int moirai_mempool_create(moirai_mempool_t **out,
                                         const moirai_mempool_config_t *cfg);

/* Destroys the memory pool and all its small blocks, as
 * moirai_pool_destroy() does; large blocks still allocated are the
 * caller's to release before (they are not tracked). The caller must
 * ensure no thread uses it any more. NULL does nothing. */
MOIRAI_MEM_API void moirai_mempool_destroy(moirai_mempool_t *mp);

/* Allocates a block of at least `size` bytes (0 is treated as 1) and
 * stores it in `*out`. Blocks of a class that is a multiple of 16 are
 * 16-byte aligned, others 8-byte aligned; large blocks as malloc's.
 * Lock-free for small blocks on the common path. Thread-safe.
 * Returns 0, -EINVAL for NULL arguments, or -ENOMEM; `*out` is untouched
 * on error. */
MOIRAI_MEM_API int moirai_mempool_alloc(moirai_mempool_t *mp, size_t size, void **out);

/* Releases `ptr`, allocated from `mp` with `size` (or any size that maps
 * to the same class; for a large block, any size above the largest
 * class). Any thread may release it. NULL does nothing. Never fails or
 * blocks for small blocks. A wrong size is a bug like a double release:
 * checked builds usually detect it when it makes a class receive an
 * object that is not its own, but not always. */
MOIRAI_MEM_API void moirai_mempool_free(moirai_mempool_t *mp, void *ptr, size_t size);

/* Returns the calling thread's cached blocks of every class to the
 * depots (see moirai_pool_flush()). NULL does nothing. */
MOIRAI_MEM_API void moirai_mempool_flush(moirai_mempool_t *mp);

/* The number of size classes, or 0 for NULL. */
MOIRAI_MEM_API size_t moirai_mempool_class_count(const moirai_mempool_t *mp);

/* The size of class `index`, or 0 when out of range or for NULL. */
MOIRAI_MEM_API size_t moirai_mempool_class_size(const moirai_mempool_t *mp, size_t index);

/* The index of the class serving `size` (0 is treated as 1), or -ERANGE
 * when `size` is above the largest class (a large block), or -EINVAL for
 * NULL. */
MOIRAI_MEM_API int moirai_mempool_class_of(const moirai_mempool_t *mp, size_t size);

/* Fills `*out` with the counters of class `index`. Returns 0, or -EINVAL
 * for NULL arguments or an index out of range. */
MOIRAI_MEM_API int moirai_mempool_class_stats(moirai_mempool_t *mp, size_t index,
                                              moirai_pool_stats_t *out);

/* Fills `*out` with the summed counters. Returns 0, or -EINVAL for NULL
 * arguments. */
MOIRAI_MEM_API int moirai_mempool_stats(moirai_mempool_t *mp, moirai_mempool_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif
