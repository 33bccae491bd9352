/* The scheduler's watchdog sees fibers: a fiber that spins without ever
 * waiting is reported by its name, and with compensation the fibers queued
 * behind it on a one-worker runtime still run. */
#include "async_test_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[8192];

static void capture(void *ctx, moirai_log_level_t level, const char *message)
{
    (void)ctx;
    (void)level;
    pthread_mutex_lock(&log_lock);
    size_t used = strlen(log_text);
    if (used + strlen(message) + 2 < sizeof(log_text)) {
        strcat(log_text, message);
        strcat(log_text, "\n");
    }
    pthread_mutex_unlock(&log_lock);
}

static bool logged(const char *needle)
{
    pthread_mutex_lock(&log_lock);
    bool found = strstr(log_text, needle) != NULL;
    pthread_mutex_unlock(&log_lock);
    return found;
}

static int quick(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    *result = arg;
    return 0;
}

Test(fiber_watchdog, spinning_fiber_is_reported_and_compensated, .timeout = 60)
{
    moirai_log_sink_set(capture, NULL);
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = 1;
    sc.watchdog_ns = 20 * MOIRAI_NS_PER_MS;
    sc.watchdog_compensate = 1;
    moirai_runtime_config_t rc;
    moirai_runtime_config_init(&rc);
    rc.sched_config = &sc;
    moirai_runtime_t *rt = NULL;
    cr_assert_eq(moirai_runtime_create(&rt, &rc), 0);

    moirai_fiber_attr_t attr;
    moirai_fiber_attr_init(&attr);
    attr.task.name = "spinning-fiber";
    /* Blocks its worker on purpose: no Moirai wait, no yield. Waited for
     * until it runs, so the next fiber queues behind it. */
    struct holder hold;
    atomic_init(&hold.running, 0);
    atomic_init(&hold.release, 0);
    moirai_handle_t *spinner = spawn_with_handle(rt, hold_worker, &hold, &attr);
    while (!atomic_load(&hold.running))
        sched_yield();
    /* Queued behind the spinner on the only worker: runs only because the
     * watchdog starts a compensating worker. */
    void *v = NULL;
    cr_assert_eq(run_fiber(rt, quick, (void *)5, &v), 0);
    cr_assert_eq(v, (void *)5);
    cr_assert(logged("spinning-fiber"), "log was:\n%s", log_text);
    moirai_sched_worker_stats_t st;
    cr_assert_eq(moirai_sched_stats(moirai_runtime_sched(rt), &st), 0);
    cr_assert_geq(st.watchdog_reports, 1);
    moirai_runtime_stats_t rs;
    cr_assert_eq(moirai_runtime_stats(rt, &rs), 0);
    cr_assert_eq(rs.watchdog_reports, st.watchdog_reports);

    atomic_store(&hold.release, 1);
    cr_assert_eq(join_and_release(spinner, NULL), 0);
    drop_runtime(rt);
    moirai_log_sink_set(NULL, NULL);
}
