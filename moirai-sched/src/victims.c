/* Victim order for stealing: the other workers sorted by locality tier,
 * by worker index within a tier (a counting sort over the three tiers). */
#include "victims.h"

#include <errno.h>
#include <stddef.h>

#include <moirai/core/alloc.h>
#include <moirai/core/topology.h>

/* The tier of worker `w` seen from the CPU `me`, or a negative errno if
 * the topology cannot describe its CPU. */
static int tier_of(const moirai_cpu_info_t *me, int w, int cpus, moirai_steal_strategy_t strategy)
{
    if (strategy == MOIRAI_STEAL_RANDOM)
        return 2;
    moirai_cpu_info_t info;
    int rc = moirai_topology_cpu_at(w % cpus, &info);
    if (rc < 0)
        return rc;
    if (info.l3_group == me->l3_group)
        return 0;
    if (info.node == me->node)
        return 1;
    return 2;
}

int moirai__victims_build(moirai__victims_t *v, int workers, int self,
                          moirai_steal_strategy_t strategy)
{
    if (v == NULL || workers < 1 || self < 0 || self >= workers ||
        (strategy != MOIRAI_STEAL_LOCALITY && strategy != MOIRAI_STEAL_RANDOM))
        return -EINVAL;
    int cpus = moirai_topology_cpu_count();
    moirai_cpu_info_t me;
    int rc = moirai_topology_cpu_at(self % cpus, &me);
    if (rc < 0)
        return rc;

    /* First pass: how many victims fall into each tier. */
    int size[MOIRAI__TIERS] = {0};
    for (int w = 0; w < workers; w++) {
        if (w == self)
            continue;
        int t = tier_of(&me, w, cpus, strategy);
        if (t < 0)
            return t;
        size[t]++;
    }
    moirai__victims_t out = {.count = workers - 1, .order = NULL};
    int next[MOIRAI__TIERS];
    for (int t = 0, end = 0; t < MOIRAI__TIERS; t++) {
        next[t] = end;
        end += size[t];
        out.tier_end[t] = end;
    }
    if (out.count == 0) {
        *v = out;
        return 0;
    }
    out.order = moirai_malloc((size_t)out.count * sizeof(out.order[0]));
    if (out.order == NULL)
        return -ENOMEM;
    /* Second pass: place each victim at the next free entry of its tier,
     * which keeps worker-index order within the tier. The topology does
     * not change under us (injection is not allowed concurrently with
     * queries), so the tiers come out as counted. */
    for (int w = 0; w < workers; w++) {
        if (w == self)
            continue;
        int t = tier_of(&me, w, cpus, strategy);
        if (t < 0) {
            moirai_free(out.order);
            return t;
        }
        out.order[next[t]++] = w;
    }
    *v = out;
    return 0;
}

void moirai__victims_free(moirai__victims_t *v)
{
    if (v == NULL)
        return;
    moirai_free(v->order);
    v->order = NULL;
    v->count = 0;
    for (int t = 0; t < MOIRAI__TIERS; t++)
        v->tier_end[t] = 0;
}

int moirai__victims_tier(const moirai__victims_t *v, int i)
{
    if (v == NULL || i < 0 || i >= v->count)
        return -EINVAL;
    int t = 0;
    while (i >= v->tier_end[t])
        t++;
    return t;
}
