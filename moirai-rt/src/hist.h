/* A log-linear histogram of nanosecond values (internal): exact below 64,
 * then 32 buckets per power of two, so a percentile read from it is at
 * most 1/32 above the true value. Plus exact min, max and sum. */
#ifndef MOIRAI_RT_HIST_H
#define MOIRAI_RT_HIST_H

#include <stdint.h>

#define MOIRAI_RT_HIST_BUCKETS (64 + 58 * 32)

typedef struct moirai__hist {
    uint64_t count, sum, min, max;
    uint32_t bucket[MOIRAI_RT_HIST_BUCKETS];
} moirai__hist_t;

void moirai__hist_reset(moirai__hist_t *h);
void moirai__hist_add(moirai__hist_t *h, uint64_t v);
/* The value below which `permille`/1000 of the samples lie (upper bound of
 * its bucket, clamped to the maximum); 0 when empty. */
uint64_t moirai__hist_percentile(const moirai__hist_t *h, unsigned permille);

#endif
