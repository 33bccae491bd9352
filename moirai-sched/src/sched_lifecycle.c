/* The scheduler's lifetime: configuration defaults, create (workers,
 * queues, threads), the reference count, and destroy (the gate, the wait
 * for quiescence, the teardown).
 *
 * Separate from sched.c because none of it runs while the pool works:
 * it builds what the spawn path and the workers use, and takes it down
 * once the shutdown accounting (sched_internal.h) says nothing is left.
 * The spawn path's own parts (its executors and task pool) are set up by
 * moirai__sched_tasks_create(), which knows the task object. */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include <moirai/core/alloc.h>
#include <moirai/core/park.h>
#include <moirai/core/topology.h>
#include <moirai/mem/pool.h>

#include <moirai/sched/job.h>

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
    moirai__idle_wake_all(s);
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
    /* The executors and the task pool (sched.c). */
    if ((rc = moirai__sched_tasks_create(s)) != 0)
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
