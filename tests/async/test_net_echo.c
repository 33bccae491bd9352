/* An echo server under load: many client fibers on 2 workers, every byte
 * checked; a client that resets the connection while the server writes
 * to it; and one waiter per direction (a second reader, writer or
 * acceptor gets -EBUSY). */
#include "net_test_util.h"

#include <pthread.h>
#include <stdlib.h>

#include "test_scale.h"

/* ---- The server: an acceptor fiber, one fiber per connection ---- */

struct server {
    moirai_runtime_t *rt;
    moirai_io_t *listener;
    struct sockaddr_in addr;
    int expected;            /* connections to accept */
    moirai_handle_t **conns; /* one handle per connection fiber */
    _Atomic long echoed;     /* bytes echoed back, over all connections */
    int big_writer;          /* accept order of the connection to flood, or -1 */
    ssize_t big_result;      /* what ended the flood */
    size_t big_written;      /* bytes the flood wrote before that */
    moirai_event_t big_done;
};

struct conn {
    struct server *srv;
    moirai_io_t *io;
    int order;
};

enum { FLOOD_CHUNK = 1 << 20, FLOOD_MAX = 64 << 20 };

/* Writes 1 MiB at a time until the peer goes away: the first write that
 * does not write the whole chunk ends it. */
static int flood(struct conn *c)
{
    struct server *s = c->srv;
    unsigned char *chunk = malloc(FLOOD_CHUNK);
    FCHECK(chunk != NULL);
    fill_pattern(chunk, FLOOD_CHUNK, 77);
    size_t written = 0;
    ssize_t n = FLOOD_CHUNK;
    while (written < FLOOD_MAX) {
        n = moirai_stream_write(c->io, chunk, FLOOD_CHUNK);
        if (n != FLOOD_CHUNK)
            break;
        written += FLOOD_CHUNK;
    }
    free(chunk);
    s->big_result = n;
    s->big_written = written + (n > 0 ? (size_t)n : 0);
    moirai_event_set(&s->big_done);
    return 0;
}

static int echo_conn(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct conn *c = arg;
    int rc = 0;
    if (c->order == c->srv->big_writer) {
        rc = flood(c);
    } else {
        char buf[1500];
        long total = 0;
        for (;;) {
            ssize_t n = moirai_stream_read(c->io, buf, sizeof buf);
            if (n < 0)
                rc = (int)n;
            if (n <= 0)
                break;
            ssize_t w = moirai_stream_write(c->io, buf, (size_t)n);
            if (w != n) {
                rc = w < 0 ? (int)w : -EIO;
                break;
            }
            total += n;
        }
        atomic_fetch_add(&c->srv->echoed, total);
    }
    moirai_io_close(c->io);
    free(c);
    return rc;
}

static int acceptor(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct server *s = arg;
    for (int i = 0; i < s->expected; i++) {
        struct conn *c = malloc(sizeof *c);
        FCHECK(c != NULL);
        c->srv = s;
        c->order = i;
        FCHECK(moirai_stream_accept(s->listener, &c->io) == 0);
        FCHECK(moirai_handle_create(&s->conns[i]) == 0);
        FCHECK(moirai_fiber_spawn(s->rt, echo_conn, c, NULL, s->conns[i]) == 0);
    }
    return 0;
}

static void server_start(struct server *s, moirai_runtime_t *rt, int expected)
{
    memset(s, 0, sizeof *s);
    s->rt = rt;
    s->expected = expected;
    s->big_writer = -1;
    s->conns = calloc((size_t)expected, sizeof *s->conns);
    cr_assert_not_null(s->conns);
    moirai_event_init(&s->big_done, MOIRAI_EVENT_MANUAL, false);
    struct sockaddr_in any = loopback(0);
    moirai_tcp_config_t cfg;
    moirai_tcp_config_init(&cfg);
    cfg.backlog = 4096; /* the clients all connect at once */
    cr_assert_eq(moirai_tcp_listen(&s->listener, rt, (struct sockaddr *)&any, &cfg), 0);
    s->addr = local_of(s->listener);
}

/* Joins the acceptor and every connection fiber (each must return 0). */
static void server_finish(struct server *s, moirai_handle_t *acc)
{
    ASSERT_OK(join_and_release(acc, NULL));
    for (int i = 0; i < s->expected; i++)
        cr_assert_eq(join_and_release(s->conns[i], NULL), 0, "connection %d failed", i);
    cr_assert_eq(moirai_io_close(s->listener), 0);
    free(s->conns);
}

/* ---- Clients ---- */

struct client {
    struct server *srv;
    uint32_t id;
};

/* When set, every client waits after connecting until `all` of them are
 * connected: then that many connections are open at the same time. */
static struct {
    _Atomic int connected;
    int all;
    moirai_event_t everyone;
} gather;

/* 2 to 5 KiB, different for neighbouring clients. */
static size_t client_len(uint32_t id)
{
    return 2048 + (id % 7) * 512 + id % 13;
}

/* Connects, sends its pattern in four writes of unequal size, ends its
 * side, and checks the echo byte for byte up to end of stream. */
static int echo_client(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct client *cl = arg;
    moirai_io_t *c = NULL;
    FCHECK(moirai_tcp_connect(&c, moirai_runtime_current(), (struct sockaddr *)&cl->srv->addr,
                              NULL) == 0);
    if (gather.all > 0) {
        if (atomic_fetch_add(&gather.connected, 1) + 1 == gather.all)
            moirai_event_set(&gather.everyone);
        moirai_event_wait(&gather.everyone);
    }
    size_t len = client_len(cl->id);
    unsigned char *out = malloc(len), *in = malloc(len);
    FCHECK(out != NULL && in != NULL);
    fill_pattern(out, len, cl->id);
    size_t cuts[5] = {0, len / 7, len / 3, len / 2 + 5, len};
    for (int k = 0; k < 4; k++) {
        size_t n = cuts[k + 1] - cuts[k];
        FCHECK(moirai_stream_write(c, out + cuts[k], n) == (ssize_t)n);
        if (k == 1)
            moirai_fiber_yield(); /* let the others interleave */
    }
    FCHECK(moirai_stream_shutdown(c) == 0);
    FCHECK(read_to_eof(c, in, len) == (ssize_t)len);
    FCHECK(memcmp(in, out, len) == 0);
    free(out);
    free(in);
    FCHECK(moirai_io_close(c) == 0);
    return 0;
}

static void echo_clients(moirai_runtime_t *rt, int n)
{
    static struct server s;
    server_start(&s, rt, n);
    gather.all = n;
    atomic_init(&gather.connected, 0);
    moirai_event_init(&gather.everyone, MOIRAI_EVENT_MANUAL, false);
    moirai_handle_t *acc = spawn_with_handle(rt, acceptor, &s, NULL);
    struct client *cls = calloc((size_t)n, sizeof *cls);
    moirai_handle_t **hs = calloc((size_t)n, sizeof *hs);
    cr_assert(cls != NULL && hs != NULL);
    long expected_bytes = 0;
    for (int i = 0; i < n; i++) {
        cls[i] = (struct client){&s, (uint32_t)i};
        expected_bytes += (long)client_len((uint32_t)i);
        hs[i] = spawn_with_handle(rt, echo_client, &cls[i], NULL);
    }
    for (int i = 0; i < n; i++)
        cr_assert_eq(join_and_release(hs[i], NULL), 0, "client %d failed (line %d)", i,
                     atomic_load(&fcheck_line));
    server_finish(&s, acc);
    cr_assert_eq(atomic_load(&gather.connected), n);
    gather.all = 0;
    cr_assert_eq(atomic_load(&s.echoed), expected_bytes);
    free(cls);
    free(hs);
}

/* How many clients: 1000, divided by MOIRAI_TEST_SCALE under sanitizers
 * (TSan supports only a few thousand live fibers), and within the
 * descriptor limit (two sockets per client in this process). */
static int client_count(long n)
{
    long limit = raise_fd_limit();
    n = scaled(n);
    if (n > (limit - 64) / 2)
        n = (limit - 64) / 2;
    cr_log_info("%ld clients (descriptor limit %ld)", n, limit);
    return (int)n;
}

Test(net_echo, concurrent_clients_every_byte_checked, .timeout = 300)
{
    int n = client_count(1000);
    moirai_runtime_t *rt = make_runtime(2);
    echo_clients(rt, n);
    drop_runtime(rt);
}

/* The same on a borrowed scheduler (the runtime's poller thread). */
Test(net_echo, concurrent_clients_on_a_borrowed_scheduler, .timeout = 300)
{
    int n = client_count(300);
    moirai_sched_t *sched = NULL;
    moirai_runtime_t *rt = make_borrowed_runtime(2, &sched);
    echo_clients(rt, n);
    drop_borrowed(rt, sched);
}

/* One worker: every client, every server fiber and the poller share it. */
Test(net_echo, concurrent_clients_on_one_worker, .timeout = 300)
{
    int n = client_count(300);
    moirai_runtime_t *rt = make_runtime(1);
    echo_clients(rt, n);
    drop_runtime(rt);
}

/* ---- A client that resets while the server writes a lot ---- */

static int resetting_client(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct server *s = arg;
    moirai_io_t *c = NULL;
    FCHECK(moirai_tcp_connect(&c, moirai_runtime_current(), (struct sockaddr *)&s->addr, NULL) ==
           0);
    /* Take 64 KiB of the flood (checked), so the server is mid-write. */
    enum { TAKE = 64 * 1024 };
    unsigned char *in = malloc(TAKE);
    FCHECK(in != NULL);
    FCHECK(read_exact(c, in, TAKE) == TAKE);
    for (size_t j = 0; j < TAKE; j++)
        FCHECK(in[j] == pattern_byte(77, j));
    free(in);
    /* Linger 0: close sends a reset instead of a FIN. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    FCHECK(setsockopt(moirai_io_fd(c), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    FCHECK(moirai_io_close(c) == 0);
    return 0;
}

Test(net_echo, client_reset_mid_write_leaves_the_server_serving, .timeout = 120)
{
    moirai_runtime_t *rt = make_runtime(2);
    enum { OTHERS = 20 };
    static struct server s;
    /* The resetting client is accepted first; then OTHERS echo clients
     * while the flood runs, then one more after it ended. */
    server_start(&s, rt, 1 + OTHERS + 1);
    s.big_writer = 0;
    moirai_handle_t *acc = spawn_with_handle(rt, acceptor, &s, NULL);
    moirai_handle_t *reset = spawn_with_handle(rt, resetting_client, &s, NULL);
    /* Wait for the first connection to be accepted before the others. */
    ASSERT_OK(join_and_release(reset, NULL));
    struct client cls[OTHERS + 1];
    moirai_handle_t *hs[OTHERS];
    long expected_bytes = 0;
    for (int i = 0; i < OTHERS; i++) {
        cls[i] = (struct client){&s, (uint32_t)(1000 + i)};
        expected_bytes += (long)client_len(cls[i].id);
        hs[i] = spawn_with_handle(rt, echo_client, &cls[i], NULL);
    }
    cr_assert_eq(moirai_event_wait_timed(&s.big_done, moirai_deadline_after(WAIT_NS)), 0,
                 "the server's write never noticed the reset");
    for (int i = 0; i < OTHERS; i++)
        ASSERT_OK(join_and_release(hs[i], NULL));
    /* The write that met the reset: an error, or the count written before
     * it (less than asked). */
    ssize_t r = s.big_result;
    cr_assert(r == -ECONNRESET || r == -EPIPE || (r >= 0 && r < FLOOD_CHUNK),
              "the flood ended with %zd", r);
    cr_assert_lt(s.big_written, (size_t)FLOOD_MAX, "the flood was never stopped");
    cr_assert_geq(s.big_written, (size_t)64 * 1024);
    cr_log_info("flood: %zu bytes written, then %zd", s.big_written, r);
    /* Still serving after the reset. */
    cls[OTHERS] = (struct client){&s, 2000};
    expected_bytes += (long)client_len(2000);
    ASSERT_OK(run_fiber(rt, echo_client, &cls[OTHERS], NULL));
    server_finish(&s, acc);
    cr_assert_eq(atomic_load(&s.echoed), expected_bytes);
    drop_runtime(rt);
}

/* ---- One waiter per direction: a second one gets -EBUSY ---- */

struct busy {
    moirai_io_t *io;
    moirai_io_t *peer;
    _Atomic uintptr_t *slot;
    ssize_t got;
    unsigned char buf[64];
};

static int first_reader(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct busy *b = arg;
    b->got = read_exact(b->io, b->buf, 5);
    return 0;
}

/* The second reader, as a fiber: waits until the first is parked. */
static int second_reader(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct busy *b = arg;
    uint64_t until = moirai_deadline_after(WAIT_NS);
    while (!slot_armed(b->slot)) {
        FCHECK(moirai_clock_now_ns() < until);
        moirai_fiber_sleep(MOIRAI_NS_PER_MS);
    }
    char x;
    FCHECK(moirai_stream_read(b->io, &x, 1) == -EBUSY);
    FCHECK(moirai_stream_read_timed(b->io, moirai_deadline_after(WAIT_NS), &x, 1) == -EBUSY);
    return 0;
}

Test(net_echo, second_concurrent_reader_gets_ebusy, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct sockaddr_in any = loopback(0);
    moirai_io_t *l = NULL, *c = NULL, *s = NULL;
    cr_assert_eq(moirai_tcp_listen(&l, rt, (struct sockaddr *)&any, NULL), 0);
    struct sockaddr_in addr = local_of(l);
    cr_assert_eq(moirai_tcp_connect(&c, rt, (struct sockaddr *)&addr, NULL), 0);
    cr_assert_eq(moirai_stream_accept(l, &s), 0);
    for (int round = 0; round < 2; round++) {
        struct busy b = {.io = s, .peer = c, .slot = &s->rslot, .got = 0};
        moirai_handle_t *h1 = spawn_with_handle(rt, first_reader, &b, NULL);
        cr_assert(wait_armed(&s->rslot), "the first reader never parked");
        if (round == 0) {
            /* From the (plain) test thread. */
            char x;
            cr_assert_eq(moirai_stream_read(s, &x, 1), -EBUSY);
            cr_assert_eq(moirai_stream_read_timed(s, moirai_deadline_after(WAIT_NS), &x, 1),
                         -EBUSY);
        } else {
            ASSERT_OK(run_fiber(rt, second_reader, &b, NULL));
        }
        /* The first reader is untouched and gets the data, all of it. */
        cr_assert(slot_armed(&s->rslot));
        cr_assert_eq(moirai_stream_write(c, "hello", 5), 5);
        ASSERT_OK(join_and_release(h1, NULL));
        cr_assert_eq(b.got, 5);
        cr_assert(memcmp(b.buf, "hello", 5) == 0);
    }
    moirai_io_close(s);
    moirai_io_close(c);
    moirai_io_close(l);
    drop_runtime(rt);
}

enum { FILL = 8 << 20 };

struct first_acceptor {
    moirai_io_t *l;
    moirai_io_t *got;
    int rc;
};

static int accept_one(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct first_acceptor *a = arg;
    a->rc = moirai_stream_accept(a->l, &a->got);
    return 0;
}

static int first_writer(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct busy *b = arg;
    unsigned char *out = malloc(FILL);
    FCHECK(out != NULL);
    fill_pattern(out, FILL, 42);
    b->got = moirai_stream_write(b->io, out, FILL);
    free(out);
    return 0;
}

Test(net_echo, second_concurrent_writer_and_acceptor_get_ebusy, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct sockaddr_in any = loopback(0);
    moirai_io_t *l = NULL, *c = NULL, *s = NULL;
    cr_assert_eq(moirai_tcp_listen(&l, rt, (struct sockaddr *)&any, NULL), 0);
    struct sockaddr_in addr = local_of(l);
    cr_assert_eq(moirai_tcp_connect(&c, rt, (struct sockaddr *)&addr, NULL), 0);
    cr_assert_eq(moirai_stream_accept(l, &s), 0);
    /* 8 MiB to a peer that does not read: the writer parks for room. */
    struct busy b = {.io = c, .peer = s, .slot = &c->wslot, .got = 0};
    moirai_handle_t *h = spawn_with_handle(rt, first_writer, &b, NULL);
    cr_assert(wait_armed(&c->wslot), "the first writer never parked");
    /* A second writer: -EBUSY, and none of its bytes went out. */
    cr_assert_eq(moirai_stream_write(c, "XXXX", 4), -EBUSY);
    /* The reader takes everything: exactly the first writer's bytes. */
    unsigned char *in = malloc(FILL);
    cr_assert_not_null(in);
    cr_assert_eq(read_exact(s, in, FILL), FILL);
    ASSERT_OK(join_and_release(h, NULL));
    cr_assert_eq(b.got, FILL);
    for (size_t j = 0; j < FILL; j++)
        if (in[j] != pattern_byte(42, j))
            cr_assert_fail("byte %zu differs", j);
    free(in);
    char extra;
    cr_assert_eq(moirai_stream_read_timed(s, moirai_deadline_after(MOIRAI_NS_PER_MS), &extra, 1),
                 -ETIMEDOUT);

    /* A second acceptor. */
    struct first_acceptor fa = {l, NULL, 1};
    moirai_handle_t *ha = spawn_with_handle(rt, accept_one, &fa, NULL);
    cr_assert(wait_armed(&l->rslot), "the first acceptor never parked");
    moirai_io_t *x = NULL;
    cr_assert_eq(moirai_stream_accept(l, &x), -EBUSY);
    cr_assert_null(x);
    moirai_io_t *c2 = NULL;
    cr_assert_eq(moirai_tcp_connect(&c2, rt, (struct sockaddr *)&addr, NULL), 0);
    ASSERT_OK(join_and_release(ha, NULL));
    cr_assert_eq(fa.rc, 0);
    /* It is the connection just made. */
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    cr_assert_eq(moirai_io_peer_addr(fa.got, (struct sockaddr *)&peer, &plen), 0);
    cr_assert_eq(peer.sin_port, local_of(c2).sin_port);
    moirai_io_close(fa.got);
    moirai_io_close(c2);
    moirai_io_close(s);
    moirai_io_close(c);
    moirai_io_close(l);
    drop_runtime(rt);
}
