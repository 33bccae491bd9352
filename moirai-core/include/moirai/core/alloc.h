/* The allocation hook.
 *
 * Every allocation any Moirai module makes goes through the functions
 * below, which forward to the installed allocator (the C library's by
 * default). Tests install an allocator that fails on demand to prove that
 * each API reports -ENOMEM, changes nothing and leaks nothing; programs can
 * route Moirai's memory to their own allocator.
 *
 * Shape follows libuv's uv_replace_allocator(): install once, early. */
#ifndef MOIRAI_CORE_ALLOC_H
#define MOIRAI_CORE_ALLOC_H

#include <stddef.h>

#include <moirai/core/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An allocator. Every function receives `arg`. Memory from aligned_alloc_fn
 * must be releasable with free_fn (as posix_memalign memory is with free).
 * The functions must be thread-safe: Moirai calls them from any thread. */
typedef struct moirai_allocator {
    void *(*malloc_fn)(void *arg, size_t size);
    void *(*calloc_fn)(void *arg, size_t count, size_t size);
    void *(*realloc_fn)(void *arg, void *ptr, size_t size);
    void *(*aligned_alloc_fn)(void *arg, size_t alignment, size_t size);
    void (*free_fn)(void *arg, void *ptr);
    void *arg;
} moirai_allocator_t;

/* Installs `allocator` (copied), or the C library's allocator when NULL.
 *
 * Not thread-safe: call it while no other thread is inside Moirai, before
 * any Moirai object exists or after all are destroyed, because memory must
 * be freed by the allocator that made it. Moirai's own lazily created
 * process-wide state (the topology) is allocated once and kept, so an
 * allocator that forwards frees to the C library may be swapped at any
 * quiet point; that is what the test helpers do.
 *
 * Returns 0, or -EINVAL if any of the five functions is NULL (nothing is
 * changed then). */
MOIRAI_CORE_API int moirai_allocator_set(const moirai_allocator_t *allocator);

/* Copies the installed allocator into `*out`. Thread-safe with respect to
 * other readers. */
MOIRAI_CORE_API void moirai_allocator_get(moirai_allocator_t *out);

/* Allocation through the installed allocator. Same contracts as the C
 * functions they mirror; NULL on failure. moirai_calloc() returns NULL when
 * count * size overflows. moirai_aligned_alloc() requires `alignment` to be
 * a power of two (at least sizeof(void *), smaller values are raised to
 * it) and returns NULL otherwise. moirai_free(NULL) does nothing.
 * Thread-safe; never blocks beyond what the allocator does. */
MOIRAI_CORE_API void *moirai_malloc(size_t size);
MOIRAI_CORE_API void *moirai_calloc(size_t count, size_t size);
MOIRAI_CORE_API void *moirai_realloc(void *ptr, size_t size);
MOIRAI_CORE_API void *moirai_aligned_alloc(size_t alignment, size_t size);
MOIRAI_CORE_API void moirai_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif
