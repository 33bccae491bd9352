/* An out-of-tree user of moirai-mem, built by check_consumer.sh against an
 * installed tree with nothing but `pkg-config --cflags --libs moirai-mem`
 * (which brings moirai-core through Requires). Exit status 0 means every
 * check held. */
#include <moirai/core.h>
#include <moirai/mem.h>

#include <stdio.h>
#include <string.h>

#include "consumer_check.h"

int main(void)
{
    CHECK(strcmp(moirai_mem_version(), MOIRAI_MEM_VERSION_STRING) == 0);

    /* An object pool: allocate, release, count. */
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, 48);
    moirai_pool_t *pool = NULL;
    CHECK(moirai_pool_create(&pool, &cfg) == 0);
    void *obj = NULL;
    if (pool != NULL) {
        CHECK(moirai_pool_alloc(pool, &obj) == 0);
        if (obj != NULL) {
            memset(obj, 0xab, 48);
            moirai_pool_free(pool, obj);
        }
        moirai_pool_stats_t st;
        CHECK(moirai_pool_stats(pool, &st) == 0);
        moirai_pool_destroy(pool);
    }

    /* The NUMA API presents at least one node on any machine. */
    CHECK(moirai_numa_node_count() >= 1);
    CHECK(moirai_numa_current_node() >= 0);

    /* Cache-line helpers agree with core's topology. */
    CHECK(moirai_cache_line_size() == (size_t)moirai_topology_cache_line_size());
    void *line = moirai_cache_aligned_alloc(100);
    CHECK(line != NULL && ((uintptr_t)line % moirai_cache_line_size()) == 0);
    moirai_cache_aligned_free(line);

    if (failures == 0)
        printf("consumer-mem: all checks passed (moirai-mem %s)\n", moirai_mem_version());
    return failures == 0 ? 0 : 1;
}
