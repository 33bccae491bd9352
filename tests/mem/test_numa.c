/* The NUMA API: topology answers (detected, synthetic 2- and 4-node, and a
 * fake sysfs tree with uneven distances), the topology-to-kernel node
 * mapping, thread and range policies checked against the kernel's own
 * view (raw get_mempolicy / move_pages), allocation on a node, every
 * -EINVAL, allocation failure, and the degraded modes a seccomp profile
 * produces (no NUMA system calls at all; move_pages denied).
 *
 * Criterion runs every test in a fresh process, so a test may install a
 * seccomp filter or a topology before its first NUMA call and the
 * library's once-per-process probe sees exactly that. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/mempolicy.h>
#include <linux/seccomp.h>

#include <criterion/criterion.h>

#include <moirai/core/alloc.h>
#include <moirai/core/error.h>
#include <moirai/core/topology.h>
#include <moirai/mem/numa.h>

#include "fake_numa_tree.h"
#include "policy_check_alloc.h"
#include "oom.h"

/* ---- the kernel's view, asked directly ---- */

#define KBITS 4096
#define KWORD (8 * sizeof(unsigned long))

typedef struct kpolicy {
    int mode;
    unsigned long mask[KBITS / KWORD];
} kpolicy_t;

/* The calling thread's policy (addr NULL) or the policy of the range at
 * `addr`, as the kernel reports it. */
static void kernel_policy(void *addr, kpolicy_t *out)
{
    long r;

    memset(out, 0, sizeof(*out));
    r = syscall(SYS_get_mempolicy, &out->mode, out->mask, (unsigned long)KBITS, addr,
                addr ? (unsigned long)MPOL_F_ADDR : 0ul);
    cr_assert_eq(r, 0, "get_mempolicy: %s", strerror(errno));
    out->mode &= 0xff;
}

static bool kmask_has(const kpolicy_t *p, int k)
{
    return (p->mask[k / KWORD] >> (k % KWORD)) & 1;
}

static int kmask_count(const kpolicy_t *p)
{
    int n = 0;

    for (int k = 0; k < KBITS; k++)
        n += kmask_has(p, k);
    return n;
}

/* The kernel nodes the process may allocate on, increasing. */
static int kernel_allowed(int *nodes, int cap)
{
    unsigned long mask[KBITS / KWORD] = {0};
    int n = 0;

    cr_assert_eq(syscall(SYS_get_mempolicy, NULL, mask, (unsigned long)KBITS, NULL,
                         (unsigned long)MPOL_F_MEMS_ALLOWED),
                 0);
    for (int k = 0; k < KBITS; k++) {
        if ((mask[k / KWORD] >> (k % KWORD)) & 1) {
            if (n < cap)
                nodes[n] = k;
            n++;
        }
    }
    cr_assert_geq(n, 1);
    return n;
}

/* The kernel node of the page at `addr` via move_pages (-errno status). */
static int kernel_page_node(void *addr)
{
    int status = INT_MIN;
    void *page = (void *)((uintptr_t)addr & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1));

    cr_assert_eq(syscall(SYS_move_pages, 0, 1ul, &page, NULL, &status, 0), 0, "move_pages: %s",
                 strerror(errno));
    return status;
}

/* The kernel node sysfs gives CPU `cpu` (its nodeN link), or -1. */
static int sysfs_node_of_cpu(int cpu)
{
    char path[64];
    struct dirent *de;
    DIR *d;
    int node = -1;

    snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d", cpu);
    d = opendir(path);
    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "node", 4) == 0 && de->d_name[4] >= '0' && de->d_name[4] <= '9')
            node = atoi(de->d_name + 4);
    }
    closedir(d);
    return node;
}

static bool kernel_numa_works(void)
{
    return syscall(SYS_get_mempolicy, NULL, NULL, 0ul, NULL, 0ul) == 0;
}

static size_t pagesz(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* Three pages of fresh anonymous memory with the third unmapped again: two
 * usable pages followed by a hole, for the -EFAULT and -ENOENT cases. */
static char *map_two_pages_then_hole(void)
{
    size_t page = pagesz();
    char *p = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    cr_assert_neq(p, MAP_FAILED);
    cr_assert_eq(munmap(p + 2 * page, page), 0);
    return p;
}

/* Runs `check` with a synthetic topology of `nodes` one-CPU nodes
 * installed, then goes back to the detected one. */
static void on_uniform_nodes(int nodes, void (*check)(void))
{
    cr_assert_eq(moirai_topology_inject_uniform(nodes, 1), 0);
    check();
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

/* ---- CPU pinning ---- */

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
    /* The kernel moves the thread before sched_setaffinity returns. */
    cr_assert_eq(sched_getcpu(), cpu);
}

/* ---- seccomp: deny system calls with an errno ---- */

#if defined(__x86_64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_AARCH64
#endif

/* Makes the listed system calls fail with `err` in this process from now
 * on (threads created later inherit the filter). */
static void deny_syscalls(const long *nrs, int n, int err)
{
#if defined(AUDIT_ARCH_HERE)
    struct sock_filter f[32];
    struct sock_fprog prog;
    int k = 0;

    cr_assert_leq(n, 12);
    f[k++] =
        (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_HERE, 1, 0);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[k++] =
        (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (int i = 0; i < n; i++) {
        f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nrs[i], 0, 1);
        f[k++] = (struct sock_filter)BPF_STMT(
            BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA));
    }
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    prog.len = (unsigned short)k;
    prog.filter = f;
    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0, "seccomp: %s",
                 strerror(errno));
#else
    (void)nrs;
    (void)n;
    (void)err;
    cr_skip_test("no seccomp architecture constant for this machine");
#endif
}

static const long numa_syscalls[] = {SYS_get_mempolicy, SYS_set_mempolicy, SYS_mbind,
                                     SYS_move_pages};

/* ---- topology answers ---- */

Test(numa, detected_topology_matches_core, .timeout = 30)
{
    int nodes = moirai_topology_node_count();
    int cpus = moirai_topology_cpu_count();
    int node = moirai_numa_current_node();

    cr_assert_eq(moirai_numa_node_count(), nodes);
    cr_assert(node >= 0 && node < nodes);
    for (int i = 0; i < cpus; i++) {
        moirai_cpu_info_t c;

        cr_assert_eq(moirai_topology_cpu_at(i, &c), 0);
        cr_assert_eq(moirai_numa_node_of_cpu(c.cpu), c.node);
    }
    for (int a = 0; a < nodes; a++)
        for (int b = 0; b < nodes; b++)
            cr_assert_eq(moirai_numa_distance(a, b), moirai_topology_node_distance(a, b));
    cr_assert_eq(moirai_numa_available(), kernel_numa_works());
    /* A detected topology maps each node to the kernel node of its first
     * CPU, as sysfs names it. */
    for (int i = 0; i < cpus && moirai_numa_available(); i++) {
        moirai_cpu_info_t c, first;

        cr_assert_eq(moirai_topology_cpu_at(i, &c), 0);
        for (int j = 0; j <= i; j++) {
            cr_assert_eq(moirai_topology_cpu_at(j, &first), 0);
            if (first.node == c.node)
                break;
        }
        if (sysfs_node_of_cpu(first.cpu) >= 0)
            cr_assert_eq(moirai_numa_kernel_node(c.node), sysfs_node_of_cpu(first.cpu));
    }
}

Test(numa, invalid_nodes_and_cpus, .timeout = 30)
{
    int nodes = moirai_numa_node_count();
    int order[4];

    cr_assert_eq(moirai_numa_node_of_cpu(-1), -EINVAL);
    cr_assert_eq(moirai_numa_node_of_cpu(1 << 20), -ENOENT);
    cr_assert_eq(moirai_numa_distance(-1, 0), -EINVAL);
    cr_assert_eq(moirai_numa_distance(0, nodes), -EINVAL);
    cr_assert_eq(moirai_numa_distance(nodes, 0), -EINVAL);
    cr_assert_eq(moirai_numa_kernel_node(-1), -EINVAL);
    cr_assert_eq(moirai_numa_kernel_node(nodes), -EINVAL);
    cr_assert_eq(moirai_numa_nodes_by_distance(-1, order, 4), -EINVAL);
    cr_assert_eq(moirai_numa_nodes_by_distance(nodes, order, 4), -EINVAL);
    cr_assert_eq(moirai_numa_nodes_by_distance(0, order, -1), -EINVAL);
    cr_assert_eq(moirai_numa_nodes_by_distance(0, NULL, 1), -EINVAL);
    cr_assert_eq(moirai_numa_nodes_by_distance(0, NULL, 0), nodes);
}

Test(numa, synthetic_two_nodes, .timeout = 30)
{
    int order[2];

    cr_assert_eq(moirai_topology_inject_uniform(2, 1), 0);
    cr_assert_eq(moirai_numa_node_count(), 2);
    cr_assert_eq(moirai_numa_node_of_cpu(0), 0);
    cr_assert_eq(moirai_numa_node_of_cpu(1), 1);
    cr_assert_eq(moirai_numa_node_of_cpu(2), -ENOENT);
    cr_assert_eq(moirai_numa_distance(0, 0), 10);
    cr_assert_eq(moirai_numa_distance(0, 1), 20);
    cr_assert_eq(moirai_numa_distance(0, 2), -EINVAL);
    cr_assert_eq(moirai_numa_nodes_by_distance(1, order, 2), 2);
    cr_assert(order[0] == 1 && order[1] == 0);
    cr_assert_eq(moirai_numa_kernel_node(2), -EINVAL);

    /* The real CPU maps onto synthetic CPU (real % 2): CPU 0 is on node 0,
     * CPU 1 on node 1. */
    if (cpu_allowed(0)) {
        pin(0);
        cr_assert_eq(moirai_numa_current_node(), 0);
    }
    if (cpu_allowed(1)) {
        pin(1);
        cr_assert_eq(moirai_numa_current_node(), 1);
    }
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
    cr_assert_eq(moirai_numa_node_count(), moirai_topology_node_count());
}

Test(numa, synthetic_four_nodes, .timeout = 30)
{
    int order[4];

    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    cr_assert_eq(moirai_numa_node_count(), 4);
    for (int cpu = 0; cpu < 4; cpu++)
        cr_assert_eq(moirai_numa_node_of_cpu(cpu), cpu);
    cr_assert_eq(moirai_numa_node_of_cpu(4), -ENOENT);
    cr_assert_eq(moirai_numa_distance(3, 3), 10);
    cr_assert_eq(moirai_numa_distance(1, 3), 20);
    cr_assert_eq(moirai_numa_distance(4, 0), -EINVAL);
    /* All remote distances are equal: ties go to the lower index. */
    cr_assert_eq(moirai_numa_nodes_by_distance(2, order, 4), 4);
    cr_assert(order[0] == 2 && order[1] == 0 && order[2] == 1 && order[3] == 3);

    if (cpu_allowed(0)) {
        pin(0);
        cr_assert_eq(moirai_numa_current_node(), 0);
    }
    if (cpu_allowed(1)) {
        pin(1);
        cr_assert_eq(moirai_numa_current_node(), 1);
    }

    /* A hand-made shape: CPUs 0 and 1 share node 0, CPUs 2 and 3 node 1. */
    {
        moirai_cpu_info_t cpus[4];

        for (int i = 0; i < 4; i++)
            cpus[i] = (moirai_cpu_info_t){
                .cpu = i, .core = i, .package = 0, .l2_group = i, .l3_group = 0, .node = i / 2};
        cr_assert_eq(moirai_topology_inject(cpus, 4), 0);
        cr_assert_eq(moirai_numa_node_count(), 2);
        cr_assert_eq(moirai_numa_node_of_cpu(3), 1);
        if (cpu_allowed(1)) {
            pin(1);
            cr_assert_eq(moirai_numa_current_node(), 0);
        }
    }
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

Test(numa, fallback_order_follows_distance, .init = moirai_test_live_unchecked, .timeout = 30)
{
    int order[4];

    load_fake_topology();
    for (int from = 0; from < 4; from++) {
        for (int to = 0; to < 4; to++)
            cr_assert_eq(moirai_numa_distance(from, to), fake_dist[from][to]);
        memset(order, -1, sizeof(order));
        cr_assert_eq(moirai_numa_nodes_by_distance(from, order, 4), 4);
        for (int i = 0; i < 4; i++)
            cr_assert_eq(order[i], fake_order[from][i], "from %d, place %d: %d, expected %d", from,
                         i, order[i], fake_order[from][i]);
        /* A short buffer receives the nearest ones and nothing more. */
        memset(order, -1, sizeof(order));
        cr_assert_eq(moirai_numa_nodes_by_distance(from, order, 2), 4);
        cr_assert_eq(order[0], fake_order[from][0]);
        cr_assert_eq(order[1], fake_order[from][1]);
        cr_assert_eq(order[2], -1);
    }
    /* CPU 1 is on node 1 in this tree (and this machine has CPU 1). */
    if (cpu_allowed(1)) {
        pin(1);
        cr_assert_eq(moirai_numa_current_node(), 1);
    }
    cr_assert_eq(moirai_topology_reload(NULL), 0);
}

/* ---- topology nodes -> kernel nodes ---- */

Test(numa, synthetic_nodes_map_round_robin_to_allowed_kernel_nodes, .timeout = 30)
{
    int allowed[64];
    int m = kernel_allowed(allowed, 64);

    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    for (int n = 0; n < 4; n++)
        cr_assert_eq(moirai_numa_kernel_node(n), allowed[n % m]);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

Test(numa, fake_tree_maps_real_cpus_to_their_node, .init = moirai_test_live_unchecked,
     .timeout = 30)
{
    int allowed[64];
    int m = kernel_allowed(allowed, 64);

    load_fake_topology();
    /* Nodes 0 and 1 start with CPUs 0 and 1, which exist here: they map to
     * the kernel node sysfs gives those CPUs (node 0 on this machine).
     * Nodes 2 and 3 start with CPUs this machine lacks: round-robin. */
    cr_assert_eq(moirai_numa_kernel_node(0), sysfs_node_of_cpu(0));
    if (sysfs_node_of_cpu(1) >= 0)
        cr_assert_eq(moirai_numa_kernel_node(1), sysfs_node_of_cpu(1));
    cr_assert_eq(moirai_numa_kernel_node(2), allowed[2 % m]);
    cr_assert_eq(moirai_numa_kernel_node(3), allowed[3 % m]);
    cr_assert_eq(moirai_topology_reload(NULL), 0);
}

/* ---- thread policies ---- */

static void check_policy_roundtrip(void)
{
    int nodes = moirai_numa_node_count(), got[8];
    moirai_numa_policy_t p;
    kpolicy_t k;
    int last = nodes - 1, k_last = moirai_numa_kernel_node(last);

    cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_BIND, &last, 1), 0);
    kernel_policy(NULL, &k);
    cr_assert_eq(k.mode, MPOL_BIND);
    cr_assert(kmask_has(&k, k_last));
    cr_assert_eq(kmask_count(&k), 1);
    /* Every topology node that shares the kernel node is named. */
    cr_assert_geq(moirai_numa_policy_get(&p, got, 8), 1);
    cr_assert_eq(p, MOIRAI_NUMA_POLICY_BIND);

    cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_PREFERRED, &last, 1), 0);
    kernel_policy(NULL, &k);
    cr_assert_eq(k.mode, MPOL_PREFERRED);
    cr_assert(kmask_has(&k, k_last));
    cr_assert_geq(moirai_numa_policy_get(&p, got, 8), 1);
    cr_assert_eq(p, MOIRAI_NUMA_POLICY_PREFERRED);

    {
        int all[8];

        for (int i = 0; i < nodes && i < 8; i++)
            all[i] = i;
        cr_assert_eq(
            moirai_numa_policy_set(MOIRAI_NUMA_POLICY_INTERLEAVE, all, nodes < 8 ? nodes : 8), 0);
    }
    kernel_policy(NULL, &k);
    cr_assert_eq(k.mode, MPOL_INTERLEAVE);
    cr_assert(kmask_has(&k, moirai_numa_kernel_node(0)));
    cr_assert_geq(moirai_numa_policy_get(&p, got, 8), 1);
    cr_assert_eq(p, MOIRAI_NUMA_POLICY_INTERLEAVE);

    cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_LOCAL, NULL, 0), 0);
    kernel_policy(NULL, &k);
    /* MPOL_LOCAL, or "preferred, no node" on kernels before 3.8. */
    cr_assert(k.mode == MPOL_LOCAL || (k.mode == MPOL_PREFERRED && kmask_count(&k) == 0));
    cr_assert_eq(moirai_numa_policy_get(&p, got, 8), 0);
    cr_assert_eq(p, MOIRAI_NUMA_POLICY_LOCAL);

    cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_DEFAULT, NULL, 0), 0);
    kernel_policy(NULL, &k);
    cr_assert_eq(k.mode, MPOL_DEFAULT);
    cr_assert_eq(moirai_numa_policy_get(&p, NULL, 0), 0);
    cr_assert_eq(p, MOIRAI_NUMA_POLICY_DEFAULT);
}

Test(numa, thread_policy_reaches_the_kernel, .timeout = 30)
{
    cr_assert(moirai_numa_available());
    check_policy_roundtrip();
}

Test(numa, thread_policy_on_synthetic_four_nodes, .timeout = 30)
{
    moirai_numa_policy_t p;
    kpolicy_t k;
    int two_three[2] = {2, 3}, got[4] = {-1, -1, -1, -1};
    int allowed[64];
    int m = kernel_allowed(allowed, 64);

    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    check_policy_roundtrip();
    cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_BIND, two_three, 2), 0);
    kernel_policy(NULL, &k);
    cr_assert_eq(k.mode, MPOL_BIND);
    /* The kernel was given only real nodes: those nodes 2 and 3 map to. */
    cr_assert(kmask_has(&k, allowed[2 % m]) && kmask_has(&k, allowed[3 % m]));
    cr_assert_eq(kmask_count(&k), m == 1 ? 1 : 2);
    if (m == 1) {
        /* One real node: the policy names all four synthetic nodes, and a
         * short buffer gets the first two while the count says four. */
        cr_assert_eq(moirai_numa_policy_get(&p, got, 2), 4);
        cr_assert(got[0] == 0 && got[1] == 1 && got[2] == -1);
        cr_assert_eq(moirai_numa_policy_get(&p, got, 4), 4);
        cr_assert_eq(got[3], 3);
    }
    cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_DEFAULT, NULL, 0), 0);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

/* What a helper thread saw. Criterion's assertions belong on the main
 * thread, so helper threads only record. */
typedef struct thread_view {
    bool set_own; /* set BIND {0} before reading */
    int set_rc, get_rc;
    moirai_numa_policy_t seen;
} thread_view_t;

static void *policy_thread(void *arg)
{
    thread_view_t *v = arg;
    int zero = 0;

    v->set_rc = v->set_own ? moirai_numa_policy_set(MOIRAI_NUMA_POLICY_BIND, &zero, 1) : 0;
    v->get_rc = moirai_numa_policy_get(&v->seen, NULL, 0);
    return NULL;
}

static thread_view_t run_policy_thread(bool set_own)
{
    thread_view_t v = {.set_own = set_own, .set_rc = -1, .get_rc = -1, .seen = -1};
    pthread_t t;

    cr_assert_eq(pthread_create(&t, NULL, policy_thread, &v), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(v.set_rc, 0);
    cr_assert_geq(v.get_rc, 0);
    return v;
}

static moirai_numa_policy_t my_policy(void)
{
    moirai_numa_policy_t p = -1;

    cr_assert_geq(moirai_numa_policy_get(&p, NULL, 0), 0);
    return p;
}

Test(numa, thread_policy_is_per_thread, .timeout = 30)
{
    int zero = 0;

    cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_INTERLEAVE, &zero, 1), 0);
    /* Another thread's policy change leaves ours alone. */
    cr_assert_eq(run_policy_thread(true).seen, MOIRAI_NUMA_POLICY_BIND);
    cr_assert_eq(my_policy(), MOIRAI_NUMA_POLICY_INTERLEAVE);
    /* A thread created afterwards starts with its creator's policy, as
     * the kernel copies it on clone(2). */
    cr_assert_eq(run_policy_thread(false).seen, MOIRAI_NUMA_POLICY_INTERLEAVE);
    cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_DEFAULT, NULL, 0), 0);
    cr_assert_eq(run_policy_thread(false).seen, MOIRAI_NUMA_POLICY_DEFAULT);
}

/* Every way to hand policy_set bad input, for the thread and the range
 * variants; checks the previous policy survives each. */
static void check_policy_einval(void *range, size_t len)
{
    int nodes = moirai_numa_node_count();
    int zero = 0, bad_low = -1, bad_high = nodes, two[2] = {0, 0};
    moirai_numa_policy_t p;
    kpolicy_t k;

    struct {
        moirai_numa_policy_t policy;
        const int *nodes;
        int count;
    } cases[] = {
        {(moirai_numa_policy_t)99, &zero, 1},         {(moirai_numa_policy_t)-1, NULL, 0},
        {MOIRAI_NUMA_POLICY_DEFAULT, &zero, 1},       {MOIRAI_NUMA_POLICY_LOCAL, &zero, 1},
        {MOIRAI_NUMA_POLICY_PREFERRED, NULL, 0},      {MOIRAI_NUMA_POLICY_PREFERRED, two, 2},
        {MOIRAI_NUMA_POLICY_BIND, NULL, 0},           {MOIRAI_NUMA_POLICY_INTERLEAVE, &zero, 0},
        {MOIRAI_NUMA_POLICY_BIND, NULL, 1},           {MOIRAI_NUMA_POLICY_BIND, &bad_low, 1},
        {MOIRAI_NUMA_POLICY_BIND, &bad_high, 1},      {MOIRAI_NUMA_POLICY_PREFERRED, &bad_high, 1},
        {MOIRAI_NUMA_POLICY_INTERLEAVE, &bad_low, 1}, {MOIRAI_NUMA_POLICY_BIND, &zero, -1},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = range ? moirai_numa_range_policy_set(range, len, cases[i].policy, cases[i].nodes,
                                                      cases[i].count, 0)
                       : moirai_numa_policy_set(cases[i].policy, cases[i].nodes, cases[i].count);

        cr_assert_eq(rc, -EINVAL, "case %zu returned %d", i, rc);
    }
    if (range == NULL) {
        /* What was set before the bad calls is still in force. */
        cr_assert_geq(moirai_numa_policy_get(&p, NULL, 0), 0);
        cr_assert_eq(p, MOIRAI_NUMA_POLICY_INTERLEAVE);
        if (moirai_numa_available()) {
            kernel_policy(NULL, &k);
            cr_assert_eq(k.mode, MPOL_INTERLEAVE);
        }
    } else if (moirai_numa_available()) {
        kernel_policy(range, &k);
        cr_assert_eq(k.mode, MPOL_INTERLEAVE);
    }
}

static void policy_errors(void)
{
    int zero = 0, got[2];
    moirai_numa_policy_t p;

    cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_INTERLEAVE, &zero, 1), 0);
    check_policy_einval(NULL, 0);
    cr_assert_eq(moirai_numa_policy_get(NULL, got, 2), -EINVAL);
    cr_assert_eq(moirai_numa_policy_get(&p, got, -1), -EINVAL);
    cr_assert_eq(moirai_numa_policy_get(&p, NULL, 1), -EINVAL);
    cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_DEFAULT, NULL, 0), 0);
}

Test(numa, policy_errors_detected, .timeout = 30)
{
    policy_errors();
}

Test(numa, policy_errors_synthetic, .timeout = 30)
{
    on_uniform_nodes(4, policy_errors);
}

/* ---- range policies ---- */

static void check_range_policy(void)
{
    size_t page = pagesz(), len = 4 * page;
    int nodes = moirai_numa_node_count(), last = nodes - 1, zero = 0;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    kpolicy_t k;

    cr_assert_neq(p, MAP_FAILED);
    cr_assert_eq(moirai_numa_range_policy_set(p, len, MOIRAI_NUMA_POLICY_BIND, &last, 1, 0), 0);
    kernel_policy(p + 3 * page, &k);
    cr_assert_eq(k.mode, MPOL_BIND);
    cr_assert(kmask_has(&k, moirai_numa_kernel_node(last)));
    memset(p, 1, len);
    cr_assert_eq(kernel_page_node(p), moirai_numa_kernel_node(last));
    /* Several topology nodes may share that kernel node; the lowest of
     * them is reported, and it maps to the same kernel node. */
    cr_assert_eq(moirai_numa_kernel_node(moirai_numa_node_of_address(p + page + 5)),
                 moirai_numa_kernel_node(last));

    /* The length is rounded up to whole pages; only the range changes. */
    cr_assert_eq(moirai_numa_range_policy_set(p + page, 1, MOIRAI_NUMA_POLICY_INTERLEAVE, &zero, 1,
                                              MOIRAI_NUMA_MOVE | MOIRAI_NUMA_STRICT),
                 0);
    kernel_policy(p + page, &k);
    cr_assert_eq(k.mode, MPOL_INTERLEAVE);
    kernel_policy(p + 2 * page, &k);
    cr_assert_eq(k.mode, MPOL_BIND);

    cr_assert_eq(moirai_numa_range_policy_set(p, len, MOIRAI_NUMA_POLICY_PREFERRED, &zero, 1,
                                              MOIRAI_NUMA_MOVE),
                 0);
    kernel_policy(p, &k);
    cr_assert_eq(k.mode, MPOL_PREFERRED);
    cr_assert_eq(moirai_numa_range_policy_set(p, len, MOIRAI_NUMA_POLICY_LOCAL, NULL, 0, 0), 0);
    kernel_policy(p, &k);
    cr_assert(k.mode == MPOL_LOCAL || (k.mode == MPOL_PREFERRED && kmask_count(&k) == 0));
    cr_assert_eq(moirai_numa_range_policy_set(p, len, MOIRAI_NUMA_POLICY_DEFAULT, NULL, 0, 0), 0);
    kernel_policy(p, &k);
    cr_assert_eq(k.mode, MPOL_DEFAULT);
    cr_assert_eq(munmap(p, len), 0);
}

Test(numa, range_policy_reaches_the_kernel, .timeout = 30)
{
    cr_assert(moirai_numa_available());
    check_range_policy();
}

Test(numa, range_policy_on_synthetic_four_nodes, .timeout = 30)
{
    on_uniform_nodes(4, check_range_policy);
}

static void range_errors(void)
{
    size_t page = pagesz(), len = 2 * page;
    char *p = map_two_pages_then_hole();
    int zero = 0;

    cr_assert_eq(moirai_numa_range_policy_set(p, len, MOIRAI_NUMA_POLICY_INTERLEAVE, &zero, 1, 0),
                 0);
    check_policy_einval(p, len);
    cr_assert_eq(moirai_numa_range_policy_set(NULL, len, MOIRAI_NUMA_POLICY_BIND, &zero, 1, 0),
                 -EINVAL);
    cr_assert_eq(moirai_numa_range_policy_set(p + 1, len, MOIRAI_NUMA_POLICY_BIND, &zero, 1, 0),
                 -EINVAL);
    cr_assert_eq(moirai_numa_range_policy_set(p, 0, MOIRAI_NUMA_POLICY_BIND, &zero, 1, 0), -EINVAL);
    cr_assert_eq(
        moirai_numa_range_policy_set(p, SIZE_MAX - page, MOIRAI_NUMA_POLICY_BIND, &zero, 1, 0),
        -EINVAL);
    cr_assert_eq(moirai_numa_range_policy_set(p, len, MOIRAI_NUMA_POLICY_BIND, &zero, 1, 1u << 7),
                 -EINVAL);
    /* Part of the range unmapped, or all of it. */
    cr_assert_eq(moirai_numa_range_policy_set(p, len + page, MOIRAI_NUMA_POLICY_BIND, &zero, 1, 0),
                 -EFAULT);
    cr_assert_eq(moirai_numa_range_policy_set(p + len, page, MOIRAI_NUMA_POLICY_BIND, &zero, 1, 0),
                 -EFAULT);
    cr_assert_eq(munmap(p, len), 0);
}

Test(numa, range_policy_errors, .timeout = 30)
{
    range_errors();
}

Test(numa, range_policy_errors_synthetic, .timeout = 30)
{
    on_uniform_nodes(2, range_errors);
}

/* ---- where a page lives ---- */

static void check_node_of_address(void)
{
    size_t page = pagesz();
    char *p = map_two_pages_then_hole();
    int on_stack = 1;
    unsigned char vec = 0;

    p[0] = 1;
    cr_assert_eq(moirai_numa_node_of_address(p), 0);
    cr_assert_eq(moirai_numa_node_of_address(p + page - 1), 0);
    cr_assert_eq(moirai_numa_node_of_address(&on_stack), 0);
    /* Never touched: no page yet, and asking does not create one. */
    cr_assert_eq(moirai_numa_node_of_address(p + page), -ENOENT);
    cr_assert_eq(mincore(p + page, page, &vec), 0);
    cr_assert_eq(vec & 1, 0, "asking faulted the page in");
    cr_assert_eq(moirai_numa_node_of_address(p + 2 * page), -EFAULT);
    cr_assert_eq(moirai_numa_node_of_address(NULL), -EINVAL);
    cr_assert_eq(munmap(p, 2 * page), 0);
}

Test(numa, node_of_address, .timeout = 30)
{
    check_node_of_address();
}

Test(numa, node_of_address_synthetic, .timeout = 30)
{
    /* All four synthetic nodes map to the one real node; the lowest, 0,
     * is reported. */
    on_uniform_nodes(4, check_node_of_address);
}

/* ---- allocation on a node ---- */

/* checking_allocator (policy_check_alloc.h) sees every block
 * moirai_numa_free() hands back: it must carry no memory policy any more. */

static void check_alloc_on_every_node(void)
{
    int nodes = moirai_numa_node_count();
    size_t page = pagesz(), size = 3 * page + 100;

    atomic_store(&checked_frees, 0);
    atomic_store(&bound_frees, 0);
    cr_assert_eq(moirai_allocator_set(&checking_allocator), 0);
    for (int n = 0; n < nodes; n++) {
        void *p = NULL;
        kpolicy_t k;

        cr_assert_eq(moirai_numa_alloc(size, n, &p), 0);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % page, 0);
        memset(p, 0x5a, size);
        if (moirai_numa_available()) {
            /* Every page, the rounded-up tail included, is bound to the
             * node's kernel node, and that is where the memory is. */
            for (size_t off = 0; off < 4 * page; off += page) {
                kernel_policy((char *)p + off, &k);
                cr_assert_eq(k.mode, MPOL_BIND);
                cr_assert(kmask_has(&k, moirai_numa_kernel_node(n)));
                cr_assert_eq(kmask_count(&k), 1);
                cr_assert_eq(kernel_page_node((char *)p + off), moirai_numa_kernel_node(n));
            }
        }
        cr_assert_eq(moirai_numa_kernel_node(moirai_numa_node_of_address(p)),
                     moirai_numa_kernel_node(n));
        moirai_numa_free(p, size);
    }
    moirai_numa_free(NULL, size);
    cr_assert_eq(moirai_allocator_set(NULL), 0);
    if (moirai_numa_available()) {
        cr_assert_geq(atomic_load(&checked_frees), nodes);
        cr_assert_eq(atomic_load(&bound_frees), 0, "a block went back still bound to a node");
    }
}

Test(numa, alloc_on_node, .timeout = 30)
{
    check_alloc_on_every_node();
}

Test(numa, alloc_on_synthetic_nodes, .init = moirai_test_live_unchecked, .timeout = 30)
{
    on_uniform_nodes(4, check_alloc_on_every_node);
    load_fake_topology();
    check_alloc_on_every_node();
    cr_assert_eq(moirai_topology_reload(NULL), 0);
}

Test(numa, alloc_errors, .timeout = 30)
{
    void *p = (void *)0x1;
    int nodes = moirai_numa_node_count();

    cr_assert_eq(moirai_numa_alloc(100, 0, NULL), -EINVAL);
    cr_assert_eq(moirai_numa_alloc(0, 0, &p), -EINVAL);
    cr_assert_eq(moirai_numa_alloc(100, -1, &p), -EINVAL);
    cr_assert_eq(moirai_numa_alloc(100, nodes, &p), -EINVAL);
    /* Rounding up to a page does not fit in size_t. */
    cr_assert_eq(moirai_numa_alloc(SIZE_MAX - 1, 0, &p), -ENOMEM);
    cr_assert_eq(p, (void *)0x1, "*out changed on error");

    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    cr_assert_eq(moirai_numa_alloc(100, 4, &p), -EINVAL);
    cr_assert_eq(moirai_numa_alloc(100, -1, &p), -EINVAL);
    cr_assert_eq(p, (void *)0x1);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

typedef struct alloc_ctx {
    void *p;
    int node;
} alloc_ctx_t;

static int do_alloc(void *ctx)
{
    alloc_ctx_t *a = ctx;

    return moirai_numa_alloc(10000, a->node, &a->p);
}

static void alloc_unchanged(void *ctx, long n)
{
    alloc_ctx_t *a = ctx;

    cr_assert_null(a->p, "failed run %ld set *out", n);
}

Test(numa, alloc_oom_sweep, .timeout = 60)
{
    alloc_ctx_t a = {NULL, 0};
    long failures;

    cr_assert_eq(moirai_topology_inject_uniform(4, 1), 0);
    for (a.node = 0; a.node < 4; a.node++) {
        a.p = NULL;
        moirai_test_oom_install();
        failures = MOIRAI_TEST_OOM_SWEEP(do_alloc, alloc_unchanged, &a);
        moirai_test_oom_uninstall();
        cr_assert_eq(failures, 1, "moirai_numa_alloc makes exactly one allocation");
        cr_assert_not_null(a.p);
        moirai_numa_free(a.p, 10000);
    }
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
    /* Nothing else in this API allocates through the hook. */
    moirai_test_oom_install();
    moirai_test_oom_fail_at(0);
    {
        int zero = 0, got[4];
        moirai_numa_policy_t p;
        char *m = mmap(NULL, pagesz(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        cr_assert_neq(m, MAP_FAILED);
        m[0] = 1;
        cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_BIND, &zero, 1), 0);
        cr_assert_geq(moirai_numa_policy_get(&p, got, 4), 1);
        cr_assert_eq(moirai_numa_range_policy_set(m, pagesz(), MOIRAI_NUMA_POLICY_BIND, &zero, 1,
                                                  MOIRAI_NUMA_MOVE),
                     0);
        cr_assert_eq(moirai_numa_node_of_address(m), 0);
        cr_assert_eq(moirai_numa_current_node() >= 0, 1);
        cr_assert_eq(moirai_numa_nodes_by_distance(0, got, 4), moirai_numa_node_count());
        cr_assert_eq(moirai_test_oom_count(), 0);
        cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_DEFAULT, NULL, 0), 0);
        munmap(m, pagesz());
    }
    moirai_test_oom_uninstall();
}

/* ---- without kernel NUMA support ---- */

static void check_without_kernel(void)
{
    size_t page = pagesz();
    int nodes = moirai_numa_node_count(), zero = 0, last = nodes - 1, got[8];
    moirai_numa_policy_t p;
    char *m;
    void *a = NULL;

    cr_assert_not(moirai_numa_available());
    for (int n = 0; n < nodes; n++)
        cr_assert_eq(moirai_numa_kernel_node(n), 0);

    /* Policies are validated and remembered, per thread. */
    cr_assert_eq(moirai_numa_policy_get(&p, got, 8), 0);
    cr_assert_eq(p, MOIRAI_NUMA_POLICY_DEFAULT);
    cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_BIND, &last, 1), 0);
    cr_assert_eq(moirai_numa_policy_get(&p, got, 8), nodes);
    cr_assert_eq(p, MOIRAI_NUMA_POLICY_BIND);
    for (int n = 0; n < nodes && n < 8; n++)
        cr_assert_eq(got[n], n);
    cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_LOCAL, NULL, 0), 0);
    cr_assert_eq(moirai_numa_policy_get(&p, got, 8), 0);
    cr_assert_eq(p, MOIRAI_NUMA_POLICY_LOCAL);
    policy_errors();

    /* Ranges: checked, not applied. */
    m = map_two_pages_then_hole();
    cr_assert_eq(moirai_numa_range_policy_set(m, 2 * page, MOIRAI_NUMA_POLICY_PREFERRED, &zero, 1,
                                              MOIRAI_NUMA_MOVE),
                 0);
    cr_assert_eq(moirai_numa_range_policy_set(m, 3 * page, MOIRAI_NUMA_POLICY_BIND, &zero, 1, 0),
                 -EFAULT);
    cr_assert_eq(moirai_numa_range_policy_set(m + 1, page, MOIRAI_NUMA_POLICY_BIND, &zero, 1, 0),
                 -EINVAL);
    cr_assert_eq(moirai_numa_range_policy_set(m, page, MOIRAI_NUMA_POLICY_BIND, &nodes, 1, 0),
                 -EINVAL);

    /* Pages: resident ones are on node 0. */
    m[0] = 1;
    cr_assert_eq(moirai_numa_node_of_address(m + 10), 0);
    cr_assert_eq(moirai_numa_node_of_address(m + page), -ENOENT);
    cr_assert_eq(moirai_numa_node_of_address(m + 2 * page), -EFAULT);
    cr_assert_eq(munmap(m, 2 * page), 0);

    /* Allocation on any node still works. */
    for (int n = 0; n < nodes; n++) {
        cr_assert_eq(moirai_numa_alloc(5000, n, &a), 0);
        memset(a, 1, 5000);
        cr_assert_eq(moirai_numa_node_of_address(a), 0);
        moirai_numa_free(a, 5000);
    }
    cr_assert_eq(moirai_numa_alloc(5000, nodes, &a), -EINVAL);
}

Test(numa, without_kernel_support, .timeout = 30)
{
    int zero = 0;

    deny_syscalls(numa_syscalls, 4, ENOSYS);
    check_without_kernel();
    /* The remembered policy is per thread. Without the kernel nothing
     * copies it into a new thread, which starts from the default. */
    cr_assert_eq(moirai_numa_policy_set(MOIRAI_NUMA_POLICY_INTERLEAVE, &zero, 1), 0);
    cr_assert_eq(run_policy_thread(false).seen, MOIRAI_NUMA_POLICY_DEFAULT);
    cr_assert_eq(run_policy_thread(true).seen, MOIRAI_NUMA_POLICY_BIND);
    cr_assert_eq(my_policy(), MOIRAI_NUMA_POLICY_INTERLEAVE);
}

Test(numa, without_kernel_support_synthetic, .timeout = 30)
{
    deny_syscalls(numa_syscalls, 4, EPERM);
    on_uniform_nodes(4, check_without_kernel);
}

Test(numa, move_pages_denied_falls_back_to_get_mempolicy, .timeout = 30)
{
    static const long only_move_pages[] = {SYS_move_pages};

    deny_syscalls(only_move_pages, 1, EPERM);
    cr_assert(moirai_numa_available());
    check_node_of_address();
}
