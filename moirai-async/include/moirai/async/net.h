/* Sockets and pipes that park the fiber: TCP, Unix-domain sockets, pipes
 * and UDP, read and written the POSIX way (`n = read(...)`), from fibers
 * and from plain threads alike.
 *
 * Every descriptor is non-blocking underneath. An operation first makes
 * the system call; only when the kernel says "not yet" (EAGAIN) does the
 * caller wait for readiness: a fiber parks and its worker runs other
 * fibers, a plain thread sleeps. Readiness comes from one edge-triggered
 * epoll set per runtime, polled by the runtime's idle workers (see
 * docs/async.md, "I/O"), so a fiber woken by I/O resumes on the thread
 * that saw the event.
 *
 * Handles. A `moirai_io_t` is one open descriptor: a listener, a connected
 * stream or a UDP socket. It belongs to the runtime that created it and
 * must be closed (moirai_io_close()) before that runtime is destroyed.
 * One fiber or thread at a time may wait to read on a handle and one to
 * write (a second concurrent reader, or writer, gets -EBUSY); reading and
 * writing at the same time from two fibers is fine.
 *
 * Deadlines and cancellation. Every call that may wait has a `_timed`
 * variant with an absolute deadline (moirai_clock_now_ns() scale); the
 * plain call waits without one. A fiber whose task is cancelled
 * (moirai_handle_cancel()) gets -ECANCELED from the call it is blocked in,
 * and from every later call that would wait (cancellation is sticky, as
 * for sleeps). What the handle is left as:
 *   - accept, read, receive: nothing was consumed; the handle is usable.
 *   - write, send: bytes already written stay written; the call returns
 *     their count if there are any, else the error. The stream is usable,
 *     but the message may be cut short: a protocol that cannot resume it
 *     should close the stream.
 *   - connect: the half-open socket is closed and no handle is returned.
 * A plain thread has no task token: only a deadline ends its wait early.
 *
 * Errors are the POSIX ones, negated: -EBADF (a closed handle), -EINVAL
 * (NULL where an object or buffer is required, a length over SSIZE_MAX),
 * -EADDRINUSE, -ECONNREFUSED, -ECONNRESET, -EPIPE, -ETIMEDOUT (the
 * deadline), -ECANCELED, -ENOMEM, and whatever else the system call
 * reports. A broken pipe or socket never raises SIGPIPE.
 *
 * Memory ordering: what a writer wrote to its buffer before a write is
 * what the reader receives; the calls themselves publish nothing else. */
#ifndef MOIRAI_ASYNC_NET_H
#define MOIRAI_ASYNC_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <moirai/async/export.h>
#include <moirai/async/runtime.h>
#include <moirai/mem/pool.h>

/* An open socket or pipe of a runtime (see above). Opaque. */
typedef struct moirai_io moirai_io_t;

/* TCP options. A zeroed field means its default. */
typedef struct moirai_tcp_config {
    /* Keep Nagle's algorithm (coalescing small writes). false (default):
     * TCP_NODELAY is set, as Go and most RPC stacks do. */
    bool nagle;
    /* Seconds of silence before keep-alive probes start; 0: keep-alive
     * off. At most 32767 (the kernel's limit). */
    uint32_t keepalive_s;
    /* Listeners: do not set SO_REUSEADDR (by default it is set, so a
     * restarted server can bind while old connections are in TIME_WAIT). */
    bool exclusive_address;
    /* Listeners: set SO_REUSEPORT, so several listeners share the port. */
    bool reuse_port;
    /* Listeners: the accept backlog; 0: 511 (the kernel caps it at
     * net.core.somaxconn). At most 65535. */
    int backlog;
} moirai_tcp_config_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Sets `*cfg` to the defaults (all zero). NULL is ignored. */
MOIRAI_ASYNC_API void moirai_tcp_config_init(moirai_tcp_config_t *cfg);

/* ---- TCP ---- */

/* Creates a TCP listener bound to `addr` (IPv4 or IPv6; port 0 picks a free
 * one, see moirai_io_local_addr()) and listening. Never blocks. Returns 0,
 * -EINVAL (NULL out, rt or addr, a family other than AF_INET/AF_INET6, an
 * out-of-range config value), -EADDRINUSE, -EACCES, -ENOMEM, or another
 * error of socket/bind/listen. */
MOIRAI_ASYNC_API int moirai_tcp_listen(moirai_io_t **out, moirai_runtime_t *rt,
                                       const struct sockaddr *addr, const moirai_tcp_config_t *cfg);

/* Connects a TCP stream to `addr`. May block (parks a fiber). Returns 0,
 * -EINVAL (as for listen), -ECONNREFUSED, -ENETUNREACH, -ETIMEDOUT (the
 * deadline, or the kernel's), -ECANCELED, -ENOMEM. On error no handle is
 * returned and no descriptor is left open. */
MOIRAI_ASYNC_API int moirai_tcp_connect(moirai_io_t **out, moirai_runtime_t *rt,
                                        const struct sockaddr *addr,
                                        const moirai_tcp_config_t *cfg);
MOIRAI_ASYNC_API int moirai_tcp_connect_timed(moirai_io_t **out, moirai_runtime_t *rt,
                                              uint64_t deadline, const struct sockaddr *addr,
                                              const moirai_tcp_config_t *cfg);

/* ---- Unix-domain sockets and pipes ---- */

/* Creates a listening Unix-domain stream socket at `path` (a leading '@'
 * names the abstract namespace). The file is not removed first: an
 * existing one gives -EADDRINUSE. `backlog` 0: 511. Never blocks. Returns
 * 0, -EINVAL (NULL out, rt or path, empty path, negative backlog),
 * -ENAMETOOLONG (longer than sun_path), -EADDRINUSE, -ENOMEM. */
MOIRAI_ASYNC_API int moirai_unix_listen(moirai_io_t **out, moirai_runtime_t *rt, const char *path,
                                        int backlog);

/* Connects a Unix-domain stream socket to `path`. May block. Returns 0,
 * -EINVAL, -ENAMETOOLONG, -ENOENT (nothing at path), -ECONNREFUSED,
 * -ETIMEDOUT, -ECANCELED, -ENOMEM. On error no descriptor is left open. */
MOIRAI_ASYNC_API int moirai_unix_connect(moirai_io_t **out, moirai_runtime_t *rt, const char *path);
MOIRAI_ASYNC_API int moirai_unix_connect_timed(moirai_io_t **out, moirai_runtime_t *rt,
                                               uint64_t deadline, const char *path);

/* Wraps an open stream descriptor (a pipe end, a socketpair end, a
 * connected socket) in a handle, which then owns it: it is made
 * non-blocking and closed by moirai_io_close(). Never blocks. Returns 0,
 * -EINVAL (NULL out or rt), -EBADF (not an open descriptor), -EPERM (a
 * regular file or directory: those are always "ready"; use moirai/async/fs.h),
 * -ENOMEM (then `fd` is left open and unchanged but for O_NONBLOCK). */
MOIRAI_ASYNC_API int moirai_pipe_open(moirai_io_t **out, moirai_runtime_t *rt, int fd);

/* Creates a pipe and returns its read end in `*rd` and its write end in
 * `*wr`. Never blocks. Returns 0, -EINVAL, -EMFILE, -ENOMEM (nothing left
 * open). */
MOIRAI_ASYNC_API int moirai_pipe_create(moirai_runtime_t *rt, moirai_io_t **rd, moirai_io_t **wr);

/* ---- Streams (TCP, Unix, pipes) ---- */

/* Accepts a connection on listener `io` into `*out`, with the listener's
 * TCP options. May block. Returns 0, -EBADF, -EINVAL (NULL out; not a
 * listener), -EBUSY (another fiber or thread waits to accept on it),
 * -ETIMEDOUT, -ECANCELED, -EMFILE, -ENOMEM (the connection is dropped). */
MOIRAI_ASYNC_API int moirai_stream_accept(moirai_io_t *io, moirai_io_t **out);
MOIRAI_ASYNC_API int moirai_stream_accept_timed(moirai_io_t *io, uint64_t deadline,
                                                moirai_io_t **out);

/* Reads up to `len` bytes into `buf`, waiting until at least one is there.
 * Returns the count read (possibly less than len), 0 at end of stream
 * (also for len 0), -EBADF, -EINVAL (NULL buf with len > 0, len over
 * SSIZE_MAX, a listener or UDP handle), -EBUSY (another reader waits),
 * -ECONNRESET, -ETIMEDOUT, -ECANCELED. May block. */
MOIRAI_ASYNC_API ssize_t moirai_stream_read(moirai_io_t *io, void *buf, size_t len);
MOIRAI_ASYNC_API ssize_t moirai_stream_read_timed(moirai_io_t *io, uint64_t deadline, void *buf,
                                                  size_t len);

/* As moirai_stream_read() into a buffer taken from `pool` (its object
 * size is the length read at most), stored in `*buf` when the count is
 * positive; the caller returns it with moirai_pool_free(). At 0 (end of
 * stream) or an error, `*buf` is NULL and nothing is kept. Returns as
 * moirai_stream_read(), and -EINVAL for a NULL pool or buf, -ENOMEM when
 * the pool is exhausted. */
MOIRAI_ASYNC_API ssize_t moirai_stream_read_pool(moirai_io_t *io, moirai_pool_t *pool, void **buf);
MOIRAI_ASYNC_API ssize_t moirai_stream_read_pool_timed(moirai_io_t *io, uint64_t deadline,
                                                       moirai_pool_t *pool, void **buf);

/* Writes all `len` bytes of `buf`, waiting for room as needed. Returns
 * `len`; on an error after some bytes went out, their count (less than
 * len); else -EBADF, -EINVAL (as for read), -EBUSY (another writer
 * waits), -EPIPE (the reader closed), -ECONNRESET, -ETIMEDOUT,
 * -ECANCELED. May block. */
MOIRAI_ASYNC_API ssize_t moirai_stream_write(moirai_io_t *io, const void *buf, size_t len);
MOIRAI_ASYNC_API ssize_t moirai_stream_write_timed(moirai_io_t *io, uint64_t deadline,
                                                   const void *buf, size_t len);

/* Scatter/gather: writes every byte of the `iovcnt` buffers of `iov`, in
 * order, as moirai_stream_write(). `iovcnt` from 0 to IOV_MAX (1024);
 * -EINVAL beyond, or when the lengths add up to more than SSIZE_MAX. */
MOIRAI_ASYNC_API ssize_t moirai_stream_writev(moirai_io_t *io, const struct iovec *iov, int iovcnt);
MOIRAI_ASYNC_API ssize_t moirai_stream_writev_timed(moirai_io_t *io, uint64_t deadline,
                                                    const struct iovec *iov, int iovcnt);

/* Ends the writing half of a socket stream (the peer reads end of stream)
 * while reading goes on. Never blocks. Returns 0, -EBADF, -EINVAL (a
 * listener or UDP handle), -ENOTSOCK (a pipe: close its write end
 * instead), -ENOTCONN. */
MOIRAI_ASYNC_API int moirai_stream_shutdown(moirai_io_t *io);

/* ---- UDP ---- */

/* Creates a UDP socket bound to `addr` (port 0: any free port). Never
 * blocks. Returns 0, -EINVAL (NULL out, rt or addr; not AF_INET or
 * AF_INET6), -EADDRINUSE, -ENOMEM. */
MOIRAI_ASYNC_API int moirai_udp_bind(moirai_io_t **out, moirai_runtime_t *rt,
                                     const struct sockaddr *addr);

/* Sends one datagram of `len` bytes to `addr`, waiting for send buffer room
 * if needed. Returns `len`, -EBADF, -EINVAL (NULL buf with len > 0, NULL
 * addr), -EMSGSIZE (larger than a datagram can be), -EBUSY, -ETIMEDOUT,
 * -ECANCELED, or a send error (-ECONNREFUSED from an earlier ICMP report).
 * May block. */
MOIRAI_ASYNC_API ssize_t moirai_udp_send(moirai_io_t *io, const void *buf, size_t len,
                                         const struct sockaddr *addr);
MOIRAI_ASYNC_API ssize_t moirai_udp_send_timed(moirai_io_t *io, uint64_t deadline, const void *buf,
                                               size_t len, const struct sockaddr *addr);

/* Receives one datagram into `buf` (a longer one is cut to `len` bytes, the
 * rest is discarded, as recvfrom does), and the sender's address into
 * `from` if not NULL. Returns the bytes stored, -EBADF, -EINVAL, -EBUSY
 * (another receiver waits), -ETIMEDOUT, -ECANCELED. May block. */
MOIRAI_ASYNC_API ssize_t moirai_udp_recv(moirai_io_t *io, void *buf, size_t len,
                                         struct sockaddr_storage *from);
MOIRAI_ASYNC_API ssize_t moirai_udp_recv_timed(moirai_io_t *io, uint64_t deadline, void *buf,
                                               size_t len, struct sockaddr_storage *from);

/* ---- Any handle ---- */

/* Closes the handle: every fiber or thread waiting in an operation on it
 * returns -EBADF, later calls return -EBADF, and the descriptor is closed
 * once the last operation in progress has left. The handle must not be
 * used once those calls have returned (its memory is reused for later
 * handles). Never blocks. Returns 0, -EINVAL (NULL) or -EBADF (closed
 * already). */
MOIRAI_ASYNC_API int moirai_io_close(moirai_io_t *io);

/* The descriptor, for socket options this header does not cover; it stays
 * owned by the handle (do not close it or make it blocking). -EBADF if
 * closed, -EINVAL for NULL. Never blocks. */
MOIRAI_ASYNC_API int moirai_io_fd(moirai_io_t *io);

/* The local (bound) and remote addresses, as getsockname / getpeername.
 * `*len` is the size of `addr` on entry and the address size on return.
 * Returns 0, -EINVAL (NULL argument), -EBADF, -ENOTCONN (no peer), or
 * -ENOTSOCK (a pipe). Never blocks. */
MOIRAI_ASYNC_API int moirai_io_local_addr(moirai_io_t *io, struct sockaddr *addr, socklen_t *len);
MOIRAI_ASYNC_API int moirai_io_peer_addr(moirai_io_t *io, struct sockaddr *addr, socklen_t *len);

#ifdef __cplusplus
}
#endif

#endif
