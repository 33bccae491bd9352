/* The transports' collectors for the Prometheus export (see
 * moirai/transport/metrics.h): channels, shared-memory ring handles and
 * batchers, each read through its own stats call and written as one
 * sample per family. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/transport/batch.h>
#include <moirai/transport/chan.h>
#include <moirai/transport/metrics.h>
#include <moirai/transport/ring.h>

#include "ring_internal.h"

/* One uint64_t field of a stats struct, written as the family `name`. */
typedef struct field {
    const char *name;
    moirai_prom_type_t type;
    const char *help;
    size_t offset;
} field_t;

#define FIELD(stats, name, type, help, member)                                                     \
    {                                                                                              \
        name, type, help, offsetof(stats, member)                                                  \
    }

static int emit_fields(moirai_prom_writer_t *w, const field_t *fields, size_t n, const void *stats,
                       const moirai_prom_label_t *labels, size_t nlabels)
{
    for (size_t i = 0; i < n; i++) {
        int id = moirai_prom_writer_family(w, fields[i].name, fields[i].type, fields[i].help);
        if (id < 0)
            return id;
        uint64_t v = *(const uint64_t *)((const char *)stats + fields[i].offset);
        int err = moirai_prom_writer_sample_u64(w, id, labels, nlabels, v);
        if (err)
            return err;
    }
    return 0;
}

/* ---- channels ---- */

#define CHAN(name, type, help, member) FIELD(moirai_chan_stats_t, name, type, help, member)
static const field_t chan_fields[] = {
    CHAN("moirai_chan_sent_total", MOIRAI_PROM_COUNTER, "Elements accepted by sends.", sent),
    CHAN("moirai_chan_received_total", MOIRAI_PROM_COUNTER, "Elements returned by receives.",
         received),
    CHAN("moirai_chan_sent_bytes_total", MOIRAI_PROM_COUNTER,
         "Elements sent times the element size.", bytes_sent),
    CHAN("moirai_chan_received_bytes_total", MOIRAI_PROM_COUNTER,
         "Elements received times the element size.", bytes_received),
    CHAN("moirai_chan_blocked_sends_total", MOIRAI_PROM_COUNTER, "Sends that had to wait.",
         blocked_sends),
    CHAN("moirai_chan_blocked_recvs_total", MOIRAI_PROM_COUNTER, "Receives that had to wait.",
         blocked_recvs),
    CHAN("moirai_chan_len", MOIRAI_PROM_GAUGE, "Elements buffered now.", len),
};

int moirai_chan_metrics_collect(void *chan, moirai_prom_writer_t *w, const char *name)
{
    if (!chan || !w || !name)
        return -EINVAL;
    moirai_chan_stats_t st;
    int err = moirai_chan_stats(chan, &st);
    if (err)
        return err;
    moirai_prom_mark_t mark = moirai_prom_writer_mark(w);
    moirai_prom_label_t labels[] = {{"name", name}};
    err = emit_fields(w, chan_fields, sizeof(chan_fields) / sizeof(chan_fields[0]), &st, labels, 1);
    if (err)
        moirai_prom_writer_rollback(w, mark);
    return err;
}

/* ---- shared-memory rings ---- */

#define RING(name, help, member)                                                                   \
    FIELD(moirai_shm_ring_stats_t, name, MOIRAI_PROM_COUNTER, help, member)
static const field_t ring_fields[] = {
    RING("moirai_shm_ring_messages_total",
         "Messages committed (producer) or released (consumer) by this handle.", messages),
    RING("moirai_shm_ring_bytes_total", "Payload bytes of those messages.", bytes),
    RING("moirai_shm_ring_blocked_total",
         "Reserve or peek calls that found no room or no message at first.", blocked),
    RING("moirai_shm_ring_sleeps_total", "Futex waits this handle went into.", sleeps),
    RING("moirai_shm_ring_wakeups_total", "Futex wakes this handle issued to its peers.", wakeups),
};

int moirai_shm_ring_metrics_collect(void *ring, moirai_prom_writer_t *w, const char *name)
{
    if (!ring || !w || !name)
        return -EINVAL;
    const moirai_shm_ring_t *r = ring;
    moirai_shm_ring_stats_t st;
    int err = moirai_shm_ring_stats(r, &st);
    if (err)
        return err;
    moirai_prom_mark_t mark = moirai_prom_writer_mark(w);
    /* The role is fixed at attach, so it names the handle's counters. */
    moirai_prom_label_t labels[] = {
        {"name", name}, {"role", r->role == MOIRAI_SHM_RING_PRODUCER ? "producer" : "consumer"}};
    err = emit_fields(w, ring_fields, sizeof(ring_fields) / sizeof(ring_fields[0]), &st, labels, 2);
    if (!err) {
        int id = moirai_prom_writer_family(w, "moirai_shm_ring_size_bytes", MOIRAI_PROM_GAUGE,
                                           "The ring's data region in bytes.");
        err = id < 0 ? id
                     : moirai_prom_writer_sample_u64(w, id, labels, 2,
                                                     (uint64_t)moirai_shm_ring_size(r));
    }
    if (err)
        moirai_prom_writer_rollback(w, mark);
    return err;
}

/* ---- batchers ---- */

#define BATCH(name, type, help, member) FIELD(moirai_batch_stats_t, name, type, help, member)
static const field_t batch_fields[] = {
    BATCH("moirai_batch_messages_total", MOIRAI_PROM_COUNTER, "Messages accepted by send.",
          messages),
    BATCH("moirai_batch_bytes_total", MOIRAI_PROM_COUNTER,
          "Payload bytes of the messages accepted (framing not counted).", bytes),
    BATCH("moirai_batch_batches_total", MOIRAI_PROM_COUNTER, "Batches the sink took.", batches),
    BATCH("moirai_batch_sent_messages_total", MOIRAI_PROM_COUNTER,
          "Messages in the batches the sink took.", sent_messages),
    BATCH("moirai_batch_sink_errors_total", MOIRAI_PROM_COUNTER,
          "Sink calls that returned an error.", sink_errors),
    BATCH("moirai_batch_max_batch_messages", MOIRAI_PROM_GAUGE, "The largest batch, in messages.",
          max_batch_messages),
};

static const struct {
    const char *reason;
    size_t offset;
} flush_reasons[] = {
    {"idle", offsetof(moirai_batch_stats_t, flush_idle)},
    {"size", offsetof(moirai_batch_stats_t, flush_size)},
    {"deadline", offsetof(moirai_batch_stats_t, flush_deadline)},
    {"explicit", offsetof(moirai_batch_stats_t, flush_explicit)},
};

static int emit_batch(moirai_prom_writer_t *w, const moirai_batch_stats_t *st, const char *name)
{
    moirai_prom_label_t labels[] = {{"name", name}, {"reason", NULL}};
    int err =
        emit_fields(w, batch_fields, sizeof(batch_fields) / sizeof(batch_fields[0]), st, labels, 1);
    if (err)
        return err;
    int id = moirai_prom_writer_family(
        w, "moirai_batch_flushes_total", MOIRAI_PROM_COUNTER,
        "Batches sent, by why: idle (the consumer kept up), size (full), deadline, explicit.");
    for (size_t i = 0; i < sizeof(flush_reasons) / sizeof(flush_reasons[0]) && !err; i++) {
        labels[1].value = flush_reasons[i].reason;
        uint64_t v = *(const uint64_t *)((const char *)st + flush_reasons[i].offset);
        err = id < 0 ? id : moirai_prom_writer_sample_u64(w, id, labels, 2, v);
    }
    if (err)
        return err;
    id = moirai_prom_writer_family(
        w, "moirai_batch_max_wait_seconds", MOIRAI_PROM_GAUGE,
        "The longest a message waited from its send to the sink call that took it.");
    err = id < 0 ? id : moirai_prom_writer_sample(w, id, labels, 1, (double)st->max_wait_ns / 1e9);
    if (err)
        return err;
    /* Bucket i of the batcher's histogram counts batches of [2^i, 2^(i+1))
     * messages, so its inclusive upper bound is 2^(i+1) - 1; the last
     * bucket counts everything above and becomes +Inf. The sum of the
     * observations is exactly the messages in the batches. */
    enum { NB = MOIRAI_BATCH_HIST_BUCKETS - 1 };
    double bounds[NB];
    for (int i = 0; i < NB; i++)
        bounds[i] = (double)((UINT64_C(1) << (i + 1)) - 1);
    id = moirai_prom_writer_family(w, "moirai_batch_size_messages", MOIRAI_PROM_HISTOGRAM,
                                   "Messages per batch.");
    return id < 0 ? id
                  : moirai_prom_writer_histogram(w, id, labels, 1, bounds, st->hist, NB,
                                                 (double)st->sent_messages);
}

int moirai_batch_metrics_collect(void *batch, moirai_prom_writer_t *w, const char *name)
{
    if (!batch || !w || !name)
        return -EINVAL;
    moirai_batch_stats_t st;
    int err = moirai_batch_stats(batch, &st);
    if (err)
        return err;
    moirai_prom_mark_t mark = moirai_prom_writer_mark(w);
    err = emit_batch(w, &st, name);
    if (err)
        moirai_prom_writer_rollback(w, mark);
    return err;
}
