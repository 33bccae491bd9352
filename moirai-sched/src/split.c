/* Where a parallel loop runs and how finely it splits (split.h). */
#include "split.h"

#include "sched_internal.h"

void moirai__split_fork2(moirai_sched_t *sched, moirai_join_fn a, void *arg_a, moirai_join_fn b,
                         void *arg_b)
{
    if (sched != NULL && moirai_join(sched, a, arg_a, b, arg_b) == 0)
        return;
    a(arg_a);
    b(arg_b);
}

int moirai__split_resolve(moirai_sched_t *sched, moirai_sched_t **out, int *outside)
{
    moirai_sched_t *current = moirai_sched_current();
    int rc = moirai__sched_resolve(sched, &sched);
    if (rc != 0)
        return rc;
    *outside = current != sched;
    *out = sched;
    return 0;
}

size_t moirai__split_grain(moirai_sched_t *sched, size_t n, size_t grain)
{
    if (grain != 0)
        return grain;
    size_t workers = 1;
    if (sched != NULL) {
        int w = moirai_sched_worker_count(sched);
        workers = w > 0 ? (size_t)w : 1;
    }
    size_t pieces = workers * MOIRAI__SPLIT_PIECES_PER_WORKER;
    size_t g = n / pieces + (n % pieces != 0);
    return g > 0 ? g : 1;
}
