/* The pool of threads for blocking calls.
 *
 * One mutex guards everything: the FIFO of queued tasks (an intrusive
 * singly linked list of moirai_malloc'd nodes), the thread counts and the
 * shutdown flag. Blocking calls are slow by nature (a system call, a
 * sleep), so one short critical section per task costs nothing next to
 * them, and a single lock keeps the growth and exit rules easy to check.
 *
 * Growth: a submit counts the queued tasks against the idle threads. When
 * there are more queued tasks than idle threads, no idle thread is left for
 * the new task, so the submit starts a thread if fewer than max_threads
 * exist; otherwise it signals one idle thread. Threads are created while the
 * lock is held. That costs the submitter one pthread_create (tens of
 * microseconds) under the lock, but it makes failure simple: the submit
 * decides whether to queue the task only after it knows whether a thread
 * exists, so a task is never left queued with no thread to run it. The
 * invariant is: tasks are queued only while at least one thread is alive,
 * and a thread leaves only when the queue is empty.
 *
 * Idling: a thread with nothing to do waits on a condition variable (which
 * parks through core's parking layer) until an absolute deadline
 * keepalive_ns after it became idle, and exits if the queue is still empty
 * then. Spurious wake-ups keep the original deadline.
 *
 * Joining: every thread that exits joins the one that exited before it
 * (the pool remembers only the last one to exit), and destroy joins the
 * last one once the live count is zero. Joining the last thread therefore
 * waits, link by link, for every thread the pool ever started, so nothing
 * outlives the pool even though a thread still touches the pool's lock
 * while it unlocks it on its way out. Exiting threads need no record of
 * their own, so idling out allocates nothing.
 *
 * Memory ordering: the mutex orders everything (a task node written by the
 * submitter is read by the thread that dequeues it under the same lock). */
#include "blocking.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/sync/condvar.h>
#include <moirai/sync/mutex.h>

typedef struct blocking_task {
    struct blocking_task *next;
    moirai_task_fn fn;
    void *arg;
    moirai_handle_t *handle;
} blocking_task_t;

struct moirai__blocking {
    moirai_mutex_t lock;
    moirai_condvar_t work; /* idle threads wait here for tasks or shutdown */
    moirai_condvar_t gone; /* destroy waits here for the last thread to leave */
    blocking_task_t *head; /* FIFO: take from head, append at tail */
    blocking_task_t *tail;
    long queued;      /* tasks in the FIFO */
    int threads;      /* threads alive (created and not yet past their exit) */
    int idle;         /* threads waiting on `work` */
    bool shutdown;    /* destroy began: refuse new tasks */
    bool have_exited; /* `exited` holds a thread nobody has joined yet */
    pthread_t exited; /* the last thread to exit */
    int max_threads;
    uint64_t keepalive_ns;
    size_t stack_size;
};

int moirai__blocking_create(moirai__blocking_t **out, int max_threads, uint64_t keepalive_ns,
                            size_t stack_size)
{
    if (out == NULL || max_threads < 1)
        return -EINVAL;
    moirai__blocking_t *pool = moirai_calloc(1, sizeof(*pool));
    if (pool == NULL)
        return -ENOMEM;
    moirai_mutex_init(&pool->lock);
    moirai_condvar_init(&pool->work);
    moirai_condvar_init(&pool->gone);
    pool->max_threads = max_threads;
    pool->keepalive_ns = keepalive_ns;
    pool->stack_size = stack_size;
    *out = pool;
    return 0;
}

static void run_task(blocking_task_t *task)
{
    if (task->handle != NULL) {
        /* The handle records the result or error; a cancelled handle makes
         * moirai_handle_run skip the function. The status it returns is
         * already in the handle, so there is nothing else to do with it. */
        (void)moirai_handle_run(task->handle, task->fn, task->arg);
        moirai_handle_release(task->handle);
    } else {
        void *result = NULL;
        (void)task->fn(task->arg, NULL, &result);
    }
    moirai_free(task);
}

/* Called with the lock held; leaves it held. Takes the oldest task. */
static blocking_task_t *take_task(moirai__blocking_t *pool)
{
    blocking_task_t *task = pool->head;
    pool->head = task->next;
    if (pool->head == NULL)
        pool->tail = NULL;
    pool->queued--;
    return task;
}

static void *blocking_thread(void *arg)
{
    moirai__blocking_t *pool = arg;
    moirai_mutex_lock(&pool->lock);
    for (;;) {
        if (pool->head != NULL) {
            blocking_task_t *task = take_task(pool);
            moirai_mutex_unlock(&pool->lock);
            run_task(task);
            moirai_mutex_lock(&pool->lock);
            continue;
        }
        if (pool->shutdown)
            break;
        /* Idle: wait for work until the keepalive deadline. The deadline is
         * fixed once, so wake-ups that find nothing (another thread took
         * the task, or a spurious return) do not extend it. */
        uint64_t deadline = moirai_deadline_after(pool->keepalive_ns);
        bool expired = false;
        pool->idle++;
        while (pool->head == NULL && !pool->shutdown && !expired)
            expired = moirai_condvar_wait_timed(&pool->work, &pool->lock, deadline) == -ETIMEDOUT;
        pool->idle--;
        if (pool->head == NULL && !pool->shutdown)
            break; /* Idle for the whole keepalive: leave. */
    }

    /* Leaving with the queue empty (the invariant at the top of the file).
     * Take the place of the last exited thread and join the one we
     * replace, so that joining the last one waits for all of them. */
    bool join_previous = pool->have_exited;
    pthread_t previous = pool->exited;
    pool->exited = pthread_self();
    pool->have_exited = true;
    pool->threads--;
    if (pool->threads == 0 && pool->shutdown)
        moirai_condvar_signal(&pool->gone);
    moirai_mutex_unlock(&pool->lock);
    if (join_previous)
        (void)pthread_join(previous, NULL);
    return NULL;
}

/* Called with the lock held. Starts one thread; returns 0 or a positive
 * error number from pthread (any failure to create a thread is treated
 * alike by the caller). */
static int start_thread(moirai__blocking_t *pool)
{
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0)
        return rc;
    if (pool->stack_size != 0)
        rc = pthread_attr_setstacksize(&attr, pool->stack_size);
    pthread_t thread;
    if (rc == 0)
        rc = pthread_create(&thread, &attr, blocking_thread, pool);
    (void)pthread_attr_destroy(&attr);
    if (rc == 0) {
        /* The thread is counted before it runs: it cannot take the lock
         * until the caller releases it. It is joined by the next thread to
         * exit or by destroy, never detached. */
        pool->threads++;
    }
    return rc;
}

int moirai__blocking_submit(moirai__blocking_t *pool, moirai_task_fn fn, void *arg,
                            moirai_handle_t *handle)
{
    if (pool == NULL || fn == NULL)
        return -EINVAL;
    /* Allocate before locking: the critical section stays short, and an
     * allocation failure changes nothing. */
    blocking_task_t *task = moirai_malloc(sizeof(*task));
    if (task == NULL)
        return -ENOMEM;
    task->next = NULL;
    task->fn = fn;
    task->arg = arg;
    task->handle = handle;

    moirai_mutex_lock(&pool->lock);
    if (pool->shutdown) {
        moirai_mutex_unlock(&pool->lock);
        moirai_free(task);
        return -ESHUTDOWN;
    }
    /* Every idle thread will take one of the queued tasks; if they are all
     * spoken for, this task needs a new thread (while the cap allows). */
    if (pool->queued >= pool->idle && pool->threads < pool->max_threads) {
        if (start_thread(pool) != 0 && pool->threads == 0) {
            /* No thread could run the task: refuse it rather than queue it
             * forever. With some thread alive, the task just waits for
             * it, as it would once the cap is reached. */
            moirai_mutex_unlock(&pool->lock);
            moirai_free(task);
            return -EAGAIN;
        }
    }
    if (pool->tail != NULL)
        pool->tail->next = task;
    else
        pool->head = task;
    pool->tail = task;
    pool->queued++;
    if (pool->idle > 0)
        moirai_condvar_signal(&pool->work);
    moirai_mutex_unlock(&pool->lock);
    return 0;
}

int moirai__blocking_threads(moirai__blocking_t *pool)
{
    moirai_mutex_lock(&pool->lock);
    int threads = pool->threads;
    moirai_mutex_unlock(&pool->lock);
    return threads;
}

void moirai__blocking_load(moirai__blocking_t *pool, long *queued, int *threads)
{
    moirai_mutex_lock(&pool->lock);
    *queued = pool->queued;
    *threads = pool->threads;
    moirai_mutex_unlock(&pool->lock);
}

void moirai__blocking_destroy(moirai__blocking_t *pool)
{
    if (pool == NULL)
        return;
    moirai_mutex_lock(&pool->lock);
    pool->shutdown = true;
    /* Idle threads wake, run whatever is queued and leave; busy ones leave
     * after draining the queue. */
    moirai_condvar_broadcast(&pool->work);
    while (pool->threads > 0)
        moirai_condvar_wait(&pool->gone, &pool->lock);
    bool join_last = pool->have_exited;
    pthread_t last = pool->exited;
    /* By the invariant the queue is empty now; should that ever be wrong,
     * running the leftovers here keeps the promise that accepted tasks
     * run. */
    while (pool->head != NULL) {
        blocking_task_t *task = take_task(pool);
        moirai_mutex_unlock(&pool->lock);
        run_task(task);
        moirai_mutex_lock(&pool->lock);
    }
    moirai_mutex_unlock(&pool->lock);
    if (join_last)
        (void)pthread_join(last, NULL);
    moirai_condvar_destroy(&pool->gone);
    moirai_condvar_destroy(&pool->work);
    moirai_mutex_destroy(&pool->lock);
    moirai_free(pool);
}
