/* NUMA: topology answers from moirai-core, placement through the kernel.
 *
 * The topology half forwards to core's topology. The kernel half talks to
 * the memory-policy system calls, through libnuma's <numaif.h> wrappers
 * when the build has libnuma and through syscall(2) otherwise, and maps
 * topology nodes onto the kernel nodes the process may use (the rules are
 * in numa.h). What the kernel offers is probed once per process and kept
 * in static tables. The only memory this file allocates is what
 * moirai_numa_alloc() hands out, through the allocation hook. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(MOIRAI_HAVE_LIBNUMA)
#include <numa.h>
#include <numaif.h>
#else
#include <linux/mempolicy.h>
#endif

#include <moirai/core/alloc.h>
#include <moirai/core/error.h>
#include <moirai/core/topology.h>
#include <moirai/mem/numa.h>

/* Kernel node masks are this many bits: above any kernel's MAX_NUMNODES
 * (1024 at most on the architectures Linux supports), which
 * get_mempolicy(2) requires of its mask. */
#define KNODE_BITS  4096
#define KNODE_WORDS (KNODE_BITS / (8 * sizeof(unsigned long)))
#define WORD_BITS   (8 * sizeof(unsigned long))

/* CPUs whose kernel node is remembered; a CPU above this is treated as
 * one whose node is unknown (the round-robin rule then places it). */
#define CPU_TABLE 8192

/* The kernel's policy mode flags (MPOL_F_STATIC_NODES and friends) live
 * above bit 12 of the mode get_mempolicy(2) reports; the mode is below. */
#define KMODE_MASK 0xff

/* Kernel modes newer than some headers. */
#define KMPOL_LOCAL               4
#define KMPOL_PREFERRED_MANY      5
#define KMPOL_WEIGHTED_INTERLEAVE 6

/* What the kernel offers, probed once (see probe()). Written only inside
 * pthread_once(), read-only afterwards: pthread_once() orders the writes
 * before every reader's return from it, so plain loads suffice. */
static struct {
    bool kernel;                /* the NUMA system calls work */
    int allowed_count;          /* >= 1 */
    int allowed[KNODE_BITS];    /* kernel nodes we may allocate on, increasing */
    short cpu_knode[CPU_TABLE]; /* kernel node of each CPU, -1 when unknown */
} kinfo;
static pthread_once_t kinfo_once = PTHREAD_ONCE_INIT;

/* Without kernel support the thread's policy is remembered here, so that
 * moirai_numa_policy_get() reports what moirai_numa_policy_set() was told. */
static __thread moirai_numa_policy_t nokernel_policy = MOIRAI_NUMA_POLICY_DEFAULT;

/* ---- system calls ---- */

/* Each returns 0 (or the call's non-negative result) or -1 with errno
 * set, as the C library's wrappers do. */
static long k_get_mempolicy(int *mode, unsigned long *mask, unsigned long maxnode, void *addr,
                            unsigned flags)
{
#if defined(MOIRAI_HAVE_LIBNUMA)
    return get_mempolicy(mode, mask, maxnode, addr, flags);
#else
    return syscall(SYS_get_mempolicy, mode, mask, maxnode, addr, (unsigned long)flags);
#endif
}

static long k_set_mempolicy(int mode, const unsigned long *mask, unsigned long maxnode)
{
#if defined(MOIRAI_HAVE_LIBNUMA)
    return set_mempolicy(mode, mask, maxnode);
#else
    return syscall(SYS_set_mempolicy, mode, mask, maxnode);
#endif
}

static long k_mbind(void *addr, unsigned long len, int mode, const unsigned long *mask,
                    unsigned long maxnode, unsigned flags)
{
#if defined(MOIRAI_HAVE_LIBNUMA)
    return mbind(addr, len, mode, mask, maxnode, flags);
#else
    return syscall(SYS_mbind, addr, len, mode, mask, maxnode, (unsigned long)flags);
#endif
}

static long k_move_pages(unsigned long count, void **pages, int *status)
{
#if defined(MOIRAI_HAVE_LIBNUMA)
    return move_pages(0, count, pages, NULL, status, 0);
#else
    return syscall(SYS_move_pages, 0, count, pages, NULL, status, 0);
#endif
}

/* ---- probing ---- */

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);

    return p > 0 ? (size_t)p : 4096;
}

/* Reads a small sysfs file into `buf` (NUL-terminated). Returns 0 or -1. */
static int read_small_file(const char *path, char *buf, size_t size)
{
    size_t used = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    for (;;) {
        ssize_t r = read(fd, buf + used, size - 1 - used);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            close(fd);
            if (r < 0)
                return -1;
            break;
        }
        used += (size_t)r;
        if (used == size - 1) {
            /* Too long to be a list we can use whole. */
            close(fd);
            return -1;
        }
    }
    buf[used] = '\0';
    return 0;
}

/* Records kernel node `knode` for every CPU of a kernel CPU list such as
 * "0-3,8". Malformed text stops the walk; what was read stays. */
static void assign_cpulist(const char *s, int knode)
{
    while (*s >= '0' && *s <= '9') {
        char *end;
        long lo = strtol(s, &end, 10), hi = lo;

        s = end;
        if (*s == '-') {
            hi = strtol(s + 1, &end, 10);
            if (end == s + 1)
                return;
            s = end;
        }
        for (long c = lo; c <= hi && c < CPU_TABLE; c++)
            kinfo.cpu_knode[c] = (short)knode;
        if (*s != ',')
            return;
        s++;
    }
}

static void probe(void)
{
    unsigned long mask[KNODE_WORDS];
    char buf[8192];

    for (int c = 0; c < CPU_TABLE; c++)
        kinfo.cpu_knode[c] = -1;
    kinfo.allowed[0] = 0;
    kinfo.allowed_count = 1;

    /* The policy query must work. libnuma's numa_available() catches
     * only a kernel without the call (ENOSYS); a seccomp profile that
     * denies it (EPERM) must count as "no kernel support" too, so the call
     * is made here in both builds. */
#if defined(MOIRAI_HAVE_LIBNUMA)
    kinfo.kernel = numa_available() >= 0 && k_get_mempolicy(NULL, NULL, 0, NULL, 0) == 0;
#else
    kinfo.kernel = k_get_mempolicy(NULL, NULL, 0, NULL, 0) == 0;
#endif
    if (!kinfo.kernel)
        return;

    /* The nodes our cpuset lets us allocate on. */
    memset(mask, 0, sizeof(mask));
    if (k_get_mempolicy(NULL, mask, KNODE_BITS, NULL, MPOL_F_MEMS_ALLOWED) == 0) {
        int n = 0;

        for (int k = 0; k < KNODE_BITS; k++) {
            if (mask[k / WORD_BITS] & (1ul << (k % WORD_BITS)))
                kinfo.allowed[n++] = k;
        }
        if (n > 0)
            kinfo.allowed_count = n;
    }

    /* Which kernel node each CPU is on, for the allowed nodes only: a
     * topology node whose first CPU sits on a node we may not use falls
     * to the round-robin rule instead. */
    for (int i = 0; i < kinfo.allowed_count; i++) {
        char path[64];

        snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", kinfo.allowed[i]);
        if (read_small_file(path, buf, sizeof(buf)) == 0)
            assign_cpulist(buf, kinfo.allowed[i]);
    }
}

static inline void ensure_probed(void)
{
    pthread_once(&kinfo_once, probe);
}

bool moirai_numa_available(void)
{
    ensure_probed();
    return kinfo.kernel;
}

/* ---- topology answers ---- */

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

/* ---- topology nodes <-> kernel nodes ---- */

static bool node_valid(int node)
{
    return node >= 0 && node < moirai_topology_node_count();
}

/* The kernel node for a valid topology node (rules in numa.h). */
static int knode_of(int node)
{
    ensure_probed();
    if (!kinfo.kernel)
        return 0;
    if (moirai_topology_source() != MOIRAI_TOPOLOGY_SYNTHETIC) {
        int cpus = moirai_topology_cpu_count();

        for (int i = 0; i < cpus; i++) {
            moirai_cpu_info_t info;

            if (moirai_topology_cpu_at(i, &info) != 0 || info.node != node)
                continue;
            if (info.cpu < CPU_TABLE && kinfo.cpu_knode[info.cpu] >= 0)
                return kinfo.cpu_knode[info.cpu];
            break;
        }
    }
    return kinfo.allowed[node % kinfo.allowed_count];
}

int moirai_numa_kernel_node(int node)
{
    if (!node_valid(node))
        return MOIRAI_EINVAL;
    return knode_of(node);
}

/* The lowest topology node mapped to kernel node `knode`, or -1. */
static int node_of_knode(int knode)
{
    int count = moirai_topology_node_count();

    for (int n = 0; n < count; n++) {
        if (knode_of(n) == knode)
            return n;
    }
    return -1;
}

static bool mask_test(const unsigned long *mask, int k)
{
    return k >= 0 && k < KNODE_BITS && (mask[k / WORD_BITS] & (1ul << (k % WORD_BITS))) != 0;
}

/* Checks a policy and its nodes and builds the kernel mask. Returns 0 or
 * -EINVAL. */
static int policy_mask(moirai_numa_policy_t policy, const int *nodes, int count,
                       unsigned long *mask)
{
    switch (policy) {
    case MOIRAI_NUMA_POLICY_DEFAULT:
    case MOIRAI_NUMA_POLICY_LOCAL:
        if (count != 0)
            return MOIRAI_EINVAL;
        break;
    case MOIRAI_NUMA_POLICY_PREFERRED:
        if (count != 1)
            return MOIRAI_EINVAL;
        break;
    case MOIRAI_NUMA_POLICY_BIND:
    case MOIRAI_NUMA_POLICY_INTERLEAVE:
        if (count < 1)
            return MOIRAI_EINVAL;
        break;
    default:
        return MOIRAI_EINVAL;
    }
    if (count > 0 && nodes == NULL)
        return MOIRAI_EINVAL;
    /* Validate every node before mapping any: the mapping probes the
     * kernel, and bad input should be rejected the same way whatever the
     * machine offers. */
    for (int i = 0; i < count; i++) {
        if (!node_valid(nodes[i]))
            return MOIRAI_EINVAL;
    }
    memset(mask, 0, KNODE_WORDS * sizeof(*mask));
    for (int i = 0; i < count; i++) {
        int k = knode_of(nodes[i]);

        mask[k / WORD_BITS] |= 1ul << (k % WORD_BITS);
    }
    return 0;
}

static int kernel_mode(moirai_numa_policy_t policy)
{
    switch (policy) {
    case MOIRAI_NUMA_POLICY_BIND:
        return MPOL_BIND;
    case MOIRAI_NUMA_POLICY_PREFERRED:
        return MPOL_PREFERRED;
    case MOIRAI_NUMA_POLICY_INTERLEAVE:
        return MPOL_INTERLEAVE;
    case MOIRAI_NUMA_POLICY_LOCAL:
        return KMPOL_LOCAL;
    default:
        return MPOL_DEFAULT;
    }
}

/* ---- policies ---- */

int moirai_numa_policy_set(moirai_numa_policy_t policy, const int *nodes, int count)
{
    unsigned long mask[KNODE_WORDS];
    int rc = policy_mask(policy, nodes, count, mask);
    long r;

    if (rc != 0)
        return rc;
    ensure_probed();
    if (!kinfo.kernel) {
        nokernel_policy = policy;
        return 0;
    }
    r = k_set_mempolicy(kernel_mode(policy), count > 0 ? mask : NULL,
                        count > 0 ? KNODE_BITS + 1 : 0);
    if (r < 0 && errno == EINVAL && policy == MOIRAI_NUMA_POLICY_LOCAL) {
        /* Kernels before 3.8 lack MPOL_LOCAL; "preferred, no node" is
         * their spelling of it. */
        r = k_set_mempolicy(MPOL_PREFERRED, NULL, 0);
    }
    return r < 0 ? -errno : 0;
}

/* Writes the topology nodes named by `mask` into `nodes` (at most
 * `capacity`) and returns how many there are. */
static int nodes_in_mask(const unsigned long *mask, int *nodes, int capacity)
{
    int count = moirai_topology_node_count(), named = 0;

    for (int n = 0; n < count; n++) {
        if (!mask_test(mask, knode_of(n)))
            continue;
        if (named < capacity)
            nodes[named] = n;
        named++;
    }
    return named;
}

int moirai_numa_policy_get(moirai_numa_policy_t *policy, int *nodes, int capacity)
{
    unsigned long mask[KNODE_WORDS];
    int kmode = 0;

    if (policy == NULL || capacity < 0 || (capacity > 0 && nodes == NULL))
        return MOIRAI_EINVAL;
    ensure_probed();
    memset(mask, 0, sizeof(mask));
    if (!kinfo.kernel) {
        *policy = nokernel_policy;
        if (nokernel_policy == MOIRAI_NUMA_POLICY_DEFAULT ||
            nokernel_policy == MOIRAI_NUMA_POLICY_LOCAL)
            return 0;
        /* Every topology node maps to the one kernel node, node 0. */
        mask[0] = 1;
        return nodes_in_mask(mask, nodes, capacity);
    }
    if (k_get_mempolicy(&kmode, mask, KNODE_BITS, NULL, 0) < 0)
        return -errno;
    switch (kmode & KMODE_MASK) {
    case MPOL_DEFAULT:
        *policy = MOIRAI_NUMA_POLICY_DEFAULT;
        return 0;
    case KMPOL_LOCAL:
        *policy = MOIRAI_NUMA_POLICY_LOCAL;
        return 0;
    case MPOL_PREFERRED:
    case KMPOL_PREFERRED_MANY:
        *policy = MOIRAI_NUMA_POLICY_PREFERRED;
        break;
    case MPOL_BIND:
        *policy = MOIRAI_NUMA_POLICY_BIND;
        break;
    case MPOL_INTERLEAVE:
    case KMPOL_WEIGHTED_INTERLEAVE:
        *policy = MOIRAI_NUMA_POLICY_INTERLEAVE;
        break;
    default:
        return MOIRAI_ENOTSUP;
    }
    {
        int named = nodes_in_mask(mask, nodes, capacity);

        /* "Preferred" with no node is how older kernels report local
         * allocation. */
        if (named == 0 && *policy == MOIRAI_NUMA_POLICY_PREFERRED)
            *policy = MOIRAI_NUMA_POLICY_LOCAL;
        return named;
    }
}

/* Without kernel NUMA: -EFAULT unless every page of [addr, addr + len)
 * is mapped, which is what mbind(2) would have checked. mincore(2) fails
 * with ENOMEM exactly when part of the range is unmapped. */
static int check_mapped(void *addr, size_t len, size_t page)
{
    unsigned char vec[256];
    char *p = addr;

    while (len > 0) {
        size_t chunk = len < sizeof(vec) * page ? len : sizeof(vec) * page;

        if (mincore(p, chunk, vec) != 0)
            return errno == ENOMEM ? (-EFAULT) : -errno;
        p += chunk;
        len -= chunk;
    }
    return 0;
}

int moirai_numa_range_policy_set(void *addr, size_t len, moirai_numa_policy_t policy,
                                 const int *nodes, int count, unsigned flags)
{
    unsigned long mask[KNODE_WORDS];
    size_t page = page_size();
    uintptr_t start = (uintptr_t)addr;
    unsigned kflags = 0;
    long r;
    int rc;

    if (addr == NULL || (start & (page - 1)) != 0 || len == 0 ||
        (flags & ~(unsigned)(MOIRAI_NUMA_MOVE | MOIRAI_NUMA_STRICT)) != 0)
        return MOIRAI_EINVAL;
    /* Round to whole pages; a range reaching past the top of the address
     * space cannot be valid. */
    if (len > UINTPTR_MAX - start - (page - 1))
        return MOIRAI_EINVAL;
    len = (len + page - 1) & ~(page - 1);
    rc = policy_mask(policy, nodes, count, mask);
    if (rc != 0)
        return rc;
    ensure_probed();
    if (!kinfo.kernel)
        return check_mapped(addr, len, page);
    if (flags & MOIRAI_NUMA_MOVE)
        kflags |= MPOL_MF_MOVE;
    if (flags & MOIRAI_NUMA_STRICT)
        kflags |= MPOL_MF_STRICT;
    r = k_mbind(addr, len, kernel_mode(policy), count > 0 ? mask : NULL,
                count > 0 ? KNODE_BITS + 1 : 0, kflags);
    if (r < 0 && errno == EINVAL && policy == MOIRAI_NUMA_POLICY_LOCAL)
        r = k_mbind(addr, len, MPOL_PREFERRED, NULL, 0, kflags);
    return r < 0 ? -errno : 0;
}

/* ---- where a page lives ---- */

/* The kernel node of the page at `page_addr`, or a negative errno. */
static int page_knode(void *page_addr, size_t page)
{
    int status = 0, knode = -1;
    unsigned char vec;

    if (!kinfo.kernel) {
        if (mincore(page_addr, page, &vec) != 0)
            return errno == ENOMEM ? (-EFAULT) : -errno;
        return (vec & 1) ? 0 : MOIRAI_ENOENT;
    }
    /* move_pages(2) with no target nodes only reports, and does not fault
     * the page in. */
    if (k_move_pages(1, &page_addr, &status) == 0)
        return status;
    if (errno != ENOSYS && errno != EPERM)
        return -errno;
    /* Container profiles often deny move_pages(2) (it can migrate other
     * processes' pages) while allowing get_mempolicy(2). That call faults
     * the page in to answer, so first check that there is a page to ask
     * about, keeping the "never touched" answer the same. */
    if (mincore(page_addr, page, &vec) != 0)
        return errno == ENOMEM ? (-EFAULT) : -errno;
    if (!(vec & 1))
        return MOIRAI_ENOENT;
    if (k_get_mempolicy(&knode, NULL, 0, page_addr, MPOL_F_NODE | MPOL_F_ADDR) != 0)
        return -errno;
    return knode;
}

int moirai_numa_node_of_address(const void *addr)
{
    size_t page = page_size();
    int knode, node;

    if (addr == NULL)
        return MOIRAI_EINVAL;
    ensure_probed();
    knode = page_knode((void *)((uintptr_t)addr & ~(uintptr_t)(page - 1)), page);
    if (knode < 0)
        return knode;
    node = node_of_knode(knode);
    return node >= 0 ? node : MOIRAI_ERANGE;
}

/* ---- allocation on a node ---- */

int moirai_numa_alloc(void **out, size_t size, int node)
{
    size_t page = page_size();
    void *p;
    int rc;

    if (out == NULL || size == 0 || !node_valid(node))
        return MOIRAI_EINVAL;
    if (size > SIZE_MAX - (page - 1))
        return MOIRAI_ENOMEM;
    size = (size + page - 1) & ~(page - 1);
    /* Whole pages, page-aligned: the policy below then covers exactly
     * this block and no neighbour's bytes. */
    p = moirai_aligned_alloc(page, size);
    if (p == NULL)
        return MOIRAI_ENOMEM;
    /* MOVE, because an allocator may hand back pages it already touched
     * (a reused heap block); they are migrated to the node now. */
    rc = moirai_numa_range_policy_set(p, size, MOIRAI_NUMA_POLICY_BIND, &node, 1, MOIRAI_NUMA_MOVE);
    if (rc != 0) {
        moirai_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void moirai_numa_free(void *ptr, size_t size)
{
    size_t page = page_size();

    if (ptr == NULL)
        return;
    /* Clear the range's policy before the block goes back to the
     * allocator, so whoever gets these pages next is not steered to our
     * node. A size that cannot have been allocated skips the reset rather
     * than clear a policy on someone else's pages. */
    if (size > 0 && size <= SIZE_MAX - (page - 1))
        (void)moirai_numa_range_policy_set(ptr, (size + page - 1) & ~(page - 1),
                                           MOIRAI_NUMA_POLICY_DEFAULT, NULL, 0, 0);
    moirai_free(ptr);
}
