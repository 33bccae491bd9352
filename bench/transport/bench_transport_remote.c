/* moirai-bench, suite "transport", case remote_task_rtt: the round trip of
 * an empty remote task between two nodes in two processes over TCP on
 * loopback (see bench_transport.c for the case table and the peers).
 *
 * "moirai": this process is node 1 and a child process (moirai-bench
 * started again, role "remote_node") is node 2; both on moirai-async
 * runtimes, authenticated with a cluster key. Node 2 registers "empty",
 * which answers its 8-byte payload. The parent, from a plain thread,
 * spawns "empty" on node 2 with the sequence number, joins the handle,
 * checks the answer and frees it, N times: one task in flight at a time,
 * ns per round trip. One untimed task warms the connection first. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <moirai/async/runtime.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/transport/node.h>

#include "../bench.h"
#include "proc.h"
#include "transport_moirai.h"

static const char bench_key[] = "moirai-bench remote_task_rtt key";

static int empty(void *arg, const void *payload, size_t len, const moirai_cancel_token_t *cancel,
                 void **result, size_t *result_len)
{
    (void)arg;
    (void)cancel;
    void *out = moirai_malloc(len ? len : 1);
    if (!out)
        return -ENOMEM;
    memcpy(out, payload, len);
    *result = out;
    *result_len = len;
    return 0;
}

static moirai_node_t *bench_node(moirai_runtime_t *rt, uint64_t id, const char *seed)
{
    moirai_node_config_t cfg;
    moirai_node_config_init(&cfg);
    cfg.runtime = rt;
    cfg.id = id;
    cfg.key = bench_key;
    cfg.key_len = sizeof bench_key - 1;
    cfg.seeds = &seed;
    cfg.seed_count = seed ? 1 : 0;
    moirai_node_t *node;
    return moirai_node_create(&node, &cfg) == 0 ? node : NULL;
}

/* One remote task: spawn, join, check. */
static bool round_trip(moirai_node_t *node, uint64_t seq)
{
    moirai_handle_t *h;
    if (moirai_node_spawn(node, 2, "empty", &seq, sizeof seq, 0, MOIRAI_DEADLINE_NEVER, &h) < 0)
        return false;
    void *v = NULL;
    bool ok = moirai_handle_join(h, &v) == 0;
    moirai_handle_release(h);
    if (ok) {
        size_t len;
        const void *d = moirai_remote_result_data(v, &len);
        uint64_t got;
        ok = len == sizeof got;
        if (ok) {
            memcpy(&got, d, sizeof got);
            ok = got == seq;
        }
    }
    moirai_remote_result_free(v);
    return ok;
}

int moirai_bench_remote_child(const bench_child_args_t *a)
{
    moirai_runtime_t *rt;
    if (moirai_runtime_create(&rt, NULL) < 0)
        return -1;
    moirai_node_t *node = bench_node(rt, 2, a->text);
    int rc = -1;
    if (node && moirai_node_register(node, "empty", empty, NULL) == 0 &&
        moirai_node_wait_peers(node, 1, moirai_deadline_after(30000000000ull)) == 0 &&
        bench_child_handshake(a->go_r, a->ready_w) == 0) {
        /* Serve until the parent closes the go pipe. */
        char b;
        while (read(a->go_r, &b, 1) > 0) {
        }
        rc = 0;
    }
    moirai_node_destroy(node);
    moirai_runtime_destroy(rt);
    return rc;
}

double moirai_bench_remote_rtt(uint64_t n)
{
    moirai_runtime_t *rt;
    if (moirai_runtime_create(&rt, NULL) < 0)
        return -1.0;
    double result = -1.0;
    moirai_node_t *node = bench_node(rt, 1, NULL);
    char seed[32];
    bench_child_t c;
    if (node) {
        snprintf(seed, sizeof seed, "127.0.0.1:%u", (unsigned)moirai_node_port(node));
        if (bench_child_start(&c, "remote_node", n, seed, -1, -1) == 0) {
            bool ok = moirai_node_wait_peers(node, 1, moirai_deadline_after(30000000000ull)) == 0;
            ok = ok && bench_child_wait_ready(&c) == 0 && round_trip(node, UINT64_MAX);
            uint64_t t0 = bench_now_ns();
            ok = ok && bench_child_go(&c) == 0;
            for (uint64_t i = 0; ok && i < n; i++)
                ok = round_trip(node, i);
            uint64_t t1 = bench_now_ns();
            moirai_node_destroy(node);
            node = NULL;
            if (bench_child_finish(&c, !ok) == 0 && ok)
                result = (double)(t1 - t0) / (double)(n ? n : 1);
        }
    }
    moirai_node_destroy(node);
    moirai_runtime_destroy(rt);
    return result;
}
