/* Helpers shared by the socket tests (test_net*.c): loopback addresses,
 * exact reads, checks that work inside fibers, and a look at a handle's
 * readiness slot so a test knows a waiter is really parked in an
 * operation (not merely about to call it). Header-only. */
#ifndef MOIRAI_TEST_NET_UTIL_H
#define MOIRAI_TEST_NET_UTIL_H

#include "async_test_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <moirai/async/net.h>

#include "netpoll.h" /* struct moirai_io: the readiness slots */

/* Criterion's asserts must run on the test thread. Fibers and helper
 * threads check with FCHECK instead: the first failing line is kept and
 * the function returns -EFAULT, which the test thread then asserts on. */
static _Atomic int fcheck_line;

#define FCHECK(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            int fcheck_none_ = 0;                                                                  \
            atomic_compare_exchange_strong(&fcheck_line, &fcheck_none_, __LINE__);                 \
            return -EFAULT;                                                                        \
        }                                                                                          \
    } while (0)

/* Asserts on the test thread that a fiber or thread returned 0. */
#define ASSERT_OK(rc)                                                                              \
    cr_assert_eq((rc), 0, "returned %d; first failed check at line %d", (int)(rc),                 \
                 atomic_load(&fcheck_line))

/* A runtime on a scheduler it borrows (`*sched`, created here): its
 * sockets are then polled by a poller thread of the runtime's own instead
 * of the idle workers. Destroy with drop_borrowed(). */
static inline moirai_runtime_t *make_borrowed_runtime(int workers, moirai_sched_t **sched)
{
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = workers;
    cr_assert_eq(moirai_sched_create(sched, &sc), 0);
    moirai_runtime_config_t rc;
    moirai_runtime_config_init(&rc);
    rc.sched = *sched;
    moirai_runtime_t *rt = NULL;
    cr_assert_eq(moirai_runtime_create(&rt, &rc), 0);
    return rt;
}

static inline void drop_borrowed(moirai_runtime_t *rt, moirai_sched_t *sched)
{
    cr_assert_eq(moirai_runtime_destroy(rt), 0);
    cr_assert_eq(moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN), 0);
}

/* 127.0.0.1:port. */
static inline struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* The bound address of `io` (an AF_INET socket). */
static inline struct sockaddr_in local_of(moirai_io_t *io)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    socklen_t len = sizeof a;
    if (moirai_io_local_addr(io, (struct sockaddr *)&a, &len) != 0 || len != sizeof a)
        a.sin_family = AF_UNSPEC;
    return a;
}

/* Reads exactly `len` bytes (looping over partial reads): `len`, or what
 * the stream returned that ended it early (0 at end of stream, or the
 * error). */
static inline ssize_t read_exact(moirai_io_t *io, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = moirai_stream_read(io, (char *)buf + got, len - got);
        if (n <= 0)
            return n;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Reads until end of stream into `buf` (at most `cap` bytes): the total,
 * or the error that ended it; -EOVERFLOW if more than `cap` came. */
static inline ssize_t read_to_eof(moirai_io_t *io, void *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        char spare;
        ssize_t n = got < cap ? moirai_stream_read(io, (char *)buf + got, cap - got)
                              : moirai_stream_read(io, &spare, 1);
        if (n < 0)
            return n;
        if (n == 0)
            return (ssize_t)got;
        if (got == cap)
            return -EOVERFLOW;
        got += (size_t)n;
    }
}

/* Byte `j` of the pattern of stream `id`: differs between streams and
 * along a stream, so a lost, duplicated or misplaced byte shows. */
static inline unsigned char pattern_byte(uint32_t id, size_t j)
{
    return (unsigned char)(id * 131u + j * 7u + (j >> 8) * 13u + (j >> 16));
}

static inline void fill_pattern(unsigned char *buf, size_t len, uint32_t id)
{
    for (size_t j = 0; j < len; j++)
        buf[j] = pattern_byte(id, j);
}

/* True if a caller's arm sits in `slot`: it is parked in an operation
 * on the handle (an arm is a pointer; 0 and READY are not). */
static inline bool slot_armed(_Atomic uintptr_t *slot)
{
    return atomic_load_explicit(slot, memory_order_acquire) > MOIRAI__SLOT_READY;
}

/* Waits (from the test thread or a helper thread) until a waiter is
 * parked on `slot`, within WAIT_NS; false if none came. */
static inline bool wait_armed(_Atomic uintptr_t *slot)
{
    uint64_t until = moirai_deadline_after(WAIT_NS);
    while (!slot_armed(slot)) {
        if (moirai_clock_now_ns() > until)
            return false;
        usleep(200);
    }
    return true;
}

/* Open descriptors of the process (to prove that a failure left none
 * behind); -1 if /proc is not there. */
static inline int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own descriptor */
}

/* Raises the soft descriptor limit to the hard one; returns the limit. */
static inline long raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return (long)rl.rlim_cur;
}

#endif
