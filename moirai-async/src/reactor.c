/* The reactor: a thread running a libuv loop that fires fiber deadlines
 * (and, in part 2, drives I/O).
 *
 * One loop on one thread, because a libuv loop belongs to one thread. It
 * watches an eventfd with uv_poll_t rather than using uv_async_t: libuv
 * 1.44's uv_async_send spins and yields, and a wake through it costs about
 * 64 us on a shared CPU against 6 us for an eventfd (docs/async.md). One
 * uv_timer_t is armed for the earliest deadline of the timer heap; when it
 * fires, every expired waiter is resumed and the timer is re-armed.
 * Between events the thread sleeps in epoll_wait: an idle runtime costs no
 * CPU.
 *
 * `armed` is the deadline the libuv timer is set for (NEVER when none).
 * A parker whose deadline becomes the heap's earliest writes the eventfd
 * (moirai__reactor_kick), unless a kick is already pending, so a burst of
 * parks costs one system call.
 *
 * Other threads hand work to the loop through a submission queue
 * (moirai__reactor_submit): an intrusive list pushed with a
 * compare-and-swap and taken whole by the reactor with one exchange, then
 * run oldest first. A submission kicks the same eventfd, with the same
 * coalescing, so a burst of submissions costs one wake. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <uv.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/park.h>

#include "async_internal.h"

struct moirai__reactor {
    moirai_runtime_t *rt;
    uv_loop_t loop;
    uv_poll_t wake;
    uv_timer_t timer;
    int efd;
    pthread_t thread;
    /* 1 while a kick has been written and not yet read. */
    _Atomic uint32_t kicked;
    /* Submitted operations not yet run, newest first (a LIFO of pushes). */
    _Atomic(moirai__reactor_op_t *) submitted;
    _Atomic uint32_t stop;
    /* 0 starting, 1 running, -errno failed (create waits on it). */
    _Atomic uint32_t started;
    int start_error;
};

static void on_timer(uv_timer_t *timer);

/* Sets the libuv timer for the earliest deadline left. */
static void rearm(moirai__reactor_t *r)
{
    uint64_t now = moirai_clock_now_ns();
    uint64_t next = moirai__timers_expire(r->rt, now);
    if (next == MOIRAI_DEADLINE_NEVER) {
        uv_timer_stop(&r->timer);
        return;
    }
    /* libuv counts whole milliseconds: round up so a timer never fires
     * before its deadline (a fiber woken early would only park again). */
    uint64_t ms = (next - now + MOIRAI_NS_PER_MS - 1) / MOIRAI_NS_PER_MS;
    uv_update_time(&r->loop);
    uv_timer_start(&r->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *timer)
{
    rearm(timer->data);
}

/* Runs every submitted operation, in submission order. Reactor thread. */
static void run_submitted(moirai__reactor_t *r)
{
    /* Seq_cst pairs with the submitter's push and kick (see
     * moirai__reactor_submit): taken after `kicked` was cleared, so an
     * operation whose kick was skipped is in this batch or a later one. */
    moirai__reactor_op_t *list =
        atomic_exchange_explicit(&r->submitted, NULL, memory_order_seq_cst);
    /* The list is newest first: reverse it so operations run in the
     * order they were submitted (a cancellation after its start). */
    moirai__reactor_op_t *fifo = NULL;
    while (list != NULL) {
        moirai__reactor_op_t *next = list->next;
        list->next = fifo;
        fifo = list;
        list = next;
    }
    while (fifo != NULL) {
        moirai__reactor_op_t *op = fifo;
        /* Read before running: the operation may free or resubmit itself. */
        fifo = op->next;
        op->run(op, &r->loop);
    }
}

/* At stop, closes the handles the runtime's users left open (a signal
 * watcher never destroyed), so the loop can end. */
static void close_leftover(uv_handle_t *handle, void *arg)
{
    (void)arg;
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

static void on_wake(uv_poll_t *poll, int status, int events)
{
    (void)status;
    (void)events;
    moirai__reactor_t *r = poll->data;
    uint64_t value;
    /* Non-blocking eventfd: reading clears it; EAGAIN means nothing to read. */
    if (read(r->efd, &value, sizeof(value)) < 0) {
        /* Nothing pending: a spurious readiness report. */
    }
    /* Acquire pairs with the kicker's release: the heap change it announced
     * is visible (the timer lock orders it anyway). Cleared before looking
     * at the heap, so a kick after this look is never lost. */
    (void)atomic_exchange_explicit(&r->kicked, 0, memory_order_seq_cst);
    run_submitted(r);
    if (atomic_load_explicit(&r->stop, memory_order_acquire)) {
        uv_close((uv_handle_t *)&r->wake, NULL);
        uv_close((uv_handle_t *)&r->timer, NULL);
        /* The loop then runs until the thread pool's requests still in
         * flight (detached file operations) have completed. */
        uv_walk(&r->loop, close_leftover, NULL);
        return;
    }
    rearm(r);
}

void moirai__reactor_kick(moirai__reactor_t *r)
{
    /* Seq_cst pairs with the reactor's clearing store and its heap read. */
    if (atomic_exchange_explicit(&r->kicked, 1, memory_order_seq_cst) != 0)
        return;
    uint64_t one = 1;
    /* An eventfd write only fails when the counter would overflow, which
     * needs 2^64 unread kicks; `kicked` keeps it at one. */
    if (write(r->efd, &one, sizeof(one)) < 0) {
        /* Unreachable in practice; the next kick retries. */
        atomic_store_explicit(&r->kicked, 0, memory_order_relaxed);
    }
}

void moirai__reactor_submit(moirai__reactor_t *r, moirai__reactor_op_t *op)
{
    moirai__reactor_op_t *head = atomic_load_explicit(&r->submitted, memory_order_relaxed);
    do {
        op->next = head;
        /* Seq_cst: the push must come before this thread's exchange of
         * `kicked` in the single total order, so that a kick skipped
         * because one is pending is followed by the reactor's clear and
         * then its take of the list, which sees this push. Release alone
         * would also publish `op`'s fields to the reactor. */
    } while (!atomic_compare_exchange_weak_explicit(&r->submitted, &head, op, memory_order_seq_cst,
                                                    memory_order_relaxed));
    moirai__reactor_kick(r);
}

static void *reactor_main(void *arg)
{
    moirai__reactor_t *r = arg;
    pthread_setname_np(pthread_self(), "moirai-reactor");
    int rc = uv_loop_init(&r->loop);
    if (rc == 0) {
        /* uv_timer_init cannot fail. */
        uv_timer_init(&r->loop, &r->timer);
        r->timer.data = r;
        rc = uv_poll_init(&r->loop, &r->wake, r->efd);
        bool poll_made = rc == 0;
        if (rc == 0) {
            r->wake.data = r;
            rc = uv_poll_start(&r->wake, UV_READABLE, on_wake);
        }
        if (rc != 0) {
            /* Closed handles must be run through the loop before it closes. */
            uv_close((uv_handle_t *)&r->timer, NULL);
            if (poll_made)
                uv_close((uv_handle_t *)&r->wake, NULL);
            uv_run(&r->loop, UV_RUN_DEFAULT);
            uv_loop_close(&r->loop);
        }
    }
    r->start_error = rc == 0 ? 0 : -ENOMEM;
    /* Release: start_error is written; create reads it with acquire. */
    atomic_store_explicit(&r->started, rc == 0 ? 1 : 2, memory_order_release);
    moirai_unpark_all(&r->started);
    if (rc != 0)
        return NULL;
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_loop_close(&r->loop);
    return NULL;
}

int moirai__reactor_start(moirai__reactor_t **out, moirai_runtime_t *rt)
{
    moirai__reactor_t *r = moirai_calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->rt = rt;
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0) {
        int err = errno == EMFILE || errno == ENFILE ? -EAGAIN : -ENOMEM;
        moirai_free(r);
        return err;
    }
    atomic_init(&r->kicked, 0);
    atomic_init(&r->submitted, NULL);
    atomic_init(&r->stop, 0);
    atomic_init(&r->started, 0);
    int rc = pthread_create(&r->thread, NULL, reactor_main, r);
    if (rc != 0) {
        close(r->efd);
        moirai_free(r);
        return -EAGAIN;
    }
    uint32_t s;
    /* Acquire pairs with the reactor's release of `started`. */
    while ((s = atomic_load_explicit(&r->started, memory_order_acquire)) == 0)
        moirai_park(&r->started, 0, MOIRAI_DEADLINE_NEVER);
    if (s != 1) {
        int err = r->start_error;
        pthread_join(r->thread, NULL);
        close(r->efd);
        moirai_free(r);
        return err;
    }
    *out = r;
    return 0;
}

void moirai__reactor_stop(moirai__reactor_t *r)
{
    if (r == NULL)
        return;
    /* Release: the reactor sees everything destroy did before stopping. */
    atomic_store_explicit(&r->stop, 1, memory_order_release);
    atomic_store_explicit(&r->kicked, 0, memory_order_relaxed);
    moirai__reactor_kick(r);
    pthread_join(r->thread, NULL);
    close(r->efd);
    moirai_free(r);
}
