/* Scheduler dumps (moirai/sched/dump.h): a 1-worker pool with a task
 * named "stuck_task" blocked on a flag the test controls, the watchdog on
 * and a known number of tasks queued behind it, dumps a report that names
 * the task, flags the worker as stuck and counts the queue exactly; with
 * backtraces, the stuck worker's frames show where it waits (or, under a
 * sanitizer that delays signals over system calls, say why not), and a
 * worker dumping its own scheduler gets its own frames; an idle pool reads
 * parked; without the watchdog a busy worker reads "active"; a handler the
 * process installed for the dump signal is left alone; bad arguments,
 * a failing FILE, a dump during destroy and a dump after destroy give
 * their errors. Reports go to open_memstream() and are parsed back.
 *
 * Tasks never call Criterion's asserts (they run on worker threads). Every
 * wait is bounded by the test's Meson timeout. */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <moirai/core/clock.h>
#include <moirai/core/log.h>
#include <moirai/sched.h>

#include "dump_text.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define LIMIT_NS (20 * MOIRAI_NS_PER_MS)
#define QUEUED   5

static void sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void quiet_log(void *ctx, moirai_log_level_t level, const char *message)
{
    (void)ctx;
    (void)level;
    (void)message;
}

static moirai_sched_t *make_sched(int workers, uint64_t watchdog_ns)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = workers;
    cfg.watchdog_ns = watchdog_ns;
    moirai_sched_t *s = NULL;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    return s;
}

/* A dump into a string (free it). */
static char *dump_str(moirai_sched_t *s, unsigned flags, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    *rc = moirai_sched_dump(s, f, flags);
    fclose(f);
    return buf;
}

/* ---- The stuck task ---- */

static atomic_int stuck_started;
static atomic_int stuck_release;
static atomic_int queued_ran;

/* Blocked until the test releases it: polls the flag with a sleep (a
 * system call every sanitizer intercepts, so a signal reaches it). */
static int stuck_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    atomic_store(&stuck_started, 1);
    while (!atomic_load(&stuck_release))
        sleep_ms(1);
    return 0;
}

static int queued_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    atomic_fetch_add(&queued_ran, 1);
    return 0;
}

/* Starts "stuck_task" on `s`'s only worker and queues QUEUED tasks behind it. */
static void start_stuck(moirai_sched_t *s)
{
    moirai_task_attr_t attr;
    moirai_task_attr_init(&attr);
    attr.name = "stuck_task";
    cr_assert_eq(moirai_sched_spawn(s, stuck_task, NULL, &attr, NULL), 0);
    while (!atomic_load(&stuck_started))
        sleep_ms(1);
    attr.name = "queued";
    for (int i = 0; i < QUEUED; i++)
        cr_assert_eq(moirai_sched_spawn(s, queued_task, NULL, &attr, NULL), 0);
}

static void wait_reported(moirai_sched_t *s)
{
    moirai_sched_worker_stats_t st;
    do {
        sleep_ms(5);
        cr_assert_eq(moirai_sched_worker_stats(s, 0, &st), 0);
    } while (st.watchdog_reports == 0);
}

static void finish_stuck(moirai_sched_t *s)
{
    atomic_store(&stuck_release, 1);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
    cr_assert_eq(atomic_load(&queued_ran), QUEUED);
}

Test(sched_dump, stuck_task_named_flagged_and_queue_counted)
{
    moirai_log_sink_set(quiet_log, NULL);
    moirai_sched_t *s = make_sched(1, LIMIT_NS);
    start_stuck(s);
    wait_reported(s);
    int rc;
    char *text = dump_str(s, 0, &rc);
    cr_assert_eq(rc, 0);
    char line[512];
    cr_assert(dump_find_line(text, "moirai-sched dump: scheduler ", line, sizeof line), "%s", text);
    cr_assert(dump_find_line(text, "workers 1 compensating_slots 0 guests_active 0 watchdog 20 ms",
                             line, sizeof line),
              "%s", text);
    cr_assert(
        dump_find_line(text, "worker 0: running \"stuck_task\" for at least ", line, sizeof line),
        "%s", text);
    uint64_t ms = 0;
    cr_assert_eq(sscanf(line, "worker 0: running \"stuck_task\" for at least %" SCNu64 " ms", &ms),
                 1);
    /* The watchdog reported it, so it ran at least one limit since the
     * watchdog's first sighting. */
    cr_assert_geq(ms, LIMIT_NS / MOIRAI_NS_PER_MS, "%s", line);
    cr_assert_not_null(strstr(line, "STUCK (reported by the watchdog)"), "%s", line);
    /* Exactly the tasks queued behind it, all on the injector's NORMAL level. */
    cr_assert(dump_find_line(text, "injector: critical 0 high 0 normal 5 low 0 background 0", line,
                             sizeof line),
              "%s", text);
    cr_assert(dump_find_line(text, "  queues: lifo 0 deque 0 inbox 0", line, sizeof line), "%s",
              text);
    cr_assert(dump_find_line(text, "blocking pool: threads 0 queued 0", line, sizeof line), "%s",
              text);
    cr_assert(dump_find_line(text, "  counters: executed 1 ", line, sizeof line), "%s", text);
    cr_assert_not_null(strstr(line, "watchdog_reports 1"), "%s", line);
    cr_assert(dump_find_line(text, "end of scheduler dump", line, sizeof line), "%s", text);
    /* Without the flag, no backtrace. */
    cr_assert_null(strstr(text, "backtrace"), "%s", text);
    free(text);
    finish_stuck(s);
}

Test(sched_dump, stuck_worker_backtrace)
{
    moirai_log_sink_set(quiet_log, NULL);
    moirai_sched_t *s = make_sched(1, LIMIT_NS);
    start_stuck(s);
    wait_reported(s);
    int rc;
    char *text = dump_str(s, MOIRAI_SCHED_DUMP_BACKTRACES, &rc);
    cr_assert_eq(rc, 0);
    char line[512];
    cr_assert(dump_find_line(text, "  backtrace:", line, sizeof line), "%s", text);
    if (strcmp(line, "  backtrace:") == 0) {
        /* Frames, innermost first: the sleep the stuck task waits in. */
        cr_assert(dump_find_line(text, "    #0 0x", line, sizeof line), "%s", text);
        cr_assert_not_null(strstr(text, "nanosleep"), "%s", text);
    } else {
        /* Only a sanitizer may keep the signal from the worker. */
        cr_assert(SANITIZED, "%s", text);
        cr_assert_not_null(strstr(line, "not available (the thread did not answer"), "%s", line);
    }
    free(text);
    /* The handler stays installed and the slot is reusable: a second dump
     * works the same. */
    text = dump_str(s, MOIRAI_SCHED_DUMP_BACKTRACES, &rc);
    cr_assert_eq(rc, 0);
    cr_assert(dump_find_line(text, "  backtrace:", line, sizeof line), "%s", text);
    free(text);
    finish_stuck(s);
}

static moirai_sched_t *self_sched;
static char *self_text;
static int self_rc = 1;

static int dump_self(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    size_t len = 0;
    FILE *f = open_memstream(&self_text, &len);
    if (f == NULL)
        return -ENOMEM;
    self_rc = moirai_sched_dump(self_sched, f, MOIRAI_SCHED_DUMP_BACKTRACES);
    fclose(f);
    return 0;
}

Test(sched_dump, worker_dumps_its_own_scheduler)
{
    self_sched = make_sched(1, LIMIT_NS);
    moirai_task_attr_t attr;
    moirai_task_attr_init(&attr);
    attr.name = "dumper";
    moirai_handle_t *h = NULL;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_sched_spawn(self_sched, dump_self, NULL, &attr, h), 0);
    cr_assert_eq(moirai_handle_join(h, NULL), 0);
    moirai_handle_release(h);
    cr_assert_eq(self_rc, 0);
    char line[512];
    /* Its own job, not sampled yet or sampled: named either way. */
    cr_assert(dump_find_line(self_text, "worker 0: running \"dumper\"", line, sizeof line), "%s",
              self_text);
    /* Its own backtrace, taken directly: the dump function is in it. */
    cr_assert(dump_find_line(self_text, "  backtrace:", line, sizeof line), "%s", self_text);
    cr_assert_str_eq(line, "  backtrace:");
    cr_assert_not_null(strstr(self_text, "moirai_sched_dump+0x"), "%s", self_text);
    free(self_text);
    cr_assert_eq(moirai_sched_destroy(self_sched, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(sched_dump, idle_pool_reads_parked)
{
    moirai_sched_t *s = make_sched(2, 0);
    /* Idle workers park after spin_ns (50 us); wait until both have. */
    char *text = NULL;
    for (;;) {
        int rc;
        text = dump_str(s, MOIRAI_SCHED_DUMP_BACKTRACES, &rc);
        cr_assert_eq(rc, 0);
        char line[256];
        if (dump_find_line(text, "worker 0: parked", line, sizeof line) &&
            dump_find_line(text, "worker 1: parked", line, sizeof line))
            break;
        free(text);
        sleep_ms(2);
    }
    char line[256];
    cr_assert(dump_find_line(text, "workers 2 compensating_slots 0 guests_active 0 watchdog off",
                             line, sizeof line),
              "%s", text);
    cr_assert(dump_find_line(text, "injector: critical 0 high 0 normal 0 low 0 background 0", line,
                             sizeof line),
              "%s", text);
    cr_assert(dump_find_line(text, "  backtrace: not available (the worker runs no job)", line,
                             sizeof line),
              "%s", text);
    free(text);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(sched_dump, without_watchdog_busy_worker_reads_active)
{
    moirai_sched_t *s = make_sched(1, 0);
    start_stuck(s);
    int rc;
    char *text = dump_str(s, 0, &rc);
    cr_assert_eq(rc, 0);
    char line[256];
    cr_assert(
        dump_find_line(text, "worker 0: active (job names need the watchdog)", line, sizeof line),
        "%s", text);
    cr_assert(dump_find_line(text, "injector: critical 0 high 0 normal 5 low 0 background 0", line,
                             sizeof line),
              "%s", text);
    free(text);
    finish_stuck(s);
}

static void foreign_handler(int sig)
{
    (void)sig;
}

Test(sched_dump, foreign_signal_handler_is_left_alone)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = foreign_handler;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(MOIRAI_SCHED_DUMP_SIGNAL, &sa, NULL), 0);
    moirai_log_sink_set(quiet_log, NULL);
    moirai_sched_t *s = make_sched(1, LIMIT_NS);
    start_stuck(s);
    wait_reported(s);
    int rc;
    char *text = dump_str(s, MOIRAI_SCHED_DUMP_BACKTRACES, &rc);
    cr_assert_eq(rc, 0);
    char line[256];
    cr_assert(dump_find_line(text,
                             "  backtrace: not available (the process has its own handler for the "
                             "dump signal)",
                             line, sizeof line),
              "%s", text);
    free(text);
    struct sigaction now;
    cr_assert_eq(sigaction(MOIRAI_SCHED_DUMP_SIGNAL, NULL, &now), 0);
    cr_assert(now.sa_handler == foreign_handler);
    finish_stuck(s);
}

Test(sched_dump, bad_arguments)
{
    moirai_sched_t *s = make_sched(1, 0);
    FILE *f = fopen("/dev/null", "w");
    cr_assert_not_null(f);
    cr_assert_eq(moirai_sched_dump(NULL, f, 0), -EINVAL);
    cr_assert_eq(moirai_sched_dump(s, NULL, 0), -EINVAL);
    cr_assert_eq(moirai_sched_dump(s, f, 2), -EINVAL);
    cr_assert_eq(moirai_sched_dump(s, f, 0), 0);
    fclose(f);
    /* A FILE that cannot be written. */
    FILE *ro = fopen("/dev/null", "r");
    cr_assert_not_null(ro);
    cr_assert_eq(moirai_sched_dump(s, ro, 0), -EIO);
    fclose(ro);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(sched_dump, after_destroy_is_shutdown)
{
    moirai_sched_t *s = make_sched(1, LIMIT_NS);
    moirai_sched_t *other = make_sched(1, 0);
    FILE *f = fopen("/dev/null", "w");
    cr_assert_not_null(f);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
    /* `s` is freed: the dump finds it missing from the registry and never
     * reads it (ASan would report the read). */
    cr_assert_eq(moirai_sched_dump(s, f, MOIRAI_SCHED_DUMP_BACKTRACES), -ESHUTDOWN);
    /* Others are unaffected. */
    cr_assert_eq(moirai_sched_dump(other, f, 0), 0);
    cr_assert_eq(moirai_sched_destroy(other, MOIRAI_SHUTDOWN_DRAIN), 0);
    cr_assert_eq(moirai_sched_dump(other, f, 0), -ESHUTDOWN);
    fclose(f);
}

/* A task that dumps its own scheduler until destroy (called by the test
 * thread, which waits for this task to finish) makes the dump refuse. */
static moirai_sched_t *during_sched;
static atomic_int during_ok;
static atomic_int during_rc;
static atomic_int during_running;

static int dump_until_refused(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    FILE *f = fopen("/dev/null", "w");
    if (f == NULL)
        return -EIO;
    atomic_store(&during_running, 1);
    int rc;
    while ((rc = moirai_sched_dump(during_sched, f, 0)) == 0) {
        atomic_fetch_add(&during_ok, 1);
        sleep_ms(1);
    }
    atomic_store(&during_rc, rc);
    fclose(f);
    return 0;
}

/* Another thread dumps in a loop while destroy runs: each dump gives a
 * whole report or -ESHUTDOWN, never a crash or a read of freed memory. */
static void *dump_thread(void *arg)
{
    (void)arg;
    FILE *f = fopen("/dev/null", "w");
    int rc;
    while ((rc = moirai_sched_dump(during_sched, f, 0)) == 0) {
        /* A pause between dumps: the dump lock is not fair, and a loop
         * that takes it back at once could hold destroy off for long. */
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    fclose(f);
    return (void *)(intptr_t)rc;
}

Test(sched_dump, during_destroy_is_shutdown)
{
    during_sched = make_sched(2, LIMIT_NS);
    cr_assert_eq(moirai_sched_spawn(during_sched, dump_until_refused, NULL, NULL, NULL), 0);
    while (!atomic_load(&during_running))
        sleep_ms(1);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, dump_thread, NULL), 0);
    /* Destroy waits for the task (DRAIN), which stops once refused. */
    cr_assert_eq(moirai_sched_destroy(during_sched, MOIRAI_SHUTDOWN_DRAIN), 0);
    cr_assert_eq(atomic_load(&during_rc), -ESHUTDOWN);
    void *trc;
    cr_assert_eq(pthread_join(t, &trc), 0);
    cr_assert_eq((int)(intptr_t)trc, -ESHUTDOWN);
}

/* ---- Dumps on a signal ---- */

/* The whole content of the file behind `fd`. */
static char *read_all(int fd)
{
    static char buf[1 << 16];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static int count_of(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = strstr(text, what); p != NULL; p = strstr(p + 1, what))
        n++;
    return n;
}

Test(sched_dump, on_signal_dumps_every_live_scheduler)
{
    moirai_sched_t *a = make_sched(1, 0);
    moirai_sched_t *b = make_sched(2, 0);
    int fd = memfd_create("dump", 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(moirai_sched_dump_on_signal(SIGUSR2, fd, 0), 0);
    cr_assert_eq(raise(SIGUSR2), 0);
    /* The dedicated thread writes one round: both schedulers, then the count. */
    while (count_of(read_all(fd), "moirai-sched: 2 live schedulers dumped\n") < 1)
        sleep_ms(1);
    const char *text = read_all(fd);
    char head[128];
    snprintf(head, sizeof head, "moirai-sched dump: scheduler %p at ", (void *)a);
    cr_assert_not_null(strstr(text, head), "%s", text);
    snprintf(head, sizeof head, "moirai-sched dump: scheduler %p at ", (void *)b);
    cr_assert_not_null(strstr(text, head), "%s", text);
    cr_assert_eq(count_of(text, "end of scheduler dump\n"), 2, "%s", text);
    /* After a destroy, the next round has one scheduler fewer. */
    cr_assert_eq(moirai_sched_destroy(a, MOIRAI_SHUTDOWN_DRAIN), 0);
    cr_assert_eq(raise(SIGUSR2), 0);
    while (count_of(read_all(fd), "moirai-sched: 1 live schedulers dumped\n") < 1)
        sleep_ms(1);
    /* Once on, for good. */
    cr_assert_eq(moirai_sched_dump_on_signal(SIGUSR2, fd, 0), -EBUSY);
    cr_assert_eq(moirai_sched_dump_on_signal(SIGUSR1, fd, 0), -EBUSY);
    cr_assert_eq(moirai_sched_destroy(b, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(sched_dump, on_signal_bad_arguments)
{
    cr_assert_eq(moirai_sched_dump_on_signal(0, 2, 0), -EINVAL);
    cr_assert_eq(moirai_sched_dump_on_signal(NSIG, 2, 0), -EINVAL);
    cr_assert_eq(moirai_sched_dump_on_signal(SIGKILL, 2, 0), -EINVAL);
    cr_assert_eq(moirai_sched_dump_on_signal(SIGSTOP, 2, 0), -EINVAL);
    cr_assert_eq(moirai_sched_dump_on_signal(MOIRAI_SCHED_DUMP_SIGNAL, 2, 0), -EINVAL);
    cr_assert_eq(moirai_sched_dump_on_signal(SIGUSR2, -1, 0), -EINVAL);
    cr_assert_eq(moirai_sched_dump_on_signal(SIGUSR2, 2, 2), -EINVAL);
    /* A descriptor that is not open. */
    int fd = memfd_create("closed", 0);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(moirai_sched_dump_on_signal(SIGUSR2, fd, 0), -EINVAL);
    /* A signal the process handles itself. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = foreign_handler;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR2, &sa, NULL), 0);
    cr_assert_eq(moirai_sched_dump_on_signal(SIGUSR2, 2, 0), -EBUSY);
    struct sigaction now;
    cr_assert_eq(sigaction(SIGUSR2, NULL, &now), 0);
    cr_assert(now.sa_handler == foreign_handler);
    /* Nothing was installed by the failures: another signal still works. */
    cr_assert_eq(moirai_sched_dump_on_signal(SIGUSR1, 2, 0), 0);
}

/* The lowest descriptor number not in use. */
static int lowest_free_fd(void)
{
    int fd = dup(0);
    cr_assert_geq(fd, 0);
    close(fd);
    return fd;
}

/* Out of descriptors: for the duplicate of `fd`, then for the pipe. Each
 * is -EMFILE, leaves no descriptor behind and installs nothing, so the
 * same call succeeds once descriptors are back. */
Test(sched_dump, on_signal_out_of_descriptors)
{
    int fd = memfd_create("dump", 0);
    cr_assert_geq(fd, 0);
    int free_fd = lowest_free_fd();
    struct rlimit saved;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int rc[2];
    for (int spare = 0; spare < 2; spare++) {
        /* `spare` free numbers below the limit: none for the duplicate,
         * one (the duplicate's) for a pipe that needs two. */
        struct rlimit low = {(rlim_t)(free_fd + spare), saved.rlim_max};
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
        rc[spare] = moirai_sched_dump_on_signal(SIGUSR2, fd, 0);
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
    }
    cr_assert_eq(rc[0], -EMFILE);
    cr_assert_eq(rc[1], -EMFILE);
    cr_assert_eq(lowest_free_fd(), free_fd, "a failed install left a descriptor open");
    cr_assert_eq(moirai_sched_dump_on_signal(SIGUSR2, fd, 0), 0);
}
