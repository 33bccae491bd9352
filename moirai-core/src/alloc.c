/* The allocation hook: every Moirai allocation goes through here. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include <moirai/core/alloc.h>
#include <moirai/core/error.h>

typedef void *(*malloc_fn_t)(void *ctx, size_t size);
typedef void *(*calloc_fn_t)(void *ctx, size_t count, size_t size);
typedef void *(*realloc_fn_t)(void *ctx, void *ptr, size_t size);
typedef void *(*aligned_alloc_fn_t)(void *ctx, size_t alignment, size_t size);
typedef void (*free_fn_t)(void *ctx, void *ptr);

static void *libc_malloc(void *ctx, size_t size)
{
    (void)ctx;
    return malloc(size);
}

static void *libc_calloc(void *ctx, size_t count, size_t size)
{
    (void)ctx;
    return calloc(count, size);
}

static void *libc_realloc(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    return realloc(ptr, size);
}

static void *libc_aligned_alloc(void *ctx, size_t alignment, size_t size)
{
    void *p;

    (void)ctx;
    /* posix_memalign rather than C11 aligned_alloc: the latter requires
     * size to be a multiple of alignment, which our contract does not. */
    if (posix_memalign(&p, alignment, size) != 0)
        return NULL;
    return p;
}

static void libc_free(void *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

/* The installed allocator, one atomic per field.
 *
 * Installing is documented as not thread-safe, yet the test helpers swap
 * allocators while idle threads (executor workers, say) still exist. With
 * plain fields that would be a data race in the C11 sense and a
 * ThreadSanitizer report even though no allocation runs concurrently.
 * Atomic fields make the swap well defined; they cost nothing on the read
 * side (relaxed and acquire loads are plain loads on x86-64 and cheap
 * elsewhere). `ctx` is stored last with release and loaded first with
 * acquire, so a thread that sees the new context also sees the new
 * functions and whatever the installer wrote into the context object
 * before installing it. */
static _Atomic(malloc_fn_t) cur_malloc = libc_malloc;
static _Atomic(calloc_fn_t) cur_calloc = libc_calloc;
static _Atomic(realloc_fn_t) cur_realloc = libc_realloc;
static _Atomic(aligned_alloc_fn_t) cur_aligned_alloc = libc_aligned_alloc;
static _Atomic(free_fn_t) cur_free = libc_free;
static _Atomic(void *) cur_ctx = NULL;

int moirai_allocator_set(const moirai_allocator_t *allocator)
{
    static const moirai_allocator_t libc_allocator = {
        .malloc_fn = libc_malloc,
        .calloc_fn = libc_calloc,
        .realloc_fn = libc_realloc,
        .aligned_alloc_fn = libc_aligned_alloc,
        .free_fn = libc_free,
        .arg = NULL,
    };

    if (allocator == NULL)
        allocator = &libc_allocator;
    if (allocator->malloc_fn == NULL || allocator->calloc_fn == NULL ||
        allocator->realloc_fn == NULL || allocator->aligned_alloc_fn == NULL ||
        allocator->free_fn == NULL)
        return MOIRAI_EINVAL;

    /* Relaxed for the functions: the release store of ctx below orders
     * them (see the comment on the fields). */
    atomic_store_explicit(&cur_malloc, allocator->malloc_fn, memory_order_relaxed);
    atomic_store_explicit(&cur_calloc, allocator->calloc_fn, memory_order_relaxed);
    atomic_store_explicit(&cur_realloc, allocator->realloc_fn, memory_order_relaxed);
    atomic_store_explicit(&cur_aligned_alloc, allocator->aligned_alloc_fn, memory_order_relaxed);
    atomic_store_explicit(&cur_free, allocator->free_fn, memory_order_relaxed);
    atomic_store_explicit(&cur_ctx, allocator->arg, memory_order_release);
    return 0;
}

void moirai_allocator_get(moirai_allocator_t *out)
{
    if (out == NULL)
        return;
    out->arg = atomic_load_explicit(&cur_ctx, memory_order_acquire);
    out->malloc_fn = atomic_load_explicit(&cur_malloc, memory_order_relaxed);
    out->calloc_fn = atomic_load_explicit(&cur_calloc, memory_order_relaxed);
    out->realloc_fn = atomic_load_explicit(&cur_realloc, memory_order_relaxed);
    out->aligned_alloc_fn = atomic_load_explicit(&cur_aligned_alloc, memory_order_relaxed);
    out->free_fn = atomic_load_explicit(&cur_free, memory_order_relaxed);
}

void *moirai_malloc(size_t size)
{
    void *ctx = atomic_load_explicit(&cur_ctx, memory_order_acquire);

    return atomic_load_explicit(&cur_malloc, memory_order_relaxed)(ctx, size);
}

void *moirai_calloc(size_t count, size_t size)
{
    void *ctx;

    /* Checked here, not left to the installed allocator: a user's calloc
     * that multiplies blindly would hand back a block far smaller than
     * the caller believes it has. */
    if (size != 0 && count > SIZE_MAX / size)
        return NULL;
    ctx = atomic_load_explicit(&cur_ctx, memory_order_acquire);
    return atomic_load_explicit(&cur_calloc, memory_order_relaxed)(ctx, count, size);
}

void *moirai_realloc(void *ptr, size_t size)
{
    void *ctx = atomic_load_explicit(&cur_ctx, memory_order_acquire);

    return atomic_load_explicit(&cur_realloc, memory_order_relaxed)(ctx, ptr, size);
}

void *moirai_aligned_alloc(size_t alignment, size_t size)
{
    void *ctx;

    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        return NULL;
    /* posix_memalign, and most allocators built on it, require at least
     * pointer alignment; smaller requests are satisfied by raising it. */
    if (alignment < sizeof(void *))
        alignment = sizeof(void *);
    ctx = atomic_load_explicit(&cur_ctx, memory_order_acquire);
    return atomic_load_explicit(&cur_aligned_alloc, memory_order_relaxed)(ctx, alignment, size);
}

void moirai_free(void *ptr)
{
    void *ctx;

    if (ptr == NULL)
        return;
    ctx = atomic_load_explicit(&cur_ctx, memory_order_acquire);
    atomic_load_explicit(&cur_free, memory_order_relaxed)(ctx, ptr);
}
