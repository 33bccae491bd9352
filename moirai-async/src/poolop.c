/* Thread-pool operations a caller can stop waiting for (see poolop.h). */
#include <errno.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>

#include "iowait.h"
#include "moirai_probe.h"
#include "poolop.h"

static void unref(moirai__poolop_t *op)
{
    /* Acq_rel: every holder's writes happen before the last one frees. */
    if (atomic_fetch_sub_explicit(&op->refs, 1, memory_order_acq_rel) == 1)
        op->destroy(op);
}

static void run_start(moirai__reactor_op_t *rop, uv_loop_t *loop)
{
    moirai__poolop_t *op = (moirai__poolop_t *)((char *)rop - offsetof(moirai__poolop_t, start_op));
    op->start(op, loop);
}

static void run_cancel(moirai__reactor_op_t *rop, uv_loop_t *loop)
{
    (void)loop;
    moirai__poolop_t *op =
        (moirai__poolop_t *)((char *)rop - offsetof(moirai__poolop_t, cancel_op));
    /* Reaches the request only while it is still queued in the pool; its
     * callback then runs with UV_ECANCELED. Work already running on a
     * pool thread answers UV_EBUSY and completes on its own. */
    if (!op->completed && op->withdrawable)
        (void)uv_cancel(op->req);
    /* Release: the detaching caller returns only after this, so work
     * that was withdrawn is known never to run once the call returned. */
    atomic_store_explicit(&op->cancel_done, 1, memory_order_release);
    moirai_unpark_all(&op->cancel_done);
    unref(op);
}

void moirai__poolop_init(moirai__poolop_t *op, uv_req_t *req,
                         void (*start)(moirai__poolop_t *op, uv_loop_t *loop),
                         void (*dispose)(moirai__poolop_t *op),
                         void (*destroy)(moirai__poolop_t *op))
{
    op->start_op.run = run_start;
    op->cancel_op.run = run_cancel;
    op->start = start;
    op->dispose = dispose;
    op->destroy = destroy;
    op->req = req;
    op->completed = false;
    op->withdrawable = true;
    atomic_init(&op->state, MOIRAI__POOLOP_PENDING);
    atomic_init(&op->cancel_done, 0);
    /* The caller's and the completion's. */
    atomic_init(&op->refs, 2);
}

int moirai__poolop_wait(moirai_runtime_t *rt, moirai__poolop_t *op, uint64_t deadline)
{
    MOIRAI_PROBE2(io_submit, op, deadline);
    moirai__reactor_submit(rt->reactor, &op->start_op);
    for (;;) {
        /* Acquire pairs with complete()'s release: the result is visible. */
        if (atomic_load_explicit(&op->state, memory_order_acquire) == MOIRAI__POOLOP_DONE)
            return 0;
        int rc = moirai__iowait_park(&op->state, MOIRAI__POOLOP_PENDING, deadline);
        if (rc == 0)
            continue;
        uint32_t expected = MOIRAI__POOLOP_PENDING;
        /* Acquire on failure: the completion won, its result is visible.
         * Release on success: nothing to publish, but the reactor's
         * reading of `state` in complete() orders after it. */
        if (!atomic_compare_exchange_strong_explicit(&op->state, &expected, MOIRAI__POOLOP_DETACHED,
                                                     memory_order_acq_rel, memory_order_acquire))
            return 0;
        /* Detached: the cancel takes a reference of its own (ours keeps
         * `op` alive meanwhile). We wait for it to have tried uv_cancel,
         * a short hop to the reactor that never waits for the pool, so
         * that queued work is withdrawn by the time the call returns
         * (the caller may then reuse what the work would have touched). */
        atomic_fetch_add_explicit(&op->refs, 1, memory_order_relaxed);
        moirai__reactor_submit(rt->reactor, &op->cancel_op);
        /* Acquire pairs with run_cancel's release. A cancellation
         * reported by the park is ignored: this wait must end anyway. */
        while (atomic_load_explicit(&op->cancel_done, memory_order_acquire) == 0)
            (void)moirai_park_nospin(&op->cancel_done, 0, MOIRAI_DEADLINE_NEVER);
        unref(op);
        return rc;
    }
}

void moirai__poolop_complete(moirai__poolop_t *op)
{
    op->completed = true;
    MOIRAI_PROBE1(io_complete, op);
    uint32_t expected = MOIRAI__POOLOP_PENDING;
    /* Release: the caller that sees DONE sees the result. Acquire on
     * failure: the detaching caller is done with the operation. */
    if (atomic_compare_exchange_strong_explicit(&op->state, &expected, MOIRAI__POOLOP_DONE,
                                                memory_order_acq_rel, memory_order_acquire)) {
        moirai_unpark_all(&op->state);
    } else if (op->dispose != NULL) {
        op->dispose(op);
    }
    unref(op);
}

void moirai__poolop_release(moirai__poolop_t *op)
{
    unref(op);
}
