/* NUMA: nodes, distances, memory policies and allocation on a node.
 *
 * Two views of the machine meet here.
 *
 * The *topology* view comes from moirai-core's topology (see
 * moirai/core/topology.h): node count, the node of a CPU, node distances,
 * the node of the calling CPU. Nodes are core's dense indices 0 ..
 * moirai_numa_node_count() - 1. When a test injects a synthetic topology,
 * every topology answer here follows it, so code that places work by
 * locality can be tested for 2- and 4-node machines on a 1-node one.
 *
 * The *kernel* view is where memory really goes: memory policies
 * (set_mempolicy, mbind) and the node a page lives on (move_pages,
 * get_mempolicy). The kernel must only ever be given nodes that exist, so
 * every topology node is mapped to a kernel node (moirai_numa_kernel_node()):
 *
 *   - for a topology read from sysfs, the kernel node of the node's first
 *     CPU, when that CPU exists on this machine and the process may
 *     allocate on its node;
 *   - otherwise (a synthetic topology, a CPU this machine does not have, a
 *     node the process's cpuset excludes), the nodes the process may
 *     allocate on, taken round-robin: topology node i maps to the
 *     (i mod m)-th of those m kernel nodes in increasing order.
 *
 * On a real NUMA machine with the detected topology this is the identity
 * (up to the kernel's own node numbering). On a synthetic 4-node topology
 * on a 1-node machine every node maps to kernel node 0: placement requests
 * then run the real kernel calls with node 0, so the code paths are
 * exercised, and answers that come back from the kernel (the node of an
 * address, the nodes of a policy) are mapped back to topology nodes.
 *
 * Where the kernel calls come from: with libnuma (the `numa` build
 * feature, MOIRAI_HAVE_LIBNUMA) through its <numaif.h> system-call
 * wrappers; without it through syscall(2) directly. libnuma's higher layer
 * (numa_alloc_onnode, the bitmask API) is deliberately not used: it
 * allocates with the C library's malloc, outside Moirai's allocation hook,
 * and exits the process when a bitmask allocation fails.
 *
 * Without kernel NUMA support (a kernel without CONFIG_NUMA, or a seccomp
 * profile that denies the NUMA system calls; see moirai_numa_available())
 * the API presents one kernel node: policies are validated and remembered
 * for the calling thread but change nothing (a new thread starts from the
 * default then, where the kernel would have copied its creator's policy), allocation on any node is
 * plain page allocation, and every resident page is on topology node 0.
 * Nothing in this header needs libnuma to work.
 *
 * Thread-safety: every function is thread-safe, but the topology answers
 * follow moirai/core/topology.h: do not inject or reload a topology while
 * another thread calls into this header. No function blocks beyond the
 * system calls it makes. Errors are negative errno values. */
#ifndef MOIRAI_MEM_NUMA_H
#define MOIRAI_MEM_NUMA_H

#include <stdbool.h>
#include <stddef.h>

#include <moirai/mem/export.h>

/* A memory policy (see set_mempolicy(2)). The values are Moirai's own,
 * not the kernel's MPOL_* numbers. */
typedef enum moirai_numa_policy {
    /* Fall back to the next wider policy: for a thread the process
     * default (normally local allocation), for a range the thread's. Takes
     * no nodes. */
    MOIRAI_NUMA_POLICY_DEFAULT = 0,
    /* Allocate only on the given nodes; fail (and possibly invoke the OOM
     * killer) rather than use another node. */
    MOIRAI_NUMA_POLICY_BIND = 1,
    /* Allocate on the one given node while it has free memory, elsewhere
     * after that. Takes exactly one node. */
    MOIRAI_NUMA_POLICY_PREFERRED = 2,
    /* Spread pages round-robin over the given nodes. */
    MOIRAI_NUMA_POLICY_INTERLEAVE = 3,
    /* Allocate on the node of the CPU that touches the page first. Takes
     * no nodes. */
    MOIRAI_NUMA_POLICY_LOCAL = 4,
} moirai_numa_policy_t;

/* Flags for moirai_numa_range_policy_set(). */
enum {
    /* Also migrate pages of the range that are already resident and used
     * only by this process, so they conform to the new policy (MPOL_MF_MOVE). */
    MOIRAI_NUMA_MOVE = 1u << 0,
    /* Fail with -EIO if resident pages do not conform to the policy after
     * the call (MPOL_MF_STRICT). */
    MOIRAI_NUMA_STRICT = 1u << 1,
};

#ifdef __cplusplus
extern "C" {
#endif

/* True when placement requests reach the kernel: the NUMA system calls
 * exist and are permitted. False on a kernel without NUMA support or under
 * a seccomp profile that denies get_mempolicy(2); the API then presents
 * one kernel node (see above). Probed once per process; never blocks
 * after the first call. */
MOIRAI_MEM_API bool moirai_numa_available(void);

/* Number of nodes in the topology; at least 1. */
MOIRAI_MEM_API int moirai_numa_node_count(void);

/* The node of the CPU the caller is running on right now (the thread may
 * move at any time, so treat it as a hint). Under a synthetic topology the
 * real CPU is mapped onto the synthetic CPUs as core's
 * moirai_topology_current_cpu() documents. Never fails: when the kernel
 * cannot tell the CPU, returns 0. */
MOIRAI_MEM_API int moirai_numa_current_node(void);

/* The node of the CPU the kernel numbers `cpu`. Returns the node, -EINVAL
 * for a negative `cpu`, or -ENOENT if the topology has no such CPU. */
MOIRAI_MEM_API int moirai_numa_node_of_cpu(int cpu);

/* The distance between nodes `a` and `b` (ACPI SLIT scale: 10 is local).
 * Returns the distance, or -EINVAL for a node out of range. */
MOIRAI_MEM_API int moirai_numa_distance(int a, int b);

/* Writes the nodes in the order a thread on node `from` should fall back
 * to them: `from` first, then the others by increasing distance from it,
 * ties broken by lower node index. At most `capacity` entries are written
 * (the nearest ones). Returns the number of nodes (which may exceed
 * `capacity`, as snprintf does), or -EINVAL for a node out of range, a
 * negative capacity, or NULL `order` with a non-zero capacity. Allocates
 * nothing. */
MOIRAI_MEM_API int moirai_numa_nodes_by_distance(int from, int *order, int capacity);

/* The kernel node that placement requests for topology node `node` are
 * given (see the mapping above). Returns the kernel node (0 when the
 * kernel has no NUMA support), or -EINVAL for a node out of range. */
MOIRAI_MEM_API int moirai_numa_kernel_node(int node);

/* The topology node the page containing `addr` lives on. The page is not
 * faulted in. Returns the node (when several topology nodes map to the
 * page's kernel node, the lowest of them), -EINVAL for NULL, -EFAULT if
 * the address is not mapped, -ENOENT if the page has no memory yet
 * (never touched), or -ERANGE if the page is on a kernel node that no
 * topology node maps to (a memory-only node, say). Without kernel NUMA
 * support a resident page is on node 0. */
MOIRAI_MEM_API int moirai_numa_node_of_address(const void *addr);

/* Sets the calling thread's memory policy: it governs the thread's future
 * page allocations that no range policy covers. `nodes` holds `count`
 * topology nodes (duplicates are fine): none for DEFAULT and LOCAL,
 * exactly one for PREFERRED, at least one for BIND and INTERLEAVE. The
 * nodes are mapped to kernel nodes as described above. Returns 0,
 * -EINVAL for an unknown policy, a node out of range, NULL `nodes` with a
 * non-zero count, or a node count the policy does not take, or another
 * negative errno the kernel reports (the policy is then unchanged). */
MOIRAI_MEM_API int moirai_numa_policy_set(moirai_numa_policy_t policy, const int *nodes, int count);

/* Reads the calling thread's memory policy into `*policy` and the
 * topology nodes it names into `nodes`: every node whose kernel node is in
 * the policy's kernel node set, in increasing order, at most `capacity` of
 * them (so a synthetic topology whose nodes share one kernel node reports
 * all of them). DEFAULT and LOCAL name no nodes. Returns the number of
 * nodes named (which may exceed `capacity`), -EINVAL for NULL `policy`, a
 * negative capacity or NULL `nodes` with a non-zero capacity, -ENOTSUP if
 * the kernel reports a policy mode this header has no name for, or
 * another negative errno from the kernel. */
MOIRAI_MEM_API int moirai_numa_policy_get(moirai_numa_policy_t *policy, int *nodes, int capacity);

/* Sets the memory policy of the pages in [addr, addr + len) (mbind(2)):
 * `addr` must be page-aligned, `len` is rounded up to whole pages. Nodes
 * as for moirai_numa_policy_set(); `flags` is 0 or a combination of
 * MOIRAI_NUMA_MOVE and MOIRAI_NUMA_STRICT. The policy applies to pages
 * faulted in later, and with MOIRAI_NUMA_MOVE to resident ones too.
 * Returns 0, -EINVAL for a misaligned address, a zero length, a range
 * that wraps around, unknown flags or the node errors of
 * moirai_numa_policy_set(), -EFAULT if part of the range is not mapped,
 * -EIO under MOIRAI_NUMA_STRICT when resident pages do not conform, or
 * another negative errno from the kernel. */
MOIRAI_MEM_API int moirai_numa_range_policy_set(void *addr, size_t len, moirai_numa_policy_t policy,
                                                const int *nodes, int count, unsigned flags);

/* Allocates `size` bytes, rounded up to whole pages and page-aligned, and
 * binds them to topology node `node` (MOIRAI_NUMA_POLICY_BIND to its
 * kernel node, moving any page the allocator had already touched). The
 * block comes from the allocation hook (moirai_aligned_alloc()); because
 * it is whole pages, the policy covers this block and nothing else. Its
 * contents are unspecified. Release it with moirai_numa_free() and the
 * same size. Returns 0 with `*out` set, -EINVAL for NULL `out`, a zero
 * size or a node out of range, -ENOMEM when the allocator fails (or the
 * rounded size does not fit in size_t), or another negative errno the
 * kernel reports for the policy (nothing is allocated then). */
MOIRAI_MEM_API int moirai_numa_alloc(size_t size, int node, void **out);

/* Releases memory from moirai_numa_alloc(); `size` must be the size that
 * was requested. The range's policy is reset to the default first, so the
 * pages carry no binding back into the allocator. NULL does nothing.
 * Passing anything else is a bug, as for free(). Thread-safe. */
MOIRAI_MEM_API void moirai_numa_free(void *ptr, size_t size);

#ifdef __cplusplus
}
#endif

#endif
