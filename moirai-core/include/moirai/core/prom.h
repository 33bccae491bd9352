/* Metrics export in the Prometheus text exposition format, version 0.0.4.
 *
 * A writer collects metric families and their samples and renders them as
 * the text a Prometheus server scrapes:
 *
 *     # HELP moirai_sched_executed_total Jobs run by each worker.
 *     # TYPE moirai_sched_executed_total counter
 *     moirai_sched_executed_total{name="main",worker="0"} 1234
 *
 * The format requires the samples of one family to be contiguous and its
 * TYPE line to come first. The writer guarantees both whatever the order
 * of the calls: every sample is filed under its family, and rendering
 * writes each family once, its HELP and TYPE lines and then all of its
 * samples, families in the order they were first declared. So several
 * objects of one kind (two schedulers) can be written one after the
 * other, each declaring the same families, and the output still holds
 * each family once.
 *
 * The writer validates names (metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label
 * names [a-zA-Z_][a-zA-Z0-9_]* not starting with "__") and escapes label
 * values (backslash, double quote and newline) and HELP text (backslash
 * and newline) for its caller. Label values and HELP text are written as
 * the bytes given; the format expects UTF-8.
 *
 * A registry holds collectors, a callback per object, and writes them all
 * into a writer in one call; each Moirai module provides a collector for
 * its objects (moirai/sched/metrics.h, moirai/mem/metrics.h,
 * moirai/transport/metrics.h, moirai/rt/metrics.h, moirai/async/metrics.h).
 * A typical exporter:
 *
 *     moirai_metrics_registry_add(reg, "main", moirai_sched_metrics_collect, sched);
 *     ...
 *     moirai_prom_writer_reset(w);
 *     if (moirai_metrics_registry_write(reg, w) == 0 &&
 *         moirai_prom_writer_render(w, &text, &len) == 0)
 *         send(text, len) with Content-Type MOIRAI_PROM_CONTENT_TYPE;
 */
#ifndef MOIRAI_CORE_PROM_H
#define MOIRAI_CORE_PROM_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/core/export.h>

/* The Content-Type of the rendered text, for an HTTP response. */
#define MOIRAI_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The type of a metric family, as its TYPE line names it. */
typedef enum moirai_prom_type {
    MOIRAI_PROM_COUNTER = 1,   /* a count that only grows (resets when its process restarts) */
    MOIRAI_PROM_GAUGE = 2,     /* a value that goes up and down */
    MOIRAI_PROM_HISTOGRAM = 3, /* cumulative buckets with _bucket, _sum and _count samples */
} moirai_prom_type_t;

/* One label of a sample: name="value". Both strings are read during the
 * call only. */
typedef struct moirai_prom_label {
    const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" */
    const char *value; /* any bytes up to the terminating NUL; escaped on output */
} moirai_prom_label_t;

/* A writer (see above). Opaque; created and destroyed by the functions
 * below. One thread at a time may use a writer. */
typedef struct moirai_prom_writer moirai_prom_writer_t;

/* A point in a writer's contents, taken by moirai_prom_writer_mark(), to
 * which moirai_prom_writer_rollback() returns it. Its fields are the
 * writer's business. */
typedef struct moirai_prom_mark {
    size_t records;  /* bytes of samples held when the mark was taken */
    size_t families; /* families declared when the mark was taken */
} moirai_prom_mark_t;

/* A registry of collectors (see moirai_metrics_registry_add()). Opaque. */
typedef struct moirai_metrics_registry moirai_metrics_registry_t;

/* A collector: writes the metrics of one object into `w`, labelling its
 * samples with name="`name`" (the name it was registered under). `arg`
 * is the object. It returns 0 or a negative errno; on error it leaves `w`
 * as it found it (a collector does so by taking a mark first and rolling
 * back to it), and moirai_metrics_registry_write() rolls back whatever the
 * collectors before it wrote, too. It must not call the registry it runs
 * from (the registry's lock is held). Every module's
 * moirai_<noun>_metrics_collect() function has this signature. */
typedef int (*moirai_metrics_collect_cb)(void *arg, moirai_prom_writer_t *w, const char *name);

#ifdef __cplusplus
extern "C" {
#endif

/* Creates an empty writer. Never blocks. Returns 0, -EINVAL (`out`
 * NULL) or -ENOMEM; `*out` is untouched on error. */
MOIRAI_CORE_API int moirai_prom_writer_create(moirai_prom_writer_t **out);

/* Frees the writer and its buffers (the text of the last render too).
 * NULL does nothing. */
MOIRAI_CORE_API void moirai_prom_writer_destroy(moirai_prom_writer_t *w);

/* Empties the writer (no families, no samples), keeping its buffers for
 * the next round, as an exporter does before each scrape. Family ids
 * returned before are invalid afterwards. NULL does nothing. */
MOIRAI_CORE_API void moirai_prom_writer_reset(moirai_prom_writer_t *w);

/* Declares the family `name` of `type` with the HELP text `help` (NULL:
 * no HELP line), or finds it if the writer already has it with the same
 * type and help, and returns its id (0 or above) for the sample calls.
 * Never blocks. Returns the id, or -EINVAL (`w` or `name` NULL, a name
 * that is not [a-zA-Z_:][a-zA-Z0-9_:]*, an unknown type, or a family of
 * that name declared with another type or help), or -ENOMEM (nothing is
 * declared then). */
MOIRAI_CORE_API int moirai_prom_writer_family(moirai_prom_writer_t *w, const char *name,
                                              moirai_prom_type_t type, const char *help);

/* Adds the sample `value` with `nlabels` labels to the counter or gauge
 * `family` (an id from moirai_prom_writer_family()). The value is written
 * in the shortest form that reads back as the same double ("+Inf",
 * "-Inf", "NaN" for those). Never blocks. Returns 0, or -EINVAL (`w`
 * NULL, an unknown family or a histogram, `labels` NULL with `nlabels`
 * above 0, a label name that is NULL, malformed, reserved ("__" first) or
 * repeated, a NULL label value, or for a counter a value that is negative
 * or NaN), or -ENOMEM; on error nothing is added. */
MOIRAI_CORE_API int moirai_prom_writer_sample(moirai_prom_writer_t *w, int family,
                                              const moirai_prom_label_t *labels, size_t nlabels,
                                              double value);

/* As moirai_prom_writer_sample(), for a value written exactly as an
 * unsigned integer (a double holds integers exactly only up to 2^53).
 * Same errors, except that no value is refused. */
MOIRAI_CORE_API int moirai_prom_writer_sample_u64(moirai_prom_writer_t *w, int family,
                                                  const moirai_prom_label_t *labels, size_t nlabels,
                                                  uint64_t value);

/* Adds one histogram to the histogram `family`: `nbuckets` finite upper
 * bounds `bounds` (strictly increasing) and `nbuckets + 1` counts, where
 * counts[i] counts the observations above bounds[i - 1] (for i > 0) and
 * up to bounds[i], and counts[nbuckets] those above the last bound. It
 * writes the cumulative name_bucket{...,le="bound"} samples, one with
 * le="+Inf", then name_sum (`sum`) and name_count (all the counts). Never
 * blocks. Returns 0, or -EINVAL (as moirai_prom_writer_sample() for `w`,
 * the family (which must be a histogram) and the labels; a label named
 * "le"; `bounds` NULL with `nbuckets` above 0, `counts` NULL, bounds not
 * finite or not increasing, a NaN sum, or counts whose total overflows),
 * or -ENOMEM; on error nothing is added. */
MOIRAI_CORE_API int moirai_prom_writer_histogram(moirai_prom_writer_t *w, int family,
                                                 const moirai_prom_label_t *labels, size_t nlabels,
                                                 const double *bounds, const uint64_t *counts,
                                                 size_t nbuckets, double sum);

/* The writer's current contents as a mark, for moirai_prom_writer_rollback().
 * Never blocks; never fails (a NULL `w` gives an empty mark). */
MOIRAI_CORE_API moirai_prom_mark_t moirai_prom_writer_mark(const moirai_prom_writer_t *w);

/* Returns the writer to `mark`: the samples added and the families
 * declared since it was taken are dropped (family ids declared before it
 * stay valid). Marks nest: a collector may roll back to its own mark
 * inside a registry write that holds an earlier one. A mark that does not
 * describe an earlier state of the current contents (taken before a
 * reset, or before a rollback to an earlier mark after which the writer
 * grew again differently) is ignored. Never blocks or fails. NULL does
 * nothing. */
MOIRAI_CORE_API void moirai_prom_writer_rollback(moirai_prom_writer_t *w, moirai_prom_mark_t mark);

/* Renders the contents as exposition text: for each family, in the order
 * first declared, its "# HELP" line (if it has help), its "# TYPE" line
 * and all its samples. Stores in `*text` a pointer to the text (not NUL
 * terminated) owned by the writer, valid until the next call on the
 * writer, and its length in `*len`. Rendering does not change the
 * contents: more samples may be added and the writer rendered again.
 * Never blocks. Returns 0, -EINVAL (a NULL argument) or -ENOMEM (`*text`
 * and `*len` untouched). */
MOIRAI_CORE_API int moirai_prom_writer_render(moirai_prom_writer_t *w, const char **text,
                                              size_t *len);

/* Creates an empty registry. Returns 0, -EINVAL (`out` NULL) or -ENOMEM;
 * `*out` is untouched on error. */
MOIRAI_CORE_API int moirai_metrics_registry_create(moirai_metrics_registry_t **out);

/* Frees the registry (the objects of its collectors are the caller's).
 * No other call on it may be in flight. NULL does nothing. */
MOIRAI_CORE_API void moirai_metrics_registry_destroy(moirai_metrics_registry_t *reg);

/* Registers `collect(arg, w, name)` to run on every
 * moirai_metrics_registry_write(), after the collectors added before it.
 * `name` (copied) labels the object's samples; two objects of one kind
 * need different names. `arg` must stay valid until
 * moirai_metrics_registry_remove() has returned. May block while a write
 * is in progress (the registry's lock, held through it; a fiber of
 * moirai-async parks instead of blocking its worker). Thread-safe.
 * Returns 0, -EINVAL (`reg`, `name` or `collect` NULL), -EEXIST (`collect`
 * is registered already with this `name` or with this `arg`) or -ENOMEM;
 * on error nothing is registered. */
MOIRAI_CORE_API int moirai_metrics_registry_add(moirai_metrics_registry_t *reg, const char *name,
                                                moirai_metrics_collect_cb collect, void *arg);

/* Unregisters the collector `collect` of `arg`. Blocks (or parks a
 * fiber) while a write in progress runs, so once it returns the collector never runs again and
 * `arg` may be destroyed. Thread-safe. Returns 0, -EINVAL (`reg` or
 * `collect` NULL) or -ENOENT (not registered). */
MOIRAI_CORE_API int moirai_metrics_registry_remove(moirai_metrics_registry_t *reg,
                                                   moirai_metrics_collect_cb collect, void *arg);

/* Runs every registered collector, in the order added, into `w`. Holds
 * the registry's lock throughout (adds, removes and other writes wait),
 * and blocks as long as the collectors do (each module's collector takes
 * its object's lock briefly). May run on a fiber of moirai-async: the
 * lock parks the fiber, not its worker, and may be released on another
 * worker than the one that took it. Thread-safe for the registry; `w`
 * must not be used by another thread meanwhile. Returns 0, -EINVAL (`reg` or `w` NULL), or the
 * first error of a collector (-ENOMEM, ...), in which case `w` is left as
 * it was before the call. */
MOIRAI_CORE_API int moirai_metrics_registry_write(moirai_metrics_registry_t *reg,
                                                  moirai_prom_writer_t *w);

#ifdef __cplusplus
}
#endif

#endif
