/* moirai-sched: fork-join and a parallel reduction.
 *
 * fib(n) splits every call with moirai_join(): the two halves may run on
 * different workers, and a worker waiting for a stolen half runs other
 * work meanwhile. The frames live on the stack, so no call allocates. Then
 * moirai_parallel_reduce() sums an array in pieces combined in index
 * order. Exits non-zero if either answer is wrong. */
#include <moirai/core.h>
#include <moirai/sched.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct fib_call {
    int n;
    uint64_t result;
} fib_call_t;

static void fib(void *arg)
{
    fib_call_t *call = arg;
    if (call->n < 2) {
        call->result = (uint64_t)call->n;
        return;
    }
    fib_call_t a = {call->n - 1, 0}, b = {call->n - 2, 0};
    /* NULL: the scheduler of the calling worker. */
    moirai_join(NULL, fib, &a, fib, &b);
    call->result = a.result + b.result;
}

static void zero(void *arg, void *acc)
{
    (void)arg;
    *(uint64_t *)acc = 0;
}

static void sum_piece(void *arg, size_t begin, size_t end, void *acc)
{
    const uint32_t *values = arg;
    uint64_t sum = 0;
    for (size_t i = begin; i < end; i++)
        sum += values[i];
    *(uint64_t *)acc += sum;
}

static void add(void *arg, void *acc, const void *right)
{
    (void)arg;
    *(uint64_t *)acc += *(const uint64_t *)right;
}

int main(void)
{
    moirai_sched_t *sched;
    int rc = moirai_sched_create(&sched, NULL); /* one worker per CPU */
    if (rc != 0) {
        fprintf(stderr, "moirai_sched_create: %s\n", moirai_strerror(rc));
        return 1;
    }

    /* The top-level call comes from outside the pool: this thread takes
     * part in the join as a guest worker beside the pool's workers (so the
     * work runs on one thread more than the workers; see callers_wait in
     * moirai/sched/sched.h for exactly `workers` threads). */
    fib_call_t left = {24, 0}, right = {23, 0};
    rc = moirai_join(sched, fib, &left, fib, &right);
    uint64_t fib25 = left.result + right.result;

    enum { N = 1 << 20 };
    uint32_t *values = malloc(N * sizeof(*values));
    if (values == NULL)
        return 1;
    for (size_t i = 0; i < N; i++)
        values[i] = (uint32_t)i;
    moirai_reduce_desc_t desc = {sizeof(uint64_t), zero, sum_piece, add};
    uint64_t total = 0;
    if (rc == 0)
        rc = moirai_parallel_reduce(sched, 0, N, 0, &desc, values, &total);
    free(values);
    moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN);

    uint64_t expected_total = (uint64_t)N * (N - 1) / 2;
    printf("fib(25) = %llu, sum = %llu\n", (unsigned long long)fib25, (unsigned long long)total);
    return rc == 0 && fib25 == 75025 && total == expected_total ? 0 : 1;
}
