/* Metrics export: a tiny HTTP/1.1 server on moirai-async that answers
 * GET /metrics with the Prometheus text format (moirai/core/prom.h).
 *
 *   metrics_server PORT        serve on 127.0.0.1:PORT (0: any free port)
 *                              until SIGINT or SIGTERM; prints the address
 *   metrics_server --self-test serve on a free port, fetch /metrics from a
 *                              client fiber (twice on one keep-alive
 *                              connection, then a 404 and a 405), check
 *                              the answers, and stop on a SIGTERM it sends
 *                              itself; exit 0 only if all was right
 *
 * What it exports is the server itself, registered once in a metrics
 * registry: its fiber runtime and the runtime's scheduler, the object pool
 * its connection records come from (moirai-mem), and the channel through
 * which every request is logged to a logger fiber (moirai-transport). So
 * moirai_pool_allocations_total{name="connections"} counts the
 * connections accepted, and moirai_chan_sent_total{name="access_log"}
 * the requests answered, the one being answered included.
 *
 * Each connection is a fiber that reads requests (headers only: a request
 * with a body is answered 405 and the connection closed), answers each
 * with one write, and keeps the connection open unless the client asked
 * to close it or spoke HTTP/1.0. A scrape renders the registry into the
 * connection's own writer: collectors take their objects' locks briefly
 * and may park the fiber, which the registry allows.
 *
 * tests/async/test_metrics_server.c compiles this file with
 * METRICS_SERVER_NO_MAIN, starts the server with metrics_server_start()
 * and scrapes it over TCP with a strict parser of the format. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, strcasestr */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <moirai/async.h>
#include <moirai/async/net.h>
#include <moirai/core.h>
#include <moirai/mem.h>
#include <moirai/sched.h>
#include <moirai/sync.h>
#include <moirai/transport.h>

/* The embedding interface (used by the test). */
int metrics_server_start(uint16_t port, uint16_t *bound);
void metrics_server_stop(void);

enum { CONN_BUF = 8192, ACCESS_LOG_CAPACITY = 1024 };

/* One line of the access log, sent through the channel. */
typedef struct access {
    int status;
    size_t bytes;
} access_t;

/* An open connection, from the pool; listed so that a stop can end it. */
typedef struct conn {
    moirai_io_t *io;
    struct conn *prev, *next;
} conn_t;

static moirai_runtime_t *rt;
static moirai_io_t *listener;
static moirai_handle_t *acceptor, *logger;
static moirai_pool_t *conn_pool;
static moirai_chan_t *access_log;
static moirai_metrics_registry_t *registry;
static uint64_t logged, logged_bytes; /* the logger fiber's, read after it ended */

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

/* ---- answering one request ---- */

/* Writes a complete response: status line, headers, body. Returns 0 or
 * -EIO. */
static int write_response(moirai_io_t *io, int status, const char *reason, const char *type,
                          const char *extra, const char *body, size_t len, int closing)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                     status, reason, type, len, extra, closing ? "Connection: close\r\n" : "");
    if (moirai_stream_write(io, head, (size_t)n) != n)
        return -EIO;
    if (len > 0 && moirai_stream_write(io, body, len) != (ssize_t)len)
        return -EIO;
    return 0;
}

/* Logs the request, then answers it. The record goes into the channel
 * first, so a scrape's answer counts the request it answers. The log may
 * be closed by a stop: the request is answered anyway. */
static int respond(moirai_io_t *io, int status, const char *reason, const char *type,
                   const char *extra, const char *body, size_t len, int closing)
{
    access_t a = {status, len};
    (void)moirai_chan_try_send(access_log, &a);
    return write_response(io, status, reason, type, extra, body, len, closing);
}

/* Answers GET /metrics: the registry rendered into this connection's
 * writer. */
static int serve_metrics(moirai_io_t *io, moirai_prom_writer_t **w, int closing)
{
    int err = *w ? 0 : moirai_prom_writer_create(w);
    const char *text = NULL;
    size_t len = 0;
    if (err == 0) {
        /* Logged before the scrape (see respond()); its size is unknown
         * yet, so the record carries none. */
        access_t a = {200, 0};
        (void)moirai_chan_try_send(access_log, &a);
        moirai_prom_writer_reset(*w);
        err = moirai_metrics_registry_write(registry, *w);
        if (err == 0)
            err = moirai_prom_writer_render(*w, &text, &len);
        if (err != 0) {
            char msg[128];
            int n = snprintf(msg, sizeof(msg), "collecting the metrics failed: %s\n",
                             moirai_strerror(err));
            return write_response(io, 500, "Internal Server Error", "text/plain", "", msg,
                                  (size_t)n, closing);
        }
        return write_response(io, 200, "OK", MOIRAI_PROM_CONTENT_TYPE, "", text, len, closing);
    }
    return respond(io, 500, "Internal Server Error", "text/plain", "", "out of memory\n", 14,
                   closing);
}

/* Answers the request whose header block is req[0..len). Sets *closing
 * when the connection must end after it. Returns 0 or -EIO. */
static int serve_request(moirai_io_t *io, char *req, size_t len, moirai_prom_writer_t **w,
                         int *closing)
{
    req[len] = '\0';
    char method[16], target[256], version[16];
    if (sscanf(req, "%15s %255s %15s", method, target, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0) {
        *closing = 1;
        return respond(io, 400, "Bad Request", "text/plain", "", "bad request\n", 12, 1);
    }
    /* HTTP/1.1 keeps the connection unless told otherwise; 1.0 closes. */
    *closing = strcmp(version, "HTTP/1.0") == 0 || strcasestr(req, "\r\nconnection: close") != NULL;
    char *query = strchr(target, '?');
    if (query)
        *query = '\0';
    if (strcmp(method, "GET") != 0) {
        /* The request may have a body, which this server does not read:
         * the connection cannot continue after it. */
        *closing = 1;
        return respond(io, 405, "Method Not Allowed", "text/plain", "Allow: GET\r\n",
                       "only GET is served\n", 19, 1);
    }
    if (strcmp(target, "/metrics") != 0)
        return respond(io, 404, "Not Found", "text/plain", "", "try /metrics\n", 13, *closing);
    return serve_metrics(io, w, *closing);
}

/* ---- connections ---- */

static int serve_connection(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    conn_t *self = arg;
    moirai_io_t *io = self->io;
    moirai_prom_writer_t *w = NULL;
    char buf[CONN_BUF + 1]; /* +1: room to terminate a request for parsing */
    size_t have = 0;
    int closing = 0;
    while (!closing) {
        ssize_t n = moirai_stream_read(io, buf + have, CONN_BUF - have);
        if (n <= 0)
            break; /* end of stream, or the connection failed */
        have += (size_t)n;
        /* Every complete header block in the buffer, in order (a client
         * may pipeline). */
        char *start = buf, *end;
        while (!closing && (end = memmem(start, have - (size_t)(start - buf), "\r\n\r\n", 4))) {
            size_t len = (size_t)(end - start) + 4;
            char saved = start[len];
            if (serve_request(io, start, len, &w, &closing) != 0)
                closing = 1;
            start[len] = saved;
            start += len;
        }
        have -= (size_t)(start - buf);
        memmove(buf, start, have);
        if (have == CONN_BUF) {
            respond(io, 431, "Request Header Fields Too Large", "text/plain", "", "too large\n", 10,
                    1);
            break;
        }
    }
    moirai_prom_writer_destroy(w);
    moirai_mutex_lock(&conns_lock);
    conns_remove(self);
    moirai_mutex_unlock(&conns_lock);
    moirai_io_close(io);
    moirai_pool_free(conn_pool, self);
    return 0;
}

static int accept_loop(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)result;
    while (!moirai_cancel_token_is_cancelled(cancel)) {
        moirai_io_t *io;
        int err = moirai_stream_accept(listener, &io);
        if (err == -ECANCELED || err == -EBADF)
            return 0; /* stopping */
        if (err != 0) {
            fprintf(stderr, "metrics_server: accept: %s\n", moirai_strerror(err));
            continue;
        }
        conn_t *c;
        if (moirai_pool_alloc(conn_pool, (void **)&c) != 0) {
            moirai_io_close(io);
            continue;
        }
        *c = (conn_t){io, NULL, NULL};
        moirai_mutex_lock(&conns_lock);
        if (!stopping) {
            c->next = conns;
            if (conns)
                conns->prev = c;
            conns = c;
            /* Spawned under the lock, so a stop cannot miss it. */
            err = moirai_fiber_spawn(rt, serve_connection, c, NULL, NULL);
            if (err != 0)
                conns_remove(c);
        } else {
            err = -ESHUTDOWN;
        }
        moirai_mutex_unlock(&conns_lock);
        if (err != 0) {
            moirai_io_close(io);
            moirai_pool_free(conn_pool, c);
        }
    }
    return 0;
}

/* The access log's reader: tallies what the connections answered until
 * the channel is closed and drained. */
static int log_reader(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    access_t a;
    while (moirai_chan_recv(access_log, &a) == 0) {
        logged++;
        logged_bytes += a.bytes;
    }
    return 0;
}

/* ---- starting and stopping ---- */

/* Spawns `fn` as a fiber with a fresh handle in *h. */
static int spawn(moirai_task_fn fn, moirai_handle_t **h)
{
    int err = moirai_handle_create(h);
    if (err == 0 && (err = moirai_fiber_spawn(rt, fn, NULL, NULL, *h)) != 0) {
        moirai_handle_release(*h);
        *h = NULL;
    }
    return err;
}

int metrics_server_start(uint16_t port, uint16_t *bound)
{
    logged = logged_bytes = 0;
    moirai_pool_config_t pcfg;
    moirai_pool_config_init(&pcfg, sizeof(conn_t));
    pcfg.name = "connections";
    moirai_chan_config_t ccfg;
    moirai_chan_config_init(&ccfg);
    ccfg.elem_size = sizeof(access_t);
    ccfg.capacity = ACCESS_LOG_CAPACITY;
    int err = moirai_runtime_create(&rt, NULL);
    if (err == 0)
        err = moirai_pool_create(&conn_pool, &pcfg);
    if (err == 0)
        err = moirai_chan_create(&access_log, &ccfg);
    if (err == 0)
        err = moirai_metrics_registry_create(&registry);
    /* One collector per object; each labels its samples name="...". */
    if (err == 0)
        err = moirai_metrics_registry_add(registry, "server", moirai_runtime_metrics_collect, rt);
    if (err == 0)
        err = moirai_metrics_registry_add(registry, "server", moirai_sched_metrics_collect,
                                          moirai_runtime_sched(rt));
    if (err == 0)
        err = moirai_metrics_registry_add(registry, "connections", moirai_pool_metrics_collect,
                                          conn_pool);
    if (err == 0)
        err = moirai_metrics_registry_add(registry, "access_log", moirai_chan_metrics_collect,
                                          access_log);
    /* The process's lock contention statistics: one collector for every
     * lock, so no object to pass. They cost nothing until switched on. */
    if (err == 0)
        err = moirai_metrics_registry_add(registry, "process", moirai_lock_stats_metrics_collect,
                                          NULL);
    if (err == 0)
        moirai_lock_stats_enable(true);
    struct sockaddr_in addr = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(addr);
    if (err == 0)
        err = moirai_tcp_listen(&listener, rt, (const struct sockaddr *)&addr, NULL);
    if (err == 0)
        err = moirai_io_local_addr(listener, (struct sockaddr *)&addr, &alen);
    if (err == 0)
        err = spawn(log_reader, &logger);
    if (err == 0)
        err = spawn(accept_loop, &acceptor);
    if (err != 0) {
        metrics_server_stop();
        return err;
    }
    *bound = ntohs(addr.sin_port);
    return 0;
}

/* Stops accepting, ends every connection, lets the logger drain, and
 * frees everything (also after a partial start). */
void metrics_server_stop(void)
{
    if (acceptor) {
        moirai_handle_cancel(acceptor);
        moirai_handle_join(acceptor, NULL);
        moirai_handle_release(acceptor);
        acceptor = NULL;
    }
    if (listener) {
        moirai_io_close(listener);
        listener = NULL;
    }
    /* shutdown(2) wakes a fiber parked in read with end of stream; the
     * fiber closes its own handle. */
    moirai_mutex_lock(&conns_lock);
    stopping = 1;
    for (conn_t *c = conns; c; c = c->next) {
        int fd = moirai_io_fd(c->io);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
    }
    moirai_mutex_unlock(&conns_lock);
    if (access_log)
        moirai_chan_close(access_log);
    if (logger) {
        moirai_handle_join(logger, NULL);
        moirai_handle_release(logger);
        logger = NULL;
    }
    /* Waits for the connection fibers; no scrape runs after it. */
    if (rt && moirai_runtime_destroy(rt) != 0)
        fprintf(stderr, "metrics_server: the runtime could not be destroyed\n");
    rt = NULL;
    moirai_metrics_registry_destroy(registry);
    registry = NULL;
    moirai_chan_destroy(access_log);
    access_log = NULL;
    moirai_pool_destroy(conn_pool);
    conn_pool = NULL;
    stopping = 0;
}

#ifndef METRICS_SERVER_NO_MAIN

/* ---- --self-test: a client fiber scrapes the server ---- */

static struct sockaddr_in server_addr;

/* Reads one response from `io` into buf (cap bytes) and returns its status,
 * with *body and *body_len set, or a negative errno. */
static int read_response(moirai_io_t *io, char *buf, size_t cap, const char **body,
                         size_t *body_len)
{
    size_t have = 0;
    char *end = NULL;
    while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
        ssize_t n = moirai_stream_read(io, buf + have, cap - 1 - have);
        if (n <= 0)
            return -ECONNRESET;
        have += (size_t)n;
    }
    size_t head = (size_t)(end - buf) + 4;
    buf[head - 1] = '\0';
    const char *cl = strcasestr(buf, "\r\nContent-Length: ");
    if (!cl)
        return -EPROTO;
    size_t len = strtoul(cl + 18, NULL, 10);
    if (head + len >= cap)
        return -EMSGSIZE;
    while (have < head + len) {
        ssize_t n = moirai_stream_read(io, buf + have, head + len - have);
        if (n <= 0)
            return -ECONNRESET;
        have += (size_t)n;
    }
    buf[head + len] = '\0';
    *body = buf + head;
    *body_len = len;
    return (int)strtol(buf + 9, NULL, 10);
}

/* The value of the sample that starts with `prefix` (name and labels) in
 * an exposition text, or -1. */
static double sample(const char *text, const char *prefix)
{
    const char *p = text;
    size_t n = strlen(prefix);
    while (p && *p) {
        if (!strncmp(p, prefix, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

static int check(int ok, const char *what)
{
    if (!ok)
        fprintf(stderr, "metrics_server: self-test: %s\n", what);
    return ok ? 0 : -EPROTO;
}

static int self_test(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    static char buf[1 << 20];
    moirai_io_t *io;
    int err = moirai_tcp_connect(&io, rt, (const struct sockaddr *)&server_addr, NULL);
    if (err != 0) {
        kill(getpid(), SIGTERM);
        return err;
    }
    static const char get[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    const char *body;
    size_t len;
    double sent[2] = {0, 0};
    for (int i = 0; i < 2 && err == 0; i++) {
        if (moirai_stream_write(io, get, sizeof(get) - 1) != sizeof(get) - 1)
            err = -EIO;
        int status = err ? err : read_response(io, buf, sizeof(buf), &body, &len);
        err = check(status == 200, "GET /metrics did not answer 200");
        if (err == 0)
            err = check(strstr(buf, "Content-Type: " MOIRAI_PROM_CONTENT_TYPE "\r\n") != NULL,
                        "wrong Content-Type");
        if (err == 0)
            err = check(!strncmp(body, "# HELP ", 7) && body[len - 1] == '\n',
                        "the body is not exposition text");
        if (err == 0)
            /* The logger and the acceptor at least (a fiber's spawn is
             * counted as its spawn call returns, maybe after it ran). */
            err = check(sample(body, "moirai_runtime_fibers_spawned_total{name=\"server\"}") >= 2,
                        "no runtime counters");
        if (err == 0)
            err = check(sample(body, "moirai_pool_allocations_total{name=\"connections\"}") == 1,
                        "the connection pool did not count this connection");
        sent[i] = sample(body, "moirai_chan_sent_total{name=\"access_log\"}");
    }
    /* Each scrape counts itself in the access log: 1, then 2. */
    if (err == 0)
        err = check(sent[0] == 1 && sent[1] == 2, "the access log did not count the scrapes");
    static const char missing[] = "GET /nothing HTTP/1.1\r\n\r\n";
    if (err == 0 && moirai_stream_write(io, missing, sizeof(missing) - 1) != sizeof(missing) - 1)
        err = -EIO;
    if (err == 0)
        err = check(read_response(io, buf, sizeof(buf), &body, &len) == 404, "no 404");
    static const char post[] = "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    if (err == 0 && moirai_stream_write(io, post, sizeof(post) - 1) != sizeof(post) - 1)
        err = -EIO;
    if (err == 0)
        err = check(read_response(io, buf, sizeof(buf), &body, &len) == 405, "no 405");
    char c;
    if (err == 0)
        err = check(moirai_stream_read(io, &c, 1) == 0, "the 405 did not close the connection");
    moirai_io_close(io);
    kill(getpid(), SIGTERM);
    return err;
}

int main(int argc, char **argv)
{
    int testing = argc == 2 && !strcmp(argv[1], "--self-test");
    char *end = NULL;
    long port = argc == 2 && !testing ? strtol(argv[1], &end, 10) : 0;
    if (!testing && (argc != 2 || *end || port < 0 || port > 65535)) {
        fprintf(stderr, "usage: metrics_server PORT | metrics_server --self-test\n");
        return 2;
    }
    /* Blocked here, before any thread exists, so every thread inherits the
     * mask and the signals wait for sigwait() below. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    uint16_t bound;
    int err = metrics_server_start((uint16_t)port, &bound);
    if (err != 0) {
        fprintf(stderr, "metrics_server: %s\n", moirai_strerror(err));
        return 1;
    }
    printf("metrics_server: listening on http://127.0.0.1:%u/metrics\n", bound);
    fflush(stdout);
    moirai_handle_t *tester = NULL;
    if (testing) {
        server_addr = (struct sockaddr_in){.sin_family = AF_INET,
                                           .sin_port = htons(bound),
                                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if ((err = moirai_handle_create(&tester)) == 0 &&
            (err = moirai_fiber_spawn(rt, self_test, NULL, NULL, tester)) != 0) {
            moirai_handle_release(tester);
            tester = NULL;
        }
    }
    int sig = 0;
    if (err == 0)
        sigwait(&stop, &sig);
    int status = err != 0;
    if (tester) {
        err = moirai_handle_join(tester, NULL);
        moirai_handle_release(tester);
        status = err != 0;
    }
    metrics_server_stop();
    printf("metrics_server: stopped; %llu requests logged (%llu body bytes)\n",
           (unsigned long long)logged, (unsigned long long)logged_bytes);
    return status;
}

#endif
