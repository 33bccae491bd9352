/* Runs a piece of code that must make AddressSanitizer report, in a child
 * process, and checks the report. Header-only; in a build without ASan
 * HAVE_ASAN is 0 and the tests that need it skip. */
#ifndef MOIRAI_TEST_ASAN_CHILD_H
#define MOIRAI_TEST_ASAN_CHILD_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#include <sanitizer/common_interface_defs.h>
#else
#define HAVE_ASAN 0
#endif

/* Forks; the child writes its stderr and ASan's report into a private
 * directory made from `dir_template` (a mkdtemp() template of at most 40
 * characters), runs `child` and then _exit(0)s. The parent stores the
 * child's waitpid() status in *status and what it wrote (ASan's reports,
 * then its stderr) in `text`, a buffer of `cap` bytes, and removes the
 * directory. */
static inline void asan_run_child(const char *dir_template, void (*child)(void), int *status,
                                  char *text, size_t cap)
{
    char dir[48];
    cr_assert_lt(strlen(dir_template), sizeof(dir));
    strcpy(dir, dir_template);
    cr_assert_not_null(mkdtemp(dir));
    char report[64], err[64];
    snprintf(report, sizeof(report), "%s/report", dir);
    snprintf(err, sizeof(err), "%s/stderr", dir);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
#if HAVE_ASAN
        __sanitizer_set_report_path(report);
#endif
        child();
        _exit(0);
    }
    cr_assert_eq(waitpid(pid, status, 0), pid);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "cat %s/* 2>/dev/null; rm -rf %s", dir, dir);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t n = fread(text, 1, cap - 1, f);
    text[n] = '\0';
    pclose(f);
}

/* Runs `child` as asan_run_child() does; `child` must _exit(0) only if ASan
 * let the bad access pass (any other exit: setup failed). Asserts that the
 * child did not exit with 0 and that what it wrote contains `expect`. */
static inline void asan_expect_report(const char *dir_template, void (*child)(void),
                                      const char *expect)
{
    int status;
    char text[8192];
    asan_run_child(dir_template, child, &status, text, sizeof(text));
    cr_assert(!(WIFEXITED(status) && WEXITSTATUS(status) == 0), "not caught");
    cr_assert_not_null(strstr(text, expect), "child said:\n%s", text);
}

#endif
