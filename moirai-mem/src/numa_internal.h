/* NUMA internals shared by numa_kernel.c and numa_place.c (never
 * installed): the kernel's node masks, and the calls through which
 * placement reaches the kernel and its node mapping.
 *
 * NUMA is three files with one purpose each: numa.c answers topology
 * questions from core's topology, numa_kernel.c talks to the kernel (the
 * system calls, the probe of what it offers, the mapping of topology
 * nodes onto kernel nodes), and numa_place.c places memory (thread and
 * range policies, where a page lives, allocation on a node) through it. */
#ifndef MOIRAI_MEM_NUMA_INTERNAL_H
#define MOIRAI_MEM_NUMA_INTERNAL_H

#include <stdbool.h>

#if defined(MOIRAI_HAVE_LIBNUMA)
#include <numaif.h>
#else
#include <linux/mempolicy.h>
#endif

#include <moirai/core/topology.h>

/* Kernel node masks are this many bits: above any kernel's MAX_NUMNODES
 * (1024 at most on the architectures Linux supports), which
 * get_mempolicy(2) requires of its mask. */
#define KNODE_BITS  4096
#define KNODE_WORDS (KNODE_BITS / (8 * sizeof(unsigned long)))
#define WORD_BITS   (8 * sizeof(unsigned long))

/* True if `node` is a topology node. */
static inline bool moirai__numa_node_valid(int node)
{
    return node >= 0 && node < moirai_topology_node_count();
}

/* True if the NUMA system calls work here; probes the kernel on the first
 * call of the process (once, thread-safe). */
bool moirai__numa_kernel_present(void);

/* The kernel node of valid topology node `node` (rules in numa.h); 0 when
 * the kernel has no NUMA support. Probes on first use. */
int moirai__numa_kernel_knode(int node);

/* The lowest topology node mapped to kernel node `knode`, or -1. */
int moirai__numa_kernel_topology_node(int knode);

/* The memory-policy system calls, through libnuma's <numaif.h> wrappers
 * when the build has libnuma and through syscall(2) otherwise. Each
 * returns 0 (or the call's non-negative result) or -1 with errno set, as
 * the C library's wrappers do. move_pages only asks (no target nodes). */
long moirai__numa_kernel_get_mempolicy(int *mode, unsigned long *mask, unsigned long maxnode,
                                       void *addr, unsigned flags);
long moirai__numa_kernel_set_mempolicy(int mode, const unsigned long *mask, unsigned long maxnode);
long moirai__numa_kernel_mbind(void *addr, unsigned long len, int mode, const unsigned long *mask,
                               unsigned long maxnode, unsigned flags);
long moirai__numa_kernel_move_pages(unsigned long count, void **pages, int *status);

#endif /* MOIRAI_MEM_NUMA_INTERNAL_H */
