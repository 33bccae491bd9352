/* The pool for blocking calls (moirai-sched/src/blocking.c), tested through
 * its internal interface: every task runs exactly once, the pool grows on
 * demand up to max_threads and never beyond, queues FIFO beyond that, lets
 * idle threads go after the keepalive, reports results through handles,
 * drains on destroy, and refuses work with the documented errors.
 *
 * No test measures time. Waits for something that must happen are bounded
 * by a generous deadline (WAIT_NS) only so that a bug fails the test
 * instead of hanging it. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/core/park.h>

#include "blocking.h"
#include "leak_check.h"
#include "oom.h"
#include "test_scale.h"

#define WAIT_NS        (60 * MOIRAI_NS_PER_S)
#define LONG_KEEPALIVE (600 * MOIRAI_NS_PER_S)

/* ---- helpers ---- */

static void nap_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls `*counter` until it is at least `want`; fails the test if that
 * does not happen within WAIT_NS. */
static void await_at_least(_Atomic long *counter, long want)
{
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (atomic_load_explicit(counter, memory_order_acquire) < want) {
        cr_assert(!moirai_deadline_expired(deadline), "waited too long for %ld (now %ld)", want,
                  atomic_load(counter));
        nap_ms(1);
    }
}

/* Polls the pool's thread count until it equals `want`. */
static void await_threads(moirai__blocking_t *pool, int want)
{
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    int now;
    while ((now = moirai__blocking_threads(pool)) != want) {
        cr_assert(!moirai_deadline_expired(deadline), "waited too long for %d threads (now %d)",
                  want, now);
        nap_ms(1);
    }
}

/* A gate tasks wait on, opened once by the test. */
typedef struct gate {
    _Atomic uint32_t open;
} gate_t;

static void gate_wait(gate_t *g)
{
    /* Acquire: whatever the opener wrote before opening is visible. */
    while (atomic_load_explicit(&g->open, memory_order_acquire) == 0)
        moirai_park(&g->open, 0, MOIRAI_DEADLINE_NEVER);
}

static void gate_open(gate_t *g)
{
    atomic_store_explicit(&g->open, 1, memory_order_release);
    moirai_unpark_all(&g->open);
}

/* What the counting tasks share. */
typedef struct board {
    gate_t gate;
    _Atomic long started; /* tasks that began */
    _Atomic long running; /* tasks inside their body now */
    _Atomic long peak;    /* largest `running` seen */
    _Atomic long done;    /* tasks that finished */
    _Atomic long next;    /* next slot in `order` */
    _Atomic int *runs;    /* runs[i]: how often task i ran */
    long *order;          /* order[k]: the k-th task to run */
    long n;
} board_t;

static void board_init(board_t *b, long n)
{
    memset(b, 0, sizeof(*b));
    b->n = n;
    b->runs = calloc((size_t)n, sizeof(*b->runs));
    b->order = calloc((size_t)n, sizeof(*b->order));
    cr_assert(b->runs != NULL && b->order != NULL);
}

static void board_fini(board_t *b)
{
    free(b->runs);
    free(b->order);
}

/* Each task gets its own argument so that runs can be counted per task. */
typedef struct task_arg {
    board_t *board;
    long index;
    bool wait_gate;
} task_arg_t;

static void note_running(board_t *b)
{
    long now = atomic_fetch_add(&b->running, 1) + 1;
    long peak = atomic_load(&b->peak);
    while (now > peak && !atomic_compare_exchange_weak(&b->peak, &peak, now))
        ;
}

static int counted_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    task_arg_t *t = arg;
    board_t *b = t->board;
    long slot = atomic_fetch_add(&b->next, 1);
    if (slot < b->n)
        b->order[slot] = t->index;
    atomic_fetch_add(&b->runs[t->index], 1);
    note_running(b);
    atomic_fetch_add(&b->started, 1);
    if (t->wait_gate)
        gate_wait(&b->gate);
    atomic_fetch_sub(&b->running, 1);
    atomic_fetch_add_explicit(&b->done, 1, memory_order_release);
    return 0;
}

static task_arg_t *make_args(board_t *b, long n, bool wait_gate)
{
    task_arg_t *args = calloc((size_t)n, sizeof(*args));
    cr_assert(args != NULL);
    for (long i = 0; i < n; i++)
        args[i] = (task_arg_t){b, i, wait_gate};
    return args;
}

static void assert_each_ran_once(board_t *b)
{
    for (long i = 0; i < b->n; i++)
        cr_assert_eq(atomic_load(&b->runs[i]), 1, "task %ld ran %d times", i,
                     atomic_load(&b->runs[i]));
    cr_assert_eq(atomic_load(&b->done), b->n);
}

static int noop_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    atomic_fetch_add((_Atomic long *)arg, 1);
    return 0;
}

/* ---- arguments ---- */

Test(blocking, create_rejects_bad_arguments, .timeout = 30)
{
    moirai__blocking_t *pool = (moirai__blocking_t *)&pool;
    cr_assert_eq(moirai__blocking_create(&pool, 0, LONG_KEEPALIVE, 0), -EINVAL);
    cr_assert_eq(moirai__blocking_create(&pool, -1, LONG_KEEPALIVE, 0), -EINVAL);
    cr_assert_eq(moirai__blocking_create(&pool, INT32_MIN, LONG_KEEPALIVE, 0), -EINVAL);
    cr_assert_eq(pool, (moirai__blocking_t *)&pool, "a failed create wrote *out");
    cr_assert_eq(moirai__blocking_create(NULL, 1, LONG_KEEPALIVE, 0), -EINVAL);

    cr_assert_eq(moirai__blocking_create(&pool, 1, LONG_KEEPALIVE, 0), 0);
    cr_assert_eq(moirai__blocking_threads(pool), 0, "a new pool starts no thread");
    cr_assert_eq(moirai__blocking_submit(pool, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai__blocking_threads(pool), 0, "a rejected submit started a thread");
    moirai__blocking_destroy(pool);
    moirai__blocking_destroy(NULL);
}

/* ---- exactly once ---- */

typedef struct submitter {
    moirai__blocking_t *pool;
    task_arg_t *args;
    long from, to;
} submitter_t;

static void *submit_range(void *arg)
{
    submitter_t *s = arg;
    for (long i = s->from; i < s->to; i++) {
        int rc = moirai__blocking_submit(s->pool, counted_task, &s->args[i], NULL);
        if (rc != 0) {
            fprintf(stderr, "submit %ld failed: %d\n", i, rc);
            abort();
        }
    }
    return NULL;
}

/* Three threads submit concurrently while the pool's threads run tasks:
 * every task runs exactly once, and never more than max_threads at once. */
LEAK_CHECKED_TEST(blocking, every_task_runs_exactly_once, .timeout = 120)
{
    const int max = 3;
    long n = scaled(30000);
    board_t b;
    board_init(&b, n);
    task_arg_t *args = make_args(&b, n, false);
    moirai__blocking_t *pool;
    cr_assert_eq(moirai__blocking_create(&pool, max, LONG_KEEPALIVE, 0), 0);

    enum { SUBMITTERS = 3 };
    pthread_t th[SUBMITTERS];
    submitter_t sub[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; i++) {
        sub[i] = (submitter_t){pool, args, n * i / SUBMITTERS, n * (i + 1) / SUBMITTERS};
        cr_assert_eq(pthread_create(&th[i], NULL, submit_range, &sub[i]), 0);
    }
    for (int i = 0; i < SUBMITTERS; i++)
        pthread_join(th[i], NULL);
    await_at_least(&b.done, n);
    cr_assert_leq(moirai__blocking_threads(pool), max);
    moirai__blocking_destroy(pool);

    assert_each_ran_once(&b);
    cr_assert_leq(atomic_load(&b.peak), max, "%ld tasks ran at once with max_threads %d",
                  atomic_load(&b.peak), max);
    free(args);
    board_fini(&b);
}

/* ---- growth ---- */

/* N tasks that all block on one gate: the pool grows to exactly
 * min(N, max) threads, exactly that many tasks run at once, the rest stay
 * queued until the gate opens, and then every task runs once. */
static void grow_case(long n, int max)
{
    board_t b;
    board_init(&b, n);
    task_arg_t *args = make_args(&b, n, true);
    moirai__blocking_t *pool;
    cr_assert_eq(moirai__blocking_create(&pool, max, LONG_KEEPALIVE, 0), 0);

    long expect = n < max ? n : max;
    for (long i = 0; i < n; i++) {
        cr_assert_eq(moirai__blocking_submit(pool, counted_task, &args[i], NULL), 0);
        /* Threads are created by submit itself, so the count is exact. */
        cr_assert_eq(moirai__blocking_threads(pool), i + 1 < max ? i + 1 : max,
                     "after %ld submits with max %d", i + 1, max);
    }
    await_at_least(&b.started, expect);
    /* Every running task holds its thread until the gate opens, and no
     * thread can appear without a submit: these counts are final. */
    cr_assert_eq(moirai__blocking_threads(pool), expect);
    cr_assert_eq(atomic_load(&b.running), expect);
    cr_assert_eq(atomic_load(&b.started), expect, "a task beyond max_threads started");
    cr_assert_eq(atomic_load(&b.done), 0);

    gate_open(&b.gate);
    await_at_least(&b.done, n);
    moirai__blocking_destroy(pool);
    assert_each_ran_once(&b);
    cr_assert_eq(atomic_load(&b.peak), expect, "peak concurrency %ld, expected %ld",
                 atomic_load(&b.peak), expect);
    free(args);
    board_fini(&b);
}

LEAK_CHECKED_TEST(blocking, grows_to_task_count_below_max, .timeout = 60)
{
    grow_case(3, 8);
}

LEAK_CHECKED_TEST(blocking, grows_to_max_and_queues_the_rest, .timeout = 60)
{
    grow_case(12, 4);
}

LEAK_CHECKED_TEST(blocking, exactly_max_tasks, .timeout = 60)
{
    grow_case(5, 5);
}

/* With one thread, tasks run in submission order. The first task holds the
 * thread at the gate so that all the others are queued together. */
LEAK_CHECKED_TEST(blocking, single_thread_runs_fifo, .timeout = 60)
{
    long n = scaled(2000) + 1;
    board_t b;
    board_init(&b, n);
    task_arg_t *args = make_args(&b, n, false);
    args[0].wait_gate = true;
    moirai__blocking_t *pool;
    cr_assert_eq(moirai__blocking_create(&pool, 1, LONG_KEEPALIVE, 0), 0);
    for (long i = 0; i < n; i++)
        cr_assert_eq(moirai__blocking_submit(pool, counted_task, &args[i], NULL), 0);
    cr_assert_eq(moirai__blocking_threads(pool), 1);
    await_at_least(&b.started, 1);
    cr_assert_eq(atomic_load(&b.started), 1, "a queued task ran while the only thread blocked");

    gate_open(&b.gate);
    await_at_least(&b.done, n);
    moirai__blocking_destroy(pool);
    assert_each_ran_once(&b);
    for (long k = 0; k < n; k++)
        cr_assert_eq(b.order[k], k, "position %ld ran task %ld", k, b.order[k]);
    cr_assert_eq(atomic_load(&b.peak), 1);
    free(args);
    board_fini(&b);
}

/* ---- keepalive ---- */

/* Idle threads leave after the keepalive; the next submit starts one
 * again. */
LEAK_CHECKED_TEST(blocking, idle_threads_exit_and_come_back, .timeout = 120)
{
    board_t b;
    board_init(&b, 2);
    task_arg_t *args = make_args(&b, 2, true);
    moirai__blocking_t *pool;
    cr_assert_eq(moirai__blocking_create(&pool, 2, 20 * MOIRAI_NS_PER_MS, 0), 0);

    /* Two blocked tasks make two threads. */
    cr_assert_eq(moirai__blocking_submit(pool, counted_task, &args[0], NULL), 0);
    cr_assert_eq(moirai__blocking_submit(pool, counted_task, &args[1], NULL), 0);
    cr_assert_eq(moirai__blocking_threads(pool), 2);
    await_at_least(&b.started, 2);
    gate_open(&b.gate);
    await_at_least(&b.done, 2);

    await_threads(pool, 0);

    /* A later task, held at a gate of its own so that its thread cannot
     * leave before the count is read. */
    board_t later;
    board_init(&later, 1);
    task_arg_t *later_args = make_args(&later, 1, true);
    cr_assert_eq(moirai__blocking_submit(pool, counted_task, &later_args[0], NULL), 0);
    cr_assert_eq(moirai__blocking_threads(pool), 1, "an empty pool must start a thread again");
    gate_open(&later.gate);
    await_at_least(&later.done, 1);
    await_threads(pool, 0);
    moirai__blocking_destroy(pool);
    assert_each_ran_once(&b);
    assert_each_ran_once(&later);
    free(later_args);
    board_fini(&later);
    free(args);
    board_fini(&b);
}

/* A keepalive of zero: a thread leaves as soon as it finds nothing to do,
 * and work is still never stranded. */
LEAK_CHECKED_TEST(blocking, zero_keepalive_strands_nothing, .timeout = 120)
{
    long n = scaled(3000);
    board_t b;
    board_init(&b, n);
    task_arg_t *args = make_args(&b, n, false);
    moirai__blocking_t *pool;
    cr_assert_eq(moirai__blocking_create(&pool, 2, 0, 0), 0);
    for (long i = 0; i < n; i++) {
        cr_assert_eq(moirai__blocking_submit(pool, counted_task, &args[i], NULL), 0);
        if (i % 64 == 0)
            nap_ms(1); /* let the threads run dry and leave now and then */
    }
    await_at_least(&b.done, n);
    await_threads(pool, 0);
    moirai__blocking_destroy(pool);
    assert_each_ran_once(&b);
    free(args);
    board_fini(&b);
}

/* ---- handles ---- */

static int value_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    cr_assert_not_null(cancel, "a task with a handle gets its token");
    *result = arg;
    return 0;
}

static int failing_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    return -EIO;
}

/* Submits with a handle as an executor would receive it: the pool gets a
 * reference of its own, given back here if the submit fails. */
static int submit_with_handle(moirai__blocking_t *pool, moirai_task_fn fn, void *arg,
                              moirai_handle_t *h)
{
    moirai_handle_retain(h);
    int rc = moirai__blocking_submit(pool, fn, arg, h);
    if (rc != 0)
        moirai_handle_release(h);
    return rc;
}

LEAK_CHECKED_TEST(blocking, handle_gets_value_and_error, .timeout = 60)
{
    moirai__blocking_t *pool;
    cr_assert_eq(moirai__blocking_create(&pool, 2, LONG_KEEPALIVE, 0), 0);
    moirai_handle_t *ok, *bad;
    cr_assert_eq(moirai_handle_create(&ok), 0);
    cr_assert_eq(moirai_handle_create(&bad), 0);
    int marker;
    cr_assert_eq(submit_with_handle(pool, value_task, &marker, ok), 0);
    cr_assert_eq(submit_with_handle(pool, failing_task, NULL, bad), 0);

    void *value = NULL;
    cr_assert_eq(moirai_handle_join(ok, &value), 0);
    cr_assert_eq(value, &marker);
    value = &marker;
    cr_assert_eq(moirai_handle_join(bad, &value), -EIO);
    cr_assert_null(value);
    moirai_handle_release(ok);
    moirai_handle_release(bad);
    moirai__blocking_destroy(pool);
}

/* A handle cancelled while its task waits in the queue: the task never
 * runs and the joiner sees -ECANCELED; the task behind it still runs. */
LEAK_CHECKED_TEST(blocking, cancelled_before_start_never_runs, .timeout = 60)
{
    board_t b;
    board_init(&b, 3);
    task_arg_t *args = make_args(&b, 3, false);
    args[0].wait_gate = true;
    moirai__blocking_t *pool;
    cr_assert_eq(moirai__blocking_create(&pool, 1, LONG_KEEPALIVE, 0), 0);

    cr_assert_eq(moirai__blocking_submit(pool, counted_task, &args[0], NULL), 0);
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(submit_with_handle(pool, counted_task, &args[1], h), 0);
    cr_assert_eq(moirai__blocking_submit(pool, counted_task, &args[2], NULL), 0);
    await_at_least(&b.started, 1);
    cr_assert_eq(moirai_handle_cancel(h), 0, "the task had not started, cancel must win");

    gate_open(&b.gate);
    moirai__blocking_destroy(pool);
    cr_assert_eq(moirai_handle_join(h, NULL), -ECANCELED);
    cr_assert_eq(atomic_load(&b.runs[0]), 1);
    cr_assert_eq(atomic_load(&b.runs[1]), 0, "a cancelled task ran");
    cr_assert_eq(atomic_load(&b.runs[2]), 1);
    moirai_handle_release(h);
    free(args);
    board_fini(&b);
}

/* ---- destroy ---- */

typedef struct destroyer {
    moirai__blocking_t *pool;
    pthread_t thread;
} destroyer_t;

static void *destroy_main(void *arg)
{
    destroyer_t *d = arg;
    moirai__blocking_destroy(d->pool);
    return NULL;
}

/* Starts destroy on another thread and returns once it has begun, which
 * the caller sees as submits failing with -ESHUTDOWN. Submits that were
 * still accepted queue no-op tasks counted in `*noops_accepted`; each of
 * them must run too. */
static void begin_destroy(destroyer_t *d, moirai__blocking_t *pool, _Atomic long *noop_runs,
                          long *noops_accepted)
{
    d->pool = pool;
    cr_assert_eq(pthread_create(&d->thread, NULL, destroy_main, d), 0);
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    *noops_accepted = 0;
    for (;;) {
        int rc = moirai__blocking_submit(pool, noop_task, noop_runs, NULL);
        if (rc == -ESHUTDOWN)
            break;
        cr_assert_eq(rc, 0);
        (*noops_accepted)++;
        cr_assert(!moirai_deadline_expired(deadline), "destroy never began");
        nap_ms(1);
    }
}

/* Tasks queued behind blocked ones when destroy begins all run before
 * destroy returns. */
LEAK_CHECKED_TEST(blocking, destroy_runs_queued_work, .timeout = 60)
{
    long n = scaled(500) + 2;
    board_t b;
    board_init(&b, n);
    task_arg_t *args = make_args(&b, n, false);
    args[0].wait_gate = true;
    args[1].wait_gate = true;
    moirai__blocking_t *pool;
    cr_assert_eq(moirai__blocking_create(&pool, 2, LONG_KEEPALIVE, 0), 0);
    for (long i = 0; i < n; i++)
        cr_assert_eq(moirai__blocking_submit(pool, counted_task, &args[i], NULL), 0);
    await_at_least(&b.started, 2);

    destroyer_t d;
    _Atomic long noop_runs = 0;
    long noops_accepted;
    begin_destroy(&d, pool, &noop_runs, &noops_accepted);
    cr_assert_eq(atomic_load(&b.started), 2, "queued tasks ran while both threads blocked");
    gate_open(&b.gate);
    pthread_join(d.thread, NULL);

    assert_each_ran_once(&b);
    cr_assert_eq(atomic_load(&noop_runs), noops_accepted);
    free(args);
    board_fini(&b);
}

/* A task that submits while destroy waits for it gets -ESHUTDOWN. */
typedef struct resubmit {
    gate_t gate;
    moirai__blocking_t *pool;
    _Atomic long noop_runs;
    _Atomic int rc;
} resubmit_t;

static int resubmitting_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    resubmit_t *r = arg;
    gate_wait(&r->gate);
    atomic_store(&r->rc, moirai__blocking_submit(r->pool, noop_task, &r->noop_runs, NULL));
    return 0;
}

LEAK_CHECKED_TEST(blocking, submit_during_destroy_is_refused, .timeout = 60)
{
    resubmit_t r;
    memset(&r, 0, sizeof(r));
    atomic_store(&r.rc, 1);
    cr_assert_eq(moirai__blocking_create(&r.pool, 1, LONG_KEEPALIVE, 0), 0);
    cr_assert_eq(moirai__blocking_submit(r.pool, resubmitting_task, &r, NULL), 0);

    destroyer_t d;
    long noops_accepted;
    begin_destroy(&d, r.pool, &r.noop_runs, &noops_accepted);
    gate_open(&r.gate);
    pthread_join(d.thread, NULL);
    cr_assert_eq(atomic_load(&r.rc), -ESHUTDOWN);
    cr_assert_eq(atomic_load(&r.noop_runs), noops_accepted, "the refused task ran");
}

/* Destroy of a pool whose threads all idled out, and of one that is idle
 * with live threads. */
LEAK_CHECKED_TEST(blocking, destroy_idle_pools, .timeout = 60)
{
    _Atomic long runs = 0;
    moirai__blocking_t *pool;
    cr_assert_eq(moirai__blocking_create(&pool, 4, LONG_KEEPALIVE, 0), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(moirai__blocking_submit(pool, noop_task, &runs, NULL), 0);
    await_at_least(&runs, 4);
    moirai__blocking_destroy(pool);

    cr_assert_eq(moirai__blocking_create(&pool, 4, 0, 0), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(moirai__blocking_submit(pool, noop_task, &runs, NULL), 0);
    await_at_least(&runs, 8);
    await_threads(pool, 0);
    moirai__blocking_destroy(pool);
    cr_assert_eq(atomic_load(&runs), 8);
}

/* ---- thread creation failure ---- */

/* No thread can be created (a stack of SIZE_MAX/2 bytes: glibc's
 * pthread_attr_setstacksize accepts it and pthread_create then fails with
 * EAGAIN, since the stack cannot be mapped): with no thread alive, submit
 * returns -EAGAIN and keeps nothing. */
LEAK_CHECKED_TEST(blocking, no_thread_possible_is_eagain, .timeout = 30)
{
    moirai__blocking_t *pool;
    cr_assert_eq(moirai__blocking_create(&pool, 4, LONG_KEEPALIVE, SIZE_MAX / 2), 0);
    _Atomic long runs = 0;
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(submit_with_handle(pool, noop_task, &runs, h), -EAGAIN);
        cr_assert_eq(moirai__blocking_threads(pool), 0);
    }
    cr_assert_eq(moirai_handle_try_join(h, NULL), -EAGAIN, "the handle changed");
    moirai__blocking_destroy(pool);
    cr_assert_eq(atomic_load(&runs), 0, "a refused task ran");
    moirai_handle_release(h);
}

/* Some thread is alive but no other can be created: the task queues
 * behind the live thread and runs later. The failure comes from limiting
 * the address space (RLIMIT_AS binds root too, unlike RLIMIT_NPROC) to
 * what is mapped now plus 32 MiB while threads need 64 MiB stacks. The
 * sanitizers reserve and map memory of their own at unpredictable times,
 * so the test runs in the plain build only. */
#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif

#if !defined(MOIRAI_TEST_LSAN) && !defined(TEST_TSAN)
static size_t mapped_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    cr_assert_not_null(f);
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
            break;
    fclose(f);
    cr_assert_gt(kb, 0);
    return kb * 1024;
}
#endif

LEAK_CHECKED_TEST(blocking, failed_growth_keeps_task_queued, .timeout = 60)
{
#if defined(MOIRAI_TEST_LSAN) || defined(TEST_TSAN)
    cr_skip_test("address-space limits and sanitizer shadow memory do not mix");
#else
    board_t b;
    board_init(&b, 2);
    task_arg_t *args = make_args(&b, 2, true);
    moirai__blocking_t *pool;
    cr_assert_eq(moirai__blocking_create(&pool, 4, LONG_KEEPALIVE, 64u << 20), 0);
    cr_assert_eq(moirai__blocking_submit(pool, counted_task, &args[0], NULL), 0);
    await_at_least(&b.started, 1);

    struct rlimit old;
    cr_assert_eq(getrlimit(RLIMIT_AS, &old), 0);
    struct rlimit tight = {mapped_bytes() + (32u << 20), old.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_AS, &tight), 0);
    int rc = moirai__blocking_submit(pool, counted_task, &args[1], NULL);
    int threads = moirai__blocking_threads(pool);
    cr_assert_eq(setrlimit(RLIMIT_AS, &old), 0);
    cr_assert_eq(rc, 0, "with a thread alive the task must queue, got %d", rc);
    cr_assert_eq(threads, 1, "a thread was created despite the limit");
    cr_assert_eq(atomic_load(&b.started), 1);

    gate_open(&b.gate);
    moirai__blocking_destroy(pool);
    assert_each_ran_once(&b);
    cr_assert_eq(b.order[0], 0);
    cr_assert_eq(b.order[1], 1);
    free(args);
    board_fini(&b);
#endif
}

/* ---- out of memory ---- */

typedef struct create_ctx {
    moirai__blocking_t *pool;
} create_ctx_t;

static int create_op(void *arg)
{
    create_ctx_t *c = arg;
    return moirai__blocking_create(&c->pool, 2, LONG_KEEPALIVE, 0);
}

static void create_unchanged(void *arg, long n)
{
    create_ctx_t *c = arg;
    cr_assert_null(c->pool, "failed create %ld wrote *out", n);
}

LEAK_CHECKED_TEST(blocking, create_out_of_memory, .timeout = 60)
{
    create_ctx_t c = {NULL};
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(create_op, create_unchanged, &c);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0, "create allocates, so some run must fail");
    cr_assert_not_null(c.pool);
    moirai__blocking_destroy(c.pool);
}

typedef struct submit_ctx {
    moirai__blocking_t *pool;
    moirai_handle_t *handle;
    _Atomic long runs;
} submit_ctx_t;

static int counting_value_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    submit_ctx_t *c = arg;
    atomic_fetch_add(&c->runs, 1);
    *result = c;
    return 0;
}

static int submit_op(void *arg)
{
    submit_ctx_t *c = arg;
    return submit_with_handle(c->pool, counting_value_task, c, c->handle);
}

static void submit_unchanged(void *arg, long n)
{
    submit_ctx_t *c = arg;
    cr_assert_eq(moirai__blocking_threads(c->pool), 0, "failed submit %ld started a thread", n);
    cr_assert_eq(moirai_handle_try_join(c->handle, NULL), -EAGAIN, "failed submit %ld", n);
}

LEAK_CHECKED_TEST(blocking, submit_out_of_memory, .timeout = 60)
{
    submit_ctx_t c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(moirai__blocking_create(&c.pool, 2, LONG_KEEPALIVE, 0), 0);
    cr_assert_eq(moirai_handle_create(&c.handle), 0);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(submit_op, submit_unchanged, &c);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0, "submit allocates, so some run must fail");

    void *value = NULL;
    cr_assert_eq(moirai_handle_join(c.handle, &value), 0);
    cr_assert_eq(value, &c);
    moirai__blocking_destroy(c.pool);
    cr_assert_eq(atomic_load(&c.runs), 1, "only the successful submit may run");
    moirai_handle_release(c.handle);
}
