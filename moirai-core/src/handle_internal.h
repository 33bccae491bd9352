/* Internal interface of completion handles, used by moirai_executor_spawn().
 * Never installed. */
#ifndef MOIRAI_CORE_HANDLE_INTERNAL_H
#define MOIRAI_CORE_HANDLE_INTERNAL_H

#include <moirai/core/handle.h>

/* Marks `handle` as serving a task. Returns 0 the first time and -EINVAL
 * for every later call (until moirai__handle_unbind()), so a handle can be
 * given to only one spawn. Thread-safe: concurrent binds are decided by one
 * compare-and-swap, exactly one wins. The winner also records `start_by`,
 * the task's start deadline (moirai_task_attr_t.deadline, normalised:
 * MOIRAI_DEADLINE_NEVER for none), which moirai_handle_run() enforces; the
 * spawn call orders that write for the executor. */
int moirai__handle_bind(moirai_handle_t *handle, uint64_t start_by);

/* Undoes moirai__handle_bind() after a spawn that failed, so the handle is
 * exactly as the caller gave it and may be spawned again. Only the caller
 * whose bind succeeded may call it. */
void moirai__handle_unbind(moirai_handle_t *handle);

#endif
