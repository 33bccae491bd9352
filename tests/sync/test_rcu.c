/* RCU glue: registration (explicit, automatic, at thread exit), grace
 * periods that wait for readers, and deferred callbacks that run only
 * after every reader that could see the object has left. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <moirai/sync/rcu.h>

#include "oom.h"

Test(rcu, register_and_unregister_are_idempotent, .timeout = 10)
{
    cr_assert_eq(moirai_rcu_thread_register(), 0);
    cr_assert_eq(moirai_rcu_thread_register(), 0);
    moirai_rcu_read_lock();
    moirai_rcu_read_unlock();
    moirai_rcu_thread_unregister();
    moirai_rcu_thread_unregister();
    /* Unregistered, a read lock registers again on its own. */
    moirai_rcu_read_lock();
    moirai_rcu_read_unlock();
    moirai_rcu_synchronize();
    moirai_rcu_thread_unregister();
}

Test(rcu, read_sections_nest, .timeout = 10)
{
    moirai_rcu_read_lock();
    moirai_rcu_read_lock();
    moirai_rcu_read_unlock();
    moirai_rcu_read_unlock();
    /* Not inside a section any more, or this would deadlock. */
    moirai_rcu_synchronize();
}

/* A reader that stays inside its section until told to leave. */
typedef struct reader {
    _Atomic int entered;
    _Atomic int release;
    _Atomic int left;
} reader_t;

static void *reader_thread(void *p)
{
    reader_t *r = p;
    moirai_rcu_read_lock();
    moirai_rcu_read_lock(); /* nested: the outer unlock ends the section */
    atomic_store(&r->entered, 1);
    while (!atomic_load(&r->release))
        usleep(1000);
    moirai_rcu_read_unlock();
    /* Still inside the outer section: the grace period must not end. */
    usleep(20000);
    atomic_store(&r->left, 1);
    moirai_rcu_read_unlock();
    return NULL;
}

typedef struct sync_arg {
    reader_t *r;
    _Atomic int done;
    int left_seen;
} sync_arg_t;

static void *synchronizer(void *p)
{
    sync_arg_t *s = p;
    moirai_rcu_synchronize();
    s->left_seen = atomic_load(&s->r->left);
    atomic_store(&s->done, 1);
    return NULL;
}

Test(rcu, synchronize_waits_for_a_reader_that_entered_before, .timeout = 30)
{
    reader_t r = {0};
    pthread_t rt, st;
    cr_assert_eq(pthread_create(&rt, NULL, reader_thread, &r), 0);
    while (!atomic_load(&r.entered))
        usleep(1000);
    sync_arg_t s = {.r = &r};
    cr_assert_eq(pthread_create(&st, NULL, synchronizer, &s), 0);
    /* Give the grace period every chance to end early if it were wrong. */
    usleep(50000);
    cr_assert_eq(atomic_load(&s.done), 0, "synchronize returned while a reader was inside");
    atomic_store(&r.release, 1);
    pthread_join(st, NULL);
    pthread_join(rt, NULL);
    cr_assert_eq(s.left_seen, 1, "the grace period ended before the reader left");
}

typedef struct deferred {
    moirai_rcu_head_t head;
    _Atomic int ran;
    reader_t *r;
    int reader_left_when_run;
} deferred_t;

static void deferred_cb(moirai_rcu_head_t *head)
{
    deferred_t *d = (deferred_t *)((char *)head - offsetof(deferred_t, head));
    d->reader_left_when_run = d->r != NULL ? atomic_load(&d->r->left) : 1;
    atomic_fetch_add(&d->ran, 1);
}

Test(rcu, call_runs_once_after_the_grace_period, .timeout = 30)
{
    reader_t r = {0};
    pthread_t rt;
    cr_assert_eq(pthread_create(&rt, NULL, reader_thread, &r), 0);
    while (!atomic_load(&r.entered))
        usleep(1000);
    deferred_t d = {.r = &r};
    moirai_rcu_call(&d.head, deferred_cb);
    usleep(50000);
    cr_assert_eq(atomic_load(&d.ran), 0, "callback ran while a reader was inside");
    atomic_store(&r.release, 1);
    pthread_join(rt, NULL);
    moirai_rcu_barrier();
    cr_assert_eq(atomic_load(&d.ran), 1, "callback did not run exactly once");
    cr_assert_eq(d.reader_left_when_run, 1);
}

Test(rcu, barrier_runs_every_queued_callback, .timeout = 30)
{
    enum { N = 1000 };
    static deferred_t d[N];
    for (int i = 0; i < N; i++)
        moirai_rcu_call(&d[i].head, deferred_cb);
    moirai_rcu_barrier();
    for (int i = 0; i < N; i++)
        cr_assert_eq(atomic_load(&d[i].ran), 1, "callback %d ran %d times", i,
                     atomic_load(&d[i].ran));
}

static void *register_and_exit(void *p)
{
    (void)p;
    /* Registers implicitly and exits without unregistering: the exit hook
     * must do it, or liburcu keeps a pointer into this dead thread. */
    moirai_rcu_read_lock();
    moirai_rcu_read_unlock();
    return NULL;
}

Test(rcu, threads_are_unregistered_when_they_exit, .timeout = 60)
{
    /* glibc reuses thread stacks (and the TLS in them), so a thread that
     * stayed registered after exiting would be registered again at the
     * same address by a later thread, corrupting liburcu's reader list;
     * grace periods would then hang or crash. */
    for (int i = 0; i < 200; i++) {
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, register_and_exit, NULL), 0);
        pthread_join(t, NULL);
        if (i % 20 == 0)
            moirai_rcu_synchronize();
    }
    moirai_rcu_synchronize();
    moirai_rcu_barrier();
}

static void *explicit_register(void *p)
{
    _Atomic int *ok = p;
    int rc = moirai_rcu_thread_register();
    moirai_rcu_read_lock();
    moirai_rcu_read_unlock();
    moirai_rcu_thread_unregister();
    if (rc == 0)
        atomic_fetch_add(ok, 1);
    return NULL;
}

Test(rcu, foreign_threads_may_register_explicitly, .timeout = 60)
{
    _Atomic int ok = 0;
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, explicit_register, &ok), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&ok), 8);
    moirai_rcu_synchronize();
}

/* A callback frees an object that another thread read just before queuing
 * it, and nothing but the grace period orders the two: the callback's
 * free must happen-after the read. ThreadSanitizer cannot see that order
 * through liburcu (uninstrumented), so moirai_rcu_call() states it. The
 * TSan build runs this suite a second time without the liburcu
 * suppressions (tests/sync/meson.build), where a missing statement is
 * reported on every run; it avoids moirai_rcu_barrier(), whose own
 * internals TSan would report there. The reader stays alive until the
 * callback has run, so that its unregistration (which takes a lock the
 * grace period also takes) cannot order them by accident. */
typedef struct owned {
    moirai_rcu_head_t head;
    int value;
} owned_t;

static _Atomic int owned_freed, warm_ran;

static void free_owned(moirai_rcu_head_t *head)
{
    free((char *)head - offsetof(owned_t, head));
    atomic_store_explicit(&owned_freed, 1, memory_order_relaxed);
}

static void warm_cb(moirai_rcu_head_t *head)
{
    (void)head;
    atomic_store_explicit(&warm_ran, 1, memory_order_relaxed);
}

static void *read_then_retire(void *p)
{
    owned_t *o = p;
    moirai_rcu_read_lock();
    int v = o->value;
    moirai_rcu_read_unlock();
    moirai_rcu_call(&o->head, free_owned);
    while (!atomic_load_explicit(&owned_freed, memory_order_relaxed))
        usleep(1000);
    return (void *)(intptr_t)v;
}

/* Not checked for live blocks (tests/common/live.c): these tests run
 * without TSan's suppressions (tests/sync/meson.build), and the check's
 * RCU barrier would add liburcu's own uninstrumented race to them. */
TestSuite(rcu_tsan, .init = moirai_test_live_unchecked);

Test(rcu_tsan, callback_free_happens_after_the_readers_read, .timeout = 30)
{
    /* Start liburcu's call_rcu thread now, so that creating it does not
     * order the reader before the callback. */
    static moirai_rcu_head_t warm;
    moirai_rcu_call(&warm, warm_cb);
    while (!atomic_load_explicit(&warm_ran, memory_order_relaxed))
        usleep(1000);
    owned_t *o = malloc(sizeof(*o));
    cr_assert_not_null(o);
    o->value = 42;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, read_then_retire, o), 0);
    void *v;
    pthread_join(t, &v);
    cr_assert_eq((intptr_t)v, 42);
    cr_assert_eq(atomic_load(&owned_freed), 1);
}
