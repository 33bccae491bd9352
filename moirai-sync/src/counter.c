/* Sharded counter: one cache-line-sized slot per CPU.
 *
 * A single allocation, aligned to the cache-line size, holds the header in
 * its first line and the slots in the following ones, so no slot shares a
 * line with another slot or with the header (which adders only read). */
#include <moirai/sync/counter.h>

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>

#include <moirai/core/alloc.h>
#include <moirai/core/topology.h>

struct moirai_counter {
    size_t slots;  /* number of slots */
    size_t stride; /* bytes from one slot to the next: the cache-line size */
    unsigned char *base;
};

typedef _Atomic uint64_t slot_t;

_Static_assert(sizeof(struct moirai_counter) <= 64, "the header fits the first cache line");

/* Threads whose CPU the kernel cannot tell (sched_getcpu failing) are
 * spread over the slots by a per-thread number instead. */
static _Atomic uint32_t next_thread;
static __thread uint32_t thread_index;

static inline slot_t *slot_at(const moirai_counter_t *counter, size_t i)
{
    return (slot_t *)(void *)(counter->base + i * counter->stride);
}

/* The cache-line size as an allocation alignment: a power of two, at least
 * 64 (the smallest line on machines we target, and enough for the slot). */
static size_t line_size(void)
{
    size_t line = (size_t)moirai_topology_cache_line_size();
    size_t p = 64;
    while (p < line && p < 4096)
        p *= 2;
    return p;
}

int moirai_counter_create(moirai_counter_t **out)
{
    if (out == NULL)
        return -EINVAL;
    /* The slot count and line size come from the topology: a failure to
     * read it is this create's failure (see moirai_topology_load()). */
    int rc = moirai_topology_load();
    if (rc != 0)
        return rc;
    size_t line = line_size();
    size_t slots = (size_t)moirai_topology_cpu_count();
    if (slots < 1)
        slots = 1;
    unsigned char *mem = moirai_aligned_alloc(line, (slots + 1) * line);
    if (mem == NULL)
        return -ENOMEM;
    moirai_counter_t *counter = (moirai_counter_t *)(void *)mem;
    counter->slots = slots;
    counter->stride = line;
    counter->base = mem + line;
    for (size_t i = 0; i < slots; i++)
        atomic_init(slot_at(counter, i), 0);
    *out = counter;
    return 0;
}

void moirai_counter_destroy(moirai_counter_t *counter)
{
    moirai_free(counter);
}

static inline size_t my_slot(const moirai_counter_t *counter)
{
    /* sched_getcpu() reads the CPU number the kernel keeps in rseq or the
     * vDSO: a few nanoseconds, no system call. The thread may migrate
     * right after; that only costs locality, since any slot is correct. */
    int cpu = sched_getcpu();
    if (__builtin_expect(cpu >= 0, 1))
        return (size_t)cpu % counter->slots;
    uint32_t t = thread_index;
    if (t == 0) {
        /* Relaxed: only the distribution of numbers matters. */
        t = atomic_fetch_add_explicit(&next_thread, 1, memory_order_relaxed) + 1;
        if (t == 0)
            t = 1;
        thread_index = t;
    }
    return (size_t)t % counter->slots;
}

void moirai_counter_add(moirai_counter_t *counter, int64_t delta)
{
    /* Relaxed: a statistic; see the header for what a read promises. */
    atomic_fetch_add_explicit(slot_at(counter, my_slot(counter)), (uint64_t)delta,
                              memory_order_relaxed);
}

int64_t moirai_counter_read(const moirai_counter_t *counter)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < counter->slots; i++)
        sum += atomic_load_explicit(slot_at(counter, i), memory_order_relaxed);
    /* Two's-complement conversion: wraps as the header documents. */
    return (int64_t)sum;
}

size_t moirai_counter_slots(const moirai_counter_t *counter)
{
    return counter->slots;
}
