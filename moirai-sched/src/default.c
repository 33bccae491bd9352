/* The process's default scheduler: what a NULL scheduler means outside a
 * worker (sched.h, "NULL scheduler"). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "sched_internal.h"

/* Created once, on first use, and never destroyed: it lives as long as the
 * process, as Rayon's global pool and TBB's default arena do. */
static _Atomic(moirai_sched_t *) default_sched;
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;

int moirai_sched_default(moirai_sched_t **out)
{
    if (out == NULL)
        return -EINVAL;
    /* Acquire: pairs with the release below, so the scheduler's contents
     * are visible to a caller that finds it made. */
    moirai_sched_t *s = atomic_load_explicit(&default_sched, memory_order_acquire);
    if (__builtin_expect(s != NULL, 1)) {
        *out = s;
        return 0;
    }
    pthread_mutex_lock(&default_lock);
    /* Relaxed under the lock: whoever stored it held the lock too. */
    s = atomic_load_explicit(&default_sched, memory_order_relaxed);
    int rc = 0;
    if (s == NULL) {
        rc = moirai_sched_create(&s, NULL);
        if (rc == 0)
            atomic_store_explicit(&default_sched, s, memory_order_release);
    }
    pthread_mutex_unlock(&default_lock);
    if (rc == 0)
        *out = s;
    return rc;
}

bool moirai__sched_is_default(const moirai_sched_t *s)
{
    /* Relaxed: only compares an address that, once set, never changes. */
    return s != NULL && s == atomic_load_explicit(&default_sched, memory_order_relaxed);
}

int moirai__sched_resolve(moirai_sched_t *sched, moirai_sched_t **out)
{
    if (sched == NULL)
        sched = moirai_sched_current();
    if (sched == NULL)
        return moirai_sched_default(out);
    *out = sched;
    return 0;
}
