/* moirai-bench, suite "async": the libuv peer ("libuv") of timer_churn (see
 * io_peers.h).
 *
 * IO_TIMER_OBJECTS uv_timer_t, initialised before the clock starts, on a
 * loop of the calling thread (the loop's thread is the only one allowed
 * to touch its timers). A batch arms every timer with uv_timer_start at a
 * deadline spread evenly over 1-2 s ahead, then disarms every one with
 * uv_timer_stop; batches repeat until `iters` arm+disarm pairs. The loop's
 * clock is refreshed (uv_update_time) once per batch, as the Moirai side
 * reads the clock once per batch. No timer ever fires: the loop never
 * runs while they are armed. */
#include <stdlib.h>
#include <uv.h>

#include "../bench.h"
#include "io_peers.h"

static void never_fires(uv_timer_t *t)
{
    (void)t;
    abort();
}

double io_uv_timer_churn(uint64_t iters)
{
    uv_loop_t loop;
    uv_timer_t *timers = malloc(IO_TIMER_OBJECTS * sizeof(*timers));
    if (!timers || uv_loop_init(&loop) != 0) {
        free(timers);
        return -1.0;
    }
    for (int i = 0; i < IO_TIMER_OBJECTS; i++)
        uv_timer_init(&loop, &timers[i]);
    int err = 0;
    uint64_t done = 0;
    uint64_t t0 = bench_now_ns();
    while (done < iters && !err) {
        uint64_t n = iters - done < IO_TIMER_OBJECTS ? iters - done : IO_TIMER_OBJECTS;
        uv_update_time(&loop);
        for (uint64_t i = 0; i < n; i++) {
            /* 1000 ms plus an even spread over the next 1000 ms. */
            uint64_t ms = 1000 + i * 1000 / IO_TIMER_OBJECTS;
            err |= uv_timer_start(&timers[i], never_fires, ms, 0);
        }
        for (uint64_t i = 0; i < n; i++)
            err |= uv_timer_stop(&timers[i]);
        done += n;
    }
    uint64_t t1 = bench_now_ns();
    for (int i = 0; i < IO_TIMER_OBJECTS; i++)
        uv_close((uv_handle_t *)&timers[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        err = -1;
    free(timers);
    return err ? -1.0 : io_per_op(t0, t1, iters);
}
