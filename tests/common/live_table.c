/* Live-allocation counting for every test (issue 15): each block that a
 * test allocates through core's allocation hook must be freed by the end
 * of the test, in the plain and TSan builds as in the ASan one.
 *
 * - The test allocator (oom.c) reports every block it hands out and takes
 *   back to this file, which keeps the live ones in an open-addressing
 *   table, each with a "made while counting" bit.
 * - Before each test, live.c installs the test allocator, lets the
 *   library build its process-lifetime state (the topology, the pool
 *   registry and the calling thread's pool table), and starts counting.
 *   Blocks made before that, and blocks grown from them by realloc, are
 *   not counted: the library keeps them on purpose for the life of the
 *   process or of the thread.
 * - After the test's body and teardowns, live.c fails the test when a
 *   counted block is still live, and names its address and size.
 *
 * The table uses relaxed atomics only, and no lock: a lock here would
 * order the library's threads against each other and hide from TSan the
 * very races it must find. A block is always freed after it was made, by
 * a thread the library synchronised with its maker, so that thread sees
 * the entry.
 *
 * A test that installs an allocator of its own is not checked: the
 * counts would not cover its blocks. */
#include <execinfo.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "oom.h"

/* 2^21 entries: 16 MiB of address space, touched only where used. */
#define LIVE_BITS  21
#define LIVE_SLOTS ((size_t)1 << LIVE_BITS)
/* A probe longer than this gives up: the test holds too many live blocks
 * to track, and its check is skipped rather than wrong. */
#define LIVE_PROBE_MAX 4096
/* Entry states besides a block's address. Addresses from malloc are at
 * least 8-aligned, so bit 0 is free for the "made during the test" mark. */
#define LIVE_EMPTY   ((uintptr_t)0)
#define LIVE_GONE    ((uintptr_t)1)
#define LIVE_COUNTED ((uintptr_t)1)

static _Atomic uintptr_t *live_table;
static _Atomic size_t *live_sizes;
/* Counted blocks alive now; set when counting starts. */
static atomic_long live_counted;
/* Non-zero while blocks made are counted (between setup and teardown). */
static atomic_int live_counting;
/* Non-zero once a block could not be tracked (table full or no memory). */
static atomic_int live_overflow;

/* Relaxed throughout, see the file comment. */
static size_t live_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p >> 3;
    x *= UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(x >> (64 - LIVE_BITS));
}

void moirai__test_live_made(void *p, size_t size)
{
    if (p == NULL || live_table == NULL)
        return;
    int counted = atomic_load_explicit(&live_counting, memory_order_relaxed);
    moirai__test_live_made_as(p, size, counted);
}

void moirai__test_live_made_as(void *p, size_t size, int counted)
{
    if (p == NULL || live_table == NULL)
        return;
    uintptr_t v = (uintptr_t)p | (counted ? LIVE_COUNTED : 0);
    if (counted && getenv("LIVE_SIZE") && (size_t)atoi(getenv("LIVE_SIZE")) == size) {
        void *bt[12];
        int n = backtrace(bt, 12);
        fprintf(stderr, "=== made %p\n", p);
        backtrace_symbols_fd(bt, n, 2);
    }
    size_t i = live_hash(p);
    for (int n = 0; n < LIVE_PROBE_MAX; n++, i = (i + 1) & (LIVE_SLOTS - 1)) {
        uintptr_t cur = atomic_load_explicit(&live_table[i], memory_order_relaxed);
        if ((cur == LIVE_EMPTY || cur == LIVE_GONE) &&
            atomic_compare_exchange_strong_explicit(&live_table[i], &cur, v, memory_order_relaxed,
                                                    memory_order_relaxed)) {
            atomic_store_explicit(&live_sizes[i], size, memory_order_relaxed);
            if (counted)
                atomic_fetch_add_explicit(&live_counted, 1, memory_order_relaxed);
            return;
        }
    }
    atomic_store_explicit(&live_overflow, 1, memory_order_relaxed);
}

int moirai__test_live_gone(void *p)
{
    if (p == NULL || live_table == NULL)
        return 0;
    size_t i = live_hash(p);
    for (int n = 0; n < LIVE_PROBE_MAX; n++, i = (i + 1) & (LIVE_SLOTS - 1)) {
        uintptr_t cur = atomic_load_explicit(&live_table[i], memory_order_relaxed);
        if (cur == LIVE_EMPTY)
            return 0;
        if ((cur & ~LIVE_COUNTED) == (uintptr_t)p) {
            atomic_store_explicit(&live_table[i], LIVE_GONE, memory_order_relaxed);
            int counted = (cur & LIVE_COUNTED) != 0;
            if (counted)
                atomic_fetch_sub_explicit(&live_counted, 1, memory_order_relaxed);
            return counted;
        }
    }
    return 0; /* made before tracking started, or while the table was full */
}

void moirai__test_live_start(void)
{
    if (live_table == NULL) {
        live_table = calloc(LIVE_SLOTS, sizeof(*live_table));
        live_sizes = calloc(LIVE_SLOTS, sizeof(*live_sizes));
        if (live_table == NULL || live_sizes == NULL) {
            free((void *)live_table);
            free((void *)live_sizes);
            live_table = NULL;
            live_sizes = NULL;
        }
    }
    atomic_store_explicit(&live_counted, 0, memory_order_relaxed);
    atomic_store_explicit(&live_counting, 1, memory_order_relaxed);
}

long moirai__test_live_now(void)
{
    return atomic_load_explicit(&live_counted, memory_order_relaxed);
}

long moirai__test_live_stop(void)
{
    atomic_store_explicit(&live_counting, 0, memory_order_relaxed);
    if (live_table == NULL || atomic_load_explicit(&live_overflow, memory_order_relaxed))
        return -1;
    return atomic_load_explicit(&live_counted, memory_order_relaxed);
}

/* Prints the counted blocks still live (at most 20). */
void moirai__test_live_report(void)
{
    int shown = 0;
    for (size_t i = 0; i < LIVE_SLOTS && shown < 20; i++) {
        uintptr_t cur = atomic_load_explicit(&live_table[i], memory_order_relaxed);
        if (cur != LIVE_GONE && (cur & LIVE_COUNTED)) {
            fprintf(stderr, "  live block %p of %zu bytes\n", (void *)(cur & ~LIVE_COUNTED),
                    atomic_load_explicit(&live_sizes[i], memory_order_relaxed));
            shown++;
        }
    }
}
