/* The process-wide CPU topology: lazy detection, queries, injection. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/cache.h>
#include <moirai/core/error.h>
#include <moirai/core/log.h>
#include <moirai/core/topology.h>

#include "topology_internal.h"

#define UNIFORM_MAX_CPUS 4096

/* The topology every query answers from; NULL until the first successful
 * detection. Queries load it with acquire, pairing with the release store
 * that publishes a fully built topology, so a reader never sees a
 * half-initialised one. */
static _Atomic(moirai__topology_t *) topo_current;

/* The topology read from sysfs, kept for the life of the process as the
 * target of moirai_topology_inject(NULL, 0). Guarded by topo_lock, which
 * also serialises detection, injection and reloading among themselves
 * (they are still not safe against concurrent queries: a replaced topology
 * is freed). */
static moirai__topology_t *topo_detected;
static pthread_mutex_t topo_lock = PTHREAD_MUTEX_INITIALIZER;

/* What queries answer while detection cannot allocate: one CPU, numbered
 * 0, flat. Detection is retried on the next query, so a transient
 * allocation failure (an OOM test, say) does not leave the process with
 * this shape for good, which a pthread_once() initialiser would. */
static moirai_cpu_info_t emergency_cpu;
static moirai__topology_t emergency_topology = {
    .cpu_count = 1,
    .node_count = 1,
    .l3_count = 1,
    .cache_line_size = MOIRAI_CACHE_LINE,
    .source = MOIRAI_TOPOLOGY_FALLBACK,
    .cpus = &emergency_cpu,
    .distance = NULL,
};
static atomic_bool emergency_logged;

moirai__topology_t *moirai__topology_alloc(int cpu_count, int node_count, int with_distance)
{
    size_t cpus_bytes, dist_bytes = 0, total;
    moirai__topology_t *t;

    if (cpu_count < 1 || node_count < 1)
        return NULL;
    if (__builtin_mul_overflow((size_t)cpu_count, sizeof(moirai_cpu_info_t), &cpus_bytes))
        return NULL;
    if (with_distance &&
        (__builtin_mul_overflow((size_t)node_count, (size_t)node_count, &dist_bytes) ||
         __builtin_mul_overflow(dist_bytes, sizeof(int), &dist_bytes)))
        return NULL;
    if (__builtin_add_overflow(sizeof(*t), cpus_bytes, &total) ||
        __builtin_add_overflow(total, dist_bytes, &total))
        return NULL;
    t = moirai_malloc(total);
    if (t == NULL)
        return NULL;
    /* The CPU array follows the struct and the distance table follows the
     * CPUs; both element types need only int alignment, which the
     * struct's size (a multiple of its pointer alignment) preserves. */
    t->cpu_count = cpu_count;
    t->node_count = node_count;
    t->l3_count = 1;
    t->cache_line_size = MOIRAI_CACHE_LINE;
    t->source = MOIRAI_TOPOLOGY_SYNTHETIC;
    t->cpus = (moirai_cpu_info_t *)(t + 1);
    t->distance = with_distance ? (int *)(t->cpus + cpu_count) : NULL;
    return t;
}

typedef struct key_pos {
    int64_t key;
    int pos;
} key_pos_t;

static int cmp_key_pos(const void *a, const void *b)
{
    const key_pos_t *x = a, *y = b;

    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

int moirai__topology_renumber(const int64_t *keys, int n, int *out)
{
    key_pos_t *kp;
    int next = 0;

    if (n <= 0)
        return 0;
    kp = moirai_malloc((size_t)n * sizeof(*kp));
    if (kp == NULL)
        return MOIRAI_ENOMEM;
    for (int i = 0; i < n; i++)
        kp[i] = (key_pos_t){keys[i], i};
    qsort(kp, (size_t)n, sizeof(*kp), cmp_key_pos);

    /* First pass: out[i] = the first position holding keys[i]. Sorting by
     * (key, position) puts that position first in each run. */
    for (int i = 0; i < n;) {
        int first = kp[i].pos, j = i;

        while (j < n && kp[j].key == kp[i].key)
            out[kp[j++].pos] = first;
        i = j;
    }
    moirai_free(kp);

    /* Second pass, in position order: a position that is its own first
     * appearance opens the next dense index; any later position points
     * back at an earlier one, which this pass has already rewritten from
     * a position into its index. */
    for (int i = 0; i < n; i++)
        out[i] = out[i] == i ? next++ : out[out[i]];
    return next;
}

/* Makes sure topo_detected exists. Caller holds topo_lock. Returns 0 or
 * -ENOMEM. */
static int ensure_detected_locked(void)
{
    moirai__topology_t *t;
    int rc;

    if (topo_detected != NULL)
        return 0;
    rc = moirai__topology_read_sysfs(NULL, &t);
    if (rc != 0)
        return rc;
    topo_detected = t;
    if (atomic_load_explicit(&topo_current, memory_order_relaxed) == NULL)
        atomic_store_explicit(&topo_current, t, memory_order_release);
    return 0;
}

static const moirai__topology_t *topo_get_slow(void)
{
    moirai__topology_t *t;
    int rc;

    pthread_mutex_lock(&topo_lock);
    rc = ensure_detected_locked();
    /* Relaxed under the lock: whoever stored it held the lock too. */
    t = atomic_load_explicit(&topo_current, memory_order_relaxed);
    pthread_mutex_unlock(&topo_lock);
    if (rc != 0 && t == NULL) {
        if (!atomic_exchange_explicit(&emergency_logged, true, memory_order_relaxed))
            MOIRAI_LOG(MOIRAI_LOG_WARN,
                       "topology: out of memory while detecting; answering as one CPU until a "
                       "later query succeeds");
        return &emergency_topology;
    }
    return t;
}

/* The current topology; detects it on first use. */
static inline const moirai__topology_t *topo_get(void)
{
    const moirai__topology_t *t = atomic_load_explicit(&topo_current, memory_order_acquire);

    if (__builtin_expect(t != NULL, 1))
        return t;
    return topo_get_slow();
}

/* Installs `t` as current and frees the topology it replaces unless that
 * is the detected one. Caller holds topo_lock. */
static void replace_current_locked(moirai__topology_t *t)
{
    moirai__topology_t *old = atomic_load_explicit(&topo_current, memory_order_relaxed);

    atomic_store_explicit(&topo_current, t, memory_order_release);
    if (old != NULL && old != topo_detected && old != t)
        moirai_free(old);
}

int moirai_topology_load(void)
{
    /* Acquire, as in topo_get(). */
    if (__builtin_expect(atomic_load_explicit(&topo_current, memory_order_acquire) != NULL, 1))
        return 0;
    pthread_mutex_lock(&topo_lock);
    int rc = ensure_detected_locked();
    pthread_mutex_unlock(&topo_lock);
    return rc;
}

int moirai_topology_cpu_count(void)
{
    return topo_get()->cpu_count;
}

int moirai_topology_node_count(void)
{
    return topo_get()->node_count;
}

int moirai_topology_l3_count(void)
{
    return topo_get()->l3_count;
}

int moirai_topology_cpu_at(int index, moirai_cpu_info_t *out)
{
    const moirai__topology_t *t = topo_get();

    if (out == NULL || index < 0 || index >= t->cpu_count)
        return MOIRAI_EINVAL;
    *out = t->cpus[index];
    return 0;
}

/* Index of `cpu` in `t`, or -1. */
static int find_index(const moirai__topology_t *t, int cpu)
{
    int lo = 0, hi = t->cpu_count;

    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;

        if (t->cpus[mid].cpu < cpu)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->cpu_count && t->cpus[lo].cpu == cpu ? lo : -1;
}

int moirai_topology_cpu_find(int cpu, moirai_cpu_info_t *out)
{
    const moirai__topology_t *t = topo_get();
    int i;

    if (out == NULL)
        return MOIRAI_EINVAL;
    i = find_index(t, cpu);
    if (i < 0)
        return MOIRAI_ENOENT;
    *out = t->cpus[i];
    return 0;
}

int moirai_topology_node_distance(int a, int b)
{
    const moirai__topology_t *t = topo_get();

    if (a < 0 || b < 0 || a >= t->node_count || b >= t->node_count)
        return MOIRAI_EINVAL;
    if (t->distance != NULL)
        return t->distance[(size_t)a * (size_t)t->node_count + (size_t)b];
    return a == b ? 10 : 20;
}

int moirai_topology_cache_line_size(void)
{
    return topo_get()->cache_line_size;
}

int moirai_topology_current_cpu(void)
{
    const moirai__topology_t *t = topo_get();
    int cpu = sched_getcpu();

    if (cpu < 0)
        return -errno;
    /* A synthetic topology always maps, as documented. A detected one
     * normally contains the CPU; if it does not (a CPU came online after
     * detection, or the online list was missing), the same mapping keeps
     * the promise that callers get a CPU the topology knows. */
    if (t->source != MOIRAI_TOPOLOGY_SYNTHETIC && find_index(t, cpu) >= 0)
        return cpu;
    return t->cpus[cpu % t->cpu_count].cpu;
}

moirai_topology_source_t moirai_topology_source(void)
{
    return topo_get()->source;
}

static int cmp_cpu_info(const void *a, const void *b)
{
    const moirai_cpu_info_t *x = a, *y = b;

    return (x->cpu > y->cpu) - (x->cpu < y->cpu);
}

/* Builds a synthetic topology from validated, unsorted entries. Returns 0
 * with *out set, -EINVAL for duplicate CPU numbers, or -ENOMEM. */
static int build_synthetic(const moirai_cpu_info_t *cpus, int n, int line_size,
                           moirai__topology_t **out)
{
    moirai__topology_t *t;
    int64_t *keys = NULL;
    int *dense = NULL;
    int rc = 0, distinct[5] = {0};

    /* The node count is known only after renumbering; a synthetic
     * topology has no distance table, so it does not affect the size. */
    t = moirai__topology_alloc(n, 1, 0);
    keys = moirai_malloc((size_t)n * 5 * sizeof(*keys));
    dense = moirai_malloc((size_t)n * 5 * sizeof(*dense));
    if (t == NULL || keys == NULL || dense == NULL) {
        rc = MOIRAI_ENOMEM;
        goto out;
    }
    memcpy(t->cpus, cpus, (size_t)n * sizeof(*cpus));
    qsort(t->cpus, (size_t)n, sizeof(*cpus), cmp_cpu_info);
    for (int i = 1; i < n; i++) {
        if (t->cpus[i].cpu == t->cpus[i - 1].cpu) {
            rc = MOIRAI_EINVAL;
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        keys[i] = t->cpus[i].core;
        keys[n + i] = t->cpus[i].package;
        keys[2 * (size_t)n + i] = t->cpus[i].l2_group;
        keys[3 * (size_t)n + i] = t->cpus[i].l3_group;
        keys[4 * (size_t)n + i] = t->cpus[i].node;
    }
    for (int f = 0; f < 5; f++) {
        distinct[f] = moirai__topology_renumber(keys + (size_t)f * n, n, dense + (size_t)f * n);
        if (distinct[f] < 0) {
            rc = distinct[f];
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        t->cpus[i].core = dense[i];
        t->cpus[i].package = dense[n + i];
        t->cpus[i].l2_group = dense[2 * (size_t)n + i];
        t->cpus[i].l3_group = dense[3 * (size_t)n + i];
        t->cpus[i].node = dense[4 * (size_t)n + i];
    }
    t->l3_count = distinct[3];
    t->node_count = distinct[4];
    t->cache_line_size = line_size;
    t->source = MOIRAI_TOPOLOGY_SYNTHETIC;

out:
    moirai_free(keys);
    moirai_free(dense);
    if (rc != 0) {
        moirai_free(t);
        t = NULL;
    }
    *out = t;
    return rc;
}

int moirai_topology_inject(const moirai_cpu_info_t *cpus, int count)
{
    moirai__topology_t *t;
    int rc;

    if (cpus == NULL && count == 0) {
        pthread_mutex_lock(&topo_lock);
        rc = ensure_detected_locked();
        if (rc == 0)
            replace_current_locked(topo_detected);
        pthread_mutex_unlock(&topo_lock);
        return rc;
    }
    if (cpus == NULL || count < 1)
        return MOIRAI_EINVAL;
    /* Field checks need no allocation, so bad input is rejected the same
     * way whatever the memory situation. Duplicates are found after
     * sorting, in build_synthetic(). */
    for (int i = 0; i < count; i++) {
        const moirai_cpu_info_t *c = &cpus[i];

        if (c->cpu < 0 || c->core < 0 || c->package < 0 || c->l2_group < 0 || c->l3_group < 0 ||
            c->node < 0)
            return MOIRAI_EINVAL;
    }

    pthread_mutex_lock(&topo_lock);
    /* The detected topology must exist before it can be replaced: it is
     * the restore target and supplies the cache-line size. */
    rc = ensure_detected_locked();
    if (rc == 0)
        rc = build_synthetic(cpus, count, topo_detected->cache_line_size, &t);
    if (rc == 0)
        replace_current_locked(t);
    pthread_mutex_unlock(&topo_lock);
    return rc;
}

int moirai_topology_inject_uniform(int nodes, int cpus_per_node)
{
    moirai_cpu_info_t *cpus;
    int total, rc;

    if (nodes < 1 || cpus_per_node < 1 || nodes > UNIFORM_MAX_CPUS / cpus_per_node)
        return MOIRAI_EINVAL;
    total = nodes * cpus_per_node;
    cpus = moirai_malloc((size_t)total * sizeof(*cpus));
    if (cpus == NULL)
        return MOIRAI_ENOMEM;
    for (int i = 0; i < total; i++) {
        int node = i / cpus_per_node;

        cpus[i] = (moirai_cpu_info_t){
            .cpu = i,
            .core = i,
            .package = node,
            .l2_group = i,
            .l3_group = node,
            .node = node,
        };
    }
    rc = moirai_topology_inject(cpus, total);
    moirai_free(cpus);
    return rc;
}

int moirai_topology_reload(const char *sysfs_root)
{
    moirai__topology_t *t, *old_detected;
    int rc;

    rc = moirai__topology_read_sysfs(sysfs_root, &t);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&topo_lock);
    /* The re-read topology becomes the restore target too. The replaced
     * current one is freed by replace_current_locked() unless it is the
     * old detected one, which is freed here, so neither is freed twice. */
    old_detected = topo_detected;
    replace_current_locked(t);
    topo_detected = t;
    moirai_free(old_detected);
    pthread_mutex_unlock(&topo_lock);
    return 0;
}
