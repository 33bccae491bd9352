/* An out-of-tree user of moirai-core, built by check_consumer.sh against an
 * installed tree with nothing but `pkg-config --cflags --libs moirai-core`.
 * It includes only the umbrella header, calls into every part of the
 * library, and checks that the library it loaded is the version its
 * headers describe. Exit status 0 means every check held. */
#include <moirai/core.h>

#include <stdio.h>
#include <string.h>

#include "consumer_check.h"

static int answer(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    *result = arg;
    return 0;
}

int main(void)
{
    /* The library loaded at run time matches the headers compiled in. */
    CHECK(strcmp(moirai_core_version(), MOIRAI_CORE_VERSION_STRING) == 0);
    char expected[32];
    snprintf(expected, sizeof(expected), "%d.%d.%d", MOIRAI_CORE_VERSION_MAJOR,
             MOIRAI_CORE_VERSION_MINOR, MOIRAI_CORE_VERSION_PATCH);
    CHECK(strcmp(expected, MOIRAI_CORE_VERSION_STRING) == 0);

    /* Errors. */
    CHECK(moirai_strerror(MOIRAI_EINVAL) != NULL);
    CHECK(strcmp(moirai_err_name(MOIRAI_ETIMEDOUT), "ETIMEDOUT") == 0);

    /* Clock and deadlines. */
    uint64_t now = moirai_clock_now_ns();
    CHECK(now > 0);
    CHECK(moirai_deadline_after(MOIRAI_NS_PER_S) > now);
    CHECK(!moirai_deadline_expired(MOIRAI_DEADLINE_NEVER));

    /* Topology, metrics, logging, allocation. */
    CHECK(moirai_topology_cpu_count() >= 1);
    uint64_t cpu_ns = 0;
    CHECK(moirai_metrics_thread_cpu_ns(&cpu_ns) == 0);
    CHECK(moirai_log_level_set(MOIRAI_LOG_WARN) == 0);
    CHECK(moirai_log_level_get() == MOIRAI_LOG_WARN);
    void *p = moirai_malloc(64);
    CHECK(p != NULL);
    moirai_free(p);

    /* Tasks, handles and the inline executor. */
    CHECK(moirai_task_id_next() != MOIRAI_TASK_ID_NONE);
    moirai_handle_t *h = NULL;
    CHECK(moirai_handle_create(&h) == 0);
    if (h) {
        int token = 42;
        CHECK(moirai_executor_spawn(moirai_executor_inline(), answer, &token, NULL, h) == 0);
        void *value = NULL;
        CHECK(moirai_handle_join(h, &value) == 0);
        CHECK(value == &token);
        moirai_handle_release(h);
    }

    /* Parking: a word that already differs from the expected value returns
     * at once. */
    _Atomic uint32_t word = 1;
    CHECK(moirai_park(&word, 0, MOIRAI_DEADLINE_NEVER) == 0);
    CHECK(moirai_unpark_all(&word) == 0);

    if (failures) {
        fprintf(stderr, "consumer: %d check(s) failed\n", failures);
        return 1;
    }
    printf("consumer: moirai-core %s works from the installed tree\n", moirai_core_version());
    return 0;
}
