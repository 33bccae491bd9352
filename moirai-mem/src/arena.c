/* Bump arenas. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/mem/arena.h>

#include "sanitize.h"

#define ARENA_CHUNK_DEFAULT ((size_t)64 * 1024)
#define ARENA_CHUNK_MIN     ((size_t)256)
#define ARENA_CHUNK_MAX     ((size_t)1 << 30)
#define ARENA_ALIGN_DEFAULT ((size_t)16)
#define ARENA_ALIGN_MAX     ((size_t)4096)

/* A chunk: this header, then its bytes. */
typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t size; /* bytes after the header */
    _Alignas(16) char data[];
} arena_chunk_t;

struct moirai_arena {
    char *cur;            /* next free byte of the current chunk */
    char *end;            /* end of the current chunk */
    arena_chunk_t *first; /* kept across resets; the current chunk after one */
    arena_chunk_t *rest;  /* every other chunk, newest first */
    size_t chunk_size;
    moirai_arena_stats_t stats;
};

static arena_chunk_t *chunk_new(size_t size)
{
    arena_chunk_t *c = moirai_aligned_alloc(16, sizeof(arena_chunk_t) + size);
    if (!c)
        return NULL;
    c->next = NULL;
    c->size = size;
    /* Nothing in a new chunk belongs to anyone yet. */
    moirai__mem_poison(c->data, size);
    return c;
}

static void chunk_free(arena_chunk_t *c)
{
    moirai__mem_unpoison(c->data, c->size);
    moirai_free(c);
}

int moirai_arena_create(moirai_arena_t **out, size_t chunk_size)
{
    if (!out)
        return -EINVAL;
    if (chunk_size == 0)
        chunk_size = ARENA_CHUNK_DEFAULT;
    if (chunk_size < ARENA_CHUNK_MIN || chunk_size > ARENA_CHUNK_MAX)
        return -EINVAL;
    moirai_arena_t *a = moirai_malloc(sizeof(*a));
    if (!a)
        return -ENOMEM;
    memset(a, 0, sizeof(*a));
    a->first = chunk_new(chunk_size);
    if (!a->first) {
        moirai_free(a);
        return -ENOMEM;
    }
    a->chunk_size = chunk_size;
    a->cur = a->first->data;
    a->end = a->first->data + chunk_size;
    a->stats.chunks = 1;
    a->stats.bytes_reserved = chunk_size;
    *out = a;
    return 0;
}

void moirai_arena_destroy(moirai_arena_t *arena)
{
    if (!arena)
        return;
    moirai_arena_reset(arena);
    chunk_free(arena->first);
    moirai_free(arena);
}

int moirai_arena_alloc(moirai_arena_t *arena, size_t size, size_t alignment, void **out)
{
    if (!arena || !out)
        return -EINVAL;
    if (alignment == 0)
        alignment = ARENA_ALIGN_DEFAULT;
    if ((alignment & (alignment - 1)) || alignment > ARENA_ALIGN_MAX)
        return -EINVAL;
    if (size == 0)
        size = 1;
    if (size > ARENA_CHUNK_MAX * 4)
        return -ENOMEM; /* far beyond any sensible request; keeps sums below from overflowing */

    uintptr_t mask = (uintptr_t)(alignment - 1);
    uintptr_t p = ((uintptr_t)arena->cur + mask) & ~mask;
    if (p > (uintptr_t)arena->end || size > (uintptr_t)arena->end - p) {
        /* Does not fit. A big request gets a chunk of its own, linked
         * behind, so the current chunk keeps serving small ones; otherwise
         * a fresh chunk becomes the current one. */
        size_t need = size + (alignment > 16 ? alignment : 0);
        bool own = need > arena->chunk_size / 4;
        size_t csize = own ? need : arena->chunk_size;
        arena_chunk_t *c = chunk_new(csize);
        if (!c)
            return -ENOMEM;
        c->next = arena->rest;
        arena->rest = c;
        arena->stats.chunks++;
        arena->stats.bytes_reserved += csize;
        p = ((uintptr_t)c->data + mask) & ~mask;
        if (!own) {
            arena->cur = (char *)(p + size);
            arena->end = c->data + csize;
        }
    } else {
        arena->cur = (char *)(p + size);
    }
    moirai__mem_unpoison((void *)p, size);
    arena->stats.bytes_allocated += size;
    arena->stats.allocations++;
    *out = (void *)p;
    return 0;
}

void moirai_arena_reset(moirai_arena_t *arena)
{
    if (!arena)
        return;
    arena_chunk_t *c = arena->rest;
    while (c) {
        arena_chunk_t *next = c->next;
        chunk_free(c);
        c = next;
    }
    arena->rest = NULL;
    arena->cur = arena->first->data;
    arena->end = arena->first->data + arena->first->size;
    /* Everything handed out before is invalid now. */
    moirai__mem_poison(arena->first->data, arena->first->size);
    arena->stats.chunks = 1;
    arena->stats.bytes_reserved = arena->first->size;
    arena->stats.bytes_allocated = 0;
    arena->stats.allocations = 0;
    arena->stats.resets++;
}

int moirai_arena_stats(const moirai_arena_t *arena, moirai_arena_stats_t *out)
{
    if (!arena || !out)
        return -EINVAL;
    *out = arena->stats;
    return 0;
}
