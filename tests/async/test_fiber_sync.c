/* One blocking model: moirai-sync's primitives and core's handles, used
 * from fibers, suspend the fiber only; a fiber and a thread can wait on
 * the same primitive; nothing is lost or run twice. */
#include "async_test_util.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>

/* A fiber holds a mutex and yields while other fibers on the same single
 * worker block on it: if a blocked fiber blocked the worker, the holder
 * could never run again to unlock (deadlock, caught by the timeout). */
struct contended {
    moirai_mutex_t lock;
    long counter;
    int rounds;
    int fibers;
    bool gathered;      /* under lock */
    _Atomic int trying; /* fibers inside moirai_mutex_lock */
};

static int lock_and_yield(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct contended *c = arg;
    for (int i = 0; i < c->rounds; i++) {
        atomic_fetch_add(&c->trying, 1);
        moirai_mutex_lock(&c->lock);
        atomic_fetch_sub(&c->trying, 1);
        /* The first holder waits, yielding, until every other fiber is
         * blocked on the lock: only possible if blocking parks a fiber and
         * leaves the worker free. */
        while (!c->gathered && atomic_load(&c->trying) < c->fibers - 1)
            moirai_fiber_yield();
        c->gathered = true;
        long v = c->counter;
        moirai_fiber_yield(); /* others run, and block on the lock */
        c->counter = v + 1;
        moirai_mutex_unlock(&c->lock);
    }
    return 0;
}

Test(fiber_sync, mutex_waiters_on_one_worker_make_progress, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(1);
    struct contended c = {.rounds = 50, .fibers = 20};
    moirai_mutex_init(&c.lock);
    moirai_handle_t *hs[20];
    for (int i = 0; i < 20; i++)
        hs[i] = spawn_with_handle(rt, lock_and_yield, &c, NULL);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(join_and_release(hs[i], NULL), 0);
    cr_assert_eq(c.counter, 20L * 50);
    moirai_runtime_stats_t st = idle_stats(rt);
    cr_assert_geq(st.parks, 19, "every other fiber must have parked on the lock");
    drop_runtime(rt);
}

/* Ping-pong through a condvar between two fibers on two workers. */
struct pingpong {
    moirai_mutex_t lock;
    moirai_condvar_t cv;
    int turn; /* 0: ping's, 1: pong's */
    int rounds;
    int ping_count, pong_count;
};

static int ping(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct pingpong *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        moirai_mutex_lock(&p->lock);
        while (p->turn != 0)
            moirai_condvar_wait(&p->cv, &p->lock);
        p->ping_count++;
        p->turn = 1;
        moirai_condvar_broadcast(&p->cv);
        moirai_mutex_unlock(&p->lock);
    }
    return 0;
}

static int pong(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct pingpong *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        moirai_mutex_lock(&p->lock);
        while (p->turn != 1)
            moirai_condvar_wait(&p->cv, &p->lock);
        if (p->pong_count != p->ping_count - 1) {
            moirai_mutex_unlock(&p->lock);
            return -EFAULT;
        }
        p->pong_count++;
        p->turn = 0;
        moirai_condvar_broadcast(&p->cv);
        moirai_mutex_unlock(&p->lock);
    }
    return 0;
}

Test(fiber_sync, condvar_ping_pong_across_workers, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct pingpong p = {.rounds = 2000};
    moirai_mutex_init(&p.lock);
    moirai_condvar_init(&p.cv);
    moirai_handle_t *a = spawn_with_handle(rt, ping, &p, NULL);
    moirai_handle_t *b = spawn_with_handle(rt, pong, &p, NULL);
    cr_assert_eq(join_and_release(a, NULL), 0);
    cr_assert_eq(join_and_release(b, NULL), 0);
    cr_assert_eq(p.ping_count, 2000);
    cr_assert_eq(p.pong_count, 2000);
    drop_runtime(rt);
}

/* A thread and fibers wait on one semaphore: posts reach both kinds. */
struct shared_sem {
    moirai_semaphore_t sem;
    _Atomic int taken;
};

static int take_one(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct shared_sem *s = arg;
    moirai_semaphore_wait(&s->sem);
    atomic_fetch_add(&s->taken, 1);
    return 0;
}

static void *thread_take(void *arg)
{
    struct shared_sem *s = arg;
    moirai_semaphore_wait(&s->sem);
    atomic_fetch_add(&s->taken, 1);
    return NULL;
}

Test(fiber_sync, semaphore_serves_threads_and_fibers, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct shared_sem s;
    moirai_semaphore_init(&s.sem, 0);
    atomic_init(&s.taken, 0);
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&threads[i], NULL, thread_take, &s), 0);
    moirai_handle_t *hs[50];
    for (int i = 0; i < 50; i++)
        hs[i] = spawn_with_handle(rt, take_one, &s, NULL);
    for (int i = 0; i < 52; i++)
        moirai_semaphore_post(&s.sem);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(join_and_release(hs[i], NULL), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    cr_assert_eq(atomic_load(&s.taken), 52);
    cr_assert_eq(moirai_semaphore_value(&s.sem), 0);
    drop_runtime(rt);
}

/* Wait groups and timed waits from fibers: a timeout is reported, then the
 * real completion. */
struct wg_user {
    moirai_waitgroup_t wg;
    moirai_event_t timed_out; /* set once the timed wait has returned */
};

static int waitgroup_user(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct wg_user *u = arg;
    int rc = moirai_waitgroup_wait_timed(&u->wg, moirai_deadline_after(5 * MOIRAI_NS_PER_MS));
    moirai_event_set(&u->timed_out);
    if (rc != -ETIMEDOUT)
        return -EFAULT;
    moirai_waitgroup_wait(&u->wg);
    return 0;
}

Test(fiber_sync, waitgroup_timeout_then_completion, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct wg_user u;
    moirai_waitgroup_init(&u.wg);
    moirai_event_init(&u.timed_out, MOIRAI_EVENT_MANUAL, false);
    cr_assert_eq(moirai_waitgroup_add(&u.wg, 1), 0);
    moirai_handle_t *h = spawn_with_handle(rt, waitgroup_user, &u, NULL);
    /* The count drops only after the fiber's timed wait has returned, so
     * the timeout cannot be pre-empted by the completion. */
    moirai_event_wait(&u.timed_out);
    moirai_waitgroup_done(&u.wg);
    cr_assert_eq(join_and_release(h, NULL), 0);
    drop_runtime(rt);
}

/* Handles: a fiber joins a fiber that waits for a thread's signal, on a
 * single worker: the joiner parks, the worker stays free. */
static int wait_event(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    moirai_event_wait(arg);
    *result = (void *)42;
    return 0;
}

struct joiner_arg {
    moirai_runtime_t *rt;
    moirai_event_t *event;
};

static int join_child(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    struct joiner_arg *j = arg;
    moirai_handle_t *h = NULL;
    if (moirai_handle_create(&h) != 0)
        return -ENOMEM;
    int rc = moirai_fiber_spawn(j->rt, wait_event, j->event, NULL, h);
    if (rc == 0)
        rc = moirai_handle_join(h, result);
    moirai_handle_release(h);
    return rc;
}

static int set_event(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    moirai_event_set(arg);
    return 0;
}

Test(fiber_sync, join_on_one_worker_completes, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_event_t e;
    moirai_event_init(&e, MOIRAI_EVENT_MANUAL, false);
    struct joiner_arg j = {rt, &e};
    moirai_handle_t *h = spawn_with_handle(rt, join_child, &j, NULL);
    /* The event is set by a third fiber on the same worker, so the worker
     * must be free while the joiner and the child wait. */
    moirai_handle_t *s = spawn_with_handle(rt, set_event, &e, NULL);
    void *v = NULL;
    cr_assert_eq(join_and_release(h, &v), 0);
    cr_assert_eq(v, (void *)42);
    cr_assert_eq(join_and_release(s, NULL), 0);
    drop_runtime(rt);
}

/* Scheduler joins from a fiber: moirai_join treats the fiber as an outside
 * caller and parks it while a worker runs the other half. */
typedef struct fib {
    int n;
    long r;
} fib_t;

static void fib(void *arg)
{
    fib_t *f = arg;
    if (f->n < 2) {
        f->r = f->n;
        return;
    }
    fib_t a = {f->n - 1, 0}, b = {f->n - 2, 0};
    moirai_join(NULL, fib, &a, fib, &b);
    f->r = a.r + b.r;
}

static int fiber_fork_join(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    moirai_runtime_t *rt = arg;
    fib_t a = {18, 0}, b = {17, 0};
    moirai_join(moirai_runtime_sched(rt), fib, &a, fib, &b);
    *result = (void *)(a.r + b.r);
    return 0;
}

Test(fiber_sync, fork_join_from_a_fiber, .timeout = 60)
{
    for (int workers = 1; workers <= 2; workers++) {
        moirai_runtime_t *rt = make_runtime(workers);
        void *v = NULL;
        cr_assert_eq(run_fiber(rt, fiber_fork_join, rt, &v), 0);
        cr_assert_eq((long)v, 4181L, "fib(19) on %d workers", workers);
        drop_runtime(rt);
    }
}
