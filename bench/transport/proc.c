/* moirai-bench, suite "transport": two-process helpers (see proc.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"

/* Writes all of buf, or returns -1. */
int bench_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Reads exactly len bytes, or returns -1 (error or end of file). */
int bench_read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

/* In the child: reports ready, then waits for go. */
int bench_child_handshake(int go_r, int ready_w)
{
    char c = 'r';
    if (bench_write_all(ready_w, &c, 1) < 0 || bench_read_all(go_r, &c, 1) < 0 || c != 'g')
        return -1;
    return 0;
}

int bench_child_start(bench_child_t *c, bench_child_fn fn, void *arg)
{
    int go[2], ready[2];
    if (pipe2(go, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(ready, O_CLOEXEC) < 0) {
        close(go[0]);
        close(go[1]);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(go[0]);
        close(go[1]);
        close(ready[0]);
        close(ready[1]);
        return -1;
    }
    if (pid == 0) {
        /* The child must not outlive a parent that died. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(go[1]);
        close(ready[0]);
        _exit(fn(arg, go[0], ready[1]) == 0 ? 0 : 1);
    }
    close(go[0]);
    close(ready[1]);
    c->pid = pid;
    c->reaped = false;
    c->status = 0;
    c->go_w = go[1];
    c->ready_r = ready[0];
    return 0;
}

/* In the parent: waits until the child is ready. */
int bench_child_wait_ready(bench_child_t *c)
{
    char r;
    return bench_read_all(c->ready_r, &r, 1) == 0 && r == 'r' ? 0 : -1;
}

int bench_child_go(bench_child_t *c)
{
    char g = 'g';
    return bench_write_all(c->go_w, &g, 1);
}

/* Reaps the child; 0 if it exited with status 0. With `kill_it`, it is
 * killed first (the parent's side failed). */
bool bench_child_exited(bench_child_t *c)
{
    if (!c->reaped && waitpid(c->pid, &c->status, WNOHANG) == c->pid)
        c->reaped = true;
    return c->reaped;
}

int bench_child_finish(bench_child_t *c, bool kill_it)
{
    if (kill_it && !c->reaped)
        kill(c->pid, SIGKILL);
    close(c->go_w);
    close(c->ready_r);
    while (!c->reaped && waitpid(c->pid, &c->status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    c->reaped = true;
    return WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0 ? 0 : -1;
}
