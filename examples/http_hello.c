/* moirai-async: a minimal HTTP/1.1 keep-alive server, one fiber per
 * connection, written the way a thread-per-connection server is.
 *
 *   http_hello PORT        serve "Hello, World!" on 127.0.0.1:PORT (0: any
 *                          free port) until killed; prints the port
 *   http_hello --self-test serve on a free port, drive it with 20 client
 *                          fibers making 100 keep-alive requests each (the
 *                          last ten pipelined in one write), check every
 *                          response, and exit 0 only if all were right
 *
 * Each connection's fiber reads into its buffer (moirai_stream_read parks
 * only that fiber until bytes arrive), answers every complete request in
 * it with one write, and keeps what is left of a partial request for the
 * next read. Requests are taken to have no body (GET), which is all that
 * `wrk` and `curl` send here. moirai-bench's http_hello_keepalive runs
 * the same server in its own process (bench/async/bench_async_io.c). */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/async.h>
#include <moirai/async/net.h>
#include <moirai/core.h>
#include <moirai/sync.h>

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
enum { RESPONSE_LEN = sizeof(RESPONSE) - 1, MAX_BATCH = 16, CONN_BUF = 16384 };

static moirai_runtime_t *rt;
static moirai_io_t *listener;

/* Counts the complete requests (header blocks ending in an empty line) at
 * the start of buf[0..len) and sets *used to the bytes they take. */
static size_t complete_requests(const char *buf, size_t len, size_t *used)
{
    size_t count = 0, start = 0;
    const char *end;
    while ((end = memmem(buf + start, len - start, "\r\n\r\n", 4)) != NULL) {
        count++;
        start = (size_t)(end - buf) + 4;
    }
    *used = start;
    return count;
}

/* One connection: read, answer, repeat until the client closes. */
static int serve_connection(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    moirai_io_t *io = arg;
    char buf[CONN_BUF], out[MAX_BATCH * RESPONSE_LEN];
    size_t have = 0;
    for (;;) {
        ssize_t n = moirai_stream_read(io, buf + have, sizeof(buf) - have);
        if (n <= 0)
            break; /* end of stream, or the connection failed */
        have += (size_t)n;
        size_t used;
        size_t count = complete_requests(buf, have, &used);
        int failed = 0;
        while (count > 0 && !failed) {
            size_t batch = count < MAX_BATCH ? count : MAX_BATCH;
            for (size_t i = 0; i < batch; i++)
                memcpy(out + i * RESPONSE_LEN, RESPONSE, RESPONSE_LEN);
            ssize_t len = (ssize_t)(batch * RESPONSE_LEN);
            failed = moirai_stream_write(io, out, (size_t)len) != len;
            count -= batch;
        }
        memmove(buf, buf + used, have - used);
        have -= used;
        if (failed || have == sizeof(buf))
            break; /* a write failed, or a request larger than the buffer */
    }
    moirai_io_close(io);
    return 0;
}

/* Accepts connections until cancelled, a fiber for each. */
static int accept_loop(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)result;
    /* The token is checked on every turn: under a storm of connections
     * accept never has to wait, so it would never see the cancellation. */
    while (!moirai_cancel_token_is_cancelled(cancel)) {
        moirai_io_t *conn;
        int err = moirai_stream_accept(listener, &conn);
        if (err == -ECANCELED || err == -EBADF)
            return 0; /* stopping */
        if (err != 0) {
            fprintf(stderr, "http_hello: accept: %s\n", moirai_strerror(err));
            continue;
        }
        err = moirai_fiber_spawn(rt, serve_connection, conn, NULL, NULL);
        if (err != 0) {
            fprintf(stderr, "http_hello: spawn: %s\n", moirai_strerror(err));
            moirai_io_close(conn);
        }
    }
    return 0;
}

/* ---- --self-test: client fibers check the server ---- */

enum { CLIENTS = 20, REQUESTS = 100, PIPELINED = 10 };
static const char REQUEST[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
static struct sockaddr_in server_addr;
static atomic_int responses_ok; /* relaxed: read after every client is joined */

/* Reads exactly `count` responses from `io` and checks each byte. */
static int expect_responses(moirai_io_t *io, int count)
{
    static char want[PIPELINED * RESPONSE_LEN];
    char got[PIPELINED * RESPONSE_LEN];
    for (int i = 0; i < count; i++)
        memcpy(want + i * RESPONSE_LEN, RESPONSE, RESPONSE_LEN);
    size_t need = (size_t)count * RESPONSE_LEN, have = 0;
    while (have < need) {
        ssize_t n = moirai_stream_read(io, got + have, need - have);
        if (n <= 0)
            return n < 0 ? (int)n : -ECONNRESET;
        have += (size_t)n;
    }
    if (memcmp(got, want, need) != 0)
        return -EPROTO;
    atomic_fetch_add_explicit(&responses_ok, count, memory_order_relaxed);
    return 0;
}

static int client(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    moirai_io_t *io;
    int err = moirai_tcp_connect(&io, rt, (const struct sockaddr *)&server_addr, NULL);
    if (err != 0)
        return err;
    enum { REQ_LEN = sizeof(REQUEST) - 1 };
    for (int i = 0; i < REQUESTS - PIPELINED && err == 0; i++) {
        if (moirai_stream_write(io, REQUEST, REQ_LEN) != REQ_LEN)
            err = -EIO;
        else
            err = expect_responses(io, 1);
    }
    /* The last requests go out in one write: the server must answer each. */
    char pipelined[PIPELINED * REQ_LEN];
    for (int i = 0; i < PIPELINED; i++)
        memcpy(pipelined + i * REQ_LEN, REQUEST, REQ_LEN);
    if (err == 0 && moirai_stream_write(io, pipelined, sizeof(pipelined)) != sizeof(pipelined))
        err = -EIO;
    if (err == 0)
        err = expect_responses(io, PIPELINED);
    moirai_io_close(io);
    return err;
}

static int self_test(void)
{
    moirai_handle_t *h[CLIENTS];
    int failed = 0;
    for (int i = 0; i < CLIENTS; i++) {
        int err = moirai_handle_create(&h[i]);
        if (err == 0) {
            err = moirai_fiber_spawn(rt, client, NULL, NULL, h[i]);
            if (err != 0)
                moirai_handle_release(h[i]);
        }
        if (err != 0) {
            fprintf(stderr, "http_hello: client %d: %s\n", i, moirai_strerror(err));
            h[i] = NULL;
            failed = 1;
        }
    }
    for (int i = 0; i < CLIENTS; i++) {
        if (!h[i])
            continue;
        int err = moirai_handle_join(h[i], NULL);
        if (err != 0) {
            fprintf(stderr, "http_hello: client %d: %s\n", i, moirai_strerror(err));
            failed = 1;
        }
        moirai_handle_release(h[i]);
    }
    int ok = atomic_load_explicit(&responses_ok, memory_order_relaxed);
    printf("http_hello: %d of %d responses right\n", ok, CLIENTS * REQUESTS);
    return failed || ok != CLIENTS * REQUESTS;
}

int main(int argc, char **argv)
{
    int testing = argc == 2 && !strcmp(argv[1], "--self-test");
    char *end = NULL;
    long port = argc == 2 && !testing ? strtol(argv[1], &end, 10) : -1;
    if (!testing && (argc != 2 || *end || port < 0 || port > 65535)) {
        fprintf(stderr, "usage: http_hello PORT | http_hello --self-test\n");
        return 2;
    }
    int err = moirai_runtime_create(&rt, NULL);
    if (err != 0) {
        fprintf(stderr, "http_hello: runtime: %s\n", moirai_strerror(err));
        return 1;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)(testing ? 0 : port)),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    err = moirai_tcp_listen(&listener, rt, (const struct sockaddr *)&addr, NULL);
    if (err == 0)
        err = moirai_io_local_addr(listener, (struct sockaddr *)&addr, &len);
    moirai_handle_t *acceptor = NULL;
    if (err == 0)
        err = moirai_handle_create(&acceptor);
    if (err == 0)
        err = moirai_fiber_spawn(rt, accept_loop, NULL, NULL, acceptor);
    if (err != 0) {
        fprintf(stderr, "http_hello: listen on port %ld: %s\n", port, moirai_strerror(err));
        if (acceptor)
            moirai_handle_release(acceptor);
        if (listener)
            moirai_io_close(listener);
        moirai_runtime_destroy(rt);
        return 1;
    }
    printf("http_hello: listening on http://127.0.0.1:%d/\n", ntohs(addr.sin_port));
    fflush(stdout);
    int status = 0;
    if (testing) {
        server_addr = addr;
        status = self_test();
    } else {
        /* Serve until killed. */
        moirai_handle_join(acceptor, NULL);
    }
    moirai_handle_cancel(acceptor);
    moirai_handle_join(acceptor, NULL);
    moirai_handle_release(acceptor);
    moirai_io_close(listener);
    err = moirai_runtime_destroy(rt); /* waits for the connection fibers */
    if (err != 0) {
        fprintf(stderr, "http_hello: runtime destroy: %s\n", moirai_strerror(err));
        status = 1;
    }
    return status;
}
