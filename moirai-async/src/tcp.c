/* TCP: listeners and connections, and the options users expect. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <moirai/core/clock.h>

#include "async_internal.h"
#include "iowait.h"
#include "netpoll.h"
#include "stream.h"

#define DEFAULT_BACKLOG 511
#define MAX_KEEPALIVE_S 32767

void moirai_tcp_config_init(moirai_tcp_config_t *cfg)
{
    if (cfg != NULL)
        memset(cfg, 0, sizeof *cfg);
}

static int check_config(const moirai_tcp_config_t *cfg)
{
    if (cfg == NULL)
        return 0;
    return cfg->keepalive_s > MAX_KEEPALIVE_S || cfg->backlog < 0 || cfg->backlog > 65535 ? -EINVAL
                                                                                          : 0;
}

socklen_t moirai__tcp_inet_len(const struct sockaddr *addr)
{
    if (addr == NULL)
        return 0;
    if (addr->sa_family == AF_INET)
        return sizeof(struct sockaddr_in);
    if (addr->sa_family == AF_INET6)
        return sizeof(struct sockaddr_in6);
    return 0;
}

static int set_int(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof value) == 0 ? 0 : -errno;
}

int moirai__tcp_setup(int fd, const moirai_tcp_config_t *cfg, bool listener)
{
    moirai_tcp_config_t none = {0};
    if (cfg == NULL)
        cfg = &none;
    int rc = 0;
    if (listener) {
        if (!cfg->exclusive_address)
            rc = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
        if (rc == 0 && cfg->reuse_port)
            rc = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
        return rc;
    }
    if (!cfg->nagle)
        rc = set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (rc == 0 && cfg->keepalive_s > 0) {
        rc = set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
        if (rc == 0)
            rc = set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, (int)cfg->keepalive_s);
    }
    return rc;
}

int moirai_tcp_listen(moirai_io_t **out, moirai_runtime_t *rt, const struct sockaddr *addr,
                      const moirai_tcp_config_t *cfg)
{
    socklen_t len = moirai__tcp_inet_len(addr);
    if (out == NULL || rt == NULL || len == 0 || check_config(cfg) != 0)
        return -EINVAL;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int backlog = cfg != NULL && cfg->backlog > 0 ? cfg->backlog : DEFAULT_BACKLOG;
    int rc = moirai__tcp_setup(fd, cfg, true);
    if (rc == 0 && bind(fd, addr, len) != 0)
        rc = -errno;
    if (rc == 0 && listen(fd, backlog) != 0)
        rc = -errno;
    moirai_io_t *io = NULL;
    if (rc == 0)
        rc = moirai__io_new(rt->netpoll, fd, MOIRAI__IO_LISTENER, &io);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    moirai_tcp_config_init(&io->tcp);
    if (cfg != NULL)
        io->tcp = *cfg;
    *out = io;
    return 0;
}

int moirai__connect(moirai_runtime_t *rt, int fd, const struct sockaddr *addr, socklen_t len,
                    uint64_t deadline, moirai_io_t **out)
{
    int rc = moirai__iowait_check();
    while (rc == 0 && connect(fd, addr, len) != 0) {
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN && addr->sa_family == AF_UNIX) {
            /* A full Unix backlog has no readiness event: try again in a
             * millisecond, within the deadline. */
            rc = moirai_deadline_expired(deadline) ? -ETIMEDOUT : 0;
            if (rc == 0 && moirai__fiber_self() != NULL)
                rc = moirai_fiber_sleep(MOIRAI_NS_PER_MS);
            else if (rc == 0)
                usleep(1000);
            continue;
        }
        rc = errno == EINPROGRESS ? 1 : -errno;
        break;
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    moirai_io_t *io;
    int err = moirai__io_new(rt->netpoll, fd, MOIRAI__IO_SOCKET, &io);
    if (err != 0) {
        close(fd);
        return err;
    }
    /* In progress: the connection is up (or failed) at the first output
     * edge; the edge of the registration itself may come first. */
    while (rc == 1) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
            soerr = errno;
        if (soerr != 0)
            rc = -soerr;
        else if (getpeername(fd, (struct sockaddr *)&peer, &pl) == 0)
            rc = 0;
        else if (errno != ENOTCONN)
            rc = -errno;
        else {
            int w = moirai__io_wait(io, &io->wslot, deadline);
            rc = w == 0 ? 1 : w;
        }
    }
    if (rc != 0) {
        moirai_io_close(io);
        return rc;
    }
    *out = io;
    return 0;
}

int moirai_tcp_connect_timed(moirai_io_t **out, moirai_runtime_t *rt, uint64_t deadline,
                             const struct sockaddr *addr, const moirai_tcp_config_t *cfg)
{
    socklen_t len = moirai__tcp_inet_len(addr);
    if (out == NULL || rt == NULL || len == 0 || check_config(cfg) != 0)
        return -EINVAL;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = moirai__tcp_setup(fd, cfg, false);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return moirai__connect(rt, fd, addr, len, deadline, out);
}

int moirai_tcp_connect(moirai_io_t **out, moirai_runtime_t *rt, const struct sockaddr *addr,
                       const moirai_tcp_config_t *cfg)
{
    return moirai_tcp_connect_timed(out, rt, MOIRAI_DEADLINE_NEVER, addr, cfg);
}
