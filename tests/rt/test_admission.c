/* Online admission: a task joins only if the policy's exact test passes
 * with it; a rejection is -EBUSY with a readable reason and changes
 * nothing; removal frees the share; blocking from non-preemptive steps and
 * from locks on other workers counts; bad input is -EINVAL; allocation
 * failures are -ENOMEM with nothing changed. */
#include "rt_test_util.h"

#include <stdatomic.h>

#include "oom.h"

static int noop(void *arg, moirai_rt_job_t *job)
{
    (void)arg;
    (void)job;
    return MOIRAI_RT_JOB_DONE;
}

static moirai_rt_task_config_t task(uint64_t c, uint64_t d, uint64_t t)
{
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = noop;
    tc.wcet_ns = c;
    tc.deadline_ns = d;
    tc.period_ns = t;
    return tc;
}

static moirai_rt_executor_t *manual(moirai_rt_clock_t **clk, moirai_rt_policy_t policy, int workers)
{
    cr_assert_eq(moirai_rt_clock_create_virtual(clk, 0), 0);
    moirai_rt_executor_config_t cfg;
    moirai_rt_executor_config_init(&cfg);
    cfg.policy = policy;
    cfg.workers = workers;
    cfg.clock = *clk;
    moirai_rt_executor_t *ex;
    cr_assert_eq(moirai_rt_executor_create(&ex, &cfg), 0);
    return ex;
}

Test(rt_admission, rejection_explains_and_changes_nothing)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = manual(&clk, MOIRAI_RT_POLICY_EDF, 1);
    moirai_rt_task_config_t a = task(6, 0, 10), b = task(5, 0, 10), c = task(4, 0, 10);
    a.name = "control";
    moirai_rt_task_t *ta, *tb = NULL;
    moirai_rt_analysis_result_t why;
    cr_assert_eq(moirai_rt_executor_add(ex, &a, &ta, &why), 0);
    cr_assert(strstr(why.reason, "admitted on worker 0"), "%s", why.reason);
    cr_assert_eq(moirai_rt_executor_add(ex, &b, &tb, &why), -EBUSY);
    cr_assert_null(tb);
    cr_assert_not(why.schedulable);
    cr_assert(strstr(why.reason, "utilization 1.1000 exceeds 1"), "%s", why.reason);
    cr_assert_float_eq(moirai_rt_executor_utilization(ex, 0), 0.6, 1e-12);
    cr_assert_eq(moirai_rt_task_id(ta), 1);
    /* What fits is still admitted, and ids stay dense. */
    moirai_rt_task_t *tc_;
    cr_assert_eq(moirai_rt_executor_add(ex, &c, &tc_, NULL), 0);
    cr_assert_eq(moirai_rt_task_id(tc_), 2);
    /* Removal frees the share. */
    cr_assert_eq(moirai_rt_executor_remove(ex, ta), 0);
    cr_assert_eq(moirai_rt_executor_add(ex, &b, &tb, NULL), 0);
    cr_assert_float_eq(moirai_rt_executor_utilization(ex, 0), 0.9, 1e-12);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_admission, rm_uses_response_time_analysis)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = manual(&clk, MOIRAI_RT_POLICY_RM, 1);
    moirai_rt_task_config_t a = task(2, 0, 5), b = task(4, 0, 7);
    /* Steps of 1, so that blocking (1 for the first task) does not decide. */
    a.max_step_ns = b.max_step_ns = 1;
    b.name = "slow";
    moirai_rt_analysis_result_t why;
    cr_assert_eq(moirai_rt_executor_add(ex, &a, NULL, NULL), 0);
    cr_assert_eq(moirai_rt_executor_add(ex, &b, NULL, &why), -EBUSY);
    /* The new task's response 4 + 2 = 6 -> 4 + 4 = 8 > 7. */
    cr_assert(strstr(why.reason, "'slow'") && strstr(why.reason, "(the new one) fails") &&
                  strstr(why.reason, "reaches 8 ns") && strstr(why.reason, "deadline 7 ns"),
              "%s", why.reason);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
    /* EDF admits the same pair. */
    ex = manual(&clk, MOIRAI_RT_POLICY_EDF, 1);
    cr_assert_eq(moirai_rt_executor_add(ex, &a, NULL, NULL), 0);
    cr_assert_eq(moirai_rt_executor_add(ex, &b, NULL, NULL), 0);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_admission, new_task_may_break_an_admitted_one)
{
    /* Under fixed priorities a new urgent task can push an old one past its
     * deadline: the reason names the old one. */
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = manual(&clk, MOIRAI_RT_POLICY_FIFO, 1);
    moirai_rt_task_config_t low = task(5, 6, 20), high = task(2, 0, 10);
    low.name = "low";
    low.priority = 1;
    high.priority = 50;
    high.max_step_ns = 2;
    moirai_rt_analysis_result_t why;
    cr_assert_eq(moirai_rt_executor_add(ex, &low, NULL, NULL), 0);
    cr_assert_eq(moirai_rt_executor_add(ex, &high, NULL, &why), -EBUSY);
    cr_assert(strstr(why.reason, "'low' (id 1) would fail"), "%s", why.reason);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_admission, long_steps_block_urgent_tasks)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = manual(&clk, MOIRAI_RT_POLICY_EDF, 1);
    moirai_rt_task_config_t lng = task(5, 0, 20), urgent = task(1, 2, 10);
    moirai_rt_task_t *tl;
    moirai_rt_analysis_result_t why;
    /* One step of 5: the urgent job may wait for all of it. */
    cr_assert_eq(moirai_rt_executor_add(ex, &lng, &tl, NULL), 0);
    cr_assert_eq(moirai_rt_executor_add(ex, &urgent, NULL, &why), -EBUSY);
    cr_assert(strstr(why.reason, "interval of 2 ns"), "%s", why.reason);
    /* Steps of 1: blocking 1, demand 1 + 1 <= 2. */
    cr_assert_eq(moirai_rt_executor_remove(ex, tl), 0);
    lng.max_step_ns = 1;
    cr_assert_eq(moirai_rt_executor_add(ex, &lng, NULL, NULL), 0);
    cr_assert_eq(moirai_rt_executor_add(ex, &urgent, NULL, &why), 0, "%s", why.reason);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_admission, locks_shared_across_workers_block)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = manual(&clk, MOIRAI_RT_POLICY_EDF, 2);
    moirai_rt_task_section_t holds_long[] = {{7, 4}}, holds_short[] = {{7, 1}};
    moirai_rt_task_config_t a = task(4, 0, 10), b = task(2, 3, 10);
    a.worker = 1;
    a.sections = holds_long;
    a.section_count = 1;
    b.worker = 2;
    cr_assert_eq(moirai_rt_executor_add(ex, &a, NULL, NULL), 0);
    /* Without the lock, B fits on worker 1 alone. */
    moirai_rt_task_t *tb;
    cr_assert_eq(moirai_rt_executor_add(ex, &b, &tb, NULL), 0);
    cr_assert_eq(moirai_rt_executor_remove(ex, tb), 0);
    /* With it, B may wait 4 for A's section on worker 0: 2 + 4 > 3. */
    b.sections = holds_short;
    b.section_count = 1;
    moirai_rt_analysis_result_t why;
    cr_assert_eq(moirai_rt_executor_add(ex, &b, NULL, &why), -EBUSY);
    cr_assert(strstr(why.reason, "locks held on other workers"), "%s", why.reason);
    cr_assert_float_eq(moirai_rt_executor_utilization(ex, 1), 0.0, 1e-12);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_admission, group_quota_caps_admission)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = manual(&clk, MOIRAI_RT_POLICY_EDF, 1);
    moirai_rt_group_t *g;
    moirai_rt_group_config_t gc = {2, 10};
    cr_assert_eq(moirai_rt_group_create(ex, &g, &gc), 0);
    moirai_rt_task_config_t a = task(3, 0, 10);
    a.group = g;
    moirai_rt_analysis_result_t why;
    cr_assert_eq(moirai_rt_executor_add(ex, &a, NULL, &why), -EBUSY);
    cr_assert(strstr(why.reason, "above its quota 0.2000"), "%s", why.reason);
    a.wcet_ns = 2;
    cr_assert_eq(moirai_rt_executor_add(ex, &a, NULL, NULL), 0);
    /* Bad group configurations. */
    moirai_rt_group_t *g2;
    moirai_rt_group_config_t bad[] = {{0, 10}, {11, 10}, {1, 0}};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(moirai_rt_group_create(ex, &g2, &bad[i]), -EINVAL);
    cr_assert_eq(moirai_rt_group_create(ex, &g2, NULL), -EINVAL);
    cr_assert_eq(moirai_rt_group_destroy(NULL), -EINVAL);
    cr_assert_eq(moirai_rt_group_stats(NULL, NULL), -EINVAL);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_admission, hundred_tasks_under_rta)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = manual(&clk, MOIRAI_RT_POLICY_DM, 1);
    for (int i = 0; i < 100; i++) {
        moirai_rt_task_config_t t = task(10, 0, 2000 + 37 * (uint64_t)i);
        moirai_rt_analysis_result_t why;
        cr_assert_eq(moirai_rt_executor_add(ex, &t, NULL, &why), 0, "task %d: %s", i, why.reason);
    }
    cr_assert_lt(moirai_rt_executor_utilization(ex, 0), 0.5);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

Test(rt_admission, bad_input)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = manual(&clk, MOIRAI_RT_POLICY_FIFO, 2);
    moirai_rt_clock_t *clk2;
    moirai_rt_executor_t *other = manual(&clk2, MOIRAI_RT_POLICY_FIFO, 1);
    moirai_rt_group_t *foreign;
    moirai_rt_group_config_t gc = {5, 10};
    cr_assert_eq(moirai_rt_group_create(other, &foreign, &gc), 0);
    moirai_rt_task_section_t neg[] = {{-1, 1}}, long_cs[] = {{1, 99}};
    moirai_rt_task_config_t cases[16];
    int n = 0;
    cases[n] = task(1, 0, 0), n++;   /* period 0 */
    cases[n] = task(0, 0, 10), n++;  /* wcet 0 */
    cases[n] = task(6, 5, 10), n++;  /* wcet > deadline */
    cases[n] = task(1, 11, 10), n++; /* deadline > period */
    cases[n] = task(1, 0, 10), cases[n].fn = NULL, n++;
    cases[n] = task(1, 0, 10), cases[n].overrun = (moirai_rt_overrun_t)7, n++;
    cases[n] = task(1, 0, 10), cases[n].priority = 100, n++;
    cases[n] = task(1, 0, 10), cases[n].priority = -1, n++;
    cases[n] = task(1, 0, 10), cases[n].worker = 3, n++;
    cases[n] = task(1, 0, 10), cases[n].worker = -1, n++;
    cases[n] = task(1, 0, 10), cases[n].max_step_ns = 2, n++;
    cases[n] = task(1, 0, 10), cases[n].group = foreign, n++;
    cases[n] = task(1, 0, 10), cases[n].sections = neg, cases[n].section_count = 1, n++;
    cases[n] = task(1, 0, 10), cases[n].sections = long_cs, cases[n].section_count = 1, n++;
    cases[n] = task(1, 0, 10), cases[n].section_count = 1, n++;
    for (int i = 0; i < n; i++) {
        moirai_rt_task_t *t = NULL;
        cr_assert_eq(moirai_rt_executor_add(ex, &cases[i], &t, NULL), -EINVAL, "case %d", i);
        cr_assert_null(t);
    }
    moirai_rt_task_config_t ok = task(1, 0, 10);
    cr_assert_eq(moirai_rt_executor_add(NULL, &ok, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_rt_executor_add(ex, NULL, NULL, NULL), -EINVAL);
    moirai_rt_task_t *t;
    cr_assert_eq(moirai_rt_executor_add(other, &ok, &t, NULL), 0);
    cr_assert_eq(moirai_rt_executor_remove(ex, t), -EINVAL, "a task of another executor");
    cr_assert_eq(moirai_rt_executor_remove(ex, NULL), -EINVAL);
    moirai_rt_task_stats_t st;
    cr_assert_eq(moirai_rt_executor_task_stats(ex, t, &st), -EINVAL);
    cr_assert_eq(moirai_rt_executor_utilization(ex, 2), -1.0);
    cr_assert_eq(moirai_rt_executor_worker_count(ex), 2);
    cr_assert_eq(moirai_rt_executor_destroy(NULL), -EINVAL);
    /* Executor configurations. */
    moirai_rt_executor_t *bad;
    moirai_rt_executor_config_t cfg;
    moirai_rt_executor_config_init(&cfg);
    cfg.policy = (moirai_rt_policy_t)5;
    cr_assert_eq(moirai_rt_executor_create(&bad, &cfg), -EINVAL);
    moirai_rt_executor_config_init(&cfg);
    cfg.workers = 257;
    cr_assert_eq(moirai_rt_executor_create(&bad, &cfg), -EINVAL);
    cfg.workers = -1;
    cr_assert_eq(moirai_rt_executor_create(&bad, &cfg), -EINVAL);
    moirai_rt_executor_config_init(&cfg);
    cfg.placement = (moirai_rt_placement_t)2;
    cr_assert_eq(moirai_rt_executor_create(&bad, &cfg), -EINVAL);
    moirai_rt_executor_config_init(&cfg);
    cfg.os.policy = (moirai_rt_os_policy_t)4;
    cr_assert_eq(moirai_rt_executor_create(&bad, &cfg), -EINVAL);
    moirai_rt_executor_config_init(&cfg);
    cfg.os.policy = MOIRAI_RT_OS_FIFO;
    cfg.os.priority = 100;
    cr_assert_eq(moirai_rt_executor_create(&bad, &cfg), -EINVAL);
    moirai_rt_executor_config_init(&cfg);
    int cpus[] = {-1};
    cfg.cpus = cpus;
    cr_assert_eq(moirai_rt_executor_create(&bad, &cfg), -EINVAL);
    cr_assert_eq(moirai_rt_executor_create(NULL, NULL), -EINVAL);
    moirai_rt_executor_destroy(other);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
    moirai_rt_clock_destroy(clk2);
}

/* ---- out of memory ---- */

static moirai_rt_executor_t *oom_ex;
static moirai_rt_task_section_t oom_cs[] = {{3, 1}};

static int add_op(void *ctx)
{
    (void)ctx;
    moirai_rt_task_config_t t = task(2, 0, 10);
    t.sections = oom_cs;
    t.section_count = 1;
    return moirai_rt_executor_add(oom_ex, &t, NULL, NULL);
}

static void add_unchanged(void *ctx, long n)
{
    (void)ctx;
    cr_assert_float_eq(moirai_rt_executor_utilization(oom_ex, 0), 0.1, 1e-12, "failure %ld", n);
    cr_assert_float_eq(moirai_rt_executor_utilization(oom_ex, 1), 0.0, 1e-12, "failure %ld", n);
}

Test(rt_admission, add_out_of_memory)
{
    moirai_rt_clock_t *clk;
    oom_ex = manual(&clk, MOIRAI_RT_POLICY_EDF, 2);
    moirai_rt_task_config_t first = task(1, 0, 10);
    cr_assert_eq(moirai_rt_executor_add(oom_ex, &first, NULL, NULL), 0);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(add_op, add_unchanged, NULL);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 2);
    cr_assert_float_eq(moirai_rt_executor_utilization(oom_ex, 0), 0.3, 1e-12);
    moirai_rt_executor_destroy(oom_ex);
    moirai_rt_clock_destroy(clk);
}

static moirai_rt_clock_t *oom_clk;

static int create_op(void *ctx)
{
    moirai_rt_executor_config_t cfg;
    moirai_rt_executor_config_init(&cfg);
    cfg.clock = oom_clk;
    cfg.workers = 2;
    int cpus[] = {0, 0};
    cfg.cpus = cpus;
    int rc = moirai_rt_executor_create(ctx, &cfg);
    return rc;
}

Test(rt_admission, create_out_of_memory)
{
    cr_assert_eq(moirai_rt_clock_create_virtual(&oom_clk, 0), 0);
    moirai_rt_executor_t *ex = NULL;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(create_op, NULL, &ex);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0);
    cr_assert_not_null(ex);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(oom_clk);
    moirai_rt_clock_t *c = NULL;
    moirai_test_oom_install();
    moirai_test_oom_fail_at(0);
    cr_assert_eq(moirai_rt_clock_create_virtual(&c, 0), -ENOMEM);
    moirai_test_oom_uninstall();
    cr_assert_null(c);
}

Test(rt_admission, group_create_out_of_memory)
{
    moirai_rt_clock_t *clk;
    moirai_rt_executor_t *ex = manual(&clk, MOIRAI_RT_POLICY_EDF, 1);
    moirai_rt_group_t *g = NULL;
    moirai_rt_group_config_t gc = {2, 10};
    moirai_test_oom_install();
    moirai_test_oom_fail_at(0);
    cr_assert_eq(moirai_rt_group_create(ex, &g, &gc), -ENOMEM);
    moirai_test_oom_uninstall();
    cr_assert_null(g);
    cr_assert_eq(moirai_rt_group_create(ex, &g, &gc), 0);
    cr_assert_eq(moirai_rt_group_destroy(g), 0);
    moirai_rt_executor_destroy(ex);
    moirai_rt_clock_destroy(clk);
}

/* ---- concurrent admission ---- */

#include <pthread.h>

static moirai_rt_executor_t *race_ex;
static _Atomic int race_admitted, race_ready, race_go;

static void *race_adder(void *arg)
{
    (void)arg;
    atomic_fetch_add(&race_ready, 1);
    while (!atomic_load(&race_go)) {
    }
    moirai_rt_task_config_t t = task(1, 0, 100);
    int rc = moirai_rt_executor_add(race_ex, &t, NULL, NULL);
    cr_assert(rc == 0 || rc == -EBUSY, "rc %d", rc);
    if (rc == 0)
        atomic_fetch_add(&race_admitted, 1);
    return NULL;
}

Test(rt_admission, concurrent_adds_never_over_admit)
{
    /* 100 identical tasks (C 1, T 100, one step, equal deadlines so no
     * blocking among them) fill a worker exactly. With 99 admitted, four
     * threads released together each offer one more, every analysis
     * running outside the lock on its own snapshot: exactly one is
     * admitted, round after round. */
    for (int round = 0; round < 30; round++) {
        moirai_rt_clock_t *clk;
        race_ex = manual(&clk, MOIRAI_RT_POLICY_EDF, 1);
        for (int i = 0; i < 99; i++) {
            moirai_rt_task_config_t t = task(1, 0, 100);
            cr_assert_eq(moirai_rt_executor_add(race_ex, &t, NULL, NULL), 0);
        }
        atomic_store(&race_admitted, 0);
        atomic_store(&race_ready, 0);
        atomic_store(&race_go, 0);
        pthread_t th[4];
        for (int i = 0; i < 4; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, race_adder, NULL), 0);
        while (atomic_load(&race_ready) < 4) {
        }
        atomic_store(&race_go, 1);
        for (int i = 0; i < 4; i++)
            pthread_join(th[i], NULL);
        cr_assert_eq(atomic_load(&race_admitted), 1, "round %d", round);
        cr_assert_float_eq(moirai_rt_executor_utilization(race_ex, 0), 1.0, 1e-9);
        moirai_rt_executor_destroy(race_ex);
        moirai_rt_clock_destroy(clk);
    }
}
