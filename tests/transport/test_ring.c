/* Shared-memory rings inside one process: the API's contracts and every
 * documented error, including a header and indices corrupted by the test
 * acting as a hostile peer. The two-process tests are in test_ring_proc.c. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <moirai/core/clock.h>
#include <moirai/transport.h>

#include "oom.h"
#include "ring_layout.h"

/* A fresh memfd ring of `size` bytes with `flags`. */
static int make(size_t size, uint32_t flags)
{
    moirai_shm_ring_config_t cfg;
    moirai_shm_ring_config_init(&cfg);
    cfg.size = size;
    cfg.flags = flags;
    int fd = -1;
    cr_assert_eq(moirai_shm_ring_create(&fd, &cfg), 0);
    cr_assert_geq(fd, 0);
    return fd;
}

/* The test's own view of the shared bytes, to play the hostile peer. */
static struct ring_shared *map_raw(int fd, size_t size)
{
    void *p = mmap(NULL, RING_HEADER_SIZE + size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(p, MAP_FAILED);
    return p;
}

static void send_bytes(moirai_shm_ring_t *p, const void *msg, size_t len)
{
    void *buf = NULL;
    cr_assert_eq(moirai_shm_ring_try_reserve(p, len, &buf), 0);
    memcpy(buf, msg, len);
    cr_assert_eq(moirai_shm_ring_commit(p), 0);
}

Test(transport_ring, config_defaults_and_bad_config)
{
    moirai_shm_ring_config_t a, b;
    memset(&a, 0x5a, sizeof(a));
    moirai_shm_ring_config_init(&a);
    memset(&b, 0, sizeof(b));
    cr_assert_eq(memcmp(&a, &b, sizeof(a)), 0);
    moirai_shm_ring_config_init(NULL);

    int fd = -1;
    cr_assert_eq(moirai_shm_ring_create(NULL, NULL), -EINVAL);
    a.size = 5000; /* not a power of two */
    cr_assert_eq(moirai_shm_ring_create(&fd, &a), -EINVAL);
    a.size = 2048; /* too small */
    cr_assert_eq(moirai_shm_ring_create(&fd, &a), -EINVAL);
    a.size = MOIRAI_SHM_RING_MAX_SIZE * 2;
    cr_assert_eq(moirai_shm_ring_create(&fd, &a), -EINVAL);
    a.size = 0;
    a.flags = 0x80;
    cr_assert_eq(moirai_shm_ring_create(&fd, &a), -EINVAL);
    a.flags = 0;
    a.name = "no-slash";
    cr_assert_eq(moirai_shm_ring_create(&fd, &a), -EINVAL);
    a.name = "/two/slashes";
    cr_assert_eq(moirai_shm_ring_create(&fd, &a), -EINVAL);
    cr_assert_eq(fd, -1);

    /* NULL config: the default size. */
    cr_assert_eq(moirai_shm_ring_create(&fd, NULL), 0);
    moirai_shm_ring_t *c = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    cr_assert_eq(moirai_shm_ring_size(c), MOIRAI_SHM_RING_DEFAULT_SIZE);
    cr_assert_eq(moirai_shm_ring_size(NULL), 0);
    moirai_shm_ring_detach(c);
    moirai_shm_ring_detach(NULL);
    close(fd);
}

Test(transport_ring, attach_errors_and_roles)
{
    moirai_shm_ring_t *r = NULL;
    int fd = make(4096, 0);
    cr_assert_eq(moirai_shm_ring_attach(NULL, fd, MOIRAI_SHM_RING_CONSUMER), -EINVAL);
    cr_assert_eq(moirai_shm_ring_attach(&r, fd, (moirai_shm_ring_role_t)7), -EINVAL);
    cr_assert_eq(moirai_shm_ring_attach(&r, -1, MOIRAI_SHM_RING_CONSUMER), -EBADF);

    moirai_shm_ring_t *c = NULL, *p = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    cr_assert_eq(moirai_shm_ring_attach(&r, fd, MOIRAI_SHM_RING_CONSUMER), -EBUSY);
    cr_assert_eq(moirai_shm_ring_attach(&p, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    cr_assert_eq(moirai_shm_ring_attach(&r, fd, MOIRAI_SHM_RING_PRODUCER), -EBUSY, "SPSC");
    cr_assert_null(r);

    /* Each role's calls are refused on the other role. */
    void *buf;
    size_t len;
    cr_assert_eq(moirai_shm_ring_try_reserve(c, 8, &buf), -EINVAL);
    cr_assert_eq(moirai_shm_ring_commit(c), -EINVAL);
    cr_assert_eq(moirai_shm_ring_try_peek(p, &buf, &len), -EINVAL);
    cr_assert_eq(moirai_shm_ring_release(p), -EINVAL);
    cr_assert_eq(moirai_shm_ring_try_reserve(NULL, 8, &buf), -EINVAL);
    cr_assert_eq(moirai_shm_ring_try_reserve(p, 8, NULL), -EINVAL);
    cr_assert_eq(moirai_shm_ring_try_peek(NULL, &buf, &len), -EINVAL);
    cr_assert_eq(moirai_shm_ring_try_peek(c, NULL, &len), -EINVAL);
    cr_assert_eq(moirai_shm_ring_try_peek(c, &buf, NULL), -EINVAL);
    cr_assert_eq(moirai_shm_ring_commit(NULL), -EINVAL);
    cr_assert_eq(moirai_shm_ring_release(NULL), -EINVAL);
    cr_assert_eq(moirai_shm_ring_commit(p), -EINVAL, "nothing reserved");
    cr_assert_eq(moirai_shm_ring_release(c), -EINVAL, "nothing peeked");
    moirai_shm_ring_stats_t st;
    cr_assert_eq(moirai_shm_ring_stats(NULL, &st), -EINVAL);
    cr_assert_eq(moirai_shm_ring_stats(c, NULL), -EINVAL);
    moirai_shm_ring_detach(p);
    moirai_shm_ring_detach(c);
    close(fd);

    /* MPSC: up to MOIRAI_SHM_RING_MAX_PRODUCERS producers, then -EBUSY. */
    fd = make(4096, MOIRAI_SHM_RING_MPSC);
    moirai_shm_ring_t *ps[MOIRAI_SHM_RING_MAX_PRODUCERS];
    for (unsigned i = 0; i < MOIRAI_SHM_RING_MAX_PRODUCERS; i++)
        cr_assert_eq(moirai_shm_ring_attach(&ps[i], fd, MOIRAI_SHM_RING_PRODUCER), 0);
    cr_assert_eq(moirai_shm_ring_attach(&r, fd, MOIRAI_SHM_RING_PRODUCER), -EBUSY);
    for (unsigned i = 0; i < MOIRAI_SHM_RING_MAX_PRODUCERS; i++)
        moirai_shm_ring_detach(ps[i]);
    close(fd);
}

Test(transport_ring, named_object)
{
    char name[64];
    snprintf(name, sizeof(name), "/moirai-ring-test-%d", (int)getpid());
    moirai_shm_ring_config_t cfg;
    moirai_shm_ring_config_init(&cfg);
    cfg.name = name;
    cfg.size = 8192;
    int fd = -1, fd2 = -1;
    cr_assert_eq(moirai_shm_ring_create(&fd, &cfg), 0);
    cr_assert_eq(moirai_shm_ring_create(&fd2, &cfg), -EEXIST);
    moirai_shm_ring_t *c = NULL, *p = NULL;
    cr_assert_eq(moirai_shm_ring_open(&c, name, MOIRAI_SHM_RING_CONSUMER), 0);
    cr_assert_eq(moirai_shm_ring_open(&p, name, MOIRAI_SHM_RING_PRODUCER), 0);
    cr_assert_eq(moirai_shm_ring_open(NULL, name, MOIRAI_SHM_RING_PRODUCER), -EINVAL);
    cr_assert_eq(moirai_shm_ring_open(&p, NULL, MOIRAI_SHM_RING_PRODUCER), -EINVAL);
    close(fd);
    cr_assert_eq(moirai_shm_ring_unlink(name), 0);
    cr_assert_eq(moirai_shm_ring_unlink(name), -ENOENT);
    cr_assert_eq(moirai_shm_ring_unlink(NULL), -EINVAL);
    moirai_shm_ring_t *q = NULL;
    cr_assert_eq(moirai_shm_ring_open(&q, name, MOIRAI_SHM_RING_CONSUMER), -ENOENT);

    /* The mappings outlive the name. */
    send_bytes(p, "hello", 5);
    void *buf;
    size_t len;
    cr_assert_eq(moirai_shm_ring_try_peek(c, &buf, &len), 0);
    cr_assert_eq(len, 5);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    cr_assert_eq(moirai_shm_ring_release(c), 0);
    moirai_shm_ring_detach(p);
    moirai_shm_ring_detach(c);
}

/* Many messages of varying length (0 included) through a small ring, so
 * that records wrap around the end of the data region many times. */
static void roundtrip_sizes(uint32_t flags)
{
    int fd = make(4096, flags);
    moirai_shm_ring_t *c = NULL, *p = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    cr_assert_eq(moirai_shm_ring_attach(&p, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    close(fd);
    uint64_t sent = 0, got = 0, bytes = 0;
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)((round * 131u) % 700u);
        void *buf = NULL;
        int rc = moirai_shm_ring_try_reserve(p, len, &buf);
        if (rc == 0) {
            cr_assert_eq((uintptr_t)buf % 8, 0, "8-byte aligned");
            memset(buf, (int)(sent & 0xff), len);
            cr_assert_eq(moirai_shm_ring_commit(p), 0);
            sent++;
            bytes += len;
        } else {
            cr_assert_eq(rc, -EAGAIN);
        }
        /* Drain every ninth round, so the ring runs full at times. */
        if (round % 9 == 8 || rc == -EAGAIN) {
            size_t n;
            while (moirai_shm_ring_try_peek(c, &buf, &n) == 0) {
                unsigned char *b = buf;
                for (size_t i = 0; i < n; i++)
                    cr_assert_eq(b[i], (unsigned char)(got & 0xff), "message %lu byte %zu",
                                 (unsigned long)got, i);
                cr_assert_eq(moirai_shm_ring_release(c), 0);
                got++;
            }
        }
    }
    void *buf;
    size_t n;
    while (moirai_shm_ring_try_peek(c, &buf, &n) == 0) {
        cr_assert_eq(moirai_shm_ring_release(c), 0);
        got++;
    }
    cr_assert_eq(got, sent);
    cr_assert_gt(sent, 10000);
    moirai_shm_ring_stats_t ps, cs;
    cr_assert_eq(moirai_shm_ring_stats(p, &ps), 0);
    cr_assert_eq(moirai_shm_ring_stats(c, &cs), 0);
    cr_assert_eq(ps.messages, sent);
    cr_assert_eq(cs.messages, got);
    cr_assert_eq(ps.bytes, bytes);
    cr_assert_eq(cs.bytes, bytes);
    cr_assert_gt(ps.blocked, 0, "the ring ran full");
    cr_assert_eq(ps.sleeps, 0, "try_ never sleeps");
    moirai_shm_ring_detach(p);
    moirai_shm_ring_detach(c);
}

Test(transport_ring, wraps_with_varying_lengths_spsc)
{
    roundtrip_sizes(0);
}

Test(transport_ring, wraps_with_varying_lengths_mpsc)
{
    roundtrip_sizes(MOIRAI_SHM_RING_MPSC);
}

static void sizes_and_pending(uint32_t flags)
{
    int fd = make(4096, flags);
    moirai_shm_ring_t *c = NULL, *p = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    cr_assert_eq(moirai_shm_ring_attach(&p, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    close(fd);
    void *buf = (void *)1, *b2;
    size_t len;
    cr_assert_eq(moirai_shm_ring_try_reserve(p, 4096 - 7, &buf), -EMSGSIZE);
    cr_assert_eq(moirai_shm_ring_reserve(p, SIZE_MAX, &buf), -EMSGSIZE);
    cr_assert_eq(buf, (void *)1, "untouched on error");
    /* The largest message fills the whole ring. */
    cr_assert_eq(moirai_shm_ring_try_reserve(p, 4096 - 8, &buf), 0);
    cr_assert_eq(moirai_shm_ring_try_reserve(p, 0, &b2), -EINVAL, "one reservation at a time");
    memset(buf, 0xab, 4096 - 8);
    cr_assert_eq(moirai_shm_ring_commit(p), 0);
    cr_assert_eq(moirai_shm_ring_try_reserve(p, 0, &buf), -EAGAIN, "full");
    cr_assert_eq(moirai_shm_ring_reserve_timed(p, moirai_deadline_after(1000000), 0, &buf),
                 -ETIMEDOUT);
    cr_assert_eq(moirai_shm_ring_try_peek(c, &buf, &len), 0);
    cr_assert_eq(len, 4096 - 8);
    cr_assert_eq(moirai_shm_ring_try_peek(c, &b2, &len), 0, "peek again: the same message");
    cr_assert_eq(b2, buf);
    cr_assert_eq(((unsigned char *)buf)[4095 - 8], 0xab);
    cr_assert_eq(moirai_shm_ring_release(c), 0);
    cr_assert_eq(moirai_shm_ring_release(c), -EINVAL);
    cr_assert_eq(moirai_shm_ring_try_peek(c, &buf, &len), -EAGAIN, "empty");
    cr_assert_eq(moirai_shm_ring_peek_timed(c, moirai_deadline_after(1000000), &buf, &len),
                 -ETIMEDOUT);
    /* A zero-length message is a message. */
    cr_assert_eq(moirai_shm_ring_try_reserve(p, 0, &buf), 0);
    cr_assert_eq(moirai_shm_ring_commit(p), 0);
    len = 99;
    cr_assert_eq(moirai_shm_ring_peek(c, &buf, &len), 0);
    cr_assert_eq(len, 0);
    cr_assert_eq(moirai_shm_ring_release(c), 0);
    /* A largest message again, now that the indices are not at 0: it
     * passes over the end with a skip record, and needs the consumer to
     * pass over it before the room at the start is free. */
    cr_assert_eq(moirai_shm_ring_try_reserve(p, 4096 - 8, &buf), -EAGAIN);
    cr_assert_eq(moirai_shm_ring_try_peek(c, &buf, &len), -EAGAIN, "only a skip record");
    cr_assert_eq(moirai_shm_ring_reserve(p, 4096 - 8, &buf), 0);
    cr_assert_eq(moirai_shm_ring_commit(p), 0);
    cr_assert_eq(moirai_shm_ring_peek(c, &buf, &len), 0);
    cr_assert_eq(len, 4096 - 8);
    cr_assert_eq(moirai_shm_ring_release(c), 0);
    moirai_shm_ring_detach(p);
    moirai_shm_ring_detach(c);
}

Test(transport_ring, sizes_and_pending_spsc)
{
    sizes_and_pending(0);
}

Test(transport_ring, sizes_and_pending_mpsc)
{
    sizes_and_pending(MOIRAI_SHM_RING_MPSC);
}

static void detach_closes(uint32_t flags)
{
    int fd = make(4096, flags);
    moirai_shm_ring_t *c = NULL, *p = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    void *buf;
    size_t len;
    /* No producer attached yet: an empty ring is just empty. */
    cr_assert_eq(moirai_shm_ring_try_peek(c, &buf, &len), -EAGAIN);
    cr_assert_eq(moirai_shm_ring_attach(&p, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    send_bytes(p, "a", 1);
    send_bytes(p, "bc", 2);
    moirai_shm_ring_detach(p);
    /* What was committed is drained first, then -EPIPE. */
    cr_assert_eq(moirai_shm_ring_peek(c, &buf, &len), 0);
    cr_assert_eq(len, 1);
    cr_assert_eq(moirai_shm_ring_release(c), 0);
    cr_assert_eq(moirai_shm_ring_peek(c, &buf, &len), 0);
    cr_assert_eq(len, 2);
    cr_assert_eq(moirai_shm_ring_release(c), 0);
    cr_assert_eq(moirai_shm_ring_peek(c, &buf, &len), -EPIPE);
    cr_assert_eq(moirai_shm_ring_try_peek(c, &buf, &len), -EPIPE);
    moirai_shm_ring_detach(c);

    /* A producer whose consumer detached gets -EPIPE. */
    cr_assert_eq(moirai_shm_ring_attach(&p, fd, MOIRAI_SHM_RING_PRODUCER), flags ? 0 : -EBUSY);
    if (flags) {
        cr_assert_eq(moirai_shm_ring_reserve(p, 1, &buf), -EPIPE);
        moirai_shm_ring_detach(p);
    }
    close(fd);
}

Test(transport_ring, detach_is_close_spsc)
{
    detach_closes(0);
}

Test(transport_ring, detach_is_close_mpsc)
{
    detach_closes(MOIRAI_SHM_RING_MPSC);
}

Test(transport_ring, producer_sees_consumer_detach)
{
    int fd = make(4096, 0);
    moirai_shm_ring_t *c = NULL, *p = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&p, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    close(fd);
    moirai_shm_ring_detach(c);
    void *buf = (void *)1;
    cr_assert_eq(moirai_shm_ring_reserve(p, 1, &buf), -EPIPE);
    cr_assert_eq(moirai_shm_ring_try_reserve(p, 1, &buf), -EPIPE);
    cr_assert_eq(buf, (void *)1);
    moirai_shm_ring_detach(p);
}

/* An MPSC producer that detaches with a reservation outstanding: its room
 * becomes a skip record, and the messages after it still arrive. */
Test(transport_ring, mpsc_abandoned_reservation_is_skipped)
{
    int fd = make(4096, MOIRAI_SHM_RING_MPSC);
    moirai_shm_ring_t *c = NULL, *p1 = NULL, *p2 = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    cr_assert_eq(moirai_shm_ring_attach(&p1, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    cr_assert_eq(moirai_shm_ring_attach(&p2, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    close(fd);
    void *buf;
    size_t len;
    cr_assert_eq(moirai_shm_ring_try_reserve(p1, 100, &buf), 0);
    send_bytes(p2, "after", 5);
    cr_assert_eq(moirai_shm_ring_try_peek(c, &buf, &len), -EAGAIN, "the head is reserved");
    moirai_shm_ring_detach(p1);
    cr_assert_eq(moirai_shm_ring_try_peek(c, &buf, &len), 0);
    cr_assert_eq(len, 5);
    cr_assert_eq(memcmp(buf, "after", 5), 0);
    cr_assert_eq(moirai_shm_ring_release(c), 0);
    moirai_shm_ring_detach(p2);
    cr_assert_eq(moirai_shm_ring_try_peek(c, &buf, &len), -EPIPE);
    moirai_shm_ring_detach(c);
}

/* A header the attach must refuse: the test writes one field. */
static void expect_refused(void (*spoil)(struct ring_shared *sh), int expect)
{
    int fd = make(4096, 0);
    struct ring_shared *sh = map_raw(fd, 4096);
    spoil(sh);
    moirai_shm_ring_t *r = (moirai_shm_ring_t *)1;
    cr_assert_eq(moirai_shm_ring_attach(&r, fd, MOIRAI_SHM_RING_CONSUMER), expect);
    cr_assert_eq(r, (moirai_shm_ring_t *)1, "untouched on error");
    cr_assert_eq(atomic_load(&sh->consumer.state), RING_SLOT_FREE, "nothing claimed");
    munmap(sh, RING_HEADER_SIZE + 4096);
    close(fd);
}

static void bad_magic(struct ring_shared *sh)
{
    atomic_store(&sh->magic, UINT64_C(0x1122334455667788));
}
static void bad_version(struct ring_shared *sh)
{
    atomic_store(&sh->version, MOIRAI_SHM_RING_LAYOUT_VERSION + 1);
}
static void bad_header_size(struct ring_shared *sh)
{
    atomic_store(&sh->header_size, 8192);
}
static void bad_size_pow2(struct ring_shared *sh)
{
    atomic_store(&sh->size, 4096 + 8);
}
static void bad_size_large(struct ring_shared *sh)
{
    atomic_store(&sh->size, 8192); /* larger than the object */
}
static void bad_size_huge(struct ring_shared *sh)
{
    atomic_store(&sh->size, UINT64_C(1) << 63);
}
static void bad_flags(struct ring_shared *sh)
{
    atomic_store(&sh->flags, 0x40);
}
static void bad_producers(struct ring_shared *sh)
{
    atomic_store(&sh->max_producers, 1000);
}
static void bad_mpsc_mismatch(struct ring_shared *sh)
{
    atomic_store(&sh->flags, MOIRAI_SHM_RING_MPSC); /* but max_producers says SPSC */
}
static void bad_head(struct ring_shared *sh)
{
    atomic_store(&sh->head, 3);
}

Test(transport_ring, foreign_or_corrupt_header_refused)
{
    expect_refused(bad_magic, -EPROTO);
    expect_refused(bad_version, -EPROTO);
    expect_refused(bad_header_size, -EPROTO);
    expect_refused(bad_size_pow2, -EPROTO);
    expect_refused(bad_size_large, -EPROTO);
    expect_refused(bad_size_huge, -EPROTO);
    expect_refused(bad_flags, -EPROTO);
    expect_refused(bad_producers, -EPROTO);
    expect_refused(bad_mpsc_mismatch, -EPROTO);
    expect_refused(bad_head, -EPROTO);
}

Test(transport_ring, objects_too_small_refused)
{
    moirai_shm_ring_t *r = NULL;
    int fd = memfd_create("t", 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(moirai_shm_ring_attach(&r, fd, MOIRAI_SHM_RING_CONSUMER), -EPROTO, "empty");
    cr_assert_eq(ftruncate(fd, 4096), 0);
    cr_assert_eq(moirai_shm_ring_attach(&r, fd, MOIRAI_SHM_RING_CONSUMER), -EPROTO, "zeros");
    close(fd);
    /* A well-formed header whose object was cut short (an unsealed
     * named object can be truncated by any process that opens it). */
    char name[64];
    snprintf(name, sizeof(name), "/moirai-ring-short-%d", (int)getpid());
    moirai_shm_ring_config_t cfg;
    moirai_shm_ring_config_init(&cfg);
    cfg.name = name;
    cfg.size = 8192;
    cr_assert_eq(moirai_shm_ring_create(&fd, &cfg), 0);
    moirai_shm_ring_unlink(name);
    cr_assert_eq(ftruncate(fd, 4096 + 4096), 0);
    cr_assert_eq(moirai_shm_ring_attach(&r, fd, MOIRAI_SHM_RING_CONSUMER), -EPROTO);
    close(fd);
    /* A memfd ring is sealed: nobody can shrink it under a mapping. */
    fd = make(4096, 0);
    cr_assert_eq(ftruncate(fd, 4096), -1);
    cr_assert_eq(errno, EPERM);
    close(fd);
}

/* The consumer meets garbage written by a hostile producer: -EPROTO,
 * sticky, and nothing read outside the mapping (ASan would see a stray
 * access in the mapping's neighbours only if it were heap; the
 * bounds are checked by the fuzz target on a heap buffer). */
static void hostile(uint32_t flags, void (*spoil)(struct ring_shared *sh, unsigned char *data))
{
    int fd = make(4096, flags);
    moirai_shm_ring_t *c = NULL, *p = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    cr_assert_eq(moirai_shm_ring_attach(&p, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    struct ring_shared *sh = map_raw(fd, 4096);
    close(fd);
    send_bytes(p, "0123456789", 10);
    spoil(sh, (unsigned char *)sh + RING_HEADER_SIZE);
    void *buf = (void *)1;
    size_t len = 7;
    cr_assert_eq(moirai_shm_ring_try_peek(c, &buf, &len), -EPROTO);
    cr_assert_eq(buf, (void *)1);
    cr_assert_eq(len, 7);
    cr_assert_eq(moirai_shm_ring_peek(c, &buf, &len), -EPROTO, "sticky");
    moirai_shm_ring_detach(p);
    moirai_shm_ring_detach(c);
    munmap(sh, RING_HEADER_SIZE + 4096);
}

static void tail_far(struct ring_shared *sh, unsigned char *data)
{
    (void)data;
    atomic_store(&sh->tail, UINT64_C(1) << 40);
}
static void tail_unaligned(struct ring_shared *sh, unsigned char *data)
{
    (void)data;
    atomic_store(&sh->tail, 13);
}
static void tail_back(struct ring_shared *sh, unsigned char *data)
{
    (void)data;
    atomic_store(&sh->tail, UINT64_MAX - 7);
}
static void len_huge(struct ring_shared *sh, unsigned char *data)
{
    (void)sh;
    atomic_store((_Atomic uint64_t *)data, ((uint64_t)RING_TAG_DATA << 32) | 0xfffffff0u);
}
static void len_past_tail(struct ring_shared *sh, unsigned char *data)
{
    (void)sh;
    atomic_store((_Atomic uint64_t *)data, ((uint64_t)RING_TAG_DATA << 32) | 100u);
}
static void tag_unknown(struct ring_shared *sh, unsigned char *data)
{
    (void)sh;
    atomic_store((_Atomic uint64_t *)data, ((uint64_t)0xdeadbeef << 32) | 10u);
}
static void skip_wraps(struct ring_shared *sh, unsigned char *data)
{
    /* A skip record claiming more than the ring holds. */
    atomic_store(&sh->tail, 4096);
    atomic_store((_Atomic uint64_t *)data, ((uint64_t)RING_TAG_SKIP << 32) | 4096u);
}

Test(transport_ring, hostile_producer_spsc)
{
    hostile(0, tail_far);
    hostile(0, tail_unaligned);
    hostile(0, tail_back);
    hostile(0, len_huge);
    hostile(0, len_past_tail);
    hostile(0, tag_unknown);
    hostile(0, skip_wraps);
}

Test(transport_ring, hostile_producer_mpsc)
{
    hostile(MOIRAI_SHM_RING_MPSC, tail_far);
    hostile(MOIRAI_SHM_RING_MPSC, tail_unaligned);
    hostile(MOIRAI_SHM_RING_MPSC, tail_back);
    hostile(MOIRAI_SHM_RING_MPSC, len_huge);
    hostile(MOIRAI_SHM_RING_MPSC, len_past_tail);
    hostile(MOIRAI_SHM_RING_MPSC, tag_unknown);
    hostile(MOIRAI_SHM_RING_MPSC, skip_wraps);
}

static void slot_garbage(struct ring_shared *sh, unsigned char *data)
{
    (void)data;
    atomic_store(&sh->tail, atomic_load(&sh->head)); /* looks empty */
    atomic_store(&sh->producers[0].state, 77);
}

Test(transport_ring, hostile_producer_slot)
{
    hostile(0, slot_garbage);
}

/* The producer meets a hostile consumer's head. */
static void hostile_head(uint64_t head)
{
    int fd = make(4096, 0);
    moirai_shm_ring_t *c = NULL, *p = NULL;
    cr_assert_eq(moirai_shm_ring_attach(&c, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    cr_assert_eq(moirai_shm_ring_attach(&p, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    struct ring_shared *sh = map_raw(fd, 4096);
    close(fd);
    void *buf;
    static const char kilo[1000];
    for (int i = 0; i < 3; i++)
        send_bytes(p, kilo, sizeof(kilo));
    atomic_store(&sh->head, head);
    cr_assert_eq(moirai_shm_ring_try_reserve(p, 2000, &buf), -EPROTO);
    cr_assert_eq(moirai_shm_ring_try_reserve(p, 1, &buf), -EPROTO, "sticky");
    moirai_shm_ring_detach(p);
    moirai_shm_ring_detach(c);
    munmap(sh, RING_HEADER_SIZE + 4096);
}

Test(transport_ring, hostile_consumer)
{
    hostile_head(UINT64_C(1) << 50); /* past the tail */
    hostile_head(5);                 /* unaligned */
}

/* -ENOMEM from attach: nothing claimed, nothing mapped. */
static int fd_for_oom;
static int attach_op(void *ctx)
{
    moirai_shm_ring_t **r = ctx;
    return moirai_shm_ring_attach(r, fd_for_oom, MOIRAI_SHM_RING_CONSUMER);
}
static void attach_unchanged(void *ctx, long n)
{
    (void)n;
    moirai_shm_ring_t **r = ctx;
    cr_assert_null(*r);
}

Test(transport_ring, attach_out_of_memory)
{
    fd_for_oom = make(4096, 0);
    moirai_shm_ring_t *r = NULL;
    moirai_test_oom_install();
    moirai_test_oom_sweep_result_t res =
        moirai_test_oom_sweep(attach_op, attach_unchanged, &r, 100);
    moirai_test_oom_uninstall();
    cr_assert_eq(res.rc, 0);
    cr_assert_geq(res.failures, 1);
    cr_assert_not_null(r, "the consumer slot stayed free through the failures");
    moirai_shm_ring_detach(r);
    close(fd_for_oom);
}
