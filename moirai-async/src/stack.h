/* Fiber stacks: mmap'ed, with a guard page below, a canary just above the
 * guard, a high-water mark, a cache so that spawning a fiber does not map
 * a stack each time, and a SIGSEGV handler that turns a guard-page hit
 * into a message naming the fiber.
 *
 * A stack is one anonymous private mapping: the lowest page is the guard
 * (PROT_NONE), the rest is usable. The mprotect splits it into two kernel
 * mappings, so live stacks count twice against vm.max_map_count (65530 by
 * default: about 32 000 stacks, cached ones included); beyond it mmap or
 * mprotect fails and creating a stack returns -ENOMEM.
 *
 * The zero fill is the instrument. A fresh mapping reads as zeros and is
 * not resident until written; every stack is handed out entirely zero
 * (a reused stack is re-zeroed over the range its last user dirtied), so
 * the lowest non-zero word marks the deepest point any code reached: that
 * is the high-water mark. Two ways to find it:
 *   exact: ask the kernel which pages are resident (mincore) and scan
 *     words from the lowest resident page up. About 1-2 us here, nearly
 *     all of it the system call. moirai__stack_used() does this.
 *   window: each stack remembers a floor, set by the last exact pass a
 *     band of 512 bytes below the deepest word its user wrote; only
 *     [floor, top) is scanned, up to the first non-zero word, with no
 *     system call (SSE2 on x86-64), costing the band plus the difference
 *     to that user. A later user that went below the floor has written
 *     into the band unless an unwritten hole of 512 bytes or more in one
 *     of its frames (a large, barely used buffer) spans it; when the
 *     lowest word found lies in the band, or nothing is found at all, the
 *     exact pass runs instead (and sets the floor lower).
 *     moirai__stack_reset() uses the window, and the exact pass on a
 *     fresh stack's first reset and on every 64th reset after, so the one
 *     case the window misses (that hole) costs one low figure and, at
 *     most 64 reuses later, one high one, and then heals.
 * A page the kernel has swapped out reads as not resident to the exact
 * pass: under swap the mark may come out low (only a figure is wrong).
 *
 * The canary is the lowest MOIRAI__STACK_CANARY bytes of the usable range,
 * which must still hold the zero fill: a non-zero pattern would have to be
 * written at creation, making the bottom page resident in every stack
 * (4 KiB of RSS per fiber, half again what a typical parked fiber
 * touches). A fiber that came within the canary of the guard without
 * touching it is reported by moirai__stack_check() (one mincore call) or,
 * for free, by moirai__stack_reset()'s result. */
#ifndef MOIRAI_ASYNC_STACK_H
#define MOIRAI_ASYNC_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes at the bottom of the usable range that must stay zero. */
#define MOIRAI__STACK_CANARY 64

/* One stack. `lo`, `size` and `guard` are read-only for users. */
typedef struct moirai__stack {
    void *lo;    /* lowest usable byte (page-aligned); the canary starts here */
    size_t size; /* usable bytes, whole pages */
    void *guard; /* the guard page, just below `lo`: the mapping's start */
    /* The window's floor (line-aligned; the top when no window is known)
     * and the resets left before the next exact pass. Private to
     * stack.c. */
    uintptr_t floor;
    unsigned window_resets;
    struct moirai__stack *next; /* the cache's free list */
} moirai__stack_t;

/* The cache of stacks of one (default) size. */
typedef struct moirai__stack_pool moirai__stack_pool_t;

/* The pool's counters. */
typedef struct moirai__stack_pool_stats {
    uint64_t mapped;     /* stacks currently mapped by the pool: in use or cached */
    uint64_t cached;     /* of those, in the cache */
    uint64_t high_water; /* most bytes any stack returned to the pool had used */
} moirai__stack_pool_stats_t;

/* The usable size for a requested one: 0 means MOIRAI_FIBER_STACK_DEFAULT,
 * anything else is rounded up to whole pages. Stores it in `*usable` and
 * returns 0, or returns -EINVAL when the request lies outside
 * [MOIRAI_FIBER_STACK_MIN, MOIRAI_FIBER_STACK_MAX] (checked before
 * rounding; `*usable` untouched). */
int moirai__stack_size(size_t requested, size_t *usable);

/* Maps a fresh stack of `size` usable bytes (as moirai__stack_size() reads
 * it) with its guard page. Returns 0, -EINVAL (NULL out, size out of
 * range) or -ENOMEM (no memory for the descriptor, or mmap/mprotect
 * failed: address space, RLIMIT_AS or vm.max_map_count exhausted); on
 * error nothing is left mapped or allocated. Thread-safe. */
int moirai__stack_create(moirai__stack_t **out, size_t size);

/* Unmaps a stack. Nothing may run on it. NULL is ignored. */
void moirai__stack_destroy(moirai__stack_t *s);

/* The stack's top (one past its highest usable byte). */
static inline void *moirai__stack_hi(const moirai__stack_t *s)
{
    return (char *)s->lo + s->size;
}

/* The most bytes used below the top since the stack was handed out, to
 * within a word: the distance from the top to the lowest non-zero word,
 * found by the exact pass (one mincore system call, then a scan of the
 * resident range). Call it on the fiber running on `s`, or while nothing
 * runs on it (a parked fiber), with the memory ordered by whoever parked
 * it. Never blocks. */
size_t moirai__stack_used(const moirai__stack_t *s);

/* As moirai__stack_used(), from any thread while the stack is mapped,
 * also while a fiber runs on it (for dumps): the scan races with the
 * fiber's own writes, harmlessly (a word read as zero that was just
 * written makes the mark one frame short, and only while it runs), and
 * is hidden from ThreadSanitizer for that reason. Exact for a parked
 * fiber, to a word; see "The zero fill" above for why a reused stack
 * measures only its current user. One mincore() system call. */
size_t moirai__stack_used_racy(const moirai__stack_t *s);

/* True while the canary (the lowest MOIRAI__STACK_CANARY usable bytes)
 * still holds its zero fill, false once something wrote there: the fiber
 * came within reach of its guard page. Same calling rules as
 * moirai__stack_used(). */
bool moirai__stack_check(const moirai__stack_t *s);

/* Re-zeroes what the last user dirtied, so the stack can be handed out
 * again with its zero fill, and returns the bytes that user had used (the
 * window pass, falling back to the exact one; see above). A result above
 * s->size - MOIRAI__STACK_CANARY means the user reached the canary. On an
 * exact pass, resident zero pages far below what the user touched (left
 * by earlier, deeper users) are returned to the kernel, so a cached stack
 * keeps about the memory its recent users touched. No system call on the
 * window pass. Nothing may run on `s`. */
size_t moirai__stack_reset(moirai__stack_t *s);

/* Creates a cache of stacks of `stack_size` usable bytes (0: the default;
 * rounded as moirai__stack_size() does) keeping at most `capacity` of
 * them (0: nothing is kept; every put unmaps). Nothing is mapped yet.
 * Returns 0, -EINVAL (NULL out, size out of range) or -ENOMEM. */
int moirai__stack_pool_create(moirai__stack_pool_t **out, size_t stack_size, size_t capacity);

/* Unmaps the cached stacks and frees the pool. Every stack taken from it
 * must have been put back (or destroyed by its owner) first. NULL is
 * ignored. */
void moirai__stack_pool_destroy(moirai__stack_pool_t *p);

/* The pool's stack size in usable bytes. */
size_t moirai__stack_pool_stack_size(const moirai__stack_pool_t *p);

/* Hands out a zero-filled stack of `size` usable bytes (0: the pool's
 * size): a cached one when the size is the pool's and the cache has one,
 * else a fresh mapping. Thread-safe; never blocks beyond a short critical
 * section. Returns 0, -EINVAL (NULL argument, size out of range) or
 * -ENOMEM (as moirai__stack_create()). The memory's zero fill written by
 * the previous user's thread happens before the new user's accesses (the
 * cache lock's release/acquire). */
int moirai__stack_pool_get(moirai__stack_pool_t *p, size_t size, moirai__stack_t **out);

/* Takes back a stack handed out by `p` once nothing runs on it: resets it
 * (moirai__stack_reset), then caches it if it has the pool's size and the
 * cache has room, else unmaps it. Returns the bytes its last user used.
 * Thread-safe. */
size_t moirai__stack_pool_put(moirai__stack_pool_t *p, moirai__stack_t *s);

/* Copies the counters (relaxed: exact once the pool is quiet). */
void moirai__stack_pool_stats(const moirai__stack_pool_t *p, moirai__stack_pool_stats_t *out);

/* Stack overflow reporting. A SIGSEGV handler (installed once per process)
 * runs on an alternate signal stack; when the fault lies in the guard page
 * of the stack registered as current on the faulting thread, or the stack
 * pointer has left that stack downwards, it writes
 *   moirai: fiber '<name>' (id N) overflowed its stack of B bytes
 * to stderr with write(2) and aborts. Any other SIGSEGV goes to the
 * handler installed before (or the default action).
 *
 * Prepares the calling thread: installs the process-wide handler the
 * first time, and an alternate signal stack (64 KiB) for this thread
 * unless one of at least 16 KiB is already installed (ours is unmapped at
 * thread exit by a pthread key destructor). Idempotent; after a failure
 * it may be called again. Returns 0, -ENOMEM (the signal stack could not
 * be mapped) or -EAGAIN (no pthread key left for the process). */
int moirai__stack_thread_prepare(void);

/* Registers `s` as the stack the calling thread runs now (NULL: none,
 * the thread's own stack), with the name and id the overflow message
 * gives (name NULL: "(unnamed)"; at most 200 bytes of it are written;
 * the string must outlive the registration). Calls
 * moirai__stack_thread_prepare() the first time on each thread; if that
 * failed, an overflow still kills the process, but by a plain SIGSEGV
 * without the message. Never blocks. Call it before
 * switching onto the fiber, on the thread that will run it, and with
 * NULL when back on the thread's own stack: a fault within 1 MiB below a
 * registered stack is read as that stack's overflow. */
void moirai__stack_set_current(const moirai__stack_t *s, const char *name, uint64_t id);

#endif
