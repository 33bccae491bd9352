/* moirai-bench, suite "transport": moirai-transport's channels, shared-
 * memory rings and adaptive batcher against crossbeam-channel, Go
 * channels, Boost.Fiber channels, ZeroMQ, Unix-domain sockets and
 * Concurrency Kit's ck_ring.
 *
 * Every metric is lower-is-better (ns per message or per round trip);
 * ratio = Moirai / peer. Every implementation checks what it received:
 * a value lost, duplicated or out of order fails the round.
 *
 * chan_bounded_1p1c (threads, 8-byte messages, ns per message)
 *   One producer thread sends the values 0..N-1 through a bounded channel
 *   of capacity 1024; one consumer thread receives them and checks their
 *   order. The consumer is started and waits at a start gate before the
 *   clock starts. Peers: crossbeam-channel's bounded (a Rust cdylib,
 *   "crossbeam"), a Go buffered channel between two goroutines on
 *   GOMAXPROCS 2 ("go").
 *
 * chan_pingpong (two threads, rendezvous, ns per round trip)
 *   Two threads and two rendezvous (capacity 0) channels: one sends i and
 *   waits for i + 1 on the other, N times. Peers: crossbeam's bounded(0),
 *   Go unbuffered channels between two goroutines on GOMAXPROCS 2.
 *
 * chan_fibers_4p4c (fibers on 2 workers, ns per message)
 *   4 producer and 4 consumer fibers on 2 worker threads share one
 *   buffered channel of capacity 1024; producer p sends N/4 values p,
 *   p+4, ...; the consumers' count and sum must be exact. Peers: Go
 *   goroutines and a buffered channel (GOMAXPROCS 2), Boost.Fiber's
 *   buffered_channel under work_stealing on 2 threads.
 *
 * shm_ring_stream_64b (two processes, ns per message)
 *   A child process (moirai-bench started again, see proc.h) sends N
 *   64-byte messages, each carrying its
 *   sequence number; the parent receives and checks them. The parent's
 *   clock starts when it tells the ready child to go and stops at the
 *   last message. Peers: ZeroMQ PUSH/PULL over ipc:// with one zmq_send
 *   per message ("zmq"); a Unix-domain stream socket with one write(2)
 *   per message and reads of up to 64 KiB ("unix_socket"); Concurrency
 *   Kit's SPSC ck_ring of 1024 64-byte slots placed in a shared memfd
 *   mapping, the waiting side spinning then yielding, since ck_ring has
 *   no way to sleep ("ck").
 *
 * shm_ring_pingpong (two processes, ns per round trip)
 *   The parent sends a 64-byte message to a child process, which sends it
 *   back with its sequence number plus one; N round trips. Peers: a Unix-
 *   domain stream socket pair ("unix_socket"), ZeroMQ REQ/REP over ipc://
 *   ("zmq").
 *
 * remote_task_rtt (two processes over TCP on loopback, ns per round trip)
 *   An empty remote task (8 bytes each way) from node 1 in this process
 *   to node 2 in a child process, one in flight at a time
 *   (bench_transport_remote.c). Peers in the same topology: a raw TCP
 *   ping-pong of 64-byte messages over a loopback connection with
 *   TCP_NODELAY, one write and blocking reads per message ("tcp"), and
 *   ZeroMQ REQ/REP over tcp://127.0.0.1 ("zmq").
 *
 * remote_task_stream (two processes over TCP on loopback, ns per task)
 *   N remote tasks with 64-byte payloads from node 1 in this process to
 *   node 2 in a child process, at most 4096 in flight, every 8-byte answer
 *   joined and checked (bench_transport_stream.c). Peers moving the same
 *   64-byte payloads one way between the same two processes, the receiver
 *   checking each and answering one final acknowledgement that stops the
 *   sender's clock: ZeroMQ PUSH/PULL over tcp://127.0.0.1 with one zmq_send
 *   per message ("zmq"); a loopback TCP connection with TCP_NODELAY, one
 *   write(2) per message and reads of up to 64 KiB ("tcp").
 *
 * batch_small_msgs (16-byte messages, ns per message)
 *   A child process sends N 16-byte messages through moirai-transport's
 *   adaptive batcher (moirai/transport/batch.h) over a transport; the
 *   parent receives and checks them. Peer "unbatched": the same transport
 *   with one send per message.
 *
 * The Go and Boost.Fiber peers are programs that moirai-bench runs once per
 * round (see go/peer.go and peer_boost_fiber.cpp for why), timing their own
 * workload after their start gate. A peer that was not built is reported
 * missing, never faked; a Moirai side whose moirai-transport API is not in
 * this tree is reported missing with the reason. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef MOIRAI_BENCH_TRANSPORT_HAVE_ZMQ
#include <zmq.h>
#endif
#ifdef MOIRAI_BENCH_HAVE_CK
#include <ck_pr.h>
#include <ck_ring.h>
#endif

#include "../bench.h"
#include "peer.h"
#include "proc.h"
#include "transport_moirai.h"

extern char **environ;

#define CHAN_CAPACITY 1024
#define MSG_BYTES     64
#define CK_SLOTS      1024
/* A waiting ck_ring side spins this many times before each sched_yield. */
#define CK_SPINS 256
/* How much the Unix-socket stream receiver reads at once. */
#define STREAM_READ_BYTES (64 * 1024)

/* ---- common ---- */

static double per_op(uint64_t t0, uint64_t t1, uint64_t ops)
{
    return (double)(t1 - t0) / (double)(ops ? ops : 1);
}

/* ---- programs run once per round (Go, Boost.Fiber) ---- */

/* Runs `path arg1 n` and returns the number it prints, or -1 if it cannot
 * be run, fails, or prints no number. Only the program's own measured
 * section is in that number. */
static double run_program(const char *path, const char *arg1, uint64_t n)
{
    char count[32];
    snprintf(count, sizeof(count), "%llu", (unsigned long long)n);
    char *argv[4] = {(char *)path, NULL, NULL, NULL};
    if (arg1) {
        argv[1] = (char *)arg1;
        argv[2] = count;
    } else {
        argv[1] = count;
    }
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0)
        return -1.0;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    pid_t pid;
    int err = posix_spawn(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    if (err != 0) {
        fprintf(stderr, "transport: cannot run %s: %s\n", path, strerror(err));
        close(out[0]);
        return -1.0;
    }
    char buf[128];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(out[0], buf + len, sizeof(buf) - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == sizeof(buf) - 1)
            break;
    }
    buf[len] = '\0';
    close(out[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1.0;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "transport: %s failed\n", path);
        return -1.0;
    }
    char *end;
    double v = strtod(buf, &end);
    if (end == buf)
        return -1.0;
    return v;
}

#ifdef MOIRAI_BENCH_TRANSPORT_GO
static double go_bounded(uint64_t n)
{
    return run_program(MOIRAI_BENCH_TRANSPORT_GO, "chan_bounded_1p1c", n);
}
static double go_pingpong(uint64_t n)
{
    return run_program(MOIRAI_BENCH_TRANSPORT_GO, "chan_pingpong", n);
}
static double go_fibers(uint64_t n)
{
    return run_program(MOIRAI_BENCH_TRANSPORT_GO, "chan_fibers_4p4c", n);
}
#define GO_RUN(fn) fn
#define GO_WHY     NULL
#else
#define GO_RUN(fn) NULL
#define GO_WHY     MOIRAI_BENCH_TRANSPORT_GO_MISSING
#endif

#ifdef MOIRAI_BENCH_TRANSPORT_BOOST_FIBER
static double boost_fiber_fibers(uint64_t n)
{
    return run_program(MOIRAI_BENCH_TRANSPORT_BOOST_FIBER, NULL, n);
}
#define BOOST_FIBER_RUN boost_fiber_fibers
#define BOOST_FIBER_WHY NULL
#else
#define BOOST_FIBER_RUN NULL
#define BOOST_FIBER_WHY MOIRAI_BENCH_TRANSPORT_BOOST_FIBER_MISSING
#endif

/* ---- crossbeam (a shared module) ---- */

#ifdef MOIRAI_BENCH_TRANSPORT_CROSSBEAM
static void *crossbeam_handle;
static bool crossbeam_tried;

/* The entry point `name`, loading the module on first use (it stays
 * loaded). NULL, with the reason on stderr, if it cannot be found. */
static void *crossbeam_sym(const char *name)
{
    if (!crossbeam_tried) {
        crossbeam_tried = true;
        crossbeam_handle = dlopen(MOIRAI_BENCH_TRANSPORT_CROSSBEAM, RTLD_NOW | RTLD_LOCAL);
        if (!crossbeam_handle)
            fprintf(stderr, "transport: crossbeam: dlopen: %s\n", dlerror());
    }
    if (!crossbeam_handle)
        return NULL;
    void *f = dlsym(crossbeam_handle, name);
    if (!f)
        fprintf(stderr, "transport: crossbeam: no %s\n", name);
    return f;
}

typedef double (*bounded_fn)(uint64_t, uint64_t);
typedef double (*pingpong_fn)(uint64_t);

static double crossbeam_bounded(uint64_t n)
{
    /* POSIX allows converting dlsym's object pointer to a function
     * pointer; the cast through uintptr_t keeps -Wpedantic quiet. */
    bounded_fn f = (bounded_fn)(uintptr_t)crossbeam_sym("moirai_peer_chan_bounded_1p1c");
    return f ? f(n, CHAN_CAPACITY) : -1.0;
}

static double crossbeam_pingpong(uint64_t n)
{
    pingpong_fn f = (pingpong_fn)(uintptr_t)crossbeam_sym("moirai_peer_chan_pingpong");
    return f ? f(n) : -1.0;
}
#define CROSSBEAM_RUN(fn) fn
#define CROSSBEAM_WHY     NULL
#else
#define CROSSBEAM_RUN(fn) NULL
#define CROSSBEAM_WHY     MOIRAI_BENCH_TRANSPORT_CROSSBEAM_MISSING
#endif

/* ---- unix_socket ---- */

typedef struct sock_arg {
    int fd; /* the child's end */
    uint64_t n;
} sock_arg_t;

static int unix_stream_child(void *arg, int go_r, int ready_w)
{
    sock_arg_t *a = arg;
    if (bench_child_handshake(go_r, ready_w) < 0)
        return -1;
    msg64_t m;
    for (uint64_t i = 0; i < a->n; i++) {
        msg64_make(&m, i);
        if (bench_write_all(a->fd, &m, sizeof(m)) < 0)
            return -1;
    }
    return 0;
}

static double unix_stream(uint64_t n)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1.0;
    char *buf = malloc(STREAM_READ_BYTES);
    bench_child_t c;
    if (!buf || bench_child_start(&c, "unix_stream", n, NULL, sv[1], -1) < 0) {
        free(buf);
        close(sv[0]);
        close(sv[1]);
        return -1.0;
    }
    close(sv[1]);
    bool ok = bench_child_wait_ready(&c) == 0;
    uint64_t t0 = bench_now_ns();
    ok = ok && bench_child_go(&c) == 0;
    uint64_t seq = 0;
    size_t have = 0; /* bytes of a partial message at buf's start */
    while (ok && seq < n) {
        ssize_t r = read(sv[0], buf + have, STREAM_READ_BYTES - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ok = false;
            break;
        }
        have += (size_t)r;
        size_t off = 0;
        for (; off + MSG_BYTES <= have; off += MSG_BYTES) {
            msg64_t m;
            memcpy(&m, buf + off, sizeof(m));
            if (!msg64_check(&m, seq++)) {
                ok = false;
                break;
            }
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    uint64_t t1 = bench_now_ns();
    close(sv[0]);
    free(buf);
    if (bench_child_finish(&c, !ok) < 0 || !ok || have != 0)
        return -1.0;
    return per_op(t0, t1, n);
}

static int unix_pingpong_child(void *arg, int go_r, int ready_w)
{
    sock_arg_t *a = arg;
    if (bench_child_handshake(go_r, ready_w) < 0)
        return -1;
    msg64_t m;
    for (uint64_t i = 0; i < a->n; i++) {
        if (bench_read_all(a->fd, &m, sizeof(m)) < 0 || !msg64_check(&m, 2 * i))
            return -1;
        msg64_make(&m, 2 * i + 1);
        if (bench_write_all(a->fd, &m, sizeof(m)) < 0)
            return -1;
    }
    return 0;
}

static double unix_pingpong(uint64_t n)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1.0;
    bench_child_t c;
    if (bench_child_start(&c, "unix_pingpong", n, NULL, sv[1], -1) < 0) {
        close(sv[0]);
        close(sv[1]);
        return -1.0;
    }
    close(sv[1]);
    bool ok = bench_child_wait_ready(&c) == 0;
    uint64_t t0 = bench_now_ns();
    ok = ok && bench_child_go(&c) == 0;
    msg64_t m;
    for (uint64_t i = 0; ok && i < n; i++) {
        msg64_make(&m, 2 * i);
        ok = bench_write_all(sv[0], &m, sizeof(m)) == 0 &&
             bench_read_all(sv[0], &m, sizeof(m)) == 0 && msg64_check(&m, 2 * i + 1);
    }
    uint64_t t1 = bench_now_ns();
    close(sv[0]);
    if (bench_child_finish(&c, !ok) < 0 || !ok)
        return -1.0;
    return per_op(t0, t1, n);
}

/* ---- raw TCP ping-pong ---- */

/* A connected pair of TCP sockets over loopback, TCP_NODELAY on both. */
static int tcp_pair(int sv[2])
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    int one = 1;
    sv[0] = sv[1] = -1;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) < 0)
        goto fail;
    sv[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sv[0] < 0 || connect(sv[0], (struct sockaddr *)&a, sizeof(a)) < 0)
        goto fail;
    sv[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (sv[1] < 0)
        goto fail;
    close(l);
    setsockopt(sv[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(sv[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
fail:
    if (l >= 0)
        close(l);
    if (sv[0] >= 0)
        close(sv[0]);
    return -1;
}

/* The child echoes as unix_pingpong_child does; only the socket differs. */
static double tcp_pingpong(uint64_t n)
{
    int sv[2];
    if (tcp_pair(sv) < 0)
        return -1.0;
    bench_child_t c;
    if (bench_child_start(&c, "tcp_pingpong", n, NULL, sv[1], -1) < 0) {
        close(sv[0]);
        close(sv[1]);
        return -1.0;
    }
    close(sv[1]);
    bool ok = bench_child_wait_ready(&c) == 0;
    uint64_t t0 = bench_now_ns();
    ok = ok && bench_child_go(&c) == 0;
    msg64_t m;
    for (uint64_t i = 0; ok && i < n; i++) {
        msg64_make(&m, 2 * i);
        ok = bench_write_all(sv[0], &m, sizeof(m)) == 0 &&
             bench_read_all(sv[0], &m, sizeof(m)) == 0 && msg64_check(&m, 2 * i + 1);
    }
    uint64_t t1 = bench_now_ns();
    close(sv[0]);
    if (bench_child_finish(&c, !ok) < 0 || !ok)
        return -1.0;
    return per_op(t0, t1, n);
}

/* ---- raw TCP stream with a final acknowledgement ---- */

/* Receives n 64-byte messages from `fd` with reads of up to
 * STREAM_READ_BYTES, checking their order and contents; true if all came
 * whole and nothing more. */
static bool stream_receive(int fd, uint64_t n)
{
    char *buf = malloc(STREAM_READ_BYTES);
    bool ok = buf != NULL;
    uint64_t seq = 0;
    size_t have = 0; /* bytes of a partial message at buf's start */
    while (ok && seq < n) {
        ssize_t r = read(fd, buf + have, STREAM_READ_BYTES - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ok = false;
            break;
        }
        have += (size_t)r;
        size_t off = 0;
        for (; ok && off + MSG_BYTES <= have; off += MSG_BYTES) {
            msg64_t m;
            memcpy(&m, buf + off, sizeof(m));
            ok = seq < n && msg64_check(&m, seq++);
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    free(buf);
    return ok && have == 0;
}

/* The child: receives and checks every message, then acknowledges with
 * the count as one 8-byte write. */
static int tcp_stream_child(void *arg, int go_r, int ready_w)
{
    sock_arg_t *a = arg;
    if (bench_child_handshake(go_r, ready_w) < 0 || !stream_receive(a->fd, a->n))
        return -1;
    uint64_t ack = a->n;
    return bench_write_all(a->fd, &ack, sizeof(ack));
}

/* One write(2) per 64-byte message, then a blocking read of the
 * acknowledgement, which stops the clock. */
static double tcp_stream(uint64_t n)
{
    int sv[2];
    if (tcp_pair(sv) < 0)
        return -1.0;
    bench_child_t c;
    if (bench_child_start(&c, "tcp_stream", n, NULL, sv[1], -1) < 0) {
        close(sv[0]);
        close(sv[1]);
        return -1.0;
    }
    close(sv[1]);
    bool ok = bench_child_wait_ready(&c) == 0;
    uint64_t t0 = bench_now_ns();
    ok = ok && bench_child_go(&c) == 0;
    msg64_t m;
    for (uint64_t i = 0; ok && i < n; i++) {
        msg64_make(&m, i);
        ok = bench_write_all(sv[0], &m, sizeof(m)) == 0;
    }
    uint64_t ack = 0;
    ok = ok && bench_read_all(sv[0], &ack, sizeof(ack)) == 0 && ack == n;
    uint64_t t1 = bench_now_ns();
    close(sv[0]);
    if (bench_child_finish(&c, !ok) < 0 || !ok)
        return -1.0;
    return per_op(t0, t1, n);
}

/* ---- zmq ---- */

#ifdef MOIRAI_BENCH_TRANSPORT_HAVE_ZMQ
/* ZeroMQ: each side makes its own context, the parent binds and the child
 * connects with a 1 ms reconnect interval. One untimed message (a round
 * trip for REQ/REP) establishes the connection before the clock starts.
 * The parent's receives time out every second to check that the child is
 * still alive, so a child that died fails the round instead of hanging
 * it. The child keeps its socket open until the parent has received
 * everything (it waits for the end of the go pipe): a PUSH socket closed
 * with messages still unread by a throttled PULL loses some of them in
 * libzmq 4.3, linger or not. */
#define ZMQ_WARM_UP UINT64_C(0xfffffffffffffffe)

/* An ipc:// endpoint of this process, unique per round. */
static void zmq_endpoint(char *buf, size_t len, const char *what)
{
    static unsigned round;
    snprintf(buf, len, "ipc:///tmp/moirai-bench-%ld-%s-%u.ipc", (long)getpid(), what, round++);
}

typedef struct zmq_arg {
    const char *endpoint;
    uint64_t n;
} zmq_arg_t;

/* In the child, once its part is done: waits until the parent closes the
 * go pipe (bench_child_finish), i.e. has received everything. */
static void zmq_child_linger(int go_r)
{
    char c;
    while (read(go_r, &c, 1) < 0 && errno == EINTR)
        ;
}

/* The child's socket of `type`, connected; NULL on failure. */
static void *zmq_child_socket(void *ctx, int type, const char *endpoint)
{
    void *s = zmq_socket(ctx, type);
    int ivl = 1;     /* ms between connection attempts until the parent binds */
    int linger = -1; /* close delivers every message first */
    if (s && zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl)) == 0 &&
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger)) == 0 &&
        zmq_connect(s, endpoint) == 0)
        return s;
    if (s)
        zmq_close(s);
    return NULL;
}

/* The parent's socket of `type`, bound, with a 1 s receive timeout. */
static void *zmq_parent_socket(void *ctx, int type, const char *endpoint)
{
    void *s = zmq_socket(ctx, type);
    int timeout = 1000;
    if (s && zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof(timeout)) == 0 &&
        zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout, sizeof(timeout)) == 0 &&
        zmq_bind(s, endpoint) == 0)
        return s;
    if (s)
        zmq_close(s);
    return NULL;
}

/* Receives one 64-byte message and checks it is `seq`, waiting as long
 * as the child lives. */
static bool zmq_recv_check(void *s, bench_child_t *c, uint64_t seq)
{
    msg64_t m;
    for (;;) {
        int r = zmq_recv(s, &m, sizeof(m), 0);
        if (r == (int)sizeof(m))
            return msg64_check(&m, seq);
        if (r < 0 && (zmq_errno() == EAGAIN || zmq_errno() == EINTR) && !bench_child_exited(c))
            continue;
        return false;
    }
}

static bool zmq_send_msg(void *s, uint64_t seq)
{
    msg64_t m;
    msg64_make(&m, seq);
    return zmq_send(s, &m, sizeof(m), 0) == (int)sizeof(m);
}

static int zmq_push_child(void *arg, int go_r, int ready_w)
{
    zmq_arg_t *a = arg;
    int rc = -1;
    void *ctx = zmq_ctx_new();
    void *s = ctx ? zmq_child_socket(ctx, ZMQ_PUSH, a->endpoint) : NULL;
    if (s && zmq_send_msg(s, ZMQ_WARM_UP) && bench_child_handshake(go_r, ready_w) == 0) {
        rc = 0;
        for (uint64_t i = 0; i < a->n && rc == 0; i++)
            rc = zmq_send_msg(s, i) ? 0 : -1;
        zmq_child_linger(go_r);
    }
    if (s)
        zmq_close(s);
    if (ctx)
        zmq_ctx_term(ctx);
    return rc;
}

static int zmq_rep_child(void *arg, int go_r, int ready_w)
{
    zmq_arg_t *a = arg;
    int rc = -1;
    void *ctx = zmq_ctx_new();
    void *s = ctx ? zmq_child_socket(ctx, ZMQ_REP, a->endpoint) : NULL;
    msg64_t m;
    /* The warm-up round trip, then the measured ones. */
    if (s && zmq_recv(s, &m, sizeof(m), 0) == (int)sizeof(m) && msg64_check(&m, ZMQ_WARM_UP) &&
        zmq_send_msg(s, ZMQ_WARM_UP + 1) && bench_child_handshake(go_r, ready_w) == 0) {
        rc = 0;
        for (uint64_t i = 0; i < a->n && rc == 0; i++) {
            if (zmq_recv(s, &m, sizeof(m), 0) != (int)sizeof(m) || !msg64_check(&m, 2 * i) ||
                !zmq_send_msg(s, 2 * i + 1))
                rc = -1;
        }
        zmq_child_linger(go_r);
    }
    if (s)
        zmq_close(s);
    if (ctx)
        zmq_ctx_term(ctx);
    return rc;
}

/* One round of either case: `pingpong` picks REQ/REP, else PUSH/PULL. */
static double zmq_run(uint64_t n, bool pingpong)
{
    char endpoint[128];
    zmq_endpoint(endpoint, sizeof(endpoint), pingpong ? "req" : "pull");
    bench_child_t c;
    if (bench_child_start(&c, pingpong ? "zmq_rep" : "zmq_push", n, endpoint, -1, -1) < 0)
        return -1.0;
    void *ctx = zmq_ctx_new();
    void *s = ctx ? zmq_parent_socket(ctx, pingpong ? ZMQ_REQ : ZMQ_PULL, endpoint) : NULL;
    bool ok = s != NULL;
    if (ok && pingpong)
        ok = zmq_send_msg(s, ZMQ_WARM_UP) && zmq_recv_check(s, &c, ZMQ_WARM_UP + 1);
    else if (ok)
        ok = zmq_recv_check(s, &c, ZMQ_WARM_UP);
    ok = ok && bench_child_wait_ready(&c) == 0;
    uint64_t t0 = bench_now_ns();
    ok = ok && bench_child_go(&c) == 0;
    for (uint64_t i = 0; ok && i < n; i++) {
        if (pingpong)
            ok = zmq_send_msg(s, 2 * i) && zmq_recv_check(s, &c, 2 * i + 1);
        else
            ok = zmq_recv_check(s, &c, i);
    }
    uint64_t t1 = bench_now_ns();
    bool child_ok = bench_child_finish(&c, !ok) == 0;
    if (s)
        zmq_close(s);
    if (ctx)
        zmq_ctx_term(ctx);
    unlink(endpoint + strlen("ipc://"));
    return ok && child_ok ? (double)(t1 - t0) / (double)(n ? n : 1) : -1.0;
}

/* REQ/REP over TCP on loopback: the parent binds a free port first (the
 * endpoint must be known before the child starts), then as zmq_run(). */
static double zmq_tcp_pingpong(uint64_t n)
{
    void *ctx = zmq_ctx_new();
    void *s = ctx ? zmq_parent_socket(ctx, ZMQ_REQ, "tcp://127.0.0.1:*") : NULL;
    char endpoint[128];
    size_t elen = sizeof(endpoint);
    bool ok = s != NULL && zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, endpoint, &elen) == 0;
    bench_child_t c;
    bool started = ok && bench_child_start(&c, "zmq_rep", n, endpoint, -1, -1) == 0;
    ok = started && zmq_send_msg(s, ZMQ_WARM_UP) && zmq_recv_check(s, &c, ZMQ_WARM_UP + 1);
    ok = ok && bench_child_wait_ready(&c) == 0;
    uint64_t t0 = bench_now_ns();
    ok = ok && bench_child_go(&c) == 0;
    for (uint64_t i = 0; ok && i < n; i++)
        ok = zmq_send_msg(s, 2 * i) && zmq_recv_check(s, &c, 2 * i + 1);
    uint64_t t1 = bench_now_ns();
    bool child_ok = started && bench_child_finish(&c, !ok) == 0;
    if (s)
        zmq_close(s);
    if (ctx)
        zmq_ctx_term(ctx);
    return ok && child_ok ? (double)(t1 - t0) / (double)(n ? n : 1) : -1.0;
}

/* Sends one 64-byte message `seq`, waiting as long as the child lives (the
 * parent's sockets time out every second so that a dead child is noticed;
 * a PUSH socket blocks while it has no peer or its high-water mark is
 * reached). */
static bool zmq_send_wait(void *s, bench_child_t *c, uint64_t seq)
{
    msg64_t m;
    msg64_make(&m, seq);
    for (;;) {
        int r = zmq_send(s, &m, sizeof(m), 0);
        if (r == (int)sizeof(m))
            return true;
        if (r < 0 && (zmq_errno() == EAGAIN || zmq_errno() == EINTR) && !bench_child_exited(c))
            continue;
        return false;
    }
}

/* remote_task_stream's child: PULLs the messages from the first endpoint
 * of `text` and acknowledges on a PUSH to the second: the warm-up message
 * at once, the measured ones with one message carrying the count. */
static int zmq_tcp_stream_child(const bench_child_args_t *a)
{
    char in[128], out[128];
    if (sscanf(a->text, "%127s %127s", in, out) != 2)
        return -1;
    int rc = -1;
    void *ctx = zmq_ctx_new();
    void *pull = ctx ? zmq_child_socket(ctx, ZMQ_PULL, in) : NULL;
    void *push = pull ? zmq_child_socket(ctx, ZMQ_PUSH, out) : NULL;
    msg64_t m;
    if (push && zmq_recv(pull, &m, sizeof(m), 0) == (int)sizeof(m) &&
        msg64_check(&m, ZMQ_WARM_UP) && zmq_send_msg(push, ZMQ_WARM_UP) &&
        bench_child_handshake(a->go_r, a->ready_w) == 0) {
        rc = 0;
        for (uint64_t i = 0; i < a->n && rc == 0; i++) {
            if (zmq_recv(pull, &m, sizeof(m), 0) != (int)sizeof(m) || !msg64_check(&m, i))
                rc = -1;
        }
        if (rc == 0 && !zmq_send_msg(push, a->n))
            rc = -1;
        zmq_child_linger(a->go_r);
    }
    if (push)
        zmq_close(push);
    if (pull)
        zmq_close(pull);
    if (ctx)
        zmq_ctx_term(ctx);
    return rc;
}

/* PUSH/PULL over TCP on loopback, one zmq_send per message, then the
 * child's acknowledgement on a second PUSH/PULL pair stops the clock. The
 * parent binds both (free ports) before the child starts; one untimed
 * message each way establishes both connections. */
static double zmq_tcp_stream(uint64_t n)
{
    void *ctx = zmq_ctx_new();
    void *push = ctx ? zmq_parent_socket(ctx, ZMQ_PUSH, "tcp://127.0.0.1:*") : NULL;
    void *pull = push ? zmq_parent_socket(ctx, ZMQ_PULL, "tcp://127.0.0.1:*") : NULL;
    char out[128], in[128], text[260];
    size_t olen = sizeof(out), ilen = sizeof(in);
    bool ok = pull != NULL && zmq_getsockopt(push, ZMQ_LAST_ENDPOINT, out, &olen) == 0 &&
              zmq_getsockopt(pull, ZMQ_LAST_ENDPOINT, in, &ilen) == 0;
    snprintf(text, sizeof(text), "%s %s", ok ? out : "", ok ? in : "");
    bench_child_t c;
    bool started = ok && bench_child_start(&c, "zmq_tcp_stream", n, text, -1, -1) == 0;
    ok = started && zmq_send_wait(push, &c, ZMQ_WARM_UP) && zmq_recv_check(pull, &c, ZMQ_WARM_UP);
    ok = ok && bench_child_wait_ready(&c) == 0;
    uint64_t t0 = bench_now_ns();
    ok = ok && bench_child_go(&c) == 0;
    for (uint64_t i = 0; ok && i < n; i++)
        ok = zmq_send_wait(push, &c, i);
    ok = ok && zmq_recv_check(pull, &c, n);
    uint64_t t1 = bench_now_ns();
    bool child_ok = started && bench_child_finish(&c, !ok) == 0;
    if (pull)
        zmq_close(pull);
    if (push)
        zmq_close(push);
    if (ctx)
        zmq_ctx_term(ctx);
    return ok && child_ok ? per_op(t0, t1, n) : -1.0;
}

static double zmq_stream(uint64_t n)
{
    return zmq_run(n, false);
}

static double zmq_pingpong(uint64_t n)
{
    return zmq_run(n, true);
}
#define ZMQ_RUN(fn) fn
#define ZMQ_WHY     NULL
#else
#define ZMQ_RUN(fn) NULL
#define ZMQ_WHY     "libzmq not found at configure time (libzmq3-dev)"
#endif

/* ---- ck ---- */

#ifdef MOIRAI_BENCH_HAVE_CK
/* ck_ring's typed SPSC functions for 64-byte slots. */
CK_RING_PROTOTYPE(msg64, msg64)

/* The shared mapping: the ring's indices, then its slots. */
typedef struct ck_shared {
    ck_ring_t ring;
    struct msg64 slots[CK_SLOTS];
} ck_shared_t;

typedef struct ck_arg {
    ck_shared_t *shm;
    uint64_t n;
} ck_arg_t;

/* A waiting side spins briefly, then yields the CPU: ck_ring cannot sleep,
 * and the two processes share two CPUs with the rest of the machine. */
static void ck_wait(unsigned *spins)
{
    if (++*spins % CK_SPINS == 0)
        sched_yield();
    else
        ck_pr_stall();
}

/* The parent's wait: as ck_wait(), and false once the child has died
 * (ck_ring cannot tell), checked every CK_SPINS yields. */
static bool ck_wait_child(unsigned *spins, bench_child_t *c)
{
    ck_wait(spins);
    return *spins % (CK_SPINS * CK_SPINS) != 0 || !bench_child_exited(c);
}

static int ck_stream_child(void *arg, int go_r, int ready_w)
{
    ck_arg_t *a = arg;
    if (bench_child_handshake(go_r, ready_w) < 0)
        return -1;
    msg64_t m;
    for (uint64_t i = 0; i < a->n; i++) {
        msg64_make(&m, i);
        unsigned spins = 0;
        while (!ck_ring_enqueue_spsc_msg64(&a->shm->ring, a->shm->slots, &m))
            ck_wait(&spins);
    }
    return 0;
}

static double ck_stream(uint64_t n)
{
    void *map;
    int fd = bench_shared_memory(sizeof(ck_shared_t), &map);
    if (fd < 0)
        return -1.0;
    ck_shared_t *shm = map;
    ck_ring_init(&shm->ring, CK_SLOTS);
    bench_child_t c;
    double result = -1.0;
    int started = bench_child_start(&c, "ck_stream", n, NULL, fd, -1);
    close(fd);
    if (started == 0) {
        bool ok = bench_child_wait_ready(&c) == 0;
        uint64_t t0 = bench_now_ns();
        ok = ok && bench_child_go(&c) == 0;
        msg64_t m;
        for (uint64_t i = 0; ok && i < n; i++) {
            unsigned spins = 0;
            while (ok && !ck_ring_dequeue_spsc_msg64(&shm->ring, shm->slots, &m))
                ok = ck_wait_child(&spins, &c);
            ok = ok && msg64_check(&m, i);
        }
        uint64_t t1 = bench_now_ns();
        if (bench_child_finish(&c, !ok) == 0 && ok)
            result = per_op(t0, t1, n);
    }
    munmap(shm, sizeof(*shm));
    return result;
}
#define CK_RUN(fn) fn
#define CK_WHY     NULL
#else
#define CK_RUN(fn) NULL
#define CK_WHY     "Concurrency Kit not found at configure time (libck-dev)"
#endif

/* ---- the children's roles (see proc.h) ---- */

static int role_unix_stream(const bench_child_args_t *a)
{
    sock_arg_t arg = {a->fd[0], a->n};
    return unix_stream_child(&arg, a->go_r, a->ready_w);
}

static int role_unix_pingpong(const bench_child_args_t *a)
{
    sock_arg_t arg = {a->fd[0], a->n};
    return unix_pingpong_child(&arg, a->go_r, a->ready_w);
}

static int role_tcp_stream(const bench_child_args_t *a)
{
    sock_arg_t arg = {a->fd[0], a->n};
    return tcp_stream_child(&arg, a->go_r, a->ready_w);
}

#ifdef MOIRAI_BENCH_TRANSPORT_HAVE_ZMQ
static int role_zmq_push(const bench_child_args_t *a)
{
    zmq_arg_t arg = {a->text, a->n};
    return zmq_push_child(&arg, a->go_r, a->ready_w);
}

static int role_zmq_rep(const bench_child_args_t *a)
{
    zmq_arg_t arg = {a->text, a->n};
    return zmq_rep_child(&arg, a->go_r, a->ready_w);
}
#endif

#ifdef MOIRAI_BENCH_HAVE_CK
static int role_ck_stream(const bench_child_args_t *a)
{
    ck_shared_t *shm = bench_shared_map(a->fd[0], sizeof(ck_shared_t));
    if (!shm)
        return -1;
    ck_arg_t arg = {shm, a->n};
    return ck_stream_child(&arg, a->go_r, a->ready_w);
}
#endif

const bench_child_role_t bench_transport_child_roles[] = {
    {"unix_stream", role_unix_stream},
    {"unix_pingpong", role_unix_pingpong},
    {"tcp_pingpong", role_unix_pingpong},
    {"tcp_stream", role_tcp_stream},
    {"stream_node", moirai_bench_stream_child},
    {"remote_node", moirai_bench_remote_child},
#ifdef MOIRAI_BENCH_TRANSPORT_HAVE_ZMQ
    {"zmq_push", role_zmq_push},
    {"zmq_rep", role_zmq_rep},
    {"zmq_tcp_stream", zmq_tcp_stream_child},
#endif
#ifdef MOIRAI_BENCH_HAVE_CK
    {"ck_stream", role_ck_stream},
#endif
    {"ring_stream", moirai_bench_ring_stream_child},
    {"ring_pingpong", moirai_bench_ring_pingpong_child},
    {"batch", moirai_bench_batch_child},
    {"unbatched", moirai_bench_unbatched_child},
    {NULL, NULL},
};

/* ---- the cases ---- */

static const bench_impl_t bounded_impls[] = {
    {"moirai", moirai_bench_chan_bounded, NULL},
    {"crossbeam", CROSSBEAM_RUN(crossbeam_bounded), CROSSBEAM_WHY},
    {"go", GO_RUN(go_bounded), GO_WHY},
};

static const bench_impl_t pingpong_impls[] = {
    {"moirai", moirai_bench_chan_pingpong, NULL},
    {"crossbeam", CROSSBEAM_RUN(crossbeam_pingpong), CROSSBEAM_WHY},
    {"go", GO_RUN(go_pingpong), GO_WHY},
};

static const bench_impl_t fibers_impls[] = {
    {"moirai", moirai_bench_chan_fibers, NULL},
    {"go", GO_RUN(go_fibers), GO_WHY},
    {"boost_fiber", BOOST_FIBER_RUN, BOOST_FIBER_WHY},
};

static const bench_impl_t stream_impls[] = {
    {"moirai", moirai_bench_ring_stream, NULL},
    {"zmq", ZMQ_RUN(zmq_stream), ZMQ_WHY},
    {"unix_socket", unix_stream, NULL},
    {"ck", CK_RUN(ck_stream), CK_WHY},
};

static const bench_impl_t ring_pingpong_impls[] = {
    {"moirai", moirai_bench_ring_pingpong, NULL},
    {"unix_socket", unix_pingpong, NULL},
    {"zmq", ZMQ_RUN(zmq_pingpong), ZMQ_WHY},
};

static const bench_impl_t remote_rtt_impls[] = {
    {"moirai", moirai_bench_remote_rtt, NULL},
    {"tcp", tcp_pingpong, NULL},
    {"zmq", ZMQ_RUN(zmq_tcp_pingpong), ZMQ_WHY},
};

static const bench_impl_t remote_stream_impls[] = {
    {"moirai", moirai_bench_remote_stream, NULL},
    {"zmq", ZMQ_RUN(zmq_tcp_stream), ZMQ_WHY},
    {"tcp", tcp_stream, NULL},
};

static const bench_impl_t batch_impls[] = {
    {"moirai", moirai_bench_batch, NULL},
    {"unbatched", moirai_bench_unbatched, NULL},
};

#define IMPLS(a) a, sizeof(a) / sizeof(a[0])

static const bench_case_t cases[] = {
    {"transport", "chan_bounded_1p1c", "ns_per_op", 10000000, 1000000, IMPLS(bounded_impls)},
    {"transport", "chan_pingpong", "ns_per_op", 1000000, 100000, IMPLS(pingpong_impls)},
    {"transport", "chan_fibers_4p4c", "ns_per_op", 10000000, 1000000, IMPLS(fibers_impls)},
    {"transport", "shm_ring_stream_64b", "ns_per_op", 10000000, 1000000, IMPLS(stream_impls)},
    {"transport", "shm_ring_pingpong", "ns_per_op", 1000000, 100000, IMPLS(ring_pingpong_impls)},
    {"transport", "batch_small_msgs", "ns_per_op", 10000000, 1000000, IMPLS(batch_impls)},
    {"transport", "remote_task_rtt", "ns_per_op", 20000, 2000, IMPLS(remote_rtt_impls)},
    {"transport", "remote_task_stream", "ns_per_op", 1000000, 100000, IMPLS(remote_stream_impls)},
};

const bench_case_t *bench_transport_cases(size_t *count)
{
    *count = sizeof(cases) / sizeof(cases[0]);
    return cases;
}
