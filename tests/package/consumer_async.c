/* An out-of-tree user of moirai-async, built by check_consumer.sh (and by
 * debian/tests/consumers against the installed packages) with nothing but
 * `pkg-config --cflags --libs moirai-async`, which brings core, sync, mem,
 * sched and libuv through Requires. It includes the umbrella header, so
 * the whole public API must compile from the installed tree, and checks
 * that the library it loaded is the version its headers describe. It
 * calls only what the library implements today (the version); each new
 * part of the API adds its call here. Exit status 0 means every check
 * held. */
#include <moirai/async.h>
#include <moirai/core.h>

#include <stdio.h>
#include <string.h>

#include "consumer_check.h"

int main(void)
{
    CHECK(strcmp(moirai_async_version(), MOIRAI_ASYNC_VERSION_STRING) == 0);
    char expected[32];
    snprintf(expected, sizeof(expected), "%d.%d.%d", MOIRAI_ASYNC_VERSION_MAJOR,
             MOIRAI_ASYNC_VERSION_MINOR, MOIRAI_ASYNC_VERSION_PATCH);
    CHECK(strcmp(expected, MOIRAI_ASYNC_VERSION_STRING) == 0);
    /* Its dependencies load beside it. */
    CHECK(strcmp(moirai_core_version(), MOIRAI_CORE_VERSION_STRING) == 0);

    if (failures == 0)
        printf("consumer-async: all checks passed (moirai-async %s)\n", moirai_async_version());
    return failures == 0 ? 0 : 1;
}
