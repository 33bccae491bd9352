/* Unix-domain stream sockets and pipes. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <moirai/core/clock.h>

#include "async_internal.h"
#include "netpoll.h"
#include "stream.h"

#define DEFAULT_BACKLOG 511

/* Fills `sun` from `path` ('@' first: the abstract namespace). */
static int unix_addr(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
    if (path == NULL || path[0] == '\0')
        return -EINVAL;
    size_t n = strlen(path);
    if (n >= sizeof sun->sun_path)
        return -ENAMETOOLONG;
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    if (path[0] == '@') {
        sun->sun_path[0] = '\0';
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)sizeof *sun;
    }
    return 0;
}

int moirai_unix_listen(moirai_io_t **out, moirai_runtime_t *rt, const char *path, int backlog)
{
    if (out == NULL || rt == NULL || backlog < 0)
        return -EINVAL;
    struct sockaddr_un sun;
    socklen_t len;
    int rc = unix_addr(path, &sun, &len);
    if (rc != 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sun, len) != 0 ||
        listen(fd, backlog > 0 ? backlog : DEFAULT_BACKLOG) != 0)
        rc = -errno;
    moirai_io_t *io = NULL;
    if (rc == 0)
        rc = moirai__io_new(rt->netpoll, fd, MOIRAI__IO_LISTENER, &io);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    /* Accepted Unix streams take no TCP option: keep Nagle "on" so that
     * the setup skips TCP_NODELAY. */
    moirai_tcp_config_init(&io->tcp);
    io->tcp.nagle = true;
    *out = io;
    return 0;
}

int moirai_unix_connect_timed(moirai_io_t **out, moirai_runtime_t *rt, uint64_t deadline,
                              const char *path)
{
    if (out == NULL || rt == NULL)
        return -EINVAL;
    struct sockaddr_un sun;
    socklen_t len;
    int rc = unix_addr(path, &sun, &len);
    if (rc != 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    return moirai__connect(rt, fd, (struct sockaddr *)&sun, len, deadline, out);
}

int moirai_unix_connect(moirai_io_t **out, moirai_runtime_t *rt, const char *path)
{
    return moirai_unix_connect_timed(out, rt, MOIRAI_DEADLINE_NEVER, path);
}

int moirai_pipe_open(moirai_io_t **out, moirai_runtime_t *rt, int fd)
{
    if (out == NULL || rt == NULL)
        return -EINVAL;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return -EBADF;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
        return -EPERM;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
        return -errno;
    int kind = S_ISSOCK(st.st_mode) ? MOIRAI__IO_SOCKET : MOIRAI__IO_PIPE;
    return moirai__io_new(rt->netpoll, fd, kind, out);
}

int moirai_pipe_create(moirai_runtime_t *rt, moirai_io_t **rd, moirai_io_t **wr)
{
    if (rt == NULL || rd == NULL || wr == NULL)
        return -EINVAL;
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return -errno;
    int rc = moirai__io_new(rt->netpoll, fds[0], MOIRAI__IO_PIPE, rd);
    if (rc != 0) {
        close(fds[0]);
        close(fds[1]);
        return rc;
    }
    rc = moirai__io_new(rt->netpoll, fds[1], MOIRAI__IO_PIPE, wr);
    if (rc != 0) {
        moirai_io_close(*rd);
        *rd = NULL;
        close(fds[1]);
        return rc;
    }
    return 0;
}
