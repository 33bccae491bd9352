/* Cancel watches (moirai_cancel_token_watch / unwatch): the callback runs
 * exactly once for a cancel that comes after the watch, at once for one
 * that came before, never after unwatch, and never twice when a cancel
 * races the registration. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include <moirai/core.h>

static void count_cb(void *arg)
{
    atomic_fetch_add_explicit((_Atomic int *)arg, 1, memory_order_relaxed);
}

static moirai_handle_t *running_handle(void)
{
    moirai_handle_t *h = NULL;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert(moirai_handle_try_start(h));
    return h;
}

Test(cancel_watch, bad_arguments, .timeout = 10)
{
    _Atomic int n = 0;
    moirai_handle_t *h = running_handle();
    const moirai_cancel_token_t *t = moirai_handle_token(h);
    cr_assert_eq(moirai_cancel_token_watch(NULL, count_cb, (void *)&n), -EINVAL);
    cr_assert_eq(moirai_cancel_token_watch(t, NULL, (void *)&n), -EINVAL);
    cr_assert_eq(moirai_cancel_token_unwatch(NULL), -EINVAL);
    cr_assert_eq(moirai_cancel_token_unwatch(t), -ENOENT);
    cr_assert_eq(moirai_cancel_token_watch(t, count_cb, (void *)&n), 0);
    cr_assert_eq(moirai_cancel_token_watch(t, count_cb, (void *)&n), -EBUSY);
    cr_assert_eq(moirai_cancel_token_unwatch(t), 0);
    cr_assert_eq(moirai_cancel_token_unwatch(t), -ENOENT);
    cr_assert_eq(atomic_load(&n), 0);
    moirai_handle_complete(h, NULL);
    moirai_handle_release(h);
}

Test(cancel_watch, fires_once_on_cancel_of_running_task, .timeout = 10)
{
    _Atomic int n = 0;
    moirai_handle_t *h = running_handle();
    const moirai_cancel_token_t *t = moirai_handle_token(h);
    cr_assert_eq(moirai_cancel_token_watch(t, count_cb, (void *)&n), 0);
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    cr_assert_eq(atomic_load(&n), 1);
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY); /* already cancelled: no second call */
    cr_assert_eq(atomic_load(&n), 1);
    cr_assert_eq(moirai_cancel_token_unwatch(t), 0);
    moirai_handle_complete(h, NULL);
    moirai_handle_release(h);
}

Test(cancel_watch, fires_at_once_when_already_cancelled, .timeout = 10)
{
    _Atomic int n = 0;
    moirai_handle_t *h = running_handle();
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    cr_assert_eq(moirai_cancel_token_watch(moirai_handle_token(h), count_cb, (void *)&n), 0);
    cr_assert_eq(atomic_load(&n), 1);
    cr_assert_eq(moirai_cancel_token_unwatch(moirai_handle_token(h)), 0);
    moirai_handle_complete(h, NULL);
    moirai_handle_release(h);
}

Test(cancel_watch, never_fires_after_unwatch, .timeout = 10)
{
    _Atomic int n = 0;
    moirai_handle_t *h = running_handle();
    const moirai_cancel_token_t *t = moirai_handle_token(h);
    cr_assert_eq(moirai_cancel_token_watch(t, count_cb, (void *)&n), 0);
    cr_assert_eq(moirai_cancel_token_unwatch(t), 0);
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    cr_assert_eq(atomic_load(&n), 0);
    /* The slot is free again and a new watch sees the cancel at once. */
    cr_assert_eq(moirai_cancel_token_watch(t, count_cb, (void *)&n), 0);
    cr_assert_eq(atomic_load(&n), 1);
    moirai_cancel_token_unwatch(t);
    moirai_handle_complete(h, NULL);
    moirai_handle_release(h);
}

struct race {
    moirai_handle_t *h;
    _Atomic int go;
};

static void *canceller(void *arg)
{
    struct race *r = arg;
    while (!atomic_load_explicit(&r->go, memory_order_acquire))
        ;
    moirai_handle_cancel(r->h);
    return NULL;
}

/* The window between arming and the canceller's check is a few
 * instructions wide; thousands of rounds with the two started together
 * cover both orders, and ThreadSanitizer checks the hand-off of the
 * callback fields. Exactly one call per round, never zero, never two. */
Test(cancel_watch, racing_cancel_and_watch_fire_exactly_once, .timeout = 60)
{
    for (int round = 0; round < 2000; round++) {
        _Atomic int n = 0;
        struct race r = {running_handle(), 0};
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, canceller, &r), 0);
        atomic_store_explicit(&r.go, 1, memory_order_release);
        cr_assert_eq(moirai_cancel_token_watch(moirai_handle_token(r.h), count_cb, (void *)&n), 0);
        pthread_join(t, NULL);
        cr_assert_eq(atomic_load(&n), 1, "round %d: callback ran %d times", round, atomic_load(&n));
        cr_assert_eq(moirai_cancel_token_unwatch(moirai_handle_token(r.h)), 0);
        moirai_handle_complete(r.h, NULL);
        moirai_handle_release(r.h);
    }
}
