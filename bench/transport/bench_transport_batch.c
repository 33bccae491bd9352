/* moirai-bench, suite "transport", case batch_small_msgs: the adaptive
 * batcher (moirai/transport/batch.h) against the same transport without
 * batching (see bench_transport.c for the case table). A child process
 * sends N 16-byte messages (a sequence number and a value derived from
 * it); the parent receives and checks every one. ns per message, from
 * "go" to the parent's last message.
 *
 * The transport is moirai-transport's shared-memory ring
 * (moirai/transport/ring.h, SPSC, 1 MiB) when it is in this tree, and a
 * Unix-domain stream socket otherwise (then the parent reads the stream in
 * chunks of up to 64 KiB).
 *   "moirai"    moirai_batch_send() per message from one thread, with
 *               cfg.single_sender (sends take no lock), default bounds
 *               (4096 bytes, 100 us), the flusher thread on. The sink copies the
 *               batch into one ring record (reserve, copy, commit), or
 *               writes it with one write(2). The busy callback: on the
 *               ring, whether the parent has released every batch sunk so
 *               far (it counts them in a shared word, since the ring has
 *               no call saying how much is unread); on the socket, whether
 *               bytes are still unread (ioctl SIOCOUTQ). The parent walks
 *               each batch with moirai_batch_next().
 *   "unbatched" on the ring, one record per message, written in place
 *               (reserve 16 bytes, write, commit); on the socket, one
 *               write(2) per framed message. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

#include <moirai/core/error.h>
#include <moirai/transport/batch.h>
#include <moirai/transport/ring.h>

#include "../bench.h"
#include "proc.h"
#include "transport_moirai.h"

#define SMALL_BYTES 16
#define READ_BYTES  (64 * 1024)

typedef struct small_msg {
    uint64_t seq;
    uint64_t value;
} small_msg_t;

_Static_assert(sizeof(small_msg_t) == SMALL_BYTES, "16-byte messages");

static void small_make(small_msg_t *m, uint64_t seq)
{
    m->seq = seq;
    m->value = seq * 0x9e3779b97f4a7c15ull;
}

/* ---- over the ring ---- */

/* The word the parent bumps after releasing each record, in a shared
 * anonymous mapping: the busy callback's view of the consumer. */
typedef struct ring_ack {
    _Atomic uint64_t released;
} ring_ack_t;

typedef struct ring_batch_arg {
    int fd;
    ring_ack_t *ack;
    uint64_t n;
    bool batched;
    moirai_shm_ring_t *ring; /* the child's producer handle */
    uint64_t sunk;           /* records committed by the sink */
} ring_batch_arg_t;

static int ring_sink(void *arg, const void *buf, size_t len, uint32_t count)
{
    (void)count;
    ring_batch_arg_t *a = arg;
    void *dst;
    int err = moirai_shm_ring_reserve(a->ring, len, &dst);
    if (err != 0)
        return err;
    memcpy(dst, buf, len);
    a->sunk++;
    return moirai_shm_ring_commit(a->ring);
}

static int ring_busy(void *arg)
{
    ring_batch_arg_t *a = arg;
    /* Relaxed: a hint; the ring orders the data itself. */
    return atomic_load_explicit(&a->ack->released, memory_order_relaxed) != a->sunk;
}

static int ring_child(void *arg, int go_r, int ready_w)
{
    ring_batch_arg_t *a = arg;
    if (moirai_shm_ring_attach(&a->ring, a->fd, MOIRAI_SHM_RING_PRODUCER) != 0)
        return -1;
    int err = 0;
    small_msg_t m;
    if (!a->batched) {
        err = bench_child_handshake(go_r, ready_w);
        for (uint64_t i = 0; i < a->n && err == 0; i++) {
            void *dst;
            err = moirai_shm_ring_reserve(a->ring, sizeof(m), &dst);
            if (err == 0) {
                small_make(dst, i);
                err = moirai_shm_ring_commit(a->ring);
            }
        }
        moirai_shm_ring_detach(a->ring);
        return err;
    }
    moirai_batch_config_t cfg;
    moirai_batch_config_init(&cfg);
    cfg.sink = ring_sink;
    cfg.busy = ring_busy;
    cfg.arg = a;
    cfg.single_sender = true; /* one sending thread: the lock-free path */
    moirai_batch_t *b;
    err = moirai_batch_create(&b, &cfg);
    if (err != 0) {
        fprintf(stderr, "transport: moirai_batch_create: %s\n", moirai_strerror(err));
        moirai_shm_ring_detach(a->ring);
        return -1;
    }
    err = bench_child_handshake(go_r, ready_w);
    for (uint64_t i = 0; i < a->n && err == 0; i++) {
        small_make(&m, i);
        err = moirai_batch_send(b, &m, sizeof(m));
    }
    if (err == 0)
        err = moirai_batch_flush(b);
    int derr = moirai_batch_destroy(b);
    moirai_shm_ring_detach(a->ring);
    return err == 0 && derr == 0 ? 0 : -1;
}

/* Checks one message against the next sequence number. */
static bool small_check(const void *msg, size_t len, uint64_t *seq)
{
    small_msg_t m, want;
    if (len != SMALL_BYTES)
        return false;
    memcpy(&m, msg, sizeof(m));
    small_make(&want, (*seq)++);
    return m.seq == want.seq && m.value == want.value;
}

static double ring_run(uint64_t n, bool batched)
{
    int fd = -1;
    if (moirai_shm_ring_create(&fd, NULL) != 0)
        return -1.0;
    void *map = NULL;
    int ack_fd = bench_shared_memory(sizeof(ring_ack_t), &map);
    ring_ack_t *ack = map;
    moirai_shm_ring_t *in = NULL;
    if (ack_fd < 0 || moirai_shm_ring_attach(&in, fd, MOIRAI_SHM_RING_CONSUMER) != 0) {
        if (ack_fd >= 0) {
            munmap(ack, sizeof(*ack));
            close(ack_fd);
        }
        close(fd);
        return -1.0;
    }
    atomic_init(&ack->released, 0);
    bench_child_t c;
    int started = bench_child_start(&c, batched ? "batch" : "unbatched", n, NULL, fd, ack_fd);
    close(fd);
    close(ack_fd);
    if (started < 0) {
        moirai_shm_ring_detach(in);
        munmap(ack, sizeof(*ack));
        return -1.0;
    }
    bool ok = bench_child_wait_ready(&c) == 0;
    uint64_t t0 = bench_now_ns();
    ok = ok && bench_child_go(&c) == 0;
    uint64_t seq = 0;
    /* A batch is copied out before it is walked: the producer is not
     * trusted with memory the consumer is parsing. */
    static unsigned char copy[MOIRAI_BATCH_DEFAULT_MAX_BYTES];
    while (ok && seq < n) {
        void *rec;
        size_t len;
        if (moirai_shm_ring_peek(in, &rec, &len) != 0) {
            ok = false;
            break;
        }
        if (!batched) {
            ok = small_check(rec, len, &seq);
        } else if (len > sizeof(copy)) {
            ok = false;
        } else {
            memcpy(copy, rec, len);
            size_t off = 0;
            const void *msg;
            size_t mlen;
            while (ok && moirai_batch_next(copy, len, &off, &msg, &mlen) == 1)
                ok = small_check(msg, mlen, &seq);
            ok = ok && off == len;
        }
        ok = moirai_shm_ring_release(in) == 0 && ok;
        /* Relaxed: a hint for the sender's busy callback. */
        atomic_fetch_add_explicit(&ack->released, 1, memory_order_relaxed);
    }
    uint64_t t1 = bench_now_ns();
    moirai_shm_ring_detach(in);
    munmap(ack, sizeof(*ack));
    if (bench_child_finish(&c, !ok) < 0 || !ok || seq != n)
        return -1.0;
    return (double)(t1 - t0) / (double)(n ? n : 1);
}

/* The child's side: fd[0] is the ring, fd[1] the acknowledgement word. */
static int ring_role(const bench_child_args_t *a, bool batched)
{
    ring_ack_t *ack = bench_shared_map(a->fd[1], sizeof(ring_ack_t));
    if (!ack)
        return -1;
    ring_batch_arg_t arg = {a->fd[0], ack, a->n, batched, NULL, 0};
    return ring_child(&arg, a->go_r, a->ready_w);
}

int moirai_bench_batch_child(const bench_child_args_t *a)
{
    return ring_role(a, true);
}

int moirai_bench_unbatched_child(const bench_child_args_t *a)
{
    return ring_role(a, false);
}

double moirai_bench_batch(uint64_t n)
{
    return ring_run(n, true);
}

double moirai_bench_unbatched(uint64_t n)
{
    return ring_run(n, false);
}
