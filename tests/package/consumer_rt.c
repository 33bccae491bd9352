/* An out-of-tree user of moirai-rt, built by check_consumer.sh against an
 * installed tree with nothing but `pkg-config --cflags --libs moirai-rt`
 * (which brings core, sync and sched through Requires). Exit status 0
 * means every check held. */
#include <moirai/core.h>
#include <moirai/rt.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "consumer_check.h"

static int step(void *arg, moirai_rt_job_t *job)
{
    (void)job;
    ++*(int *)arg;
    return MOIRAI_RT_JOB_DONE;
}

int main(void)
{
    CHECK(strcmp(moirai_rt_version(), MOIRAI_RT_VERSION_STRING) == 0);

    /* The analysis: Burns & Wellings' set has response times 3, 6, 20. */
    moirai_rt_analysis_task_t set[] = {{7, 0, 3, 3, 0}, {12, 0, 3, 2, 0}, {20, 0, 5, 1, 0}};
    moirai_rt_analysis_result_t r;
    uint64_t resp[3];
    CHECK(moirai_rt_analysis_rta(set, 3, &r, resp) == 0 && r.schedulable);
    CHECK(resp[2] == 20);

    /* The executor on a virtual clock: 10 releases in 100 ns. */
    moirai_rt_clock_t *clk = NULL;
    CHECK(moirai_rt_clock_create_virtual(&clk, 0) == 0);
    moirai_rt_executor_config_t cfg;
    moirai_rt_executor_config_init(&cfg);
    cfg.clock = clk;
    moirai_rt_executor_t *ex = NULL;
    CHECK(moirai_rt_executor_create(&ex, &cfg) == 0);
    if (!ex)
        return 1;
    int runs = 0;
    moirai_rt_task_config_t tc;
    moirai_rt_task_config_init(&tc);
    tc.fn = step;
    tc.arg = &runs;
    tc.period_ns = 10;
    tc.wcet_ns = 1;
    CHECK(moirai_rt_executor_add(ex, &tc, NULL, NULL) == 0);
    tc.wcet_ns = 10;
    CHECK(moirai_rt_executor_add(ex, &tc, NULL, &r) == -EBUSY);
    CHECK(moirai_rt_executor_run_until(ex, 100) == 0);
    CHECK(runs == 10);
    CHECK(moirai_rt_executor_destroy(ex) == 0);
    moirai_rt_clock_destroy(clk);

    moirai_rt_pi_mutex_t m = MOIRAI_RT_PI_MUTEX_INIT;
    CHECK(moirai_rt_pi_mutex_lock(&m) == 0);
    CHECK(moirai_rt_pi_mutex_lock(&m) == -EDEADLK);
    CHECK(moirai_rt_pi_mutex_unlock(&m) == 0);

    if (failures == 0)
        printf("consumer-rt: all checks passed (moirai-rt %s)\n", moirai_rt_version());
    return failures == 0 ? 0 : 1;
}
