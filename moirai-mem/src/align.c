/* Cache-line size and cache-line-aligned allocation. */
#include <stdint.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/topology.h>
#include <moirai/mem/align.h>

size_t moirai_cache_line_size(void)
{
    int line = moirai_topology_cache_line_size();
    return line > 0 ? (size_t)line : MOIRAI_CACHE_LINE;
}

/* The alignment of cache-aligned allocations: the larger of the static and
 * the real line size, so padding by MOIRAI_CACHE_LINE stays effective. */
static size_t line_alignment(void)
{
    size_t line = moirai_cache_line_size();
    /* A line size that is not a power of two would be a sysfs oddity; the
     * static value is then the safe choice. */
    if (line & (line - 1))
        return MOIRAI_CACHE_LINE;
    return line > MOIRAI_CACHE_LINE ? line : MOIRAI_CACHE_LINE;
}

void *moirai_cache_aligned_alloc(size_t size)
{
    size_t align = line_alignment();
    if (size == 0 || size > SIZE_MAX - (align - 1))
        return NULL;
    return moirai_aligned_alloc(align, MOIRAI_ALIGN_UP(size, align));
}

void *moirai_cache_aligned_calloc(size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size)
        return NULL;
    size_t bytes = count * size;
    void *p = moirai_cache_aligned_alloc(bytes);
    if (p)
        memset(p, 0, MOIRAI_ALIGN_UP(bytes, line_alignment()));
    return p;
}

void moirai_cache_aligned_free(void *ptr)
{
    moirai_free(ptr);
}
