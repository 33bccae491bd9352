/* Scheduler contexts of threads that run other stacks (moirai/sched/job.h):
 * the thread-local identity a fiber runtime swaps out while a fiber runs. */
#include <stdalign.h>
#include <stdint.h>

#include <moirai/sched/job.h>

#include "sched_internal.h"

typedef struct thread_ctx {
    moirai__worker_t *worker;
    moirai_sched_t *participant;
    uintptr_t ext_depth;
} thread_ctx_t;

_Static_assert(sizeof(thread_ctx_t) <= sizeof(moirai_sched_thread_ctx_t),
               "the context must fit its public storage");
_Static_assert(alignof(thread_ctx_t) <= alignof(moirai_sched_thread_ctx_t),
               "the context must be aligned in its public storage");

void moirai_sched_thread_ctx_swap(moirai_sched_thread_ctx_t *ctx)
{
    if (ctx == NULL)
        return;
    thread_ctx_t *c = (thread_ctx_t *)(void *)ctx->priv;
    thread_ctx_t mine = {moirai__tls_worker, moirai__tls_participant, moirai__tls_ext_depth};
    /* Plain thread-local stores: only this thread reads them. */
    moirai__tls_worker = c->worker;
    moirai__tls_participant = c->participant;
    moirai__tls_ext_depth = (uint32_t)c->ext_depth;
    *c = mine;
}

int moirai_sched_job_submit_from(moirai_sched_t *sched, const moirai_sched_thread_ctx_t *ctx,
                                 moirai_sched_job_t *job, moirai_priority_t prio, unsigned flags)
{
    const thread_ctx_t *c = ctx != NULL ? (const thread_ctx_t *)(const void *)ctx->priv : NULL;
    if (c == NULL || c->worker == NULL || c->worker->sched != sched)
        return moirai_sched_job_submit(sched, job, prio, flags);
    /* Act as the worker for the one submission; the caller is on its
     * thread, so this is the worker's own thread-local state. */
    moirai__worker_t *saved = moirai__tls_worker;
    moirai__tls_worker = c->worker;
    int rc = moirai_sched_job_submit(sched, job, prio, flags);
    moirai__tls_worker = saved;
    return rc;
}
