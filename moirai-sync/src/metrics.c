/* The lock contention statistics' collector for the Prometheus export (see
 * moirai/sync/metrics.h): one walk of moirai_lock_stats_foreach(), each
 * record written as a counter, a histogram and a gauge. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include <moirai/sync/lockstat.h>
#include <moirai/sync/metrics.h>

static const char *const kind_names[MOIRAI_LOCK_KIND_COUNT] = {
    [MOIRAI_LOCK_KIND_MUTEX] = "mutex",
    [MOIRAI_LOCK_KIND_RWLOCK_READ] = "rwlock_read",
    [MOIRAI_LOCK_KIND_RWLOCK_WRITE] = "rwlock_write",
    [MOIRAI_LOCK_KIND_SPIN] = "spin",
    [MOIRAI_LOCK_KIND_TICKET] = "ticket",
};

typedef struct walk {
    moirai_prom_writer_t *w;
    const char *name;
    int contended, wait, wait_max;                /* family ids */
    double bounds[MOIRAI_LOCK_STATS_BUCKETS - 1]; /* seconds */
} walk_t;

static int emit_record(void *arg, const moirai_lock_stats_t *st)
{
    walk_t *k = arg;
    char address[32];
    const char *lock = st->name;
    if (lock == NULL) {
        snprintf(address, sizeof(address), "%p", st->lock);
        lock = address;
    }
    const char *kind = (unsigned)st->kind < MOIRAI_LOCK_KIND_COUNT ? kind_names[st->kind] : "?";
    moirai_prom_label_t labels[3] = {{"name", k->name}, {"lock", lock}, {"kind", kind}};
    int err = moirai_prom_writer_sample_u64(k->w, k->contended, labels, 3, st->contended);
    if (!err)
        err = moirai_prom_writer_histogram(k->w, k->wait, labels, 3, k->bounds, st->hist,
                                           MOIRAI_LOCK_STATS_BUCKETS - 1,
                                           (double)st->total_wait_ns / 1e9);
    if (!err)
        err =
            moirai_prom_writer_sample(k->w, k->wait_max, labels, 3, (double)st->max_wait_ns / 1e9);
    return err;
}

static int emit(walk_t *k)
{
    /* Bucket i holds waits in [2^i, 2^(i+1)) ns (bucket 0 also 0 ns) and
     * the last one everything from 2^31 ns up: the upper bound of bucket i
     * is 2^(i+1) ns, and the last is the histogram's +Inf. Waits are whole
     * nanoseconds, so "below 2^(i+1)" and "at most 2^(i+1) - 1" agree. */
    for (int i = 0; i < MOIRAI_LOCK_STATS_BUCKETS - 1; i++)
        k->bounds[i] = (double)(UINT64_C(1) << (i + 1)) / 1e9;
    k->contended =
        moirai_prom_writer_family(k->w, "moirai_lock_contended_total", MOIRAI_PROM_COUNTER,
                                  "Acquisitions whose first attempt found the lock held.");
    if (k->contended < 0)
        return k->contended;
    k->wait = moirai_prom_writer_family(k->w, "moirai_lock_wait_seconds", MOIRAI_PROM_HISTOGRAM,
                                        "Time from the first failed attempt to holding the lock.");
    if (k->wait < 0)
        return k->wait;
    k->wait_max = moirai_prom_writer_family(k->w, "moirai_lock_wait_max_seconds", MOIRAI_PROM_GAUGE,
                                            "The longest contended wait.");
    if (k->wait_max < 0)
        return k->wait_max;
    int dropped = moirai_prom_writer_family(
        k->w, "moirai_lock_stats_dropped_total", MOIRAI_PROM_COUNTER,
        "Contended acquisitions not recorded because a record could not be allocated.");
    if (dropped < 0)
        return dropped;
    moirai_prom_label_t label = {"name", k->name};
    int err = moirai_prom_writer_sample_u64(k->w, dropped, &label, 1, moirai_lock_stats_dropped());
    return err ? err : moirai_lock_stats_foreach(emit_record, k);
}

int moirai_lock_stats_metrics_collect(void *unused, moirai_prom_writer_t *w, const char *name)
{
    (void)unused;
    if (!w || !name)
        return -EINVAL;
    walk_t k = {.w = w, .name = name};
    moirai_prom_mark_t mark = moirai_prom_writer_mark(w);
    int err = emit(&k);
    if (err)
        moirai_prom_writer_rollback(w, mark);
    return err;
}
