/* Scheduler tasks waiting on their cancel token (moirai/core/task.h): a
 * sleep ended by moirai_handle_cancel() returns -ECANCELED long before
 * its far deadline, and a listener registered by the task runs exactly
 * once on the cancelling thread. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/core/task.h>
#include <moirai/sched/sched.h>

#include "leak_check.h"
#include "sched_test_util.h"

#define FAR_NS  (60ull * MOIRAI_NS_PER_S) /* a deadline no test reaches */
#define WIDE_NS (10ull * MOIRAI_NS_PER_S) /* the wide bound for "at once" */

typedef struct sleeper {
    _Atomic int started;
    _Atomic int listened;
    _Atomic int sleep_rc;
    moirai_cancel_listener_t listener;
} sleeper_t;

static void on_cancel(void *arg)
{
    atomic_fetch_add(&((sleeper_t *)arg)->listened, 1);
}

static int sleeping_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)result;
    sleeper_t *s = arg;
    cr_assert_eq(moirai_cancel_token_listen(cancel, &s->listener, on_cancel, s), 0);
    atomic_store(&s->started, 1);
    int rc = moirai_cancel_token_sleep(cancel, FAR_NS);
    atomic_store(&s->sleep_rc, rc);
    cr_assert_eq(moirai_cancel_token_unlisten(cancel, &s->listener), 0);
    return rc;
}

LEAK_CHECKED_TEST(task_cancel_wait, cancel_ends_a_task_sleep, .timeout = 60)
{
    moirai_sched_t *sched = make_sched(2);
    static sleeper_t s;
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_sched_spawn(sched, sleeping_task, &s, NULL, h), 0);
    cr_assert(await_flag(&s.started));
    uint64_t t0 = moirai_clock_now_ns();
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    cr_assert_eq(moirai_handle_join(h, NULL), -ECANCELED);
    cr_assert_lt(moirai_clock_now_ns() - t0, WIDE_NS);
    cr_assert_eq(atomic_load(&s.sleep_rc), -ECANCELED, "sleep returned %d",
                 atomic_load(&s.sleep_rc));
    cr_assert_eq(atomic_load(&s.listened), 1);
    moirai_handle_release(h);
    drop_sched(sched);
}
