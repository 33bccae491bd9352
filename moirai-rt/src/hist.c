/* The log-linear histogram behind the executor's p99 figures. */
#include <string.h>

#include "hist.h"

static unsigned bucket_of(uint64_t v)
{
    if (v < 64)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* 6..63 */
    unsigned sub = (unsigned)((v >> (e - 5)) & 31u);
    return 64u + (e - 6u) * 32u + sub;
}

/* The largest value that falls in bucket `b`. */
static uint64_t bucket_top(unsigned b)
{
    if (b < 64)
        return b;
    unsigned e = (b - 64u) / 32u + 6u, sub = (b - 64u) % 32u;
    uint64_t base = (UINT64_C(1) << e) + ((uint64_t)sub << (e - 5));
    return base + ((UINT64_C(1) << (e - 5)) - 1);
}

void moirai__hist_reset(moirai__hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void moirai__hist_add(moirai__hist_t *h, uint64_t v)
{
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->bucket[bucket_of(v)]++;
}

uint64_t moirai__hist_percentile(const moirai__hist_t *h, unsigned permille)
{
    if (!h->count)
        return 0;
    uint64_t rank = (h->count * permille + 999) / 1000, seen = 0;
    if (rank == 0)
        rank = 1;
    for (unsigned b = 0; b < MOIRAI_RT_HIST_BUCKETS; b++) {
        seen += h->bucket[b];
        if (seen >= rank) {
            uint64_t top = bucket_top(b);
            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}
