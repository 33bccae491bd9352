/* A server stops cleanly on SIGTERM: a fiber waiting for the signal
 * closes the listener and every open connection, which wakes the fibers
 * blocked in accept and read with -EBADF; they end, and no fiber is left
 * behind (the runtime's live count drops to zero and destroy returns). */
#include "async_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <unistd.h>

#define CONNS 50

struct server {
    moirai_runtime_t *rt;
    moirai_io_t *listener;
    moirai_mutex_t lock;
    moirai_io_t *conns[CONNS];
    int nconns;
    _Atomic int accepted;
    _Atomic int readers_ended; /* connection fibers that saw -EBADF */
    _Atomic int acceptor_rc;
};

/* Echoes until the stream ends or fails; returns how it ended. */
static ssize_t echo(moirai_io_t *io)
{
    char buf[64];
    ssize_t n;
    while ((n = moirai_stream_read(io, buf, sizeof buf)) > 0)
        moirai_stream_write(io, buf, (size_t)n);
    return n;
}

struct conn_arg {
    struct server *s;
    moirai_io_t *io;
};

static int counted_conn(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    struct conn_arg *ca = arg;
    if (echo(ca->io) == -EBADF)
        atomic_fetch_add(&ca->s->readers_ended, 1);
    moirai_free(ca);
    return 0;
}

static int acceptor(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    struct server *s = arg;
    for (;;) {
        moirai_io_t *io;
        int rc = moirai_stream_accept(s->listener, &io);
        if (rc != 0) {
            atomic_store(&s->acceptor_rc, rc);
            return 0;
        }
        moirai_mutex_lock(&s->lock);
        s->conns[s->nconns++] = io;
        moirai_mutex_unlock(&s->lock);
        struct conn_arg *ca = moirai_malloc(sizeof *ca);
        if (ca == NULL) {
            moirai_io_close(io);
            continue;
        }
        ca->s = s;
        ca->io = io;
        moirai_fiber_spawn(s->rt, counted_conn, ca, NULL, NULL);
        atomic_fetch_add(&s->accepted, 1);
    }
}

/* Waits for SIGTERM, then closes everything the server holds. */
struct stop_arg {
    struct server *s;
    moirai_signal_t *sig;
    _Atomic int got;
};

static int stop_on_signal(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    struct stop_arg *a = arg;
    int n = moirai_signal_wait_timed(a->sig, moirai_deadline_after(WAIT_NS));
    atomic_store(&a->got, n);
    moirai_io_close(a->s->listener);
    moirai_mutex_lock(&a->s->lock);
    for (int i = 0; i < a->s->nconns; i++)
        moirai_io_close(a->s->conns[i]);
    moirai_mutex_unlock(&a->s->lock);
    return 0;
}

Test(net_shutdown, sigterm_stops_the_server_with_no_fiber_left, .timeout = 60)
{
    struct server s = {0};
    s.rt = make_runtime(2);
    moirai_mutex_init(&s.lock);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(moirai_tcp_listen(&s.listener, s.rt, (struct sockaddr *)&addr, NULL), 0);
    socklen_t len = sizeof addr;
    cr_assert_eq(moirai_io_local_addr(s.listener, (struct sockaddr *)&addr, &len), 0);

    struct stop_arg stop = {.s = &s};
    cr_assert_eq(moirai_signal_create(&stop.sig, s.rt, SIGTERM), 0);
    moirai_handle_t *stop_h = spawn_with_handle(s.rt, stop_on_signal, &stop, NULL);
    moirai_handle_t *acc_h = spawn_with_handle(s.rt, acceptor, &s, NULL);

    /* Clients from this plain thread: connections the server holds open. */
    moirai_io_t *clients[CONNS];
    for (int i = 0; i < CONNS; i++)
        cr_assert_eq(moirai_tcp_connect(&clients[i], s.rt, (struct sockaddr *)&addr, NULL), 0);
    uint64_t until = moirai_deadline_after(WAIT_NS);
    while (atomic_load(&s.accepted) < CONNS && moirai_clock_now_ns() < until)
        moirai_fiber_sleep(MOIRAI_NS_PER_MS);
    cr_assert_eq(atomic_load(&s.accepted), CONNS);
    /* One echo each, so every connection fiber is known to be serving. */
    for (int i = 0; i < CONNS; i++) {
        char b = (char)i;
        cr_assert_eq(moirai_stream_write(clients[i], &b, 1), 1);
        cr_assert_eq(moirai_stream_read(clients[i], &b, 1), 1);
        cr_assert_eq(b, (char)i);
    }

    cr_assert_eq(kill(getpid(), SIGTERM), 0);
    cr_assert_eq(join_and_release(stop_h, NULL), 0);
    cr_assert_gt(atomic_load(&stop.got), 0, "the signal never reached the fiber");
    cr_assert_eq(join_and_release(acc_h, NULL), 0);
    cr_assert_eq(atomic_load(&s.acceptor_rc), -EBADF);

    /* Every connection fiber ended through the close, none is left. */
    until = moirai_deadline_after(WAIT_NS);
    while (atomic_load(&s.readers_ended) < CONNS && moirai_clock_now_ns() < until)
        moirai_fiber_sleep(MOIRAI_NS_PER_MS);
    cr_assert_eq(atomic_load(&s.readers_ended), CONNS);
    moirai_runtime_stats_t st = idle_stats(s.rt);
    cr_assert_eq(st.fibers_alive, 0);
    /* The clients see end of stream. */
    for (int i = 0; i < CONNS; i++) {
        char b;
        cr_assert_eq(moirai_stream_read(clients[i], &b, 1), 0);
        moirai_io_close(clients[i]);
    }
    moirai_signal_destroy(stop.sig);
    drop_runtime(s.rt);
}
