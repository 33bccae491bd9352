/* moirai-core's trace recorder on moirai-sched: a timeline of a fork-join,
 * a parallel loop and a pipeline, written as trace.json.
 *
 * Open the file in https://ui.perfetto.dev or chrome://tracing: one lane
 * per thread, the scheduler's jobs ("join", "task", "parallel_for",
 * "stage", "source") as boxes, steals as marks, and the program's own
 * spans ("fork-join", "parallel loop", "pipeline") on the main thread.
 * scripts/trace-to-svg.py draws the same picture as an SVG.
 *
 * Usage: example_trace_forkjoin [PATH]   (default: trace.json)
 * Exits non-zero if a result is wrong, nothing was recorded, an event was
 * dropped, or the file could not be written. */
/* For pthread_setname_np(). */
#define _GNU_SOURCE
#include <moirai/core.h>
#include <moirai/sched.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Where the busy work leaves its result, so the compiler keeps it
 * (relaxed: nobody reads it; atomic because every thread writes it). */
static _Atomic uint64_t work_sink;

/* Work a leaf does, so that the boxes are wide enough to see. */
static void spin_work(uint64_t x, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        x ^= x >> 33;
        x *= UINT64_C(0xff51afd7ed558ccd);
    }
    atomic_store_explicit(&work_sink, x, memory_order_relaxed);
}

typedef struct fib_call {
    int n;
    uint64_t result;
} fib_call_t;

/* fib(n) with moirai_join(): every call offers one half to thieves. */
static void fib(void *arg)
{
    fib_call_t *call = arg;
    if (call->n < 2) {
        spin_work((uint64_t)call->n, 20000);
        call->result = (uint64_t)call->n;
        return;
    }
    fib_call_t a = {call->n - 1, 0}, b = {call->n - 2, 0};
    moirai_join(NULL, fib, &a, fib, &b);
    call->result = a.result + b.result;
}

enum { SQUARES = 256, ITEMS = 24 };

static void square_piece(void *arg, size_t begin, size_t end)
{
    uint64_t *out = arg;
    for (size_t i = begin; i < end; i++) {
        spin_work(i, 20000);
        out[i] = (uint64_t)i * i;
    }
}

/* The pipeline: a serial source, a parallel stage, a serial in-order sink. */
static int source(void *arg, void *in, void **out)
{
    (void)in;
    uint64_t *next = arg;
    if (*next >= ITEMS)
        return MOIRAI_PIPELINE_END;
    *out = (void *)(uintptr_t)(++*next);
    return 0;
}

static int heavy(void *arg, void *in, void **out)
{
    (void)arg;
    uint64_t v = (uintptr_t)in;
    spin_work(v, 200000);
    *out = (void *)(uintptr_t)(v * 10);
    return 0;
}

static int sink(void *arg, void *in, void **out)
{
    (void)out;
    uint64_t *expected = arg;
    if ((uintptr_t)in == *expected * 10)
        ++*expected;
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "trace.json";
    pthread_setname_np(pthread_self(), "main");

    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    moirai_sched_t *sched;
    int rc = moirai_sched_create(&sched, &cfg);
    if (rc != 0) {
        fprintf(stderr, "moirai_sched_create: %s\n", moirai_strerror(rc));
        return 1;
    }

    /* Recording from here; NULL: the default buffer sizes. */
    rc = moirai_trace_start(NULL);
    if (rc != 0) {
        fprintf(stderr, "moirai_trace_start: %s\n", moirai_strerror(rc));
        return 1;
    }

    moirai_trace_begin("fork-join");
    fib_call_t left = {9, 0}, right = {8, 0};
    int join_rc = moirai_join(sched, fib, &left, fib, &right);
    moirai_trace_end();

    moirai_trace_begin("parallel loop");
    static uint64_t squares[SQUARES];
    int for_rc = moirai_parallel_for(sched, 0, SQUARES, 8, square_piece, squares);
    moirai_trace_end();

    moirai_trace_begin("pipeline");
    uint64_t next = 0, expected = 1;
    const moirai_pipeline_stage_t stages[] = {
        {MOIRAI_STAGE_SERIAL_IN_ORDER, source, &next},
        {MOIRAI_STAGE_PARALLEL, heavy, NULL},
        {MOIRAI_STAGE_SERIAL_IN_ORDER, sink, &expected},
    };
    int pipe_rc = moirai_pipeline_run(sched, 4, stages, 3);
    moirai_trace_end();

    moirai_trace_stop();
    moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN);

    moirai_trace_stats_t stats;
    moirai_trace_stats(&stats);
    rc = moirai_trace_write_json_path(path);
    printf("trace: %llu events from %u threads, %llu dropped, written to %s: %s\n",
           (unsigned long long)stats.recorded, stats.threads, (unsigned long long)stats.dropped,
           path, moirai_strerror(rc));

    bool ok = join_rc == 0 && left.result + right.result == 55 && for_rc == 0 && pipe_rc == 0 &&
              expected == ITEMS + 1;
    for (size_t i = 0; i < SQUARES; i++)
        ok = ok && squares[i] == (uint64_t)i * i;
    if (!ok)
        fprintf(stderr, "a result is wrong\n");
    return ok && rc == 0 && stats.recorded > 0 && stats.dropped == 0 ? 0 : 1;
}
