/* moirai-bench, suite "async": the raw epoll HTTP server ("epoll") of
 * http_hello_keepalive (see io_peers.h).
 *
 * What a hand-written C server does: one thread, one level-triggered
 * epoll set, non-blocking sockets. On a readable connection the complete
 * requests in its buffer are answered with one write; a response the
 * socket does not take at once is kept and sent on EPOLLOUT. A read that
 * does not fill the buffer is taken to have drained the socket (no extra
 * read to see EAGAIN). An eventfd in the set stops the loop. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io_peers.h"

#define CONN_BUF   16384
#define MAX_EVENTS 128

typedef struct conn {
    int fd;
    size_t have;       /* bytes of a partial request at buf's start */
    char *out;         /* response bytes the socket has not taken, or NULL */
    size_t out_len;    /* their number */
    size_t out_done;   /* of which already sent */
    struct conn *next; /* every open connection, to close them at stop */
    struct conn *prev;
    char buf[CONN_BUF];
} conn_t;

static int listen_fd = -1, epoll_fd = -1, stop_fd = -1;
static pthread_t thread;
static conn_t *conns;

static void conn_close(conn_t *c)
{
    close(c->fd); /* also removes it from the epoll set */
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->out);
    free(c);
}

/* Sends what is pending; returns 0 when all is sent, 1 when the socket is
 * full (EPOLLOUT is then watched), -1 on error. */
static int flush(conn_t *c)
{
    while (c->out_done < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_done, c->out_len - c->out_done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
            return epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) == 0 ? 1 : -1;
        }
        if (n <= 0)
            return -1;
        c->out_done += (size_t)n;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_done = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    return epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) == 0 ? 0 : -1;
}

/* Queues `count` responses after what is pending and sends what it can. */
static int respond(conn_t *c, size_t count)
{
    static const char one[] = IO_HTTP_RESPONSE;
    enum { ONE = sizeof(one) - 1 };
    if (!c->out) {
        /* The common case: nothing pending, try the write straight from a
         * stack buffer. */
        char stack[16 * ONE];
        if (count <= 16) {
            for (size_t i = 0; i < count; i++)
                memcpy(stack + i * ONE, one, ONE);
            size_t len = count * ONE;
            ssize_t n;
            do
                n = write(c->fd, stack, len);
            while (n < 0 && errno == EINTR);
            if (n == (ssize_t)len)
                return 0;
            if (n < 0 && errno != EAGAIN)
                return -1;
            size_t done = n > 0 ? (size_t)n : 0;
            c->out = malloc(len - done);
            if (!c->out)
                return -1;
            memcpy(c->out, stack + done, len - done);
            c->out_len = len - done;
            c->out_done = 0;
            return flush(c) < 0 ? -1 : 0;
        }
    }
    char *grown = realloc(c->out, c->out_len + count * ONE);
    if (!grown)
        return -1;
    c->out = grown;
    for (size_t i = 0; i < count; i++)
        memcpy(c->out + c->out_len + i * ONE, one, ONE);
    c->out_len += count * ONE;
    return flush(c) < 0 ? -1 : 0;
}

/* Reads what has arrived, answering complete requests; -1 to close. */
static int on_readable(conn_t *c)
{
    for (;;) {
        size_t space = sizeof(c->buf) - c->have;
        ssize_t n = read(c->fd, c->buf + c->have, space);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0)
            return -1;
        c->have += (size_t)n;
        size_t used;
        size_t count = io_http_requests(c->buf, c->have, &used);
        if (count && respond(c, count) < 0)
            return -1;
        memmove(c->buf, c->buf + used, c->have - used);
        c->have -= used;
        if (c->have == sizeof(c->buf))
            return -1;
        /* A read that did not fill the buffer drained the socket; level-
         * triggered epoll reports anything that arrives later. */
        if ((size_t)n < space)
            return 0;
    }
}

static void on_accept(void)
{
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn_t *c = calloc(1, sizeof(*c));
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (!c || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->next = conns;
        if (conns)
            conns->prev = c;
        conns = c;
    }
}

static void *run_loop(void *arg)
{
    (void)arg;
    struct epoll_event ev[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epoll_fd, ev, MAX_EVENTS, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &listen_fd) {
                on_accept();
                continue;
            }
            if (ev[i].data.ptr == &stop_fd)
                return NULL;
            conn_t *c = ev[i].data.ptr;
            int r = 0;
            if (ev[i].events & EPOLLOUT)
                r = flush(c) < 0 ? -1 : 0;
            if (r == 0 && (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                r = on_readable(c);
            if (r < 0)
                conn_close(c);
        }
    }
    return NULL;
}

static void close_fds(void)
{
    while (conns)
        conn_close(conns);
    if (listen_fd >= 0)
        close(listen_fd);
    if (epoll_fd >= 0)
        close(epoll_fd);
    if (stop_fd >= 0)
        close(stop_fd);
    listen_fd = epoll_fd = stop_fd = -1;
}

static int epoll_http_start(int *port)
{
    listen_fd = io_listen_loopback(port);
    if (listen_fd < 0) {
        int err = listen_fd;
        listen_fd = -1;
        return err;
    }
    int err = 0;
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event l = {.events = EPOLLIN, .data.ptr = &listen_fd};
    struct epoll_event s = {.events = EPOLLIN, .data.ptr = &stop_fd};
    if (epoll_fd < 0 || stop_fd < 0 ||
        fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK) != 0 ||
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &l) != 0 ||
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, stop_fd, &s) != 0)
        err = -errno;
    if (err == 0)
        err = -pthread_create(&thread, NULL, run_loop, NULL);
    if (err != 0)
        close_fds();
    return err;
}

static int epoll_http_stop(void)
{
    uint64_t one = 1;
    if (write(stop_fd, &one, sizeof(one)) != sizeof(one))
        return -errno;
    pthread_join(thread, NULL);
    close_fds();
    return 0;
}

const io_http_server_t io_epoll_http = {epoll_http_start, epoll_http_stop};
