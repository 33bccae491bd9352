/* Parallel algorithms: recursive halving over moirai_join().
 *
 * Each split is one join whose frames live on the splitting call's stack,
 * so a parallel loop allocates nothing: a reduction keeps the right half's
 * accumulator in a fixed, aligned buffer in the frame of the join that
 * combines it. The pieces depend only on the range and the grain, never on
 * the schedule, so a reduction folds the same pieces in the same order
 * every time.
 *
 * Where the work runs: on a worker of the target scheduler the recursion
 * starts right there and the worker helps; from any other thread the top
 * split is itself one moirai_join() on the target scheduler, in which the
 * caller takes part as a guest worker (join.h), running pieces and
 * stealing beside the workers, unless the scheduler has callers_wait
 * (then the join runs on the workers while the caller sleeps). With no
 * scheduler at all (NULL, caller not a worker) the same recursion runs
 * with each join replaced by two plain calls. */
#include <errno.h>
#include <stdalign.h>
#include <stddef.h>
#include <string.h>

#include <moirai/core/trace.h>
#include <moirai/sched/parallel.h>

#include "split.h"

/* ---- parallel_for ---- */

typedef struct for_ctx {
    moirai_sched_t *sched;
    size_t grain;
    moirai_for_fn body;
    void *arg;
} for_ctx_t;

typedef struct for_range {
    const for_ctx_t *ctx;
    size_t begin, end;
} for_range_t;

/* Splits the range until a piece fits the grain: the left half runs here,
 * the right half is offered to thieves. */
static void for_run(void *p)
{
    const for_range_t *r = p;
    const for_ctx_t *ctx = r->ctx;
    if (r->end - r->begin <= ctx->grain) {
        MOIRAI_TRACE(MOIRAI_TRACE_PHASE_BEGIN, "sched", "parallel_for", "begin", (int64_t)r->begin);
        ctx->body(ctx->arg, r->begin, r->end);
        MOIRAI_TRACE(MOIRAI_TRACE_PHASE_END, "sched", NULL, NULL, 0);
        return;
    }
    size_t mid = r->begin + (r->end - r->begin) / 2;
    for_range_t left = {ctx, r->begin, mid};
    for_range_t right = {ctx, mid, r->end};
    moirai__split_fork2(ctx->sched, for_run, &left, for_run, &right);
}

static void nothing(void *arg)
{
    (void)arg;
}

/* Runs `fn(r)` and `fn(s)`, or just `fn(r)` when `s` is NULL, with the top
 * level inside the pool when the caller is outside it. */
static int run_top(moirai_sched_t *sched, int outside, moirai_join_fn fn, void *r, void *s)
{
    if (outside) {
        if (s != NULL)
            return moirai_join(sched, fn, r, fn, s);
        return moirai_join(sched, fn, r, nothing, NULL);
    }
    if (s != NULL)
        moirai__split_fork2(sched, fn, r, fn, s);
    else
        fn(r);
    return 0;
}

int moirai_parallel_for(moirai_sched_t *sched, size_t begin, size_t end, size_t grain,
                        moirai_for_fn body, void *arg)
{
    if (body == NULL || begin > end)
        return -EINVAL;
    if (begin == end)
        return 0;
    int outside;
    sched = moirai__split_resolve(sched, &outside);
    for_ctx_t ctx = {sched, moirai__split_grain(sched, end - begin, grain), body, arg};
    if (end - begin <= ctx.grain) {
        for_range_t all = {&ctx, begin, end};
        return run_top(sched, outside, for_run, &all, NULL);
    }
    size_t mid = begin + (end - begin) / 2;
    for_range_t left = {&ctx, begin, mid};
    for_range_t right = {&ctx, mid, end};
    return run_top(sched, outside, for_run, &left, &right);
}

/* ---- parallel_reduce ---- */

typedef struct reduce_ctx {
    moirai_sched_t *sched;
    size_t grain;
    const moirai_reduce_desc_t *desc;
    void *arg;
} reduce_ctx_t;

typedef struct reduce_range {
    const reduce_ctx_t *ctx;
    size_t begin, end;
    void *acc; /* where this range's fold goes, acc_size bytes */
} reduce_range_t;

/* An accumulator buffer, aligned for any type. */
typedef struct acc_buf {
    alignas(max_align_t) unsigned char bytes[MOIRAI_REDUCE_ACC_MAX];
} acc_buf_t;

static void reduce_run(void *p)
{
    const reduce_range_t *r = p;
    const reduce_ctx_t *ctx = r->ctx;
    const moirai_reduce_desc_t *desc = ctx->desc;
    if (r->end - r->begin <= ctx->grain) {
        desc->identity(ctx->arg, r->acc);
        desc->chunk(ctx->arg, r->begin, r->end, r->acc);
        return;
    }
    size_t mid = r->begin + (r->end - r->begin) / 2;
    /* The left half folds straight into our accumulator, the right half
     * into a buffer on this frame, which outlives the join. */
    acc_buf_t right_acc;
    reduce_range_t left = {ctx, r->begin, mid, r->acc};
    reduce_range_t right = {ctx, mid, r->end, right_acc.bytes};
    moirai__split_fork2(ctx->sched, reduce_run, &left, reduce_run, &right);
    desc->combine(ctx->arg, r->acc, right_acc.bytes);
}

int moirai_parallel_reduce(moirai_sched_t *sched, size_t begin, size_t end, size_t grain,
                           const moirai_reduce_desc_t *desc, void *arg, void *result)
{
    if (desc == NULL || result == NULL || desc->identity == NULL || desc->chunk == NULL ||
        desc->combine == NULL || desc->acc_size == 0 || desc->acc_size > MOIRAI_REDUCE_ACC_MAX ||
        begin > end)
        return -EINVAL;
    acc_buf_t acc;
    if (begin == end) {
        desc->identity(arg, acc.bytes);
        memcpy(result, acc.bytes, desc->acc_size);
        return 0;
    }
    int outside;
    sched = moirai__split_resolve(sched, &outside);
    reduce_ctx_t ctx = {sched, moirai__split_grain(sched, end - begin, grain), desc, arg};
    reduce_range_t all = {&ctx, begin, end, acc.bytes};
    /* One frame for the whole reduction: the first split happens inside,
     * on a worker when there is a pool. */
    int rc = run_top(sched, outside, reduce_run, &all, NULL);
    if (rc != 0)
        return rc;
    /* The result is written only on success, through a buffer aligned for
     * whatever the callbacks store. */
    memcpy(result, acc.bytes, desc->acc_size);
    return 0;
}

/* ---- parallel_invoke ---- */

typedef struct invoke_ctx {
    moirai_sched_t *sched;
    const moirai_join_fn *fns;
    void *const *args;
} invoke_ctx_t;

typedef struct invoke_range {
    const invoke_ctx_t *ctx;
    size_t begin, end;
} invoke_range_t;

static void invoke_run(void *p)
{
    const invoke_range_t *r = p;
    const invoke_ctx_t *ctx = r->ctx;
    if (r->end - r->begin == 1) {
        ctx->fns[r->begin](ctx->args != NULL ? ctx->args[r->begin] : NULL);
        return;
    }
    size_t mid = r->begin + (r->end - r->begin) / 2;
    invoke_range_t left = {ctx, r->begin, mid};
    invoke_range_t right = {ctx, mid, r->end};
    moirai__split_fork2(ctx->sched, invoke_run, &left, invoke_run, &right);
}

int moirai_parallel_invoke(moirai_sched_t *sched, const moirai_join_fn *fns, void *const *args,
                           size_t n)
{
    if (fns == NULL)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (fns[i] == NULL)
            return -EINVAL;
    if (n == 0)
        return 0;
    int outside;
    sched = moirai__split_resolve(sched, &outside);
    invoke_ctx_t ctx = {sched, fns, args};
    invoke_range_t all = {&ctx, 0, n};
    return run_top(sched, outside, invoke_run, &all, NULL);
}
