/* An out-of-tree user of moirai-async, built by check_consumer.sh against
 * an installed tree with nothing but `pkg-config --cflags --libs
 * moirai-async` (which brings core, sync, mem, sched and libuv through
 * Requires). Exit status 0 means every check held. */
#include <moirai/async.h>
#include <moirai/core.h>
#include <moirai/sync.h>

#include <string.h>

#include "consumer_check.h"

static int waiter(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    moirai_event_wait(arg); /* parks the fiber */
    *result = arg;
    return moirai_fiber_sleep(MOIRAI_NS_PER_MS);
}

static int writer(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    return moirai_stream_write(arg, "ping", 4) == 4 ? 0 : -1;
}

/* I/O: a fiber writes a pipe that this plain thread reads; a select waits
 * for a timer armed just before. */
static void check_io(moirai_runtime_t *rt)
{
    moirai_io_t *rd = NULL, *wr = NULL;
    CHECK(moirai_pipe_create(rt, &rd, &wr) == 0);
    if (rd == NULL)
        return;
    moirai_handle_t *h = NULL;
    CHECK(moirai_handle_create(&h) == 0);
    CHECK(moirai_fiber_spawn(rt, writer, wr, NULL, h) == 0);
    char buf[8];
    CHECK(moirai_stream_read_timed(rd, moirai_deadline_after(10 * MOIRAI_NS_PER_S), buf,
                                   sizeof buf) == 4 &&
          memcmp(buf, "ping", 4) == 0);
    CHECK(moirai_handle_join(h, NULL) == 0);
    moirai_handle_release(h);
    CHECK(moirai_io_close(rd) == 0 && moirai_io_close(wr) == 0);

    moirai_timer_t *t = NULL;
    CHECK(moirai_timer_create(&t, rt) == 0);
    CHECK(moirai_timer_arm(t, moirai_deadline_after(MOIRAI_NS_PER_MS)) == 0);
    moirai_select_arm_t arm;
    memset(&arm, 0, sizeof arm);
    arm.kind = MOIRAI_SELECT_TIMER;
    arm.timer = t;
    CHECK(moirai_select_timed(moirai_deadline_after(10 * MOIRAI_NS_PER_S), &arm, 1) == 0);
    moirai_timer_destroy(t);
}

int main(void)
{
    CHECK(strcmp(moirai_async_version(), MOIRAI_ASYNC_VERSION_STRING) == 0);

    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = 1;
    moirai_runtime_config_t rc;
    moirai_runtime_config_init(&rc);
    rc.sched_config = &sc;
    moirai_runtime_t *rt = NULL;
    CHECK(moirai_runtime_create(&rt, &rc) == 0);
    if (rt == NULL)
        return 1;

    /* Two fibers wait on one event on a single worker: the worker stays
     * free while they park, so a third fiber can set it. */
    moirai_event_t event;
    moirai_event_init(&event, MOIRAI_EVENT_MANUAL, false);
    moirai_handle_t *a = NULL, *b = NULL;
    CHECK(moirai_handle_create(&a) == 0 && moirai_handle_create(&b) == 0);
    CHECK(moirai_fiber_spawn(rt, waiter, &event, NULL, a) == 0);
    CHECK(moirai_fiber_spawn(rt, waiter, &event, NULL, b) == 0);
    moirai_event_set(&event);
    void *out = NULL;
    CHECK(moirai_handle_join(a, &out) == 0 && out == &event);
    CHECK(moirai_handle_join(b, &out) == 0 && out == &event);
    moirai_handle_release(a);
    moirai_handle_release(b);
    check_io(rt);
    CHECK(moirai_runtime_destroy(rt) == 0);
    return failures == 0 ? 0 : 1;
}
