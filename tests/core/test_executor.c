/* The executor interface, the inline executor and the thread executor. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/core.h>

#include "leak_check.h"
#include "test_scale.h"

static moirai_handle_t *new_handle(void)
{
    moirai_handle_t *h = NULL;
    cr_assert_eq(moirai_handle_create(&h), 0);
    return h;
}

static moirai_executor_t *new_thread_executor(void)
{
    moirai_executor_t *ex = NULL;
    cr_assert_eq(moirai_executor_thread_create(&ex), 0);
    cr_assert_not_null(ex);
    return ex;
}

/* Counts its runs in the atomic int it is given; returns that int's
 * address as its result. */
static int count_task(void *arg, const moirai_cancel_token_t *token, void **result)
{
    (void)token;
    atomic_fetch_add_explicit((_Atomic int *)arg, 1, memory_order_relaxed);
    *result = arg;
    return 0;
}

static int failing_task(void *arg, const moirai_cancel_token_t *token, void **result)
{
    (void)token;
    (void)result;
    atomic_fetch_add_explicit((_Atomic int *)arg, 1, memory_order_relaxed);
    return -EPIPE;
}

/* ---- Arguments and handle binding (moirai_executor_spawn itself) ---- */

LEAK_CHECKED_TEST(executor, spawn_rejects_bad_arguments_and_leaves_handle_alone, .timeout = 10)
{
    _Atomic int runs = 0;
    moirai_executor_t *inl = moirai_executor_inline();
    moirai_handle_t *h = new_handle();
    moirai_executor_t no_ops = {NULL};
    moirai_executor_ops_t null_spawn = {NULL};
    moirai_executor_t bad_ops = {&null_spawn};

    cr_assert_eq(moirai_executor_spawn(NULL, count_task, &runs, NULL, h), -EINVAL);
    cr_assert_eq(moirai_executor_spawn(inl, NULL, &runs, NULL, h), -EINVAL);
    cr_assert_eq(moirai_executor_spawn(&no_ops, count_task, &runs, NULL, h), -EINVAL);
    cr_assert_eq(moirai_executor_spawn(&bad_ops, count_task, &runs, NULL, h), -EINVAL);

    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    attr.priority = (moirai_priority_t)MOIRAI_PRIORITY_COUNT;
    cr_assert_eq(moirai_executor_spawn(inl, count_task, &runs, &attr, h), -EINVAL);
    moirai_task_attr_init(&attr);
    attr.locality = MOIRAI_LOCALITY_CPU;
    attr.locality_index = 1 << 20; /* no such CPU in the topology */
    cr_assert_eq(moirai_executor_spawn(inl, count_task, &runs, &attr, h), -EINVAL);
    attr.locality = MOIRAI_LOCALITY_NODE;
    attr.locality_index = moirai_topology_node_count();
    cr_assert_eq(moirai_executor_spawn(inl, count_task, &runs, &attr, h), -EINVAL);
    attr.locality = (moirai_locality_t)9;
    cr_assert_eq(moirai_executor_spawn(inl, count_task, &runs, &attr, h), -EINVAL);

    /* Same checks on the thread executor. */
    moirai_executor_t *ex = new_thread_executor();
    attr.locality = MOIRAI_LOCALITY_CPU;
    attr.locality_index = -1;
    cr_assert_eq(moirai_executor_spawn(ex, count_task, &runs, &attr, h), -EINVAL);
    cr_assert_eq(moirai_executor_spawn(ex, NULL, &runs, NULL, h), -EINVAL);
    moirai_executor_thread_destroy(ex);

    cr_assert_eq(atomic_load(&runs), 0, "a refused task ran");
    /* The handle is untouched: pending, unbound, usable. */
    cr_assert_eq(moirai_handle_try_join(h, NULL), -EAGAIN);
    cr_assert_eq(moirai_executor_spawn(inl, count_task, &runs, NULL, h), 0);
    cr_assert_eq(atomic_load(&runs), 1);
    void *v = NULL;
    cr_assert_eq(moirai_handle_join(h, &v), 0);
    cr_assert_eq(v, (void *)&runs);
    moirai_handle_release(h);
}

LEAK_CHECKED_TEST(executor, handle_serves_one_task, .timeout = 10)
{
    _Atomic int first = 0, second = 0;
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_executor_spawn(moirai_executor_inline(), count_task, &first, NULL, h), 0);
    cr_assert_eq(moirai_executor_spawn(moirai_executor_inline(), count_task, &second, NULL, h),
                 -EINVAL);
    moirai_executor_t *ex = new_thread_executor();
    cr_assert_eq(moirai_executor_spawn(ex, count_task, &second, NULL, h), -EINVAL);
    moirai_executor_thread_destroy(ex);
    cr_assert_eq(atomic_load(&first), 1);
    cr_assert_eq(atomic_load(&second), 0);
    void *v = NULL;
    cr_assert_eq(moirai_handle_join(h, &v), 0);
    cr_assert_eq(v, (void *)&first, "the first result stands");
    /* A refused spawn took no reference: this release frees the handle
     * (LeakSanitizer would report a leaked one). */
    moirai_handle_release(h);
}

LEAK_CHECKED_TEST(executor, handle_finished_by_hand_binds_only_once, .timeout = 10)
{
    /* Even a handle that was cancelled or completed by hand before its
     * first spawn can be spawned once (the task then never runs)... */
    _Atomic int runs = 0;
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_handle_complete(h, NULL), 0);
    cr_assert_eq(moirai_executor_spawn(moirai_executor_inline(), count_task, &runs, NULL, h), 0);
    cr_assert_eq(atomic_load(&runs), 0);
    /* ...but not twice. */
    cr_assert_eq(moirai_executor_spawn(moirai_executor_inline(), count_task, &runs, NULL, h),
                 -EINVAL);
    moirai_handle_release(h);
}

/* ---- Inline executor ---- */

typedef struct where {
    pthread_t thread;
    _Atomic int ran;
    const moirai_cancel_token_t *token;
} where_t;

static int where_task(void *arg, const moirai_cancel_token_t *token, void **result)
{
    where_t *w = arg;
    w->thread = pthread_self();
    w->token = token;
    atomic_store(&w->ran, 1);
    *result = w;
    return 0;
}

Test(executor, inline_runs_on_caller_before_returning, .timeout = 10)
{
    moirai_executor_t *inl = moirai_executor_inline();
    cr_assert_eq(inl, moirai_executor_inline(), "one shared instance");
    where_t w = {0};
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_executor_spawn(inl, where_task, &w, NULL, h), 0);
    cr_assert_eq(atomic_load(&w.ran), 1, "ran before spawn returned");
    cr_assert(pthread_equal(w.thread, pthread_self()));
    cr_assert_eq(w.token, moirai_handle_token(h));
    cr_assert(moirai_handle_is_finished(h));
    void *v = NULL;
    cr_assert_eq(moirai_handle_try_join(h, &v), 0);
    cr_assert_eq(v, &w);
    moirai_handle_release(h);

    /* Without a handle the task sees a NULL token. */
    where_t w2 = {.token = (const void *)&w};
    cr_assert_eq(moirai_executor_spawn(inl, where_task, &w2, NULL, NULL), 0);
    cr_assert_eq(atomic_load(&w2.ran), 1);
    cr_assert_null(w2.token);
}

Test(executor, inline_reports_task_failure_through_handle, .timeout = 10)
{
    _Atomic int runs = 0;
    moirai_handle_t *h = new_handle();
    /* Spawn succeeds: the task was accepted and ran; its failure is the
     * handle's business. */
    cr_assert_eq(moirai_executor_spawn(moirai_executor_inline(), failing_task, &runs, NULL, h), 0);
    cr_assert_eq(atomic_load(&runs), 1);
    cr_assert_eq(moirai_handle_join(h, NULL), -EPIPE);
    moirai_handle_release(h);
}

Test(executor, inline_cancelled_handle_never_runs_task, .timeout = 10)
{
    _Atomic int runs = 0;
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_handle_cancel(h), 0);
    cr_assert_eq(moirai_executor_spawn(moirai_executor_inline(), count_task, &runs, NULL, h), 0);
    cr_assert_eq(atomic_load(&runs), 0);
    cr_assert_eq(moirai_handle_join(h, NULL), -ECANCELED);
    moirai_handle_release(h);
}

/* The task attribute's start deadline: passed → the handle fails with
 * -ETIMEDOUT and the function never runs; ahead, 0 or NEVER → it runs.
 * The inline executor starts the task during the spawn, so a deadline
 * already in the past is the passed case without any timing. */
Test(executor, start_deadline_passed_never_runs_the_task, .timeout = 10)
{
    _Atomic int runs = 0;
    moirai_task_attr_t attr;
    moirai_task_attr_init(&attr);
    uint64_t ahead = moirai_clock_now_ns() + 3600 * MOIRAI_NS_PER_S;
    uint64_t deadlines[] = {moirai_clock_now_ns() - 1, 1, ahead, 0, MOIRAI_DEADLINE_NEVER};
    int expect[] = {-ETIMEDOUT, -ETIMEDOUT, 0, 0, 0};
    for (int i = 0; i < 5; i++) {
        moirai_handle_t *h = new_handle();
        attr.deadline = deadlines[i];
        int before = atomic_load(&runs);
        cr_assert_eq(moirai_executor_spawn(moirai_executor_inline(), count_task, &runs, &attr, h),
                     0);
        cr_assert_eq(moirai_handle_join(h, NULL), expect[i], "deadline case %d", i);
        cr_assert_eq(atomic_load(&runs), before + (expect[i] == 0), "case %d ran or not", i);
        moirai_handle_release(h);
    }
    /* The thread executor checks it on the task's own thread. */
    moirai_executor_t *ex = new_thread_executor();
    moirai_handle_t *h = new_handle();
    attr.deadline = 1;
    cr_assert_eq(moirai_executor_spawn(ex, count_task, &runs, &attr, h), 0);
    cr_assert_eq(moirai_handle_join(h, NULL), -ETIMEDOUT);
    moirai_handle_release(h);
    moirai_executor_thread_destroy(ex);
    cr_assert_eq(atomic_load(&runs), 3);
}

/* Detached failures are logged at debug level. */
typedef struct log_capture {
    int debug_messages;
    char last[256];
} log_capture_t;

static void capture_sink(void *ctx, moirai_log_level_t level, const char *message)
{
    log_capture_t *c = ctx;
    if (level == MOIRAI_LOG_DEBUG && strstr(message, "detached") != NULL) {
        c->debug_messages++;
        snprintf(c->last, sizeof(c->last), "%s", message);
    }
}

LEAK_CHECKED_TEST(executor, detached_failures_are_logged_at_debug, .timeout = 10)
{
    log_capture_t capture = {0};
    moirai_log_sink_set(capture_sink, &capture);
    cr_assert_eq(moirai_log_level_set(MOIRAI_LOG_DEBUG), 0);
    _Atomic int runs = 0;
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    attr.name = "doomed";
    cr_assert_eq(moirai_executor_spawn(moirai_executor_inline(), failing_task, &runs, &attr, NULL),
                 0);
    moirai_executor_t *ex = new_thread_executor();
    cr_assert_eq(moirai_executor_spawn(ex, failing_task, &runs, &attr, NULL), 0);
    /* Destroy joins the task's thread, so its log call is complete. */
    moirai_executor_thread_destroy(ex);
    moirai_log_sink_set(NULL, NULL);
    cr_assert_eq(atomic_load(&runs), 2);
    cr_assert_eq(capture.debug_messages, 2);
    cr_assert_not_null(strstr(capture.last, "doomed"), "message: %s", capture.last);
}

/* ---- Thread executor ---- */

Test(executor, thread_create_rejects_null_and_destroy_ignores_strangers, .timeout = 10)
{
    cr_assert_eq(moirai_executor_thread_create(NULL), -EINVAL);
    moirai_executor_thread_destroy(NULL);
    /* Not a thread executor: refused (and logged), the inline one keeps
     * working. */
    moirai_log_level_set(MOIRAI_LOG_OFF);
    moirai_executor_thread_destroy(moirai_executor_inline());
    _Atomic int runs = 0;
    cr_assert_eq(moirai_executor_spawn(moirai_executor_inline(), count_task, &runs, NULL, NULL), 0);
    cr_assert_eq(atomic_load(&runs), 1);
}

LEAK_CHECKED_TEST(executor, thread_runs_every_task_exactly_once, .timeout = 60)
{
    long n = scaled(400);
    _Atomic int *runs = calloc((size_t)n, sizeof(*runs));
    moirai_handle_t **handles = calloc((size_t)n, sizeof(*handles));
    cr_assert(runs && handles);
    moirai_executor_t *ex = new_thread_executor();
    for (long i = 0; i < n; i++) {
        /* Every third task is detached: nothing to join, but it must run. */
        handles[i] = (i % 3 == 2) ? NULL : new_handle();
        cr_assert_eq(moirai_executor_spawn(ex, count_task, &runs[i], NULL, handles[i]), 0);
    }
    for (long i = 0; i < n; i++) {
        if (handles[i] == NULL)
            continue;
        void *v = NULL;
        cr_assert_eq(moirai_handle_join(handles[i], &v), 0);
        cr_assert_eq(v, (void *)&runs[i]);
        moirai_handle_release(handles[i]);
    }
    moirai_executor_thread_destroy(ex);
    /* Destroy waited for the detached ones. */
    for (long i = 0; i < n; i++)
        cr_assert_eq(atomic_load(&runs[i]), 1, "task %ld ran %d times", i, atomic_load(&runs[i]));
    free(runs);
    free(handles);
}

typedef struct spawner {
    moirai_executor_t *ex;
    _Atomic int *runs;
    long count;
    int failures;
} spawner_t;

static void *spawner_main(void *p)
{
    spawner_t *s = p;
    for (long i = 0; i < s->count; i++) {
        moirai_handle_t *h = NULL;
        if (moirai_handle_create(&h) != 0 ||
            moirai_executor_spawn(s->ex, count_task, &s->runs[i], NULL, h) != 0) {
            s->failures++;
            moirai_handle_release(h);
            continue;
        }
        /* Release at once: the executor holds its own reference. */
        moirai_handle_release(h);
    }
    return NULL;
}

LEAK_CHECKED_TEST(executor, thread_spawn_is_thread_safe, .timeout = 60)
{
    enum { SPAWNERS = 4 };
    long per = scaled(100);
    _Atomic int *runs = calloc((size_t)(SPAWNERS * per), sizeof(*runs));
    cr_assert_not_null(runs);
    moirai_executor_t *ex = new_thread_executor();
    spawner_t s[SPAWNERS];
    pthread_t t[SPAWNERS];
    for (int i = 0; i < SPAWNERS; i++) {
        s[i] = (spawner_t){ex, runs + i * per, per, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, spawner_main, &s[i]), 0);
    }
    for (int i = 0; i < SPAWNERS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(s[i].failures, 0);
    }
    moirai_executor_thread_destroy(ex);
    for (long i = 0; i < SPAWNERS * per; i++)
        cr_assert_eq(atomic_load(&runs[i]), 1, "task %ld", i);
    free(runs);
}

Test(executor, thread_cancelled_handle_never_runs_task, .timeout = 10)
{
    _Atomic int runs = 0;
    moirai_executor_t *ex = new_thread_executor();
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_handle_cancel(h), 0);
    cr_assert_eq(moirai_executor_spawn(ex, count_task, &runs, NULL, h), 0);
    cr_assert_eq(moirai_handle_join(h, NULL), -ECANCELED);
    moirai_executor_thread_destroy(ex);
    cr_assert_eq(atomic_load(&runs), 0);
    moirai_handle_release(h);
}

/* A task may spawn more work onto its own executor; destroy waits for it. */
typedef struct nested {
    moirai_executor_t *ex;
    _Atomic int inner_runs;
    int spawn_rc;
} nested_t;

static int outer_task(void *arg, const moirai_cancel_token_t *token, void **result)
{
    (void)token;
    (void)result;
    nested_t *n = arg;
    n->spawn_rc = moirai_executor_spawn(n->ex, count_task, &n->inner_runs, NULL, NULL);
    return 0;
}

Test(executor, thread_task_may_spawn_onto_its_executor, .timeout = 10)
{
    nested_t n = {.ex = new_thread_executor()};
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_executor_spawn(n.ex, outer_task, &n, NULL, h), 0);
    cr_assert_eq(moirai_handle_join(h, NULL), 0);
    cr_assert_eq(n.spawn_rc, 0);
    moirai_executor_thread_destroy(n.ex);
    cr_assert_eq(atomic_load(&n.inner_runs), 1);
    moirai_handle_release(h);
}

/* ---- Shutdown ---- */

typedef struct gate {
    _Atomic uint32_t open;
    _Atomic int entered;
} gate_t;

static int gated_task(void *arg, const moirai_cancel_token_t *token, void **result)
{
    (void)token;
    (void)result;
    gate_t *g = arg;
    atomic_store(&g->entered, 1);
    while (atomic_load_explicit(&g->open, memory_order_acquire) == 0)
        moirai_park(&g->open, 0, MOIRAI_DEADLINE_NEVER);
    return 0;
}

static void *destroy_main(void *p)
{
    moirai_executor_thread_destroy(p);
    return NULL;
}

LEAK_CHECKED_TEST(executor, spawn_during_destroy_is_eshutdown, .timeout = 60)
{
    moirai_executor_t *ex = new_thread_executor();
    gate_t gate = {0};
    moirai_handle_t *blocker = new_handle();
    cr_assert_eq(moirai_executor_spawn(ex, gated_task, &gate, NULL, blocker), 0);
    while (!atomic_load(&gate.entered))
        sched_yield();

    pthread_t destroyer;
    cr_assert_eq(pthread_create(&destroyer, NULL, destroy_main, ex), 0);

    /* Spawns are accepted until destroy has begun, then refused. Every
     * accepted one must run; the refused one must not. */
    _Atomic int accepted_runs = 0;
    long accepted = 0;
    _Atomic int refused_runs = 0;
    moirai_handle_t *refused = new_handle();
    int rc;
    for (;;) {
        rc = moirai_executor_spawn(ex, count_task, &accepted_runs, NULL, NULL);
        if (rc != 0)
            break;
        accepted++;
        sched_yield();
    }
    cr_assert_eq(rc, -ESHUTDOWN);
    cr_assert_eq(moirai_executor_spawn(ex, count_task, &refused_runs, NULL, refused), -ESHUTDOWN);
    cr_assert_not(moirai_handle_is_finished(blocker), "destroy must still be waiting");

    atomic_store_explicit(&gate.open, 1, memory_order_release);
    moirai_unpark_all(&gate.open);
    pthread_join(destroyer, NULL);

    cr_assert_eq(atomic_load(&accepted_runs), accepted);
    cr_assert_eq(atomic_load(&refused_runs), 0);
    cr_assert_eq(moirai_handle_join(blocker, NULL), 0);
    /* The refused handle was left as it was: pending and unbound. */
    cr_assert_eq(moirai_handle_try_join(refused, NULL), -EAGAIN);
    cr_assert_eq(
        moirai_executor_spawn(moirai_executor_inline(), count_task, &refused_runs, NULL, refused),
        0);
    cr_assert_eq(atomic_load(&refused_runs), 1);
    moirai_handle_release(blocker);
    moirai_handle_release(refused);
}

/* ---- Locality and names ---- */

typedef struct placement {
    int cpu;        /* sched_getcpu() inside the task */
    cpu_set_t mask; /* the task thread's affinity */
    char name[16];  /* the task thread's name */
} placement_t;

static int placement_task(void *arg, const moirai_cancel_token_t *token, void **result)
{
    (void)token;
    (void)result;
    placement_t *p = arg;
    p->cpu = sched_getcpu();
    CPU_ZERO(&p->mask);
    pthread_getaffinity_np(pthread_self(), sizeof(p->mask), &p->mask);
    pthread_getname_np(pthread_self(), p->name, sizeof(p->name));
    return 0;
}

static placement_t run_placed(moirai_executor_t *ex, const moirai_task_attr_t *attr)
{
    placement_t p = {.cpu = -1};
    moirai_handle_t *h = new_handle();
    cr_assert_eq(moirai_executor_spawn(ex, placement_task, &p, attr, h), 0);
    cr_assert_eq(moirai_handle_join(h, NULL), 0);
    moirai_handle_release(h);
    return p;
}

Test(executor, cpu_locality_pins_the_thread, .timeout = 30)
{
    cpu_set_t allowed;
    cr_assert_eq(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    moirai_executor_t *ex = new_thread_executor();
    int tested = 0;
    for (int i = 0; i < moirai_topology_cpu_count(); i++) {
        moirai_cpu_info_t info;
        cr_assert_eq(moirai_topology_cpu_at(i, &info), 0);
        if (info.cpu >= CPU_SETSIZE || !CPU_ISSET(info.cpu, &allowed))
            continue; /* outside our cpuset: the hint cannot be honoured */
        moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
        attr.locality = MOIRAI_LOCALITY_CPU;
        attr.locality_index = info.cpu;
        placement_t p = run_placed(ex, &attr);
        cr_assert_eq(p.cpu, info.cpu, "asked for CPU %d, ran on %d", info.cpu, p.cpu);
        cr_assert_eq(CPU_COUNT(&p.mask), 1);
        cr_assert(CPU_ISSET(info.cpu, &p.mask));
        tested++;
    }
    moirai_executor_thread_destroy(ex);
    cr_assert_gt(tested, 0);
}

Test(executor, node_locality_pins_to_the_nodes_cpus, .timeout = 30)
{
    cpu_set_t allowed;
    cr_assert_eq(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    moirai_executor_t *ex = new_thread_executor();
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    attr.locality = MOIRAI_LOCALITY_NODE;
    attr.locality_index = 0;
    placement_t p = run_placed(ex, &attr);
    moirai_executor_thread_destroy(ex);
    cpu_set_t expected;
    CPU_ZERO(&expected);
    for (int i = 0; i < moirai_topology_cpu_count(); i++) {
        moirai_cpu_info_t info;
        cr_assert_eq(moirai_topology_cpu_at(i, &info), 0);
        if (info.node == 0 && info.cpu < CPU_SETSIZE && CPU_ISSET(info.cpu, &allowed))
            CPU_SET(info.cpu, &expected);
    }
    cr_assert(CPU_EQUAL(&p.mask, &expected), "the thread's mask is node 0's CPUs");
    cr_assert(CPU_ISSET(p.cpu, &expected));
}

Test(executor, unusable_hint_of_injected_topology_still_runs_task, .timeout = 30)
{
    /* 64 CPUs in 2 nodes: CPU 63 is valid for the topology but (on any
     * machine with fewer CPUs) rejected by the kernel; the task still runs,
     * unpinned. */
    cr_assert_eq(moirai_topology_inject_uniform(2, 32), 0);
    moirai_executor_t *ex = new_thread_executor();
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    attr.locality = MOIRAI_LOCALITY_CPU;
    attr.locality_index = 63;
    placement_t p = run_placed(ex, &attr);
    cr_assert_geq(p.cpu, 0);
    attr.locality = MOIRAI_LOCALITY_NODE;
    attr.locality_index = 1;
    p = run_placed(ex, &attr);
    cr_assert_geq(p.cpu, 0);
    attr.locality_index = 2;
    _Atomic int runs = 0;
    cr_assert_eq(moirai_executor_spawn(ex, count_task, &runs, &attr, NULL), -EINVAL);
    moirai_executor_thread_destroy(ex);
    cr_assert_eq(atomic_load(&runs), 0);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

Test(executor, task_name_becomes_thread_name, .timeout = 30)
{
    moirai_executor_t *ex = new_thread_executor();
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    attr.name = "short";
    placement_t p = run_placed(ex, &attr);
    cr_assert_str_eq(p.name, "short");
    attr.name = "a-rather-long-task-name";
    p = run_placed(ex, &attr);
    cr_assert_str_eq(p.name, "a-rather-long-t", "the first 15 bytes: %s", p.name);
    moirai_executor_thread_destroy(ex);
}

/* ---- Thread creation failure ---- */

LEAK_CHECKED_TEST(executor, thread_creation_failure_is_eagain_and_runs_nothing, .timeout = 30)
{
    moirai_executor_t *ex = new_thread_executor();
    /* Make every new thread ask for a stack no system can map. */
    pthread_attr_t huge, saved;
    cr_assert_eq(pthread_getattr_default_np(&saved), 0);
    pthread_attr_init(&huge);
    cr_assert_eq(pthread_attr_setstacksize(&huge, (size_t)1 << 46), 0);
    cr_assert_eq(pthread_setattr_default_np(&huge), 0);

    _Atomic int runs = 0;
    moirai_handle_t *h = new_handle();
    int rc = moirai_executor_spawn(ex, count_task, &runs, NULL, h);

    cr_assert_eq(pthread_setattr_default_np(&saved), 0);
    pthread_attr_destroy(&huge);
    pthread_attr_destroy(&saved);

    cr_assert_eq(rc, -EAGAIN);
    cr_assert_eq(atomic_load(&runs), 0);
    cr_assert_eq(moirai_handle_try_join(h, NULL), -EAGAIN, "still pending");
    /* Unbound again: the same handle serves a later spawn. */
    cr_assert_eq(moirai_executor_spawn(ex, count_task, &runs, NULL, h), 0);
    void *v = NULL;
    cr_assert_eq(moirai_handle_join(h, &v), 0);
    cr_assert_eq(v, (void *)&runs);
    moirai_executor_thread_destroy(ex);
    cr_assert_eq(atomic_load(&runs), 1);
    moirai_handle_release(h);
}
