/* The runtime: create, destroy, the parking hook, statistics.
 *
 * One runtime per process, because core's parking hook is process-wide;
 * `current` holds it. The hook applies to the caller when a fiber runs on
 * the calling thread, so plain threads (and the workers' own loops) keep
 * parking on futexes. */
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/topology.h>
#include <moirai/core/clock.h>
#include <moirai/core/park.h>

#include "async_internal.h"
#include "netpoll.h"

static _Atomic(moirai_runtime_t *) current = NULL;

static bool hook_applies(void *ctx)
{
    (void)ctx;
    return moirai__fiber_self() != NULL;
}

static int hook_park(void *ctx, _Atomic uint32_t *addr, uint32_t expected, uint64_t deadline)
{
    (void)ctx;
    return moirai__waitq_park(moirai__fiber_self(), addr, expected, deadline);
}

static int hook_unpark(void *ctx, _Atomic uint32_t *addr, int max)
{
    (void)ctx;
    return moirai__waitq_unpark(addr, max);
}

/* Static, like the wait table: a thread that loaded the hook just before
 * destroy removed it may still call it afterwards. Its functions need no
 * context: a park comes from a live fiber, which knows its runtime, and an
 * unpark only touches the wait table until it finds a waiter, whose fiber
 * (and so runtime) is alive. */
static const moirai_park_hook_t hook = {hook_applies, hook_park, hook_unpark, NULL};

static const moirai_executor_ops_t runtime_ops = {moirai__fiber_spawn_default};

void moirai_runtime_config_init(moirai_runtime_config_t *cfg)
{
    if (cfg != NULL)
        memset(cfg, 0, sizeof(*cfg));
}

static int check_config(const moirai_runtime_config_t *cfg)
{
    if (cfg->stack_size != 0 &&
        (cfg->stack_size < MOIRAI_FIBER_STACK_MIN || cfg->stack_size > MOIRAI_FIBER_STACK_MAX))
        return -EINVAL;
    return 0;
}

/* Frees what create built, in reverse; each part may be absent. */
static void teardown(moirai_runtime_t *rt)
{
    moirai__reactor_stop(rt->reactor);
    if (rt->owns_sched && rt->sched != NULL)
        moirai_sched_destroy(rt->sched, MOIRAI_SHUTDOWN_DRAIN);
    /* After the scheduler: its idle workers wait in the poller's sets. */
    moirai__netpoll_destroy(rt->netpoll);
    if (rt->caches != NULL)
        moirai__fiber_caches_free(rt);
    moirai_free(rt->caches);
    moirai__stack_pool_destroy(rt->stacks);
    moirai__timers_fini(&rt->timers);
    pthread_mutex_destroy(&rt->fibers_lock);
    moirai_free(rt);
}

int moirai_runtime_create(moirai_runtime_t **out, const moirai_runtime_config_t *cfg)
{
    moirai_runtime_config_t defaults;
    if (cfg == NULL) {
        moirai_runtime_config_init(&defaults);
        cfg = &defaults;
    }
    if (out == NULL || check_config(cfg) != 0)
        return -EINVAL;
    moirai_runtime_t *rt = moirai_calloc(1, sizeof(*rt));
    if (rt == NULL)
        return -ENOMEM;
    moirai_runtime_t *none = NULL;
    /* Claimed first, so two creates never both install a hook. Acq_rel:
     * pairs with destroy's release of the slot. */
    if (!atomic_compare_exchange_strong_explicit(&current, &none, rt, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        moirai_free(rt);
        return -EBUSY;
    }
    rt->executor.ops = &runtime_ops;
    rt->stack_size = cfg->stack_size != 0 ? cfg->stack_size : MOIRAI_FIBER_STACK_DEFAULT;
    atomic_init(&rt->gate, 0);
    atomic_init(&rt->drained, 0);
    pthread_mutex_init(&rt->fibers_lock, NULL);

    int rc = moirai__timers_init(&rt->timers);
    if (rc == 0)
        rc = moirai__stack_pool_create(&rt->stacks, rt->stack_size,
                                       cfg->stack_cache != 0 ? cfg->stack_cache : 1024);
    if (rc == 0 && cfg->sched == NULL) {
        /* The scheduler's idle workers poll the sockets: the poller needs
         * one park set per worker, so the count is settled here. */
        moirai_sched_config_t sc;
        moirai_sched_config_init(&sc);
        if (cfg->sched_config != NULL)
            sc = *cfg->sched_config;
        /* A failure to read the topology fails the create (see
         * moirai_topology_load()). */
        if (sc.workers == 0)
            rc = moirai_topology_load();
        if (rc == 0 && sc.workers == 0)
            sc.workers = moirai_topology_cpu_count();
        if (sc.idle_hooks != NULL || sc.workers < 0)
            rc = -EINVAL;
        if (rc == 0)
            rc = moirai__netpoll_create(&rt->netpoll, sc.workers, false);
        if (rc == 0) {
            sc.idle_hooks = moirai__netpoll_hooks(rt->netpoll);
            rc = moirai_sched_create(&rt->sched, &sc);
            rt->owns_sched = rc == 0;
        }
    } else if (rc == 0) {
        rt->sched = cfg->sched;
        rc = moirai__netpoll_create(&rt->netpoll, 0, true);
    }
    if (rc == 0) {
        rt->ncaches = moirai_sched_worker_count(rt->sched);
        rt->caches = moirai_aligned_alloc(64, (size_t)rt->ncaches * sizeof(*rt->caches));
        if (rt->caches == NULL)
            rc = -ENOMEM;
        else
            memset(rt->caches, 0, (size_t)rt->ncaches * sizeof(*rt->caches));
    }
    if (rc == 0)
        rc = moirai__reactor_start(&rt->reactor, rt);
    if (rc != 0) {
        teardown(rt);
        atomic_store_explicit(&current, NULL, memory_order_release);
        return rc;
    }
    moirai_park_hook_set(&hook);
    moirai__runtime_dump_open(rt);
    *out = rt;
    return 0;
}

int moirai_runtime_destroy(moirai_runtime_t *rt)
{
    if (rt == NULL)
        return -EINVAL;
    if (moirai__fiber_self() != NULL || moirai_sched_current() == rt->sched)
        return -EDEADLK;
    /* Acq_rel: pairs with the fibers' acq_rel decrements. */
    uint64_t g = atomic_fetch_or_explicit(&rt->gate, MOIRAI__GATE_SHUT, memory_order_acq_rel);
    moirai__runtime_dump_close(rt);
    if ((g & ~MOIRAI__GATE_SHUT) != 0) {
        /* Acquire pairs with the last fiber's release stores. */
        uint32_t d;
        while ((d = atomic_load_explicit(&rt->drained, memory_order_acquire)) == 0)
            moirai_park(&rt->drained, 0, MOIRAI_DEADLINE_NEVER);
        /* The last fiber's worker is on its way out of moirai_unpark_all()
         * (a few instructions): the runtime must outlive that. */
        while (atomic_load_explicit(&rt->drained, memory_order_acquire) != MOIRAI__DRAINED_DONE)
            sched_yield();
    }
    /* Every fiber has ended, so nothing parks through the hook any more. */
    moirai_park_hook_set(NULL);
    teardown(rt);
    atomic_store_explicit(&current, NULL, memory_order_release);
    return 0;
}

moirai_sched_t *moirai_runtime_sched(moirai_runtime_t *rt)
{
    return rt != NULL ? rt->sched : NULL;
}

moirai_executor_t *moirai_runtime_executor(moirai_runtime_t *rt)
{
    return rt != NULL ? &rt->executor : NULL;
}

moirai_runtime_t *moirai_runtime_current(void)
{
    return atomic_load_explicit(&current, memory_order_acquire);
}

int moirai_runtime_stats(const moirai_runtime_t *rt, moirai_runtime_stats_t *out)
{
    if (rt == NULL || out == NULL)
        return -EINVAL;
    moirai_runtime_t *r = (moirai_runtime_t *)(uintptr_t)rt;
    memset(out, 0, sizeof(*out));
    /* Relaxed everywhere: counters, read racily as documented. */
    out->fibers_spawned = atomic_load_explicit(&r->spawned, memory_order_relaxed);
    out->fibers_alive = atomic_load_explicit(&r->gate, memory_order_relaxed) & ~MOIRAI__GATE_SHUT;
    out->switches = atomic_load_explicit(&r->switches, memory_order_relaxed);
    out->parks = atomic_load_explicit(&r->parks, memory_order_relaxed);
    out->stack_high_water = atomic_load_explicit(&r->high_water, memory_order_relaxed);
    out->timers_armed = atomic_load_explicit(&r->timers_armed, memory_order_relaxed);
    moirai__stack_pool_stats_t ps;
    moirai__stack_pool_stats(r->stacks, &ps);
    out->stacks_mapped = ps.mapped;
    out->stacks_cached = ps.cached;
    moirai_sched_worker_stats_t ws;
    if (moirai_sched_stats(r->sched, &ws) == 0)
        out->watchdog_reports = ws.watchdog_reports;
    return 0;
}
