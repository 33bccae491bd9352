/* The inline executor: runs every task on the caller, before spawn returns. */
#include <stddef.h>

#include <moirai/core/error.h>
#include <moirai/core/executor.h>
#include <moirai/core/log.h>

static int inline_spawn(moirai_executor_t *executor, moirai_task_fn fn, void *arg,
                        const moirai_task_attr_t *attr, moirai_handle_t *handle)
{
    (void)executor;
    int rc = moirai_handle_run(handle, fn, arg);
    /* A task with a handle reports its error there; a detached one has
     * nowhere else to say it failed. */
    if (handle == NULL && rc < 0)
        MOIRAI_LOG(MOIRAI_LOG_DEBUG, "inline executor: detached task %s failed: %s",
                   attr->name != NULL ? attr->name : "(unnamed)", moirai_strerror(rc));
    moirai_handle_release(handle);
    /* The task was accepted and has run: spawn succeeded whatever the task
     * itself returned. */
    return 0;
}

static const moirai_executor_ops_t inline_ops = {
    .spawn = inline_spawn,
};

/* Stateless, so one shared instance serves every thread. */
static moirai_executor_t inline_executor = {
    .ops = &inline_ops,
};

moirai_executor_t *moirai_executor_inline(void)
{
    return &inline_executor;
}
