/* moirai-bench, suite "transport", case batch_small_msgs: the adaptive
 * batcher (moirai/transport/batch.h) against the same transport without
 * batching (see bench_transport.c for the case table).
 *
 * Transport: a Unix-domain stream socket between two processes, because
 * moirai-transport's shared-memory ring is not in this tree yet; when it
 * is, this case moves onto the ring, as the issue asks. A child process
 * sends N 16-byte messages (a sequence number and a value derived from
 * it); the parent reads the stream in chunks of up to 64 KiB and walks the
 * frames with moirai_batch_next(), checking every message. Both sides
 * frame each message the same way (a 4-byte length, then the bytes), so
 * the receiver is the same code:
 *   "moirai"    moirai_batch_send() per message; the sink writes the batch
 *               with one write(2); the busy callback asks the socket
 *               whether bytes are still unread (ioctl SIOCOUTQ); default
 *               bounds (4096 bytes, 100 us), the flusher thread on.
 *   "unbatched" one write(2) per framed message.
 * ns per message, from "go" to the parent's last message. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

#include <moirai/core/error.h>
#include <moirai/transport/batch.h>

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

typedef struct batch_arg {
    int fd;
    uint64_t n;
    bool batched;
} batch_arg_t;

static int socket_sink(void *arg, const void *buf, size_t len, uint32_t count)
{
    (void)count;
    return bench_write_all(*(int *)arg, buf, len) == 0 ? 0 : -EPIPE;
}

/* Busy while the reader has not taken everything written. */
static int socket_busy(void *arg)
{
    int queued = 0;
    if (ioctl(*(int *)arg, SIOCOUTQ, &queued) < 0)
        return 1;
    return queued > 0;
}

static int batch_child(void *arg, int go_r, int ready_w)
{
    batch_arg_t *a = arg;
    small_msg_t m;
    if (!a->batched) {
        unsigned char frame[MOIRAI_BATCH_FRAME_HEADER + SMALL_BYTES];
        uint32_t len = SMALL_BYTES;
        memcpy(frame, &len, sizeof(len));
        if (bench_child_handshake(go_r, ready_w) < 0)
            return -1;
        for (uint64_t i = 0; i < a->n; i++) {
            small_make(&m, i);
            memcpy(frame + MOIRAI_BATCH_FRAME_HEADER, &m, sizeof(m));
            if (bench_write_all(a->fd, frame, sizeof(frame)) < 0)
                return -1;
        }
        return 0;
    }
    moirai_batch_config_t cfg;
    moirai_batch_config_init(&cfg);
    cfg.sink = socket_sink;
    cfg.busy = socket_busy;
    cfg.arg = &a->fd;
    moirai_batch_t *b;
    int err = moirai_batch_create(&b, &cfg);
    if (err != 0) {
        fprintf(stderr, "transport: moirai_batch_create: %s\n", moirai_strerror(err));
        return -1;
    }
    if (bench_child_handshake(go_r, ready_w) < 0) {
        moirai_batch_destroy(b);
        return -1;
    }
    for (uint64_t i = 0; i < a->n && err == 0; i++) {
        small_make(&m, i);
        err = moirai_batch_send(b, &m, sizeof(m));
    }
    if (err == 0)
        err = moirai_batch_flush(b);
    int derr = moirai_batch_destroy(b);
    return err == 0 && derr == 0 ? 0 : -1;
}

static double batch_run(uint64_t n, bool batched)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1.0;
    unsigned char *buf = malloc(READ_BYTES);
    batch_arg_t arg = {sv[1], n, batched};
    bench_child_t c;
    if (!buf || bench_child_start(&c, batch_child, &arg) < 0) {
        free(buf);
        close(sv[0]);
        close(sv[1]);
        return -1.0;
    }
    close(sv[1]);
    bool ok = bench_child_wait_ready(&c) == 0;
    uint64_t t0 = bench_now_ns();
    ok = ok && bench_child_go(&c) == 0;
    uint64_t seq = 0;
    size_t have = 0; /* bytes of an incomplete frame at buf's start */
    while (ok && seq < n) {
        ssize_t r = read(sv[0], buf + have, READ_BYTES - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ok = false;
            break;
        }
        have += (size_t)r;
        size_t off = 0;
        const void *msg;
        size_t len;
        while (ok && moirai_batch_next(buf, have, &off, &msg, &len) == 1) {
            small_msg_t m, want;
            small_make(&want, seq++);
            ok = len == SMALL_BYTES;
            if (ok) {
                memcpy(&m, msg, sizeof(m));
                ok = m.seq == want.seq && m.value == want.value;
            }
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    uint64_t t1 = bench_now_ns();
    close(sv[0]);
    free(buf);
    if (bench_child_finish(&c, !ok) < 0 || !ok || have != 0)
        return -1.0;
    return (double)(t1 - t0) / (double)(n ? n : 1);
}

double moirai_bench_batch(uint64_t n)
{
    return batch_run(n, true);
}

double moirai_bench_unbatched(uint64_t n)
{
    return batch_run(n, false);
}
