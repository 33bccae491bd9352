/* The fake sysfs tree with four NUMA nodes and uneven distances that the
 * NUMA tests (test_numa.c, test_numa_pool.c) load as the topology.
 * Header-only.
 *
 * CPUs 0-7 online, CPU i on node i % 4 (so CPUs 0 and 1, which a small
 * machine has, are on nodes 0 and 1). Distances (symmetric) make the
 * fallback order differ per node and include a tie:
 *
 *          0   1   2   3        order from 0: 0 2 3 1
 *     0   10  30  15  21                   1: 1 3 2 0
 *     1   30  10  25  12                   2: 2 0 1 3  (1 and 3 tie at 25)
 *     2   15  25  10  25                   3: 3 1 0 2
 *     3   21  12  25  10                                                   */
#ifndef MOIRAI_TEST_FAKE_NUMA_TREE_H
#define MOIRAI_TEST_FAKE_NUMA_TREE_H

#include <stdlib.h>

#include <moirai/core/topology.h>
#include <moirai/mem/numa.h>

#include "fake_sysfs.h"

static const int fake_dist[4][4] = {
    {10, 30, 15, 21},
    {30, 10, 25, 12},
    {15, 25, 10, 25},
    {21, 12, 25, 10},
};
static const int fake_order[4][4] = {
    {0, 2, 3, 1},
    {1, 3, 2, 0},
    {2, 0, 1, 3},
    {3, 1, 0, 2},
};

/* Builds the tree, loads it as the topology and removes it again; checks
 * that the library took it whole (source, node count, distances). */
static inline void load_fake_topology(void)
{
    char root[64] = "/tmp/moirai-numa-XXXXXX";

    cr_assert_not_null(mkdtemp(root));
    fake_sysfs_put(root, "0-7\n", "devices/system/cpu/online");
    for (int cpu = 0; cpu < 8; cpu++) {
        char text[32];

        snprintf(text, sizeof(text), "%d\n", cpu % 4);
        fake_sysfs_put(root, text, "devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
        snprintf(text, sizeof(text), "%d\n", cpu / 4);
        fake_sysfs_put(root, text, "devices/system/cpu/cpu%d/topology/core_id", cpu);
        for (int idx = 0; idx < 3; idx++) {
            static const char *const type[] = {"Data\n", "Unified\n", "Unified\n"};

            snprintf(text, sizeof(text), "%d\n", idx + 1);
            fake_sysfs_put(root, text, "devices/system/cpu/cpu%d/cache/index%d/level", cpu, idx);
            fake_sysfs_put(root, type[idx], "devices/system/cpu/cpu%d/cache/index%d/type", cpu,
                           idx);
            fake_sysfs_put(root, "64\n",
                           "devices/system/cpu/cpu%d/cache/index%d/coherency_line_size", cpu, idx);
            if (idx < 2)
                snprintf(text, sizeof(text), "%d\n", cpu);
            else
                snprintf(text, sizeof(text), "%d,%d\n", cpu % 4, cpu % 4 + 4);
            fake_sysfs_put(root, text, "devices/system/cpu/cpu%d/cache/index%d/shared_cpu_list",
                           cpu, idx);
        }
    }
    for (int n = 0; n < 4; n++) {
        char text[64];

        snprintf(text, sizeof(text), "%d,%d\n", n, n + 4);
        fake_sysfs_put(root, text, "devices/system/node/node%d/cpulist", n);
        snprintf(text, sizeof(text), "%d %d %d %d\n", fake_dist[n][0], fake_dist[n][1],
                 fake_dist[n][2], fake_dist[n][3]);
        fake_sysfs_put(root, text, "devices/system/node/node%d/distance", n);
    }
    cr_assert_eq(moirai_topology_reload(root), 0);
    fake_sysfs_remove(root);
    cr_assert_eq(moirai_topology_source(), MOIRAI_TOPOLOGY_SYSFS, "the fake tree is incomplete");
    cr_assert_eq(moirai_topology_node_count(), 4);
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            cr_assert_eq(moirai_numa_distance(a, b), fake_dist[a][b]);
}

#endif
