/* An operation run on libuv's thread pool on behalf of a waiting caller,
 * which may stop waiting (cancellation, deadline) before it completes
 * (internal; used by fs.c, fs_dir.c and dns.c).
 *
 * The life of one operation:
 *
 *   1. The caller allocates it (the kind's structure embeds a
 *      moirai__poolop_t), fills in its arguments and calls
 *      moirai__poolop_wait(), which submits `start` to the reactor thread
 *      and parks the caller on `state`.
 *   2. On the reactor thread `start(op, loop)` issues the libuv request
 *      (uv_fs_*, uv_getaddrinfo). The kind's libuv callback, or `start`
 *      itself when libuv refuses the request at once, stores the result
 *      in the kind's fields and calls moirai__poolop_complete().
 *   3. complete() moves `state` from PENDING to DONE and wakes the caller,
 *      which copies the result out and calls moirai__poolop_release().
 *
 * If the caller's wait ends first (-ECANCELED, -ETIMEDOUT) it moves
 * `state` from PENDING to DETACHED instead and submits a cancel to the
 * reactor thread, which calls uv_cancel() on the request if it has not
 * completed yet; the caller returns once that attempt was made (one hop
 * to the reactor, which never waits for the pool), so work that was still
 * queued is withdrawn before the call returns. uv_cancel only removes
 * work still queued in the pool;
 * work that a pool thread already runs cannot be stopped, so the
 * operation is detached: it owns its memory and its result, and when it
 * completes, `dispose` releases the result (closes a descriptor that a
 * cancelled open returned, frees a listing) on the reactor thread. The
 * caller never touches it again, and the libuv request never touches the
 * caller's memory (paths are copied into the operation, data goes
 * through a buffer the operation owns).
 *
 * Memory: a reference count (the caller's, the completion's and, once
 * detached, the cancel's) decides who frees the operation (`destroy`),
 * so the waker can still be inside its unpark of `state` while the
 * caller returns. */
#ifndef MOIRAI_ASYNC_POOLOP_H
#define MOIRAI_ASYNC_POOLOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "async_internal.h"

typedef struct moirai__poolop moirai__poolop_t;

struct moirai__poolop {
    moirai__reactor_op_t start_op; /* runs `start` */
    moirai__reactor_op_t cancel_op;
    void (*start)(moirai__poolop_t *op, uv_loop_t *loop);
    /* Releases the result of a completed operation nobody waits for
     * (reactor thread). NULL: nothing to release. */
    void (*dispose)(moirai__poolop_t *op);
    /* Frees the operation and what it owns. Any thread. */
    void (*destroy)(moirai__poolop_t *op);
    uv_req_t *req; /* the request uv_cancel() acts on */
    _Atomic uint32_t state;
    _Atomic uint32_t refs;
    /* 1 once the reactor has tried uv_cancel for a detaching caller. */
    _Atomic uint32_t cancel_done;
    /* False for work that must happen even when nobody waits for it
     * (closing a descriptor or a directory): a cancel then leaves it
     * queued instead of withdrawing it. Set before the wait. */
    bool withdrawable;
    /* Reactor thread only: the libuv request has completed (its callback
     * ran, or it was never issued), so uv_cancel must not touch it. */
    bool completed;
};

#define MOIRAI__POOLOP_PENDING  UINT32_C(0)
#define MOIRAI__POOLOP_DONE     UINT32_C(1)
#define MOIRAI__POOLOP_DETACHED UINT32_C(2)

/* Prepares `op`. `req` is the embedded libuv request. */
void moirai__poolop_init(moirai__poolop_t *op, uv_req_t *req,
                         void (*start)(moirai__poolop_t *op, uv_loop_t *loop),
                         void (*dispose)(moirai__poolop_t *op),
                         void (*destroy)(moirai__poolop_t *op));

/* Submits `op` to `rt`'s reactor and waits for it, parking a fiber or
 * sleeping a thread. Returns 0 once it completed (read the result, then
 * release), or -ECANCELED / -ETIMEDOUT when the wait ended first: `op`
 * is then detached and no longer the caller's (do not release it). A
 * completion that wins the race with the cancellation is returned as a
 * completion (0). */
int moirai__poolop_wait(moirai_runtime_t *rt, moirai__poolop_t *op, uint64_t deadline);

/* Reactor thread: the result is stored; wakes the caller, or disposes of
 * the result when the caller has gone. Call once per operation. */
void moirai__poolop_complete(moirai__poolop_t *op);

/* Drops the caller's reference after a completed wait. */
void moirai__poolop_release(moirai__poolop_t *op);

#endif
