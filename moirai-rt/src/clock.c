/* The real and virtual clocks. A virtual clock is one atomic counter; its
 * reads and writes are relaxed because it carries no data between threads
 * (the executor that drives it runs on the caller's thread). */
#include <errno.h>
#include <stdatomic.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/rt/clock.h>

#include "clock_internal.h"

struct moirai_rt_clock {
    bool is_virtual;
    _Atomic uint64_t now;
};

static moirai_rt_clock_t real_clock = {false, 0};

moirai_rt_clock_t *moirai_rt_clock_real(void)
{
    return &real_clock;
}

int moirai_rt_clock_create_virtual(moirai_rt_clock_t **out, uint64_t start_ns)
{
    if (!out)
        return -EINVAL;
    moirai_rt_clock_t *c = moirai_malloc(sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->is_virtual = true;
    atomic_init(&c->now, start_ns);
    *out = c;
    return 0;
}

void moirai_rt_clock_destroy(moirai_rt_clock_t *clock)
{
    if (clock && clock->is_virtual)
        moirai_free(clock);
}

uint64_t moirai_rt_clock_now(const moirai_rt_clock_t *clock)
{
    if (!clock || !clock->is_virtual)
        return moirai_clock_now_ns();
    return atomic_load_explicit(&((moirai_rt_clock_t *)clock)->now, memory_order_relaxed);
}

int moirai_rt_clock_advance(moirai_rt_clock_t *clock, uint64_t ns)
{
    if (!clock || !clock->is_virtual)
        return -EINVAL;
    uint64_t cur = atomic_load_explicit(&clock->now, memory_order_relaxed), next;
    do {
        if (__builtin_add_overflow(cur, ns, &next))
            return -EOVERFLOW;
    } while (!atomic_compare_exchange_weak_explicit(&clock->now, &cur, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    return 0;
}

bool moirai_rt_clock_is_virtual(const moirai_rt_clock_t *clock)
{
    return clock && clock->is_virtual;
}

void moirai__clock_set(moirai_rt_clock_t *clock, uint64_t t)
{
    atomic_store_explicit(&clock->now, t, memory_order_relaxed);
}
