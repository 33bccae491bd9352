/* moirai-bench, suite "sync": the blocking locks against pthreads.
 *
 * mutex_uncontended
 *   One thread locks and unlocks a free mutex `iters` times. Peer:
 *   pthread_mutex_t with default attributes ("pthread"). Metric: ns per
 *   lock + unlock pair. The process is made multi-threaded first (one
 *   thread is created and joined): glibc (2.34 and later) replaces the
 *   mutex's atomic operations with plain stores while a process has never
 *   had a second thread, which measures nothing a program that needs a
 *   mutex would see. "moirai_stats" is the same Moirai loop with the lock
 *   contention statistics switched on (moirai/sync/lockstat.h): they are
 *   read only on the contended path, so the ratio moirai / moirai_stats
 *   should stay at 1.00 within noise.
 *
 * mutex_contended_2t
 *   Two threads hammer one mutex, each taking it iters / 2 times around a
 *   short critical section (one increment of a shared counter). Peers:
 *   pthread_mutex_t ("pthread") and a test-and-set spinlock written here
 *   ("spin": exchange with acquire, pause while it fails, release store).
 *   Metric: wall-clock ns per critical section (both threads together).
 *   The counter is checked: a lost increment fails the run.
 *   "moirai_stats" is the Moirai mutex with the contention statistics on:
 *   every contended acquisition is timed and recorded, so moirai /
 *   moirai_stats shows what recording costs under contention.
 *
 * rwlock_read_mostly_2t
 *   Two threads share one read-write lock; every 100th operation of each
 *   thread is a write (increment of a shared counter), the others are
 *   reads of it. Peer: pthread_rwlock_t with default attributes
 *   ("pthread"). Metric: wall-clock ns per operation; the counter is
 *   checked.
 *
 * Thread creation and the start-up hand-shake are outside the measured
 * section: threads meet at a spinning start line, each times its own loop,
 * and the run reports (latest end - earliest start) / operations. Each run
 * joins its threads before it returns. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <moirai/sync/lockstat.h>
#include <moirai/sync/mutex.h>
#include <moirai/sync/rwlock.h>

#include <moirai/core/spin.h>

#include "../bench.h"

#define CACHE_LINE 64

/* ---- the "spin" peer: a plain test-and-set lock ---- */

typedef struct tas_lock {
    _Atomic int locked;
} tas_lock_t;

static inline void tas_lock(tas_lock_t *l)
{
    /* Acquire on success: pairs with the release store in tas_unlock. */
    while (atomic_exchange_explicit(&l->locked, 1, memory_order_acquire))
        moirai_cpu_relax();
}

static inline void tas_unlock(tas_lock_t *l)
{
    atomic_store_explicit(&l->locked, 0, memory_order_release);
}

/* ---- mutex_uncontended ---- */

static void *nothing(void *arg)
{
    return arg;
}

/* Ends glibc's single-threaded mode for good (see the top of the file). */
static void become_multithreaded(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, nothing, NULL) == 0)
        pthread_join(t, NULL);
}

static pthread_once_t multithreaded_once = PTHREAD_ONCE_INIT;

/* Not inlined: the "moirai" and "moirai_stats" rows run this very code,
 * so a difference between them cannot come from code placement. */
__attribute__((noinline)) static double mu_moirai(uint64_t iters)
{
    pthread_once(&multithreaded_once, become_multithreaded);
    moirai_mutex_t m = MOIRAI_MUTEX_INIT;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        moirai_mutex_lock(&m);
        moirai_mutex_unlock(&m);
    }
    uint64_t t1 = bench_now_ns();
    return (double)(t1 - t0) / (double)iters;
}

/* mu_moirai() with the contention statistics on for the run. */
static double mu_moirai_stats(uint64_t iters)
{
    moirai_lock_stats_enable(true);
    double r = mu_moirai(iters);
    moirai_lock_stats_enable(false);
    return r;
}

static double mu_pthread(uint64_t iters)
{
    pthread_once(&multithreaded_once, become_multithreaded);
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
    }
    uint64_t t1 = bench_now_ns();
    pthread_mutex_destroy(&m);
    return (double)(t1 - t0) / (double)iters;
}

/* ---- two-thread harness ---- */

enum lock_kind { K_MOIRAI_MUTEX, K_PTHREAD_MUTEX, K_SPIN, K_MOIRAI_RWLOCK, K_PTHREAD_RWLOCK };

typedef struct two_ctx {
    enum lock_kind kind;
    _Alignas(CACHE_LINE) moirai_mutex_t mm;
    _Alignas(CACHE_LINE) pthread_mutex_t pm;
    _Alignas(CACHE_LINE) tas_lock_t spin;
    _Alignas(CACHE_LINE) moirai_rwlock_t mrw;
    _Alignas(CACHE_LINE) pthread_rwlock_t prw;
    _Alignas(CACHE_LINE) uint64_t counter; /* plain: only under the lock */
    _Alignas(CACHE_LINE) _Atomic int ready;
    uint64_t ops[2];
    uint64_t reads_ok[2];
    uint64_t start[2], end[2];
} two_ctx_t;

typedef struct two_arg {
    two_ctx_t *c;
    int id;
} two_arg_t;

static void start_line(two_ctx_t *c)
{
    atomic_fetch_add_explicit(&c->ready, 1, memory_order_acq_rel);
    unsigned spins = 0;
    while (atomic_load_explicit(&c->ready, memory_order_acquire) < 2) {
        if (++spins % 64 == 0)
            sched_yield();
        else
            moirai_cpu_relax();
    }
}

static void *mutex_thread(void *p)
{
    two_arg_t *a = p;
    two_ctx_t *c = a->c;
    uint64_t n = c->ops[a->id];
    start_line(c);
    c->start[a->id] = bench_now_ns();
    switch (c->kind) {
    case K_MOIRAI_MUTEX:
        for (uint64_t i = 0; i < n; i++) {
            moirai_mutex_lock(&c->mm);
            c->counter++;
            moirai_mutex_unlock(&c->mm);
        }
        break;
    case K_PTHREAD_MUTEX:
        for (uint64_t i = 0; i < n; i++) {
            pthread_mutex_lock(&c->pm);
            c->counter++;
            pthread_mutex_unlock(&c->pm);
        }
        break;
    default:
        for (uint64_t i = 0; i < n; i++) {
            tas_lock(&c->spin);
            c->counter++;
            tas_unlock(&c->spin);
        }
        break;
    }
    c->end[a->id] = bench_now_ns();
    return NULL;
}

/* Every 100th operation writes; reads check the value is plausible (it
 * never exceeds the number of writes), so the compiler cannot drop them. */
static void *rwlock_thread(void *p)
{
    two_arg_t *a = p;
    two_ctx_t *c = a->c;
    uint64_t n = c->ops[a->id], ok = 0;
    const uint64_t limit = c->ops[0] + c->ops[1];
    start_line(c);
    c->start[a->id] = bench_now_ns();
    if (c->kind == K_MOIRAI_RWLOCK) {
        for (uint64_t i = 0; i < n; i++) {
            if (i % 100 == 0) {
                moirai_rwlock_wrlock(&c->mrw);
                c->counter++;
                moirai_rwlock_wrunlock(&c->mrw);
            } else {
                moirai_rwlock_rdlock(&c->mrw);
                ok += c->counter <= limit;
                moirai_rwlock_rdunlock(&c->mrw);
            }
        }
    } else {
        for (uint64_t i = 0; i < n; i++) {
            if (i % 100 == 0) {
                pthread_rwlock_wrlock(&c->prw);
                c->counter++;
                pthread_rwlock_unlock(&c->prw);
            } else {
                pthread_rwlock_rdlock(&c->prw);
                ok += c->counter <= limit;
                pthread_rwlock_unlock(&c->prw);
            }
        }
    }
    c->end[a->id] = bench_now_ns();
    c->reads_ok[a->id] = ok;
    return NULL;
}

static uint64_t writes_of(uint64_t n)
{
    return n == 0 ? 0 : (n - 1) / 100 + 1;
}

/* Runs `fn` on two threads over `iters` operations of `kind`; returns ns
 * per operation, or -1 when a thread cannot start or the count is wrong. */
static double run_two(enum lock_kind kind, void *(*fn)(void *), uint64_t iters)
{
    two_ctx_t *c = aligned_alloc(CACHE_LINE, sizeof(two_ctx_t));
    if (c == NULL)
        return -1.0;
    *c = (two_ctx_t){.kind = kind};
    moirai_mutex_init(&c->mm);
    pthread_mutex_init(&c->pm, NULL);
    moirai_rwlock_init(&c->mrw);
    pthread_rwlock_init(&c->prw, NULL);
    c->ops[0] = iters / 2 + iters % 2;
    c->ops[1] = iters / 2;

    two_arg_t args[2] = {{c, 0}, {c, 1}};
    pthread_t tids[2];
    int started = 0;
    for (; started < 2; started++)
        if (pthread_create(&tids[started], NULL, fn, &args[started]) != 0)
            break;
    if (started < 2) {
        /* Release a thread already waiting at the start line, then fail. */
        c->ops[0] = c->ops[1] = 0;
        atomic_fetch_add(&c->ready, 2);
    }
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);

    double result = -1.0;
    if (started == 2) {
        uint64_t begin = c->start[0] < c->start[1] ? c->start[0] : c->start[1];
        uint64_t end = c->end[0] > c->end[1] ? c->end[0] : c->end[1];
        bool right;
        if (fn == rwlock_thread)
            right = c->counter == writes_of(c->ops[0]) + writes_of(c->ops[1]) &&
                    c->reads_ok[0] + c->reads_ok[1] ==
                        iters - writes_of(c->ops[0]) - writes_of(c->ops[1]);
        else
            right = c->counter == iters;
        if (right)
            result = (double)(end - begin) / (double)iters;
    }
    pthread_rwlock_destroy(&c->prw);
    moirai_rwlock_destroy(&c->mrw);
    pthread_mutex_destroy(&c->pm);
    moirai_mutex_destroy(&c->mm);
    free(c);
    return result;
}

static double mc_moirai(uint64_t iters)
{
    return run_two(K_MOIRAI_MUTEX, mutex_thread, iters);
}

/* mc_moirai() with the contention statistics on for the run; run_two()
 * destroys the mutex, which drops its record. */
static double mc_moirai_stats(uint64_t iters)
{
    moirai_lock_stats_enable(true);
    double r = run_two(K_MOIRAI_MUTEX, mutex_thread, iters);
    moirai_lock_stats_enable(false);
    return r;
}

static double mc_pthread(uint64_t iters)
{
    return run_two(K_PTHREAD_MUTEX, mutex_thread, iters);
}

static double mc_spin(uint64_t iters)
{
    return run_two(K_SPIN, mutex_thread, iters);
}

static double rw_moirai(uint64_t iters)
{
    return run_two(K_MOIRAI_RWLOCK, rwlock_thread, iters);
}

static double rw_pthread(uint64_t iters)
{
    return run_two(K_PTHREAD_RWLOCK, rwlock_thread, iters);
}

/* ---- registration ---- */

static const bench_impl_t mu_impls[] = {
    {"moirai", mu_moirai, NULL},
    {"pthread", mu_pthread, NULL},
    {"moirai_stats", mu_moirai_stats, NULL},
};

static const bench_impl_t mc_impls[] = {
    {"moirai", mc_moirai, NULL},
    {"pthread", mc_pthread, NULL},
    {"spin", mc_spin, NULL},
    {"moirai_stats", mc_moirai_stats, NULL},
};

static const bench_impl_t rw_impls[] = {
    {"moirai", rw_moirai, NULL},
    {"pthread", rw_pthread, NULL},
};

static const bench_case_t sync_lock_cases[] = {
    {"sync", "mutex_uncontended", "ns_per_op", 50000000, 5000000, mu_impls, 3},
    {"sync", "mutex_contended_2t", "ns_per_op", 20000000, 2000000, mc_impls, 4},
    {"sync", "rwlock_read_mostly_2t", "ns_per_op", 20000000, 2000000, rw_impls, 2},
};

const bench_case_t *bench_sync_locks_cases(size_t *count)
{
    *count = sizeof(sync_lock_cases) / sizeof(sync_lock_cases[0]);
    return sync_lock_cases;
}
