/* moirai-transport: the adaptive batcher (see moirai/transport/batch.h and
 * docs/transport.md, "Adaptive batching").
 *
 * One lock (a moirai_mutex_t, so a sending fiber parks only itself) guards
 * the buffer, the statistics and the flusher's state; the sink is called
 * with it held, which serializes the sink's calls and keeps the batches in
 * the order their messages were accepted. The flusher thread sleeps on a
 * condition variable: without a deadline while the buffer is empty (idle
 * means idle, one deadline period after the last message), until the
 * oldest message's deadline otherwise. A send that leaves a message
 * buffered while the flusher sleeps without a deadline signals it once, so
 * that it arms the deadline. The send path reads the clock only when a
 * batch starts and when it asks the consumer (see the policy below): the
 * flusher owns the deadline, a send only helps it. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/sync/condvar.h>
#include <moirai/sync/mutex.h>
#include <moirai/transport/batch.h>

typedef enum flush_reason {
    FLUSH_IDLE,
    FLUSH_SIZE,
    FLUSH_DEADLINE,
    FLUSH_EXPLICIT,
} flush_reason_t;

struct moirai_batch {
    moirai_mutex_t lock;
    moirai_condvar_t wake; /* the flusher sleeps here */

    moirai_batch_sink_cb sink;
    moirai_batch_busy_cb busy;
    void *arg;
    size_t max_bytes;
    uint32_t max_messages;
    uint64_t deadline_ns;

    unsigned char *buf; /* max_bytes long */
    size_t used;        /* bytes buffered */
    uint32_t count;     /* messages buffered */
    uint64_t oldest_ns; /* when the first buffered message was accepted */

    bool has_flusher;
    bool flusher_idle; /* sleeping without a deadline */
    bool stop;
    pthread_t flusher;

    moirai_batch_stats_t stats;
};

void moirai_batch_config_init(moirai_batch_config_t *cfg)
{
    if (cfg)
        memset(cfg, 0, sizeof(*cfg));
}

/* The histogram bucket of a batch of `n` (>= 1) messages: floor(log2 n),
 * the last bucket taking the rest. */
static unsigned hist_bucket(uint32_t n)
{
    unsigned i = 31u - (unsigned)__builtin_clz(n);
    return i < MOIRAI_BATCH_HIST_BUCKETS ? i : MOIRAI_BATCH_HIST_BUCKETS - 1;
}

/* Hands the buffer to the sink; the lock is held. On the sink's error the
 * batch stays as it was. */
static int flush_locked(moirai_batch_t *b, flush_reason_t why)
{
    if (b->count == 0)
        return 0;
    uint64_t now = moirai_clock_now_ns();
    int rc = b->sink(b->arg, b->buf, b->used, b->count);
    if (rc < 0) {
        b->stats.sink_errors++;
        return rc;
    }
    moirai_batch_stats_t *s = &b->stats;
    uint64_t waited = now > b->oldest_ns ? now - b->oldest_ns : 0;
    if (waited > s->max_wait_ns)
        s->max_wait_ns = waited;
    s->batches++;
    s->sent_messages += b->count;
    if (b->count > s->max_batch_messages)
        s->max_batch_messages = b->count;
    s->hist[hist_bucket(b->count)]++;
    switch (why) {
    case FLUSH_IDLE:
        s->flush_idle++;
        break;
    case FLUSH_SIZE:
        s->flush_size++;
        break;
    case FLUSH_DEADLINE:
        s->flush_deadline++;
        break;
    case FLUSH_EXPLICIT:
        s->flush_explicit++;
        break;
    }
    b->used = 0;
    b->count = 0;
    return 0;
}

/* The flusher thread: sends a batch when its oldest message reaches the
 * deadline. After a sink error it retries one deadline later, so that a
 * failing sink is not called in a loop. */
static void *flusher_main(void *arg)
{
    moirai_batch_t *b = arg;
    /* The default timer slack (50 us) would add up to that much to every
     * deadline; the bound is the point of this thread. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    moirai_mutex_lock(&b->lock);
    uint64_t retry_at = 0;
    bool was_empty = false;
    while (!b->stop) {
        if (b->count == 0) {
            /* Found empty: wait one more deadline period before sleeping
             * without one. In a stream, batches go out by size and new
             * ones start all the time; a flusher that slept without a
             * deadline at every empty moment would need a wake (a futex
             * call, and a thread switch on a busy CPU) per batch. This
             * way it wakes at most once per deadline while messages flow,
             * and sleeps for good one period after they stop. */
            if (was_empty) {
                b->flusher_idle = true;
                moirai_condvar_wait(&b->wake, &b->lock);
                b->flusher_idle = false;
                was_empty = false;
            } else {
                was_empty = true;
                moirai_condvar_timedwait(&b->wake, &b->lock,
                                         moirai_clock_now_ns() + b->deadline_ns);
            }
            continue;
        }
        was_empty = false;
        uint64_t due = b->oldest_ns + b->deadline_ns;
        if (retry_at > due)
            due = retry_at;
        if (moirai_clock_now_ns() >= due) {
            retry_at = 0;
            if (flush_locked(b, FLUSH_DEADLINE) < 0)
                retry_at = moirai_clock_now_ns() + b->deadline_ns;
            continue;
        }
        moirai_condvar_timedwait(&b->wake, &b->lock, due);
    }
    moirai_mutex_unlock(&b->lock);
    return NULL;
}

int moirai_batch_create(moirai_batch_t **out, const moirai_batch_config_t *cfg)
{
    if (!out || !cfg || !cfg->sink)
        return -EINVAL;
    size_t max_bytes = cfg->max_bytes ? cfg->max_bytes : MOIRAI_BATCH_DEFAULT_MAX_BYTES;
    uint64_t deadline = cfg->deadline_ns ? cfg->deadline_ns : MOIRAI_BATCH_DEFAULT_DEADLINE_NS;
    if (max_bytes < MOIRAI_BATCH_MIN_MAX_BYTES || max_bytes > MOIRAI_BATCH_MAX_MAX_BYTES ||
        deadline > MOIRAI_BATCH_MAX_DEADLINE_NS)
        return -EINVAL;

    moirai_batch_t *b = moirai_calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->buf = moirai_malloc(max_bytes);
    if (!b->buf) {
        moirai_free(b);
        return -ENOMEM;
    }
    moirai_mutex_init(&b->lock);
    moirai_condvar_init(&b->wake);
    b->sink = cfg->sink;
    b->busy = cfg->busy;
    b->arg = cfg->arg;
    b->max_bytes = max_bytes;
    b->max_messages = cfg->max_messages ? cfg->max_messages : UINT32_MAX;
    b->deadline_ns = deadline;
    if (!cfg->manual_deadline) {
        if (pthread_create(&b->flusher, NULL, flusher_main, b) != 0) {
            moirai_condvar_destroy(&b->wake);
            moirai_mutex_destroy(&b->lock);
            moirai_free(b->buf);
            moirai_free(b);
            return -EAGAIN;
        }
        b->has_flusher = true;
    }
    *out = b;
    return 0;
}

int moirai_batch_destroy(moirai_batch_t *b)
{
    if (!b)
        return 0;
    if (b->has_flusher) {
        moirai_mutex_lock(&b->lock);
        b->stop = true;
        moirai_mutex_unlock(&b->lock);
        moirai_condvar_signal(&b->wake);
        pthread_join(b->flusher, NULL);
    }
    /* No other thread uses `b` now; the lock keeps the sink's view the
     * same as in every other flush. */
    moirai_mutex_lock(&b->lock);
    int rc = flush_locked(b, FLUSH_EXPLICIT);
    moirai_mutex_unlock(&b->lock);
    moirai_condvar_destroy(&b->wake);
    moirai_mutex_destroy(&b->lock);
    moirai_free(b->buf);
    moirai_free(b);
    return rc;
}

int moirai_batch_send(moirai_batch_t *b, const void *msg, size_t len)
{
    if (!b || (!msg && len > 0))
        return -EINVAL;
    if (len > b->max_bytes - MOIRAI_BATCH_FRAME_HEADER || len > UINT32_MAX)
        return -EMSGSIZE;
    size_t frame = MOIRAI_BATCH_FRAME_HEADER + len;

    moirai_mutex_lock(&b->lock);
    /* Room first: the batch already buffered goes out whole, by size. */
    if (b->used + frame > b->max_bytes) {
        int rc = flush_locked(b, FLUSH_SIZE);
        if (rc < 0) {
            moirai_mutex_unlock(&b->lock);
            return rc;
        }
    }
    uint32_t len32 = (uint32_t)len;
    memcpy(b->buf + b->used, &len32, sizeof(len32));
    if (len > 0)
        memcpy(b->buf + b->used + MOIRAI_BATCH_FRAME_HEADER, msg, len);
    b->used += frame;
    if (b->count++ == 0)
        b->oldest_ns = moirai_clock_now_ns();
    b->stats.messages++;
    b->stats.bytes += len;

    /* The policy (docs/transport.md): full batches go out; otherwise the
     * message goes out at once if the consumer has caught up, and waits
     * for company if it has not, up to the deadline. The consumer is asked
     * when a batch starts and each time it doubles (1, 2, 4, 8, ...
     * messages), so that a busy callback that costs a system call (a
     * socket's SIOCOUTQ) is paid a few times per batch, not per message.
     * A sink error here leaves the message buffered and accepted; the next
     * flush retries. */
    bool ask = (b->count & (b->count - 1)) == 0;
    if (b->count >= b->max_messages || b->used + MOIRAI_BATCH_FRAME_HEADER > b->max_bytes)
        flush_locked(b, FLUSH_SIZE);
    else if (ask && b->busy && !b->busy(b->arg))
        flush_locked(b, FLUSH_IDLE);
    else if (ask && b->count > 1 && moirai_clock_now_ns() - b->oldest_ns >= b->deadline_ns)
        flush_locked(b, FLUSH_DEADLINE);
    bool wake = b->count > 0 && b->flusher_idle;
    if (wake)
        b->flusher_idle = false; /* one signal is enough */
    moirai_mutex_unlock(&b->lock);
    if (wake)
        moirai_condvar_signal(&b->wake);
    return 0;
}

int moirai_batch_flush(moirai_batch_t *b)
{
    if (!b)
        return -EINVAL;
    moirai_mutex_lock(&b->lock);
    int rc = flush_locked(b, FLUSH_EXPLICIT);
    moirai_mutex_unlock(&b->lock);
    return rc;
}

int moirai_batch_poll(moirai_batch_t *b, uint64_t *next)
{
    if (!b)
        return -EINVAL;
    int rc = 0;
    moirai_mutex_lock(&b->lock);
    if (b->count > 0 && moirai_clock_now_ns() - b->oldest_ns >= b->deadline_ns)
        rc = flush_locked(b, FLUSH_DEADLINE);
    if (next)
        *next = b->count > 0 ? b->oldest_ns + b->deadline_ns : MOIRAI_DEADLINE_NEVER;
    moirai_mutex_unlock(&b->lock);
    return rc;
}

int moirai_batch_stats(moirai_batch_t *b, moirai_batch_stats_t *out)
{
    if (!b || !out)
        return -EINVAL;
    moirai_mutex_lock(&b->lock);
    *out = b->stats;
    moirai_mutex_unlock(&b->lock);
    return 0;
}

int moirai_batch_next(const void *buf, size_t len, size_t *offset, const void **msg,
                      size_t *msg_len)
{
    if (!offset || !msg || !msg_len || (!buf && len > 0) || *offset > len)
        return -EINVAL;
    size_t off = *offset;
    if (len - off < MOIRAI_BATCH_FRAME_HEADER)
        return 0;
    const unsigned char *p = buf;
    uint32_t n;
    memcpy(&n, p + off, sizeof(n));
    /* Compared against what is left, never added to the offset first: a
     * hostile length cannot overflow past the buffer. */
    if (n > len - off - MOIRAI_BATCH_FRAME_HEADER)
        return 0;
    *msg = p + off + MOIRAI_BATCH_FRAME_HEADER;
    *msg_len = n;
    *offset = off + MOIRAI_BATCH_FRAME_HEADER + n;
    return 1;
}
