/* The task model: task ids, attributes and priority names.
 *
 * The cancellation token is the completion handle itself, so
 * moirai_cancel_token_is_cancelled() lives in handle.c beside the state word
 * it reads. */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

#include <moirai/core/task.h>
#include <moirai/core/topology.h>

/* The next id to hand out. Starts at 1 so that MOIRAI_TASK_ID_NONE (0) is
 * never issued; 2^64 ids cannot be exhausted in practice. */
static _Atomic uint64_t next_task_id = 1;

moirai_task_id_t moirai_task_id_next(void)
{
    /* Relaxed: an id only has to be unique, which the atomic read-modify-write
     * guarantees on its own; it orders no other memory. */
    return atomic_fetch_add_explicit(&next_task_id, 1, memory_order_relaxed);
}

void moirai_task_attr_init(moirai_task_attr_t *attr)
{
    if (attr == NULL)
        return;
    *attr = (moirai_task_attr_t)MOIRAI_TASK_ATTR_INIT;
}

int moirai_task_attr_validate(const moirai_task_attr_t *attr)
{
    if (attr == NULL)
        return -EINVAL;
    /* The enum's underlying type may be unsigned, so compare through int to
     * catch values below CRITICAL as well as above BACKGROUND. */
    int priority = (int)attr->priority;
    if (priority < (int)MOIRAI_PRIORITY_CRITICAL || priority > (int)MOIRAI_PRIORITY_BACKGROUND)
        return -EINVAL;

    switch ((int)attr->locality) {
    case MOIRAI_LOCALITY_ANY:
        /* The index means nothing without a kind; it is ignored. */
        return 0;
    case MOIRAI_LOCALITY_CPU: {
        moirai_cpu_info_t info;
        if (attr->locality_index < 0 || moirai_topology_cpu_find(attr->locality_index, &info) != 0)
            return -EINVAL;
        return 0;
    }
    case MOIRAI_LOCALITY_NODE:
        if (attr->locality_index < 0 || attr->locality_index >= moirai_topology_node_count())
            return -EINVAL;
        return 0;
    default:
        return -EINVAL;
    }
}

const char *moirai_priority_name(moirai_priority_t priority)
{
    switch ((int)priority) {
    case MOIRAI_PRIORITY_CRITICAL:
        return "critical";
    case MOIRAI_PRIORITY_HIGH:
        return "high";
    case MOIRAI_PRIORITY_NORMAL:
        return "normal";
    case MOIRAI_PRIORITY_LOW:
        return "low";
    case MOIRAI_PRIORITY_BACKGROUND:
        return "background";
    default:
        return "unknown";
    }
}
