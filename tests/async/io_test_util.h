/* Helpers for the file, name-resolution and signal tests: a scratch
 * directory, counting open descriptors, and FIFOs whose open blocks a
 * libuv pool thread until a writer appears (the way to hold an operation
 * in the pool, or to fill the pool so that the next one stays queued).
 * Header-only; asserting functions run on the test thread. */
#ifndef MOIRAI_TEST_IO_UTIL_H
#define MOIRAI_TEST_IO_UTIL_H

#include <criterion/criterion.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <moirai/core/clock.h>

/* libuv's pool size: UV_THREADPOOL_SIZE, 4 when unset. */
static inline int uv_pool_size(void)
{
    const char *v = getenv("UV_THREADPOOL_SIZE");
    int n = v != NULL ? atoi(v) : 4;
    if (n <= 0)
        n = 1;
    return n > 1024 ? 1024 : n;
}

/* Threads of this process blocked in openat(2) right now, from
 * /proc/self/task/<tid>/syscall (the system call a sleeping thread is
 * in): how a test knows that pool threads sit in a FIFO open. */
static inline int threads_in_openat(void)
{
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[300];
        snprintf(p, sizeof(p), "/proc/self/task/%s/syscall", e->d_name);
        FILE *f = fopen(p, "r");
        if (f == NULL)
            continue;
        long nr = -1;
        if (fscanf(f, "%ld", &nr) == 1 && nr == SYS_openat)
            n++;
        fclose(f);
    }
    closedir(d);
    return n;
}

/* Waits (bounded by WAIT_NS) until `n` threads are blocked in openat. */
static inline void wait_threads_in_openat(int n)
{
    uint64_t until = moirai_deadline_after(WAIT_NS);
    while (threads_in_openat() < n && moirai_clock_now_ns() < until)
        usleep(1000);
    cr_assert_geq(threads_in_openat(), n, "pool threads never blocked in the FIFO open");
}

/* A fresh directory under /tmp, removed (with its files) by
 * scratch_remove. */
static inline void scratch_make(char *dir, size_t size, const char *tag)
{
    snprintf(dir, size, "/tmp/moirai-%s-XXXXXX", tag);
    cr_assert_not_null(mkdtemp(dir));
}

static inline void scratch_remove(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Descriptors this process has open. */
static inline int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own descriptor */
}

/* Descriptors open now, after one runtime has come and gone: libuv makes
 * a process-wide pipe (its signal lock) at the first loop and keeps it,
 * so a count taken before any runtime would differ by that pipe. */
static inline int count_fds_baseline(void)
{
    drop_runtime(make_runtime(1));
    return count_fds();
}

/* Makes `path` a FIFO. */
static inline void fifo_make(const char *path)
{
    cr_assert_eq(mkfifo(path, 0600), 0);
}

/* Lets every open of the FIFO at `path`, now and later, complete: a
 * descriptor open for reading and writing counts as a writer. Returns it;
 * close it only after the runtime is destroyed (destroy waits for
 * detached pool work, and a reader that reached open() late would
 * otherwise block it). */
static inline int fifo_release(const char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    return fd;
}

#endif
