/* The executor-independent half of moirai_executor_spawn(): checking the
 * arguments and binding the handle, so that every executor receives work in
 * the shape executor.h promises. */
#include <errno.h>
#include <stddef.h>

#include <moirai/core/executor.h>

#include "handle_internal.h"

int moirai_executor_spawn(moirai_executor_t *executor, moirai_task_fn fn, void *arg,
                          const moirai_task_attr_t *attr, moirai_handle_t *handle)
{
    if (executor == NULL || executor->ops == NULL || executor->ops->spawn == NULL || fn == NULL)
        return -EINVAL;

    /* Executors get a valid attribute block even when the caller passed
     * none. It lives on this stack frame: executors copy what they keep. */
    moirai_task_attr_t defaults;
    if (attr == NULL) {
        moirai_task_attr_init(&defaults);
        attr = &defaults;
    } else if (moirai_task_attr_validate(attr) != 0) {
        return -EINVAL;
    }

    if (handle != NULL) {
        /* 0 is "none" too, so a zeroed attribute block means no deadline. */
        uint64_t start_by = attr->deadline == 0 ? MOIRAI_DEADLINE_NEVER : attr->deadline;
        if (moirai__handle_bind(handle, start_by) != 0)
            return -EINVAL;
        /* The executor's reference, dropped by the executor after running
         * the task (or below, if it refuses the task). */
        moirai_handle_retain(handle);
    }

    int rc = executor->ops->spawn(executor, fn, arg, attr, handle);
    if (rc != 0 && handle != NULL) {
        /* The executor kept nothing: give the handle back as it was. The
         * caller's own reference keeps it alive across this release. */
        moirai__handle_unbind(handle);
        moirai_handle_release(handle);
    }
    return rc;
}
