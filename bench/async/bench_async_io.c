/* moirai-bench, suite "async", the I/O cases: moirai-async's sockets,
 * timers and file reads against raw libuv, raw epoll, pread, Go and Tokio.
 *
 * Topology: client and server run in this one process for every
 * implementation (on the reference machine a wake-up across processes
 * costs 15-20 us and one across the two CPUs 25-35 us, so a round trip
 * with the server in another process measures something else). The one
 * exception is http_hello_keepalive, whose client is the separate `wrk`
 * process for every implementation. All traffic is on 127.0.0.1.
 *
 * Moirai: a runtime over a scheduler of 2 workers per measurement,
 * created before the clock starts and destroyed after it stops, as in
 * bench_async.c. Go runs with GOMAXPROCS 2, Tokio with a multi-thread
 * runtime of 2 workers. The libuv peers are single-threaded by design
 * (one loop, one thread); the epoll server too.
 *
 * Every metric is lower-is-better; ratio = Moirai / peer.
 *
 * tcp_echo_rtt (us_per_rtt)
 *   One client, one connection, 64 B request, echoed whole, the next
 *   request sent once the whole echo is back; us per round trip after 100
 *   untimed ones. Every echo is checked. "moirai": a client fiber
 *   (moirai_tcp_connect, moirai_stream_write / moirai_stream_read) and a
 *   server fiber spawned by an accepting fiber; "libuv": one loop thread holding
 *   both client and server (callbacks); "go": a client goroutine and a
 *   server goroutine, net package; "tokio": a client task and a server
 *   task. TCP_NODELAY everywhere.
 *
 * tcp_echo_100c (ns_per_op)
 *   100 connections, each with a client doing sequential 64 B request /
 *   echo round trips (N / 100 each, after 10 untimed ones, all clients
 *   starting together); wall-clock ns per request overall. "moirai": 100
 *   client and 100 server fibers; "libuv": all
 *   200 ends on one loop thread; "go": 100 client and 100 server
 *   goroutines.
 *
 * http_hello_keepalive (ns_per_req)
 *   A keep-alive HTTP/1.1 server answering "Hello, World!" to every
 *   request, driven by `wrk -t1 -c100 -dNs` (N = the case's iteration
 *   count: 3 s, 1 s with --quick) on the same 2 CPUs; ns per request =
 *   1e9 / wrk's requests per second. wrk uses at most one CPU (one
 *   thread); the server gets the rest. After each round a line on stderr
 *   gives the CPU each side used: the server's (this process, every
 *   thread, user + system, from getrusage) and wrk's (wait4), per request
 *   and as a share of one CPU. "moirai": the server of
 *   examples/http_hello.c (an accepting fiber, a fiber per connection)
 *   in this process; "libuv": one loop thread, callbacks;
 *   "epoll": one thread, level-triggered epoll; "go": net/http with
 *   GOMAXPROCS 2. The round fails if wrk reports a socket error or a
 *   non-2xx response.
 *
 * timer_churn (ns_per_op)
 *   1024 timer objects made before the clock starts; a batch arms each at
 *   a deadline spread over 1-2 s ahead, then disarms each; batches repeat
 *   to N arm+disarm pairs (1M). ns per pair. "moirai": moirai_timer_arm
 *   + moirai_timer_disarm from one fiber; "libuv": uv_timer_start +
 *   uv_timer_stop on the loop's own thread (the calling thread).
 *
 * file_read_4k (ns_per_op)
 *   Random 4 KiB reads of a 64 MiB file (made once per process, unlinked,
 *   in the page cache), 64 reads in flight; ns per read. Every block read
 *   is checked. "moirai": 64 fibers, each making N / 64 moirai_fs_read
 *   calls; "libuv": uv_fs_read callbacks on libuv's thread pool (4
 *   threads by default), completions on a loop of the calling thread;
 *   "pread": plain pread from 2 threads. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* Moirai's side of the socket cases needs moirai-async's net.h, that of
 * timer_churn its timer.h, that of file_read_4k its fs.h. */
#if __has_include(<moirai/async/fs.h>)
#define MOIRAI_BENCH_HAVE_FS 1
#include <moirai/async/fs.h>
#endif
#if __has_include(<moirai/async/timer.h>)
#define MOIRAI_BENCH_HAVE_TIMER 1
#include <moirai/async/timer.h>
#endif
#if __has_include(<moirai/async/net.h>)
#define MOIRAI_BENCH_HAVE_NET 1
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>

#include <moirai/async/fiber.h>
#include <moirai/async/net.h>
#include <moirai/async/runtime.h>
#include <moirai/core/clock.h>
#include <moirai/core/error.h>
#include <moirai/core/handle.h>
#include <moirai/sync/event.h>
#include <moirai/sync/waitgroup.h>
#endif

#include "../bench.h"
#include "io_peers.h"
#include "peer.h"

extern char **environ;

#define THREADS 2

/* ---- the Go and Tokio modules ---- */

#ifndef MOIRAI_BENCH_ASYNC_GO
#define MOIRAI_BENCH_ASYNC_GO NULL
#endif
#ifndef MOIRAI_BENCH_ASYNC_TOKIO
#define MOIRAI_BENCH_ASYNC_TOKIO NULL
#endif
#ifndef MOIRAI_BENCH_ASYNC_GO_MISSING
#define MOIRAI_BENCH_ASYNC_GO_MISSING "not built"
#endif
#ifndef MOIRAI_BENCH_ASYNC_TOKIO_MISSING
#define MOIRAI_BENCH_ASYNC_TOKIO_MISSING "not built"
#endif
#ifndef MOIRAI_BENCH_WRK_MISSING
#define MOIRAI_BENCH_WRK_MISSING "not built"
#endif

/* The entry point `name` of the module at `path`, loading it on first
 * use; it then stays loaded for the life of the process (the Go runtime
 * cannot be unloaded, and a function pointer must stay valid). dlopen of
 * a path that bench_async.c has loaded already returns the same module, so
 * the Go runtime starts once per process. NULL, with the reason on stderr,
 * if it cannot be loaded. */
static void *module_sym(const char *path, const char *name)
{
    static struct {
        const char *path;
        void *handle;
    } loaded[2];
    void *h = NULL;
    for (size_t i = 0; i < sizeof(loaded) / sizeof(loaded[0]) && !h; i++) {
        if (loaded[i].path == path) {
            h = loaded[i].handle;
        } else if (!loaded[i].path) {
            h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            if (!h) {
                fprintf(stderr, "async: dlopen %s: %s\n", path, dlerror());
                return NULL;
            }
            loaded[i].path = path;
            loaded[i].handle = h;
        }
    }
    void *f = h ? dlsym(h, name) : NULL;
    if (!f)
        fprintf(stderr, "async: no %s in %s\n", name, path);
    return f;
}

#define MODULE_FN(type, path, name) ((type)(uintptr_t)module_sym(path, name))

typedef double (*echo_rtt_fn)(int, uint64_t);
typedef double (*echo_conns_fn)(int, int, uint64_t);
typedef int (*http_start_fn)(int, int *);
typedef int (*http_stop_fn)(void);

static double echo_rtt_go(uint64_t iters)
{
    echo_rtt_fn f = MODULE_FN(echo_rtt_fn, MOIRAI_BENCH_ASYNC_GO, "moirai_peer_echo_rtt");
    return f ? f(THREADS, iters) : -1.0;
}

static double echo_rtt_tokio(uint64_t iters)
{
    echo_rtt_fn f = MODULE_FN(echo_rtt_fn, MOIRAI_BENCH_ASYNC_TOKIO, "moirai_peer_echo_rtt");
    return f ? f(THREADS, iters) : -1.0;
}

static double echo_100c_go(uint64_t iters)
{
    echo_conns_fn f = MODULE_FN(echo_conns_fn, MOIRAI_BENCH_ASYNC_GO, "moirai_peer_echo_conns");
    uint64_t per = iters / IO_ECHO_CONNS;
    return f ? f(THREADS, IO_ECHO_CONNS, per ? per : 1) : -1.0;
}

static int go_http_start(int *port)
{
    http_start_fn f = MODULE_FN(http_start_fn, MOIRAI_BENCH_ASYNC_GO, "moirai_peer_http_start");
    return f ? f(THREADS, port) : -ENOENT;
}

static int go_http_stop(void)
{
    http_stop_fn f = MODULE_FN(http_stop_fn, MOIRAI_BENCH_ASYNC_GO, "moirai_peer_http_stop");
    return f ? f() : -ENOENT;
}

static const io_http_server_t go_http = {go_http_start, go_http_stop};

/* ---- Moirai ---- */

#ifdef MOIRAI_BENCH_HAVE_NET

/* A runtime over a scheduler of THREADS workers, created before a clock
 * starts (as in bench_async.c). */
static int runtime_create(moirai_runtime_t **out)
{
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = THREADS;
    moirai_runtime_config_t rc;
    moirai_runtime_config_init(&rc);
    rc.sched_config = &sc;
    int err = moirai_runtime_create(out, &rc);
    if (err != 0)
        fprintf(stderr, "async: moirai_runtime_create: %s\n", moirai_strerror(err));
    return err;
}

static double runtime_destroy(moirai_runtime_t *rt, double t)
{
    int err = moirai_runtime_destroy(rt);
    if (err != 0) {
        fprintf(stderr, "async: moirai_runtime_destroy: %s\n", moirai_strerror(err));
        return -1.0;
    }
    return t;
}

/* The first error a fiber met; checked after the joins. Relaxed: the
 * wait groups' waits order it before the read. */
static _Atomic int io_error;

static void note(int err, const char *what)
{
    if (err == 0)
        return;
    int expected = 0;
    if (atomic_compare_exchange_strong_explicit(&io_error, &expected, err, memory_order_relaxed,
                                                memory_order_relaxed))
        fprintf(stderr, "async: moirai: %s: %s\n", what, moirai_strerror(err));
}

static int take_error(void)
{
    return atomic_exchange_explicit(&io_error, 0, memory_order_relaxed);
}

/* 127.0.0.1, port 0. */
static struct sockaddr_in loopback_any(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return a;
}

/* ---- Moirai: TCP echo ---- */

typedef struct m_echo {
    moirai_runtime_t *rt;
    moirai_io_t *listener;
    struct sockaddr_in addr; /* the listener's */
    int conns;
    uint64_t warm, per;
    moirai_waitgroup_t servers; /* echo fibers and the acceptor */
    moirai_waitgroup_t warmed;  /* clients done with the warm-up */
    moirai_waitgroup_t clients; /* clients done */
    moirai_event_t start;       /* opens as the clock starts */
} m_echo_t;

/* The server side of one connection: echo everything until end of
 * stream. */
typedef struct m_server_arg {
    m_echo_t *e;
    moirai_io_t *io;
} m_server_arg_t;

static int m_echo_server(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    m_server_arg_t *a = arg;
    moirai_io_t *io = a->io;
    m_echo_t *e = a->e;
    free(a);
    char buf[65536];
    for (;;) {
        ssize_t n = moirai_stream_read(io, buf, sizeof(buf));
        if (n <= 0) {
            if (n < 0)
                note((int)n, "server read");
            break;
        }
        ssize_t w = moirai_stream_write(io, buf, (size_t)n);
        if (w != n) {
            note(w < 0 ? (int)w : -EIO, "server write");
            break;
        }
    }
    note(moirai_io_close(io), "server close");
    moirai_waitgroup_done(&e->servers);
    return 0;
}

/* Accepts the run's connections, one echo fiber each. */
static int m_echo_acceptor(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    m_echo_t *e = arg;
    for (int i = 0; i < e->conns; i++) {
        moirai_io_t *c = NULL;
        int err = moirai_stream_accept(e->listener, &c);
        m_server_arg_t *a = NULL;
        if (err == 0) {
            a = malloc(sizeof(*a));
            err = a ? 0 : -ENOMEM;
        }
        if (err == 0) {
            *a = (m_server_arg_t){e, c};
            moirai_waitgroup_add(&e->servers, 1);
            err = moirai_fiber_spawn(e->rt, m_echo_server, a, NULL, NULL);
            if (err != 0)
                moirai_waitgroup_done(&e->servers);
        }
        if (err != 0 && c) {
            free(a);
            moirai_io_close(c);
        }
        if (err != 0) {
            note(err, "accept");
            break;
        }
    }
    moirai_waitgroup_done(&e->servers);
    return 0;
}

/* `k` sequential round trips of `msg` on `io`, every echo checked. */
static int m_trips(moirai_io_t *io, const char *msg, uint64_t k)
{
    char got[IO_ECHO_BYTES];
    for (uint64_t i = 0; i < k; i++) {
        ssize_t w = moirai_stream_write(io, msg, IO_ECHO_BYTES);
        if (w != IO_ECHO_BYTES)
            return w < 0 ? (int)w : -EIO;
        size_t have = 0;
        while (have < IO_ECHO_BYTES) {
            ssize_t n = moirai_stream_read(io, got + have, IO_ECHO_BYTES - have);
            if (n <= 0)
                return n < 0 ? (int)n : -ECONNRESET;
            have += (size_t)n;
        }
        if (memcmp(got, msg, IO_ECHO_BYTES) != 0)
            return -EPROTO;
    }
    return 0;
}

typedef struct m_client_arg {
    m_echo_t *e;
    int index;
} m_client_arg_t;

static int m_echo_client(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    m_client_arg_t *a = arg;
    m_echo_t *e = a->e;
    char msg[IO_ECHO_BYTES];
    for (int b = 0; b < IO_ECHO_BYTES; b++)
        msg[b] = (char)('a' + (a->index + b) % 26);
    moirai_io_t *io = NULL;
    int err = moirai_tcp_connect(&io, e->rt, (const struct sockaddr *)&e->addr, NULL);
    if (err == 0)
        err = m_trips(io, msg, e->warm);
    moirai_waitgroup_done(&e->warmed);
    moirai_event_wait(&e->start);
    if (err == 0)
        err = m_trips(io, msg, e->per);
    note(err, "client");
    if (io)
        moirai_io_close(io);
    moirai_waitgroup_done(&e->clients);
    return 0;
}

/* One measurement: `conns` clients, `per` timed round trips each after
 * `warm` untimed ones. Returns ns per request. */
static double m_echo(int conns, uint64_t warm, uint64_t per)
{
    moirai_runtime_t *rt;
    if (runtime_create(&rt) != 0)
        return -1.0;
    m_echo_t *e = calloc(1, sizeof(*e));
    m_client_arg_t *args = calloc((size_t)conns, sizeof(*args));
    if (!e || !args) {
        free(e);
        free(args);
        return runtime_destroy(rt, -1.0);
    }
    e->rt = rt;
    e->conns = conns;
    e->warm = warm;
    e->per = per ? per : 1;
    moirai_waitgroup_init(&e->servers);
    moirai_waitgroup_init(&e->warmed);
    moirai_waitgroup_init(&e->clients);
    moirai_event_init(&e->start, MOIRAI_EVENT_MANUAL, false);
    take_error();
    struct sockaddr_in any = loopback_any();
    socklen_t len = sizeof(e->addr);
    int err = moirai_tcp_listen(&e->listener, rt, (const struct sockaddr *)&any, NULL);
    if (err == 0)
        err = moirai_io_local_addr(e->listener, (struct sockaddr *)&e->addr, &len);
    double t = -1.0;
    if (err == 0) {
        moirai_waitgroup_add(&e->servers, 1);
        err = moirai_fiber_spawn(rt, m_echo_acceptor, e, NULL, NULL);
        if (err != 0)
            moirai_waitgroup_done(&e->servers);
    }
    for (int i = 0; i < conns && err == 0; i++) {
        args[i] = (m_client_arg_t){e, i};
        moirai_waitgroup_add(&e->warmed, 1);
        moirai_waitgroup_add(&e->clients, 1);
        err = moirai_fiber_spawn(rt, m_echo_client, &args[i], NULL, NULL);
        if (err != 0) {
            moirai_waitgroup_done(&e->warmed);
            moirai_waitgroup_done(&e->clients);
        }
    }
    if (err != 0)
        fprintf(stderr, "async/tcp_echo: moirai: set-up: %s\n", moirai_strerror(err));
    moirai_waitgroup_wait(&e->warmed);
    uint64_t t0 = bench_now_ns();
    moirai_event_set(&e->start);
    moirai_waitgroup_wait(&e->clients);
    uint64_t t1 = bench_now_ns();
    /* Once every client has its echoes, every connection was accepted and
     * the acceptor has returned; after a failure (a client that never
     * connected, one never spawned) it may still wait in accept, and
     * closing the listener wakes it with -EBADF. */
    if (e->listener)
        moirai_io_close(e->listener);
    moirai_waitgroup_wait(&e->servers);
    if (err == 0)
        err = take_error();
    if (err == 0)
        t = io_per_op(t0, t1, (uint64_t)conns * e->per);
    moirai_event_destroy(&e->start);
    free(args);
    free(e);
    return runtime_destroy(rt, t);
}

static double echo_rtt_moirai(uint64_t iters)
{
    double ns = m_echo(1, IO_ECHO_WARM_UP, iters);
    return ns < 0 ? ns : ns / 1000.0;
}

static double echo_100c_moirai(uint64_t iters)
{
    uint64_t per = iters / IO_ECHO_CONNS;
    return m_echo(IO_ECHO_CONNS, 10, per ? per : 1);
}

/* ---- Moirai: the HTTP server ---- */

/* The same server as examples/http_hello.c: a fiber per connection reads
 * into its buffer and answers every complete request with one write. It
 * runs in this process, on a runtime of THREADS workers, between start
 * and stop. */
static struct {
    moirai_runtime_t *rt;
    moirai_io_t *listener;
    moirai_handle_t *acceptor;
    moirai_waitgroup_t conns;
} m_http;

static int m_http_conn(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    moirai_io_t *io = arg;
    static const char one[] = IO_HTTP_RESPONSE;
    enum { ONE = sizeof(one) - 1, MAX_BATCH = 16 };
    char buf[16384], out[MAX_BATCH * ONE];
    size_t have = 0;
    for (;;) {
        ssize_t n = moirai_stream_read(io, buf + have, sizeof(buf) - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        size_t used;
        size_t count = io_http_requests(buf, have, &used);
        int bad = 0;
        while (count > 0 && !bad) {
            size_t batch = count < MAX_BATCH ? count : MAX_BATCH;
            for (size_t i = 0; i < batch; i++)
                memcpy(out + i * ONE, one, ONE);
            bad = moirai_stream_write(io, out, batch * ONE) != (ssize_t)(batch * ONE);
            count -= batch;
        }
        memmove(buf, buf + used, have - used);
        have -= used;
        if (bad || have == sizeof(buf))
            break;
    }
    moirai_io_close(io);
    moirai_waitgroup_done(&m_http.conns);
    return 0;
}

/* Accepts until cancelled (stop), a fiber per connection. */
static int m_http_acceptor(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)result;
    /* The token is checked on every turn: under a storm of connections
     * accept never has to wait, so it would never see the cancellation. */
    while (!moirai_cancel_token_is_cancelled(cancel)) {
        moirai_io_t *c;
        int err = moirai_stream_accept(m_http.listener, &c);
        if (err == -ECANCELED)
            return 0;
        if (err != 0)
            continue; /* -EMFILE and the like: the client sees the error */
        moirai_waitgroup_add(&m_http.conns, 1);
        if (moirai_fiber_spawn(m_http.rt, m_http_conn, c, NULL, NULL) != 0) {
            moirai_io_close(c);
            moirai_waitgroup_done(&m_http.conns);
        }
    }
    return 0;
}

static int m_http_start(int *port)
{
    int err = runtime_create(&m_http.rt);
    if (err != 0)
        return err;
    moirai_waitgroup_init(&m_http.conns);
    struct sockaddr_in a = loopback_any();
    socklen_t len = sizeof(a);
    moirai_tcp_config_t cfg;
    moirai_tcp_config_init(&cfg);
    cfg.backlog = 1024;
    err = moirai_tcp_listen(&m_http.listener, m_http.rt, (const struct sockaddr *)&a, &cfg);
    if (err == 0)
        err = moirai_io_local_addr(m_http.listener, (struct sockaddr *)&a, &len);
    if (err == 0)
        err = moirai_handle_create(&m_http.acceptor);
    if (err == 0) {
        err = moirai_fiber_spawn(m_http.rt, m_http_acceptor, NULL, NULL, m_http.acceptor);
        if (err != 0)
            moirai_handle_release(m_http.acceptor);
    }
    if (err != 0) {
        if (m_http.listener)
            moirai_io_close(m_http.listener);
        moirai_runtime_destroy(m_http.rt);
        return err;
    }
    *port = ntohs(a.sin_port);
    return 0;
}

static int m_http_stop(void)
{
    /* wrk has exited: every connection sees end of stream. */
    moirai_handle_cancel(m_http.acceptor);
    int err = moirai_handle_join(m_http.acceptor, NULL);
    moirai_handle_release(m_http.acceptor);
    moirai_waitgroup_wait(&m_http.conns);
    moirai_io_close(m_http.listener);
    int derr = moirai_runtime_destroy(m_http.rt);
    memset(&m_http, 0, sizeof(m_http));
    return err != 0 ? err : derr;
}

static const io_http_server_t moirai_http = {m_http_start, m_http_stop};

/* ---- Moirai: timer_churn ---- */

#ifdef MOIRAI_BENCH_HAVE_TIMER
typedef struct m_timers {
    moirai_timer_t *t[IO_TIMER_OBJECTS];
    uint64_t iters;
    double ns;
} m_timers_t;

/* The churn runs in a fiber of the runtime, as libuv's runs on its loop's
 * thread; the clock is read once per batch, as libuv's loop time is. */
static int m_timer_churn(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    m_timers_t *m = arg;
    int err = 0;
    uint64_t done = 0;
    uint64_t t0 = bench_now_ns();
    while (done < m->iters && !err) {
        uint64_t n = m->iters - done < IO_TIMER_OBJECTS ? m->iters - done : IO_TIMER_OBJECTS;
        uint64_t now = moirai_clock_now_ns();
        for (uint64_t i = 0; i < n && !err; i++) {
            /* 1 s plus an even spread over the next second. */
            uint64_t ahead = UINT64_C(1000000000) + i * UINT64_C(1000000000) / IO_TIMER_OBJECTS;
            err = moirai_timer_arm(m->t[i], now + ahead);
        }
        for (uint64_t i = 0; i < n && !err; i++)
            err = moirai_timer_disarm(m->t[i]); /* 0: it was armed */
        done += n;
    }
    m->ns = io_per_op(t0, bench_now_ns(), m->iters);
    return err;
}

static double timer_churn_moirai(uint64_t iters)
{
    moirai_runtime_t *rt;
    if (runtime_create(&rt) != 0)
        return -1.0;
    m_timers_t *m = calloc(1, sizeof(*m));
    int err = m ? 0 : -ENOMEM;
    int made = 0;
    for (; made < IO_TIMER_OBJECTS && err == 0; made++)
        err = moirai_timer_create(&m->t[made], rt);
    if (err != 0)
        made--;
    moirai_handle_t *h = NULL;
    if (err == 0) {
        m->iters = iters ? iters : 1;
        err = moirai_handle_create(&h);
    }
    if (err == 0) {
        err = moirai_fiber_spawn(rt, m_timer_churn, m, NULL, h);
        if (err == 0)
            err = moirai_handle_join(h, NULL);
        moirai_handle_release(h);
    }
    double t = err == 0 ? m->ns : -1.0;
    if (err != 0)
        fprintf(stderr, "async/timer_churn: moirai: %s\n", moirai_strerror(err));
    for (int i = 0; m && i < made; i++)
        moirai_timer_destroy(m->t[i]);
    free(m);
    return runtime_destroy(rt, t);
}
#endif /* timer.h */

/* ---- Moirai: file_read_4k ---- */

#ifdef MOIRAI_BENCH_HAVE_FS
typedef struct m_files {
    moirai_runtime_t *rt;
    int fd;
    uint64_t per_reader;
    moirai_waitgroup_t ready, done;
    moirai_event_t start;
} m_files_t;

typedef struct m_reader_arg {
    m_files_t *f;
    uint64_t rng;
} m_reader_arg_t;

/* One of the 64 readers: its share of random 4 KiB reads, each checked. */
static int m_reader(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    m_reader_arg_t *a = arg;
    m_files_t *f = a->f;
    unsigned char buf[IO_FILE_BLOCK];
    moirai_waitgroup_done(&f->ready);
    moirai_event_wait(&f->start);
    for (uint64_t i = 0; i < f->per_reader; i++) {
        uint64_t block = io_rand_next(&a->rng) % IO_FILE_BLOCKS;
        ssize_t n =
            moirai_fs_read(f->rt, f->fd, buf, IO_FILE_BLOCK, (int64_t)(block * IO_FILE_BLOCK));
        if (n != IO_FILE_BLOCK || !io_file_block_ok(buf, block)) {
            note(n < 0 ? (int)n : -EIO, "file read");
            break;
        }
    }
    moirai_waitgroup_done(&f->done);
    return 0;
}

static double file_read_moirai(uint64_t iters)
{
    int fd = io_file_fd();
    if (fd < 0)
        return -1.0;
    moirai_runtime_t *rt;
    if (runtime_create(&rt) != 0)
        return -1.0;
    m_files_t f = {.rt = rt, .fd = fd};
    f.per_reader = iters / IO_FILE_READERS ? iters / IO_FILE_READERS : 1;
    m_reader_arg_t args[IO_FILE_READERS];
    moirai_waitgroup_init(&f.ready);
    moirai_waitgroup_init(&f.done);
    moirai_event_init(&f.start, MOIRAI_EVENT_MANUAL, false);
    take_error();
    int err = 0;
    for (int i = 0; i < IO_FILE_READERS && err == 0; i++) {
        args[i] = (m_reader_arg_t){&f, 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1)};
        moirai_waitgroup_add(&f.ready, 1);
        moirai_waitgroup_add(&f.done, 1);
        err = moirai_fiber_spawn(rt, m_reader, &args[i], NULL, NULL);
        if (err != 0) {
            moirai_waitgroup_done(&f.ready);
            moirai_waitgroup_done(&f.done);
            fprintf(stderr, "async/file_read_4k: moirai: spawn: %s\n", moirai_strerror(err));
        }
    }
    moirai_waitgroup_wait(&f.ready);
    uint64_t t0 = bench_now_ns();
    moirai_event_set(&f.start);
    moirai_waitgroup_wait(&f.done);
    uint64_t t1 = bench_now_ns();
    if (err == 0)
        err = take_error();
    moirai_event_destroy(&f.start);
    double t = err == 0 ? io_per_op(t0, t1, f.per_reader * IO_FILE_READERS) : -1.0;
    return runtime_destroy(rt, t);
}
#endif /* fs.h */
#endif /* net.h */

/* ---- http_hello_keepalive: the wrk driver ---- */

#define WRK_CONNS   "100"
#define WRK_THREADS "1"

/* The number after `key` in `text`, or -1. */
static double number_after(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    if (!p)
        return -1.0;
    return strtod(p + strlen(key), NULL);
}

/* Runs wrk for `seconds` against 127.0.0.1:`port`; its standard output
 * (up to `cap` bytes) in `out`, its CPU time in `*cpu_ns`. Returns 0, or
 * -1 if it could not run or failed. */
static int run_wrk(int port, uint64_t seconds, char *out, size_t cap, int64_t *cpu_ns)
{
#ifdef MOIRAI_BENCH_WRK
    char url[64], duration[32];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    snprintf(duration, sizeof(duration), "%llus", (unsigned long long)seconds);
    char *argv[] = {(char *)MOIRAI_BENCH_WRK,
                    "-t" WRK_THREADS,
                    "-c" WRK_CONNS,
                    "-d",
                    duration,
                    "--timeout",
                    "5s",
                    url,
                    NULL};
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    pid_t pid;
    int err = posix_spawn(&pid, MOIRAI_BENCH_WRK, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (err != 0) {
        close(fds[0]);
        fprintf(stderr, "async/http_hello_keepalive: cannot run %s: %s\n", MOIRAI_BENCH_WRK,
                strerror(err));
        return -1;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fds[0], out + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == cap - 1)
            break;
    }
    out[len] = '\0';
    close(fds[0]);
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR)
            return -1;
    }
    *cpu_ns = io_rusage_ns(&ru);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "async/http_hello_keepalive: wrk failed (status %d):\n%s\n", status, out);
        return -1;
    }
    return 0;
#else
    (void)port;
    (void)seconds;
    (void)out;
    (void)cap;
    (void)cpu_ns;
    return -1;
#endif
}

/* One round: start the server, drive it with wrk, stop it. Returns ns per
 * request and reports the CPU each side used on stderr. */
static double http_round(const char *impl, const io_http_server_t *srv, uint64_t seconds)
{
    int port;
    int err = srv->start(&port);
    if (err != 0) {
        fprintf(stderr, "async/http_hello_keepalive: %s: server start: %s\n", impl, strerror(-err));
        return -1.0;
    }
    static char out[16384];
    int64_t wrk_cpu = 0;
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    uint64_t t0 = bench_now_ns();
    int wrk = run_wrk(port, seconds, out, sizeof(out), &wrk_cpu);
    uint64_t t1 = bench_now_ns();
    getrusage(RUSAGE_SELF, &r1);
    err = srv->stop();
    if (wrk != 0)
        return -1.0;
    if (err != 0) {
        fprintf(stderr, "async/http_hello_keepalive: %s: server stop: %s\n", impl, strerror(-err));
        return -1.0;
    }
    double rps = number_after(out, "Requests/sec:");
    double requests = -1.0;
    const char *in = strstr(out, " requests in ");
    if (in) {
        const char *p = in;
        while (p > out && p[-1] != '\n')
            p--;
        requests = strtod(p, NULL);
    }
    if (rps <= 0.0 || requests <= 0.0 || strstr(out, "Socket errors") || strstr(out, "Non-2xx")) {
        fprintf(stderr, "async/http_hello_keepalive: %s: wrk reports errors or no requests:\n%s\n",
                impl, out);
        return -1.0;
    }
    double server_cpu = (double)(io_rusage_ns(&r1) - io_rusage_ns(&r0));
    double wall = (double)(t1 - t0);
    fprintf(stderr,
            "async/http_hello_keepalive: %-6s %9.0f req/s; CPU per request: server %6.0f ns "
            "(%3.0f%% of a CPU), wrk %6.0f ns (%3.0f%%)\n",
            impl, rps, server_cpu / requests, 100.0 * server_cpu / wall, (double)wrk_cpu / requests,
            100.0 * (double)wrk_cpu / wall);
    return 1e9 / rps;
}

#ifdef MOIRAI_BENCH_WRK
static double http_libuv(uint64_t seconds)
{
    return http_round("libuv", &io_uv_http, seconds);
}

static double http_epoll(uint64_t seconds)
{
    return http_round("epoll", &io_epoll_http, seconds);
}

static double http_go(uint64_t seconds)
{
    return http_round("go", &go_http, seconds);
}

#ifdef MOIRAI_BENCH_HAVE_NET
static double http_moirai(uint64_t seconds)
{
    return http_round("moirai", &moirai_http, seconds);
}
#endif
#endif

/* ---- the cases ---- */

#ifdef MOIRAI_BENCH_HAVE_NET
#define MOIRAI_NET_IMPL                                                                            \
    {                                                                                              \
        "moirai", echo_rtt_moirai, NULL                                                            \
    }
#else
#define MOIRAI_NET_IMPL                                                                            \
    {                                                                                              \
        "moirai", NULL, "moirai-async has no <moirai/async/net.h> in this tree"                    \
    }
#endif

static bench_impl_t echo_rtt_impls[] = {
    MOIRAI_NET_IMPL,
    {"libuv", io_uv_echo_rtt, NULL},
    {"go", NULL, NULL},
    {"tokio", NULL, NULL},
};
static bench_impl_t echo_100c_impls[] = {
    MOIRAI_NET_IMPL,
    {"libuv", io_uv_echo_100c, NULL},
    {"go", NULL, NULL},
};
static bench_impl_t http_impls[] = {
    {"moirai", NULL, "moirai-async has no <moirai/async/net.h> in this tree"},
    {"libuv", NULL, NULL},
    {"epoll", NULL, NULL},
    {"go", NULL, NULL},
};
static bench_impl_t timer_impls[] = {
#if defined(MOIRAI_BENCH_HAVE_NET) && defined(MOIRAI_BENCH_HAVE_TIMER)
    {"moirai", timer_churn_moirai, NULL},
#else
    {"moirai", NULL, "moirai-async has no <moirai/async/timer.h> in this tree"},
#endif
    {"libuv", io_uv_timer_churn, NULL},
};
static bench_impl_t file_impls[] = {
#if defined(MOIRAI_BENCH_HAVE_NET) && defined(MOIRAI_BENCH_HAVE_FS)
    {"moirai", file_read_moirai, NULL},
#else
    {"moirai", NULL, "moirai-async has no <moirai/async/fs.h> in this tree"},
#endif
    {"libuv", io_uv_file_read, NULL},
    {"pread", io_pread_file_read, NULL},
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static const bench_case_t cases[] = {
    {"async", "tcp_echo_rtt", "us_per_rtt", 50000, 10000, echo_rtt_impls, COUNT_OF(echo_rtt_impls)},
    {"async", "tcp_echo_100c", "ns_per_op", 2000000, 200000, echo_100c_impls,
     COUNT_OF(echo_100c_impls)},
    {"async", "http_hello_keepalive", "ns_per_req", 3, 1, http_impls, COUNT_OF(http_impls)},
    {"async", "timer_churn", "ns_per_op", 1000000, 1000000, timer_impls, COUNT_OF(timer_impls)},
    {"async", "file_read_4k", "ns_per_op", 2000000, 500000, file_impls, COUNT_OF(file_impls)},
};

/* Binds `impl` to `run` when the module at `path` was built, else marks
 * it missing with `why`. */
static void bind_peer(bench_impl_t *impl, const char *path, const char *why,
                      double (*run)(uint64_t))
{
    if (path)
        impl->run = run;
    else
        impl->missing = why;
}

const bench_case_t *bench_async_io_cases(size_t *count)
{
    static bool bound;
    if (!bound) {
        bound = true;
#ifdef MOIRAI_BENCH_HAVE_NET
        echo_100c_impls[0].run = echo_100c_moirai;
#endif
        bind_peer(&echo_rtt_impls[2], MOIRAI_BENCH_ASYNC_GO, MOIRAI_BENCH_ASYNC_GO_MISSING,
                  echo_rtt_go);
        bind_peer(&echo_rtt_impls[3], MOIRAI_BENCH_ASYNC_TOKIO, MOIRAI_BENCH_ASYNC_TOKIO_MISSING,
                  echo_rtt_tokio);
        bind_peer(&echo_100c_impls[2], MOIRAI_BENCH_ASYNC_GO, MOIRAI_BENCH_ASYNC_GO_MISSING,
                  echo_100c_go);
#ifdef MOIRAI_BENCH_WRK
#ifdef MOIRAI_BENCH_HAVE_NET
        http_impls[0].run = http_moirai;
        http_impls[0].missing = NULL;
#endif
        http_impls[1].run = http_libuv;
        http_impls[2].run = http_epoll;
        bind_peer(&http_impls[3], MOIRAI_BENCH_ASYNC_GO, MOIRAI_BENCH_ASYNC_GO_MISSING, http_go);
#else
        for (size_t i = 0; i < COUNT_OF(http_impls); i++) {
            http_impls[i].run = NULL;
            http_impls[i].missing = MOIRAI_BENCH_WRK_MISSING;
        }
#endif
    }
    *count = COUNT_OF(cases);
    return cases;
}
