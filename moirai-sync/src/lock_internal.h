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
 * that usually end quickly (a lock hand-over, readers leaving). A pause
 * takes 10-140 cycles on bare metal and about 80 ns on the VMs we measured
 * (hypervisors intercept pause loops), so the spin lasts roughly 0.5-10 us:
 * enough to cover a short critical section plus a cache-line transfer
 * (0.1-1 us), no longer than parking and being woken (10-20 us on those
 * VMs), and bounded so that a waiter whose lock holder was preempted does
 * not burn its time slice. */
#define MOIRAI__SPIN_PAUSES 128

/* The mutex algorithm without ThreadSanitizer annotations, for primitives
 * built on top of a mutex word (the rwlock's writer lock) that annotate
 * themselves as a whole. Same contracts and memory ordering as the public
 * functions. Hidden: not part of the ABI. */
bool moirai__mutex_trylock_raw(moirai_mutex_t *mutex);
int moirai__mutex_lock_raw(moirai_mutex_t *mutex, uint64_t deadline);
void moirai__mutex_unlock_raw(moirai_mutex_t *mutex);

#endif
