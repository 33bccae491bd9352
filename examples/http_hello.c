/* moirai-async: a minimal HTTP/1.1 keep-alive server, one fiber per
 * connection, written the way a thread-per-connection server is.
 *
 *   http_hello PORT        serve "Hello, World!" on 127.0.0.1:PORT (0: any
 *                          free port) until SIGINT or SIGTERM; prints the
 *                          port
 *   http_hello --self-test serve on a free port, drive it with 20 client
 *                          fibers making 100 keep-alive requests each (the
 *                          last ten pipelined in one write), then stop on
 *                          a SIGTERM it sends itself while one connection
 *                          sits idle; exit 0 only if every response was
 *                          right and the stop ended the idle connection
 *
 * Each connection's fiber reads into its buffer (moirai_stream_read parks
 * only that fiber until bytes arrive), answers every complete request in
 * it with one write, and keeps what is left of a partial request for the
 * next read. Requests are taken to have no body (GET), which is all that
 * `wrk` and `curl` send here.
 *
 * Stopping: two fibers wait for SIGINT and SIGTERM (moirai_signal_wait);
 * the first delivery opens an event the main thread waits on. It then
 * cancels the accept loop, shuts down every open connection (a registry
 * under a mutex; shutdown(2) wakes a fiber parked in read with end of
 * stream, and the fiber closes its own handle), and destroys the runtime,
 * which waits for every fiber. moirai-bench's http_hello_keepalive runs
 * the same server in its own process (bench/async/bench_async_io.c). */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <moirai/async.h>
#include <moirai/async/net.h>
#include <moirai/async/signal.h>
#include <moirai/core.h>
#include <moirai/sync.h>

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
enum { RESPONSE_LEN = sizeof(RESPONSE) - 1, MAX_BATCH = 16, CONN_BUF = 16384 };

static moirai_runtime_t *rt;
static moirai_io_t *listener;

/* The open connections, so that a stop can end them. */
typedef struct conn {
    moirai_io_t *io;
    struct conn *prev, *next;
} conn_t;
static moirai_mutex_t conns_lock = MOIRAI_MUTEX_INIT;
static conn_t *conns; /* under conns_lock */
static int stopping;  /* under conns_lock */

static void conns_remove(conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

/* Ends every open connection: a fiber parked in read wakes with end of
 * stream and closes its handle itself. */
static void conns_shutdown(void)
{
    moirai_mutex_lock(&conns_lock);
    stopping = 1;
    for (conn_t *c = conns; c; c = c->next) {
        int fd = moirai_io_fd(c->io);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
    }
    moirai_mutex_unlock(&conns_lock);
}

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
    conn_t *self = arg;
    moirai_io_t *io = self->io;
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
    moirai_mutex_lock(&conns_lock);
    conns_remove(self);
    moirai_mutex_unlock(&conns_lock);
    moirai_io_close(io);
    free(self);
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
        conn_t *c = malloc(sizeof(*c));
        if (!c) {
            moirai_io_close(conn);
            continue;
        }
        *c = (conn_t){conn, NULL, NULL};
        moirai_mutex_lock(&conns_lock);
        if (stopping) {
            moirai_mutex_unlock(&conns_lock);
            moirai_io_close(conn);
            free(c);
            continue;
        }
        c->next = conns;
        if (conns)
            conns->prev = c;
        conns = c;
        /* Spawned under the lock, so a stop cannot miss it. */
        err = moirai_fiber_spawn(rt, serve_connection, c, NULL, NULL);
        if (err != 0)
            conns_remove(c);
        moirai_mutex_unlock(&conns_lock);
        if (err != 0) {
            fprintf(stderr, "http_hello: spawn: %s\n", moirai_strerror(err));
            moirai_io_close(conn);
            free(c);
        }
    }
    return 0;
}

/* ---- stopping on SIGINT / SIGTERM ---- */

static moirai_event_t stop_requested;

/* Waits for one signal (its watcher is the argument) and asks for a stop;
 * cancelled once the stop is under way. */
static int watch_signal(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    if (moirai_signal_wait(arg) > 0)
        moirai_event_set(&stop_requested);
    return 0;
}

static const int signums[2] = {SIGINT, SIGTERM};
static moirai_signal_t *sig[2];
static moirai_handle_t *watcher[2];

/* Starts watching SIGINT and SIGTERM (from here on they no longer end the
 * process). Returns 0 or -errno. */
static int signals_start(void)
{
    moirai_event_init(&stop_requested, MOIRAI_EVENT_MANUAL, false);
    int err = 0;
    for (int i = 0; i < 2 && err == 0; i++) {
        err = moirai_signal_create(&sig[i], rt, signums[i]);
        if (err == 0)
            err = moirai_handle_create(&watcher[i]);
        if (err == 0 &&
            (err = moirai_fiber_spawn(rt, watch_signal, sig[i], NULL, watcher[i])) != 0) {
            moirai_handle_release(watcher[i]);
            watcher[i] = NULL;
        }
    }
    return err;
}

/* Waits for the first signal (unless `wait` is false), then stops the
 * watchers. */
static void signals_stop(int wait)
{
    if (wait) {
        moirai_event_wait(&stop_requested);
        printf("http_hello: stopping\n");
    }
    for (int i = 0; i < 2; i++) {
        if (watcher[i]) {
            moirai_handle_cancel(watcher[i]);
            moirai_handle_join(watcher[i], NULL);
            moirai_handle_release(watcher[i]);
        }
        moirai_signal_destroy(sig[i]);
    }
    moirai_event_destroy(&stop_requested);
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

/* The self-test, in a fiber: 20 checked clients, then SIGTERM to this
 * process while one more connection sits idle; the stop must end that
 * connection (the client reads end of stream). */
static int self_test(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    moirai_io_t *idle;
    int err = moirai_tcp_connect(&idle, rt, (const struct sockaddr *)&server_addr, NULL);
    if (err != 0) {
        fprintf(stderr, "http_hello: idle client: %s\n", moirai_strerror(err));
        kill(getpid(), SIGTERM);
        return err;
    }
    moirai_handle_t *h[CLIENTS];
    int failed = 0;
    for (int i = 0; i < CLIENTS; i++) {
        err = moirai_handle_create(&h[i]);
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
        err = moirai_handle_join(h[i], NULL);
        if (err != 0) {
            fprintf(stderr, "http_hello: client %d: %s\n", i, moirai_strerror(err));
            failed = 1;
        }
        moirai_handle_release(h[i]);
    }
    kill(getpid(), SIGTERM);
    /* ThreadSanitizer may hold a signal back while every thread that can
     * take it sits in a system call (see main): if the stop has not begun
     * within 2 s, begin it directly, so a held-back signal cannot hang
     * the self-test (it did in about one TSan run in four). */
    if (moirai_event_wait_timed(&stop_requested, moirai_deadline_after(2 * MOIRAI_NS_PER_S)) != 0) {
        fprintf(stderr, "http_hello: SIGTERM not delivered within 2 s; stopping without it\n");
        moirai_event_set(&stop_requested);
    }
    char c;
    ssize_t n = moirai_stream_read(idle, &c, 1);
    if (n != 0) {
        fprintf(stderr, "http_hello: the idle connection was not ended by the stop (%zd)\n", n);
        failed = 1;
    }
    moirai_io_close(idle);
    return failed ? -EPROTO : 0;
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
    /* The runtime's threads exist now and keep SIGINT and SIGTERM open;
     * this thread, which only waits, blocks them, so the kernel hands them
     * to a runtime thread. (Under ThreadSanitizer a signal that lands on a
     * thread parked in a futex is held back until that thread runs again,
     * which here would be never.) */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
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
    moirai_handle_t *tester = NULL;
    err = signals_start();
    if (err == 0 && testing) {
        server_addr = addr;
        err = moirai_handle_create(&tester);
        if (err == 0 && (err = moirai_fiber_spawn(rt, self_test, NULL, NULL, tester)) != 0) {
            moirai_handle_release(tester);
            tester = NULL;
        }
    }
    if (err != 0) {
        fprintf(stderr, "http_hello: %s\n", moirai_strerror(err));
        status = 1;
    }
    signals_stop(err == 0); /* serve until SIGINT or SIGTERM */
    moirai_handle_cancel(acceptor);
    moirai_handle_join(acceptor, NULL);
    moirai_handle_release(acceptor);
    moirai_io_close(listener);
    conns_shutdown();
    if (tester) {
        err = moirai_handle_join(tester, NULL);
        moirai_handle_release(tester);
        int ok = atomic_load_explicit(&responses_ok, memory_order_relaxed);
        printf("http_hello: %d of %d responses right\n", ok, CLIENTS * REQUESTS);
        if (err != 0 || ok != CLIENTS * REQUESTS)
            status = 1;
    }
    err = moirai_runtime_destroy(rt); /* waits for the connection fibers */
    if (err != 0) {
        fprintf(stderr, "http_hello: runtime destroy: %s\n", moirai_strerror(err));
        status = 1;
    }
    return status;
}
