/* Stress: 100 000 fibers on 2 workers through one mutex, one condvar and
 * one semaphore; every fiber runs exactly once, the counter is exact,
 * mutual exclusion and the semaphore's bound hold. Sizes come from the
 * environment (MOIRAI_ASYNC_STRESS_FIBERS, MOIRAI_TEST_SCALE under
 * sanitizers). */
#include "async_test_util.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "test_scale.h"

#define PERMITS 16

struct shared {
    moirai_mutex_t lock;
    moirai_condvar_t cv;
    moirai_semaphore_t sem;
    long counter; /* under lock */
    int in_lock;  /* under lock: must be 1 inside */
    _Atomic int in_sem;
    _Atomic int max_in_sem;
    _Atomic int broken;
    unsigned char *ran;
};

struct job {
    struct shared *s;
    long index;
};

static int worker_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct job *j = arg;
    struct shared *s = j->s;
    moirai_semaphore_wait(&s->sem);
    int inside = atomic_fetch_add(&s->in_sem, 1) + 1;
    int seen = atomic_load(&s->max_in_sem);
    while (inside > seen && !atomic_compare_exchange_weak(&s->max_in_sem, &seen, inside)) {
    }
    moirai_mutex_lock(&s->lock);
    if (++s->in_lock != 1)
        atomic_store(&s->broken, 1);
    long v = s->counter;
    if (j->index % 7 == 0)
        moirai_fiber_yield(); /* make the lock contended for real */
    s->counter = v + 1;
    s->ran[j->index]++;
    s->in_lock--;
    moirai_condvar_broadcast(&s->cv);
    moirai_mutex_unlock(&s->lock);
    atomic_fetch_sub(&s->in_sem, 1);
    moirai_semaphore_post(&s->sem);
    return 0;
}

struct watch {
    struct shared *s;
    long target;
};

static int watcher_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct watch *w = arg;
    moirai_mutex_lock(&w->s->lock);
    while (w->s->counter < w->target)
        moirai_condvar_wait(&w->s->cv, &w->s->lock);
    moirai_mutex_unlock(&w->s->lock);
    return 0;
}

Test(fiber_stress, mutex_condvar_semaphore_exact, .timeout = 600)
{
    long total = scaled(env_long("MOIRAI_ASYNC_STRESS_FIBERS", 100000));
    long batch = total < 10000 ? total : 10000;
    moirai_runtime_t *rt = make_runtime(2);
    struct shared s = {0};
    moirai_mutex_init(&s.lock);
    moirai_condvar_init(&s.cv);
    moirai_semaphore_init(&s.sem, PERMITS);
    s.ran = calloc((size_t)total, 1);
    struct job *jobs = calloc((size_t)batch, sizeof(*jobs));
    moirai_handle_t **hs = calloc((size_t)batch, sizeof(*hs));
    cr_assert(s.ran != NULL && jobs != NULL && hs != NULL);
    for (long base = 0; base < total; base += batch) {
        long n = total - base < batch ? total - base : batch;
        struct watch w = {&s, base + n};
        moirai_handle_t *wh = spawn_with_handle(rt, watcher_fiber, &w, NULL);
        for (long i = 0; i < n; i++) {
            jobs[i] = (struct job){&s, base + i};
            hs[i] = spawn_with_handle(rt, worker_fiber, &jobs[i], NULL);
        }
        for (long i = 0; i < n; i++)
            cr_assert_eq(join_and_release(hs[i], NULL), 0);
        cr_assert_eq(join_and_release(wh, NULL), 0);
    }
    cr_assert_eq(s.counter, total);
    cr_assert_eq(atomic_load(&s.broken), 0, "two fibers held the mutex at once");
    cr_assert_leq(atomic_load(&s.max_in_sem), PERMITS);
    cr_assert_eq(moirai_semaphore_value(&s.sem), PERMITS);
    for (long i = 0; i < total; i++)
        cr_assert_eq(s.ran[i], 1, "fiber %ld ran %d times", i, s.ran[i]);
    moirai_runtime_stats_t st = idle_stats(rt);
    cr_assert_eq(st.fibers_alive, 0);
    cr_assert_geq(st.fibers_spawned, (uint64_t)total);
    drop_runtime(rt);
    free(s.ran);
    free(jobs);
    free(hs);
}
