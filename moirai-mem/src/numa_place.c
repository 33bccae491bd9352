/* NUMA placement: the thread's and a range's memory policy, where a page
 * lives, and allocation on a node.
 *
 * Separate from numa_kernel.c because it speaks the API's terms (policies
 * over topology nodes, errors as negative errno) and reaches the kernel
 * only through numa_internal.h. Without kernel support the calls keep
 * their contract on one node (see numa.h). The only memory this file
 * allocates is what moirai_numa_alloc() hands out, through the allocation
 * hook. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <moirai/core/alloc.h>
#include <moirai/core/error.h>
#include <moirai/core/topology.h>
#include <moirai/mem/numa.h>

#include "numa_internal.h"

/* The kernel's policy mode flags (MPOL_F_STATIC_NODES and friends) live
 * above bit 12 of the mode get_mempolicy(2) reports; the mode is below. */
#define KMODE_MASK 0xff

/* Kernel modes newer than some headers. */
#define KMPOL_LOCAL               4
#define KMPOL_PREFERRED_MANY      5
#define KMPOL_WEIGHTED_INTERLEAVE 6

/* Without kernel support the thread's policy is remembered here, so that
 * moirai_numa_policy_get() reports what moirai_numa_policy_set() was told. */
static __thread moirai_numa_policy_t nokernel_policy = MOIRAI_NUMA_POLICY_DEFAULT;

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);

    return p > 0 ? (size_t)p : 4096;
}

/* ---- policies ---- */

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
        if (!moirai__numa_node_valid(nodes[i]))
            return MOIRAI_EINVAL;
    }
    memset(mask, 0, KNODE_WORDS * sizeof(*mask));
    for (int i = 0; i < count; i++) {
        int k = moirai__numa_kernel_knode(nodes[i]);

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

int moirai_numa_policy_set(moirai_numa_policy_t policy, const int *nodes, int count)
{
    unsigned long mask[KNODE_WORDS];
    int rc = policy_mask(policy, nodes, count, mask);
    long r;

    if (rc != 0)
        return rc;
    if (!moirai__numa_kernel_present()) {
        nokernel_policy = policy;
        return 0;
    }
    r = moirai__numa_kernel_set_mempolicy(kernel_mode(policy), count > 0 ? mask : NULL,
                                          count > 0 ? KNODE_BITS + 1 : 0);
    if (r < 0 && errno == EINVAL && policy == MOIRAI_NUMA_POLICY_LOCAL) {
        /* Kernels before 3.8 lack MPOL_LOCAL; "preferred, no node" is
         * their spelling of it. */
        r = moirai__numa_kernel_set_mempolicy(MPOL_PREFERRED, NULL, 0);
    }
    return r < 0 ? -errno : 0;
}

/* Writes the topology nodes named by `mask` into `nodes` (at most
 * `capacity`) and returns how many there are. */
static int nodes_in_mask(const unsigned long *mask, int *nodes, int capacity)
{
    int count = moirai_topology_node_count(), named = 0;

    for (int n = 0; n < count; n++) {
        if (!mask_test(mask, moirai__numa_kernel_knode(n)))
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
    memset(mask, 0, sizeof(mask));
    if (!moirai__numa_kernel_present()) {
        *policy = nokernel_policy;
        if (nokernel_policy == MOIRAI_NUMA_POLICY_DEFAULT ||
            nokernel_policy == MOIRAI_NUMA_POLICY_LOCAL)
            return 0;
        /* Every topology node maps to the one kernel node, node 0. */
        mask[0] = 1;
        return nodes_in_mask(mask, nodes, capacity);
    }
    if (moirai__numa_kernel_get_mempolicy(&kmode, mask, KNODE_BITS, NULL, 0) < 0)
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
    if (!moirai__numa_kernel_present())
        return check_mapped(addr, len, page);
    if (flags & MOIRAI_NUMA_MOVE)
        kflags |= MPOL_MF_MOVE;
    if (flags & MOIRAI_NUMA_STRICT)
        kflags |= MPOL_MF_STRICT;
    r = moirai__numa_kernel_mbind(addr, len, kernel_mode(policy), count > 0 ? mask : NULL,
                                  count > 0 ? KNODE_BITS + 1 : 0, kflags);
    if (r < 0 && errno == EINVAL && policy == MOIRAI_NUMA_POLICY_LOCAL)
        r = moirai__numa_kernel_mbind(addr, len, MPOL_PREFERRED, NULL, 0, kflags);
    return r < 0 ? -errno : 0;
}

/* ---- where a page lives ---- */

/* The kernel node of the page at `page_addr`, or a negative errno. */
static int page_knode(void *page_addr, size_t page)
{
    int status = 0, knode = -1;
    unsigned char vec;

    if (!moirai__numa_kernel_present()) {
        if (mincore(page_addr, page, &vec) != 0)
            return errno == ENOMEM ? (-EFAULT) : -errno;
        return (vec & 1) ? 0 : MOIRAI_ENOENT;
    }
    /* move_pages(2) with no target nodes only reports, and does not fault
     * the page in. */
    if (moirai__numa_kernel_move_pages(1, &page_addr, &status) == 0)
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
    if (moirai__numa_kernel_get_mempolicy(&knode, NULL, 0, page_addr, MPOL_F_NODE | MPOL_F_ADDR) !=
        0)
        return -errno;
    return knode;
}

int moirai_numa_node_of_address(const void *addr)
{
    size_t page = page_size();
    int knode, node;

    if (addr == NULL)
        return MOIRAI_EINVAL;
    knode = page_knode((void *)((uintptr_t)addr & ~(uintptr_t)(page - 1)), page);
    if (knode < 0)
        return knode;
    node = moirai__numa_kernel_topology_node(knode);
    return node >= 0 ? node : MOIRAI_ERANGE;
}

/* ---- allocation on a node ---- */

int moirai_numa_alloc(size_t size, int node, void **out)
{
    size_t page = page_size();
    void *p;
    int rc;

    if (out == NULL || size == 0 || !moirai__numa_node_valid(node))
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
