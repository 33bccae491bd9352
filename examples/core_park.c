/* Example: a start gate and a countdown latch built on the parking layer.
 *
 * Workers on moirai-core's thread executor park on a "gate" word until the
 * main thread opens it, do their share of the work, and count a "latch"
 * word down; the last one wakes the main thread, which parks on the latch
 * until it reaches zero. Nobody spins for long and no wake-up is lost:
 * moirai_park() only sleeps while the word still holds the value the
 * caller saw.
 *
 * Build: cc core_park.c $(pkg-config --cflags --libs moirai-core) */
#include <moirai/core.h>

#include <stdio.h>

#define WORKERS 4
#define WORK    100000

typedef struct shared {
    _Atomic uint32_t gate;  /* 0 closed, 1 open */
    _Atomic uint32_t latch; /* workers still running */
    _Atomic uint64_t done;  /* units of work done, by all workers */
} shared_t;

static int worker(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    shared_t *s = arg;

    /* Wait for the gate. Acquire pairs with the opener's release store. */
    while (atomic_load_explicit(&s->gate, memory_order_acquire) == 0)
        moirai_park(&s->gate, 0, MOIRAI_DEADLINE_NEVER);

    for (int i = 0; i < WORK; i++)
        atomic_fetch_add_explicit(&s->done, 1, memory_order_relaxed);

    /* Count down; release publishes this worker's work to the waiter, and
     * the worker that reaches zero wakes it. */
    if (atomic_fetch_sub_explicit(&s->latch, 1, memory_order_release) == 1)
        moirai_unpark_all(&s->latch);
    return 0;
}

int main(void)
{
    static shared_t s;
    atomic_init(&s.gate, 0);
    atomic_init(&s.latch, WORKERS);
    atomic_init(&s.done, 0);

    moirai_executor_t *ex;
    int err = moirai_executor_thread_create(&ex);
    if (err) {
        fprintf(stderr, "executor: %s\n", moirai_strerror(err));
        return 1;
    }
    for (int i = 0; i < WORKERS; i++) {
        /* No handle: the latch reports completion. */
        if ((err = moirai_executor_spawn(ex, worker, &s, NULL, NULL)) != 0) {
            fprintf(stderr, "spawn: %s\n", moirai_strerror(err));
            return 1;
        }
    }

    atomic_store_explicit(&s.gate, 1, memory_order_release);
    int woken = moirai_unpark_all(&s.gate);
    printf("gate opened, %d worker(s) were parked on it\n", woken);

    /* Wait for the latch; acquire pairs with the workers' release. */
    uint32_t left;
    while ((left = atomic_load_explicit(&s.latch, memory_order_acquire)) != 0)
        moirai_park(&s.latch, left, MOIRAI_DEADLINE_NEVER);

    uint64_t done = atomic_load_explicit(&s.done, memory_order_relaxed);
    printf("%d workers did %llu units of work (expected %llu)\n", WORKERS, (unsigned long long)done,
           (unsigned long long)WORKERS * WORK);

    moirai_executor_thread_destroy(ex);
    return done == (uint64_t)WORKERS * WORK ? 0 : 1;
}
