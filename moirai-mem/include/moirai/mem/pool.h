/* Object pools: fast allocation of fixed-size objects.
 *
 * A pool hands out objects of one size. Each thread keeps a small cache of
 * free objects per pool (two "magazines", after Bonwick and Adams,
 * "Magazines and Vmem", USENIX 2001), so the common allocation and release
 * touch only the calling thread's memory. Magazines move between the
 * threads and a shared, lock-free depot a whole magazine at a time. An
 * object released on another thread than the one that allocated it simply
 * goes into the releasing thread's cache; no message is sent back.
 *
 * Memory comes in chunks from the pool's chunk allocator (the allocation
 * hook's moirai_aligned_alloc() by default; a NUMA-aware pool supplies its
 * own to place each chunk on a node). Chunks are only returned when the
 * pool is destroyed.
 *
 * No constructor or destructor: the pool never runs caller code. An
 * allocated object's contents are unspecified (a checked build overwrites
 * its first word on release), so the caller initialises after allocation.
 * Callbacks would run on whichever thread refills or drains a cache, at
 * unpredictable times and under the pool's internal locks; keeping them
 * out keeps the fast path short and the locking simple (see docs/mem.md).
 *
 * Checking: in an AddressSanitizer build every released object is
 * poisoned, so a use after release is reported as "use-after-poison", and
 * a double release is logged and aborts. An unoptimised build without
 * NDEBUG (Meson's buildtype=debug), or one compiled with
 * -DMOIRAI_MEM_CHECKED=1, also detects a double release (by a tag word
 * written into released objects) and aborts. moirai_pool_checks() says
 * which checks the library was built with. See docs/mem.md.
 *
 * Thread-safety: every function except create and destroy may be called
 * from any thread at any time. */
#ifndef MOIRAI_MEM_POOL_H
#define MOIRAI_MEM_POOL_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/mem/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An opaque pool. */
typedef struct moirai_pool moirai_pool_t;

/* Allocates a chunk of `size` bytes for the pool; returns NULL on failure
 * (the pool then reports -ENOMEM). The memory must be aligned to at least
 * 16 bytes; the pool aligns the objects inside it itself. Called with the
 * pool's internal lock held, from whichever thread needs more objects: it
 * must be thread-safe and must not call back into the same pool. */
typedef void *(*moirai_pool_chunk_alloc_cb)(void *arg, size_t size);

/* Returns a chunk obtained from the matching chunk_alloc, with the same
 * `size`. Called only from moirai_pool_destroy() and from a create that
 * fails. */
typedef void (*moirai_pool_chunk_free_cb)(void *arg, void *ptr, size_t size);

/* How to build a pool. Fill it with moirai_pool_config_init() and change
 * what you need; fields left 0 or NULL take their defaults. */
typedef struct moirai_pool_config {
    /* Size of one object in bytes (required, >= 1). Objects are at least
     * 8 bytes and a multiple of the alignment apart. */
    size_t object_size;
    /* Alignment of every object: a power of two up to 4096, or 0 for the
     * default (16 when object_size >= 16, else 8, as malloc would). */
    size_t alignment;
    /* The most objects the pool ever creates, or 0 for no bound. The rule:
     * moirai_pool_alloc() fails with -ENOMEM only when all `capacity`
     * objects are in use, that is allocated and not yet released by a
     * release that happened before the allocation. Objects released on any
     * thread count as free: when the caller's cache, the depot and the
     * capacity are exhausted, the allocation takes back the objects other
     * threads' caches hold before it fails. So `capacity = items in
     * flight` works for a pipeline whose stages release on other threads.
     * The price: each allocation and release of a bounded pool takes an
     * uncontended per-thread lock (one atomic exchange), and the take-back
     * walks every thread's cache of the pool. */
    size_t capacity;
    /* Objects to create when the pool is created and leave in the depot,
     * so the first allocations need no system allocation. Must not exceed
     * `capacity` when one is set. */
    size_t prepopulate;
    /* Objects per per-thread magazine (0: 64). A thread caches at most
     * twice this many. Larger means fewer trips to the depot, more memory
     * parked per thread. At most 4096. */
    size_t magazine_size;
    /* Objects per chunk requested from chunk_alloc (0: enough for about
     * 64 KiB, at least one magazine). The last chunk of a bounded pool is
     * cut to what the capacity leaves. */
    size_t chunk_objects;
    /* The chunk allocator pair, or both NULL for moirai_aligned_alloc()
     * and moirai_free() (through the allocation hook). Set both or none. */
    moirai_pool_chunk_alloc_cb chunk_alloc;
    moirai_pool_chunk_free_cb chunk_free;
    void *chunk_arg; /* passed to chunk_alloc and chunk_free */
    /* A name for log messages (copied), or NULL. */
    const char *name;
} moirai_pool_config_t;

/* Counters of a pool. Every counter is exact when the pool is quiescent
 * (no call in flight); while threads use the pool a snapshot may mix
 * moments, because the counters live per thread and are summed on read.
 * Counting costs no shared write on the fast path. */
typedef struct moirai_pool_stats {
    uint64_t allocations;        /* successful moirai_pool_alloc() calls */
    uint64_t frees;              /* moirai_pool_free() calls with an object */
    uint64_t failures;           /* moirai_pool_alloc() calls that returned -ENOMEM */
    uint64_t cache_hits;         /* allocations served by the caller's thread cache */
    uint64_t depot_hits;         /* allocations that refilled the cache from the depot */
    uint64_t fresh;              /* allocations that had to create new objects from a chunk */
    uint64_t system_allocations; /* chunks obtained from chunk_alloc */
    uint64_t objects;            /* objects created so far (never more than capacity) */
    uint64_t in_use;             /* allocations - frees: objects held by callers */
    /* The peak of in_use. Exact while one thread at a time uses the pool;
     * with several threads an upper bound (the smaller of: the sum of each
     * thread's own peak, and the peak of objects outside the depot, which
     * exceeds in_use by at most the threads' caches). Never below the true
     * peak and never above `objects`. */
    uint64_t high_water;
} moirai_pool_stats_t;

/* Fills `*cfg` with defaults for objects of `object_size` bytes. Does
 * nothing when `cfg` is NULL. */
MOIRAI_MEM_API void moirai_pool_config_init(moirai_pool_config_t *cfg, size_t object_size);

/* Creates a pool. Does not block beyond the allocator. Thread-safe with
 * respect to other pools.
 * Returns 0 and stores the pool in `*out`; -EINVAL for NULL arguments,
 * object_size 0 or above 1 GiB, an alignment that is not a power of two or
 * exceeds 4096, magazine_size above 4096, prepopulate above a set
 * capacity, prepopulate or chunk_objects times the object stride (size
 * rounded up to the alignment) above SIZE_MAX / 4, or only one of
 * chunk_alloc / chunk_free; -ENOMEM when memory (for the pool or the
 * prepopulated objects) cannot be had, at once when the prepopulated
 * objects alone would exceed the machine's physical memory. On error
 * `*out` is untouched and nothing is leaked. */
MOIRAI_MEM_API int moirai_pool_create(moirai_pool_t **out, const moirai_pool_config_t *cfg);

/* Destroys the pool and returns every chunk, including objects still
 * allocated and objects cached by threads. The caller must ensure no
 * thread uses the pool any more (no call in flight or to come, no object
 * used afterwards); threads that cached objects of this pool need not
 * have exited or flushed. NULL does nothing. */
MOIRAI_MEM_API void moirai_pool_destroy(moirai_pool_t *pool);

/* Allocates one object and stores it in `*out`. The object is aligned as
 * configured; its contents are unspecified. Lock-free on the common path
 * (the caller's cache); takes the pool's internal lock only to create
 * objects from a chunk. In a bounded pool it also takes the caller's
 * cache lock, and at the capacity it may block briefly while it takes
 * back the objects other threads' caches hold (see
 * moirai_pool_config_t.capacity). Thread-safe. The allocation happens-before the
 * matching release on any thread, as the caller hands the object over.
 * Returns 0, -EINVAL for NULL arguments, or -ENOMEM when the capacity is
 * reached (see moirai_pool_config_t.capacity) or memory cannot be had;
 * `*out` is untouched on error. */
MOIRAI_MEM_API int moirai_pool_alloc(moirai_pool_t *pool, void **out);

/* Releases `obj`, which must have come from moirai_pool_alloc() on this
 * pool; any thread may release it. NULL does nothing. Never fails and
 * never blocks; lock-free. After it returns the caller must not touch the
 * object (an AddressSanitizer build reports it). Releasing an object twice
 * is a bug: checked builds (see moirai_pool_checks()) log an error and
 * abort; other builds corrupt the pool. */
MOIRAI_MEM_API void moirai_pool_free(moirai_pool_t *pool, void *obj);

/* Moves the calling thread's cached objects of `pool` back to the shared
 * depot, so other threads can have them (useful before a thread goes idle
 * for long, or to make a capacity-bounded pool's objects available to
 * all). Threads that exit do this automatically. Lock-free; never fails.
 * NULL does nothing. */
MOIRAI_MEM_API void moirai_pool_flush(moirai_pool_t *pool);

/* Fills `*out` with the pool's counters (see moirai_pool_stats_t).
 * Takes the pool's internal lock briefly; thread-safe.
 * Returns 0, or -EINVAL for NULL arguments. */
MOIRAI_MEM_API int moirai_pool_stats(moirai_pool_t *pool, moirai_pool_stats_t *out);

/* Bits of moirai_pool_checks(). */
#define MOIRAI_POOL_CHECK_POISON         1 /* released objects are poisoned for ASan */
#define MOIRAI_POOL_CHECK_DOUBLE_RELEASE 2 /* a double release is logged and aborts */

/* Which checks this build of the library performs (MOIRAI_POOL_CHECK_*
 * bits); 0 in an optimised build without AddressSanitizer. Thread-safe. */
MOIRAI_MEM_API int moirai_pool_checks(void);

/* The object size and alignment the pool was created with (after
 * defaults), or 0 for NULL. Thread-safe. */
MOIRAI_MEM_API size_t moirai_pool_object_size(const moirai_pool_t *pool);
MOIRAI_MEM_API size_t moirai_pool_alignment(const moirai_pool_t *pool);

#ifdef __cplusplus
}
#endif

#endif
