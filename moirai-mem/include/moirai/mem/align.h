/* Alignment helpers: cache-line constants and padding, cache-line-aligned
 * allocation, alignment arithmetic and prefetching.
 *
 * Two cache-line sizes exist. MOIRAI_CACHE_LINE (core's
 * <moirai/core/cache.h>, included here) is a compile-time constant (64,
 * right for x86-64 and most aarch64 parts) used to lay out structures:
 * padding must be known when the code is compiled.
 * moirai_cache_line_size() is the machine's real line size, read from
 * core's topology (sysfs), for decisions made at run time; allocations
 * here are aligned to the larger of the two, so padding by the constant is
 * never undone by an allocator on a machine with longer lines. */
#ifndef MOIRAI_MEM_ALIGN_H
#define MOIRAI_MEM_ALIGN_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/core/cache.h>
#include <moirai/mem/export.h>

/* Aligns a variable, a structure member or a type to a cache line:
 *     struct counter { MOIRAI_CACHE_ALIGNED _Atomic long value; };   */
#define MOIRAI_CACHE_ALIGNED __attribute__((aligned(MOIRAI_CACHE_LINE)))

/* Rounds `x` up / down to a multiple of `a`, which must be a power of two.
 * `x` is evaluated once per use of the macro argument; the result has the
 * type of `x` (use with unsigned integers or uintptr_t). */
#define MOIRAI_ALIGN_UP(x, a)   (((x) + ((__typeof__(x))(a)-1)) & ~((__typeof__(x))(a)-1))
#define MOIRAI_ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a)-1))

/* True when pointer `p` is a multiple of `a` (a power of two). */
#define MOIRAI_IS_ALIGNED(p, a) ((((uintptr_t)(p)) & ((uintptr_t)(a)-1)) == 0)

/* Bytes of padding that bring `used` bytes up to the next cache-line
 * boundary (0 when `used` is a multiple of the line). A constant
 * expression when `used` is one. */
#define MOIRAI_CACHE_PAD_SIZE(used)                                                                \
    ((MOIRAI_CACHE_LINE - ((used) % MOIRAI_CACHE_LINE)) % MOIRAI_CACHE_LINE)

/* A structure member that fills the rest of the cache line after `used`
 * bytes of members, so what follows starts on a new line. Always adds at
 * least one byte (C forbids empty arrays); when `used` is already a whole
 * number of lines it adds a full line. Example:
 *     struct queue {
 *         _Atomic size_t head;
 *         MOIRAI_CACHE_PAD(pad0, sizeof(_Atomic size_t));
 *         _Atomic size_t tail;
 *     };                                                                 */
#define MOIRAI_CACHE_PAD(name, used) char name[MOIRAI_CACHE_LINE - ((used) % MOIRAI_CACHE_LINE)]

/* Prefetch hints. They never fault (any address is allowed) and change no
 * state a program can observe; `locality` runs from 0 (use once, do not
 * keep) to 3 (keep in all cache levels). */
#define MOIRAI_PREFETCH_READ(p, locality)  __builtin_prefetch((p), 0, (locality))
#define MOIRAI_PREFETCH_WRITE(p, locality) __builtin_prefetch((p), 1, (locality))

#ifdef __cplusplus
extern "C" {
#endif

/* Prefetches the line holding `p` for reading, kept in all cache levels. */
static inline void moirai_prefetch_read(const void *p)
{
    __builtin_prefetch(p, 0, 3);
}

/* Prefetches the line holding `p` for writing (on x86 this fetches it in
 * an exclusive state where the CPU supports PREFETCHW). */
static inline void moirai_prefetch_write(const void *p)
{
    __builtin_prefetch(p, 1, 3);
}

/* Prefetches every cache line of [p, p + len) for reading. */
static inline void moirai_prefetch_range(const void *p, size_t len)
{
    const char *c = (const char *)MOIRAI_ALIGN_DOWN((uintptr_t)p, (uintptr_t)MOIRAI_CACHE_LINE);
    const char *end = (const char *)p + len;
    for (; c < end; c += MOIRAI_CACHE_LINE)
        __builtin_prefetch(c, 0, 3);
}

/* The machine's cache-line size in bytes, from core's topology
 * (moirai_topology_cache_line_size(): sysfs, 64 when sysfs does not say).
 * Thread-safe; cheap after the first call. */
MOIRAI_MEM_API size_t moirai_cache_line_size(void);

/* Allocates `size` bytes aligned to max(MOIRAI_CACHE_LINE,
 * moirai_cache_line_size()), through the allocation hook, with the size
 * rounded up to a whole number of lines so that no other allocation shares
 * the object's last line. Release with moirai_cache_aligned_free().
 * Returns NULL when out of memory or when `size` is 0 or rounding it up
 * would overflow. Thread-safe; blocks only as the allocator does. */
MOIRAI_MEM_API void *moirai_cache_aligned_alloc(size_t size);

/* As moirai_cache_aligned_alloc() for `count` elements of `size` bytes,
 * zero-filled. NULL also when count * size overflows. */
MOIRAI_MEM_API void *moirai_cache_aligned_calloc(size_t count, size_t size);

/* Releases memory from moirai_cache_aligned_alloc() or _calloc(). NULL
 * does nothing. Thread-safe. */
MOIRAI_MEM_API void moirai_cache_aligned_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif
