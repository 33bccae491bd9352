/* Internal interface of metrics.c. Not exported: tests/core compiles
 * metrics.c into test_core_metrics to reach the error paths of the /proc
 * parser with a file of its choosing. */
#ifndef MOIRAI_CORE_METRICS_INTERNAL_H
#define MOIRAI_CORE_METRICS_INTERNAL_H

#include <moirai/core/metrics.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Reads VmRSS and VmHWM from the status file at `path` (normally
 * "/proc/self/status") into `*out`, converting kB to bytes. Returns 0,
 * -EINVAL if an argument is NULL, -ENOSYS if the file cannot be opened or
 * lacks either field (or gives it in a unit other than kB), or -EIO if
 * reading fails. Thread-safe; `*out` is written only on success. */
int moirai__metrics_rss_read(const char *path, moirai_rss_t *out);

#ifdef __cplusplus
}
#endif

#endif
