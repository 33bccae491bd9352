/* The transports' collectors: channels, shared-memory ring handles and
 * batchers in the Prometheus text format, parsed back and compared with
 * their stats read directly. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <moirai/transport/batch.h>
#include <moirai/transport/chan.h>
#include <moirai/transport/metrics.h>
#include <moirai/transport/ring.h>

#include "prom_test.h"

static moirai_chan_t *make_chan(size_t capacity)
{
    moirai_chan_config_t cfg;
    moirai_chan_config_init(&cfg);
    cfg.elem_size = sizeof(uint64_t);
    cfg.capacity = capacity;
    moirai_chan_t *ch;
    cr_assert_eq(moirai_chan_create(&ch, &cfg), 0);
    return ch;
}

Test(transport_metrics, chan_counts_exactly, .timeout = 30)
{
    enum { SENT = 12, RECEIVED = 5 };
    moirai_chan_t *ch = make_chan(16);
    for (uint64_t i = 0; i < SENT; i++)
        cr_assert_eq(moirai_chan_try_send(ch, &i), 0);
    for (int i = 0; i < RECEIVED; i++) {
        uint64_t v;
        cr_assert_eq(moirai_chan_try_recv(ch, &v), 0);
    }
    prom_doc_t d;
    prom_test_collect(moirai_chan_metrics_collect, ch, "jobs", &d);
    const char **l = PROM_LABELS("name", "jobs");
    cr_assert_eq(prom_value(&d, "moirai_chan_sent_total", l), SENT);
    cr_assert_eq(prom_value(&d, "moirai_chan_received_total", l), RECEIVED);
    cr_assert_eq(prom_value(&d, "moirai_chan_sent_bytes_total", l), SENT * 8);
    cr_assert_eq(prom_value(&d, "moirai_chan_received_bytes_total", l), RECEIVED * 8);
    cr_assert_eq(prom_value(&d, "moirai_chan_blocked_sends_total", l), 0);
    cr_assert_eq(prom_value(&d, "moirai_chan_blocked_recvs_total", l), 0);
    cr_assert_eq(prom_value(&d, "moirai_chan_len", l), SENT - RECEIVED);
    cr_assert_str_eq(prom_family(&d, "moirai_chan_len")->type, "gauge");
    cr_assert_eq(d.nsamples, 7);
    prom_doc_free(&d);
    cr_assert_eq(moirai_chan_destroy(ch), 0);
}

Test(transport_metrics, ring_handles_by_role, .timeout = 30)
{
    enum { MESSAGES = 9, LEN = 24 };
    moirai_shm_ring_config_t cfg;
    moirai_shm_ring_config_init(&cfg);
    cfg.size = 4096;
    int fd = -1;
    cr_assert_eq(moirai_shm_ring_create(&fd, &cfg), 0);
    moirai_shm_ring_t *prod, *cons;
    cr_assert_eq(moirai_shm_ring_attach(&prod, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    cr_assert_eq(moirai_shm_ring_attach(&cons, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    close(fd);
    void *buf;
    size_t len;
    cr_assert_eq(moirai_shm_ring_try_peek(cons, &buf, &len), -EAGAIN); /* one blocked peek */
    for (int i = 0; i < MESSAGES; i++) {
        cr_assert_eq(moirai_shm_ring_try_reserve(prod, LEN, &buf), 0);
        memset(buf, i, LEN);
        cr_assert_eq(moirai_shm_ring_commit(prod), 0);
    }
    for (int i = 0; i < MESSAGES - 2; i++) {
        cr_assert_eq(moirai_shm_ring_try_peek(cons, &buf, &len), 0);
        cr_assert_eq(moirai_shm_ring_release(cons), 0);
    }
    moirai_metrics_registry_t *reg;
    cr_assert_eq(moirai_metrics_registry_create(&reg), 0);
    cr_assert_eq(moirai_metrics_registry_add(reg, "r", moirai_shm_ring_metrics_collect, prod), 0);
    cr_assert_eq(moirai_metrics_registry_add(reg, "r2", moirai_shm_ring_metrics_collect, cons), 0);
    moirai_prom_writer_t *w;
    cr_assert_eq(moirai_prom_writer_create(&w), 0);
    cr_assert_eq(moirai_metrics_registry_write(reg, w), 0);
    prom_doc_t d;
    prom_test_render_parse(w, &d);
    const char **p = PROM_LABELS("name", "r", "role", "producer");
    const char **c = PROM_LABELS("name", "r2", "role", "consumer");
    cr_assert_eq(prom_value(&d, "moirai_shm_ring_messages_total", p), MESSAGES);
    cr_assert_eq(prom_value(&d, "moirai_shm_ring_bytes_total", p), MESSAGES * LEN);
    cr_assert_eq(prom_value(&d, "moirai_shm_ring_messages_total", c), MESSAGES - 2);
    cr_assert_eq(prom_value(&d, "moirai_shm_ring_bytes_total", c), (MESSAGES - 2) * LEN);
    cr_assert_eq(prom_value(&d, "moirai_shm_ring_size_bytes", p),
                 (double)moirai_shm_ring_size(prod));
    moirai_shm_ring_stats_t ps, cs;
    cr_assert_eq(moirai_shm_ring_stats(prod, &ps), 0);
    cr_assert_eq(moirai_shm_ring_stats(cons, &cs), 0);
    cr_assert_eq(cs.blocked, 1);
    cr_assert_eq(prom_value(&d, "moirai_shm_ring_blocked_total", c), (double)cs.blocked);
    cr_assert_eq(prom_value(&d, "moirai_shm_ring_blocked_total", p), (double)ps.blocked);
    cr_assert_eq(prom_value(&d, "moirai_shm_ring_sleeps_total", c), (double)cs.sleeps);
    cr_assert_eq(prom_value(&d, "moirai_shm_ring_wakeups_total", p), (double)ps.wakeups);
    prom_doc_free(&d);
    moirai_prom_writer_destroy(w);
    moirai_metrics_registry_destroy(reg);
    moirai_shm_ring_detach(prod);
    moirai_shm_ring_detach(cons);
}

static int count_sink(void *arg, const void *buf, size_t len, uint32_t count)
{
    (void)buf;
    (void)len;
    *(uint64_t *)arg += count;
    return 0;
}

static moirai_batch_t *make_batch(uint64_t *delivered)
{
    moirai_batch_config_t cfg;
    moirai_batch_config_init(&cfg);
    cfg.sink = count_sink;
    cfg.arg = delivered;
    cfg.max_messages = 4;
    cfg.manual_deadline = true; /* no flusher thread: only size and explicit flushes */
    moirai_batch_t *b;
    cr_assert_eq(moirai_batch_create(&b, &cfg), 0);
    return b;
}

Test(transport_metrics, batch_counters_and_histogram, .timeout = 30)
{
    enum { MESSAGES = 10, LEN = 5 };
    uint64_t delivered = 0;
    moirai_batch_t *b = make_batch(&delivered);
    for (int i = 0; i < MESSAGES; i++)
        cr_assert_eq(moirai_batch_send(b, "hello", LEN), 0);
    cr_assert_eq(moirai_batch_flush(b), 0);
    cr_assert_eq(delivered, MESSAGES);
    moirai_batch_stats_t st;
    cr_assert_eq(moirai_batch_stats(b, &st), 0);

    prom_doc_t d;
    prom_test_collect(moirai_batch_metrics_collect, b, "out", &d);
    const char **l = PROM_LABELS("name", "out");
    cr_assert_eq(prom_value(&d, "moirai_batch_messages_total", l), MESSAGES);
    cr_assert_eq(prom_value(&d, "moirai_batch_bytes_total", l), MESSAGES * LEN);
    cr_assert_eq(prom_value(&d, "moirai_batch_sent_messages_total", l), MESSAGES);
    cr_assert_eq(prom_value(&d, "moirai_batch_batches_total", l), (double)st.batches);
    cr_assert_eq(prom_value(&d, "moirai_batch_sink_errors_total", l), 0);
    cr_assert_eq(prom_value(&d, "moirai_batch_max_batch_messages", l), 4);
    cr_assert_eq(prom_value(&d, "moirai_batch_max_wait_seconds", l), (double)st.max_wait_ns / 1e9);
    /* Batches of at most 4 through a size bound, the rest flushed explicitly. */
    cr_assert_eq(prom_value(&d, "moirai_batch_flushes_total", PROM_LABELS("reason", "size")),
                 (double)st.flush_size);
    cr_assert_eq(prom_value(&d, "moirai_batch_flushes_total", PROM_LABELS("reason", "explicit")),
                 (double)st.flush_explicit);
    cr_assert_eq(prom_value(&d, "moirai_batch_flushes_total", PROM_LABELS("reason", "idle")),
                 (double)st.flush_idle);
    cr_assert_eq(prom_value(&d, "moirai_batch_flushes_total", PROM_LABELS("reason", "deadline")),
                 (double)st.flush_deadline);
    cr_assert_eq(st.flush_size + st.flush_explicit, st.batches);
    cr_assert_geq(st.flush_explicit, 1);
    /* The histogram: cumulative over the batcher's power-of-two buckets,
     * the count is every batch and the sum every message. */
    cr_assert_str_eq(prom_family(&d, "moirai_batch_size_messages")->type, "histogram");
    uint64_t cum = 0;
    for (int i = 0; i < MOIRAI_BATCH_HIST_BUCKETS; i++) {
        cum += st.hist[i];
        char le[32];
        if (i < MOIRAI_BATCH_HIST_BUCKETS - 1)
            snprintf(le, sizeof(le), "%llu", (unsigned long long)((1ull << (i + 1)) - 1));
        else
            snprintf(le, sizeof(le), "+Inf");
        cr_assert_eq(prom_value(&d, "moirai_batch_size_messages_bucket", PROM_LABELS("le", le)),
                     (double)cum, "le=%s", le);
    }
    cr_assert_eq(prom_value(&d, "moirai_batch_size_messages_bucket", PROM_LABELS("le", "3")),
                 (double)(st.hist[0] + st.hist[1]));
    cr_assert_eq(prom_value(&d, "moirai_batch_size_messages_bucket", PROM_LABELS("le", "7")),
                 (double)st.batches, "every batch holds 1 to 4 messages");
    cr_assert_eq(prom_value(&d, "moirai_batch_size_messages_count", l), (double)st.batches);
    cr_assert_eq(prom_value(&d, "moirai_batch_size_messages_sum", l), MESSAGES);
    prom_doc_free(&d);
    cr_assert_eq(moirai_batch_destroy(b), 0);
}

Test(transport_metrics, bad_arguments, .timeout = 30)
{
    moirai_prom_writer_t *w;
    cr_assert_eq(moirai_prom_writer_create(&w), 0);
    moirai_chan_t *ch = make_chan(1);
    moirai_metrics_collect_cb cbs[] = {moirai_chan_metrics_collect, moirai_shm_ring_metrics_collect,
                                       moirai_batch_metrics_collect};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(cbs[i](NULL, w, "x"), -EINVAL);
        cr_assert_eq(cbs[i](ch, NULL, "x"), -EINVAL);
        cr_assert_eq(cbs[i](ch, w, NULL), -EINVAL);
    }
    cr_assert_eq(moirai_prom_writer_mark(w).families, 0);
    moirai_prom_writer_destroy(w);
    cr_assert_eq(moirai_chan_destroy(ch), 0);
}

Test(transport_metrics, oom_leaves_the_writer_unchanged, .timeout = 60)
{
    moirai_chan_t *ch = make_chan(4);
    cr_assert_gt(prom_test_oom_sweep(moirai_chan_metrics_collect, ch), 0);
    cr_assert_eq(moirai_chan_destroy(ch), 0);

    moirai_shm_ring_config_t cfg;
    moirai_shm_ring_config_init(&cfg);
    cfg.size = 4096;
    int fd = -1;
    cr_assert_eq(moirai_shm_ring_create(&fd, &cfg), 0);
    moirai_shm_ring_t *prod;
    cr_assert_eq(moirai_shm_ring_attach(&prod, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    close(fd);
    cr_assert_gt(prom_test_oom_sweep(moirai_shm_ring_metrics_collect, prod), 0);
    moirai_shm_ring_detach(prod);

    uint64_t delivered = 0;
    moirai_batch_t *b = make_batch(&delivered);
    cr_assert_eq(moirai_batch_send(b, "x", 1), 0);
    cr_assert_eq(moirai_batch_flush(b), 0);
    cr_assert_gt(prom_test_oom_sweep(moirai_batch_metrics_collect, b), 0);
    cr_assert_eq(moirai_batch_destroy(b), 0);
}
