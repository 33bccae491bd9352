/* Ending a wait early: a deadline on a read from a silent peer, the
 * cancellation of a fiber blocked in accept / read / connect / receive /
 * write (from another fiber and from another thread), and a close that
 * wakes a blocked reader. After each, the handle is as documented: usable
 * (accept, read, receive), holding exactly the bytes reported (write), or
 * not there at all (connect). */
#include "net_test_util.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "test_scale.h"

/* A connected pair of TCP streams and their listener. */
struct pair {
    moirai_io_t *l, *c, *s;
    struct sockaddr_in addr;
};

static void pair_open(struct pair *p, moirai_runtime_t *rt, int backlog)
{
    struct sockaddr_in any = loopback(0);
    moirai_tcp_config_t cfg;
    moirai_tcp_config_init(&cfg);
    cfg.backlog = backlog;
    cr_assert_eq(moirai_tcp_listen(&p->l, rt, (struct sockaddr *)&any, &cfg), 0);
    p->addr = local_of(p->l);
    cr_assert_eq(moirai_tcp_connect(&p->c, rt, (struct sockaddr *)&p->addr, NULL), 0);
    cr_assert_eq(moirai_stream_accept(p->l, &p->s), 0);
}

static void pair_close(struct pair *p)
{
    cr_assert_eq(moirai_io_close(p->s), 0);
    cr_assert_eq(moirai_io_close(p->c), 0);
    cr_assert_eq(moirai_io_close(p->l), 0);
}

/* ---- Deadlines ---- */

struct timed {
    moirai_io_t *io;
    moirai_event_t timed_out; /* the reader reports its -ETIMEDOUT */
};

static int read_with_deadline(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct timed *t = arg;
    char buf[16];
    uint64_t deadline = moirai_deadline_after(30 * MOIRAI_NS_PER_MS);
    FCHECK(moirai_stream_read_timed(t->io, deadline, buf, sizeof buf) == -ETIMEDOUT);
    /* Never before the deadline. */
    FCHECK(moirai_clock_now_ns() >= deadline);
    moirai_event_set(&t->timed_out);
    /* The handle still works: what comes next is read, all of it. */
    FCHECK(read_exact(t->io, buf, 4) == 4);
    FCHECK(memcmp(buf, "late", 4) == 0);
    return 0;
}

Test(net_cancel, deadline_on_a_silent_peer_then_the_stream_still_works, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct pair p;
    pair_open(&p, rt, 0);
    struct timed t = {.io = p.s};
    moirai_event_init(&t.timed_out, MOIRAI_EVENT_MANUAL, false);
    moirai_handle_t *h = spawn_with_handle(rt, read_with_deadline, &t, NULL);
    cr_assert_eq(moirai_event_wait_timed(&t.timed_out, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(moirai_stream_write(p.c, "late", 4), 4);
    ASSERT_OK(join_and_release(h, NULL));

    /* The same from a plain thread (the test thread). */
    char buf[16];
    uint64_t deadline = moirai_deadline_after(30 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_stream_read_timed(p.c, deadline, buf, sizeof buf), -ETIMEDOUT);
    cr_assert_geq(moirai_clock_now_ns(), deadline);
    cr_assert_eq(moirai_stream_write(p.s, "back", 4), 4);
    cr_assert_eq(read_exact(p.c, buf, 4), 4);
    cr_assert(memcmp(buf, "back", 4) == 0);
    /* A deadline in the past matters only when there is nothing to read:
     * data already there is returned. */
    cr_assert_eq(moirai_stream_read_timed(p.c, 0, buf, sizeof buf), -ETIMEDOUT);
    cr_assert_eq(moirai_stream_write(p.s, "now", 3), 3);
    uint64_t until = moirai_deadline_after(WAIT_NS);
    ssize_t n;
    while ((n = moirai_stream_read_timed(p.c, 0, buf, sizeof buf)) == -ETIMEDOUT &&
           moirai_clock_now_ns() < until)
        usleep(100); /* loopback delivers within microseconds; wait for it */
    cr_assert_eq(n, 3);
    cr_assert(memcmp(buf, "now", 3) == 0);
    /* Accept and receive have deadlines too. */
    moirai_io_t *x = NULL;
    cr_assert_eq(moirai_stream_accept_timed(p.l, moirai_deadline_after(MOIRAI_NS_PER_MS), &x),
                 -ETIMEDOUT);
    cr_assert_null(x);
    struct sockaddr_in any = loopback(0);
    moirai_io_t *u = NULL;
    cr_assert_eq(moirai_udp_bind(&u, rt, (struct sockaddr *)&any), 0);
    deadline = moirai_deadline_after(20 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_udp_recv_timed(u, deadline, buf, sizeof buf, NULL), -ETIMEDOUT);
    cr_assert_geq(moirai_clock_now_ns(), deadline);
    moirai_io_close(u);
    pair_close(&p);
    drop_runtime(rt);
}

/* ---- Cancelling a blocked fiber ---- */

enum op { OP_ACCEPT, OP_READ, OP_RECV, OP_CONNECT, OP_WRITE, OP_COUNT };
static const char *const op_name[OP_COUNT] = {"accept", "read", "recv", "connect", "write"};

enum { WRITE_LEN = 8 << 20 };

struct target {
    enum op op;
    moirai_io_t *io;           /* what the operation uses */
    struct sockaddr_in addr;   /* connect: where to */
    _Atomic uintptr_t *slot;   /* where its arm shows while it waits */
    ssize_t rc;                /* what the operation returned */
    ssize_t again;             /* the same operation once more, after */
    _Atomic uint64_t returned; /* clock when it returned */
    unsigned char *data;       /* write: the bytes */
};

static ssize_t do_op(struct target *t)
{
    char buf[64];
    moirai_io_t *x = NULL;
    ssize_t rc;
    switch (t->op) {
    case OP_ACCEPT:
        rc = moirai_stream_accept(t->io, &x);
        break;
    case OP_READ:
        rc = moirai_stream_read(t->io, buf, sizeof buf);
        break;
    case OP_RECV:
        rc = moirai_udp_recv(t->io, buf, sizeof buf, NULL);
        break;
    case OP_CONNECT:
        rc = moirai_tcp_connect(&x, moirai_runtime_current(), (struct sockaddr *)&t->addr, NULL);
        break;
    default:
        rc = moirai_stream_write(t->io, t->data, WRITE_LEN);
        break;
    }
    if (x != NULL)
        moirai_io_close(x);
    return rc;
}

static int blocked_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)result;
    struct target *t = arg;
    t->rc = do_op(t);
    atomic_store(&t->returned, moirai_clock_now_ns());
    FCHECK(moirai_cancel_token_is_cancelled(cancel));
    /* Cancellation is sticky: the next call that could wait fails at once. */
    t->again = do_op(t);
    return 0;
}

/* True once a connect to `port` on loopback is in SYN_SENT (the kernel's
 * table lists the remote port in hex, state 02). */
static bool syn_sent_to(uint16_t port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (f == NULL)
        return false;
    char line[256];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        unsigned rport, state;
        if (sscanf(line, " %*d: %*x:%*x %*x:%x %x", &rport, &state) == 2)
            found = rport == port && state == 0x02;
    }
    fclose(f);
    return found;
}

/* Waits until the target is parked in its operation. */
static bool target_parked(struct target *t)
{
    if (t->op != OP_CONNECT)
        return t->slot != NULL && wait_armed(t->slot);
    uint64_t until = moirai_deadline_after(WAIT_NS);
    while (!syn_sent_to(ntohs(t->addr.sin_port))) {
        if (moirai_clock_now_ns() > until)
            return false;
        usleep(500);
    }
    /* From SYN_SENT to the park is a few instructions; a cancel that came
     * before the park ends it the same way, so this only makes the
     * "was parked" case the likely one. */
    usleep(20000);
    return true;
}

struct canceller {
    struct target *t;
    moirai_handle_t *victim;
    uint64_t cancelled_at;
};

static int cancel_from_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct canceller *c = arg;
    struct target *t = c->t;
    /* Watch the slot from a fiber: sleep between looks. */
    uint64_t until = moirai_deadline_after(WAIT_NS);
    if (t->op != OP_CONNECT) {
        while (!slot_armed(t->slot)) {
            FCHECK(moirai_clock_now_ns() < until);
            moirai_fiber_sleep(MOIRAI_NS_PER_MS);
        }
    } else {
        while (!syn_sent_to(ntohs(t->addr.sin_port))) {
            FCHECK(moirai_clock_now_ns() < until);
            moirai_fiber_sleep(MOIRAI_NS_PER_MS);
        }
        moirai_fiber_sleep(20 * MOIRAI_NS_PER_MS);
    }
    c->cancelled_at = moirai_clock_now_ns();
    /* Running (parked): the token turns cancelled, -EBUSY says so. */
    FCHECK(moirai_handle_cancel(c->victim) == -EBUSY);
    return 0;
}

/* Fills the accept queue of `l` (nobody accepts) until a new connection
 * gets no answer: from then on a connect stays in SYN_SENT, because the
 * kernel drops SYNs while the queue is full. The probes are kept open in
 * `probes` (returns how many). */
static int fill_backlog(struct sockaddr_in *addr, int *probes, int max)
{
    int n = 0;
    while (n < max) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        int r = connect(fd, (struct sockaddr *)addr, sizeof *addr);
        cr_assert(r == 0 || errno == EINPROGRESS);
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (r != 0 && poll(&pfd, 1, 300) == 0) {
            close(fd); /* unanswered: the queue is full */
            return n;
        }
        probes[n++] = fd;
    }
    cr_assert_fail("the accept queue never filled");
    return n;
}

static void cancel_on(enum op op, bool from_thread, bool borrowed)
{
    moirai_sched_t *sched = NULL;
    moirai_runtime_t *rt = borrowed ? make_borrowed_runtime(2, &sched) : make_runtime(2);
    struct pair p;
    pair_open(&p, rt, 1);
    struct sockaddr_in any = loopback(0);
    moirai_io_t *u = NULL, *u2 = NULL;
    cr_assert_eq(moirai_udp_bind(&u, rt, (struct sockaddr *)&any), 0);
    cr_assert_eq(moirai_udp_bind(&u2, rt, (struct sockaddr *)&any), 0);
    struct target t = {.op = op};
    atomic_init(&t.returned, 0);
    int probes[64], nprobes = 0;
    switch (op) {
    case OP_ACCEPT:
        t.io = p.l;
        t.slot = &p.l->rslot;
        break;
    case OP_READ:
        t.io = p.s;
        t.slot = &p.s->rslot;
        break;
    case OP_RECV:
        t.io = u;
        t.slot = &u->rslot;
        break;
    case OP_CONNECT:
        t.addr = p.addr;
        nprobes = fill_backlog(&p.addr, probes, 64);
        break;
    default:
        t.io = p.c;
        t.slot = &p.c->wslot;
        t.data = malloc(WRITE_LEN);
        cr_assert_not_null(t.data);
        fill_pattern(t.data, WRITE_LEN, 9);
        break;
    }
    int fds = count_fds();
    moirai_handle_t *h = spawn_with_handle(rt, blocked_fiber, &t, NULL);
    uint64_t cancelled_at;
    if (from_thread) {
        cr_assert(target_parked(&t), "%s: the fiber never parked", op_name[op]);
        cancelled_at = moirai_clock_now_ns();
        cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    } else {
        struct canceller c = {&t, h, 0};
        ASSERT_OK(run_fiber(rt, cancel_from_fiber, &c, NULL));
        cancelled_at = c.cancelled_at;
    }
    int rc = join_and_release(h, NULL);
    cr_assert_eq(rc, 0, "%s: the cancelled fiber failed a check at line %d", op_name[op],
                 atomic_load(&fcheck_line));
    /* Promptly: the operation had no deadline, so only the cancellation
     * ended it; the bound only catches a wait that went on. */
    uint64_t took = atomic_load(&t.returned) - cancelled_at;
    cr_assert_lt(took, 10 * MOIRAI_NS_PER_S, "%s: returned %llu ns after the cancel", op_name[op],
                 (unsigned long long)took);
    cr_log_info("%s cancelled from a %s: returned after %llu us", op_name[op],
                from_thread ? "thread" : "fiber", (unsigned long long)(took / 1000));

    char buf[64];
    if (op == OP_WRITE) {
        /* Bytes that went out are reported, and are exactly what the peer
         * reads: a count below the whole, never an error after bytes. */
        cr_assert(t.rc > 0 && t.rc < WRITE_LEN, "write: returned %zd", t.rc);
        cr_assert_eq(t.again, -ECANCELED);
        unsigned char *in = malloc((size_t)t.rc);
        cr_assert_eq(read_exact(p.s, in, (size_t)t.rc), t.rc);
        cr_assert(memcmp(in, t.data, (size_t)t.rc) == 0);
        free(in);
        cr_assert_eq(
            moirai_stream_read_timed(p.s, moirai_deadline_after(20 * MOIRAI_NS_PER_MS), buf, 1),
            -ETIMEDOUT, "write: more bytes arrived than were reported");
        /* The stream is usable. */
        cr_assert_eq(moirai_stream_write(p.c, "more", 4), 4);
        cr_assert_eq(read_exact(p.s, buf, 4), 4);
        cr_assert(memcmp(buf, "more", 4) == 0);
        free(t.data);
    } else {
        cr_assert_eq(t.rc, -ECANCELED, "%s: returned %zd", op_name[op], t.rc);
        cr_assert_eq(t.again, -ECANCELED, "%s: the second call returned %zd", op_name[op], t.again);
    }
    /* Nothing was opened or left behind by the cancelled call. */
    cr_assert_eq(count_fds(), fds, "%s: a descriptor was left", op_name[op]);
    /* The handle is usable for the next caller. */
    moirai_io_t *x = NULL;
    switch (op) {
    case OP_ACCEPT: {
        moirai_io_t *c2 = NULL;
        cr_assert_eq(moirai_tcp_connect(&c2, rt, (struct sockaddr *)&p.addr, NULL), 0);
        cr_assert_eq(moirai_stream_accept(p.l, &x), 0);
        cr_assert_eq(moirai_stream_write(c2, "acc", 3), 3);
        cr_assert_eq(read_exact(x, buf, 3), 3);
        moirai_io_close(c2);
        moirai_io_close(x);
        break;
    }
    case OP_READ:
        cr_assert_eq(moirai_stream_write(p.c, "after", 5), 5);
        cr_assert_eq(read_exact(p.s, buf, 5), 5);
        cr_assert(memcmp(buf, "after", 5) == 0);
        break;
    case OP_RECV: {
        struct sockaddr_in to = local_of(u), from2 = local_of(u2);
        struct sockaddr_storage from;
        cr_assert_eq(moirai_udp_send(u2, "dgram", 5, (struct sockaddr *)&to), 5);
        cr_assert_eq(moirai_udp_recv(u, buf, sizeof buf, &from), 5);
        cr_assert(memcmp(buf, "dgram", 5) == 0);
        cr_assert_eq(((struct sockaddr_in *)&from)->sin_port, from2.sin_port);
        break;
    }
    case OP_CONNECT: {
        /* Empty the queue; then a connection goes through. */
        for (int i = 0; i < nprobes; i++) {
            cr_assert_eq(moirai_stream_accept(p.l, &x), 0);
            moirai_io_close(x);
            close(probes[i]);
        }
        moirai_io_t *c2 = NULL;
        cr_assert_eq(moirai_tcp_connect_timed(&c2, rt, moirai_deadline_after(WAIT_NS),
                                              (struct sockaddr *)&p.addr, NULL),
                     0);
        /* Any SYN of the cancelled connect still in flight was answered
         * by a reset to a closed socket; skip such an entry if queued. */
        struct sockaddr_in mine = local_of(c2);
        for (;;) {
            cr_assert_eq(moirai_stream_accept(p.l, &x), 0);
            struct sockaddr_in peer;
            socklen_t plen = sizeof peer;
            int prc = moirai_io_peer_addr(x, (struct sockaddr *)&peer, &plen);
            bool it = prc == 0 && peer.sin_port == mine.sin_port;
            moirai_io_close(x);
            if (it)
                break;
        }
        moirai_io_close(c2);
        break;
    }
    default:
        break;
    }
    moirai_io_close(u);
    moirai_io_close(u2);
    pair_close(&p);
    if (borrowed)
        drop_borrowed(rt, sched);
    else
        drop_runtime(rt);
}

static void cancel_one(enum op op, bool from_thread)
{
    cancel_on(op, from_thread, false);
}

Test(net_cancel, accept_cancelled_from_a_fiber, .timeout = 60)
{
    cancel_one(OP_ACCEPT, false);
}

Test(net_cancel, accept_cancelled_from_a_thread, .timeout = 60)
{
    cancel_one(OP_ACCEPT, true);
}

Test(net_cancel, read_cancelled_from_a_fiber, .timeout = 60)
{
    cancel_one(OP_READ, false);
}

Test(net_cancel, read_cancelled_from_a_thread, .timeout = 60)
{
    cancel_one(OP_READ, true);
}

Test(net_cancel, udp_recv_cancelled_from_a_fiber, .timeout = 60)
{
    cancel_one(OP_RECV, false);
}

Test(net_cancel, udp_recv_cancelled_from_a_thread, .timeout = 60)
{
    cancel_one(OP_RECV, true);
}

Test(net_cancel, connect_cancelled_from_a_fiber, .timeout = 60)
{
    cancel_one(OP_CONNECT, false);
}

Test(net_cancel, connect_cancelled_from_a_thread, .timeout = 60)
{
    cancel_one(OP_CONNECT, true);
}

Test(net_cancel, write_cancelled_from_a_fiber, .timeout = 60)
{
    cancel_one(OP_WRITE, false);
}

Test(net_cancel, write_cancelled_from_a_thread, .timeout = 60)
{
    cancel_one(OP_WRITE, true);
}

/* The same on a borrowed scheduler, where a poller thread of the
 * runtime's own waits for the sockets. */
Test(net_cancel, on_a_borrowed_scheduler_read_cancelled_from_a_thread, .timeout = 60)
{
    cancel_on(OP_READ, true, true);
}

Test(net_cancel, on_a_borrowed_scheduler_accept_cancelled_from_a_fiber, .timeout = 60)
{
    cancel_on(OP_ACCEPT, false, true);
}

Test(net_cancel, on_a_borrowed_scheduler_write_cancelled_from_a_thread, .timeout = 60)
{
    cancel_on(OP_WRITE, true, true);
}

Test(net_cancel, on_a_borrowed_scheduler_connect_cancelled_from_a_fiber, .timeout = 60)
{
    cancel_on(OP_CONNECT, false, true);
}

/* ---- Connecting to a full queue: deadlines and cancellation ---- */

Test(net_cancel, tcp_connect_to_a_full_queue_times_out_leaving_nothing, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct pair p;
    pair_open(&p, rt, 1);
    int probes[64];
    int nprobes = fill_backlog(&p.addr, probes, 64);
    int fds = count_fds();
    moirai_io_t *c = NULL;
    uint64_t deadline = moirai_deadline_after(50 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_tcp_connect_timed(&c, rt, deadline, (struct sockaddr *)&p.addr, NULL),
                 -ETIMEDOUT);
    cr_assert_geq(moirai_clock_now_ns(), deadline);
    cr_assert_null(c);
    cr_assert_eq(count_fds(), fds, "a timed-out connect left its socket open");
    for (int i = 0; i < nprobes; i++)
        close(probes[i]);
    pair_close(&p);
    drop_runtime(rt);
}

struct unix_connector {
    const char *path;
    int rc;
};

static int unix_connect_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct unix_connector *u = arg;
    moirai_io_t *c = NULL;
    u->rc = moirai_unix_connect(&c, moirai_runtime_current(), u->path);
    if (c != NULL)
        moirai_io_close(c);
    return 0;
}

/* A Unix listener whose queue is full answers a non-blocking connect
 * with EAGAIN and gives no readiness event: the connect retries within
 * its deadline, and a cancellation ends it. */
Test(net_cancel, unix_connect_to_a_full_queue_deadline_and_cancel, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    char path[64];
    snprintf(path, sizeof path, "@moirai-net-full-%d", (int)getpid());
    moirai_io_t *l = NULL;
    cr_assert_eq(moirai_unix_listen(&l, rt, path, 1), 0);
    /* Fill the queue: connects succeed until it is full. */
    moirai_io_t *queued[16];
    int nq = 0;
    for (;;) {
        cr_assert_lt(nq, 16, "the queue never filled");
        int rc = moirai_unix_connect_timed(&queued[nq], rt,
                                           moirai_deadline_after(20 * MOIRAI_NS_PER_MS), path);
        if (rc == -ETIMEDOUT)
            break;
        cr_assert_eq(rc, 0);
        nq++;
    }
    cr_assert_gt(nq, 0);
    int fds = count_fds();
    /* A deadline, from a plain thread. */
    moirai_io_t *c = NULL;
    uint64_t deadline = moirai_deadline_after(30 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_unix_connect_timed(&c, rt, deadline, path), -ETIMEDOUT);
    cr_assert_geq(moirai_clock_now_ns(), deadline);
    cr_assert_null(c);
    cr_assert_eq(count_fds(), fds);
    /* A cancellation, of a fiber. */
    struct unix_connector u = {path, 1};
    moirai_handle_t *h = spawn_with_handle(rt, unix_connect_fiber, &u, NULL);
    usleep(20000); /* it retries every millisecond meanwhile */
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    ASSERT_OK(join_and_release(h, NULL));
    cr_assert_eq(u.rc, -ECANCELED);
    cr_assert_eq(count_fds(), fds, "a cancelled connect left its socket open");
    /* Room again: a connect goes through. */
    moirai_io_t *s = NULL;
    cr_assert_eq(moirai_stream_accept(l, &s), 0);
    moirai_io_close(s);
    cr_assert_eq(moirai_unix_connect_timed(&c, rt, moirai_deadline_after(WAIT_NS), path), 0);
    moirai_io_close(c);
    for (int i = 0; i < nq; i++)
        moirai_io_close(queued[i]);
    moirai_io_close(l);
    drop_runtime(rt);
}

/* ---- Races: a wait ending by readiness and by something else at once.
 * Whatever wins, no byte is lost or read twice. ---- */

struct racer {
    moirai_io_t *io;
    uint64_t deadline; /* MOIRAI_DEADLINE_NEVER: no deadline */
    ssize_t rc;
    unsigned char byte;
    moirai_event_t started;
};

static int race_reader(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct racer *r = arg;
    moirai_event_set(&r->started);
    r->rc = moirai_stream_read_timed(r->io, r->deadline, &r->byte, 1);
    return 0;
}

static void spin_ns(uint64_t ns)
{
    uint64_t until = moirai_clock_now_ns() + ns;
    while (moirai_clock_now_ns() < until)
        ;
}

/* mode 0: cancel racing the data; 1: the deadline racing the data. */
static void race_data(int mode)
{
    moirai_runtime_t *rt = make_runtime(2);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    moirai_io_t *io = NULL;
    cr_assert_eq(moirai_pipe_open(&io, rt, sv[0]), 0);
    long rounds = scaled(2000), data_won = 0, other_won = 0;
    for (long i = 0; i < rounds; i++) {
        unsigned char b = (unsigned char)i;
        struct racer r = {.io = io, .deadline = MOIRAI_DEADLINE_NEVER, .rc = 1};
        moirai_event_init(&r.started, MOIRAI_EVENT_MANUAL, false);
        if (mode == 1)
            r.deadline = moirai_deadline_after((uint64_t)(i % 50) * 2000);
        moirai_handle_t *h = spawn_with_handle(rt, race_reader, &r, NULL);
        moirai_event_wait(&r.started);
        spin_ns((uint64_t)(i % 37) * 1000);
        cr_assert_eq(write(sv[1], &b, 1), 1);
        if (mode == 0)
            moirai_handle_cancel(h);
        ASSERT_OK(join_and_release(h, NULL));
        if (r.rc == 1) {
            cr_assert_eq(r.byte, b, "round %ld: read a wrong byte", i);
            data_won++;
        } else {
            cr_assert_eq(r.rc, mode == 0 ? -ECANCELED : -ETIMEDOUT, "round %ld: %zd", i, r.rc);
            /* Nothing was consumed: the byte is still there, once. */
            unsigned char got = 0;
            cr_assert_eq(moirai_stream_read(io, &got, 1), 1, "round %ld: the byte was lost", i);
            cr_assert_eq(got, b);
            other_won++;
        }
    }
    /* Nothing extra is left over. */
    unsigned char extra;
    cr_assert_eq(moirai_stream_read_timed(io, moirai_deadline_after(MOIRAI_NS_PER_MS), &extra, 1),
                 -ETIMEDOUT);
    cr_log_info("%s vs data: data first %ld times, the other %ld times",
                mode == 0 ? "cancel" : "deadline", data_won, other_won);
    moirai_io_close(io);
    close(sv[1]);
    drop_runtime(rt);
}

Test(net_cancel, cancel_racing_data_loses_no_byte, .timeout = 120)
{
    race_data(0);
}

Test(net_cancel, deadline_racing_data_loses_no_byte, .timeout = 120)
{
    race_data(1);
}

/* Cancel racing data that someone else may take first: a second handle
 * on the same socket (a dup of its descriptor) steals the byte, so the
 * reader is sometimes woken by an edge whose data is gone and must wait
 * again. Whatever happens, the reader returns (the byte or -ECANCELED)
 * and the byte is read exactly once. */
Test(net_cancel, cancel_racing_stolen_data_never_hangs, .timeout = 120)
{
    moirai_runtime_t *rt = make_runtime(2);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int other = dup(sv[0]);
    cr_assert_geq(other, 0);
    moirai_io_t *io = NULL, *thief = NULL;
    cr_assert_eq(moirai_pipe_open(&io, rt, sv[0]), 0);
    cr_assert_eq(moirai_pipe_open(&thief, rt, other), 0);
    long rounds = scaled(3000), by_reader = 0, by_thief = 0, cancelled = 0;
    for (long i = 0; i < rounds; i++) {
        unsigned char b = (unsigned char)i;
        struct racer r = {.io = io, .deadline = MOIRAI_DEADLINE_NEVER, .rc = 1};
        moirai_event_init(&r.started, MOIRAI_EVENT_MANUAL, false);
        moirai_handle_t *h = spawn_with_handle(rt, race_reader, &r, NULL);
        cr_assert(wait_armed(&io->rslot));
        cr_assert_eq(write(sv[1], &b, 1), 1);
        spin_ns((uint64_t)(i % 23) * 500);
        unsigned char got = 0;
        /* Every other round the thief tries; then the reader is cancelled
         * (a reader that lost the byte would otherwise wait for ever). */
        ssize_t t = i % 2 == 0 ? read(other, &got, 1) : -1; /* non-blocking */
        moirai_handle_cancel(h);
        int rc = moirai_handle_join_timed(h, moirai_deadline_after(5 * MOIRAI_NS_PER_S), NULL);
        cr_assert_neq(rc, -ETIMEDOUT, "round %ld: the cancelled reader hung (stolen: %zd)", i, t);
        moirai_handle_release(h);
        ASSERT_OK(rc);
        int owners = (t == 1) + (r.rc == 1);
        if (owners == 0) {
            /* Cancelled with the byte still there. */
            cr_assert_eq(r.rc, -ECANCELED, "round %ld: %zd", i, r.rc);
            cr_assert_eq(moirai_stream_read(thief, &got, 1), 1);
            cr_assert_eq(got, b);
            cancelled++;
        } else {
            cr_assert_eq(owners, 1, "round %ld: the byte was read twice", i);
            if (t == 1) {
                cr_assert_eq(got, b);
                cr_assert(r.rc == -ECANCELED || r.rc == 1, "round %ld: %zd", i, r.rc);
                by_thief++;
            } else {
                cr_assert_eq(r.byte, b);
                by_reader++;
            }
        }
    }
    cr_log_info("stolen data: reader %ld, thief %ld, cancelled untouched %ld", by_reader, by_thief,
                cancelled);
    moirai_io_close(io);
    moirai_io_close(thief);
    close(sv[1]);
    drop_runtime(rt);
}

/* Close racing a reader (and data): the reader gets the byte or -EBADF,
 * never anything else, and every descriptor is closed in the end. */
Test(net_cancel, close_racing_a_reader, .timeout = 120)
{
    moirai_runtime_t *rt = make_runtime(2);
    int fds = count_fds();
    long rounds = scaled(2000), got_byte = 0;
    for (long i = 0; i < rounds; i++) {
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        moirai_io_t *io = NULL;
        cr_assert_eq(moirai_pipe_open(&io, rt, sv[0]), 0);
        struct racer r = {.io = io, .deadline = MOIRAI_DEADLINE_NEVER, .rc = 1};
        moirai_event_init(&r.started, MOIRAI_EVENT_MANUAL, false);
        moirai_handle_t *h = spawn_with_handle(rt, race_reader, &r, NULL);
        moirai_event_wait(&r.started);
        spin_ns((uint64_t)(i % 37) * 1000);
        if (i % 2 == 0)
            cr_assert_eq(write(sv[1], "x", 1), 1);
        cr_assert_eq(moirai_io_close(io), 0);
        ASSERT_OK(join_and_release(h, NULL));
        if (r.rc == 1) {
            cr_assert(i % 2 == 0 && r.byte == 'x');
            got_byte++;
        } else {
            cr_assert_eq(r.rc, -EBADF, "round %ld: %zd", i, r.rc);
        }
        close(sv[1]);
    }
    cr_assert_eq(count_fds(), fds, "descriptors were left open");
    cr_log_info("close vs read: the byte was read %ld times of %ld", got_byte, rounds);
    drop_runtime(rt);
}

/* ---- Close wakes whoever waits ---- */

struct closing {
    moirai_io_t *io;
    enum op op;
    ssize_t rc;
};

static int wait_then_report(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct closing *c = arg;
    char buf[8];
    moirai_io_t *x = NULL;
    c->rc = c->op == OP_ACCEPT ? moirai_stream_accept(c->io, &x)
            : c->op == OP_RECV ? moirai_udp_recv(c->io, buf, sizeof buf, NULL)
                               : moirai_stream_read(c->io, buf, sizeof buf);
    return 0;
}

static int close_from_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    FCHECK(moirai_io_close(arg) == 0);
    return 0;
}

static void *plain_reader(void *arg)
{
    wait_then_report(arg, NULL, NULL);
    return NULL;
}

Test(net_cancel, close_wakes_a_blocked_reader_with_ebadf, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    /* A fiber reading, closed from the test thread, then from a fiber; a
     * plain thread reading; a fiber accepting; a fiber receiving. */
    for (int round = 0; round < 5; round++) {
        struct pair p;
        pair_open(&p, rt, 0);
        struct sockaddr_in any = loopback(0);
        moirai_io_t *u = NULL;
        cr_assert_eq(moirai_udp_bind(&u, rt, (struct sockaddr *)&any), 0);
        struct closing c = {p.s, OP_READ, 1};
        if (round == 3)
            c = (struct closing){p.l, OP_ACCEPT, 1};
        if (round == 4)
            c = (struct closing){u, OP_RECV, 1};
        _Atomic uintptr_t *slot = &c.io->rslot;
        moirai_handle_t *h = NULL;
        pthread_t t;
        if (round == 2)
            cr_assert_eq(pthread_create(&t, NULL, plain_reader, &c), 0);
        else
            h = spawn_with_handle(rt, wait_then_report, &c, NULL);
        cr_assert(wait_armed(slot), "round %d: the waiter never parked", round);
        int fds = count_fds();
        if (round == 1)
            ASSERT_OK(run_fiber(rt, close_from_fiber, c.io, NULL));
        else
            cr_assert_eq(moirai_io_close(c.io), 0);
        if (round == 2)
            pthread_join(t, NULL);
        else
            ASSERT_OK(join_and_release(h, NULL));
        cr_assert_eq(c.rc, -EBADF, "round %d: the waiter got %zd", round, c.rc);
        /* The last operation left: the descriptor is closed now. */
        cr_assert_eq(count_fds(), fds - 1, "round %d: the descriptor stayed open", round);
        if (c.io == p.s) {
            /* The peer sees the connection end. */
            char buf[4];
            cr_assert_eq(moirai_stream_read(p.c, buf, sizeof buf), 0);
        }
        moirai_io_t *all[4] = {p.l, p.c, p.s, u};
        for (int i = 0; i < 4; i++)
            if (all[i] != c.io)
                cr_assert_eq(moirai_io_close(all[i]), 0);
    }
    drop_runtime(rt);
}

/* A close while a writer waits for room: the writer returns the count of
 * bytes that went out (the peer then reads exactly those, then end of
 * stream), or -EBADF if none had. */
struct closing_writer {
    moirai_io_t *io;
    unsigned char *data;
    ssize_t rc;
};

static int write_until_closed(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct closing_writer *w = arg;
    w->rc = moirai_stream_write(w->io, w->data, WRITE_LEN);
    return 0;
}

Test(net_cancel, close_wakes_a_blocked_writer_with_its_count, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct pair p;
    pair_open(&p, rt, 0);
    struct closing_writer w = {p.c, malloc(WRITE_LEN), 1};
    cr_assert_not_null(w.data);
    fill_pattern(w.data, WRITE_LEN, 31);
    moirai_handle_t *h = spawn_with_handle(rt, write_until_closed, &w, NULL);
    cr_assert(wait_armed(&p.c->wslot), "the writer never parked");
    cr_assert_eq(moirai_io_close(p.c), 0);
    ASSERT_OK(join_and_release(h, NULL));
    cr_assert(w.rc > 0 && w.rc < WRITE_LEN, "the writer returned %zd", w.rc);
    unsigned char *in = malloc(WRITE_LEN);
    cr_assert_not_null(in);
    cr_assert_eq(read_to_eof(p.s, in, WRITE_LEN), w.rc, "the peer read a different count");
    cr_assert(memcmp(in, w.data, (size_t)w.rc) == 0);
    free(in);
    free(w.data);
    cr_assert_eq(moirai_io_close(p.s), 0);
    cr_assert_eq(moirai_io_close(p.l), 0);
    drop_runtime(rt);
}
