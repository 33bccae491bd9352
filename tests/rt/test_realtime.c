/* The RT executor on the real clock. Only properties with wide margins:
 * a 10 ms periodic task releases about 100 jobs in a second; best-effort
 * work on a moirai-sched pool in the same process all runs, exactly once;
 * removal waits for a running step; OS policies are applied where
 * permitted, and where not the worker falls back to SCHED_OTHER with a
 * readable status (checked by dropping root in a child process). */
#include <criterion/criterion.h>

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <moirai/core/clock.h>
#include <moirai/rt.h>
#include <moirai/sched.h>

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == EINTR) {
    }
}

typedef struct probe {
    _Atomic long calls;
    _Atomic int policy; /* moirai_rt_os_current() seen inside a job */
    long sleep_ms;
} probe_t;

static int probe_fn(void *arg, moirai_rt_job_t *job)
{
    probe_t *p = arg;
    (void)job;
    atomic_store(&p->policy, (int)moirai_rt_os_current());
    if (p->sleep_ms)
        nap_ms(p->sleep_ms);
    atomic_fetch_add(&p->calls, 1);
    return MOIRAI_RT_JOB_DONE;
}

static moirai_rt_task_t *add_probe(moirai_rt_executor_t *ex, probe_t *p, uint64_t period,
                                   uint64_t wcet)
{
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.name = "probe";
    tc.fn = probe_fn;
    tc.arg = p;
    tc.period_ns = period;
    tc.wcet_ns = wcet;
    moirai_rt_task_t *t;
    moirai_rt_analysis_result_t why;
    cr_assert_eq(moirai_rt_executor_add(ex, &tc, &t, &why), 0, "%s", why.reason);
    return t;
}

Test(rt_realtime, periodic_task_releases_about_100_per_second)
{
    moirai_rt_executor_t *ex;
    cr_assert_eq(moirai_rt_executor_create(&ex, NULL), 0);
    probe_t p = {0};
    moirai_rt_task_t *t = add_probe(ex, &p, 10 * MOIRAI_NS_PER_MS, 2 * MOIRAI_NS_PER_MS);
    nap_ms(1000);
    moirai_rt_task_stats_t st;
    cr_assert_eq(moirai_rt_executor_task_stats(ex, t, &st), 0);
    cr_log_info("1 s at 10 ms: released %llu, completed %llu, missed %llu, latency p99 %llu ns "
                "max %llu ns",
                (unsigned long long)st.released, (unsigned long long)st.completed,
                (unsigned long long)st.missed, (unsigned long long)st.latency_p99_ns,
                (unsigned long long)st.latency_max_ns);
    cr_assert_geq(st.released, 80);
    cr_assert_leq(st.released, 102);
    cr_assert_geq(st.completed + 2, st.released);
    cr_assert_eq(moirai_rt_executor_destroy(ex), 0);
    /* After destroy nothing runs any more (the probe is on our stack). */
    long calls = atomic_load(&p.calls);
    nap_ms(30);
    cr_assert_eq(atomic_load(&p.calls), calls);
}

static _Atomic long be_done;

static int be_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    volatile uint64_t x = 0;
    for (int i = 0; i < 20000; i++)
        x += (uint64_t)i;
    atomic_fetch_add(&be_done, 1);
    return 0;
}

Test(rt_realtime, beside_a_sched_pool)
{
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = 2;
    moirai_sched_t *pool;
    cr_assert_eq(moirai_sched_create(&pool, &sc), 0);
    moirai_rt_executor_t *ex;
    cr_assert_eq(moirai_rt_executor_create(&ex, NULL), 0);
    probe_t p = {0};
    moirai_rt_task_t *t = add_probe(ex, &p, 10 * MOIRAI_NS_PER_MS, 2 * MOIRAI_NS_PER_MS);
    uint64_t t0 = moirai_clock_now_ns();
    long spawned = 0;
    while (moirai_clock_now_ns() - t0 < 500 * MOIRAI_NS_PER_MS) {
        for (int i = 0; i < 100; i++, spawned++)
            cr_assert_eq(moirai_sched_spawn(pool, be_task, NULL, NULL, NULL), 0);
        nap_ms(5);
    }
    cr_assert_eq(moirai_sched_destroy(pool, MOIRAI_SHUTDOWN_DRAIN), 0);
    cr_assert_eq(atomic_load(&be_done), spawned, "every best-effort task ran exactly once");
    moirai_rt_task_stats_t st;
    cr_assert_eq(moirai_rt_executor_task_stats(ex, t, &st), 0);
    cr_log_info("beside the pool: %ld best-effort tasks; RT released %llu, missed %llu", spawned,
                (unsigned long long)st.released, (unsigned long long)st.missed);
    cr_assert_geq(st.released, 35);
    cr_assert_eq(moirai_rt_executor_destroy(ex), 0);
}

Test(rt_realtime, remove_waits_for_a_running_step)
{
    moirai_rt_executor_t *ex;
    cr_assert_eq(moirai_rt_executor_create(&ex, NULL), 0);
    probe_t p = {0};
    p.sleep_ms = 30;
    moirai_rt_task_t *t = add_probe(ex, &p, 100 * MOIRAI_NS_PER_MS, 50 * MOIRAI_NS_PER_MS);
    nap_ms(10); /* the first step is now sleeping inside */
    cr_assert_eq(moirai_rt_executor_remove(ex, t), 0);
    long calls = atomic_load(&p.calls);
    cr_assert_eq(calls, 1, "remove returned before the running step ended");
    nap_ms(150);
    cr_assert_eq(atomic_load(&p.calls), calls);
    cr_assert_eq(moirai_rt_executor_destroy(ex), 0);
}

static bool fifo_permitted(void)
{
    struct sched_param sp = {.sched_priority = 1};
    if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0)
        return false;
    sp.sched_priority = 0;
    sched_setscheduler(0, SCHED_OTHER, &sp);
    return true;
}

static void check_policy(moirai_rt_os_policy_t policy, moirai_rt_os_policy_t seen_in_job)
{
    moirai_rt_executor_config_t cfg;
    moirai_rt_executor_config_init(&cfg);
    cfg.os.policy = policy;
    cfg.os.priority = 20;
    cfg.os.runtime_ns = 3 * MOIRAI_NS_PER_MS;
    cfg.os.period_ns = 10 * MOIRAI_NS_PER_MS;
    int cpus[] = {0};
    cfg.cpus = cpus;
    cfg.os_required = true;
    moirai_rt_executor_t *ex;
    int rc = moirai_rt_executor_create(&ex, &cfg);
    cr_assert_eq(rc, 0, "%s refused: %d", moirai_rt_os_policy_name(policy), rc);
    moirai_rt_os_status_t st;
    cr_assert_eq(moirai_rt_executor_os_status(ex, 0, &st), 0);
    cr_assert_eq(st.error, 0, "%s", st.reason);
    cr_assert_eq(st.applied, policy, "%s", st.reason);
    cr_assert_eq(st.requested, policy);
    probe_t p = {0};
    add_probe(ex, &p, 5 * MOIRAI_NS_PER_MS, 1 * MOIRAI_NS_PER_MS);
    nap_ms(100);
    cr_assert_gt(atomic_load(&p.calls), 5);
    cr_assert_eq(atomic_load(&p.policy), (int)seen_in_job);
    cr_log_info("worker under %s: %s", moirai_rt_os_policy_name(policy), st.reason);
    cr_assert_eq(moirai_rt_executor_destroy(ex), 0);
}

Test(rt_realtime, os_fifo_and_rr_workers)
{
    if (!fifo_permitted())
        cr_skip_test("SCHED_FIFO not permitted here (needs root or CAP_SYS_NICE)");
    check_policy(MOIRAI_RT_OS_FIFO, MOIRAI_RT_OS_FIFO);
    check_policy(MOIRAI_RT_OS_RR, MOIRAI_RT_OS_RR);
}

Test(rt_realtime, os_deadline_worker)
{
    moirai_rt_os_request_t req;
    moirai_rt_os_request_init(&req);
    req.policy = MOIRAI_RT_OS_DEADLINE;
    req.runtime_ns = 1 * MOIRAI_NS_PER_MS;
    moirai_rt_os_status_t st;
    /* Probe in a child: a thread under SCHED_DEADLINE cannot fork. */
    pid_t pid = fork();
    if (pid == 0)
        _exit(moirai_rt_os_apply(&req, &st) == 0 ? 0 : 1);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        cr_skip_test("SCHED_DEADLINE not permitted here (needs root, no container limits)");
    check_policy(MOIRAI_RT_OS_DEADLINE, MOIRAI_RT_OS_DEADLINE);
}

/* Drops CAP_SYS_NICE from the calling thread only (capabilities are per
 * thread in Linux, and threads it creates inherit them), so the executor's
 * workers it creates are refused real-time policies as an unprivileged
 * process's would be. A thread, not a forked child, so that sanitizers
 * keep working. Returns 0, or the check that failed. */
static void *unprivileged_checks(void *arg)
{
    (void)arg;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0)
        return (void *)10;
    data[CAP_SYS_NICE / 32].effective &= ~(1u << (CAP_SYS_NICE % 32));
    data[CAP_SYS_NICE / 32].permitted &= ~(1u << (CAP_SYS_NICE % 32));
    if (syscall(SYS_capset, &hdr, data) != 0)
        return (void *)11;
    struct rlimit rl;
    if (getrlimit(RLIMIT_RTPRIO, &rl) == 0 && rl.rlim_cur > 0)
        return (void *)0; /* an RLIMIT_RTPRIO grant would still permit FIFO */
    moirai_rt_executor_config_t cfg;
    moirai_rt_executor_config_init(&cfg);
    cfg.os.policy = MOIRAI_RT_OS_FIFO;
    moirai_rt_executor_t *ex;
    if (moirai_rt_executor_create(&ex, &cfg) != 0)
        return (void *)12;
    moirai_rt_os_status_t st;
    moirai_rt_executor_os_status(ex, 0, &st);
    if (st.error != -EPERM || st.applied != MOIRAI_RT_OS_NONE ||
        st.requested != MOIRAI_RT_OS_FIFO || !strstr(st.reason, "not permitted") ||
        !strstr(st.reason, "SCHED_OTHER"))
        return (void *)13;
    /* The fallback executor works. */
    probe_t p = {0};
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = probe_fn;
    tc.arg = &p;
    tc.period_ns = 5 * MOIRAI_NS_PER_MS;
    tc.wcet_ns = MOIRAI_NS_PER_MS;
    if (moirai_rt_executor_add(ex, &tc, NULL, NULL) != 0)
        return (void *)14;
    nap_ms(50);
    if (atomic_load(&p.calls) < 2 || atomic_load(&p.policy) != MOIRAI_RT_OS_NONE)
        return (void *)15;
    moirai_rt_executor_destroy(ex);
    /* Required: create fails with the refusal and leaves nothing. */
    cfg.os_required = true;
    ex = NULL;
    if (moirai_rt_executor_create(&ex, &cfg) != -EPERM || ex)
        return (void *)16;
    return (void *)0;
}

Test(rt_realtime, os_fallback_without_privilege)
{
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, unprivileged_checks, NULL), 0);
    void *rc;
    pthread_join(th, &rc);
    cr_assert_eq((intptr_t)rc, 0, "check %d failed", (int)(intptr_t)rc);
}

Test(rt_realtime, os_request_errors)
{
    moirai_rt_os_request_t req;
    moirai_rt_os_status_t st;
    moirai_rt_os_request_init(&req);
    cr_assert_eq(moirai_rt_os_apply(&req, &st), 0);
    cr_assert_eq(st.applied, moirai_rt_os_current());
    cr_assert_eq(moirai_rt_os_apply(NULL, NULL), 0);
    req.policy = MOIRAI_RT_OS_FIFO;
    req.priority = 100;
    cr_assert_eq(moirai_rt_os_apply(&req, &st), -EINVAL);
    cr_assert(strstr(st.reason, "outside 1..99"), "%s", st.reason);
    req.policy = MOIRAI_RT_OS_DEADLINE;
    req.runtime_ns = 20 * MOIRAI_NS_PER_MS; /* above the 10 ms default period */
    cr_assert_eq(moirai_rt_os_apply(&req, &st), -EINVAL);
    req.policy = (moirai_rt_os_policy_t)9;
    cr_assert_eq(moirai_rt_os_apply(&req, &st), -EINVAL);
    cr_assert_str_eq(moirai_rt_os_policy_name(MOIRAI_RT_OS_DEADLINE), "deadline");
    cr_assert_str_eq(moirai_rt_os_policy_name((moirai_rt_os_policy_t)9), "unknown");
    /* A required policy the kernel refuses fails create, whoever we are. */
    moirai_rt_executor_config_t cfg;
    moirai_rt_executor_config_init(&cfg);
    cfg.os.policy = MOIRAI_RT_OS_DEADLINE;
    cfg.os.runtime_ns = 20 * MOIRAI_NS_PER_MS;
    cfg.os_required = true;
    moirai_rt_executor_t *ex = NULL;
    cr_assert_eq(moirai_rt_executor_create(&ex, &cfg), -EINVAL);
    cr_assert_null(ex);
}
