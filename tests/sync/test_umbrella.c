/* <moirai/sync.h> alone is enough for every call of moirai-sync, timed
 * waits included: their deadlines (moirai_deadline_after(),
 * MOIRAI_DEADLINE_NEVER) come with the headers that take them. Before,
 * this file did not compile without also including <moirai/core/clock.h>
 * by hand. Nothing but the umbrella header is included on purpose. */
#include <criterion/criterion.h>
#include <errno.h>

#include <moirai/sync.h>

Test(umbrella, timed_waits_need_only_the_sync_header, .timeout = 10)
{
    moirai_mutex_t m = MOIRAI_MUTEX_INIT;
    cr_assert_eq(moirai_mutex_lock_timed(&m, moirai_deadline_after(1000000)), 0);
    cr_assert_eq(moirai_mutex_lock_timed(&m, moirai_deadline_after(1000)), -ETIMEDOUT);
    moirai_mutex_unlock(&m);
    moirai_event_t e = MOIRAI_EVENT_INIT_MANUAL;
    cr_assert_eq(moirai_event_wait_timed(&e, moirai_deadline_after(1000)), -ETIMEDOUT);
    moirai_event_set(&e);
    cr_assert_eq(moirai_event_wait_timed(&e, MOIRAI_DEADLINE_NEVER), 0);
}
