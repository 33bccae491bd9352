/* Scopes of moirai-sched, as scope.h documents them: tasks may borrow from
 * the caller's stack and may spawn into the same scope; moirai_scope_run()
 * returns only after every task finished, each exactly once; the first
 * error reaches the caller and cancels the scope; a cancelled scope runs no
 * task that had not started, refuses spawns, and fires the token running
 * tasks hold; a worker calling moirai_scope_run() helps; every error path
 * is reached.
 *
 * Tasks never call Criterion's asserts (they run on worker threads): they
 * record what they saw and the test thread checks it after the scope
 * returned. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/core/task.h>
#include <moirai/sched/scope.h>

#include "oom.h"
#include "sched_test_util.h"
#include "test_scale.h"

/* A little uneven work, so tasks finish in mixed order. */
static void spin_a_bit(unsigned n)
{
    for (volatile unsigned i = 0; i < (n % 7) * 200; i++)
        ;
}

/* ---- Borrowing from the caller's stack ---- */

typedef struct borrow_slot {
    moirai_scope_t *scope;
    _Atomic int *hits; /* the caller's stack array */
    int index;
} borrow_slot_t;

static int borrow_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    borrow_slot_t *slot = arg;
    spin_a_bit((unsigned)slot->index);
    atomic_fetch_add(&slot->hits[slot->index], 1);
    return 0;
}

#define BORROW_N 256

typedef struct borrow_ctx {
    _Atomic int hits[BORROW_N];
    borrow_slot_t slots[BORROW_N];
    int spawn_errors;
} borrow_ctx_t;

static int borrow_body(void *arg, moirai_scope_t *scope)
{
    borrow_ctx_t *c = arg;
    for (int i = 0; i < BORROW_N; i++) {
        c->slots[i] = (borrow_slot_t){scope, c->hits, i};
        if (moirai_scope_spawn(scope, borrow_task, &c->slots[i], NULL) != 0)
            c->spawn_errors++;
    }
    return 0;
}

Test(scope, tasks_borrow_the_callers_stack, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    long rounds = scaled(50);
    for (long r = 0; r < rounds; r++) {
        /* Everything the tasks touch lives in this stack frame. */
        borrow_ctx_t c;
        memset(&c, 0, sizeof(c));
        cr_assert_eq(moirai_scope_run(s, borrow_body, &c), 0);
        cr_assert_eq(c.spawn_errors, 0);
        for (int i = 0; i < BORROW_N; i++)
            cr_assert_eq(atomic_load(&c.hits[i]), 1, "round %ld: task %d ran %d times", r, i,
                         atomic_load(&c.hits[i]));
    }
    drop_sched(s);
}

/* ---- Nested spawns: a tree of tasks spawned into the same scope ---- */

#define TREE_FANOUT 4

typedef struct tree_ctx {
    moirai_scope_t *scope;
    long nodes;
    _Atomic int *hits;
    struct tree_node *args; /* one argument per node, owned by the caller */
    _Atomic long spawn_errors;
    _Atomic long finished;
} tree_ctx_t;

typedef struct tree_node {
    tree_ctx_t *ctx;
    long id;
} tree_node_t;

static int tree_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    tree_node_t *node = arg;
    tree_ctx_t *c = node->ctx;
    atomic_fetch_add(&c->hits[node->id], 1);
    for (long k = 1; k <= TREE_FANOUT; k++) {
        long child = node->id * TREE_FANOUT + k;
        if (child >= c->nodes)
            break;
        /* Each node's argument is the caller's array entry for it. */
        tree_node_t *slot = &c->args[child];
        slot->ctx = c;
        slot->id = child;
        if (moirai_scope_spawn(c->scope, tree_task, slot, NULL) != 0)
            atomic_fetch_add(&c->spawn_errors, 1);
    }
    spin_a_bit((unsigned)node->id);
    atomic_fetch_add(&c->finished, 1);
    return 0;
}

static int tree_body(void *arg, moirai_scope_t *scope)
{
    tree_ctx_t *c = arg;
    c->scope = scope;
    tree_node_t *root = &c->args[0];
    root->ctx = c;
    root->id = 0;
    return moirai_scope_spawn(scope, tree_task, root, NULL);
}

Test(scope, tasks_spawn_into_the_same_scope, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    long nodes = scaled(20000);
    tree_ctx_t c;
    memset(&c, 0, sizeof(c));
    c.nodes = nodes;
    c.hits = calloc((size_t)nodes, sizeof(*c.hits));
    c.args = calloc((size_t)nodes, sizeof(*c.args));
    cr_assert(c.hits != NULL && c.args != NULL);
    cr_assert_eq(moirai_scope_run(s, tree_body, &c), 0);
    /* No waiting here: the scope returned, so every task has finished. */
    cr_assert_eq(atomic_load(&c.spawn_errors), 0);
    cr_assert_eq(atomic_load(&c.finished), nodes, "returned before every task finished");
    for (long i = 0; i < nodes; i++)
        cr_assert_eq(atomic_load(&c.hits[i]), 1, "node %ld ran %d times", i,
                     atomic_load(&c.hits[i]));
    free(c.hits);
    free(c.args);
    drop_sched(s);
}

/* ---- Returns only after everything finished ---- */

typedef struct slow_ctx {
    _Atomic int gate;
    _Atomic int started;
    int written; /* plain: published by the scope's return */
} slow_ctx_t;

static int slow_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    slow_ctx_t *c = arg;
    atomic_store(&c->started, 1);
    /* Hold on until the body has returned: the scope must still wait. */
    await_flag(&c->gate);
    c->written = 42;
    return 0;
}

static int slow_body(void *arg, moirai_scope_t *scope)
{
    slow_ctx_t *c = arg;
    int rc = moirai_scope_spawn(scope, slow_task, c, NULL);
    if (rc != 0)
        return rc;
    if (!await_flag(&c->started))
        return -ETIMEDOUT;
    return 0;
}

static void *open_gate_later(void *arg)
{
    slow_ctx_t *c = arg;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_store(&c->gate, 1);
    return NULL;
}

Test(scope, waits_for_a_task_that_outlives_the_body, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    slow_ctx_t c;
    memset(&c, 0, sizeof(c));
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, open_gate_later, &c), 0);
    cr_assert_eq(moirai_scope_run(s, slow_body, &c), 0);
    cr_assert_eq(atomic_load(&c.gate), 1, "returned while the task was still held");
    cr_assert_eq(c.written, 42, "the task's write is not visible after the scope");
    pthread_join(t, NULL);
    drop_sched(s);
}

/* ---- The first error wins and reaches the caller ---- */

static int fail_eio(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    return -EIO;
}

static int ok_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    atomic_fetch_add((_Atomic int *)arg, 1);
    return 0;
}

typedef struct err_ctx {
    int spawn_rc;
    int late_spawn_rc;
    bool saw_cancel;
    _Atomic int ran;
} err_ctx_t;

/* A task fails first; the body notices the scope cancelled by that error,
 * then returns an error of its own, which must lose. */
static int first_error_body(void *arg, moirai_scope_t *scope)
{
    err_ctx_t *c = arg;
    c->spawn_rc = moirai_scope_spawn(scope, fail_eio, NULL, NULL);
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (!moirai_scope_is_cancelled(scope) && moirai_clock_now_ns() < deadline)
        sched_yield();
    c->saw_cancel = moirai_scope_is_cancelled(scope);
    c->late_spawn_rc = moirai_scope_spawn(scope, ok_task, &c->ran, NULL);
    return -EPERM;
}

Test(scope, first_error_wins_and_cancels, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    err_ctx_t c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(moirai_scope_run(s, first_error_body, &c), -EIO);
    cr_assert_eq(c.spawn_rc, 0);
    cr_assert(c.saw_cancel, "an error did not cancel the scope");
    cr_assert_eq(c.late_spawn_rc, -ECANCELED, "a spawn into a failed scope was accepted");
    cr_assert_eq(atomic_load(&c.ran), 0);
    drop_sched(s);
}

static int body_fails(void *arg, moirai_scope_t *scope)
{
    (void)scope;
    (void)arg;
    return -ENOENT;
}

static int body_positive(void *arg, moirai_scope_t *scope)
{
    (void)scope;
    (void)arg;
    return 7;
}

Test(scope, the_bodys_error_reaches_the_caller, .timeout = 30)
{
    moirai_sched_t *s = make_sched(1);
    cr_assert_eq(moirai_scope_run(s, body_fails, NULL), -ENOENT);
    cr_assert_eq(moirai_scope_run(s, body_positive, NULL), 7, "any non-zero value is a result");
    drop_sched(s);
}

/* Many tasks fail at once with different errors: the result is one of
 * them, and every task that ran did so once. */
typedef struct many_err_ctx {
    _Atomic int ran[64];
    int spawned[64];
} many_err_ctx_t;

typedef struct many_err_arg {
    many_err_ctx_t *ctx;
    int i;
} many_err_arg_t;

static int many_err_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    many_err_arg_t *a = arg;
    atomic_fetch_add(&a->ctx->ran[a->i], 1);
    return -(1000 + a->i);
}

static int many_err_body(void *arg, moirai_scope_t *scope)
{
    many_err_ctx_t *c = arg;
    static many_err_arg_t args[64];
    for (int i = 0; i < 64; i++) {
        args[i] = (many_err_arg_t){c, i};
        c->spawned[i] = moirai_scope_spawn(scope, many_err_task, &args[i], NULL) == 0;
    }
    return 0;
}

Test(scope, concurrent_errors_give_one_of_them, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    for (long r = 0; r < scaled(100); r++) {
        many_err_ctx_t c;
        memset(&c, 0, sizeof(c));
        int rc = moirai_scope_run(s, many_err_body, &c);
        cr_assert(rc <= -1000 && rc > -1064, "result %d is no task's error", rc);
        int i = -rc - 1000;
        cr_assert_eq(atomic_load(&c.ran[i]), 1, "the winning task did not run");
        cr_assert(c.spawned[0], "the first spawn must be accepted");
        for (int k = 0; k < 64; k++) {
            cr_assert(atomic_load(&c.ran[k]) <= c.spawned[k], "task %d ran %d times", k,
                      atomic_load(&c.ran[k]));
        }
    }
    drop_sched(s);
}

/* ---- Cancellation ---- */

#define CANCEL_QUEUED 16

typedef struct cancel_ctx {
    _Atomic int gate_started;
    _Atomic int gate_saw_cancel;
    _Atomic int queued_ran;
    int queued_rc[CANCEL_QUEUED];
    int late_rc;
    bool token_matches;
} cancel_ctx_t;

/* Holds the only worker until it sees the scope's token fire. */
static int gate_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)result;
    cancel_ctx_t *c = arg;
    atomic_store(&c->gate_started, 1);
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (!moirai_cancel_token_is_cancelled(cancel) && moirai_clock_now_ns() < deadline)
        sched_yield();
    atomic_store(&c->gate_saw_cancel, moirai_cancel_token_is_cancelled(cancel));
    return 0;
}

static int cancel_body(void *arg, moirai_scope_t *scope)
{
    cancel_ctx_t *c = arg;
    c->token_matches = moirai_scope_token(scope) != NULL;
    int rc = moirai_scope_spawn(scope, gate_task, c, NULL);
    if (rc != 0)
        return rc;
    if (!await_flag(&c->gate_started))
        return -ETIMEDOUT;
    /* The one worker is busy: these stay queued. */
    for (int i = 0; i < CANCEL_QUEUED; i++)
        c->queued_rc[i] = moirai_scope_spawn(scope, ok_task, &c->queued_ran, NULL);
    if (moirai_scope_is_cancelled(scope))
        return -EALREADY;
    moirai_scope_cancel(scope);
    moirai_scope_cancel(scope); /* idempotent */
    c->late_rc = moirai_scope_spawn(scope, ok_task, &c->queued_ran, NULL);
    return 0;
}

Test(scope, cancel_skips_queued_tasks_and_fires_the_token, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    for (long r = 0; r < scaled(20); r++) {
        cancel_ctx_t c;
        memset(&c, 0, sizeof(c));
        cr_assert_eq(moirai_scope_run(s, cancel_body, &c), -ECANCELED,
                     "a cancelled scope with no error reports -ECANCELED");
        cr_assert(c.token_matches);
        for (int i = 0; i < CANCEL_QUEUED; i++)
            cr_assert_eq(c.queued_rc[i], 0);
        cr_assert_eq(c.late_rc, -ECANCELED, "a spawn after cancel was accepted");
        cr_assert_eq(atomic_load(&c.queued_ran), 0, "%d tasks ran after the scope was cancelled",
                     atomic_load(&c.queued_ran));
        cr_assert_eq(atomic_load(&c.gate_saw_cancel), 1, "a running task's token never fired");
    }
    drop_sched(s);
}

/* The token a task receives is the scope's token. */
typedef struct token_ctx {
    const moirai_cancel_token_t *scope_token;
    const moirai_cancel_token_t *task_token;
} token_ctx_t;

static int token_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)result;
    ((token_ctx_t *)arg)->task_token = cancel;
    return 0;
}

static int token_body(void *arg, moirai_scope_t *scope)
{
    token_ctx_t *c = arg;
    c->scope_token = moirai_scope_token(scope);
    return moirai_scope_spawn(scope, token_task, c, NULL);
}

Test(scope, tasks_receive_the_scopes_token, .timeout = 30)
{
    moirai_sched_t *s = make_sched(1);
    token_ctx_t c = {NULL, NULL};
    cr_assert_eq(moirai_scope_run(s, token_body, &c), 0);
    cr_assert_not_null(c.scope_token);
    cr_assert_eq(c.task_token, c.scope_token);
    drop_sched(s);
}

/* ---- moirai_scope_run() from inside a task: the worker helps ---- */

typedef struct inner_ctx {
    _Atomic int ran;
    int spawned;
    int inner_rc;
} inner_ctx_t;

static int inner_body(void *arg, moirai_scope_t *scope)
{
    inner_ctx_t *c = arg;
    for (int i = 0; i < 100; i++)
        c->spawned += moirai_scope_spawn(scope, ok_task, &c->ran, NULL) == 0;
    return 0;
}

/* A scope task that runs a nested scope of its own. */
static int nested_scope_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    return moirai_scope_run(NULL, inner_body, arg);
}

static int outer_body(void *arg, moirai_scope_t *scope)
{
    inner_ctx_t *c = arg;
    int rc = moirai_scope_spawn(scope, nested_scope_task, &c[1], NULL);
    if (rc != 0)
        return rc;
    return inner_body(&c[0], scope);
}

static int scope_in_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    return moirai_scope_run(NULL, outer_body, arg);
}

Test(scope, run_from_a_task_helps_with_one_worker, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    for (long r = 0; r < scaled(20); r++) {
        inner_ctx_t c[2];
        memset(c, 0, sizeof(c));
        cr_assert_eq(run_in_task(s, scope_in_task, c), 0);
        cr_assert_eq(c[0].spawned, 100);
        cr_assert_eq(c[1].spawned, 100);
        cr_assert_eq(atomic_load(&c[0].ran), 100);
        cr_assert_eq(atomic_load(&c[1].ran), 100);
    }
    drop_sched(s);
}

/* ---- Attributes are passed on ---- */

static int attr_body(void *arg, moirai_scope_t *scope)
{
    _Atomic int *ran = arg;
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    attr.priority = MOIRAI_PRIORITY_HIGH;
    attr.name = "scope-high";
    int rc = moirai_scope_spawn(scope, ok_task, ran, &attr);
    if (rc != 0)
        return rc;
    attr.priority = MOIRAI_PRIORITY_BACKGROUND;
    return moirai_scope_spawn(scope, ok_task, ran, &attr);
}

Test(scope, spawn_with_attributes, .timeout = 30)
{
    moirai_sched_t *s = make_sched(2);
    _Atomic int ran = 0;
    cr_assert_eq(moirai_scope_run(s, attr_body, &ran), 0);
    cr_assert_eq(atomic_load(&ran), 2);
    drop_sched(s);
}

/* ---- Argument errors ---- */

typedef struct bad_spawn_ctx {
    int null_fn;
    int null_scope;
    int bad_priority;
    int bad_locality;
    _Atomic int ran;
} bad_spawn_ctx_t;

static int bad_spawn_body(void *arg, moirai_scope_t *scope)
{
    bad_spawn_ctx_t *c = arg;
    c->null_fn = moirai_scope_spawn(scope, NULL, NULL, NULL);
    c->null_scope = moirai_scope_spawn(NULL, ok_task, &c->ran, NULL);
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    attr.priority = (moirai_priority_t)99;
    c->bad_priority = moirai_scope_spawn(scope, ok_task, &c->ran, &attr);
    moirai_task_attr_init(&attr);
    attr.locality = (moirai_locality_t)42;
    c->bad_locality = moirai_scope_spawn(scope, ok_task, &c->ran, &attr);
    return 0;
}

Test(scope, argument_errors, .timeout = 30)
{
    moirai_sched_t *s = make_sched(1);
    cr_assert_eq(moirai_scope_run(s, NULL, NULL), -EINVAL);
    bad_spawn_ctx_t c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(moirai_scope_run(s, bad_spawn_body, &c), 0,
                 "rejected spawns are not the scope's error");
    cr_assert_eq(c.null_fn, -EINVAL);
    cr_assert_eq(c.null_scope, -EINVAL);
    cr_assert_eq(c.bad_priority, -EINVAL);
    cr_assert_eq(c.bad_locality, -EINVAL);
    cr_assert_eq(atomic_load(&c.ran), 0);
    /* The NULL-tolerant helpers. */
    moirai_scope_cancel(NULL);
    cr_assert(!moirai_scope_is_cancelled(NULL));
    cr_assert_null(moirai_scope_token(NULL));
    drop_sched(s);
}

/* ---- -ESHUTDOWN once destroy has begun ---- */

typedef struct shut_ctx {
    moirai_sched_t *sched;
    hold_t hold;
    _Atomic int ran;
    int spawn_rc;
} shut_ctx_t;

static int shutdown_body(void *arg, moirai_scope_t *scope)
{
    shut_ctx_t *c = arg;
    if (!await_shutdown(c->sched))
        return -ETIMEDOUT;
    c->spawn_rc = moirai_scope_spawn(scope, ok_task, &c->ran, NULL);
    release_worker(&c->hold);
    return 0;
}

Test(scope, spawn_after_destroy_began_is_refused, .timeout = 60)
{
    shut_ctx_t c;
    memset(&c, 0, sizeof(c));
    c.sched = make_sched(1);
    /* Keep the scheduler alive (destroy waits for this task) while the
     * body, on this thread, spawns into a scope of it. */
    hold_worker(c.sched, &c.hold);
    destroyer_t d;
    start_destroy(&d, c.sched, MOIRAI_SHUTDOWN_DRAIN);
    int rc = moirai_scope_run(c.sched, shutdown_body, &c);
    release_worker(&c.hold);
    cr_assert_eq(finish_destroy(&d), 0);
    cr_assert_eq(rc, 0);
    cr_assert_eq(c.spawn_rc, -ESHUTDOWN);
    cr_assert_eq(atomic_load(&c.ran), 0);
}

/* ---- Out of memory ---- */

typedef struct oom_ctx {
    moirai_sched_t *sched;
    _Atomic int ran;
    _Atomic int running;
    int accepted;
    int body_runs;
} oom_ctx_t;

static int oom_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    oom_ctx_t *c = arg;
    atomic_fetch_add(&c->running, 1);
    atomic_fetch_add(&c->ran, 1);
    atomic_fetch_sub(&c->running, 1);
    return 0;
}

static int oom_body(void *arg, moirai_scope_t *scope)
{
    oom_ctx_t *c = arg;
    c->body_runs++;
    for (int i = 0; i < 3; i++) {
        int rc = moirai_scope_spawn(scope, oom_task, c, NULL);
        if (rc != 0)
            return rc;
        c->accepted++;
    }
    return 0;
}

static int oom_op(void *arg)
{
    oom_ctx_t *c = arg;
    atomic_store(&c->ran, 0);
    c->accepted = 0;
    c->body_runs = 0;
    int rc = moirai_scope_run(c->sched, oom_body, c);
    if (rc == 0 && (atomic_load(&c->ran) != 3 || c->accepted != 3))
        return -EPROTO;
    return rc;
}

static void oom_check(void *arg, long n)
{
    oom_ctx_t *c = arg;
    /* Failed setup runs nothing; a failed spawn stops the body, and the
     * tasks accepted before it ran at most once (the error cancelled the
     * scope, so they may not have run at all), all finished by now. */
    cr_assert_leq(c->body_runs, 1, "n=%ld", n);
    cr_assert_leq(atomic_load(&c->ran), c->accepted, "n=%ld", n);
    cr_assert_eq(atomic_load(&c->running), 0, "n=%ld: a task was still running", n);
    if (c->body_runs == 0)
        cr_assert_eq(atomic_load(&c->ran), 0, "n=%ld", n);
}

Test(scope, out_of_memory_sweep, .timeout = 120)
{
    oom_ctx_t c;
    memset(&c, 0, sizeof(c));
    c.sched = make_sched(2);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(oom_op, oom_check, &c);
    moirai_test_oom_uninstall();
    /* The handle, then one wrapper per spawn at least. */
    cr_assert_geq(failures, 4, "only %ld allocations failed", failures);
    drop_sched(c.sched);
}

/* moirai_scope_spawn() alone: its one allocation fails, the spawn reports
 * -ENOMEM, nothing runs, and the scope goes on (the body decides). */
typedef struct spawn_oom_ctx {
    int first_rc;
    int second_rc;
    _Atomic int ran;
} spawn_oom_ctx_t;

static int spawn_oom_body(void *arg, moirai_scope_t *scope)
{
    spawn_oom_ctx_t *c = arg;
    moirai_test_oom_fail_at(0);
    c->first_rc = moirai_scope_spawn(scope, ok_task, &c->ran, NULL);
    moirai_test_oom_fail_at(-1);
    c->second_rc = moirai_scope_spawn(scope, ok_task, &c->ran, NULL);
    return 0;
}

Test(scope, spawn_out_of_memory, .timeout = 30)
{
    moirai_sched_t *s = make_sched(1);
    spawn_oom_ctx_t c;
    memset(&c, 0, sizeof(c));
    moirai_test_oom_install();
    int rc = moirai_scope_run(s, spawn_oom_body, &c);
    moirai_test_oom_uninstall();
    cr_assert_eq(rc, 0);
    cr_assert_eq(c.first_rc, -ENOMEM);
    cr_assert_eq(c.second_rc, 0);
    cr_assert_eq(atomic_load(&c.ran), 1, "the refused task ran, or the accepted one did not");
    drop_sched(s);
}

/* ---- Destroy with MOIRAI_SHUTDOWN_CANCEL while a scope waits ---- */

/* sched.h: under MOIRAI_SHUTDOWN_CANCEL "join frames and scopes still
 * complete, since their owners are waiting on them", and no task that had
 * not started runs. A scope on a thread outside the pool has tasks queued
 * behind a gate when destroy(CANCEL) begins: moirai_scope_run() must still
 * return, and the queued tasks must not have run. */
typedef struct cancel_destroy_ctx {
    moirai_sched_t *sched;
    hold_t gate; /* holds the only worker, inside the scope */
    _Atomic int queued;
    _Atomic int ran;
    _Atomic int scope_returned;
    int scope_rc;
    int spawned;
} cancel_destroy_ctx_t;

static int cd_body(void *arg, moirai_scope_t *scope)
{
    cancel_destroy_ctx_t *c = arg;
    int rc = moirai_scope_spawn(scope, hold_task, &c->gate, NULL);
    if (rc != 0)
        return rc;
    if (!await_flag(&c->gate.started))
        return -ETIMEDOUT;
    for (int i = 0; i < 8; i++)
        c->spawned += moirai_scope_spawn(scope, ok_task, &c->ran, NULL) == 0;
    atomic_store(&c->queued, 1);
    return 0;
}

static void *cd_scope_thread(void *arg)
{
    cancel_destroy_ctx_t *c = arg;
    c->scope_rc = moirai_scope_run(c->sched, cd_body, c);
    atomic_store(&c->scope_returned, 1);
    return NULL;
}

Test(scope, destroy_cancel_completes_a_waiting_scope, .timeout = 60)
{
    cancel_destroy_ctx_t c;
    memset(&c, 0, sizeof(c));
    c.sched = make_sched(1);
    pthread_t scope_thread;
    cr_assert_eq(pthread_create(&scope_thread, NULL, cd_scope_thread, &c), 0);
    cr_assert(await_flag(&c.queued), "the body never queued its tasks");
    cr_assert_eq(c.spawned, 8);
    destroyer_t d;
    start_destroy(&d, c.sched, MOIRAI_SHUTDOWN_CANCEL);
    /* Once destroy has begun (external spawns refused), let the gate go. */
    cr_assert(await_shutdown(c.sched), "destroy never began");
    release_worker(&c.gate);
    /* Bounded: a scope that never completes fails here instead of hanging. */
    cr_assert(await_flag(&c.scope_returned), "moirai_scope_run() never returned after "
                                             "destroy(CANCEL)");
    pthread_join(scope_thread, NULL);
    cr_assert_eq(finish_destroy(&d), 0);
    cr_assert(c.scope_rc == 0 || c.scope_rc == -ECANCELED, "rc %d", c.scope_rc);
    cr_assert_eq(atomic_load(&c.ran), 0, "%d queued tasks ran under MOIRAI_SHUTDOWN_CANCEL",
                 atomic_load(&c.ran));
}

/* ---- A NULL scheduler off the pool: a serial scope on the caller ---- */

typedef struct serial_ctx {
    pthread_t caller;
    int order[16];
    int n;
    bool off_caller; /* something ran on another thread */
    int fail_at;     /* the task with this number fails with -EIO (0: none) */
    int late_spawn_rc;
} serial_ctx_t;

typedef struct serial_task {
    serial_ctx_t *ctx;
    int id;
} serial_task_t;

static serial_task_t serial_tasks[8];

static void serial_note(serial_ctx_t *c, int id)
{
    if (!pthread_equal(pthread_self(), c->caller))
        c->off_caller = true;
    if (c->n < 16)
        c->order[c->n++] = id;
}

static moirai_scope_t *serial_scope;

static int serial_task_fn(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    serial_task_t *t = arg;
    serial_note(t->ctx, t->id);
    /* Task 1 spawns task 4: it runs after the tasks already queued. */
    if (t->id == 1)
        cr_assert_eq(moirai_scope_spawn(serial_scope, serial_task_fn, &serial_tasks[4], NULL), 0);
    return t->id == t->ctx->fail_at ? -EIO : 0;
}

static int serial_body(void *arg, moirai_scope_t *scope)
{
    serial_ctx_t *c = arg;
    serial_scope = scope;
    for (int i = 1; i <= 3; i++) {
        serial_tasks[i] = (serial_task_t){c, i};
        cr_assert_eq(moirai_scope_spawn(scope, serial_task_fn, &serial_tasks[i], NULL), 0);
    }
    serial_tasks[4] = (serial_task_t){c, 4};
    /* Nothing has run yet: the body comes first. */
    serial_note(c, 0);
    return 0;
}

Test(scope, a_null_scheduler_off_the_pool_runs_serially_on_the_caller, .timeout = 30)
{
    serial_ctx_t c = {.caller = pthread_self()};
    cr_assert_eq(moirai_scope_run(NULL, serial_body, &c), 0);
    cr_assert_not(c.off_caller);
    cr_assert_eq(c.n, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(c.order[i], i, "position %d ran %d", i, c.order[i]);

    /* The first error cancels the scope: the tasks after it never run,
     * and it is the scope's result. */
    serial_ctx_t f = {.caller = pthread_self(), .fail_at = 2};
    cr_assert_eq(moirai_scope_run(NULL, serial_body, &f), -EIO);
    cr_assert_eq(f.n, 3, "ran %d", f.n);
    cr_assert_eq(f.order[2], 2);
}
