/* OS scheduling policies through sched_setattr(2), which covers FIFO, RR
 * and DEADLINE with one call. glibc 2.36 has no wrapper, so the system
 * call is made directly with the kernel's struct sched_attr. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <moirai/rt/os.h>

#ifndef SCHED_DEADLINE
#define SCHED_DEADLINE 6
#endif

/* The kernel's struct sched_attr (SCHED_ATTR_SIZE_VER0, 48 bytes). */
struct rt_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
};

void moirai_rt_os_request_init(moirai_rt_os_request_t *req)
{
    if (req)
        memset(req, 0, sizeof(*req));
}

const char *moirai_rt_os_policy_name(moirai_rt_os_policy_t policy)
{
    switch (policy) {
    case MOIRAI_RT_OS_NONE:
        return "none";
    case MOIRAI_RT_OS_FIFO:
        return "fifo";
    case MOIRAI_RT_OS_RR:
        return "rr";
    case MOIRAI_RT_OS_DEADLINE:
        return "deadline";
    }
    return "unknown";
}

moirai_rt_os_policy_t moirai_rt_os_current(void)
{
    switch (sched_getscheduler(0)) {
    case SCHED_FIFO:
        return MOIRAI_RT_OS_FIFO;
    case SCHED_RR:
        return MOIRAI_RT_OS_RR;
    case SCHED_DEADLINE:
        return MOIRAI_RT_OS_DEADLINE;
    default:
        return MOIRAI_RT_OS_NONE;
    }
}

static int fill_status(moirai_rt_os_status_t *st, moirai_rt_os_policy_t requested, int error,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#include <stdarg.h>
static int fill_status(moirai_rt_os_status_t *st, moirai_rt_os_policy_t requested, int error,
                       const char *fmt, ...)
{
    if (st) {
        st->requested = requested;
        st->applied = moirai_rt_os_current();
        st->error = error;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(st->reason, sizeof(st->reason), fmt, ap);
        va_end(ap);
    }
    return error;
}

int moirai_rt_os_apply(const moirai_rt_os_request_t *req, moirai_rt_os_status_t *status)
{
    moirai_rt_os_request_t r;
    moirai_rt_os_request_init(&r);
    if (req)
        r = *req;
    if (r.policy == MOIRAI_RT_OS_NONE)
        return fill_status(status, r.policy, 0, "no OS policy requested: SCHED_OTHER");
    struct rt_sched_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    switch (r.policy) {
    case MOIRAI_RT_OS_FIFO:
    case MOIRAI_RT_OS_RR: {
        int prio = r.priority ? r.priority : 50;
        if (prio < 1 || prio > 99)
            return fill_status(status, r.policy, -EINVAL, "priority %d is outside 1..99", prio);
        attr.sched_policy = r.policy == MOIRAI_RT_OS_FIFO ? SCHED_FIFO : SCHED_RR;
        attr.sched_priority = (uint32_t)prio;
        break;
    }
    case MOIRAI_RT_OS_DEADLINE: {
        uint64_t period = r.period_ns ? r.period_ns : 10000000u;
        uint64_t runtime = r.runtime_ns ? r.runtime_ns : 5000000u;
        uint64_t deadline = r.deadline_ns ? r.deadline_ns : period;
        if (runtime < 1000 || runtime > deadline || deadline > period)
            return fill_status(status, r.policy, -EINVAL,
                               "SCHED_DEADLINE needs 1 us <= runtime <= deadline <= period");
        attr.sched_policy = SCHED_DEADLINE;
        attr.sched_runtime = runtime;
        attr.sched_deadline = deadline;
        attr.sched_period = period;
        break;
    }
    default:
        return fill_status(status, r.policy, -EINVAL, "unknown OS policy %d", (int)r.policy);
    }
    if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) {
        int e = errno;
        const char *why = e == EPERM   ? "not permitted (needs CAP_SYS_NICE or RLIMIT_RTPRIO; a "
                                         "container or a cpu cgroup without RT runtime refuses "
                                         "it; SCHED_DEADLINE also refuses a narrowed affinity)"
                          : e == EBUSY ? "the kernel's deadline admission refused the bandwidth"
                                       : strerror(e);
        return fill_status(status, r.policy, -e, "SCHED_%s refused: %s; running under SCHED_OTHER",
                           r.policy == MOIRAI_RT_OS_FIFO ? "FIFO"
                           : r.policy == MOIRAI_RT_OS_RR ? "RR"
                                                         : "DEADLINE",
                           why);
    }
    return fill_status(status, r.policy, 0, "SCHED_%s applied",
                       r.policy == MOIRAI_RT_OS_FIFO ? "FIFO"
                       : r.policy == MOIRAI_RT_OS_RR ? "RR"
                                                     : "DEADLINE");
}
