/* moirai_rwlock_t: shared readers, exclusive writers, writer preference,
 * try/timed variants. */
#include <criterion/criterion.h>

#include <errno.h>

#include <moirai/core/clock.h>
#include <moirai/sync/rwlock.h>

#include "lock_test_util.h"

/* A thread that takes a lock and holds it until told to let go. */
typedef struct holder {
    moirai_rwlock_t *rw;
    int write;
    _Atomic long held;
    _Atomic long release;
} holder_t;

static void *holder_main(void *arg)
{
    holder_t *h = arg;
    if (h->write)
        moirai_rwlock_wrlock(h->rw);
    else
        moirai_rwlock_rdlock(h->rw);
    atomic_store(&h->held, 1);
    test_await_at_least(&h->release, 1);
    if (h->write)
        moirai_rwlock_wrunlock(h->rw);
    else
        moirai_rwlock_rdunlock(h->rw);
    return NULL;
}

static pthread_t hold(holder_t *h, moirai_rwlock_t *rw, int write)
{
    *h = (holder_t){.rw = rw, .write = write};
    pthread_t t = test_spawn(holder_main, h);
    test_await_at_least(&h->held, 1);
    return t;
}

static void let_go(holder_t *h, pthread_t t)
{
    atomic_store(&h->release, 1);
    pthread_join(t, NULL);
}

/* ---- single-threaded semantics ---- */

Test(rwlock, static_init_basic, .timeout = 10)
{
    static moirai_rwlock_t rw = MOIRAI_RWLOCK_INIT;
    moirai_rwlock_rdlock(&rw);
    moirai_rwlock_rdunlock(&rw);
    moirai_rwlock_wrlock(&rw);
    moirai_rwlock_wrunlock(&rw);
    cr_assert(moirai_rwlock_try_wrlock(&rw));
    moirai_rwlock_wrunlock(&rw);
    cr_assert(moirai_rwlock_try_rdlock(&rw));
    moirai_rwlock_rdunlock(&rw);
    cr_assert_eq(moirai_rwlock_rdlock_timed(&rw, 0), 0, "a free lock is taken even past deadline");
    moirai_rwlock_rdunlock(&rw);
    cr_assert_eq(moirai_rwlock_wrlock_timed(&rw, 0), 0);
    moirai_rwlock_wrunlock(&rw);
}

Test(rwlock, init_destroy_reuse, .timeout = 10)
{
    moirai_rwlock_t rw;
    for (int i = 0; i < 3; i++) {
        moirai_rwlock_init(&rw);
        cr_assert(moirai_rwlock_try_wrlock(&rw));
        moirai_rwlock_wrunlock(&rw);
        moirai_rwlock_destroy(&rw);
    }
}

/* ---- try and timed variants against another thread's hold ---- */

Test(rwlock, reader_blocks_writers_not_readers, .timeout = 30)
{
    static moirai_rwlock_t rw = MOIRAI_RWLOCK_INIT;
    holder_t h;
    pthread_t t = hold(&h, &rw, 0);

    cr_assert_not(moirai_rwlock_try_wrlock(&rw), "a writer got in beside a reader");
    uint64_t deadline = test_deadline_ms(20);
    cr_assert_eq(moirai_rwlock_wrlock_timed(&rw, deadline), -ETIMEDOUT);
    cr_assert(moirai_clock_now_ns() >= deadline);
    /* The abandoned writer must have let readers in again. */
    cr_assert(moirai_rwlock_try_rdlock(&rw), "readers share the lock");
    moirai_rwlock_rdunlock(&rw);
    cr_assert_eq(moirai_rwlock_rdlock_timed(&rw, test_deadline_ms(10000)), 0);
    moirai_rwlock_rdunlock(&rw);

    let_go(&h, t);
    cr_assert(moirai_rwlock_try_wrlock(&rw), "free once the reader left");
    moirai_rwlock_wrunlock(&rw);
}

Test(rwlock, writer_blocks_everyone, .timeout = 30)
{
    static moirai_rwlock_t rw = MOIRAI_RWLOCK_INIT;
    holder_t h;
    pthread_t t = hold(&h, &rw, 1);

    cr_assert_not(moirai_rwlock_try_rdlock(&rw), "a reader got in beside a writer");
    cr_assert_not(moirai_rwlock_try_wrlock(&rw), "two writers at once");
    cr_assert_eq(moirai_rwlock_rdlock_timed(&rw, test_deadline_ms(20)), -ETIMEDOUT);
    cr_assert_eq(moirai_rwlock_wrlock_timed(&rw, test_deadline_ms(20)), -ETIMEDOUT);
    cr_assert_eq(moirai_rwlock_rdlock_timed(&rw, 0), -ETIMEDOUT);

    let_go(&h, t);
    cr_assert(moirai_rwlock_try_rdlock(&rw));
    moirai_rwlock_rdunlock(&rw);
}

/* ---- readers really run in parallel ---- */

typedef struct par_ctx {
    moirai_rwlock_t rw;
    _Atomic long inside;
    int rc;
} par_ctx_t;

static void *par_second_reader(void *arg)
{
    par_ctx_t *c = arg;
    c->rc = moirai_rwlock_rdlock_timed(&c->rw, test_deadline_ms(10000));
    if (c->rc == 0) {
        atomic_fetch_add(&c->inside, 1);
        moirai_rwlock_rdunlock(&c->rw);
    }
    return NULL;
}

Test(rwlock, readers_share, .timeout = 30)
{
    static par_ctx_t c;
    c = (par_ctx_t){.rw = MOIRAI_RWLOCK_INIT};
    moirai_rwlock_rdlock(&c.rw);
    pthread_t t = test_spawn(par_second_reader, &c);
    pthread_join(t, NULL);
    cr_assert_eq(c.rc, 0, "a second reader could not enter beside the first");
    cr_assert_eq(atomic_load(&c.inside), 1);
    moirai_rwlock_rdunlock(&c.rw);
}

/* ---- parked readers and writers are all woken ---- */

typedef struct wake_ctx {
    moirai_rwlock_t rw;
    _Atomic long readers_in;
    _Atomic long writers_in;
    long plain;
} wake_ctx_t;

static void *wake_reader(void *arg, int index)
{
    wake_ctx_t *c = arg;
    (void)index;
    moirai_rwlock_rdlock(&c->rw);
    atomic_fetch_add(&c->readers_in, 1);
    moirai_rwlock_rdunlock(&c->rw);
    return NULL;
}

static void *wake_writer(void *arg, int index)
{
    wake_ctx_t *c = arg;
    (void)index;
    moirai_rwlock_wrlock(&c->rw);
    c->plain++;
    atomic_fetch_add(&c->writers_in, 1);
    moirai_rwlock_wrunlock(&c->rw);
    return NULL;
}

static void *wake_readers_group(void *arg)
{
    test_run_threads(test_threads(), wake_reader, arg);
    return NULL;
}

static void *wake_writers_group(void *arg)
{
    test_run_threads(test_threads(), wake_writer, arg);
    return NULL;
}

Test(rwlock, parked_readers_and_writers_woken, .timeout = 30)
{
    static wake_ctx_t c;
    c = (wake_ctx_t){.rw = MOIRAI_RWLOCK_INIT};
    holder_t h;
    pthread_t t = hold(&h, &c.rw, 1);
    pthread_t r = test_spawn(wake_readers_group, &c);
    pthread_t w = test_spawn(wake_writers_group, &c);
    /* Let them spin out and park behind the writer. */
    test_sleep_ms(50);
    cr_assert_eq(atomic_load(&c.readers_in), 0, "a reader entered while a writer held the lock");
    cr_assert_eq(atomic_load(&c.writers_in), 0, "a writer entered while a writer held the lock");
    let_go(&h, t);
    pthread_join(r, NULL);
    pthread_join(w, NULL);
    cr_assert_eq(atomic_load(&c.readers_in), test_threads());
    cr_assert_eq(c.plain, test_threads());
}

/* A writer parked while draining a reader is woken when the reader leaves. */
Test(rwlock, draining_writer_woken_by_last_reader, .timeout = 30)
{
    static wake_ctx_t c;
    c = (wake_ctx_t){.rw = MOIRAI_RWLOCK_INIT};
    holder_t h;
    pthread_t t = hold(&h, &c.rw, 0);
    pthread_t w = test_spawn(wake_writers_group, &c);
    test_sleep_ms(50);
    cr_assert_eq(atomic_load(&c.writers_in), 0, "a writer entered beside a reader");
    /* The draining writer turns new readers away. */
    cr_assert_not(moirai_rwlock_try_rdlock(&c.rw), "writer preference: new readers must wait");
    let_go(&h, t);
    pthread_join(w, NULL);
    cr_assert_eq(c.plain, test_threads());
}

/* ---- writer preference: readers that always overlap do not starve a writer ----
 *
 * Two readers pass the lock between them so that at every instant at least
 * one of them holds it: a reader lets go only once the other holds the
 * lock too. With a reader-preferring lock the reader count never reaches
 * zero and the writer waits forever (its timed lock then fails). A reader
 * gives up waiting for its partner only when a recursive tryrdlock fails,
 * which happens exactly when a writer has raised its flag. */
typedef struct pref_ctx {
    moirai_rwlock_t rw;
    _Atomic int holding[2];
    _Atomic int turn;
    _Atomic int stop;
    _Atomic long rounds;
    _Atomic long readers_inside;
} pref_ctx_t;

static void *pref_reader(void *arg, int id)
{
    pref_ctx_t *c = arg;
    int other = 1 - id;
    moirai_rwlock_rdlock(&c->rw);
    atomic_fetch_add(&c->readers_inside, 1);
    atomic_store(&c->holding[id], 1);
    while (!atomic_load(&c->stop)) {
        /* Wait for my turn to let go, holding the lock. */
        while (atomic_load(&c->turn) != id && !atomic_load(&c->stop))
            sched_yield();
        /* Let go only once the partner holds it, unless a writer waits. */
        while (!atomic_load(&c->holding[other]) && !atomic_load(&c->stop)) {
            if (!moirai_rwlock_try_rdlock(&c->rw))
                break;
            moirai_rwlock_rdunlock(&c->rw);
            sched_yield();
        }
        atomic_store(&c->holding[id], 0);
        atomic_fetch_sub(&c->readers_inside, 1);
        atomic_store(&c->turn, other);
        moirai_rwlock_rdunlock(&c->rw);
        atomic_fetch_add(&c->rounds, 1);
        if (atomic_load(&c->stop))
            return NULL;
        moirai_rwlock_rdlock(&c->rw);
        atomic_fetch_add(&c->readers_inside, 1);
        atomic_store(&c->holding[id], 1);
    }
    atomic_store(&c->holding[id], 0);
    atomic_fetch_sub(&c->readers_inside, 1);
    moirai_rwlock_rdunlock(&c->rw);
    return NULL;
}

typedef struct pref_run {
    pref_ctx_t *c;
    int id;
} pref_run_t;

static void *pref_reader_thread(void *arg)
{
    pref_run_t *r = arg;
    return pref_reader(r->c, r->id);
}

Test(rwlock, writer_not_starved_by_overlapping_readers, .timeout = 60)
{
    static pref_ctx_t c;
    c = (pref_ctx_t){.rw = MOIRAI_RWLOCK_INIT};
    pref_run_t r0 = {&c, 0}, r1 = {&c, 1};
    pthread_t t0 = test_spawn(pref_reader_thread, &r0);
    pthread_t t1 = test_spawn(pref_reader_thread, &r1);
    /* Let the readers establish their overlap for a few hand-overs. */
    test_await_at_least(&c.rounds, 20);
    int rc = moirai_rwlock_wrlock_timed(&c.rw, test_deadline_ms(20000));
    cr_assert_eq(rc, 0, "the writer starved behind overlapping readers");
    cr_assert_eq(atomic_load(&c.readers_inside), 0, "a reader is inside with the writer");
    atomic_store(&c.stop, 1);
    moirai_rwlock_wrunlock(&c.rw);
    pthread_join(t0, NULL);
    pthread_join(t1, NULL);
}

/* ---- exact counts and consistent snapshots ----
 *
 * Writers increment two plain fields; readers check they are equal and
 * that no writer is inside. Plain fields make a missing acquire/release a
 * data race for ThreadSanitizer. The inside counters are relaxed, so that
 * they order nothing themselves: with seq_cst counters, a writer's
 * decrement and a reader's load would carry the plain fields across and
 * hide a lock whose unlock does not release (the unannotated TSan build,
 * tests/sync/meson.build, then missed a relaxed write unlock). */
typedef struct mix_ctx {
    moirai_rwlock_t rw;
    long a, b;
    _Atomic long writers_inside;
    _Atomic long readers_inside;
    _Atomic long violations;
    long iters;
    int mode; /* 0 blocking, 1 try, 2 timed */
} mix_ctx_t;

static void mix_rd(mix_ctx_t *c)
{
    if (c->mode == 1) {
        while (!moirai_rwlock_try_rdlock(&c->rw))
            sched_yield();
    } else if (c->mode == 2) {
        cr_assert_eq(moirai_rwlock_rdlock_timed(&c->rw, test_deadline_ms(60000)), 0);
    } else {
        moirai_rwlock_rdlock(&c->rw);
    }
}

static void mix_wr(mix_ctx_t *c)
{
    if (c->mode == 1) {
        while (!moirai_rwlock_try_wrlock(&c->rw))
            sched_yield();
    } else if (c->mode == 2) {
        cr_assert_eq(moirai_rwlock_wrlock_timed(&c->rw, test_deadline_ms(60000)), 0);
    } else {
        moirai_rwlock_wrlock(&c->rw);
    }
}

static void *mix_worker(void *arg, int index)
{
    mix_ctx_t *c = arg;
    for (long i = 0; i < c->iters; i++) {
        /* Thread 0 and 1 write every 4th operation; the others only read. */
        if (index < 2 && i % 4 == 0) {
            mix_wr(c);
            if (atomic_fetch_add_explicit(&c->writers_inside, 1, memory_order_relaxed) != 0 ||
                atomic_load_explicit(&c->readers_inside, memory_order_relaxed) != 0)
                atomic_fetch_add_explicit(&c->violations, 1, memory_order_relaxed);
            c->a++;
            c->b++;
            atomic_fetch_sub_explicit(&c->writers_inside, 1, memory_order_relaxed);
            moirai_rwlock_wrunlock(&c->rw);
        } else {
            mix_rd(c);
            atomic_fetch_add_explicit(&c->readers_inside, 1, memory_order_relaxed);
            if (atomic_load_explicit(&c->writers_inside, memory_order_relaxed) != 0 || c->a != c->b)
                atomic_fetch_add_explicit(&c->violations, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&c->readers_inside, 1, memory_order_relaxed);
            moirai_rwlock_rdunlock(&c->rw);
        }
    }
    return NULL;
}

static void run_mix(int mode, long iters)
{
    static mix_ctx_t c;
    c = (mix_ctx_t){.rw = MOIRAI_RWLOCK_INIT, .iters = iters, .mode = mode};
    int n = test_threads();
    test_run_threads(n, mix_worker, &c);
    cr_assert_eq(atomic_load(&c.violations), 0, "a reader saw a writer inside, or vice versa");
    long writes = 2 * ((iters + 3) / 4);
    cr_assert_eq(c.a, writes, "lost writes: %ld of %ld", c.a, writes);
    cr_assert_eq(c.b, writes);
}

Test(rwlock, readers_never_see_writer_blocking, .timeout = 60)
{
    run_mix(0, test_iters(100000, 2000));
}

Test(rwlock, readers_never_see_writer_try, .timeout = 60)
{
    run_mix(1, test_iters(30000, 1000));
}

Test(rwlock, readers_never_see_writer_timed, .timeout = 60)
{
    run_mix(2, test_iters(30000, 1000));
}

/* Writers only: N threads x M increments. */
typedef struct wonly_ctx {
    moirai_rwlock_t rw;
    long plain;
    long iters;
} wonly_ctx_t;

static void *wonly_worker(void *arg, int index)
{
    wonly_ctx_t *c = arg;
    (void)index;
    for (long i = 0; i < c->iters; i++) {
        moirai_rwlock_wrlock(&c->rw);
        c->plain++;
        moirai_rwlock_wrunlock(&c->rw);
    }
    return NULL;
}

Test(rwlock, writers_exact_count, .timeout = 60)
{
    static wonly_ctx_t c;
    c = (wonly_ctx_t){.rw = MOIRAI_RWLOCK_INIT, .iters = test_iters(100000, 2000)};
    int n = test_threads();
    test_run_threads(n, wonly_worker, &c);
    cr_assert_eq(c.plain, (long)n * c.iters);
}

/* More reader threads than slots: threads share slots and still work. */
Test(rwlock, more_threads_than_slots, .timeout = 60)
{
    static mix_ctx_t c;
    c = (mix_ctx_t){.rw = MOIRAI_RWLOCK_INIT, .iters = test_iters(20000, 500), .mode = 0};
    int n = MOIRAI_RWLOCK_READER_SLOTS + 3;
    test_run_threads(n, mix_worker, &c);
    cr_assert_eq(atomic_load(&c.violations), 0);
    cr_assert_eq(c.a, 2 * ((c.iters + 3) / 4));
}
