/* The thread-per-task executor.
 *
 * Each accepted task gets a joinable thread of its own. A thread that has
 * run its task puts its record on the executor's `finished` list; the next
 * spawn (or destroy) joins those threads and frees their records, so a
 * long-lived executor holds at most the threads still running plus the ones
 * that finished since the last spawn.
 *
 * `live` counts accepted tasks whose thread has not finished yet. It only
 * changes under the lock, but destroy waits for it to reach zero by parking
 * on it, so that a destroy called from a fiber parks the fiber rather than
 * its worker thread. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/error.h>
#include <moirai/core/executor.h>
#include <moirai/core/log.h>
#include <moirai/core/park.h>
#include <moirai/core/topology.h>

/* Linux limits thread names to 16 bytes including the terminator. */
#define THREAD_NAME_MAX 15

typedef struct thread_executor thread_executor_t;

typedef struct thread_task {
    struct thread_task *next; /* link in the executor's finished list */
    thread_executor_t *executor;
    pthread_t thread; /* written by the thread itself before it is listed */
    moirai_task_fn fn;
    void *arg;
    moirai_handle_t *handle;
    char name[THREAD_NAME_MAX + 1];
} thread_task_t;

struct thread_executor {
    moirai_executor_t base; /* first, so a moirai_executor_t * converts */
    pthread_mutex_t lock;
    bool shutting_down;      /* under lock */
    thread_task_t *finished; /* under lock: threads done with their task, to join */
    _Atomic uint32_t live;   /* changed under lock; destroy parks on it */
};

static int thread_spawn(moirai_executor_t *executor, moirai_task_fn fn, void *arg,
                        const moirai_task_attr_t *attr, moirai_handle_t *handle);

static const moirai_executor_ops_t thread_ops = {
    .spawn = thread_spawn,
};

/* Joins the threads on `list` and frees their records. Their threads have
 * finished their task and at most are returning from their start routine,
 * so each join is short. */
static void join_list(thread_task_t *list)
{
    while (list != NULL) {
        thread_task_t *next = list->next;
        pthread_join(list->thread, NULL);
        moirai_free(list);
        list = next;
    }
}

/* Ends one accepted task: drops `live` and, for a task whose thread ran,
 * lists it for joining. The caller must not touch the executor afterwards
 * unless it knows destroy cannot finish meanwhile (a listed thread is
 * joined before the executor is freed). */
static void live_done(thread_executor_t *ex, thread_task_t *task)
{
    pthread_mutex_lock(&ex->lock);
    if (task != NULL) {
        task->next = ex->finished;
        ex->finished = task;
    }
    /* Relaxed: every change happens under the lock, and destroy takes the
     * lock after seeing zero before it reads anything the tasks wrote. */
    uint32_t left = atomic_fetch_sub_explicit(&ex->live, 1, memory_order_relaxed) - 1;
    /* Waking under the lock keeps the executor alive for the wake-up:
     * destroy must take the lock again before it frees anything. Only a
     * destroy can be waiting, and it sets shutting_down under this lock
     * before it first reads `live`, so no wake-up is lost. */
    if (left == 0 && ex->shutting_down)
        moirai_unpark_all(&ex->live);
    pthread_mutex_unlock(&ex->lock);
}

static void *thread_main(void *p)
{
    thread_task_t *task = p;
    if (task->name[0] != '\0') {
        /* Naming itself avoids a race with a thread that may already be
         * gone when the spawner would name it; failing only loses a
         * debugging aid. */
        (void)pthread_setname_np(pthread_self(), task->name);
    }
    int rc = moirai_handle_run(task->handle, task->fn, task->arg);
    /* A task with a handle reports its error there; a detached one has
     * nowhere else to say it failed. */
    if (task->handle == NULL && rc < 0)
        MOIRAI_LOG(MOIRAI_LOG_DEBUG, "thread executor: detached task %s failed: %s",
                   task->name[0] != '\0' ? task->name : "(unnamed)", moirai_strerror(rc));
    moirai_handle_release(task->handle);
    task->thread = pthread_self();
    live_done(task->executor, task);
    return NULL;
}

/* Builds the CPU mask for a CPU or node locality hint into a set allocated
 * with moirai_calloc(). Leaves `*set` NULL when no pinning applies.
 * Returns 0 or -ENOMEM. */
static int locality_cpuset(const moirai_task_attr_t *attr, cpu_set_t **set, size_t *size)
{
    *set = NULL;
    *size = 0;
    int max_cpu = -1;
    if (attr->locality == MOIRAI_LOCALITY_CPU) {
        max_cpu = attr->locality_index;
    } else if (attr->locality == MOIRAI_LOCALITY_NODE) {
        int count = moirai_topology_cpu_count();
        for (int i = 0; i < count; i++) {
            moirai_cpu_info_t info;
            if (moirai_topology_cpu_at(i, &info) == 0 && info.node == attr->locality_index &&
                info.cpu > max_cpu)
                max_cpu = info.cpu;
        }
    }
    if (max_cpu < 0)
        return 0;

    size_t bytes = CPU_ALLOC_SIZE(max_cpu + 1);
    /* CPU_ALLOC() would use malloc(); the mask is just bytes, so it goes
     * through Moirai's allocator like every other allocation. */
    cpu_set_t *mask = moirai_calloc(1, bytes);
    if (mask == NULL)
        return -ENOMEM;
    if (attr->locality == MOIRAI_LOCALITY_CPU) {
        CPU_SET_S(attr->locality_index, bytes, mask);
    } else {
        int count = moirai_topology_cpu_count();
        for (int i = 0; i < count; i++) {
            moirai_cpu_info_t info;
            if (moirai_topology_cpu_at(i, &info) == 0 && info.node == attr->locality_index &&
                info.cpu <= max_cpu)
                CPU_SET_S(info.cpu, bytes, mask);
        }
    }
    *set = mask;
    *size = bytes;
    return 0;
}

/* Starts a thread running `task` with attributes `pattr` (NULL for the
 * defaults). Returns 0 or a positive errno from pthread_create(). */
static int create_thread(thread_task_t *task, const pthread_attr_t *pattr)
{
    pthread_t thread;
    /* The spawner never needs the id: the thread records its own before it
     * becomes joinable through the finished list. */
    return pthread_create(&thread, pattr, thread_main, task);
}

/* Starts the thread for `task`, pinned to `set` when given. A mask the
 * kernel rejects (a CPU of an injected topology this machine lacks, or one
 * outside the process's cpuset) makes the hint unusable, not the task: the
 * thread then starts unpinned, as for any other hint an executor cannot
 * honour. Returns 0 or a positive errno. */
static int start_thread(thread_task_t *task, const cpu_set_t *set, size_t set_size)
{
    if (set == NULL)
        return create_thread(task, NULL);

    pthread_attr_t pattr;
    int rc = pthread_attr_init(&pattr);
    if (rc != 0)
        return rc;
    rc = pthread_attr_setaffinity_np(&pattr, set_size, set);
    if (rc == 0)
        rc = create_thread(task, &pattr);
    pthread_attr_destroy(&pattr);
    if (rc == EINVAL) {
        MOIRAI_LOG(MOIRAI_LOG_DEBUG,
                   "thread executor: the kernel rejected the CPU mask of a locality hint; "
                   "starting the thread unpinned");
        rc = create_thread(task, NULL);
    }
    return rc;
}

static int thread_spawn(moirai_executor_t *executor, moirai_task_fn fn, void *arg,
                        const moirai_task_attr_t *attr, moirai_handle_t *handle)
{
    thread_executor_t *ex = (thread_executor_t *)executor;

    thread_task_t *task = moirai_malloc(sizeof(*task));
    if (task == NULL)
        return -ENOMEM;
    cpu_set_t *set;
    size_t set_size;
    if (locality_cpuset(attr, &set, &set_size) != 0) {
        moirai_free(task);
        return -ENOMEM;
    }
    task->next = NULL;
    task->executor = ex;
    task->fn = fn;
    task->arg = arg;
    task->handle = handle;
    size_t name_len = attr->name != NULL ? strnlen(attr->name, THREAD_NAME_MAX) : 0;
    memcpy(task->name, attr->name != NULL ? attr->name : "", name_len);
    task->name[name_len] = '\0';

    pthread_mutex_lock(&ex->lock);
    if (ex->shutting_down) {
        pthread_mutex_unlock(&ex->lock);
        moirai_free(set);
        moirai_free(task);
        return -ESHUTDOWN;
    }
    /* Counted before the thread exists, so that a destroy starting now
     * waits for this task. */
    atomic_fetch_add_explicit(&ex->live, 1, memory_order_relaxed);
    thread_task_t *reaped = ex->finished;
    ex->finished = NULL;
    pthread_mutex_unlock(&ex->lock);

    join_list(reaped);

    int rc = start_thread(task, set, set_size);
    moirai_free(set);
    if (rc != 0) {
        /* Nothing ran: withdraw the task as if it had never been accepted. */
        live_done(ex, NULL);
        moirai_free(task);
        MOIRAI_LOG(MOIRAI_LOG_DEBUG, "thread executor: pthread_create failed: %s",
                   moirai_strerror(rc));
        return -EAGAIN;
    }
    return 0;
}

int moirai_executor_thread_create(moirai_executor_t **out)
{
    if (out == NULL)
        return -EINVAL;
    thread_executor_t *ex = moirai_malloc(sizeof(*ex));
    if (ex == NULL)
        return -ENOMEM;
    int rc = pthread_mutex_init(&ex->lock, NULL);
    if (rc != 0) {
        /* A default mutex needs no resources on Linux; should that ever
         * change, running out of them is what this would mean. */
        moirai_free(ex);
        return -ENOMEM;
    }
    ex->base.ops = &thread_ops;
    ex->shutting_down = false;
    ex->finished = NULL;
    atomic_init(&ex->live, 0);
    *out = &ex->base;
    return 0;
}

void moirai_executor_thread_destroy(moirai_executor_t *executor)
{
    if (executor == NULL)
        return;
    if (executor->ops != &thread_ops) {
        /* Freeing an executor this file did not make would corrupt memory;
         * refusing is the only safe answer to the mistake. */
        MOIRAI_LOG(MOIRAI_LOG_ERROR,
                   "moirai_executor_thread_destroy: not a thread executor; ignored");
        return;
    }
    thread_executor_t *ex = (thread_executor_t *)executor;

    pthread_mutex_lock(&ex->lock);
    ex->shutting_down = true;
    pthread_mutex_unlock(&ex->lock);

    /* Relaxed: the count only says when to stop waiting; the lock taken
     * below orders everything the tasks did. */
    uint32_t live;
    while ((live = atomic_load_explicit(&ex->live, memory_order_relaxed)) != 0)
        moirai_park(&ex->live, live, MOIRAI_DEADLINE_NEVER);

    pthread_mutex_lock(&ex->lock);
    thread_task_t *list = ex->finished;
    ex->finished = NULL;
    pthread_mutex_unlock(&ex->lock);
    join_list(list);

    pthread_mutex_destroy(&ex->lock);
    moirai_free(ex);
}
