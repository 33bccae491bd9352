/* Stress runs of the blocking primitives (suite 'stress'): each phase runs
 * for MOIRAI_SYNC_STRESS_MS (scaled down under sanitizers) on
 * MOIRAI_SYNC_THREADS threads and checks exact invariants at the end:
 * nothing lost, nothing duplicated, exclusion never broken. */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include <moirai/core/clock.h>
#include <moirai/sync/barrier.h>
#include <moirai/sync/condvar.h>
#include <moirai/sync/event.h>
#include <moirai/sync/mutex.h>
#include <moirai/sync/rwlock.h>
#include <moirai/sync/semaphore.h>
#include <moirai/sync/spinlock.h>
#include <moirai/sync/waitgroup.h>

#include "lock_test_util.h"

#define MAX_T 64

/* The end of the current phase, shared by its threads. */
static uint64_t phase_end;

static void phase_start(void)
{
    phase_end = moirai_clock_now_ns() + test_stress_ns();
}

static int phase_over(void)
{
    return moirai_clock_now_ns() >= phase_end;
}

/* ---- locks: each thread counts its own critical sections; the shared
 * plain counter must equal their sum ---- */

typedef struct lock_ctx {
    int kind; /* 0 mutex, 1 mutex try/timed mix, 2 spinlock, 3 ticketlock, 4 rwlock writer */
    moirai_mutex_t m;
    moirai_spinlock_t s;
    moirai_ticketlock_t t;
    moirai_rwlock_t rw;
    long plain;
    long per_thread[MAX_T];
    _Atomic int inside;
    _Atomic long overlaps;
    _Atomic long timeouts;
} lock_ctx_t;

static int lock_take(lock_ctx_t *c, long i)
{
    switch (c->kind) {
    case 0:
        moirai_mutex_lock(&c->m);
        return 1;
    case 1:
        if (i % 3 == 0)
            return moirai_mutex_try_lock(&c->m);
        if (i % 3 == 1) {
            /* Very short deadlines: many time out, and every timeout
             * must leave the lock fully usable. */
            if (moirai_mutex_lock_timed(&c->m, moirai_deadline_after(2000)) == 0)
                return 1;
            atomic_fetch_add_explicit(&c->timeouts, 1, memory_order_relaxed);
            return 0;
        }
        moirai_mutex_lock(&c->m);
        return 1;
    case 2:
        moirai_spinlock_lock(&c->s);
        return 1;
    case 3:
        moirai_ticketlock_lock(&c->t);
        return 1;
    default:
        if (i % 2)
            return moirai_rwlock_wrlock_timed(&c->rw, moirai_deadline_after(5000)) == 0;
        moirai_rwlock_wrlock(&c->rw);
        return 1;
    }
}

static void lock_give(lock_ctx_t *c)
{
    switch (c->kind) {
    case 0:
    case 1:
        moirai_mutex_unlock(&c->m);
        break;
    case 2:
        moirai_spinlock_unlock(&c->s);
        break;
    case 3:
        moirai_ticketlock_unlock(&c->t);
        break;
    default:
        moirai_rwlock_wrunlock(&c->rw);
        break;
    }
}

static void *lock_worker(void *arg, int index)
{
    lock_ctx_t *c = arg;
    long mine = 0;
    for (long i = 0; !phase_over(); i++) {
        for (int k = 0; k < 64; k++, i++) {
            if (!lock_take(c, i))
                continue;
            if (atomic_fetch_add_explicit(&c->inside, 1, memory_order_relaxed) != 0)
                atomic_fetch_add_explicit(&c->overlaps, 1, memory_order_relaxed);
            c->plain++;
            atomic_fetch_sub_explicit(&c->inside, 1, memory_order_relaxed);
            lock_give(c);
            mine++;
        }
    }
    c->per_thread[index] = mine;
    return NULL;
}

static void run_locks(int kind, int threads)
{
    static lock_ctx_t c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    moirai_mutex_init(&c.m);
    moirai_spinlock_init(&c.s);
    moirai_ticketlock_init(&c.t);
    moirai_rwlock_init(&c.rw);
    phase_start();
    test_run_threads(threads, lock_worker, &c);
    long sum = 0;
    for (int i = 0; i < threads; i++)
        sum += c.per_thread[i];
    cr_assert_eq(atomic_load(&c.overlaps), 0, "two holders at once");
    cr_assert_eq(c.plain, sum, "lost or extra increments: %ld vs %ld", c.plain, sum);
    cr_assert_gt(sum, 0);
    cr_log_info("lock kind %d: %ld critical sections, %ld timeouts", kind, sum,
                atomic_load(&c.timeouts));
    moirai_rwlock_destroy(&c.rw);
    moirai_ticketlock_destroy(&c.t);
    moirai_spinlock_destroy(&c.s);
    moirai_mutex_destroy(&c.m);
}

Test(locks_stress, mutex, .timeout = 120)
{
    run_locks(0, test_threads());
}

Test(locks_stress, mutex_try_timed_mix, .timeout = 120)
{
    run_locks(1, test_threads());
}

Test(locks_stress, spinlock, .timeout = 120)
{
    run_locks(2, test_threads());
}

Test(locks_stress, ticketlock, .timeout = 120)
{
    /* No more threads than CPUs: see test_spinlock.c on hand-overs to
     * descheduled waiters. */
    run_locks(3, 2);
}

Test(locks_stress, rwlock_writers, .timeout = 120)
{
    run_locks(4, test_threads());
}

/* ---- rwlock: readers check a multi-field invariant, writers update it ---- */

typedef struct rw_ctx {
    moirai_rwlock_t rw;
    long a, b, c; /* plain; a == b == c outside write sections */
    long writes[MAX_T];
    long reads[MAX_T];
    _Atomic long writers_inside, readers_inside, violations;
} rw_ctx_t;

static void *rw_worker(void *arg, int index)
{
    rw_ctx_t *c = arg;
    long w = 0, r = 0;
    for (long i = 0; !phase_over(); i++) {
        int write = (index == 0) ? (i % 2 == 0) : (i % 50 == 0);
        if (write) {
            if (i % 7 == 0) {
                if (!moirai_rwlock_try_wrlock(&c->rw))
                    continue;
            } else {
                moirai_rwlock_wrlock(&c->rw);
            }
            if (atomic_fetch_add(&c->writers_inside, 1) != 0 || atomic_load(&c->readers_inside))
                atomic_fetch_add(&c->violations, 1);
            c->a++;
            c->b++;
            c->c++;
            atomic_fetch_sub(&c->writers_inside, 1);
            moirai_rwlock_wrunlock(&c->rw);
            w++;
        } else {
            if (i % 5 == 0) {
                if (moirai_rwlock_rdlock_timed(&c->rw, moirai_deadline_after(3000)) != 0)
                    continue;
            } else {
                moirai_rwlock_rdlock(&c->rw);
            }
            atomic_fetch_add(&c->readers_inside, 1);
            if (atomic_load(&c->writers_inside) || c->a != c->b || c->b != c->c)
                atomic_fetch_add(&c->violations, 1);
            atomic_fetch_sub(&c->readers_inside, 1);
            moirai_rwlock_rdunlock(&c->rw);
            r++;
        }
    }
    c->writes[index] = w;
    c->reads[index] = r;
    return NULL;
}

Test(locks_stress, rwlock_readers_and_writers, .timeout = 120)
{
    static rw_ctx_t c;
    memset(&c, 0, sizeof c);
    moirai_rwlock_init(&c.rw);
    int n = test_threads();
    phase_start();
    test_run_threads(n, rw_worker, &c);
    long writes = 0, reads = 0;
    for (int i = 0; i < n; i++) {
        writes += c.writes[i];
        reads += c.reads[i];
    }
    cr_assert_eq(atomic_load(&c.violations), 0, "a reader saw a writer inside");
    cr_assert_eq(c.a, writes);
    cr_assert_eq(c.c, writes);
    cr_assert_gt(reads, 0);
    cr_log_info("rwlock: %ld reads, %ld writes", reads, writes);
}

/* ---- condvar and semaphore pipelines: every item produced is consumed
 * exactly once; a lost wake-up hangs the run (test timeout) ---- */

#define QCAP 8

typedef struct pipe_ctx {
    moirai_mutex_t m;
    moirai_condvar_t not_empty, not_full;
    long q[QCAP];
    int head, count;
    int producers_left; /* protected by m */
    long produced_sum[MAX_T], consumed_sum[MAX_T];
    long produced[MAX_T], consumed[MAX_T];
    int producers;
} pipe_ctx_t;

static void *pipe_worker(void *arg, int index)
{
    pipe_ctx_t *c = arg;
    if (index < c->producers) {
        long seq = 0;
        while (!phase_over()) {
            long item = ((long)index << 40) | ++seq;
            moirai_mutex_lock(&c->m);
            while (c->count == QCAP) {
                if (seq % 2)
                    moirai_condvar_wait(&c->not_full, &c->m);
                else
                    (void)moirai_condvar_wait_timed(&c->not_full, &c->m,
                                                    moirai_deadline_after(50000));
            }
            c->q[(c->head + c->count) % QCAP] = item;
            c->count++;
            if (seq % 16 == 0)
                moirai_condvar_broadcast(&c->not_empty);
            else
                moirai_condvar_signal(&c->not_empty);
            moirai_mutex_unlock(&c->m);
            c->produced[index]++;
            c->produced_sum[index] += item;
        }
        moirai_mutex_lock(&c->m);
        c->producers_left--;
        moirai_condvar_broadcast(&c->not_empty);
        moirai_mutex_unlock(&c->m);
    } else {
        for (;;) {
            moirai_mutex_lock(&c->m);
            while (c->count == 0 && c->producers_left > 0)
                moirai_condvar_wait(&c->not_empty, &c->m);
            if (c->count == 0) {
                moirai_mutex_unlock(&c->m);
                break;
            }
            long item = c->q[c->head];
            c->head = (c->head + 1) % QCAP;
            c->count--;
            moirai_condvar_signal(&c->not_full);
            moirai_mutex_unlock(&c->m);
            c->consumed[index]++;
            c->consumed_sum[index] += item;
        }
    }
    return NULL;
}

Test(locks_stress, condvar_pipeline, .timeout = 120)
{
    static pipe_ctx_t c;
    memset(&c, 0, sizeof c);
    moirai_mutex_init(&c.m);
    moirai_condvar_init(&c.not_empty);
    moirai_condvar_init(&c.not_full);
    int n = test_threads();
    c.producers = n / 2;
    c.producers_left = c.producers;
    phase_start();
    test_run_threads(n, pipe_worker, &c);
    long p = 0, q = 0, ps = 0, qs = 0;
    for (int i = 0; i < n; i++) {
        p += c.produced[i];
        q += c.consumed[i];
        ps += c.produced_sum[i];
        qs += c.consumed_sum[i];
    }
    cr_assert_eq(p, q, "produced %ld, consumed %ld", p, q);
    cr_assert_eq(ps, qs, "items lost or duplicated");
    cr_assert_gt(p, 0);
    cr_log_info("condvar pipeline: %ld items", p);
}

typedef struct sem_ctx {
    moirai_semaphore_t items;
    _Atomic int producing;
    long posted[MAX_T], taken[MAX_T];
    int producers;
} sem_ctx_t;

static void *sem_worker(void *arg, int index)
{
    sem_ctx_t *c = arg;
    if (index < c->producers) {
        long n = 0;
        while (!phase_over()) {
            uint32_t k = (uint32_t)(n % 3) + 1;
            cr_assert_eq(moirai_semaphore_post_n(&c->items, k), 0);
            n += k;
        }
        c->posted[index] = n;
        atomic_fetch_sub(&c->producing, 1);
    } else {
        long n = 0;
        for (;;) {
            int rc = moirai_semaphore_wait_timed(&c->items, moirai_deadline_after(1000000));
            if (rc == 0) {
                n++;
                continue;
            }
            cr_assert_eq(rc, -ETIMEDOUT);
            /* Quit only once every producer is done and nothing is left. */
            if (atomic_load(&c->producing) == 0) {
                if (!moirai_semaphore_try_wait(&c->items))
                    break;
                n++;
            }
        }
        c->taken[index] = n;
    }
    return NULL;
}

Test(locks_stress, semaphore_pipeline, .timeout = 120)
{
    static sem_ctx_t c;
    memset(&c, 0, sizeof c);
    cr_assert_eq(moirai_semaphore_init(&c.items, 0), 0);
    int n = test_threads();
    c.producers = n / 2;
    c.producing = c.producers;
    phase_start();
    test_run_threads(n, sem_worker, &c);
    long posted = 0, taken = 0;
    for (int i = 0; i < n; i++) {
        posted += c.posted[i];
        taken += c.taken[i];
    }
    cr_assert_eq(posted, taken, "posted %ld, taken %ld", posted, taken);
    cr_assert_eq(moirai_semaphore_value(&c.items), 0);
    cr_log_info("semaphore pipeline: %ld units", posted);
}

/* ---- barrier: generations until the serial thread of a generation sees
 * the phase is over; every thread must count the same generations ---- */

typedef struct bar_ctx {
    moirai_barrier_t b;
    int stop;          /* plain: written by a serial thread between barriers */
    long stamp[MAX_T]; /* plain: generation each thread last stamped */
    long gens[MAX_T];
    _Atomic long violations;
    int n;
} bar_ctx_t;

static void *bar_worker(void *arg, int index)
{
    bar_ctx_t *c = arg;
    long g = 0;
    for (;;) {
        c->stamp[index] = g;
        if (moirai_barrier_wait(&c->b) == MOIRAI_BARRIER_SERIAL) {
            for (int j = 0; j < c->n; j++)
                if (c->stamp[j] != g)
                    atomic_fetch_add(&c->violations, 1);
            c->stop = phase_over();
        }
        moirai_barrier_wait(&c->b);
        g++;
        if (c->stop)
            break;
    }
    c->gens[index] = g;
    return NULL;
}

Test(locks_stress, barrier_generations, .timeout = 120)
{
    static bar_ctx_t c;
    memset(&c, 0, sizeof c);
    c.n = test_threads();
    cr_assert_eq(moirai_barrier_init(&c.b, (uint32_t)c.n), 0);
    phase_start();
    test_run_threads(c.n, bar_worker, &c);
    cr_assert_eq(atomic_load(&c.violations), 0, "a generation mixed");
    for (int i = 1; i < c.n; i++)
        cr_assert_eq(c.gens[i], c.gens[0], "threads disagree on the number of generations");
    cr_log_info("barrier: %ld generations", c.gens[0]);
}

/* ---- auto-reset event and wait group hand-offs ---- */

typedef struct hand_ctx {
    moirai_event_t go[MAX_T];
    moirai_waitgroup_t wg;
    long plain[MAX_T];
    _Atomic int stop;
    int n;
} hand_ctx_t;

static void *hand_worker(void *arg, int index)
{
    hand_ctx_t *c = arg;
    if (index == 0) {
        long rounds = 0;
        while (!phase_over()) {
            cr_assert_eq(moirai_waitgroup_add(&c->wg, c->n - 1), 0);
            for (int i = 1; i < c->n; i++)
                moirai_event_set(&c->go[i]);
            moirai_waitgroup_wait(&c->wg);
            rounds++;
            for (int i = 1; i < c->n; i++)
                cr_assert_eq(c->plain[i], rounds, "worker %d missed a round", i);
        }
        atomic_store(&c->stop, 1);
        cr_assert_eq(moirai_waitgroup_add(&c->wg, c->n - 1), 0);
        for (int i = 1; i < c->n; i++)
            moirai_event_set(&c->go[i]);
        moirai_waitgroup_wait(&c->wg);
    } else {
        for (;;) {
            moirai_event_wait(&c->go[index]);
            if (atomic_load(&c->stop)) {
                cr_assert_eq(moirai_waitgroup_done(&c->wg), 0);
                break;
            }
            c->plain[index]++;
            cr_assert_eq(moirai_waitgroup_done(&c->wg), 0);
        }
    }
    return NULL;
}

Test(locks_stress, event_waitgroup_rounds, .timeout = 120)
{
    static hand_ctx_t c;
    memset(&c, 0, sizeof c);
    c.n = test_threads();
    for (int i = 0; i < c.n; i++)
        cr_assert_eq(moirai_event_init(&c.go[i], MOIRAI_EVENT_AUTO, false), 0);
    moirai_waitgroup_init(&c.wg);
    phase_start();
    test_run_threads(c.n, hand_worker, &c);
    cr_assert_eq(moirai_waitgroup_count(&c.wg), 0);
    for (int i = 1; i < c.n; i++)
        cr_assert_not(moirai_event_is_set(&c.go[i]), "a set was not consumed");
    cr_log_info("event/waitgroup: %ld rounds", c.plain[1]);
}
