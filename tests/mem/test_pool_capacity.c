/* A bounded pool's capacity means "objects in use": objects released on
 * other threads, still sitting in those threads' caches, are taken back
 * before an allocation fails. A capacity-bounded pipeline (capacity =
 * items in flight, released on other threads than the allocating one)
 * must never see -ENOMEM; a pool whose objects really are all in use
 * still refuses; out of memory still reports -ENOMEM. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <moirai/mem/pool.h>

#include "oom.h"

static moirai_pool_t *bounded_pool(size_t capacity)
{
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, 48);
    cfg.capacity = capacity;
    moirai_pool_t *pool = NULL;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), 0);
    return pool;
}

/* ---- objects cached by a live, idle thread ---- */

typedef struct idle_arg {
    moirai_pool_t *pool;
    size_t n;
    pthread_barrier_t *cached, *finish;
} idle_arg_t;

static void *cache_then_idle(void *p)
{
    idle_arg_t *a = p;
    void *objs[64];
    for (size_t i = 0; i < a->n; i++)
        cr_assert_eq(moirai_pool_alloc(a->pool, &objs[i]), 0);
    for (size_t i = 0; i < a->n; i++)
        moirai_pool_free(a->pool, objs[i]); /* into this thread's cache */
    pthread_barrier_wait(a->cached);
    pthread_barrier_wait(a->finish); /* alive and idle meanwhile */
    return NULL;
}

Test(pool_capacity, objects_cached_by_an_idle_thread_are_taken_back, .timeout = 30)
{
    enum { CAP = 40 };
    moirai_pool_t *pool = bounded_pool(CAP);
    pthread_barrier_t cached, finish;
    pthread_barrier_init(&cached, NULL, 2);
    pthread_barrier_init(&finish, NULL, 2);
    idle_arg_t a = {pool, CAP, &cached, &finish};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, cache_then_idle, &a), 0);
    pthread_barrier_wait(&cached);

    /* All CAP objects sit free in the other thread's cache: every one of
     * them can be allocated here, and then the pool is really full. */
    void *objs[CAP];
    for (int i = 0; i < CAP; i++)
        cr_assert_eq(moirai_pool_alloc(pool, &objs[i]), 0, "allocation %d of %d", i, CAP);
    void *extra = (void *)0x1;
    cr_assert_eq(moirai_pool_alloc(pool, &extra), -ENOMEM);
    cr_assert_eq(extra, (void *)0x1, "untouched on error");
    moirai_pool_stats_t s;
    cr_assert_eq(moirai_pool_stats(pool, &s), 0);
    cr_assert_eq(s.objects, CAP, "no object beyond the capacity");
    cr_assert_eq(s.in_use, CAP);

    pthread_barrier_wait(&finish);
    pthread_join(th, NULL);
    for (int i = 0; i < CAP; i++)
        moirai_pool_free(pool, objs[i]);
    pthread_barrier_destroy(&cached);
    pthread_barrier_destroy(&finish);
    moirai_pool_destroy(pool);
}

/* ---- the pipeline ---- */

enum { IN_FLIGHT = 16, ITEMS = 2000, STAGE_THREADS = 2, RUNS = 100 };

/* Room for every item in flight and the stop marks. */
#define CHAN_SLOTS (IN_FLIGHT + STAGE_THREADS)

/* A bounded queue of pointers under a mutex, between pipeline stages. */
typedef struct chan {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    void *slots[CHAN_SLOTS];
    size_t head, len;
} chan_t;

static void chan_init(chan_t *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
}

static void chan_destroy(chan_t *c)
{
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
}

static void chan_put(chan_t *c, void *p)
{
    pthread_mutex_lock(&c->lock);
    cr_assert_lt(c->len, CHAN_SLOTS);
    c->slots[(c->head + c->len++) % (CHAN_SLOTS)] = p;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void *chan_get(chan_t *c)
{
    pthread_mutex_lock(&c->lock);
    while (c->len == 0)
        pthread_cond_wait(&c->cond, &c->lock);
    void *p = c->slots[c->head];
    c->head = (c->head + 1) % (CHAN_SLOTS);
    c->len--;
    pthread_mutex_unlock(&c->lock);
    return p;
}

typedef struct pipeline {
    moirai_pool_t *pool;
    sem_t room;        /* items that may still be put in flight */
    chan_t to_stage;   /* source -> stage threads */
    atomic_long sum;   /* what the stages saw */
    atomic_long freed; /* items released by the stages */
} pipeline_t;

/* A stage: reads each item, releases it on this thread (not the one that
 * allocated it), and gives its slot back to the source. NULL stops it. */
static void *stage(void *p)
{
    pipeline_t *pl = p;
    for (;;) {
        long *item = chan_get(&pl->to_stage);
        if (item == NULL)
            return NULL;
        atomic_fetch_add(&pl->sum, *item);
        moirai_pool_free(pl->pool, item);
        atomic_fetch_add(&pl->freed, 1);
        sem_post(&pl->room);
    }
}

/* One run: the source allocates ITEMS items, at most IN_FLIGHT at a time,
 * from a pool of exactly IN_FLIGHT objects. Returns the first allocation
 * error, or 0. */
static int run_pipeline(void)
{
    pipeline_t pl;
    pl.pool = bounded_pool(IN_FLIGHT);
    sem_init(&pl.room, 0, IN_FLIGHT);
    chan_init(&pl.to_stage);
    atomic_init(&pl.sum, 0);
    atomic_init(&pl.freed, 0);
    pthread_t th[STAGE_THREADS];
    for (int i = 0; i < STAGE_THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, stage, &pl), 0);
    int rc = 0;
    long produced = 0;
    for (long i = 1; i <= ITEMS; i++) {
        while (sem_wait(&pl.room) != 0)
            ;
        /* The item released before sem_post() happened before this
         * allocation: the capacity has room for it. */
        long *item;
        rc = moirai_pool_alloc(pl.pool, (void **)&item);
        if (rc != 0)
            break;
        *item = i;
        produced += i;
        chan_put(&pl.to_stage, item);
    }
    for (int i = 0; i < STAGE_THREADS; i++)
        chan_put(&pl.to_stage, NULL);
    for (int i = 0; i < STAGE_THREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&pl.sum), produced, "every item seen exactly once");
    moirai_pool_stats_t s;
    cr_assert_eq(moirai_pool_stats(pl.pool, &s), 0);
    cr_assert_leq(s.objects, IN_FLIGHT);
    cr_assert_eq(s.in_use, 0);
    chan_destroy(&pl.to_stage);
    sem_destroy(&pl.room);
    moirai_pool_destroy(pl.pool);
    return rc;
}

Test(pool_capacity, bounded_pipeline_never_runs_out, .timeout = 240)
{
    for (int run = 0; run < RUNS; run++) {
        int rc = run_pipeline();
        cr_assert_eq(rc, 0, "run %d: allocation failed with %d", run, rc);
    }
}

/* ---- errors ---- */

Test(pool_capacity, out_of_memory_is_still_reported, .timeout = 30)
{
    moirai_pool_t *pool = bounded_pool(8);
    void *obj = (void *)0x1;
    moirai_test_oom_install();
    moirai_test_oom_fail_at(0);
    int rc = moirai_pool_alloc(pool, &obj);
    moirai_test_oom_fail_at(-1);
    moirai_test_oom_uninstall();
    cr_assert_eq(rc, -ENOMEM);
    cr_assert_eq(obj, (void *)0x1);
    cr_assert_eq(moirai_pool_alloc(pool, &obj), 0);
    moirai_pool_free(pool, obj);
    cr_assert_eq(moirai_pool_alloc(NULL, &obj), -EINVAL);
    cr_assert_eq(moirai_pool_alloc(pool, NULL), -EINVAL);
    moirai_pool_destroy(pool);
}
