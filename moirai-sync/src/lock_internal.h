/* Helpers shared by moirai-sync's blocking primitives (internal, never
 * installed). */
#ifndef MOIRAI_SYNC_LOCK_INTERNAL_H
#define MOIRAI_SYNC_LOCK_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/spin.h>
#include <moirai/sync/mutex.h>

/* Pause instructions a waiter spends spinning before it parks, for waits
 * that usually end quickly (a lock hand-over, readers leaving). The spin
 * backs off 1, 2, 4, 8 pauses between looks at the word, so 16 means four
 * looks. A pause takes 10-140 cycles on bare metal and about 80 ns on the
 * VMs we measured (hypervisors intercept pause loops), so the spin lasts
 * about 0.2-1.3 us: enough for a short critical section plus a cache-line
 * transfer, far less than parking and being woken (10-20 us on those VMs).
 * Longer spins measured worse: with two threads hammering one mutex on a
 * quiet 2-CPU VM, 128 pauses gave 1.7-2.5x pthread's time per operation,
 * 16 gave 1.1x and 0 gave 0.9x, because a spinner keeps pulling the lock's
 * cache line away from the holder while a parked waiter lets the holder run
 * at uncontended speed. 16 keeps most of that gain without sending every
 * briefly blocked waiter to sleep. */
#define MOIRAI__SPIN_PAUSES 16

/* The mutex algorithm without ThreadSanitizer annotations, for primitives
 * built on top of a mutex word (the rwlock's writer lock) that annotate
 * themselves as a whole. Same contracts and memory ordering as the public
 * functions. Hidden: not part of the ABI. */
bool moirai__mutex_try_lock_raw(moirai_mutex_t *mutex);
int moirai__mutex_lock_raw(moirai_mutex_t *mutex, uint64_t deadline);
void moirai__mutex_unlock_raw(moirai_mutex_t *mutex);

#endif
