/* Metrics: CPU time of the calling thread and the process's resident set. */
#ifndef MOIRAI_CORE_METRICS_H
#define MOIRAI_CORE_METRICS_H

#include <stdint.h>

#include <moirai/core/export.h>

/* The process's resident set size, as moirai_metrics_rss() reports it. */
typedef struct moirai_rss {
    uint64_t current_bytes; /* resident set now (VmRSS) */
    uint64_t peak_bytes;    /* highest resident set so far (VmHWM) */
} moirai_rss_t;

#ifdef __cplusplus
extern "C" {
#endif

/* CPU time consumed by the calling thread, in nanoseconds
 * (CLOCK_THREAD_CPUTIME_ID): user plus system time, not time spent parked.
 * Never blocks; thread-safe. Returns 0, or -EINVAL if `out` is NULL, or the
 * negated errno of clock_gettime(). */
MOIRAI_CORE_API int moirai_metrics_thread_cpu_ns(uint64_t *out);

/* The process's current and peak resident set size, read from
 * /proc/self/status. Reads a file (does not block on other threads);
 * thread-safe. Returns 0, -EINVAL if `out` is NULL, -ENOSYS if /proc is not
 * mounted or lacks the fields, or -EIO on a read error. */
MOIRAI_CORE_API int moirai_metrics_rss(moirai_rss_t *out);

#ifdef __cplusplus
}
#endif

#endif
