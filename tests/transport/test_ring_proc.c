/* Shared-memory rings between real processes (fork, and exec of
 * test_ring_helper with the memfd's number): long checked streams, several
 * producer processes, peers killed with SIGKILL, and waits that sleep.
 * Children report through their exit status; the parent asserts. */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <moirai/core/clock.h>
#include <moirai/transport.h>

#include "test_ring_msg.h"
#include "test_scale.h"

/* Messages per stream: MOIRAI_RING_MESSAGES (default 10^7), divided by
 * MOIRAI_TEST_SCALE under sanitizers. */
static uint64_t stream_count(void)
{
    return (uint64_t)scaled(env_long("MOIRAI_RING_MESSAGES", 10000000));
}

static int make(size_t size, uint32_t flags)
{
    moirai_shm_ring_config_t cfg;
    moirai_shm_ring_config_init(&cfg);
    cfg.size = size;
    cfg.flags = flags;
    int fd = -1;
    cr_assert_eq(moirai_shm_ring_create(&fd, &cfg), 0);
    return fd;
}

/* The write end of a pipe on which each forked producer says it has
 * attached (-1: none). The consumer reports -EPIPE once every producer
 * that attached has left, so a test with several producers waits until
 * all attached before it consumes (or a fast first producer could finish
 * before the second attached). */
static int attached_pipe[2] = {-1, -1};

static void attach_pipe_open(void)
{
    cr_assert_eq(pipe(attached_pipe), 0);
}

/* Waits until `n` producers said they attached. */
static void wait_attached(int n)
{
    for (int i = 0; i < n; i++) {
        char b;
        cr_assert_eq(read(attached_pipe[0], &b, 1), 1);
    }
}

/* Forks a child that attaches as producer `id` and sends `count`
 * messages (count 0: forever), then detaches and exits 0. */
static pid_t fork_producer(int fd, unsigned id, uint64_t count)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        moirai_shm_ring_t *r = NULL;
        if (moirai_shm_ring_attach(&r, fd, MOIRAI_SHM_RING_PRODUCER) != 0)
            _exit(10);
        if (attached_pipe[1] >= 0 && write(attached_pipe[1], "a", 1) != 1)
            _exit(12);
        for (uint64_t i = 0; count == 0 || i < count; i++)
            if (msg_send(r, id, i) != 0)
                _exit(11);
        moirai_shm_ring_detach(r);
        _exit(0);
    }
    return pid;
}

static void expect_exit0(pid_t pid)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
}

/* Receives and checks `total` messages from `nprod` producers, then
 * expects `end` from the next peek. */
static void consume_all(moirai_shm_ring_t *c, unsigned nprod, uint64_t total, int end)
{
    uint64_t next[16] = {0};
    for (uint64_t i = 0; i < total; i++) {
        void *buf;
        size_t len;
        int rc = moirai_shm_ring_peek(c, &buf, &len);
        cr_assert_eq(rc, 0, "message %lu: %d", (unsigned long)i, rc);
        int bad = msg_check(buf, len, next, nprod);
        if (bad != 0)
            cr_assert_fail("message %lu is wrong (%d)", (unsigned long)i, bad);
        cr_assert_eq(moirai_shm_ring_release(c), 0);
    }
    void *buf;
    size_t len;
    cr_assert_eq(moirai_shm_ring_peek(c, &buf, &len), end);
    for (unsigned p = 0; p < nprod; p++)
        cr_assert_eq(next[p], total / nprod, "producer %u", p);
}

Test(transport_ring_proc, stream_fork_spsc, .timeout = 240)
{
    uint64_t n = stream_count();
    int fd = make(1 << 16, 0);
    moirai_shm_ring_t *c = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    pid_t pid = fork_producer(fd, 0, n);
    close(fd);
    consume_all(c, 1, n, -EPIPE);
    expect_exit0(pid);
    moirai_shm_ring_stats_t st;
    cr_assert_eq(moirai_shm_ring_stats(c, &st), 0);
    cr_assert_eq(st.messages, n);
    moirai_shm_ring_detach(c);
}

/* The producer is a separate program that finds the memfd by number. */
Test(transport_ring_proc, stream_exec_spsc, .timeout = 240)
{
    const char *helper = getenv("MOIRAI_RING_HELPER");
    cr_assert_not_null(helper, "meson sets MOIRAI_RING_HELPER");
    uint64_t n = stream_count() / 4 + 1;
    int fd = make(1 << 16, 0);
    moirai_shm_ring_t *c = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    char fdstr[16], countstr[32];
    snprintf(fdstr, sizeof(fdstr), "%d", fd);
    snprintf(countstr, sizeof(countstr), "%lu", (unsigned long)n);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl(helper, helper, "produce", fdstr, "0", countstr, (char *)NULL);
        _exit(127);
    }
    close(fd);
    consume_all(c, 1, n, -EPIPE);
    expect_exit0(pid);
    moirai_shm_ring_detach(c);
}

/* And the consumer as a separate program, over an MPSC ring fed by two
 * forked producers. */
Test(transport_ring_proc, stream_exec_consumer_mpsc, .timeout = 240)
{
    const char *helper = getenv("MOIRAI_RING_HELPER");
    cr_assert_not_null(helper);
    uint64_t n = stream_count() / 8 + 1;
    int fd = make(1 << 14, MOIRAI_SHM_RING_MPSC);
    char fdstr[16], countstr[32];
    snprintf(fdstr, sizeof(fdstr), "%d", fd);
    snprintf(countstr, sizeof(countstr), "%lu", (unsigned long)n);
    attach_pipe_open();
    pid_t p0 = fork_producer(fd, 0, n);
    pid_t p1 = fork_producer(fd, 1, n);
    wait_attached(2);
    fflush(NULL);
    pid_t cons = fork();
    cr_assert_geq(cons, 0);
    if (cons == 0) {
        execl(helper, helper, "consume", fdstr, "2", countstr, (char *)NULL);
        _exit(127);
    }
    close(fd);
    expect_exit0(p0);
    expect_exit0(p1);
    expect_exit0(cons);
}

/* Several producer processes on one MPSC ring: every message arrives
 * once, in each producer's order, and -EPIPE follows the last. */
Test(transport_ring_proc, mpsc_producer_processes, .timeout = 240)
{
    enum { NPROD = 3 };
    uint64_t per = stream_count() / 10 / NPROD + 1;
    int fd = make(1 << 14, MOIRAI_SHM_RING_MPSC);
    moirai_shm_ring_t *c = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    attach_pipe_open();
    pid_t pids[NPROD];
    for (unsigned i = 0; i < NPROD; i++)
        pids[i] = fork_producer(fd, i, per);
    wait_attached(NPROD);
    close(fd);
    consume_all(c, NPROD, per * NPROD, -EPIPE);
    for (unsigned i = 0; i < NPROD; i++)
        expect_exit0(pids[i]);
    moirai_shm_ring_detach(c);
}

/* Receives and checks messages until peek fails; returns its error and
 * how many arrived in *got. */
static int drain_until_error(moirai_shm_ring_t *c, unsigned nprod, uint64_t *next)
{
    for (;;) {
        void *buf;
        size_t len;
        int rc = moirai_shm_ring_peek(c, &buf, &len);
        if (rc != 0)
            return rc;
        int bad = msg_check(buf, len, next, nprod);
        if (bad != 0)
            cr_assert_fail("message is wrong (%d)", bad);
        cr_assert_eq(moirai_shm_ring_release(c), 0);
    }
}

/* A producer killed mid-stream: the consumer receives an unbroken prefix
 * of its stream, then -ECONNRESET (not a hang: the test's timeout). */
Test(transport_ring_proc, producer_killed_spsc, .timeout = 60)
{
    int fd = make(1 << 14, 0);
    moirai_shm_ring_t *c = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    pid_t pid = fork_producer(fd, 0, 0);
    close(fd);
    uint64_t next[1] = {0};
    for (int i = 0; i < 100000; i++) {
        void *buf;
        size_t len;
        cr_assert_eq(moirai_shm_ring_peek(c, &buf, &len), 0);
        cr_assert_eq(msg_check(buf, len, next, 1), 0);
        cr_assert_eq(moirai_shm_ring_release(c), 0);
    }
    cr_assert_eq(kill(pid, SIGKILL), 0);
    uint64_t t0 = moirai_clock_now_ns();
    cr_assert_eq(drain_until_error(c, 1, next), -ECONNRESET);
    cr_assert_geq(next[0], 100000);
    cr_log_info("producer killed: -ECONNRESET after %lu messages, %.1f ms after the kill",
                (unsigned long)next[0], (double)(moirai_clock_now_ns() - t0) / 1e6);
    void *buf;
    size_t len;
    cr_assert_eq(moirai_shm_ring_try_peek(c, &buf, &len), -ECONNRESET, "stays reset");
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    moirai_shm_ring_detach(c);
}

/* On an MPSC ring one of two producers is killed mid-stream; the other
 * finishes. Both streams arrive as unbroken prefixes (the survivor's in
 * full, unless the dead one's reservation blocked the head), then
 * -ECONNRESET. */
Test(transport_ring_proc, producer_killed_mpsc, .timeout = 60)
{
    uint64_t per = 200000;
    int fd = make(1 << 14, MOIRAI_SHM_RING_MPSC);
    moirai_shm_ring_t *c = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    attach_pipe_open();
    pid_t victim = fork_producer(fd, 0, 0);
    pid_t other = fork_producer(fd, 1, per);
    wait_attached(2);
    close(fd);
    uint64_t next[2] = {0, 0};
    while (next[0] < 20000) {
        void *buf;
        size_t len;
        cr_assert_eq(moirai_shm_ring_peek(c, &buf, &len), 0);
        cr_assert_eq(msg_check(buf, len, next, 2), 0);
        cr_assert_eq(moirai_shm_ring_release(c), 0);
    }
    cr_assert_eq(kill(victim, SIGKILL), 0);
    cr_assert_eq(drain_until_error(c, 2, next), -ECONNRESET);
    cr_assert_leq(next[1], per);
    cr_log_info("mpsc: victim sent %lu, survivor %lu of %lu before -ECONNRESET",
                (unsigned long)next[0], (unsigned long)next[1], (unsigned long)per);
    int status;
    cr_assert_eq(waitpid(victim, &status, 0), victim);
    cr_assert(WIFSIGNALED(status));
    /* The survivor either finished (its stream complete) or, if the
     * dead producer's reservation blocked the head, waits for room;
     * the consumer detaching releases it with -EPIPE (exit 11). */
    moirai_shm_ring_detach(c);
    cr_assert_eq(waitpid(other, &status, 0), other);
    cr_assert(WIFEXITED(status));
    if (WEXITSTATUS(status) == 0)
        cr_assert_eq(next[1], per, "a survivor that finished was received in full");
    else
        cr_assert_eq(WEXITSTATUS(status), 11);
}

/* A consumer killed: the producer, once the ring is full, gets
 * -ECONNRESET instead of waiting forever. */
Test(transport_ring_proc, consumer_killed, .timeout = 60)
{
    int fd = make(1 << 14, 0);
    moirai_shm_ring_t *p = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&p, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        moirai_shm_ring_t *c = NULL;
        if (moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER) != 0)
            _exit(10);
        uint64_t next[1] = {0};
        for (int i = 0; i < 1000; i++) {
            void *buf;
            size_t len;
            if (moirai_shm_ring_peek(c, &buf, &len) != 0 || msg_check(buf, len, next, 1) != 0)
                _exit(11);
            moirai_shm_ring_release(c);
        }
        raise(SIGKILL);
        _exit(12);
    }
    close(fd);
    uint64_t i = 0;
    int rc;
    while ((rc = msg_send(p, 0, i)) == 0)
        i++;
    cr_assert_eq(rc, -ECONNRESET);
    cr_assert_geq(i, 1000);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %#x", status);
    moirai_shm_ring_detach(p);
}

/* CPU time (user + system) of process `pid` so far, in clock ticks. */
static long cpu_ticks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name, which ends at the last ')'. */
    char *p = strrchr(buf, ')');
    cr_assert_not_null(p);
    long utime = 0, stime = 0;
    cr_assert_eq(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime), 2);
    return utime + stime;
}

/* A consumer blocked in peek sleeps: over one second it uses far less
 * than a tenth of a CPU (a spinning waiter would use all of it). */
Test(transport_ring_proc, blocked_consumer_sleeps, .timeout = 60)
{
    long hz = sysconf(_SC_CLK_TCK);
    int fd = make(4096, 0);
    moirai_shm_ring_t *p = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&p, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        moirai_shm_ring_t *c = NULL;
        if (moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER) != 0)
            _exit(10);
        void *buf;
        size_t len;
        /* Wait for a message that comes after more than a second. */
        if (moirai_shm_ring_peek(c, &buf, &len) != 0 || len != 1)
            _exit(11);
        moirai_shm_ring_release(c);
        moirai_shm_ring_stats_t st;
        moirai_shm_ring_stats(c, &st);
        if (st.sleeps == 0 || st.blocked != 1)
            _exit(12);
        if (moirai_shm_ring_peek(c, &buf, &len) != -EPIPE)
            _exit(13);
        moirai_shm_ring_detach(c);
        _exit(0);
    }
    close(fd);
    /* Let the consumer reach its sleep, then measure a second of it. */
    usleep(200000);
    long t0 = cpu_ticks(pid);
    usleep(1000000);
    long used = cpu_ticks(pid) - t0;
    cr_log_info("blocked consumer: %ld ticks of %ld in 1 s", used, hz);
    cr_assert_lt(used, hz / 10 + 1, "the waiting consumer used %ld ticks in 1 s", used);
    void *buf;
    cr_assert_eq(moirai_shm_ring_reserve(p, 1, &buf), 0);
    cr_assert_eq(moirai_shm_ring_commit(p), 0);
    moirai_shm_ring_stats_t st;
    cr_assert_eq(moirai_shm_ring_stats(p, &st), 0);
    cr_assert_eq(st.wakeups, 1, "the commit woke the sleeping consumer");
    moirai_shm_ring_detach(p);
    expect_exit0(pid);
}

/* The producer side sleeps too: a child producer blocked on a full ring
 * for one second. */
Test(transport_ring_proc, blocked_producer_sleeps, .timeout = 60)
{
    long hz = sysconf(_SC_CLK_TCK);
    int fd = make(4096, 0);
    moirai_shm_ring_t *c = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        moirai_shm_ring_t *p = NULL;
        if (moirai_shm_ring_attach(&p, fd, MOIRAI_SHM_RING_PRODUCER) != 0)
            _exit(10);
        void *buf;
        /* Fill the ring, then one more, which waits. */
        if (moirai_shm_ring_reserve(p, 4096 - 8, &buf) != 0 || moirai_shm_ring_commit(p) != 0)
            _exit(11);
        if (moirai_shm_ring_reserve(p, 8, &buf) != 0 || moirai_shm_ring_commit(p) != 0)
            _exit(12);
        moirai_shm_ring_stats_t st;
        moirai_shm_ring_stats(p, &st);
        if (st.sleeps == 0 || st.blocked != 1)
            _exit(13);
        moirai_shm_ring_detach(p);
        _exit(0);
    }
    close(fd);
    /* Wait until the ring is full (the first message arrived). */
    void *buf;
    size_t len;
    cr_assert_eq(moirai_shm_ring_peek(c, &buf, &len), 0);
    cr_assert_eq(len, 4096 - 8);
    usleep(200000);
    long t0 = cpu_ticks(pid);
    usleep(1000000);
    long used = cpu_ticks(pid) - t0;
    cr_log_info("blocked producer: %ld ticks of %ld in 1 s", used, hz);
    cr_assert_lt(used, hz / 10 + 1, "the waiting producer used %ld ticks in 1 s", used);
    cr_assert_eq(moirai_shm_ring_release(c), 0);
    cr_assert_eq(moirai_shm_ring_peek(c, &buf, &len), 0);
    cr_assert_eq(len, 8);
    cr_assert_eq(moirai_shm_ring_release(c), 0);
    cr_assert_eq(moirai_shm_ring_peek(c, &buf, &len), -EPIPE);
    expect_exit0(pid);
    moirai_shm_ring_detach(c);
}

/* The memfd handed to an unrelated-looking process over a Unix socket
 * (SCM_RIGHTS): the child closes the fd it inherited and attaches only
 * the one it received. */
Test(transport_ring_proc, fd_passed_with_scm_rights, .timeout = 60)
{
    uint64_t n = 10000;
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int fd = make(1 << 14, 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fd);
        close(sv[0]);
        char byte;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int))];
        } ctl;
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = ctl.buf,
                             .msg_controllen = sizeof(ctl.buf)};
        if (recvmsg(sv[1], &msg, 0) != 1)
            _exit(20);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        if (cm == NULL || cm->cmsg_type != SCM_RIGHTS)
            _exit(21);
        int got;
        memcpy(&got, CMSG_DATA(cm), sizeof(got));
        moirai_shm_ring_t *r = NULL;
        if (moirai_shm_ring_attach(&r, got, MOIRAI_SHM_RING_PRODUCER) != 0)
            _exit(22);
        close(got);
        for (uint64_t i = 0; i < n; i++)
            if (msg_send(r, 0, i) != 0)
                _exit(23);
        moirai_shm_ring_detach(r);
        _exit(0);
    }
    close(sv[1]);
    moirai_shm_ring_t *c = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    char byte = 'r';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.buf,
                         .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(fd));
    cr_assert_eq(sendmsg(sv[0], &msg, 0), 1);
    close(fd);
    close(sv[0]);
    consume_all(c, 1, n, -EPIPE);
    expect_exit0(pid);
    moirai_shm_ring_detach(c);
}
