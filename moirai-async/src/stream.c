/* Stream operations: accept, read, write, shutdown. Each makes the system
 * call first and waits for readiness only on EAGAIN (see netpoll.h). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <moirai/core/clock.h>

#include "iowait.h"
#include "netpoll.h"
#include "stream.h"

/* Writes to a pipe whose reader has gone raise SIGPIPE, and a library may
 * not change the process's disposition: block it on this thread around
 * the write and consume the one the write raised, if any. Sockets use
 * MSG_NOSIGNAL instead. */
static ssize_t pipe_writev(int fd, const struct iovec *iov, int n)
{
    sigset_t pipe_only, old;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    ssize_t r = writev(fd, iov, n);
    int err = errno;
    if (r < 0 && err == EPIPE) {
        /* Only if it was not pending before the write (someone else's). */
        sigset_t pending;
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE) && !sigismember(&old, SIGPIPE)) {
            struct timespec zero = {0, 0};
            sigtimedwait(&pipe_only, NULL, &zero);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return r;
}

static ssize_t sys_writev(moirai_io_t *io, const struct iovec *iov, int n)
{
    if (io->kind == MOIRAI__IO_PIPE)
        return pipe_writev(io->fd, iov, n);
    struct msghdr msg = {.msg_iov = (struct iovec *)(uintptr_t)iov, .msg_iovlen = (size_t)n};
    return sendmsg(io->fd, &msg, MSG_NOSIGNAL);
}

bool moirai__stream_is_stream(const moirai_io_t *io)
{
    return io->kind == MOIRAI__IO_SOCKET || io->kind == MOIRAI__IO_PIPE;
}

int moirai__stream_begin(moirai_io_t *io)
{
    if (io == NULL)
        return -EINVAL;
    int rc = moirai__iowait_check();
    return rc != 0 ? rc : moirai__io_acquire(io);
}

int moirai_stream_accept_timed(moirai_io_t *io, uint64_t deadline, moirai_io_t **out)
{
    if (out == NULL)
        return -EINVAL;
    int rc = moirai__stream_begin(io);
    if (rc != 0)
        return rc;
    if (io->kind != MOIRAI__IO_LISTENER) {
        moirai__io_release(io);
        return -EINVAL;
    }
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            rc = moirai__tcp_setup(fd, &io->tcp, false);
            if (rc == 0)
                rc = moirai__io_new(io->np, fd, MOIRAI__IO_SOCKET, out);
            if (rc != 0)
                close(fd);
            break;
        }
        /* A connection that died in the backlog is not the listener's
         * error (accept(2) passes such network errors on): take the next. */
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        if (errno != EAGAIN) {
            rc = -errno;
            break;
        }
        rc = moirai__io_wait(io, &io->rslot, deadline);
        if (rc != 0)
            break;
    }
    moirai__io_release(io);
    return rc;
}

int moirai_stream_accept(moirai_io_t *io, moirai_io_t **out)
{
    return moirai_stream_accept_timed(io, MOIRAI_DEADLINE_NEVER, out);
}

/* Reads with the reference held (len > 0). */
static ssize_t read_locked(moirai_io_t *io, uint64_t deadline, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = read(io->fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        int rc = moirai__io_wait(io, &io->rslot, deadline);
        if (rc != 0)
            return rc;
    }
}

ssize_t moirai_stream_read_timed(moirai_io_t *io, uint64_t deadline, void *buf, size_t len)
{
    if ((buf == NULL && len > 0) || len > SSIZE_MAX)
        return -EINVAL;
    int rc = moirai__stream_begin(io);
    if (rc != 0)
        return rc;
    ssize_t n = !moirai__stream_is_stream(io) ? -EINVAL
                : len == 0                    ? 0
                                              : read_locked(io, deadline, buf, len);
    moirai__io_release(io);
    return n;
}

ssize_t moirai_stream_read(moirai_io_t *io, void *buf, size_t len)
{
    return moirai_stream_read_timed(io, MOIRAI_DEADLINE_NEVER, buf, len);
}

ssize_t moirai_stream_read_pool_timed(moirai_io_t *io, uint64_t deadline, moirai_pool_t *pool,
                                      void **buf)
{
    if (buf == NULL)
        return -EINVAL;
    *buf = NULL;
    if (pool == NULL)
        return -EINVAL;
    void *obj;
    int rc = moirai_pool_alloc(pool, &obj);
    if (rc != 0)
        return rc;
    ssize_t n = moirai_stream_read_timed(io, deadline, obj, moirai_pool_object_size(pool));
    if (n > 0)
        *buf = obj;
    else
        moirai_pool_free(pool, obj);
    return n;
}

ssize_t moirai_stream_read_pool(moirai_io_t *io, moirai_pool_t *pool, void **buf)
{
    return moirai_stream_read_pool_timed(io, MOIRAI_DEADLINE_NEVER, pool, buf);
}

ssize_t moirai_stream_writev_timed(moirai_io_t *io, uint64_t deadline, const struct iovec *iov,
                                   int iovcnt)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX || (iov == NULL && iovcnt > 0))
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if ((iov[i].iov_base == NULL && iov[i].iov_len > 0) ||
            iov[i].iov_len > (size_t)SSIZE_MAX - total)
            return -EINVAL;
        total += iov[i].iov_len;
    }
    int rc = moirai__stream_begin(io);
    if (rc != 0)
        return rc;
    if (!moirai__stream_is_stream(io)) {
        moirai__io_release(io);
        return -EINVAL;
    }
    /* The caller's vector is walked with an index and an offset into the
     * current buffer; each system call gets a window of at most WINDOW
     * buffers copied to the stack (a fiber's stack may be small). */
    enum { WINDOW = 64 };
    struct iovec win[WINDOW];
    int i = 0;
    size_t off = 0, done = 0;
    ssize_t result = 0;
    while (done < total) {
        while (iov[i].iov_len == off) {
            i++;
            off = 0;
        }
        int n = 0;
        for (int k = i; k < iovcnt && n < WINDOW; k++) {
            size_t skip = k == i ? off : 0;
            if (iov[k].iov_len > skip)
                win[n++] = (struct iovec){(char *)iov[k].iov_base + skip, iov[k].iov_len - skip};
        }
        ssize_t w = sys_writev(io, win, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN) {
                result = -errno;
                break;
            }
            rc = moirai__io_wait(io, &io->wslot, deadline);
            if (rc != 0) {
                result = rc;
                break;
            }
            continue;
        }
        done += (size_t)w;
        size_t left = (size_t)w;
        while (left > 0) {
            size_t room = iov[i].iov_len - off;
            if (left < room) {
                off += left;
                break;
            }
            left -= room;
            i++;
            off = 0;
        }
    }
    moirai__io_release(io);
    /* Bytes that went out are reported even when the rest failed. */
    return done > 0 || result == 0 ? (ssize_t)done : result;
}

ssize_t moirai_stream_writev(moirai_io_t *io, const struct iovec *iov, int iovcnt)
{
    return moirai_stream_writev_timed(io, MOIRAI_DEADLINE_NEVER, iov, iovcnt);
}

ssize_t moirai_stream_write_timed(moirai_io_t *io, uint64_t deadline, const void *buf, size_t len)
{
    if ((buf == NULL && len > 0) || len > SSIZE_MAX)
        return -EINVAL;
    struct iovec one = {(void *)(uintptr_t)buf, len};
    return moirai_stream_writev_timed(io, deadline, &one, 1);
}

ssize_t moirai_stream_write(moirai_io_t *io, const void *buf, size_t len)
{
    return moirai_stream_write_timed(io, MOIRAI_DEADLINE_NEVER, buf, len);
}

int moirai_stream_shutdown(moirai_io_t *io)
{
    int rc = moirai__io_acquire(io);
    if (rc != 0)
        return rc;
    if (!moirai__stream_is_stream(io))
        rc = -EINVAL;
    else
        rc = shutdown(io->fd, SHUT_WR) == 0 ? 0 : -errno;
    moirai__io_release(io);
    return rc;
}
