/* The TCP backend on moirai-async: a link is one connected moirai_io_t,
 * the backend a listener with its acceptor fiber, dials are
 * moirai_tcp_connect_timed(). Addresses are numeric "a.b.c.d:port" or
 * "[v6]:port" (no name resolution, so creating a node never waits for
 * DNS). Every call that waits parks the calling fiber (or blocks a plain
 * thread) through moirai-async's reactor. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <moirai/async/fiber.h>
#include <moirai/async/net.h>
#include <moirai/core/alloc.h>
#include <moirai/core/log.h>

#include "link.h"
#include "node_internal.h"

/* ---- The link ---- */

struct tcp_link {
    struct link base;
    moirai_io_t *io;
    /* Set by shutdown (any thread); read by writev to report -ECANCELED
     * rather than the socket's -EPIPE. Relaxed: it orders nothing. */
    _Atomic bool shut;
};

static struct tcp_link *tcp(struct link *l)
{
    return (struct tcp_link *)l;
}

static ssize_t tcp_read(struct link *l, void *buf, size_t len, uint64_t deadline)
{
    ssize_t n = moirai_stream_read_timed(tcp(l)->io, deadline, buf, len);
    if (n < 0 && atomic_load_explicit(&tcp(l)->shut, memory_order_relaxed))
        return -ECANCELED;
    return n;
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
    size_t n = 0;
    for (int i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    return n;
}

static int tcp_writev(struct link *l, const struct iovec *iov, int cnt, uint64_t deadline)
{
    struct tcp_link *t = tcp(l);
    if (atomic_load_explicit(&t->shut, memory_order_relaxed))
        return -ECANCELED;
    size_t want = iov_total(iov, cnt);
    ssize_t w = moirai_stream_writev_timed(t->io, deadline, iov, cnt);
    if (w == (ssize_t)want)
        return 0;
    if (atomic_load_explicit(&t->shut, memory_order_relaxed))
        return -ECANCELED;
    /* A short count is an error after some bytes went out; the stream is
     * cut in the middle of a frame, which only the end of the connection
     * can follow. */
    return w < 0 ? (int)w : -EPIPE;
}

static ssize_t tcp_try_writev(struct link *l, const struct iovec *iov, int cnt)
{
    struct tcp_link *t = tcp(l);
    if (atomic_load_explicit(&t->shut, memory_order_relaxed))
        return -ECANCELED;
    int fd = moirai_io_fd(t->io);
    if (fd < 0)
        return -ECANCELED;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = (size_t)cnt;
    /* One non-blocking sendmsg: the socket usually has room, and then a
     * lone frame costs this system call and no wake-up. */
    ssize_t w = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w >= 0)
        return w;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    return -errno;
}

static void tcp_shutdown(struct link *l)
{
    struct tcp_link *t = tcp(l);
    atomic_store_explicit(&t->shut, true, memory_order_relaxed);
    /* Both directions: a parked read sees end of stream, a parked write an
     * error, and the other side reads end of stream. The handle stays
     * open until close, so no call races a closed descriptor. */
    int fd = moirai_io_fd(t->io);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

static void tcp_close(struct link *l)
{
    moirai_io_close(tcp(l)->io);
    moirai_free(l);
}

static void addr_from_sockaddr(const struct sockaddr_storage *ss, struct frame_addr *out)
{
    memset(out, 0, sizeof *out);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        out->family = 4;
        out->port = ntohs(a->sin_port);
        memcpy(out->addr, &a->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        out->family = 6;
        out->port = ntohs(a->sin6_port);
        memcpy(out->addr, &a->sin6_addr, 16);
    }
}

static int tcp_peer_addr(struct link *l, struct frame_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc = moirai_io_peer_addr(tcp(l)->io, (struct sockaddr *)&ss, &len);
    if (rc < 0)
        return rc;
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
        return -ENOTSUP;
    addr_from_sockaddr(&ss, out);
    return 0;
}

static size_t tcp_unread(struct link *l)
{
    int fd = moirai_io_fd(tcp(l)->io), n = 0;
    if (fd < 0 || ioctl(fd, FIONREAD, &n) < 0 || n < 0)
        return 0;
    return (size_t)n;
}

static const struct link_ops tcp_link_ops = {
    .read = tcp_read,
    .writev = tcp_writev,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
    .peer_addr = tcp_peer_addr,
    .try_writev = tcp_try_writev,
    .unread = tcp_unread,
};

/* Wraps a connected handle; closes it when out of memory. */
static int tcp_link_new(moirai_io_t *io, struct link **out)
{
    struct tcp_link *t = moirai_calloc(1, sizeof *t);
    if (!t) {
        moirai_io_close(io);
        return -ENOMEM;
    }
    t->base.ops = &tcp_link_ops;
    t->io = io;
    atomic_init(&t->shut, false);
    *out = &t->base;
    return 0;
}

/* ---- Addresses ---- */

static int tcp_parse(const char *text, struct frame_addr *out)
{
    if (!text)
        return -EINVAL;
    size_t n = strlen(text);
    if (n == 0 || n > 64)
        return -EINVAL;
    char host[65];
    const char *colon = strrchr(text, ':');
    if (!colon || colon[1] < '0' || colon[1] > '9')
        return -EINVAL;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || port > 65535)
        return -EINVAL;
    struct frame_addr a;
    memset(&a, 0, sizeof a);
    a.port = (uint16_t)port;
    if (text[0] == '[') {
        if (colon == text || colon[-1] != ']')
            return -EINVAL;
        size_t hl = (size_t)(colon - 1 - (text + 1));
        memcpy(host, text + 1, hl);
        host[hl] = '\0';
        a.family = 6;
        if (inet_pton(AF_INET6, host, a.addr) != 1)
            return -EINVAL;
    } else {
        size_t hl = (size_t)(colon - text);
        memcpy(host, text, hl);
        host[hl] = '\0';
        a.family = 4;
        if (inet_pton(AF_INET, host, a.addr) != 1)
            return -EINVAL;
    }
    *out = a;
    return 0;
}

/* The socket address of a parsed or advertised address; family 0 (only
 * a listener's default) is 127.0.0.1 with the given port. */
static socklen_t to_sockaddr(const struct frame_addr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == 6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        memcpy(&s6->sin6_addr, a->addr, 16);
        return sizeof *s6;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(a->port);
    if (a->family == 4)
        memcpy(&s4->sin_addr, a->addr, 4);
    else
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof *s4;
}

/* ---- Listening ---- */

/* The backend's state in node->backend_state. The acceptor fiber frees it
 * when it leaves (it is the last to use it: stop only closes the
 * listener, which ends the acceptor's wait). */
struct tcp_backend {
    moirai_io_t *listener;
};

static int acceptor_main(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct moirai_node *node = arg;
    struct tcp_backend *tb = node->backend_state;
    for (;;) {
        moirai_io_t *io;
        int rc = moirai_stream_accept(tb->listener, &io);
        if (rc == -EBADF)
            break; /* stop closed the listener */
        if (rc < 0) {
            /* -EMFILE, -ENOMEM: the connection was dropped; keep serving,
             * after a pause so an exhausted process does not spin. */
            MOIRAI_LOG(MOIRAI_LOG_WARN, "node %llx: accept: %s", (unsigned long long)node->id,
                       strerror(-rc));
            moirai_fiber_sleep(10000000);
            continue;
        }
        struct link *l;
        if (tcp_link_new(io, &l) < 0)
            continue;                             /* tcp_link_new closed io */
        moirai__peer_start(node, l, false, NULL); /* on error it closed the link */
    }
    moirai_free(tb);
    return 0;
}

static int tcp_listen(struct moirai_node *node, const struct frame_addr *where,
                      struct frame_addr *self)
{
    struct tcp_backend *tb = moirai_calloc(1, sizeof *tb);
    if (!tb)
        return -ENOMEM;
    struct sockaddr_storage ss;
    to_sockaddr(where, &ss);
    int rc = moirai_tcp_listen(&tb->listener, node->rt, (const struct sockaddr *)&ss, NULL);
    if (rc < 0) {
        moirai_free(tb);
        return rc;
    }
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    moirai_io_local_addr(tb->listener, (struct sockaddr *)&bound, &bl);
    addr_from_sockaddr(&bound, self);
    /* A wildcard listener advertises "where you see me from" (family 0)
     * with its port. */
    static const uint8_t zero[16];
    if ((self->family == 4 && memcmp(self->addr, zero, 4) == 0) ||
        (self->family == 6 && memcmp(self->addr, zero, 16) == 0)) {
        memset(self->addr, 0, sizeof self->addr);
        self->family = 0;
    }
    node->backend_state = tb;
    rc = moirai__node_spawn_fiber(node, acceptor_main, node);
    if (rc < 0) {
        node->backend_state = NULL;
        moirai_io_close(tb->listener);
        moirai_free(tb);
    }
    return rc;
}

static void tcp_stop(struct moirai_node *node)
{
    struct tcp_backend *tb = node->backend_state;
    if (tb)
        moirai_io_close(tb->listener);
}

/* ---- Dialing ---- */

static int tcp_dial(struct moirai_node *node, const struct frame_addr *to, uint64_t deadline,
                    struct link **out)
{
    struct sockaddr_storage ss;
    to_sockaddr(to, &ss);
    moirai_io_t *io = NULL;
    int rc = moirai_tcp_connect_timed(&io, node->rt, deadline, (const struct sockaddr *)&ss, NULL);
    if (rc < 0)
        return rc;
    return tcp_link_new(io, out);
}

const struct backend_ops moirai__backend_tcp = {
    .parse = tcp_parse,
    .listen = tcp_listen,
    .dial = tcp_dial,
    .stop = tcp_stop,
};
