/* A channel pipeline on fibers: one generator, four workers and one
 * collector, joined by two bounded channels. The generator closes the
 * first channel when it is done; the last worker to leave closes the
 * second (close_on_last_sender), so the collector's receive ends with
 * -EPIPE exactly when every result has arrived. Go's "fan-out, fan-in".
 *
 *   ./example_transport_pipeline [count]      (default 100000) */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <moirai/async.h>
#include <moirai/transport.h>

#define WORKERS 4

static moirai_chan_t *numbers, *squares;
static uint64_t count = 100000;

static int generate(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    for (uint64_t i = 1; i <= count; i++)
        if (moirai_chan_send(numbers, &i) != 0)
            return -EIO;
    return moirai_chan_close(numbers);
}

static int square(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    uint64_t n;
    /* Drains what the generator sent, then -EPIPE once it closed. */
    while (moirai_chan_recv(numbers, &n) == 0) {
        uint64_t sq = n * n;
        if (moirai_chan_send(squares, &sq) != 0)
            return -EIO;
    }
    /* The last worker out closes `squares` for the collector. */
    return moirai_chan_sender_drop(squares);
}

static int make_chan(moirai_chan_t **ch, bool close_on_last_sender)
{
    moirai_chan_config_t cfg;
    moirai_chan_config_init(&cfg);
    cfg.elem_size = sizeof(uint64_t);
    cfg.capacity = 256;
    cfg.close_on_last_sender = close_on_last_sender;
    return moirai_chan_create(ch, &cfg);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        count = strtoull(argv[1], NULL, 10);
    moirai_runtime_t *rt;
    if (moirai_runtime_create(&rt, NULL) != 0 || make_chan(&numbers, false) != 0 ||
        make_chan(&squares, true) != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    for (int i = 0; i < WORKERS; i++)
        moirai_chan_sender_add(squares);
    moirai_fiber_spawn(rt, generate, NULL, NULL, NULL);
    for (int i = 0; i < WORKERS; i++)
        moirai_fiber_spawn(rt, square, NULL, NULL, NULL);

    /* The collector is this plain thread: the same calls block it. */
    uint64_t sum = 0, received = 0, sq;
    int rc;
    while ((rc = moirai_chan_recv(squares, &sq)) == 0) {
        sum += sq;
        received++;
    }
    /* Sum of squares 1..n = n(n+1)(2n+1)/6 (exact in 64 bits for the
     * default count). */
    uint64_t want = count * (count + 1) * (2 * count + 1) / 6;
    printf("pipeline: %llu squares received, sum %llu (expected %llu), ended with %d\n",
           (unsigned long long)received, (unsigned long long)sum, (unsigned long long)want, rc);
    moirai_runtime_destroy(rt);
    moirai_chan_destroy(numbers);
    moirai_chan_destroy(squares);
    return received == count && sum == want && rc == -EPIPE ? 0 : 1;
}
