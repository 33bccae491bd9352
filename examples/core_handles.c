/* Example: tasks with completion handles on moirai-core's thread executor.
 *
 * 1. Splits a sum over 1..N into chunks, spawns one task per chunk with a
 *    handle, and joins the handles to add up the partial sums.
 * 2. Waits for a slow task with a deadline (moirai_handle_join_timed) and
 *    gets -ETIMEDOUT while it is still running.
 * 3. Cancels a task: it sees its cancellation token and stops, and its
 *    joiner gets -ECANCELED.
 *
 * Build: cc core_handles.c $(pkg-config --cflags --libs moirai-core) */
#include <moirai/core.h>

#include <inttypes.h>
#include <stdio.h>

#define CHUNKS 8
#define N      UINT64_C(1000000)

typedef struct chunk {
    uint64_t first, last; /* inclusive */
    uint64_t sum;
} chunk_t;

static int sum_chunk(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    chunk_t *c = arg;
    c->sum = 0;
    for (uint64_t i = c->first; i <= c->last; i++)
        c->sum += i;
    /* The handle's completion publishes c->sum to whoever joins it. */
    *result = c;
    return 0;
}

/* A task that runs until it is released through `gate` or cancelled. It
 * naps on the gate word instead of spinning, so that a release wakes it at
 * once while cancellation is noticed within a millisecond. */
static int wait_for_gate(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    _Atomic uint32_t *gate = arg;
    (void)result;
    while (atomic_load_explicit(gate, memory_order_acquire) == 0) {
        if (moirai_cancel_token_is_cancelled(cancel))
            return MOIRAI_ECANCELED;
        moirai_park(gate, 0, moirai_deadline_after(MOIRAI_NS_PER_MS));
    }
    return 0;
}

int main(void)
{
    moirai_executor_t *ex;
    int err = moirai_executor_thread_create(&ex);
    if (err) {
        fprintf(stderr, "executor: %s\n", moirai_strerror(err));
        return 1;
    }
    int failures = 0;

    /* 1. Fan out, then join every handle. */
    chunk_t chunks[CHUNKS];
    moirai_handle_t *handles[CHUNKS] = {NULL};
    for (int i = 0; i < CHUNKS; i++) {
        chunks[i].first = N / CHUNKS * (uint64_t)i + 1;
        chunks[i].last = N / CHUNKS * (uint64_t)(i + 1);
        moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
        attr.name = "sum-chunk";
        if ((err = moirai_handle_create(&handles[i])) != 0 ||
            (err = moirai_executor_spawn(ex, sum_chunk, &chunks[i], &attr, handles[i])) != 0) {
            fprintf(stderr, "spawn %d: %s\n", i, moirai_strerror(err));
            return 1;
        }
    }
    uint64_t total = 0;
    for (int i = 0; i < CHUNKS; i++) {
        void *value = NULL;
        err = moirai_handle_join(handles[i], &value);
        if (err == 0)
            total += ((chunk_t *)value)->sum;
        else
            failures++;
        moirai_handle_release(handles[i]);
    }
    printf("sum of 1..%" PRIu64 " over %d tasks: %" PRIu64 "\n", N, CHUNKS, total);
    failures += total != N * (N + 1) / 2;

    /* 2. A join with a deadline gives up while the task still runs. */
    _Atomic uint32_t gate = 0;
    moirai_handle_t *slow;
    if (moirai_handle_create(&slow) != 0 ||
        moirai_executor_spawn(ex, wait_for_gate, &gate, NULL, slow) != 0)
        return 1;
    err = moirai_handle_join_timed(slow, moirai_deadline_after(10 * MOIRAI_NS_PER_MS), NULL);
    printf("join_timed on a blocked task: %s\n", moirai_err_name(err));
    failures += err != MOIRAI_ETIMEDOUT;
    atomic_store_explicit(&gate, 1, memory_order_release);
    moirai_unpark_all(&gate);
    err = moirai_handle_join(slow, NULL);
    printf("after opening the gate: %s\n", moirai_strerror(err));
    failures += err != 0;
    moirai_handle_release(slow);

    /* 3. Cancellation. Whether the task has started or not, its joiner
     * sees -ECANCELED: a pending task never runs, a running one sees its
     * token and returns -ECANCELED. */
    _Atomic uint32_t closed = 0;
    moirai_handle_t *doomed;
    if (moirai_handle_create(&doomed) != 0 ||
        moirai_executor_spawn(ex, wait_for_gate, &closed, NULL, doomed) != 0)
        return 1;
    err = moirai_handle_cancel(doomed);
    printf("cancel: %s\n", err == 0 ? "before it started" : "while running (cooperative)");
    err = moirai_handle_join(doomed, NULL);
    printf("join of the cancelled task: %s\n", moirai_err_name(err));
    failures += err != MOIRAI_ECANCELED;
    moirai_handle_release(doomed);

    /* Waits for every task the executor accepted, then frees it. */
    moirai_executor_thread_destroy(ex);
    return failures ? 1 : 0;
}
