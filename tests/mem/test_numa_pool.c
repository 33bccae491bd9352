/* The NUMA-aware pool: own node first, fallback in distance order when a
 * node is exhausted, per-node statistics, release to the right node from
 * any thread, real placement of the chunks, every -EINVAL, allocation
 * failure, and a multi-threaded run with exact invariants. Multi-node
 * behaviour runs on synthetic topologies (core's injection, and a fake
 * sysfs tree with uneven distances) on this one-node machine. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/mempolicy.h>

#include <criterion/criterion.h>

#include <moirai/core/alloc.h>
#include <moirai/core/error.h>
#include <moirai/core/topology.h>
#include <moirai/mem/numa.h>
#include <moirai/mem/numa_pool.h>

#include "fake_numa_tree.h"
#include "policy_check_alloc.h"
#include "oom.h"

/* ---- helpers ---- */

static long scale(void)
{
    const char *s = getenv("MOIRAI_TEST_SCALE");
    long v = s ? atol(s) : 1;

    return v > 0 ? v : 1;
}

static bool cpu_allowed(int cpu)
{
    cpu_set_t set;

    cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
    return CPU_ISSET(cpu, &set);
}

static void pin(int cpu)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    cr_assert_eq(sched_setaffinity(0, sizeof(set), &set), 0, "pin to CPU %d: %s", cpu,
                 strerror(errno));
    cr_assert_eq(sched_getcpu(), cpu);
}

static moirai_numa_pool_node_stats_t node_stats(moirai_numa_pool_t *p, int node)
{
    moirai_numa_pool_node_stats_t s;

    cr_assert_eq(moirai_numa_pool_node_stats(p, node, &s), 0);
    return s;
}

/* The invariants that hold at every quiescent point. */
static void check_stats_add_up(moirai_numa_pool_t *p)
{
    uint64_t out = 0, in = 0, failed = 0;

    for (int n = 0; n < moirai_numa_pool_node_count(p); n++) {
        moirai_numa_pool_node_stats_t s = node_stats(p, n);

        cr_assert_eq(s.local + s.fallback_in, s.pool.allocations, "node %d", n);
        cr_assert_eq(s.pool.allocations - s.pool.frees, s.pool.in_use, "node %d", n);
        cr_assert_leq(s.pool.in_use, s.pool.objects, "node %d", n);
        out += s.fallback_out;
        in += s.fallback_in;
        failed += s.failures;
    }
    cr_assert_eq(out, in + failed, "fallbacks out %lu != in %lu + failures %lu", (unsigned long)out,
                 (unsigned long)in, (unsigned long)failed);
}

/* The fake tree with uneven distances is in fake_numa_tree.h. */

static moirai_numa_pool_t *make_pool(size_t object_size, size_t capacity, size_t magazine)
{
    moirai_numa_pool_config_t cfg;
    moirai_numa_pool_t *p = NULL;

    moirai_numa_pool_config_init(&cfg, object_size);
    cfg.node_capacity = capacity;
    cfg.magazine_size = magazine;
    cfg.name = "test";
    cr_assert_eq(moirai_numa_pool_create(&p, &cfg), 0);
    cr_assert_not_null(p);
    return p;
}

/* ---- one node, real placement ---- */

Test(numa_pool, single_node_basics_and_real_placement, .timeout = 30)
{
    moirai_numa_pool_t *p = make_pool(48, 0, 0);
    void *objs[100];
    int kernel_node = moirai_numa_kernel_node(0);
    moirai_numa_pool_node_stats_t s;

    cr_assert_eq(moirai_numa_pool_node_count(p), moirai_numa_node_count());
    for (int i = 0; i < 100; i++) {
        int home = moirai_numa_current_node();

        cr_assert_eq(moirai_numa_pool_alloc(p, &objs[i]), 0);
        cr_assert_eq((uintptr_t)objs[i] % 16, 0);
        memset(objs[i], i, 48);
        if (moirai_numa_pool_node_count(p) == 1)
            cr_assert_eq(moirai_numa_pool_node_of(p, objs[i]), home);
    }
    /* Distinct objects, contents intact. */
    for (int i = 0; i < 100; i++) {
        for (int j = 0; j < 48; j++)
            cr_assert_eq(((unsigned char *)objs[i])[j], (unsigned char)i);
        for (int j = i + 1; j < 100; j++)
            cr_assert_neq(objs[i], objs[j]);
    }
    if (moirai_numa_available()) {
        int mode = -1;
        unsigned long mask[64] = {0};
        int status = INT_MIN;
        void *page = (void *)((uintptr_t)objs[0] & ~(uintptr_t)4095);

        /* The chunk is bound to the node's kernel node, and the touched
         * page is there. */
        cr_assert_eq(
            syscall(SYS_get_mempolicy, &mode, mask, 4096ul, objs[0], (unsigned long)MPOL_F_ADDR),
            0);
        cr_assert_eq(mode & 0xff, MPOL_BIND);
        cr_assert((mask[kernel_node / 64] >> (kernel_node % 64)) & 1);
        cr_assert_eq(syscall(SYS_move_pages, 0, 1ul, &page, NULL, &status, 0), 0);
        cr_assert_eq(status, kernel_node);
    }
    cr_assert_eq(moirai_numa_node_of_address(objs[0]), 0);
    for (int i = 0; i < 100; i++)
        moirai_numa_pool_free(p, objs[i]);
    moirai_numa_pool_free(p, NULL);
    s = node_stats(p, 0);
    if (moirai_numa_pool_node_count(p) == 1) {
        cr_assert_eq(s.pool.allocations, 100);
        cr_assert_eq(s.local, 100);
        cr_assert_eq(s.pool.frees, 100);
        cr_assert_eq(s.pool.in_use, 0);
        cr_assert_eq(s.fallback_in + s.fallback_out + s.failures, 0);
    }
    check_stats_add_up(p);
    moirai_numa_pool_destroy(p);
    moirai_numa_pool_destroy(NULL);
}

/* ---- own node first ---- */

Test(numa_pool, serves_the_callers_node_on_synthetic_four_nodes, .timeout = 30)
{
    moirai_numa_pool_t *p;
    void *o;

    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    p = make_pool(32, 0, 0);
    cr_assert_eq(moirai_numa_pool_node_count(p), 4);
    /* Real CPU c runs as synthetic CPU c, on node c. */
    for (int cpu = 0; cpu < 2; cpu++) {
        if (!cpu_allowed(cpu))
            continue;
        pin(cpu);
        for (int i = 0; i < 10; i++) {
            cr_assert_eq(moirai_numa_pool_alloc(p, &o), 0);
            cr_assert_eq(moirai_numa_pool_node_of(p, o), cpu);
            moirai_numa_pool_free(p, o);
        }
        cr_assert_eq(node_stats(p, cpu).local, 10);
    }
    /* An explicit first choice works for every node. */
    for (int n = 0; n < 4; n++) {
        cr_assert_eq(moirai_numa_pool_alloc_on(p, n, &o), 0);
        cr_assert_eq(moirai_numa_pool_node_of(p, o), n);
        moirai_numa_pool_free(p, o);
    }
    check_stats_add_up(p);
    moirai_numa_pool_destroy(p);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

Test(numa_pool, callers_node_follows_a_topology_change, .timeout = 30)
{
    /* The pool remembers each thread's node per CPU. Staying on CPU 1
     * across a topology change (allowed only while no pool exists), the
     * next pool must see the new node of CPU 1, not the remembered one. */
    moirai_numa_pool_t *p;
    void *o;

    if (!cpu_allowed(1))
        cr_skip_test("CPU 1 is not available to this process");
    pin(1);
    cr_assert_eq(moirai_topology_inject_uniform(1, 2), 0);
    p = make_pool(32, 0, 0);
    cr_assert_eq(moirai_numa_pool_alloc(p, &o), 0);
    cr_assert_eq(moirai_numa_pool_node_of(p, o), 0);
    moirai_numa_pool_free(p, o);
    moirai_numa_pool_destroy(p);

    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    p = make_pool(32, 0, 0);
    cr_assert_eq(moirai_numa_pool_alloc(p, &o), 0);
    cr_assert_eq(moirai_numa_pool_node_of(p, o), 1);
    moirai_numa_pool_free(p, o);
    moirai_numa_pool_destroy(p);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

/* ---- fallback in distance order ---- */

#define CAP 5

/* Exhausts the pool from first choice `home` (by alloc_on when home >= 0,
 * by the caller's node otherwise) and checks the nodes come in `order`,
 * CAP objects each, then -ENOMEM. Returns with everything freed. */
static void exhaust_and_check(moirai_numa_pool_t *p, int home, const int *order, int nodes)
{
    void *objs[4 * CAP + 1];
    int total = nodes * CAP, first = home >= 0 ? home : order[0];
    void *sentinel = (void *)0x1, *o = sentinel;

    for (int i = 0; i < total; i++) {
        int rc = home >= 0 ? moirai_numa_pool_alloc_on(p, home, &objs[i])
                           : moirai_numa_pool_alloc(p, &objs[i]);

        cr_assert_eq(rc, 0, "allocation %d failed", i);
        cr_assert_eq(moirai_numa_pool_node_of(p, objs[i]), order[i / CAP],
                     "allocation %d from first choice %d came from node %d, expected %d", i, first,
                     moirai_numa_pool_node_of(p, objs[i]), order[i / CAP]);
    }
    cr_assert_eq(home >= 0 ? moirai_numa_pool_alloc_on(p, home, &o) : moirai_numa_pool_alloc(p, &o),
                 -ENOMEM);
    cr_assert_eq(o, sentinel, "*out changed on failure");

    for (int n = 0; n < nodes; n++) {
        moirai_numa_pool_node_stats_t s = node_stats(p, n);

        cr_assert_eq(s.pool.objects, CAP, "node %d created %lu objects", n,
                     (unsigned long)s.pool.objects);
        cr_assert_eq(s.pool.in_use, CAP);
        if (n == first) {
            cr_assert_eq(s.local, CAP);
            cr_assert_eq(s.fallback_in, 0);
            /* Every allocation after the first CAP, and the failing one. */
            cr_assert_eq(s.fallback_out, (uint64_t)(total - CAP + 1));
            cr_assert_eq(s.failures, 1);
        } else {
            cr_assert_eq(s.local, 0);
            cr_assert_eq(s.fallback_in, CAP);
            cr_assert_eq(s.fallback_out, 0);
            cr_assert_eq(s.failures, 0);
        }
    }
    check_stats_add_up(p);
    for (int i = 0; i < total; i++)
        moirai_numa_pool_free(p, objs[i]);
    for (int n = 0; n < nodes; n++) {
        cr_assert_eq(node_stats(p, n).pool.in_use, 0);
        cr_assert_eq(node_stats(p, n).pool.frees, CAP, "node %d", n);
    }
}

Test(numa_pool, fallback_follows_distance_order, .init = moirai_test_live_unchecked, .timeout = 60)
{
    load_fake_topology();
    for (int home = 0; home < 4; home++) {
        moirai_numa_pool_t *p = make_pool(24, CAP, 2);
        int order[4];

        /* The library's order agrees with the table worked out by hand. */
        cr_assert_eq(moirai_numa_nodes_by_distance(home, order, 4), 4);
        cr_assert_eq(memcmp(order, fake_order[home], sizeof(order)), 0);
        exhaust_and_check(p, home, fake_order[home], 4);
        moirai_numa_pool_destroy(p);
    }
    cr_assert_eq(moirai_topology_reload(NULL), 0);
}

Test(numa_pool, fallback_from_the_callers_node, .init = moirai_test_live_unchecked, .timeout = 60)
{
    moirai_numa_pool_t *p;

    load_fake_topology();
    /* CPU 0 is on node 0 and CPU 1 on node 1 in the fake tree. */
    for (int cpu = 0; cpu < 2; cpu++) {
        if (!cpu_allowed(cpu))
            continue;
        pin(cpu);
        p = make_pool(24, CAP, 2);
        exhaust_and_check(p, -1, fake_order[cpu], 4);
        moirai_numa_pool_destroy(p);
    }
    cr_assert_eq(moirai_topology_reload(NULL), 0);
}

Test(numa_pool, fallback_ties_go_to_the_lower_node, .timeout = 60)
{
    static const int order_from_2[4] = {2, 0, 1, 3};
    moirai_numa_pool_t *p;

    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    p = make_pool(16, CAP, 0);
    exhaust_and_check(p, 2, order_from_2, 4);
    moirai_numa_pool_destroy(p);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

Test(numa_pool, two_nodes_fall_back_to_each_other, .timeout = 60)
{
    static const int from0[2] = {0, 1}, from1[2] = {1, 0};
    moirai_numa_pool_t *p;

    cr_assert_eq(moirai_topology_inject_uniform(2, 1), 0);
    p = make_pool(100, CAP, 1);
    exhaust_and_check(p, 0, from0, 2);
    moirai_numa_pool_destroy(p);
    p = make_pool(100, CAP, 1);
    exhaust_and_check(p, 1, from1, 2);
    moirai_numa_pool_destroy(p);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

Test(numa_pool, nodes_exhaust_one_by_one, .init = moirai_test_live_unchecked, .timeout = 60)
{
    /* From node 0 of the fake tree the order is 0 2 3 1. Exhaust node 2
     * first (from itself), then node 0: a thread on node 0 must now skip
     * both and land on 3, the next by distance, not on 1. */
    moirai_numa_pool_t *p;
    void *held[2 * CAP], *o;

    load_fake_topology();
    p = make_pool(24, CAP, 2);
    for (int i = 0; i < CAP; i++) {
        cr_assert_eq(moirai_numa_pool_alloc_on(p, 2, &held[i]), 0);
        cr_assert_eq(moirai_numa_pool_node_of(p, held[i]), 2);
    }
    for (int i = CAP; i < 2 * CAP; i++) {
        cr_assert_eq(moirai_numa_pool_alloc_on(p, 0, &held[i]), 0);
        cr_assert_eq(moirai_numa_pool_node_of(p, held[i]), 0);
    }
    cr_assert_eq(moirai_numa_pool_alloc_on(p, 0, &o), 0);
    cr_assert_eq(moirai_numa_pool_node_of(p, o), 3);
    /* Releasing one node-2 object makes node 2 the first fallback again. */
    moirai_numa_pool_free(p, held[0]);
    cr_assert_eq(moirai_numa_pool_alloc_on(p, 0, &held[0]), 0);
    cr_assert_eq(moirai_numa_pool_node_of(p, held[0]), 2);
    moirai_numa_pool_free(p, o);
    for (int i = 0; i < 2 * CAP; i++)
        moirai_numa_pool_free(p, held[i]);
    check_stats_add_up(p);
    cr_assert_eq(node_stats(p, 0).fallback_out, 2);
    cr_assert_eq(node_stats(p, 3).fallback_in, 1);
    cr_assert_eq(node_stats(p, 2).fallback_in, 1);
    moirai_numa_pool_destroy(p);
    cr_assert_eq(moirai_topology_reload(NULL), 0);
}

/* ---- release from another thread ---- */

typedef struct free_job {
    moirai_numa_pool_t *pool;
    void **objs;
    int count;
} free_job_t;

static void *free_all(void *arg)
{
    free_job_t *job = arg;

    for (int i = 0; i < job->count; i++)
        moirai_numa_pool_free(job->pool, job->objs[i]);
    return NULL;
}

Test(numa_pool, release_on_another_thread_returns_to_the_objects_node, .timeout = 60)
{
    moirai_numa_pool_t *p;
    void *objs[4 * CAP];
    free_job_t job;
    pthread_t t;

    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    p = make_pool(40, CAP, 2);
    for (int n = 0; n < 4; n++)
        for (int i = 0; i < CAP; i++)
            cr_assert_eq(moirai_numa_pool_alloc_on(p, n, &objs[n * CAP + i]), 0);
    job = (free_job_t){p, objs, 4 * CAP};
    cr_assert_eq(pthread_create(&t, NULL, free_all, &job), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    /* The releasing thread has exited, which returns its caches to the
     * depots: every node can serve exactly CAP objects again, its own. */
    for (int n = 0; n < 4; n++) {
        moirai_numa_pool_node_stats_t s = node_stats(p, n);

        cr_assert_eq(s.pool.frees, CAP);
        cr_assert_eq(s.pool.in_use, 0);
        for (int i = 0; i < CAP; i++) {
            cr_assert_eq(moirai_numa_pool_alloc_on(p, n, &objs[n * CAP + i]), 0);
            cr_assert_eq(moirai_numa_pool_node_of(p, objs[n * CAP + i]), n);
        }
        cr_assert_eq(node_stats(p, n).pool.objects, CAP);
        cr_assert_eq(node_stats(p, n).fallback_out, 0);
    }
    for (int i = 0; i < 4 * CAP; i++)
        moirai_numa_pool_free(p, objs[i]);
    /* Flushing returns this thread's cached objects too. */
    moirai_numa_pool_flush(p);
    moirai_numa_pool_flush(NULL);
    check_stats_add_up(p);
    moirai_numa_pool_destroy(p);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

/* ---- configuration ---- */

Test(numa_pool, prepopulates_every_node, .timeout = 30)
{
    moirai_numa_pool_config_t cfg;
    moirai_numa_pool_t *p = NULL;

    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    moirai_numa_pool_config_init(&cfg, 64);
    cfg.prepopulate = 300;
    cfg.chunk_objects = 100;
    cr_assert_eq(moirai_numa_pool_create(&p, &cfg), 0);
    for (int n = 0; n < 4; n++) {
        moirai_numa_pool_node_stats_t s = node_stats(p, n);

        cr_assert_eq(s.pool.objects, 300);
        cr_assert_eq(s.pool.allocations, 0);
        cr_assert_geq(s.pool.system_allocations, 3);
    }
    moirai_numa_pool_destroy(p);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

Test(numa_pool, alignment_and_large_objects, .timeout = 30)
{
    static const size_t aligns[] = {8, 64, 256, 4096};
    static const size_t sizes[] = {1, 100, 3000, 70000};

    cr_assert_eq(moirai_topology_inject_uniform(2, 1), 0);
    for (size_t a = 0; a < 4; a++) {
        for (size_t z = 0; z < 4; z++) {
            moirai_numa_pool_config_t cfg;
            moirai_numa_pool_t *p = NULL;
            void *o[3];

            moirai_numa_pool_config_init(&cfg, sizes[z]);
            cfg.alignment = aligns[a];
            cfg.node_capacity = 2;
            cr_assert_eq(moirai_numa_pool_create(&p, &cfg), 0);
            for (int i = 0; i < 3; i++) {
                cr_assert_eq(moirai_numa_pool_alloc_on(p, 1, &o[i]), 0);
                cr_assert_eq((uintptr_t)o[i] % aligns[a], 0);
                cr_assert_eq(moirai_numa_pool_node_of(p, o[i]), i < 2 ? 1 : 0);
                memset(o[i], 0xab, sizes[z]);
            }
            for (int i = 0; i < 3; i++)
                moirai_numa_pool_free(p, o[i]);
            check_stats_add_up(p);
            moirai_numa_pool_destroy(p);
        }
    }
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

/* ---- chunks leave no binding behind ---- */

/* checking_allocator (policy_check_alloc.h) sees every chunk a destroyed
 * pool hands back: it must carry no memory policy any more. */
Test(numa_pool, destroy_returns_chunks_unbound, .timeout = 30)
{
    moirai_numa_pool_config_t cfg;
    moirai_numa_pool_t *p = NULL;
    uint64_t chunks = 0;
    void *o;

    cr_assert(moirai_numa_available());
    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    cr_assert_eq(moirai_allocator_set(&checking_allocator), 0);
    moirai_numa_pool_config_init(&cfg, 64);
    cfg.prepopulate = 100;
    cfg.chunk_objects = 50;
    cr_assert_eq(moirai_numa_pool_create(&p, &cfg), 0);
    for (int n = 0; n < 4; n++) {
        cr_assert_eq(moirai_numa_pool_alloc_on(p, n, &o), 0);
        /* The chunk is bound while the pool owns it. */
        {
            int mode = -1;

            cr_assert_eq(
                syscall(SYS_get_mempolicy, &mode, NULL, 0ul, o, (unsigned long)MPOL_F_ADDR), 0);
            cr_assert_eq(mode & 0xff, MPOL_BIND);
        }
        chunks += node_stats(p, n).pool.system_allocations;
    }
    moirai_numa_pool_destroy(p);
    cr_assert_eq(moirai_allocator_set(NULL), 0);
    cr_assert_geq(atomic_load(&checked_frees), (long)chunks);
    cr_assert_eq(atomic_load(&bound_frees), 0, "a chunk went back to the allocator still bound");
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

/* ---- errors ---- */

Test(numa_pool, invalid_arguments, .timeout = 30)
{
    moirai_numa_pool_config_t cfg;
    moirai_numa_pool_t *p = (moirai_numa_pool_t *)0x1, *q;
    moirai_numa_pool_node_stats_t s;
    void *o = (void *)0x1, *other;

    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    moirai_numa_pool_config_init(NULL, 8);
    moirai_numa_pool_config_init(&cfg, 0);
    cr_assert_eq(moirai_numa_pool_create(&p, &cfg), -EINVAL);
    moirai_numa_pool_config_init(&cfg, 32);
    cr_assert_eq(moirai_numa_pool_create(NULL, &cfg), -EINVAL);
    cr_assert_eq(moirai_numa_pool_create(&p, NULL), -EINVAL);
    cfg.alignment = 24;
    cr_assert_eq(moirai_numa_pool_create(&p, &cfg), -EINVAL);
    cfg.alignment = 8192;
    cr_assert_eq(moirai_numa_pool_create(&p, &cfg), -EINVAL);
    cfg.alignment = 0;
    cfg.object_size = ((size_t)1 << 30) + 1;
    cr_assert_eq(moirai_numa_pool_create(&p, &cfg), -EINVAL);
    cfg.object_size = 32;
    cfg.node_capacity = 4;
    cfg.prepopulate = 5;
    cr_assert_eq(moirai_numa_pool_create(&p, &cfg), -EINVAL);
    cfg.prepopulate = 0;
    cfg.magazine_size = 5000;
    cr_assert_eq(moirai_numa_pool_create(&p, &cfg), -EINVAL);
    cfg.magazine_size = 0;
    cfg.chunk_objects = SIZE_MAX / 2;
    cr_assert_eq(moirai_numa_pool_create(&p, &cfg), -EINVAL);
    /* Chunks of 2^42 bytes: their aligned blocks cannot be had. */
    cfg.chunk_objects = (size_t)1 << 36;
    cr_assert_eq(moirai_numa_pool_create(&p, &cfg), -ENOMEM);
    cr_assert_eq(p, (moirai_numa_pool_t *)0x1, "*out changed on error");

    p = make_pool(32, 4, 0);
    q = make_pool(32, 4, 0);
    cr_assert_eq(moirai_numa_pool_alloc(NULL, &o), -EINVAL);
    cr_assert_eq(moirai_numa_pool_alloc(p, NULL), -EINVAL);
    cr_assert_eq(moirai_numa_pool_alloc_on(NULL, 0, &o), -EINVAL);
    cr_assert_eq(moirai_numa_pool_alloc_on(p, 0, NULL), -EINVAL);
    cr_assert_eq(moirai_numa_pool_alloc_on(p, -1, &o), -EINVAL);
    cr_assert_eq(moirai_numa_pool_alloc_on(p, 4, &o), -EINVAL);
    cr_assert_eq(o, (void *)0x1);
    cr_assert_eq(moirai_numa_pool_node_stats(p, -1, &s), -EINVAL);
    cr_assert_eq(moirai_numa_pool_node_stats(p, 4, &s), -EINVAL);
    cr_assert_eq(moirai_numa_pool_node_stats(p, 0, NULL), -EINVAL);
    cr_assert_eq(moirai_numa_pool_node_stats(NULL, 0, &s), -EINVAL);
    cr_assert_eq(moirai_numa_pool_node_count(NULL), 0);
    cr_assert_eq(moirai_numa_pool_alloc_on(q, 3, &other), 0);
    cr_assert_eq(moirai_numa_pool_node_of(NULL, other), -EINVAL);
    cr_assert_eq(moirai_numa_pool_node_of(p, NULL), -EINVAL);
    /* An object of another pool is not this pool's. */
    cr_assert_eq(moirai_numa_pool_node_of(p, other), -EINVAL);
    cr_assert_eq(moirai_numa_pool_node_of(q, other), 3);
    moirai_numa_pool_free(NULL, other);
    moirai_numa_pool_free(q, other);
    moirai_numa_pool_destroy(p);
    moirai_numa_pool_destroy(q);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

Test(numa_pool, releasing_to_the_wrong_pool_aborts, .signal = SIGABRT, .timeout = 30)
{
    moirai_numa_pool_t *p = make_pool(32, 0, 0), *q = make_pool(32, 0, 0);
    void *o;

    cr_assert_eq(moirai_numa_pool_alloc(q, &o), 0);
    moirai_numa_pool_free(p, o);
}

/* ---- allocation failure ---- */

typedef struct create_ctx {
    moirai_numa_pool_config_t cfg;
    moirai_numa_pool_t *pool;
} create_ctx_t;

static int do_create(void *ctx)
{
    create_ctx_t *c = ctx;

    return moirai_numa_pool_create(&c->pool, &c->cfg);
}

static void create_unchanged(void *ctx, long n)
{
    create_ctx_t *c = ctx;

    cr_assert_null(c->pool, "failed run %ld set *out", n);
}

static void sweep_create(int nodes)
{
    create_ctx_t c;
    long failures;

    if (nodes > 0)
        cr_assert_eq(moirai_topology_inject_uniform(nodes, 1), 0);
    /* Detect the topology before failing allocations: detection under
     * OOM answers with a one-CPU shape, which is core's business. */
    cr_assert_geq(moirai_numa_node_count(), 1);
    memset(&c, 0, sizeof(c));
    moirai_numa_pool_config_init(&c.cfg, 64);
    c.cfg.prepopulate = 200;
    c.cfg.chunk_objects = 64;
    c.cfg.node_capacity = 1000;
    moirai_test_oom_install();
    failures = MOIRAI_TEST_OOM_SWEEP(do_create, create_unchanged, &c);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 3 * moirai_numa_node_count(),
                 "create allocates the pool, its tables and each node's pool and chunks");
    cr_assert_not_null(c.pool);
    for (int n = 0; n < moirai_numa_pool_node_count(c.pool); n++)
        cr_assert_eq(node_stats(c.pool, n).pool.objects, 200);
    moirai_numa_pool_destroy(c.pool);
    if (nodes > 0)
        cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

Test(numa_pool, oom_sweep_create, .timeout = 120)
{
    sweep_create(0);
    sweep_create(2);
    sweep_create(4);
}

typedef struct alloc_ctx {
    moirai_numa_pool_t *pool;
    void *obj;
    int node;
} alloc_ctx_t;

static int do_alloc(void *ctx)
{
    alloc_ctx_t *a = ctx;

    return a->node >= 0 ? moirai_numa_pool_alloc_on(a->pool, a->node, &a->obj)
                        : moirai_numa_pool_alloc(a->pool, &a->obj);
}

static void alloc_unchanged(void *ctx, long n)
{
    alloc_ctx_t *a = ctx;
    int nodes = moirai_numa_pool_node_count(a->pool);

    cr_assert_null(a->obj, "failed run %ld set *out", n);
    for (int k = 0; k < nodes; k++) {
        moirai_numa_pool_node_stats_t s = node_stats(a->pool, k);

        cr_assert_eq(s.pool.allocations, 0);
        cr_assert_eq(s.pool.in_use, 0);
    }
    check_stats_add_up(a->pool);
}

Test(numa_pool, oom_sweep_alloc, .timeout = 120)
{
    /* One node: nothing to fall back to, so every allocation failure on
     * the way (chunk, thread cache) must surface as -ENOMEM. */
    alloc_ctx_t a = {NULL, NULL, -1};
    long failures;

    cr_assert_eq(moirai_topology_inject_uniform(1, 2), 0);
    a.pool = make_pool(64, 0, 0);
    moirai_test_oom_install();
    failures = MOIRAI_TEST_OOM_SWEEP(do_alloc, alloc_unchanged, &a);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0, "the first allocation needs a chunk");
    cr_assert_not_null(a.obj);
    cr_assert_eq(moirai_numa_pool_node_of(a.pool, a.obj), 0);
    moirai_numa_pool_free(a.pool, a.obj);
    check_stats_add_up(a.pool);
    moirai_numa_pool_destroy(a.pool);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

Test(numa_pool, allocation_failure_on_a_node_falls_back, .timeout = 60)
{
    /* With two nodes, a node whose memory cannot be had counts as
     * exhausted: the allocation is served by the other node instead. Each
     * run fails one more of the first allocation's allocations, on a
     * fresh pool, until one of them makes node 0 give up. */
    bool fell_back = false;

    cr_assert_eq(moirai_topology_inject_uniform(2, 1), 0);
    for (long n = 0; !fell_back; n++) {
        alloc_ctx_t a = {make_pool(64, 0, 0), NULL, 0};
        int rc;

        moirai_test_oom_install();
        moirai_test_oom_fail_at(n);
        rc = do_alloc(&a);
        cr_assert_gt(moirai_test_oom_count(), n,
                     "no single allocation failure made node 0 fall back");
        moirai_test_oom_uninstall();
        cr_assert(rc == 0 || rc == -ENOMEM, "rc %d", rc);
        if (rc == 0) {
            int node = moirai_numa_pool_node_of(a.pool, a.obj);

            fell_back = node == 1;
            moirai_numa_pool_node_stats_t s0 = node_stats(a.pool, 0), s1 = node_stats(a.pool, 1);

            cr_assert_eq(s0.fallback_out, fell_back ? 1 : 0);
            cr_assert_eq(s1.fallback_in, fell_back ? 1 : 0);
            cr_assert_eq(s0.failures + s1.failures, 0);
            moirai_numa_pool_free(a.pool, a.obj);
        }
        check_stats_add_up(a.pool);
        moirai_numa_pool_destroy(a.pool);
    }
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

/* ---- many threads ---- */

#define STRESS_THREADS 4
#define STRESS_LIVE    48
#define STRESS_SLOTS   16

/* Every object carries its current owner and a check word; a handout of
 * an object that is still live elsewhere overwrites them, which the
 * owner detects before releasing it. */
typedef struct tagged {
    uint64_t owner;
    uint64_t check;
} tagged_t;

#define TAG_CHECK(owner) ((owner)*UINT64_C(0x9e3779b97f4a7c15) ^ UINT64_C(0x5bd1e995))

typedef struct stress {
    moirai_numa_pool_t *pool;
    long iterations;
    _Atomic(tagged_t *) slots[STRESS_SLOTS]; /* objects in transit between threads */
    atomic_long allocated, released, failed, corrupted;
    atomic_uint_fast64_t next_owner;
} stress_t;

typedef struct worker {
    stress_t *st;
    uint32_t seed;
} worker_t;

/* xorshift32: a private generator, nothing shared between threads. */
static uint32_t next_random(uint32_t *s)
{
    uint32_t x = *s;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* Owners of objects in transit have this bit set; fresh owners never do,
 * so a handout of an object that sits in a slot is detected. */
#define IN_TRANSIT (UINT64_C(1) << 63)

static bool tag_ok(const tagged_t *t)
{
    return t->check == TAG_CHECK(t->owner);
}

static void *stress_worker(void *arg)
{
    worker_t *w = arg;
    stress_t *st = w->st;
    tagged_t *live[STRESS_LIVE];
    uint64_t mine[STRESS_LIVE];
    int count = 0;

    for (long it = 0; it < st->iterations; it++) {
        uint32_t r = next_random(&w->seed);

        if (count < STRESS_LIVE && (count == 0 || r % 3 != 0)) {
            void *o;
            int node = (int)((r >> 8) % 5) - 1; /* -1: the caller's own node */
            int rc = node < 0 ? moirai_numa_pool_alloc(st->pool, &o)
                              : moirai_numa_pool_alloc_on(st->pool, node, &o);

            if (rc != 0) {
                atomic_fetch_add_explicit(&st->failed, 1, memory_order_relaxed);
                continue;
            }
            atomic_fetch_add_explicit(&st->allocated, 1, memory_order_relaxed);
            live[count] = o;
            mine[count] = atomic_fetch_add_explicit(&st->next_owner, 1, memory_order_relaxed);
            live[count]->owner = mine[count];
            live[count]->check = TAG_CHECK(mine[count]);
            count++;
        } else {
            int i = (int)((r >> 4) % (uint32_t)count);
            tagged_t *o = live[i];

            if (o->owner != mine[i] || !tag_ok(o))
                atomic_fetch_add_explicit(&st->corrupted, 1, memory_order_relaxed);
            live[i] = live[--count];
            mine[i] = mine[count];
            if (r & 1) {
                /* Hand it to whichever thread empties the slot; release
                 * whatever was there, after checking it was not handed
                 * out again in transit. The exchange is acq_rel: it
                 * publishes our writes to the object and acquires the
                 * previous holder's. */
                o->owner |= IN_TRANSIT;
                o->check = TAG_CHECK(o->owner);
                tagged_t *prev = atomic_exchange_explicit(&st->slots[(r >> 12) % STRESS_SLOTS], o,
                                                          memory_order_acq_rel);

                if (prev == NULL)
                    continue;
                if (!(prev->owner & IN_TRANSIT) || !tag_ok(prev))
                    atomic_fetch_add_explicit(&st->corrupted, 1, memory_order_relaxed);
                o = prev;
            }
            moirai_numa_pool_free(st->pool, o);
            atomic_fetch_add_explicit(&st->released, 1, memory_order_relaxed);
        }
    }
    for (int i = 0; i < count; i++) {
        if (live[i]->owner != mine[i] || !tag_ok(live[i]))
            atomic_fetch_add_explicit(&st->corrupted, 1, memory_order_relaxed);
        moirai_numa_pool_free(st->pool, live[i]);
        atomic_fetch_add_explicit(&st->released, 1, memory_order_relaxed);
    }
    return NULL;
}

Test(numa_pool, threads_cross_release_with_fallback, .timeout = 300)
{
    static stress_t st;
    worker_t w[STRESS_THREADS];
    pthread_t t[STRESS_THREADS];
    uint64_t allocs = 0, frees = 0, failures = 0;

    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    memset(&st, 0, sizeof(st));
    /* Small nodes and magazines, so nodes run dry and fall back all the
     * time; total capacity exceeds what the threads can hold plus their
     * caches, but a single node does not. */
    st.pool = make_pool(sizeof(tagged_t), 40, 4);
    st.iterations = 2000000 / scale();
    for (int i = 0; i < STRESS_THREADS; i++) {
        w[i] = (worker_t){&st, (uint32_t)(i * 7919 + 1)};
        cr_assert_eq(pthread_create(&t[i], NULL, stress_worker, &w[i]), 0);
    }
    for (int i = 0; i < STRESS_THREADS; i++)
        cr_assert_eq(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < STRESS_SLOTS; i++) {
        tagged_t *o = atomic_load(&st.slots[i]);

        if (o != NULL) {
            cr_assert((o->owner & IN_TRANSIT) && tag_ok(o));
            moirai_numa_pool_free(st.pool, o);
            atomic_fetch_add(&st.released, 1);
        }
    }
    cr_assert_eq(atomic_load(&st.corrupted), 0, "an object was handed out while live");
    cr_assert_eq(atomic_load(&st.allocated), atomic_load(&st.released));
    for (int n = 0; n < 4; n++) {
        moirai_numa_pool_node_stats_t s = node_stats(st.pool, n);

        cr_assert_eq(s.pool.in_use, 0, "node %d", n);
        cr_assert_leq(s.pool.objects, 40, "node %d exceeded its capacity", n);
        allocs += s.pool.allocations;
        frees += s.pool.frees;
        failures += s.failures;
    }
    cr_assert_eq(allocs, (uint64_t)atomic_load(&st.allocated));
    cr_assert_eq(frees, allocs);
    cr_assert_eq(failures, (uint64_t)atomic_load(&st.failed));
    check_stats_add_up(st.pool);
    {
        uint64_t fallbacks = 0;

        for (int n = 0; n < 4; n++)
            fallbacks += node_stats(st.pool, n).fallback_in;
        cr_assert_gt(fallbacks, 0, "the run never exercised fallback");
    }
    moirai_numa_pool_destroy(st.pool);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}
