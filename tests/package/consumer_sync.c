/* An out-of-tree user of moirai-sync, built by check_consumer.sh against an
 * installed tree with nothing but `pkg-config --cflags --libs moirai-sync`
 * (which brings moirai-core through Requires and liburcu through
 * Requires.private). Exit status 0 means every check held. */
#include <moirai/core.h>
#include <moirai/sync.h>

#include <stdio.h>
#include <string.h>

#include "consumer_check.h"

static moirai_mutex_t lock = MOIRAI_MUTEX_INIT;

int main(void)
{
    CHECK(strcmp(moirai_sync_version(), MOIRAI_SYNC_VERSION_STRING) == 0);

    /* A statically initialised mutex. */
    moirai_mutex_lock(&lock);
    CHECK(!moirai_mutex_try_lock(&lock));
    moirai_mutex_unlock(&lock);
    CHECK(moirai_mutex_try_lock(&lock));
    moirai_mutex_unlock(&lock);

    /* A wait group with nothing outstanding does not block; a negative
     * count is refused. */
    moirai_waitgroup_t wg = MOIRAI_WAITGROUP_INIT;
    CHECK(moirai_waitgroup_add(&wg, 1) == 0);
    CHECK(moirai_waitgroup_done(&wg) == 0);
    CHECK(moirai_waitgroup_done(&wg) == MOIRAI_EINVAL);
    moirai_waitgroup_wait(&wg);

    /* A sharded counter sums its slots. */
    moirai_counter_t *counter = NULL;
    CHECK(moirai_counter_create(&counter) == 0);
    if (counter != NULL) {
        moirai_counter_add(counter, 40);
        moirai_counter_add(counter, 2);
        CHECK(moirai_counter_read(counter) == 42);
        moirai_counter_destroy(counter);
    }

    /* RCU read-side sections work on a thread that never registered. */
    moirai_rcu_read_lock();
    moirai_rcu_read_unlock();

    if (failures == 0)
        printf("consumer-sync: all checks passed (moirai-sync %s)\n", moirai_sync_version());
    return failures == 0 ? 0 : 1;
}
