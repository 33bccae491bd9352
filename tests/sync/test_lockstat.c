/* Lock contention statistics (moirai/sync/lockstat.h): exact counts under
 * a known schedule, per-name sums, iteration, reset, forgetting, the
 * errors, and allocation failures.
 *
 * The schedule: the test thread holds a lock; a waiter thread announces
 * that it is about to lock it, then locks. The test releases the lock only
 * once the waiter is provably on the contended path: parked (the lock word
 * shows the parked-waiter state the waiter itself stored) for the mutex
 * and rwlock, or, for the spinlocks, which never park, once the waiter's
 * thread has burnt 20 ms of CPU time since its announcement (it does
 * nothing but spin in the lock in that time). Each such round is then
 * exactly one contended acquisition. No assertion depends on how long
 * anything took. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <moirai/sync.h>

#include "lock_test_util.h"
#include "oom.h"
#include "prom_test.h"

/* ---- the schedule ---- */

typedef enum ready_how {
    READY_WORD,    /* *word & mask becomes non-zero */
    READY_CPUTIME, /* the waiter's thread spent 20 ms of CPU after announcing */
} ready_how_t;

typedef struct waiter {
    void (*lock)(void *obj);
    void (*unlock)(void *obj);
    void *obj;
    ready_how_t how;
    _Atomic uint32_t *word;
    uint32_t mask;
    _Atomic long announced;
} waiter_t;

static void *waiter_main(void *p)
{
    waiter_t *w = p;
    /* Release: the test reads the CPU clock only after this. */
    atomic_store_explicit(&w->announced, 1, memory_order_release);
    w->lock(w->obj);
    w->unlock(w->obj);
    return NULL;
}

static uint64_t thread_cpu_ns(pthread_t t)
{
    clockid_t id;
    cr_assert_eq(pthread_getcpuclockid(t, &id), 0);
    struct timespec ts;
    cr_assert_eq(clock_gettime(id, &ts), 0);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* With the lock held by the caller through `release`'s object: lets a
 * waiter contend once, then releases the lock and joins the waiter. */
static void contend_once(waiter_t *w, void (*release)(void *obj))
{
    atomic_store(&w->announced, 0);
    pthread_t t = test_spawn(waiter_main, w);
    test_await_at_least(&w->announced, 1);
    if (w->how == READY_WORD) {
        while ((atomic_load_explicit(w->word, memory_order_relaxed) & w->mask) == 0)
            test_sleep_ms(1);
    } else {
        uint64_t c0 = thread_cpu_ns(t);
        while (thread_cpu_ns(t) - c0 < 20 * MOIRAI_NS_PER_MS)
            test_sleep_ms(1);
    }
    release(w->obj);
    cr_assert_eq(pthread_join(t, NULL), 0);
}

static void mutex_lock_fn(void *o)
{
    moirai_mutex_lock(o);
}
static void mutex_unlock_fn(void *o)
{
    moirai_mutex_unlock(o);
}
static void mutex_timed_fn(void *o)
{
    cr_assert_eq(moirai_mutex_lock_timed(o, MOIRAI_DEADLINE_NEVER), 0);
}
static void rd_lock_fn(void *o)
{
    moirai_rwlock_rdlock(o);
}
static void rd_unlock_fn(void *o)
{
    moirai_rwlock_rdunlock(o);
}
static void wr_lock_fn(void *o)
{
    moirai_rwlock_wrlock(o);
}
static void wr_timed_fn(void *o)
{
    cr_assert_eq(moirai_rwlock_wrlock_timed(o, MOIRAI_DEADLINE_NEVER), 0);
}
static void wr_unlock_fn(void *o)
{
    moirai_rwlock_wrunlock(o);
}
static void spin_lock_fn(void *o)
{
    moirai_spinlock_lock(o);
}
static void spin_unlock_fn(void *o)
{
    moirai_spinlock_unlock(o);
}
static void ticket_lock_fn(void *o)
{
    moirai_ticketlock_lock(o);
}
static void ticket_unlock_fn(void *o)
{
    moirai_ticketlock_unlock(o);
}

/* The mutex's "locked, waiters may be parked" state (mutex.c). */
#define MUTEX_CONTENDED 2u
/* The rwlock's flags (rwlock.c): readers parked, writer parked draining. */
#define RW_READERS_PARKED 2u
#define RW_DRAIN_PARKED   4u

/* One contended acquisition of `m` (held by nobody on entry). */
static void contend_mutex(moirai_mutex_t *m)
{
    moirai_mutex_lock(m);
    waiter_t w = {mutex_lock_fn,  mutex_unlock_fn, m, READY_WORD,
                  &m->priv_state, MUTEX_CONTENDED, 0};
    contend_once(&w, mutex_unlock_fn);
}

/* ---- checks ---- */

static unsigned expected_bucket(uint64_t ns)
{
    if (ns < 2)
        return 0;
    unsigned b = 63u - (unsigned)__builtin_clzll(ns);
    return b < MOIRAI_LOCK_STATS_BUCKETS ? b : MOIRAI_LOCK_STATS_BUCKETS - 1;
}

/* The histogram sums to the count; with one acquisition, its wait is the
 * total and the maximum and sits in the bucket of its size. */
static void check_consistent(const moirai_lock_stats_t *s)
{
    uint64_t sum = 0;
    for (int i = 0; i < MOIRAI_LOCK_STATS_BUCKETS; i++)
        sum += s->hist[i];
    cr_assert_eq(sum, s->contended, "histogram sums to %llu, count is %llu",
                 (unsigned long long)sum, (unsigned long long)s->contended);
    cr_assert_geq(s->total_wait_ns, s->max_wait_ns);
    if (s->contended > 0) {
        cr_assert_geq(s->max_wait_ns * s->contended, s->total_wait_ns,
                      "the maximum is at least the mean");
        /* The maximum's bucket holds at least that acquisition, and no
         * bucket above it holds any. */
        unsigned top = expected_bucket(s->max_wait_ns);
        cr_assert_geq(s->hist[top], 1);
        for (unsigned i = top + 1; i < MOIRAI_LOCK_STATS_BUCKETS; i++)
            cr_assert_eq(s->hist[i], 0);
    }
    if (s->contended == 1) {
        cr_assert_eq(s->total_wait_ns, s->max_wait_ns);
        cr_assert_eq(s->hist[expected_bucket(s->max_wait_ns)], 1);
    }
}

static moirai_lock_stats_t get_ok(const void *lock, moirai_lock_kind_t kind)
{
    moirai_lock_stats_t s;
    cr_assert_eq(moirai_lock_stats_get(lock, kind, &s), 0);
    cr_assert_eq(s.lock, lock);
    cr_assert_eq(s.kind, kind);
    check_consistent(&s);
    return s;
}

/* ---- the switch ---- */

/* Not checked for live blocks (tests/common/live.c): the registry keeps
 * every name it interned, and the records of locks not destroyed, for the
 * life of the process (moirai/sync/lockstat.h). */
TestSuite(lockstat, .init = moirai_test_live_unchecked);

Test(lockstat, off_by_default_records_nothing, .timeout = 30)
{
    cr_assert_not(moirai_lock_stats_enabled(), "statistics are off by default");
    moirai_mutex_t m;
    moirai_mutex_init(&m);
    contend_mutex(&m);
    moirai_lock_stats_t s;
    cr_assert_eq(moirai_lock_stats_get(&m, MOIRAI_LOCK_KIND_MUTEX, &s), -ENOENT,
                 "a contended lock leaves no record while statistics are off");

    /* Named while off: the record exists, and stays at zero. */
    cr_assert_eq(moirai_lock_stats_name(&m, "off"), 0);
    contend_mutex(&m);
    s = get_ok(&m, MOIRAI_LOCK_KIND_MUTEX);
    cr_assert_eq(s.contended, 0);
    cr_assert_eq(moirai_lock_stats_get_name("off", MOIRAI_LOCK_KIND_MUTEX, &s), 0);
    cr_assert_eq(s.contended, 0);

    /* On, then off again: nothing more is counted. */
    moirai_lock_stats_enable(true);
    cr_assert(moirai_lock_stats_enabled());
    contend_mutex(&m);
    moirai_lock_stats_enable(false);
    contend_mutex(&m);
    cr_assert_eq(get_ok(&m, MOIRAI_LOCK_KIND_MUTEX).contended, 1);
    moirai_mutex_destroy(&m);
}

/* ---- exact counts per lock type ---- */

Test(lockstat, mutex_exactly_one_contended, .timeout = 30)
{
    moirai_lock_stats_enable(true);
    moirai_mutex_t m;
    moirai_mutex_init(&m);
    /* Uncontended acquisitions count nothing and create no record. */
    for (int i = 0; i < 100; i++) {
        moirai_mutex_lock(&m);
        moirai_mutex_unlock(&m);
    }
    cr_assert(moirai_mutex_try_lock(&m));
    moirai_mutex_unlock(&m);
    moirai_lock_stats_t s;
    cr_assert_eq(moirai_lock_stats_get(&m, MOIRAI_LOCK_KIND_MUTEX, &s), -ENOENT);

    contend_mutex(&m);
    s = get_ok(&m, MOIRAI_LOCK_KIND_MUTEX);
    cr_assert_eq(s.contended, 1);
    cr_assert_gt(s.max_wait_ns, 0, "a parked waiter waited");
    cr_assert_null(s.name);

    /* The timed lock counts the same way. */
    moirai_mutex_lock(&m);
    waiter_t w = {mutex_timed_fn, mutex_unlock_fn, &m, READY_WORD,
                  &m.priv_state,  MUTEX_CONTENDED, 0};
    contend_once(&w, mutex_unlock_fn);
    moirai_lock_stats_t s2 = get_ok(&m, MOIRAI_LOCK_KIND_MUTEX);
    cr_assert_eq(s2.contended, 2);
    cr_assert_geq(s2.max_wait_ns, s.max_wait_ns, "the maximum never shrinks");
    cr_assert_geq(s2.total_wait_ns, s.total_wait_ns + 1);

    /* A timed lock that gives up is not an acquisition. */
    moirai_mutex_lock(&m);
    cr_assert_eq(moirai_mutex_lock_timed(&m, 0), -ETIMEDOUT);
    cr_assert_eq(moirai_mutex_lock_timed(&m, test_deadline_ms(5)), -ETIMEDOUT);
    moirai_mutex_unlock(&m);
    cr_assert_eq(get_ok(&m, MOIRAI_LOCK_KIND_MUTEX).contended, 2);

    /* Other kinds of a known lock read as zeros. */
    cr_assert_eq(get_ok(&m, MOIRAI_LOCK_KIND_SPIN).contended, 0);
    moirai_mutex_destroy(&m);
}

Test(lockstat, rwlock_read_and_write, .timeout = 30)
{
    moirai_lock_stats_enable(true);
    moirai_rwlock_t rw;
    moirai_rwlock_init(&rw);

    /* A reader blocked by a writer. */
    moirai_rwlock_wrlock(&rw);
    waiter_t r = {rd_lock_fn, rd_unlock_fn, &rw, READY_WORD, &rw.priv_flags, RW_READERS_PARKED, 0};
    contend_once(&r, wr_unlock_fn);
    cr_assert_eq(get_ok(&rw, MOIRAI_LOCK_KIND_RWLOCK_READ).contended, 1);
    cr_assert_eq(get_ok(&rw, MOIRAI_LOCK_KIND_RWLOCK_WRITE).contended, 0);
    cr_assert_eq(get_ok(&rw, MOIRAI_LOCK_KIND_MUTEX).contended, 0,
                 "the writer lock inside is not counted as a mutex");

    /* A writer waiting for a reader to drain. */
    moirai_rwlock_rdlock(&rw);
    waiter_t wd = {wr_lock_fn, wr_unlock_fn, &rw, READY_WORD, &rw.priv_flags, RW_DRAIN_PARKED, 0};
    contend_once(&wd, rd_unlock_fn);
    cr_assert_eq(get_ok(&rw, MOIRAI_LOCK_KIND_RWLOCK_WRITE).contended, 1);

    /* A writer behind a writer, plain and timed. */
    moirai_rwlock_wrlock(&rw);
    waiter_t ww = {
        wr_lock_fn, wr_unlock_fn, &rw, READY_WORD, &rw.priv_writer.priv_state, MUTEX_CONTENDED, 0};
    contend_once(&ww, wr_unlock_fn);
    moirai_rwlock_wrlock(&rw);
    waiter_t wt = {
        wr_timed_fn, wr_unlock_fn, &rw, READY_WORD, &rw.priv_writer.priv_state, MUTEX_CONTENDED, 0};
    contend_once(&wt, wr_unlock_fn);
    cr_assert_eq(get_ok(&rw, MOIRAI_LOCK_KIND_RWLOCK_WRITE).contended, 3);
    cr_assert_eq(get_ok(&rw, MOIRAI_LOCK_KIND_RWLOCK_READ).contended, 1);

    /* Uncontended read and write locks add nothing. */
    for (int i = 0; i < 50; i++) {
        moirai_rwlock_rdlock(&rw);
        moirai_rwlock_rdunlock(&rw);
        moirai_rwlock_wrlock(&rw);
        moirai_rwlock_wrunlock(&rw);
    }
    cr_assert_eq(get_ok(&rw, MOIRAI_LOCK_KIND_RWLOCK_WRITE).contended, 3);
    cr_assert_eq(get_ok(&rw, MOIRAI_LOCK_KIND_RWLOCK_READ).contended, 1);
    moirai_rwlock_destroy(&rw);
}

Test(lockstat, spinlock_and_ticketlock, .timeout = 60)
{
    moirai_lock_stats_enable(true);
    moirai_spinlock_t sl;
    moirai_spinlock_init(&sl);
    moirai_spinlock_lock(&sl);
    waiter_t ws = {spin_lock_fn, spin_unlock_fn, &sl, READY_CPUTIME, NULL, 0, 0};
    contend_once(&ws, spin_unlock_fn);
    moirai_lock_stats_t s = get_ok(&sl, MOIRAI_LOCK_KIND_SPIN);
    cr_assert_eq(s.contended, 1);
    cr_assert_gt(s.max_wait_ns, 0);
    moirai_spinlock_lock(&sl);
    moirai_spinlock_unlock(&sl);
    cr_assert_eq(get_ok(&sl, MOIRAI_LOCK_KIND_SPIN).contended, 1);
    moirai_spinlock_destroy(&sl);

    moirai_ticketlock_t tl;
    moirai_ticketlock_init(&tl);
    moirai_ticketlock_lock(&tl);
    waiter_t wt = {ticket_lock_fn, ticket_unlock_fn, &tl, READY_CPUTIME, NULL, 0, 0};
    contend_once(&wt, ticket_unlock_fn);
    moirai_ticketlock_lock(&tl);
    moirai_ticketlock_unlock(&tl);
    s = get_ok(&tl, MOIRAI_LOCK_KIND_TICKET);
    cr_assert_eq(s.contended, 1);
    cr_assert_eq(get_ok(&tl, MOIRAI_LOCK_KIND_SPIN).contended, 0);
    moirai_ticketlock_destroy(&tl);
}

/* ---- names ---- */

Test(lockstat, names_sum_across_locks, .timeout = 30)
{
    moirai_lock_stats_enable(true);
    moirai_mutex_t a, b, c;
    moirai_mutex_init(&a);
    moirai_mutex_init(&b);
    moirai_mutex_init(&c);
    cr_assert_eq(moirai_lock_stats_name(&a, "site"), 0);
    cr_assert_eq(moirai_lock_stats_name(&b, "site"), 0);

    moirai_lock_stats_t n;
    cr_assert_eq(moirai_lock_stats_get_name("site", MOIRAI_LOCK_KIND_MUTEX, &n), 0);
    cr_assert_eq(n.contended, 0, "a name is known, at zero, before any contention");

    contend_mutex(&a);
    contend_mutex(&b);
    contend_mutex(&b);
    contend_mutex(&c);
    moirai_lock_stats_t sa = get_ok(&a, MOIRAI_LOCK_KIND_MUTEX);
    moirai_lock_stats_t sb = get_ok(&b, MOIRAI_LOCK_KIND_MUTEX);
    cr_assert_eq(sa.contended, 1);
    cr_assert_eq(sb.contended, 2);
    cr_assert_str_eq(sa.name, "site");
    cr_assert_eq(sa.name, sb.name, "names are interned: one string");

    cr_assert_eq(moirai_lock_stats_get_name("site", MOIRAI_LOCK_KIND_MUTEX, &n), 0);
    check_consistent(&n);
    cr_assert_null(n.lock);
    cr_assert_str_eq(n.name, "site");
    cr_assert_eq(n.contended, 3, "the name sums both locks, not the third");
    cr_assert_eq(n.total_wait_ns, sa.total_wait_ns + sb.total_wait_ns);
    cr_assert_eq(n.max_wait_ns, sa.max_wait_ns > sb.max_wait_ns ? sa.max_wait_ns : sb.max_wait_ns);
    for (int i = 0; i < MOIRAI_LOCK_STATS_BUCKETS; i++)
        cr_assert_eq(n.hist[i], sa.hist[i] + sb.hist[i]);

    /* Renaming moves future acquisitions; the old name keeps its sum; a
     * destroyed lock's acquisitions stay in its name. */
    cr_assert_eq(moirai_lock_stats_name(&b, "other"), 0);
    contend_mutex(&b);
    moirai_mutex_destroy(&a);
    cr_assert_eq(moirai_lock_stats_get(&a, MOIRAI_LOCK_KIND_MUTEX, &n), -ENOENT,
                 "destroy forgets the lock");
    cr_assert_eq(moirai_lock_stats_get_name("site", MOIRAI_LOCK_KIND_MUTEX, &n), 0);
    cr_assert_eq(n.contended, 3);
    cr_assert_eq(moirai_lock_stats_get_name("other", MOIRAI_LOCK_KIND_MUTEX, &n), 0);
    cr_assert_eq(n.contended, 1);
    cr_assert_eq(get_ok(&b, MOIRAI_LOCK_KIND_MUTEX).contended, 3);
    moirai_mutex_destroy(&b);
    moirai_mutex_destroy(&c);
}

Test(lockstat, name_here_names_the_call_site, .timeout = 10)
{
    moirai_mutex_t m = MOIRAI_MUTEX_INIT;
    int line = __LINE__ + 1;
    cr_assert_eq(MOIRAI_LOCK_STATS_NAME_HERE(&m), 0);
    char want[MOIRAI_LOCK_STATS_NAME_MAX];
    snprintf(want, sizeof want, "%s:%d", __FILE__, line);
    moirai_lock_stats_t s;
    cr_assert_eq(moirai_lock_stats_get(&m, MOIRAI_LOCK_KIND_MUTEX, &s), 0);
    cr_assert_str_eq(s.name, want);
    cr_assert_eq(moirai_lock_stats_get_name(want, MOIRAI_LOCK_KIND_MUTEX, &s), 0);
    moirai_lock_stats_forget(&m);
    cr_assert_eq(moirai_lock_stats_get(&m, MOIRAI_LOCK_KIND_MUTEX, &s), -ENOENT);
}

Test(lockstat, bad_input, .timeout = 10)
{
    moirai_mutex_t m = MOIRAI_MUTEX_INIT;
    moirai_lock_stats_t s, before;
    memset(&s, 0xab, sizeof s);
    before = s;

    cr_assert_eq(moirai_lock_stats_name(NULL, "x"), -EINVAL);
    cr_assert_eq(moirai_lock_stats_name(&m, NULL), -EINVAL);
    cr_assert_eq(moirai_lock_stats_name(&m, ""), -EINVAL);
    /* MOIRAI_LOCK_STATS_NAME_MAX counts the NUL: 127 characters fit, 128
     * do not. */
    char longname[MOIRAI_LOCK_STATS_NAME_MAX + 1];
    memset(longname, 'n', sizeof longname);
    longname[MOIRAI_LOCK_STATS_NAME_MAX] = '\0';
    cr_assert_eq(moirai_lock_stats_name(&m, longname), -ENAMETOOLONG);
    cr_assert_eq(moirai_lock_stats_get(&m, MOIRAI_LOCK_KIND_MUTEX, &s), -ENOENT,
                 "a failed naming changed nothing");
    longname[MOIRAI_LOCK_STATS_NAME_MAX - 1] = '\0';
    cr_assert_eq(moirai_lock_stats_name(&m, longname), 0);

    cr_assert_eq(moirai_lock_stats_get(NULL, MOIRAI_LOCK_KIND_MUTEX, &s), -EINVAL);
    cr_assert_eq(moirai_lock_stats_get(&m, MOIRAI_LOCK_KIND_MUTEX, NULL), -EINVAL);
    cr_assert_eq(moirai_lock_stats_get(&m, MOIRAI_LOCK_KIND_COUNT, &s), -EINVAL);
    cr_assert_eq(moirai_lock_stats_get(&m, (moirai_lock_kind_t)-1, &s), -EINVAL);
    moirai_mutex_t unknown = MOIRAI_MUTEX_INIT;
    cr_assert_eq(moirai_lock_stats_get(&unknown, MOIRAI_LOCK_KIND_MUTEX, &s), -ENOENT);

    cr_assert_eq(moirai_lock_stats_get_name("no such lock", MOIRAI_LOCK_KIND_MUTEX, &s), -ENOENT,
                 "an unknown name is an error");
    cr_assert_eq(moirai_lock_stats_get_name(NULL, MOIRAI_LOCK_KIND_MUTEX, &s), -EINVAL);
    cr_assert_eq(moirai_lock_stats_get_name(longname, MOIRAI_LOCK_KIND_MUTEX, NULL), -EINVAL);
    cr_assert_eq(moirai_lock_stats_get_name(longname, MOIRAI_LOCK_KIND_COUNT, &s), -EINVAL);
    cr_assert_eq(memcmp(&s, &before, sizeof s), 0, "errors leave *out unchanged");

    cr_assert_eq(moirai_lock_stats_foreach(NULL, NULL), -EINVAL);
    moirai_lock_stats_forget(NULL);
    moirai_lock_stats_forget(&unknown);
    moirai_lock_stats_forget(&m);
}

/* ---- iteration and reset ---- */

typedef struct seen {
    int calls;
    int site;    /* records named "iter" of kind mutex */
    int unnamed; /* per-lock records for the unnamed lock */
    int named;   /* per-lock records of the named locks (must be none) */
    uint64_t site_count, unnamed_count;
    const void *unnamed_lock, *named_a, *named_b;
    int stop_after; /* return 7 after this many calls; 0 never */
} seen_t;

static int visit(void *arg, const moirai_lock_stats_t *s)
{
    seen_t *v = arg;
    v->calls++;
    check_consistent(s);
    cr_assert_gt(s->contended, 0, "empty records are skipped");
    if (s->name != NULL && strcmp(s->name, "iter") == 0) {
        cr_assert_null(s->lock);
        cr_assert_eq(s->kind, MOIRAI_LOCK_KIND_MUTEX);
        v->site++;
        v->site_count = s->contended;
    } else if (s->lock == v->unnamed_lock) {
        cr_assert_null(s->name);
        v->unnamed++;
        v->unnamed_count = s->contended;
    } else if (s->lock == v->named_a || s->lock == v->named_b) {
        v->named++;
    }
    return v->stop_after != 0 && v->calls >= v->stop_after ? 7 : 0;
}

Test(lockstat, foreach_and_reset, .timeout = 30)
{
    moirai_lock_stats_enable(true);
    seen_t v = {0};
    cr_assert_eq(moirai_lock_stats_foreach(visit, &v), 0);
    cr_assert_eq(v.calls, 0, "nothing recorded yet");

    moirai_mutex_t a, b, u;
    moirai_mutex_init(&a);
    moirai_mutex_init(&b);
    moirai_mutex_init(&u);
    cr_assert_eq(moirai_lock_stats_name(&a, "iter"), 0);
    cr_assert_eq(moirai_lock_stats_name(&b, "iter"), 0);
    cr_assert_eq(moirai_lock_stats_foreach(visit, &v), 0);
    cr_assert_eq(v.calls, 0, "names without contention are not visited");

    contend_mutex(&a);
    contend_mutex(&b);
    contend_mutex(&u);
    contend_mutex(&u);
    v = (seen_t){.unnamed_lock = &u, .named_a = &a, .named_b = &b};
    cr_assert_eq(moirai_lock_stats_foreach(visit, &v), 0);
    cr_assert_eq(v.calls, 2, "one name sum and one unnamed lock");
    cr_assert_eq(v.site, 1);
    cr_assert_eq(v.site_count, 2);
    cr_assert_eq(v.unnamed, 1);
    cr_assert_eq(v.unnamed_count, 2);
    cr_assert_eq(v.named, 0, "named locks appear only in their name's sum");

    v = (seen_t){.unnamed_lock = &u, .stop_after = 1};
    cr_assert_eq(moirai_lock_stats_foreach(visit, &v), 7, "a callback's non-zero value stops");
    cr_assert_eq(v.calls, 1);

    moirai_lock_stats_reset();
    cr_assert(moirai_lock_stats_enabled(), "reset leaves the switch alone");
    cr_assert_eq(moirai_lock_stats_dropped(), 0);
    moirai_lock_stats_t s = get_ok(&a, MOIRAI_LOCK_KIND_MUTEX);
    cr_assert_eq(s.contended, 0);
    cr_assert_eq(s.total_wait_ns, 0);
    cr_assert_eq(s.max_wait_ns, 0);
    cr_assert_str_eq(s.name, "iter", "reset keeps names");
    cr_assert_eq(get_ok(&u, MOIRAI_LOCK_KIND_MUTEX).contended, 0);
    cr_assert_eq(moirai_lock_stats_get_name("iter", MOIRAI_LOCK_KIND_MUTEX, &s), 0);
    cr_assert_eq(s.contended, 0);
    v = (seen_t){0};
    cr_assert_eq(moirai_lock_stats_foreach(visit, &v), 0);
    cr_assert_eq(v.calls, 0);

    contend_mutex(&b);
    cr_assert_eq(moirai_lock_stats_get_name("iter", MOIRAI_LOCK_KIND_MUTEX, &s), 0);
    cr_assert_eq(s.contended, 1, "counting resumes after a reset");
    moirai_mutex_destroy(&a);
    moirai_mutex_destroy(&b);
    moirai_mutex_destroy(&u);
}

/* The callback may use the registry: foreach calls it outside the lock. */
static int visit_reenter(void *arg, const moirai_lock_stats_t *s)
{
    moirai_lock_stats_t again;
    cr_assert_eq(moirai_lock_stats_get(s->lock, s->kind, &again), 0);
    cr_assert_eq(again.contended, s->contended);
    moirai_lock_stats_reset();
    ++*(int *)arg;
    return 0;
}

Test(lockstat, foreach_callback_may_reenter, .timeout = 30)
{
    moirai_lock_stats_enable(true);
    moirai_mutex_t m;
    moirai_mutex_init(&m);
    contend_mutex(&m);
    int calls = 0;
    cr_assert_eq(moirai_lock_stats_foreach(visit_reenter, &calls), 0);
    cr_assert_eq(calls, 1);
    cr_assert_eq(get_ok(&m, MOIRAI_LOCK_KIND_MUTEX).contended, 0);
    moirai_mutex_destroy(&m);
}

/* ---- allocation failures ---- */

typedef struct oom_ctx {
    moirai_mutex_t locks[64];
    int next;
    uint64_t dropped;
} oom_ctx_t;

/* One contended acquisition of a fresh lock: -ENOMEM when its record was
 * dropped (the lock still worked and the drop was counted), 0 when it was
 * recorded. */
static int contend_fresh(void *arg)
{
    oom_ctx_t *c = arg;
    cr_assert_lt(c->next, 64);
    moirai_mutex_t *m = &c->locks[c->next++];
    moirai_mutex_init(m);
    contend_mutex(m);
    moirai_lock_stats_t s;
    int rc = moirai_lock_stats_get(m, MOIRAI_LOCK_KIND_MUTEX, &s);
    uint64_t d = moirai_lock_stats_dropped();
    if (rc == -ENOENT) {
        cr_assert_eq(d, c->dropped + 1, "a dropped record is counted");
        c->dropped = d;
        return -ENOMEM;
    }
    cr_assert_eq(rc, 0);
    cr_assert_eq(s.contended, 1);
    cr_assert_eq(d, c->dropped);
    return 0;
}

Test(lockstat, oom_record_is_dropped_and_counted, .timeout = 60)
{
    moirai_lock_stats_enable(true);
    static oom_ctx_t c;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(contend_fresh, NULL, &c);
    cr_assert_eq(failures, 2, "the table and the lock record were each refused once");

    /* A known (named) lock whose per-kind block cannot be allocated: the
     * acquisition is dropped, the lock and its name stay at zero. */
    moirai_mutex_t n;
    moirai_mutex_init(&n);
    cr_assert_eq(moirai_lock_stats_name(&n, "oom"), 0);
    moirai_test_oom_fail_at(0);
    contend_mutex(&n);
    moirai_test_oom_fail_at(-1);
    moirai_lock_stats_t s = get_ok(&n, MOIRAI_LOCK_KIND_MUTEX);
    cr_assert_eq(s.contended, 0);
    cr_assert_eq(moirai_lock_stats_get_name("oom", MOIRAI_LOCK_KIND_MUTEX, &s), 0);
    cr_assert_eq(s.contended, 0);
    cr_assert_eq(moirai_lock_stats_dropped(), c.dropped + 1);

    /* A fresh lock whose record is allocated but not its block: no record
     * is left behind. */
    moirai_mutex_t f;
    moirai_mutex_init(&f);
    moirai_test_oom_fail_at(1);
    contend_mutex(&f);
    moirai_test_oom_fail_at(-1);
    cr_assert_eq(moirai_lock_stats_get(&f, MOIRAI_LOCK_KIND_MUTEX, &s), -ENOENT);
    cr_assert_eq(moirai_lock_stats_dropped(), c.dropped + 2);
    moirai_test_oom_uninstall();

    moirai_lock_stats_reset();
    cr_assert_eq(moirai_lock_stats_dropped(), 0, "reset clears the dropped count");
    for (int i = 0; i < c.next; i++)
        moirai_mutex_destroy(&c.locks[i]);
    moirai_mutex_destroy(&n);
    moirai_mutex_destroy(&f);
}

typedef struct name_oom {
    moirai_mutex_t m;
} name_oom_t;

static int name_op(void *arg)
{
    return moirai_lock_stats_name(&((name_oom_t *)arg)->m, "fresh");
}

static void name_unchanged(void *arg, long n)
{
    (void)n;
    moirai_lock_stats_t s;
    cr_assert_eq(moirai_lock_stats_get(&((name_oom_t *)arg)->m, MOIRAI_LOCK_KIND_MUTEX, &s),
                 -ENOENT);
    cr_assert_eq(moirai_lock_stats_get_name("fresh", MOIRAI_LOCK_KIND_MUTEX, &s), -ENOENT,
                 "a failed naming leaves no name behind");
}

Test(lockstat, oom_name, .timeout = 30)
{
    static name_oom_t c = {MOIRAI_MUTEX_INIT};
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(name_op, name_unchanged, &c);
    moirai_test_oom_uninstall();
    /* The name table, the name record, then (the lock table coming
     * through) the lock record, whose failure undoes the name record. */
    cr_assert_eq(failures, 3, "three allocations refused in turn");
    moirai_lock_stats_t s;
    cr_assert_eq(moirai_lock_stats_get_name("fresh", MOIRAI_LOCK_KIND_MUTEX, &s), 0);
    moirai_lock_stats_forget(&c.m);
}

static int foreach_count(void *arg, const moirai_lock_stats_t *s)
{
    (void)s;
    ++*(int *)arg;
    return 0;
}

static int foreach_op(void *arg)
{
    int *calls = arg;
    *calls = 0;
    int rc = moirai_lock_stats_foreach(foreach_count, calls);
    if (rc == -ENOMEM)
        cr_assert_eq(*calls, 0, "no callback runs when the snapshot fails");
    return rc;
}

Test(lockstat, oom_foreach, .timeout = 30)
{
    moirai_lock_stats_enable(true);
    moirai_mutex_t m;
    moirai_mutex_init(&m);
    contend_mutex(&m);
    int calls = 0;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(foreach_op, NULL, &calls);
    moirai_test_oom_uninstall();
    cr_assert_eq(failures, 1, "one allocation: the snapshot");
    cr_assert_eq(calls, 1);
    moirai_mutex_destroy(&m);
}

/* ---- recording and reading concurrently ---- */

typedef struct hammer {
    moirai_mutex_t m;
    moirai_rwlock_t rw;
    moirai_spinlock_t sl;
    moirai_ticketlock_t tl;
    long iters;
    long plain; /* incremented under `m` only (the other locks nest around it) */
    _Atomic long running;
} hammer_t;

static void *hammer_worker(void *arg, int index)
{
    hammer_t *h = arg;
    for (long i = 0; i < h->iters; i++) {
        switch ((i + index) % 5) {
        case 0:
            moirai_mutex_lock(&h->m);
            h->plain++;
            moirai_mutex_unlock(&h->m);
            break;
        case 1:
            moirai_rwlock_wrlock(&h->rw);
            moirai_mutex_lock(&h->m);
            h->plain++;
            moirai_mutex_unlock(&h->m);
            moirai_rwlock_wrunlock(&h->rw);
            break;
        case 2:
            moirai_rwlock_rdlock(&h->rw);
            moirai_rwlock_rdunlock(&h->rw);
            moirai_mutex_lock(&h->m);
            h->plain++;
            moirai_mutex_unlock(&h->m);
            break;
        case 3:
            moirai_spinlock_lock(&h->sl);
            moirai_mutex_lock(&h->m);
            h->plain++;
            moirai_mutex_unlock(&h->m);
            moirai_spinlock_unlock(&h->sl);
            break;
        default:
            moirai_ticketlock_lock(&h->tl);
            moirai_mutex_lock(&h->m);
            h->plain++;
            moirai_mutex_unlock(&h->m);
            moirai_ticketlock_unlock(&h->tl);
            break;
        }
    }
    atomic_fetch_sub(&h->running, 1);
    return NULL;
}

static int check_record(void *arg, const moirai_lock_stats_t *s)
{
    (void)arg;
    check_consistent(s);
    return 0;
}

static void *hammer_reader(void *arg)
{
    hammer_t *h = arg;
    long round = 0;
    while (atomic_load(&h->running) > 0) {
        moirai_lock_stats_t s;
        cr_assert_eq(moirai_lock_stats_foreach(check_record, NULL), 0);
        if (moirai_lock_stats_get(&h->m, MOIRAI_LOCK_KIND_MUTEX, &s) == 0)
            check_consistent(&s);
        if (moirai_lock_stats_get_name("hammer", MOIRAI_LOCK_KIND_RWLOCK_WRITE, &s) == 0)
            check_consistent(&s);
        if (++round % 16 == 0)
            moirai_lock_stats_reset();
        if (round % 7 == 0)
            cr_assert_eq(moirai_lock_stats_name(&h->rw, round % 14 ? "hammer" : "hammer2"), 0);
        if (round % 11 == 0)
            moirai_lock_stats_forget(&h->sl);
        moirai_lock_stats_enable(round % 5 != 0);
        sched_yield();
    }
    return NULL;
}

Test(lockstat, concurrent_recording_and_reading, .timeout = 60)
{
    moirai_lock_stats_enable(true);
    static hammer_t h;
    moirai_mutex_init(&h.m);
    moirai_rwlock_init(&h.rw);
    moirai_spinlock_init(&h.sl);
    moirai_ticketlock_init(&h.tl);
    h.iters = test_iters(20000, 500);
    int n = test_threads();
    atomic_store(&h.running, n);
    pthread_t reader = test_spawn(hammer_reader, &h);
    test_run_threads(n, hammer_worker, &h);
    cr_assert_eq(pthread_join(reader, NULL), 0);
    cr_assert_eq(h.plain, h.iters * n, "every locked increment is there");
    /* Whatever was recorded is consistent, and no more than happened. */
    moirai_lock_stats_t s;
    if (moirai_lock_stats_get(&h.m, MOIRAI_LOCK_KIND_MUTEX, &s) == 0) {
        check_consistent(&s);
        cr_assert_leq(s.contended, (uint64_t)(h.iters * n));
    }
    cr_assert_eq(moirai_lock_stats_dropped(), 0);
    moirai_mutex_destroy(&h.m);
    moirai_rwlock_destroy(&h.rw);
    moirai_spinlock_destroy(&h.sl);
    moirai_ticketlock_destroy(&h.tl);
}

/* ---- the Prometheus collector (moirai/sync/metrics.h) ---- */

Test(lockstat, metrics_collect_writes_each_record, .timeout = 30)
{
    moirai_lock_stats_enable(true);
    moirai_mutex_t named, unnamed;
    moirai_mutex_init(&named);
    moirai_mutex_init(&unnamed);
    cr_assert_eq(moirai_lock_stats_name(&named, "db \"pool\""), 0);
    contend_mutex(&named);
    contend_mutex(&named);
    contend_mutex(&unnamed);

    prom_doc_t d;
    prom_test_collect(moirai_lock_stats_metrics_collect, NULL, "proc", &d);
    moirai_lock_stats_t s;
    cr_assert_eq(moirai_lock_stats_get_name("db \"pool\"", MOIRAI_LOCK_KIND_MUTEX, &s), 0);
    cr_assert_eq(s.contended, 2);
    const char **db = PROM_LABELS("name", "proc", "lock", "db \"pool\"", "kind", "mutex");
    cr_assert_eq(prom_value(&d, "moirai_lock_contended_total", db), 2.0);
    cr_assert_eq(prom_value(&d, "moirai_lock_wait_seconds_count", db), 2.0);
    cr_assert_float_eq(prom_value(&d, "moirai_lock_wait_seconds_sum", db),
                       (double)s.total_wait_ns / 1e9, 1e-12);
    cr_assert_float_eq(prom_value(&d, "moirai_lock_wait_max_seconds", db),
                       (double)s.max_wait_ns / 1e9, 1e-12);
    /* The bucket holding the longest wait counts both waits cumulatively
     * only from its own upper bound on. */
    cr_assert_eq(prom_value(&d, "moirai_lock_wait_seconds_bucket",
                            PROM_LABELS("name", "proc", "lock", "db \"pool\"", "kind", "mutex",
                                        "le", "+Inf")),
                 2.0);

    char address[32];
    snprintf(address, sizeof(address), "%p", (void *)&unnamed);
    cr_assert_eq(prom_value(&d, "moirai_lock_contended_total",
                            PROM_LABELS("name", "proc", "lock", address, "kind", "mutex")),
                 1.0);
    cr_assert_eq(prom_count(&d, "moirai_lock_contended_total"), 2, "one series per record");
    cr_assert_eq(prom_value(&d, "moirai_lock_stats_dropped_total", PROM_LABELS("name", "proc")),
                 0.0);
    prom_doc_free(&d);
    moirai_mutex_destroy(&named);
    moirai_mutex_destroy(&unnamed);
}

Test(lockstat, metrics_collect_errors, .timeout = 60)
{
    moirai_prom_writer_t *w;
    cr_assert_eq(moirai_prom_writer_create(&w), 0);
    cr_assert_eq(moirai_lock_stats_metrics_collect(NULL, NULL, "x"), -EINVAL);
    cr_assert_eq(moirai_lock_stats_metrics_collect(NULL, w, NULL), -EINVAL);
    moirai_prom_writer_destroy(w);

    /* Every allocation failure leaves the writer as it was. */
    moirai_lock_stats_enable(true);
    moirai_mutex_t m;
    moirai_mutex_init(&m);
    contend_mutex(&m);
    cr_assert_gt(prom_test_oom_sweep(moirai_lock_stats_metrics_collect, NULL), 0);
    moirai_mutex_destroy(&m);
}
