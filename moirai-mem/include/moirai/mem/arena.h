/* Bump arenas: fast allocation for phase-style work, freed all at once.
 *
 * An arena hands out memory by advancing a pointer through a chunk and
 * takes a new chunk (through the allocation hook) when one is full. There
 * is no per-allocation release: moirai_arena_reset() makes all of it
 * available again at once, keeping the first chunk for the next phase and
 * returning the others, and moirai_arena_destroy() returns everything.
 * Requests larger than a quarter of the chunk size get a chunk of their
 * own, so they do not waste the rest of the current one.
 *
 * In an AddressSanitizer build the unused part of every chunk is
 * poisoned, and a reset poisons everything handed out before it, so a use
 * after reset or past the end of an allocation is reported.
 *
 * Thread-safety: an arena belongs to one thread at a time; calls on the
 * same arena must not run concurrently (use one arena per thread).
 * Different arenas are independent. */
#ifndef MOIRAI_MEM_ARENA_H
#define MOIRAI_MEM_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/mem/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An opaque arena. */
typedef struct moirai_arena moirai_arena_t;

/* Counters of an arena. */
typedef struct moirai_arena_stats {
    size_t chunks;          /* chunks held now (at least 1) */
    size_t bytes_reserved;  /* their total size */
    size_t bytes_allocated; /* bytes requested since creation or the last reset */
    uint64_t allocations;   /* successful allocations since creation or the last reset */
    uint64_t resets;        /* moirai_arena_reset() calls */
} moirai_arena_stats_t;

/* Creates an arena whose chunks hold `chunk_size` bytes (0: 64 KiB; at
 * least 256 and at most 1 GiB), and allocates its first chunk. Thread-safe.
 * Returns 0 and stores the arena in `*out`; -EINVAL for a NULL `out` or a
 * chunk size out of range; -ENOMEM (nothing is leaked, `*out` untouched). */
MOIRAI_MEM_API int moirai_arena_create(moirai_arena_t **out, size_t chunk_size);

/* Returns every chunk. All memory from the arena becomes invalid. NULL
 * does nothing. */
MOIRAI_MEM_API void moirai_arena_destroy(moirai_arena_t *arena);

/* Allocates `size` bytes (0 is treated as 1) aligned to `alignment` (a
 * power of two up to 4096; 0 means 16) and stores the address in `*out`.
 * The memory is uninitialised and stays valid until the next reset or
 * destruction. Never blocks beyond the allocator when a chunk is needed.
 * Returns 0; -EINVAL for NULL arguments or a bad alignment; -ENOMEM when a
 * new chunk cannot be had or the size overflows (`*out` untouched, the
 * arena unchanged). */
MOIRAI_MEM_API int moirai_arena_alloc(moirai_arena_t *arena, size_t size, size_t alignment,
                                      void **out);

/* Makes all memory handed out invalid and available again: keeps the
 * first chunk (so the next phase of the same size needs no allocation
 * until it outgrows it) and returns the others. NULL does nothing. */
MOIRAI_MEM_API void moirai_arena_reset(moirai_arena_t *arena);

/* Fills `*out` with the arena's counters. Returns 0, or -EINVAL for NULL
 * arguments. */
MOIRAI_MEM_API int moirai_arena_stats(const moirai_arena_t *arena, moirai_arena_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif
