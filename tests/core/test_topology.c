/* CPU topology: detection, sysfs parsing on fake trees, fallback,
 * injection, current CPU, and behaviour under allocation failure. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <moirai/core/error.h>
#include <moirai/core/log.h>
#include <moirai/core/topology.h>

#include "fake_sysfs.h"
#include "oom.h"

/* ---- helpers ---- */

#define SNAP_CPUS  64
#define SNAP_NODES 8

/* Everything a caller can observe about the current topology. */
typedef struct snapshot {
    int cpu_count, node_count, l3_count, line;
    moirai_topology_source_t source;
    moirai_cpu_info_t cpus[SNAP_CPUS];
    int distance[SNAP_NODES][SNAP_NODES];
} snapshot_t;

static void take_snapshot(snapshot_t *s)
{
    memset(s, 0, sizeof(*s));
    s->cpu_count = moirai_topology_cpu_count();
    s->node_count = moirai_topology_node_count();
    s->l3_count = moirai_topology_l3_count();
    s->line = moirai_topology_cache_line_size();
    s->source = moirai_topology_source();
    for (int i = 0; i < s->cpu_count && i < SNAP_CPUS; i++)
        cr_assert_eq(moirai_topology_cpu_at(i, &s->cpus[i]), 0);
    for (int a = 0; a < s->node_count && a < SNAP_NODES; a++)
        for (int b = 0; b < s->node_count && b < SNAP_NODES; b++)
            s->distance[a][b] = moirai_topology_node_distance(a, b);
}

static void assert_unchanged(const snapshot_t *before)
{
    snapshot_t now;

    take_snapshot(&now);
    cr_assert_eq(memcmp(&now, before, sizeof(now)), 0, "the topology changed");
}

/* Checks that the values of one field, read in CPU order, are dense
 * indices numbered in order of first appearance, and returns how many
 * there are. */
static int check_dense(const int *v, int n, const char *field)
{
    int next = 0;

    for (int i = 0; i < n; i++) {
        cr_assert_geq(v[i], 0, "%s of index %d is negative", field, i);
        cr_assert_leq(v[i], next, "%s of index %d skips an index", field, i);
        if (v[i] == next)
            next++;
    }
    return next;
}

/* Invariants every topology satisfies, whatever its source. */
static void check_consistent(void)
{
    int n = moirai_topology_cpu_count();
    int nodes = moirai_topology_node_count();
    int line = moirai_topology_cache_line_size();
    int *field[5];
    moirai_cpu_info_t c, f;

    cr_assert_geq(n, 1);
    cr_assert_geq(nodes, 1);
    cr_assert_geq(moirai_topology_l3_count(), 1);
    cr_assert(line >= 16 && (line & (line - 1)) == 0, "cache line %d", line);
    for (int k = 0; k < 5; k++) {
        field[k] = calloc((size_t)n, sizeof(int));
        cr_assert_not_null(field[k]);
    }
    for (int i = 0; i < n; i++) {
        cr_assert_eq(moirai_topology_cpu_at(i, &c), 0);
        if (i > 0) {
            moirai_cpu_info_t prev;

            cr_assert_eq(moirai_topology_cpu_at(i - 1, &prev), 0);
            cr_assert_gt(c.cpu, prev.cpu, "CPUs not in increasing order");
        }
        cr_assert_geq(c.cpu, 0);
        cr_assert_eq(moirai_topology_cpu_find(c.cpu, &f), 0);
        cr_assert_eq(memcmp(&c, &f, sizeof(c)), 0, "cpu_find(%d) differs from cpu_at(%d)", c.cpu,
                     i);
        field[0][i] = c.core;
        field[1][i] = c.package;
        field[2][i] = c.l2_group;
        field[3][i] = c.l3_group;
        field[4][i] = c.node;
    }
    check_dense(field[0], n, "core");
    check_dense(field[1], n, "package");
    check_dense(field[2], n, "l2_group");
    cr_assert_eq(check_dense(field[3], n, "l3_group"), moirai_topology_l3_count());
    cr_assert_eq(check_dense(field[4], n, "node"), nodes);
    for (int k = 0; k < 5; k++)
        free(field[k]);

    for (int a = 0; a < nodes; a++) {
        cr_assert_eq(moirai_topology_node_distance(a, a), 10);
        for (int b = 0; b < nodes; b++) {
            cr_assert_eq(moirai_topology_node_distance(a, b), moirai_topology_node_distance(b, a));
            if (a != b)
                cr_assert_gt(moirai_topology_node_distance(a, b), 10);
        }
    }
    cr_assert_eq(moirai_topology_node_distance(-1, 0), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_node_distance(0, nodes), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_node_distance(nodes, 0), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_cpu_at(-1, &c), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_cpu_at(n, &c), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_cpu_at(0, NULL), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_cpu_find(0, NULL), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_cpu_find(-1, &c), MOIRAI_ENOENT);
    cr_assert_eq(moirai_topology_cpu_find(INT_MAX, &c), MOIRAI_ENOENT);

    /* current_cpu names a CPU the topology knows. */
    for (int i = 0; i < 100; i++) {
        int cpu = moirai_topology_current_cpu();

        cr_assert_geq(cpu, 0);
        cr_assert_eq(moirai_topology_cpu_find(cpu, &c), 0, "current_cpu %d not in topology", cpu);
    }
}

static void assert_cpu(int index, int cpu, int core, int package, int l2, int l3, int node)
{
    moirai_cpu_info_t c;

    cr_assert_eq(moirai_topology_cpu_at(index, &c), 0);
    cr_assert(c.cpu == cpu && c.core == core && c.package == package && c.l2_group == l2 &&
                  c.l3_group == l3 && c.node == node,
              "index %d: got cpu %d core %d package %d l2 %d l3 %d node %d, expected "
              "%d %d %d %d %d %d",
              index, c.cpu, c.core, c.package, c.l2_group, c.l3_group, c.node, cpu, core, package,
              l2, l3, node);
}

static char *make_root(void)
{
    static char tmpl[64];

    strcpy(tmpl, "/tmp/moirai-sysfs-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpl));
    return tmpl;
}

/* One cache index directory. */
static void put_cache(const char *root, int cpu, int index, int level, const char *type,
                      const char *shared, int line)
{
    char num[16];

    snprintf(num, sizeof(num), "%d\n", level);
    fake_sysfs_put(root, num, "devices/system/cpu/cpu%d/cache/index%d/level", cpu, index);
    fake_sysfs_put(root, type, "devices/system/cpu/cpu%d/cache/index%d/type", cpu, index);
    fake_sysfs_put(root, shared, "devices/system/cpu/cpu%d/cache/index%d/shared_cpu_list", cpu,
                   index);
    snprintf(num, sizeof(num), "%d\n", line);
    fake_sysfs_put(root, num, "devices/system/cpu/cpu%d/cache/index%d/coherency_line_size", cpu,
                   index);
}

/* Two packages / nodes, each with two cores of two SMT threads, an L2 per
 * core and an L3 per node:
 *
 *   node0 (kernel node 2): cpus 0-3, package id 0, cores (0,2) id 0, (1,3) id 4
 *   node1 (kernel node 0): cpus 4-7, package id 1, cores (4,6) id 0, (5,7) id 4
 *
 * Kernel ids are sparse (core 4, node 2), core ids repeat across packages,
 * and the kernel's node order is the reverse of first appearance, so dense
 * renumbering and the permutation of the distance table are exercised.
 * cpu8 exists but is offline.
 * `with_cache` and `with_node` leave out whole parts. */
static void build_tree(const char *root, int with_cache, int with_node, int with_distance)
{
    static const char *const l2[] = {"0,2\n", "1,3\n", "0,2\n", "1,3\n",
                                     "4,6\n", "5,7\n", "4,6\n", "5,7\n"};

    fake_sysfs_put(root, "0-7\n", "devices/system/cpu/online");
    fake_sysfs_put(root, "0-8\n", "devices/system/cpu/possible");
    for (int cpu = 0; cpu <= 8; cpu++) {
        char num[16];

        snprintf(num, sizeof(num), "%d\n", cpu < 4 ? 0 : 1);
        fake_sysfs_put(root, num, "devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
        snprintf(num, sizeof(num), "%d\n", cpu % 2 == 0 ? 0 : 4);
        fake_sysfs_put(root, num, "devices/system/cpu/cpu%d/topology/core_id", cpu);
        if (with_cache && cpu < 8) {
            char self[16];

            snprintf(self, sizeof(self), "%d\n", cpu);
            put_cache(root, cpu, 0, 1, "Data\n", self, 128);
            put_cache(root, cpu, 1, 1, "Instruction\n", self, 32);
            put_cache(root, cpu, 2, 2, "Unified\n", l2[cpu], 128);
            put_cache(root, cpu, 3, 3, "Unified\n", cpu < 4 ? "0-3\n" : "4-7\n", 128);
        }
    }
    if (with_node) {
        fake_sysfs_put(root, "0,2\n", "devices/system/node/online");
        fake_sysfs_put(root, "", "devices/system/node/power/uevent");
        fake_sysfs_put(root, "4-7\n", "devices/system/node/node0/cpulist");
        fake_sysfs_put(root, "0-3\n", "devices/system/node/node2/cpulist");
        if (with_distance) {
            fake_sysfs_put(root, "10 21\n", "devices/system/node/node0/distance");
            fake_sysfs_put(root, "21 10\n", "devices/system/node/node2/distance");
        }
    }
}

/* Records warnings for the fallback tests. */
typedef struct warnings {
    int count;
    char text[4][1100];
} warnings_t;

static void warning_sink(void *ctx, moirai_log_level_t level, const char *message)
{
    warnings_t *w = ctx;

    if (level == MOIRAI_LOG_WARN && w->count < 4)
        snprintf(w->text[w->count], sizeof(w->text[0]), "%s", message);
    w->count++;
}

/* ---- the detected topology ---- */

Test(topology, detected_is_consistent, .timeout = 30)
{
    moirai_topology_source_t src = moirai_topology_source();

    cr_assert(src == MOIRAI_TOPOLOGY_SYSFS || src == MOIRAI_TOPOLOGY_FALLBACK);
    cr_assert_eq(moirai_topology_cpu_count(), (int)sysconf(_SC_NPROCESSORS_ONLN));
    check_consistent();
}

Test(topology, detected_contains_every_cpu_we_may_run_on, .timeout = 30)
{
    moirai_cpu_info_t c;
    cpu_set_t set;

    CPU_ZERO(&set);
    cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &set))
            cr_assert_eq(moirai_topology_cpu_find(cpu, &c), 0, "cpu %d missing", cpu);
    }
}

/* ---- reading fake sysfs trees ---- */

/* Each test loads a topology from a tree of its own, which becomes the
 * process's detected one: its blocks are rightly still live at the end. */
TestSuite(topology_sysfs, .init = moirai_test_live_unchecked);

Test(topology_sysfs, full_tree_is_parsed_exactly, .timeout = 30)
{
    char *root = make_root();
    moirai_cpu_info_t c;

    build_tree(root, 1, 1, 1);
    cr_assert_eq(moirai_topology_reload(root), 0);
    cr_assert_eq(moirai_topology_source(), MOIRAI_TOPOLOGY_SYSFS);
    cr_assert_eq(moirai_topology_cpu_count(), 8);
    cr_assert_eq(moirai_topology_node_count(), 2);
    cr_assert_eq(moirai_topology_l3_count(), 2);
    cr_assert_eq(moirai_topology_cache_line_size(), 128);
    /*          index cpu core pkg l2 l3 node */
    assert_cpu(0, 0, 0, 0, 0, 0, 0);
    assert_cpu(1, 1, 1, 0, 1, 0, 0);
    assert_cpu(2, 2, 0, 0, 0, 0, 0);
    assert_cpu(3, 3, 1, 0, 1, 0, 0);
    assert_cpu(4, 4, 2, 1, 2, 1, 1);
    assert_cpu(5, 5, 3, 1, 3, 1, 1);
    assert_cpu(6, 6, 2, 1, 2, 1, 1);
    assert_cpu(7, 7, 3, 1, 3, 1, 1);
    cr_assert_eq(moirai_topology_cpu_find(8, &c), MOIRAI_ENOENT, "offline cpu8 included");
    cr_assert_eq(moirai_topology_node_distance(0, 0), 10);
    cr_assert_eq(moirai_topology_node_distance(0, 1), 21);
    cr_assert_eq(moirai_topology_node_distance(1, 0), 21);
    cr_assert_eq(moirai_topology_node_distance(1, 1), 10);
    check_consistent();

    /* The re-read tree is now the restore target. */
    cr_assert_eq(moirai_topology_inject_uniform(1, 1), 0);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
    cr_assert_eq(moirai_topology_cpu_count(), 8);
    cr_assert_eq(moirai_topology_node_distance(0, 1), 21);

    cr_assert_eq(moirai_topology_reload(NULL), 0);
    cr_assert_eq(moirai_topology_cpu_count(), (int)sysconf(_SC_NPROCESSORS_ONLN));
    fake_sysfs_remove(root);
}

Test(topology_sysfs, missing_cache_and_node_fall_back, .timeout = 30)
{
    static warnings_t w;
    char *root = make_root();

    build_tree(root, 0, 0, 0);
    cr_assert_eq(moirai_log_level_set(MOIRAI_LOG_WARN), 0);
    moirai_log_sink_set(warning_sink, &w);
    cr_assert_eq(moirai_topology_reload(root), 0);
    moirai_log_sink_set(NULL, NULL);

    cr_assert_eq(moirai_topology_source(), MOIRAI_TOPOLOGY_FALLBACK);
    cr_assert_eq(moirai_topology_cpu_count(), 8);
    cr_assert_eq(moirai_topology_node_count(), 1);
    cr_assert_eq(moirai_topology_l3_count(), 8, "no shared cache: one group per CPU");
    cr_assert_eq(moirai_topology_cache_line_size(), 64);
    /* Cores and packages were present and are still read. */
    /*          index cpu core pkg l2 l3 node */
    assert_cpu(0, 0, 0, 0, 0, 0, 0);
    assert_cpu(1, 1, 1, 0, 1, 1, 0);
    assert_cpu(2, 2, 0, 0, 2, 2, 0);
    assert_cpu(5, 5, 3, 1, 5, 5, 0);
    check_consistent();

    cr_assert_eq(w.count, 1, "expected one warning, got %d", w.count);
    cr_assert_not_null(strstr(w.text[0], root), "warning does not name the tree: %s", w.text[0]);
    cr_assert_not_null(strstr(w.text[0], "cache"), "warning does not name the cache: %s",
                       w.text[0]);
    cr_assert_not_null(strstr(w.text[0], "node"), "warning does not name the node: %s", w.text[0]);
    cr_assert_null(strstr(w.text[0], "core_id"), "core_id was present: %s", w.text[0]);
    fake_sysfs_remove(root);
}

Test(topology_sysfs, missing_distance_falls_back_to_10_20, .timeout = 30)
{
    static warnings_t w;
    char *root = make_root();

    build_tree(root, 1, 1, 0);
    moirai_log_sink_set(warning_sink, &w);
    cr_assert_eq(moirai_topology_reload(root), 0);
    moirai_log_sink_set(NULL, NULL);
    cr_assert_eq(moirai_topology_source(), MOIRAI_TOPOLOGY_FALLBACK);
    cr_assert_eq(moirai_topology_node_count(), 2, "node membership was present");
    cr_assert_eq(moirai_topology_node_distance(0, 1), 20);
    cr_assert_eq(moirai_topology_node_distance(1, 1), 10);
    cr_assert_eq(w.count, 1);
    cr_assert_not_null(strstr(w.text[0], "distance"), "%s", w.text[0]);
    check_consistent();
    fake_sysfs_remove(root);
}

Test(topology_sysfs, malformed_entries_fall_back, .timeout = 30)
{
    static warnings_t w;
    char *root = make_root();

    build_tree(root, 1, 1, 1);
    fake_sysfs_put(root, "0-x\n", "devices/system/node/node2/cpulist");
    fake_sysfs_put(root, "zero\n", "devices/system/cpu/cpu3/topology/core_id");
    fake_sysfs_put(root, "10 21 30\n", "devices/system/node/node0/distance");
    moirai_log_sink_set(warning_sink, &w);
    cr_assert_eq(moirai_topology_reload(root), 0);
    moirai_log_sink_set(NULL, NULL);
    cr_assert_eq(moirai_topology_source(), MOIRAI_TOPOLOGY_FALLBACK);
    cr_assert_eq(moirai_topology_node_count(), 1);
    cr_assert_eq(moirai_topology_l3_count(), 2, "caches were fine");
    /*          index cpu core pkg l2 l3 node */
    assert_cpu(2, 2, 2, 0, 0, 0, 0);
    assert_cpu(6, 6, 6, 1, 2, 1, 0);
    cr_assert_eq(w.count, 1);
    cr_assert_not_null(strstr(w.text[0], "cpu3/topology/core_id"), "%s", w.text[0]);
    check_consistent();
    fake_sysfs_remove(root);
}

Test(topology_sysfs, empty_tree_falls_back_entirely, .timeout = 30)
{
    static warnings_t w;
    char *root = make_root();

    moirai_log_sink_set(warning_sink, &w);
    cr_assert_eq(moirai_topology_reload(root), 0);
    moirai_log_sink_set(NULL, NULL);
    cr_assert_eq(moirai_topology_source(), MOIRAI_TOPOLOGY_FALLBACK);
    cr_assert_eq(moirai_topology_cpu_count(), (int)sysconf(_SC_NPROCESSORS_ONLN));
    cr_assert_eq(moirai_topology_node_count(), 1);
    for (int i = 0; i < moirai_topology_cpu_count(); i++)
        assert_cpu(i, i, i, 0, i, i, 0);
    cr_assert_eq(w.count, 1);
    cr_assert_not_null(strstr(w.text[0], "online"), "%s", w.text[0]);
    check_consistent();
    fake_sysfs_remove(root);
}

/* ---- injection ---- */

/* An injected topology stays the current one until replaced: put the
 * detected one back, so that the live-allocation check (the injected one
 * was made by the test) holds. */
static void restore_detected(void)
{
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

TestSuite(topology_inject, .fini = restore_detected);

Test(topology_inject, invalid_input_leaves_topology_unchanged, .timeout = 30)
{
    static snapshot_t before;
    moirai_cpu_info_t good[3] = {
        {0, 0, 0, 0, 0, 0},
        {1, 1, 0, 1, 0, 0},
        {2, 2, 0, 2, 0, 1},
    };
    moirai_cpu_info_t bad[3];

    take_snapshot(&before);
    cr_assert_eq(moirai_topology_inject(NULL, 3), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_inject(good, 0), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_inject(good, -1), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_inject(NULL, -1), MOIRAI_EINVAL);
    assert_unchanged(&before);

    for (int field = 0; field < 6; field++) {
        memcpy(bad, good, sizeof(bad));
        int *f = &bad[1].cpu + field;
        *f = -1;
        cr_assert_eq(moirai_topology_inject(bad, 3), MOIRAI_EINVAL, "negative field %d", field);
        assert_unchanged(&before);
    }
    memcpy(bad, good, sizeof(bad));
    bad[2].cpu = 0;
    cr_assert_eq(moirai_topology_inject(bad, 3), MOIRAI_EINVAL, "duplicate cpu accepted");
    assert_unchanged(&before);

    /* Also unchanged when the current topology is a synthetic one. */
    cr_assert_eq(moirai_topology_inject(good, 3), 0);
    take_snapshot(&before);
    cr_assert_eq(moirai_topology_inject(bad, 3), MOIRAI_EINVAL);
    assert_unchanged(&before);

    cr_assert_eq(moirai_topology_inject_uniform(0, 1), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_inject_uniform(1, 0), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_inject_uniform(-2, 2), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_inject_uniform(4097, 1), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_inject_uniform(64, 65), MOIRAI_EINVAL);
    cr_assert_eq(moirai_topology_inject_uniform(INT_MAX, INT_MAX), MOIRAI_EINVAL);
    assert_unchanged(&before);
}

Test(topology_inject, entries_are_sorted_and_renumbered, .timeout = 30)
{
    int line = moirai_topology_cache_line_size();
    /* Unsorted, sparse ids; cpu 30 and 10 share core 7. */
    const moirai_cpu_info_t in[5] = {
        /* cpu core pkg l2 l3 node */
        {30, 7, 3, 40, 9, 5}, {10, 7, 3, 40, 9, 5}, {20, 2, 8, 41, 9, 5},
        {50, 9, 8, 42, 1, 0}, {40, 2, 3, 43, 1, 0},
    };

    cr_assert_eq(moirai_topology_inject(in, 5), 0);
    cr_assert_eq(moirai_topology_source(), MOIRAI_TOPOLOGY_SYNTHETIC);
    cr_assert_eq(moirai_topology_cpu_count(), 5);
    cr_assert_eq(moirai_topology_node_count(), 2);
    cr_assert_eq(moirai_topology_l3_count(), 2);
    cr_assert_eq(moirai_topology_cache_line_size(), line, "cache line must stay as detected");
    /* Sorted by cpu: 10, 20, 30, 40, 50; renumbered by first appearance
     * in that order. Equal input ids stay equal, whatever the field. */
    /*          index cpu core pkg l2 l3 node */
    assert_cpu(0, 10, 0, 0, 0, 0, 0);
    assert_cpu(1, 20, 1, 1, 1, 0, 0);
    assert_cpu(2, 30, 0, 0, 0, 0, 0);
    assert_cpu(3, 40, 1, 0, 2, 1, 1);
    assert_cpu(4, 50, 2, 1, 3, 1, 1);
    cr_assert_eq(moirai_topology_node_distance(0, 1), 20);
    cr_assert_eq(moirai_topology_node_distance(1, 1), 10);
    check_consistent();
}

Test(topology_inject, uniform_shapes_and_restore, .timeout = 30)
{
    static snapshot_t detected;

    take_snapshot(&detected);

    cr_assert_eq(moirai_topology_inject_uniform(2, 2), 0);
    cr_assert_eq(moirai_topology_source(), MOIRAI_TOPOLOGY_SYNTHETIC);
    cr_assert_eq(moirai_topology_cpu_count(), 4);
    cr_assert_eq(moirai_topology_node_count(), 2);
    cr_assert_eq(moirai_topology_l3_count(), 2);
    /*          index cpu core pkg l2 l3 node */
    assert_cpu(0, 0, 0, 0, 0, 0, 0);
    assert_cpu(1, 1, 1, 0, 1, 0, 0);
    assert_cpu(2, 2, 2, 1, 2, 1, 1);
    assert_cpu(3, 3, 3, 1, 3, 1, 1);
    cr_assert_eq(moirai_topology_node_distance(0, 1), 20);
    check_consistent();

    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    cr_assert_eq(moirai_topology_cpu_count(), 4);
    cr_assert_eq(moirai_topology_node_count(), 4);
    cr_assert_eq(moirai_topology_l3_count(), 4);
    for (int i = 0; i < 4; i++)
        assert_cpu(i, i, i, i, i, i, i);
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            cr_assert_eq(moirai_topology_node_distance(a, b), a == b ? 10 : 20);
    check_consistent();

    /* The limits are accepted. */
    cr_assert_eq(moirai_topology_inject_uniform(4096, 1), 0);
    cr_assert_eq(moirai_topology_node_count(), 4096);
    cr_assert_eq(moirai_topology_inject_uniform(1, 4096), 0);
    cr_assert_eq(moirai_topology_cpu_count(), 4096);
    cr_assert_eq(moirai_topology_node_count(), 1);

    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
    assert_unchanged(&detected);
    /* Restoring twice is harmless. */
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
    assert_unchanged(&detected);
}

Test(topology_inject, current_cpu_maps_into_synthetic_topology, .timeout = 30)
{
    const moirai_cpu_info_t sparse[2] = {{100, 0, 0, 0, 0, 0}, {200, 1, 0, 1, 0, 0}};

    cr_assert_eq(moirai_topology_inject(sparse, 2), 0);
    for (int i = 0; i < 100; i++) {
        int cpu = moirai_topology_current_cpu();

        cr_assert(cpu == 100 || cpu == 200, "current_cpu %d", cpu);
    }
    cr_assert_eq(moirai_topology_inject_uniform(1, 1), 0);
    cr_assert_eq(moirai_topology_current_cpu(), 0);
    check_consistent();
}

/* ---- allocation failure ---- */

typedef struct inject_op {
    const moirai_cpu_info_t *cpus;
    int count;
    const char *root;
    snapshot_t before;
} inject_op_t;

static int do_inject(void *ctx)
{
    inject_op_t *op = ctx;

    return moirai_topology_inject(op->cpus, op->count);
}

static int do_uniform(void *ctx)
{
    (void)ctx;
    return moirai_topology_inject_uniform(2, 3);
}

static int do_reload(void *ctx)
{
    inject_op_t *op = ctx;

    return moirai_topology_reload(op->root);
}

static void inject_unchanged(void *ctx, long n)
{
    inject_op_t *op = ctx;

    (void)n;
    assert_unchanged(&op->before);
}

Test(topology_oom, inject_under_oom_is_enomem_and_unchanged, .timeout = 60)
{
    static inject_op_t op;
    const moirai_cpu_info_t cpus[4] = {
        {3, 0, 0, 0, 0, 1}, {1, 0, 0, 0, 0, 1}, {2, 1, 0, 1, 0, 0}, {0, 1, 0, 1, 0, 0}};
    long failures;

    op.cpus = cpus;
    op.count = 4;
    take_snapshot(&op.before);
    moirai_test_oom_install();
    failures = MOIRAI_TEST_OOM_SWEEP(do_inject, inject_unchanged, &op);
    cr_assert_gt(failures, 0, "inject allocates, so some run must have failed");
    cr_assert_eq(moirai_topology_source(), MOIRAI_TOPOLOGY_SYNTHETIC);
    cr_assert_eq(moirai_topology_cpu_count(), 4);

    /* From a synthetic topology to another. */
    take_snapshot(&op.before);
    failures = MOIRAI_TEST_OOM_SWEEP(do_uniform, inject_unchanged, &op);
    cr_assert_gt(failures, 0);
    cr_assert_eq(moirai_topology_cpu_count(), 6);

    /* Restoring needs no allocation once detection has happened. */
    op.cpus = NULL;
    op.count = 0;
    failures = MOIRAI_TEST_OOM_SWEEP(do_inject, NULL, &op);
    cr_assert_eq(failures, 0);
    cr_assert_neq(moirai_topology_source(), MOIRAI_TOPOLOGY_SYNTHETIC);
    moirai_test_oom_uninstall();
}

Test(topology_oom, reload_under_oom_is_enomem_and_unchanged, .init = moirai_test_live_unchecked,
     .timeout = 60)
{
    static inject_op_t op;
    char *root = make_root();
    long failures;

    build_tree(root, 1, 1, 1);
    op.root = root;
    take_snapshot(&op.before);
    moirai_test_oom_install();
    failures = MOIRAI_TEST_OOM_SWEEP(do_reload, inject_unchanged, &op);
    cr_assert_gt(failures, 0);
    cr_assert_eq(moirai_topology_cpu_count(), 8);
    cr_assert_eq(moirai_topology_node_distance(0, 1), 21);
    moirai_test_oom_uninstall();
    fake_sysfs_remove(root);
}

Test(topology_oom, first_inject_under_oom_covers_detection, .init = moirai_test_live_unchecked,
     .timeout = 60)
{
    static inject_op_t op;
    const moirai_cpu_info_t cpus[2] = {{0, 0, 0, 0, 0, 0}, {1, 0, 0, 0, 0, 1}};
    long failures;

    /* Nothing has queried the topology yet in this process, so the first
     * runs fail inside detection. No snapshot before the sweep: taking it
     * would detect. */
    op.cpus = cpus;
    op.count = 2;
    moirai_test_oom_install();
    failures = MOIRAI_TEST_OOM_SWEEP(do_inject, NULL, &op);
    cr_assert_gt(failures, 0);
    moirai_test_oom_uninstall();
    cr_assert_eq(moirai_topology_node_count(), 2);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
    cr_assert_eq(moirai_topology_cpu_count(), (int)sysconf(_SC_NPROCESSORS_ONLN));
    check_consistent();
}

Test(topology_oom, detection_is_retried_after_oom, .init = moirai_test_live_unchecked,
     .timeout = 30)
{
    static warnings_t w;

    moirai_log_sink_set(warning_sink, &w);
    moirai_test_oom_install();
    /* Detection's first allocation fails: each query answers with the
     * one-CPU stand-in and the next query tries again. */
    moirai_test_oom_fail_at(0);
    cr_assert_eq(moirai_topology_cpu_count(), 1);
    moirai_test_oom_fail_at(0);
    cr_assert_eq(moirai_topology_source(), MOIRAI_TOPOLOGY_FALLBACK);
    moirai_test_oom_fail_at(0);
    cr_assert_eq(moirai_topology_current_cpu(), 0);
    moirai_test_oom_fail_at(0);
    cr_assert_eq(moirai_topology_node_distance(0, 0), 10);
    moirai_test_oom_uninstall();
    moirai_log_sink_set(NULL, NULL);
    cr_assert_eq(w.count, 1, "the stand-in is reported once, not per query");
    cr_assert_not_null(strstr(w.text[0], "out of memory"), "%s", w.text[0]);

    /* The next query detects for real. */
    cr_assert_eq(moirai_topology_cpu_count(), (int)sysconf(_SC_NPROCESSORS_ONLN));
    check_consistent();
}
