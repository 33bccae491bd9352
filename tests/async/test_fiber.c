/* Fibers: spawn and join, results and errors, yield, identity, attributes,
 * priorities, the runtime as an executor, and bad input. */
#include "async_test_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int return_arg(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    *result = arg;
    return 0;
}

static int fail_eio(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    return -EIO;
}

Test(fiber, spawn_join_returns_value_and_error, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(2);
    void *v = NULL;
    cr_assert_eq(run_fiber(rt, return_arg, (void *)0x1234, &v), 0);
    cr_assert_eq(v, (void *)0x1234);
    cr_assert_eq(run_fiber(rt, fail_eio, NULL, &v), -EIO);
    cr_assert_null(v);
    drop_runtime(rt);
}

struct identity {
    moirai_fiber_t *self;
    moirai_task_id_t id;
    const char *name;
    const moirai_cancel_token_t *token;
    int yield_rc;
};

static int who_am_i(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)result;
    struct identity *id = arg;
    id->self = moirai_fiber_current();
    id->id = moirai_fiber_id(id->self);
    id->name = moirai_fiber_name(id->self);
    id->token = moirai_fiber_token();
    cr_assert_eq(id->token, cancel);
    for (int i = 0; i < 100; i++)
        id->yield_rc |= moirai_fiber_yield();
    /* Still itself after yields (which may move it to another worker). */
    if (moirai_fiber_current() != id->self)
        return -EFAULT;
    return 0;
}

Test(fiber, current_id_name_token_and_yield, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct identity id = {0};
    moirai_fiber_attr_t attr;
    moirai_fiber_attr_init(&attr);
    attr.task.name = "identity";
    moirai_handle_t *h = spawn_with_handle(rt, who_am_i, &id, &attr);
    moirai_task_id_t hid = moirai_handle_id(h);
    cr_assert_eq(join_and_release(h, NULL), 0);
    cr_assert_not_null(id.self);
    cr_assert_eq(id.id, hid);
    cr_assert_str_eq(id.name, "identity");
    cr_assert_not_null(id.token);
    cr_assert_eq(id.yield_rc, 0);
    drop_runtime(rt);
}

Test(fiber, plain_thread_gets_clear_errors, .timeout = 10)
{
    cr_assert_null(moirai_fiber_current());
    cr_assert_eq(moirai_fiber_yield(), -EPERM);
    cr_assert_null(moirai_fiber_token());
    cr_assert_eq(moirai_fiber_id(NULL), MOIRAI_TASK_ID_NONE);
    cr_assert_null(moirai_fiber_name(NULL));
    cr_assert_eq(moirai_fiber_stack_used(NULL), 0);
    moirai_fiber_key_t key;
    cr_assert_eq(moirai_fiber_key_create(&key, NULL), 0);
    cr_assert_eq(moirai_fiber_local_set(key, (void *)1), -EPERM);
    cr_assert_null(moirai_fiber_local_get(key));
    cr_assert_eq(moirai_fiber_key_delete(key), 0);
}

Test(fiber, bad_arguments, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_fiber_attr_t attr;
    moirai_fiber_attr_init(&attr);
    cr_assert_eq(moirai_fiber_spawn(NULL, return_arg, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_fiber_spawn(rt, NULL, NULL, NULL, NULL), -EINVAL);
    attr.stack_size = 1;
    cr_assert_eq(moirai_fiber_spawn(rt, return_arg, NULL, &attr, NULL), -EINVAL);
    attr.stack_size = MOIRAI_FIBER_STACK_MAX + 1;
    cr_assert_eq(moirai_fiber_spawn(rt, return_arg, NULL, &attr, NULL), -EINVAL);
    attr.stack_size = SIZE_MAX;
    cr_assert_eq(moirai_fiber_spawn(rt, return_arg, NULL, &attr, NULL), -EINVAL);
    moirai_fiber_attr_init(&attr);
    attr.task.priority = (moirai_priority_t)7;
    cr_assert_eq(moirai_fiber_spawn(rt, return_arg, NULL, &attr, NULL), -EINVAL);
    /* A handle serves one fiber: the second spawn is refused, the first runs. */
    moirai_handle_t *h = spawn_with_handle(rt, return_arg, (void *)7, NULL);
    cr_assert_eq(moirai_fiber_spawn(rt, return_arg, NULL, NULL, h), -EINVAL);
    void *v = NULL;
    cr_assert_eq(join_and_release(h, &v), 0);
    cr_assert_eq(v, (void *)7);
    /* Runtime configuration. */
    moirai_runtime_config_t rc;
    moirai_runtime_config_init(&rc);
    moirai_runtime_t *other = NULL;
    cr_assert_eq(moirai_runtime_create(NULL, &rc), -EINVAL);
    cr_assert_eq(moirai_runtime_create(&other, &rc), -EBUSY, "one runtime per process");
    rc.stack_size = MOIRAI_FIBER_STACK_MIN - 1;
    cr_assert_eq(moirai_runtime_create(&other, &rc), -EINVAL);
    cr_assert_eq(moirai_runtime_destroy(NULL), -EINVAL);
    cr_assert_eq(moirai_runtime_stats(NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_runtime_current(), rt);
    drop_runtime(rt);
    cr_assert_null(moirai_runtime_current());
}

static int big_stack_user(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    size_t n = (size_t)(uintptr_t)arg;
    volatile char buf[n];
    memset((char *)buf, 1, n);
    *result = (void *)(uintptr_t)moirai_fiber_stack_used(moirai_fiber_current());
    return buf[n / 2] == 1 ? 0 : -EFAULT;
}

Test(fiber, stack_size_attribute_and_high_water_mark, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_fiber_attr_t attr;
    moirai_fiber_attr_init(&attr);
    attr.stack_size = 4 * 1024 * 1024;
    void *used = NULL;
    moirai_handle_t *h = spawn_with_handle(rt, big_stack_user, (void *)(uintptr_t)(2 << 20), &attr);
    cr_assert_eq(join_and_release(h, &used), 0);
    cr_assert_geq((uintptr_t)used, (uintptr_t)(2 << 20));
    cr_assert_lt((uintptr_t)used, (uintptr_t)(3 << 20));
    moirai_runtime_stats_t st = idle_stats(rt);
    cr_assert_geq(st.stack_high_water, (uint64_t)(2 << 20));
    drop_runtime(rt);
}

/* Priorities: with the only worker held, fibers queued at every level run
 * most urgent first once it is released (aging is far longer than the
 * test). */
struct order {
    _Atomic int next;
    int seen[10];
};

struct prio_arg {
    struct order *order;
    int level;
};

static int record_level(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct prio_arg *p = arg;
    p->order->seen[atomic_fetch_add(&p->order->next, 1)] = p->level;
    return 0;
}

Test(fiber, fibers_run_by_priority, .timeout = 30)
{
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = 1;
    sc.aging_ns = 10 * MOIRAI_NS_PER_S;
    moirai_runtime_config_t rc;
    moirai_runtime_config_init(&rc);
    rc.sched_config = &sc;
    moirai_runtime_t *rt = NULL;
    cr_assert_eq(moirai_runtime_create(&rt, &rc), 0);
    struct holder hold;
    moirai_handle_t *holder = hold_the_worker(rt, &hold);
    struct order order = {0};
    struct prio_arg args[5];
    moirai_handle_t *hs[5];
    /* Queued least urgent first. */
    for (int i = 0; i < 5; i++) {
        int level = MOIRAI_PRIORITY_BACKGROUND - i;
        args[i] = (struct prio_arg){&order, level};
        moirai_fiber_attr_t attr;
        moirai_fiber_attr_init(&attr);
        attr.task.priority = (moirai_priority_t)level;
        hs[i] = spawn_with_handle(rt, record_level, &args[i], &attr);
    }
    atomic_store(&hold.release, 1);
    cr_assert_eq(join_and_release(holder, NULL), 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(join_and_release(hs[i], NULL), 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(order.seen[i], i, "position %d ran level %d", i, order.seen[i]);
    drop_runtime(rt);
}

static _Atomic int executor_runs;

static int count_run(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    if (moirai_fiber_current() == NULL)
        return -EFAULT;
    atomic_fetch_add(&executor_runs, 1);
    return 0;
}

Test(fiber, runtime_is_a_core_executor, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(2);
    moirai_executor_t *ex = moirai_runtime_executor(rt);
    cr_assert_not_null(ex);
    cr_assert_eq(moirai_runtime_sched(rt) != NULL, true);
    moirai_handle_t *hs[64];
    for (int i = 0; i < 64; i++) {
        cr_assert_eq(moirai_handle_create(&hs[i]), 0);
        cr_assert_eq(moirai_executor_spawn(ex, count_run, NULL, NULL, hs[i]), 0);
    }
    for (int i = 0; i < 64; i++)
        cr_assert_eq(join_and_release(hs[i], NULL), 0);
    cr_assert_eq(atomic_load(&executor_runs), 64);
    drop_runtime(rt);
}

/* Fire and forget: destroy waits for every fiber, handle or not. */
static _Atomic int forgotten_done;

static int slow_forgotten(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    moirai_fiber_sleep(20 * MOIRAI_NS_PER_MS);
    atomic_fetch_add(&forgotten_done, 1);
    return 0;
}

Test(fiber, destroy_waits_for_every_fiber, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(2);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(moirai_fiber_spawn(rt, slow_forgotten, NULL, NULL, NULL), 0);
    drop_runtime(rt);
    cr_assert_eq(atomic_load(&forgotten_done), 100);
}

/* While destroy waits for a fiber, spawns from outside are refused with
 * -ESHUTDOWN and the runtime's own fibers may still spawn. */
struct shutdown_probe {
    moirai_runtime_t *rt;
    moirai_event_t release;
    _Atomic int child_rc;
};

static int child_ok(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    return 0;
}

static int last_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct shutdown_probe *p = arg;
    moirai_event_wait(&p->release);
    atomic_store(&p->child_rc, moirai_fiber_spawn(p->rt, child_ok, NULL, NULL, NULL));
    return 0;
}

static void *destroyer(void *arg)
{
    return (void *)(intptr_t)moirai_runtime_destroy(arg);
}

Test(fiber, spawn_during_destroy_is_eshutdown_from_outside_only, .timeout = 60)
{
    struct shutdown_probe p;
    p.rt = make_runtime(2);
    moirai_event_init(&p.release, MOIRAI_EVENT_MANUAL, false);
    atomic_init(&p.child_rc, 1);
    cr_assert_eq(moirai_fiber_spawn(p.rt, last_fiber, &p, NULL, NULL), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, destroyer, p.rt), 0);
    /* Spawns succeed until destroy has begun; they are waited for too. */
    int rc = 0;
    uint64_t until = moirai_deadline_after(WAIT_NS);
    while ((rc = moirai_fiber_spawn(p.rt, child_ok, NULL, NULL, NULL)) == 0 &&
           moirai_clock_now_ns() < until)
        sched_yield();
    cr_assert_eq(rc, -ESHUTDOWN);
    moirai_event_set(&p.release);
    void *destroyed = NULL;
    pthread_join(t, &destroyed);
    cr_assert_eq((intptr_t)destroyed, 0);
    cr_assert_eq(atomic_load(&p.child_rc), 0, "a fiber of the runtime may still spawn");
}

static int try_destroy_inside(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    return moirai_runtime_destroy(arg);
}

Test(fiber, destroy_from_a_fiber_is_edeadlk, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    cr_assert_eq(run_fiber(rt, try_destroy_inside, rt, NULL), -EDEADLK);
    drop_runtime(rt);
}

Test(fiber, borrowed_scheduler_outlives_runtime, .timeout = 30)
{
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = 2;
    moirai_sched_t *s = NULL;
    cr_assert_eq(moirai_sched_create(&s, &sc), 0);
    for (int round = 0; round < 3; round++) {
        moirai_runtime_config_t rc;
        moirai_runtime_config_init(&rc);
        rc.sched = s;
        moirai_runtime_t *rt = NULL;
        cr_assert_eq(moirai_runtime_create(&rt, &rc), 0);
        cr_assert_eq(moirai_runtime_sched(rt), s);
        void *v = NULL;
        cr_assert_eq(run_fiber(rt, return_arg, (void *)3, &v), 0);
        cr_assert_eq(v, (void *)3);
        drop_runtime(rt);
    }
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

/* Fiber-local storage: values are per fiber, survive waits and moves
 * between workers, and their destructors run once at the fiber's end. */
static moirai_fiber_key_t fls_key;
static _Atomic int fls_destroyed;

static void fls_dtor(void *v)
{
    (void)v;
    atomic_fetch_add(&fls_destroyed, 1);
}

static int fls_user(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    if (moirai_fiber_local_get(fls_key) != NULL)
        return -EFAULT;
    if (moirai_fiber_local_set(fls_key, arg) != 0)
        return -EFAULT;
    for (int i = 0; i < 50; i++) {
        moirai_fiber_yield();
        if (moirai_fiber_local_get(fls_key) != arg)
            return -EFAULT;
    }
    return 0;
}

Test(fiber, fiber_local_storage, .timeout = 30)
{
    cr_assert_eq(moirai_fiber_key_create(NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_fiber_key_create(&fls_key, fls_dtor), 0);
    moirai_runtime_t *rt = make_runtime(2);
    moirai_handle_t *hs[32];
    static int values[32];
    for (int i = 0; i < 32; i++)
        hs[i] = spawn_with_handle(rt, fls_user, &values[i], NULL);
    for (int i = 0; i < 32; i++)
        cr_assert_eq(join_and_release(hs[i], NULL), 0);
    cr_assert_eq(atomic_load(&fls_destroyed), 32);
    drop_runtime(rt);
    cr_assert_eq(moirai_fiber_key_delete(fls_key), 0);
    cr_assert_eq(moirai_fiber_key_delete(fls_key), -EINVAL);
    moirai_fiber_key_t bad = {MOIRAI_FIBER_KEYS_MAX};
    cr_assert_eq(moirai_fiber_key_delete(bad), -EINVAL);
    /* Every key can be taken, then none. */
    moirai_fiber_key_t keys[MOIRAI_FIBER_KEYS_MAX];
    for (int i = 0; i < MOIRAI_FIBER_KEYS_MAX; i++)
        cr_assert_eq(moirai_fiber_key_create(&keys[i], NULL), 0);
    moirai_fiber_key_t extra;
    cr_assert_eq(moirai_fiber_key_create(&extra, NULL), -EAGAIN);
    for (int i = 0; i < MOIRAI_FIBER_KEYS_MAX; i++)
        cr_assert_eq(moirai_fiber_key_delete(keys[i]), 0);
}

static int spawn_children(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    moirai_runtime_t *rt = arg;
    long sum = 0;
    for (long i = 0; i < 200; i++) {
        moirai_handle_t *h = NULL;
        if (moirai_handle_create(&h) != 0)
            return -ENOMEM;
        int rc = moirai_fiber_spawn(rt, return_arg, (void *)i, NULL, h);
        if (rc != 0)
            return rc;
        void *v = NULL;
        rc = moirai_handle_join(h, &v);
        moirai_handle_release(h);
        if (rc != 0)
            return rc;
        sum += (long)v;
    }
    *result = (void *)sum;
    return 0;
}

Test(fiber, fiber_spawns_and_joins_children_on_one_worker, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(1);
    void *v = NULL;
    cr_assert_eq(run_fiber(rt, spawn_children, rt, &v), 0);
    cr_assert_eq((long)v, 199L * 200 / 2);
    moirai_runtime_stats_t st = idle_stats(rt);
    cr_assert_geq(st.fibers_spawned, 201);
    cr_assert_geq(st.parks, 1);
    drop_runtime(rt);
}

/* A locality hint places the first run through the scheduler's routing;
 * the fiber still runs exactly once and may wait afterwards. */
static int hinted(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    moirai_fiber_sleep(MOIRAI_NS_PER_MS);
    *result = arg;
    return 0;
}

Test(fiber, locality_hint_places_first_run, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(2);
    moirai_handle_t *hs[16];
    for (int i = 0; i < 16; i++) {
        moirai_fiber_attr_t attr;
        moirai_fiber_attr_init(&attr);
        attr.task.locality = MOIRAI_LOCALITY_CPU;
        moirai_cpu_info_t cpu;
        cr_assert_eq(moirai_topology_cpu_at(i % moirai_topology_cpu_count(), &cpu), 0);
        attr.task.locality_index = cpu.cpu;
        hs[i] = spawn_with_handle(rt, hinted, (void *)(uintptr_t)(i + 1), &attr);
    }
    for (int i = 0; i < 16; i++) {
        void *v = NULL;
        cr_assert_eq(join_and_release(hs[i], &v), 0);
        cr_assert_eq(v, (void *)(uintptr_t)(i + 1));
    }
    moirai_fiber_attr_t bad;
    moirai_fiber_attr_init(&bad);
    bad.task.locality = MOIRAI_LOCALITY_CPU;
    bad.task.locality_index = 1 << 20;
    cr_assert_eq(moirai_fiber_spawn(rt, hinted, NULL, &bad, NULL), -EINVAL);
    drop_runtime(rt);
}
