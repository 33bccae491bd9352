/* Pipelines: a stream of items through a sequence of stages, the shape of
 * TBB's parallel_pipeline.
 *
 * The first stage is the source: it is called with `in` NULL and produces
 * each item in `*out`, returning MOIRAI_PIPELINE_END when the stream ends.
 * Each later stage receives the previous stage's `*out` as `in`; the last
 * stage's `*out` is ignored. `*out` is NULL when a stage is called. A
 * stage's mode says how it may run:
 *   - SERIAL_IN_ORDER: one item at a time, in the order the source made them;
 *   - SERIAL_OUT_OF_ORDER: one item at a time, in any order;
 *   - PARALLEL: any number of items at once.
 * The source must be serial. At most `max_in_flight` items are between the
 * source and the end of the last stage at any time (counting from the
 * source call that makes an item); the source is not called while that
 * many are in flight. The library keeps one preallocated slot per item in
 * flight, so values above 1024 act as 1024.
 *
 * A stage that returns a negative errno stops the pipeline: the source is
 * not called again, items already in flight finish every stage (their
 * owners may need to free them), and moirai_pipeline_run() returns the
 * first such error. The item the failing stage was given goes no further:
 * the later stages are not called for it, so that stage must dispose of
 * its `in` itself.
 *
 * If the scheduler is destroyed with MOIRAI_SHUTDOWN_CANCEL while a
 * pipeline runs, the pipeline stops as if a stage had failed with
 * -ECANCELED: items in flight drain and moirai_pipeline_run() returns
 * -ECANCELED.
 *
 * Memory ordering: everything a stage wrote for an item happens before the
 * next stage runs on that item; serial stages see their own previous calls'
 * writes; everything happens before moirai_pipeline_run() returns. */
#ifndef MOIRAI_SCHED_PIPELINE_H
#define MOIRAI_SCHED_PIPELINE_H

#include <stddef.h>

#include <moirai/sched/export.h>
#include <moirai/sched/sched.h>

/* How a stage may run (see above). */
typedef enum moirai_stage_mode {
    MOIRAI_STAGE_SERIAL_IN_ORDER = 0,     /* one item at a time, in source order */
    MOIRAI_STAGE_SERIAL_OUT_OF_ORDER = 1, /* one item at a time, in any order */
    MOIRAI_STAGE_PARALLEL = 2,            /* any number of items at once */
} moirai_stage_mode_t;

/* Returned by the source when the stream ends (no item in *out). */
#define MOIRAI_PIPELINE_END 1

/* A stage: 0 to pass `*out` on, MOIRAI_PIPELINE_END (source only), or a
 * negative errno. */
typedef int (*moirai_stage_fn)(void *arg, void *in, void **out);

/* One stage of a pipeline, as moirai_pipeline_run() takes it. */
typedef struct moirai_pipeline_stage {
    moirai_stage_mode_t mode; /* how the stage may run; serial for the source */
    moirai_stage_fn fn;       /* called for each item; must not be NULL */
    void *arg;                /* passed to fn as `arg` */
} moirai_pipeline_stage_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Runs the pipeline of `count` stages on `sched` until the source ends
 * and every item has left the last stage. `sched` NULL means the scheduler
 * of the calling worker; on any other thread, the pipeline runs serially
 * on the caller, one item at a time through every stage (as moirai_join()
 * and the parallel loops run serially there). Blocks (helping, on a
 * worker). Returns 0, the first stage error, -EINVAL (NULL stages or fn,
 * count 0, max_in_flight 0, a parallel source, an unknown mode), -ENOMEM
 * (before any stage ran) or -ESHUTDOWN. */
MOIRAI_SCHED_API int moirai_pipeline_run(moirai_sched_t *sched, size_t max_in_flight,
                                         const moirai_pipeline_stage_t *stages, size_t count);

#ifdef __cplusplus
}
#endif

#endif
