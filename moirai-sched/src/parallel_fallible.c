/* Parallel loops and reductions that stop on the first error or on
 * cancellation (see moirai/sched/parallel_fallible.h).
 *
 * The splitting is parallel.c's (recursive halving over moirai_join(),
 * the same pieces for the same range and grain, the same rules for where
 * the work runs); the helpers below repeat its small where-to-run
 * functions so that the two files can change independently. What is new
 * is one error word per call, checked before every piece and every split,
 * and, for reductions, accumulators that do not fit on a frame.
 *
 * Accumulator lifetimes in a reduction: a range folds into the memory its
 * parent gives it and reports whether identity set it up (`ready`). A
 * split gives the left half its own accumulator and the right half a new
 * one (on this frame when small, else allocated just before the split),
 * combines the two if both are ready and no error has been recorded, then
 * destroys the right one if it is ready and frees it. The parent then owns
 * its accumulator if the left half's is ready. So every accumulator
 * identity set up is destroyed exactly once, except the top one of a
 * successful call, which is copied to the caller's result. */
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/trace.h>
#include <moirai/sched/join.h>
#include <moirai/sched/parallel_fallible.h>

#include "split.h"

/* Accumulators up to this size (and max_align_t's alignment) live on the
 * splitting frames, as moirai_parallel_reduce()'s do. */
#define INLINE_ACC_MAX 256

/* The largest acc_align accepted (parallel_fallible.h). */
#define ACC_ALIGN_MAX 4096

static void nothing(void *arg)
{
    (void)arg;
}

/* Runs fn(r), from outside the pool as one join on it (so that the
 * splitting happens inside). Returns 0, or moirai_join()'s error (then fn
 * has not run). */
static int run_top(moirai_sched_t *sched, int outside, moirai_join_fn fn, void *r)
{
    if (outside)
        return moirai_join(sched, fn, r, nothing, NULL);
    fn(r);
    return 0;
}

/* ---- Stopping ---- */

/* What every piece and split of one call shares about stopping. */
typedef struct stop_state {
    _Atomic int error; /* 0, or the first value recorded */
    const moirai_cancel_token_t *cancel;
} stop_state_t;

/* Records `rc` unless something was recorded first. seq_cst, with the
 * seq_cst load in stopped(): a check later in the total order sees it. */
static void record(stop_state_t *st, int rc)
{
    int expected = 0;
    atomic_compare_exchange_strong_explicit(&st->error, &expected, rc, memory_order_seq_cst,
                                            memory_order_relaxed);
}

/* True if the call must stop: an error was recorded, or the token is
 * cancelled (then -ECANCELED is recorded, unless an error was first). */
static bool stopped(stop_state_t *st)
{
    if (atomic_load_explicit(&st->error, memory_order_seq_cst) != 0)
        return true;
    if (st->cancel != NULL && moirai_cancel_token_is_cancelled(st->cancel)) {
        record(st, -ECANCELED);
        return true;
    }
    return false;
}

/* ---- parallel_for_fallible ---- */

typedef struct for_ctx {
    moirai_sched_t *sched;
    size_t grain;
    moirai_for_fallible_fn body;
    void *arg;
    stop_state_t stop;
} for_ctx_t;

typedef struct for_range {
    for_ctx_t *ctx;
    size_t begin, end;
} for_range_t;

static void for_run(void *p)
{
    const for_range_t *r = p;
    for_ctx_t *ctx = r->ctx;
    if (stopped(&ctx->stop))
        return;
    if (r->end - r->begin <= ctx->grain) {
        MOIRAI_TRACE(MOIRAI_TRACE_PHASE_BEGIN, "sched", "parallel_for", "begin", (int64_t)r->begin);
        int rc = ctx->body(ctx->arg, r->begin, r->end);
        MOIRAI_TRACE(MOIRAI_TRACE_PHASE_END, "sched", NULL, NULL, 0);
        if (rc != 0)
            record(&ctx->stop, rc);
        return;
    }
    size_t mid = r->begin + (r->end - r->begin) / 2;
    for_range_t left = {ctx, r->begin, mid};
    for_range_t right = {ctx, mid, r->end};
    moirai__split_fork2(ctx->sched, for_run, &left, for_run, &right);
}

int moirai_parallel_for_fallible(moirai_sched_t *sched, size_t begin, size_t end, size_t grain,
                                 moirai_for_fallible_fn body, void *arg,
                                 const moirai_cancel_token_t *cancel)
{
    if (body == NULL || begin > end)
        return -EINVAL;
    if (begin == end)
        return 0;
    int outside;
    sched = moirai__split_resolve(sched, &outside);
    for_ctx_t ctx = {sched, moirai__split_grain(sched, end - begin, grain), body, arg, {0, cancel}};
    for_range_t all = {&ctx, begin, end};
    int rc = run_top(sched, outside, for_run, &all);
    if (rc != 0)
        return rc;
    /* Relaxed: the join above ordered every piece's recording before us. */
    return atomic_load_explicit(&ctx.stop.error, memory_order_relaxed);
}

/* ---- parallel_reduce_fallible ---- */

typedef struct reduce_ctx {
    moirai_sched_t *sched;
    size_t grain;
    const moirai_reduce_fallible_desc_t *desc;
    void *arg;
    bool inline_acc;  /* accumulators on the frames */
    size_t acc_align; /* of a heap accumulator */
    size_t acc_bytes; /* allocated for a heap accumulator: acc_size rounded to acc_align */
    stop_state_t stop;
} reduce_ctx_t;

typedef struct reduce_range {
    reduce_ctx_t *ctx;
    size_t begin, end;
    void *acc;  /* where this range folds to: acc_size bytes, uninitialised */
    bool ready; /* set by the range's runner: identity succeeded on acc */
} reduce_range_t;

/* An accumulator on a frame, aligned for any type. */
typedef struct acc_buf {
    alignas(max_align_t) unsigned char bytes[INLINE_ACC_MAX];
} acc_buf_t;

static void reduce_run(void *p)
{
    reduce_range_t *r = p;
    reduce_ctx_t *ctx = r->ctx;
    const moirai_reduce_fallible_desc_t *desc = ctx->desc;
    r->ready = false;
    if (stopped(&ctx->stop))
        return;
    if (r->end - r->begin <= ctx->grain) {
        int rc = desc->identity(ctx->arg, r->acc);
        if (rc != 0) {
            record(&ctx->stop, rc);
            return;
        }
        r->ready = true;
        rc = desc->chunk(ctx->arg, r->begin, r->end, r->acc);
        if (rc != 0)
            record(&ctx->stop, rc);
        return;
    }
    acc_buf_t frame_acc;
    void *right_acc = frame_acc.bytes;
    if (!ctx->inline_acc) {
        right_acc = moirai_aligned_alloc(ctx->acc_align, ctx->acc_bytes);
        if (right_acc == NULL) {
            record(&ctx->stop, -ENOMEM);
            return;
        }
    }
    size_t mid = r->begin + (r->end - r->begin) / 2;
    reduce_range_t left = {ctx, r->begin, mid, r->acc, false};
    reduce_range_t right = {ctx, mid, r->end, right_acc, false};
    moirai__split_fork2(ctx->sched, reduce_run, &left, reduce_run, &right);
    /* Both halves have returned (the join orders their writes, `ready`
     * included, before this). Combining is skipped once the call has
     * failed: its result is thrown away anyway. */
    if (left.ready && right.ready &&
        atomic_load_explicit(&ctx->stop.error, memory_order_seq_cst) == 0) {
        int rc = desc->combine(ctx->arg, r->acc, right_acc);
        if (rc != 0)
            record(&ctx->stop, rc);
    }
    if (right.ready && desc->destroy != NULL)
        desc->destroy(ctx->arg, right_acc);
    if (!ctx->inline_acc)
        moirai_free(right_acc);
    r->ready = left.ready;
}

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

int moirai_parallel_reduce_fallible(moirai_sched_t *sched, size_t begin, size_t end, size_t grain,
                                    const moirai_reduce_fallible_desc_t *desc, void *arg,
                                    const moirai_cancel_token_t *cancel, void *result)
{
    if (desc == NULL || result == NULL || desc->identity == NULL || desc->chunk == NULL ||
        desc->combine == NULL || desc->acc_size == 0 ||
        desc->acc_size > MOIRAI_REDUCE_FALLIBLE_ACC_MAX || desc->acc_align > ACC_ALIGN_MAX ||
        (desc->acc_align & (desc->acc_align - 1)) != 0 || begin > end)
        return -EINVAL;
    size_t align = desc->acc_align != 0 ? desc->acc_align : alignof(max_align_t);
    bool inline_acc = desc->acc_size <= INLINE_ACC_MAX && align <= alignof(max_align_t);
    size_t acc_bytes = round_up(desc->acc_size, align);

    acc_buf_t top_buf;
    void *top = top_buf.bytes;
    if (!inline_acc && (top = moirai_aligned_alloc(align, acc_bytes)) == NULL)
        return -ENOMEM;

    int rc;
    if (begin == end) {
        /* No piece: the result is identity, which moves to the caller. */
        rc = desc->identity(arg, top);
        if (rc == 0)
            memcpy(result, top, desc->acc_size);
    } else {
        int outside;
        sched = moirai__split_resolve(sched, &outside);
        reduce_ctx_t ctx = {sched,      moirai__split_grain(sched, end - begin, grain),
                            desc,       arg,
                            inline_acc, align,
                            acc_bytes,  {0, cancel}};
        reduce_range_t all = {&ctx, begin, end, top, false};
        rc = run_top(sched, outside, reduce_run, &all);
        if (rc == 0)
            /* Relaxed: the join ordered every recording before us. */
            rc = atomic_load_explicit(&ctx.stop.error, memory_order_relaxed);
        if (rc == 0)
            memcpy(result, top, desc->acc_size);
        else if (all.ready && desc->destroy != NULL)
            desc->destroy(arg, top);
    }
    if (!inline_acc)
        moirai_free(top);
    return rc;
}
