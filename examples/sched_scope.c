/* moirai-sched: structured concurrency with scopes.
 *
 * moirai_scope_run() runs a body that spawns tasks into the scope and
 * returns only when all of them have finished, so they may use the
 * caller's stack. The first scope sums the parts of an array in parallel.
 * In the second, the body fails while a long task runs: the scope is
 * cancelled, the task sees it through its token and stops early, and
 * moirai_scope_run() returns the failure once the task has returned. Exits non-zero if the sum is
 * wrong or the failure does not come back. */
#include <moirai/core.h>
#include <moirai/sched.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

enum { PARTS = 16, PART = 1 << 16 };

typedef struct part {
    const uint32_t *values;
    uint64_t sum;
} part_t;

static int sum_part(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel, (void)result;
    part_t *p = arg;
    for (size_t i = 0; i < PART; i++)
        p->sum += p->values[i];
    return 0;
}

typedef struct job {
    const uint32_t *values;
    part_t parts[PARTS]; /* on the caller's stack: the scope outlives no task */
} job_t;

static int sum_body(void *arg, moirai_scope_t *scope)
{
    job_t *job = arg;
    for (int i = 0; i < PARTS; i++) {
        job->parts[i] = (part_t){job->values + (size_t)i * PART, 0};
        int rc = moirai_scope_spawn(scope, sum_part, &job->parts[i], NULL);
        if (rc != 0)
            return rc; /* the scope still waits for the tasks already spawned */
    }
    return 0;
}

static atomic_int started, stopped_early;

static void sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000}, NULL);
}

static int patient(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg, (void)result;
    atomic_fetch_add_explicit(&started, 1, memory_order_relaxed);
    /* Works in slices of 1 ms for up to 10 s, checking the token between. */
    for (int slice = 0; slice < 10000; slice++) {
        if (moirai_cancel_token_is_cancelled(cancel)) {
            atomic_fetch_add_explicit(&stopped_early, 1, memory_order_relaxed);
            return -ECANCELED;
        }
        sleep_ms(1);
    }
    return 0;
}

static int fail_body(void *arg, moirai_scope_t *scope)
{
    (void)arg;
    if (moirai_scope_spawn(scope, patient, NULL, NULL) != 0)
        return -EAGAIN;
    /* Fail once the task is under way: the body's error cancels the scope,
     * and moirai_scope_run() still waits for the task to return. */
    for (int i = 0; i < 10000 && atomic_load_explicit(&started, memory_order_relaxed) == 0; i++)
        sleep_ms(1);
    return -EIO;
}

int main(void)
{
    static uint32_t values[PARTS * PART];
    uint64_t expected = 0;
    for (size_t i = 0; i < PARTS * PART; i++) {
        values[i] = (uint32_t)(i % 1000);
        expected += values[i];
    }

    moirai_sched_t *sched;
    if (moirai_sched_create(&sched, NULL) != 0)
        return 1;

    job_t job = {.values = values};
    int rc = moirai_scope_run(sched, sum_body, &job);
    uint64_t total = 0;
    for (int i = 0; i < PARTS; i++)
        total += job.parts[i].sum;
    printf("scope 1: %s, sum %llu (expected %llu)\n", moirai_strerror(rc),
           (unsigned long long)total, (unsigned long long)expected);
    int bad = rc != 0 || total != expected;

    rc = moirai_scope_run(sched, fail_body, NULL);
    printf("scope 2: %s, %d of %d started task(s) saw the cancellation and stopped early\n",
           moirai_strerror(rc), atomic_load(&stopped_early), atomic_load(&started));
    bad += rc != -EIO || atomic_load(&started) != 1 || atomic_load(&stopped_early) != 1;

    moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN);
    return bad ? 1 : 0;
}
