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
    CHECK(moirai_runtime_destroy(rt) == 0);
    return failures == 0 ? 0 : 1;
}
