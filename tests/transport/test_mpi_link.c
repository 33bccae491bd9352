/* The MPI backend's links (link_mpi.c over mpi_engine.c), run as
 * `mpirun.mpich -np 3 test_transport_mpi_link`: every rank runs the same
 * phases against the two others. Not a Criterion test: Criterion runs
 * each test in a forked child, and MPI cannot be initialized in a child
 * of an MPI process; a failed check prints the rank and the line and
 * exits 1, which makes mpirun fail.
 *
 * moirai__peer_start() is this file's: it records the links listen()
 * hands out, so the test drives them directly (peer.c is not linked).
 * The program is not linked with MPICH: the progress engine loads it, as
 * it does for any program, and the test finds MPI_Barrier in it.
 *
 * Phases: parse; listen under an allocation-failure sweep, then the
 * initiator rule and the dial answers; argument errors and a read that
 * times out; byte streams in both directions of every pair at once
 * (3 MiB each, writes and reads of sizes from 1 byte to 700 KB, checked
 * byte by byte, so order, loss, duplication and flow control are all
 * seen); reads parked in fibers of a one-worker runtime (a read that
 * blocked the worker would deadlock the phase); the progress thread's CPU
 * time over 200 ms idle, against a spinning thread's; -ENOMEM from a
 * write; shutdown (the other side reads every byte, then end of stream;
 * a read parked here returns -ECANCELED); a second node on a new epoch,
 * which the faster ranks write to before the slower ones opened it, and
 * where a write times out on a full window. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include <moirai/async/fiber.h>
#include <moirai/async/runtime.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/handle.h>

#include "frame.h"
#include "link.h"
#include "link_mpi.h"
#include "mpi_engine.h"
#include "node_internal.h"
#include "oom.h"

#define MAXR       64
#define STREAM_LEN ((size_t)3 * 1024 * 1024 + 12345)
#define BYE_LEN    ((size_t)100000)
#define EPOCH2_LEN ((size_t)50000)

static int me = -1, np;
/* MPI_Barrier, from the MPICH the engine loaded (RTLD_GLOBAL). */
static __typeof__(MPI_Barrier) *mpi_barrier;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s\n", me, __FILE__, __LINE__, #cond);  \
            fflush(stderr);                                                                        \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "rank %d: %s:%d: %s == %lld, expected %s == %lld\n", me, __FILE__,     \
                    __LINE__, #a, a_, #b, b_);                                                     \
            fflush(stderr);                                                                        \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* ---- the stand-in for peer.c ---- */

static struct moirai_node *expect_node;
static struct link *links[MAXR];
static bool initiator[MAXR];
static int started;

int moirai__peer_start(struct moirai_node *node, struct link *l, bool init, struct connect_wait *cw)
{
    CHECK(node == expect_node);
    CHECK(cw == NULL);
    int r = moirai__link_mpi_peer_rank(l);
    CHECK(r >= 0 && r < np && r != me);
    CHECK(links[r] == NULL);
    links[r] = l;
    initiator[r] = init;
    started++;
    return 0;
}

/* ---- helpers ---- */

/* Byte i of the stream from rank a to rank b in phase `tag`. */
static uint8_t pattern(int a, int b, int tag, size_t i)
{
    uint32_t x = (uint32_t)i * 2654435761u;
    return (uint8_t)((x >> 13) ^ (uint32_t)(a * 31 + b * 7 + tag * 101) ^ (uint32_t)(i >> 9));
}

static void write_all(struct link *l, const void *buf, size_t len)
{
    struct iovec v = {(void *)buf, len};
    CHECK_EQ(l->ops->writev(l, &v, 1, MOIRAI_DEADLINE_NEVER), 0);
}

static void read_exact(struct link *l, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = l->ops->read(l, (uint8_t *)buf + got, len - got, MOIRAI_DEADLINE_NEVER);
        CHECK(n > 0);
        got += (size_t)n;
    }
}

/* Every rank sends one byte on each link, then reads one from each: no
 * rank leaves before all entered, and every byte sent before is read. */
static void link_barrier(void)
{
    for (int r = 0; r < np; r++)
        if (r != me)
            write_all(links[r], "B", 1);
    for (int r = 0; r < np; r++) {
        if (r == me)
            continue;
        char c = 0;
        read_exact(links[r], &c, 1);
        CHECK_EQ(c, 'B');
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- phases ---- */

static void phase_parse(void)
{
    const struct backend_ops *b = &moirai__backend_mpi;
    struct frame_addr a;
    CHECK_EQ(b->parse("mpi:2", &a), 0);
    CHECK_EQ(a.family, FRAME_ADDR_MPI);
    CHECK_EQ(moirai__frame_get_u32(a.addr), 2);
    CHECK_EQ(b->parse("mpi:0", &a), 0);
    CHECK_EQ(moirai__frame_get_u32(a.addr), 0);
    CHECK_EQ(b->parse("mpi:2147483647", &a), 0);
    const char *bad[] = {"mpi:", "mpi:-1", "mpi:x", "2", "mpi:2147483648", "mpi:1 ", "tcp:1", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(b->parse(bad[i], &a), -EINVAL);
    CHECK_EQ(b->parse(NULL, &a), -EINVAL);
    /* The decoder accepts the family, with only the rank's 4 bytes. */
    uint8_t hello[FRAME_HEADER_SIZE + FRAME_HELLO_SIZE];
    uint8_t nonce[FRAME_NONCE_SIZE] = {0};
    moirai__frame_put_header(hello, FRAME_HELLO, 0, 0, FRAME_HELLO_SIZE);
    CHECK_EQ(b->parse("mpi:7", &a), 0);
    moirai__frame_put_hello(hello + FRAME_HEADER_SIZE, 8, 1, &a, nonce);
    struct frame f;
    CHECK_EQ(moirai__frame_decode(hello, sizeof hello, 1024, &f, NULL), (long)sizeof hello);
    CHECK_EQ(f.u.hello.listen.family, FRAME_ADDR_MPI);
    CHECK_EQ(moirai__frame_get_u32(f.u.hello.listen.addr), 7);
    hello[FRAME_HEADER_SIZE + 12 + 4] = 1; /* a byte past the rank */
    CHECK_EQ(moirai__frame_decode(hello, sizeof hello, 1024, &f, NULL), -EPROTO);
}

struct listen_ctx {
    struct moirai_node *node;
    struct frame_addr self;
};

static int listen_op(void *arg)
{
    struct listen_ctx *c = arg;
    return moirai__backend_mpi.listen(c->node, NULL, &c->self);
}

static void listen_failed(void *arg, long n)
{
    (void)arg;
    (void)n;
    CHECK_EQ(started, 0); /* nothing was handed out */
}

/* Listens as `node`; with `sweep`, first under every allocation failure. */
static void do_listen(struct moirai_node *node, bool sweep)
{
    memset(links, 0, sizeof links);
    started = 0;
    expect_node = node;
    struct listen_ctx c = {node, {0}};
    if (sweep) {
        moirai_test_oom_install();
        moirai_test_oom_sweep_result_t res =
            moirai_test_oom_sweep(listen_op, listen_failed, &c, MOIRAI_TEST_OOM_LIMIT);
        moirai_test_oom_uninstall();
        CHECK_EQ(res.rc, 0);
        CHECK(res.failures > 0);
    } else {
        CHECK_EQ(listen_op(&c), 0);
    }
    CHECK_EQ(c.self.family, FRAME_ADDR_MPI);
    CHECK_EQ(moirai__frame_get_u32(c.self.addr), me);
    CHECK_EQ(started, np - 1);
    for (int r = 0; r < np; r++) {
        if (r == me)
            continue;
        CHECK(links[r] != NULL);
        /* The lower rank of a pair starts its handshake. */
        CHECK_EQ(initiator[r], me < r);
    }
}

static void phase_listen(struct moirai_node *node)
{
    do_listen(node, true);
    /* No rank sends before every rank's sweep is over: an allocation of
     * the progress thread for an early message would take the failure
     * meant for listen. */
    mpi_barrier(MPI_COMM_WORLD);
    const struct backend_ops *b = &moirai__backend_mpi;
    struct frame_addr self;
    CHECK_EQ(b->listen(node, NULL, &self), -EADDRINUSE);
    CHECK_EQ(b->listen((struct moirai_node *)&self, NULL, &self), -EADDRINUSE);
    CHECK_EQ(b->listen(NULL, NULL, &self), -EINVAL);
    /* Every rank's link is handed out already: a dial adds nothing. */
    struct link *l = NULL;
    struct frame_addr to;
    for (int r = 0; r <= np; r++) {
        char text[32];
        snprintf(text, sizeof text, "mpi:%d", r);
        CHECK_EQ(b->parse(text, &to), 0);
        CHECK_EQ(b->dial(node, &to, MOIRAI_DEADLINE_NEVER, &l), -EHOSTUNREACH);
    }
    CHECK_EQ(b->dial((struct moirai_node *)&self, &to, MOIRAI_DEADLINE_NEVER, &l), -EHOSTUNREACH);
    to.family = 4;
    CHECK_EQ(b->dial(node, &to, MOIRAI_DEADLINE_NEVER, &l), -EAFNOSUPPORT);
    CHECK(l == NULL);
}

static void phase_errors(void)
{
    for (int r = 0; r < np; r++) {
        if (r == me)
            continue;
        struct link *l = links[r];
        char buf[4];
        struct frame_addr a;
        CHECK_EQ(l->ops->read(l, buf, 0, MOIRAI_DEADLINE_NEVER), -EINVAL);
        CHECK_EQ(l->ops->read(l, NULL, 4, MOIRAI_DEADLINE_NEVER), -EINVAL);
        struct iovec v[5] = {{buf, 1}, {buf, 1}, {buf, 1}, {buf, 1}, {buf, 1}};
        CHECK_EQ(l->ops->writev(l, v, 5, MOIRAI_DEADLINE_NEVER), -EINVAL);
        CHECK_EQ(l->ops->writev(l, v, -1, MOIRAI_DEADLINE_NEVER), -EINVAL);
        struct iovec nul = {NULL, 3};
        CHECK_EQ(l->ops->writev(l, &nul, 1, MOIRAI_DEADLINE_NEVER), -EINVAL);
        CHECK_EQ(l->ops->writev(l, v, 0, MOIRAI_DEADLINE_NEVER), 0); /* nothing to send */
        CHECK_EQ(l->ops->peer_addr(l, &a), -ENOTSUP);
        CHECK_EQ(l->ops->try_writev(l, v, 5), -EINVAL);
        CHECK_EQ(l->ops->try_writev(l, &nul, 1), -EINVAL);
    }
    /* A read times out. A token goes round the ring 0 -> 1 -> ... -> 0;
     * each rank, once it holds the token, reads from the next rank, which
     * sends nothing to it (it waits for the token, or is rank 0 waiting
     * for the last one from elsewhere), then passes the token on. Needs a
     * third rank, or the token would come back on the link being read. */
    if (np >= 3) {
        int next = (me + 1) % np, prev = (me + np - 1) % np;
        char c;
        if (me != 0) {
            read_exact(links[prev], &c, 1);
            CHECK_EQ(c, 'T');
        }
        uint64_t t0 = moirai_clock_now_ns();
        CHECK_EQ(links[next]->ops->read(links[next], &c, 1, t0 + 30 * 1000000ull), -ETIMEDOUT);
        CHECK(moirai_clock_now_ns() >= t0 + 30 * 1000000ull);
        write_all(links[next], "T", 1);
        if (me == 0) {
            read_exact(links[prev], &c, 1);
            CHECK_EQ(c, 'T');
        }
    }
}

/* Stream phase: one writer and one reader thread per other rank. */
struct stream_arg {
    int r;
};

static const size_t write_sizes[] = {1, 3, 17, 1000, 4096, 65535, 65536, 65537, 200000, 700000};
static const size_t read_sizes[] = {1, 7, 100, 5000, 70000, 300000, 65536};

static void *stream_writer(void *arg)
{
    int r = ((struct stream_arg *)arg)->r;
    uint8_t *buf = malloc(STREAM_LEN);
    CHECK(buf != NULL);
    for (size_t i = 0; i < STREAM_LEN; i++)
        buf[i] = pattern(me, r, 1, i);
    size_t off = 0;
    for (unsigned k = 0; off < STREAM_LEN; k++) {
        size_t n = write_sizes[k % (sizeof write_sizes / sizeof write_sizes[0])];
        if (n > STREAM_LEN - off)
            n = STREAM_LEN - off;
        /* 1 to 4 iovecs, split unevenly, some empty. */
        int cnt = (int)(k % 4) + 1;
        struct iovec v[4];
        size_t left = n, p = off;
        for (int j = 0; j < cnt; j++) {
            size_t part = j == cnt - 1 ? left : left / 3;
            v[j].iov_base = buf + p;
            v[j].iov_len = part;
            p += part;
            left -= part;
        }
        CHECK_EQ(links[r]->ops->writev(links[r], v, cnt, MOIRAI_DEADLINE_NEVER), 0);
        off += n;
    }
    free(buf);
    return NULL;
}

static void *stream_reader(void *arg)
{
    int r = ((struct stream_arg *)arg)->r;
    uint8_t *buf = malloc(300000);
    CHECK(buf != NULL);
    size_t off = 0;
    for (unsigned k = 0; off < STREAM_LEN; k++) {
        size_t want = read_sizes[k % (sizeof read_sizes / sizeof read_sizes[0])];
        if (want > STREAM_LEN - off)
            want = STREAM_LEN - off;
        ssize_t n = links[r]->ops->read(links[r], buf, want, MOIRAI_DEADLINE_NEVER);
        CHECK(n > 0 && (size_t)n <= want);
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != pattern(r, me, 1, off + (size_t)i)) {
                fprintf(stderr, "rank %d: byte %zu from rank %d is wrong\n", me, off + (size_t)i,
                        r);
                exit(1);
            }
        }
        off += (size_t)n;
    }
    free(buf);
    return NULL;
}

static void phase_streams(void)
{
    pthread_t w[MAXR], rd[MAXR];
    struct stream_arg args[MAXR];
    for (int r = 0; r < np; r++) {
        if (r == me)
            continue;
        args[r].r = r;
        CHECK_EQ(pthread_create(&w[r], NULL, stream_writer, &args[r]), 0);
        CHECK_EQ(pthread_create(&rd[r], NULL, stream_reader, &args[r]), 0);
    }
    for (int r = 0; r < np; r++) {
        if (r == me)
            continue;
        pthread_join(w[r], NULL);
        pthread_join(rd[r], NULL);
    }
}

/* Fibers: on one worker, every reader fiber is spawned (and parks) before
 * the writer fibers; the writers run only if the readers parked their
 * fibers rather than blocking the worker. */
static int fiber_reader(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    int r = (int)(intptr_t)arg;
    char buf[8] = {0};
    read_exact(links[r], buf, 4);
    CHECK(memcmp(buf, "ping", 4) == 0);
    return 0;
}

static int fiber_writer(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    int r = (int)(intptr_t)arg;
    write_all(links[r], "ping", 4);
    return 0;
}

static void phase_fibers(void)
{
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = 1;
    moirai_runtime_config_t rc;
    moirai_runtime_config_init(&rc);
    rc.sched_config = &sc;
    moirai_runtime_t *rt;
    CHECK_EQ(moirai_runtime_create(&rt, &rc), 0);
    moirai_handle_t *h[2 * MAXR];
    int nh = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int r = 0; r < np; r++) {
            if (r == me)
                continue;
            CHECK_EQ(moirai_handle_create(&h[nh]), 0);
            CHECK_EQ(moirai_fiber_spawn(rt, pass == 0 ? fiber_reader : fiber_writer,
                                        (void *)(intptr_t)r, NULL, h[nh]),
                     0);
            nh++;
        }
    }
    for (int i = 0; i < nh; i++) {
        CHECK_EQ(moirai_handle_join(h[i], NULL), 0);
        moirai_handle_release(h[i]);
    }
    CHECK_EQ(moirai_runtime_destroy(rt), 0);
}

/* A thread that spins for `ns` and reports its own CPU time: what a busy
 * loop gets from this (shared, loaded) machine over the same window. */
struct spinner {
    uint64_t ns, cpu;
};

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *spin_main(void *arg)
{
    struct spinner *s = arg;
    uint64_t c0 = thread_cpu_ns(), end = moirai_clock_now_ns() + s->ns;
    while (moirai_clock_now_ns() < end) {
    }
    s->cpu = thread_cpu_ns() - c0;
    return NULL;
}

/* The progress thread, with links open and nothing moving, sleeps: over
 * 200 ms it wakes about once per millisecond to poll MPI. A busy loop
 * would get about as much CPU as a spinning thread beside it; the idle
 * thread must use less than a quarter of that (or, on a machine so loaded
 * that the spinner got little, less than 10 ms). */
static void phase_idle(void)
{
    sleep_ms(50); /* past the spin and the short naps */
    struct spinner s = {200 * 1000000ull, 0};
    uint64_t c0, c1;
    CHECK_EQ(moirai__mpi_engine_cputime(&c0), 0);
    uint64_t t0 = moirai_clock_now_ns();
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, spin_main, &s), 0);
    pthread_join(t, NULL);
    uint64_t t1 = moirai_clock_now_ns();
    CHECK_EQ(moirai__mpi_engine_cputime(&c1), 0);
    printf("rank %d: progress thread idle: %.2f ms CPU in %.1f ms (a spinning thread: %.1f ms)\n",
           me, (double)(c1 - c0) / 1e6, (double)(t1 - t0) / 1e6, (double)s.cpu / 1e6);
    fflush(stdout);
    CHECK((c1 - c0) * 4 < s.cpu || c1 - c0 < 10 * 1000000ull);
}

/* Between two MPI barriers no rank sends on a link, so the progress
 * thread allocates nothing and the failure hits the write. */
static void phase_oom(void)
{
    mpi_barrier(MPI_COMM_WORLD);
    moirai_test_oom_install();
    for (int r = 0; r < np; r++) {
        if (r == me)
            continue;
        moirai_test_oom_fail_at(0);
        struct iovec v = {"lost", 4};
        CHECK_EQ(links[r]->ops->writev(links[r], &v, 1, MOIRAI_DEADLINE_NEVER), -ENOMEM);
    }
    moirai_test_oom_uninstall();
    mpi_barrier(MPI_COMM_WORLD);
}

/* A write that finds the window full times out: on fresh links (nothing
 * in flight), rank 0 writes twice the window to rank 1, which reads
 * nothing until rank 0's write returned (the MPI barrier). Exactly one
 * window's worth was queued: rank 1 reads it, and the next phase's bytes
 * come right after. */
static void phase_write_timeout(void)
{
    size_t len = 2 * MPI_ENGINE_WINDOW;
    uint8_t *buf = malloc(len);
    CHECK(buf != NULL);
    if (me == 0) {
        for (size_t i = 0; i < len; i++)
            buf[i] = pattern(0, 1, 4, i);
        struct iovec v = {buf, len};
        uint64_t t0 = moirai_clock_now_ns();
        CHECK_EQ(links[1]->ops->writev(links[1], &v, 1, t0 + 100 * 1000000ull), -ETIMEDOUT);
        CHECK(moirai_clock_now_ns() >= t0 + 100 * 1000000ull);
        /* The window is still full: try_writev takes nothing. */
        CHECK_EQ(links[1]->ops->try_writev(links[1], &v, 1), 0);
    }
    mpi_barrier(MPI_COMM_WORLD);
    if (me == 1) {
        /* The whole window arrives, unread (until then, polled). */
        while (links[0]->ops->unread(links[0]) < MPI_ENGINE_WINDOW)
            sleep_ms(1);
        CHECK_EQ(links[0]->ops->unread(links[0]), MPI_ENGINE_WINDOW);
        read_exact(links[0], buf, MPI_ENGINE_WINDOW);
        CHECK_EQ(links[0]->ops->unread(links[0]), 0);
        for (size_t i = 0; i < MPI_ENGINE_WINDOW; i++)
            CHECK(buf[i] == pattern(0, 1, 4, i));
    }
    free(buf);
}

/* Shutdown: in each pair the higher rank writes BYE_LEN bytes and shuts
 * its link down while one of its threads is parked reading it; the lower
 * rank reads every byte, then end of stream. */
static void *parked_reader(void *arg)
{
    struct link *l = arg;
    char c;
    return (void *)(intptr_t)l->ops->read(l, &c, 1, MOIRAI_DEADLINE_NEVER);
}

static void *shutdown_pair(void *arg)
{
    int r = ((struct stream_arg *)arg)->r;
    struct link *l = links[r];
    uint8_t *buf = malloc(BYE_LEN);
    CHECK(buf != NULL);
    if (me > r) {
        for (size_t i = 0; i < BYE_LEN; i++)
            buf[i] = pattern(me, r, 2, i);
        write_all(l, buf, BYE_LEN);
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, parked_reader, l), 0);
        sleep_ms(20); /* usually parked by now; either way the answer is the same */
        l->ops->shutdown(l);
        void *rv;
        pthread_join(t, &rv);
        CHECK_EQ((intptr_t)rv, -ECANCELED);
        l->ops->shutdown(l); /* idempotent */
        char c;
        CHECK_EQ(l->ops->read(l, &c, 1, MOIRAI_DEADLINE_NEVER), -ECANCELED);
        struct iovec v = {"x", 1};
        CHECK_EQ(l->ops->writev(l, &v, 1, MOIRAI_DEADLINE_NEVER), -ECANCELED);
        CHECK_EQ(l->ops->try_writev(l, &v, 1), -ECANCELED);
    } else {
        read_exact(l, buf, BYE_LEN);
        for (size_t i = 0; i < BYE_LEN; i++)
            CHECK(buf[i] == pattern(r, me, 2, i));
        char c;
        CHECK_EQ(l->ops->read(l, &c, 1, MOIRAI_DEADLINE_NEVER), 0);
        CHECK_EQ(l->ops->read(l, &c, 1, MOIRAI_DEADLINE_NEVER), 0);
        struct iovec v = {"x", 1};
        CHECK_EQ(l->ops->writev(l, &v, 1, MOIRAI_DEADLINE_NEVER), -EPIPE);
        CHECK_EQ(l->ops->try_writev(l, &v, 1), -EPIPE);
        l->ops->shutdown(l);
    }
    free(buf);
    return NULL;
}

static void phase_shutdown(void)
{
    pthread_t t[MAXR];
    struct stream_arg args[MAXR];
    for (int r = 0; r < np; r++) {
        if (r == me)
            continue;
        args[r].r = r;
        CHECK_EQ(pthread_create(&t[r], NULL, shutdown_pair, &args[r]), 0);
    }
    for (int r = 0; r < np; r++)
        if (r != me)
            pthread_join(t[r], NULL);
}

static void close_all(struct moirai_node *node)
{
    for (int r = 0; r < np; r++) {
        if (r != me) {
            links[r]->ops->shutdown(links[r]);
            links[r]->ops->close(links[r]);
            links[r] = NULL;
        }
    }
    moirai__backend_mpi.stop(node);
}

/* A second node: a new epoch. No barrier before it, so a fast rank's
 * bytes reach a slow one before it opened the epoch; none of the first
 * node's bytes may show up. */
static void phase_epoch2(struct moirai_node *node)
{
    do_listen(node, false);
    phase_write_timeout();
    uint8_t *buf = malloc(EPOCH2_LEN);
    CHECK(buf != NULL);
    for (int r = 0; r < np; r++) {
        if (r == me)
            continue;
        for (size_t i = 0; i < EPOCH2_LEN; i++)
            buf[i] = pattern(me, r, 3, i);
        /* The first bytes by try_writev, the rest by writev, in order. A
         * fresh link's empty window takes them all; rank 0's link to rank
         * 1 may still wait for the credit of the window the timeout
         * filled, and take nothing. */
        struct iovec half[2] = {{buf, 1000}, {buf + 1000, EPOCH2_LEN / 2 - 1000}};
        ssize_t took = links[r]->ops->try_writev(links[r], half, 2);
        if (me == 0 && r == 1)
            CHECK(took == 0 || took == (ssize_t)(EPOCH2_LEN / 2));
        else
            CHECK_EQ(took, EPOCH2_LEN / 2);
        write_all(links[r], buf + took, EPOCH2_LEN - (size_t)took);
    }
    for (int r = 0; r < np; r++) {
        if (r == me)
            continue;
        read_exact(links[r], buf, EPOCH2_LEN);
        for (size_t i = 0; i < EPOCH2_LEN; i++)
            CHECK(buf[i] == pattern(r, me, 3, i));
    }
    link_barrier();
    free(buf);
}

int main(void)
{
    CHECK(dlsym(RTLD_DEFAULT, "MPI_Init") == NULL); /* not linked: loaded below */
    int rank = moirai__link_mpi_rank();
    CHECK(rank >= 0);
    me = rank;
    CHECK_EQ(moirai__mpi_engine_acquire(NULL, &np), 0);
    moirai__mpi_engine_release();
    *(void **)&mpi_barrier = dlsym(RTLD_DEFAULT, "MPI_Barrier");
    CHECK(mpi_barrier != NULL);
    CHECK(np >= 2 && np <= MAXR);
    /* Every rank sweeps listen's failures before any rank sends. */
    mpi_barrier(MPI_COMM_WORLD);

    /* Only the fields listen() reads or writes matter: node 1 has no
     * configured id (listen makes it rank + 1), node 2 has one. */
    static struct moirai_node node1_s, node2_s;
    struct moirai_node *node1 = &node1_s, *node2 = &node2_s;
    node1->id = 0x5eed;
    node2->id = 1000 + (uint64_t)me;
    node2->id_given = true;

    phase_parse();
    phase_listen(node1);
    CHECK_EQ(node1->id, me + 1);
    link_barrier();
    phase_errors();
    link_barrier();
    phase_streams();
    link_barrier();
    phase_fibers();
    link_barrier();
    phase_idle();
    link_barrier();
    phase_oom();
    phase_shutdown();
    close_all(node1);
    phase_epoch2(node2);
    CHECK_EQ(node2->id, 1000 + me);
    close_all(node2);
    printf("rank %d: ok\n", me);
    return 0;
}
