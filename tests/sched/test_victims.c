/* The victim order (internal), on synthetic topologies: 2 and 4 uniform
 * nodes, CPUs of two nodes interleaved by number, and nodes split into
 * several last-level cache groups (some shared by two CPUs, some by one).
 * For every worker: each other worker appears exactly once and itself
 * never; tiers never decrease along the order and each entry's tier is
 * what its CPU's L3 group and node say (0 same L3, 1 same node, 2 other
 * node); within a tier, worker indices ascend; tier_end agrees with
 * moirai__victims_tier(). Also exact expected lists for chosen workers,
 * MOIRAI_STEAL_RANDOM (all tier 2), more workers than CPUs (worker i on
 * CPU index i % n), one worker, bad arguments and allocation failure. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/core/topology.h>

#include "oom.h"
#include "victims.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void restore_topology(void)
{
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

TestSuite(victims, .fini = restore_topology);

/* The tier worker `w` should have seen from worker `self`, computed from
 * the topology directly. */
static int expected_tier(int self, int w, moirai_steal_strategy_t strategy)
{
    if (strategy == MOIRAI_STEAL_RANDOM)
        return 2;
    int n = moirai_topology_cpu_count();
    moirai_cpu_info_t a, b;
    cr_assert_eq(moirai_topology_cpu_at(self % n, &a), 0);
    cr_assert_eq(moirai_topology_cpu_at(w % n, &b), 0);
    if (a.l3_group == b.l3_group)
        return 0;
    return a.node == b.node ? 1 : 2;
}

/* Builds the victims of every worker and checks every general invariant. */
static void check_all(int workers, moirai_steal_strategy_t strategy)
{
    bool *seen = calloc((size_t)workers, sizeof(*seen));
    cr_assert_not_null(seen);
    for (int self = 0; self < workers; self++) {
        moirai__victims_t v;
        cr_assert_eq(moirai__victims_build(&v, workers, self, strategy), 0);
        cr_assert_eq(v.count, workers - 1);
        cr_assert_eq(v.tier_end[MOIRAI__TIERS - 1], v.count);
        for (int t = 1; t < MOIRAI__TIERS; t++)
            cr_assert_leq(v.tier_end[t - 1], v.tier_end[t]);
        cr_assert_geq(v.tier_end[0], 0);
        memset(seen, 0, (size_t)workers * sizeof(*seen));
        int prev_tier = 0;
        for (int i = 0; i < v.count; i++) {
            int w = v.order[i];
            cr_assert(w >= 0 && w < workers, "worker %d: entry %d is %d", self, i, w);
            cr_assert_neq(w, self, "worker %d lists itself", self);
            cr_assert(!seen[w], "worker %d lists %d twice", self, w);
            seen[w] = true;
            int t = moirai__victims_tier(&v, i);
            cr_assert_geq(t, prev_tier, "tiers must not decrease");
            cr_assert_eq(t, expected_tier(self, w, strategy), "worker %d: victim %d in tier %d",
                         self, w, t);
            /* The entry lies in tier t's range. */
            cr_assert(i < v.tier_end[t] && (t == 0 || i >= v.tier_end[t - 1]));
            if (i > 0 && t == prev_tier)
                cr_assert_lt(v.order[i - 1], w, "worker index order within a tier");
            prev_tier = t;
        }
        /* Every other worker was listed (count entries, no duplicate). */
        for (int w = 0; w < workers; w++)
            cr_assert_eq(seen[w], w != self, "worker %d: %d missing", self, w);
        moirai__victims_free(&v);
        cr_assert_null(v.order);
        cr_assert_eq(v.count, 0);
    }
    free(seen);
}

/* Asserts the victims of `self` are exactly the three given lists. */
static void expect(int workers, int self, moirai_steal_strategy_t strategy, const int *t0, int n0,
                   const int *t1, int n1, const int *t2, int n2)
{
    moirai__victims_t v;
    cr_assert_eq(moirai__victims_build(&v, workers, self, strategy), 0);
    cr_assert_eq(v.count, n0 + n1 + n2);
    cr_assert_eq(v.tier_end[0], n0, "worker %d: tier 0 size", self);
    cr_assert_eq(v.tier_end[1], n0 + n1, "worker %d: tier 1 size", self);
    cr_assert_eq(v.tier_end[2], n0 + n1 + n2);
    for (int i = 0; i < n0; i++)
        cr_assert_eq(v.order[i], t0[i], "worker %d: tier 0 entry %d", self, i);
    for (int i = 0; i < n1; i++)
        cr_assert_eq(v.order[n0 + i], t1[i], "worker %d: tier 1 entry %d", self, i);
    for (int i = 0; i < n2; i++)
        cr_assert_eq(v.order[n0 + n1 + i], t2[i], "worker %d: tier 2 entry %d", self, i);
    moirai__victims_free(&v);
}

#define EXPECT(workers, self, strategy, a, b, c)                                                   \
    expect((workers), (self), (strategy), (a), (int)ARRAY_LEN(a), (b), (int)ARRAY_LEN(b), (c),     \
           (int)ARRAY_LEN(c))

static const int NONE[1] = {-1};
#define EXPECT_NO_T1(workers, self, strategy, a, c)                                                \
    expect((workers), (self), (strategy), (a), (int)ARRAY_LEN(a), NONE, 0, (c), (int)ARRAY_LEN(c))

Test(victims, two_uniform_nodes, .timeout = 30)
{
    cr_assert_eq(moirai_topology_inject_uniform(2, 4), 0);
    cr_assert_eq(moirai_topology_node_count(), 2);
    check_all(8, MOIRAI_STEAL_LOCALITY);
    check_all(5, MOIRAI_STEAL_LOCALITY);
    check_all(8, MOIRAI_STEAL_RANDOM);
    /* One L3 group per node: no tier 1. */
    const int w0_t0[] = {1, 2, 3}, w0_t2[] = {4, 5, 6, 7};
    EXPECT_NO_T1(8, 0, MOIRAI_STEAL_LOCALITY, w0_t0, w0_t2);
    const int w6_t0[] = {4, 5, 7}, w6_t2[] = {0, 1, 2, 3};
    EXPECT_NO_T1(8, 6, MOIRAI_STEAL_LOCALITY, w6_t0, w6_t2);
}

Test(victims, four_uniform_nodes, .timeout = 30)
{
    cr_assert_eq(moirai_topology_inject_uniform(4, 2), 0);
    cr_assert_eq(moirai_topology_node_count(), 4);
    for (int workers = 1; workers <= 8; workers++) {
        check_all(workers, MOIRAI_STEAL_LOCALITY);
        check_all(workers, MOIRAI_STEAL_RANDOM);
    }
    const int w5_t0[] = {4}, w5_t2[] = {0, 1, 2, 3, 6, 7};
    EXPECT_NO_T1(8, 5, MOIRAI_STEAL_LOCALITY, w5_t0, w5_t2);
    /* Fewer workers than CPUs: worker 2 alone on its node. */
    const int none[1] = {0}, w2_t2[] = {0, 1};
    expect(3, 2, MOIRAI_STEAL_LOCALITY, none, 0, none, 0, w2_t2, 2);
}

Test(victims, nodes_interleaved_by_cpu_number, .timeout = 30)
{
    /* Even CPUs on node 0, odd on node 1, as on some two-socket machines;
     * one L3 group per node. */
    moirai_cpu_info_t cpus[8];
    for (int i = 0; i < 8; i++)
        cpus[i] = (moirai_cpu_info_t){
            .cpu = i, .core = i, .package = i % 2, .l2_group = i, .l3_group = i % 2, .node = i % 2};
    cr_assert_eq(moirai_topology_inject(cpus, 8), 0);
    check_all(8, MOIRAI_STEAL_LOCALITY);
    const int w3_t0[] = {1, 5, 7}, w3_t2[] = {0, 2, 4, 6};
    EXPECT_NO_T1(8, 3, MOIRAI_STEAL_LOCALITY, w3_t0, w3_t2);
}

/* Two nodes of four CPUs. Node 0: CPUs 0,1 share L3 group a, CPUs 2,3
 * share group b. Node 1: CPUs 4,5 share group c, CPUs 6 and 7 each have
 * their own. The kernel-style ids given here are sparse on purpose; the
 * topology renumbers them densely. */
static void inject_split_l3(void)
{
    static const int l3[8] = {10, 10, 20, 20, 30, 30, 40, 50};
    moirai_cpu_info_t cpus[8];
    for (int i = 0; i < 8; i++)
        cpus[i] = (moirai_cpu_info_t){.cpu = i,
                                      .core = i,
                                      .package = i / 4,
                                      .l2_group = i,
                                      .l3_group = l3[i],
                                      .node = 7 * (i / 4)};
    cr_assert_eq(moirai_topology_inject(cpus, 8), 0);
    cr_assert_eq(moirai_topology_l3_count(), 5);
    cr_assert_eq(moirai_topology_node_count(), 2);
}

Test(victims, cache_groups_inside_a_node, .timeout = 30)
{
    inject_split_l3();
    check_all(8, MOIRAI_STEAL_LOCALITY);
    check_all(8, MOIRAI_STEAL_RANDOM);
    const int w0_t0[] = {1}, w0_t1[] = {2, 3}, w0_t2[] = {4, 5, 6, 7};
    EXPECT(8, 0, MOIRAI_STEAL_LOCALITY, w0_t0, w0_t1, w0_t2);
    const int w4_t0[] = {5}, w4_t1[] = {6, 7}, w4_t2[] = {0, 1, 2, 3};
    EXPECT(8, 4, MOIRAI_STEAL_LOCALITY, w4_t0, w4_t1, w4_t2);
    /* A CPU with an L3 of its own has an empty tier 0. */
    const int none[1] = {0}, w6_t1[] = {4, 5, 7}, w6_t2[] = {0, 1, 2, 3};
    expect(8, 6, MOIRAI_STEAL_LOCALITY, none, 0, w6_t1, 3, w6_t2, 4);
}

Test(victims, random_puts_everyone_in_the_last_tier, .timeout = 30)
{
    inject_split_l3();
    const int none[1] = {0}, all_but_2[] = {0, 1, 3, 4, 5, 6, 7};
    expect(8, 2, MOIRAI_STEAL_RANDOM, none, 0, none, 0, all_but_2, 7);
    moirai__victims_t v;
    cr_assert_eq(moirai__victims_build(&v, 8, 5, MOIRAI_STEAL_RANDOM), 0);
    for (int i = 0; i < v.count; i++)
        cr_assert_eq(moirai__victims_tier(&v, i), 2);
    moirai__victims_free(&v);
}

Test(victims, more_workers_than_cpus_wrap_around, .timeout = 30)
{
    /* 2 nodes x 2 CPUs; worker i stands on CPU index i % 4. */
    cr_assert_eq(moirai_topology_inject_uniform(2, 2), 0);
    check_all(11, MOIRAI_STEAL_LOCALITY);
    check_all(11, MOIRAI_STEAL_RANDOM);
    /* Worker 5 is on CPU 1 (node 0): workers on CPUs 0 and 1 share its L3,
     * including worker 1, which stands on the very same CPU. */
    const int w5_t0[] = {0, 1, 4, 8, 9}, w5_t2[] = {2, 3, 6, 7, 10};
    EXPECT_NO_T1(11, 5, MOIRAI_STEAL_LOCALITY, w5_t0, w5_t2);
    /* With the split caches: worker 9 is on CPU 1 (L3 a, node 0). */
    inject_split_l3();
    check_all(20, MOIRAI_STEAL_LOCALITY);
    const int w9_t0[] = {0, 1, 8, 16, 17}, w9_t1[] = {2, 3, 10, 11, 18, 19},
              w9_t2[] = {4, 5, 6, 7, 12, 13, 14, 15};
    EXPECT(20, 9, MOIRAI_STEAL_LOCALITY, w9_t0, w9_t1, w9_t2);
}

Test(victims, one_worker_has_no_victims, .timeout = 10)
{
    cr_assert_eq(moirai_topology_inject_uniform(2, 2), 0);
    moirai__victims_t v;
    memset(&v, 0x5a, sizeof(v));
    cr_assert_eq(moirai__victims_build(&v, 1, 0, MOIRAI_STEAL_LOCALITY), 0);
    cr_assert_eq(v.count, 0);
    cr_assert_null(v.order);
    for (int t = 0; t < MOIRAI__TIERS; t++)
        cr_assert_eq(v.tier_end[t], 0);
    cr_assert_eq(moirai__victims_tier(&v, 0), -EINVAL);
    moirai__victims_free(&v);
    moirai__victims_free(&v);
}

Test(victims, bad_arguments, .timeout = 10)
{
    cr_assert_eq(moirai_topology_inject_uniform(2, 2), 0);
    moirai__victims_t v, before;
    memset(&v, 0x5a, sizeof(v));
    before = v;
    cr_assert_eq(moirai__victims_build(NULL, 4, 0, MOIRAI_STEAL_LOCALITY), -EINVAL);
    const int cases[][3] = {
        {0, 0, MOIRAI_STEAL_LOCALITY},
        {-1, 0, MOIRAI_STEAL_LOCALITY},
        {4, -1, MOIRAI_STEAL_LOCALITY},
        {4, 4, MOIRAI_STEAL_LOCALITY},
        {4, 9, MOIRAI_STEAL_RANDOM},
        {4, 0, 2},
        {4, 0, -1},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        cr_assert_eq(moirai__victims_build(&v, cases[i][0], cases[i][1],
                                           (moirai_steal_strategy_t)cases[i][2]),
                     -EINVAL, "case %zu", i);
        cr_assert_eq(memcmp(&v, &before, sizeof(v)), 0, "case %zu touched *v", i);
    }
    cr_assert_eq(moirai__victims_build(&v, 4, 1, MOIRAI_STEAL_LOCALITY), 0);
    cr_assert_eq(moirai__victims_tier(&v, -1), -EINVAL);
    cr_assert_eq(moirai__victims_tier(&v, 3), -EINVAL);
    cr_assert_eq(moirai__victims_tier(NULL, 0), -EINVAL);
    cr_assert_eq(moirai__victims_tier(&v, 2), 2);
    moirai__victims_free(&v);
    moirai__victims_free(NULL);
}

typedef struct build_ctx {
    moirai__victims_t v;
    int workers;
} build_ctx_t;

static int build_op(void *ctx)
{
    build_ctx_t *c = ctx;
    return moirai__victims_build(&c->v, c->workers, c->workers - 1, MOIRAI_STEAL_LOCALITY);
}

static void build_unchanged(void *ctx, long n)
{
    build_ctx_t *c = ctx;
    cr_assert_eq(c->v.count, -7, "failure %ld touched *v", n);
    cr_assert_null(c->v.order);
}

Test(victims, build_reports_enomem, .timeout = 30)
{
    inject_split_l3();
    build_ctx_t c = {.v = {.count = -7, .order = NULL}, .workers = 8};
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(build_op, build_unchanged, &c);
    moirai_test_oom_uninstall();
    cr_assert_eq(failures, 1, "one allocation: the order");
    cr_assert_eq(c.v.count, 7);
    const int w7_t1[] = {4, 5, 6}, w7_t2[] = {0, 1, 2, 3};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(c.v.order[i], w7_t1[i]);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(c.v.order[3 + i], w7_t2[i]);
    moirai__victims_free(&c.v);

    /* One worker allocates nothing. */
    c = (build_ctx_t){.v = {.count = -7, .order = NULL}, .workers = 1};
    moirai_test_oom_install();
    failures = MOIRAI_TEST_OOM_SWEEP(build_op, build_unchanged, &c);
    moirai_test_oom_uninstall();
    cr_assert_eq(failures, 0);
    cr_assert_eq(c.v.count, 0);
}
