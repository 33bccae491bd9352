/* Quota groups: a budget per window shared by a group's tasks, charged by
 * the dispatcher after every step (see moirai_rt_group_create). Groups
 * live under their executor's lock. */
#include <errno.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/rt/executor.h>

#include "executor_internal.h"

void moirai_rt_group_config_init(moirai_rt_group_config_t *cfg)
{
    if (cfg)
        memset(cfg, 0, sizeof(*cfg));
}

/* Starts the group's windows up to `now`. */
void moirai__group_roll(moirai_rt_group_t *g, uint64_t now)
{
    if (now < g->window_start + g->period)
        return;
    uint64_t behind = (now - g->window_start) / g->period;
    g->window_start += behind * g->period;
    g->windows += behind;
    g->used = 0;
}

bool moirai__group_exhausted(moirai_rt_group_t *g, uint64_t now)
{
    if (!g)
        return false;
    moirai__group_roll(g, now);
    return g->used >= g->budget;
}

int moirai_rt_group_create(moirai_rt_executor_t *ex, moirai_rt_group_t **out,
                           const moirai_rt_group_config_t *cfg)
{
    if (!ex || !out || !cfg || cfg->period_ns == 0 || cfg->budget_ns == 0 ||
        cfg->budget_ns > cfg->period_ns)
        return -EINVAL;
    moirai_rt_group_t *g = moirai_calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->ex = ex;
    g->budget = cfg->budget_ns;
    g->period = cfg->period_ns;
    pthread_mutex_lock(&ex->lock);
    g->window_start = moirai_rt_clock_now(ex->clock);
    g->next = ex->groups;
    ex->groups = g;
    pthread_mutex_unlock(&ex->lock);
    *out = g;
    return 0;
}

int moirai_rt_group_destroy(moirai_rt_group_t *group)
{
    if (!group)
        return -EINVAL;
    moirai_rt_executor_t *ex = group->ex;
    pthread_mutex_lock(&ex->lock);
    if (group->members) {
        pthread_mutex_unlock(&ex->lock);
        return -EBUSY;
    }
    for (moirai_rt_group_t **p = &ex->groups; *p; p = &(*p)->next)
        if (*p == group) {
            *p = group->next;
            break;
        }
    pthread_mutex_unlock(&ex->lock);
    moirai_free(group);
    return 0;
}

int moirai_rt_group_stats(moirai_rt_group_t *group, moirai_rt_group_stats_t *out)
{
    if (!group || !out)
        return -EINVAL;
    moirai_rt_executor_t *ex = group->ex;
    pthread_mutex_lock(&ex->lock);
    moirai__group_roll(group, moirai_rt_clock_now(ex->clock));
    out->used_ns = group->used;
    out->windows = group->windows + 1;
    out->throttles = group->throttles;
    out->total_ns = group->total;
    pthread_mutex_unlock(&ex->lock);
    return 0;
}
