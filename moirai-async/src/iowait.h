/* Waiting inside an I/O operation, the same way from a fiber and from a
 * plain thread: a fiber parks (and a cancellation of its task ends the
 * wait), a thread sleeps in the kernel (only the deadline ends it early). */
#ifndef MOIRAI_ASYNC_IOWAIT_H
#define MOIRAI_ASYNC_IOWAIT_H

#include <stdatomic.h>
#include <stdint.h>

/* -ECANCELED if the calling fiber's task is cancelled, else 0 (always 0
 * on a plain thread). Cancellation is sticky: a cancelled fiber's later
 * operations fail at once, as its sleeps do. */
int moirai__iowait_check(void);

/* Parks the caller while `*word == expected`, until an unpark on `word`
 * or the deadline. Returns 0 (woken or the word changed: re-check),
 * -ETIMEDOUT once the deadline has passed, or -ECANCELED (fiber only). */
int moirai__iowait_park(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline);

/* As moirai__iowait_park(), saying what the wait is for (fiber dumps show
 * it; moirai__iowait_park() says "I/O"). */
int moirai__iowait_park_for(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline,
                            const char *what);

#endif
