/* A link of the shared-memory backend: a byte stream in each direction,
 * each carried by one SPSC ring (docs/transport.md, "Shared-memory
 * backend"). A write becomes one record per SHM_CHUNK_MAX bytes (a
 * quarter of the ring at most); a read copies out of the record it
 * peeked, keeping its place when the caller's buffer is smaller. The
 * record stays writable by the other process while it is peeked, which
 * is harmless here: the bytes are copied once and everything above the
 * link validates what it decodes. Also the listener names and their
 * parsing. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include <moirai/async/fiber.h>
#include <moirai/async/net.h>
#include <moirai/async/runtime.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/transport/ring.h>

#include "link_shm.h"
#include "ring_internal.h"

struct shm_link {
    struct link base;
    moirai_shm_ring_t *in;  /* consumer: the other side's bytes */
    moirai_shm_ring_t *out; /* producer: this side's bytes */
    size_t chunk;           /* the largest record written */
    /* The record being read, peeked and not yet released. */
    const unsigned char *rd;
    size_t rd_left;
    /* Set once by shutdown (any thread); the waits in shm_wait.c check
     * it. */
    _Atomic uint32_t shut;
    struct shm_bell bell; /* the inbound doorbell (link_shm.h) */
    int bell_out;         /* the outbound doorbell's descriptor, or -1 */
};

/* Commits the writer's reservation and rings the doorbell when the commit
 * woke the reader: the ring bumps data_seq exactly when it found the
 * reader announced asleep. Relaxed loads: this thread's own bump is seen
 * in program order; a bump by anyone else only costs a spare byte. */
static void commit(struct shm_link *s)
{
    _Atomic uint32_t *seq = &s->out->sh->data_seq;
    uint32_t before = atomic_load_explicit(seq, memory_order_relaxed);
    moirai_shm_ring_commit(s->out);
    if (s->bell_out >= 0 && atomic_load_explicit(seq, memory_order_relaxed) != before) {
        /* Non-blocking; a full FIFO already holds a wake-up. */
        ssize_t w = write(s->bell_out, "", 1);
        (void)w;
    }
}

static ssize_t shm_read(struct link *l, void *buf, size_t len, uint64_t deadline)
{
    struct shm_link *s = (struct shm_link *)l;
    if (buf == NULL || len == 0)
        return -EINVAL;
    /* Relaxed: only to stop handing out what was peeked before; the
     * waits order the flag properly. */
    if (atomic_load_explicit(&s->shut, memory_order_relaxed) != 0)
        return -ECANCELED;
    while (s->rd_left == 0) {
        void *p;
        size_t n;
        int rc = moirai__shm_wait_peek(s->in, &s->shut, false, &s->bell, deadline, &p, &n);
        if (rc == -EPIPE)
            return 0; /* the writer detached: it shut down or closed */
        if (rc != 0)
            return rc;
        if (n == 0) {
            /* This backend never writes an empty record; pass over one. */
            moirai_shm_ring_release(s->in);
            continue;
        }
        s->rd = p;
        s->rd_left = n;
    }
    size_t k = len < s->rd_left ? len : s->rd_left;
    memcpy(buf, s->rd, k);
    s->rd += k;
    s->rd_left -= k;
    if (s->rd_left == 0)
        moirai_shm_ring_release(s->in);
    return (ssize_t)k;
}

/* Copies `n` bytes out of the iovecs from (*i, *off) on, advancing them. */
static void gather(unsigned char *dst, size_t n, const struct iovec *iov, int *i, size_t *off)
{
    while (n > 0) {
        while (*off == iov[*i].iov_len) {
            (*i)++;
            *off = 0;
        }
        size_t k = iov[*i].iov_len - *off < n ? iov[*i].iov_len - *off : n;
        memcpy(dst, (const unsigned char *)iov[*i].iov_base + *off, k);
        dst += k;
        *off += k;
        n -= k;
    }
}

static int shm_writev(struct link *l, const struct iovec *iov, int cnt, uint64_t deadline)
{
    struct shm_link *s = (struct shm_link *)l;
    if ((iov == NULL && cnt != 0) || cnt < 0)
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < cnt; i++) {
        if (iov[i].iov_base == NULL && iov[i].iov_len != 0)
            return -EINVAL;
        total += iov[i].iov_len;
    }
    int i = 0;
    size_t off = 0; /* within iov[i] */
    while (total > 0) {
        size_t n = total < s->chunk ? total : s->chunk;
        void *p;
        int rc = moirai__shm_wait_reserve(s->out, &s->shut, deadline, n, &p);
        if (rc != 0)
            return rc;
        gather(p, n, iov, &i, &off);
        commit(s);
        total -= n;
    }
    return 0;
}

static ssize_t shm_try_writev(struct link *l, const struct iovec *iov, int cnt)
{
    struct shm_link *s = (struct shm_link *)l;
    if ((iov == NULL && cnt != 0) || cnt < 0)
        return -EINVAL;
    /* Relaxed: a shutdown racing with this call may or may not stop it,
     * as with a write already under way. */
    if (atomic_load_explicit(&s->shut, memory_order_relaxed) != 0)
        return -ECANCELED;
    size_t total = 0;
    for (int k = 0; k < cnt; k++) {
        if (iov[k].iov_base == NULL && iov[k].iov_len != 0)
            return -EINVAL;
        total += iov[k].iov_len;
    }
    int i = 0;
    size_t off = 0, taken = 0;
    size_t n = total < s->chunk ? total : s->chunk;
    while (taken < total) {
        if (n > total - taken)
            n = total - taken;
        void *p;
        int rc = moirai_shm_ring_try_reserve(s->out, n, &p);
        if (rc == -EAGAIN) {
            /* Less room than a full record: try a smaller one, down to a
             * size not worth a record of its own. */
            if (n <= 256)
                break;
            n /= 2;
            continue;
        }
        if (rc != 0)
            return taken > 0 ? (ssize_t)taken : rc;
        gather(p, n, iov, &i, &off);
        commit(s);
        taken += n;
    }
    return (ssize_t)taken;
}

static size_t shm_unread(struct link *l)
{
    struct shm_link *s = (struct shm_link *)l;
    /* Only the shared indices, so that another thread may ask while the
     * reader reads: the bytes the writer committed and this side has not
     * released (with their record headers; a hint for the failure
     * detector, not an exact count). Relaxed: no data is read through
     * them; garbage from the peer reads as a large count or 0. */
    struct ring_shared *sh = s->in->sh;
    uint64_t tail = atomic_load_explicit(&sh->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&sh->head, memory_order_relaxed);
    uint64_t n = tail - head;
    if (n == 0 || n > s->in->size || (head & 7u) != 0)
        return 0;
    /* A record that only passes over the end of the data region (the
     * writer's next record did not fit there) is not data. */
    uint64_t w = atomic_load_explicit((_Atomic uint64_t *)(s->in->data + (head & s->in->mask)),
                                      memory_order_relaxed);
    if ((uint32_t)(w >> 32) == RING_TAG_SKIP && ring_rec_size((uint32_t)w) == n)
        return 0;
    return (size_t)n;
}

static void shm_shutdown(struct link *l)
{
    struct shm_link *s = (struct shm_link *)l;
    /* Seq_cst, before the bumps of the wake: see shm_wait.c, stopped(). */
    if (atomic_exchange_explicit(&s->shut, 1, memory_order_seq_cst) != 0)
        return;
    /* The other side sees end of stream on what it reads (after what was
     * committed) and -EPIPE on what it writes; both rings' futex words
     * are bumped and woken, which also wakes this process's own reader
     * and writer to see the flag. */
    moirai__shm_mark_gone(s->out);
    moirai__shm_mark_gone(s->in);
    /* A fiber of this side asleep on the doorbell: after the flag (see
     * shm_wait.c, stopped()); the other side's doorbell too, so that its
     * reader looks now rather than after its slice. */
    if (s->bell.io != NULL) {
        ssize_t w = write(s->bell.fd, "", 1);
        (void)w;
    }
    if (s->bell_out >= 0) {
        ssize_t w = write(s->bell_out, "", 1);
        (void)w;
    }
}

static void shm_close(struct link *l)
{
    struct shm_link *s = (struct shm_link *)l;
    if (s == NULL)
        return;
    moirai_shm_ring_detach(s->in);
    moirai_shm_ring_detach(s->out);
    if (s->bell.io != NULL)
        moirai_io_close(s->bell.io);
    if (s->bell_out >= 0)
        close(s->bell_out);
    moirai_free(s);
}

static int shm_peer_addr(struct link *l, struct frame_addr *out)
{
    (void)l;
    (void)out;
    return -ENOTSUP;
}

static const struct link_ops shm_link_ops = {
    .read = shm_read,
    .writev = shm_writev,
    .shutdown = shm_shutdown,
    .close = shm_close,
    .peer_addr = shm_peer_addr,
    .try_writev = shm_try_writev,
    .unread = shm_unread,
};

int moirai__shm_link_new(moirai_shm_ring_t *in, moirai_shm_ring_t *out, int bell_in, int bell_out,
                         struct link **link)
{
    int rc = -ENOMEM;
    struct shm_link *s = moirai_malloc(sizeof *s);
    if (s != NULL) {
        memset(s, 0, sizeof *s);
        /* Only a fiber's link gets a doorbell in its runtime's reactor; a
         * link made on a plain thread waits on the futex. */
        moirai_runtime_t *rt = moirai_fiber_current() != NULL ? moirai_runtime_current() : NULL;
        if (bell_in < 0 || rt == NULL) {
            rc = 0;
        } else {
            rc = moirai_pipe_open(&s->bell.io, rt, bell_in);
            if (rc == 0) {
                s->bell.fd = bell_in;
                bell_in = -1; /* the handle owns it now */
            }
        }
    }
    if (bell_in >= 0)
        close(bell_in);
    if (rc != 0) {
        moirai_free(s);
        moirai_shm_ring_detach(in);
        moirai_shm_ring_detach(out);
        if (bell_out >= 0)
            close(bell_out);
        return rc;
    }
    s->bell_out = bell_out;
    s->base.ops = &shm_link_ops;
    s->in = in;
    s->out = out;
    size_t quarter = moirai_shm_ring_size(out) / 4;
    s->chunk = quarter < SHM_CHUNK_MAX ? quarter : SHM_CHUNK_MAX;
    atomic_init(&s->shut, 0);
    *link = &s->base;
    return 0;
}

void moirai__shm_link_drop_bells(struct link *link)
{
    struct shm_link *s = (struct shm_link *)link;
    s->bell.broken = true;
    if (s->bell_out >= 0)
        close(s->bell_out);
    s->bell_out = -1;
}

bool moirai__shm_name_valid(const char *name)
{
    if (name == NULL)
        return false;
    size_t n = 0;
    for (; name[n] != '\0'; n++) {
        char c = name[n];
        if (n >= SHM_NAME_MAX || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                   (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return n > 0;
}

int moirai__shm_parse(const char *text, struct frame_addr *out)
{
    if (text == NULL || out == NULL || strncmp(text, "shm:", 4) != 0 ||
        !moirai__shm_name_valid(text + 4))
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->family = FRAME_ADDR_SHM;
    memcpy(out->addr, text + 4, strlen(text + 4));
    return 0;
}

int moirai__shm_addr_name(const struct frame_addr *a, char name[SHM_NAME_MAX + 1])
{
    if (a == NULL || a->family != FRAME_ADDR_SHM)
        return -EINVAL;
    memcpy(name, a->addr, SHM_NAME_MAX);
    name[SHM_NAME_MAX] = '\0';
    /* Canonical: nothing but NULs after the name. */
    for (size_t i = strlen(name); i < SHM_NAME_MAX; i++)
        if (a->addr[i] != 0)
            return -EINVAL;
    return moirai__shm_name_valid(name) ? 0 : -EINVAL;
}
