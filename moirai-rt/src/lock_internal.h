/* Shared by the two lock kinds (internal). */
#ifndef MOIRAI_RT_LOCK_INTERNAL_H
#define MOIRAI_RT_LOCK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/rt/lock.h>

/* The calling thread's kernel thread id (cached). */
uint32_t moirai__lock_tid(void);

/* The PI lock without TSan annotations: 0, -EBUSY (try), -ETIMEDOUT,
 * -EDEADLK. Counts the lock in the caller's held count. */
int moirai__pi_lock(moirai_rt_pi_mutex_t *mutex, uint64_t deadline, bool try_only);

/* The PI unlock without annotations: 0 or -EPERM. */
int moirai__pi_unlock(moirai_rt_pi_mutex_t *mutex);

#endif
