/* moirai-bench, suite "async": the libuv peer ("libuv") of tcp_echo_rtt and
 * tcp_echo_100c (see io_peers.h).
 *
 * Raw libuv callbacks, the way a libuv program would write an echo: one
 * loop on the calling thread holds the listener, the server side of every
 * connection and every client, so a round trip never crosses threads
 * (which is libuv's model: one loop, one thread). TCP_NODELAY on both
 * sides. Writes try uv_try_write first and queue a uv_write only for what
 * the socket did not take.
 *
 * A run has three phases: every client connects and is accepted; every
 * client makes its warm-up round trips; then the clock starts and every
 * client makes its timed round trips, each sending its next 64 B only
 * once all 64 of the echo are back (sequential request/response). Each
 * client checks every echoed byte against what it sent. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../bench.h"
#include "io_peers.h"

#define SERVER_BUF 65536

typedef struct echo_run echo_run_t;

typedef struct server_conn {
    uv_tcp_t tcp;
    echo_run_t *run;
    char buf[SERVER_BUF];
} server_conn_t;

typedef struct client {
    uv_tcp_t tcp;
    uv_connect_t connect;
    echo_run_t *run;
    char msg[IO_ECHO_BYTES];
    char got_buf[SERVER_BUF];
    size_t got;      /* bytes of the current echo received */
    uint64_t done;   /* round trips completed */
    uint64_t target; /* round trips of the current phase */
} client_t;

struct echo_run {
    uv_loop_t loop;
    uv_tcp_t listener;
    int clients_n;
    uint64_t warm, timed;
    client_t *clients;
    server_conn_t **conns;
    int accepted, connected, warmed, finished;
    int error; /* the first failure, negative errno */
    uint64_t t0, t1;
};

/* A uv_write that owns a copy of what it writes. */
typedef struct write_req {
    uv_write_t req;
    char data[];
} write_req_t;

static void fail(echo_run_t *r, int err, const char *what)
{
    if (!r->error) {
        r->error = err ? err : -EIO;
        fprintf(stderr, "async/tcp_echo: libuv: %s: %s\n", what, uv_strerror(r->error));
    }
    uv_stop(&r->loop);
}

static void after_write(uv_write_t *req, int status)
{
    if (status < 0)
        fail(req->data, status, "uv_write");
    free(req);
}

/* Writes `len` bytes on `stream`: as much as the socket takes now, and a
 * queued copy of the rest. */
static void write_all(echo_run_t *r, uv_stream_t *stream, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write(stream, &b, 1);
    if (n == (int)len)
        return;
    if (n < 0 && n != UV_EAGAIN) {
        fail(r, n, "uv_try_write");
        return;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    write_req_t *w = malloc(sizeof(*w) + len - done);
    if (!w) {
        fail(r, -ENOMEM, "malloc");
        return;
    }
    memcpy(w->data, data + done, len - done);
    w->req.data = r;
    b = uv_buf_init(w->data, (unsigned)(len - done));
    int err = uv_write(&w->req, stream, &b, 1, after_write);
    if (err < 0) {
        free(w);
        fail(r, err, "uv_write");
    }
}

static void server_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    server_conn_t *c = h->data;
    *buf = uv_buf_init(c->buf, sizeof(c->buf));
}

static void server_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    server_conn_t *c = s->data;
    if (n > 0)
        write_all(c->run, s, buf->base, (size_t)n);
    else if (n < 0 && n != UV_EOF)
        fail(c->run, (int)n, "server read");
}

static void client_send(client_t *c)
{
    c->got = 0;
    write_all(c->run, (uv_stream_t *)&c->tcp, c->msg, sizeof(c->msg));
}

static void start_timed(echo_run_t *r)
{
    r->t0 = bench_now_ns();
    for (int i = 0; i < r->clients_n; i++) {
        client_t *c = &r->clients[i];
        c->done = 0;
        c->target = r->timed;
        client_send(c);
    }
}

static void start_warm(echo_run_t *r)
{
    if (r->warm == 0) {
        start_timed(r);
        return;
    }
    for (int i = 0; i < r->clients_n; i++) {
        r->clients[i].target = r->warm;
        client_send(&r->clients[i]);
    }
}

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    client_t *c = h->data;
    *buf = uv_buf_init(c->got_buf, sizeof(c->got_buf));
}

static void close_all(echo_run_t *r);

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client_t *c = s->data;
    echo_run_t *r = c->run;
    if (n < 0) {
        fail(r, (int)n, "client read");
        return;
    }
    if (n == 0)
        return;
    if (c->got + (size_t)n > sizeof(c->msg) || memcmp(buf->base, c->msg + c->got, (size_t)n)) {
        fail(r, -EPROTO, "echo differs from the request");
        return;
    }
    c->got += (size_t)n;
    if (c->got < sizeof(c->msg))
        return;
    if (++c->done < c->target) {
        client_send(c);
        return;
    }
    /* This client's phase is over. */
    if (r->t0 == 0) {
        if (++r->warmed == r->clients_n)
            start_timed(r);
    } else if (++r->finished == r->clients_n) {
        r->t1 = bench_now_ns();
        close_all(r);
    }
}

static void maybe_begin(echo_run_t *r)
{
    if (r->accepted == r->clients_n && r->connected == r->clients_n)
        start_warm(r);
}

static void client_connected(uv_connect_t *req, int status)
{
    client_t *c = req->data;
    echo_run_t *r = c->run;
    if (status < 0) {
        fail(r, status, "uv_tcp_connect");
        return;
    }
    int err = uv_tcp_nodelay(&c->tcp, 1);
    if (err == 0)
        err = uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read);
    if (err < 0) {
        fail(r, err, "client set-up");
        return;
    }
    r->connected++;
    maybe_begin(r);
}

static void on_connection(uv_stream_t *listener, int status)
{
    echo_run_t *r = listener->data;
    if (status < 0) {
        fail(r, status, "listen");
        return;
    }
    server_conn_t *c = malloc(sizeof(*c));
    if (!c) {
        fail(r, -ENOMEM, "malloc");
        return;
    }
    c->run = r;
    c->tcp.data = c;
    uv_tcp_init(&r->loop, &c->tcp);
    int err = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (err == 0 && r->accepted >= r->clients_n)
        err = -EPROTO;
    if (err < 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        fail(r, err, "uv_accept");
        return;
    }
    r->conns[r->accepted++] = c;
    err = uv_tcp_nodelay(&c->tcp, 1);
    if (err == 0)
        err = uv_read_start((uv_stream_t *)&c->tcp, server_alloc, server_read);
    if (err < 0) {
        fail(r, err, "server set-up");
        return;
    }
    maybe_begin(r);
}

static void free_conn(uv_handle_t *h)
{
    free(h->data);
}

static void close_all(echo_run_t *r)
{
    for (int i = 0; i < r->accepted; i++) {
        if (!uv_is_closing((uv_handle_t *)&r->conns[i]->tcp))
            uv_close((uv_handle_t *)&r->conns[i]->tcp, free_conn);
    }
    r->accepted = 0;
    for (int i = 0; i < r->clients_n; i++) {
        if (!uv_is_closing((uv_handle_t *)&r->clients[i].tcp))
            uv_close((uv_handle_t *)&r->clients[i].tcp, NULL);
    }
    if (!uv_is_closing((uv_handle_t *)&r->listener))
        uv_close((uv_handle_t *)&r->listener, NULL);
}

/* Runs one measurement; returns ns per round trip, or -1. */
static double echo(int clients_n, uint64_t per_client, uint64_t warm)
{
    echo_run_t *r = calloc(1, sizeof(*r));
    if (!r)
        return -1.0;
    r->clients_n = clients_n;
    r->warm = warm;
    r->timed = per_client ? per_client : 1;
    r->clients = calloc((size_t)clients_n, sizeof(*r->clients));
    r->conns = calloc((size_t)clients_n, sizeof(*r->conns));
    int err = r->clients && r->conns ? uv_loop_init(&r->loop) : -ENOMEM;
    if (err < 0) {
        free(r->clients);
        free(r->conns);
        free(r);
        return -1.0;
    }
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(&r->loop, &r->listener);
    r->listener.data = r;
    err = uv_tcp_bind(&r->listener, (struct sockaddr *)&addr, 0);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&r->listener, 1024, on_connection);
    int len = sizeof(addr);
    if (err == 0)
        err = uv_tcp_getsockname(&r->listener, (struct sockaddr *)&addr, &len);
    for (int i = 0; i < clients_n && err == 0; i++) {
        client_t *c = &r->clients[i];
        c->run = r;
        for (size_t b = 0; b < sizeof(c->msg); b++)
            c->msg[b] = (char)('a' + (i + (int)b) % 26);
        uv_tcp_init(&r->loop, &c->tcp);
        c->tcp.data = c;
        c->connect.data = c;
        err = uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&addr, client_connected);
        if (err < 0)
            uv_close((uv_handle_t *)&c->tcp, NULL);
    }
    if (err < 0)
        fail(r, err, "set-up");
    else
        uv_run(&r->loop, UV_RUN_DEFAULT);
    /* After a failure the loop stopped early: close what is open and let
     * the close callbacks run. */
    close_all(r);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    double t = -1.0;
    if (!r->error && r->t1 > r->t0 && r->t0 != 0)
        t = io_per_op(r->t0, r->t1, (uint64_t)clients_n * r->timed);
    if (uv_loop_close(&r->loop) != 0)
        t = -1.0;
    free(r->clients);
    free(r->conns);
    free(r);
    return t;
}

double io_uv_echo_rtt(uint64_t iters)
{
    double ns = echo(1, iters, IO_ECHO_WARM_UP);
    return ns < 0 ? ns : ns / 1000.0;
}

double io_uv_echo_100c(uint64_t iters)
{
    uint64_t per = iters / IO_ECHO_CONNS;
    return echo(IO_ECHO_CONNS, per ? per : 1, 10);
}
