/* moirai-sched: spawning tasks and collecting their results with handles.
 *
 * Each task counts the primes below its own bound and returns the count as
 * its result; the spawner keeps a handle per task and joins them (the join
 * parks the main thread until that task finished). A task that fails
 * returns a negative errno, which its handle's join returns. Exits
 * non-zero if a count or the error is not what it must be. */
#include <moirai/core.h>
#include <moirai/sched.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>

enum { TASKS = 6 };

static int count_primes(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    uintptr_t below = (uintptr_t)arg, count = 0;
    for (uintptr_t n = 2; n < below; n++) {
        /* A long task polls its token, so cancelling its handle can stop it. */
        if (cancel && (n & 1023) == 0 && moirai_cancel_token_is_cancelled(cancel))
            return -ECANCELED;
        uintptr_t d = 2;
        while (d * d <= n && n % d != 0)
            d++;
        count += d * d > n;
    }
    *result = (void *)count;
    return 0;
}

static int refuse(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg, (void)cancel, (void)result;
    return -ERANGE;
}

int main(void)
{
    static const uintptr_t bounds[TASKS] = {10, 100, 1000, 10000, 100000, 200000};
    static const uintptr_t primes[TASKS] = {4, 25, 168, 1229, 9592, 17984};

    moirai_sched_t *sched;
    int rc = moirai_sched_create(&sched, NULL);
    if (rc != 0) {
        fprintf(stderr, "moirai_sched_create: %s\n", moirai_strerror(rc));
        return 1;
    }
    moirai_handle_t *handles[TASKS + 1] = {NULL};
    int bad = 0;
    for (int i = 0; i <= TASKS; i++) {
        if (moirai_handle_create(&handles[i]) != 0)
            return 1;
        rc = i < TASKS
                 ? moirai_sched_spawn(sched, count_primes, (void *)bounds[i], NULL, handles[i])
                 : moirai_sched_spawn(sched, refuse, NULL, NULL, handles[i]);
        if (rc != 0) {
            fprintf(stderr, "moirai_sched_spawn: %s\n", moirai_strerror(rc));
            return 1;
        }
    }
    for (int i = 0; i < TASKS; i++) {
        void *value;
        rc = moirai_handle_join(handles[i], &value);
        printf("task %llu: primes below %lu: %lu (%s)\n",
               (unsigned long long)moirai_handle_id(handles[i]), (unsigned long)bounds[i],
               (unsigned long)(uintptr_t)value, moirai_strerror(rc));
        bad += rc != 0 || (uintptr_t)value != primes[i];
    }
    void *value = (void *)1;
    rc = moirai_handle_join(handles[TASKS], &value);
    printf("the failing task's join: %s\n", moirai_strerror(rc));
    bad += rc != -ERANGE || value != NULL || !moirai_handle_is_finished(handles[TASKS]);

    for (int i = 0; i <= TASKS; i++)
        moirai_handle_release(handles[i]);
    moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN);
    return bad ? 1 : 0;
}
