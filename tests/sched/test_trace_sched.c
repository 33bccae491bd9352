/* The scheduler in the trace: every task runs as exactly one span named
 * after it, every parallel_for piece as one span, pipeline stages as
 * spans, workers as named lanes, and the result is well formed. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <moirai/core.h>
#include <moirai/sched.h>

#include "trace_check.h"
#include "oom.h"

static char *write_to_string(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_assert_eq(moirai_trace_write_json(f), 0);
    fclose(f);
    return buf;
}

/* Occurrences of `needle` in `text`. */
static long count_of(const char *text, const char *needle)
{
    long n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static atomic_int ran;

static int count_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    atomic_fetch_add_explicit(&ran, 1, memory_order_relaxed);
    return 0;
}

#define TASKS 500

/* Not checked for live blocks (tests/common/live.c): a thread keeps its
 * trace buffer for the next session, so the calling thread's is still
 * live at the end of each test. */
TestSuite(trace_sched, .init = moirai_test_live_unchecked);

Test(trace_sched, every_task_is_one_span_named_after_it, .timeout = 60)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    moirai_sched_t *s;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    cr_assert_eq(moirai_trace_start(NULL), 0);
    moirai_task_attr_t attr;
    moirai_task_attr_init(&attr);
    attr.name = "counted";
    for (int i = 0; i < TASKS; i++)
        cr_assert_eq(moirai_sched_spawn(s, count_task, NULL, i % 2 ? &attr : NULL, NULL), 0);
    /* Destroy drains: every task has run (and recorded) when it returns. */
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
    cr_assert_eq(moirai_trace_stop(), 0);
    cr_assert_eq(atomic_load(&ran), TASKS);

    moirai_trace_stats_t st;
    cr_assert_eq(moirai_trace_stats(&st), 0);
    cr_assert_eq(st.dropped, 0);
    char *text = write_to_string();
    trace_check_t c;
    const char *why = trace_check(text, &c);
    cr_assert_null(why, "%s", why);
    cr_assert_eq(count_of(text, "\"name\":\"counted\""), TASKS / 2);
    cr_assert_eq(count_of(text, "\"name\":\"task\""), TASKS / 2);
    cr_assert_eq(c.unfinished, 0);
    cr_assert_geq(count_of(text, "\"name\":\"moirai-w"), 1, "workers name their lanes");
    free(text);
}

static void touch(void *arg, size_t begin, size_t end)
{
    atomic_int *hits = arg;
    for (size_t i = begin; i < end; i++)
        atomic_fetch_add_explicit(&hits[i], 1, memory_order_relaxed);
}

#define RANGE 1000
#define GRAIN 10

Test(trace_sched, every_parallel_for_piece_is_one_span, .timeout = 60)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    moirai_sched_t *s;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    static atomic_int hits[RANGE];
    cr_assert_eq(moirai_trace_start(NULL), 0);
    cr_assert_eq(moirai_parallel_for(s, 0, RANGE, GRAIN, touch, hits), 0);
    cr_assert_eq(moirai_trace_stop(), 0);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
    for (int i = 0; i < RANGE; i++)
        cr_assert_eq(atomic_load(&hits[i]), 1);
    char *text = write_to_string();
    trace_check_t c;
    const char *why = trace_check(text, &c);
    cr_assert_null(why, "%s", why);
    /* Halving 1000 down to pieces of at most 10 gives 128 pieces. */
    cr_assert_eq(count_of(text, "\"name\":\"parallel_for\""), 128);
    cr_assert_eq(c.unfinished, 0);
    free(text);
}

static int src(void *arg, void *in, void **out)
{
    (void)in;
    int *next = arg;
    if (*next == 50)
        return MOIRAI_PIPELINE_END;
    *out = (void *)(intptr_t)++ * next;
    return 0;
}

static int pass(void *arg, void *in, void **out)
{
    (void)arg;
    *out = in;
    return 0;
}

Test(trace_sched, pipeline_stages_are_spans, .timeout = 60)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    moirai_sched_t *s;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    int next = 0;
    const moirai_pipeline_stage_t stages[] = {
        {MOIRAI_STAGE_SERIAL_IN_ORDER, src, &next},
        {MOIRAI_STAGE_PARALLEL, pass, NULL},
        {MOIRAI_STAGE_SERIAL_IN_ORDER, pass, NULL},
    };
    cr_assert_eq(moirai_trace_start(NULL), 0);
    cr_assert_eq(moirai_pipeline_run(s, 4, stages, 3), 0);
    cr_assert_eq(moirai_trace_stop(), 0);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
    char *text = write_to_string();
    trace_check_t c;
    const char *why = trace_check(text, &c);
    cr_assert_null(why, "%s", why);
    /* 50 items and the call that returned END. */
    cr_assert_eq(count_of(text, "\"name\":\"source\""), 51);
    cr_assert_eq(count_of(text, "\"args\":{\"stage\":1}"), 50);
    cr_assert_eq(count_of(text, "\"args\":{\"stage\":2}"), 50);
    free(text);
}
