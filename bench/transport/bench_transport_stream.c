/* moirai-bench, suite "transport", case remote_task_stream: many small
 * remote tasks streamed from one node to another over TCP on loopback
 * (see bench_transport.c for the case table and the peers).
 *
 * "moirai": this process is node 1 and a child process (moirai-bench
 * started again, role "stream_node") is node 2, each on its own
 * moirai-async runtime, authenticated with a cluster key: two processes,
 * as two machines of a cluster would be, so every byte crosses the kernel's
 * TCP stack and every wake-up is one across processes. Node 2 registers
 * "stream", which checks its 64-byte payload (a msg64_t, whose filler is
 * derived from its sequence number, so a torn payload is noticed) and
 * answers the 8-byte sequence number. The parent, from a plain thread,
 * spawns N tasks with the payloads 0..N-1, keeping at most STREAM_WINDOW of
 * them in flight: when the window is full it joins the oldest, checks its
 * answer and frees it, then spawns the next. The clock stops when the last
 * task has been joined and checked: ns per task. The child counts the tasks
 * it ran and fails the round unless it ran exactly N + 1 (the untimed
 * warm-up task included), so a task run twice or never is noticed on both
 * sides.
 *
 * The window bounds the memory a round holds (handles and results of 1M
 * tasks at once would be hundreds of MB) while leaving enough tasks in
 * flight for the connection's writer to coalesce frames, as the ZeroMQ
 * peer's send queue (high-water mark 1000 each side) does. */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Tasks in flight at most (a power of two: the ring of handles). */
#define STREAM_WINDOW 4096u
/* The warm-up task's sequence number, outside any round's 0..N-1. */
#define STREAM_WARM_UP UINT64_MAX

static const char stream_key[] = "moirai-bench remote_task_stream key";

/* Tasks run by the child's node. Written by the node's task fibers on any
 * worker, read once by the child's main thread after the parent has joined
 * every answer; relaxed is enough because the count is only compared after
 * the round, when the node is idle and moirai_node_destroy() has joined the
 * fibers (its wait is the synchronization). */
static _Atomic uint64_t stream_runs;

/* Node 2's task: checks the payload, answers its sequence number. */
static int stream_task(void *arg, const void *payload, size_t len,
                       const moirai_cancel_token_t *cancel, void **result, size_t *result_len)
{
    (void)arg;
    (void)cancel;
    msg64_t m;
    if (len != sizeof m)
        return -EINVAL;
    memcpy(&m, payload, sizeof m);
    if (!msg64_check(&m, m.seq))
        return -EINVAL;
    uint64_t *out = moirai_malloc(sizeof *out);
    if (!out)
        return -ENOMEM;
    *out = m.seq;
    *result = out;
    *result_len = sizeof *out;
    atomic_fetch_add_explicit(&stream_runs, 1, memory_order_relaxed);
    return 0;
}

static moirai_node_t *stream_node(moirai_runtime_t *rt, uint64_t id, const char *seed)
{
    moirai_node_config_t cfg;
    moirai_node_config_init(&cfg);
    cfg.runtime = rt;
    cfg.id = id;
    cfg.key = stream_key;
    cfg.key_len = sizeof stream_key - 1;
    cfg.seeds = &seed;
    cfg.seed_count = seed ? 1 : 0;
    moirai_node_t *node;
    return moirai_node_create(&node, &cfg) == 0 ? node : NULL;
}

static int stream_spawn(moirai_node_t *node, uint64_t seq, moirai_handle_t **h)
{
    msg64_t m;
    msg64_make(&m, seq);
    return moirai_node_spawn(node, 2, "stream", &m, sizeof m, 0, MOIRAI_DEADLINE_NEVER, h);
}

/* Joins `h`, checks that it answered `seq`, releases it. */
static bool stream_join(moirai_handle_t *h, uint64_t seq)
{
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

int moirai_bench_stream_child(const bench_child_args_t *a)
{
    moirai_runtime_t *rt;
    if (moirai_runtime_create(&rt, NULL) < 0)
        return -1;
    atomic_store_explicit(&stream_runs, 0, memory_order_relaxed);
    moirai_node_t *node = stream_node(rt, 2, a->text);
    int rc = -1;
    if (node && moirai_node_register(node, "stream", stream_task, NULL) == 0 &&
        moirai_node_wait_peers(node, 1, moirai_deadline_after(30000000000ull)) == 0 &&
        bench_child_handshake(a->go_r, a->ready_w) == 0) {
        /* Serve until the parent closes the go pipe, after its last join. */
        char b;
        while (read(a->go_r, &b, 1) > 0) {
        }
        rc = 0;
    }
    moirai_node_destroy(node);
    moirai_runtime_destroy(rt);
    uint64_t runs = atomic_load_explicit(&stream_runs, memory_order_relaxed);
    if (rc == 0 && runs != a->n + 1) {
        fprintf(stderr, "remote_task_stream: node 2 ran %llu tasks, expected %llu\n",
                (unsigned long long)runs, (unsigned long long)(a->n + 1));
        rc = -1;
    }
    return rc;
}

/* The measured stream: N spawns, at most STREAM_WINDOW in flight, every
 * answer joined and checked in order. */
static bool stream_run(moirai_node_t *node, moirai_handle_t **ring, uint64_t n)
{
    uint64_t joined = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (i - joined == STREAM_WINDOW) {
            if (!stream_join(ring[joined % STREAM_WINDOW], joined)) {
                joined++;
                goto fail;
            }
            joined++;
        }
        if (stream_spawn(node, i, &ring[i % STREAM_WINDOW]) < 0) {
            n = i; /* join what was spawned, then fail */
            goto fail;
        }
    }
    for (; joined < n; joined++) {
        if (!stream_join(ring[joined % STREAM_WINDOW], joined)) {
            joined++;
            goto fail;
        }
    }
    return true;
fail:
    /* Every spawned handle is still joined and released, so nothing is
     * left running or leaked when a round fails. */
    for (; joined < n; joined++)
        stream_join(ring[joined % STREAM_WINDOW], joined);
    return false;
}

double moirai_bench_remote_stream(uint64_t n)
{
    moirai_handle_t **ring = malloc(STREAM_WINDOW * sizeof *ring);
    moirai_runtime_t *rt;
    if (!ring || moirai_runtime_create(&rt, NULL) < 0) {
        free(ring);
        return -1.0;
    }
    double result = -1.0;
    moirai_node_t *node = stream_node(rt, 1, NULL);
    char seed[32];
    bench_child_t c;
    if (node) {
        snprintf(seed, sizeof seed, "127.0.0.1:%u", (unsigned)moirai_node_port(node));
        if (bench_child_start(&c, "stream_node", n, seed, -1, -1) == 0) {
            bool ok = moirai_node_wait_peers(node, 1, moirai_deadline_after(30000000000ull)) == 0;
            moirai_handle_t *h;
            ok =
                ok && stream_spawn(node, STREAM_WARM_UP, &h) == 0 && stream_join(h, STREAM_WARM_UP);
            ok = ok && bench_child_wait_ready(&c) == 0;
            uint64_t t0 = bench_now_ns();
            ok = ok && bench_child_go(&c) == 0 && stream_run(node, ring, n);
            uint64_t t1 = bench_now_ns();
            moirai_node_destroy(node);
            node = NULL;
            if (bench_child_finish(&c, !ok) == 0 && ok)
                result = (double)(t1 - t0) / (double)(n ? n : 1);
        }
    }
    moirai_node_destroy(node);
    moirai_runtime_destroy(rt);
    free(ring);
    return result;
}
