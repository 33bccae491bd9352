/* Scopes: structured concurrency on top of owned scheduler tasks and a latch.
 *
 * The scope lives on moirai_scope_run()'s stack. It counts what is still
 * running in `pending`: the body counts as one, and every accepted spawn
 * adds one before it is queued. Whoever takes the count to zero sets the
 * latch that moirai_scope_run() waits on; after its decrement nobody may
 * touch the scope except that last decrementer, and it touches only the
 * latch (whose set is safe against the waiter returning at once, see
 * latch.h). Everything that can still use the scope (the body, a running
 * task, a spawn made by one of them) holds one of the counts, so the scope
 * cannot vanish under it.
 *
 * Cancellation rides on a core handle that is never given to any task: it
 * stays pending, and moirai_handle_cancel() on a pending handle finishes it
 * with -ECANCELED and sets its token's cancel bit in one atomic step. Its
 * token is the one every task of the scope receives, so running tasks see
 * it fire, and a task that has not started checks it first and is skipped.
 *
 * Each spawn allocates a small wrapper that carries the scope pointer and
 * the user's function to the worker; the wrapper frees it before calling
 * the function. Wrappers are owned tasks (moirai__sched_spawn_owned()), so
 * a scheduler shutting down with MOIRAI_SHUTDOWN_CANCEL still runs them:
 * they cancel the scope and skip the user's function, and the count still
 * reaches zero.
 *
 * Serial scopes: with a NULL scheduler on a thread that is not a worker,
 * the scope runs on the caller alone, as moirai_join() and the parallel
 * loops do there. Spawns then push their wrapper onto `serial`, and
 * moirai_scope_run() runs those, in spawn order, after the body returns,
 * until none is left (a task may spawn more). */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

#include <moirai/core/alloc.h>
#include <moirai/core/handle.h>
#include <moirai/core/task.h>
#include <moirai/sched/scope.h>

#include "latch.h"
#include "sched_internal.h"

struct moirai_scope {
    moirai_sched_t *sched;
    /* Pending handle used only for its cancellation token. */
    moirai_handle_t *cancel;
    /* The body (until it returns) plus every task accepted and not yet
     * finished. */
    _Atomic size_t pending;
    /* The first non-zero result, or 0. */
    _Atomic int result;
    /* Set by whoever takes `pending` to zero. */
    moirai__latch_t done;
    /* Serial scopes only (sched NULL): the spawned tasks not yet run,
     * newest first. */
    _Atomic(struct scope_task *) serial;
};

/* What travels with each spawned task. */
typedef struct scope_task {
    moirai_scope_t *scope;
    moirai_task_fn fn;
    void *arg;
    struct scope_task *next; /* serial scopes: the next older task */
} scope_task_t;

/* Drops one count; the last one wakes moirai_scope_run(). */
static void scope_leave(moirai_scope_t *scope)
{
    /* Release: everything this task (or the body) wrote happens before the
     * decrement. Acquire: the last decrementer has seen every other task's
     * writes before it sets the latch, whose release passes them all on to
     * the waiter. Both on the RMW itself, since TSan ignores fences. */
    if (atomic_fetch_sub_explicit(&scope->pending, 1, memory_order_acq_rel) == 1)
        moirai__latch_set(&scope->done);
}

/* Records `rc` as the scope's result if it is the first non-zero one, and
 * cancels the scope. */
static void scope_record(moirai_scope_t *scope, int rc)
{
    if (rc == 0)
        return;
    int expected = 0;
    /* Relaxed: only one value can win and it is read after the latch,
     * which orders it (the pending decrement of this task follows). */
    atomic_compare_exchange_strong_explicit(&scope->result, &expected, rc, memory_order_relaxed,
                                            memory_order_relaxed);
    moirai_scope_cancel(scope);
}

static int scope_task_run(void *arg, const moirai_cancel_token_t *unused, void **result)
{
    (void)unused;
    (void)result;
    scope_task_t *task = arg;
    moirai_scope_t *scope = task->scope;
    moirai_task_fn fn = task->fn;
    void *fn_arg = task->arg;
    moirai_free(task);

    /* A scheduler shutting down with MOIRAI_SHUTDOWN_CANCEL still runs this
     * wrapper (it is spawned as an owned task, because the scope's owner
     * waits for it) but not the user's task: the scope is cancelled. */
    if (scope->sched != NULL && moirai__sched_cancelling(scope->sched))
        moirai_scope_cancel(scope);
    const moirai_cancel_token_t *token = moirai_handle_token(scope->cancel);
    /* A task that has not started when the scope is cancelled never runs. */
    if (!moirai_cancel_token_is_cancelled(token)) {
        void *discarded = NULL;
        scope_record(scope, fn(fn_arg, token, &discarded));
    }
    scope_leave(scope);
    return 0;
}

/* Runs a serial scope's spawned tasks, oldest first, until none is left. */
static void run_serial(moirai_scope_t *scope)
{
    scope_task_t *batch;
    /* Acquire: pairs with the push's release (the same thread pushes
     * unless the body handed the scope to another, which it may). */
    while ((batch = atomic_exchange_explicit(&scope->serial, NULL, memory_order_acquire)) != NULL) {
        scope_task_t *oldest = NULL;
        while (batch != NULL) {
            scope_task_t *next = batch->next;
            batch->next = oldest;
            oldest = batch;
            batch = next;
        }
        while (oldest != NULL) {
            scope_task_t *next = oldest->next;
            (void)scope_task_run(oldest, NULL, NULL);
            oldest = next;
        }
    }
}

int moirai_scope_run(moirai_sched_t *sched, moirai_scope_fn body, void *arg)
{
    if (body == NULL)
        return -EINVAL;
    if (sched == NULL)
        sched = moirai_sched_current(); /* still NULL: a serial scope */
    moirai_scope_t scope;
    scope.sched = sched;
    atomic_init(&scope.serial, NULL);
    int rc = moirai_handle_create(&scope.cancel);
    if (rc != 0)
        return rc;
    atomic_init(&scope.pending, 1);
    atomic_init(&scope.result, 0);
    moirai__latch_init(&scope.done);

    scope_record(&scope, body(arg, &scope));
    if (sched == NULL)
        run_serial(&scope);
    /* Release/acquire as in scope_leave(). If the body's count was the
     * last, every task has finished and nobody else touches the scope, so
     * there is nothing to wait for. */
    if (atomic_fetch_sub_explicit(&scope.pending, 1, memory_order_acq_rel) != 1)
        moirai__latch_wait(&scope.done);

    /* Relaxed: ordered after every writer by the counter and the latch. */
    rc = atomic_load_explicit(&scope.result, memory_order_relaxed);
    if (rc == 0 && moirai_scope_is_cancelled(&scope))
        rc = -ECANCELED;
    moirai_handle_release(scope.cancel);
    return rc;
}

int moirai_scope_spawn(moirai_scope_t *scope, moirai_task_fn fn, void *arg,
                       const moirai_task_attr_t *attr)
{
    if (scope == NULL || fn == NULL)
        return -EINVAL;
    if (attr != NULL && moirai_task_attr_validate(attr) != 0)
        return -EINVAL;
    if (moirai_scope_is_cancelled(scope))
        return -ECANCELED;
    scope_task_t *task = moirai_malloc(sizeof(*task));
    if (task == NULL)
        return -ENOMEM;
    task->scope = scope;
    task->fn = fn;
    task->arg = arg;
    /* Relaxed: the caller (the body or a task of the scope) holds a count,
     * so this cannot race with the count reaching zero; the task's own
     * decrement is ordered after it by the spawn. */
    atomic_fetch_add_explicit(&scope->pending, 1, memory_order_relaxed);
    if (scope->sched == NULL) {
        /* Release: what the spawner wrote reaches run_serial(). */
        task->next = atomic_load_explicit(&scope->serial, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(&scope->serial, &task->next, task,
                                                      memory_order_release, memory_order_relaxed)) {
        }
        return 0;
    }
    int rc = moirai__sched_spawn_owned(scope->sched, scope_task_run, task, attr);
    if (rc != 0) {
        moirai_free(task);
        /* Not the last count: the caller still holds its own. */
        atomic_fetch_sub_explicit(&scope->pending, 1, memory_order_relaxed);
        return rc;
    }
    return 0;
}

void moirai_scope_cancel(moirai_scope_t *scope)
{
    if (scope == NULL)
        return;
    /* The handle is pending forever, so the first cancel finishes it with
     * -ECANCELED and sets the token's bit (release); later ones return
     * -EALREADY and change nothing. */
    (void)moirai_handle_cancel(scope->cancel);
}

bool moirai_scope_is_cancelled(const moirai_scope_t *scope)
{
    if (scope == NULL)
        return false;
    /* Acquire, inside the token check. */
    return moirai_cancel_token_is_cancelled(moirai_handle_token(scope->cancel));
}

const moirai_cancel_token_t *moirai_scope_token(const moirai_scope_t *scope)
{
    if (scope == NULL)
        return NULL;
    return moirai_handle_token(scope->cancel);
}
