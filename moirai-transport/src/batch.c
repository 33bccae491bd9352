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
 * flusher owns the deadline, a send only helps it.
 *
 * The single-sender fast path (cfg.single_sender): the one sending thread
 * owns the buffer without taking the lock, in the manner of an asymmetric
 * Dekker lock. It marks itself `active`, then checks `revoked`; another
 * thread that needs the buffer (the flusher, flush, poll, stats) takes the
 * lock, sets `revoked`, runs membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED),
 * which makes every thread of the process pass a full memory barrier, and
 * waits until `active` is clear. After the barrier either the sender saw
 * `revoked` (and takes the lock instead) or the revoker sees `active`
 * (and waits for the sender to leave): the expensive barrier is paid by
 * the rare revoker, at most once per deadline period, and the sender pays
 * two plain stores and a load per message instead of a lock and an
 * unlock. While the flusher sleeps without a deadline, `revoked` stays set,
 * so that the send that starts a batch takes the lock and can wake it. */
#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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
    bool flusher_idle; /* sleeping without a deadline (under the lock) */
    bool fast;         /* the single-sender fast path is on */
    /* The fast path's two words (see the top of this file). */
    _Atomic uint32_t active;  /* the sender is in its fast path */
    _Atomic uint32_t revoked; /* the fast path is closed */
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

/* Hands the buffer to the sink. The caller owns the buffer: it holds the
 * lock (and has revoked the fast path), or it is the single sender in its
 * fast path. On the sink's error the batch stays as it was. */
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

/* Closes the single sender's fast path and waits until the sender is out
 * of it; the lock is held. Then the caller owns the buffer. */
static void fast_close(moirai_batch_t *b)
{
    if (!b->fast)
        return;
    /* Relaxed: the membarrier below orders it before the load of
     * `active`, and before any later load of it by the sender. */
    atomic_store_explicit(&b->revoked, 1, memory_order_relaxed);
    syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
    /* Acquire: pairs with the sender's release of `active`, so that its
     * writes to the buffer and the statistics are visible here. A send
     * leaves its fast path within a few hundred nanoseconds unless it is
     * in the sink, which can block (a full ring): yield a few times, then
     * sleep, doubling from 10 us to 1 ms, so that a long-blocked sink costs
     * this thread at most a thousand wake-ups a second, not a spinning
     * CPU. (A futex wait would need the sender to check for a waiter after
     * leaving, which costs it a second store-load fence; see
     * docs/transport.md.) */
    long sleep_ns = 10000;
    for (unsigned spins = 0; atomic_load_explicit(&b->active, memory_order_acquire); spins++) {
        if (spins < 16) {
            sched_yield();
            continue;
        }
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 1000000)
            sleep_ns *= 2;
    }
}

/* Reopens the fast path, unless the flusher sleeps without a deadline
 * (then the send that starts a batch must take the lock to wake it); the
 * lock is held. */
static void fast_reopen(moirai_batch_t *b)
{
    if (b->fast) {
        /* Release: the sender's acquire of `revoked` sees what the caller
         * did to the buffer. */
        atomic_store_explicit(&b->revoked, b->flusher_idle ? 1u : 0u, memory_order_release);
    }
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
        fast_close(b);
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
                fast_reopen(b);
                moirai_condvar_wait(&b->wake, &b->lock);
                b->flusher_idle = false;
                was_empty = false;
            } else {
                was_empty = true;
                fast_reopen(b);
                moirai_condvar_wait_timed(&b->wake, &b->lock,
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
        fast_reopen(b);
        moirai_condvar_wait_timed(&b->wake, &b->lock, due);
    }
    fast_reopen(b);
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
    /* The fast path needs the expedited membarrier (Linux 4.14); without
     * it the single sender takes the lock like any sender. Registering
     * is idempotent and cheap. */
    b->fast = cfg->single_sender &&
              syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    atomic_init(&b->active, 0);
    atomic_init(&b->revoked, 0);
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
     * same as in every other flush, and revoking makes the sender's last
     * fast-path writes visible. */
    moirai_mutex_lock(&b->lock);
    fast_close(b);
    int rc = flush_locked(b, FLUSH_EXPLICIT);
    moirai_mutex_unlock(&b->lock);
    moirai_condvar_destroy(&b->wake);
    moirai_mutex_destroy(&b->lock);
    moirai_free(b->buf);
    moirai_free(b);
    return rc;
}

/* Accepts a message into the buffer and applies the policy; the caller
 * owns the buffer (see flush_locked). Returns 0 or the error of the flush
 * that had to make room. */
static int send_owned(moirai_batch_t *b, const void *msg, size_t len)
{
    size_t frame = MOIRAI_BATCH_FRAME_HEADER + len;
    /* Room first: the batch already buffered goes out whole, by size. */
    if (b->used + frame > b->max_bytes) {
        int rc = flush_locked(b, FLUSH_SIZE);
        if (rc < 0)
            return rc;
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
    return 0;
}

int moirai_batch_send(moirai_batch_t *b, const void *msg, size_t len)
{
    if (!b || (!msg && len > 0))
        return -EINVAL;
    if (len > b->max_bytes - MOIRAI_BATCH_FRAME_HEADER || len > UINT32_MAX)
        return -EMSGSIZE;

    if (b->fast) {
        /* Relaxed, then a compiler barrier: the revoker's membarrier
         * supplies the store-load ordering between `active` and
         * `revoked` (see the top of this file). */
        atomic_store_explicit(&b->active, 1, memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst);
        /* Acquire: pairs with fast_reopen()'s release. */
        if (!atomic_load_explicit(&b->revoked, memory_order_acquire)) {
            int rc = send_owned(b, msg, len);
            /* Release: a revoker's acquire of `active` sees the buffer. */
            atomic_store_explicit(&b->active, 0, memory_order_release);
            return rc;
        }
        atomic_store_explicit(&b->active, 0, memory_order_release);
    }

    moirai_mutex_lock(&b->lock);
    int rc = send_owned(b, msg, len);
    bool wake = b->count > 0 && b->flusher_idle;
    if (wake) {
        b->flusher_idle = false; /* one signal is enough */
        fast_reopen(b);          /* the flusher is on its way */
    }
    moirai_mutex_unlock(&b->lock);
    if (wake)
        moirai_condvar_signal(&b->wake);
    return rc;
}

int moirai_batch_flush(moirai_batch_t *b)
{
    if (!b)
        return -EINVAL;
    moirai_mutex_lock(&b->lock);
    fast_close(b);
    int rc = flush_locked(b, FLUSH_EXPLICIT);
    fast_reopen(b);
    moirai_mutex_unlock(&b->lock);
    return rc;
}

int moirai_batch_poll(moirai_batch_t *b, uint64_t *next)
{
    if (!b)
        return -EINVAL;
    int rc = 0;
    moirai_mutex_lock(&b->lock);
    fast_close(b);
    if (b->count > 0 && moirai_clock_now_ns() - b->oldest_ns >= b->deadline_ns)
        rc = flush_locked(b, FLUSH_DEADLINE);
    if (next)
        *next = b->count > 0 ? b->oldest_ns + b->deadline_ns : MOIRAI_DEADLINE_NEVER;
    fast_reopen(b);
    moirai_mutex_unlock(&b->lock);
    return rc;
}

int moirai_batch_stats(moirai_batch_t *b, moirai_batch_stats_t *out)
{
    if (!b || !out)
        return -EINVAL;
    moirai_mutex_lock(&b->lock);
    fast_close(b);
    *out = b->stats;
    fast_reopen(b);
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
