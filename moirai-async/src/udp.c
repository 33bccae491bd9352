/* UDP: bind, send to, receive from. */
#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include <unistd.h>

#include <moirai/core/clock.h>

#include "async_internal.h"
#include "netpoll.h"
#include "stream.h"

int moirai_udp_bind(moirai_io_t **out, moirai_runtime_t *rt, const struct sockaddr *addr)
{
    socklen_t len = moirai__tcp_inet_len(addr);
    if (out == NULL || rt == NULL || len == 0)
        return -EINVAL;
    int fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = bind(fd, addr, len) == 0 ? 0 : -errno;
    if (rc == 0)
        rc = moirai__io_new(rt->netpoll, fd, MOIRAI__IO_DGRAM, out);
    if (rc != 0)
        close(fd);
    return rc;
}

static int begin_dgram(moirai_io_t *io)
{
    int rc = moirai__stream_begin(io);
    if (rc == 0 && io->kind != MOIRAI__IO_DGRAM) {
        moirai__io_release(io);
        rc = -EINVAL;
    }
    return rc;
}

ssize_t moirai_udp_send_timed(moirai_io_t *io, uint64_t deadline, const void *buf, size_t len,
                              const struct sockaddr *addr)
{
    socklen_t alen = moirai__tcp_inet_len(addr);
    if ((buf == NULL && len > 0) || alen == 0 || len > SSIZE_MAX)
        return -EINVAL;
    int rc = begin_dgram(io);
    if (rc != 0)
        return rc;
    ssize_t n;
    for (;;) {
        n = sendto(io->fd, buf, len, MSG_NOSIGNAL, addr, alen);
        if (n >= 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            n = -errno;
            break;
        }
        rc = moirai__io_wait(io, &io->wslot, deadline);
        if (rc != 0) {
            n = rc;
            break;
        }
    }
    moirai__io_release(io);
    return n;
}

ssize_t moirai_udp_send(moirai_io_t *io, const void *buf, size_t len, const struct sockaddr *addr)
{
    return moirai_udp_send_timed(io, MOIRAI_DEADLINE_NEVER, buf, len, addr);
}

ssize_t moirai_udp_recv_timed(moirai_io_t *io, uint64_t deadline, void *buf, size_t len,
                              struct sockaddr_storage *from)
{
    if ((buf == NULL && len > 0) || len > SSIZE_MAX)
        return -EINVAL;
    int rc = begin_dgram(io);
    if (rc != 0)
        return rc;
    ssize_t n;
    for (;;) {
        socklen_t flen = sizeof *from;
        n = recvfrom(io->fd, buf, len, 0, (struct sockaddr *)from, from != NULL ? &flen : NULL);
        if (n >= 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            n = -errno;
            break;
        }
        rc = moirai__io_wait(io, &io->rslot, deadline);
        if (rc != 0) {
            n = rc;
            break;
        }
    }
    moirai__io_release(io);
    return n;
}

ssize_t moirai_udp_recv(moirai_io_t *io, void *buf, size_t len, struct sockaddr_storage *from)
{
    return moirai_udp_recv_timed(io, MOIRAI_DEADLINE_NEVER, buf, len, from);
}
