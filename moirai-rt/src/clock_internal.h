/* The executor's access to a virtual clock (internal). */
#ifndef MOIRAI_RT_CLOCK_INTERNAL_H
#define MOIRAI_RT_CLOCK_INTERNAL_H

#include <moirai/rt/clock.h>

/* Sets a virtual clock to `t` (the executor moves it to the next event,
 * and between its workers' own times when it simulates several). */
void moirai__clock_set(moirai_rt_clock_t *clock, uint64_t t);

#endif
