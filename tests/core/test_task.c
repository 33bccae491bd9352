/* Task ids, attributes, priority names and the NULL cancellation token. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <moirai/core.h>

Test(task, ids_start_nonzero_and_increase_on_one_thread, .timeout = 10)
{
    moirai_task_id_t prev = moirai_task_id_next();
    cr_assert_neq(prev, MOIRAI_TASK_ID_NONE);
    for (int i = 0; i < 1000; i++) {
        moirai_task_id_t id = moirai_task_id_next();
        cr_assert_neq(id, MOIRAI_TASK_ID_NONE);
        cr_assert_gt(id, prev, "ids from one thread must grow: %llu after %llu",
                     (unsigned long long)id, (unsigned long long)prev);
        prev = id;
    }
}

#define ID_THREADS    4
#define ID_PER_THREAD 20000

static void *take_ids(void *arg)
{
    moirai_task_id_t *out = arg;
    for (int i = 0; i < ID_PER_THREAD; i++)
        out[i] = moirai_task_id_next();
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    moirai_task_id_t x = *(const moirai_task_id_t *)a, y = *(const moirai_task_id_t *)b;
    return x < y ? -1 : x > y;
}

Test(task, ids_unique_across_threads, .timeout = 30)
{
    moirai_task_id_t *ids = calloc(ID_THREADS * ID_PER_THREAD, sizeof(*ids));
    cr_assert_not_null(ids);
    pthread_t threads[ID_THREADS];
    for (int t = 0; t < ID_THREADS; t++)
        cr_assert_eq(pthread_create(&threads[t], NULL, take_ids, ids + t * ID_PER_THREAD), 0);
    for (int t = 0; t < ID_THREADS; t++)
        pthread_join(threads[t], NULL);
    qsort(ids, ID_THREADS * ID_PER_THREAD, sizeof(*ids), cmp_id);
    cr_assert_neq(ids[0], MOIRAI_TASK_ID_NONE);
    for (int i = 1; i < ID_THREADS * ID_PER_THREAD; i++)
        cr_assert_neq(ids[i], ids[i - 1], "duplicate id %llu", (unsigned long long)ids[i]);
    free(ids);
}

Test(task, attr_init_matches_static_initialiser, .timeout = 10)
{
    moirai_task_attr_t expected = MOIRAI_TASK_ATTR_INIT;
    moirai_task_attr_t attr = {"junk", MOIRAI_PRIORITY_LOW, MOIRAI_LOCALITY_NODE, 7, 123};
    moirai_task_attr_init(&attr);
    cr_assert_null(attr.name);
    cr_assert_eq(attr.priority, MOIRAI_PRIORITY_NORMAL);
    cr_assert_eq(attr.locality, MOIRAI_LOCALITY_ANY);
    cr_assert_eq(attr.locality_index, -1);
    cr_assert_eq(attr.deadline, MOIRAI_DEADLINE_NEVER);
    cr_assert_eq(attr.priority, expected.priority);
    cr_assert_eq(attr.locality_index, expected.locality_index);
    cr_assert_eq(attr.deadline, expected.deadline);
    cr_assert_eq(moirai_task_attr_validate(&attr), 0);
    moirai_task_attr_init(NULL); /* must not crash */
}

Test(task, attr_validate_priorities, .timeout = 10)
{
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    cr_assert_eq(moirai_task_attr_validate(NULL), -EINVAL);
    for (int p = 0; p < MOIRAI_PRIORITY_COUNT; p++) {
        attr.priority = (moirai_priority_t)p;
        cr_assert_eq(moirai_task_attr_validate(&attr), 0, "priority %d", p);
    }
    attr.priority = (moirai_priority_t)MOIRAI_PRIORITY_COUNT;
    cr_assert_eq(moirai_task_attr_validate(&attr), -EINVAL);
    attr.priority = (moirai_priority_t)-1;
    cr_assert_eq(moirai_task_attr_validate(&attr), -EINVAL);
}

Test(task, attr_validate_locality_against_detected_topology, .timeout = 10)
{
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    attr.locality = (moirai_locality_t)3;
    cr_assert_eq(moirai_task_attr_validate(&attr), -EINVAL);

    /* ANY ignores the index whatever it holds. */
    attr.locality = MOIRAI_LOCALITY_ANY;
    attr.locality_index = 12345;
    cr_assert_eq(moirai_task_attr_validate(&attr), 0);

    attr.locality = MOIRAI_LOCALITY_CPU;
    int count = moirai_topology_cpu_count();
    int max_cpu = -1;
    for (int i = 0; i < count; i++) {
        moirai_cpu_info_t info;
        cr_assert_eq(moirai_topology_cpu_at(i, &info), 0);
        attr.locality_index = info.cpu;
        cr_assert_eq(moirai_task_attr_validate(&attr), 0, "cpu %d", info.cpu);
        if (info.cpu > max_cpu)
            max_cpu = info.cpu;
    }
    attr.locality_index = max_cpu + 1;
    cr_assert_eq(moirai_task_attr_validate(&attr), -EINVAL);
    attr.locality_index = -1;
    cr_assert_eq(moirai_task_attr_validate(&attr), -EINVAL);

    attr.locality = MOIRAI_LOCALITY_NODE;
    for (int n = 0; n < moirai_topology_node_count(); n++) {
        attr.locality_index = n;
        cr_assert_eq(moirai_task_attr_validate(&attr), 0, "node %d", n);
    }
    attr.locality_index = moirai_topology_node_count();
    cr_assert_eq(moirai_task_attr_validate(&attr), -EINVAL);
    attr.locality_index = -1;
    cr_assert_eq(moirai_task_attr_validate(&attr), -EINVAL);
}

Test(task, attr_validate_follows_injected_topology, .timeout = 10)
{
    /* Two nodes of three CPUs: CPUs 0..5, nodes 0..1. */
    cr_assert_eq(moirai_topology_inject_uniform(2, 3), 0);
    moirai_task_attr_t attr = MOIRAI_TASK_ATTR_INIT;
    attr.locality = MOIRAI_LOCALITY_CPU;
    attr.locality_index = 5;
    cr_assert_eq(moirai_task_attr_validate(&attr), 0);
    attr.locality_index = 6;
    cr_assert_eq(moirai_task_attr_validate(&attr), -EINVAL);
    attr.locality = MOIRAI_LOCALITY_NODE;
    attr.locality_index = 1;
    cr_assert_eq(moirai_task_attr_validate(&attr), 0);
    attr.locality_index = 2;
    cr_assert_eq(moirai_task_attr_validate(&attr), -EINVAL);
    cr_assert_eq(moirai_topology_inject(NULL, 0), 0);
}

Test(task, priority_names, .timeout = 10)
{
    cr_assert_str_eq(moirai_priority_name(MOIRAI_PRIORITY_CRITICAL), "critical");
    cr_assert_str_eq(moirai_priority_name(MOIRAI_PRIORITY_HIGH), "high");
    cr_assert_str_eq(moirai_priority_name(MOIRAI_PRIORITY_NORMAL), "normal");
    cr_assert_str_eq(moirai_priority_name(MOIRAI_PRIORITY_LOW), "low");
    cr_assert_str_eq(moirai_priority_name(MOIRAI_PRIORITY_BACKGROUND), "background");
    cr_assert_str_eq(moirai_priority_name((moirai_priority_t)MOIRAI_PRIORITY_COUNT), "unknown");
    cr_assert_str_eq(moirai_priority_name((moirai_priority_t)-1), "unknown");
}

Test(task, null_token_is_never_cancelled, .timeout = 10)
{
    cr_assert_not(moirai_cancel_token_is_cancelled(NULL));
}
