/* CPU quotas, proportional share and energy-aware packing: the exact
 * split of a window by weights, the stride scheduler's exact shares, the
 * packing policy's choice and savings under a linear power model, and (as
 * root, where a cpu cgroup controller is mounted) a kernel quota that
 * really limits a spinning thread. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <moirai/core/clock.h>
#include <moirai/core/alloc.h>
#include <moirai/core/error.h>
#include <moirai/rt.h>
#include <stdio.h>
#include <stdlib.h>

#include "oom.h"

Test(rt_share, split_is_exact)
{
    uint32_t w1[] = {1, 2, 3};
    uint64_t out[4];
    cr_assert_eq(moirai_rt_share_split(w1, 3, 60, out), 0);
    cr_assert_eq(out[0], 10);
    cr_assert_eq(out[1], 20);
    cr_assert_eq(out[2], 30);
    /* 10 / 3: remainders go to the lowest index first among equals. */
    uint32_t w2[] = {1, 1, 1};
    cr_assert_eq(moirai_rt_share_split(w2, 3, 10, out), 0);
    cr_assert_eq(out[0], 4);
    cr_assert_eq(out[1], 3);
    cr_assert_eq(out[2], 3);
    /* Largest fraction first: 7 * {1,2,4}/7 is exact; 10 * {1,2,4}/7 =
     * 1.43, 2.86, 5.71 -> floors 1, 2, 5 (8), the 2 left go to .86, .71. */
    uint32_t w3[] = {1, 2, 4, 0};
    cr_assert_eq(moirai_rt_share_split(w3, 4, 10, out), 0);
    cr_assert_eq(out[0], 1);
    cr_assert_eq(out[1], 3);
    cr_assert_eq(out[2], 6);
    cr_assert_eq(out[3], 0);
    uint32_t zero[] = {0, 0};
    cr_assert_eq(moirai_rt_share_split(zero, 2, 10, out), -EINVAL);
    cr_assert_eq(moirai_rt_share_split(NULL, 2, 10, out), -EINVAL);
    cr_assert_eq(moirai_rt_share_split(w1, 3, 10, NULL), -EINVAL);
    cr_assert_eq(moirai_rt_share_split(NULL, 0, 10, NULL), 0);
}

Test(rt_share, stride_gives_weighted_shares)
{
    uint32_t w[] = {1, 3, 4};
    moirai_rt_share_t *s;
    cr_assert_eq(moirai_rt_share_create(&s, w, 3), 0);
    int count[3] = {0, 0, 0};
    for (int i = 0; i < 800; i++) {
        int c = moirai_rt_share_pick(s);
        cr_assert(c >= 0 && c < 3);
        count[c]++;
        cr_assert_eq(moirai_rt_share_charge(s, c, 1000), 0);
    }
    /* 800 equal charges split 1:3:4 exactly. */
    cr_assert_eq(count[0], 100);
    cr_assert_eq(count[1], 300);
    cr_assert_eq(count[2], 400);
    cr_assert_eq(moirai_rt_share_used(s, 2), 400000);
    /* Uneven charges: shares follow time, not picks. */
    cr_assert_eq(moirai_rt_share_set_weight(s, 0, 4), 0);
    cr_assert_eq(moirai_rt_share_set_weight(s, 0, 0), -EINVAL);
    cr_assert_eq(moirai_rt_share_charge(s, 3, 1), -EINVAL);
    cr_assert_eq(moirai_rt_share_charge(NULL, 0, 1), -EINVAL);
    cr_assert_eq(moirai_rt_share_pick(NULL), -EINVAL);
    cr_assert_eq(moirai_rt_share_used(s, -1), 0);
    moirai_rt_share_destroy(s);
    uint32_t two[] = {1, 2};
    cr_assert_eq(moirai_rt_share_create(&s, two, 2), 0);
    uint64_t used[2] = {0, 0};
    for (int i = 0; i < 3000; i++) {
        int c = moirai_rt_share_pick(s);
        uint64_t cost = c == 0 ? 30 : 7;
        used[c] += cost;
        moirai_rt_share_charge(s, c, cost);
    }
    /* Each client's time is within one charge of its share. */
    double total = (double)(used[0] + used[1]);
    cr_assert_lt(abs((int)((double)used[0] - total / 3)), 31, "%llu of %.0f",
                 (unsigned long long)used[0], total);
    moirai_rt_share_destroy(s);
    uint32_t bad[] = {1, 0};
    cr_assert_eq(moirai_rt_share_create(&s, bad, 2), -EINVAL);
    cr_assert_eq(moirai_rt_share_create(&s, two, 0), -EINVAL);
    cr_assert_eq(moirai_rt_share_create(NULL, two, 2), -EINVAL);
    moirai_rt_share_destroy(NULL);
}

static int share_op(void *ctx)
{
    uint32_t w[] = {1, 2};
    return moirai_rt_share_create(ctx, w, 2);
}

Test(rt_share, create_out_of_memory)
{
    moirai_rt_share_t *s = NULL;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(share_op, NULL, &s);
    moirai_test_oom_uninstall();
    cr_assert_eq(failures, 4);
    moirai_rt_share_destroy(s);
}

#define T3(c, d, t)                                                                                \
    {                                                                                              \
        (t), (d), (c), 0, 0                                                                        \
    }

Test(rt_energy, packing_saves_active_cpu_time)
{
    moirai_rt_analysis_task_t ts[] = {T3(1, 0, 4), T3(1, 0, 4), T3(1, 0, 4), T3(1, 0, 4)};
    moirai_rt_power_model_t m;
    cr_assert_eq(moirai_rt_power_model_linear(&m, 0.1, 1.0, 3.0), 0);
    int cpu[4];
    moirai_rt_energy_report_t rep;
    cr_assert_eq(
        moirai_rt_energy_pack(ts, 4, 4, MOIRAI_RT_TEST_EDF, &m, MOIRAI_NS_PER_S, cpu, &rep), 0);
    /* Packed: one CPU at U = 1 (1 + 2 * 1 = 3 W) and three asleep (0.3 W).
     * Spread: four CPUs at U = 0.25 (4 * 1.5 = 6 W). */
    for (int i = 0; i < 4; i++)
        cr_assert_eq(cpu[i], 0);
    cr_assert_eq(rep.cpus_active, 1);
    cr_assert_eq(rep.cpus_active_spread, 4);
    cr_assert_eq(rep.active_cpu_ns, MOIRAI_NS_PER_S);
    cr_assert_eq(rep.saved_active_cpu_ns, 3 * MOIRAI_NS_PER_S);
    cr_assert_float_eq(rep.energy_j, 3.3, 1e-9);
    cr_assert_float_eq(rep.energy_spread_j, 6.0, 1e-9);
    cr_assert_float_eq(rep.saved_j, 2.7, 1e-9);
}

/* A model where an awake CPU costs more the busier it is, steeply (as
 * with frequency scaling): two half-loaded CPUs beat one full one. */
static double convex(void *arg, int cpu, double u)
{
    (void)arg;
    (void)cpu;
    return 0.2 + 4.0 * u * u;
}

Test(rt_energy, the_model_decides)
{
    moirai_rt_analysis_task_t ts[] = {T3(1, 0, 2), T3(1, 0, 2)};
    moirai_rt_power_model_t m = {convex, NULL, 0.0, 0, 0};
    int cpu[2];
    moirai_rt_energy_report_t rep;
    cr_assert_eq(
        moirai_rt_energy_pack(ts, 2, 2, MOIRAI_RT_TEST_EDF, &m, MOIRAI_NS_PER_S, cpu, &rep), 0);
    /* One CPU at 1.0: 4.2 W; two at 0.5: 2 * 1.2 = 2.4 W. */
    cr_assert_eq(rep.cpus_active, 2);
    cr_assert_float_eq(rep.energy_j, 2.4, 1e-9);
    cr_assert_eq(rep.saved_active_cpu_ns, 0);
    cr_assert_neq(cpu[0], cpu[1]);
    /* Errors. */
    moirai_rt_analysis_task_t heavy[] = {T3(3, 0, 4), T3(3, 0, 4), T3(3, 0, 4)};
    int c3[3] = {9, 9, 9};
    cr_assert_eq(moirai_rt_energy_pack(heavy, 3, 2, MOIRAI_RT_TEST_EDF, &m, 1, c3, &rep), -EBUSY);
    cr_assert_eq(c3[0], 9);
    cr_assert_eq(moirai_rt_energy_pack(ts, 2, 0, MOIRAI_RT_TEST_EDF, &m, 1, cpu, &rep), -EINVAL);
    cr_assert_eq(moirai_rt_energy_pack(ts, 2, 2, MOIRAI_RT_TEST_EDF, &m, 0, cpu, &rep), -EINVAL);
    cr_assert_eq(moirai_rt_energy_pack(ts, 2, 2, MOIRAI_RT_TEST_EDF, NULL, 1, cpu, &rep), -EINVAL);
    cr_assert_eq(moirai_rt_energy_pack(ts, 2, 2, (moirai_rt_test_t)5, &m, 1, cpu, &rep), -EINVAL);
    cr_assert_eq(moirai_rt_power_model_linear(&m, -1, 1, 2), -EINVAL);
    cr_assert_eq(moirai_rt_power_model_linear(&m, 0, 2, 1), -EINVAL);
    cr_assert_eq(moirai_rt_power_model_linear(NULL, 0, 1, 2), -EINVAL);
}

/* ---- kernel quotas ---- */

static _Atomic int spin_stop;

static void *spinner(void *arg)
{
    moirai_rt_quota_t *q = arg;
    if (moirai_rt_quota_attach_thread(q, 0) != 0)
        return (void *)1;
    while (!atomic_load_explicit(&spin_stop, memory_order_relaxed)) {
    }
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    uint64_t *cpu = moirai_malloc(sizeof(*cpu));
    *cpu = (uint64_t)ts.tv_sec * MOIRAI_NS_PER_S + (uint64_t)ts.tv_nsec;
    return cpu;
}

Test(rt_quota, cgroup_quota_limits_a_spinning_thread, .timeout = 30)
{
    char name[64];
    snprintf(name, sizeof(name), "moirai-rt-test-%d", (int)getpid());
    moirai_rt_quota_t *q = NULL;
    int rc = moirai_rt_quota_create(&q, name, 20 * MOIRAI_NS_PER_MS, 100 * MOIRAI_NS_PER_MS);
    if (rc == -ENOTSUP || rc == -EACCES || rc == -EPERM || rc == -EROFS)
        cr_skip_test("no writable cpu cgroup controller here (%s)", moirai_err_name(rc));
    cr_assert_eq(rc, 0, "%s", moirai_err_name(rc));
    cr_log_info("quota through cgroup v%d at %s", moirai_rt_quota_version(q),
                moirai_rt_quota_path(q));
    struct stat sb;
    cr_assert_eq(stat(moirai_rt_quota_path(q), &sb), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, spinner, q), 0);
    struct timespec one = {1, 0};
    nanosleep(&one, NULL);
    atomic_store(&spin_stop, 1);
    void *res;
    pthread_join(th, &res);
    cr_assert_neq(res, (void *)1, "could not attach the thread");
    uint64_t cpu = *(uint64_t *)res;
    moirai_free(res);
    uint64_t periods = 0, throttled = 0;
    cr_assert_eq(moirai_rt_quota_throttled(q, &periods, &throttled), 0);
    cr_log_info("20%% quota: the spinner used %llu ms of CPU in 1 s; %llu of %llu periods "
                "throttled",
                (unsigned long long)(cpu / MOIRAI_NS_PER_MS), (unsigned long long)throttled,
                (unsigned long long)periods);
    /* 20 % of a CPU is ~200 ms; unthrottled it would be ~1000 ms. */
    cr_assert_lt(cpu, 500 * MOIRAI_NS_PER_MS);
    /* Throttled at least once, unless the machine was so loaded that the
     * spinner never reached its quota in any period. */
    cr_assert(throttled > 0 || cpu < 100 * MOIRAI_NS_PER_MS, "never throttled, yet used %llu ms",
              (unsigned long long)(cpu / MOIRAI_NS_PER_MS));
    cr_assert_eq(moirai_rt_quota_set(q, 50 * MOIRAI_NS_PER_MS, 100 * MOIRAI_NS_PER_MS), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s", moirai_rt_quota_path(q));
    cr_assert_eq(moirai_rt_quota_destroy(q), 0);
    cr_assert_neq(stat(path, &sb), 0, "the cgroup directory is removed");
}

Test(rt_quota, bad_input)
{
    moirai_rt_quota_t *q;
    cr_assert_eq(
        moirai_rt_quota_create(&q, "../escape", MOIRAI_NS_PER_MS * 10, MOIRAI_NS_PER_MS * 100),
        -EINVAL);
    cr_assert_eq(moirai_rt_quota_create(&q, "", MOIRAI_NS_PER_MS, MOIRAI_NS_PER_MS * 100), -EINVAL);
    cr_assert_eq(moirai_rt_quota_create(&q, "ok", 10, MOIRAI_NS_PER_MS * 100), -EINVAL);
    cr_assert_eq(moirai_rt_quota_create(&q, "ok", MOIRAI_NS_PER_MS, 10), -EINVAL);
    cr_assert_eq(moirai_rt_quota_create(&q, "ok", MOIRAI_NS_PER_MS, 2 * MOIRAI_NS_PER_S), -EINVAL);
    cr_assert_eq(moirai_rt_quota_create(NULL, "ok", MOIRAI_NS_PER_MS, MOIRAI_NS_PER_S), -EINVAL);
    cr_assert_eq(moirai_rt_quota_set(NULL, MOIRAI_NS_PER_MS, MOIRAI_NS_PER_S), -EINVAL);
    cr_assert_eq(moirai_rt_quota_attach_thread(NULL, 0), -EINVAL);
    cr_assert_eq(moirai_rt_quota_detach_thread(NULL, 0), -EINVAL);
    cr_assert_eq(moirai_rt_quota_version(NULL), -EINVAL);
    cr_assert_null(moirai_rt_quota_path(NULL));
    cr_assert_eq(moirai_rt_quota_destroy(NULL), -EINVAL);
    uint64_t a, b;
    cr_assert_eq(moirai_rt_quota_throttled(NULL, &a, &b), -EINVAL);
}

static moirai_rt_analysis_task_t energy_set[] = {T3(1, 0, 4), T3(1, 0, 4), T3(2, 0, 4)};
static int energy_cpu[3] = {-5, -5, -5};

static int energy_op(void *ctx)
{
    moirai_rt_power_model_t *m = ctx;
    moirai_rt_energy_report_t rep;
    return moirai_rt_energy_pack(energy_set, 3, 2, MOIRAI_RT_TEST_EDF, m, MOIRAI_NS_PER_S,
                                 energy_cpu, &rep);
}

static void energy_unchanged(void *ctx, long n)
{
    (void)ctx;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(energy_cpu[i], -5, "failure %ld wrote cpu_of", n);
}

Test(rt_energy, out_of_memory)
{
    moirai_rt_power_model_t m;
    cr_assert_eq(moirai_rt_power_model_linear(&m, 0.1, 1.0, 3.0), 0);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(energy_op, energy_unchanged, &m);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 3);
    cr_assert_eq(energy_cpu[0], 0);
}

Test(rt_quota, out_of_memory_touches_nothing)
{
    moirai_rt_quota_t *q = NULL;
    moirai_test_oom_install();
    moirai_test_oom_fail_at(0);
    int rc =
        moirai_rt_quota_create(&q, "moirai-rt-oom", 10 * MOIRAI_NS_PER_MS, 100 * MOIRAI_NS_PER_MS);
    moirai_test_oom_uninstall();
    cr_assert_eq(rc, -ENOMEM);
    cr_assert_null(q);
    struct stat sb;
    cr_assert_neq(stat("/sys/fs/cgroup/cpu/moirai-rt-oom", &sb), 0);
    cr_assert_neq(stat("/sys/fs/cgroup/moirai-rt-oom", &sb), 0);
}
