/* examples/metrics_server.c, compiled in (its main left out): the server
 * is started on a free port and scraped over TCP from plain sockets; the
 * text is parsed back strictly and compared with the server's objects
 * read directly. Also: keep-alive, pipelining, 404, 405, 400,
 * "Connection: close", HTTP/1.0, and a restart after a stop. */
#define METRICS_SERVER_NO_MAIN 1
#include "metrics_server.c"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <criterion/criterion.h>

#include "prom_parse.h"
#include "oom.h"

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void send_all(int fd, const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = write(fd, s + off, len - off);
        cr_assert_gt(n, 0);
        off += (size_t)n;
    }
}

typedef struct response {
    int status;
    char head[1024];
    char *body; /* malloc'd, NUL terminated */
    size_t len;
} response_t;

/* Bytes read past the end of a response, for the next one (pipelining). */
static char spill[1 << 16];
static size_t spill_len;

/* Reads one response from `fd`: head, then exactly Content-Length bytes. */
static void read_response(int fd, response_t *r)
{
    static char buf[1 << 20];
    size_t have = spill_len;
    memcpy(buf, spill, spill_len);
    spill_len = 0;
    char *end;
    while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
        ssize_t n = read(fd, buf + have, sizeof(buf) - have);
        cr_assert_gt(n, 0, "the server closed before a response");
        have += (size_t)n;
    }
    size_t head = (size_t)(end - buf) + 4;
    cr_assert_lt(head, sizeof(r->head));
    memcpy(r->head, buf, head);
    r->head[head] = '\0';
    cr_assert(!strncmp(r->head, "HTTP/1.1 ", 9), "%s", r->head);
    r->status = atoi(r->head + 9);
    const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
    cr_assert_not_null(cl);
    r->len = strtoul(cl + 18, NULL, 10);
    while (have < head + r->len) {
        ssize_t n = read(fd, buf + have, sizeof(buf) - have);
        cr_assert_gt(n, 0, "the server closed inside a body");
        have += (size_t)n;
    }
    r->body = malloc(r->len + 1);
    memcpy(r->body, buf + head, r->len);
    r->body[r->len] = '\0';
    spill_len = have - head - r->len;
    memcpy(spill, buf + head + r->len, spill_len);
}

/* True when the server closed `fd` (read returns end of stream). */
static bool closed_by_server(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    cr_assert_eq(poll(&p, 1, 10000), 1, "the server kept the connection");
    char c;
    return read(fd, &c, 1) == 0;
}

/* One scrape on `fd`: a 200 with the format's Content-Type, parsed. */
static void scrape(int fd, prom_doc_t *d)
{
    send_all(fd, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    response_t r;
    read_response(fd, &r);
    cr_assert_eq(r.status, 200, "%s", r.head);
    cr_assert(strstr(r.head, "\r\nContent-Type: " MOIRAI_PROM_CONTENT_TYPE "\r\n"), "%s", r.head);
    bool ok = prom_parse(r.body, r.len, d);
    cr_assert(ok, "%s in:\n%s", d->error, r.body);
    free(r.body);
}

static uint16_t start(void)
{
    uint16_t port = 0;
    cr_assert_eq(metrics_server_start(0, &port), 0);
    cr_assert_gt(port, 0);
    return port;
}

/* Not checked for live blocks (tests/common/live.c): the server's static
 * connection lock keeps its lock-stats record for the life of the
 * process (moirai/sync/lockstat.h). */
TestSuite(metrics_server, .init = moirai_test_live_unchecked);

Test(metrics_server, scrape_parses_and_matches_the_objects, .timeout = 60)
{
    uint16_t port = start();
    int fd = connect_to(port);
    prom_doc_t d;
    scrape(fd, &d);
    /* Every module the server registered is there, each family once (the
     * parser fails otherwise). */
    const char **server = PROM_LABELS("name", "server");
    const char **conns = PROM_LABELS("name", "connections");
    const char **log = PROM_LABELS("name", "access_log");
    cr_assert_not_null(prom_family(&d, "moirai_runtime_fibers_spawned_total"));
    cr_assert_not_null(prom_family(&d, "moirai_sched_executed_total"));
    cr_assert_not_null(prom_family(&d, "moirai_pool_allocations_total"));
    cr_assert_not_null(prom_family(&d, "moirai_chan_sent_total"));
    cr_assert_eq(prom_value(&d, "moirai_sched_workers", server),
                 moirai_sched_worker_count(moirai_runtime_sched(rt)));
    /* This connection is the first: one record from the pool, in use. */
    cr_assert_eq(prom_value(&d, "moirai_pool_allocations_total", conns), 1);
    cr_assert_eq(prom_value(&d, "moirai_pool_in_use", conns), 1);
    /* The scrape logged itself before collecting. */
    cr_assert_eq(prom_value(&d, "moirai_chan_sent_total", log), 1);
    /* The logger and the acceptor at least: their spawns returned before
     * start() did. (This connection's fiber may run before the acceptor's
     * spawn call has counted it.) */
    cr_assert_geq(prom_value(&d, "moirai_runtime_fibers_spawned_total", server), 2);
    prom_doc_free(&d);

    /* Keep-alive: the same connection again; the pool, quiet meanwhile,
     * matches its stats exactly. */
    scrape(fd, &d);
    cr_assert_eq(prom_value(&d, "moirai_chan_sent_total", log), 2);
    moirai_pool_stats_t ps;
    cr_assert_eq(moirai_pool_stats(conn_pool, &ps), 0);
    cr_assert_eq(prom_value(&d, "moirai_pool_allocations_total", conns), (double)ps.allocations);
    cr_assert_eq(prom_value(&d, "moirai_pool_frees_total", conns), (double)ps.frees);
    cr_assert_eq(prom_value(&d, "moirai_pool_objects", conns), (double)ps.objects);
    prom_doc_free(&d);

    /* A second connection while the first stays open. */
    int fd2 = connect_to(port);
    scrape(fd2, &d);
    cr_assert_eq(prom_value(&d, "moirai_pool_allocations_total", conns), 2);
    cr_assert_eq(prom_value(&d, "moirai_pool_in_use", conns), 2);
    cr_assert_eq(prom_value(&d, "moirai_chan_sent_total", log), 3);
    prom_doc_free(&d);
    close(fd2);
    close(fd);
    metrics_server_stop();
    cr_assert_eq(logged, 3, "the logger read every record before the stop");
}

Test(metrics_server, pipelined_requests_each_answered, .timeout = 60)
{
    uint16_t port = start();
    int fd = connect_to(port);
    send_all(fd, "GET /metrics HTTP/1.1\r\n\r\nGET /nothing HTTP/1.1\r\n\r\n"
                 "GET /metrics?x=1 HTTP/1.1\r\n\r\n");
    response_t r;
    prom_doc_t d;
    read_response(fd, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(prom_parse(r.body, r.len, &d), "%s", d.error);
    cr_assert_eq(prom_value(&d, "moirai_chan_sent_total", NULL), 1);
    prom_doc_free(&d);
    free(r.body);
    read_response(fd, &r);
    cr_assert_eq(r.status, 404);
    free(r.body);
    read_response(fd, &r);
    cr_assert_eq(r.status, 200, "a query string is ignored");
    cr_assert(prom_parse(r.body, r.len, &d), "%s", d.error);
    cr_assert_eq(prom_value(&d, "moirai_chan_sent_total", NULL), 3);
    prom_doc_free(&d);
    free(r.body);
    close(fd);
    metrics_server_stop();
}

Test(metrics_server, errors_and_closing, .timeout = 60)
{
    uint16_t port = start();
    response_t r;
    /* A method other than GET: 405 with Allow, and the connection ends. */
    int fd = connect_to(port);
    send_all(fd, "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    read_response(fd, &r);
    cr_assert_eq(r.status, 405);
    cr_assert(strstr(r.head, "\r\nAllow: GET\r\n"));
    free(r.body);
    spill_len = 0; /* the unread body */
    cr_assert(closed_by_server(fd));
    close(fd);
    /* A malformed request line: 400 and the end. */
    fd = connect_to(port);
    send_all(fd, "nonsense\r\n\r\n");
    read_response(fd, &r);
    cr_assert_eq(r.status, 400);
    free(r.body);
    cr_assert(closed_by_server(fd));
    close(fd);
    /* Asked to close, or HTTP/1.0: answered, then closed. */
    static const char *closing[] = {"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
                                    "GET /metrics HTTP/1.1\r\nconnection: Close\r\n\r\n",
                                    "GET /metrics HTTP/1.0\r\n\r\n"};
    for (int i = 0; i < 3; i++) {
        fd = connect_to(port);
        send_all(fd, closing[i]);
        read_response(fd, &r);
        cr_assert_eq(r.status, 200, "request %d", i);
        cr_assert(strstr(r.head, "\r\nConnection: close\r\n"), "request %d", i);
        prom_doc_t d;
        cr_assert(prom_parse(r.body, r.len, &d), "%s", d.error);
        prom_doc_free(&d);
        free(r.body);
        cr_assert(closed_by_server(fd), "request %d", i);
        close(fd);
    }
    metrics_server_stop();
}

Test(metrics_server, stop_ends_idle_connections_and_restarts, .timeout = 60)
{
    for (int round = 0; round < 2; round++) {
        uint16_t port = start();
        int fd = connect_to(port);
        prom_doc_t d;
        scrape(fd, &d);
        /* A fresh server each time: its own pool and log. */
        cr_assert_eq(prom_value(&d, "moirai_pool_allocations_total", NULL), 1);
        cr_assert_eq(prom_value(&d, "moirai_chan_sent_total", NULL), 1);
        prom_doc_free(&d);
        /* The connection stays open and idle; the stop must end it. */
        metrics_server_stop();
        cr_assert(closed_by_server(fd));
        close(fd);
    }
}
