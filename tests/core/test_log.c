/* Logging: threshold, sinks, formatting, environment, concurrency. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <moirai/core/error.h>
#include <moirai/core/log.h>

/* A sink that records what it receives. Sink calls are serialised by
 * Moirai, so the recorder needs no lock; tests read it after joining. */
#define CAPTURE_MAX 64
typedef struct capture {
    int count;
    moirai_log_level_t level[CAPTURE_MAX];
    char text[CAPTURE_MAX][1100];
} capture_t;

static void capture_sink(void *ctx, moirai_log_level_t level, const char *message)
{
    capture_t *c = ctx;

    if (c->count < CAPTURE_MAX) {
        c->level[c->count] = level;
        snprintf(c->text[c->count], sizeof(c->text[0]), "%s", message);
    }
    c->count++;
}

Test(log, parse_accepts_every_level_in_any_case, .timeout = 10)
{
    static const struct {
        const char *text;
        moirai_log_level_t level;
    } ok[] = {
        {"trace", MOIRAI_LOG_TRACE}, {"DEBUG", MOIRAI_LOG_DEBUG}, {"Info", MOIRAI_LOG_INFO},
        {"wArN", MOIRAI_LOG_WARN},   {"error", MOIRAI_LOG_ERROR}, {"OFF", MOIRAI_LOG_OFF},
    };

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        moirai_log_level_t out = (moirai_log_level_t)-1;

        cr_assert_eq(moirai_log_level_parse(ok[i].text, &out), 0, "%s", ok[i].text);
        cr_assert_eq(out, ok[i].level, "%s", ok[i].text);
    }
}

Test(log, parse_rejects_other_text_and_null, .timeout = 10)
{
    const char *bad[] = {"", "warning", "warn ", " warn", "5", "tracee", "of"};
    moirai_log_level_t out = MOIRAI_LOG_ERROR;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(moirai_log_level_parse(bad[i], &out), MOIRAI_EINVAL, "'%s'", bad[i]);
        cr_assert_eq(out, MOIRAI_LOG_ERROR, "'%s' changed the output", bad[i]);
    }
    cr_assert_eq(moirai_log_level_parse(NULL, &out), MOIRAI_EINVAL);
    cr_assert_eq(moirai_log_level_parse("warn", NULL), MOIRAI_EINVAL);
}

Test(log, level_names_round_trip, .timeout = 10)
{
    for (int l = MOIRAI_LOG_TRACE; l <= MOIRAI_LOG_OFF; l++) {
        moirai_log_level_t back;

        cr_assert_eq(moirai_log_level_parse(moirai_log_level_name((moirai_log_level_t)l), &back),
                     0);
        cr_assert_eq((int)back, l);
    }
    cr_assert_str_eq(moirai_log_level_name(MOIRAI_LOG_WARN), "warn");
    cr_assert_str_eq(moirai_log_level_name((moirai_log_level_t)6), "unknown");
    cr_assert_str_eq(moirai_log_level_name((moirai_log_level_t)-1), "unknown");
}

Test(log, level_set_validates_and_get_reads_back, .timeout = 10)
{
    for (int l = MOIRAI_LOG_TRACE; l <= MOIRAI_LOG_OFF; l++) {
        cr_assert_eq(moirai_log_level_set((moirai_log_level_t)l), 0);
        cr_assert_eq((int)moirai_log_level_get(), l);
    }
    cr_assert_eq(moirai_log_level_set(MOIRAI_LOG_INFO), 0);
    cr_assert_eq(moirai_log_level_set((moirai_log_level_t)-1), MOIRAI_EINVAL);
    cr_assert_eq(moirai_log_level_set((moirai_log_level_t)6), MOIRAI_EINVAL);
    cr_assert_eq(moirai_log_level_get(), MOIRAI_LOG_INFO, "a rejected level changed the threshold");
}

Test(log, threshold_filters_messages, .timeout = 10)
{
    static capture_t cap;

    moirai_log_sink_set(capture_sink, &cap);
    cr_assert_eq(moirai_log_level_set(MOIRAI_LOG_INFO), 0);
    moirai_log_write(MOIRAI_LOG_TRACE, "trace %d", 1);
    moirai_log_write(MOIRAI_LOG_DEBUG, "debug %d", 2);
    moirai_log_write(MOIRAI_LOG_INFO, "info %d", 3);
    MOIRAI_LOG(MOIRAI_LOG_DEBUG, "macro debug %d", 4);
    MOIRAI_LOG(MOIRAI_LOG_WARN, "macro warn %d", 5);
    moirai_log_write(MOIRAI_LOG_ERROR, "error %s", "six");
    /* OFF is a threshold, never a message level. */
    moirai_log_write(MOIRAI_LOG_OFF, "off");
    moirai_log_write((moirai_log_level_t)-1, "negative");
    moirai_log_sink_set(NULL, NULL);

    cr_assert_eq(cap.count, 3);
    cr_assert_eq(cap.level[0], MOIRAI_LOG_INFO);
    cr_assert_str_eq(cap.text[0], "info 3");
    cr_assert_eq(cap.level[1], MOIRAI_LOG_WARN);
    cr_assert_str_eq(cap.text[1], "macro warn 5");
    cr_assert_eq(cap.level[2], MOIRAI_LOG_ERROR);
    cr_assert_str_eq(cap.text[2], "error six");
}

Test(log, off_silences_everything, .timeout = 10)
{
    static capture_t cap;

    moirai_log_sink_set(capture_sink, &cap);
    cr_assert_eq(moirai_log_level_set(MOIRAI_LOG_OFF), 0);
    moirai_log_write(MOIRAI_LOG_ERROR, "error");
    MOIRAI_LOG(MOIRAI_LOG_ERROR, "error");
    moirai_log_write(MOIRAI_LOG_OFF, "off");
    MOIRAI_LOG(MOIRAI_LOG_OFF, "off");
    cr_assert_eq(moirai_log_level_set(MOIRAI_LOG_TRACE), 0);
    moirai_log_write(MOIRAI_LOG_TRACE, "trace");
    moirai_log_sink_set(NULL, NULL);
    cr_assert_eq(cap.count, 1);
    cr_assert_str_eq(cap.text[0], "trace");
}

static int side_effect(int *counter)
{
    return ++*counter;
}

Test(log, disabled_macro_does_not_evaluate_arguments, .timeout = 10)
{
    static capture_t cap;
    int counter = 0;

    moirai_log_sink_set(capture_sink, &cap);
    cr_assert_eq(moirai_log_level_set(MOIRAI_LOG_WARN), 0);
    cr_assert_not(MOIRAI_LOG_ENABLED(MOIRAI_LOG_DEBUG));
    cr_assert(MOIRAI_LOG_ENABLED(MOIRAI_LOG_WARN));
    MOIRAI_LOG(MOIRAI_LOG_DEBUG, "%d", side_effect(&counter));
    cr_assert_eq(counter, 0, "arguments of a disabled MOIRAI_LOG were evaluated");
    MOIRAI_LOG(MOIRAI_LOG_ERROR, "%d", side_effect(&counter));
    cr_assert_eq(counter, 1);
    moirai_log_sink_set(NULL, NULL);
    cr_assert_eq(cap.count, 1);
    cr_assert_str_eq(cap.text[0], "1");
}

Test(log, long_messages_are_truncated_to_1023_bytes, .timeout = 10)
{
    static capture_t cap;
    static char big[3000];

    memset(big, 'x', sizeof(big) - 1);
    moirai_log_sink_set(capture_sink, &cap);
    moirai_log_write(MOIRAI_LOG_ERROR, "%s", big);
    moirai_log_sink_set(NULL, NULL);
    cr_assert_eq(cap.count, 1);
    cr_assert_eq(strlen(cap.text[0]), 1023);
    cr_assert_eq(strspn(cap.text[0], "x"), 1023);
}

/* Points stderr at a fresh temporary file; returns the saved stderr. */
static int redirect_stderr(FILE **file)
{
    int saved;

    fflush(stderr);
    saved = dup(STDERR_FILENO);
    *file = tmpfile();
    cr_assert_not_null(*file);
    cr_assert_geq(dup2(fileno(*file), STDERR_FILENO), 0);
    return saved;
}

static void restore_stderr(int saved)
{
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
}

Test(log, default_sink_writes_prefixed_lines_to_stderr, .timeout = 10)
{
    static capture_t cap;
    char buf[256];
    FILE *f;
    int saved;
    size_t n;

    /* Installing a sink and then NULL must restore the stderr sink. */
    moirai_log_sink_set(capture_sink, &cap);
    moirai_log_sink_set(NULL, NULL);
    cr_assert_eq(moirai_log_level_set(MOIRAI_LOG_INFO), 0);
    saved = redirect_stderr(&f);
    moirai_log_write(MOIRAI_LOG_ERROR, "disk %s at %d%%", "full", 99);
    moirai_log_write(MOIRAI_LOG_INFO, "second");
    moirai_log_write(MOIRAI_LOG_DEBUG, "filtered");
    restore_stderr(saved);

    rewind(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    cr_assert_str_eq(buf, "moirai: error: disk full at 99%\nmoirai: info: second\n");
    cr_assert_eq(cap.count, 0, "the replaced sink was still called");
}

#define LOG_THREADS    4
#define LOG_PER_THREAD 500

static void *log_many(void *arg)
{
    int id = (int)(intptr_t)arg;

    for (int i = 0; i < LOG_PER_THREAD; i++)
        MOIRAI_LOG(MOIRAI_LOG_WARN, "thread %d message %d %s", id, i,
                   "padding-padding-padding-padding-padding-padding-padding-padding");
    return NULL;
}

Test(log, concurrent_lines_stay_whole, .timeout = 60)
{
    static char seen[LOG_THREADS][LOG_PER_THREAD];
    pthread_t th[LOG_THREADS];
    char line[512];
    int saved, lines = 0;
    FILE *f;

    cr_assert_eq(moirai_log_level_set(MOIRAI_LOG_WARN), 0);
    saved = redirect_stderr(&f);
    for (int t = 0; t < LOG_THREADS; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, log_many, (void *)(intptr_t)t), 0);
    for (int t = 0; t < LOG_THREADS; t++)
        pthread_join(th[t], NULL);
    restore_stderr(saved);

    /* Every line is exactly one whole message, and every message appears
     * exactly once. */
    rewind(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        int id, i, end = -1;

        cr_assert(sscanf(line,
                         "moirai: warn: thread %d message %d "
                         "padding-padding-padding-padding-padding-padding-padding-padding\n%n",
                         &id, &i, &end) == 2 &&
                      end == (int)strlen(line),
                  "torn or foreign line: '%s'", line);
        cr_assert(id >= 0 && id < LOG_THREADS && i >= 0 && i < LOG_PER_THREAD);
        cr_assert_eq(seen[id][i], 0, "duplicate line: '%s'", line);
        seen[id][i] = 1;
        lines++;
    }
    fclose(f);
    cr_assert_eq(lines, LOG_THREADS * LOG_PER_THREAD);
}

/* A sink that detects overlapping calls. */
static atomic_int in_sink;
static atomic_int overlaps;
static int delivered[LOG_THREADS][LOG_PER_THREAD];

static void checking_sink(void *ctx, moirai_log_level_t level, const char *message)
{
    int id, i;

    (void)ctx;
    (void)level;
    if (atomic_fetch_add(&in_sink, 1) != 0)
        atomic_fetch_add(&overlaps, 1);
    /* A plain write: TSan reports it unless the calls are serialised. */
    if (sscanf(message, "thread %d message %d", &id, &i) == 2)
        delivered[id][i]++;
    atomic_fetch_sub(&in_sink, 1);
}

Test(log, sink_calls_are_serialised, .timeout = 60)
{
    pthread_t th[LOG_THREADS];

    moirai_log_sink_set(checking_sink, NULL);
    for (int t = 0; t < LOG_THREADS; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, log_many, (void *)(intptr_t)t), 0);
    for (int t = 0; t < LOG_THREADS; t++)
        pthread_join(th[t], NULL);
    moirai_log_sink_set(NULL, NULL);

    cr_assert_eq(atomic_load(&overlaps), 0);
    for (int t = 0; t < LOG_THREADS; t++)
        for (int i = 0; i < LOG_PER_THREAD; i++)
            cr_assert_eq(delivered[t][i], 1, "message %d of thread %d delivered %d times", i, t,
                         delivered[t][i]);
}

/* sink_set() must wait for a sink call in progress. */
static atomic_int slow_entered, slow_release, slow_exited;

static void slow_sink(void *ctx, moirai_log_level_t level, const char *message)
{
    struct timespec nap = {0, 100000};

    (void)ctx;
    (void)level;
    (void)message;
    atomic_store(&slow_entered, 1);
    while (!atomic_load(&slow_release))
        nanosleep(&nap, NULL);
    atomic_store(&slow_exited, 1);
}

static void *log_once(void *arg)
{
    (void)arg;
    moirai_log_write(MOIRAI_LOG_ERROR, "slow");
    return NULL;
}

static void *replace_sink(void *arg)
{
    (void)arg;
    moirai_log_sink_set(NULL, NULL);
    /* Returned only after the old sink call finished. */
    return (void *)(intptr_t)atomic_load(&slow_exited);
}

Test(log, sink_set_waits_for_the_running_sink, .timeout = 30)
{
    struct timespec nap = {0, 1000000};
    pthread_t logger, setter;
    void *exited_when_set_returned;

    moirai_log_sink_set(slow_sink, NULL);
    cr_assert_eq(pthread_create(&logger, NULL, log_once, NULL), 0);
    while (!atomic_load(&slow_entered))
        nanosleep(&nap, NULL);
    cr_assert_eq(pthread_create(&setter, NULL, replace_sink, NULL), 0);
    /* Give the setter a chance to block; correctness of the assertion
     * below does not depend on how long this is. */
    for (int i = 0; i < 20; i++)
        nanosleep(&nap, NULL);
    atomic_store(&slow_release, 1);
    pthread_join(logger, NULL);
    pthread_join(setter, &exited_when_set_returned);
    cr_assert_eq((intptr_t)exited_when_set_returned, 1,
                 "moirai_log_sink_set returned while the old sink was running");
}

/* Run in a fresh process by the test below: the threshold the library
 * chose at load time must be the one named in MOIRAI_TEST_EXPECT_LEVEL (or,
 * in the normal run, what MOIRAI_LOG says). */
Test(log_env, initial_threshold, .timeout = 10)
{
    const char *expect = getenv("MOIRAI_TEST_EXPECT_LEVEL");
    moirai_log_level_t level = MOIRAI_LOG_WARN;

    if (expect != NULL)
        level = (moirai_log_level_t)atoi(expect);
    else if (moirai_log_level_parse(getenv("MOIRAI_LOG"), &level) != 0)
        level = MOIRAI_LOG_WARN;
    cr_assert_eq(moirai_log_level_get(), level);
}

/* Re-executes this test binary with only log_env/initial_threshold
 * selected, MOIRAI_LOG set to `value` (NULL: unset), and returns whether it
 * ran that one test and passed. */
static int run_env_probe(const char *value, moirai_log_level_t expect)
{
    char out_path[] = "/tmp/moirai-log-env-XXXXXX";
    char expect_text[8], buf[8192];
    int fd, status;
    ssize_t n;
    pid_t pid;

    fd = mkstemp(out_path);
    cr_assert_geq(fd, 0);
    unlink(out_path);
    snprintf(expect_text, sizeof(expect_text), "%d", (int)expect);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (value != NULL)
            setenv("MOIRAI_LOG", value, 1);
        else
            unsetenv("MOIRAI_LOG");
        setenv("MOIRAI_TEST_EXPECT_LEVEL", expect_text, 1);
        /* Criterion's sandbox marks its worker processes through this
         * variable; the new runner must start as a runner, not a worker. */
        unsetenv("BXFI_MAP");
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execl("/proc/self/exe", "test_core_log", "--filter=log_env/initial_threshold", "--jobs=1",
              (char *)NULL);
        _exit(127);
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "probe with MOIRAI_LOG=%s failed (status %#x):\n%s", value ? value : "(unset)",
              status, buf);
    /* Guards against a filter that matched nothing (which also exits 0). */
    cr_assert_not_null(strstr(buf, "Passing: 1"), "probe did not run:\n%s", buf);
    return 1;
}

Test(log_env, threshold_comes_from_moirai_log_at_load, .timeout = 60)
{
    run_env_probe("debug", MOIRAI_LOG_DEBUG);
    run_env_probe("TRACE", MOIRAI_LOG_TRACE);
    run_env_probe("off", MOIRAI_LOG_OFF);
    run_env_probe("Error", MOIRAI_LOG_ERROR);
    run_env_probe("bogus", MOIRAI_LOG_WARN);
    run_env_probe("", MOIRAI_LOG_WARN);
    run_env_probe(NULL, MOIRAI_LOG_WARN);
}
