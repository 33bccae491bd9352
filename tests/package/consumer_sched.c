/* An out-of-tree user of moirai-sched, built by check_consumer.sh against
 * an installed tree with nothing but `pkg-config --cflags --libs
 * moirai-sched` (which brings core, sync and mem through Requires). Exit
 * status 0 means every check held. */
#include <moirai/core.h>
#include <moirai/sched.h>

#include <stdio.h>
#include <string.h>

#include "consumer_check.h"

static void add_one(void *arg)
{
    __atomic_add_fetch((int *)arg, 1, __ATOMIC_RELAXED);
}

static int answer(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    *result = arg;
    return 0;
}

int main(void)
{
    CHECK(strcmp(moirai_sched_version(), MOIRAI_SCHED_VERSION_STRING) == 0);

    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    moirai_sched_t *sched = NULL;
    CHECK(moirai_sched_create(&sched, &cfg) == 0);
    if (sched == NULL)
        return 1;

    /* A join runs both halves. */
    int count = 0;
    CHECK(moirai_join(sched, add_one, &count, add_one, &count) == 0);
    CHECK(count == 2);

    /* A spawned task's result reaches its handle. */
    moirai_handle_t *handle = NULL;
    CHECK(moirai_handle_create(&handle) == 0);
    static int value = 42;
    CHECK(moirai_sched_spawn(sched, answer, &value, NULL, handle) == 0);
    void *out = NULL;
    CHECK(moirai_handle_join(handle, &out) == 0 && out == &value);
    moirai_handle_release(handle);

    CHECK(moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN) == 0);
    if (failures == 0)
        printf("consumer-sched: all checks passed (moirai-sched %s)\n", moirai_sched_version());
    return failures == 0 ? 0 : 1;
}
