/* moirai-bench, suite "rt": the RT executor, its admission and its PI
 * mutex against the reference each issue case names.
 *
 * periodic_release_jitter  (metric "ns": p99 release jitter)
 *   One periodic task at 1 kHz for `iters` periods (2000 = 2 s; 500 with
 *   --quick). Moirai: an RT executor with one worker, its OS policy
 *   SCHED_FIFO at 80 where permitted (else SCHED_OTHER, for both sides),
 *   the task's p99 start latency (first step's start minus release) from
 *   the executor's own statistics (a log-linear histogram, at most 3 %
 *   above the exact value). fifo_floor: a bare thread under the same
 *   policy and priority looping on clock_nanosleep(TIMER_ABSTIME) to the
 *   next millisecond, its p99 wake-up lateness computed exactly. Both run
 *   unpinned. This is the floor the executor's dispatch sits on.
 *
 * edf_dispatch_overhead  (ns_per_op: per job)
 *   100 admitted EDF tasks (periods 1000..1099 virtual ns, a trivial step
 *   that counts), run on a virtual clock with moirai_rt_executor_run_until
 *   over enough time for `iters` jobs: the cost of releasing, ranking and
 *   calling a job, with no sleeping. sched: the same trivial work spawned
 *   from the bench thread onto a 1-worker moirai-sched pool
 *   (moirai_sched_spawn, no handle), waited for with a countdown.
 *
 * pi_mutex_uncontended  (ns_per_op: lock + unlock)
 *   moirai_rt_pi_mutex_lock/unlock against a pthread mutex with
 *   PTHREAD_PRIO_INHERIT (pthread_pi), one thread.
 *
 * admission_100_tasks  (ns_per_op: admit the 100th task, then remove it)
 *   An executor (virtual clock, deadline monotonic) holding 99 tasks;
 *   Moirai admits the 100th by response-time analysis with blocking
 *   terms. utilization: the same executor's bookkeeping replaced by what a
 *   utilization-bound admission costs: summing 100 tasks' C/T, comparing
 *   with Liu & Layland's bound and appending to an array (report only). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>
#include <moirai/rt.h>
#include <moirai/sched/sched.h>

#include "../bench.h"

#define JITTER_PERIOD_NS MOIRAI_NS_PER_MS
#define FIFO_PRIORITY    80

static bool fifo_permitted(void)
{
    struct sched_param sp = {.sched_priority = 1};
    int policy = sched_getscheduler(0);
    struct sched_param old;
    sched_getparam(0, &old);
    if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0)
        return false;
    sched_setscheduler(0, policy, &old);
    return true;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == EINTR) {
    }
}

/* ---- periodic_release_jitter ---- */

static int count_step(void *arg, moirai_rt_job_t *job)
{
    (void)job;
    /* Relaxed: only read by the bench thread under the executor's stats. */
    atomic_fetch_add_explicit((_Atomic uint64_t *)arg, 1, memory_order_relaxed);
    return MOIRAI_RT_JOB_DONE;
}

static double jitter_moirai(uint64_t iters)
{
    moirai_rt_executor_config_t cfg;
    moirai_rt_executor_config_init(&cfg);
    if (fifo_permitted()) {
        cfg.os.policy = MOIRAI_RT_OS_FIFO;
        cfg.os.priority = FIFO_PRIORITY;
    }
    moirai_rt_executor_t *ex;
    if (moirai_rt_executor_create(&ex, &cfg) != 0)
        return -1.0;
    _Atomic uint64_t count = 0;
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = count_step;
    tc.arg = &count;
    tc.period_ns = JITTER_PERIOD_NS;
    tc.wcet_ns = JITTER_PERIOD_NS / 2;
    tc.start_ns = moirai_clock_now_ns() + 10 * MOIRAI_NS_PER_MS;
    moirai_rt_task_t *t;
    double v = -1.0;
    if (moirai_rt_executor_add(ex, &tc, &t, NULL) == 0) {
        moirai_rt_task_stats_t st;
        for (;;) {
            nap_ms(20);
            if (moirai_rt_executor_task_stats(ex, t, &st) != 0 || st.completed >= iters)
                break;
        }
        if (st.completed >= iters)
            v = (double)st.latency_p99_ns;
    }
    moirai_rt_executor_destroy(ex);
    return v;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

typedef struct floor_run {
    uint64_t iters;
    uint64_t *late;
} floor_run_t;

static void *floor_thread(void *arg)
{
    floor_run_t *r = arg;
    uint64_t next = moirai_clock_now_ns() + 10 * MOIRAI_NS_PER_MS;
    for (uint64_t i = 0; i < r->iters; i++, next += JITTER_PERIOD_NS) {
        struct timespec ts = {(time_t)(next / MOIRAI_NS_PER_S), (long)(next % MOIRAI_NS_PER_S)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
        uint64_t now = moirai_clock_now_ns();
        r->late[i] = now > next ? now - next : 0;
    }
    return NULL;
}

static double jitter_fifo_floor(uint64_t iters)
{
    floor_run_t r = {iters, malloc(iters * sizeof(uint64_t))};
    if (!r.late)
        return -1.0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (fifo_permitted()) {
        pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
        pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
        struct sched_param sp = {.sched_priority = FIFO_PRIORITY};
        pthread_attr_setschedparam(&attr, &sp);
    }
    pthread_t th;
    double v = -1.0;
    if (pthread_create(&th, &attr, floor_thread, &r) == 0) {
        pthread_join(th, NULL);
        qsort(r.late, iters, sizeof(uint64_t), compare_u64);
        uint64_t rank = (iters * 99 + 99) / 100;
        v = (double)r.late[rank ? rank - 1 : 0];
    }
    pthread_attr_destroy(&attr);
    free(r.late);
    return v;
}

/* ---- edf_dispatch_overhead ---- */

#define DISPATCH_TASKS 100

static double dispatch_moirai(uint64_t iters)
{
    moirai_rt_clock_t *clk;
    if (moirai_rt_clock_create_virtual(&clk, 0) != 0)
        return -1.0;
    moirai_rt_executor_config_t cfg;
    moirai_rt_executor_config_init(&cfg);
    cfg.clock = clk;
    moirai_rt_executor_t *ex;
    if (moirai_rt_executor_create(&ex, &cfg) != 0) {
        moirai_rt_clock_destroy(clk);
        return -1.0;
    }
    _Atomic uint64_t count = 0;
    double v = -1.0;
    int added = 0;
    for (; added < DISPATCH_TASKS; added++) {
        moirai_rt_task_config_t tc;
        moirai_rt_task_config_init(&tc);
        tc.fn = count_step;
        tc.arg = &count;
        tc.period_ns = 1000 + (uint64_t)added;
        tc.wcet_ns = 1;
        if (moirai_rt_executor_add(ex, &tc, NULL, NULL) != 0)
            break;
    }
    if (added == DISPATCH_TASKS) {
        /* About 100 jobs per 1000 virtual ns. */
        uint64_t until = iters * 10 + 1;
        uint64_t t0 = bench_now_ns();
        int rc = moirai_rt_executor_run_until(ex, until);
        uint64_t dt = bench_now_ns() - t0;
        uint64_t jobs = atomic_load_explicit(&count, memory_order_relaxed);
        if (rc == 0 && jobs > 0)
            v = (double)dt / (double)jobs;
    }
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
    return v;
}

typedef struct countdown {
    _Atomic uint64_t remaining;
    _Atomic uint32_t done;
} countdown_t;

static int sched_job(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    countdown_t *c = arg;
    /* Acq_rel: the last one publishes every job's effects to the waiter. */
    if (atomic_fetch_sub_explicit(&c->remaining, 1, memory_order_acq_rel) == 1) {
        atomic_store_explicit(&c->done, 1, memory_order_release);
        moirai_unpark_all(&c->done);
    }
    return 0;
}

static double dispatch_sched(uint64_t iters)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 1;
    moirai_sched_t *sched;
    if (moirai_sched_create(&sched, &cfg) != 0)
        return -1.0;
    countdown_t c;
    atomic_init(&c.remaining, iters);
    atomic_init(&c.done, 0);
    uint64_t k = 0, t0 = bench_now_ns();
    for (; k < iters; k++)
        if (moirai_sched_spawn(sched, sched_job, &c, NULL, NULL) != 0)
            break;
    if (k < iters &&
        atomic_fetch_sub_explicit(&c.remaining, iters - k, memory_order_acq_rel) == iters - k)
        atomic_store_explicit(&c.done, 1, memory_order_release);
    while (!atomic_load_explicit(&c.done, memory_order_acquire))
        moirai_park(&c.done, 0, MOIRAI_DEADLINE_NEVER);
    double v = (double)(bench_now_ns() - t0) / (double)(iters ? iters : 1);
    moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN);
    return k < iters ? -1.0 : v;
}

/* ---- pi_mutex_uncontended ---- */

static double pi_moirai(uint64_t iters)
{
    moirai_rt_pi_mutex_t m = MOIRAI_RT_PI_MUTEX_INIT;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        if (moirai_rt_pi_mutex_lock(&m) != 0)
            return -1.0;
        __asm__ volatile("" ::: "memory");
        moirai_rt_pi_mutex_unlock(&m);
    }
    return (double)(bench_now_ns() - t0) / (double)(iters ? iters : 1);
}

static double pi_pthread(uint64_t iters)
{
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setprotocol(&ma, PTHREAD_PRIO_INHERIT);
    pthread_mutex_t m;
    pthread_mutex_init(&m, &ma);
    pthread_mutexattr_destroy(&ma);
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        if (pthread_mutex_lock(&m) != 0)
            return -1.0;
        __asm__ volatile("" ::: "memory");
        pthread_mutex_unlock(&m);
    }
    double v = (double)(bench_now_ns() - t0) / (double)(iters ? iters : 1);
    pthread_mutex_destroy(&m);
    return v;
}

/* ---- admission_100_tasks ---- */

static int idle_step(void *arg, moirai_rt_job_t *job)
{
    (void)arg;
    (void)job;
    return MOIRAI_RT_JOB_DONE;
}

static moirai_rt_task_config_t admission_task(int i)
{
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = idle_step;
    tc.period_ns = 2000 * MOIRAI_NS_PER_US + 37 * MOIRAI_NS_PER_US * (uint64_t)i;
    tc.wcet_ns = 10 * MOIRAI_NS_PER_US;
    return tc;
}

static double admission_moirai(uint64_t iters)
{
    moirai_rt_clock_t *clk;
    if (moirai_rt_clock_create_virtual(&clk, 0) != 0)
        return -1.0;
    moirai_rt_executor_config_t cfg;
    moirai_rt_executor_config_init(&cfg);
    cfg.clock = clk;
    cfg.policy = MOIRAI_RT_POLICY_DM;
    moirai_rt_executor_t *ex;
    double v = -1.0;
    if (moirai_rt_executor_create(&ex, &cfg) == 0) {
        int i = 0;
        for (; i < 99; i++) {
            moirai_rt_task_config_t tc = admission_task(i);
            if (moirai_rt_executor_add(ex, &tc, NULL, NULL) != 0)
                break;
        }
        if (i == 99) {
            moirai_rt_task_config_t last = admission_task(99);
            uint64_t t0 = bench_now_ns(), k = 0;
            for (; k < iters; k++) {
                moirai_rt_task_t *t;
                if (moirai_rt_executor_add(ex, &last, &t, NULL) != 0 ||
                    moirai_rt_executor_remove(ex, t) != 0)
                    break;
            }
            if (k == iters)
                v = (double)(bench_now_ns() - t0) / (double)(iters ? iters : 1);
        }
        moirai_rt_executor_destroy(ex);
    }
    moirai_rt_clock_destroy(clk);
    return v;
}

/* Admission by the utilization bound alone: the whole decision for the
 * 100th task, over the same 99 tasks. */
static double admission_utilization(uint64_t iters)
{
    moirai_rt_analysis_task_t set[100];
    for (int i = 0; i < 100; i++) {
        moirai_rt_task_config_t tc = admission_task(i);
        set[i] = (moirai_rt_analysis_task_t){tc.period_ns, 0, tc.wcet_ns, 0, 0};
    }
    volatile size_t count = 99;
    uint64_t admitted = 0, t0 = bench_now_ns();
    for (uint64_t k = 0; k < iters; k++) {
        size_t n = count;
        double u = 0;
        for (size_t i = 0; i <= n; i++)
            u += (double)set[i].wcet_ns / (double)set[i].period_ns;
        if (u <= moirai_rt_analysis_ll_bound(n + 1)) {
            count = n + 1; /* admitted ... */
            admitted++;
            count = n; /* ... and removed again */
        }
    }
    double v = (double)(bench_now_ns() - t0) / (double)(iters ? iters : 1);
    return admitted == iters ? v : -1.0;
}

/* ---- registration ---- */

static const bench_impl_t jitter_impls[] = {
    {"moirai", jitter_moirai, NULL},
    {"fifo_floor", jitter_fifo_floor, NULL},
};
static const bench_impl_t dispatch_impls[] = {
    {"moirai", dispatch_moirai, NULL},
    {"sched", dispatch_sched, NULL},
};
static const bench_impl_t pi_impls[] = {
    {"moirai", pi_moirai, NULL},
    {"pthread_pi", pi_pthread, NULL},
};
static const bench_impl_t admission_impls[] = {
    {"moirai", admission_moirai, NULL},
    {"utilization", admission_utilization, NULL},
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static const bench_case_t cases[] = {
    {"rt", "periodic_release_jitter", "ns", 2000, 500, jitter_impls, COUNT_OF(jitter_impls)},
    {"rt", "edf_dispatch_overhead", "ns_per_op", 1000000, 100000, dispatch_impls,
     COUNT_OF(dispatch_impls)},
    {"rt", "pi_mutex_uncontended", "ns_per_op", 20000000, 2000000, pi_impls, COUNT_OF(pi_impls)},
    {"rt", "admission_100_tasks", "ns_per_op", 20000, 2000, admission_impls,
     COUNT_OF(admission_impls)},
};

const bench_case_t *bench_rt_cases(size_t *count)
{
    *count = COUNT_OF(cases);
    return cases;
}
