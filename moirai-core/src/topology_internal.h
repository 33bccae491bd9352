/* Internal interface between topology.c (the process-wide topology and its
 * queries) and topology_sysfs.c (reading a sysfs tree). */
#ifndef MOIRAI_CORE_TOPOLOGY_INTERNAL_H
#define MOIRAI_CORE_TOPOLOGY_INTERNAL_H

#include <stdint.h>

#include <moirai/core/topology.h>

/* One complete topology, immutable once built. It is a single allocation:
 * the struct, then `cpus`, then `distance` when present, so one
 * moirai_free() releases it and a failed build leaves nothing behind. */
typedef struct moirai__topology {
    int cpu_count;       /* >= 1 */
    int node_count;      /* >= 1 */
    int l3_count;        /* >= 1 */
    int cache_line_size; /* bytes */
    moirai_topology_source_t source;
    moirai_cpu_info_t *cpus; /* cpu_count entries, increasing `cpu` */
    /* node_count * node_count SLIT distances, row-major, or NULL to mean
     * 10 within a node and 20 across. */
    int *distance;
} moirai__topology_t;

/* Allocates a topology with room for `cpu_count` CPUs and, when
 * `with_distance` is true, a node_count x node_count distance table; the
 * counts and pointers are set, the entries are not. Returns NULL when
 * allocation fails or the sizes overflow. */
moirai__topology_t *moirai__topology_alloc(int cpu_count, int node_count, int with_distance);

/* Renumbers `keys[0..n)` into dense indices in order of first appearance:
 * out[i] == out[j] exactly when keys[i] == keys[j], and out[0] == 0, and
 * each new key gets the next index. Returns the number of distinct keys,
 * or -ENOMEM (out is then unspecified). `out` may not alias `keys`. */
int moirai__topology_renumber(const int64_t *keys, int n, int *out);

/* Reads the topology under the sysfs tree `root` ("/sys" normally) into a
 * newly allocated topology in `*out`. Missing or malformed entries fall
 * back to flat values field by field, set the source to
 * MOIRAI_TOPOLOGY_FALLBACK and log one warning naming them. Returns 0 or
 * -ENOMEM. Touches no global state apart from logging, so it may run
 * while other threads query the current topology. */
int moirai__topology_read_sysfs(const char *root, moirai__topology_t **out);

#endif
