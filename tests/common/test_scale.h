/* Iteration counts for stress tests, read from the environment. The test
 * meson files set MOIRAI_TEST_SCALE under sanitizers, which slow every
 * operation down; counts are divided by it there. Header-only. */
#ifndef MOIRAI_TEST_SCALE_H
#define MOIRAI_TEST_SCALE_H

#include <stdlib.h>

/* The positive integer in environment variable `name`, or `fallback` when
 * it is unset, not a number or not positive. */
static inline long env_long(const char *name, long fallback)
{
    const char *s = getenv(name);
    long v = s != NULL ? atol(s) : 0;
    return v > 0 ? v : fallback;
}

/* `n` divided by MOIRAI_TEST_SCALE (1 when unset), but at least 1. */
static inline long scaled(long n)
{
    long k = env_long("MOIRAI_TEST_SCALE", 1);
    return n / k > 0 ? n / k : 1;
}

#endif
