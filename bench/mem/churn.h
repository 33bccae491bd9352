/* The churn workload that moirai-bench's mem cases (bench_mem.c) and the
 * callgrind driver (fastpath_driver.c) share, so that the instruction
 * counts describe exactly the loop the times come from. */
#ifndef MOIRAI_BENCH_MEM_CHURN_H
#define MOIRAI_BENCH_MEM_CHURN_H

#include <stdint.h>

#define LIVE        4096u /* live objects per thread in the churn cases */
#define OBJECT_SIZE 64u
#define SIZE_TABLE  65536u
#define SIZE_MIN    16u
#define SIZE_MAX_   256u

static inline uint32_t xorshift32(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

/* The sizes of the mixed-size cases, SIZE_MIN to SIZE_MAX_, the same on
 * every run. */
static inline void churn_size_table_fill(uint16_t *table)
{
    uint32_t s = 0x9e3779b9u;
    for (uint32_t i = 0; i < SIZE_TABLE; i++)
        table[i] = (uint16_t)(SIZE_MIN + xorshift32(&s) % (SIZE_MAX_ - SIZE_MIN + 1));
}

#endif
