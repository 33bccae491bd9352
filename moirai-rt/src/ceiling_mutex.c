/* The immediate priority-ceiling mutex: a PI futex plus a raise of the
 * owner's SCHED_FIFO / SCHED_RR priority to the ceiling for as long as it
 * holds the lock (the "highest locker" protocol that POSIX calls
 * PTHREAD_PRIO_PROTECT). Only the owner touches the saved priority, so
 * those fields need no atomics: the lock itself orders them. */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include <moirai/rt/lock.h>

#include "lock_internal.h"
#include "tsan.h"

int moirai_rt_ceiling_mutex_init(moirai_rt_ceiling_mutex_t *mutex, int ceiling)
{
    if (!mutex || ceiling < 1 || ceiling > 99)
        return -EINVAL;
    mutex->priv_lock.priv_word = 0;
    mutex->priv_ceiling = ceiling;
    mutex->priv_saved = 0;
    mutex->priv_raised = 0;
    rt_tsan_create(mutex);
    return 0;
}

void moirai_rt_ceiling_mutex_destroy(moirai_rt_ceiling_mutex_t *mutex)
{
    if (mutex)
        rt_tsan_destroy(mutex);
}

int moirai_rt_ceiling_mutex_ceiling(const moirai_rt_ceiling_mutex_t *mutex)
{
    return mutex ? mutex->priv_ceiling : -EINVAL;
}

/* Raises the caller to the ceiling if it runs under an RT policy below it.
 * Raising before taking the lock is the immediate protocol: the owner runs
 * at the ceiling from its first instruction inside. */
static void raise_to(moirai_rt_ceiling_mutex_t *mutex, int *saved, int *raised)
{
    int policy;
    struct sched_param sp;
    *raised = 0;
    if (pthread_getschedparam(pthread_self(), &policy, &sp) != 0)
        return;
    if ((policy == SCHED_FIFO || policy == SCHED_RR) && sp.sched_priority < mutex->priv_ceiling) {
        *saved = sp.sched_priority;
        /* pthread_setschedprio moves the thread to the tail of its new
         * priority's queue, as a raise should; it can fail only without
         * privilege to raise, and then the lock still works (with
         * inheritance only). */
        if (pthread_setschedprio(pthread_self(), mutex->priv_ceiling) == 0)
            *raised = 1;
    }
}

static void restore(int saved, int raised)
{
    if (raised)
        (void)pthread_setschedprio(pthread_self(), saved);
}

static int ceiling_lock(moirai_rt_ceiling_mutex_t *mutex, bool try_only)
{
    if (!mutex)
        return -EINVAL;
    int saved = 0, raised = 0;
    /* Refuse recursion before touching priorities. */
    if ((__atomic_load_n(&mutex->priv_lock.priv_word, __ATOMIC_RELAXED) & FUTEX_TID_MASK) ==
        moirai__lock_tid())
        return -EDEADLK;
    raise_to(mutex, &saved, &raised);
    rt_tsan_pre_lock(mutex, RT_TSAN_TRY);
    int rc = moirai__pi_lock(&mutex->priv_lock, UINT64_MAX, try_only);
    rt_tsan_post_lock(mutex, rc == 0 ? RT_TSAN_TRY : RT_TSAN_TRY | RT_TSAN_TRY_FAIL);
    if (rc) {
        restore(saved, raised);
        return rc;
    }
    mutex->priv_saved = saved;
    mutex->priv_raised = raised;
    return 0;
}

int moirai_rt_ceiling_mutex_lock(moirai_rt_ceiling_mutex_t *mutex)
{
    return ceiling_lock(mutex, false);
}

int moirai_rt_ceiling_mutex_try_lock(moirai_rt_ceiling_mutex_t *mutex)
{
    return ceiling_lock(mutex, true);
}

int moirai_rt_ceiling_mutex_unlock(moirai_rt_ceiling_mutex_t *mutex)
{
    if (!mutex)
        return -EINVAL;
    if ((__atomic_load_n(&mutex->priv_lock.priv_word, __ATOMIC_RELAXED) & FUTEX_TID_MASK) !=
        moirai__lock_tid())
        return -EPERM;
    int saved = mutex->priv_saved, raised = mutex->priv_raised;
    rt_tsan_pre_unlock(mutex);
    int rc = moirai__pi_unlock(&mutex->priv_lock);
    rt_tsan_post_unlock(mutex);
    /* Drop the priority only after the lock is free, so no waiter at the
     * ceiling can preempt us while we still hold it. */
    if (rc == 0)
        restore(saved, raised);
    return rc;
}
