/* Spawns that race with moirai_sched_destroy() (issue 15, point 6): each
 * is either accepted, and then runs exactly once (DRAIN) or has its handle
 * fail with -ECANCELED exactly once (CANCEL), or is refused with
 * -ESHUTDOWN; the spawning threads hold references (moirai_sched_retain()),
 * so that spawns made after destroy has returned meet -ESHUTDOWN rather
 * than freed memory (AddressSanitizer checks the latter). */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/sched/join.h>
#include <moirai/sched/sched.h>

#include "sched_test_util.h"
#include "test_scale.h"

#define SPAWNERS  3
#define MAX_TASKS 200000

typedef struct race {
    moirai_sched_t *sched;
    bool with_handles;
    _Atomic int started;
    /* Per task: how many times it ran. */
    _Atomic uint8_t ran[SPAWNERS][MAX_TASKS];
    /* Per spawner: accepted spawns, and how it ended. Spawns beyond
     * MAX_TASKS (when destroy comes late on a loaded machine) are counted
     * together, without handles. */
    long accepted[SPAWNERS];
    long overflow_accepted[SPAWNERS];
    _Atomic long overflow_ran[SPAWNERS];
    int last_rc[SPAWNERS];
    moirai_handle_t *handles[SPAWNERS][MAX_TASKS];
} race_t;

typedef struct spawner {
    race_t *r;
    int index;
} spawner_t;

static race_t *current;

static int mark_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    atomic_fetch_add((_Atomic uint8_t *)arg, 1);
    return 0;
}

static int count_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    atomic_fetch_add((_Atomic long *)arg, 1);
    return 0;
}

static void *spawner_main(void *arg)
{
    spawner_t *sp = arg;
    race_t *r = sp->r;
    atomic_fetch_add(&r->started, 1);
    long n = 0;
    int rc = 0;
    while (n < MAX_TASKS) {
        moirai_handle_t *h = NULL;
        if (r->with_handles)
            cr_assert_eq(moirai_handle_create(&h), 0);
        rc = moirai_sched_spawn(r->sched, mark_task, &r->ran[sp->index][n], NULL, h);
        if (rc != 0) {
            moirai_handle_release(h);
            break;
        }
        r->handles[sp->index][n++] = h;
    }
    r->accepted[sp->index] = n;
    /* Out of slots before destroy began: go on, counting in bulk. */
    while (rc == 0) {
        rc = moirai_sched_spawn(r->sched, count_task, &r->overflow_ran[sp->index], NULL, NULL);
        if (rc == 0)
            r->overflow_accepted[sp->index]++;
    }
    r->last_rc[sp->index] = rc;
    /* Destroy has begun: every later spawn, also after destroy has
     * returned, is refused, and touches only what the reference keeps
     * alive. */
    if (rc == -ESHUTDOWN) {
        cr_assert_eq(moirai_sched_spawn(r->sched, mark_task, NULL, NULL, NULL), -ESHUTDOWN);
        cr_assert_eq(moirai_sched_spawn_blocking(r->sched, mark_task, NULL, NULL, NULL),
                     -ESHUTDOWN);
    }
    moirai_sched_release(r->sched);
    return NULL;
}

static void race_once(moirai_shutdown_t how, bool with_handles)
{
    race_t *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    current = r;
    r->sched = make_sched(2);
    r->with_handles = with_handles;
    pthread_t th[SPAWNERS];
    spawner_t sp[SPAWNERS];
    for (int i = 0; i < SPAWNERS; i++) {
        sp[i] = (spawner_t){r, i};
        moirai_sched_retain(r->sched);
        cr_assert_eq(pthread_create(&th[i], NULL, spawner_main, &sp[i]), 0);
    }
    while (atomic_load(&r->started) < SPAWNERS)
        sched_yield();
    usleep(1000);
    cr_assert_eq(moirai_sched_destroy(r->sched, how), 0);
    /* The spawners may still be spawning here: they hold references. */
    for (int i = 0; i < SPAWNERS; i++)
        pthread_join(th[i], NULL);

    long total = 0;
    for (int i = 0; i < SPAWNERS; i++) {
        cr_assert_eq(r->last_rc[i], -ESHUTDOWN, "spawner %d ended with %d after %ld spawns", i,
                     r->last_rc[i], r->accepted[i]);
        total += r->accepted[i];
        for (long n = 0; n < r->accepted[i]; n++) {
            int ran = atomic_load(&r->ran[i][n]);
            if (how == MOIRAI_SHUTDOWN_DRAIN) {
                cr_assert_eq(ran, 1, "accepted task %d/%ld ran %d times", i, n, ran);
            } else {
                cr_assert_leq(ran, 1, "task %d/%ld ran %d times", i, n, ran);
            }
            if (with_handles) {
                moirai_handle_t *h = r->handles[i][n];
                cr_assert(moirai_handle_is_finished(h));
                int rc = moirai_handle_try_join(h, NULL);
                cr_assert(ran == 1 ? rc == 0 : rc == -ECANCELED, "task %d/%ld: ran %d, join %d", i,
                          n, ran, rc);
                moirai_handle_release(h);
            }
        }
        /* Nothing refused ever ran. */
        if (r->accepted[i] < MAX_TASKS)
            cr_assert_eq(atomic_load(&r->ran[i][r->accepted[i]]), 0);
        long extra = atomic_load(&r->overflow_ran[i]);
        if (how == MOIRAI_SHUTDOWN_DRAIN)
            cr_assert_eq(extra, r->overflow_accepted[i]);
        else
            cr_assert_leq(extra, r->overflow_accepted[i]);
    }
    cr_assert_gt(total, 0, "no spawn was accepted before destroy");
    free(r);
}

Test(destroy_race, spawns_racing_a_drain_run_exactly_once_or_are_refused, .timeout = 120)
{
    for (long i = 0; i < scaled(10); i++)
        race_once(MOIRAI_SHUTDOWN_DRAIN, false);
}

Test(destroy_race, spawns_racing_a_cancel_run_or_fail_cancelled_exactly_once, .timeout = 120)
{
    for (long i = 0; i < scaled(10); i++)
        race_once(MOIRAI_SHUTDOWN_CANCEL, true);
}

static void noop_join(void *arg)
{
    (void)arg;
}

Test(destroy_race, a_retained_scheduler_refuses_everything_after_destroy, .timeout = 30)
{
    moirai_sched_t *s = make_sched(1);
    moirai_sched_retain(s);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_sched_spawn(s, noop_task, NULL, NULL, h), -ESHUTDOWN);
    /* Refused: the handle is untouched and may be used again. */
    cr_assert_not(moirai_handle_is_finished(h));
    cr_assert_eq(moirai_sched_spawn_blocking(s, noop_task, NULL, NULL, NULL), -ESHUTDOWN);
    cr_assert_eq(moirai_join(s, noop_join, NULL, noop_join, NULL), -ESHUTDOWN);
    cr_assert_eq(moirai_sched_worker_count(s), 1);
    cr_assert_not_null(moirai_sched_executor(s));
    moirai_handle_release(h);
    moirai_sched_release(s);
    /* NULL is ignored. */
    moirai_sched_retain(NULL);
    moirai_sched_release(NULL);
}
