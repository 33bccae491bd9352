/* Round trip of a byte stream between two processes of one host: the
 * shared-memory backend's link (moirai-transport/src/link_shm.c) against
 * a TCP loopback connection (TCP_NODELAY, blocking send and recv), the
 * peer the TCP backend's links are built on. The same topology for both:
 * this process writes a message and reads the echo that a forked child
 * sends back, so every round trip crosses processes twice. Samples
 * alternate between the two (A B A B ...) in one run, and the medians and
 * their ratio are printed.
 *
 * Usage: moirai-bench-shm-link-rtt [message bytes (64)] [samples (21)]
 * [round trips per sample (2000)]. The internal link functions are
 * compiled into this program (the library does not export them). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <moirai/core/clock.h>

#include "link_shm.h"

static int link_read_full(struct link *l, void *b, size_t n)
{
    unsigned char *p = b;
    while (n > 0) {
        ssize_t r = l->ops->read(l, p, n, MOIRAI_DEADLINE_NEVER);
        if (r <= 0)
            return r == 0 ? -EPIPE : (int)r;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int link_write(struct link *l, const void *b, size_t n)
{
    struct iovec v = {(void *)b, n};
    return l->ops->writev(l, &v, 1, MOIRAI_DEADLINE_NEVER);
}

static int sock_read_full(int fd, void *b, size_t n)
{
    unsigned char *p = b;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int sock_write(int fd, const void *b, size_t n)
{
    const unsigned char *p = b;
    while (n > 0) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "shm_link_rtt: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
    exit(1);
}

int main(int argc, char **argv)
{
    size_t msg = argc > 1 ? (size_t)atol(argv[1]) : 64;
    int samples = argc > 2 ? atoi(argv[2]) : 21;
    int per = argc > 3 ? atoi(argv[3]) : 2000;
    if (msg == 0 || samples <= 0 || per <= 0)
        die("arguments", EINVAL);
    unsigned char *buf = calloc(1, msg);

    char name[SHM_NAME_MAX + 1];
    snprintf(name, sizeof name, "rtt%u", (unsigned)getpid());
    struct shm_listener *ls;
    int rc = moirai__shm_listen(&ls, name);
    if (rc != 0)
        die("listen", rc);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 1) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0)
        die("tcp listen", errno);

    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0) {
        /* The echo child: one thread per transport would compete for the
         * same two CPUs, so one thread serves both in turn, told which by
         * the parent's first byte on TCP ('s' shm sample, 't' tcp sample,
         * 'q' quit). */
        struct link *l;
        if (moirai__shm_dial(name, 0, moirai_deadline_after(10 * MOIRAI_NS_PER_S), &l) != 0)
            _exit(2);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
            _exit(3);
        for (;;) {
            char c;
            if (sock_read_full(fd, &c, 1) != 0 || c == 'q')
                break;
            for (int i = 0; i < per; i++) {
                if (c == 's') {
                    if (link_read_full(l, buf, msg) != 0 || link_write(l, buf, msg) != 0)
                        _exit(4);
                } else if (sock_read_full(fd, buf, msg) != 0 || sock_write(fd, buf, msg) != 0) {
                    _exit(5);
                }
            }
        }
        l->ops->shutdown(l);
        l->ops->close(l);
        _exit(0);
    }
    struct link *l;
    rc = moirai__shm_accept(ls, moirai_deadline_after(10 * MOIRAI_NS_PER_S), &l);
    if (rc != 0)
        die("accept", rc);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    int one = 1;
    if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        die("tcp accept", errno);

    uint64_t *shm_ns = calloc((size_t)samples, sizeof *shm_ns);
    uint64_t *tcp_ns = calloc((size_t)samples, sizeof *tcp_ns);
    for (int s = -1; s < samples; s++) { /* sample -1 warms up */
        for (int which = 0; which < 2; which++) {
            char c = which == 0 ? 's' : 't';
            if (sock_write(fd, &c, 1) != 0)
                die("control", EPIPE);
            uint64_t t0 = moirai_clock_now_ns();
            for (int i = 0; i < per; i++) {
                buf[0] = (unsigned char)i;
                if (which == 0) {
                    if (link_write(l, buf, msg) != 0 || link_read_full(l, buf, msg) != 0)
                        die("shm round trip", EPIPE);
                } else if (sock_write(fd, buf, msg) != 0 || sock_read_full(fd, buf, msg) != 0) {
                    die("tcp round trip", EPIPE);
                }
                if (buf[0] != (unsigned char)i)
                    die("echo mismatch", EPROTO);
            }
            uint64_t ns = (moirai_clock_now_ns() - t0) / (uint64_t)per;
            if (s >= 0)
                (which == 0 ? shm_ns : tcp_ns)[s] = ns;
        }
    }
    char q = 'q';
    sock_write(fd, &q, 1);
    int st = 0;
    waitpid(pid, &st, 0);
    qsort(shm_ns, (size_t)samples, sizeof *shm_ns, cmp_u64);
    qsort(tcp_ns, (size_t)samples, sizeof *tcp_ns, cmp_u64);
    uint64_t ms = shm_ns[samples / 2], mt = tcp_ns[samples / 2];
    printf("round trip of %zu bytes between two processes, median of %d samples x %d:\n", msg,
           samples, per);
    printf("  shm link      %8.2f us  (min %.2f, max %.2f)\n", ms / 1e3, shm_ns[0] / 1e3,
           shm_ns[samples - 1] / 1e3);
    printf("  tcp loopback  %8.2f us  (min %.2f, max %.2f)\n", mt / 1e3, tcp_ns[0] / 1e3,
           tcp_ns[samples - 1] / 1e3);
    printf("  tcp / shm     %8.2f x\n", ms > 0 ? (double)mt / (double)ms : 0.0);
    l->ops->shutdown(l);
    l->ops->close(l);
    moirai__shm_listener_destroy(ls);
    close(fd);
    close(lfd);
    free(shm_ns);
    free(tcp_ns);
    free(buf);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
