/* The shared-memory backend's links (moirai-transport/src/link_shm.c,
 * shm_accept.c, shm_wait.c), driven directly: names and their parsing,
 * dial and accept between threads and between processes (fork), exact
 * bytes and order for small writes and for writes larger than the ring,
 * many dials to one listener (more than an accept ring's producer slots),
 * end of stream after shutdown, shutdown waking parked readers and
 * writers, -ECONNRESET when the other process is killed with SIGKILL,
 * fibers parking instead of their worker, the failing allocator on dial
 * and listen, and nothing left in /dev/shm after any of it. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <moirai/async.h>
#include <moirai/core/clock.h>

#include "frame.h"
#include "link_shm.h"
#include "oom.h"
#include "test_scale.h"

#define WAIT_NS (20 * MOIRAI_NS_PER_S)

/* ---- helpers ---- */

/* A listener name unique to this process and call. */
static void unique_name(char out[SHM_NAME_MAX + 1])
{
    static _Atomic unsigned n;
    snprintf(out, SHM_NAME_MAX + 1, "t%u_%u", (unsigned)getpid(), atomic_fetch_add(&n, 1));
}

/* Objects in /dev/shm that belong to the listener `name` (its accept
 * ring or a link's ring). */
static int leftovers(const char *name)
{
    char pre[64], dot[64];
    snprintf(pre, sizeof pre, "moirai-shm.%s", name);
    snprintf(dot, sizeof dot, "moirai-shm.%s.", name);
    DIR *d = opendir("/dev/shm");
    cr_assert_not_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, pre) == 0 || strncmp(e->d_name, dot, strlen(dot)) == 0)
            count++;
    closedir(d);
    return count;
}

static uint8_t pat(uint64_t i, unsigned salt)
{
    return (uint8_t)(((i ^ (i >> 8) ^ (i >> 16)) * 167u) + salt);
}

static ssize_t lread(struct link *l, void *b, size_t n, uint64_t d)
{
    return l->ops->read(l, b, n, d);
}

static int lwrite(struct link *l, const void *b, size_t n, uint64_t d)
{
    struct iovec v = {(void *)b, n};
    return l->ops->writev(l, &v, 1, d);
}

static void lfree(struct link *l)
{
    l->ops->shutdown(l);
    l->ops->close(l);
}

/* Reads exactly `n` bytes; 0, or what the read returned (0 at EOF as
 * -EPIPE here). */
static int read_full(struct link *l, void *b, size_t n, uint64_t d)
{
    uint8_t *p = b;
    while (n > 0) {
        ssize_t r = lread(l, p, n, d);
        if (r <= 0)
            return r == 0 ? -EPIPE : (int)r;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Reads `total` bytes in reads of at most `chunk` bytes and checks each
 * against pat(i, salt). Returns 0 or a negative errno; -EILSEQ on a wrong
 * byte. */
static int read_check(struct link *l, uint64_t total, size_t chunk, unsigned salt)
{
    uint8_t *buf = malloc(chunk);
    uint64_t at = 0;
    int rc = 0;
    while (at < total && rc == 0) {
        size_t want = total - at < chunk ? (size_t)(total - at) : chunk;
        ssize_t r = lread(l, buf, want, moirai_deadline_after(WAIT_NS));
        if (r <= 0) {
            rc = r == 0 ? -EPIPE : (int)r;
            break;
        }
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pat(at + (uint64_t)i, salt))
                rc = -EILSEQ;
        at += (uint64_t)r;
    }
    free(buf);
    return rc;
}

/* Writes `total` bytes of pat(i, salt) in writes of varying sizes up to
 * `max` (three iovecs each). */
static int write_pattern(struct link *l, uint64_t total, size_t max, unsigned salt)
{
    uint8_t *buf = malloc(max);
    uint64_t at = 0;
    size_t k = 1;
    int rc = 0;
    while (at < total && rc == 0) {
        size_t n = k <= max ? k : max;
        if (n > total - at)
            n = (size_t)(total - at);
        for (size_t i = 0; i < n; i++)
            buf[i] = pat(at + i, salt);
        size_t a = n / 3, b = n / 2;
        struct iovec v[3] = {{buf, a}, {buf + a, b - a}, {buf + b, n - b}};
        rc = l->ops->writev(l, v, 3, moirai_deadline_after(WAIT_NS));
        at += n;
        k = k * 7 + 3; /* sizes 1, 10, 73, ... wrapping at `max` */
        if (k > max)
            k = k % max + 1;
    }
    free(buf);
    return rc;
}

/* An accepting thread. */
struct acceptor {
    struct shm_listener *ls;
    int want; /* links to accept */
    struct link *links[64];
    int rc;
    pthread_t t;
};

static void *accept_main(void *arg)
{
    struct acceptor *a = arg;
    for (int i = 0; i < a->want; i++) {
        a->rc = moirai__shm_accept(a->ls, moirai_deadline_after(WAIT_NS), &a->links[i]);
        if (a->rc != 0)
            break;
    }
    return NULL;
}

static void accept_start(struct acceptor *a, struct shm_listener *ls, int want)
{
    memset(a, 0, sizeof *a);
    a->ls = ls;
    a->want = want;
    cr_assert_eq(pthread_create(&a->t, NULL, accept_main, a), 0);
}

/* A connected pair in this process: `d` dialed, `a` accepted. */
static void pair(const char *name, size_t ring, struct link **d, struct link **a,
                 struct shm_listener **ls)
{
    cr_assert_eq(moirai__shm_listen(ls, name), 0);
    struct acceptor ac;
    accept_start(&ac, *ls, 1);
    cr_assert_eq(moirai__shm_dial(name, ring, moirai_deadline_after(WAIT_NS), d), 0);
    pthread_join(ac.t, NULL);
    cr_assert_eq(ac.rc, 0);
    *a = ac.links[0];
}

/* ---- names ---- */

Test(shm_link, names, .timeout = 30)
{
    struct frame_addr a;
    cr_assert_eq(moirai__shm_parse("shm:node-1_A", &a), 0);
    cr_assert_eq(a.family, FRAME_ADDR_SHM);
    cr_assert_eq(a.port, 0);
    cr_assert_eq(memcmp(a.addr, "node-1_A\0\0\0\0\0\0\0\0", 16), 0);
    char n[SHM_NAME_MAX + 1];
    cr_assert_eq(moirai__shm_addr_name(&a, n), 0);
    cr_assert_str_eq(n, "node-1_A");
    cr_assert_eq(moirai__shm_parse("shm:0123456789abcdef", &a), 0, "16 characters fit");
    cr_assert_eq(moirai__shm_addr_name(&a, n), 0);
    cr_assert_str_eq(n, "0123456789abcdef");

    const char *bad[] = {"shm:",  "shm:a/b", "shm:a.b", "shm:a b",
                         "tcp:a", "shm",     "",        "shm:0123456789abcdefg",
                         "SHM:a"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(moirai__shm_parse(bad[i], &a), -EINVAL, "%s", bad[i]);
    cr_assert_eq(moirai__shm_parse(NULL, &a), -EINVAL);

    /* Not canonical: bytes after the NUL, another family, a bad byte. */
    struct frame_addr x = {.family = FRAME_ADDR_SHM, .addr = {'a', 0, 'b'}};
    cr_assert_eq(moirai__shm_addr_name(&x, n), -EINVAL);
    x = (struct frame_addr){.family = 4, .addr = {'a'}};
    cr_assert_eq(moirai__shm_addr_name(&x, n), -EINVAL);
    x = (struct frame_addr){.family = FRAME_ADDR_SHM, .addr = {'a', '/'}};
    cr_assert_eq(moirai__shm_addr_name(&x, n), -EINVAL);
    x = (struct frame_addr){.family = FRAME_ADDR_SHM};
    cr_assert_eq(moirai__shm_addr_name(&x, n), -EINVAL, "empty name");

    struct shm_listener *ls = NULL;
    struct link *l = NULL;
    cr_assert_eq(moirai__shm_listen(&ls, "a.b"), -EINVAL);
    cr_assert_eq(moirai__shm_listen(&ls, ""), -EINVAL);
    cr_assert_eq(moirai__shm_listen(&ls, NULL), -EINVAL);
    cr_assert_eq(moirai__shm_listen(&ls, "0123456789abcdefg"), -EINVAL);
    cr_assert_eq(moirai__shm_dial("x/y", 0, MOIRAI_DEADLINE_NEVER, &l), -EINVAL);
    cr_assert_eq(moirai__shm_dial(NULL, 0, MOIRAI_DEADLINE_NEVER, &l), -EINVAL);
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    cr_assert_eq(moirai__shm_dial(name, 1000, MOIRAI_DEADLINE_NEVER, &l), -EINVAL,
                 "a ring size that is not a power of two");
    cr_assert_null(l);
    cr_assert_eq(leftovers(name), 0);
}

/* The HELLO frame carries a shared-memory address unchanged. */
Test(shm_link, hello_carries_shm_address, .timeout = 30)
{
    struct frame_addr a;
    cr_assert_eq(moirai__shm_parse("shm:abc", &a), 0);
    uint8_t nonce[FRAME_NONCE_SIZE] = {1};
    uint8_t buf[FRAME_HEADER_SIZE + FRAME_HELLO_SIZE] = {0};
    moirai__frame_put_header(buf, FRAME_HELLO, 0, 0, FRAME_HELLO_SIZE);
    moirai__frame_put_hello(buf + FRAME_HEADER_SIZE, 5, 1, &a, nonce);
    struct frame f;
    cr_assert_eq(moirai__frame_decode(buf, sizeof buf, 1 << 20, &f, NULL), (long)sizeof buf);
    cr_assert_eq(f.u.hello.listen.family, FRAME_ADDR_SHM);
    char n[SHM_NAME_MAX + 1];
    cr_assert_eq(moirai__shm_addr_name(&f.u.hello.listen, n), 0);
    cr_assert_str_eq(n, "abc");
}

/* ---- threads ---- */

Test(shm_link, refused_without_listener, .timeout = 30)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct link *l = NULL;
    cr_assert_eq(moirai__shm_dial(name, 0, moirai_deadline_after(WAIT_NS), &l), -ECONNREFUSED);
    cr_assert_eq(leftovers(name), 0);
}

/* A renewing listener unlinks its accept ring's name, creates it again and
 * then initialises the ring. A dial that opens the name in between finds
 * an empty file: it must look again, not be refused (it was, at once, and
 * CI's loaded machine hit that gap in dialer_killed_in_reservation). The
 * gap is held open here by an empty file under the name for 20 ms. */
typedef struct late_dial {
    const char *name;
    struct link *l;
    int rc;
} late_dial_t;

static void *late_dial_main(void *arg)
{
    late_dial_t *d = arg;
    d->rc = moirai__shm_dial(d->name, 0, moirai_deadline_after(WAIT_NS), &d->l);
    return NULL;
}

Test(shm_link, dial_waits_out_a_ring_not_yet_initialised, .timeout = 30)
{
    char name[SHM_NAME_MAX + 1], path[SHM_NAME_MAX + 16];
    unique_name(name);
    snprintf(path, sizeof path, SHM_PREFIX "%s", name);
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    late_dial_t d = {.name = name};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, late_dial_main, &d), 0);
    usleep(20000);
    /* As a renewal does: the name goes, then comes back initialised. */
    cr_assert_eq(shm_unlink(path), 0);
    usleep(5000);
    struct shm_listener *ls;
    cr_assert_eq(moirai__shm_listen(&ls, name), 0);
    struct link *a;
    cr_assert_eq(moirai__shm_accept(ls, moirai_deadline_after(WAIT_NS), &a), 0);
    pthread_join(t, NULL);
    cr_assert_eq(d.rc, 0, "the dial was refused: %d", d.rc);
    lfree(d.l);
    lfree(a);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

Test(shm_link, listen_twice_and_stop, .timeout = 30)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct shm_listener *ls, *ls2;
    cr_assert_eq(moirai__shm_listen(&ls, name), 0);
    cr_assert_eq(leftovers(name), 2, "the accept ring and the listener's doorbell");
    cr_assert_eq(moirai__shm_listen(&ls2, name), -EADDRINUSE);
    /* A stop wakes an accept parked in another thread. */
    struct acceptor ac;
    accept_start(&ac, ls, 1);
    usleep(20000);
    moirai__shm_listener_stop(ls);
    pthread_join(ac.t, NULL);
    cr_assert_eq(ac.rc, -ECANCELED);
    cr_assert_eq(moirai__shm_accept(ls, MOIRAI_DEADLINE_NEVER, &ac.links[0]), -ECANCELED);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
    /* The name is free again. */
    cr_assert_eq(moirai__shm_listen(&ls, name), 0);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

/* A listener process killed with SIGKILL leaves its name; the next
 * listen replaces it. */
Test(shm_link, leftover_of_dead_listener_replaced, .timeout = 30)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct shm_listener *ls;
        if (moirai__shm_listen(&ls, name) != 0)
            _exit(1);
        raise(SIGKILL);
        _exit(2);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    cr_assert_eq(leftovers(name), 2, "the dead listener's ring and doorbell are still there");
    struct link *l = NULL;
    cr_assert_eq(moirai__shm_dial(name, 0, moirai_deadline_after(WAIT_NS), &l), -ECONNREFUSED,
                 "a dead listener refuses");
    struct shm_listener *ls;
    cr_assert_eq(moirai__shm_listen(&ls, name), 0);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

/* A writing thread: write_pattern() on a link. */
struct writer {
    struct link *l;
    uint64_t total;
    size_t max;
    unsigned salt;
    int rc;
    pthread_t t;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    w->rc = write_pattern(w->l, w->total, w->max, w->salt);
    return NULL;
}

static void writer_start(struct writer *w, struct link *l, uint64_t total, size_t max,
                         unsigned salt)
{
    *w = (struct writer){.l = l, .total = total, .max = max, .salt = salt, .rc = -1};
    cr_assert_eq(pthread_create(&w->t, NULL, writer_main, w), 0);
}

/* Both directions at once, small writes read through small buffers and
 * large writes (up to 16 ring sizes) read through large ones. */
Test(shm_link, exact_bytes_threads, .timeout = 60)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct shm_listener *ls;
    struct link *d, *a;
    pair(name, 16384, &d, &a, &ls); /* 16 KiB rings: records of 4 KiB */
    cr_assert_eq(leftovers(name), 2, "only the listener's objects have names once connected");

    uint64_t small = (uint64_t)scaled(400000);
    struct writer w1, w2;
    writer_start(&w1, d, small, 300, 1);
    writer_start(&w2, a, small, 300, 2);
    cr_assert_eq(read_check(a, small, 7, 1), 0);
    cr_assert_eq(read_check(d, small, 7, 2), 0);
    pthread_join(w1.t, NULL);
    pthread_join(w2.t, NULL);
    cr_assert_eq(w1.rc, 0);
    cr_assert_eq(w2.rc, 0);

    uint64_t large = (uint64_t)scaled(8) << 20;
    writer_start(&w1, d, large, 256 << 10, 3);
    writer_start(&w2, a, large, 256 << 10, 4);
    cr_assert_eq(read_check(a, large, 100000, 3), 0);
    cr_assert_eq(read_check(d, large, 65536, 4), 0);
    pthread_join(w1.t, NULL);
    pthread_join(w2.t, NULL);
    cr_assert_eq(w1.rc, 0);
    cr_assert_eq(w2.rc, 0);

    lfree(d);
    lfree(a);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

/* Shutdown: the other side reads what was written, then end of stream,
 * and its writes fail with -EPIPE; this side's calls return -ECANCELED. */
Test(shm_link, eof_after_shutdown, .timeout = 30)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct shm_listener *ls;
    struct link *d, *a;
    pair(name, 0, &d, &a, &ls);
    cr_assert_eq(lwrite(d, "last words", 10, MOIRAI_DEADLINE_NEVER), 0);
    d->ops->shutdown(d);
    d->ops->shutdown(d); /* idempotent */
    char buf[32];
    cr_assert_eq(read_full(a, buf, 10, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(memcmp(buf, "last words", 10), 0);
    cr_assert_eq(lread(a, buf, sizeof buf, moirai_deadline_after(WAIT_NS)), 0, "end of stream");
    cr_assert_eq(lread(a, buf, sizeof buf, moirai_deadline_after(WAIT_NS)), 0, "and it stays");
    cr_assert_eq(lwrite(a, "x", 1, moirai_deadline_after(WAIT_NS)), -EPIPE);
    cr_assert_eq(lread(d, buf, sizeof buf, MOIRAI_DEADLINE_NEVER), -ECANCELED);
    cr_assert_eq(lwrite(d, "x", 1, MOIRAI_DEADLINE_NEVER), -ECANCELED);
    d->ops->close(d);
    /* Close without shutdown on the other side (as after an error). */
    a->ops->close(a);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

/* End of stream also when the other side closes without a shutdown. */
Test(shm_link, eof_after_close, .timeout = 30)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct shm_listener *ls;
    struct link *d, *a;
    pair(name, 0, &d, &a, &ls);
    cr_assert_eq(lwrite(a, "bye", 3, MOIRAI_DEADLINE_NEVER), 0);
    a->ops->close(a);
    char buf[8];
    cr_assert_eq(read_full(d, buf, 3, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(lread(d, buf, sizeof buf, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(lwrite(d, "x", 1, moirai_deadline_after(WAIT_NS)), -EPIPE);
    lfree(d);
    moirai__shm_listener_destroy(ls);
}

/* The optional operations: a write of what fits now, and the count of
 * bytes waiting to be read. */
Test(shm_link, try_writev_and_unread, .timeout = 30)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct shm_listener *ls;
    struct link *d, *a;
    pair(name, 4096, &d, &a, &ls);
    cr_assert_eq(a->ops->unread(a), 0);
    static uint8_t src[10000], got[10000];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = pat(i, 3);
    struct iovec v[2] = {{src, 3000}, {src + 3000, sizeof src - 3000}};
    ssize_t n = d->ops->try_writev(d, v, 2);
    cr_assert_gt(n, 0);
    cr_assert_lt(n, (ssize_t)sizeof src, "a 4 KiB ring cannot take 10000 bytes");
    cr_assert_geq(a->ops->unread(a), (size_t)n);
    struct iovec rest = {src + n, sizeof src - (size_t)n};
    cr_assert_eq(d->ops->try_writev(d, &rest, 1), 0, "full: takes nothing, never waits");
    cr_assert_eq(read_full(a, got, (size_t)n, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(memcmp(got, src, (size_t)n), 0);
    cr_assert_eq(a->ops->unread(a), 0);
    ssize_t m = d->ops->try_writev(d, &rest, 1);
    cr_assert_gt(m, 0, "room again after the read");
    cr_assert_eq(read_full(a, got, (size_t)m, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(memcmp(got, src + n, (size_t)m), 0, "in order after the first part");
    d->ops->shutdown(d);
    cr_assert_eq(d->ops->try_writev(d, v, 2), -ECANCELED);
    cr_assert_eq(a->ops->try_writev(a, v, 2), -EPIPE, "the other side shut down");
    lfree(d);
    lfree(a);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

struct parked {
    struct link *l;
    int write; /* 0: read, 1: write until the ring is full */
    _Atomic int started;
    long rc;
    pthread_t t;
};

static void *parked_main(void *arg)
{
    struct parked *p = arg;
    atomic_store(&p->started, 1);
    if (!p->write) {
        char b[16];
        p->rc = lread(p->l, b, sizeof b, MOIRAI_DEADLINE_NEVER);
        return NULL;
    }
    static uint8_t big[8192];
    for (;;) {
        p->rc = lwrite(p->l, big, sizeof big, MOIRAI_DEADLINE_NEVER);
        if (p->rc != 0)
            return NULL;
    }
}

/* A reader and a writer parked in other threads (nothing to read, no
 * room) return -ECANCELED when the link is shut down. */
Test(shm_link, shutdown_wakes_parked, .timeout = 30)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct shm_listener *ls;
    struct link *d, *a;
    pair(name, 16384, &d, &a, &ls);
    struct parked r = {.l = d, .write = 0}, w = {.l = d, .write = 1};
    cr_assert_eq(pthread_create(&r.t, NULL, parked_main, &r), 0);
    cr_assert_eq(pthread_create(&w.t, NULL, parked_main, &w), 0);
    while (!atomic_load(&r.started) || !atomic_load(&w.started))
        usleep(1000);
    usleep(100000); /* both are asleep by now (the ring's spin is 10 us) */
    d->ops->shutdown(d);
    pthread_join(r.t, NULL);
    pthread_join(w.t, NULL);
    cr_assert_eq(r.rc, -ECANCELED);
    cr_assert_eq(w.rc, -ECANCELED);
    d->ops->close(d);
    lfree(a);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

Test(shm_link, deadlines, .timeout = 30)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct shm_listener *ls;
    struct link *d, *a;
    pair(name, 4096, &d, &a, &ls);
    char b[8];
    uint64_t t0 = moirai_clock_now_ns();
    cr_assert_eq(lread(d, b, sizeof b, moirai_deadline_after(50 * MOIRAI_NS_PER_MS)), -ETIMEDOUT);
    cr_assert_geq(moirai_clock_now_ns() - t0, 50 * MOIRAI_NS_PER_MS);
    static uint8_t big[1024];
    int rc;
    do
        rc = lwrite(d, big, sizeof big, moirai_deadline_after(50 * MOIRAI_NS_PER_MS));
    while (rc == 0);
    cr_assert_eq(rc, -ETIMEDOUT, "a full ring nobody reads");
    /* Nobody accepts: a dial times out and leaves nothing behind; the
     * acceptor then passes over the stale announcement. */
    struct link *y = NULL;
    cr_assert_eq(moirai__shm_dial(name, 0, moirai_deadline_after(50 * MOIRAI_NS_PER_MS), &y),
                 -ETIMEDOUT);
    cr_assert_null(y);
    cr_assert_eq(leftovers(name), 2, "the listener's ring and doorbell only");
    struct link *x = NULL;
    cr_assert_eq(moirai__shm_accept(ls, moirai_deadline_after(50 * MOIRAI_NS_PER_MS), &x),
                 -ETIMEDOUT);
    cr_assert_null(x);
    lfree(d);
    lfree(a);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

/* Dials from two threads at once, more than an accept ring's producer
 * slots (the listener renews its ring): every dial gets its own link,
 * each accepted exactly once. */
struct dialer {
    const char *name;
    int first, count;
    struct link *links[32];
    int rc;
    pthread_t t;
};

static void *dialer_main(void *arg)
{
    struct dialer *dl = arg;
    for (int i = 0; i < dl->count; i++) {
        dl->rc = moirai__shm_dial(dl->name, 4096, moirai_deadline_after(WAIT_NS), &dl->links[i]);
        if (dl->rc != 0)
            return NULL;
        uint32_t id = (uint32_t)(dl->first + i);
        dl->rc = lwrite(dl->links[i], &id, sizeof id, moirai_deadline_after(WAIT_NS));
        if (dl->rc != 0)
            return NULL;
    }
    return NULL;
}

Test(shm_link, many_dials, .timeout = 60)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct shm_listener *ls;
    cr_assert_eq(moirai__shm_listen(&ls, name), 0);
    enum { PER = 25, N = 2 * PER };
    struct acceptor ac;
    accept_start(&ac, ls, N);
    struct dialer d1 = {.name = name, .first = 0, .count = PER},
                  d2 = {.name = name, .first = PER, .count = PER};
    cr_assert_eq(pthread_create(&d1.t, NULL, dialer_main, &d1), 0);
    cr_assert_eq(pthread_create(&d2.t, NULL, dialer_main, &d2), 0);
    pthread_join(d1.t, NULL);
    pthread_join(d2.t, NULL);
    pthread_join(ac.t, NULL);
    cr_assert_eq(d1.rc, 0);
    cr_assert_eq(d2.rc, 0);
    cr_assert_eq(ac.rc, 0);
    int seen[N] = {0};
    for (int i = 0; i < N; i++) {
        uint32_t id;
        cr_assert_eq(read_full(ac.links[i], &id, sizeof id, moirai_deadline_after(WAIT_NS)), 0);
        cr_assert_lt(id, (uint32_t)N);
        seen[id]++;
        lfree(ac.links[i]);
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1, "link %d accepted %d times", i, seen[i]);
    for (int i = 0; i < PER; i++) {
        lfree(d1.links[i]);
        lfree(d2.links[i]);
    }
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

/* A dialer killed inside its reservation on the accept ring blocks that
 * ring's head for good: the listener renews its ring, and later dials
 * (also one that announced on the blocked ring) are answered. */
Test(shm_link, dialer_killed_in_reservation, .timeout = 60)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct shm_listener *ls;
    cr_assert_eq(moirai__shm_listen(&ls, name), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char path[64];
        snprintf(path, sizeof path, SHM_PREFIX "%s", name);
        moirai_shm_ring_t *r;
        void *p;
        if (moirai_shm_ring_open(&r, path, MOIRAI_SHM_RING_PRODUCER) != 0 ||
            moirai_shm_ring_reserve(r, 16, &p) != 0)
            _exit(1);
        raise(SIGKILL);
        _exit(2);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFSIGNALED(st), "the child reserved and was killed");
    struct acceptor ac;
    accept_start(&ac, ls, 3);
    struct link *d[3];
    for (int i = 0; i < 3; i++) {
        int rc = moirai__shm_dial(name, 4096, moirai_deadline_after(WAIT_NS), &d[i]);
        cr_assert_eq(rc, 0, "dial %d: %d", i, rc);
    }
    pthread_join(ac.t, NULL);
    cr_assert_eq(ac.rc, 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(lwrite(d[i], "ok", 2, moirai_deadline_after(WAIT_NS)), 0);
        char b[2];
        cr_assert_eq(read_full(ac.links[i], b, 2, moirai_deadline_after(WAIT_NS)), 0);
        lfree(d[i]);
        lfree(ac.links[i]);
    }
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

/* ---- processes ---- */

/* The child: dials `name` and echoes every byte back until end of stream;
 * exits 0 after a clean end. */
static void echo_child(const char *name)
{
    struct link *l;
    if (moirai__shm_dial(name, 65536, moirai_deadline_after(WAIT_NS), &l) != 0)
        _exit(10);
    static uint8_t buf[50000];
    for (;;) {
        ssize_t r = lread(l, buf, sizeof buf, moirai_deadline_after(WAIT_NS));
        if (r == 0)
            break;
        if (r < 0)
            _exit(11);
        if (lwrite(l, buf, (size_t)r, moirai_deadline_after(WAIT_NS)) != 0)
            _exit(12);
    }
    lfree(l);
    _exit(0);
}

struct reader {
    struct link *l;
    uint64_t total;
    unsigned salt;
    int rc;
    pthread_t t;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    r->rc = read_check(r->l, r->total, 3000, r->salt);
    return NULL;
}

Test(shm_link, echo_across_processes, .timeout = 60)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct shm_listener *ls;
    cr_assert_eq(moirai__shm_listen(&ls, name), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        echo_child(name);
    struct link *a;
    cr_assert_eq(moirai__shm_accept(ls, moirai_deadline_after(WAIT_NS), &a), 0);
    /* Writes of 1 byte to 1 MiB (16 times the ring), echoed. */
    uint64_t total = (uint64_t)scaled(16) << 20;
    struct reader r = {.l = a, .total = total, .salt = 9};
    cr_assert_eq(pthread_create(&r.t, NULL, reader_main, &r), 0);
    cr_assert_eq(write_pattern(a, total, 1 << 20, 9), 0);
    pthread_join(r.t, NULL);
    cr_assert_eq(r.rc, 0);
    a->ops->shutdown(a);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    a->ops->close(a);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

/* The child dials and writes a known stream for ever (or reads for ever
 * with `reads`); the parent kills it with SIGKILL mid-stream. */
static void stream_child(const char *name, bool reads)
{
    struct link *l;
    if (moirai__shm_dial(name, 65536, moirai_deadline_after(WAIT_NS), &l) != 0)
        _exit(10);
    if (reads) {
        static uint8_t b[4096];
        while (lread(l, b, sizeof b, MOIRAI_DEADLINE_NEVER) > 0) {
        }
        _exit(11);
    }
    write_pattern(l, UINT64_MAX, 4096, 5);
    _exit(12);
}

Test(shm_link, reset_when_writer_killed, .timeout = 60)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct shm_listener *ls;
    cr_assert_eq(moirai__shm_listen(&ls, name), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        stream_child(name, false);
    struct link *a;
    cr_assert_eq(moirai__shm_accept(ls, moirai_deadline_after(WAIT_NS), &a), 0);
    cr_assert_eq(read_check(a, 1 << 20, 4096, 5), 0, "the stream is intact up to the kill");
    kill(pid, SIGKILL);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    /* What it committed is still delivered, in order; then the reset. */
    static uint8_t b[4096];
    ssize_t r;
    uint64_t t0 = moirai_clock_now_ns();
    do
        r = lread(a, b, sizeof b, moirai_deadline_after(WAIT_NS));
    while (r > 0);
    cr_assert_eq(r, -ECONNRESET, "got %zd", r);
    cr_assert_lt(moirai_clock_now_ns() - t0, WAIT_NS, "noticed well before the deadline");
    lfree(a);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

Test(shm_link, reset_when_reader_killed, .timeout = 60)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct shm_listener *ls;
    cr_assert_eq(moirai__shm_listen(&ls, name), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        stream_child(name, true);
    struct link *a;
    cr_assert_eq(moirai__shm_accept(ls, moirai_deadline_after(WAIT_NS), &a), 0);
    static uint8_t b[4096];
    for (int i = 0; i < 100; i++)
        cr_assert_eq(lwrite(a, b, sizeof b, moirai_deadline_after(WAIT_NS)), 0);
    kill(pid, SIGKILL);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    int rc;
    do
        rc = lwrite(a, b, sizeof b, moirai_deadline_after(WAIT_NS));
    while (rc == 0);
    cr_assert_eq(rc, -ECONNRESET, "got %d", rc);
    lfree(a);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

/* ---- fibers ---- */

struct fctx {
    struct link *l;
    int rc;
};

static int fiber_reader(void *arg, const moirai_cancel_token_t *c, void **res)
{
    (void)c;
    (void)res;
    struct fctx *f = arg;
    f->rc = read_check(f->l, 100000, 1000, 7);
    return 0;
}

static int fiber_writer(void *arg, const moirai_cancel_token_t *c, void **res)
{
    (void)c;
    (void)res;
    struct fctx *f = arg;
    f->rc = write_pattern(f->l, 100000, 5000, 7);
    return 0;
}

/* On a one-worker runtime a reader fiber parked on an empty ring does not
 * hold the worker: the writer fiber runs and the stream completes (with
 * 4 KiB rings both park many times). */
Test(shm_link, fibers_park, .timeout = 60)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct shm_listener *ls;
    struct link *d, *a;
    pair(name, 4096, &d, &a, &ls);
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = 1;
    moirai_runtime_config_t rcfg;
    moirai_runtime_config_init(&rcfg);
    rcfg.sched_config = &sc;
    moirai_runtime_t *rt;
    cr_assert_eq(moirai_runtime_create(&rt, &rcfg), 0);
    struct fctx fr = {a, -1}, fw = {d, -1};
    moirai_handle_t *hr, *hw;
    cr_assert_eq(moirai_handle_create(&hr), 0);
    cr_assert_eq(moirai_handle_create(&hw), 0);
    cr_assert_eq(moirai_fiber_spawn(rt, fiber_reader, &fr, NULL, hr), 0);
    cr_assert_eq(moirai_fiber_spawn(rt, fiber_writer, &fw, NULL, hw), 0);
    cr_assert_eq(moirai_handle_join(hr, NULL), 0);
    cr_assert_eq(moirai_handle_join(hw, NULL), 0);
    moirai_handle_release(hr);
    moirai_handle_release(hw);
    cr_assert_eq(fr.rc, 0);
    cr_assert_eq(fw.rc, 0);
    cr_assert_eq(moirai_runtime_destroy(rt), 0);
    lfree(d);
    lfree(a);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(name), 0);
}

/* Links made on fibers wait on their doorbells in the runtime's reactor
 * (link_shm.h): dial and accept on fibers, then a stream through 4 KiB
 * rings (the reader parks many times), then a reader parked on its
 * doorbell woken by shutdown. */
struct fib_pair {
    const char *name;
    struct shm_listener *ls;
    struct link *d, *a;
    int rc;
};

static int fiber_accept(void *arg, const moirai_cancel_token_t *c, void **res)
{
    (void)c;
    (void)res;
    struct fib_pair *fp = arg;
    fp->rc = moirai__shm_accept(fp->ls, moirai_deadline_after(WAIT_NS), &fp->a);
    return 0;
}

static int fiber_dial(void *arg, const moirai_cancel_token_t *c, void **res)
{
    (void)c;
    (void)res;
    struct fib_pair *fp = arg;
    return moirai__shm_dial(fp->name, 4096, moirai_deadline_after(WAIT_NS), &fp->d);
}

static int fiber_park_read(void *arg, const moirai_cancel_token_t *c, void **res)
{
    (void)c;
    (void)res;
    struct fctx *f = arg;
    char b[8];
    f->rc = (int)lread(f->l, b, sizeof b, MOIRAI_DEADLINE_NEVER);
    return 0;
}

static moirai_runtime_t *one_worker_runtime(void)
{
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = 1;
    moirai_runtime_config_t rcfg;
    moirai_runtime_config_init(&rcfg);
    rcfg.sched_config = &sc;
    moirai_runtime_t *rt;
    cr_assert_eq(moirai_runtime_create(&rt, &rcfg), 0);
    return rt;
}

static int run_fiber(moirai_runtime_t *rt, moirai_task_fn fn, void *arg)
{
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_fiber_spawn(rt, fn, arg, NULL, h), 0);
    int rc = moirai_handle_join(h, NULL);
    moirai_handle_release(h);
    return rc;
}

/* Doorbell FIFOs of the listener `name` open in this process. */
static int open_bells(const char *name)
{
    char pre[64];
    snprintf(pre, sizeof pre, "/dev/shm/moirai-shm.%s.", name);
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[300], target[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strncmp(target, pre, strlen(pre)) == 0 && strstr(target, ".f") != NULL)
            count++;
    }
    closedir(d);
    return count;
}

Test(shm_link, fibers_doorbell, .timeout = 60)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    moirai_runtime_t *rt = one_worker_runtime();
    struct fib_pair fp = {.name = name, .rc = -1};
    cr_assert_eq(moirai__shm_listen(&fp.ls, name), 0);
    moirai_handle_t *ha;
    cr_assert_eq(moirai_handle_create(&ha), 0);
    cr_assert_eq(moirai_fiber_spawn(rt, fiber_accept, &fp, NULL, ha), 0);
    usleep(50000); /* the acceptor is asleep on the listener's doorbell */
    uint64_t t0 = moirai_clock_now_ns();
    cr_assert_eq(run_fiber(rt, fiber_dial, &fp), 0);
    cr_assert_eq(moirai_handle_join(ha, NULL), 0);
    moirai_handle_release(ha);
    cr_assert_eq(fp.rc, 0);
    /* Wide margin: the dial rang the doorbell; without it the acceptor
     * would have looked only at the end of its one-second slice. */
    cr_assert_lt(moirai_clock_now_ns() - t0, 900 * MOIRAI_NS_PER_MS);
    cr_assert_eq(leftovers(name), 2, "rings and doorbells are unlinked once connected");
    cr_assert_eq(open_bells(name), 4, "each side holds both doorbells");

    /* Both directions, in fibers of the one worker. */
    struct fctx r1 = {fp.a, -1}, w1 = {fp.d, -1}, r2 = {fp.d, -1}, w2 = {fp.a, -1};
    moirai_handle_t *h[4];
    moirai_task_fn fns[4] = {fiber_reader, fiber_writer, fiber_reader, fiber_writer};
    struct fctx *args[4] = {&r1, &w1, &r2, &w2};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(moirai_handle_create(&h[i]), 0);
        cr_assert_eq(moirai_fiber_spawn(rt, fns[i], args[i], NULL, h[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(moirai_handle_join(h[i], NULL), 0);
        moirai_handle_release(h[i]);
        cr_assert_eq(args[i]->rc, 0, "fiber %d", i);
    }

    /* A reader asleep on its doorbell wakes at shutdown. */
    struct fctx pr = {fp.d, 1};
    moirai_handle_t *hp;
    cr_assert_eq(moirai_handle_create(&hp), 0);
    cr_assert_eq(moirai_fiber_spawn(rt, fiber_park_read, &pr, NULL, hp), 0);
    usleep(100000);
    fp.d->ops->shutdown(fp.d);
    cr_assert_eq(moirai_handle_join(hp, NULL), 0);
    moirai_handle_release(hp);
    cr_assert_eq(pr.rc, -ECANCELED);
    /* And the other side's reader sees end of stream. */
    struct fctx pe = {fp.a, 1};
    cr_assert_eq(run_fiber(rt, fiber_park_read, &pe), 0);
    cr_assert_eq(pe.rc, 0);
    fp.d->ops->close(fp.d);
    lfree(fp.a);
    /* An acceptor fiber asleep on the listener's doorbell wakes at stop. */
    cr_assert_eq(moirai_handle_create(&ha), 0);
    fp.rc = 1;
    cr_assert_eq(moirai_fiber_spawn(rt, fiber_accept, &fp, NULL, ha), 0);
    usleep(50000);
    t0 = moirai_clock_now_ns();
    moirai__shm_listener_stop(fp.ls);
    cr_assert_eq(moirai_handle_join(ha, NULL), 0);
    moirai_handle_release(ha);
    cr_assert_eq(fp.rc, -ECANCELED);
    cr_assert_lt(moirai_clock_now_ns() - t0, 900 * MOIRAI_NS_PER_MS, "woken, not timed out");
    /* Its doorbell lives in the runtime that accepted: destroy first. */
    moirai__shm_listener_destroy(fp.ls);
    cr_assert_eq(moirai_runtime_destroy(rt), 0);
    cr_assert_eq(leftovers(name), 0);
}

/* A fiber reading from a process killed with SIGKILL: -ECONNRESET. The
 * child dials from a fiber (so both sides have doorbells). */
static int child_fiber(void *arg, const moirai_cancel_token_t *c, void **res)
{
    (void)c;
    (void)res;
    struct link *l;
    if (moirai__shm_dial(arg, 65536, moirai_deadline_after(WAIT_NS), &l) != 0)
        _exit(10);
    write_pattern(l, UINT64_MAX, 4096, 5);
    _exit(12);
}

static int parent_fiber(void *arg, const moirai_cancel_token_t *c, void **res)
{
    (void)c;
    (void)res;
    struct fctx *f = arg;
    f->rc = read_check(f->l, 1 << 20, 4096, 5);
    return 0;
}

static int drain_fiber(void *arg, const moirai_cancel_token_t *c, void **res)
{
    (void)c;
    (void)res;
    struct fctx *f = arg;
    static uint8_t b[4096];
    ssize_t r;
    do
        r = lread(f->l, b, sizeof b, moirai_deadline_after(WAIT_NS));
    while (r > 0);
    f->rc = (int)r;
    return 0;
}

Test(shm_link, fibers_reset_when_writer_killed, .timeout = 60)
{
    char name[SHM_NAME_MAX + 1];
    unique_name(name);
    struct fib_pair fp = {.name = name, .rc = -1};
    cr_assert_eq(moirai__shm_listen(&fp.ls, name), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        moirai_runtime_t *crt = one_worker_runtime();
        run_fiber(crt, child_fiber, name);
        _exit(13);
    }
    moirai_runtime_t *rt = one_worker_runtime();
    cr_assert_eq(run_fiber(rt, fiber_accept, &fp), 0);
    cr_assert_eq(fp.rc, 0);
    struct fctx f = {fp.a, -1};
    cr_assert_eq(run_fiber(rt, parent_fiber, &f), 0);
    cr_assert_eq(f.rc, 0, "the stream is intact up to the kill");
    kill(pid, SIGKILL);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert_eq(run_fiber(rt, drain_fiber, &f), 0);
    cr_assert_eq(f.rc, -ECONNRESET, "got %d", f.rc);
    lfree(fp.a);
    moirai__shm_listener_destroy(fp.ls);
    cr_assert_eq(moirai_runtime_destroy(rt), 0);
    cr_assert_eq(leftovers(name), 0);
}

/* ---- out of memory ---- */

static char oom_name[SHM_NAME_MAX + 1];

static int listen_op(void *ctx)
{
    struct shm_listener **ls = ctx;
    return moirai__shm_listen(ls, oom_name);
}

static void nothing_left(void *ctx, long n)
{
    (void)ctx;
    cr_assert_eq(leftovers(oom_name), 0, "run %ld left an object", n);
}

Test(shm_link, oom_listen, .timeout = 60)
{
    unique_name(oom_name);
    struct shm_listener *ls = NULL;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(listen_op, nothing_left, &ls);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0);
    cr_assert_not_null(ls);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(oom_name), 0);
}

static int dial_op(void *ctx)
{
    struct link **l = ctx;
    return moirai__shm_dial(oom_name, 4096, moirai_deadline_after(WAIT_NS), l);
}

/* The acceptor runs in another process (the failing allocator counts this
 * process's allocations only) and answers every dial. */
Test(shm_link, oom_dial, .timeout = 60)
{
    unique_name(oom_name);
    struct shm_listener *ls;
    cr_assert_eq(moirai__shm_listen(&ls, oom_name), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        for (;;) {
            struct link *l;
            if (moirai__shm_accept(ls, moirai_deadline_after(WAIT_NS), &l) != 0)
                _exit(1);
            lfree(l);
        }
    }
    struct link *l = NULL;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(dial_op, NULL, &l);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0);
    cr_assert_not_null(l);
    lfree(l);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* The listener's own name only (the parent still holds it). */
    cr_assert_eq(leftovers(oom_name), 2);
    moirai__shm_listener_destroy(ls);
    cr_assert_eq(leftovers(oom_name), 0);
}

static struct shm_listener *oom_ls;

static int accept_op(void *ctx)
{
    struct link **l = ctx;
    return moirai__shm_accept(oom_ls, moirai_deadline_after(WAIT_NS), l);
}

/* The acceptor out of memory: each failing run drops the dial it was
 * answering (that dialer is refused or times out and dials again); the
 * run that succeeds connects. The dialer runs in another process. */
Test(shm_link, oom_accept, .timeout = 60)
{
    unique_name(oom_name);
    cr_assert_eq(moirai__shm_listen(&oom_ls, oom_name), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        for (;;) {
            struct link *l;
            int rc =
                moirai__shm_dial(oom_name, 4096, moirai_deadline_after(300 * MOIRAI_NS_PER_MS), &l);
            if (rc == -ETIMEDOUT || rc == -ECONNREFUSED)
                continue;
            if (rc != 0)
                _exit(1);
            char b[8];
            ssize_t r = lread(l, b, sizeof b, moirai_deadline_after(WAIT_NS));
            lfree(l);
            _exit(r == 0 ? 0 : 2);
        }
    }
    struct link *l = NULL;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(accept_op, NULL, &l);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0);
    cr_assert_not_null(l);
    lfree(l); /* the dialer reads end of stream and exits 0 */
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "dialer status %d", st);
    moirai__shm_listener_destroy(oom_ls);
    cr_assert_eq(leftovers(oom_name), 0);
}
