/* The adaptive batcher: its bounds (size, message count, flush deadline),
 * that batches grow when the consumer is behind and stay single when it
 * keeps up, that nothing is lost, duplicated or reordered with several
 * senders, the sink's errors, the receiving side's parser, and every
 * error path. No test has a timing threshold: the deadline is checked as
 * a lower bound the clock guarantees, and as an upper bound only with a
 * margin of seconds. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <moirai/core/clock.h>
#include <moirai/transport/batch.h>

#include "oom.h"

/* Scaled down under sanitizers (tests/meson.build sets the divisor). */
static unsigned scale(unsigned n)
{
    const char *s = getenv("MOIRAI_TEST_SCALE");
    unsigned d = s ? (unsigned)atoi(s) : 1;
    return d > 1 ? (n / d ? n / d : 1) : n;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* ---- a recording sink ----
 *
 * Parses each batch it gets and checks it against the bounds; problems
 * are counted, not asserted, because the sink may run on the flusher
 * thread, where a Criterion assertion cannot end the test. */

#define MAX_SENDERS 4

typedef struct message {
    uint32_t sender;
    uint32_t seq;
    uint64_t sent_ns; /* when the sender called send */
} message_t;

typedef struct recorder {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t max_bytes;      /* the bound each batch must respect */
    uint32_t max_messages; /* 0: none */
    uint64_t batches;
    uint64_t messages;
    uint64_t multi;             /* batches of more than one message */
    uint64_t problems;          /* bound exceeded, bad frame, wrong order */
    uint32_t next[MAX_SENDERS]; /* next expected seq per sender */
    uint64_t max_latency_ns;    /* arrival minus sent_ns, largest */
    uint64_t min_latency_ns;    /* and smallest */
    int fail_with;              /* the sink returns this while nonzero */
    _Atomic int busy;           /* what the busy callback answers */
} recorder_t;

static void recorder_init(recorder_t *r, size_t max_bytes, uint32_t max_messages)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->max_bytes = max_bytes;
    r->max_messages = max_messages;
    r->min_latency_ns = UINT64_MAX;
}

static void recorder_fini(recorder_t *r)
{
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
}

static int record_sink(void *arg, const void *buf, size_t len, uint32_t count)
{
    recorder_t *r = arg;
    uint64_t now = moirai_clock_now_ns();
    pthread_mutex_lock(&r->lock);
    if (r->fail_with) {
        int rc = r->fail_with;
        pthread_mutex_unlock(&r->lock);
        return rc;
    }
    if (len > r->max_bytes || count == 0 || (r->max_messages && count > r->max_messages))
        r->problems++;
    size_t off = 0;
    uint32_t seen = 0;
    const void *m;
    size_t mlen;
    while (moirai_batch_next(buf, len, &off, &m, &mlen) == 1) {
        seen++;
        message_t msg;
        if (mlen < sizeof(msg)) {
            r->problems++;
            continue;
        }
        memcpy(&msg, m, sizeof(msg));
        /* The rest of a longer message repeats its seq's low byte. */
        for (size_t i = sizeof(msg); i < mlen; i++) {
            if (((const unsigned char *)m)[i] != (unsigned char)msg.seq)
                r->problems++;
        }
        if (msg.sender >= MAX_SENDERS || msg.seq != r->next[msg.sender]) {
            r->problems++;
            continue;
        }
        r->next[msg.sender]++;
        uint64_t lat = now - msg.sent_ns;
        if (lat > r->max_latency_ns)
            r->max_latency_ns = lat;
        if (lat < r->min_latency_ns)
            r->min_latency_ns = lat;
    }
    if (off != len || seen != count)
        r->problems++;
    r->batches++;
    r->messages += seen;
    if (seen > 1)
        r->multi++;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static int record_busy(void *arg)
{
    recorder_t *r = arg;
    /* Relaxed: a hint, as a real transport's "not drained yet" is. */
    return atomic_load_explicit(&r->busy, memory_order_relaxed);
}

/* Sends message `seq` of `sender` with `extra` filler bytes. */
static int send_msg(moirai_batch_t *b, uint32_t sender, uint32_t seq, size_t extra)
{
    unsigned char buf[sizeof(message_t) + 256];
    message_t msg = {sender, seq, moirai_clock_now_ns()};
    memcpy(buf, &msg, sizeof(msg));
    memset(buf + sizeof(msg), (unsigned char)seq, extra);
    return moirai_batch_send(b, buf, sizeof(msg) + extra);
}

/* Set by the single-sender tests: make() then builds batchers with
 * cfg.single_sender (the lock-free send path). */
static bool single_sender;

static moirai_batch_t *make(recorder_t *r, size_t max_bytes, uint32_t max_messages,
                            uint64_t deadline_ns, bool manual, bool with_busy)
{
    moirai_batch_config_t cfg;
    moirai_batch_config_init(&cfg);
    cfg.single_sender = single_sender;
    cfg.sink = record_sink;
    cfg.busy = with_busy ? record_busy : NULL;
    cfg.arg = r;
    cfg.max_bytes = max_bytes;
    cfg.max_messages = max_messages;
    cfg.deadline_ns = deadline_ns;
    cfg.manual_deadline = manual;
    moirai_batch_t *b = NULL;
    cr_assert_eq(moirai_batch_create(&b, &cfg), 0);
    cr_assert_not_null(b);
    return b;
}

#define FRAME (MOIRAI_BATCH_FRAME_HEADER + sizeof(message_t))

/* ---- the policy ---- */

static void fast_consumer_gets_single_messages_body(void)
{
    recorder_t r;
    recorder_init(&r, 4096, 0);
    moirai_batch_t *b = make(&r, 4096, 0, 0, true, true);
    atomic_store(&r.busy, 0);
    unsigned n = 1000;
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(send_msg(b, 0, i, 0), 0);
    moirai_batch_stats_t s;
    cr_assert_eq(moirai_batch_stats(b, &s), 0);
    cr_assert_eq(s.messages, n);
    cr_assert_eq(s.batches, n, "a consumer that keeps up gets each message at once");
    cr_assert_eq(s.flush_idle, n);
    cr_assert_eq(s.max_batch_messages, 1);
    cr_assert_eq(s.hist[0], n);
    cr_assert_eq(moirai_batch_destroy(b), 0);
    cr_assert_eq(r.messages, n);
    cr_assert_eq(r.multi, 0);
    cr_assert_eq(r.problems, 0);
    recorder_fini(&r);
}

Test(batch, fast_consumer_gets_single_messages, .timeout = 20)
{
    fast_consumer_gets_single_messages_body();
}

Test(batch, fast_consumer_gets_single_messages_single_sender, .timeout = 20)
{
    single_sender = true;
    fast_consumer_gets_single_messages_body();
}

static void slow_consumer_gets_full_batches_body(void)
{
    /* 10 frames fit in 10 * FRAME bytes. */
    recorder_t r;
    recorder_init(&r, 10 * FRAME, 0);
    moirai_batch_t *b = make(&r, 10 * FRAME, 0, MOIRAI_BATCH_MAX_DEADLINE_NS, true, true);
    atomic_store(&r.busy, 1);
    for (unsigned i = 0; i < 1000; i++)
        cr_assert_eq(send_msg(b, 0, i, 0), 0);
    moirai_batch_stats_t s;
    moirai_batch_stats(b, &s);
    cr_assert_eq(s.batches, 100);
    cr_assert_eq(s.flush_size, 100);
    cr_assert_eq(s.flush_idle, 0);
    cr_assert_eq(s.max_batch_messages, 10);
    cr_assert_eq(s.hist[3], 100, "10 messages fall in bucket [8, 16)");
    /* The consumer catches up: the next message goes out alone. */
    atomic_store(&r.busy, 0);
    cr_assert_eq(send_msg(b, 0, 1000, 0), 0);
    moirai_batch_stats(b, &s);
    cr_assert_eq(s.flush_idle, 1);
    cr_assert_eq(moirai_batch_destroy(b), 0);
    cr_assert_eq(r.messages, 1001);
    cr_assert_eq(r.problems, 0);
    recorder_fini(&r);
}

Test(batch, slow_consumer_gets_full_batches, .timeout = 20)
{
    slow_consumer_gets_full_batches_body();
}

Test(batch, slow_consumer_gets_full_batches_single_sender, .timeout = 20)
{
    single_sender = true;
    slow_consumer_gets_full_batches_body();
}

Test(batch, message_count_bound, .timeout = 20)
{
    recorder_t r;
    recorder_init(&r, 4096, 3);
    moirai_batch_t *b = make(&r, 4096, 3, MOIRAI_BATCH_MAX_DEADLINE_NS, true, false);
    for (unsigned i = 0; i < 10; i++)
        cr_assert_eq(send_msg(b, 0, i, 0), 0);
    moirai_batch_stats_t s;
    moirai_batch_stats(b, &s);
    cr_assert_eq(s.flush_size, 3);
    cr_assert_eq(s.max_batch_messages, 3);
    /* One message is left over; flush sends it. */
    cr_assert_eq(moirai_batch_flush(b), 0);
    moirai_batch_stats(b, &s);
    cr_assert_eq(s.flush_explicit, 1);
    cr_assert_eq(s.sent_messages, 10);
    cr_assert_eq(moirai_batch_flush(b), 0, "nothing buffered: still 0");
    cr_assert_eq(moirai_batch_destroy(b), 0);
    cr_assert_eq(r.messages, 10);
    cr_assert_eq(r.problems, 0);
    recorder_fini(&r);
}

/* A consumer thread that takes batches from a queue: slow (it sleeps per
 * batch) or fast (it takes each at once). The sink puts a batch on the
 * queue, and blocks while the queue is full; the busy callback says
 * whether the queue still holds something. */
typedef struct queue_consumer {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned char *data[8];
    size_t len[8];
    unsigned head, tail; /* tail - head batches queued */
    bool done;
    long sleep_us; /* per batch taken */
    recorder_t *r;
} queue_consumer_t;

static int queue_sink(void *arg, const void *buf, size_t len, uint32_t count)
{
    (void)count;
    queue_consumer_t *q = arg;
    unsigned char *copy = malloc(len);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, buf, len);
    pthread_mutex_lock(&q->lock);
    while (q->tail - q->head == 8)
        pthread_cond_wait(&q->cond, &q->lock);
    q->data[q->tail % 8] = copy;
    q->len[q->tail % 8] = len;
    q->tail++;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

static int queue_busy(void *arg)
{
    queue_consumer_t *q = arg;
    pthread_mutex_lock(&q->lock);
    int busy = q->tail != q->head;
    pthread_mutex_unlock(&q->lock);
    return busy;
}

static void *queue_consumer_main(void *arg)
{
    queue_consumer_t *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (q->tail == q->head && !q->done)
            pthread_cond_wait(&q->cond, &q->lock);
        if (q->tail == q->head)
            break;
        unsigned char *data = q->data[q->head % 8];
        size_t len = q->len[q->head % 8];
        pthread_mutex_unlock(&q->lock);
        /* Count the messages with the recorder, then work. */
        size_t off = 0;
        const void *m;
        size_t mlen;
        uint32_t count = 0;
        while (moirai_batch_next(data, len, &off, &m, &mlen) == 1)
            count++;
        record_sink(q->r, data, len, count);
        free(data);
        if (q->sleep_us)
            sleep_us(q->sleep_us);
        pthread_mutex_lock(&q->lock);
        /* Taken only once processed: "busy" covers the work too. */
        q->head++;
        pthread_cond_broadcast(&q->cond);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

/* Runs `n` sends through a batcher over a queue consumer; returns the
 * batcher's statistics. */
static moirai_batch_stats_t run_queue(recorder_t *r, long consumer_sleep_us, long sender_gap_us,
                                      unsigned n, uint64_t deadline_ns)
{
    queue_consumer_t q;
    memset(&q, 0, sizeof(q));
    pthread_mutex_init(&q.lock, NULL);
    pthread_cond_init(&q.cond, NULL);
    q.sleep_us = consumer_sleep_us;
    q.r = r;
    pthread_t consumer;
    cr_assert_eq(pthread_create(&consumer, NULL, queue_consumer_main, &q), 0);

    moirai_batch_config_t cfg;
    moirai_batch_config_init(&cfg);
    cfg.sink = queue_sink;
    cfg.busy = queue_busy;
    cfg.arg = &q;
    cfg.max_bytes = r->max_bytes;
    cfg.deadline_ns = deadline_ns;
    moirai_batch_t *b;
    cr_assert_eq(moirai_batch_create(&b, &cfg), 0);
    for (unsigned i = 0; i < n; i++) {
        cr_assert_eq(send_msg(b, 0, i, 0), 0);
        if (sender_gap_us)
            sleep_us(sender_gap_us);
    }
    /* destroy flushes what is left; the figures below are the recorder's,
     * which counts every batch the consumer took, that last one too. */
    cr_assert_eq(moirai_batch_destroy(b), 0);
    pthread_mutex_lock(&q.lock);
    q.done = true;
    pthread_cond_broadcast(&q.cond);
    pthread_mutex_unlock(&q.lock);
    pthread_join(consumer, NULL);
    pthread_mutex_destroy(&q.lock);
    pthread_cond_destroy(&q.cond);
    moirai_batch_stats_t s;
    memset(&s, 0, sizeof(s));
    s.batches = r->batches;
    s.sent_messages = r->messages;
    s.flush_idle = r->batches - r->multi; /* single-message batches */
    return s;
}

Test(batch, batches_grow_under_load, .timeout = 60)
{
    recorder_t r;
    recorder_init(&r, 1024, 0);
    unsigned n = scale(20000);
    moirai_batch_stats_t s = run_queue(&r, 200, 0, n, 200000);
    cr_assert_eq(r.problems, 0);
    cr_assert_eq(s.sent_messages, n, "nothing lost");
    /* A consumer that sleeps 200 us per batch cannot take 20 000 single
     * messages in the time the sender produces them: batches must be
     * much larger than 1 on average. */
    cr_assert_geq(s.sent_messages, 4 * s.batches, "%llu messages in %llu batches",
                  (unsigned long long)s.sent_messages, (unsigned long long)s.batches);
    recorder_fini(&r);
}

Test(batch, fast_consumer_mostly_single, .timeout = 60)
{
    recorder_t r;
    recorder_init(&r, 1024, 0);
    /* The sender pauses 1 ms between messages; a consumer that takes each
     * batch at once has drained the queue long before the next send. The
     * deadline is the longest allowed, so only the idle-consumer rule can
     * send a message on its own. */
    unsigned n = 100;
    moirai_batch_stats_t s = run_queue(&r, 0, 1000, n, MOIRAI_BATCH_MAX_DEADLINE_NS);
    cr_assert_eq(r.problems, 0);
    cr_assert_eq(s.sent_messages, n);
    cr_assert_gt(2 * s.flush_idle, s.batches, "most batches are single messages (%llu of %llu)",
                 (unsigned long long)s.flush_idle, (unsigned long long)s.batches);
    recorder_fini(&r);
}

/* ---- the deadline ---- */

static void flusher_meets_deadline_body(void)
{
    /* No busy callback: the consumer counts as always behind, so only the
     * deadline can send a lone message. */
    recorder_t r;
    recorder_init(&r, 4096, 0);
    const uint64_t deadline = 2000000; /* 2 ms */
    moirai_batch_t *b = make(&r, 4096, 0, deadline, false, false);
    for (unsigned i = 0; i < 5; i++) {
        cr_assert_eq(send_msg(b, 0, i, 0), 0);
        /* Wait, with a generous limit, until the flusher delivered it. */
        uint64_t limit = moirai_clock_now_ns() + UINT64_C(10000000000);
        pthread_mutex_lock(&r.lock);
        while (r.messages < i + 1 && moirai_clock_now_ns() < limit) {
            pthread_mutex_unlock(&r.lock);
            sleep_us(500);
            pthread_mutex_lock(&r.lock);
        }
        uint64_t got = r.messages;
        pthread_mutex_unlock(&r.lock);
        cr_assert_eq(got, i + 1, "the flusher delivers a lone message by itself");
    }
    moirai_batch_stats_t s;
    moirai_batch_stats(b, &s);
    cr_assert_eq(s.flush_deadline, 5);
    cr_assert_eq(s.batches, 5);
    /* Never early: the clock guarantees this bound exactly. */
    cr_assert_geq(r.min_latency_ns, deadline);
    cr_assert_geq(s.max_wait_ns, deadline);
    /* Never much later: deadline plus scheduling slack, with seconds of
     * margin (a wide property, not a timing threshold). */
    cr_assert_lt(r.max_latency_ns, deadline + UINT64_C(2000000000));
    cr_assert_eq(moirai_batch_destroy(b), 0);
    cr_assert_eq(r.problems, 0);
    recorder_fini(&r);
}

Test(batch, flusher_meets_deadline, .timeout = 60)
{
    flusher_meets_deadline_body();
}

Test(batch, flusher_meets_deadline_single_sender, .timeout = 60)
{
    single_sender = true;
    flusher_meets_deadline_body();
}

static void manual_poll_names_and_meets_deadline_body(void)
{
    recorder_t r;
    recorder_init(&r, 4096, 0);
    const uint64_t deadline = 1000000; /* 1 ms */
    moirai_batch_t *b = make(&r, 4096, 0, deadline, true, false);
    uint64_t next = 0;
    cr_assert_eq(moirai_batch_poll(b, &next), 0);
    cr_assert_eq(next, MOIRAI_DEADLINE_NEVER, "nothing buffered");
    uint64_t before = moirai_clock_now_ns();
    cr_assert_eq(send_msg(b, 0, 0, 0), 0);
    uint64_t after = moirai_clock_now_ns();
    cr_assert_eq(moirai_batch_poll(b, &next), 0);
    moirai_batch_stats_t s;
    moirai_batch_stats(b, &s);
    if (moirai_clock_now_ns() < before + deadline)
        cr_assert_eq(s.batches, 0, "not due yet, not sent");
    cr_assert_geq(next, before + deadline);
    cr_assert_leq(next, after + deadline);
    while (moirai_clock_now_ns() < next)
        sleep_us(200);
    cr_assert_eq(moirai_batch_poll(b, &next), 0);
    moirai_batch_stats(b, &s);
    cr_assert_eq(s.flush_deadline, 1);
    cr_assert_eq(next, MOIRAI_DEADLINE_NEVER);
    cr_assert_eq(moirai_batch_poll(b, NULL), 0);
    /* A send whose batch is overdue sends it at once, flusher or not. */
    cr_assert_eq(send_msg(b, 0, 1, 0), 0);
    sleep_us(1500);
    cr_assert_eq(send_msg(b, 0, 2, 0), 0);
    moirai_batch_stats(b, &s);
    cr_assert_eq(s.flush_deadline, 2);
    cr_assert_eq(s.sent_messages, 3);
    cr_assert_eq(moirai_batch_destroy(b), 0);
    cr_assert_eq(r.messages, 3);
    cr_assert_eq(r.problems, 0);
    recorder_fini(&r);
}

Test(batch, manual_poll_names_and_meets_deadline, .timeout = 20)
{
    manual_poll_names_and_meets_deadline_body();
}

Test(batch, manual_poll_names_and_meets_deadline_single_sender, .timeout = 20)
{
    single_sender = true;
    manual_poll_names_and_meets_deadline_body();
}

/* ---- several senders: nothing lost, nothing reordered, bounds kept ---- */

typedef struct sender_arg {
    moirai_batch_t *b;
    recorder_t *r;
    uint32_t id;
    unsigned n;
    int errors;
} sender_arg_t;

static void *sender_main(void *arg)
{
    sender_arg_t *a = arg;
    unsigned seed = a->id * 7919u + 1;
    for (unsigned i = 0; i < a->n; i++) {
        /* Varying lengths, and the consumer's state changing under the
         * senders, so every flush reason happens. */
        size_t extra = (size_t)(rand_r(&seed) % 100);
        if (i % 64 == 0)
            atomic_store_explicit(&a->r->busy, (int)(rand_r(&seed) & 1), memory_order_relaxed);
        if (send_msg(a->b, a->id, i, extra) != 0)
            a->errors++;
    }
    return NULL;
}

Test(batch, senders_nothing_lost_or_reordered, .timeout = 60)
{
    recorder_t r;
    recorder_init(&r, 256, 7);
    moirai_batch_t *b = make(&r, 256, 7, 50000, false, true);
    unsigned n = scale(20000);
    pthread_t t[MAX_SENDERS];
    sender_arg_t a[MAX_SENDERS];
    for (uint32_t i = 0; i < MAX_SENDERS; i++) {
        a[i] = (sender_arg_t){b, &r, i, n, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, sender_main, &a[i]), 0);
    }
    for (uint32_t i = 0; i < MAX_SENDERS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(a[i].errors, 0);
    }
    cr_assert_eq(moirai_batch_flush(b), 0);
    moirai_batch_stats_t s;
    moirai_batch_stats(b, &s);
    cr_assert_eq(s.messages, (uint64_t)MAX_SENDERS * n);
    cr_assert_eq(s.sent_messages, s.messages);
    cr_assert_eq(s.batches, s.flush_idle + s.flush_size + s.flush_deadline + s.flush_explicit);
    cr_assert_leq(s.max_batch_messages, 7);
    uint64_t hist_total = 0;
    for (int i = 0; i < MOIRAI_BATCH_HIST_BUCKETS; i++)
        hist_total += s.hist[i];
    cr_assert_eq(hist_total, s.batches);
    cr_assert_eq(moirai_batch_destroy(b), 0);
    cr_assert_eq(r.problems, 0, "a bound exceeded, a bad frame, or a message out of order");
    cr_assert_eq(r.messages, (uint64_t)MAX_SENDERS * n);
    for (uint32_t i = 0; i < MAX_SENDERS; i++)
        cr_assert_eq(r.next[i], n, "sender %u: every message exactly once, in order", i);
    recorder_fini(&r);
}

Test(batch, largest_message_fits_alone, .timeout = 20)
{
    recorder_t r;
    recorder_init(&r, 64, 0);
    moirai_batch_t *b = make(&r, 64, 0, 0, true, false);
    size_t most = 64 - MOIRAI_BATCH_FRAME_HEADER - sizeof(message_t);
    cr_assert_eq(send_msg(b, 0, 0, most), 0, "a message filling the batch exactly");
    cr_assert_eq(send_msg(b, 0, 1, most), 0);
    cr_assert_eq(send_msg(b, 0, 2, most + 1), -EMSGSIZE);
    moirai_batch_stats_t s;
    moirai_batch_stats(b, &s);
    cr_assert_eq(s.messages, 2, "the refused message changed nothing");
    cr_assert_eq(s.flush_size, 2);
    cr_assert_eq(moirai_batch_send(b, NULL, 0), 0, "an empty message is a message");
    cr_assert_eq(moirai_batch_destroy(b), 0);
    cr_assert_eq(r.batches, 3);
    recorder_fini(&r);
}

/* ---- the sink's errors ---- */

static void sink_error_keeps_the_batch_body(void)
{
    recorder_t r;
    recorder_init(&r, 2 * FRAME, 0);
    moirai_batch_t *b = make(&r, 2 * FRAME, 0, MOIRAI_BATCH_MAX_DEADLINE_NS, true, true);
    atomic_store(&r.busy, 0);
    r.fail_with = -EIO;
    /* The idle flush fails: the message stays, accepted. */
    cr_assert_eq(send_msg(b, 0, 0, 0), 0);
    moirai_batch_stats_t s;
    moirai_batch_stats(b, &s);
    cr_assert_eq(s.messages, 1);
    cr_assert_eq(s.sink_errors, 1);
    cr_assert_eq(s.batches, 0);
    cr_assert_eq(moirai_batch_flush(b), -EIO);
    /* Room is needed for a third message: the full batch must go out
     * first, the sink refuses, the new message is not accepted. */
    cr_assert_eq(send_msg(b, 0, 1, 0), 0); /* fills the batch; its flush fails */
    cr_assert_eq(send_msg(b, 0, 2, 0), -EIO);
    moirai_batch_stats(b, &s);
    cr_assert_eq(s.messages, 2, "the refused message was not accepted");
    uint64_t next = 0;
    atomic_store(&r.busy, 1);
    cr_assert_eq(moirai_batch_poll(b, &next), 0, "not due: no sink call");
    /* The sink recovers: everything accepted arrives once, in order. */
    r.fail_with = 0;
    cr_assert_eq(moirai_batch_flush(b), 0);
    cr_assert_eq(send_msg(b, 0, 2, 0), 0);
    cr_assert_eq(moirai_batch_flush(b), 0);
    cr_assert_eq(r.messages, 3);
    cr_assert_eq(r.next[0], 3);
    cr_assert_eq(r.problems, 0);
    /* destroy reports a failing last flush. */
    cr_assert_eq(send_msg(b, 0, 3, 0), 0);
    r.fail_with = -EPIPE;
    cr_assert_eq(moirai_batch_destroy(b), -EPIPE);
    recorder_fini(&r);
}

Test(batch, sink_error_keeps_the_batch, .timeout = 20)
{
    sink_error_keeps_the_batch_body();
}

Test(batch, sink_error_keeps_the_batch_single_sender, .timeout = 20)
{
    single_sender = true;
    sink_error_keeps_the_batch_body();
}

static int failing_sink(void *arg, const void *buf, size_t len, uint32_t count)
{
    (void)buf;
    (void)len;
    (void)count;
    atomic_fetch_add_explicit((_Atomic int *)arg, 1, memory_order_relaxed);
    return -EIO;
}

Test(batch, flusher_backs_off_a_failing_sink, .timeout = 20)
{
    _Atomic int calls = 0;
    moirai_batch_config_t cfg;
    moirai_batch_config_init(&cfg);
    cfg.sink = failing_sink;
    cfg.arg = (void *)&calls;
    cfg.deadline_ns = 10000000; /* 10 ms */
    moirai_batch_t *b;
    cr_assert_eq(moirai_batch_create(&b, &cfg), 0);
    cr_assert_eq(moirai_batch_send(b, "x", 1), 0);
    sleep_us(200000);
    /* 200 ms with a 10 ms deadline: at most about 20 retries, one per
     * deadline; a flusher looping on the error would make thousands. */
    int c = atomic_load(&calls);
    cr_assert_geq(c, 1);
    cr_assert_lt(c, 200);
    cr_assert_eq(moirai_batch_destroy(b), -EIO);
}

/* One sender on the lock-free path while another thread flushes and reads
 * the statistics all along, and the flusher enforces a short deadline:
 * every access to the buffer from those threads goes through the
 * membarrier hand-over. */
typedef struct meddler_arg {
    moirai_batch_t *b;
    _Atomic int stop;
    _Atomic unsigned rounds;
    int errors;
} meddler_arg_t;

static void *meddler_main(void *arg)
{
    meddler_arg_t *m = arg;
    while (!atomic_load_explicit(&m->stop, memory_order_relaxed)) {
        moirai_batch_stats_t s;
        if (moirai_batch_stats(m->b, &s) != 0 || s.sent_messages > s.messages)
            m->errors++;
        if (moirai_batch_flush(m->b) != 0)
            m->errors++;
        atomic_fetch_add(&m->rounds, 1);
        sleep_us(50);
    }
    return NULL;
}

Test(batch, single_sender_with_other_threads, .timeout = 60)
{
    single_sender = true;
    recorder_t r;
    recorder_init(&r, 256, 0);
    moirai_batch_t *b = make(&r, 256, 0, 50000, false, true);
    meddler_arg_t m = {.b = b, .errors = 0};
    atomic_init(&m.stop, 0);
    atomic_init(&m.rounds, 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, meddler_main, &m), 0);
    /* The sender starts only once the meddler runs, so the two overlap
     * even when a scaled-down send finishes within one time slice. */
    while (atomic_load(&m.rounds) == 0)
        sched_yield();
    sender_arg_t a = {b, &r, 0, scale(300000), 0};
    sender_main(&a);
    /* And it stops only after two more rounds, one of them wholly after
     * the last send. */
    unsigned done = atomic_load(&m.rounds);
    while (atomic_load(&m.rounds) < done + 2)
        sched_yield();
    atomic_store(&m.stop, 1);
    pthread_join(t, NULL);
    cr_assert_eq(a.errors, 0);
    cr_assert_eq(m.errors, 0);
    cr_assert_eq(moirai_batch_flush(b), 0);
    moirai_batch_stats_t s;
    moirai_batch_stats(b, &s);
    cr_assert_eq(s.messages, a.n);
    cr_assert_eq(s.sent_messages, a.n);
    cr_assert_eq(s.batches, s.flush_idle + s.flush_size + s.flush_deadline + s.flush_explicit);
    cr_assert_eq(moirai_batch_destroy(b), 0);
    cr_assert_eq(r.problems, 0, "a bound exceeded, a bad frame, or a message out of order");
    cr_assert_eq(r.messages, a.n);
    cr_assert_eq(r.next[0], a.n, "every message exactly once, in order");
    recorder_fini(&r);
}

/* ---- the parser ---- */

Test(batch, next_walks_and_distrusts, .timeout = 10)
{
    unsigned char buf[32];
    uint32_t n = 3;
    memcpy(buf, &n, 4);
    memcpy(buf + 4, "abc", 3);
    n = 0;
    memcpy(buf + 7, &n, 4);
    n = 0xffffffffu; /* a hostile length */
    memcpy(buf + 11, &n, 4);
    size_t off = 0;
    const void *m;
    size_t len;
    cr_assert_eq(moirai_batch_next(buf, 15, &off, &m, &len), 1);
    cr_assert_eq(len, 3);
    cr_assert_eq(memcmp(m, "abc", 3), 0);
    cr_assert_eq(off, 7);
    cr_assert_eq(moirai_batch_next(buf, 15, &off, &m, &len), 1);
    cr_assert_eq(len, 0);
    cr_assert_eq(off, 11);
    cr_assert_eq(moirai_batch_next(buf, 15, &off, &m, &len), 0, "a frame past the end");
    cr_assert_eq(off, 11, "the offset stays at the incomplete frame");
    cr_assert_eq(moirai_batch_next(buf, 13, &off, &m, &len), 0, "a partial header");
    cr_assert_eq(moirai_batch_next(NULL, 0, &(size_t){0}, &m, &len), 0, "empty");
    cr_assert_eq(moirai_batch_next(buf, 15, NULL, &m, &len), -EINVAL);
    cr_assert_eq(moirai_batch_next(buf, 15, &off, NULL, &len), -EINVAL);
    cr_assert_eq(moirai_batch_next(buf, 15, &off, &m, NULL), -EINVAL);
    cr_assert_eq(moirai_batch_next(NULL, 4, &off, &m, &len), -EINVAL);
    off = 16;
    cr_assert_eq(moirai_batch_next(buf, 15, &off, &m, &len), -EINVAL, "offset past the end");
}

/* ---- bad input, allocation failure ---- */

static int dummy_sink(void *arg, const void *buf, size_t len, uint32_t count)
{
    (void)arg;
    (void)buf;
    (void)len;
    (void)count;
    return 0;
}

Test(batch, create_rejects_bad_config, .timeout = 10)
{
    moirai_batch_config_t cfg;
    moirai_batch_config_init(&cfg);
    moirai_batch_t *b = (moirai_batch_t *)&cfg; /* must stay untouched */
    moirai_batch_t *const sentinel = b;
    cr_assert_eq(moirai_batch_create(&b, &cfg), -EINVAL, "no sink");
    cfg.sink = dummy_sink;
    cr_assert_eq(moirai_batch_create(NULL, &cfg), -EINVAL);
    cr_assert_eq(moirai_batch_create(&b, NULL), -EINVAL);
    cfg.max_bytes = MOIRAI_BATCH_MIN_MAX_BYTES - 1;
    cr_assert_eq(moirai_batch_create(&b, &cfg), -EINVAL);
    cfg.max_bytes = (size_t)MOIRAI_BATCH_MAX_MAX_BYTES + 1;
    cr_assert_eq(moirai_batch_create(&b, &cfg), -EINVAL);
    cfg.max_bytes = 0;
    cfg.deadline_ns = MOIRAI_BATCH_MAX_DEADLINE_NS + 1;
    cr_assert_eq(moirai_batch_create(&b, &cfg), -EINVAL);
    cr_assert_eq(b, sentinel);
    /* The bounds themselves are accepted. */
    cfg.max_bytes = MOIRAI_BATCH_MIN_MAX_BYTES;
    cfg.deadline_ns = MOIRAI_BATCH_MAX_DEADLINE_NS;
    cr_assert_eq(moirai_batch_create(&b, &cfg), 0);
    cr_assert_eq(moirai_batch_send(b, "abcd", 4), 0);
    cr_assert_eq(moirai_batch_send(b, "abcde", 5), -EMSGSIZE);
    cr_assert_eq(moirai_batch_destroy(b), 0);
    moirai_batch_config_init(NULL); /* ignored */
}

Test(batch, calls_reject_null, .timeout = 10)
{
    moirai_batch_config_t cfg;
    moirai_batch_config_init(&cfg);
    cfg.sink = dummy_sink;
    cfg.manual_deadline = true;
    moirai_batch_t *b;
    cr_assert_eq(moirai_batch_create(&b, &cfg), 0);
    moirai_batch_stats_t s;
    cr_assert_eq(moirai_batch_send(NULL, "x", 1), -EINVAL);
    cr_assert_eq(moirai_batch_send(b, NULL, 1), -EINVAL);
    cr_assert_eq(moirai_batch_flush(NULL), -EINVAL);
    cr_assert_eq(moirai_batch_poll(NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_batch_stats(NULL, &s), -EINVAL);
    cr_assert_eq(moirai_batch_stats(b, NULL), -EINVAL);
    cr_assert_eq(moirai_batch_stats(b, &s), 0);
    cr_assert_eq(s.messages, 0, "the refused sends changed nothing");
    cr_assert_eq(moirai_batch_destroy(NULL), 0);
    cr_assert_eq(moirai_batch_destroy(b), 0);
}

static moirai_batch_t *oom_batch;

static int create_op(void *ctx)
{
    (void)ctx;
    moirai_batch_config_t cfg;
    moirai_batch_config_init(&cfg);
    cfg.sink = dummy_sink;
    return moirai_batch_create(&oom_batch, &cfg);
}

static void create_unchanged(void *ctx, long n)
{
    (void)ctx;
    cr_assert_null(oom_batch, "failure %ld: *out untouched", n);
}

Test(batch, create_out_of_memory, .timeout = 20)
{
    oom_batch = NULL;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(create_op, create_unchanged, NULL);
    moirai_test_oom_uninstall();
    cr_assert_eq(failures, 2, "the batcher and its buffer");
    cr_assert_not_null(oom_batch);
    cr_assert_eq(moirai_batch_send(oom_batch, "x", 1), 0);
    cr_assert_eq(moirai_batch_destroy(oom_batch), 0);
}

/* A closer that finds the single sender inside a sink that blocks waits
 * for it to leave: the statistics it reads include that sink call. */
typedef struct slow_sink {
    _Atomic int in_sink;
    _Atomic int calls;
    moirai_batch_t *b;
    moirai_batch_stats_t seen; /* what the reader got */
} slow_sink_t;

static int blocking_sink(void *arg, const void *buf, size_t len, uint32_t count)
{
    (void)buf;
    (void)len;
    (void)count;
    slow_sink_t *k = arg;
    atomic_store(&k->in_sink, 1);
    sleep_us(30000);
    atomic_fetch_add(&k->calls, 1);
    return 0;
}

static int never_busy(void *arg)
{
    (void)arg;
    return 0;
}

/* Waits until the sender is inside the sink, then reads the statistics. */
static void *stats_reader(void *arg)
{
    slow_sink_t *k = arg;
    while (!atomic_load(&k->in_sink))
        sleep_us(100);
    moirai_batch_stats(k->b, &k->seen);
    return NULL;
}

Test(batch, single_sender_closer_waits_for_sink, .timeout = 30)
{
    slow_sink_t k;
    memset(&k, 0, sizeof(k));
    atomic_init(&k.in_sink, 0);
    atomic_init(&k.calls, 0);
    moirai_batch_config_t cfg;
    moirai_batch_config_init(&cfg);
    cfg.sink = blocking_sink;
    cfg.busy = never_busy;
    cfg.arg = &k;
    cfg.manual_deadline = true;
    cfg.single_sender = true;
    cr_assert_eq(moirai_batch_create(&k.b, &cfg), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, stats_reader, &k), 0);
    /* The consumer is idle: the message goes to the sink at once, from the
     * lock-free path, and the sink blocks 30 ms. */
    cr_assert_eq(moirai_batch_send(k.b, "abc", 3), 0);
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&k.calls), 1);
    /* The reader asked while the send was inside the sink; it could read
     * only after the send left, so it sees the batch counted. */
    cr_assert_eq(k.seen.messages, 1);
    cr_assert_eq(k.seen.batches, 1);
    cr_assert_eq(k.seen.flush_idle, 1);
    cr_assert_eq(moirai_batch_destroy(k.b), 0);
}
