/* Fibers in the trace: each run slice of a fiber (from a resume until it
 * switches out) is one span named after the fiber, on the worker that ran
 * it, and the trace stays well formed while fibers move between workers. */
#include "async_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace_check.h"
#include "oom.h"

#define FIBERS 20
#define YIELDS 10

static int yielder(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    for (int i = 0; i < YIELDS; i++)
        if (moirai_fiber_yield() != 0)
            return -EFAULT;
    return 0;
}

static long count_of(const char *text, const char *needle)
{
    long n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Not checked for live blocks (tests/common/live.c): a thread keeps its
 * trace buffer for the next session, so the calling thread's is still
 * live at the end of each test. */
TestSuite(trace_fiber, .init = moirai_test_live_unchecked);

Test(trace_fiber, every_run_slice_is_one_span_named_after_the_fiber, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    moirai_fiber_attr_t attr;
    moirai_fiber_attr_init(&attr);
    attr.task.name = "yielder";
    cr_assert_eq(moirai_trace_start(NULL), 0);
    moirai_handle_t *h[FIBERS];
    for (int i = 0; i < FIBERS; i++)
        h[i] = spawn_with_handle(rt, yielder, NULL, &attr);
    for (int i = 0; i < FIBERS; i++)
        cr_assert_eq(join_and_release(h[i], NULL), 0);
    drop_runtime(rt);
    cr_assert_eq(moirai_trace_stop(), 0);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_eq(moirai_trace_write_json(f), 0);
    fclose(f);
    trace_check_t c;
    const char *why = trace_check(text, &c);
    cr_assert_null(why, "%s", why);
    cr_assert_eq(c.dropped, 0);
    cr_assert_eq(c.unfinished, 0);
    /* A fiber that yields n times runs n + 1 slices. */
    cr_assert_eq(count_of(text, "\"name\":\"yielder\",\"cat\":\"async\""), FIBERS * (YIELDS + 1));
    free(text);
}
