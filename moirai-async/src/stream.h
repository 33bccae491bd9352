/* What the socket files share (stream.c, tcp.c, unix.c, udp.c). */
#ifndef MOIRAI_ASYNC_STREAM_H
#define MOIRAI_ASYNC_STREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <moirai/async/net.h>

/* Checks `io` (-EINVAL for NULL), the caller's cancellation, and takes a
 * reference for the operation (-EBADF when closed). */
int moirai__stream_begin(moirai_io_t *io);
/* A connected stream (socket or pipe), as opposed to a listener or a
 * UDP socket. */
bool moirai__stream_is_stream(const moirai_io_t *io);
/* The size of an IPv4 or IPv6 address, or 0 for NULL or another family
 * (tcp.c; UDP uses it too). */
socklen_t moirai__tcp_inet_len(const struct sockaddr *addr);
/* Applies the TCP options of `cfg` to socket `fd` (listener: the listener
 * ones too). */
int moirai__tcp_setup(int fd, const moirai_tcp_config_t *cfg, bool listener);
/* Connects non-blocking socket `fd` to `addr`, waiting through the poller,
 * and wraps it in `*out`; closes `fd` on any error. */
int moirai__connect(moirai_runtime_t *rt, int fd, const struct sockaddr *addr, socklen_t len,
                    uint64_t deadline, moirai_io_t **out);

#endif
