/* moirai-bench, suite "async": the libuv HTTP server ("libuv") of
 * http_hello_keepalive (see io_peers.h).
 *
 * Raw libuv callbacks on one loop, run by one thread of its own (a libuv
 * loop belongs to one thread). Each connection reads into its own buffer,
 * counts the complete requests in it, and answers all of them with one
 * write (uv_try_write first, a queued uv_write for what the socket did not
 * take); a partial request stays in the buffer for the next read. The
 * connection stays open (keep-alive) until the client closes it. stop()
 * wakes the loop with a uv_async_t (its cost does not matter here: it
 * runs once, after the measurement), which closes every handle. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "io_peers.h"

#define CONN_BUF 16384
#define RESPONSE IO_HTTP_RESPONSE

typedef struct http_conn {
    uv_tcp_t tcp;
    size_t have; /* bytes of a partial request kept at the buffer's start */
    char buf[CONN_BUF];
} http_conn_t;

typedef struct write_req {
    uv_write_t req;
    char data[];
} write_req_t;

static uv_loop_t loop;
static uv_tcp_t listener;
static uv_async_t stopper;
static pthread_t thread;

static void free_handle(uv_handle_t *h)
{
    free(h->data);
}

static void close_conn(http_conn_t *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, free_handle);
}

static void after_write(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows as a read error next */
    free(req);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    http_conn_t *c = h->data;
    *buf = uv_buf_init(c->buf + c->have, (unsigned)(sizeof(c->buf) - c->have));
}

/* Answers `count` requests on `c` with one write. */
static int respond(http_conn_t *c, size_t count)
{
    static const char one[] = RESPONSE;
    enum { ONE = sizeof(one) - 1 };
    char stack[16 * ONE];
    size_t len = count * ONE;
    char *out = len <= sizeof(stack) ? stack : malloc(len);
    if (!out)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++)
        memcpy(out + i * ONE, one, ONE);
    uv_buf_t b = uv_buf_init(out, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    int err = 0;
    if (n != (int)len) {
        if (n < 0 && n != UV_EAGAIN) {
            err = n;
        } else {
            size_t done = n > 0 ? (size_t)n : 0;
            write_req_t *w = malloc(sizeof(*w) + len - done);
            if (!w) {
                err = -ENOMEM;
            } else {
                memcpy(w->data, out + done, len - done);
                b = uv_buf_init(w->data, (unsigned)(len - done));
                err = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, after_write);
                if (err < 0)
                    free(w);
            }
        }
    }
    if (out != stack)
        free(out);
    return err;
}

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    http_conn_t *c = s->data;
    if (n < 0) {
        close_conn(c);
        return;
    }
    c->have += (size_t)n;
    size_t used;
    size_t count = io_http_requests(c->buf, c->have, &used);
    if (count && respond(c, count) < 0) {
        close_conn(c);
        return;
    }
    memmove(c->buf, c->buf + used, c->have - used);
    c->have -= used;
    if (c->have == sizeof(c->buf)) /* a request larger than the buffer */
        close_conn(c);
}

static void on_connection(uv_stream_t *l, int status)
{
    if (status < 0)
        return;
    http_conn_t *c = malloc(sizeof(*c));
    if (!c)
        return;
    c->have = 0;
    c->tcp.data = c;
    uv_tcp_init(&loop, &c->tcp);
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0 || uv_tcp_nodelay(&c->tcp, 1) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read) < 0)
        close_conn(c);
}

static void close_every(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    uv_close(h, h == (uv_handle_t *)&listener || h == (uv_handle_t *)&stopper ? NULL : free_handle);
}

static void on_stop(uv_async_t *a)
{
    uv_walk(a->loop, close_every, NULL);
}

static void *run_loop(void *arg)
{
    (void)arg;
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

static int uv_http_start(int *port)
{
    int err = uv_loop_init(&loop);
    if (err < 0)
        return err;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(&loop, &listener);
    uv_async_init(&loop, &stopper, on_stop);
    listener.data = NULL;
    stopper.data = NULL;
    err = uv_tcp_bind(&listener, (struct sockaddr *)&addr, 0);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&listener, 1024, on_connection);
    int len = sizeof(addr);
    if (err == 0)
        err = uv_tcp_getsockname(&listener, (struct sockaddr *)&addr, &len);
    if (err == 0)
        err = -pthread_create(&thread, NULL, run_loop, NULL);
    if (err < 0) {
        uv_close((uv_handle_t *)&listener, NULL);
        uv_close((uv_handle_t *)&stopper, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return err;
    }
    *port = ntohs(addr.sin_port);
    return 0;
}

static int uv_http_stop(void)
{
    uv_async_send(&stopper);
    pthread_join(thread, NULL);
    return uv_loop_close(&loop);
}

const io_http_server_t io_uv_http = {uv_http_start, uv_http_stop};
