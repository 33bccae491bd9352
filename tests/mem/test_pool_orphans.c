/* The orphan list under contention: several threads release objects at
 * once while every allocation fails, so that no release can get a thread
 * cache or a magazine and each object goes to the orphan list. Two
 * releases that push at the same moment must both land there; one lost
 * push is an object the bounded pool can never hand out again, which the
 * exact capacity check below sees.
 *
 * The single-threaded oom_release_loses_nothing in test_pool.c covers the
 * paths into the list; this test covers concurrent pushes onto it. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <criterion/criterion.h>

#include <moirai/core/alloc.h>
#include <moirai/mem/pool.h>

#include "oom.h"
#include "ptr_distinct.h"
#include "test_scale.h"

enum { RELEASERS = 4 };

typedef struct releaser {
    moirai_pool_t *pool;
    void **objs;
    long n;
    pthread_barrier_t *start;
} releaser_t;

static void *release_all(void *p)
{
    releaser_t *r = p;
    /* Every releaser starts at once, so that their pushes overlap. */
    pthread_barrier_wait(r->start);
    for (long i = 0; i < r->n; i++)
        moirai_pool_free(r->pool, r->objs[i]);
    return NULL;
}

Test(pool_orphans, concurrent_releases_without_memory_lose_no_object, .timeout = 120)
{
    const long per = scaled(20000);
    const long cap = per * RELEASERS;
    const int rounds = 20;
    void **objs = calloc((size_t)cap, sizeof(*objs));
    void **again = calloc((size_t)cap, sizeof(*again));
    cr_assert(objs != NULL && again != NULL);

    for (int round = 0; round < rounds; round++) {
        moirai_pool_config_t cfg;
        moirai_pool_config_init(&cfg, 32);
        cfg.capacity = (size_t)cap;
        moirai_pool_t *pool = NULL;
        cr_assert_eq(moirai_pool_create(&pool, &cfg), 0);
        for (long i = 0; i < cap; i++)
            cr_assert_eq(moirai_pool_alloc(pool, &objs[i]), 0);

        pthread_barrier_t start;
        cr_assert_eq(pthread_barrier_init(&start, NULL, RELEASERS + 1), 0);
        pthread_t th[RELEASERS];
        releaser_t r[RELEASERS];
        for (int t = 0; t < RELEASERS; t++) {
            r[t] = (releaser_t){pool, objs + t * per, per, &start};
            cr_assert_eq(pthread_create(&th[t], NULL, release_all, &r[t]), 0);
        }
        /* A quiet point: the releasers wait at the barrier, outside
         * Moirai. From here on no release can allocate a cache. */
        moirai_test_oom_install();
        moirai_test_oom_fail_all();
        pthread_barrier_wait(&start);
        for (int t = 0; t < RELEASERS; t++)
            pthread_join(th[t], NULL);
        moirai_test_oom_uninstall();
        pthread_barrier_destroy(&start);

        moirai_pool_stats_t s;
        cr_assert_eq(moirai_pool_stats(pool, &s), 0);
        cr_assert_eq(s.frees, (uint64_t)cap);
        cr_assert_eq(s.in_use, 0);

        /* The capacity is exact: every released object can be had again,
         * all `cap` of them, distinct, and not one more. */
        for (long i = 0; i < cap; i++)
            cr_assert_eq(moirai_pool_alloc(pool, &again[i]), 0,
                         "round %d: object %ld of %ld was lost by a release", round, i, cap);
        void *extra;
        cr_assert_eq(moirai_pool_alloc(pool, &extra), -ENOMEM);
        cr_assert(all_distinct(again, (size_t)cap), "an object was handed out twice");
        for (long i = 0; i < cap; i++)
            moirai_pool_free(pool, again[i]);
        moirai_pool_destroy(pool);
    }
    free(objs);
    free(again);
}
