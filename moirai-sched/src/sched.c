/* The scheduler's spawn path: accepting work (the gate, the routing of
 * hints, the executors behind moirai_sched_spawn() and its kin) and
 * running the tasks it accepted (see sched.h for the behaviour and
 * sched_internal.h for the internals).
 *
 * Separate from sched_lifecycle.c (create, destroy) and sched_query.c
 * (what callers ask of a pool) because this is the hot path: a spawn and
 * the task's execution stay in this one file, with the task object
 * (sched_task_t) private to it. */
#include <errno.h>
#include <stddef.h>

#include <moirai/core/log.h>
#include <moirai/core/metrics.h>
#include <moirai/mem/pool.h>

#include <moirai/sched/job.h>

#include "moirai_probe.h"
#include "sched_internal.h"

/* A spawned task: a job header plus what moirai_handle_run() needs. From
 * the scheduler's object pool, so a spawn normally touches only the
 * spawning thread's cache. */
typedef struct sched_task {
    moirai__job_t job;
    moirai_task_fn fn;
    void *arg;
    moirai_handle_t *handle;
    const char *name;
    moirai_task_id_t id; /* only when task_cpu is set */
    bool owned;          /* runs even under CANCEL (moirai__sched_spawn_owned) */
} sched_task_t;

/* ---- Running tasks ---- */

static void run_task(moirai_task_fn fn, void *arg, moirai_handle_t *handle)
{
    if (handle != NULL) {
        (void)moirai_handle_run(handle, fn, arg);
        moirai_handle_release(handle);
    } else {
        void *result = NULL;
        (void)fn(arg, NULL, &result);
    }
}

static void task_execute(moirai__job_t *job, moirai__worker_t *w)
{
    sched_task_t *t = (sched_task_t *)job;
    moirai_sched_t *s = w->sched;
    moirai_task_fn fn = t->fn;
    void *arg = t->arg;
    moirai_handle_t *handle = t->handle;
    const char *name = t->name;
    moirai_task_id_t id = t->id;
    bool owned = t->owned;
    MOIRAI_PROBE3(task_start, s, job, w->index);
    /* Freed before the task runs, so that what it spawns reuses the
     * object while it is still in this thread's cache. */
    moirai_pool_free(s->task_pool, t);

    moirai__watchdog_job_begin(w, name);
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_BEGIN, "sched", name != NULL ? name : "task", NULL, 0);
    /* Relaxed: the flag only decides whether tasks popped from now on
     * run; destroy does not depend on exactly when workers see it. */
    if (__builtin_expect(atomic_load_explicit(&s->cancel, memory_order_relaxed) != 0, 0) &&
        !owned) {
        if (handle != NULL) {
            (void)moirai_handle_fail(handle, -ECANCELED);
            moirai_handle_release(handle);
        }
    } else if (__builtin_expect(s->cfg.task_cpu == NULL, 1)) {
        run_task(fn, arg, handle);
    } else {
        uint64_t t0 = 0, t1 = 0;
        (void)moirai_metrics_thread_cpu_ns(&t0);
        run_task(fn, arg, handle);
        (void)moirai_metrics_thread_cpu_ns(&t1);
        uint64_t cpu = t1 > t0 ? t1 - t0 : 0;
        moirai__stat_add(&w->stats.task_cpu_ns, cpu);
        s->cfg.task_cpu(s->cfg.task_cpu_arg, name, id, cpu);
    }
    MOIRAI_PROBE3(task_end, s, job, w->index);
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_END, "sched", NULL, NULL, 0);
    moirai__worker_job_done(w);
}

/* ---- Accepting work ---- */

int moirai__sched_gate_enter(moirai_sched_t *s)
{
    /* Acquire on the loads that may see SHUT: a caller refused with
     * -ESHUTDOWN has seen destroy's release, so also its earlier store of
     * `cancel`, and anything it does next (say, let a held task finish)
     * comes after the pool started cancelling. */
    uint64_t v = atomic_load_explicit(&s->gate, memory_order_acquire);
    do {
        if (v & MOIRAI__GATE_SHUT)
            return -ESHUTDOWN;
        /* acq_rel on success: destroy's fetch_or, later in the modification
         * order of `gate`, reads a count that includes this job. */
    } while (!atomic_compare_exchange_weak_explicit(&s->gate, &v, v + 1, memory_order_acq_rel,
                                                    memory_order_acquire));
    return 0;
}

/* An accepted external job that is finished (or was never queued). Release:
 * destroy reads it with acquire before it reads `gate`. */
static void ext_finished(moirai_sched_t *s)
{
    atomic_fetch_add_explicit(&s->ext_finished, 1, memory_order_release);
}

void moirai__sched_inject(moirai_sched_t *s, moirai__job_t *job, int prio)
{
    moirai__injector_push(&s->inj, job, prio);
    moirai__sched_notify(s);
}

/* The worker whose inbox a locality hint picks, or NULL when no worker is
 * on that CPU or node. Several candidates take turns. */
static moirai__worker_t *locality_target(moirai_sched_t *s, const moirai_task_attr_t *attr)
{
    /* Regular workers only: a compensating one may not be running, and
     * must find its own queues empty when it retires. */
    int matches = 0;
    for (int i = 0; i < s->nregular; i++) {
        moirai__worker_t *w = &s->workers[i];
        if (attr->locality == MOIRAI_LOCALITY_CPU ? w->cpu == attr->locality_index
                                                  : w->node == attr->locality_index)
            matches++;
    }
    if (matches == 0)
        return NULL;
    /* Relaxed: only spreads hinted tasks over the candidates. */
    int k = (int)(atomic_fetch_add_explicit(&s->locality_rr, 1, memory_order_relaxed) %
                  (uint32_t)matches);
    for (int i = 0; i < s->nregular; i++) {
        moirai__worker_t *w = &s->workers[i];
        if (attr->locality == MOIRAI_LOCALITY_CPU ? w->cpu == attr->locality_index
                                                  : w->node == attr->locality_index) {
            if (k-- == 0)
                return w;
        }
    }
    return NULL;
}

/* Queues a job that does not go to the spawning worker's own queues: to
 * the inbox of a hinted worker, or to the injector. */
static int route_shared(moirai_sched_t *s, moirai__job_t *job, const moirai_task_attr_t *attr)
{
    if (attr->locality != MOIRAI_LOCALITY_ANY) {
        moirai__worker_t *v = locality_target(s, attr);
        if (v != NULL) {
            /* seq_cst, counted before the push: the Dekker half of the idle
             * protocol, as for the injector. */
            atomic_fetch_add_explicit(&v->inbox_count, 1, memory_order_seq_cst);
            if (moirai_queue_push(v->inbox, job) != 0) {
                atomic_fetch_sub_explicit(&v->inbox_count, 1, memory_order_relaxed);
                return -ENOMEM;
            }
            uint64_t idle = atomic_load_explicit(&s->idle, memory_order_seq_cst);
            if (MOIRAI__IDLE_SLEEPING(idle) != 0 && MOIRAI__IDLE_SEARCHING(idle) == 0)
                moirai__idle_wake_one(s, v);
            return 0;
        }
    }
    moirai__sched_inject(s, job, (int)attr->priority);
    return 0;
}

/* A NORMAL, unhinted spawn from one of this scheduler's workers: into the
 * LIFO slot (the previous occupant moves to the deque) or the deque. */
static int spawn_local(moirai__worker_t *w, sched_task_t *t)
{
    /* Counted before it becomes visible, so that destroy never sees it
     * finished before it is counted as accepted. */
    moirai__worker_count_in(w, 1);
    if (moirai__worker_push_local(w, &t->job) != 0) {
        moirai__worker_count_in(w, -1);
        return -ENOMEM;
    }
    moirai__stat_add(&w->stats.spawned, 1);
    moirai__sched_notify(w->sched);
    return 0;
}

static int spawn_task(moirai_sched_t *s, moirai_task_fn fn, void *arg,
                      const moirai_task_attr_t *attr, moirai_handle_t *handle, bool owned)
{
    moirai__worker_t *w = moirai__worker_current();
    bool local = w != NULL && w->sched == s;
    /* From outside, the gate comes first: once destroy has begun, a spawn
     * (made through a reference, moirai_sched_retain()) touches nothing
     * that destroy frees. */
    if (!local) {
        int rc = moirai__sched_gate_enter(s);
        if (rc != 0)
            return rc;
    }

    sched_task_t *t;
    if (moirai_pool_alloc(s->task_pool, (void **)&t) != 0) {
        if (!local)
            ext_finished(s);
        return -ENOMEM;
    }
    t->job.execute = task_execute;
    t->fn = fn;
    t->arg = arg;
    t->handle = handle;
    t->name = attr->name;
    t->owned = owned;
    t->id = MOIRAI_TASK_ID_NONE;
    if (s->cfg.task_cpu != NULL)
        t->id = handle != NULL ? moirai_handle_id(handle) : moirai_task_id_next();

    MOIRAI_PROBE4(task_spawn, s, &t->job, attr->name, local ? w->index : -1);
    int rc;
    if (local) {
        if (attr->priority == MOIRAI_PRIORITY_NORMAL && attr->locality == MOIRAI_LOCALITY_ANY)
            rc = spawn_local(w, t);
        else {
            moirai__worker_count_in(w, 1);
            rc = route_shared(s, &t->job, attr);
            if (rc != 0)
                moirai__worker_count_in(w, -1);
            else
                moirai__stat_add(&w->stats.spawned, 1);
        }
    } else {
        rc = route_shared(s, &t->job, attr);
        if (rc != 0)
            ext_finished(s);
    }
    if (rc != 0)
        moirai_pool_free(s->task_pool, t);
    return rc;
}

static int sched_spawn_op(moirai_executor_t *executor, moirai_task_fn fn, void *arg,
                          const moirai_task_attr_t *attr, moirai_handle_t *handle)
{
    return spawn_task((moirai_sched_t *)executor, fn, arg, attr, handle, false);
}

static int owned_spawn_op(moirai_executor_t *executor, moirai_task_fn fn, void *arg,
                          const moirai_task_attr_t *attr, moirai_handle_t *handle)
{
    moirai_sched_t *s =
        (moirai_sched_t *)((char *)executor - offsetof(moirai_sched_t, owned_executor));
    return spawn_task(s, fn, arg, attr, handle, true);
}

int moirai__sched_spawn_owned(moirai_sched_t *s, moirai_task_fn fn, void *arg,
                              const moirai_task_attr_t *attr)
{
    if (s == NULL)
        return -EINVAL;
    /* Core checks the arguments and fills in default attributes. */
    return moirai_executor_spawn(&s->owned_executor, fn, arg, attr, NULL);
}

bool moirai__sched_cancelling(const moirai_sched_t *s)
{
    return atomic_load_explicit(&((moirai_sched_t *)s)->cancel, memory_order_relaxed) != 0;
}

static int blocking_spawn_op(moirai_executor_t *executor, moirai_task_fn fn, void *arg,
                             const moirai_task_attr_t *attr, moirai_handle_t *handle)
{
    (void)attr; /* priority and locality do not apply there */
    moirai_sched_t *s =
        (moirai_sched_t *)((char *)executor - offsetof(moirai_sched_t, blocking_executor));
    moirai__worker_t *w = moirai__worker_current();
    if (w != NULL && w->sched == s) {
        /* The spawning task is itself counted, so the pool is alive until
         * it finishes. */
        return moirai__blocking_submit(s->blocking, fn, arg, handle);
    }
    /* From outside the pool, the submission is counted like an external
     * job while it is in flight, so destroy does not free the blocking
     * pool under it. */
    int rc = moirai__sched_gate_enter(s);
    if (rc != 0)
        return rc;
    rc = moirai__blocking_submit(s->blocking, fn, arg, handle);
    ext_finished(s);
    return rc;
}

static const moirai_executor_ops_t sched_ops = {.spawn = sched_spawn_op};
static const moirai_executor_ops_t blocking_ops = {.spawn = blocking_spawn_op};
static const moirai_executor_ops_t owned_ops = {.spawn = owned_spawn_op};

int moirai__sched_tasks_create(moirai_sched_t *s)
{
    s->executor.ops = &sched_ops;
    s->blocking_executor.ops = &blocking_ops;
    s->owned_executor.ops = &owned_ops;
    moirai_pool_config_t pc;
    moirai_pool_config_init(&pc, sizeof(sched_task_t));
    pc.name = "moirai-sched tasks";
    return moirai_pool_create(&s->task_pool, &pc);
}

int moirai_sched_spawn(moirai_sched_t *sched, moirai_task_fn fn, void *arg,
                       const moirai_task_attr_t *attr, moirai_handle_t *handle)
{
    if (sched == NULL)
        return -EINVAL;
    return moirai_executor_spawn(&sched->executor, fn, arg, attr, handle);
}

int moirai_sched_spawn_blocking(moirai_sched_t *sched, moirai_task_fn fn, void *arg,
                                const moirai_task_attr_t *attr, moirai_handle_t *handle)
{
    if (sched == NULL)
        return -EINVAL;
    return moirai_executor_spawn(&sched->blocking_executor, fn, arg, attr, handle);
}

moirai_executor_t *moirai_sched_executor(moirai_sched_t *sched)
{
    return sched != NULL ? &sched->executor : NULL;
}
