/* A cluster node as a separate process, for the multi-process tests
 * (test_cluster.c) and for the word-count example's style of use:
 *
 *   test_cluster_node <id> <key> <handshake_ms> [seed ...]
 *
 * Listens on 127.0.0.1 (a free port), prints "READY <port>" on stdout,
 * serves until its stdin reaches end of file (the test holds the other
 * end, so a test that dies takes its helpers with it), then destroys its
 * node and runtime and exits 0. Registered functions:
 *   square  u64 x          -> u64 x*x, u64 this node's id
 *   slowsq  u64 x, u32 us  -> as square, after sleeping `us` microseconds
 *                              (cancellable: returns -ECANCELED)
 *   block   (nothing)      -> waits until cancelled, returns -ECANCELED
 *   fail    i32 e          -> returns e
 *   stat    (nothing)      -> u64 runs of square, slowsq, block started,
 *                             block cancelled
 *   peers   (nothing)      -> u64 live peers, u64 this node's id
 * It holds the data key "node-<id>" (locality placement). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <moirai/async/fiber.h>
#include <moirai/async/runtime.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/transport/node.h>

static uint64_t self_id;
static moirai_node_t *self_node;
static _Atomic uint64_t runs_square, runs_slowsq, block_started, block_cancelled;

static int reply_u64s(void **result, size_t *result_len, const uint64_t *v, size_t n)
{
    uint64_t *out = moirai_malloc(n * sizeof *out);
    if (!out)
        return -ENOMEM;
    memcpy(out, v, n * sizeof *out);
    *result = out;
    *result_len = n * sizeof *out;
    return 0;
}

static int fn_square(void *arg, const void *payload, size_t len,
                     const moirai_cancel_token_t *cancel, void **result, size_t *result_len)
{
    (void)arg;
    (void)cancel;
    uint64_t x;
    if (len != sizeof x)
        return -EINVAL;
    memcpy(&x, payload, sizeof x);
    atomic_fetch_add_explicit(&runs_square, 1, memory_order_relaxed);
    uint64_t out[2] = {x * x, self_id};
    return reply_u64s(result, result_len, out, 2);
}

static int fn_slowsq(void *arg, const void *payload, size_t len,
                     const moirai_cancel_token_t *cancel, void **result, size_t *result_len)
{
    (void)arg;
    uint64_t x;
    uint32_t us;
    if (len != sizeof x + sizeof us)
        return -EINVAL;
    memcpy(&x, payload, sizeof x);
    memcpy(&us, (const char *)payload + sizeof x, sizeof us);
    atomic_fetch_add_explicit(&runs_slowsq, 1, memory_order_relaxed);
    if (moirai_cancel_token_sleep(cancel, (uint64_t)us * 1000) < 0)
        return -ECANCELED;
    uint64_t out[2] = {x * x, self_id};
    return reply_u64s(result, result_len, out, 2);
}

static int fn_block(void *arg, const void *payload, size_t len, const moirai_cancel_token_t *cancel,
                    void **result, size_t *result_len)
{
    (void)arg;
    (void)payload;
    (void)len;
    (void)result;
    (void)result_len;
    atomic_fetch_add_explicit(&block_started, 1, memory_order_relaxed);
    /* Bounded: a lost cancel shows as a result, not as a hang. */
    if (moirai_cancel_token_wait_timed(cancel, moirai_deadline_after(30000000000ull)) == 0) {
        atomic_fetch_add_explicit(&block_cancelled, 1, memory_order_relaxed);
        return -ECANCELED;
    }
    return 0;
}

static int fn_fail(void *arg, const void *payload, size_t len, const moirai_cancel_token_t *cancel,
                   void **result, size_t *result_len)
{
    (void)arg;
    (void)cancel;
    (void)result;
    (void)result_len;
    int32_t e;
    if (len != sizeof e)
        return -EINVAL;
    memcpy(&e, payload, sizeof e);
    return e;
}

static int fn_stat(void *arg, const void *payload, size_t len, const moirai_cancel_token_t *cancel,
                   void **result, size_t *result_len)
{
    (void)arg;
    (void)payload;
    (void)len;
    (void)cancel;
    uint64_t out[4] = {
        atomic_load_explicit(&runs_square, memory_order_relaxed),
        atomic_load_explicit(&runs_slowsq, memory_order_relaxed),
        atomic_load_explicit(&block_started, memory_order_relaxed),
        atomic_load_explicit(&block_cancelled, memory_order_relaxed),
    };
    return reply_u64s(result, result_len, out, 4);
}

static int fn_peers(void *arg, const void *payload, size_t len, const moirai_cancel_token_t *cancel,
                    void **result, size_t *result_len)
{
    (void)arg;
    (void)payload;
    (void)len;
    (void)cancel;
    long n = moirai_node_peers(self_node, NULL, 0);
    uint64_t out[2] = {n < 0 ? 0 : (uint64_t)n, self_id};
    return reply_u64s(result, result_len, out, 2);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s id key handshake_ms [seed...]\n", argv[0]);
        return 2;
    }
    self_id = strtoull(argv[1], NULL, 0);
    moirai_runtime_t *rt;
    if (moirai_runtime_create(&rt, NULL) < 0)
        return 1;
    moirai_node_config_t cfg;
    moirai_node_config_init(&cfg);
    cfg.runtime = rt;
    cfg.id = self_id;
    cfg.key = argv[2];
    cfg.key_len = strlen(argv[2]);
    cfg.handshake_timeout_ns = strtoull(argv[3], NULL, 0) * 1000000ull;
    cfg.seeds = (const char *const *)&argv[4];
    cfg.seed_count = (size_t)(argc - 4);
    cfg.heartbeat_ns = 50000000ull;
    cfg.heartbeat_misses = 20;
    moirai_node_t *node;
    int rc = moirai_node_create(&node, &cfg);
    if (rc < 0) {
        fprintf(stderr, "node_create: %s\n", strerror(-rc));
        return 1;
    }
    moirai_node_register(node, "square", fn_square, NULL);
    moirai_node_register(node, "slowsq", fn_slowsq, NULL);
    moirai_node_register(node, "block", fn_block, NULL);
    moirai_node_register(node, "fail", fn_fail, NULL);
    moirai_node_register(node, "stat", fn_stat, NULL);
    self_node = node;
    moirai_node_register(node, "peers", fn_peers, NULL);
    char data_key[32];
    snprintf(data_key, sizeof data_key, "node-%llu", (unsigned long long)self_id);
    moirai_node_key_add(node, data_key);
    printf("READY %u\n", (unsigned)moirai_node_port(node));
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {
    }
    moirai_node_destroy(node);
    moirai_runtime_destroy(rt);
    return 0;
}
