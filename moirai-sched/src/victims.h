/* Victim order for stealing (internal).
 *
 * Worker i runs on (or, unpinned, is associated with) the topology's CPU
 * number i modulo the CPU count, as moirai_topology_cpu_at() lists them.
 * Its victims are the other workers sorted into tiers by locality: tier 0
 * shares its last-level cache group, tier 1 its NUMA node, tier 2 is the
 * rest. Under MOIRAI_STEAL_RANDOM every victim is tier 2. Within a tier the
 * order is by worker index; the stealer starts each tier at a random offset
 * so that thieves spread out. */
#ifndef MOIRAI_SCHED_VICTIMS_H
#define MOIRAI_SCHED_VICTIMS_H

#include <stdint.h>

#include <moirai/sched/sched.h>

#define MOIRAI__TIERS 3

typedef struct moirai__victims {
    int count;                   /* workers - 1 */
    int *order;                  /* `count` worker indices, tier by tier */
    int tier_end[MOIRAI__TIERS]; /* order[tier_end[t-1] .. tier_end[t]) is tier t */
} moirai__victims_t;

/* Fills `*v` for worker `self` of `workers`, reading core's topology
 * (worker w stands on moirai_topology_cpu_at(w % cpu_count)). With one
 * worker, count is 0 and order NULL. Does not block; thread-safe, except
 * against topology injection (as every topology query). Returns 0,
 * -EINVAL (v NULL, workers < 1, self outside 0..workers-1, unknown
 * strategy) or -ENOMEM; on error `*v` is untouched and nothing is
 * allocated. */
int moirai__victims_build(moirai__victims_t *v, int workers, int self,
                          moirai_steal_strategy_t strategy);

/* Frees what moirai__victims_build() allocated and zeroes `*v`, so a
 * second call (or a call on a zeroed struct or NULL) does nothing. */
void moirai__victims_free(moirai__victims_t *v);

/* The tier of entry `i` of `v->order` (0, 1 or 2), or -EINVAL if `i` is
 * not in 0..count-1. */
int moirai__victims_tier(const moirai__victims_t *v, int i);

/* A small, fast per-thread random generator for victim offsets
 * (xorshift; not for anything but spreading thieves). */
static inline uint32_t moirai__victims_rand(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

#endif
