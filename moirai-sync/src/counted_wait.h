/* The counted wait shared by the event and the semaphore (internal, never
 * installed): a waiter announces itself in a count that the waking side
 * reads, so a set or post with nobody waiting makes no system call. */
#ifndef MOIRAI_SYNC_COUNTED_WAIT_H
#define MOIRAI_SYNC_COUNTED_WAIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Takes what the waiter waits for (a set event, a semaphore unit) without
 * blocking; true on success, with acquire ordering. */
typedef bool (*moirai__counted_take_fn)(void *obj);

/* Waits until take(obj) succeeds: takes, else adds itself to `*waiters`
 * (seq_cst, the waiter half of the Dekker pair with the waker, which
 * changes `*word` then reads `*waiters`, both seq_cst), parks on `word`
 * while it reads 0 (moirai_park_for(), named `what` for dumps), leaves the
 * count, and tries again. After a timeout it tries once more, so that a
 * wake-up meant for it is consumed rather than left with nobody woken.
 * Returns 0, or -ETIMEDOUT at `deadline`. Blocks (parks a fiber under a
 * fiber runtime). */
int moirai__counted_wait(_Atomic uint32_t *word, _Atomic uint32_t *waiters, uint64_t deadline,
                         const char *what, moirai__counted_take_fn take, void *obj);

#endif
