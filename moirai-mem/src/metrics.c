/* The pools' collectors for the Prometheus export (see
 * moirai/mem/metrics.h): an object pool's counters, and a memory pool's
 * per size class plus its large blocks. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include <moirai/mem/mempool.h>
#include <moirai/mem/metrics.h>
#include <moirai/mem/pool.h>

/* One field of moirai_pool_stats_t, with its family's name for an object
 * pool and for a memory pool's classes (spelled out, not formatted on
 * every scrape). */
typedef struct field {
    const char *names[2]; /* indexed by POOL, MEMPOOL */
    moirai_prom_type_t type;
    const char *help;
    size_t offset;
} field_t;

enum { POOL = 0, MEMPOOL = 1 };

#define FIELD(suffix, type, help, member)                                                          \
    {                                                                                              \
        {"moirai_pool_" suffix, "moirai_mempool_" suffix}, type, help,                             \
            offsetof(moirai_pool_stats_t, member)                                                  \
    }

static const field_t pool_fields[] = {
    FIELD("allocations_total", MOIRAI_PROM_COUNTER, "Successful allocations.", allocations),
    FIELD("frees_total", MOIRAI_PROM_COUNTER, "Objects released.", frees),
    FIELD("failures_total", MOIRAI_PROM_COUNTER, "Allocations that failed (-ENOMEM).", failures),
    FIELD("cache_hits_total", MOIRAI_PROM_COUNTER,
          "Allocations served by the caller's thread cache.", cache_hits),
    FIELD("depot_hits_total", MOIRAI_PROM_COUNTER,
          "Allocations that refilled the thread cache from the depot.", depot_hits),
    FIELD("fresh_total", MOIRAI_PROM_COUNTER,
          "Allocations that had to create new objects from a chunk.", fresh),
    FIELD("chunks_total", MOIRAI_PROM_COUNTER, "Chunks obtained from the chunk allocator.",
          system_allocations),
    FIELD("objects", MOIRAI_PROM_GAUGE, "Objects created so far.", objects),
    FIELD("in_use", MOIRAI_PROM_GAUGE, "Objects held by callers.", in_use),
    FIELD("high_water", MOIRAI_PROM_GAUGE,
          "The peak of in_use (an upper bound when several threads use the pool).", high_water),
};

/* Writes `st` as the families of `kind` (POOL or MEMPOOL) with `labels`. */
static int emit_pool_stats(moirai_prom_writer_t *w, int kind, const moirai_pool_stats_t *st,
                           const moirai_prom_label_t *labels, size_t nlabels)
{
    for (size_t i = 0; i < sizeof(pool_fields) / sizeof(pool_fields[0]); i++) {
        const field_t *f = &pool_fields[i];
        int id = moirai_prom_writer_family(w, f->names[kind], f->type, f->help);
        if (id < 0)
            return id;
        uint64_t v = *(const uint64_t *)((const char *)st + f->offset);
        int err = moirai_prom_writer_sample_u64(w, id, labels, nlabels, v);
        if (err)
            return err;
    }
    return 0;
}

int moirai_pool_metrics_collect(void *pool, moirai_prom_writer_t *w, const char *name)
{
    if (!pool || !w || !name)
        return -EINVAL;
    moirai_pool_stats_t st;
    int err = moirai_pool_stats(pool, &st);
    if (err)
        return err;
    moirai_prom_mark_t mark = moirai_prom_writer_mark(w);
    moirai_prom_label_t labels[] = {{"name", name}};
    err = emit_pool_stats(w, POOL, &st, labels, 1);
    if (err)
        moirai_prom_writer_rollback(w, mark);
    return err;
}

static int emit_u64(moirai_prom_writer_t *w, const char *family, const char *help,
                    const moirai_prom_label_t *labels, uint64_t v)
{
    int id = moirai_prom_writer_family(w, family, MOIRAI_PROM_COUNTER, help);
    return id < 0 ? id : moirai_prom_writer_sample_u64(w, id, labels, 1, v);
}

static int emit_mempool(moirai_mempool_t *mp, moirai_prom_writer_t *w, const char *name)
{
    moirai_prom_label_t labels[] = {{"name", name}, {"class", NULL}};
    size_t classes = moirai_mempool_class_count(mp);
    for (size_t i = 0; i < classes; i++) {
        moirai_pool_stats_t st;
        int err = moirai_mempool_class_stats(mp, i, &st);
        if (err)
            return err;
        char size[24];
        snprintf(size, sizeof(size), "%zu", moirai_mempool_class_size(mp, i));
        labels[1].value = size;
        err = emit_pool_stats(w, MEMPOOL, &st, labels, 2);
        if (err)
            return err;
    }
    moirai_mempool_stats_t st;
    int err = moirai_mempool_stats(mp, &st);
    if (!err)
        err = emit_u64(w, "moirai_mempool_large_allocations_total",
                       "Blocks above the largest class allocated.", labels, st.large_allocations);
    if (!err)
        err = emit_u64(w, "moirai_mempool_large_frees_total", "Large blocks freed.", labels,
                       st.large_frees);
    if (!err)
        err = emit_u64(w, "moirai_mempool_large_failures_total",
                       "Large allocations that failed (-ENOMEM).", labels, st.large_failures);
    return err;
}

int moirai_mempool_metrics_collect(void *mempool, moirai_prom_writer_t *w, const char *name)
{
    if (!mempool || !w || !name)
        return -EINVAL;
    moirai_prom_mark_t mark = moirai_prom_writer_mark(w);
    int err = emit_mempool(mempool, w, name);
    if (err)
        moirai_prom_writer_rollback(w, mark);
    return err;
}
