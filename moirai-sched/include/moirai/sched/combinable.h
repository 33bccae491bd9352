/* Per-worker values combined at the end (TBB's combinable and
 * enumerable_thread_specific, Rayon's fold-then-reduce).
 *
 * A combinable holds one value of `value_size` bytes per thread that asks
 * for one: each worker of the scheduler named in its config has a slot of
 * its own, found by its worker index with no lookup and no lock; every
 * other thread (a plain thread, the caller of a parallel loop taking part
 * in it, a worker of another scheduler) gets a slot the first time it asks,
 * found afterwards through a one-entry thread-local cache. A value is
 * created lazily, on its thread's first moirai_combinable_local(), by the
 * `init` callback (zero-filled without one), so threads that never ask
 * cost only their (empty) worker slot. Each thread then updates its own
 * value without synchronisation; once the parallel work is over,
 * moirai_combinable_combine() or moirai_combinable_for_each() visits every
 * value that was created, exactly once, and moirai_combinable_destroy()
 * runs the `destroy` callback on each of them exactly once, so values that
 * own memory leak nothing.
 *
 *     moirai_combinable_config_t cfg;
 *     moirai_combinable_config_init(&cfg, sizeof(uint64_t));
 *     cfg.sched = sched;
 *     moirai_combinable_t *count;
 *     moirai_combinable_create(&count, &cfg);
 *     ... in each piece of a parallel loop:
 *         uint64_t *mine;
 *         if (moirai_combinable_local(count, (void **)&mine) == 0) *mine += n;
 *     ... after the loop returned:
 *     uint64_t total = 0;
 *     moirai_combinable_combine(count, add, NULL, &total);
 *     moirai_combinable_destroy(count);
 *
 * What "this thread's value" means: a value belongs to a thread, not to a
 * task. Tasks that run one after the other on one worker share its value,
 * which is the point (one value per worker instead of one per task), and
 * so does a task with the jobs its worker runs while it waits in a join or
 * a scope. So a task must not keep a read-modify-write of its value open
 * across a call that may run other work (moirai_join(), a parallel loop,
 * moirai_scope_run(), a wait that helps): `*v += f(x)` is fine, while
 * `old = *v; moirai_join(...); *v = old + 1` loses the updates the join
 * made. A fiber (moirai-async) runs with its worker's identity swapped out
 * and may move between threads when it parks: it gets the value of the
 * thread it runs on, and must ask again after anything that may park it.
 *
 * Memory ordering: moirai_combinable_local() needs none (each value has a
 * single thread using it). Visiting values (combine, for_each, destroy)
 * reads them on the calling thread, so everything written to them must
 * happen before that call: the loop, join, scope or handle the caller
 * waited for gives exactly that. The library's own bookkeeping (which
 * slots exist and which values were created) is published with release
 * and read with acquire. */
#ifndef MOIRAI_SCHED_COMBINABLE_H
#define MOIRAI_SCHED_COMBINABLE_H

#include <stddef.h>

#include <moirai/sched/export.h>
#include <moirai/sched/sched.h>

/* A set of per-thread values (see above). Opaque; created and destroyed by
 * the functions below. */
typedef struct moirai_combinable moirai_combinable_t;

/* Creates a thread's value in `value` (value_size bytes, aligned to
 * value_align, zero-filled before the call). Returns 0, or a negative
 * errno that moirai_combinable_local() passes on (the value is then not
 * kept and destroy will not be called on it). Runs on the thread that asks. */
typedef int (*moirai_combinable_init_cb)(void *arg, void *value);

/* Releases what a value owns (not the value's bytes themselves, which the
 * combinable frees). Runs on the thread calling moirai_combinable_destroy(). */
typedef void (*moirai_combinable_destroy_cb)(void *arg, void *value);

/* Folds `value` into the caller's accumulator `acc`. */
typedef void (*moirai_combinable_combine_cb)(void *arg, void *acc, const void *value);

/* Visits one value; it may change it (reset it for another round, move
 * what it owns elsewhere). */
typedef void (*moirai_combinable_each_cb)(void *arg, void *value);

/* How to build a combinable. Fill it with moirai_combinable_config_init()
 * and change what you need; a zero field means its default. */
typedef struct moirai_combinable_config {
    /* Bytes of each value: 1 to MOIRAI_COMBINABLE_VALUE_MAX. Required. */
    size_t value_size;
    /* Alignment of each value: a power of two up to 4096; 0: that of
     * max_align_t. Each value also starts a cache line of its own, so that
     * threads updating neighbouring values do not share a line. */
    size_t value_align;
    /* The scheduler whose workers (its moirai_sched_worker_count() slots,
     * compensating ones included) each get a slot found by index. It is
     * only compared with the calling worker's scheduler, never used, so it
     * may be destroyed before the combinable (its values stay); while
     * values are being asked for, it must be alive. NULL: every thread's
     * slot is found through the thread lookup. */
    moirai_sched_t *sched;
    moirai_combinable_init_cb init;       /* creates a value; NULL: zero-filled */
    moirai_combinable_destroy_cb destroy; /* releases a value; NULL: nothing to do */
    void *arg;                            /* passed to init and destroy as `arg` */
} moirai_combinable_config_t;

/* The largest value_size accepted (1 GiB). */
#define MOIRAI_COMBINABLE_VALUE_MAX ((size_t)1 << 30)

#ifdef __cplusplus
extern "C" {
#endif

/* Sets `*cfg` to the defaults for values of `value_size` bytes: no
 * scheduler, no callbacks, default alignment. Does nothing for NULL. */
MOIRAI_SCHED_API void moirai_combinable_config_init(moirai_combinable_config_t *cfg,
                                                    size_t value_size);

/* Creates an empty combinable (no value exists yet; no callback runs).
 * Never blocks; allocates the worker slots of cfg->sched. Returns 0,
 * -EINVAL (NULL out or cfg, value_size 0 or above
 * MOIRAI_COMBINABLE_VALUE_MAX, value_align not 0 and not a power of two up
 * to 4096), or -ENOMEM (nothing is left behind). */
MOIRAI_SCHED_API int moirai_combinable_create(moirai_combinable_t **out,
                                              const moirai_combinable_config_t *cfg);

/* Stores in `*value` the calling thread's value, creating it on the
 * thread's first call (init runs here, on this thread). The pointer stays
 * valid until the combinable is destroyed, and the value is this thread's
 * alone: use it on this thread (see the top of this file for tasks and
 * fibers). Never blocks (a thread's first call allocates, unless it is a
 * worker of cfg.sched). Thread-safe: any number of threads may call it at
 * once, also while moirai_combinable_combine() or _for_each() runs
 * (those then visit a value created meanwhile or not; visit values only
 * once the work that updates them is over). Returns 0, -EINVAL (NULL
 * combinable or value), -ENOMEM (a thread's first call: no memory for its
 * slot), or the negative errno init returned; on error `*value` is not
 * written, no value was created, and the next call tries again. */
MOIRAI_SCHED_API int moirai_combinable_local(moirai_combinable_t *c, void **value);

/* Calls `fn(arg, acc, value)` for every value that exists, exactly once
 * each, in a fixed order (worker slots by index, then other threads, most
 * recent first); `acc` is the caller's, set up by the caller (for a sum:
 * zero). With no value, fn is never called and acc is as it was. Values
 * are left as they are. Never blocks; runs the callbacks on the calling
 * thread. Not to be called while values are being updated (see memory
 * ordering above). Returns 0 or -EINVAL (NULL c, fn or acc). */
MOIRAI_SCHED_API int moirai_combinable_combine(moirai_combinable_t *c,
                                               moirai_combinable_combine_cb fn, void *arg,
                                               void *acc);

/* Calls `fn(arg, value)` for every value that exists, exactly once each,
 * in the order of moirai_combinable_combine(). Never blocks; same rules.
 * Returns 0 or -EINVAL (NULL c or fn). */
MOIRAI_SCHED_API int moirai_combinable_for_each(moirai_combinable_t *c,
                                                moirai_combinable_each_cb fn, void *arg);

/* Runs destroy (if set) on every value that exists, exactly once each, on
 * the calling thread, and frees the combinable. No thread may use it, or a
 * value pointer it handed out, any more. Never blocks. NULL is ignored. */
MOIRAI_SCHED_API void moirai_combinable_destroy(moirai_combinable_t *c);

#ifdef __cplusplus
}
#endif

#endif
