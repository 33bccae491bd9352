/* moirai-bench, suite "async": moirai-async's fibers against Boost.Context,
 * ucontext, Boost.Fiber, Go and Tokio.
 *
 * Moirai: one runtime (moirai_runtime_create over a scheduler of 2
 * workers) per measurement, created before the clock starts and destroyed
 * after it stops; the bench thread spawns fibers into it from outside and
 * waits for them as a plain thread (it parks). The peers are shared
 * modules loaded with dlopen(RTLD_LOCAL) on first use, so that a run of
 * other suites never starts the Go runtime (see peer.h for their
 * interface and how each keeps its threads quiet between rounds):
 *   "fcontext"    Boost.Context's make_fcontext / jump_fcontext
 *   "boost_fiber" Boost.Fiber, work_stealing on 2 threads (the bench thread
 *                 and one helper)
 *   "go"          a Go c-shared library; GOMAXPROCS 2, the calling thread
 *                 holding one of the two Ps
 *   "tokio"       a Rust cdylib; a multi-thread runtime of 2 workers
 * "ucontext" (glibc's swapcontext) is in this file. A peer that was not
 * built is reported missing; one whose module cannot be loaded reports
 * the dlopen error on stderr and fails.
 *
 * Every implementation computes on 2 threads. Every metric is lower-is-
 * better; ratio = Moirai / peer.
 *
 * fiber_switch
 *   Two contexts on the bench thread switch to each other: ns per switch
 *   (a round trip is two). "moirai" is moirai-async's own switch
 *   (moirai-async/src/context.h: moirai__context_make and
 *   moirai__context_switch, compiled into moirai-bench from the module's
 *   sources, without the sanitizer annotations the runtime wraps it in),
 *   against "fcontext" (jump_fcontext) and "ucontext" (swapcontext, which
 *   makes a sigprocmask system call each time). No runtime, no scheduler:
 *   the raw switch only.
 *
 * fiber_spawn_join
 *   From inside one fiber on a 2-thread runtime: spawn an empty child
 *   with a join handle and join it, N times; ns per iteration. Moirai:
 *   moirai_handle_create + moirai_fiber_spawn + moirai_handle_join +
 *   moirai_handle_release in a fiber; Go: a goroutine and a
 *   sync.WaitGroup in a goroutine; Boost.Fiber: fiber + join in a fiber;
 *   Tokio: tokio::spawn + await of the JoinHandle in a task. Each runs
 *   1000 untimed iterations first.
 *
 * fiber_yield_2w
 *   100 fibers on 2 threads each yield Y times (Y = N / 100); wall-clock
 *   ns from the first spawn to the last join, per yield. Moirai
 *   moirai_fiber_yield, Boost.Fiber this_fiber::yield, Go runtime.Gosched.
 *
 * mutex_handoff_fibers
 *   1000 fibers on 2 threads each take one shared lock K times
 *   (K = N / 1000); in the critical section each increments a counter and
 *   yields once, so that the lock is really contended: without the yield a
 *   Go mutex loop mostly runs uncontended, each goroutine finishing its
 *   loop within its time slice. The fibers are spawned before the clock
 *   starts and wait at a start gate (a manual-reset moirai_event_t, a
 *   closed Go channel, a Boost.Fiber condition variable) until every one
 *   has reached it; the gate opens as the clock starts. So K can be small
 *   (the runner lowers N to fit the slowest implementation) without the
 *   spawns and the fibers' first runs (fresh stacks faulting in) diluting
 *   the figure.
 *   Wall-clock ns per acquisition. The final counter must be 1000 * K, or
 *   the round fails. Moirai moirai_mutex_t
 *   (which parks the fiber through core's parking hook) +
 *   moirai_fiber_yield, Go sync.Mutex + runtime.Gosched, Boost.Fiber
 *   boost::fibers::mutex + this_fiber::yield.
 *
 * sleep_10k
 *   10 000 fibers each sleep 10 ms, then all are joined; the metric is the
 *   process's CPU time (getrusage RUSAGE_SELF, user + system, every
 *   thread) from before the first spawn to after the last join, per
 *   fiber. Moirai moirai_fiber_sleep and a moirai_waitgroup_t the bench
 *   thread waits on; Go time.Sleep and a sync.WaitGroup. The iteration
 *   count is the number of fibers.
 *
 * parked_rss (report only: no target)
 *   10 000 fibers with the default stack each block on a wait; the
 *   resident set (/proc/self/statm) once all are blocked, minus the
 *   resident set before the first spawn, divided by 10 000; then all are
 *   released and joined. Moirai: a manual-reset moirai_event_t, the bench
 *   thread measuring 20 ms after every fiber has announced itself, just
 *   before its wait; Go: a channel receive, measured the same way (after runtime.GC and
 * debug.FreeOSMemory, so that goroutine stacks of earlier rounds are not reused resident);
 *   Boost.Fiber: a boost::fibers::condition_variable. Which memory an
 *   allocator keeps between rounds differs per runtime, so the figure is
 *   an estimate of the pages a parked fiber keeps resident, not an exact
 *   count. A round that sees the resident set shrink (the kernel reclaimed
 *   pages meanwhile) is taken again, up to 3 times, for every
 *   implementation. The iteration count is the number of fibers. */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <moirai/async/fiber.h>
#include <moirai/async/runtime.h>
#include <moirai/core/clock.h>
#include <moirai/core/error.h>
#include <moirai/core/handle.h>
#include <moirai/sync/event.h>
#include <moirai/sync/mutex.h>
#include <moirai/sync/waitgroup.h>

#ifdef MOIRAI_BENCH_ASYNC_HAVE_CONTEXT
#include "../../moirai-async/src/context.h"
#endif

#include "../bench.h"
#include "peer.h"

#define THREADS         2
#define SWITCH_STACK    ((size_t)64 * 1024)
#define WARM_UP_ITERS   1000
#define YIELD_FIBERS    100
#define MUTEX_FIBERS    1000
#define SLEEP_NS        UINT64_C(10000000)
#define PARK_TIMEOUT_NS UINT64_C(10000000000)
#define PARK_SETTLE_NS  20000000

/* ---- common ---- */

static double per_op(uint64_t t0, uint64_t t1, uint64_t ops)
{
    return (double)(t1 - t0) / (double)(ops ? ops : 1);
}

/* The process's CPU time, user + system, every thread; -1 on error. */
static int64_t process_cpu_ns(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

/* The resident set in bytes (second field of /proc/self/statm, in pages);
 * -1 on error. */
static int64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    long size = 0, resident = -1;
    int n = fscanf(f, "%ld %ld", &size, &resident);
    fclose(f);
    if (n != 2 || resident < 0)
        return -1;
    return (int64_t)resident * sysconf(_SC_PAGESIZE);
}

static void sleep_ns(long ns)
{
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
}

/* ---- Moirai: the runtime ---- */

/* A runtime over a scheduler of THREADS workers, created before a clock
 * starts. */
static int runtime_create(moirai_runtime_t **out)
{
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = THREADS;
    moirai_runtime_config_t rc;
    moirai_runtime_config_init(&rc);
    rc.sched_config = &sc;
    int err = moirai_runtime_create(out, &rc);
    if (err != 0)
        fprintf(stderr, "async: moirai_runtime_create: %s\n", moirai_strerror(err));
    return err;
}

/* Destroys `rt` after the clock stopped; turns `t` into a failure if that
 * fails. */
static double runtime_destroy(moirai_runtime_t *rt, double t)
{
    int err = moirai_runtime_destroy(rt);
    if (err != 0) {
        fprintf(stderr, "async: moirai_runtime_destroy: %s\n", moirai_strerror(err));
        return -1.0;
    }
    return t;
}

/* Set by a fiber whose Moirai call failed; checked after the join.
 * Relaxed: the wait group's or handle's join orders it before the read. */
static _Atomic int fiber_error;

static void note_error(int err)
{
    if (err != 0)
        atomic_store_explicit(&fiber_error, err, memory_order_relaxed);
}

static int take_error(void)
{
    return atomic_exchange_explicit(&fiber_error, 0, memory_order_relaxed);
}

/* Spawns `n` fibers of `fn(arg)` without handles, each counted on `wg`
 * (which their function calls done() on). Returns 0, or the first spawn
 * error after taking the fibers never spawned off the count. */
static int spawn_counted(moirai_runtime_t *rt, moirai_task_fn fn, void *arg, uint64_t n,
                         moirai_waitgroup_t *wg)
{
    int err = moirai_waitgroup_add(wg, (int32_t)n);
    if (err != 0)
        return err;
    for (uint64_t i = 0; i < n; i++) {
        err = moirai_fiber_spawn(rt, fn, arg, NULL, NULL);
        if (err != 0) {
            moirai_waitgroup_add(wg, -(int32_t)(n - i));
            return err;
        }
    }
    return 0;
}

/* ---- fiber_switch ---- */

#ifdef MOIRAI_BENCH_ASYNC_HAVE_CONTEXT
static moirai__context_t switch_main, switch_pong;

/* The other side of the ping-pong: switches straight back, forever. It is
 * abandoned, suspended, when the measurement ends; it owns nothing. */
static void moirai_pong(void *arg)
{
    (void)arg;
    for (;;)
        moirai__context_switch(&switch_pong, &switch_main);
}

static double fiber_switch_moirai(uint64_t iters)
{
    char *stack = malloc(SWITCH_STACK);
    if (!stack)
        return -1.0;
    moirai__context_make(&switch_pong, stack, SWITCH_STACK, moirai_pong, NULL);
    /* The first round trip, untimed, runs the entry. */
    moirai__context_switch(&switch_main, &switch_pong);
    uint64_t pairs = iters / 2 ? iters / 2 : 1;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < pairs; i++)
        moirai__context_switch(&switch_main, &switch_pong);
    uint64_t t1 = bench_now_ns();
    free(stack);
    return per_op(t0, t1, 2 * pairs);
}
#endif

static ucontext_t uc_main, uc_pong;

static void ucontext_pong(void)
{
    for (;;)
        swapcontext(&uc_pong, &uc_main);
}

static double fiber_switch_ucontext(uint64_t iters)
{
    char *stack = malloc(SWITCH_STACK);
    if (!stack || getcontext(&uc_pong) != 0) {
        free(stack);
        return -1.0;
    }
    uc_pong.uc_stack.ss_sp = stack;
    uc_pong.uc_stack.ss_size = SWITCH_STACK;
    uc_pong.uc_link = NULL;
    makecontext(&uc_pong, ucontext_pong, 0);
    double t = -1.0;
    if (swapcontext(&uc_main, &uc_pong) == 0) {
        uint64_t pairs = iters / 2 ? iters / 2 : 1;
        uint64_t t0 = bench_now_ns();
        for (uint64_t i = 0; i < pairs; i++)
            swapcontext(&uc_main, &uc_pong);
        t = per_op(t0, bench_now_ns(), 2 * pairs);
    }
    free(stack);
    return t;
}

/* ---- fiber_spawn_join ---- */

static int empty_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    return 0;
}

/* One spawn of an empty fiber with a handle, and its join. */
static int spawn_join_once(moirai_runtime_t *rt)
{
    moirai_handle_t *h;
    int err = moirai_handle_create(&h);
    if (err != 0)
        return err;
    err = moirai_fiber_spawn(rt, empty_fiber, NULL, NULL, h);
    if (err == 0)
        err = moirai_handle_join(h, NULL);
    moirai_handle_release(h);
    return err;
}

typedef struct spawn_join_arg {
    moirai_runtime_t *rt;
    uint64_t iters;
    double ns; /* read after the driver's handle is joined */
} spawn_join_arg_t;

/* The driver fiber: the loop runs inside a fiber, as it does in every
 * implementation. */
static int spawn_join_driver(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    spawn_join_arg_t *a = arg;
    for (int i = 0; i < WARM_UP_ITERS; i++) {
        int err = spawn_join_once(a->rt);
        if (err != 0)
            return err;
    }
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < a->iters; i++) {
        int err = spawn_join_once(a->rt);
        if (err != 0)
            return err;
    }
    a->ns = per_op(t0, bench_now_ns(), a->iters);
    return 0;
}

static double fiber_spawn_join_moirai(uint64_t iters)
{
    moirai_runtime_t *rt;
    if (runtime_create(&rt) != 0)
        return -1.0;
    spawn_join_arg_t a = {rt, iters, -1.0};
    moirai_handle_t *h;
    int err = moirai_handle_create(&h);
    if (err == 0) {
        err = moirai_fiber_spawn(rt, spawn_join_driver, &a, NULL, h);
        if (err == 0)
            err = moirai_handle_join(h, NULL);
        moirai_handle_release(h);
    }
    if (err != 0) {
        fprintf(stderr, "async/fiber_spawn_join: moirai: %s\n", moirai_strerror(err));
        a.ns = -1.0;
    }
    return runtime_destroy(rt, a.ns);
}

/* ---- fiber_yield_2w ---- */

typedef struct yield_arg {
    uint64_t yields;
    moirai_waitgroup_t wg;
} yield_arg_t;

static int yield_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    yield_arg_t *a = arg;
    for (uint64_t i = 0; i < a->yields; i++) {
        int err = moirai_fiber_yield();
        if (err != 0) {
            note_error(err);
            break;
        }
    }
    moirai_waitgroup_done(&a->wg);
    return 0;
}

/* Y from the case's iteration count: N yields in all. */
static uint64_t yields_per_fiber(uint64_t iters)
{
    return iters / YIELD_FIBERS ? iters / YIELD_FIBERS : 1;
}

static double fiber_yield_2w_moirai(uint64_t iters)
{
    moirai_runtime_t *rt;
    if (runtime_create(&rt) != 0)
        return -1.0;
    yield_arg_t a = {yields_per_fiber(iters), MOIRAI_WAITGROUP_INIT};
    take_error();
    uint64_t t0 = bench_now_ns();
    int err = spawn_counted(rt, yield_fiber, &a, YIELD_FIBERS, &a.wg);
    moirai_waitgroup_wait(&a.wg);
    double t = per_op(t0, bench_now_ns(), YIELD_FIBERS * a.yields);
    if (err == 0)
        err = take_error();
    if (err != 0) {
        fprintf(stderr, "async/fiber_yield_2w: moirai: %s\n", moirai_strerror(err));
        t = -1.0;
    }
    return runtime_destroy(rt, t);
}

/* ---- mutex_handoff_fibers ---- */

typedef struct mutex_arg {
    moirai_event_t start;     /* the start gate (see mutex_handoff_fibers) */
    _Atomic uint64_t arrived; /* fibers that have reached the gate */
    moirai_mutex_t mutex;
    uint64_t count; /* under `mutex` */
    uint64_t per_fiber;
    moirai_waitgroup_t wg;
} mutex_arg_t;

static int mutex_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    mutex_arg_t *a = arg;
    /* Relaxed: a count the bench thread polls; the gate orders the rest. */
    atomic_fetch_add_explicit(&a->arrived, 1, memory_order_relaxed);
    moirai_event_wait(&a->start);
    for (uint64_t i = 0; i < a->per_fiber; i++) {
        moirai_mutex_lock(&a->mutex);
        a->count++;
        /* Yield while holding the lock so that the others really contend
         * for it (see mutex_handoff_fibers above). */
        note_error(moirai_fiber_yield());
        moirai_mutex_unlock(&a->mutex);
    }
    moirai_waitgroup_done(&a->wg);
    return 0;
}

/* K from the case's iteration count: N acquisitions in all. */
static uint64_t acquisitions_per_fiber(uint64_t iters)
{
    return iters / MUTEX_FIBERS ? iters / MUTEX_FIBERS : 1;
}

/* Checks the final count of a mutex_handoff_fibers round. */
static bool mutex_count_ok(const char *impl, uint64_t count, uint64_t per_fiber)
{
    if (count == MUTEX_FIBERS * per_fiber)
        return true;
    fprintf(stderr, "async/mutex_handoff_fibers: %s: counter %llu, expected %llu\n", impl,
            (unsigned long long)count, (unsigned long long)(MUTEX_FIBERS * per_fiber));
    return false;
}

static double mutex_handoff_fibers_moirai(uint64_t iters)
{
    moirai_runtime_t *rt;
    if (runtime_create(&rt) != 0)
        return -1.0;
    mutex_arg_t *a = malloc(sizeof(*a));
    if (!a)
        return runtime_destroy(rt, -1.0);
    moirai_event_init(&a->start, MOIRAI_EVENT_MANUAL, false);
    moirai_mutex_init(&a->mutex);
    a->count = 0;
    a->per_fiber = acquisitions_per_fiber(iters);
    moirai_waitgroup_init(&a->wg);
    take_error();
    atomic_init(&a->arrived, 0);
    int err = spawn_counted(rt, mutex_fiber, a, MUTEX_FIBERS, &a->wg);
    while (err == 0 && atomic_load_explicit(&a->arrived, memory_order_relaxed) < MUTEX_FIBERS)
        sleep_ns(100000);
    uint64_t t0 = bench_now_ns();
    moirai_event_set(&a->start);
    moirai_waitgroup_wait(&a->wg);
    double t = per_op(t0, bench_now_ns(), MUTEX_FIBERS * a->per_fiber);
    if (err == 0)
        err = take_error();
    if (err != 0) {
        fprintf(stderr, "async/mutex_handoff_fibers: moirai: %s\n", moirai_strerror(err));
        t = -1.0;
    } else if (!mutex_count_ok("moirai", a->count, a->per_fiber)) {
        t = -1.0;
    }
    moirai_mutex_destroy(&a->mutex);
    moirai_event_destroy(&a->start);
    free(a);
    return runtime_destroy(rt, t);
}

/* ---- sleep_10k ---- */

typedef struct sleep_arg {
    moirai_waitgroup_t wg;
} sleep_arg_t;

static int sleep_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    sleep_arg_t *a = arg;
    note_error(moirai_fiber_sleep(SLEEP_NS));
    moirai_waitgroup_done(&a->wg);
    return 0;
}

static double sleep_10k_moirai(uint64_t iters)
{
    moirai_runtime_t *rt;
    if (runtime_create(&rt) != 0)
        return -1.0;
    sleep_arg_t a = {MOIRAI_WAITGROUP_INIT};
    take_error();
    int64_t c0 = process_cpu_ns();
    int err = spawn_counted(rt, sleep_fiber, &a, iters, &a.wg);
    moirai_waitgroup_wait(&a.wg);
    int64_t c1 = process_cpu_ns();
    if (err == 0)
        err = take_error();
    double t = (double)(c1 - c0) / (double)(iters ? iters : 1);
    if (err != 0) {
        fprintf(stderr, "async/sleep_10k: moirai: %s\n", moirai_strerror(err));
        t = -1.0;
    } else if (c0 < 0 || c1 < 0) {
        t = -1.0;
    }
    return runtime_destroy(rt, t);
}

/* ---- parked_rss ---- */

typedef struct parked_arg {
    moirai_event_t release;
    _Atomic uint64_t started;
    moirai_waitgroup_t wg;
} parked_arg_t;

static int parked_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    parked_arg_t *a = arg;
    /* Relaxed: only counts; it publishes nothing. */
    atomic_fetch_add_explicit(&a->started, 1, memory_order_relaxed);
    moirai_event_wait(&a->release);
    moirai_waitgroup_done(&a->wg);
    return 0;
}

/* Waits until all `n` fibers have started, then a little longer so that
 * the last ones have got from the event's brief spin into their park (the
 * runtime's park statistics are summed only when a fiber ends, so they
 * cannot say when all are parked). Returns 0 or -ETIMEDOUT. */
static int wait_parked(parked_arg_t *a, uint64_t n)
{
    uint64_t deadline = moirai_clock_now_ns() + PARK_TIMEOUT_NS;
    /* Relaxed: a count; the settling sleep below does the rest. */
    while (atomic_load_explicit(&a->started, memory_order_relaxed) < n) {
        if (moirai_clock_now_ns() > deadline)
            return -ETIMEDOUT;
        sleep_ns(1000000);
    }
    sleep_ns(PARK_SETTLE_NS);
    return 0;
}

static double parked_rss_moirai_once(uint64_t iters)
{
    moirai_runtime_t *rt;
    if (runtime_create(&rt) != 0)
        return -1.0;
    parked_arg_t *a = malloc(sizeof(*a));
    if (!a)
        return runtime_destroy(rt, -1.0);
    moirai_event_init(&a->release, MOIRAI_EVENT_MANUAL, false);
    atomic_init(&a->started, 0);
    moirai_waitgroup_init(&a->wg);
    int64_t before = rss_bytes();
    int err = spawn_counted(rt, parked_fiber, a, iters, &a->wg);
    if (err == 0)
        err = wait_parked(a, iters);
    int64_t after = rss_bytes();
    moirai_event_set(&a->release);
    moirai_waitgroup_wait(&a->wg);
    double t = (double)(after - before) / (double)(iters ? iters : 1);
    if (err != 0) {
        fprintf(stderr, "async/parked_rss: moirai: %s (%llu of %llu fibers started)\n",
                moirai_strerror(err),
                (unsigned long long)atomic_load_explicit(&a->started, memory_order_relaxed),
                (unsigned long long)iters);
        t = -1.0;
    } else if (before < 0 || after < 0) {
        t = -1.0;
    }
    moirai_event_destroy(&a->release);
    free(a);
    return runtime_destroy(rt, t);
}

/* The resident set is the whole process's, and the kernel may take pages
 * back meanwhile (proactive reclaim runs on these VMs), so a round can see
 * it shrink while the fibers park: that round measured nothing (a
 * negative or zero figure, which the runner would count as a failure).
 * Such a round is taken again, up to RSS_ATTEMPTS times, for every
 * implementation alike; -1 (an error) is never retried. */
#define RSS_ATTEMPTS 3

static double rss_measured(double (*once)(int, uint64_t), int which, uint64_t iters)
{
    double v = -1.0;
    for (int i = 0; i < RSS_ATTEMPTS; i++) {
        v = once(which, iters);
        if (v > 0.0 || v == -1.0)
            break;
    }
    return v;
}

static double parked_rss_moirai_which(int which, uint64_t iters)
{
    (void)which;
    return parked_rss_moirai_once(iters);
}

static double parked_rss_moirai(uint64_t iters)
{
    return rss_measured(parked_rss_moirai_which, 0, iters);
}

/* ---- the peers ---- */

typedef double (*peer_switch_fn)(uint64_t);
typedef double (*peer_spawn_join_fn)(int, uint64_t);
typedef double (*peer_yield_fn)(int, int, uint64_t);
typedef double (*peer_mutex_fn)(int, int, uint64_t, uint64_t *);
typedef double (*peer_sleep_fn)(int, int, uint64_t);
typedef double (*peer_rss_fn)(int, int);

typedef struct peer {
    const char *impl;
    const char *path;      /* the module, NULL when it was not built */
    const char *not_built; /* why not, when path is NULL */
    bool tried;            /* dlopen attempted */
    void *handle;          /* NULL until loaded, or if loading failed */
} peer_t;

enum { PEER_FCONTEXT, PEER_BOOST_FIBER, PEER_GO, PEER_TOKIO, PEER_COUNT };

/* The modules' paths and, for those not built, the reason, come from
 * bench/meson.build. */
#ifndef MOIRAI_BENCH_ASYNC_FCONTEXT
#define MOIRAI_BENCH_ASYNC_FCONTEXT NULL
#endif
#ifndef MOIRAI_BENCH_ASYNC_BOOST_FIBER
#define MOIRAI_BENCH_ASYNC_BOOST_FIBER NULL
#endif
#ifndef MOIRAI_BENCH_ASYNC_GO
#define MOIRAI_BENCH_ASYNC_GO NULL
#endif
#ifndef MOIRAI_BENCH_ASYNC_TOKIO
#define MOIRAI_BENCH_ASYNC_TOKIO NULL
#endif
#ifndef MOIRAI_BENCH_ASYNC_FCONTEXT_MISSING
#define MOIRAI_BENCH_ASYNC_FCONTEXT_MISSING "not built"
#endif
#ifndef MOIRAI_BENCH_ASYNC_BOOST_FIBER_MISSING
#define MOIRAI_BENCH_ASYNC_BOOST_FIBER_MISSING "not built"
#endif
#ifndef MOIRAI_BENCH_ASYNC_GO_MISSING
#define MOIRAI_BENCH_ASYNC_GO_MISSING "not built"
#endif
#ifndef MOIRAI_BENCH_ASYNC_TOKIO_MISSING
#define MOIRAI_BENCH_ASYNC_TOKIO_MISSING "not built"
#endif
#ifndef MOIRAI_BENCH_ASYNC_CONTEXT_MISSING
#define MOIRAI_BENCH_ASYNC_CONTEXT_MISSING "not built"
#endif

static peer_t peers[PEER_COUNT] = {
    [PEER_FCONTEXT] = {"fcontext", MOIRAI_BENCH_ASYNC_FCONTEXT, MOIRAI_BENCH_ASYNC_FCONTEXT_MISSING,
                       false, NULL},
    [PEER_BOOST_FIBER] = {"boost_fiber", MOIRAI_BENCH_ASYNC_BOOST_FIBER,
                          MOIRAI_BENCH_ASYNC_BOOST_FIBER_MISSING, false, NULL},
    [PEER_GO] = {"go", MOIRAI_BENCH_ASYNC_GO, MOIRAI_BENCH_ASYNC_GO_MISSING, false, NULL},
    [PEER_TOKIO] = {"tokio", MOIRAI_BENCH_ASYNC_TOKIO, MOIRAI_BENCH_ASYNC_TOKIO_MISSING, false,
                    NULL},
};

/* The entry point `name` of peer `which`, loading its module on first use
 * (it then stays loaded for the life of the process: neither the Go
 * runtime nor Boost.Fiber's pool can be unloaded). NULL, with the reason on
 * stderr, if the module cannot be loaded or lacks the entry point. */
static void *peer_sym(int which, const char *name)
{
    peer_t *p = &peers[which];
    if (!p->tried) {
        p->tried = true;
        p->handle = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
        if (!p->handle)
            fprintf(stderr, "async: %s: dlopen: %s\n", p->impl, dlerror());
    }
    if (!p->handle)
        return NULL;
    void *f = dlsym(p->handle, name);
    if (!f)
        fprintf(stderr, "async: %s: no %s in %s\n", p->impl, name, p->path);
    return f;
}

/* POSIX allows converting dlsym's object pointer to a function pointer;
 * the cast through uintptr_t keeps -Wpedantic quiet. */
#define PEER_FN(type, which, name) ((type)(uintptr_t)peer_sym(which, name))

static double peer_switch(int which, uint64_t iters)
{
    peer_switch_fn f = PEER_FN(peer_switch_fn, which, "moirai_peer_fiber_switch");
    return f ? f(iters) : -1.0;
}

static double peer_spawn_join(int which, uint64_t iters)
{
    peer_spawn_join_fn f = PEER_FN(peer_spawn_join_fn, which, "moirai_peer_spawn_join");
    return f ? f(THREADS, iters) : -1.0;
}

static double peer_yield(int which, uint64_t iters)
{
    peer_yield_fn f = PEER_FN(peer_yield_fn, which, "moirai_peer_yield");
    return f ? f(THREADS, YIELD_FIBERS, yields_per_fiber(iters)) : -1.0;
}

static double peer_mutex(int which, uint64_t iters)
{
    peer_mutex_fn f = PEER_FN(peer_mutex_fn, which, "moirai_peer_mutex_handoff");
    if (!f)
        return -1.0;
    uint64_t k = acquisitions_per_fiber(iters), count = 0;
    double t = f(THREADS, MUTEX_FIBERS, k, &count);
    if (t >= 0.0 && !mutex_count_ok(peers[which].impl, count, k))
        return -1.0;
    return t;
}

static double peer_sleep(int which, uint64_t iters)
{
    peer_sleep_fn f = PEER_FN(peer_sleep_fn, which, "moirai_peer_sleep");
    return f ? f(THREADS, (int)iters, SLEEP_NS) : -1.0;
}

static double peer_rss_once(int which, uint64_t iters)
{
    peer_rss_fn f = PEER_FN(peer_rss_fn, which, "moirai_peer_parked_rss");
    return f ? f(THREADS, (int)iters) : -1.0;
}

static double peer_rss(int which, uint64_t iters)
{
    return rss_measured(peer_rss_once, which, iters);
}

#define PEER_RUN(name, fn, which)                                                                  \
    static double name(uint64_t iters)                                                             \
    {                                                                                              \
        return fn(which, iters);                                                                   \
    }

PEER_RUN(fiber_switch_fcontext, peer_switch, PEER_FCONTEXT)
PEER_RUN(fiber_spawn_join_go, peer_spawn_join, PEER_GO)
PEER_RUN(fiber_spawn_join_boost_fiber, peer_spawn_join, PEER_BOOST_FIBER)
PEER_RUN(fiber_spawn_join_tokio, peer_spawn_join, PEER_TOKIO)
PEER_RUN(fiber_yield_2w_boost_fiber, peer_yield, PEER_BOOST_FIBER)
PEER_RUN(fiber_yield_2w_go, peer_yield, PEER_GO)
PEER_RUN(mutex_handoff_fibers_go, peer_mutex, PEER_GO)
PEER_RUN(mutex_handoff_fibers_boost_fiber, peer_mutex, PEER_BOOST_FIBER)
PEER_RUN(sleep_10k_go, peer_sleep, PEER_GO)
PEER_RUN(parked_rss_go, peer_rss, PEER_GO)
PEER_RUN(parked_rss_boost_fiber, peer_rss, PEER_BOOST_FIBER)

/* ---- the cases ---- */

/* A peer impl's `run` is set when its module was built (see
 * bench_async_cases); `peer` says which module. */
typedef struct impl_binding {
    bench_impl_t *impl;
    int peer;
    double (*run)(uint64_t);
} impl_binding_t;

static bench_impl_t fiber_switch_impls[] = {
#ifdef MOIRAI_BENCH_ASYNC_HAVE_CONTEXT
    {"moirai", fiber_switch_moirai, NULL},
#else
    {"moirai", NULL, MOIRAI_BENCH_ASYNC_CONTEXT_MISSING},
#endif
    {"fcontext", NULL, NULL},
    {"ucontext", fiber_switch_ucontext, NULL},
};
static bench_impl_t fiber_spawn_join_impls[] = {
    {"moirai", fiber_spawn_join_moirai, NULL},
    {"go", NULL, NULL},
    {"boost_fiber", NULL, NULL},
    {"tokio", NULL, NULL},
};
static bench_impl_t fiber_yield_2w_impls[] = {
    {"moirai", fiber_yield_2w_moirai, NULL},
    {"boost_fiber", NULL, NULL},
    {"go", NULL, NULL},
};
static bench_impl_t mutex_handoff_fibers_impls[] = {
    {"moirai", mutex_handoff_fibers_moirai, NULL},
    {"go", NULL, NULL},
    {"boost_fiber", NULL, NULL},
};
static bench_impl_t sleep_10k_impls[] = {
    {"moirai", sleep_10k_moirai, NULL},
    {"go", NULL, NULL},
};
static bench_impl_t parked_rss_impls[] = {
    {"moirai", parked_rss_moirai, NULL},
    {"go", NULL, NULL},
    {"boost_fiber", NULL, NULL},
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static const bench_case_t cases[] = {
    {"async", "fiber_switch", "ns_per_op", 20000000, 2000000, fiber_switch_impls,
     COUNT_OF(fiber_switch_impls)},
    {"async", "fiber_spawn_join", "ns_per_op", 1000000, 100000, fiber_spawn_join_impls,
     COUNT_OF(fiber_spawn_join_impls)},
    {"async", "fiber_yield_2w", "ns_per_op", 10000000, 1000000, fiber_yield_2w_impls,
     COUNT_OF(fiber_yield_2w_impls)},
    {"async", "mutex_handoff_fibers", "ns_per_op", 1000000, 100000, mutex_handoff_fibers_impls,
     COUNT_OF(mutex_handoff_fibers_impls)},
    {"async", "sleep_10k", "cpu_ns_per_fiber", 10000, 10000, sleep_10k_impls,
     COUNT_OF(sleep_10k_impls)},
    {"async", "parked_rss", "bytes_per_fiber", 10000, 10000, parked_rss_impls,
     COUNT_OF(parked_rss_impls)},
};

const bench_case_t *bench_async_cases(size_t *count)
{
    static bool bound;
    if (!bound) {
        bound = true;
        const impl_binding_t bindings[] = {
            {&fiber_switch_impls[1], PEER_FCONTEXT, fiber_switch_fcontext},
            {&fiber_spawn_join_impls[1], PEER_GO, fiber_spawn_join_go},
            {&fiber_spawn_join_impls[2], PEER_BOOST_FIBER, fiber_spawn_join_boost_fiber},
            {&fiber_spawn_join_impls[3], PEER_TOKIO, fiber_spawn_join_tokio},
            {&fiber_yield_2w_impls[1], PEER_BOOST_FIBER, fiber_yield_2w_boost_fiber},
            {&fiber_yield_2w_impls[2], PEER_GO, fiber_yield_2w_go},
            {&mutex_handoff_fibers_impls[1], PEER_GO, mutex_handoff_fibers_go},
            {&mutex_handoff_fibers_impls[2], PEER_BOOST_FIBER, mutex_handoff_fibers_boost_fiber},
            {&sleep_10k_impls[1], PEER_GO, sleep_10k_go},
            {&parked_rss_impls[1], PEER_GO, parked_rss_go},
            {&parked_rss_impls[2], PEER_BOOST_FIBER, parked_rss_boost_fiber},
        };
        for (size_t i = 0; i < COUNT_OF(bindings); i++) {
            const impl_binding_t *b = &bindings[i];
            const peer_t *p = &peers[b->peer];
            if (p->path)
                b->impl->run = b->run;
            else
                b->impl->missing = p->not_built;
        }
    }
    *count = COUNT_OF(cases);
    return cases;
}
