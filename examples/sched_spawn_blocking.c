/* moirai-sched: blocking calls off the workers with spawn_blocking.
 *
 * A task that blocks (a sleep here; a read(), a lock held long, a DNS
 * lookup in real code) would hold a worker and starve the tasks behind
 * it. moirai_sched_spawn_blocking() runs it on the scheduler's separate,
 * growable pool of blocking threads instead, so the workers keep running
 * compute tasks meanwhile. Exits non-zero if a blocking task ran on a
 * worker, or if the compute tasks did not all finish while the blocking
 * ones were still asleep. */
#include <moirai/core.h>
#include <moirai/sched.h>

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

enum { BLOCKING = 4, COMPUTE = 64 };

static atomic_int on_worker, compute_done;
/* How many compute tasks had finished when each blocking task woke up. */
static atomic_int compute_done_at_wakeup[BLOCKING];

static int blocking_call(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel, (void)result;
    if (moirai_sched_worker_index() >= 0)
        atomic_fetch_add(&on_worker, 1);
    /* Two seconds of sleep: far longer than the compute tasks need. */
    nanosleep(&(struct timespec){2, 0}, NULL);
    atomic_store(&compute_done_at_wakeup[(uintptr_t)arg], atomic_load(&compute_done));
    return 0;
}

static int compute(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg, (void)cancel, (void)result;
    volatile uint64_t x = 0;
    for (int i = 0; i < 100000; i++)
        x += (uint64_t)i * i;
    atomic_fetch_add(&compute_done, 1);
    return 0;
}

int main(void)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    moirai_sched_t *sched;
    if (moirai_sched_create(&sched, &cfg) != 0)
        return 1;

    moirai_handle_t *blocking[BLOCKING], *work[COMPUTE];
    for (uintptr_t i = 0; i < BLOCKING; i++)
        if (moirai_handle_create(&blocking[i]) != 0 ||
            moirai_sched_spawn_blocking(sched, blocking_call, (void *)i, NULL, blocking[i]) != 0)
            return 1;
    /* More blocking tasks than workers: had they run on the workers, no
     * compute task could start for two seconds. */
    for (int i = 0; i < COMPUTE; i++)
        if (moirai_handle_create(&work[i]) != 0 ||
            moirai_sched_spawn(sched, compute, NULL, NULL, work[i]) != 0)
            return 1;
    int failed = 0;
    for (int i = 0; i < COMPUTE; i++) {
        failed += moirai_handle_join(work[i], NULL) != 0;
        moirai_handle_release(work[i]);
    }
    int done_before = atomic_load(&compute_done);
    for (int i = 0; i < BLOCKING; i++) {
        failed += moirai_handle_join(blocking[i], NULL) != 0;
        moirai_handle_release(blocking[i]);
    }
    moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN);

    int all_before = 1;
    for (int i = 0; i < BLOCKING; i++)
        all_before &= atomic_load(&compute_done_at_wakeup[i]) == COMPUTE;
    printf("spawn_blocking: %d compute tasks finished while %d blocking tasks slept; "
           "%d blocking task(s) ran on a worker\n",
           done_before, BLOCKING, atomic_load(&on_worker));
    return failed == 0 && done_before == COMPUTE && all_before && atomic_load(&on_worker) == 0 ? 0
                                                                                               : 1;
}
