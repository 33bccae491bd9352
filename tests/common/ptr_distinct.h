/* Whether an array of pointers holds no pointer twice: the check of a pool
 * that must never hand one object out to two holders. Header-only. */
#ifndef MOIRAI_TEST_PTR_DISTINCT_H
#define MOIRAI_TEST_PTR_DISTINCT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static inline int ptr_distinct_cmp(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* True when the `n` pointers are pairwise distinct (sorts them). */
static inline bool all_distinct(void **p, size_t n)
{
    qsort(p, n, sizeof(*p), ptr_distinct_cmp);
    for (size_t i = 1; i < n; i++)
        if (p[i] == p[i - 1])
            return false;
    return true;
}

#endif
