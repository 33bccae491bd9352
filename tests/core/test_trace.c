/* The trace recorder: sessions and their errors, exact drop counts, span
 * balance, out of memory, the thread limit, many threads recording at
 * once, and the written JSON checked against the trace-event rules. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <moirai/core/error.h>
#include <moirai/core/trace.h>

#include "oom.h"
#include "trace_check.h"

/* The stopped session as JSON, in a malloc'd string. */
static char *write_to_string(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    int rc = moirai_trace_write_json(f);
    fclose(f);
    cr_assert_eq(rc, 0, "write_json: %d", rc);
    return buf;
}

/* Writes the stopped session, asserts it is well formed and returns what
 * it held. */
static trace_check_t written(void)
{
    char *text = write_to_string();
    trace_check_t c;
    const char *why = trace_check(text, &c);
    cr_assert_null(why, "malformed trace: %s\n%s", why, text);
    free(text);
    return c;
}

static moirai_trace_stats_t stats(void)
{
    moirai_trace_stats_t s;
    cr_assert_eq(moirai_trace_stats(&s), 0);
    return s;
}

/* Not checked for live blocks (tests/common/live.c): a thread keeps its
 * trace buffer for the next session, so the calling thread's is still
 * live at the end of each test. */
TestSuite(trace, .init = moirai_test_live_unchecked);

Test(trace, config_init_is_all_zero, .timeout = 10)
{
    moirai_trace_config_t cfg, zero;
    memset(&cfg, 0xff, sizeof cfg);
    memset(&zero, 0, sizeof zero);
    moirai_trace_config_init(&cfg);
    cr_assert_eq(memcmp(&cfg, &zero, sizeof cfg), 0);
    moirai_trace_config_init(NULL);
}

Test(trace, start_twice_and_stop_twice_are_ealready, .timeout = 10)
{
    cr_assert(!moirai_trace_recording());
    cr_assert_eq(moirai_trace_stop(), -EALREADY);
    cr_assert_eq(moirai_trace_start(NULL), 0);
    cr_assert(moirai_trace_recording());
    cr_assert_eq(moirai_trace_start(NULL), -EALREADY);
    cr_assert(moirai_trace_recording());
    cr_assert_eq(moirai_trace_stop(), 0);
    cr_assert_eq(moirai_trace_stop(), -EALREADY);
    cr_assert(!moirai_trace_recording());
}

Test(trace, out_of_range_config_is_einval_and_starts_nothing, .timeout = 10)
{
    moirai_trace_config_t cfg;
    moirai_trace_config_init(&cfg);
    cfg.events_per_thread = 1;
    cr_assert_eq(moirai_trace_start(&cfg), -EINVAL);
    cfg.events_per_thread = MOIRAI_TRACE_EVENTS_MAX + 1;
    cr_assert_eq(moirai_trace_start(&cfg), -EINVAL);
    moirai_trace_config_init(&cfg);
    cfg.max_threads = MOIRAI_TRACE_THREADS_MAX + 1;
    cr_assert_eq(moirai_trace_start(&cfg), -EINVAL);
    cr_assert(!moirai_trace_recording());
    moirai_trace_instant("ignored");
    cr_assert_eq(stats().recorded, 0);
    /* The limits themselves are accepted. */
    cfg.max_threads = MOIRAI_TRACE_THREADS_MAX;
    cfg.events_per_thread = MOIRAI_TRACE_EVENTS_MIN;
    cr_assert_eq(moirai_trace_start(&cfg), 0);
    cr_assert_eq(moirai_trace_stop(), 0);
}

Test(trace, null_arguments_are_einval, .timeout = 10)
{
    cr_assert_eq(moirai_trace_stats(NULL), -EINVAL);
    cr_assert_eq(moirai_trace_write_json(NULL), -EINVAL);
    cr_assert_eq(moirai_trace_write_json_path(NULL), -EINVAL);
}

Test(trace, writing_or_resetting_while_recording_is_ebusy, .timeout = 10)
{
    char path[] = "/tmp/moirai-trace-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "keep", 4), 4);
    close(fd);

    cr_assert_eq(moirai_trace_start(NULL), 0);
    moirai_trace_instant("one");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(moirai_trace_write_json(f), -EBUSY);
    fclose(f);
    cr_assert_eq(len, 0, "nothing written");
    free(buf);
    cr_assert_eq(moirai_trace_write_json_path(path), -EBUSY);
    cr_assert_eq(moirai_trace_reset(), -EBUSY);
    cr_assert_eq(stats().recorded, 1, "reset refused: the event is still there");

    /* The existing file was not truncated. */
    char back[8] = {0};
    FILE *g = fopen(path, "r");
    cr_assert_eq(fread(back, 1, sizeof back, g), 4);
    fclose(g);
    cr_assert_str_eq(back, "keep");
    unlink(path);
    cr_assert_eq(moirai_trace_stop(), 0);
}

Test(trace, spans_and_instants_are_written_in_order, .timeout = 10)
{
    cr_assert_eq(moirai_trace_start(NULL), 0);
    moirai_trace_begin("outer");
    moirai_trace_instant("mark");
    moirai_trace_begin("inner");
    moirai_trace_emit(MOIRAI_TRACE_PHASE_INSTANT, "test", "with-arg", "answer", 42);
    moirai_trace_end();
    moirai_trace_end();
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_INSTANT, "test", "macro", NULL, 0);
    cr_assert_eq(moirai_trace_stop(), 0);
    /* Recording is off: nothing more is recorded. */
    moirai_trace_instant("after");
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_INSTANT, "test", "after", NULL, 0);

    moirai_trace_stats_t s = stats();
    cr_assert_eq(s.recorded, 7);
    cr_assert_eq(s.dropped, 0);
    cr_assert_eq(s.threads, 1);
    cr_assert(!s.recording);

    char *text = write_to_string();
    trace_check_t c;
    const char *why = trace_check(text, &c);
    cr_assert_null(why, "%s\n%s", why, text);
    cr_assert_eq(c.begins, 2);
    cr_assert_eq(c.ends, 2);
    cr_assert_eq(c.instants, 3);
    cr_assert_eq(c.unfinished, 0);
    cr_assert_eq(c.thread_names, 1);
    cr_assert_eq(c.threads, 1);
    cr_assert_eq(c.recorded, 7);
    cr_assert_eq(c.dropped, 0);
    /* In recording order, with the argument and the category. */
    const char *o = strstr(text, "\"outer\""), *m = strstr(text, "\"mark\""),
               *i = strstr(text, "\"inner\""), *a = strstr(text, "\"answer\":42");
    cr_assert(o != NULL && m != NULL && i != NULL && a != NULL, "%s", text);
    cr_assert(o < m && m < i && i < a);
    cr_assert_not_null(strstr(text, "\"cat\":\"user\""));
    cr_assert_not_null(strstr(text, "\"cat\":\"test\""));
    cr_assert_null(strstr(text, "\"after\""));
    free(text);
}

Test(trace, names_are_escaped, .timeout = 10)
{
    static const char weird[] = "q\"b\\n\nt\tc\x01";
    cr_assert_eq(moirai_trace_start(NULL), 0);
    moirai_trace_instant(weird);
    moirai_trace_instant(NULL);
    cr_assert_eq(moirai_trace_stop(), 0);
    char *text = write_to_string();
    const char *err = NULL;
    json_t *doc = json_parse(text, &err);
    cr_assert_not_null(doc, "%s\n%s", err, text);
    const json_t *evs = json_get(doc, "traceEvents");
    int found = 0, unnamed = 0;
    for (size_t k = 0; k < evs->len; k++) {
        const json_t *name = json_get(evs->items[k], "name");
        if (name != NULL && strcmp(name->str, weird) == 0)
            found++;
        if (name != NULL && strcmp(name->str, "?") == 0)
            unnamed++;
    }
    cr_assert_eq(found, 1, "the name round-trips through JSON");
    cr_assert_eq(unnamed, 1, "a NULL name is written as ?");
    json_free(doc);
    free(text);
}

Test(trace, a_full_buffer_drops_exactly_the_overflow, .timeout = 10)
{
    moirai_trace_config_t cfg;
    moirai_trace_config_init(&cfg);
    cfg.events_per_thread = 8;
    cr_assert_eq(moirai_trace_start(&cfg), 0);
    for (int k = 0; k < 20; k++)
        moirai_trace_instant("tick");
    moirai_trace_stats_t s = stats();
    cr_assert(s.recording);
    cr_assert_eq(s.recorded, 8);
    cr_assert_eq(s.dropped, 12);
    cr_assert_eq(moirai_trace_stop(), 0);
    trace_check_t c = written();
    cr_assert_eq(c.instants, 8);
    cr_assert_eq(c.recorded, 8);
    cr_assert_eq(c.dropped, 12, "the drop count is in otherData");
}

Test(trace, spans_stay_balanced_when_the_buffer_fills, .timeout = 10)
{
    moirai_trace_config_t cfg;
    moirai_trace_config_init(&cfg);
    cfg.events_per_thread = 5;
    cr_assert_eq(moirai_trace_start(&cfg), 0);
    moirai_trace_begin("b1");  /* recorded, reserves its end: 1 used, 1 reserved */
    moirai_trace_begin("b2");  /* recorded: 2 used, 2 reserved */
    moirai_trace_begin("b3");  /* 1 free slot left, a span needs 2: dropped */
    moirai_trace_instant("i"); /* the free slot: recorded */
    moirai_trace_begin("b4");  /* inside a dropped span: dropped */
    moirai_trace_end();        /* b4's: dropped */
    moirai_trace_end();        /* b3's: dropped */
    moirai_trace_instant("j"); /* no free slot: dropped */
    moirai_trace_end();        /* b2's: its reserved slot */
    moirai_trace_end();        /* b1's: its reserved slot */
    moirai_trace_end();        /* nothing open: ignored, not counted */
    cr_assert_eq(moirai_trace_stop(), 0);
    moirai_trace_stats_t s = stats();
    cr_assert_eq(s.recorded, 5);
    cr_assert_eq(s.dropped, 5);
    trace_check_t c = written();
    cr_assert_eq(c.begins, 2);
    cr_assert_eq(c.ends, 2);
    cr_assert_eq(c.instants, 1);
    cr_assert_eq(c.unfinished, 0);
}

Test(trace, a_span_open_at_the_stop_is_closed_as_unfinished, .timeout = 10)
{
    cr_assert_eq(moirai_trace_start(NULL), 0);
    moirai_trace_begin("open");
    moirai_trace_begin("open too");
    cr_assert_eq(moirai_trace_stop(), 0);
    moirai_trace_end(); /* after the stop: not recorded */
    trace_check_t c = written();
    cr_assert_eq(c.begins, 2);
    cr_assert_eq(c.ends, 2);
    cr_assert_eq(c.unfinished, 2);
    cr_assert_eq(c.recorded, 2);
}

Test(trace, an_end_of_a_span_from_before_the_start_is_ignored, .timeout = 10)
{
    cr_assert_eq(moirai_trace_start(NULL), 0);
    moirai_trace_begin("first session");
    cr_assert_eq(moirai_trace_stop(), 0);
    cr_assert_eq(moirai_trace_start(NULL), 0);
    cr_assert_eq(stats().recorded, 0, "a new session discards the old one");
    moirai_trace_end();
    moirai_trace_end();
    cr_assert_eq(moirai_trace_stop(), 0);
    moirai_trace_stats_t s = stats();
    cr_assert_eq(s.recorded, 0);
    cr_assert_eq(s.dropped, 0);
    trace_check_t c = written();
    cr_assert_eq(c.begins + c.ends + c.instants, 0);
}

Test(trace, unknown_phases_are_ignored, .timeout = 10)
{
    cr_assert_eq(moirai_trace_start(NULL), 0);
    moirai_trace_emit((moirai_trace_phase_t)'X', "test", "x", NULL, 0);
    cr_assert_eq(moirai_trace_stop(), 0);
    cr_assert_eq(stats().recorded, 0);
}

Test(trace, reset_discards_the_session, .timeout = 10)
{
    cr_assert_eq(moirai_trace_start(NULL), 0);
    moirai_trace_instant("x");
    cr_assert_eq(moirai_trace_stop(), 0);
    cr_assert_eq(stats().recorded, 1);
    cr_assert_eq(moirai_trace_reset(), 0);
    moirai_trace_stats_t s = stats();
    cr_assert_eq(s.recorded, 0);
    cr_assert_eq(s.threads, 0);
    trace_check_t c = written();
    cr_assert_eq(c.instants, 0);
    cr_assert_eq(c.thread_names, 0);
}

Test(trace, write_json_path_writes_a_file, .timeout = 10)
{
    char path[] = "/tmp/moirai-trace-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(moirai_trace_start(NULL), 0);
    moirai_trace_begin("file");
    moirai_trace_end();
    cr_assert_eq(moirai_trace_stop(), 0);
    cr_assert_eq(moirai_trace_write_json_path(path), 0);
    FILE *f = fopen(path, "r");
    static char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    unlink(path);
    trace_check_t c;
    const char *why = trace_check(text, &c);
    cr_assert_null(why, "%s", why);
    cr_assert_eq(c.begins, 1);
    cr_assert_eq(moirai_trace_write_json_path("/nonexistent-dir/trace.json"), -ENOENT);
}

/* ---- Out of memory ---- */

Test(trace, a_failed_buffer_allocation_drops_and_counts, .timeout = 10)
{
    moirai_test_oom_install();
    cr_assert_eq(moirai_trace_start(NULL), 0);
    /* The buffer's header fails: the span is dropped, and so is its end. */
    moirai_test_oom_fail_at(0);
    moirai_trace_begin("lost");
    moirai_trace_end();
    moirai_trace_stats_t s = stats();
    cr_assert_eq(s.recorded, 0);
    cr_assert_eq(s.dropped, 2);
    cr_assert_eq(s.threads, 0);
    /* Then the event array fails (the header succeeds). */
    moirai_test_oom_fail_at(1);
    moirai_trace_instant("lost too");
    cr_assert_eq(moirai_test_oom_count(), 2, "header, then the failed array");
    s = stats();
    cr_assert_eq(s.recorded, 0);
    cr_assert_eq(s.dropped, 3);
    /* The next event tries again and succeeds. */
    moirai_trace_begin("kept");
    moirai_trace_end();
    cr_assert_eq(moirai_trace_stop(), 0);
    s = stats();
    cr_assert_eq(s.recorded, 2);
    cr_assert_eq(s.dropped, 3);
    cr_assert_eq(s.threads, 1);
    trace_check_t c = written();
    cr_assert_eq(c.begins, 1);
    cr_assert_eq(c.dropped, 3);

    /* A new session of another size reallocates the array; that fails
     * too, cleanly. */
    moirai_trace_config_t cfg;
    moirai_trace_config_init(&cfg);
    cfg.events_per_thread = 64;
    cr_assert_eq(moirai_trace_start(&cfg), 0);
    moirai_test_oom_fail_at(0);
    moirai_trace_instant("lost");
    moirai_trace_instant("kept");
    cr_assert_eq(moirai_trace_stop(), 0);
    s = stats();
    cr_assert_eq(s.recorded, 1);
    cr_assert_eq(s.dropped, 1);
    moirai_test_oom_uninstall();
}

/* ---- Threads ---- */

#define THREADS 4
#define SPANS   2000

typedef struct worker_arg {
    int index;
    pthread_barrier_t *go;
} worker_arg_t;

static void *record_spans(void *arg)
{
    worker_arg_t *w = arg;
    char name[16];
    snprintf(name, sizeof name, "rec-%d", w->index);
    pthread_setname_np(pthread_self(), name);
    pthread_barrier_wait(w->go);
    for (int k = 0; k < SPANS; k++) {
        moirai_trace_begin("span");
        moirai_trace_emit(MOIRAI_TRACE_PHASE_INSTANT, "test", "step", "k", k);
        moirai_trace_end();
    }
    return NULL;
}

Test(trace, threads_record_concurrently_and_every_event_is_written, .timeout = 60)
{
    moirai_trace_config_t cfg;
    moirai_trace_config_init(&cfg);
    cfg.events_per_thread = 3 * SPANS;
    cr_assert_eq(moirai_trace_start(&cfg), 0);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, THREADS + 1);
    pthread_t th[THREADS];
    worker_arg_t args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (worker_arg_t){i, &go};
        cr_assert_eq(pthread_create(&th[i], NULL, record_spans, &args[i]), 0);
    }
    pthread_barrier_wait(&go);
    /* Snapshots while they record: never more than was recorded in all. */
    for (int k = 0; k < 50; k++) {
        moirai_trace_stats_t s = stats();
        cr_assert_leq(s.recorded, (uint64_t)THREADS * 3 * SPANS);
        cr_assert_eq(s.dropped, 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    cr_assert_eq(moirai_trace_stop(), 0);

    /* The threads have exited; their events are still there. */
    moirai_trace_stats_t s = stats();
    cr_assert_eq(s.recorded, (uint64_t)THREADS * 3 * SPANS);
    cr_assert_eq(s.dropped, 0);
    cr_assert_eq(s.threads, THREADS);
    char *text = write_to_string();
    trace_check_t c;
    const char *why = trace_check(text, &c);
    cr_assert_null(why, "%s", why);
    cr_assert_eq(c.begins, THREADS * SPANS);
    cr_assert_eq(c.ends, THREADS * SPANS);
    cr_assert_eq(c.instants, THREADS * SPANS);
    cr_assert_eq(c.threads, THREADS);
    cr_assert_eq(c.thread_names, THREADS);
    for (int i = 0; i < THREADS; i++) {
        char name[32];
        snprintf(name, sizeof name, "\"rec-%d\"", i);
        cr_assert_not_null(strstr(text, name), "thread %d is named", i);
    }
    free(text);
    /* Reset frees the exited threads' buffers (LeakSanitizer would see a
     * leak otherwise, as they are unreachable once unlinked). */
    cr_assert_eq(moirai_trace_reset(), 0);
}

static void *record_one(void *arg)
{
    (void)arg;
    moirai_trace_instant("other");
    moirai_trace_begin("other span");
    moirai_trace_end();
    return NULL;
}

Test(trace, threads_beyond_the_limit_are_dropped_and_counted, .timeout = 10)
{
    moirai_trace_config_t cfg;
    moirai_trace_config_init(&cfg);
    cfg.max_threads = 1;
    cr_assert_eq(moirai_trace_start(&cfg), 0);
    moirai_trace_instant("main");
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, record_one, NULL), 0);
    pthread_join(t, NULL);
    cr_assert_eq(moirai_trace_stop(), 0);
    moirai_trace_stats_t s = stats();
    cr_assert_eq(s.recorded, 1);
    cr_assert_eq(s.dropped, 3);
    cr_assert_eq(s.threads, 1);
}

Test(trace, a_thread_exiting_between_sessions_frees_its_buffer, .timeout = 10)
{
    /* The thread records in session 1, which a restart discards; its
     * buffer is freed when it exits (LeakSanitizer checks). */
    cr_assert_eq(moirai_trace_start(NULL), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, record_one, NULL), 0);
    pthread_join(t, NULL);
    cr_assert_eq(moirai_trace_stop(), 0);
    cr_assert_eq(stats().threads, 1);
    cr_assert_eq(moirai_trace_start(NULL), 0);
    cr_assert_eq(stats().threads, 0);
    cr_assert_eq(moirai_trace_stop(), 0);
    cr_assert_eq(moirai_trace_reset(), 0);
}

/* ---- Sessions starting and stopping under recording threads ---- */

#define CYCLES 30

typedef struct churn {
    atomic_bool quit;
    pthread_barrier_t *go;
} churn_t;

static void *record_until_quit(void *arg)
{
    churn_t *c = arg;
    pthread_barrier_wait(c->go);
    /* Relaxed: the flag only ends the loop; join orders the rest. */
    while (!atomic_load_explicit(&c->quit, memory_order_relaxed)) {
        moirai_trace_begin("outer");
        moirai_trace_begin("inner");
        moirai_trace_instant("mark");
        moirai_trace_end();
        moirai_trace_end();
    }
    return NULL;
}

Test(trace, sessions_start_stop_and_write_while_threads_record, .timeout = 120)
{
    /* Threads record without pause while sessions start and stop under
     * them (tiny buffers, so drops happen too) and each stopped session is
     * written: every file must be well formed, however the events raced
     * with the start and the stop. ThreadSanitizer checks the hand-offs. */
    churn_t c;
    atomic_init(&c.quit, false);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, THREADS + 1);
    c.go = &go;
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, record_until_quit, &c), 0);
    pthread_barrier_wait(&go);
    moirai_trace_config_t cfg;
    moirai_trace_config_init(&cfg);
    uint64_t total = 0;
    for (int k = 0; k < CYCLES; k++) {
        cfg.events_per_thread = k % 2 ? 64 : 1000; /* resized every session */
        cr_assert_eq(moirai_trace_start(&cfg), 0);
        usleep(1000);
        cr_assert_eq(moirai_trace_stop(), 0);
        char *text = write_to_string();
        trace_check_t tc;
        const char *why = trace_check(text, &tc);
        cr_assert_null(why, "cycle %d: %s", k, why);
        cr_assert_leq(tc.recorded, (double)THREADS * cfg.events_per_thread);
        total += (uint64_t)tc.recorded;
        free(text);
    }
    atomic_store_explicit(&c.quit, true, memory_order_relaxed);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    cr_assert_gt(total, 0, "the threads recorded something");
    cr_assert_eq(moirai_trace_reset(), 0);
}
