/* CPU topology.
 *
 * Moirai reads the machine's shape from sysfs the first time it is asked
 * (no libnuma needed): the online CPUs and, for each, its core, package,
 * L2 and L3 cache-sharing groups and NUMA node, plus node distances and the
 * cache-line size. Where sysfs lacks an entry the value falls back to a flat
 * shape (one core per CPU, one package, one node, no shared cache) and a
 * warning is logged saying which part was missing.
 *
 * Tests and tools may inject a synthetic topology, so that code which
 * places work by locality can be tested for 2- and 4-node machines on a
 * 1-node one. Every query then answers from the injected shape.
 *
 * Identifiers: `cpu` is the kernel's logical CPU number. `core`, `package`,
 * `l2_group`, `l3_group` and `node` are dense indices starting at 0 (the
 * kernel's ids are renumbered in order of first appearance, so two CPUs
 * share a core exactly when their `core` fields are equal).
 *
 * Thread-safety: queries are thread-safe and never block after the first
 * call. Injection and reloading are not: call them while no other thread
 * queries the topology (test set-up, program start). */
#ifndef MOIRAI_CORE_TOPOLOGY_H
#define MOIRAI_CORE_TOPOLOGY_H

#include <stdbool.h>

#include <moirai/core/export.h>

/* Where one logical CPU sits in the topology. */
typedef struct moirai_cpu_info {
    int cpu;      /* logical CPU number as the kernel names it */
    int core;     /* dense physical-core index (SMT siblings share it) */
    int package;  /* dense package (socket) index */
    int l2_group; /* dense index of the set of CPUs sharing an L2 cache */
    int l3_group; /* dense index of the set of CPUs sharing the last-level cache */
    int node;     /* dense NUMA node index */
} moirai_cpu_info_t;

/* Where the current topology came from. */
typedef enum moirai_topology_source {
    MOIRAI_TOPOLOGY_SYSFS = 0,     /* read completely from sysfs */
    MOIRAI_TOPOLOGY_FALLBACK = 1,  /* sysfs was missing parts; flat values were used there */
    MOIRAI_TOPOLOGY_SYNTHETIC = 2, /* injected with moirai_topology_inject() */
} moirai_topology_source_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Detects the topology now if no query has done so yet. The queries
 * below detect it on first use too, but answer as one CPU and one node
 * when that runs out of memory; a creator that sizes itself by the
 * topology calls this first so the failure surfaces instead. Thread-safe;
 * may take a lock and read sysfs on its first call, then returns at
 * once. Returns 0, or -ENOMEM (nothing changed; a later call or query
 * tries again). Acquire: a 0 return makes the topology visible. */
MOIRAI_CORE_API int moirai_topology_load(void);

/* Number of CPUs in the topology (online CPUs for a detected one); at
 * least 1. */
MOIRAI_CORE_API int moirai_topology_cpu_count(void);

/* Number of NUMA nodes; at least 1. */
MOIRAI_CORE_API int moirai_topology_node_count(void);

/* Number of last-level cache groups; at least 1. */
MOIRAI_CORE_API int moirai_topology_l3_count(void);

/* Fills `*out` with the `index`-th CPU (0 <= index < cpu_count; CPUs are in
 * increasing `cpu` order). Returns 0, or -EINVAL for a bad index or NULL. */
MOIRAI_CORE_API int moirai_topology_cpu_at(int index, moirai_cpu_info_t *out);

/* Fills `*out` with the CPU whose kernel number is `cpu`. Returns 0,
 * -EINVAL for NULL, or -ENOENT if that CPU is not in the topology. */
MOIRAI_CORE_API int moirai_topology_cpu_find(int cpu, moirai_cpu_info_t *out);

/* The distance between nodes `a` and `b` in the ACPI SLIT scale (10 means
 * local). Synthetic and fallback topologies use 10 within a node and 20
 * across. Returns the distance, or -EINVAL for a node out of range. */
MOIRAI_CORE_API int moirai_topology_node_distance(int a, int b);

/* The cache-line size in bytes (coherency_line_size of the first CPU's L1
 * data cache; 64 when sysfs does not say). */
MOIRAI_CORE_API int moirai_topology_cache_line_size(void);

/* The kernel number of the CPU the caller is running on right now (it may
 * move at any time). Returns the CPU number, or a negative errno when the
 * kernel cannot tell. Under a synthetic topology the real CPU is mapped
 * onto the synthetic CPUs (real number modulo the synthetic count, taken
 * as an index), so callers always get a CPU the topology knows. */
MOIRAI_CORE_API int moirai_topology_current_cpu(void);

/* Where the current topology came from. */
MOIRAI_CORE_API moirai_topology_source_t moirai_topology_source(void);

/* Replaces the topology with the `count` CPUs in `cpus` (copied). The
 * entries must have distinct `cpu` numbers >= 0 and every other field
 * >= 0; they are sorted by `cpu`, and the other fields are renumbered
 * densely in order of first appearance. Node distances become 10 within a
 * node and 20 across; the cache-line size stays as detected. Passing
 * NULL and 0 restores the detected topology.
 * Not thread-safe (see above). Returns 0, -EINVAL for invalid entries (the
 * topology is unchanged), or -ENOMEM. */
MOIRAI_CORE_API int moirai_topology_inject(const moirai_cpu_info_t *cpus, int count);

/* Convenience for tests: injects `nodes` nodes of `cpus_per_node` CPUs
 * each, one package and one L3 group per node, one core and one L2 group
 * per CPU, CPUs numbered 0 .. nodes*cpus_per_node-1 node by node.
 * Returns 0, -EINVAL if either count is < 1 or the total exceeds 4096, or
 * -ENOMEM. */
MOIRAI_CORE_API int moirai_topology_inject_uniform(int nodes, int cpus_per_node);

/* Re-reads the topology from a sysfs tree rooted at `sysfs_root` (NULL
 * means "/sys"), replacing the current one. Missing entries fall back as
 * described above and are logged at warn level. The result also becomes
 * the topology that moirai_topology_inject(NULL, 0) restores. Not
 * thread-safe (see above). Returns 0 (also when falling back), or -ENOMEM
 * (the topology is then unchanged). */
MOIRAI_CORE_API int moirai_topology_reload(const char *sysfs_root);

#ifdef __cplusplus
}
#endif

#endif
