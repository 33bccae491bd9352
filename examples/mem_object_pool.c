/* moirai-mem: an object pool for fixed-size objects, shared by threads.
 *
 * A pool of `message_t` capped at 256 objects: two threads each allocate
 * and release messages in a loop, and the per-thread caches serve almost
 * every allocation without touching shared state. Then the cap is shown:
 * with every object taken, one more allocation fails with -ENOMEM and
 * changes nothing. Exits non-zero if the counters or the cap disagree
 * with what happened. */
#include <moirai/core.h>
#include <moirai/mem.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

enum { CAPACITY = 256, ROUNDS = 100000, THREADS = 2 };

typedef struct message {
    uint64_t id;
    char text[48];
} message_t;

static moirai_pool_t *pool;

static void *churn(void *arg)
{
    uintptr_t failures = 0;
    for (uint64_t i = 0; i < ROUNDS; i++) {
        message_t *m;
        if (moirai_pool_alloc(pool, (void **)&m) != 0) {
            failures++;
            continue;
        }
        m->id = i;
        snprintf(m->text, sizeof(m->text), "message %llu", (unsigned long long)i);
        moirai_pool_free(pool, m);
    }
    /* Hand this thread's cached objects back, so main can take them all. */
    moirai_pool_flush(pool);
    (void)arg;
    return (void *)failures;
}

int main(void)
{
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, sizeof(message_t));
    cfg.capacity = CAPACITY;
    cfg.name = "messages";
    int rc = moirai_pool_create(&pool, &cfg);
    if (rc != 0) {
        fprintf(stderr, "moirai_pool_create: %s\n", moirai_strerror(rc));
        return 1;
    }

    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&threads[i], NULL, churn, NULL) != 0)
            return 1;
    uintptr_t failures = 0;
    for (int i = 0; i < THREADS; i++) {
        void *f;
        pthread_join(threads[i], &f);
        failures += (uintptr_t)f;
    }

    /* Take every object the cap allows, then one more. */
    static message_t *all[CAPACITY];
    size_t taken = 0;
    while (taken < CAPACITY && moirai_pool_alloc(pool, (void **)&all[taken]) == 0)
        taken++;
    message_t *extra = NULL;
    int over = moirai_pool_alloc(pool, (void **)&extra);
    for (size_t i = 0; i < taken; i++)
        moirai_pool_free(pool, all[i]);

    moirai_pool_stats_t st;
    moirai_pool_stats(pool, &st);
    printf("object pool: %llu allocations, %llu from the thread cache, %llu objects created "
           "(cap %d), %zu taken at once, one more: %s\n",
           (unsigned long long)st.allocations, (unsigned long long)st.cache_hits,
           (unsigned long long)st.objects, CAPACITY, taken, moirai_strerror(over));
    moirai_pool_destroy(pool);

    uint64_t expected = (uint64_t)THREADS * ROUNDS + CAPACITY;
    return failures == 0 && taken == CAPACITY && over == -ENOMEM && extra == NULL &&
                   st.allocations == expected && st.frees == expected && st.failures == 1 &&
                   st.objects <= CAPACITY
               ? 0
               : 1;
}
