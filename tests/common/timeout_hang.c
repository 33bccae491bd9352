/* A Criterion test that never ends, for check_timeout_kill.py: it checks
 * that run-test.sh, stopped as meson stops a test that timed out, leaves
 * none of these processes behind. The test's worker starts a child in a
 * session of its own, which starts a grandchild, as a test that runs a
 * server or a peer node might; each appends its pid to the file named by
 * MOIRAI_HANG_PIDS, the worker also its parent (Criterion's runner), so
 * that the check knows what to look for once four lines are there. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void note(pid_t pid)
{
    const char *path = getenv("MOIRAI_HANG_PIDS");
    if (path == NULL)
        return;
    char line[32];
    int n = snprintf(line, sizeof(line), "%ld\n", (long)pid);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd < 0)
        return;
    /* One write per line with O_APPEND: the lines of the three processes
     * never interleave. */
    (void)!write(fd, line, (size_t)n);
    close(fd);
}

static void hang(void)
{
    for (;;)
        pause();
}

Test(timeout_hang, never_ends)
{
    note(getppid());
    note(getpid());
    if (fork() == 0) {
        setsid();
        if (fork() == 0) {
            note(getpid());
            hang();
        }
        note(getpid());
        hang();
    }
    hang();
}
