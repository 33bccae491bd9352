/* The blocked-worker watchdog (see "Watchdog" in moirai/sched/sched.h): a
 * task or runtime job that spins on a 1-worker pool is reported once,
 * through core's log sink, with the worker, its name and how long, and
 * counted; with compensation, work queued behind it (on the injector and
 * in the stuck worker's own LIFO slot) completes while it still spins,
 * and the compensating thread goes away once the spinner has returned;
 * without compensation nothing else runs; with the watchdog off, or jobs
 * shorter than the limit, nothing is reported; an idle pool with the
 * watchdog on uses no CPU to speak of; bad configurations are refused.
 *
 * Tasks never call Criterion's asserts (they run on worker threads); they
 * record what they saw for the test thread. Every wait is bounded by
 * WAIT_NS, so a watchdog that never reports fails instead of hanging. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <moirai/core/clock.h>
#include <moirai/core/log.h>
#include <moirai/sched.h>

#include <moirai/core/topology.h>

#include "leak_check.h"
#include "oom.h"
#include "sched_test_util.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* The watchdog limit of the reporting tests: long enough that a report is
 * about a spinner, short enough to keep tests quick. */
#define LIMIT_NS (20 * MOIRAI_NS_PER_MS)

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / MOIRAI_NS_PER_S), (long)(ns % MOIRAI_NS_PER_S)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static moirai_sched_t *make_wd_sched(int workers, uint64_t watchdog_ns, int compensate)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = workers;
    cfg.watchdog_ns = watchdog_ns;
    cfg.watchdog_compensate = compensate;
    moirai_sched_t *s = NULL;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    return s;
}

/* ---- The log capture ---- */

#define LOG_MAX 64

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_msgs[LOG_MAX][256];
static int log_count;

static void capture(void *ctx, moirai_log_level_t level, const char *message)
{
    (void)ctx;
    if (level != MOIRAI_LOG_WARN)
        return;
    pthread_mutex_lock(&log_lock);
    if (log_count < LOG_MAX)
        snprintf(log_msgs[log_count], sizeof log_msgs[0], "%s", message);
    log_count++;
    pthread_mutex_unlock(&log_lock);
}

static void capture_start(void)
{
    pthread_mutex_lock(&log_lock);
    log_count = 0;
    pthread_mutex_unlock(&log_lock);
    cr_assert_eq(moirai_log_level_set(MOIRAI_LOG_WARN), 0);
    moirai_log_sink_set(capture, NULL);
}

static void capture_stop(void)
{
    moirai_log_sink_set(NULL, NULL);
}

/* Warnings captured so far that contain every one of `a` and `b`. */
static int count_matching(const char *a, const char *b)
{
    int n = 0;
    pthread_mutex_lock(&log_lock);
    for (int i = 0; i < log_count && i < LOG_MAX; i++)
        if (strstr(log_msgs[i], a) != NULL && (b == NULL || strstr(log_msgs[i], b) != NULL))
            n++;
    pthread_mutex_unlock(&log_lock);
    return n;
}

static int count_all(void)
{
    pthread_mutex_lock(&log_lock);
    int n = log_count;
    pthread_mutex_unlock(&log_lock);
    return n;
}

/* Waits until a warning contains `a` and `b`; false after WAIT_NS. */
static bool await_report(const char *a, const char *b)
{
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (count_matching(a, b) == 0) {
        if (moirai_clock_now_ns() > deadline)
            return false;
        sleep_ns(MOIRAI_NS_PER_MS);
    }
    return true;
}

/* ---- Spinners and flags ---- */

typedef struct spinner {
    _Atomic int started;
    _Atomic int release;
    _Atomic int finished;
    moirai_sched_t *s;
    _Atomic int *child_flag; /* if set: spawn a child setting it, locally, first */
} spinner_t;

static int flag_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    atomic_store((_Atomic int *)arg, 1);
    return 0;
}

static void spin(spinner_t *sp)
{
    if (sp->child_flag != NULL)
        (void)moirai_sched_spawn(sp->s, flag_task, sp->child_flag, NULL, NULL);
    atomic_store(&sp->started, 1);
    while (!atomic_load(&sp->release))
        ; /* deliberately busy: this is what the watchdog must catch */
    atomic_store(&sp->finished, 1);
}

static int spin_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    spin(arg);
    return 0;
}

static void spawn_spinner(moirai_sched_t *s, spinner_t *sp, const char *name)
{
    moirai_task_attr_t a = MOIRAI_TASK_ATTR_INIT;
    a.name = name;
    sp->s = s;
    cr_assert_eq(moirai_sched_spawn(s, spin_task, sp, &a, NULL), 0);
    cr_assert(await_flag(&sp->started), "the spinner never started");
}

static moirai_sched_worker_stats_t totals(moirai_sched_t *s)
{
    moirai_sched_worker_stats_t st;
    cr_assert_eq(moirai_sched_stats(s, &st), 0);
    return st;
}

/* Threads of this process, from /proc/self/task. */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Waits until the process has `n` threads; false after WAIT_NS. */
static bool await_threads(int n)
{
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (thread_count() != n) {
        if (moirai_clock_now_ns() > deadline)
            return false;
        sleep_ns(MOIRAI_NS_PER_MS);
    }
    return true;
}

/* ---- Configuration ---- */

Test(watchdog, config_defaults_are_off, .timeout = 30)
{
    moirai_sched_config_t cfg, zero;
    moirai_sched_config_init(&cfg);
    memset(&zero, 0, sizeof zero);
    cr_assert_eq(cfg.watchdog_ns, 0);
    cr_assert_eq(cfg.watchdog_compensate, 0);
    cr_assert_eq(zero.watchdog_ns, cfg.watchdog_ns);
}

Test(watchdog, bad_configurations_are_refused, .timeout = 30)
{
    moirai_sched_config_t cfg;
    moirai_sched_t *s = NULL;

    moirai_sched_config_init(&cfg);
    cfg.workers = 1;
    cfg.watchdog_ns = MOIRAI_SCHED_WATCHDOG_MIN_NS - 1;
    cr_assert_eq(moirai_sched_create(&s, &cfg), -EINVAL, "a limit below the minimum");

    moirai_sched_config_init(&cfg);
    cfg.workers = 1;
    cfg.watchdog_ns = LIMIT_NS;
    cfg.watchdog_compensate = -1;
    cr_assert_eq(moirai_sched_create(&s, &cfg), -EINVAL, "a negative compensation");

    moirai_sched_config_init(&cfg);
    cfg.workers = 1;
    cfg.watchdog_compensate = 1;
    cr_assert_eq(moirai_sched_create(&s, &cfg), -EINVAL, "compensation without the watchdog");

    moirai_sched_config_init(&cfg);
    cfg.workers = 1000;
    cfg.watchdog_ns = LIMIT_NS;
    cfg.watchdog_compensate = 25;
    cr_assert_eq(moirai_sched_create(&s, &cfg), -EINVAL, "more than 1024 slots");
    cr_assert_null(s);

    /* The smallest limit is accepted, and compensation widens the slots. */
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    cfg.watchdog_ns = MOIRAI_SCHED_WATCHDOG_MIN_NS;
    cfg.watchdog_compensate = 3;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    cr_assert_eq(moirai_sched_worker_count(s), 5);
    drop_sched(s);
}

/* Create with the watchdog and compensation slots fails cleanly with
 * -ENOMEM at every allocation (the watchdog's own included), storing no
 * scheduler and leaking nothing, and then succeeds. */
typedef struct create_ctx {
    moirai_sched_config_t cfg;
    moirai_sched_t *s;
} create_ctx_t;

static int create_op(void *p)
{
    create_ctx_t *c = p;
    return moirai_sched_create(&c->s, &c->cfg);
}

static void create_unchanged(void *p, long n)
{
    (void)n;
    cr_assert_null(((create_ctx_t *)p)->s, "a failed create stored a scheduler");
}

LEAK_CHECKED_TEST(watchdog, oom_sweep_create_with_watchdog, .timeout = 300)
{
    create_ctx_t c = {.s = NULL};
    moirai_sched_config_init(&c.cfg);
    c.cfg.workers = 1;
    c.cfg.watchdog_ns = LIMIT_NS;
    c.cfg.watchdog_compensate = 2;
    /* Loaded once per process: load it now so that the sweep fails the
     * scheduler's own allocations. */
    cr_assert_gt(moirai_topology_cpu_count(), 0);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(create_op, create_unchanged, &c);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0);
    cr_assert_not_null(c.s);
    cr_assert_eq(moirai_sched_worker_count(c.s), 3);
    cr_assert_eq(run_in_task(c.s, noop_task, NULL), 0);
    drop_sched(c.s);
}

/* ---- Reports ---- */

/* A named task spins on the only worker: it is reported once however long
 * it spins, with worker 0 and its name, and counted; without compensation
 * a task queued behind it does not run until it returns. */
Test(watchdog, spinning_task_is_reported_once_and_not_compensated, .timeout = 60)
{
    capture_start();
    moirai_sched_t *s = make_wd_sched(1, LIMIT_NS, 0);
    int threads = thread_count();
    static spinner_t sp;
    spawn_spinner(s, &sp, "spinner-A");
    cr_assert(await_report("spinner-A", "worker 0"), "the spinning task was never reported");

    static _Atomic int queued;
    cr_assert_eq(moirai_sched_spawn(s, flag_task, (void *)&queued, NULL, NULL), 0);
    /* Ten more limits of spinning: still one report, no other thread. */
    sleep_ns(10 * LIMIT_NS);
    cr_assert_eq(count_matching("spinner-A", NULL), 1, "reported more than once");
    cr_assert_eq(atomic_load(&queued), 0, "a task ran beside the stuck only worker");
    cr_assert_eq(thread_count(), threads, "a thread was started without compensation");
    moirai_sched_worker_stats_t st = totals(s);
    cr_assert_eq(st.watchdog_reports, 1);
    cr_assert_eq(st.compensating_started, 0);

    atomic_store(&sp.release, 1);
    cr_assert(await_flag(&queued), "the queued task never ran after the spinner returned");
    drop_sched(s);
    capture_stop();
}

/* With compensation, a task spawned from outside after the report and
 * one the spinner left in its own LIFO slot both complete while the
 * spinner still spins; the compensating thread exits once it has
 * returned. */
Test(watchdog, compensating_worker_runs_queued_work_then_retires, .timeout = 60)
{
    capture_start();
    moirai_sched_t *s = make_wd_sched(1, LIMIT_NS, 1);
    int threads = thread_count();
    static spinner_t sp;
    static _Atomic int child, queued;
    sp.child_flag = &child;
    spawn_spinner(s, &sp, "spinner-B");
    cr_assert(await_report("spinner-B", "worker 0"), "the spinning task was never reported");
    cr_assert_eq(moirai_sched_spawn(s, flag_task, (void *)&queued, NULL, NULL), 0);
    cr_assert(await_flag(&queued), "the queued task did not run beside the stuck worker");
    cr_assert(await_flag(&child), "the task left in the stuck worker's slot did not run");
    cr_assert_eq(atomic_load(&sp.finished), 0, "the spinner must still spin here");
    cr_assert_eq(thread_count(), threads + 1, "one compensating thread expected");
    /* Worker 0's own count: on an overloaded machine the compensating
     * worker may itself be reported, if the OS leaves it off the CPU in
     * the middle of a job for longer than the limit (wall time). */
    moirai_sched_worker_stats_t w0;
    cr_assert_eq(moirai_sched_worker_stats(s, 0, &w0), 0);
    cr_assert_eq(w0.watchdog_reports, 1);
    cr_assert_eq(count_matching("spinner-B", NULL), 1);
    cr_assert_eq(totals(s).compensating_started, 1);
    /* The compensating worker's slot is the one past the configured one. */
    moirai_sched_worker_stats_t comp;
    cr_assert_eq(moirai_sched_worker_stats(s, 1, &comp), 0);
    cr_assert_eq(comp.compensating_started, 1);
    cr_assert_geq(comp.executed, 2);

    atomic_store(&sp.release, 1);
    cr_assert(await_flag(&sp.finished));
    cr_assert(await_threads(threads), "the compensating thread never retired (%d threads, %d)",
              thread_count(), threads);
    /* The pool still works with its one worker, and again after a second
     * stuck job (the slot is started afresh). */
    cr_assert_eq(run_in_task(s, noop_task, NULL), 0);
    static spinner_t sp2;
    spawn_spinner(s, &sp2, "spinner-C");
    cr_assert(await_report("spinner-C", "worker 0"));
    static _Atomic int queued2;
    cr_assert_eq(moirai_sched_spawn(s, flag_task, (void *)&queued2, NULL, NULL), 0);
    cr_assert(await_flag(&queued2), "no compensation for the second stuck job");
    cr_assert_eq(totals(s).compensating_started, 2);
    atomic_store(&sp2.release, 1);
    drop_sched(s);
    capture_stop();
}

/* A runtime job reports its own name; a task without a name is
 * "(unnamed)". */
typedef struct spin_job {
    moirai_sched_job_t job;
    spinner_t sp;
} spin_job_t;

static void spin_job_run(moirai_sched_job_t *job)
{
    spin(&container_of(job, spin_job_t, job)->sp);
}

Test(watchdog, runtime_job_is_reported_with_its_name, .timeout = 60)
{
    capture_start();
    moirai_sched_t *s = make_wd_sched(1, LIMIT_NS, 0);
    static spin_job_t j;
    moirai_sched_job_init(&j.job, spin_job_run, "fiber-7");
    cr_assert_eq(moirai_sched_job_submit(s, &j.job, MOIRAI_PRIORITY_NORMAL, 0), 0);
    cr_assert(await_report("\"fiber-7\"", "worker 0"), "the spinning job was never reported");
    atomic_store(&j.sp.release, 1);
    cr_assert(await_flag(&j.sp.finished));

    static spinner_t sp;
    spawn_spinner(s, &sp, NULL);
    cr_assert(await_report("\"(unnamed)\"", "worker 0"), "the unnamed task was never reported");
    atomic_store(&sp.release, 1);
    cr_assert_eq(count_matching("fiber-7", NULL), 1);
    /* At least the two spinners (more only if the OS left the worker off
     * the CPU in the middle of a short job for longer than the limit). */
    cr_assert_geq(totals(s).watchdog_reports, 2);
    drop_sched(s);
    capture_stop();
}

/* With the watchdog off, a spinner is not reported and nothing counts. */
Test(watchdog, off_reports_nothing, .timeout = 60)
{
    capture_start();
    moirai_sched_t *s = make_wd_sched(1, 0, 0);
    static spinner_t sp;
    spawn_spinner(s, &sp, "spinner-off");
    sleep_ns(10 * LIMIT_NS);
    atomic_store(&sp.release, 1);
    cr_assert(await_flag(&sp.finished));
    drop_sched(s);
    cr_assert_eq(count_all(), 0, "the watchdog is off, yet something was logged");
    capture_stop();
}

/* Jobs shorter than the limit, back to back on one worker, are never
 * reported: the watchdog times a job, not a worker's busy spell. The
 * margin is wide (jobs of 1 ms against a limit of 500 ms). */
static int short_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    uint64_t end = moirai_clock_now_ns() + MOIRAI_NS_PER_MS;
    while (moirai_clock_now_ns() < end)
        ;
    atomic_fetch_add((_Atomic int *)arg, 1);
    return 0;
}

Test(watchdog, jobs_shorter_than_the_limit_are_not_reported, .timeout = 60)
{
    capture_start();
    moirai_sched_t *s = make_wd_sched(1, 500 * MOIRAI_NS_PER_MS, 1);
    static _Atomic int done;
    moirai_task_attr_t a = MOIRAI_TASK_ATTR_INIT;
    a.name = "short";
    for (int i = 0; i < 1500; i++)
        cr_assert_eq(moirai_sched_spawn(s, short_task, (void *)&done, &a, NULL), 0);
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (atomic_load(&done) < 1500 && moirai_clock_now_ns() < deadline)
        sleep_ns(MOIRAI_NS_PER_MS);
    cr_assert_eq(atomic_load(&done), 1500);
    moirai_sched_worker_stats_t st = totals(s);
    cr_assert_eq(st.watchdog_reports, 0);
    cr_assert_eq(st.compensating_started, 0);
    cr_assert_eq(count_matching("short", NULL), 0);
    drop_sched(s);
    capture_stop();
}

/* ---- Idle ---- */

static uint64_t process_cpu_ns(void)
{
    struct rusage ru;
    cr_assert_eq(getrusage(RUSAGE_SELF, &ru), 0);
    return (uint64_t)ru.ru_utime.tv_sec * MOIRAI_NS_PER_S +
           (uint64_t)ru.ru_utime.tv_usec * MOIRAI_NS_PER_US +
           (uint64_t)ru.ru_stime.tv_sec * MOIRAI_NS_PER_S +
           (uint64_t)ru.ru_stime.tv_usec * MOIRAI_NS_PER_US;
}

/* An idle pool with the watchdog on at its shortest limit (a scan every
 * 0.5 ms) and compensation allowed: over one second the process uses far
 * below a fifth of a core-second (a busy loop would use a whole one). */
Test(watchdog, idle_pool_with_watchdog_uses_no_cpu, .timeout = 60)
{
    moirai_sched_t *s = make_wd_sched(2, MOIRAI_SCHED_WATCHDOG_MIN_NS, 1);
    cr_assert_eq(run_in_task(s, noop_task, NULL), 0);
    sleep_ns(50 * MOIRAI_NS_PER_MS); /* workers park after spin_ns */
    uint64_t c0 = process_cpu_ns();
    sleep_ns(MOIRAI_NS_PER_S);
    uint64_t used = process_cpu_ns() - c0;
    cr_assert_lt(used, MOIRAI_NS_PER_S / 5, "an idle pool with the watchdog used %llu ns of CPU",
                 (unsigned long long)used);
    cr_assert_eq(totals(s).compensating_started, 0);
    drop_sched(s);
}
