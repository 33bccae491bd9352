/* The program the bpftrace fiber test traces (run_bpftrace.sh, mode
 * "fibers"): N fibers on a runtime with its own scheduler, N/2 sending one
 * number each over a rendezvous channel and N/2 receiving one each. On a
 * rendezvous channel every exchange has exactly one side that waits (the
 * one that came first) and is completed by the other, so the channel
 * fires chan_block and chan_wake exactly N/2 times each; every fiber
 * switches out once for good. It checks by itself that every number
 * arrived exactly once and prints "ran N".
 *
 *   probe_fibers N        (N even, 2 to 20000) */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <moirai/async.h>
#include <moirai/transport.h>

static moirai_chan_t *chan;
static _Atomic long received_sum;
static _Atomic long received_count;

static int sender(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    long v = (long)(intptr_t)arg;
    int rc = moirai_chan_send(chan, &v);
    if (rc != 0) {
        fprintf(stderr, "probe_fibers: send failed: %d\n", rc);
        exit(1);
    }
    return 0;
}

static int receiver(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    long v;
    int rc = moirai_chan_recv(chan, &v);
    if (rc != 0) {
        fprintf(stderr, "probe_fibers: recv failed: %d\n", rc);
        exit(1);
    }
    /* Relaxed: read after destroy, which waits for every fiber. */
    atomic_fetch_add_explicit(&received_sum, v, memory_order_relaxed);
    atomic_fetch_add_explicit(&received_count, 1, memory_order_relaxed);
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc == 2 ? strtol(argv[1], NULL, 10) : 0;
    if (n < 2 || n > 20000 || n % 2 != 0) {
        fprintf(stderr, "usage: probe_fibers N (N even, 2 to 20000)\n");
        return 2;
    }
    moirai_chan_config_t ccfg;
    moirai_chan_config_init(&ccfg);
    ccfg.elem_size = sizeof(long);
    int rc = moirai_chan_create(&chan, &ccfg);
    if (rc != 0) {
        fprintf(stderr, "probe_fibers: channel: %d\n", rc);
        return 1;
    }
    moirai_runtime_t *rt;
    rc = moirai_runtime_create(&rt, NULL);
    if (rc != 0) {
        fprintf(stderr, "probe_fibers: runtime: %d\n", rc);
        return 1;
    }
    for (long i = 1; i <= n / 2; i++) {
        if ((rc = moirai_fiber_spawn(rt, sender, (void *)(intptr_t)i, NULL, NULL)) != 0 ||
            (rc = moirai_fiber_spawn(rt, receiver, NULL, NULL, NULL)) != 0) {
            fprintf(stderr, "probe_fibers: spawn failed: %d\n", rc);
            return 1;
        }
    }
    rc = moirai_runtime_destroy(rt);
    if (rc != 0) {
        fprintf(stderr, "probe_fibers: destroy: %d\n", rc);
        return 1;
    }
    moirai_chan_destroy(chan);
    long half = n / 2;
    long count = atomic_load_explicit(&received_count, memory_order_relaxed);
    long sum = atomic_load_explicit(&received_sum, memory_order_relaxed);
    if (count != half || sum != half * (half + 1) / 2) {
        fprintf(stderr, "probe_fibers: received %ld numbers summing to %ld, expected %ld and %ld\n",
                count, sum, half, half * (half + 1) / 2);
        return 1;
    }
    printf("ran %ld\n", n);
    return 0;
}
