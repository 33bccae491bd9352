/* The check macro shared by the out-of-tree consumer programs. Plain ISO
 * C11 and nothing but the C library: the consumers are built with
 * `pkg-config --cflags --libs moirai-NAME` alone (check_consumer.sh), and
 * a quoted include finds this file next to the including source. A failed
 * check is reported and counted, so that one run shows every failure;
 * each consumer exits non-zero when `failures` is not 0. */
#ifndef MOIRAI_CONSUMER_CHECK_H
#define MOIRAI_CONSUMER_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "consumer: check failed: %s (line %d)\n", #cond, __LINE__);            \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#endif
