/* Per-thread CPU time and process resident set size. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <moirai/core/error.h>
#include <moirai/core/metrics.h>

#include "metrics_internal.h"

int moirai_metrics_thread_cpu_ns(uint64_t *out)
{
    struct timespec ts;

    if (out == NULL)
        return MOIRAI_EINVAL;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return -errno;
    *out = (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
    return 0;
}

/* Parses one "Name:   1234 kB" line if it names `field`. Returns true and
 * sets `*bytes` when it does and the value is well formed. */
static bool parse_kb_field(const char *line, const char *field, uint64_t *bytes)
{
    size_t len = strlen(field);
    const char *p;
    char *end;
    unsigned long long kb;

    if (strncmp(line, field, len) != 0 || line[len] != ':')
        return false;
    p = line + len + 1;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p < '0' || *p > '9')
        return false;
    errno = 0;
    kb = strtoull(p, &end, 10);
    if (errno != 0 || kb > UINT64_MAX / 1024)
        return false;
    while (*end == ' ' || *end == '\t')
        end++;
    if (strcmp(end, "kB") != 0)
        return false;
    *bytes = (uint64_t)kb * 1024;
    return true;
}

int moirai__metrics_rss_read(const char *path, moirai_rss_t *out)
{
    /* The status file is read in chunks through a fixed buffer, line by
     * line, so its length does not matter and nothing is allocated. A
     * line longer than the buffer cannot be one of ours and is skipped. */
    char buf[1024];
    size_t used = 0;
    bool skipping = false;
    bool have_rss = false, have_hwm = false;
    uint64_t rss = 0, hwm = 0;
    int fd;

    if (path == NULL || out == NULL)
        return MOIRAI_EINVAL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return MOIRAI_ENOSYS;

    for (;;) {
        ssize_t n = read(fd, buf + used, sizeof(buf) - 1 - used);
        char *line, *nl;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return MOIRAI_EIO;
        }
        if (n == 0) {
            /* A last line without a newline still counts. */
            if (used > 0 && !skipping) {
                buf[used] = '\0';
                have_rss = have_rss || parse_kb_field(buf, "VmRSS", &rss);
                have_hwm = have_hwm || parse_kb_field(buf, "VmHWM", &hwm);
            }
            break;
        }
        used += (size_t)n;
        buf[used] = '\0';

        line = buf;
        while ((nl = memchr(line, '\n', used - (size_t)(line - buf))) != NULL) {
            *nl = '\0';
            if (!skipping) {
                have_rss = have_rss || parse_kb_field(line, "VmRSS", &rss);
                have_hwm = have_hwm || parse_kb_field(line, "VmHWM", &hwm);
            }
            skipping = false;
            line = nl + 1;
        }
        used -= (size_t)(line - buf);
        memmove(buf, line, used);
        if (used == sizeof(buf) - 1) {
            /* The buffer holds part of an overlong line: drop it and
             * ignore the rest of that line. */
            used = 0;
            skipping = true;
        }
    }
    close(fd);

    if (!have_rss || !have_hwm)
        return MOIRAI_ENOSYS;
    out->current_bytes = rss;
    out->peak_bytes = hwm;
    return 0;
}

int moirai_metrics_rss(moirai_rss_t *out)
{
    return moirai__metrics_rss_read("/proc/self/status", out);
}
