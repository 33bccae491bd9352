/* NUMA, the kernel's side: the memory-policy system calls, the probe of
 * what the kernel offers (once per process, kept in static tables), and
 * the mapping of topology nodes onto the kernel nodes the process may use
 * (the rules are in numa.h).
 *
 * Separate from numa_place.c because this is where the build's two ways
 * to reach the kernel (libnuma's <numaif.h> wrappers, or syscall(2)) and
 * the probe's state live; placement only asks through numa_internal.h.
 * Nothing here allocates. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(MOIRAI_HAVE_LIBNUMA)
#include <numa.h>
#endif

#include <moirai/core/error.h>
#include <moirai/core/topology.h>
#include <moirai/mem/numa.h>

#include "numa_internal.h"

/* CPUs whose kernel node is remembered; a CPU above this is treated as
 * one whose node is unknown (the round-robin rule then places it). */
#define CPU_TABLE 8192

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

/* ---- system calls ---- */

/* See numa_internal.h. */
long moirai__numa_kernel_get_mempolicy(int *mode, unsigned long *mask, unsigned long maxnode,
                                       void *addr, unsigned flags)
{
#if defined(MOIRAI_HAVE_LIBNUMA)
    return get_mempolicy(mode, mask, maxnode, addr, flags);
#else
    return syscall(SYS_get_mempolicy, mode, mask, maxnode, addr, (unsigned long)flags);
#endif
}

long moirai__numa_kernel_set_mempolicy(int mode, const unsigned long *mask, unsigned long maxnode)
{
#if defined(MOIRAI_HAVE_LIBNUMA)
    return set_mempolicy(mode, mask, maxnode);
#else
    return syscall(SYS_set_mempolicy, mode, mask, maxnode);
#endif
}

long moirai__numa_kernel_mbind(void *addr, unsigned long len, int mode, const unsigned long *mask,
                               unsigned long maxnode, unsigned flags)
{
#if defined(MOIRAI_HAVE_LIBNUMA)
    return mbind(addr, len, mode, mask, maxnode, flags);
#else
    return syscall(SYS_mbind, addr, len, mode, mask, maxnode, (unsigned long)flags);
#endif
}

long moirai__numa_kernel_move_pages(unsigned long count, void **pages, int *status)
{
#if defined(MOIRAI_HAVE_LIBNUMA)
    return move_pages(0, count, pages, NULL, status, 0);
#else
    return syscall(SYS_move_pages, 0, count, pages, NULL, status, 0);
#endif
}

/* ---- probing ---- */

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
    kinfo.kernel =
        numa_available() >= 0 && moirai__numa_kernel_get_mempolicy(NULL, NULL, 0, NULL, 0) == 0;
#else
    kinfo.kernel = moirai__numa_kernel_get_mempolicy(NULL, NULL, 0, NULL, 0) == 0;
#endif
    if (!kinfo.kernel)
        return;

    /* The nodes our cpuset lets us allocate on. */
    memset(mask, 0, sizeof(mask));
    if (moirai__numa_kernel_get_mempolicy(NULL, mask, KNODE_BITS, NULL, MPOL_F_MEMS_ALLOWED) == 0) {
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

bool moirai__numa_kernel_present(void)
{
    ensure_probed();
    return kinfo.kernel;
}

bool moirai_numa_available(void)
{
    return moirai__numa_kernel_present();
}

/* ---- topology nodes <-> kernel nodes ---- */

/* The kernel node for a valid topology node (rules in numa.h). */
int moirai__numa_kernel_knode(int node)
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
    if (!moirai__numa_node_valid(node))
        return MOIRAI_EINVAL;
    return moirai__numa_kernel_knode(node);
}

/* The lowest topology node mapped to kernel node `knode`, or -1. */
int moirai__numa_kernel_topology_node(int knode)
{
    int count = moirai_topology_node_count();

    for (int n = 0; n < count; n++) {
        if (moirai__numa_kernel_knode(n) == knode)
            return n;
    }
    return -1;
}
