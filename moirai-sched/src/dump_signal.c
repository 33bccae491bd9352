/* Dumps on a signal (moirai_sched_dump_on_signal(), moirai/sched/dump.h).
 *
 * A dump takes locks, allocates (stdio) and may wait for other threads:
 * none of that is allowed in a signal handler. So the handler only writes
 * one byte to a non-blocking pipe (write() is async-signal-safe; a full
 * pipe already holds a request, so a failed write loses nothing), and a
 * dedicated thread, blocked in read() on the other end, drains every byte
 * waiting and writes one round of dumps per wake. The thread and the pipe
 * live as long as the process: a handler that can still run must always
 * find its pipe. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <moirai/sched/dump.h>

#include "sched_internal.h"

static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static bool installed; /* under install_lock */

/* Read-only once installed (the handler reads `request_fd`, which is set
 * before the handler is). */
static int request_fd = -1;
static int wait_fd = -1;
static FILE *out_file; /* over a duplicate of the caller's descriptor */
static unsigned dump_flags;

static void on_request(int sig)
{
    (void)sig;
    int saved = errno;
    char c = 0;
    /* EAGAIN (the pipe is full) means a request is pending already. */
    ssize_t n = write(request_fd, &c, 1);
    (void)n;
    errno = saved;
}

static void *dump_thread(void *arg)
{
    (void)arg;
    for (;;) {
        char buf[64];
        ssize_t n = read(wait_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* cannot happen: the write end is never closed */
        /* Merge requests that arrived meanwhile into this round: the read
         * end blocks, so drain only what FIONREAD says is there. */
        int more = 0;
        while (ioctl(wait_fd, FIONREAD, &more) == 0 && more > 0) {
            size_t k = (size_t)more < sizeof buf ? (size_t)more : sizeof buf;
            if (read(wait_fd, buf, k) <= 0)
                break;
        }
        (void)moirai__dump_all(out_file, dump_flags);
    }
    return NULL;
}

int moirai_sched_dump_on_signal(int signo, int fd, unsigned flags)
{
    if (signo <= 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP ||
        signo == MOIRAI_SCHED_DUMP_SIGNAL || fd < 0 || (flags & ~MOIRAI_SCHED_DUMP_BACKTRACES) != 0)
        return -EINVAL;
    pthread_mutex_lock(&install_lock);
    int rc = 0;
    struct sigaction old;
    if (installed) {
        rc = -EBUSY;
    } else if (sigaction(signo, NULL, &old) != 0) {
        rc = -EINVAL;
    } else if ((old.sa_flags & SA_SIGINFO) ||
               (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)) {
        rc = -EBUSY;
    }
    /* Everything is built in locals and published only on success: on
     * error (an installed dump included) the installed state is untouched.
     * The caller's descriptor first, before the pipe could take a number
     * that was free. */
    FILE *file = NULL;
    int dup_fd = -1;
    if (rc == 0 && (dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
        rc = errno == EBADF ? -EINVAL : -errno;
    if (rc == 0 && (file = fdopen(dup_fd, "w")) == NULL) {
        rc = -ENOMEM;
        close(dup_fd);
    }
    int fds[2] = {-1, -1};
    if (rc == 0 && pipe2(fds, O_CLOEXEC) != 0)
        rc = -errno;
    if (rc == 0 && fcntl(fds[1], F_SETFL, O_NONBLOCK) != 0)
        rc = -errno;
    if (rc == 0) {
        /* Written before the thread exists (its creation orders them
         * before its first read) and before the handler is installed. */
        out_file = file;
        request_fd = fds[1];
        wait_fd = fds[0];
        dump_flags = flags;
        pthread_t thread;
        int err = pthread_create(&thread, NULL, dump_thread, NULL);
        if (err != 0)
            rc = err == EAGAIN ? -EAGAIN : -ENOMEM;
        else
            pthread_detach(thread);
    }
    if (rc == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_request;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        /* Cannot fail: the signal was queried above. */
        (void)sigaction(signo, &sa, NULL);
        installed = true;
    } else {
        /* No thread was started: nothing uses the pipe or the FILE. The
         * globals were only written when `installed` was false, and no
         * handler reads them then. */
        if (file != NULL)
            fclose(file);
        if (fds[0] >= 0) {
            close(fds[0]);
            close(fds[1]);
        }
        if (!installed) {
            out_file = NULL;
            request_fd = wait_fd = -1;
        }
    }
    pthread_mutex_unlock(&install_lock);
    return rc;
}
