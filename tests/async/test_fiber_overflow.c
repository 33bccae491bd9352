/* A fiber that overflows its stack ends the process with a message naming
 * the fiber (checked in a child process), through the public API. */
#include "async_test_util.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "asan_child.h"

static volatile int runaway_limit = 1 << 30;

static __attribute__((noinline)) int runaway(int n)
{
    volatile char frame[512];
    frame[0] = (char)n;
    frame[511] = (char)n;
    int r = n < runaway_limit ? runaway(n + 1) : 0;
    __asm__ volatile("" : : "r"(frame) : "memory"); /* no tail call */
    return r + frame[0];
}

static int overflow_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    return runaway(0);
}

static void overflow_child(void)
{
    moirai_runtime_t *rt = NULL;
    if (moirai_runtime_create(&rt, NULL) != 0)
        _exit(2);
    moirai_fiber_attr_t attr;
    moirai_fiber_attr_init(&attr);
    attr.task.name = "deep-recursion";
    attr.stack_size = MOIRAI_FIBER_STACK_MIN;
    moirai_handle_t *h = NULL;
    if (moirai_handle_create(&h) != 0 ||
        moirai_fiber_spawn(rt, overflow_fiber, NULL, &attr, h) != 0)
        _exit(2);
    moirai_handle_join(h, NULL);
    _exit(3);
}

Test(fiber_overflow, overflow_names_the_fiber_and_aborts, .timeout = 60)
{
    int status;
    char text[8192];
    asan_run_child("/tmp/moirai-fiber.XXXXXX", overflow_child, &status, text, sizeof(text));
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "child status %#x, said:\n%s",
              status, text);
    char expect[128];
    snprintf(expect, sizeof(expect), "moirai: fiber 'deep-recursion' (id ");
    cr_assert_not_null(strstr(text, expect), "child said:\n%s", text);
    snprintf(expect, sizeof(expect), "overflowed its stack of %zu bytes\n", MOIRAI_FIBER_STACK_MIN);
    cr_assert_not_null(strstr(text, expect), "child said:\n%s", text);
}
