/* moirai-bench, suite "transport": two-process helpers (see proc.h). */
#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../bench.h"
#include "proc.h"

extern char **environ;

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

/* The descriptor numbers a child finds its pipes and the case's
 * descriptors at. */
#define CHILD_GO_FD    100
#define CHILD_READY_FD 101
#define CHILD_FD0      102
#define CHILD_FD1      103

int bench_child_start(bench_child_t *c, const char *role, uint64_t n, const char *text, int fd0,
                      int fd1)
{
    if (fd0 >= CHILD_GO_FD || fd1 >= CHILD_GO_FD)
        return -1;
    int go[2], ready[2];
    if (pipe2(go, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(ready, O_CLOEXEC) < 0) {
        close(go[0]);
        close(go[1]);
        return -1;
    }
    char count[32];
    snprintf(count, sizeof(count), "%llu", (unsigned long long)n);
    char *argv[] = {(char *)"moirai-bench",
                    (char *)BENCH_CHILD_FLAG,
                    (char *)role,
                    count,
                    (char *)(text ? text : "-"),
                    NULL};
    /* dup2 onto fixed numbers clears close-on-exec on the copies only. */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, go[0], CHILD_GO_FD);
    posix_spawn_file_actions_adddup2(&fa, ready[1], CHILD_READY_FD);
    if (fd0 >= 0)
        posix_spawn_file_actions_adddup2(&fa, fd0, CHILD_FD0);
    if (fd1 >= 0)
        posix_spawn_file_actions_adddup2(&fa, fd1, CHILD_FD1);
    pid_t pid;
    int err = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(go[0]);
    close(ready[1]);
    if (err != 0) {
        fprintf(stderr, "transport: cannot start a child: %s\n", strerror(err));
        close(go[1]);
        close(ready[0]);
        return -1;
    }
    c->pid = pid;
    c->reaped = false;
    c->status = 0;
    c->go_w = go[1];
    c->ready_r = ready[0];
    return 0;
}

int bench_shared_memory(size_t size, void **map)
{
    int fd = memfd_create("moirai-bench", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    void *p = MAP_FAILED;
    if (ftruncate(fd, (off_t)size) == 0)
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return -1;
    }
    *map = p;
    return fd;
}

void *bench_shared_map(int fd, size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* The child's side: finds its role and runs it. */
int bench_child_main(int argc, char **argv)
{
    /* The child must not outlive a parent that died. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc != 5)
        return 2;
    bench_child_args_t a;
    a.n = strtoull(argv[3], NULL, 10);
    a.text = argv[4];
    a.go_r = CHILD_GO_FD;
    a.ready_w = CHILD_READY_FD;
    a.fd[0] = fcntl(CHILD_FD0, F_GETFD) >= 0 ? CHILD_FD0 : -1;
    a.fd[1] = fcntl(CHILD_FD1, F_GETFD) >= 0 ? CHILD_FD1 : -1;
    for (const bench_child_role_t *r = bench_transport_child_roles; r->name; r++) {
        if (!strcmp(r->name, argv[2]))
            return r->run(&a) == 0 ? 0 : 1;
    }
    fprintf(stderr, "moirai-bench: no child role '%s'\n", argv[2]);
    return 2;
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
