/* moirai-bench, suite "transport": the Moirai side of the shared-memory
 * ring cases (moirai/transport/ring.h); see bench_transport.c for the
 * cases and their peers.
 *
 * shm_ring_stream_64b: an SPSC ring on an anonymous memfd of the default
 *   size (1 MiB), made by the parent before it starts the child; the child attaches
 *   as producer through the inherited descriptor and, for each message,
 *   reserves 64 bytes, writes the message in place and commits; the
 *   parent attaches as consumer and peeks, checks and releases each one.
 * shm_ring_pingpong: two such rings, one each way; the child echoes each
 *   message with its sequence number plus one. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <moirai/core/error.h>
#include <moirai/transport/ring.h>

#include "../bench.h"
#include "proc.h"
#include "transport_moirai.h"

/* Makes a ring and returns its descriptor, or -1. */
static int ring_make(void)
{
    int fd = -1;
    int err = moirai_shm_ring_create(&fd, NULL);
    if (err != 0) {
        fprintf(stderr, "transport: moirai_shm_ring_create: %s\n", moirai_strerror(err));
        return -1;
    }
    return fd;
}

static moirai_shm_ring_t *ring_attach(int fd, moirai_shm_ring_role_t role)
{
    moirai_shm_ring_t *r = NULL;
    int err = moirai_shm_ring_attach(&r, fd, role);
    if (err != 0) {
        fprintf(stderr, "transport: moirai_shm_ring_attach: %s\n", moirai_strerror(err));
        return NULL;
    }
    return r;
}

/* Sends message `seq` through `r` in place. */
static int ring_put(moirai_shm_ring_t *r, uint64_t seq)
{
    void *buf;
    if (moirai_shm_ring_reserve(r, sizeof(msg64_t), &buf) != 0)
        return -1;
    msg64_make(buf, seq);
    return moirai_shm_ring_commit(r);
}

/* Receives the next message from `r` and checks it is `seq`. The
 * message is copied before it is checked: the peer is not trusted and
 * could change it while it is being read. */
static int ring_get(moirai_shm_ring_t *r, uint64_t seq)
{
    void *buf;
    size_t len;
    if (moirai_shm_ring_peek(r, &buf, &len) != 0 || len != sizeof(msg64_t))
        return -1;
    msg64_t m;
    memcpy(&m, buf, sizeof(m));
    if (moirai_shm_ring_release(r) != 0 || !msg64_check(&m, seq))
        return -1;
    return 0;
}

/* ---- shm_ring_stream_64b ---- */

typedef struct ring_arg {
    int fd_out; /* the ring the child produces into */
    int fd_in;  /* the ring the child consumes from, or -1 */
    uint64_t n;
} ring_arg_t;

static int stream_child(void *arg, int go_r, int ready_w)
{
    ring_arg_t *a = arg;
    moirai_shm_ring_t *out = ring_attach(a->fd_out, MOIRAI_SHM_RING_PRODUCER);
    if (!out)
        return -1;
    int rc = bench_child_handshake(go_r, ready_w);
    for (uint64_t i = 0; i < a->n && rc == 0; i++)
        rc = ring_put(out, i);
    moirai_shm_ring_detach(out);
    return rc;
}

double moirai_bench_ring_stream(uint64_t n)
{
    int fd = ring_make();
    if (fd < 0)
        return -1.0;
    moirai_shm_ring_t *in = ring_attach(fd, MOIRAI_SHM_RING_CONSUMER);
    bench_child_t c;
    if (!in || bench_child_start(&c, "ring_stream", n, NULL, fd, -1) < 0) {
        moirai_shm_ring_detach(in);
        close(fd);
        return -1.0;
    }
    close(fd);
    bool ok = bench_child_wait_ready(&c) == 0;
    uint64_t t0 = bench_now_ns();
    ok = ok && bench_child_go(&c) == 0;
    for (uint64_t i = 0; ok && i < n; i++)
        ok = ring_get(in, i) == 0;
    uint64_t t1 = bench_now_ns();
    moirai_shm_ring_detach(in);
    if (bench_child_finish(&c, !ok) < 0 || !ok)
        return -1.0;
    return (double)(t1 - t0) / (double)(n ? n : 1);
}

/* ---- shm_ring_pingpong ---- */

static int pingpong_child(void *arg, int go_r, int ready_w)
{
    ring_arg_t *a = arg;
    moirai_shm_ring_t *out = ring_attach(a->fd_out, MOIRAI_SHM_RING_PRODUCER);
    moirai_shm_ring_t *in = ring_attach(a->fd_in, MOIRAI_SHM_RING_CONSUMER);
    int rc = out && in ? bench_child_handshake(go_r, ready_w) : -1;
    for (uint64_t i = 0; i < a->n && rc == 0; i++) {
        rc = ring_get(in, 2 * i);
        if (rc == 0)
            rc = ring_put(out, 2 * i + 1);
    }
    moirai_shm_ring_detach(out);
    moirai_shm_ring_detach(in);
    return rc;
}

double moirai_bench_ring_pingpong(uint64_t n)
{
    int ping = ring_make();
    int pong = ping >= 0 ? ring_make() : -1;
    moirai_shm_ring_t *out = NULL, *in = NULL;
    bench_child_t c;
    bool started = false;
    if (pong >= 0) {
        out = ring_attach(ping, MOIRAI_SHM_RING_PRODUCER);
        in = ring_attach(pong, MOIRAI_SHM_RING_CONSUMER);
        /* The child produces into `pong` and consumes from `ping`. */
        started = out && in && bench_child_start(&c, "ring_pingpong", n, NULL, pong, ping) == 0;
    }
    if (ping >= 0)
        close(ping);
    if (pong >= 0)
        close(pong);
    if (!started) {
        moirai_shm_ring_detach(out);
        moirai_shm_ring_detach(in);
        return -1.0;
    }
    bool ok = bench_child_wait_ready(&c) == 0;
    uint64_t t0 = bench_now_ns();
    ok = ok && bench_child_go(&c) == 0;
    for (uint64_t i = 0; ok && i < n; i++)
        ok = ring_put(out, 2 * i) == 0 && ring_get(in, 2 * i + 1) == 0;
    uint64_t t1 = bench_now_ns();
    moirai_shm_ring_detach(out);
    moirai_shm_ring_detach(in);
    if (bench_child_finish(&c, !ok) < 0 || !ok)
        return -1.0;
    return (double)(t1 - t0) / (double)(n ? n : 1);
}

int moirai_bench_ring_stream_child(const bench_child_args_t *a)
{
    ring_arg_t arg = {a->fd[0], -1, a->n};
    return stream_child(&arg, a->go_r, a->ready_w);
}

int moirai_bench_ring_pingpong_child(const bench_child_args_t *a)
{
    ring_arg_t arg = {a->fd[0], a->fd[1], a->n};
    return pingpong_child(&arg, a->go_r, a->ready_w);
}
