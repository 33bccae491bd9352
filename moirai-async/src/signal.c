/* Signal watchers (moirai/async/signal.h): a uv_signal_t on the reactor
 * thread counts deliveries into `pending`, which waiters take with an
 * exchange and park on while it is zero. Starting and closing the libuv
 * handle are reactor operations; the caller waits for them on `phase`. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include <moirai/async/signal.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/park.h>

#include "async_internal.h"
#include "iowait.h"

#define PHASE_STARTING UINT32_C(0)
#define PHASE_RUNNING  UINT32_C(1)
#define PHASE_FAILED   UINT32_C(2)
#define PHASE_CLOSED   UINT32_C(3)

struct moirai_signal {
    uv_signal_t handle;
    moirai_runtime_t *rt;
    int signum;
    int error; /* why the start failed; written before phase FAILED */
    moirai__reactor_op_t start_op;
    moirai__reactor_op_t stop_op;
    _Atomic uint32_t pending; /* deliveries not yet taken */
    _Atomic uint32_t phase;
};

/* Reactor thread: moves `phase` on and wakes the creator or destroyer.
 * Release: what the reactor did (the handle's state, `error`) happens
 * before the caller sees the phase. The caller may free `sig` as soon as
 * it sees the phase; the unpark then only hashes the address (park.h
 * wakes by address and never reads the word), which is harmless. */
static void set_phase(moirai_signal_t *sig, uint32_t phase)
{
    atomic_store_explicit(&sig->phase, phase, memory_order_release);
    moirai_unpark_all(&sig->phase);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    (void)signum;
    moirai_signal_t *sig = handle->data;
    uint32_t old = atomic_load_explicit(&sig->pending, memory_order_relaxed);
    uint32_t next;
    do {
        next = old >= (uint32_t)INT_MAX ? old : old + 1;
        /* Release: pairs with the waiter's acquire exchange (the count
         * carries no data, but a waiter that returns sees the reactor's
         * state at the delivery). */
    } while (!atomic_compare_exchange_weak_explicit(&sig->pending, &old, next, memory_order_release,
                                                    memory_order_relaxed));
    moirai_unpark_all(&sig->pending);
}

/* A handle whose start failed is closed before its memory is freed. */
static void on_start_failed_closed(uv_handle_t *handle)
{
    moirai_signal_t *sig = handle->data;
    set_phase(sig, PHASE_FAILED);
}

static void run_start(moirai__reactor_op_t *op, uv_loop_t *loop)
{
    moirai_signal_t *sig = (moirai_signal_t *)((char *)op - offsetof(moirai_signal_t, start_op));
    int rc = uv_signal_init(loop, &sig->handle);
    if (rc < 0) {
        sig->error = rc;
        set_phase(sig, PHASE_FAILED);
        return;
    }
    sig->handle.data = sig;
    rc = uv_signal_start(&sig->handle, on_signal, sig->signum);
    if (rc < 0) {
        sig->error = rc;
        uv_close((uv_handle_t *)&sig->handle, on_start_failed_closed);
        return;
    }
    set_phase(sig, PHASE_RUNNING);
}

static void on_closed(uv_handle_t *handle)
{
    moirai_signal_t *sig = handle->data;
    set_phase(sig, PHASE_CLOSED);
}

static void run_stop(moirai__reactor_op_t *op, uv_loop_t *loop)
{
    (void)loop;
    moirai_signal_t *sig = (moirai_signal_t *)((char *)op - offsetof(moirai_signal_t, stop_op));
    uv_close((uv_handle_t *)&sig->handle, on_closed);
}

/* Waits, ignoring cancellation, until `phase` leaves `from`. */
static uint32_t wait_phase(moirai_signal_t *sig, uint32_t from)
{
    uint32_t p;
    /* Acquire pairs with set_phase's release. */
    while ((p = atomic_load_explicit(&sig->phase, memory_order_acquire)) == from)
        (void)moirai_park_nospin(&sig->phase, from, MOIRAI_DEADLINE_NEVER);
    return p;
}

int moirai_signal_create(moirai_signal_t **out, moirai_runtime_t *rt, int signum)
{
    if (out == NULL || rt == NULL || signum <= 0 || signum >= NSIG || signum == SIGKILL ||
        signum == SIGSTOP)
        return -EINVAL;
    moirai_signal_t *sig = moirai_malloc(sizeof(*sig));
    if (sig == NULL)
        return -ENOMEM;
    memset(sig, 0, sizeof(*sig));
    sig->rt = rt;
    sig->signum = signum;
    sig->start_op.run = run_start;
    sig->stop_op.run = run_stop;
    atomic_init(&sig->pending, 0);
    atomic_init(&sig->phase, PHASE_STARTING);
    moirai__reactor_submit(rt->reactor, &sig->start_op);
    if (wait_phase(sig, PHASE_STARTING) != PHASE_RUNNING) {
        int err = sig->error;
        moirai_free(sig);
        return err;
    }
    *out = sig;
    return 0;
}

int moirai_signal_wait_timed(moirai_signal_t *sig, uint64_t deadline)
{
    if (sig == NULL)
        return -EINVAL;
    int rc = moirai__iowait_check();
    if (rc < 0)
        return rc;
    for (;;) {
        /* Acquire pairs with on_signal's release. Taking the whole count
         * at once is what makes each delivery go to exactly one wait. */
        uint32_t n = atomic_exchange_explicit(&sig->pending, 0, memory_order_acquire);
        if (n != 0)
            return (int)n;
        rc = moirai__iowait_park(&sig->pending, 0, deadline);
        if (rc < 0)
            return rc;
    }
}

int moirai_signal_wait(moirai_signal_t *sig)
{
    return moirai_signal_wait_timed(sig, MOIRAI_DEADLINE_NEVER);
}

void moirai_signal_destroy(moirai_signal_t *sig)
{
    if (sig == NULL)
        return;
    moirai__reactor_submit(sig->rt->reactor, &sig->stop_op);
    wait_phase(sig, PHASE_RUNNING);
    moirai_free(sig);
}
