/* moirai-sync: waiting for a group of threads with a wait group.
 *
 * The main thread adds one to the group per worker before starting it;
 * each worker fills its part of an array and calls moirai_waitgroup_done();
 * moirai_waitgroup_wait() returns once the count is back to zero, and
 * everything the workers wrote before done() is visible after it (release
 * on done, acquire on wait). The group is reusable once at zero; a done()
 * too many is refused with -EINVAL. Exits non-zero if a part is missing. */
#include <moirai/core.h>
#include <moirai/sync.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

enum { WORKERS = 4, PART = 100000 };

static moirai_waitgroup_t group = MOIRAI_WAITGROUP_INIT;
static uint64_t squares[WORKERS * PART];

static void *worker(void *arg)
{
    size_t first = (size_t)(uintptr_t)arg * PART;
    for (size_t i = first; i < first + PART; i++)
        squares[i] = (uint64_t)i * i;
    moirai_waitgroup_done(&group);
    return NULL;
}

/* Runs one round: WORKERS threads, one wait. Returns the wrong entries. */
static size_t round_of_work(void)
{
    pthread_t threads[WORKERS];
    for (uintptr_t i = 0; i < WORKERS; i++)
        squares[i * PART] = 1; /* wrong unless the worker ran */
    for (uintptr_t i = 0; i < WORKERS; i++) {
        /* Add before starting the thread, so wait() cannot see zero early. */
        moirai_waitgroup_add(&group, 1);
        if (pthread_create(&threads[i], NULL, worker, (void *)i) != 0) {
            moirai_waitgroup_done(&group);
            return 1;
        }
    }
    moirai_waitgroup_wait(&group);
    /* Read before joining the threads: the wait alone orders their writes
     * before this point. */
    size_t wrong = 0;
    for (size_t i = 0; i < WORKERS * PART; i++)
        wrong += squares[i] != (uint64_t)i * i;
    for (int i = 0; i < WORKERS; i++)
        pthread_join(threads[i], NULL);
    return wrong;
}

int main(void)
{
    size_t wrong = round_of_work();
    wrong += round_of_work(); /* the same group, reused at zero */
    int extra = moirai_waitgroup_done(&group);
    printf("wait group: %d workers x 2 rounds, %zu wrong entries, count %u, "
           "extra done(): %s\n",
           WORKERS, wrong, moirai_waitgroup_count(&group), moirai_strerror(extra));
    return wrong == 0 && moirai_waitgroup_count(&group) == 0 && extra == -EINVAL ? 0 : 1;
}
