/* The scheduler object: creation, spawning, shutdown and statistics (see
 * sched.h for the behaviour and sched_internal.h for the internals). */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include <moirai/core/alloc.h>
#include <moirai/core/log.h>
#include <moirai/core/metrics.h>
#include <moirai/core/park.h>
#include <moirai/core/topology.h>
#include <moirai/mem/pool.h>

#include <moirai/sched/job.h>

#include "moirai_probe.h"
#include "sched_internal.h"

#define MAX_WORKERS          1024
#define DEFAULT_STACK        ((size_t)8 << 20)
#define DEFAULT_BLOCKING_MAX 64
#define DEFAULT_KEEPALIVE_NS (10 * MOIRAI_NS_PER_S)
#define DEFAULT_SPIN_NS      (50 * MOIRAI_NS_PER_US)
#define SPIN_MAX_NS          MOIRAI_NS_PER_S
#define DEFAULT_AGING_NS     (10 * MOIRAI_NS_PER_MS)
#define AGING_MAX_NS         (60 * MOIRAI_NS_PER_S)
#define DEQUE_CAPACITY_LOG2  8

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
        s->cfg.task_cpu(s->cfg.task_cpu_ctx, name, id, cpu);
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
                moirai__sched_wake_one(s, v);
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

/* ---- Creation and destruction ---- */

void moirai_sched_config_init(moirai_sched_config_t *cfg)
{
    /* All zero, padding included, so a config can be compared bytewise. */
    if (cfg != NULL)
        memset(cfg, 0, sizeof *cfg);
}

/* Frees everything of a pool whose threads are not running (any more),
 * except the struct itself. */
static void sched_free_parts(moirai_sched_t *s)
{
    if (s->workers != NULL) {
        /* Zeroed entries (not initialised yet) are skipped by each call. */
        for (int i = 0; i < s->nslots; i++) {
            moirai__worker_t *w = &s->workers[i];
            if (w->deque != NULL)
                moirai__deque_destroy(w->deque);
            moirai_queue_destroy(w->inbox);
            moirai__victims_free(&w->victims);
        }
        moirai_free(s->workers);
    }
    if (s->blocking != NULL)
        moirai__blocking_destroy(s->blocking);
    if (s->task_pool != NULL)
        moirai_pool_destroy(s->task_pool);
    moirai_free(s->sleepers);
    pthread_mutex_destroy(&s->sleep_lock);
}

static void sched_free(moirai_sched_t *s)
{
    sched_free_parts(s);
    moirai_free(s);
}

void moirai_sched_retain(moirai_sched_t *sched)
{
    /* Relaxed: the caller holds a reference already, as for any count. */
    if (sched != NULL)
        atomic_fetch_add_explicit(&sched->refs, 1, memory_order_relaxed);
}

void moirai_sched_release(moirai_sched_t *sched)
{
    /* acq_rel: the last release sees every other holder's accesses before
     * it frees the struct. */
    if (sched != NULL && atomic_fetch_sub_explicit(&sched->refs, 1, memory_order_acq_rel) == 1)
        moirai_free(sched);
}

/* Stops the workers and joins those that were started. */
static void stop_workers(moirai_sched_t *s)
{
    atomic_store_explicit(&s->stop, 1, memory_order_seq_cst);
    moirai__sched_wake_all(s);
    for (int i = 0; i < s->nworkers; i++) {
        if (s->workers[i].thread_started)
            pthread_join(s->workers[i].thread, NULL);
    }
}

static int init_worker(moirai_sched_t *s, int i, int cpu_count)
{
    moirai__worker_t *w = &s->workers[i];
    w->sched = s;
    w->index = i;
    w->rng = (uint32_t)(i + 1) * 0x9e3779b9u | 1u;
    bool guest = i >= s->nworkers;
    w->guest = guest;
    /* A guest's thread is not the pool's: the watchdog does not watch it
     * and idle hooks do not serve it. */
    w->watchdog = s->cfg.watchdog_ns != 0 && !guest;
    w->hooked = s->cfg.idle_hooks != NULL && i < s->nregular;
    atomic_init(&w->comp_state, MOIRAI__COMP_IDLE);
    atomic_init(&w->stats.job_name, NULL);
    moirai_cpu_info_t info;
    if (moirai_topology_cpu_at(i % cpu_count, &info) == 0) {
        w->cpu = info.cpu;
        w->node = info.node;
    }
    atomic_init(&w->lifo, NULL);
    atomic_init(&w->inbox_count, 0);
    atomic_init(&w->tasks_in, 0);
    atomic_init(&w->tasks_out, 0);
    atomic_init(&w->park_word, 0);
    atomic_init(&w->join_word, 0);
    atomic_init(&w->listed, false);
    int rc = moirai__deque_create(&w->deque, DEQUE_CAPACITY_LOG2);
    if (rc != 0)
        return rc;
    if (moirai_queue_create(&w->inbox) != 0)
        return -ENOMEM;
    /* A guest steals from every worker slot (built as one slot more than
     * the workers, the guest being the last, so none is left out); the
     * workers reach guests through moirai__worker_steal_guests(). */
    rc = guest ? moirai__victims_build(&w->victims, s->nworkers + 1, s->nworkers, s->cfg.steal)
               : moirai__victims_build(&w->victims, s->nworkers, i, s->cfg.steal);
    if (rc != 0) {
        memset(&w->victims, 0, sizeof w->victims);
        return rc;
    }
    return 0;
}

int moirai_sched_create(moirai_sched_t **out, const moirai_sched_config_t *cfg)
{
    moirai_sched_config_t c;
    moirai_sched_config_init(&c);
    if (cfg != NULL)
        c = *cfg;
    if (out == NULL || c.workers < 0 || c.workers > MAX_WORKERS ||
        (c.steal != MOIRAI_STEAL_LOCALITY && c.steal != MOIRAI_STEAL_RANDOM) ||
        (c.spin_ns > SPIN_MAX_NS && c.spin_ns != MOIRAI_SCHED_NO_SPIN) ||
        (c.aging_ns > AGING_MAX_NS && c.aging_ns != MOIRAI_SCHED_STRICT_PRIORITIES) ||
        c.blocking_max_threads < 0 ||
        (c.watchdog_ns != 0 && c.watchdog_ns < MOIRAI_SCHED_WATCHDOG_MIN_NS) ||
        c.watchdog_compensate < 0 || (c.watchdog_compensate > 0 && c.watchdog_ns == 0) ||
        c.watchdog_compensate > MAX_WORKERS ||
        (c.idle_hooks != NULL &&
         (c.idle_hooks->wait == NULL || c.idle_hooks->wake == NULL || c.idle_hooks->poll == NULL)))
        return -EINVAL;
    /* The worker count and the pinning come from the topology: a failure
     * to read it is this create's failure, not one CPU. */
    int trc = moirai_topology_load();
    if (trc != 0)
        return trc;
    int cpu_count = moirai_topology_cpu_count();
    if (c.workers == 0)
        c.workers = cpu_count < MAX_WORKERS ? cpu_count : MAX_WORKERS;
    if (c.workers + c.watchdog_compensate > MAX_WORKERS)
        return -EINVAL;
    /* Slots: the regular workers, then the compensating ones. */
    int slots = c.workers + c.watchdog_compensate;
    int all_slots = slots + MOIRAI__GUEST_SLOTS;
    /* From here on s->cfg holds what the workers read: spin_ns 0 means no
     * search, aging_ns 0 strict levels. */
    if (c.spin_ns == 0)
        c.spin_ns = DEFAULT_SPIN_NS;
    else if (c.spin_ns == MOIRAI_SCHED_NO_SPIN)
        c.spin_ns = 0;
    if (c.aging_ns == 0)
        c.aging_ns = DEFAULT_AGING_NS;
    else if (c.aging_ns == MOIRAI_SCHED_STRICT_PRIORITIES)
        c.aging_ns = 0;
    if (c.stack_size == 0)
        c.stack_size = DEFAULT_STACK;
    if (c.blocking_max_threads == 0)
        c.blocking_max_threads = DEFAULT_BLOCKING_MAX;
    if (c.blocking_keepalive_ns == 0)
        c.blocking_keepalive_ns = DEFAULT_KEEPALIVE_NS;

    moirai_sched_t *s = moirai_aligned_alloc(_Alignof(moirai_sched_t), sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    memset(s, 0, sizeof *s);
    s->executor.ops = &sched_ops;
    s->blocking_executor.ops = &blocking_ops;
    s->owned_executor.ops = &owned_ops;
    s->cfg = c;
    s->nworkers = slots;
    s->nregular = c.workers;
    s->nslots = all_slots;
    atomic_init(&s->guests_active, 0);
    for (int i = 0; i < MOIRAI__GUEST_SLOTS; i++)
        atomic_init(&s->guest_taken[i], 0);
    atomic_init(&s->comp_wanted, 0);
    atomic_init(&s->idle, 0);
    atomic_init(&s->gate, 0);
    atomic_init(&s->refs, 1);
    atomic_init(&s->ext_finished, 0);
    atomic_init(&s->cancel, 0);
    atomic_init(&s->stop, 0);
    atomic_init(&s->started, 0);
    atomic_init(&s->locality_rr, 0);
    atomic_init(&s->ext_used, 0);
    for (int i = 0; i < MOIRAI__EXT_SLOTS; i++) {
        atomic_init(&s->ext_slot[i].job, NULL);
        atomic_init(&s->ext_slot[i].depth, 0);
    }
    pthread_mutex_init(&s->sleep_lock, NULL);

    int rc = -ENOMEM;
    s->sleepers = moirai_calloc((size_t)all_slots, sizeof *s->sleepers);
    s->workers = moirai_aligned_alloc(MOIRAI_CACHE_LINE, (size_t)all_slots * sizeof *s->workers);
    if (s->workers != NULL)
        memset(s->workers, 0, (size_t)all_slots * sizeof *s->workers);
    if (s->sleepers == NULL || s->workers == NULL)
        goto fail;
    moirai__injector_init(&s->inj, c.aging_ns);
    moirai_pool_config_t pc;
    moirai_pool_config_init(&pc, sizeof(sched_task_t));
    pc.name = "moirai-sched tasks";
    if ((rc = moirai_pool_create(&s->task_pool, &pc)) != 0)
        goto fail;
    if ((rc = moirai__blocking_create(&s->blocking, c.blocking_max_threads, c.blocking_keepalive_ns,
                                      c.stack_size)) != 0)
        goto fail;
    /* Workers not initialised yet are all zero, which sched_free skips. */
    for (int i = 0; i < all_slots; i++) {
        if ((rc = init_worker(s, i, cpu_count)) != 0)
            goto fail;
    }

    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) {
        rc = -ENOMEM;
        goto fail;
    }
    (void)pthread_attr_setstacksize(&attr, c.stack_size);
    for (int i = 0; i < c.workers; i++) {
        moirai__worker_t *w = &s->workers[i];
        if (pthread_create(&w->thread, &attr, moirai__worker_main, w) != 0) {
            pthread_attr_destroy(&attr);
            stop_workers(s);
            rc = -EAGAIN;
            goto fail;
        }
        w->thread_started = true;
    }
    pthread_attr_destroy(&attr);
    /* Acquire: pairs with each worker's release increment. */
    for (;;) {
        uint32_t n = atomic_load_explicit(&s->started, memory_order_acquire);
        if (n >= (uint32_t)c.workers)
            break;
        moirai_park(&s->started, n, MOIRAI_DEADLINE_NEVER);
    }
    if (c.watchdog_ns != 0 && (rc = moirai__watchdog_start(s)) != 0) {
        stop_workers(s);
        goto fail;
    }
    moirai__dump_register(s);
    *out = s;
    return 0;

fail:
    sched_free(s);
    return rc;
}

/* Waits until every accepted task, external join and runtime job has
 * finished (see "Shutdown accounting" in sched_internal.h). Finished
 * counts are read first (acquire), accepted ones second: a finished job
 * read there was counted as accepted before, so equal sums mean nothing
 * was running at the first read; then nothing can be accepted afterwards
 * but runtime jobs from outside, which job.h forbids from then on (a
 * submission racing with this check must have been counted before it,
 * which the runtime guarantees by finishing its submissions first). */
static void wait_quiescent(moirai_sched_t *s)
{
    long sleep_ns = 10000;
    for (;;) {
        uint64_t done = atomic_load_explicit(&s->ext_finished, memory_order_acquire);
        for (int i = 0; i < s->nslots; i++)
            done += atomic_load_explicit(&s->workers[i].tasks_out, memory_order_acquire);
        uint64_t accepted =
            atomic_load_explicit(&s->gate, memory_order_acquire) & MOIRAI__GATE_COUNT;
        for (int i = 0; i < s->nslots; i++)
            accepted += atomic_load_explicit(&s->workers[i].tasks_in, memory_order_relaxed);
        if (done == accepted)
            return;
        /* Destroy is rare and its wait is bounded by the work left; a short
         * sleep, growing to 1 ms, keeps it off the CPU the workers need. */
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 1000000)
            sleep_ns *= 2;
    }
}

int moirai_sched_destroy(moirai_sched_t *sched, moirai_shutdown_t how)
{
    if (sched == NULL || (how != MOIRAI_SHUTDOWN_DRAIN && how != MOIRAI_SHUTDOWN_CANCEL))
        return -EINVAL;
    /* From a worker of `sched`, or from a thread inside a join on it (a
     * guest, possibly of another scheduler, whose thread is one of ours),
     * destroy would wait for its own caller. */
    for (moirai__worker_t *w = moirai__worker_current(); w != NULL;
         w = moirai__worker_is_guest(w) ? w->home : NULL) {
        if (w->sched == sched)
            return -EDEADLK;
    }
    /* Cancelling starts before the gate closes, so that whoever is refused
     * with -ESHUTDOWN (and acquires the gate) also sees `cancel` set. */
    moirai__dump_unregister(sched);
    if (how == MOIRAI_SHUTDOWN_CANCEL)
        atomic_store_explicit(&sched->cancel, 1, memory_order_relaxed);
    /* From now on external spawns and joins are refused; the count they
     * had reached is final. Release: publishes `cancel` with it. */
    atomic_fetch_or_explicit(&sched->gate, MOIRAI__GATE_SHUT, memory_order_acq_rel);
    wait_quiescent(sched);
    /* No task is left to submit blocking work; the blocking pool runs what
     * it has queued and its threads are joined. */
    moirai__blocking_destroy(sched->blocking);
    sched->blocking = NULL;
    /* The watchdog goes before the workers, so that it starts no
     * compensating worker any more; those running stop with the rest. */
    moirai__watchdog_stop(sched);
    stop_workers(sched);
    sched_free_parts(sched);
    moirai_sched_release(sched);
    return 0;
}

/* ---- Queries ---- */

moirai_sched_t *moirai_sched_current(void)
{
    moirai__worker_t *w = moirai__worker_current();
    /* A guest (an outside thread inside a join) is not a worker: it
     * reports what the thread is otherwise. */
    while (w != NULL && moirai__worker_is_guest(w))
        w = w->home;
    return w != NULL ? w->sched : NULL;
}

int moirai_sched_worker_index(void)
{
    moirai__worker_t *w = moirai__worker_current();
    while (w != NULL && moirai__worker_is_guest(w))
        w = w->home;
    return w != NULL ? w->index : -1;
}

int moirai_sched_worker_count(const moirai_sched_t *sched)
{
    return sched != NULL ? sched->nworkers : -EINVAL;
}

int moirai_sched_victims(const moirai_sched_t *sched, int worker, int *order, int *tiers, int cap)
{
    if (sched == NULL || worker < 0 || worker >= sched->nworkers || cap < 0 ||
        (order == NULL && cap > 0))
        return -EINVAL;
    const moirai__victims_t *v = &sched->workers[worker].victims;
    int n = v->count < cap ? v->count : cap;
    for (int i = 0; i < n; i++) {
        order[i] = v->order[i];
        if (tiers != NULL)
            tiers[i] = moirai__victims_tier(v, i);
    }
    return n;
}

static void stats_read(const moirai__worker_t *w, moirai_sched_worker_stats_t *out)
{
    /* Relaxed: the counters are a racy snapshot by contract. */
    moirai__worker_stats_t *st = (moirai__worker_stats_t *)&w->stats;
    out->spawned = atomic_load_explicit(&st->spawned, memory_order_relaxed);
    out->executed = atomic_load_explicit(&st->executed, memory_order_relaxed);
    out->steal_attempts = atomic_load_explicit(&st->steal_attempts, memory_order_relaxed);
    out->steals = atomic_load_explicit(&st->steals, memory_order_relaxed);
    out->stolen = atomic_load_explicit(&st->stolen, memory_order_relaxed);
    out->parks = atomic_load_explicit(&st->parks, memory_order_relaxed);
    out->task_cpu_ns = atomic_load_explicit(&st->task_cpu_ns, memory_order_relaxed);
    out->watchdog_reports = atomic_load_explicit(&st->watchdog_reports, memory_order_relaxed);
    out->compensating_started =
        atomic_load_explicit(&st->compensating_started, memory_order_relaxed);
}

int moirai_sched_worker_stats(const moirai_sched_t *sched, int worker,
                              moirai_sched_worker_stats_t *out)
{
    if (sched == NULL || out == NULL || worker < 0 || worker >= sched->nworkers)
        return -EINVAL;
    stats_read(&sched->workers[worker], out);
    return 0;
}

int moirai_sched_stats(const moirai_sched_t *sched, moirai_sched_worker_stats_t *out)
{
    if (sched == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    /* Guest slots too: what outside callers ran inside joins. */
    for (int i = 0; i < sched->nslots; i++) {
        moirai_sched_worker_stats_t one;
        stats_read(&sched->workers[i], &one);
        out->spawned += one.spawned;
        out->executed += one.executed;
        out->steal_attempts += one.steal_attempts;
        out->steals += one.steals;
        out->stolen += one.stolen;
        out->parks += one.parks;
        out->task_cpu_ns += one.task_cpu_ns;
        out->watchdog_reports += one.watchdog_reports;
        out->compensating_started += one.compensating_started;
    }
    return 0;
}
