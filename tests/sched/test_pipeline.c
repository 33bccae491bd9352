/* Pipelines of moirai-sched, as pipeline.h documents them: every item goes
 * through every stage exactly once; a serial-in-order stage sees items in
 * source order even behind a parallel stage with random timing; a serial
 * stage never runs two items at once; no more than max_in_flight items are
 * ever between the source and the end of the last stage; a stage error
 * stops the source, lets the items in flight finish and is returned; a
 * worker running a pipeline helps; every error path is reached.
 *
 * Stages never call Criterion's asserts (they run on workers): they count
 * what they saw and the test thread checks the counts afterwards. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/sched/pipeline.h>

#include "oom.h"
#include "sched_test_util.h"
#include "test_scale.h"

#define MAX_STAGES 6
#define NO_FAIL    SIZE_MAX

/* ---- The instrumented pipeline ---- */

typedef struct pitem {
    size_t id;
    _Atomic int seen[MAX_STAGES];
} pitem_t;

typedef struct fail_spec {
    size_t stage;
    size_t item; /* NO_FAIL: never */
    int rc;
} fail_spec_t;

struct pctx;

typedef struct stage_arg {
    struct pctx *ctx;
    size_t index;
} stage_arg_t;

typedef struct pctx {
    /* Set up by the test. */
    size_t n;   /* items the source makes; the source fails if it exceeds cap */
    size_t cap; /* items[] entries */
    pitem_t *items;
    size_t count;
    moirai_pipeline_stage_t stages[MAX_STAGES];
    stage_arg_t args[MAX_STAGES];
    fail_spec_t fail[2];

    /* Written by the source only (serial; the pipeline orders its calls). */
    size_t produced;
    size_t source_calls;
    bool ran_out;

    /* Written by each serial-in-order stage only. */
    size_t last_id[MAX_STAGES];
    bool any_id[MAX_STAGES];

    _Atomic long live;
    _Atomic long max_live;
    _Atomic int in_stage[MAX_STAGES];
    _Atomic int overlaps;
    _Atomic int order_violations;
    _Atomic int out_not_null;
} pctx_t;

/* A cheap hash for per-item timing. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static void jitter(size_t id, size_t stage)
{
    uint64_t h = mix(id * 31 + stage);
    for (volatile uint64_t i = 0; i < h % 3000; i++)
        ;
    if (h % 16 == 0)
        sched_yield();
}

static bool is_serial(const pctx_t *c, size_t s)
{
    return c->stages[s].mode != MOIRAI_STAGE_PARALLEL;
}

static int failure_for(const pctx_t *c, size_t s, size_t id)
{
    for (int k = 0; k < 2; k++)
        if (c->fail[k].stage == s && c->fail[k].item == id)
            return c->fail[k].rc;
    return 0;
}

static int source_fn(void *arg, void *in, void **out)
{
    stage_arg_t *sa = arg;
    pctx_t *c = sa->ctx;
    if (in != NULL || *out != NULL)
        atomic_fetch_add(&c->out_not_null, 1);
    if (atomic_fetch_add(&c->in_stage[0], 1) != 0)
        atomic_fetch_add(&c->overlaps, 1);
    c->source_calls++;
    int rc = 0;
    if (c->produced == c->n) {
        rc = MOIRAI_PIPELINE_END;
    } else if (c->produced == c->cap) {
        c->ran_out = true;
        rc = MOIRAI_PIPELINE_END;
    } else if ((rc = failure_for(c, 0, c->produced)) == 0) {
        pitem_t *it = &c->items[c->produced];
        it->id = c->produced++;
        atomic_fetch_add(&it->seen[0], 1);
        if (c->count > 1) {
            long live = atomic_fetch_add(&c->live, 1) + 1;
            long max = atomic_load(&c->max_live);
            while (live > max && !atomic_compare_exchange_weak(&c->max_live, &max, live))
                ;
        }
        *out = it;
    }
    atomic_fetch_sub(&c->in_stage[0], 1);
    return rc;
}

static int stage_fn(void *arg, void *in, void **out)
{
    stage_arg_t *sa = arg;
    pctx_t *c = sa->ctx;
    size_t s = sa->index;
    pitem_t *it = in;
    if (*out != NULL)
        atomic_fetch_add(&c->out_not_null, 1);
    bool serial = is_serial(c, s);
    if (serial && atomic_fetch_add(&c->in_stage[s], 1) != 0)
        atomic_fetch_add(&c->overlaps, 1);
    if (c->stages[s].mode == MOIRAI_STAGE_SERIAL_IN_ORDER) {
        /* Plain fields: a serial stage sees its own previous calls. */
        if (c->any_id[s] && it->id <= c->last_id[s])
            atomic_fetch_add(&c->order_violations, 1);
        c->any_id[s] = true;
        c->last_id[s] = it->id;
    }
    atomic_fetch_add(&it->seen[s], 1);
    jitter(it->id, s);
    int rc = failure_for(c, s, it->id);
    /* The item leaves the pipeline here: at the last stage, or failing. */
    if (rc != 0 || s + 1 == c->count)
        atomic_fetch_sub(&c->live, 1);
    if (rc == 0)
        *out = it;
    if (serial)
        atomic_fetch_sub(&c->in_stage[s], 1);
    return rc;
}

/* Sets up `c` for the stage modes `modes` (the first is the source). */
static void pctx_init(pctx_t *c, const moirai_stage_mode_t *modes, size_t count, size_t n,
                      size_t cap)
{
    memset(c, 0, sizeof(*c));
    c->n = n;
    c->cap = cap;
    c->items = calloc(cap + 1, sizeof(pitem_t));
    cr_assert_not_null(c->items);
    c->count = count;
    for (size_t s = 0; s < count; s++) {
        c->args[s] = (stage_arg_t){c, s};
        c->stages[s] =
            (moirai_pipeline_stage_t){modes[s], s == 0 ? source_fn : stage_fn, &c->args[s]};
    }
    c->fail[0] = (fail_spec_t){0, NO_FAIL, 0};
    c->fail[1] = (fail_spec_t){0, NO_FAIL, 0};
}

static void pctx_fini(pctx_t *c)
{
    free(c->items);
    c->items = NULL;
}

/* A pctx_t on the heap (it is large), set up by pctx_init(). */
static pctx_t *pctx_new(const moirai_stage_mode_t *modes, size_t count, size_t n, size_t cap)
{
    pctx_t *c = malloc(sizeof(*c));
    cr_assert_not_null(c);
    pctx_init(c, modes, count, n, cap);
    return c;
}

/* Frees a pctx_t made by pctx_new(). */
static void pctx_free(pctx_t *c)
{
    pctx_fini(c);
    free(c);
}

/* The invariants every run keeps, whatever the outcome. */
static void check_common(const pctx_t *c, size_t max_in_flight)
{
    cr_assert_eq(atomic_load(&c->overlaps), 0, "a serial stage ran two items at once");
    cr_assert_eq(atomic_load(&c->order_violations), 0,
                 "a serial-in-order stage saw items out of source order");
    cr_assert_eq(atomic_load(&c->out_not_null), 0, "a stage was called with *out not NULL");
    cr_assert_leq((size_t)atomic_load(&c->max_live), max_in_flight,
                  "%ld items in flight, limit %zu", atomic_load(&c->max_live), max_in_flight);
    cr_assert_eq(atomic_load(&c->live), 0, "items still in flight after the pipeline returned");
    cr_assert(!c->ran_out, "the source was never stopped");
}

/* Every item made went through every stage exactly once, except `failed`
 * (NO_FAIL for none), which stopped after stage `failed_stage`. */
static void check_items(const pctx_t *c, size_t failed, size_t failed_stage)
{
    for (size_t i = 0; i < c->produced; i++) {
        for (size_t s = 0; s < c->count; s++) {
            int want = i == failed && s > failed_stage ? 0 : 1;
            cr_assert_eq(atomic_load(&c->items[i].seen[s]), want,
                         "item %zu went through stage %zu %d times", i, s,
                         atomic_load(&c->items[i].seen[s]));
        }
    }
    cr_assert_eq(atomic_load(&c->items[c->produced].seen[0]), 0);
}

#define IO  MOIRAI_STAGE_SERIAL_IN_ORDER
#define OOO MOIRAI_STAGE_SERIAL_OUT_OF_ORDER
#define PAR MOIRAI_STAGE_PARALLEL

typedef struct shape {
    moirai_stage_mode_t modes[MAX_STAGES];
    size_t count;
} shape_t;

static const shape_t shapes[] = {
    {{IO, PAR, IO, OOO, PAR}, 5},
    {{OOO, PAR, PAR, IO}, 4},
    {{IO, IO, IO}, 3},
    {{IO}, 1},
    {{IO, PAR}, 2},
    {{IO, OOO, PAR, IO, PAR, IO}, 6},
    {{OOO, OOO, PAR, OOO}, 4},
};

static const size_t limits[] = {1, 2, 3, 8, 64, 5000, SIZE_MAX};

static void run_shape(moirai_sched_t *s, const shape_t *sh, size_t limit, size_t n)
{
    pctx_t *c = pctx_new(sh->modes, sh->count, n, n);
    cr_assert_eq(moirai_pipeline_run(s, limit, c->stages, c->count), 0);
    cr_assert_eq(c->produced, n);
    cr_assert_eq(c->source_calls, n + 1, "the source was called after the end");
    check_common(c, limit);
    check_items(c, NO_FAIL, 0);
    pctx_free(c);
}

Test(pipeline, every_item_through_every_stage_in_order, .timeout = 120)
{
    moirai_sched_t *s = make_sched(2);
    size_t n = (size_t)scaled(2000);
    for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++)
        for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++)
            run_shape(s, &shapes[k], limits[l], n);
    /* An empty stream. */
    run_shape(s, &shapes[0], 4, 0);
    drop_sched(s);
}

Test(pipeline, more_workers_than_cpus, .timeout = 120)
{
    moirai_sched_t *s = make_sched(4);
    size_t n = (size_t)scaled(3000);
    for (long r = 0; r < scaled(3); r++) {
        run_shape(s, &shapes[0], 16, n);
        run_shape(s, &shapes[5], 3, n);
    }
    drop_sched(s);
}

/* ---- From inside a task: the worker helps (one worker) ---- */

typedef struct task_run {
    pctx_t *ctx;
    size_t limit;
} task_run_t;

static int pipeline_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    task_run_t *t = arg;
    return moirai_pipeline_run(NULL, t->limit, t->ctx->stages, t->ctx->count);
}

Test(pipeline, run_from_a_task_helps, .timeout = 120)
{
    for (int workers = 1; workers <= 2; workers++) {
        moirai_sched_t *s = make_sched(workers);
        size_t n = (size_t)scaled(1000);
        pctx_t *c = pctx_new(shapes[0].modes, shapes[0].count, n, n);
        task_run_t t = {c, 4};
        cr_assert_eq(run_in_task(s, pipeline_task, &t), 0);
        cr_assert_eq(c->produced, n);
        check_common(c, 4);
        check_items(c, NO_FAIL, 0);
        pctx_free(c);
        drop_sched(s);
    }
}

/* ---- Errors stop the source ---- */

/* One item in flight: the source cannot run while the failing item holds
 * the only slot, so it is called exactly for items 0 .. k. */
Test(pipeline, error_with_one_in_flight_is_exact, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    for (size_t fs = 1; fs < shapes[0].count; fs++) {
        size_t k = 10;
        pctx_t *c = pctx_new(shapes[0].modes, shapes[0].count, SIZE_MAX, 100000);
        c->fail[0] = (fail_spec_t){fs, k, -EIO};
        cr_assert_eq(moirai_pipeline_run(s, 1, c->stages, c->count), -EIO);
        cr_assert_eq(c->produced, k + 1, "failing at stage %zu: %zu items made", fs, c->produced);
        cr_assert_eq(c->source_calls, k + 1, "the source was called after the error");
        check_common(c, 1);
        check_items(c, k, fs);
        pctx_free(c);
    }
    drop_sched(s);
}

/* An endless source with several items in flight: returning at all proves
 * the error stopped the source; everything else that was made finished. */
Test(pipeline, error_stops_an_endless_source, .timeout = 120)
{
    moirai_sched_t *s = make_sched(2);
    for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
        if (shapes[k].count < 2)
            continue;
        for (long r = 0; r < scaled(10); r++) {
            pctx_t *c = pctx_new(shapes[k].modes, shapes[k].count, SIZE_MAX, 100000);
            size_t fs = 1 + (size_t)r % (shapes[k].count - 1);
            size_t item = 20 + (size_t)r * 7;
            c->fail[0] = (fail_spec_t){fs, item, -EIO};
            cr_assert_eq(moirai_pipeline_run(s, 8, c->stages, c->count), -EIO);
            cr_assert_gt(c->produced, item);
            check_common(c, 8);
            check_items(c, item, fs);
            pctx_free(c);
        }
    }
    drop_sched(s);
}

Test(pipeline, source_error_is_returned, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
        pctx_t *c = pctx_new(shapes[0].modes, shapes[0].count, SIZE_MAX, 1000);
        c->fail[0] = (fail_spec_t){0, 7, -ENOSPC};
        cr_assert_eq(moirai_pipeline_run(s, limits[l], c->stages, c->count), -ENOSPC);
        cr_assert_eq(c->produced, 7);
        cr_assert_eq(c->source_calls, 8, "the source was called after its own error");
        check_common(c, limits[l]);
        check_items(c, NO_FAIL, 0);
        pctx_free(c);
    }
    drop_sched(s);
}

/* The first error is the one returned: item 4 fails at stage 3 before
 * item 5 can exist (one in flight), so item 5's planned failure never
 * happens. */
Test(pipeline, first_error_wins, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    pctx_t *c = pctx_new(shapes[0].modes, shapes[0].count, SIZE_MAX, 1000);
    c->fail[0] = (fail_spec_t){3, 4, -EPERM};
    c->fail[1] = (fail_spec_t){1, 5, -EIO};
    cr_assert_eq(moirai_pipeline_run(s, 1, c->stages, c->count), -EPERM);
    cr_assert_eq(c->produced, 5);
    check_common(c, 1);
    check_items(c, 4, 3);
    pctx_free(c);

    /* Many in flight, two failures: the result is one of them, and the
     * pipeline still drains. */
    for (long r = 0; r < scaled(20); r++) {
        c = pctx_new(shapes[1].modes, shapes[1].count, SIZE_MAX, 100000);
        c->fail[0] = (fail_spec_t){1, 30, -EPERM};
        c->fail[1] = (fail_spec_t){2, 31, -EIO};
        int rc = moirai_pipeline_run(s, 16, c->stages, c->count);
        cr_assert(rc == -EPERM || rc == -EIO, "rc %d", rc);
        check_common(c, 16);
        pctx_free(c);
    }
    drop_sched(s);
}

/* ---- Argument errors ---- */

Test(pipeline, argument_errors, .timeout = 30)
{
    moirai_sched_t *s = make_sched(1);
    pctx_t *c = pctx_new(shapes[0].modes, shapes[0].count, 10, 10);
    cr_assert_eq(moirai_pipeline_run(s, 4, NULL, 3), -EINVAL);
    cr_assert_eq(moirai_pipeline_run(s, 4, c->stages, 0), -EINVAL);
    cr_assert_eq(moirai_pipeline_run(s, 0, c->stages, c->count), -EINVAL);
    /* A parallel source. */
    c->stages[0].mode = MOIRAI_STAGE_PARALLEL;
    cr_assert_eq(moirai_pipeline_run(s, 4, c->stages, c->count), -EINVAL);
    c->stages[0].mode = MOIRAI_STAGE_SERIAL_IN_ORDER;
    /* Unknown modes, at the source and later. */
    c->stages[0].mode = (moirai_stage_mode_t)3;
    cr_assert_eq(moirai_pipeline_run(s, 4, c->stages, c->count), -EINVAL);
    c->stages[0].mode = MOIRAI_STAGE_SERIAL_IN_ORDER;
    c->stages[2].mode = (moirai_stage_mode_t)-1;
    cr_assert_eq(moirai_pipeline_run(s, 4, c->stages, c->count), -EINVAL);
    c->stages[2].mode = MOIRAI_STAGE_SERIAL_IN_ORDER;
    /* A NULL function, at the source and later. */
    c->stages[0].fn = NULL;
    cr_assert_eq(moirai_pipeline_run(s, 4, c->stages, c->count), -EINVAL);
    c->stages[0].fn = source_fn;
    c->stages[4].fn = NULL;
    cr_assert_eq(moirai_pipeline_run(s, 4, c->stages, c->count), -EINVAL);
    c->stages[4].fn = stage_fn;
    cr_assert_eq(c->source_calls, 0, "a stage ran after -EINVAL");
    /* And the repaired pipeline runs. */
    cr_assert_eq(moirai_pipeline_run(s, 4, c->stages, c->count), 0);
    check_common(c, 4);
    check_items(c, NO_FAIL, 0);
    cr_assert_eq(c->produced, 10);
    pctx_free(c);
    drop_sched(s);
}

/* ---- -ESHUTDOWN once destroy has begun ---- */

Test(pipeline, shutdown_is_reported_before_any_stage, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    pctx_t *c = pctx_new(shapes[0].modes, shapes[0].count, 10, 10);
    hold_t hold;
    hold_worker(s, &hold);
    destroyer_t d;
    start_destroy(&d, s, MOIRAI_SHUTDOWN_DRAIN);
    bool began = await_shutdown(s);
    int rc = moirai_pipeline_run(s, 4, c->stages, c->count);
    release_worker(&hold);
    cr_assert_eq(finish_destroy(&d), 0);
    cr_assert(began, "destroy never began");
    cr_assert_eq(rc, -ESHUTDOWN);
    cr_assert_eq(c->source_calls, 0, "a stage ran after -ESHUTDOWN");
    pctx_free(c);
}

/* ---- Out of memory ---- */

typedef struct oom_ctx {
    moirai_sched_t *sched;
    pctx_t *c;
} oom_ctx_t;

static int oom_op(void *arg)
{
    oom_ctx_t *o = arg;
    pctx_t *c = o->c;
    pctx_fini(c);
    /* calloc() is the C library's, outside the failing allocator. */
    c->produced = 0;
    c->source_calls = 0;
    memset(c->any_id, 0, sizeof(c->any_id));
    c->items = calloc(51, sizeof(pitem_t));
    if (c->items == NULL)
        return -EPROTO;
    int rc = moirai_pipeline_run(o->sched, 4, c->stages, c->count);
    if (rc == 0) {
        if (c->produced != 50 || atomic_load(&c->overlaps) || atomic_load(&c->order_violations))
            return -EPROTO;
        for (size_t i = 0; i < 50; i++)
            for (size_t s = 0; s < c->count; s++)
                if (atomic_load(&c->items[i].seen[s]) != 1)
                    return -EPROTO;
    }
    return rc;
}

static void oom_check(void *arg, long n)
{
    oom_ctx_t *o = arg;
    cr_assert_eq(o->c->source_calls, 0, "n=%ld: -ENOMEM after a stage ran", n);
}

Test(pipeline, out_of_memory_sweep, .timeout = 120)
{
    oom_ctx_t o;
    o.sched = make_sched(2);
    o.c = pctx_new(shapes[0].modes, shapes[0].count, 50, 50);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(oom_op, oom_check, &o);
    moirai_test_oom_uninstall();
    cr_assert_geq(failures, 1, "the pipeline state is allocated");
    pctx_free(o.c);
    drop_sched(o.sched);
}

/* Failing one allocation anywhere later (the scheduler's own, mid-run)
 * must never lose or repeat an item: a run either fails with -ENOMEM before
 * any stage ran, or completes. */
Test(pipeline, allocation_failures_mid_run_lose_nothing, .timeout = 120)
{
    oom_ctx_t o;
    o.sched = make_sched(2);
    o.c = pctx_new(shapes[0].modes, shapes[0].count, 50, 50);
    moirai_test_oom_install();
    for (long n = 0; n < 200; n++) {
        moirai_test_oom_fail_at(n);
        int rc = oom_op(&o);
        moirai_test_oom_fail_at(-1);
        cr_assert(rc == 0 || rc == -ENOMEM, "n=%ld: rc %d", n, rc);
        if (rc == -ENOMEM)
            cr_assert_eq(o.c->source_calls, 0, "n=%ld: -ENOMEM after a stage ran", n);
    }
    moirai_test_oom_uninstall();
    pctx_free(o.c);
    drop_sched(o.sched);
}

/* ---- A NULL scheduler off the pool: one item at a time on the caller ---- */

typedef struct serial_pipe {
    pthread_t caller;
    bool off_caller;
    long next, limit; /* the source's next item and its end */
    long fail_at;     /* stage 1 fails on this item with -EIO (0: never) */
    long sum;         /* what the last stage saw, added up */
    long last_seen;   /* the last item the sink saw, to check the order */
    bool out_of_order;
    long items[64];
} serial_pipe_t;

static void serial_pipe_check_thread(serial_pipe_t *p)
{
    if (!pthread_equal(pthread_self(), p->caller))
        p->off_caller = true;
}

static int serial_source(void *arg, void *in, void **out)
{
    (void)in;
    serial_pipe_t *p = arg;
    serial_pipe_check_thread(p);
    if (p->next > p->limit)
        return MOIRAI_PIPELINE_END;
    p->items[p->next] = p->next;
    *out = &p->items[p->next++];
    return 0;
}

static int serial_double(void *arg, void *in, void **out)
{
    serial_pipe_t *p = arg;
    serial_pipe_check_thread(p);
    long *v = in;
    if (*v == p->fail_at)
        return -EIO;
    *v *= 2;
    *out = v;
    return 0;
}

static int serial_sink(void *arg, void *in, void **out)
{
    (void)out;
    serial_pipe_t *p = arg;
    serial_pipe_check_thread(p);
    long v = *(long *)in;
    if (v <= p->last_seen)
        p->out_of_order = true;
    p->last_seen = v;
    p->sum += v;
    return 0;
}

static int run_serial_pipe(serial_pipe_t *p)
{
    moirai_pipeline_stage_t st[3] = {
        {MOIRAI_STAGE_SERIAL_IN_ORDER, serial_source, p},
        {MOIRAI_STAGE_PARALLEL, serial_double, p},
        {MOIRAI_STAGE_SERIAL_IN_ORDER, serial_sink, p},
    };
    return moirai_pipeline_run(NULL, 8, st, 3);
}

Test(pipeline, a_null_scheduler_off_the_pool_runs_serially_on_the_caller, .timeout = 30)
{
    serial_pipe_t p = {.caller = pthread_self(), .next = 1, .limit = 50};
    cr_assert_eq(run_serial_pipe(&p), 0);
    cr_assert_not(p.off_caller);
    cr_assert_not(p.out_of_order);
    cr_assert_eq(p.sum, 50 * 51); /* 2 * (1 + ... + 50) */

    /* A failing stage stops the source; its item goes no further. */
    serial_pipe_t f = {.caller = pthread_self(), .next = 1, .limit = 50, .fail_at = 10};
    cr_assert_eq(run_serial_pipe(&f), -EIO);
    cr_assert_eq(f.next, 11, "the source ran on after the failure");
    cr_assert_eq(f.sum, 9 * 10); /* 2 * (1 + ... + 9) */
}
