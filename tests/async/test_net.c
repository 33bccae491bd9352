/* Sockets and pipes, call by call: TCP, Unix-domain sockets, pipes and
 * UDP round trips with every byte checked, the same calls from a plain
 * thread, the TCP options as the kernel reports them, and every
 * documented error of bad input (-ENOMEM through the failing allocator). */
#include "net_test_util.h"

#include <fcntl.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <moirai/mem/pool.h>

#include "oom.h"

/* ---- TCP round trip between two fibers ---- */

struct tcp_pair {
    moirai_io_t *listener;
    struct sockaddr_in addr;
    struct sockaddr_in client_local; /* what the client's handle says */
    moirai_event_t client_ready;     /* client_local is filled */
    moirai_event_t partial_read;     /* the server read the first 10 bytes */
};

static const char HELLO[10] = "0123456789";

static int tcp_server(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct tcp_pair *p = arg;
    moirai_io_t *s = NULL;
    FCHECK(moirai_stream_accept(p->listener, &s) == 0 && s != NULL);
    /* The peer address the server sees is the client's own address. */
    moirai_event_wait(&p->client_ready);
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    FCHECK(moirai_io_peer_addr(s, (struct sockaddr *)&peer, &plen) == 0);
    FCHECK(plen == sizeof peer && peer.sin_family == AF_INET);
    FCHECK(peer.sin_port == p->client_local.sin_port);
    FCHECK(peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    /* A partial read: room for 100, only 10 were sent (the client sends
     * nothing more until told), so exactly 10 arrive, maybe in pieces. */
    char buf[100];
    size_t got = 0;
    while (got < sizeof HELLO) {
        ssize_t n = moirai_stream_read(s, buf + got, sizeof buf - got);
        FCHECK(n > 0);
        got += (size_t)n;
    }
    FCHECK(got == sizeof HELLO && memcmp(buf, HELLO, sizeof HELLO) == 0);
    moirai_event_set(&p->partial_read);
    /* Then 64 KiB, echoed back in three scattered pieces. */
    enum { BIG = 64 * 1024 };
    unsigned char *big = malloc(BIG);
    FCHECK(big != NULL);
    FCHECK(read_exact(s, big, BIG) == BIG);
    struct iovec iov[3] = {{big, 1}, {big + 1, BIG / 2}, {big + 1 + BIG / 2, BIG - 1 - BIG / 2}};
    FCHECK(moirai_stream_writev(s, iov, 3) == BIG);
    free(big);
    /* The client shut its side down: end of stream, and again. */
    FCHECK(moirai_stream_read(s, buf, sizeof buf) == 0);
    FCHECK(moirai_stream_read(s, buf, sizeof buf) == 0);
    /* Writing still works after the peer's shutdown (half close). */
    FCHECK(moirai_stream_write(s, "bye", 3) == 3);
    FCHECK(moirai_io_close(s) == 0);
    return 0;
}

static int tcp_client(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct tcp_pair *p = arg;
    moirai_io_t *c = NULL;
    FCHECK(moirai_tcp_connect(&c, moirai_runtime_current(), (struct sockaddr *)&p->addr, NULL) ==
           0);
    p->client_local = local_of(c);
    FCHECK(p->client_local.sin_family == AF_INET && p->client_local.sin_port != 0);
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    FCHECK(moirai_io_peer_addr(c, (struct sockaddr *)&peer, &plen) == 0);
    FCHECK(peer.sin_port == p->addr.sin_port);
    moirai_event_set(&p->client_ready);
    FCHECK(moirai_stream_write(c, HELLO, sizeof HELLO) == sizeof HELLO);
    moirai_event_wait(&p->partial_read);
    enum { BIG = 64 * 1024 };
    unsigned char *out = malloc(BIG), *in = malloc(BIG);
    FCHECK(out != NULL && in != NULL);
    fill_pattern(out, BIG, 7);
    /* Written in pieces of odd sizes. */
    for (size_t off = 0; off < BIG;) {
        size_t n = BIG - off < 3001 ? BIG - off : 3001;
        FCHECK(moirai_stream_write(c, out + off, n) == (ssize_t)n);
        off += n;
    }
    FCHECK(moirai_stream_shutdown(c) == 0);
    FCHECK(read_exact(c, in, BIG) == BIG);
    FCHECK(memcmp(in, out, BIG) == 0);
    char bye[8];
    FCHECK(read_exact(c, bye, 3) == 3 && memcmp(bye, "bye", 3) == 0);
    /* The server closed: end of stream, the POSIX way. */
    FCHECK(moirai_stream_read(c, bye, sizeof bye) == 0);
    free(out);
    free(in);
    FCHECK(moirai_io_close(c) == 0);
    return 0;
}

Test(net, tcp_round_trip_between_fibers, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct tcp_pair p;
    memset(&p, 0, sizeof p);
    moirai_event_init(&p.client_ready, MOIRAI_EVENT_MANUAL, false);
    moirai_event_init(&p.partial_read, MOIRAI_EVENT_MANUAL, false);
    struct sockaddr_in any = loopback(0);
    cr_assert_eq(moirai_tcp_listen(&p.listener, rt, (struct sockaddr *)&any, NULL), 0);
    /* Port 0 picked a real port, reported by the local address. */
    p.addr = local_of(p.listener);
    cr_assert_eq(p.addr.sin_family, AF_INET);
    cr_assert_neq(p.addr.sin_port, 0);
    cr_assert_eq(p.addr.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    /* A listener has no peer. */
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    cr_assert_eq(moirai_io_peer_addr(p.listener, (struct sockaddr *)&peer, &plen), -ENOTCONN);
    moirai_handle_t *hs = spawn_with_handle(rt, tcp_server, &p, NULL);
    moirai_handle_t *hc = spawn_with_handle(rt, tcp_client, &p, NULL);
    ASSERT_OK(join_and_release(hs, NULL));
    ASSERT_OK(join_and_release(hc, NULL));
    cr_assert_eq(moirai_io_close(p.listener), 0);
    drop_runtime(rt);
}

/* ---- The same calls from plain threads, talking to a fiber ---- */

enum { PLAIN_BYTES = 1 << 20 };

static int echo_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    moirai_io_t *listener = arg;
    moirai_io_t *s = NULL;
    FCHECK(moirai_stream_accept(listener, &s) == 0);
    char buf[8192];
    for (;;) {
        ssize_t n = moirai_stream_read(s, buf, sizeof buf);
        FCHECK(n >= 0);
        if (n == 0)
            break;
        FCHECK(moirai_stream_write(s, buf, (size_t)n) == n);
    }
    FCHECK(moirai_io_close(s) == 0);
    return 0;
}

struct plain_writer {
    moirai_io_t *io;
    const unsigned char *data;
    ssize_t rc;
};

static void *plain_write_all(void *arg)
{
    struct plain_writer *w = arg;
    /* Several writes, each larger than the socket buffers: the thread
     * sleeps for room (the echo comes back only as fast as it is read). */
    w->rc = 0;
    for (size_t off = 0; off < PLAIN_BYTES; off += PLAIN_BYTES / 4) {
        ssize_t n = moirai_stream_write(w->io, w->data + off, PLAIN_BYTES / 4);
        if (n != PLAIN_BYTES / 4) {
            w->rc = n < 0 ? n : -EIO;
            return NULL;
        }
    }
    w->rc = moirai_stream_shutdown(w->io);
    return NULL;
}

Test(net, plain_threads_talk_to_a_fiber, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    moirai_io_t *l = NULL, *c = NULL;
    struct sockaddr_in any = loopback(0);
    cr_assert_eq(moirai_tcp_listen(&l, rt, (struct sockaddr *)&any, NULL), 0);
    struct sockaddr_in addr = local_of(l);
    moirai_handle_t *h = spawn_with_handle(rt, echo_fiber, l, NULL);
    /* The test thread is a plain thread: it connects and reads, another
     * plain thread writes on the same handle at the same time. */
    cr_assert_eq(moirai_tcp_connect(&c, rt, (struct sockaddr *)&addr, NULL), 0);
    unsigned char *out = malloc(PLAIN_BYTES), *in = malloc(PLAIN_BYTES);
    cr_assert(out != NULL && in != NULL);
    fill_pattern(out, PLAIN_BYTES, 99);
    struct plain_writer w = {c, out, 1};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, plain_write_all, &w), 0);
    cr_assert_eq(read_to_eof(c, in, PLAIN_BYTES), PLAIN_BYTES);
    pthread_join(t, NULL);
    cr_assert_eq(w.rc, 0);
    cr_assert(memcmp(in, out, PLAIN_BYTES) == 0, "the echo differs from what was sent");
    ASSERT_OK(join_and_release(h, NULL));
    cr_assert_eq(moirai_io_close(c), 0);
    cr_assert_eq(moirai_io_close(l), 0);
    free(out);
    free(in);
    drop_runtime(rt);
}

/* A plain thread accepting and a plain thread connecting, no fiber. */
Test(net, plain_thread_accepts_and_connects, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_io_t *l = NULL, *c = NULL, *s = NULL;
    struct sockaddr_in any = loopback(0);
    cr_assert_eq(moirai_tcp_listen(&l, rt, (struct sockaddr *)&any, NULL), 0);
    struct sockaddr_in addr = local_of(l);
    cr_assert_eq(moirai_tcp_connect(&c, rt, (struct sockaddr *)&addr, NULL), 0);
    cr_assert_eq(moirai_stream_accept(l, &s), 0);
    cr_assert_eq(moirai_stream_write(s, "ping", 4), 4);
    char buf[8];
    cr_assert_eq(read_exact(c, buf, 4), 4);
    cr_assert(memcmp(buf, "ping", 4) == 0);
    cr_assert_eq(moirai_io_close(s), 0);
    cr_assert_eq(moirai_stream_read(c, buf, sizeof buf), 0);
    cr_assert_eq(moirai_io_close(c), 0);
    cr_assert_eq(moirai_io_close(l), 0);
    drop_runtime(rt);
}

/* ---- writev: every vector length, zero-length entries, IOV_MAX ---- */

Test(net, writev_walks_every_buffer_in_order, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    moirai_io_t *a = NULL, *b = NULL;
    cr_assert_eq(moirai_pipe_open(&a, rt, sv[0]), 0);
    cr_assert_eq(moirai_pipe_open(&b, rt, sv[1]), 0);
    /* IOV_MAX buffers of 0..6 bytes (every seventh empty): more than the
     * 64-buffer window the write copies, so the walk crosses windows. */
    enum { N = 1024 };
    static struct iovec iov[N + 1];
    static unsigned char data[N * 6];
    static unsigned char in[N * 6];
    fill_pattern(data, sizeof data, 3);
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        size_t len = (size_t)(i % 7);
        iov[i].iov_base = len > 0 ? data + total : NULL;
        iov[i].iov_len = len;
        total += len;
    }
    cr_assert_eq(moirai_stream_writev(a, iov, N), (ssize_t)total);
    cr_assert_eq(read_exact(b, in, total), (ssize_t)total);
    cr_assert(memcmp(in, data, total) == 0);
    /* Nothing more came. */
    char extra;
    cr_assert_eq(moirai_stream_read_timed(b, moirai_deadline_after(MOIRAI_NS_PER_MS), &extra, 1),
                 -ETIMEDOUT);
    /* Zero buffers, and one empty buffer: 0, nothing sent. */
    cr_assert_eq(moirai_stream_writev(a, iov, 0), 0);
    cr_assert_eq(moirai_stream_writev(a, NULL, 0), 0);
    cr_assert_eq(moirai_stream_write(a, NULL, 0), 0);
    /* Huge iovcnt, negative iovcnt, NULL vector, NULL buffer in it,
     * lengths adding up past SSIZE_MAX: -EINVAL, nothing sent. */
    cr_assert_eq(moirai_stream_writev(a, iov, N + 1), -EINVAL);
    cr_assert_eq(moirai_stream_writev(a, iov, INT_MAX), -EINVAL);
    cr_assert_eq(moirai_stream_writev(a, iov, -1), -EINVAL);
    cr_assert_eq(moirai_stream_writev(a, NULL, 1), -EINVAL);
    struct iovec bad[2] = {{NULL, 1}, {data, 1}};
    cr_assert_eq(moirai_stream_writev(a, bad, 2), -EINVAL);
    struct iovec huge[2] = {{data, (size_t)SSIZE_MAX}, {data, 2}};
    cr_assert_eq(moirai_stream_writev(a, huge, 2), -EINVAL);
    cr_assert_eq(moirai_stream_write(a, data, (size_t)SSIZE_MAX + 1), -EINVAL);
    cr_assert_eq(moirai_stream_read_timed(b, moirai_deadline_after(MOIRAI_NS_PER_MS), &extra, 1),
                 -ETIMEDOUT);
    cr_assert_eq(moirai_io_close(a), 0);
    cr_assert_eq(moirai_stream_read(b, &extra, 1), 0);
    cr_assert_eq(moirai_io_close(b), 0);
    drop_runtime(rt);
}

/* Large buffers through a socket buffer far smaller than their sum: the
 * kernel takes part of a buffer at a time, and the write resumes inside
 * it, across windows of the vector. */
struct big_writev {
    moirai_io_t *io;
    const unsigned char *data;
    size_t total;
};

enum { BIGV_N = 300 };

static int writev_big(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct big_writev *w = arg;
    struct iovec *iov = malloc(BIGV_N * sizeof *iov);
    FCHECK(iov != NULL);
    size_t off = 0;
    for (int i = 0; i < BIGV_N; i++) {
        size_t len = (size_t)(i * 7919) % 20011; /* 0 .. 20010, scattered */
        iov[i] = (struct iovec){(void *)(w->data + off), len};
        off += len;
    }
    FCHECK(off == w->total);
    FCHECK(moirai_stream_writev(w->io, iov, BIGV_N) == (ssize_t)w->total);
    free(iov);
    FCHECK(moirai_stream_shutdown(w->io) == 0);
    return 0;
}

Test(net, writev_resumes_inside_a_buffer, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(2);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int small = 16384;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    moirai_io_t *a = NULL, *b = NULL;
    cr_assert_eq(moirai_pipe_open(&a, rt, sv[0]), 0);
    cr_assert_eq(moirai_pipe_open(&b, rt, sv[1]), 0);
    size_t total = 0;
    for (int i = 0; i < BIGV_N; i++)
        total += (size_t)(i * 7919) % 20011;
    unsigned char *data = malloc(total), *in = malloc(total);
    cr_assert(data != NULL && in != NULL);
    fill_pattern(data, total, 17);
    struct big_writev w = {a, data, total};
    moirai_handle_t *h = spawn_with_handle(rt, writev_big, &w, NULL);
    /* Read in small pieces, so the writer waits for room many times. */
    size_t got = 0;
    for (;;) {
        ssize_t n = moirai_stream_read(b, in + got, total - got < 3000 ? total - got : 3000);
        cr_assert_geq(n, 0);
        if (n == 0)
            break;
        got += (size_t)n;
        cr_assert_leq(got, total);
    }
    ASSERT_OK(join_and_release(h, NULL));
    cr_assert_eq(got, total);
    cr_assert(memcmp(in, data, total) == 0, "the bytes differ from the vector's");
    free(data);
    free(in);
    moirai_io_close(a);
    moirai_io_close(b);
    drop_runtime(rt);
}

/* IPv6: TCP and UDP on [::1], addresses reported as AF_INET6. Skipped
 * (with a message) where the kernel has no IPv6. */
Test(net, ipv6_tcp_and_udp_on_loopback, .timeout = 30)
{
    int probe = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 any;
    memset(&any, 0, sizeof any);
    any.sin6_family = AF_INET6;
    any.sin6_addr = in6addr_loopback;
    if (probe < 0 || bind(probe, (struct sockaddr *)&any, sizeof any) != 0) {
        if (probe >= 0)
            close(probe);
        cr_skip_test("no IPv6 loopback here");
    }
    close(probe);
    moirai_runtime_t *rt = make_runtime(2);
    moirai_io_t *l = NULL, *c = NULL, *s = NULL;
    cr_assert_eq(moirai_tcp_listen(&l, rt, (struct sockaddr *)&any, NULL), 0);
    struct sockaddr_in6 addr;
    socklen_t len = sizeof addr;
    cr_assert_eq(moirai_io_local_addr(l, (struct sockaddr *)&addr, &len), 0);
    cr_assert_eq(len, sizeof addr);
    cr_assert_eq(addr.sin6_family, AF_INET6);
    cr_assert_neq(addr.sin6_port, 0);
    cr_assert_eq(moirai_tcp_connect(&c, rt, (struct sockaddr *)&addr, NULL), 0);
    cr_assert_eq(moirai_stream_accept(l, &s), 0);
    struct sockaddr_in6 peer, mine;
    len = sizeof peer;
    cr_assert_eq(moirai_io_peer_addr(s, (struct sockaddr *)&peer, &len), 0);
    len = sizeof mine;
    cr_assert_eq(moirai_io_local_addr(c, (struct sockaddr *)&mine, &len), 0);
    cr_assert_eq(peer.sin6_port, mine.sin6_port);
    cr_assert(memcmp(&peer.sin6_addr, &in6addr_loopback, sizeof peer.sin6_addr) == 0);
    cr_assert_eq(moirai_stream_write(c, "six", 3), 3);
    char buf[8];
    cr_assert_eq(read_exact(s, buf, 3), 3);
    cr_assert(memcmp(buf, "six", 3) == 0);
    moirai_io_close(s);
    moirai_io_close(c);
    moirai_io_close(l);

    moirai_io_t *a = NULL, *b = NULL;
    cr_assert_eq(moirai_udp_bind(&a, rt, (struct sockaddr *)&any), 0);
    cr_assert_eq(moirai_udp_bind(&b, rt, (struct sockaddr *)&any), 0);
    struct sockaddr_in6 aa, ba;
    len = sizeof aa;
    cr_assert_eq(moirai_io_local_addr(a, (struct sockaddr *)&aa, &len), 0);
    len = sizeof ba;
    cr_assert_eq(moirai_io_local_addr(b, (struct sockaddr *)&ba, &len), 0);
    cr_assert_eq(moirai_udp_send(a, "dgram6", 6, (struct sockaddr *)&ba), 6);
    struct sockaddr_storage from;
    cr_assert_eq(moirai_udp_recv(b, buf, sizeof buf, &from), 6);
    cr_assert(memcmp(buf, "dgram6", 6) == 0);
    cr_assert_eq(from.ss_family, AF_INET6);
    cr_assert_eq(((struct sockaddr_in6 *)&from)->sin6_port, aa.sin6_port);
    moirai_io_close(a);
    moirai_io_close(b);
    drop_runtime(rt);
}

/* ---- TCP options, as the kernel reports them ---- */

static int sockopt(moirai_io_t *io, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    int fd = moirai_io_fd(io);
    if (fd < 0 || getsockopt(fd, level, name, &v, &len) != 0)
        return -1;
    return v;
}

/* The accept backlog of a listener: Linux reports sk_max_ack_backlog in
 * tcpi_sacked for a socket in LISTEN state. */
static int listen_backlog(moirai_io_t *l)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(moirai_io_fd(l), IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return -1;
    return (int)ti.tcpi_sacked;
}

static int somaxconn(void)
{
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    int v = -1;
    if (f != NULL) {
        if (fscanf(f, "%d", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

Test(net, tcp_options_reach_the_socket, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    struct sockaddr_in any = loopback(0);
    /* Defaults: SO_REUSEADDR on the listener, TCP_NODELAY on both ends,
     * no keep-alive, backlog 511 (capped by somaxconn). */
    moirai_io_t *l = NULL, *c = NULL, *s = NULL;
    cr_assert_eq(moirai_tcp_listen(&l, rt, (struct sockaddr *)&any, NULL), 0);
    cr_assert_eq(sockopt(l, SOL_SOCKET, SO_REUSEADDR), 1);
    cr_assert_eq(sockopt(l, SOL_SOCKET, SO_REUSEPORT), 0);
    cr_assert_eq(sockopt(l, SOL_SOCKET, SO_ACCEPTCONN), 1);
    int cap = somaxconn();
    cr_assert_eq(listen_backlog(l), cap > 0 && cap < 511 ? cap : 511);
    struct sockaddr_in addr = local_of(l);
    cr_assert_eq(moirai_tcp_connect(&c, rt, (struct sockaddr *)&addr, NULL), 0);
    cr_assert_eq(moirai_stream_accept(l, &s), 0);
    cr_assert_eq(sockopt(c, IPPROTO_TCP, TCP_NODELAY), 1);
    cr_assert_eq(sockopt(s, IPPROTO_TCP, TCP_NODELAY), 1);
    cr_assert_eq(sockopt(c, SOL_SOCKET, SO_KEEPALIVE), 0);
    cr_assert_eq(sockopt(s, SOL_SOCKET, SO_KEEPALIVE), 0);
    /* Descriptors are non-blocking and close-on-exec. */
    cr_assert(fcntl(moirai_io_fd(c), F_GETFL) & O_NONBLOCK);
    cr_assert(fcntl(moirai_io_fd(s), F_GETFL) & O_NONBLOCK);
    cr_assert(fcntl(moirai_io_fd(s), F_GETFD) & FD_CLOEXEC);
    moirai_io_close(s);
    moirai_io_close(c);
    moirai_io_close(l);

    /* Every option set: Nagle kept, keep-alive after 7 s, backlog 3,
     * SO_REUSEPORT, no SO_REUSEADDR; accepted streams get the listener's
     * options. */
    moirai_tcp_config_t cfg;
    moirai_tcp_config_init(&cfg);
    cfg.nagle = true;
    cfg.keepalive_s = 7;
    cfg.backlog = 3;
    cfg.reuse_port = true;
    cfg.exclusive_address = true;
    cr_assert_eq(moirai_tcp_listen(&l, rt, (struct sockaddr *)&any, &cfg), 0);
    cr_assert_eq(sockopt(l, SOL_SOCKET, SO_REUSEADDR), 0);
    cr_assert_eq(sockopt(l, SOL_SOCKET, SO_REUSEPORT), 1);
    cr_assert_eq(listen_backlog(l), 3);
    addr = local_of(l);
    moirai_tcp_config_t ccfg;
    moirai_tcp_config_init(&ccfg);
    ccfg.keepalive_s = 32767; /* the largest allowed */
    cr_assert_eq(moirai_tcp_connect(&c, rt, (struct sockaddr *)&addr, &ccfg), 0);
    cr_assert_eq(moirai_stream_accept(l, &s), 0);
    cr_assert_eq(sockopt(s, IPPROTO_TCP, TCP_NODELAY), 0);
    cr_assert_eq(sockopt(s, SOL_SOCKET, SO_KEEPALIVE), 1);
    cr_assert_eq(sockopt(s, IPPROTO_TCP, TCP_KEEPIDLE), 7);
    cr_assert_eq(sockopt(c, IPPROTO_TCP, TCP_NODELAY), 1);
    cr_assert_eq(sockopt(c, SOL_SOCKET, SO_KEEPALIVE), 1);
    cr_assert_eq(sockopt(c, IPPROTO_TCP, TCP_KEEPIDLE), 32767);

    /* reuse_port: a second listener on the same port works only when
     * both ask for it. */
    moirai_io_t *l2 = NULL;
    cr_assert_eq(moirai_tcp_listen(&l2, rt, (struct sockaddr *)&addr, &cfg), 0);
    cr_assert_eq(local_of(l2).sin_port, addr.sin_port);
    moirai_io_close(l2);
    l2 = NULL;
    cr_assert_eq(moirai_tcp_listen(&l2, rt, (struct sockaddr *)&addr, NULL), -EADDRINUSE);
    cr_assert_null(l2);

    /* Out-of-range values: -EINVAL, nothing created. */
    moirai_tcp_config_t bad;
    moirai_tcp_config_init(&bad);
    bad.keepalive_s = 32768;
    cr_assert_eq(moirai_tcp_listen(&l2, rt, (struct sockaddr *)&any, &bad), -EINVAL);
    cr_assert_eq(moirai_tcp_connect(&l2, rt, (struct sockaddr *)&addr, &bad), -EINVAL);
    moirai_tcp_config_init(&bad);
    bad.backlog = -1;
    cr_assert_eq(moirai_tcp_listen(&l2, rt, (struct sockaddr *)&any, &bad), -EINVAL);
    bad.backlog = 65536;
    cr_assert_eq(moirai_tcp_listen(&l2, rt, (struct sockaddr *)&any, &bad), -EINVAL);
    cr_assert_null(l2);
    moirai_tcp_config_init(NULL); /* ignored */

    moirai_io_close(s);
    moirai_io_close(c);
    moirai_io_close(l);
    drop_runtime(rt);
}

/* ---- Unix-domain sockets ---- */

struct unix_ctx {
    moirai_io_t *listener;
    const char *path;
};

static int unix_server(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct unix_ctx *u = arg;
    moirai_io_t *s = NULL;
    FCHECK(moirai_stream_accept(u->listener, &s) == 0);
    unsigned char *buf = malloc(20000);
    FCHECK(buf != NULL);
    ssize_t n = read_to_eof(s, buf, 20000);
    FCHECK(n == 20000);
    /* Back, with a suffix. */
    FCHECK(moirai_stream_write(s, buf, (size_t)n) == n);
    free(buf);
    FCHECK(moirai_stream_write(s, "end", 3) == 3);
    FCHECK(moirai_io_close(s) == 0);
    return 0;
}

static int unix_client(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct unix_ctx *u = arg;
    moirai_io_t *c = NULL;
    FCHECK(moirai_unix_connect(&c, moirai_runtime_current(), u->path) == 0);
    unsigned char *out = malloc(20000), *in = malloc(20003);
    FCHECK(out != NULL && in != NULL);
    fill_pattern(out, 20000, 21);
    FCHECK(moirai_stream_write(c, out, 20000) == 20000);
    FCHECK(moirai_stream_shutdown(c) == 0);
    FCHECK(read_to_eof(c, in, 20003) == 20003);
    FCHECK(memcmp(in, out, 20000) == 0 && memcmp(in + 20000, "end", 3) == 0);
    free(out);
    free(in);
    FCHECK(moirai_io_close(c) == 0);
    return 0;
}

static void unix_round_trip(moirai_runtime_t *rt, const char *path)
{
    struct unix_ctx u = {NULL, path};
    cr_assert_eq(moirai_unix_listen(&u.listener, rt, path, 0), 0);
    /* The name is taken while the listener lives. */
    moirai_io_t *again = NULL;
    cr_assert_eq(moirai_unix_listen(&again, rt, path, 4), -EADDRINUSE);
    cr_assert_null(again);
    struct sockaddr_un sun;
    socklen_t len = sizeof sun;
    cr_assert_eq(moirai_io_local_addr(u.listener, (struct sockaddr *)&sun, &len), 0);
    cr_assert_eq(sun.sun_family, AF_UNIX);
    if (path[0] == '@')
        cr_assert(sun.sun_path[0] == '\0' &&
                  memcmp(sun.sun_path + 1, path + 1, strlen(path) - 1) == 0);
    else
        cr_assert_str_eq(sun.sun_path, path);
    moirai_handle_t *hs = spawn_with_handle(rt, unix_server, &u, NULL);
    moirai_handle_t *hc = spawn_with_handle(rt, unix_client, &u, NULL);
    ASSERT_OK(join_and_release(hs, NULL));
    ASSERT_OK(join_and_release(hc, NULL));
    cr_assert_eq(moirai_io_close(u.listener), 0);
}

Test(net, unix_sockets_on_a_path_and_abstract, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(2);
    char dir[] = "/tmp/moirai-net-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/sock", dir);
    unix_round_trip(rt, path);
    /* The file stays (the listener does not remove it); a new listener
     * on it gets -EADDRINUSE until it is removed. */
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISSOCK(st.st_mode));
    moirai_io_t *l = NULL;
    cr_assert_eq(moirai_unix_listen(&l, rt, path, 0), -EADDRINUSE);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(rmdir(dir), 0);

    char abstract[64];
    snprintf(abstract, sizeof abstract, "@moirai-net-test-%d", (int)getpid());
    unix_round_trip(rt, abstract);
    /* The abstract name is free again once its listener is closed. */
    cr_assert_eq(moirai_unix_listen(&l, rt, abstract, 0), 0);
    cr_assert_eq(moirai_io_close(l), 0);
    drop_runtime(rt);
}

Test(net, unix_bad_names, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_io_t *io = NULL;
    char longpath[200];
    memset(longpath, 'x', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    int fds = count_fds();
    cr_assert_eq(moirai_unix_listen(&io, rt, longpath, 0), -ENAMETOOLONG);
    cr_assert_eq(moirai_unix_connect(&io, rt, longpath), -ENAMETOOLONG);
    /* sizeof sun_path - 1 characters fit; sizeof sun_path do not. */
    struct sockaddr_un sun;
    longpath[sizeof sun.sun_path] = '\0';
    cr_assert_eq(moirai_unix_connect(&io, rt, longpath), -ENAMETOOLONG);
    cr_assert_eq(moirai_unix_listen(&io, rt, "", 0), -EINVAL);
    cr_assert_eq(moirai_unix_listen(&io, rt, NULL, 0), -EINVAL);
    cr_assert_eq(moirai_unix_listen(&io, rt, "@x", -1), -EINVAL);
    cr_assert_eq(moirai_unix_listen(NULL, rt, "@x", 0), -EINVAL);
    cr_assert_eq(moirai_unix_listen(&io, NULL, "@x", 0), -EINVAL);
    cr_assert_eq(moirai_unix_connect(NULL, rt, "@x"), -EINVAL);
    cr_assert_eq(moirai_unix_connect(&io, NULL, "@x"), -EINVAL);
    cr_assert_eq(moirai_unix_connect(&io, rt, ""), -EINVAL);
    /* Nothing there: -ENOENT for a path; -ECONNREFUSED for an abstract
     * name nobody listens on. */
    cr_assert_eq(moirai_unix_connect(&io, rt, "/tmp/moirai-net-no-such-dir/sock"), -ENOENT);
    char abstract[64];
    snprintf(abstract, sizeof abstract, "@moirai-net-nobody-%d", (int)getpid());
    cr_assert_eq(moirai_unix_connect(&io, rt, abstract), -ECONNREFUSED);
    cr_assert_null(io);
    cr_assert_eq(count_fds(), fds, "a failed call left a descriptor open");
    drop_runtime(rt);
}

/* ---- Pipes ---- */

struct pipe_ctx {
    moirai_io_t *rd, *wr;
};

static int pipe_writer(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct pipe_ctx *p = arg;
    /* 1 MiB: far more than the pipe holds, so the writer waits for room. */
    enum { LEN = 1 << 20, PIECE = 100000 };
    unsigned char *out = malloc(LEN);
    FCHECK(out != NULL);
    fill_pattern(out, LEN, 5);
    for (size_t off = 0; off < LEN; off += PIECE) {
        size_t n = LEN - off < PIECE ? LEN - off : PIECE;
        FCHECK(moirai_stream_write(p->wr, out + off, n) == (ssize_t)n);
    }
    free(out);
    /* A pipe has no shutdown: closing the write end ends the stream. */
    FCHECK(moirai_stream_shutdown(p->wr) == -ENOTSOCK);
    FCHECK(moirai_io_close(p->wr) == 0);
    return 0;
}

static int pipe_reader(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct pipe_ctx *p = arg;
    enum { LEN = 1 << 20 };
    unsigned char *in = malloc(LEN);
    FCHECK(in != NULL);
    FCHECK(read_to_eof(p->rd, in, LEN) == LEN);
    for (size_t j = 0; j < LEN; j++)
        FCHECK(in[j] == pattern_byte(5, j));
    free(in);
    FCHECK(moirai_io_close(p->rd) == 0);
    return 0;
}

Test(net, pipe_create_round_trip_and_eof, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct pipe_ctx p;
    cr_assert_eq(moirai_pipe_create(rt, &p.rd, &p.wr), 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    cr_assert_eq(moirai_io_local_addr(p.rd, (struct sockaddr *)&ss, &len), -ENOTSOCK);
    cr_assert_eq(moirai_io_peer_addr(p.wr, (struct sockaddr *)&ss, &len), -ENOTSOCK);
    cr_assert(fcntl(moirai_io_fd(p.rd), F_GETFL) & O_NONBLOCK);
    moirai_handle_t *hr = spawn_with_handle(rt, pipe_reader, &p, NULL);
    moirai_handle_t *hw = spawn_with_handle(rt, pipe_writer, &p, NULL);
    ASSERT_OK(join_and_release(hw, NULL));
    ASSERT_OK(join_and_release(hr, NULL));
    drop_runtime(rt);
}

Test(net, pipe_write_after_reader_closed_is_epipe_not_sigpipe, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_io_t *rd = NULL, *wr = NULL;
    cr_assert_eq(moirai_pipe_create(rt, &rd, &wr), 0);
    cr_assert_eq(moirai_io_close(rd), 0);
    /* SIGPIPE's default action would kill the test here. */
    cr_assert_eq(moirai_stream_write(wr, "x", 1), -EPIPE);
    cr_assert_eq(moirai_stream_write(wr, "x", 1), -EPIPE);
    /* Nothing is left pending for the thread either. */
    sigset_t pending;
    sigpending(&pending);
    cr_assert_not(sigismember(&pending, SIGPIPE));
    cr_assert_eq(moirai_io_close(wr), 0);
    drop_runtime(rt);
}

Test(net, pipe_open_wraps_a_socketpair_end, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    moirai_io_t *io = NULL;
    cr_assert_eq(moirai_pipe_open(&io, rt, sv[0]), 0);
    cr_assert_eq(moirai_io_fd(io), sv[0]);
    cr_assert(fcntl(sv[0], F_GETFL) & O_NONBLOCK, "the handle made the descriptor non-blocking");
    /* The plain end writes, the handle reads; and the other way. */
    cr_assert_eq(write(sv[1], "abc", 3), 3);
    char buf[8];
    cr_assert_eq(read_exact(io, buf, 3), 3);
    cr_assert(memcmp(buf, "abc", 3) == 0);
    cr_assert_eq(moirai_stream_write(io, "defg", 4), 4);
    cr_assert_eq(read(sv[1], buf, sizeof buf), 4);
    cr_assert(memcmp(buf, "defg", 4) == 0);
    /* A socketpair end is a socket: shutdown works, the peer reads EOF. */
    cr_assert_eq(moirai_stream_shutdown(io), 0);
    cr_assert_eq(read(sv[1], buf, sizeof buf), 0);
    /* The peer goes away: end of stream. */
    close(sv[1]);
    cr_assert_eq(moirai_stream_read(io, buf, sizeof buf), 0);
    /* The handle owns the descriptor: closing it closes sv[0]. */
    cr_assert_eq(moirai_io_close(io), 0);
    cr_assert_eq(fcntl(sv[0], F_GETFD), -1);
    cr_assert_eq(errno, EBADF);
    drop_runtime(rt);
}

Test(net, pipe_open_bad_descriptors, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_io_t *io = NULL;
    char file[] = "/tmp/moirai-net-file-XXXXXX";
    int fd = mkstemp(file);
    cr_assert_geq(fd, 0);
    unlink(file);
    int flags = fcntl(fd, F_GETFL);
    /* A regular file or a directory is always "ready": refused, and left
     * as it was. */
    cr_assert_eq(moirai_pipe_open(&io, rt, fd), -EPERM);
    cr_assert_eq(fcntl(fd, F_GETFL), flags);
    close(fd);
    int dfd = open("/tmp", O_RDONLY | O_DIRECTORY);
    cr_assert_geq(dfd, 0);
    cr_assert_eq(moirai_pipe_open(&io, rt, dfd), -EPERM);
    close(dfd);
    /* Not a descriptor. */
    cr_assert_eq(moirai_pipe_open(&io, rt, -1), -EBADF);
    cr_assert_eq(moirai_pipe_open(&io, rt, fd), -EBADF); /* closed above */
    cr_assert_null(io);
    cr_assert_eq(moirai_pipe_open(NULL, rt, 0), -EINVAL);
    cr_assert_eq(moirai_pipe_open(&io, NULL, 0), -EINVAL);
    moirai_io_t *w = NULL;
    cr_assert_eq(moirai_pipe_create(NULL, &io, &w), -EINVAL);
    cr_assert_eq(moirai_pipe_create(rt, NULL, &w), -EINVAL);
    cr_assert_eq(moirai_pipe_create(rt, &io, NULL), -EINVAL);
    drop_runtime(rt);
}

/* ---- Reading into a moirai-mem pool buffer ---- */

Test(net, read_pool_fills_pool_buffers, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_io_t *rd = NULL, *wr = NULL;
    cr_assert_eq(moirai_pipe_create(rt, &rd, &wr), 0);
    moirai_pool_config_t pc;
    moirai_pool_config_init(&pc, 64);
    moirai_pool_t *pool = NULL;
    cr_assert_eq(moirai_pool_create(&pool, &pc), 0);
    unsigned char out[100];
    fill_pattern(out, sizeof out, 11);
    cr_assert_eq(moirai_stream_write(wr, out, sizeof out), 100);
    /* 100 bytes into 64-byte objects: 64, then 36. */
    void *a = NULL, *b = NULL;
    cr_assert_eq(moirai_stream_read_pool(rd, pool, &a), 64);
    cr_assert_not_null(a);
    cr_assert(memcmp(a, out, 64) == 0);
    cr_assert_eq(moirai_stream_read_pool(rd, pool, &b), 36);
    cr_assert(memcmp(b, out + 64, 36) == 0);
    cr_assert_neq(a, b);
    moirai_pool_stats_t st;
    cr_assert_eq(moirai_pool_stats(pool, &st), 0);
    cr_assert_eq(st.in_use, 2);
    moirai_pool_free(pool, a);
    moirai_pool_free(pool, b);
    /* Nothing there before the deadline: -ETIMEDOUT, no buffer kept. */
    void *c = (void *)1;
    cr_assert_eq(
        moirai_stream_read_pool_timed(rd, moirai_deadline_after(MOIRAI_NS_PER_MS), pool, &c),
        -ETIMEDOUT);
    cr_assert_null(c);
    /* End of stream: 0, no buffer kept. */
    cr_assert_eq(moirai_io_close(wr), 0);
    c = (void *)1;
    cr_assert_eq(moirai_stream_read_pool(rd, pool, &c), 0);
    cr_assert_null(c);
    cr_assert_eq(moirai_pool_stats(pool, &st), 0);
    cr_assert_eq(st.in_use, 0, "a buffer was kept on end of stream or error");
    /* NULL pool or buf. */
    cr_assert_eq(moirai_stream_read_pool(rd, NULL, &c), -EINVAL);
    cr_assert_null(c);
    cr_assert_eq(moirai_stream_read_pool(rd, pool, NULL), -EINVAL);
    moirai_pool_destroy(pool);

    /* An exhausted pool: -ENOMEM, nothing read (the bytes stay). */
    cr_assert_eq(moirai_io_close(rd), 0);
    moirai_pool_config_init(&pc, 64);
    pc.capacity = 1;
    pc.magazine_size = 1;
    cr_assert_eq(moirai_pool_create(&pool, &pc), 0);
    cr_assert_eq(moirai_pipe_create(rt, &rd, &wr), 0);
    cr_assert_eq(moirai_stream_write(wr, "data", 4), 4);
    void *only = NULL;
    cr_assert_eq(moirai_pool_alloc(pool, &only), 0);
    c = (void *)1;
    cr_assert_eq(moirai_stream_read_pool(rd, pool, &c), -ENOMEM);
    cr_assert_null(c);
    moirai_pool_free(pool, only);
    cr_assert_eq(moirai_stream_read_pool(rd, pool, &c), 4);
    cr_assert(memcmp(c, "data", 4) == 0);
    moirai_pool_free(pool, c);
    moirai_pool_destroy(pool);
    moirai_io_close(rd);
    moirai_io_close(wr);
    drop_runtime(rt);
}

/* ---- UDP ---- */

enum { UDP_COUNT = 1000, UDP_WINDOW = 50 };

struct udp_ctx {
    moirai_io_t *a, *b;
    struct sockaddr_in a_addr, b_addr;
    uint32_t seen[UDP_COUNT];
};

/* Sends UDP_COUNT datagrams "seq + payload" from a to b, in windows of
 * UDP_WINDOW, each acknowledged by b: at most a window (a few KiB) waits
 * in b's receive buffer, far below its size, so loopback loses none. */
static int udp_sender(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct udp_ctx *u = arg;
    for (uint32_t seq = 0; seq < UDP_COUNT; seq++) {
        unsigned char d[32];
        memcpy(d, &seq, sizeof seq);
        fill_pattern(d + 4, sizeof d - 4, seq);
        size_t len = 4 + seq % 28;
        FCHECK(moirai_udp_send(u->a, d, len, (struct sockaddr *)&u->b_addr) == (ssize_t)len);
        if (seq % UDP_WINDOW == UDP_WINDOW - 1) {
            uint32_t ack = 0;
            struct sockaddr_storage from;
            FCHECK(moirai_udp_recv(u->a, &ack, sizeof ack, &from) == sizeof ack);
            FCHECK(ack == seq);
            FCHECK(((struct sockaddr_in *)&from)->sin_port == u->b_addr.sin_port);
        }
    }
    return 0;
}

static int udp_receiver(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct udp_ctx *u = arg;
    for (uint32_t i = 0; i < UDP_COUNT; i++) {
        unsigned char d[64];
        struct sockaddr_storage from;
        memset(&from, 0, sizeof from);
        ssize_t n = moirai_udp_recv(u->b, d, sizeof d, &from);
        FCHECK(n >= 4);
        uint32_t seq;
        memcpy(&seq, d, sizeof seq);
        FCHECK(seq < UDP_COUNT && (size_t)n == 4 + seq % 28);
        for (ssize_t j = 4; j < n; j++)
            FCHECK(d[j] == pattern_byte(seq, (size_t)j - 4));
        /* The sender's address is reported. */
        struct sockaddr_in *f = (struct sockaddr_in *)&from;
        FCHECK(f->sin_family == AF_INET && f->sin_port == u->a_addr.sin_port &&
               f->sin_addr.s_addr == htonl(INADDR_LOOPBACK));
        u->seen[seq]++;
        if (seq % UDP_WINDOW == UDP_WINDOW - 1)
            FCHECK(moirai_udp_send(u->b, &seq, sizeof seq, (struct sockaddr *)&u->a_addr) ==
                   sizeof seq);
    }
    return 0;
}

Test(net, udp_every_datagram_exactly_once_with_sender_address, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct udp_ctx *u = calloc(1, sizeof *u);
    struct sockaddr_in any = loopback(0);
    cr_assert_eq(moirai_udp_bind(&u->a, rt, (struct sockaddr *)&any), 0);
    cr_assert_eq(moirai_udp_bind(&u->b, rt, (struct sockaddr *)&any), 0);
    u->a_addr = local_of(u->a);
    u->b_addr = local_of(u->b);
    cr_assert_neq(u->a_addr.sin_port, 0);
    cr_assert_neq(u->a_addr.sin_port, u->b_addr.sin_port);
    moirai_handle_t *hr = spawn_with_handle(rt, udp_receiver, u, NULL);
    moirai_handle_t *hs = spawn_with_handle(rt, udp_sender, u, NULL);
    ASSERT_OK(join_and_release(hs, NULL));
    ASSERT_OK(join_and_release(hr, NULL));
    for (int i = 0; i < UDP_COUNT; i++)
        cr_assert_eq(u->seen[i], 1, "datagram %d received %u times", i, u->seen[i]);
    /* Nothing more is queued. */
    char d[8];
    cr_assert_eq(
        moirai_udp_recv_timed(u->b, moirai_deadline_after(MOIRAI_NS_PER_MS), d, sizeof d, NULL),
        -ETIMEDOUT);
    moirai_io_close(u->a);
    moirai_io_close(u->b);
    free(u);
    drop_runtime(rt);
}

Test(net, udp_from_a_plain_thread_and_edge_cases, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_io_t *a = NULL, *b = NULL, *c = NULL;
    struct sockaddr_in any = loopback(0);
    cr_assert_eq(moirai_udp_bind(&a, rt, (struct sockaddr *)&any), 0);
    cr_assert_eq(moirai_udp_bind(&b, rt, (struct sockaddr *)&any), 0);
    struct sockaddr_in ba = local_of(b), aa = local_of(a);
    /* A datagram longer than the buffer is cut; the rest is dropped and
     * the next receive gets the next datagram. */
    unsigned char big[100];
    fill_pattern(big, sizeof big, 1);
    cr_assert_eq(moirai_udp_send(a, big, sizeof big, (struct sockaddr *)&ba), 100);
    cr_assert_eq(moirai_udp_send(a, "next", 4, (struct sockaddr *)&ba), 4);
    unsigned char in[10];
    struct sockaddr_storage from;
    cr_assert_eq(moirai_udp_recv(b, in, sizeof in, &from), 10);
    cr_assert(memcmp(in, big, 10) == 0);
    cr_assert_eq(((struct sockaddr_in *)&from)->sin_port, aa.sin_port);
    cr_assert_eq(moirai_udp_recv(b, in, sizeof in, NULL), 4);
    cr_assert(memcmp(in, "next", 4) == 0);
    /* Empty datagrams are datagrams. */
    cr_assert_eq(moirai_udp_send(a, NULL, 0, (struct sockaddr *)&ba), 0);
    cr_assert_eq(moirai_udp_recv(b, in, sizeof in, NULL), 0);
    /* Too large for a datagram. */
    size_t huge_len = 70000;
    unsigned char *huge = calloc(1, huge_len);
    cr_assert_eq(moirai_udp_send(a, huge, huge_len, (struct sockaddr *)&ba), -EMSGSIZE);
    free(huge);
    /* The port is taken. */
    cr_assert_eq(moirai_udp_bind(&c, rt, (struct sockaddr *)&ba), -EADDRINUSE);
    cr_assert_null(c);
    /* Bad input. */
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    cr_assert_eq(moirai_udp_bind(&c, rt, (struct sockaddr *)&sun), -EINVAL);
    cr_assert_eq(moirai_udp_bind(NULL, rt, (struct sockaddr *)&any), -EINVAL);
    cr_assert_eq(moirai_udp_bind(&c, NULL, (struct sockaddr *)&any), -EINVAL);
    cr_assert_eq(moirai_udp_bind(&c, rt, NULL), -EINVAL);
    cr_assert_eq(moirai_udp_send(a, "x", 1, NULL), -EINVAL);
    cr_assert_eq(moirai_udp_send(a, NULL, 1, (struct sockaddr *)&ba), -EINVAL);
    cr_assert_eq(moirai_udp_send(a, "x", 1, (struct sockaddr *)&sun), -EINVAL);
    cr_assert_eq(moirai_udp_send(NULL, "x", 1, (struct sockaddr *)&ba), -EINVAL);
    cr_assert_eq(moirai_udp_recv(b, NULL, 1, NULL), -EINVAL);
    cr_assert_eq(moirai_udp_recv(NULL, in, 1, NULL), -EINVAL);
    cr_assert_eq(moirai_udp_recv(b, in, (size_t)SSIZE_MAX + 1, NULL), -EINVAL);
    /* Stream calls on a datagram socket: no listener, so accept is
     * -EINVAL. */
    moirai_io_t *s = NULL;
    cr_assert_eq(moirai_stream_accept(b, &s), -EINVAL);
    /* Nor is it a stream: read, write and shutdown refuse it. */
    cr_assert_eq(moirai_stream_read(b, in, sizeof in), -EINVAL);
    cr_assert_eq(moirai_stream_write(b, "x", 1), -EINVAL);
    cr_assert_eq(moirai_stream_shutdown(b), -EINVAL);
    /* A deadline on a plain thread's receive. */
    cr_assert_eq(
        moirai_udp_recv_timed(b, moirai_deadline_after(MOIRAI_NS_PER_MS), in, sizeof in, NULL),
        -ETIMEDOUT);
    /* Closed. */
    cr_assert_eq(moirai_io_close(b), 0);
    cr_assert_eq(moirai_udp_recv(b, in, sizeof in, NULL), -EBADF);
    cr_assert_eq(moirai_udp_send(b, "x", 1, (struct sockaddr *)&aa), -EBADF);
    cr_assert_eq(moirai_io_close(a), 0);
    drop_runtime(rt);
}

/* ---- Bad input on streams ---- */

Test(net, stream_bad_input, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    struct sockaddr_in any = loopback(0);
    moirai_io_t *l = NULL, *c = NULL, *s = NULL, *x = NULL;
    /* NULL arguments and foreign families. */
    cr_assert_eq(moirai_tcp_listen(NULL, rt, (struct sockaddr *)&any, NULL), -EINVAL);
    cr_assert_eq(moirai_tcp_listen(&x, NULL, (struct sockaddr *)&any, NULL), -EINVAL);
    cr_assert_eq(moirai_tcp_listen(&x, rt, NULL, NULL), -EINVAL);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    cr_assert_eq(moirai_tcp_listen(&x, rt, (struct sockaddr *)&sun, NULL), -EINVAL);
    cr_assert_eq(moirai_tcp_connect(NULL, rt, (struct sockaddr *)&any, NULL), -EINVAL);
    cr_assert_eq(moirai_tcp_connect(&x, NULL, (struct sockaddr *)&any, NULL), -EINVAL);
    cr_assert_eq(moirai_tcp_connect(&x, rt, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_tcp_connect(&x, rt, (struct sockaddr *)&sun, NULL), -EINVAL);
    cr_assert_null(x);
    char buf[8];
    cr_assert_eq(moirai_stream_read(NULL, buf, 1), -EINVAL);
    cr_assert_eq(moirai_stream_write(NULL, buf, 1), -EINVAL);
    cr_assert_eq(moirai_stream_writev(NULL, NULL, 0), -EINVAL);
    cr_assert_eq(moirai_stream_accept(NULL, &x), -EINVAL);
    cr_assert_eq(moirai_stream_shutdown(NULL), -EINVAL);
    cr_assert_eq(moirai_io_close(NULL), -EINVAL);
    cr_assert_eq(moirai_io_fd(NULL), -EINVAL);
    socklen_t alen = sizeof any;
    cr_assert_eq(moirai_io_local_addr(NULL, (struct sockaddr *)&any, &alen), -EINVAL);

    cr_assert_eq(moirai_tcp_listen(&l, rt, (struct sockaddr *)&any, NULL), 0);
    struct sockaddr_in addr = local_of(l);
    cr_assert_eq(moirai_io_local_addr(l, NULL, &alen), -EINVAL);
    cr_assert_eq(moirai_io_local_addr(l, (struct sockaddr *)&any, NULL), -EINVAL);
    /* The port is in use (even with SO_REUSEADDR: it is listening). */
    cr_assert_eq(moirai_tcp_listen(&x, rt, (struct sockaddr *)&addr, NULL), -EADDRINUSE);
    cr_assert_null(x);
    /* Wrong kinds: a listener is not read or written; a stream does not
     * accept; a stream is not a datagram socket. */
    cr_assert_eq(moirai_stream_read(l, buf, 1), -EINVAL);
    cr_assert_eq(moirai_stream_write(l, buf, 1), -EINVAL);
    cr_assert_eq(moirai_stream_shutdown(l), -EINVAL);
    cr_assert_eq(moirai_stream_accept(l, NULL), -EINVAL);
    cr_assert_eq(moirai_tcp_connect(&c, rt, (struct sockaddr *)&addr, NULL), 0);
    cr_assert_eq(moirai_stream_accept(l, &s), 0);
    cr_assert_eq(moirai_stream_accept(c, &x), -EINVAL);
    cr_assert_eq(moirai_udp_send(c, "x", 1, (struct sockaddr *)&addr), -EINVAL);
    cr_assert_eq(moirai_udp_recv(c, buf, 1, NULL), -EINVAL);
    /* A socket that never connected has nothing to shut down. */
    int lone = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(moirai_pipe_open(&x, rt, lone), 0);
    cr_assert_eq(moirai_stream_shutdown(x), -ENOTCONN);
    cr_assert_eq(moirai_io_close(x), 0);
    x = NULL;
    cr_assert_eq(moirai_stream_read(c, NULL, 1), -EINVAL);
    cr_assert_eq(moirai_stream_read(c, buf, (size_t)SSIZE_MAX + 1), -EINVAL);
    cr_assert_eq(moirai_stream_write(c, NULL, 1), -EINVAL);
    /* Length 0 is 0, without waiting for data that never comes. */
    cr_assert_eq(moirai_stream_read(c, buf, 0), 0);
    cr_assert_eq(moirai_stream_read(c, NULL, 0), 0);
    /* None of that sent anything. */
    cr_assert_eq(moirai_stream_read_timed(s, moirai_deadline_after(MOIRAI_NS_PER_MS), buf, 1),
                 -ETIMEDOUT);

    /* Closed handles: -EBADF everywhere, a second close too. */
    cr_assert_eq(moirai_io_close(s), 0);
    cr_assert_eq(moirai_io_close(s), -EBADF);
    cr_assert_eq(moirai_stream_read(s, buf, 1), -EBADF);
    cr_assert_eq(moirai_stream_write(s, buf, 1), -EBADF);
    cr_assert_eq(moirai_stream_shutdown(s), -EBADF);
    cr_assert_eq(moirai_io_fd(s), -EBADF);
    cr_assert_eq(moirai_io_local_addr(s, (struct sockaddr *)&any, &alen), -EBADF);
    cr_assert_eq(moirai_io_close(l), 0);
    cr_assert_eq(moirai_stream_accept(l, &x), -EBADF);
    cr_assert_eq(moirai_io_close(l), -EBADF);
    cr_assert_eq(moirai_io_close(c), 0);
    drop_runtime(rt);
}

Test(net, connection_refused, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    /* A port that is bound but not listening: the kernel answers the SYN
     * with a reset, and nobody else can take the port meanwhile. */
    int hold = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = loopback(0);
    cr_assert_eq(bind(hold, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    cr_assert_eq(getsockname(hold, (struct sockaddr *)&addr, &len), 0);
    int fds = count_fds();
    moirai_io_t *c = NULL;
    cr_assert_eq(moirai_tcp_connect(&c, rt, (struct sockaddr *)&addr, NULL), -ECONNREFUSED);
    cr_assert_null(c);
    cr_assert_eq(count_fds(), fds, "a refused connect left its socket open");
    close(hold);
    drop_runtime(rt);
}

Test(net, write_to_a_closed_peer_fails_without_sigpipe, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    struct sockaddr_in any = loopback(0);
    moirai_io_t *l = NULL, *c = NULL, *s = NULL;
    cr_assert_eq(moirai_tcp_listen(&l, rt, (struct sockaddr *)&any, NULL), 0);
    struct sockaddr_in addr = local_of(l);
    cr_assert_eq(moirai_tcp_connect(&c, rt, (struct sockaddr *)&addr, NULL), 0);
    cr_assert_eq(moirai_stream_accept(l, &s), 0);
    cr_assert_eq(moirai_io_close(s), 0);
    char buf[64];
    cr_assert_eq(moirai_stream_read(c, buf, sizeof buf), 0);
    /* The first write may still be accepted (the peer answers it with a
     * reset); a later one fails with -EPIPE or -ECONNRESET, and SIGPIPE
     * would have killed the test. */
    ssize_t rc = 0;
    for (int i = 0; i < 1000 && rc >= 0; i++) {
        rc = moirai_stream_write(c, buf, sizeof buf);
        if (rc >= 0) {
            cr_assert_eq(rc, (ssize_t)sizeof buf);
            usleep(1000);
        }
    }
    cr_assert(rc == -EPIPE || rc == -ECONNRESET, "write to a closed peer returned %zd", rc);
    cr_assert_eq(moirai_io_close(c), 0);
    cr_assert_eq(moirai_io_close(l), 0);
    drop_runtime(rt);
}

/* ---- -ENOMEM: the handle slab grows (the first handle of a runtime,
 * and the 257th) ---- */

struct oom_ctx {
    moirai_runtime_t *rt;
    int kind;
    int fd;  /* pipe_open: the descriptor to wrap */
    int fds; /* descriptors open before */
};

static int open_one(void *arg)
{
    struct oom_ctx *o = arg;
    struct sockaddr_in any = loopback(0);
    moirai_io_t *io = NULL, *io2 = NULL;
    int rc;
    switch (o->kind) {
    case 0:
        rc = moirai_tcp_listen(&io, o->rt, (struct sockaddr *)&any, NULL);
        break;
    case 1:
        rc = moirai_udp_bind(&io, o->rt, (struct sockaddr *)&any);
        break;
    case 2:
        rc = moirai_pipe_create(o->rt, &io, &io2);
        break;
    default:
        rc = moirai_pipe_open(&io, o->rt, o->fd);
        break;
    }
    if (rc == 0) {
        moirai_io_close(io);
        if (io2 != NULL)
            moirai_io_close(io2);
    }
    return rc;
}

static void oom_left_nothing(void *arg, long n)
{
    struct oom_ctx *o = arg;
    cr_assert_eq(count_fds(), o->fds, "kind %d: failure %ld left a descriptor open", o->kind, n);
}

Test(net, enomem_on_the_first_handle_of_a_runtime, .timeout = 60)
{
    for (int kind = 0; kind < 4; kind++) {
        struct oom_ctx o = {make_runtime(1), kind, -1, 0};
        int sv[2] = {-1, -1};
        if (kind == 3) {
            cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
            o.fd = sv[0];
        }
        o.fds = count_fds();
        moirai_test_oom_install();
        long failures = MOIRAI_TEST_OOM_SWEEP(open_one, oom_left_nothing, &o);
        moirai_test_oom_uninstall();
        cr_assert_gt(failures, 0, "kind %d allocated nothing", kind);
        if (kind == 3) {
            /* The successful run's handle closed sv[0]. */
            cr_assert_eq(fcntl(sv[0], F_GETFD), -1);
            close(sv[1]);
        }
        drop_runtime(o.rt);
    }
}

Test(net, enomem_in_pipe_open_leaves_the_descriptor_open, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    moirai_io_t *io = NULL;
    moirai_test_oom_install();
    moirai_test_oom_fail_at(0);
    int rc = moirai_pipe_open(&io, rt, sv[0]);
    moirai_test_oom_uninstall();
    cr_assert_eq(rc, -ENOMEM);
    cr_assert_null(io);
    /* Still open and usable by its owner. */
    cr_assert_eq(write(sv[0], "z", 1), 1);
    char ch;
    cr_assert_eq(read(sv[1], &ch, 1), 1);
    cr_assert_eq(moirai_pipe_open(&io, rt, sv[0]), 0);
    cr_assert_eq(moirai_io_close(io), 0);
    close(sv[1]);
    drop_runtime(rt);
}

/* Fills the first slab chunk (256 handles) so the next handle needs a new
 * chunk: an accept then fails with -ENOMEM and drops the connection, and a
 * connect fails with -ENOMEM leaving no descriptor; both work afterwards. */
Test(net, enomem_when_the_slab_grows_in_accept_and_connect, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(1);
    struct sockaddr_in any = loopback(0);
    moirai_io_t *l = NULL, *c = NULL, *c2 = NULL, *s = NULL;
    cr_assert_eq(moirai_tcp_listen(&l, rt, (struct sockaddr *)&any, NULL), 0);
    struct sockaddr_in addr = local_of(l);
    cr_assert_eq(moirai_tcp_connect(&c, rt, (struct sockaddr *)&addr, NULL), 0);
    /* 2 handles so far; 127 pipes make 256. */
    moirai_io_t *pipes[254];
    for (int i = 0; i < 254; i += 2)
        cr_assert_eq(moirai_pipe_create(rt, &pipes[i], &pipes[i + 1]), 0);
    int fds = count_fds();
    moirai_test_oom_install();
    moirai_test_oom_fail_at(0);
    int rc = moirai_stream_accept(l, &s);
    long allocs = moirai_test_oom_count();
    moirai_test_oom_uninstall();
    cr_assert_eq(rc, -ENOMEM, "accept returned %d after %ld allocations", rc, allocs);
    cr_assert_null(s);
    cr_assert_eq(count_fds(), fds, "the dropped connection's descriptor is still open");
    /* The client sees the connection go away. */
    char buf[4];
    ssize_t n = moirai_stream_read(c, buf, sizeof buf);
    cr_assert(n == 0 || n == -ECONNRESET, "read on a dropped connection returned %zd", n);
    moirai_io_close(c);
    /* A connect needing the new chunk. */
    fds = count_fds();
    cr_assert_eq(moirai_tcp_connect(&c, rt, (struct sockaddr *)&addr, NULL), 0);
    cr_assert_eq(count_fds(), fds + 1);
    moirai_test_oom_install();
    moirai_test_oom_fail_at(0);
    rc = moirai_tcp_connect(&c2, rt, (struct sockaddr *)&addr, NULL);
    moirai_test_oom_uninstall();
    cr_assert_eq(rc, -ENOMEM);
    cr_assert_null(c2);
    cr_assert_eq(count_fds(), fds + 1, "a failed connect left a descriptor open");
    /* Both work afterwards: the connect the kernel completed (c) is
     * accepted, and one more connection goes through end to end. */
    cr_assert_eq(moirai_stream_accept(l, &s), 0);
    moirai_io_close(s);
    /* The connect that failed may have reached the backlog: drain it. */
    moirai_io_t *maybe = NULL;
    if (moirai_stream_accept_timed(l, moirai_deadline_after(50 * MOIRAI_NS_PER_MS), &maybe) == 0)
        moirai_io_close(maybe);
    cr_assert_eq(moirai_tcp_connect(&c2, rt, (struct sockaddr *)&addr, NULL), 0);
    cr_assert_eq(moirai_stream_accept(l, &s), 0);
    cr_assert_eq(moirai_stream_write(c2, "ok", 2), 2);
    cr_assert_eq(read_exact(s, buf, 2), 2);
    cr_assert(memcmp(buf, "ok", 2) == 0);
    moirai_io_close(s);
    moirai_io_close(c2);
    moirai_io_close(c);
    for (int i = 0; i < 254; i++)
        moirai_io_close(pipes[i]);
    moirai_io_close(l);
    drop_runtime(rt);
}

/* pipe_create whose second handle needs a new chunk: the first handle
 * took the chunk's last slot, the second fails, and nothing stays open. */
Test(net, enomem_on_the_second_handle_of_pipe_create, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_io_t *ends[254];
    for (int i = 0; i < 254; i += 2)
        cr_assert_eq(moirai_pipe_create(rt, &ends[i], &ends[i + 1]), 0);
    moirai_io_t *one = NULL;
    struct sockaddr_in any = loopback(0);
    cr_assert_eq(moirai_udp_bind(&one, rt, (struct sockaddr *)&any), 0); /* 255 */
    int fds = count_fds();
    moirai_io_t *rd = NULL, *wr = NULL;
    moirai_test_oom_install();
    moirai_test_oom_fail_at(0);
    int rc = moirai_pipe_create(rt, &rd, &wr);
    moirai_test_oom_uninstall();
    cr_assert_eq(rc, -ENOMEM);
    cr_assert_null(rd);
    cr_assert_eq(count_fds(), fds, "a failed pipe_create left a descriptor open");
    /* With memory, it works and the pipe carries data. */
    cr_assert_eq(moirai_pipe_create(rt, &rd, &wr), 0);
    cr_assert_eq(moirai_stream_write(wr, "p", 1), 1);
    char ch;
    cr_assert_eq(moirai_stream_read(rd, &ch, 1), 1);
    cr_assert_eq(ch, 'p');
    moirai_io_close(rd);
    moirai_io_close(wr);
    moirai_io_close(one);
    for (int i = 0; i < 254; i++)
        moirai_io_close(ends[i]);
    drop_runtime(rt);
}
