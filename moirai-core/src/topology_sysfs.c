/* Reading the CPU topology from a sysfs tree.
 *
 * Everything comes from plain text files under <root>/devices/system:
 *
 *   cpu/online                                  online CPUs, a CPU list
 *   cpu/cpuN/topology/core_id                   core id, unique per package
 *   cpu/cpuN/topology/physical_package_id       package id
 *   cpu/cpuN/cache/indexK/{level,type,shared_cpu_list,coherency_line_size}
 *   node/nodeM/cpulist                          CPUs of node M
 *   node/nodeM/distance                         SLIT row of node M, one entry
 *                                               per node directory in id order
 *
 * Each field falls back to a flat value on its own when its files are
 * missing or malformed anywhere, so a partial tree still yields a usable,
 * self-consistent topology; the fallback is logged once, naming the parts.
 * Only allocation failure is an error. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <moirai/core/alloc.h>
#include <moirai/core/cache.h>
#include <moirai/core/error.h>
#include <moirai/core/log.h>

#include "topology_internal.h"

/* Bounds that keep a corrupt or hostile tree from making us allocate
 * without limit. Linux's NR_CPUS tops out at 8192 and MAX_NUMNODES at
 * 1024; these leave room above both. */
#define SYSFS_MAX_CPU_ID (1 << 20)
#define SYSFS_MAX_CPUS   (1 << 16)
#define SYSFS_MAX_NODES  4096
#define SYSFS_MAX_CACHES 32
#define SYSFS_FILE_MAX   8192

/* The parts that can be missing, for the warning. */
enum {
    MISSING_ONLINE = 1 << 0,
    MISSING_CORE = 1 << 1,
    MISSING_PACKAGE = 1 << 2,
    MISSING_CACHE = 1 << 3,
    MISSING_LINE = 1 << 4,
    MISSING_NODE = 1 << 5,
    MISSING_DISTANCE = 1 << 6,
};

/* Reads the small text file <root>/<formatted path> into `buf` with the
 * trailing newline and spaces removed. Returns 0, or -1 if the file is
 * missing, unreadable, empty of bytes, or does not fit. */
__attribute__((format(printf, 4, 5))) static int read_text(const char *root, char *buf, size_t size,
                                                           const char *fmt, ...)
{
    char path[4096];
    size_t used = 0;
    va_list ap;
    int n, fd;

    n = snprintf(path, sizeof(path), "%s/", root);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -1;
    va_start(ap, fmt);
    n = vsnprintf(path + n, sizeof(path) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n + strlen(root) + 1 >= sizeof(path))
        return -1;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    for (;;) {
        ssize_t r = read(fd, buf + used, size - used);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        used += (size_t)r;
        if (used == size) {
            /* No room left for the terminator: too long to be ours. */
            close(fd);
            return -1;
        }
    }
    close(fd);
    while (used > 0 && (buf[used - 1] == '\n' || buf[used - 1] == ' '))
        used--;
    buf[used] = '\0';
    return 0;
}

/* Parses a decimal integer at *p (optionally negative), advancing *p.
 * Returns false if there is none or it is out of int range. */
static bool parse_int_at(const char **p, long lo, long hi, long *out)
{
    char *end;
    long v;

    if (!((**p >= '0' && **p <= '9') || (**p == '-' && (*p)[1] >= '0' && (*p)[1] <= '9')))
        return false;
    errno = 0;
    v = strtol(*p, &end, 10);
    if (errno != 0 || v < lo || v > hi)
        return false;
    *p = end;
    *out = v;
    return true;
}

/* Parses a whole file's content as one integer. */
static bool parse_int(const char *s, long lo, long hi, long *out)
{
    return parse_int_at(&s, lo, hi, out) && *s == '\0';
}

/* Calls `range(ctx, lo, hi)` for each element of a kernel CPU list such as
 * "0-3,8,10-11" (an empty list is valid). Returns 0, -EINVAL when the text
 * is malformed, or the first non-zero value `range` returned. */
static int cpulist_foreach(const char *s, int (*range)(void *ctx, int lo, int hi), void *ctx)
{
    if (*s == '\0')
        return 0;
    for (;;) {
        long lo, hi;
        int rc;

        if (!parse_int_at(&s, 0, SYSFS_MAX_CPU_ID, &lo))
            return MOIRAI_EINVAL;
        hi = lo;
        if (*s == '-') {
            s++;
            if (!parse_int_at(&s, lo, SYSFS_MAX_CPU_ID, &hi))
                return MOIRAI_EINVAL;
        }
        rc = range(ctx, (int)lo, (int)hi);
        if (rc != 0)
            return rc;
        if (*s == '\0')
            return 0;
        if (*s != ',')
            return MOIRAI_EINVAL;
        s++;
    }
}

/* A growable array of CPU numbers. */
typedef struct cpu_vec {
    int *v;
    int n;
    int cap;
} cpu_vec_t;

static int cpu_vec_add_range(void *ctx, int lo, int hi)
{
    cpu_vec_t *vec = ctx;

    for (long c = lo; c <= hi; c++) {
        if (vec->n == SYSFS_MAX_CPUS)
            return MOIRAI_EINVAL;
        if (vec->n == vec->cap) {
            int cap = vec->cap ? vec->cap * 2 : 64;
            int *v = moirai_realloc(vec->v, (size_t)cap * sizeof(*v));

            if (v == NULL)
                return MOIRAI_ENOMEM;
            vec->v = v;
            vec->cap = cap;
        }
        vec->v[vec->n++] = (int)c;
    }
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;

    return (x > y) - (x < y);
}

/* Sorts and removes duplicates, so the list is strictly increasing. */
static void cpu_vec_normalise(cpu_vec_t *vec)
{
    int w = 0;

    qsort(vec->v, (size_t)vec->n, sizeof(int), cmp_int);
    for (int r = 0; r < vec->n; r++) {
        if (w == 0 || vec->v[w - 1] != vec->v[r])
            vec->v[w++] = vec->v[r];
    }
    vec->n = w;
}

/* The index of `cpu` in the sorted `cpus`, or the insertion point when it
 * is absent (the first index whose CPU is greater). */
static int lower_bound(const int *cpus, int n, int cpu)
{
    int lo = 0, hi = n;

    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;

        if (cpus[mid] < cpu)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Finds the smallest CPU of a list: a cache is identified by the lowest
 * CPU sharing it, which every CPU sharing it reports identically. */
static int min_cpu_range(void *ctx, int lo, int hi)
{
    int *min = ctx;

    (void)hi;
    if (*min < 0 || lo < *min)
        *min = lo;
    return 0;
}

/* What one CPU's cache directory says. Keys are -1 when absent. */
typedef struct cache_info {
    int64_t l2_key;
    int64_t llc_key;
    int llc_level;
    int l1d_line;
} cache_info_t;

static void read_caches(const char *root, int cpu, cache_info_t *ci)
{
    char buf[SYSFS_FILE_MAX];

    ci->l2_key = -1;
    ci->llc_key = -1;
    ci->llc_level = 0;
    ci->l1d_line = -1;
    for (int k = 0; k < SYSFS_MAX_CACHES; k++) {
        long level, line;
        bool data, instruction;
        int min = -1;

        if (read_text(root, buf, sizeof(buf), "devices/system/cpu/cpu%d/cache/index%d/level", cpu,
                      k) != 0)
            break;
        if (!parse_int(buf, 1, 16, &level))
            continue;
        if (read_text(root, buf, sizeof(buf), "devices/system/cpu/cpu%d/cache/index%d/type", cpu,
                      k) != 0)
            continue;
        data = strcmp(buf, "Data") == 0;
        instruction = strcmp(buf, "Instruction") == 0;
        if (instruction)
            continue;
        if (level == 1) {
            if (data && ci->l1d_line < 0 &&
                read_text(root, buf, sizeof(buf),
                          "devices/system/cpu/cpu%d/cache/index%d/coherency_line_size", cpu,
                          k) == 0 &&
                parse_int(buf, 16, 4096, &line) && (line & (line - 1)) == 0)
                ci->l1d_line = (int)line;
            continue;
        }
        if (read_text(root, buf, sizeof(buf),
                      "devices/system/cpu/cpu%d/cache/index%d/shared_cpu_list", cpu, k) != 0 ||
            cpulist_foreach(buf, min_cpu_range, &min) != 0 || min < 0)
            continue;
        /* The key carries the level so that an L2 and an L3 that happen
         * to start at the same CPU stay distinct. */
        if (level == 2)
            ci->l2_key = ((int64_t)level << 32) | min;
        if (level > ci->llc_level) {
            ci->llc_level = (int)level;
            ci->llc_key = ((int64_t)level << 32) | min;
        }
    }
}

/* Assigns the node at position `pos` (in the sorted node-directory list)
 * to every CPU of the topology within one range of a node's cpulist. */
typedef struct node_assign {
    const int *cpus;
    int n;
    int64_t *node_pos; /* per CPU, -1 while unassigned */
    int pos;
} node_assign_t;

static int node_assign_range(void *ctx, int lo, int hi)
{
    node_assign_t *na = ctx;

    for (int i = lower_bound(na->cpus, na->n, lo); i < na->n && na->cpus[i] <= hi; i++) {
        /* A CPU on two nodes is a corrupt tree. */
        if (na->node_pos[i] >= 0 && na->node_pos[i] != na->pos)
            return MOIRAI_EINVAL;
        na->node_pos[i] = na->pos;
    }
    return 0;
}

/* Lists the node directories (nodeM) under <root>/devices/system/node in
 * increasing M. Returns 0 with *count == 0 when there are none, or
 * -ENOMEM. */
static int list_nodes(const char *root, int **ids_out, int *count)
{
    char path[4096];
    cpu_vec_t ids = {0};
    struct dirent *de;
    DIR *dir;
    int rc = 0;

    *ids_out = NULL;
    *count = 0;
    if (snprintf(path, sizeof(path), "%s/devices/system/node", root) >= (int)sizeof(path))
        return 0;
    dir = opendir(path);
    if (dir == NULL)
        return 0;
    while ((de = readdir(dir)) != NULL) {
        const char *p = de->d_name + 4;
        long id;

        if (strncmp(de->d_name, "node", 4) != 0 || *p == '-' ||
            !parse_int(p, 0, SYSFS_MAX_NODES - 1, &id))
            continue;
        if (ids.n == SYSFS_MAX_NODES)
            break;
        rc = cpu_vec_add_range(&ids, (int)id, (int)id);
        if (rc != 0)
            break;
    }
    closedir(dir);
    if (rc != 0) {
        moirai_free(ids.v);
        return rc;
    }
    cpu_vec_normalise(&ids);
    *ids_out = ids.v;
    *count = ids.n;
    return 0;
}

/* Reads node `node_id`'s distance row, which must have exactly `count`
 * entries, each a plausible SLIT value. */
static bool read_distance_row(const char *root, int node_id, int *row, int count)
{
    char buf[SYSFS_FILE_MAX];
    const char *p = buf;

    if (read_text(root, buf, sizeof(buf), "devices/system/node/node%d/distance", node_id) != 0)
        return false;
    for (int i = 0; i < count; i++) {
        long d;

        while (*p == ' ')
            p++;
        if (!parse_int_at(&p, 1, 255, &d))
            return false;
        row[i] = (int)d;
    }
    while (*p == ' ')
        p++;
    return *p == '\0';
}

/* Appends ", <part>" (or "<part>" first) to the warning text. */
static void append_part(char *msg, size_t size, const char *part)
{
    size_t len = strlen(msg);

    if (len < size)
        snprintf(msg + len, size - len, "%s%s", len ? ", " : "", part);
}

static void log_missing(const char *root, unsigned missing, int cpu_core, int cpu_package,
                        int cpu_cache)
{
    char msg[512] = "";
    char part[96];

    if (missing & MISSING_ONLINE)
        append_part(msg, sizeof(msg), "devices/system/cpu/online");
    if (missing & MISSING_CORE) {
        snprintf(part, sizeof(part), "cpu%d/topology/core_id", cpu_core);
        append_part(msg, sizeof(msg), part);
    }
    if (missing & MISSING_PACKAGE) {
        snprintf(part, sizeof(part), "cpu%d/topology/physical_package_id", cpu_package);
        append_part(msg, sizeof(msg), part);
    }
    if (missing & MISSING_CACHE) {
        snprintf(part, sizeof(part), "cpu%d/cache (L2/last-level shared_cpu_list)", cpu_cache);
        append_part(msg, sizeof(msg), part);
    }
    if (missing & MISSING_LINE)
        append_part(msg, sizeof(msg), "L1d coherency_line_size");
    if (missing & MISSING_NODE)
        append_part(msg, sizeof(msg), "devices/system/node (cpulist)");
    if (missing & MISSING_DISTANCE)
        append_part(msg, sizeof(msg), "devices/system/node (distance)");
    MOIRAI_LOG(MOIRAI_LOG_WARN, "topology: %s lacks %s; using flat values for those parts", root,
               msg);
}

int moirai__topology_read_sysfs(const char *root, moirai__topology_t **out)
{
    char buf[SYSFS_FILE_MAX];
    cpu_vec_t online = {0};
    int64_t *keys = NULL, *core_key, *pkg_key, *l2_key, *l3_key, *node_key;
    int *dense = NULL, *node_ids = NULL, *row = NULL, *dense_to_pos = NULL;
    int node_dirs = 0, n, node_count = 1, line_size = MOIRAI_CACHE_LINE;
    int cpu_core = -1, cpu_package = -1, cpu_cache = -1;
    unsigned missing = 0;
    moirai__topology_t *t = NULL;
    int rc;

    if (root == NULL)
        root = "/sys";

    /* The online CPUs. Without the list, assume CPUs 0..n-1 with n taken
     * from the C library, which is what sysconf() users see anyway. */
    if (read_text(root, buf, sizeof(buf), "devices/system/cpu/online") == 0) {
        rc = cpulist_foreach(buf, cpu_vec_add_range, &online);
        if (rc == MOIRAI_ENOMEM)
            goto out;
        if (rc != 0)
            online.n = 0;
    }
    if (online.n == 0) {
        long nproc = sysconf(_SC_NPROCESSORS_ONLN);

        missing |= MISSING_ONLINE;
        if (nproc < 1)
            nproc = 1;
        if (nproc > SYSFS_MAX_CPUS)
            nproc = SYSFS_MAX_CPUS;
        rc = cpu_vec_add_range(&online, 0, (int)nproc - 1);
        if (rc != 0)
            goto out;
    }
    cpu_vec_normalise(&online);
    n = online.n;

    /* Kernel-level keys per field, five blocks of n: core, package, l2,
     * l3, node. They are renumbered densely into `dense` at the end. */
    keys = moirai_malloc((size_t)n * 5 * sizeof(*keys));
    dense = moirai_malloc((size_t)n * 5 * sizeof(*dense));
    if (keys == NULL || dense == NULL) {
        rc = MOIRAI_ENOMEM;
        goto out;
    }
    core_key = keys;
    pkg_key = keys + n;
    l2_key = keys + 2 * (size_t)n;
    l3_key = keys + 3 * (size_t)n;
    node_key = keys + 4 * (size_t)n;

    for (int i = 0; i < n; i++) {
        int cpu = online.v[i];
        long core = 0, pkg = 0;
        cache_info_t ci;

        if (read_text(root, buf, sizeof(buf),
                      "devices/system/cpu/cpu%d/topology/physical_package_id", cpu) != 0 ||
            !parse_int(buf, -1, INT32_MAX, &pkg)) {
            if (!(missing & MISSING_PACKAGE))
                cpu_package = cpu;
            missing |= MISSING_PACKAGE;
        }
        if (read_text(root, buf, sizeof(buf), "devices/system/cpu/cpu%d/topology/core_id", cpu) !=
                0 ||
            !parse_int(buf, -1, INT32_MAX, &core)) {
            if (!(missing & MISSING_CORE))
                cpu_core = cpu;
            missing |= MISSING_CORE;
        }
        /* core_id is unique only within a package. */
        pkg_key[i] = pkg;
        core_key[i] = ((int64_t)pkg << 32) | (uint32_t)core;

        read_caches(root, cpu, &ci);
        if (ci.l2_key < 0 || ci.llc_key < 0) {
            if (!(missing & MISSING_CACHE))
                cpu_cache = cpu;
            missing |= MISSING_CACHE;
        }
        l2_key[i] = ci.l2_key;
        l3_key[i] = ci.llc_key;
        if (i == 0) {
            if (ci.l1d_line > 0)
                line_size = ci.l1d_line;
            else
                missing |= MISSING_LINE;
        }
        node_key[i] = -1;
    }

    /* Flat fallbacks, field by field: one core and one cache group per
     * CPU, one package. */
    for (int i = 0; i < n; i++) {
        if (missing & (MISSING_CORE | MISSING_PACKAGE))
            core_key[i] = i;
        if (missing & MISSING_PACKAGE)
            pkg_key[i] = 0;
        if (missing & MISSING_CACHE) {
            l2_key[i] = i;
            l3_key[i] = i;
        }
    }

    /* Nodes: each CPU gets the position of its node directory. */
    rc = list_nodes(root, &node_ids, &node_dirs);
    if (rc != 0)
        goto out;
    if (node_dirs == 0)
        missing |= MISSING_NODE;
    for (int k = 0; k < node_dirs && !(missing & MISSING_NODE); k++) {
        node_assign_t na = {.cpus = online.v, .n = n, .node_pos = node_key, .pos = k};

        if (read_text(root, buf, sizeof(buf), "devices/system/node/node%d/cpulist", node_ids[k]) !=
                0 ||
            cpulist_foreach(buf, node_assign_range, &na) != 0)
            missing |= MISSING_NODE;
    }
    for (int i = 0; i < n && !(missing & MISSING_NODE); i++) {
        if (node_key[i] < 0)
            missing |= MISSING_NODE;
    }
    if (missing & MISSING_NODE) {
        for (int i = 0; i < n; i++)
            node_key[i] = 0;
    }

    for (int f = 0; f < 5; f++) {
        int distinct = moirai__topology_renumber(keys + (size_t)f * n, n, dense + (size_t)f * n);

        if (distinct < 0) {
            rc = distinct;
            goto out;
        }
        if (f == 4)
            node_count = distinct;
    }

    t = moirai__topology_alloc(n, node_count, !(missing & MISSING_NODE));
    if (t == NULL) {
        rc = MOIRAI_ENOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        t->cpus[i] = (moirai_cpu_info_t){
            .cpu = online.v[i],
            .core = dense[i],
            .package = dense[n + i],
            .l2_group = dense[2 * n + i],
            .l3_group = dense[3 * n + i],
            .node = dense[4 * n + i],
        };
        if (dense[3 * n + i] + 1 > t->l3_count)
            t->l3_count = dense[3 * n + i] + 1;
    }
    t->cache_line_size = line_size;

    /* Distances: row d of our table is the kernel row of the node that
     * became dense node d, permuted the same way. */
    if (t->distance != NULL) {
        row = moirai_malloc((size_t)node_dirs * sizeof(*row));
        dense_to_pos = moirai_malloc((size_t)node_count * sizeof(*dense_to_pos));
        if (row == NULL || dense_to_pos == NULL) {
            rc = MOIRAI_ENOMEM;
            goto out;
        }
        for (int i = 0; i < n; i++)
            dense_to_pos[t->cpus[i].node] = (int)node_key[i];
        for (int d = 0; d < node_count && !(missing & MISSING_DISTANCE); d++) {
            if (!read_distance_row(root, node_ids[dense_to_pos[d]], row, node_dirs)) {
                missing |= MISSING_DISTANCE;
                break;
            }
            for (int e = 0; e < node_count; e++)
                t->distance[d * node_count + e] = row[dense_to_pos[e]];
        }
        if (missing & MISSING_DISTANCE)
            t->distance = NULL;
    }

    t->source = missing ? MOIRAI_TOPOLOGY_FALLBACK : MOIRAI_TOPOLOGY_SYSFS;
    if (missing)
        log_missing(root, missing, cpu_core, cpu_package, cpu_cache);
    rc = 0;

out:
    moirai_free(online.v);
    moirai_free(keys);
    moirai_free(dense);
    moirai_free(node_ids);
    moirai_free(row);
    moirai_free(dense_to_pos);
    if (rc != 0) {
        moirai_free(t);
        t = NULL;
    }
    *out = t;
    return rc;
}
