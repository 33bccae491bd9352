/* NUMA, the topology half: how many nodes, which node a CPU or the
 * calling thread is on, distances, and nodes ordered by distance.
 *
 * Separate from numa_kernel.c and numa_place.c because these answers come
 * from moirai-core's topology alone: they never ask the kernel, never
 * probe, and hold the same on a machine without NUMA support. */
#include <string.h>

#include <moirai/core/error.h>
#include <moirai/core/topology.h>
#include <moirai/mem/numa.h>

int moirai_numa_node_count(void)
{
    return moirai_topology_node_count();
}

int moirai_numa_current_node(void)
{
    moirai_cpu_info_t info;
    int cpu = moirai_topology_current_cpu();

    if (cpu < 0 || moirai_topology_cpu_find(cpu, &info) != 0)
        return 0;
    return info.node;
}

int moirai_numa_node_of_cpu(int cpu)
{
    moirai_cpu_info_t info;
    int rc;

    if (cpu < 0)
        return MOIRAI_EINVAL;
    rc = moirai_topology_cpu_find(cpu, &info);
    return rc != 0 ? rc : info.node;
}

int moirai_numa_distance(int a, int b)
{
    return moirai_topology_node_distance(a, b);
}

/* Orders fallback candidates: `from` before everything, then by distance,
 * then by index. */
static bool nearer(int from, int a, int da, int b, int db)
{
    if ((a == from) != (b == from))
        return a == from;
    if (da != db)
        return da < db;
    return a < b;
}

int moirai_numa_nodes_by_distance(int from, int *order, int capacity)
{
    int count = moirai_topology_node_count();
    int filled = 0;

    if (from < 0 || from >= count || capacity < 0 || (capacity > 0 && order == NULL))
        return MOIRAI_EINVAL;
    /* Insertion into the first `capacity` places: O(nodes * capacity) and
     * no allocation, which suits a call made once per pool. Distances are
     * re-read for the entries being compared because the buffer holds only
     * node numbers. */
    for (int n = 0; n < count; n++) {
        int dn = moirai_topology_node_distance(from, n);
        int pos = filled;

        while (pos > 0 && nearer(from, n, dn, order[pos - 1],
                                 moirai_topology_node_distance(from, order[pos - 1])))
            pos--;
        if (pos >= capacity)
            continue;
        if (filled < capacity)
            filled++;
        memmove(order + pos + 1, order + pos, (size_t)(filled - 1 - pos) * sizeof(*order));
        order[pos] = n;
    }
    return count;
}
