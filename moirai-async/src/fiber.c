/* Fibers: spawn, the resume job, switching in and out, yield and the end
 * of a fiber.
 *
 * A fiber is resumed by its scheduler job (embedded, so resuming never
 * allocates and never fails). The job runs on a worker's own stack: it
 * switches into the fiber and, when the fiber switches back, runs the
 * fiber's `after` request (see async_internal.h).
 *
 * While a fiber runs, the thread's scheduler context is swapped for the
 * fiber's (moirai_sched_thread_ctx_swap): scheduler code called on the
 * fiber's stack (a join, a scope, a spawn) then treats the caller as an
 * outside thread and waits by parking, which parks the fiber, instead of
 * running the worker's own queues on the fiber's stack, which would break
 * once the fiber resumed on another worker. The worker's context, kept in
 * the fiber meanwhile, still lets fibers it wakes go to that worker's LIFO
 * slot, where they run next (a hand-off stays on one CPU). */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/log.h>
#include <moirai/core/trace.h>

#include "async_internal.h"
#include "moirai_probe.h"

static __thread moirai__thread_t tls_thread __attribute__((tls_model("initial-exec")));

__attribute__((noinline)) moirai__thread_t *moirai__thread_get(void)
{
    moirai__thread_t *t = &tls_thread;
    /* The barrier makes the function impure to the optimiser, so a call
     * after a switch is never replaced by a result computed before it. */
    __asm__ volatile("" : "+r"(t) : : "memory");
    return t;
}

struct moirai_fiber *moirai__fiber_self(void)
{
    return moirai__thread_get()->current;
}

static void fiber_job_run(moirai_sched_job_t *job);

/* The fiber's first frame: runs the task, then leaves for good. */
static void fiber_entry(void *arg);

void moirai__fiber_switch_out(struct moirai_fiber *f, void (*after)(void *), void *arg)
{
    moirai__thread_t *t = moirai__thread_get();
    t->after = after;
    t->after_arg = arg;
    moirai__fctx_switch(&f->ctx, &t->native);
    /* Resumed, possibly on another thread: `t` is stale from here on. */
}

void moirai__fiber_resume(struct moirai_fiber *f)
{
    struct moirai_fiber *self = moirai__fiber_self();
    moirai__fiber_state(f, MOIRAI__FIBER_RUNNABLE);
    /* Cannot fail: arguments are valid and the job is embedded. From a
     * fiber, `self->sched_ctx` holds its worker's context. */
    moirai_sched_job_submit_from(f->rt->sched, self != NULL ? &self->sched_ctx : NULL, &f->job,
                                 f->priority, 0);
}

static void resubmit_yield(void *arg)
{
    struct moirai_fiber *f = arg;
    moirai__fiber_state(f, MOIRAI__FIBER_RUNNABLE);
    moirai_sched_job_submit(f->rt->sched, &f->job, f->priority, MOIRAI_SCHED_JOB_YIELD);
}

/* Uncounts a fiber (ended, or never started because its spawn failed).
 * Acq_rel: destroy, reading the gate with acquire, sees this fiber's frees
 * done; the last fiber after shutdown began wakes destroy. */
static void gate_leave(moirai_runtime_t *rt)
{
    uint64_t left = atomic_fetch_sub_explicit(&rt->gate, 1, memory_order_acq_rel) - 1;
    if (left == MOIRAI__GATE_SHUT) {
        atomic_store_explicit(&rt->drained, MOIRAI__DRAINED, memory_order_release);
        moirai_unpark_all(&rt->drained);
        /* Release: the last touch of the runtime; destroy frees it only
         * after seeing this. */
        atomic_store_explicit(&rt->drained, MOIRAI__DRAINED_DONE, memory_order_release);
    }
}

/* The fiber cache of the worker the caller runs on, or NULL. `slot` is
 * the worker index (from the thread state inside a fiber, whose scheduler
 * context is swapped out). */
static moirai__fiber_cache_t *cache_of(moirai_runtime_t *rt, int slot)
{
    return slot >= 0 && slot < rt->ncaches ? &rt->caches[slot] : NULL;
}

static void fiber_finish(void *arg)
{
    struct moirai_fiber *f = arg;
    moirai_runtime_t *rt = f->rt;
    moirai__fiber_state(f, MOIRAI__FIBER_ENDED);
    moirai__fctx_destroy(&f->ctx);
    /* On the worker's own stack, with its scheduler context back. */
    moirai__fiber_cache_t *cache = cache_of(rt, moirai_sched_worker_index());
    size_t used;
    bool keep = cache != NULL && cache->count < MOIRAI__FIBER_CACHE &&
                f->stack->size == moirai__stack_pool_stack_size(rt->stacks);
    /* Resetting the stack for reuse measures what the fiber used. */
    if (!keep)
        moirai__fiber_unregister(rt, f); /* before its stack goes */
    if (keep)
        used = moirai__stack_reset(f->stack);
    else
        used = moirai__stack_pool_put(rt->stacks, f->stack);
    uint64_t hw = atomic_load_explicit(&rt->high_water, memory_order_relaxed);
    while (used > hw &&
           !atomic_compare_exchange_weak_explicit(&rt->high_water, &hw, used, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
    /* Relaxed: statistics. */
    atomic_fetch_add_explicit(&rt->switches, f->switches, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt->parks, f->parks, memory_order_relaxed);
    moirai_handle_release(f->handle);
    if (keep)
        cache->fibers[cache->count++] = f;
    else
        moirai_free(f);
    gate_leave(rt);
}

void moirai__fiber_caches_free(moirai_runtime_t *rt)
{
    for (int i = 0; i < rt->ncaches; i++) {
        moirai__fiber_cache_t *c = &rt->caches[i];
        while (c->count > 0) {
            struct moirai_fiber *f = c->fibers[--c->count];
            moirai__fiber_unregister(rt, f);
            moirai__stack_pool_put(rt->stacks, f->stack);
            moirai_free(f);
        }
    }
}

static void fiber_job_run(moirai_sched_job_t *job)
{
    struct moirai_fiber *f = (struct moirai_fiber *)job;
    moirai__thread_t *t = moirai__thread_get();
    if (!t->native_ready) {
        moirai__fctx_thread_init(&t->native);
        t->native_ready = true;
    }
    t->slot = moirai_sched_worker_index();
    moirai_sched_thread_ctx_swap(&f->sched_ctx);
    t->current = f;
    f->switches++;
    MOIRAI_PROBE3(fiber_switch_in, f, f->id, t->slot);
    moirai__fiber_state(f, MOIRAI__FIBER_RUNNING);
    moirai__stack_set_current(f->stack, f->name, f->id);
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_BEGIN, "async", f->name != NULL ? f->name : "fiber", "id",
                 (int64_t)f->id);
    moirai__fctx_switch(&t->native, &f->ctx);
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_END, "async", NULL, NULL, 0);
    /* Back on this worker's own stack: `f` may already be running again
     * elsewhere once `after` has run, so touch it no more. */
    MOIRAI_PROBE3(fiber_switch_out, f, t->slot, t->after == fiber_finish);
    moirai__stack_set_current(NULL, NULL, 0);
    t->current = NULL;
    moirai_sched_thread_ctx_swap(&f->sched_ctx);
    void (*after)(void *) = t->after;
    void *after_arg = t->after_arg;
    t->after = NULL;
    if (after != NULL)
        after(after_arg);
}

/* A fiber's first run when it has a locality hint (see spawn_op). */
static int first_run(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    fiber_job_run(&((struct moirai_fiber *)arg)->job);
    return 0;
}

/* The task body as the handle sees it: watches the token so that a
 * cancellation wakes the fiber from whatever it waits on. */
static int fiber_body(void *arg, const moirai_cancel_token_t *cancel, void **result);

static void on_cancel(void *arg)
{
    struct moirai_fiber *f = arg;
    moirai__waitq_cancel(f);
}

static int fiber_body(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    struct moirai_fiber *f = arg;
    bool watched = cancel != NULL && moirai_cancel_token_watch(cancel, on_cancel, f) == 0;
    int rc = f->fn(f->arg, cancel, result);
    if (watched)
        moirai_cancel_token_unwatch(cancel);
    /* Before the handle completes: a joiner sees the fiber's values
     * destroyed. */
    moirai__fls_clear(f);
    return rc;
}

static void fiber_entry(void *arg)
{
    struct moirai_fiber *f = arg;
    if (f->handle != NULL) {
        moirai_handle_run(f->handle, fiber_body, f);
    } else {
        void *ignored = NULL;
        f->fn(f->arg, NULL, &ignored);
        moirai__fls_clear(f);
    }
    moirai__thread_t *t = moirai__thread_get();
    t->after = fiber_finish;
    t->after_arg = f;
    moirai__fctx_switch_final(&f->ctx, &t->native);
    __builtin_unreachable();
}

/* The executor a spawn goes through: core validates the arguments and
 * binds the handle, then calls spawn_op with the stack size this struct
 * carries (moirai_fiber_spawn puts one on its own stack). */
typedef struct fiber_executor {
    moirai_executor_t base;
    moirai_runtime_t *rt;
    size_t stack_size;
} fiber_executor_t;

static int spawn_op(moirai_executor_t *executor, moirai_task_fn fn, void *arg,
                    const moirai_task_attr_t *attr, moirai_handle_t *handle);

static const moirai_executor_ops_t spawn_ops = {spawn_op};

int moirai__fiber_spawn_default(moirai_executor_t *executor, moirai_task_fn fn, void *arg,
                                const moirai_task_attr_t *attr, moirai_handle_t *handle)
{
    moirai_runtime_t *rt = (moirai_runtime_t *)executor;
    fiber_executor_t ex = {{&spawn_ops}, rt, rt->stack_size};
    return spawn_op(&ex.base, fn, arg, attr, handle);
}

/* Counts the fiber in the gate: refused once destroy has begun, unless
 * the caller is one of the runtime's own fibers (destroy waits for it, so
 * what it spawns is waited for too). */
static int gate_enter(moirai_runtime_t *rt)
{
    bool inside = moirai__fiber_self() != NULL;
    uint64_t g = atomic_load_explicit(&rt->gate, memory_order_relaxed);
    for (;;) {
        if ((g & MOIRAI__GATE_SHUT) && !inside)
            return -ESHUTDOWN;
        /* Relaxed: the count only decides when destroy may proceed, which
         * the finishing fiber's acq_rel decrement publishes. */
        if (atomic_compare_exchange_weak_explicit(&rt->gate, &g, g + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return 0;
    }
}

static int spawn_op(moirai_executor_t *executor, moirai_task_fn fn, void *arg,
                    const moirai_task_attr_t *attr, moirai_handle_t *handle)
{
    fiber_executor_t *ex = (fiber_executor_t *)executor;
    moirai_runtime_t *rt = ex->rt;
    int rc = gate_enter(rt);
    if (rc != 0)
        return rc;
    uint64_t live = atomic_load_explicit(&rt->gate, memory_order_relaxed) & ~MOIRAI__GATE_SHUT;
    rc = moirai__timers_reserve(&rt->timers, (size_t)live);
    struct moirai_fiber *f = NULL;
    moirai__fiber_cache_t *cache = NULL;
    if (rc == 0 && ex->stack_size == moirai__stack_pool_stack_size(rt->stacks)) {
        moirai__thread_t *t = moirai__thread_get();
        cache = cache_of(rt, t->current != NULL ? t->slot : moirai_sched_worker_index());
    }
    if (rc == 0 && cache != NULL && cache->count > 0) {
        f = cache->fibers[--cache->count];
        /* Up to `stack`: the rest stays for the registry (see the struct). */
        memset(f, 0, offsetof(struct moirai_fiber, stack));
    } else if (rc == 0) {
        f = moirai_malloc(sizeof(*f));
        if (f == NULL)
            rc = -ENOMEM;
        if (rc == 0) {
            memset(f, 0, sizeof(*f));
            rc = moirai__stack_pool_get(rt->stacks, ex->stack_size, &f->stack);
            if (rc != 0)
                moirai_free(f);
            else
                moirai__fiber_register(rt, f);
        }
    }
    if (rc != 0) {
        gate_leave(rt);
        return rc;
    }
    const char *name = attr != NULL ? attr->name : NULL;
    moirai_sched_job_init(&f->job, fiber_job_run, name != NULL ? name : "fiber");
    f->rt = rt;
    f->fn = fn;
    f->arg = arg;
    f->handle = handle;
    f->name = name;
    f->id = handle != NULL ? moirai_handle_id(handle) : moirai_task_id_next();
    f->priority = attr != NULL ? attr->priority : MOIRAI_PRIORITY_NORMAL;
    /* The rest is zero from the memset: no locals, no wait, no counts. */
    f->wait.heap_index = MOIRAI__NOT_IN_HEAP;
    f->wait.deadline = MOIRAI_DEADLINE_NEVER;
    /* For dumps: relaxed, published by the state's release store after
     * them (a dump that sees the fiber runnable sees its name and id). */
    atomic_store_explicit(&f->dump_id, f->id, memory_order_relaxed);
    atomic_store_explicit(&f->dump_name, name, memory_order_relaxed);
    moirai__fiber_state(f, MOIRAI__FIBER_RUNNABLE);
    moirai__fctx_init(&f->ctx, f->stack->lo, f->stack->size, fiber_entry, f);
    /* Everything above happens before the fiber runs: the scheduler's
     * submission is a release and its take an acquire. A locality hint
     * places the first run only, through an ordinary task that the
     * scheduler routes by the hint (jobs carry no hint); later resumptions
     * go where their waker runs. */
    if (attr != NULL && attr->locality != MOIRAI_LOCALITY_ANY) {
        rc = moirai_sched_spawn(rt->sched, first_run, f, attr, NULL);
        if (rc != 0) {
            moirai__fctx_destroy(&f->ctx);
            moirai__fiber_unregister(rt, f);
            moirai__stack_pool_put(rt->stacks, f->stack);
            moirai_free(f);
            gate_leave(rt);
            return rc;
        }
    } else {
        moirai__fiber_resume(f);
    }
    atomic_fetch_add_explicit(&rt->spawned, 1, memory_order_relaxed);
    return 0;
}

void moirai_fiber_attr_init(moirai_fiber_attr_t *attr)
{
    if (attr == NULL)
        return;
    moirai_task_attr_init(&attr->task);
    attr->stack_size = 0;
}

int moirai_fiber_spawn(moirai_runtime_t *rt, moirai_task_fn fn, void *arg,
                       const moirai_fiber_attr_t *attr, moirai_handle_t *handle)
{
    if (rt == NULL)
        return -EINVAL;
    size_t stack = rt->stack_size;
    if (attr != NULL && attr->stack_size != 0) {
        if (attr->stack_size < MOIRAI_FIBER_STACK_MIN || attr->stack_size > MOIRAI_FIBER_STACK_MAX)
            return -EINVAL;
        stack = attr->stack_size;
    }
    fiber_executor_t ex = {{&spawn_ops}, rt, stack};
    return moirai_executor_spawn(&ex.base, fn, arg, attr != NULL ? &attr->task : NULL, handle);
}

moirai_fiber_t *moirai_fiber_current(void)
{
    return moirai__fiber_self();
}

int moirai_fiber_yield(void)
{
    struct moirai_fiber *f = moirai__fiber_self();
    if (f == NULL)
        return -EPERM;
    moirai__fiber_switch_out(f, resubmit_yield, f);
    return 0;
}

const moirai_cancel_token_t *moirai_fiber_token(void)
{
    struct moirai_fiber *f = moirai__fiber_self();
    return f != NULL ? moirai_handle_token(f->handle) : NULL;
}

moirai_task_id_t moirai_fiber_id(const moirai_fiber_t *fiber)
{
    return fiber != NULL ? fiber->id : MOIRAI_TASK_ID_NONE;
}

const char *moirai_fiber_name(const moirai_fiber_t *fiber)
{
    return fiber != NULL ? fiber->name : NULL;
}

size_t moirai_fiber_stack_used(const moirai_fiber_t *fiber)
{
    return fiber != NULL ? moirai__stack_used(fiber->stack) : 0;
}
