/* What the parking layer's files share (park.c, park_either.c). Never
 * installed. */
#ifndef MOIRAI_CORE_PARK_INTERNAL_H
#define MOIRAI_CORE_PARK_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* The count of threads asleep (or about to sleep) on a futex at `addr`,
 * shared with the other addresses of its hash bucket. A sleeper raises it
 * with a seq_cst read-modify-write before the kernel compares the word and
 * lowers it after; a waker skips FUTEX_WAKE while it reads zero (park.c
 * says why no wake-up is lost). */
_Atomic uint32_t *moirai__park_sleepers(const void *addr);

/* True when the installed park hook applies to the calling context (the
 * caller is a fiber of the runtime that installed it). Never blocks. */
bool moirai__park_hook_applies(void);

#endif
