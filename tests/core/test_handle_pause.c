/* Completion handles at the two few-instruction windows of completion,
 * reached deterministically through pause points (moirai-core/src/
 * pause_point.h): this test compiles handle.c into itself with
 * MOIRAI_TEST_PAUSE_POINTS and holds the completing thread inside a window
 * while other threads act.
 *
 *   handle_complete:claimed  the result is claimed but not yet written:
 *                            a second completer, a failer and a canceller
 *                            must all get -EALREADY, and nobody may see a
 *                            result yet;
 *   handle_publish:before    the result is written but not yet published:
 *                            a joiner that announces itself now must be
 *                            woken by the publish, not lost. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <moirai/core.h>

#include "futex_probe.h"

/* The armed point; only a thread that asked to (pause_me) stops there, so
 * the other threads run the same code straight through. */
static const char *armed;
static __thread bool pause_me;
static _Atomic int arrived, released;

void moirai__test_pause(const char *point);
void moirai__test_pause(const char *point)
{
    if (!pause_me || strcmp(point, armed) != 0)
        return;
    atomic_store(&arrived, 1);
    while (!atomic_load(&released))
        sched_yield();
}

static void arm(const char *point)
{
    armed = point;
    atomic_store(&arrived, 0);
    atomic_store(&released, 0);
}

static void wait_arrived(void)
{
    while (!atomic_load(&arrived))
        sched_yield();
}

static void release_and_disarm(void)
{
    atomic_store(&released, 1);
}

typedef struct completer {
    moirai_handle_t *h;
    pthread_t self;
    int rc;
} completer_t;

static void *complete_main(void *arg)
{
    completer_t *c = arg;
    pause_me = true;
    c->rc = moirai_handle_complete(c->h, (void *)(uintptr_t)11);
    return NULL;
}

Test(handle_pause, a_claimed_handle_refuses_every_other_finisher, .timeout = 30)
{
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    completer_t c = {.h = h};
    arm("handle_complete:claimed");
    cr_assert_eq(pthread_create(&c.self, NULL, complete_main, &c), 0);
    wait_arrived();

    /* Inside the window. */
    cr_assert_eq(moirai_handle_complete(h, (void *)(uintptr_t)22), -EALREADY);
    cr_assert_eq(moirai_handle_fail(h, -EIO), -EALREADY);
    cr_assert_eq(moirai_handle_cancel(h), -EALREADY);
    cr_assert_not(moirai_handle_is_finished(h));
    void *v = (void *)1;
    cr_assert_eq(moirai_handle_try_join(h, &v), -EAGAIN);
    cr_assert_eq(moirai_handle_join_timed(h, moirai_deadline_after(1000000), &v), -ETIMEDOUT);
    cr_assert_null(v);

    release_and_disarm();
    pthread_join(c.self, NULL);
    cr_assert_eq(c.rc, 0);
    cr_assert_eq(moirai_handle_join(h, &v), 0);
    cr_assert_eq((uintptr_t)v, 11, "the first completer's value stands");
    moirai_handle_release(h);
}

typedef struct joiner {
    moirai_handle_t *h;
    _Atomic pid_t tid;
    int rc;
    void *value;
} joiner_t;

static void *join_main(void *arg)
{
    joiner_t *j = arg;
    atomic_store(&j->tid, (pid_t)syscall(SYS_gettid));
    j->rc = moirai_handle_join(j->h, &j->value);
    return NULL;
}

Test(handle_pause, a_joiner_that_parks_while_the_result_is_published_is_woken, .timeout = 30)
{
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    completer_t c = {.h = h};
    arm("handle_publish:before");
    cr_assert_eq(pthread_create(&c.self, NULL, complete_main, &c), 0);
    wait_arrived();

    /* The result is written, not published: a joiner announces itself
     * (WAITERS_BIT) and parks. */
    joiner_t j = {.h = h};
    pthread_t jt;
    cr_assert_eq(pthread_create(&jt, NULL, join_main, &j), 0);
    pid_t tid;
    while ((tid = atomic_load(&j.tid)) == 0)
        sched_yield();
    /* Asleep in futex() (up to about 2 s: under QEMU's user-mode
     * emulation /proc names the host's system call, and the test then
     * goes on after the wait, by which time the joiner has parked). */
    for (int i = 0; i < 2000 && !in_syscall(tid, SYS_futex); i++)
        usleep(1000);
    cr_assert_not(moirai_handle_is_finished(h));

    /* The publish must see the joiner's announcement and wake it; a lost
     * wake-up hangs the join until the test's timeout. */
    release_and_disarm();
    pthread_join(c.self, NULL);
    pthread_join(jt, NULL);
    cr_assert_eq(c.rc, 0);
    cr_assert_eq(j.rc, 0);
    cr_assert_eq((uintptr_t)j.value, 11);
    moirai_handle_release(h);
}
