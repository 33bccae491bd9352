/* Operating-system scheduling policies for real-time threads.
 *
 * Linux runs a thread under SCHED_OTHER (fair share) unless asked for
 * SCHED_FIFO or SCHED_RR (fixed priorities 1..99, above every SCHED_OTHER
 * thread) or SCHED_DEADLINE (the kernel's own EDF with a runtime per
 * period, admitted by the kernel). All three need privilege
 * (CAP_SYS_NICE, or RLIMIT_RTPRIO for FIFO/RR) and may be refused inside
 * a container or a cpu cgroup without real-time runtime.
 *
 * The fallback, always the same: a thread whose policy cannot be applied
 * keeps running under SCHED_OTHER, and its status says what was asked,
 * what was refused and why; a caller that cannot accept that asks for
 * `required` and gets the error instead. Nothing is retried behind the
 * user's back. */
#ifndef MOIRAI_RT_OS_H
#define MOIRAI_RT_OS_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/rt/export.h>

/* A Linux scheduling policy Moirai can ask for a thread. */
typedef enum moirai_rt_os_policy {
    MOIRAI_RT_OS_NONE = 0,     /* leave the thread as it is (SCHED_OTHER) */
    MOIRAI_RT_OS_FIFO = 1,     /* SCHED_FIFO at `priority` */
    MOIRAI_RT_OS_RR = 2,       /* SCHED_RR at `priority` */
    MOIRAI_RT_OS_DEADLINE = 3, /* SCHED_DEADLINE with runtime / deadline / period */
} moirai_rt_os_policy_t;

/* What to ask for. Zero fields are defaults. */
typedef struct moirai_rt_os_request {
    moirai_rt_os_policy_t policy; /* the policy to apply; NONE */
    int priority;                 /* FIFO/RR 1..99; 0: 50 */
    uint64_t runtime_ns;          /* DEADLINE; 0: 5 ms */
    uint64_t deadline_ns;         /* DEADLINE; 0: the period */
    uint64_t period_ns;           /* DEADLINE; 0: 10 ms */
} moirai_rt_os_request_t;

/* What happened. */
typedef struct moirai_rt_os_status {
    moirai_rt_os_policy_t requested; /* the policy the request asked for */
    moirai_rt_os_policy_t applied;   /* what the thread runs under now (NONE: SCHED_OTHER) */
    int error;                       /* 0, or the negative errno that refused the request */
    char reason[256];                /* one sentence: what was applied, or why not */
} moirai_rt_os_status_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Zeroes `*req`. */
MOIRAI_RT_API void moirai_rt_os_request_init(moirai_rt_os_request_t *req);

/* Applies `req` (NULL: NONE) to the calling thread and describes the
 * outcome in `*status` (optional). Never blocks. Returns 0 when applied
 * (or NONE), -EINVAL (priority or times out of range: runtime 0 < r <=
 * deadline <= period, runtime >= 1 us), -EPERM (not permitted: the
 * thread keeps its policy), -EBUSY (the kernel's deadline admission
 * refused), or another negative errno from the kernel. */
MOIRAI_RT_API int moirai_rt_os_apply(const moirai_rt_os_request_t *req,
                                     moirai_rt_os_status_t *status);

/* The policy the calling thread runs under now. */
MOIRAI_RT_API moirai_rt_os_policy_t moirai_rt_os_current(void);

/* "none", "fifo", "rr", "deadline" or "unknown". */
MOIRAI_RT_API const char *moirai_rt_os_policy_name(moirai_rt_os_policy_t policy);

#ifdef __cplusplus
}
#endif

#endif
