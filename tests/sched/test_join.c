/* moirai_join(): results exact, every half run exactly once, on workers
 * and from outside the pool, at any recursion depth; the documented
 * errors. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/sched/join.h>
#include <moirai/sched/sched.h>

#include "leak_check.h"
#include "sched_test_util.h"
#include "test_scale.h"

/* ---- fib ---- */

typedef struct fib_arg {
    moirai_sched_t *sched; /* passed to moirai_join (NULL: the current one) */
    long n;
    long result;
} fib_arg_t;

static void fib(void *p)
{
    fib_arg_t *f = p;
    if (f->n < 2) {
        f->result = f->n;
        return;
    }
    fib_arg_t a = {f->sched, f->n - 1, 0};
    fib_arg_t b = {f->sched, f->n - 2, 0};
    cr_assert_eq(moirai_join(f->sched, fib, &a, fib, &b), 0);
    f->result = a.result + b.result;
}

static void nothing(void *p)
{
    (void)p;
}

static int fib_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    fib(arg);
    *result = arg;
    return 0;
}

static void run_fib_in_task(moirai_sched_t *s, fib_arg_t *f)
{
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_sched_spawn(s, fib_task, f, NULL, h), 0);
    cr_assert_eq(moirai_handle_join(h, NULL), 0);
    moirai_handle_release(h);
}

LEAK_CHECKED_TEST(join, fib25_exact_null_sched_from_worker, .timeout = 120)
{
    moirai_sched_t *s = make_sched(2);
    fib_arg_t f = {NULL, 25, 0};
    run_fib_in_task(s, &f);
    cr_assert_eq(f.result, 75025);
    drop_sched(s);
}

LEAK_CHECKED_TEST(join, fib25_exact_explicit_sched, .timeout = 120)
{
    moirai_sched_t *s = make_sched(3);
    fib_arg_t f = {s, 25, 0};
    run_fib_in_task(s, &f);
    cr_assert_eq(f.result, 75025);
    /* Started from outside: the whole join goes through the injector. */
    fib_arg_t g = {s, 25, 0};
    cr_assert_eq(moirai_join(s, fib, &g, nothing, NULL), 0);
    cr_assert_eq(g.result, 75025);
    drop_sched(s);
}

/* Started from outside with sched NULL below the top: the nested joins
 * run on the caller's external slots of the same scheduler. */
LEAK_CHECKED_TEST(join, nested_external_joins, .timeout = 120)
{
    moirai_sched_t *s = make_sched(2);
    for (int round = 0; round < 3; round++) {
        fib_arg_t f = {NULL, 22, 0};
        cr_assert_eq(moirai_join(s, fib, &f, nothing, NULL), 0);
        cr_assert_eq(f.result, 17711);
    }
    drop_sched(s);
}

LEAK_CHECKED_TEST(join, fib_on_one_worker, .timeout = 120)
{
    moirai_sched_t *s = make_sched(1);
    fib_arg_t f = {NULL, 20, 0};
    cr_assert_eq(moirai_join(s, fib, &f, nothing, NULL), 0);
    cr_assert_eq(f.result, 6765);
    drop_sched(s);
}

/* ---- where the halves run ---- */

typedef struct where {
    moirai_sched_t *sched;
    int worker;
    pthread_t thread;
    _Atomic int runs;
    _Atomic int order; /* shared sequence number */
    int seq;
    _Atomic int *clock;
} where_t;

static void record(void *p)
{
    where_t *w = p;
    w->sched = moirai_sched_current();
    w->worker = moirai_sched_worker_index();
    w->thread = pthread_self();
    w->seq = atomic_fetch_add(w->clock, 1);
    atomic_fetch_add(&w->runs, 1);
}

LEAK_CHECKED_TEST(join, external_join_caller_runs_a, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    for (int i = 0; i < 100; i++) {
        _Atomic int clock = 0;
        where_t a = {.clock = &clock}, b = {.clock = &clock};
        cr_assert_eq(moirai_join(s, record, &a, record, &b), 0);
        cr_assert_eq(atomic_load(&a.runs), 1);
        cr_assert_eq(atomic_load(&b.runs), 1);
        /* The caller takes part: a runs here; b here or on a worker. */
        cr_assert(pthread_equal(a.thread, pthread_self()), "a did not run on the caller");
        cr_assert(b.sched == s || pthread_equal(b.thread, pthread_self()),
                  "b ran neither on a worker nor on the caller");
    }
    /* The caller is no longer inside a join: NULL means the process's
     * default scheduler, which the caller joins as a guest. */
    _Atomic int clock = 0;
    where_t a = {.clock = &clock}, b = {.clock = &clock};
    cr_assert_eq(moirai_join(NULL, record, &a, record, &b), 0);
    moirai_sched_t *def;
    cr_assert_eq(moirai_sched_default(&def), 0);
    cr_assert(pthread_equal(a.thread, pthread_self()), "a did not run on the caller");
    cr_assert(b.sched == def || pthread_equal(b.thread, pthread_self()),
              "b ran neither on a default worker nor on the caller");
    drop_sched(s);
}

/* b is taken back by the caller when no worker is free to take it. */
LEAK_CHECKED_TEST(join, external_join_b_reclaimed_by_caller, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    hold_t hold;
    hold_worker(s, &hold);
    _Atomic int clock = 0;
    where_t a = {.clock = &clock}, b = {.clock = &clock};
    cr_assert_eq(moirai_join(s, record, &a, record, &b), 0);
    cr_assert_eq(atomic_load(&a.runs), 1);
    cr_assert_eq(atomic_load(&b.runs), 1);
    cr_assert(pthread_equal(b.thread, pthread_self()), "b should have been taken back");
    cr_assert_eq(a.seq, 0);
    cr_assert_eq(b.seq, 1);
    release_worker(&hold);
    drop_sched(s);
}

/* b is taken by an idle worker: a waits (bounded) until b has run, which
 * only a worker can make happen. */
typedef struct handoff {
    _Atomic int b_ran;
    _Atomic int a_saw_b;
    where_t bw;
    _Atomic int clock;
} handoff_t;

static void wait_for_b(void *p)
{
    handoff_t *h = p;
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (!atomic_load(&h->b_ran) && !moirai_deadline_expired(deadline))
        sched_yield();
    atomic_store(&h->a_saw_b, atomic_load(&h->b_ran));
}

static void b_on_worker(void *p)
{
    handoff_t *h = p;
    record(&h->bw);
    atomic_store(&h->b_ran, 1);
}

LEAK_CHECKED_TEST(join, external_join_b_taken_by_worker, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    handoff_t h = {0};
    h.bw.clock = &h.clock;
    cr_assert_eq(moirai_join(s, wait_for_b, &h, b_on_worker, &h), 0);
    cr_assert_eq(atomic_load(&h.a_saw_b), 1, "no worker took b while a waited");
    cr_assert_eq(atomic_load(&h.bw.runs), 1);
    cr_assert_eq(h.bw.sched, s);
    cr_assert_eq(h.bw.worker, 0);
    drop_sched(s);
}

/* Off a worker, NULL is the process's default scheduler, joined as a
 * guest: a runs on the caller, b on the caller or a default worker, each
 * exactly once (before 0.x both ran inline). */
Test(join, null_sched_outside_pool_uses_the_default, .timeout = 10)
{
    _Atomic int clock = 0;
    where_t a = {.clock = &clock}, b = {.clock = &clock};
    cr_assert_eq(moirai_join(NULL, record, &a, record, &b), 0);
    moirai_sched_t *def;
    cr_assert_eq(moirai_sched_default(&def), 0);
    cr_assert_eq(atomic_load(&a.runs), 1);
    cr_assert_eq(atomic_load(&b.runs), 1);
    cr_assert_null(a.sched, "a guest is not one of the workers");
    cr_assert(pthread_equal(a.thread, pthread_self()));
    cr_assert(b.sched == def || pthread_equal(b.thread, pthread_self()));
}

/* A worker of one scheduler joining on another: the join goes to the other
 * pool, and the waiting worker keeps running its own pool's work. */
typedef struct cross {
    moirai_sched_t *other;
    where_t a, b;
    _Atomic int clock;
} cross_t;

static int cross_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    cross_t *c = arg;
    c->a.clock = &c->clock;
    c->b.clock = &c->clock;
    return moirai_join(c->other, record, &c->a, record, &c->b);
}

LEAK_CHECKED_TEST(join, worker_of_another_scheduler, .timeout = 60)
{
    moirai_sched_t *s1 = make_sched(1);
    moirai_sched_t *s2 = make_sched(2);
    cross_t c = {.other = s2};
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_sched_spawn(s1, cross_task, &c, NULL, h), 0);
    cr_assert_eq(moirai_handle_join(h, NULL), 0);
    moirai_handle_release(h);
    cr_assert_eq(atomic_load(&c.a.runs), 1);
    cr_assert_eq(atomic_load(&c.b.runs), 1);
    /* The calling worker (of s1) takes part and runs a; b runs on it too,
     * or on a worker of s2. */
    cr_assert_eq(c.a.sched, s1);
    cr_assert(c.b.sched == s1 || c.b.sched == s2);
    drop_sched(s1);
    drop_sched(s2);
}

/* ---- depth ---- */

typedef struct chain {
    long n;
    _Atomic long *leaves;
} chain_t;

static void leaf(void *p)
{
    atomic_fetch_add_explicit((_Atomic long *)p, 1, memory_order_relaxed);
}

static void chain(void *p)
{
    chain_t *c = p;
    if (c->n == 0)
        return;
    chain_t next = {c->n - 1, c->leaves};
    cr_assert_eq(moirai_join(NULL, chain, &next, leaf, c->leaves), 0);
}

static int chain_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    chain(arg);
    return 0;
}

#define CHAIN_DEPTH 10000

LEAK_CHECKED_TEST(join, deep_chain_from_a_task, .timeout = 120)
{
    moirai_sched_t *s = make_sched(2);
    _Atomic long leaves = 0;
    chain_t c = {CHAIN_DEPTH, &leaves};
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_sched_spawn(s, chain_task, &c, NULL, h), 0);
    cr_assert_eq(moirai_handle_join(h, NULL), 0);
    moirai_handle_release(h);
    cr_assert_eq(atomic_load(&leaves), CHAIN_DEPTH);
    drop_sched(s);
}

LEAK_CHECKED_TEST(join, deep_chain_from_outside, .timeout = 120)
{
    moirai_sched_t *s = make_sched(3);
    _Atomic long leaves = 0;
    chain_t c = {CHAIN_DEPTH, &leaves};
    cr_assert_eq(moirai_join(s, chain, &c, leaf, &leaves), 0);
    cr_assert_eq(atomic_load(&leaves), CHAIN_DEPTH + 1);
    drop_sched(s);
}

/* ---- every half exactly once ---- */

typedef struct range {
    size_t lo, hi;
    _Atomic unsigned char *hits;
} range_t;

static void split(void *p)
{
    range_t *r = p;
    if (r->hi - r->lo == 1) {
        atomic_fetch_add_explicit(&r->hits[r->lo], 1, memory_order_relaxed);
        return;
    }
    size_t mid = r->lo + (r->hi - r->lo) / 2;
    range_t left = {r->lo, mid, r->hits}, right = {mid, r->hi, r->hits};
    cr_assert_eq(moirai_join(NULL, split, &left, split, &right), 0);
}

static void check_hits(_Atomic unsigned char *hits, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(atomic_load(&hits[i]), 1, "leaf %zu ran %d times", i,
                     (int)atomic_load(&hits[i]));
}

LEAK_CHECKED_TEST(join, hundred_thousand_leaves_each_once, .timeout = 120)
{
    size_t n = (size_t)scaled(100000);
    _Atomic unsigned char *hits = calloc(n, 1);
    cr_assert_not_null(hits);
    moirai_sched_t *s = make_sched(2);
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < n; i++)
            atomic_store(&hits[i], 0);
        range_t r = {0, n, hits};
        cr_assert_eq(moirai_join(s, split, &r, nothing, NULL), 0);
        check_hits(hits, n);
    }
    moirai_sched_worker_stats_t st;
    cr_assert_eq(moirai_sched_stats(s, &st), 0);
    cr_assert_leq(st.steals, st.steal_attempts);
    cr_assert_geq(st.stolen, st.steals);
    drop_sched(s);
    free(hits);
}

static int split_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    split(arg);
    return 0;
}

LEAK_CHECKED_TEST(join, hundred_thousand_leaves_each_once_from_a_task, .timeout = 120)
{
    size_t n = (size_t)scaled(100000);
    _Atomic unsigned char *hits = calloc(n, 1);
    cr_assert_not_null(hits);
    moirai_sched_t *s = make_sched(2);
    range_t r = {0, n, hits};
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_sched_spawn(s, split_task, &r, NULL, h), 0);
    cr_assert_eq(moirai_handle_join(h, NULL), 0);
    moirai_handle_release(h);
    check_hits(hits, n);
    moirai_sched_worker_stats_t st;
    cr_assert_eq(moirai_sched_stats(s, &st), 0);
    /* n - 1 joins on workers, each a pushed frame, plus the task. */
    cr_assert_geq(st.spawned, n - 1);
    cr_assert_geq(st.executed, n);
    drop_sched(s);
    free(hits);
}

/* ---- several external threads at once ---- */

typedef struct ext {
    moirai_sched_t *sched;
    long joins;
    _Atomic long *a_runs, *b_runs;
} ext_t;

static void count_a(void *p)
{
    atomic_fetch_add_explicit(((ext_t *)p)->a_runs, 1, memory_order_relaxed);
}

static void count_b(void *p)
{
    atomic_fetch_add_explicit(((ext_t *)p)->b_runs, 1, memory_order_relaxed);
}

static void *ext_thread(void *p)
{
    ext_t *e = p;
    for (long i = 0; i < e->joins; i++) {
        cr_assert_eq(moirai_join(e->sched, count_a, e, count_b, e), 0);
    }
    return NULL;
}

LEAK_CHECKED_TEST(join, external_threads_concurrently, .timeout = 120)
{
    moirai_sched_t *s = make_sched(2);
    /* More threads than the scheduler has external slots (32), so some
     * joins take the cold path through the injector. */
    enum { THREADS = 40 };
    long joins = scaled(1000);
    _Atomic long a_runs[THREADS], b_runs[THREADS];
    ext_t e[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        atomic_init(&a_runs[i], 0);
        atomic_init(&b_runs[i], 0);
        e[i] = (ext_t){s, joins, &a_runs[i], &b_runs[i]};
        cr_assert_eq(pthread_create(&t[i], NULL, ext_thread, &e[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(atomic_load(&a_runs[i]), joins);
        cr_assert_eq(atomic_load(&b_runs[i]), joins);
    }
    drop_sched(s);
}

/* ---- errors ---- */

LEAK_CHECKED_TEST(join, einval_runs_nothing, .timeout = 30)
{
    moirai_sched_t *s = make_sched(1);
    _Atomic long runs = 0;
    cr_assert_eq(moirai_join(s, NULL, NULL, leaf, &runs), -EINVAL);
    cr_assert_eq(moirai_join(s, leaf, &runs, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_join(NULL, NULL, NULL, leaf, &runs), -EINVAL);
    cr_assert_eq(moirai_join(NULL, leaf, &runs, NULL, NULL), -EINVAL);
    cr_assert_eq(atomic_load(&runs), 0);
    drop_sched(s);
}

LEAK_CHECKED_TEST(join, eshutdown_once_destroy_began, .timeout = 60)
{
    /* Two workers: one held by hold_task() (so destroy has to wait), the
     * other runs the joins accepted before destroy began. */
    moirai_sched_t *s = make_sched(2);
    hold_t hold;
    hold_worker(s, &hold);
    destroyer_t d;
    start_destroy(&d, s, MOIRAI_SHUTDOWN_DRAIN);
    _Atomic long runs = 0;
    long accepted = 0;
    int rc;
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while ((rc = moirai_join(s, leaf, &runs, leaf, &runs)) == 0) {
        accepted++;
        cr_assert(!moirai_deadline_expired(deadline), "destroy never refused a join");
    }
    cr_assert_eq(rc, -ESHUTDOWN);
    cr_assert_eq(atomic_load(&runs), 2 * accepted, "a refused join ran something");
    release_worker(&hold);
    cr_assert_eq(finish_destroy(&d), 0);
}
