/* Tells whether a thread is really asleep in futex() on a given word (and
 * not merely about to check it): /proc/self/task/<tid>/syscall names the
 * system call a blocked thread sits in and its first argument.
 * Header-only. */
#ifndef MOIRAI_TEST_FUTEX_PROBE_H
#define MOIRAI_TEST_FUTEX_PROBE_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/types.h>

/* True when thread `tid` is blocked in system call number `nr`. */
static inline bool in_syscall(pid_t tid, long nr)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    long got = -1;
    int n = fscanf(f, "%ld", &got);
    fclose(f);
    return n == 1 && got == nr;
}

/* True when thread `tid` is blocked in futex() on `addr`. */
static inline bool in_futex_on(pid_t tid, const void *addr)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    long nr = -1;
    unsigned long arg0 = 0;
    int n = fscanf(f, "%ld %lx", &nr, &arg0);
    fclose(f);
    return n == 2 && nr == SYS_futex && arg0 == (unsigned long)addr;
}

#endif
