/* CPU quotas through the kernel's cpu cgroup controller.
 *
 * A quota cgroup limits the threads placed in it to `quota_ns` of CPU time
 * per `period_ns` (CFS bandwidth control): with cgroup v2 through
 * `cpu.max`, with cgroup v1 through `cpu.cfs_quota_us` and
 * `cpu.cfs_period_us`. The controller is found from /proc/self/mountinfo:
 * a v2 hierarchy whose cgroup.controllers lists "cpu" is preferred, else
 * a v1 hierarchy mounted with the cpu controller. Writing needs
 * privilege (or a delegated subtree); without it the calls fail with the
 * kernel's error and change nothing.
 *
 * Note: the kernel refuses SCHED_FIFO / SCHED_RR for threads of a child
 * cpu cgroup without real-time runtime (-EPERM); quotas are for
 * best-effort threads. Within the RT executor, quota groups
 * (moirai_rt_group_create in executor.h) throttle tasks without the kernel. */
#ifndef MOIRAI_RT_QUOTA_H
#define MOIRAI_RT_QUOTA_H

#include <stdint.h>
#include <sys/types.h>

#include <moirai/rt/export.h>

/* A quota cgroup (see above). Opaque; created and destroyed by the functions below. */
typedef struct moirai_rt_quota moirai_rt_quota_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Creates (or reuses) the cgroup `name` (one path component: letters,
 * digits, '-', '_', '.') directly under the cpu controller's root and
 * sets its quota. Blocks on file-system writes. Returns 0; -EINVAL (NULL,
 * a bad name, period_ns below 1 ms or above 1 s, quota_ns below 1 ms);
 * -ENOTSUP (no cpu controller mounted); -ENOMEM; or the negative errno of
 * a refused write (-EACCES, -EPERM, -EROFS). Nothing is left behind on
 * error. */
MOIRAI_RT_API int moirai_rt_quota_create(moirai_rt_quota_t **out, const char *name,
                                         uint64_t quota_ns, uint64_t period_ns);

/* Changes the quota. Returns 0, -EINVAL or the errno of the write. */
MOIRAI_RT_API int moirai_rt_quota_set(moirai_rt_quota_t *quota, uint64_t quota_ns,
                                      uint64_t period_ns);

/* Moves thread `tid` (0: the caller) into the cgroup (v1: its `tasks`
 * file; v2: `cgroup.threads`, create having made the cgroup threaded; a
 * kernel that refuses that is reported, never worked around by moving
 * the whole process). Returns 0, -EINVAL or the errno of the write
 * (-ESRCH for no such thread, -EOPNOTSUPP on a v2 domain cgroup). */
MOIRAI_RT_API int moirai_rt_quota_attach_thread(moirai_rt_quota_t *quota, pid_t tid);

/* Moves thread `tid` (0: the caller) back to the root cgroup. */
MOIRAI_RT_API int moirai_rt_quota_detach_thread(moirai_rt_quota_t *quota, pid_t tid);

/* 1 or 2: which cgroup version the quota uses; -EINVAL for NULL. */
MOIRAI_RT_API int moirai_rt_quota_version(const moirai_rt_quota_t *quota);

/* The cgroup's directory. Valid until destroy. */
MOIRAI_RT_API const char *moirai_rt_quota_path(const moirai_rt_quota_t *quota);

/* The cgroup's bandwidth counters from cpu.stat (both versions): CFS
 * periods that elapsed with its threads runnable, and those in which the
 * quota ran out. Returns 0, -EINVAL, -ENOTSUP (no such counters) or the
 * errno of the read. */
MOIRAI_RT_API int moirai_rt_quota_throttled(const moirai_rt_quota_t *quota, uint64_t *periods,
                                            uint64_t *throttled);

/* Moves every thread of the cgroup back to the root, removes the
 * directory if this call created it, and frees. Returns 0, -EINVAL or
 * the errno of rmdir (the object is freed either way). */
MOIRAI_RT_API int moirai_rt_quota_destroy(moirai_rt_quota_t *quota);

#ifdef __cplusplus
}
#endif

#endif
