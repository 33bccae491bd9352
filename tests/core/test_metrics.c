/* Thread CPU time and resident set size. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <moirai/core/clock.h>
#include <moirai/core/error.h>
#include <moirai/core/metrics.h>

#include "../../moirai-core/src/metrics_internal.h"

static volatile uint64_t sink;

/* Spins until this thread has used `ns` of CPU time. */
static void burn_cpu(uint64_t ns)
{
    struct timespec ts;
    uint64_t start, now, x = 1;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    start = (uint64_t)ts.tv_sec * MOIRAI_NS_PER_S + (uint64_t)ts.tv_nsec;
    do {
        for (int i = 0; i < 10000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        now = (uint64_t)ts.tv_sec * MOIRAI_NS_PER_S + (uint64_t)ts.tv_nsec;
    } while (now - start < ns);
    sink = x;
}

Test(metrics, thread_cpu_time_grows_with_work, .timeout = 30)
{
    uint64_t before, after;

    cr_assert_eq(moirai_metrics_thread_cpu_ns(&before), 0);
    burn_cpu(20 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_metrics_thread_cpu_ns(&after), 0);
    /* burn_cpu returned only after the kernel counted 20 ms for us. */
    cr_assert_geq(after - before, 20 * MOIRAI_NS_PER_MS);
}

Test(metrics, thread_cpu_time_does_not_count_sleep, .timeout = 30)
{
    struct timespec nap = {0, 50 * 1000 * 1000};
    uint64_t before, after, wall0, wall1;

    cr_assert_eq(moirai_metrics_thread_cpu_ns(&before), 0);
    wall0 = moirai_clock_now_ns();
    nanosleep(&nap, NULL);
    wall1 = moirai_clock_now_ns();
    cr_assert_eq(moirai_metrics_thread_cpu_ns(&after), 0);
    cr_assert_geq(after, before);
    /* A thread cannot run on a CPU for the whole of an interval it spent
     * asleep, so its CPU time must fall short of the wall time. */
    cr_assert_lt(after - before, wall1 - wall0);
}

static void *burn_thread(void *arg)
{
    uint64_t *out = arg;

    burn_cpu(30 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_metrics_thread_cpu_ns(out), 0);
    return NULL;
}

Test(metrics, thread_cpu_time_is_per_thread, .timeout = 30)
{
    uint64_t before, after, other = 0;
    pthread_t th;

    cr_assert_eq(moirai_metrics_thread_cpu_ns(&before), 0);
    cr_assert_eq(pthread_create(&th, NULL, burn_thread, &other), 0);
    /* pthread_join blocks on a futex, so this thread spends next to no
     * CPU while the other one burns at least 30 ms of its own. A process
     * clock would count those 30 ms here as well. */
    pthread_join(th, NULL);
    cr_assert_eq(moirai_metrics_thread_cpu_ns(&after), 0);
    cr_assert_geq(other, 30 * MOIRAI_NS_PER_MS);
    cr_assert_lt(after - before, other);
}

Test(metrics, null_arguments_are_rejected, .timeout = 10)
{
    moirai_rss_t r;

    cr_assert_eq(moirai_metrics_thread_cpu_ns(NULL), MOIRAI_EINVAL);
    cr_assert_eq(moirai_metrics_rss(NULL), MOIRAI_EINVAL);
    cr_assert_eq(moirai__metrics_rss_read(NULL, &r), MOIRAI_EINVAL);
    cr_assert_eq(moirai__metrics_rss_read("/proc/self/status", NULL), MOIRAI_EINVAL);
}

Test(metrics, rss_peak_at_least_current, .timeout = 10)
{
    moirai_rss_t r;

    cr_assert_eq(moirai_metrics_rss(&r), 0);
    cr_assert_gt(r.current_bytes, 0);
    cr_assert_geq(r.peak_bytes, r.current_bytes);
    cr_assert_eq(r.current_bytes % 1024, 0, "kB were converted to bytes");
}

Test(metrics, rss_grows_after_touching_64_mib, .timeout = 30)
{
    const size_t size = 64u << 20;
    moirai_rss_t before, after;
    unsigned char *p;

    /* mmap rather than malloc, so that no allocator (ASan's included) can
     * satisfy the request from memory that is already resident. */
    cr_assert_eq(moirai_metrics_rss(&before), 0);
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(p, MAP_FAILED);
    memset(p, 1, size);
    cr_assert_eq(moirai_metrics_rss(&after), 0);
    sink = p[size / 2];
    munmap(p, size);

    /* Every page of the 64 MiB is resident (the machine does not swap
     * them out within the test), so the set holds at least that much and
     * has grown; the peak saw it too. */
    cr_assert_geq(after.current_bytes, size);
    cr_assert_gt(after.current_bytes, before.current_bytes);
    cr_assert_geq(after.peak_bytes, after.current_bytes);
    cr_assert_geq(after.peak_bytes, before.peak_bytes);
}

/* Writes `text` to a fresh temporary file and returns its path. */
static void write_status(char *path, const char *text)
{
    int fd;

    strcpy(path, "/tmp/moirai-status-XXXXXX");
    fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

Test(metrics, parser_reads_both_fields, .timeout = 10)
{
    char path[64], big[8192];
    moirai_rss_t r;

    write_status(path, "Name:\tx\nVmPeak:\t  999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\n"
                       "Threads:\t1\n");
    cr_assert_eq(moirai__metrics_rss_read(path, &r), 0);
    cr_assert_eq(r.current_bytes, 1024 * 1024);
    cr_assert_eq(r.peak_bytes, 2048 * 1024);
    unlink(path);

    /* A last line without a newline, behind a line longer than the
     * parser's buffer that mentions the field names. */
    memset(big, 'a', sizeof(big));
    memcpy(big, "Groups:\tVmRSS: 5 kB ", 20);
    big[4000] = '\n';
    snprintf(big + 4001, sizeof(big) - 4001, "VmRSS:\t7 kB\nVmHWM:\t9 kB");
    write_status(path, big);
    cr_assert_eq(moirai__metrics_rss_read(path, &r), 0);
    cr_assert_eq(r.current_bytes, 7 * 1024);
    cr_assert_eq(r.peak_bytes, 9 * 1024);
    unlink(path);
}

Test(metrics, missing_file_or_fields_is_enosys, .timeout = 10)
{
    const moirai_rss_t untouched = {11, 22};
    moirai_rss_t r = untouched;
    char path[64];

    cr_assert_eq(moirai__metrics_rss_read("/nonexistent/proc/self/status", &r), MOIRAI_ENOSYS);
    write_status(path, "Name:\tx\nVmRSS:\t1024 kB\n");
    cr_assert_eq(moirai__metrics_rss_read(path, &r), MOIRAI_ENOSYS, "VmHWM missing");
    unlink(path);
    write_status(path, "VmHWM:\t1024 kB\nVmRSS:\t12 MB\n");
    cr_assert_eq(moirai__metrics_rss_read(path, &r), MOIRAI_ENOSYS, "unknown unit");
    unlink(path);
    write_status(path, "");
    cr_assert_eq(moirai__metrics_rss_read(path, &r), MOIRAI_ENOSYS, "empty file");
    unlink(path);
    cr_assert_eq(r.current_bytes, untouched.current_bytes, "output written on failure");
    cr_assert_eq(r.peak_bytes, untouched.peak_bytes);
}

Test(metrics, read_error_is_eio, .timeout = 10)
{
    moirai_rss_t r = {11, 22};

    /* A directory opens but cannot be read (EISDIR). */
    cr_assert_eq(moirai__metrics_rss_read("/", &r), MOIRAI_EIO);
    cr_assert_eq(r.current_bytes, 11);
}
