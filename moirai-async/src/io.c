/* Handles and their readiness slots (see netpoll.h for the protocol).
 *
 * A wait has a winner: the first source that fires claims it with a CAS
 * and only then writes the caller's word and unparks it. A caller that
 * stops waiting (deadline, cancellation) closes the claim itself, so a
 * late source cannot win any more, then takes its arms back. A poller
 * that had swapped an arm out of its slot before that still holds a
 * pointer to it; the caller waits for that poller's `done` (set after its
 * last touch) before its stack frame goes away. */
#include <errno.h>
#include <sched.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <moirai/core/park.h>

#include "async_internal.h"
#include "iowait.h"
#include "moirai_probe.h"
#include "netpoll.h"

#define WAIT_CLOSED INT32_MAX

void moirai__wait_init(moirai__wait_t *w)
{
    atomic_init(&w->winner, -1);
    atomic_init(&w->word, 0);
    w->park_addr = &w->word;
}

bool moirai__wait_fire(moirai__arm_t *arm)
{
    moirai__wait_t *w = arm->wait;
    int none = -1;
    /* Acq_rel: the winner's claim orders its later word store; acquire on
     * failure is not needed (the loser only reports). */
    if (!atomic_compare_exchange_strong_explicit(&w->winner, &none, arm->index,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return false;
    _Atomic uint32_t *addr = w->park_addr;
    /* Release: the caller reads the word with acquire. After this store
     * the caller may return and its frame (w) may be gone: only the
     * address is used below, and an unpark of a stale address is a
     * harmless spurious wake. */
    atomic_store_explicit(&w->word, 1, memory_order_release);
    moirai_unpark_all(addr);
    return true;
}

bool moirai__wait_close(moirai__wait_t *w)
{
    int none = -1;
    return atomic_compare_exchange_strong_explicit(&w->winner, &none, WAIT_CLOSED,
                                                   memory_order_acq_rel, memory_order_acquire);
}

/* Waits, without a deadline, for a poller in the middle of a few
 * instructions: yields the fiber or the thread. */
static void pause_briefly(void)
{
    if (moirai__fiber_self() != NULL)
        moirai_fiber_yield();
    else
        sched_yield();
}

void moirai__wait_settle(moirai__wait_t *w)
{
    /* Acquire: pairs with the winner's release store. */
    while (atomic_load_explicit(&w->word, memory_order_acquire) == 0)
        pause_briefly();
}

void moirai__io_notify(_Atomic uintptr_t *slot)
{
    /* Seq_cst: moirai_io_close() stores `closed` and then notifies; a
     * waiter installs its arm and then reads `closed`. Both seq_cst, so
     * one of them sees the other. */
    uintptr_t s = atomic_load_explicit(slot, memory_order_seq_cst);
    for (;;) {
        if (s == MOIRAI__SLOT_READY)
            return;
        if (s == 0) {
            /* Release: a waiter that takes READY and retries sees the
             * data the edge announced (the kernel orders that anyway). */
            if (atomic_compare_exchange_weak_explicit(slot, &s, MOIRAI__SLOT_READY,
                                                      memory_order_release, memory_order_acquire))
                return;
            continue;
        }
        /* Acquire: the arm's fields were written before it was installed
         * with release. */
        if (!atomic_compare_exchange_weak_explicit(slot, &s, 0, memory_order_acquire,
                                                   memory_order_acquire))
            continue;
        moirai__arm_t *arm = (moirai__arm_t *)s;
        if (moirai__wait_fire(arm))
            return;
        /* Another source won that wait: keep the edge for the next waiter,
         * then let the arm's owner go. */
        atomic_store_explicit(&arm->done, 1, memory_order_release);
        s = atomic_load_explicit(slot, memory_order_acquire);
    }
}

int moirai__io_arm(_Atomic uintptr_t *slot, moirai__arm_t *arm)
{
    atomic_init(&arm->done, 0);
    uintptr_t s = atomic_load_explicit(slot, memory_order_acquire);
    for (;;) {
        if (s == MOIRAI__SLOT_READY) {
            /* Acquire: pairs with the poller's release of READY. */
            if (atomic_compare_exchange_weak_explicit(slot, &s, 0, memory_order_acquire,
                                                      memory_order_acquire))
                return 1;
            continue;
        }
        if (s != 0)
            return -EBUSY;
        /* Release: the poller that swaps the arm out reads its fields;
         * seq_cst for the close handshake (moirai__io_notify). */
        if (atomic_compare_exchange_weak_explicit(slot, &s, (uintptr_t)arm, memory_order_seq_cst,
                                                  memory_order_acquire))
            return 0;
    }
}

void moirai__io_disarm(_Atomic uintptr_t *slot, moirai__arm_t *arm)
{
    uintptr_t mine = (uintptr_t)arm;
    if (atomic_compare_exchange_strong_explicit(slot, &mine, 0, memory_order_relaxed,
                                                memory_order_relaxed))
        return;
    /* A poller swapped it out: it either won the wait (then the caller
     * settles on the word) or it lost and sets `done` as its last touch. */
    moirai__arm_release(arm);
}

void moirai__arm_release(moirai__arm_t *arm)
{
    moirai__wait_t *w = arm->wait;
    for (;;) {
        if (atomic_load_explicit(&arm->done, memory_order_acquire))
            return;
        if (atomic_load_explicit(&w->winner, memory_order_acquire) == arm->index) {
            moirai__wait_settle(w);
            return;
        }
        pause_briefly();
    }
}

int moirai__io_wait(moirai_io_t *io, _Atomic uintptr_t *slot, uint64_t deadline)
{
    moirai__wait_t w;
    moirai__wait_init(&w);
    moirai__arm_t arm = {.wait = &w, .index = 0};
    int rc = moirai__io_arm(slot, &arm);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    /* A close that came before the arm was installed woke nobody. */
    if (atomic_load_explicit(&io->closed, memory_order_seq_cst)) {
        moirai__io_disarm(slot, &arm);
        return -EBADF;
    }
    rc = 0;
    MOIRAI_PROBE2(io_wait, io->fd, slot == &io->wslot);
    while (atomic_load_explicit(&w.word, memory_order_acquire) == 0) {
        rc = moirai__iowait_park(&w.word, 0, deadline);
        if (rc != 0)
            break;
    }
    if (rc != 0 && !moirai__wait_close(&w))
        rc = 0; /* fired meanwhile: the readiness wins over the error */
    if (rc != 0)
        moirai__io_disarm(slot, &arm);
    else
        moirai__wait_settle(&w);
    MOIRAI_PROBE3(io_ready, io->fd, slot == &io->wslot, rc);
    if (rc == 0 && atomic_load_explicit(&io->closed, memory_order_acquire))
        return -EBADF;
    return rc;
}

/* ---- Life of a handle ---- */

int moirai__io_new(moirai__netpoll_t *np, int fd, int kind, moirai_io_t **out)
{
    moirai_io_t *io = moirai__netpoll_alloc(np);
    if (io == NULL)
        return -ENOMEM;
    io->fd = fd;
    io->kind = kind;
    atomic_store_explicit(&io->rslot, 0, memory_order_relaxed);
    atomic_store_explicit(&io->wslot, 0, memory_order_relaxed);
    atomic_store_explicit(&io->closed, 0, memory_order_relaxed);
    uint32_t gen = atomic_load_explicit(&io->gen, memory_order_relaxed);
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.u64 = (uint64_t)io->index | (uint64_t)gen << 32,
    };
    if (epoll_ctl(moirai__netpoll_epfd(np), EPOLL_CTL_ADD, fd, &ev) != 0) {
        int err = -errno;
        atomic_store_explicit(&io->closed, 1, memory_order_relaxed);
        io->fd = -1;
        moirai__netpoll_free(np, io);
        /* epoll refuses a regular file or directory with -EPERM, which
         * is also what moirai_pipe_open() reports for them. */
        return err;
    }
    /* Release: an operation that takes a reference sees the fields. */
    atomic_store_explicit(&io->refs, 1, memory_order_release);
    *out = io;
    return 0;
}

int moirai__io_acquire(moirai_io_t *io)
{
    if (io == NULL)
        return -EINVAL;
    uint32_t r = atomic_load_explicit(&io->refs, memory_order_acquire);
    do {
        if (r == 0)
            return -EBADF;
    } while (!atomic_compare_exchange_weak_explicit(&io->refs, &r, r + 1, memory_order_acquire,
                                                    memory_order_acquire));
    if (atomic_load_explicit(&io->closed, memory_order_acquire)) {
        moirai__io_release(io);
        return -EBADF;
    }
    return 0;
}

void moirai__io_release(moirai_io_t *io)
{
    /* Acq_rel: the last one out sees every operation's writes before it
     * closes the descriptor and frees the slot. */
    if (atomic_fetch_sub_explicit(&io->refs, 1, memory_order_acq_rel) != 1)
        return;
    epoll_ctl(moirai__netpoll_epfd(io->np), EPOLL_CTL_DEL, io->fd, NULL);
    close(io->fd);
    io->fd = -1;
    /* Release: a poller comparing generations with acquire drops events
     * of the old handle. */
    atomic_fetch_add_explicit(&io->gen, 1, memory_order_release);
    moirai__netpoll_free(io->np, io);
}

void moirai__io_event(moirai__netpoll_t *np, uint64_t data, uint32_t events)
{
    moirai_io_t *io = moirai__netpoll_slot(np, (uint32_t)data);
    if (io == NULL ||
        atomic_load_explicit(&io->gen, memory_order_acquire) != (uint32_t)(data >> 32))
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        moirai__io_notify(&io->rslot);
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        moirai__io_notify(&io->wslot);
}

int moirai_io_close(moirai_io_t *io)
{
    if (io == NULL)
        return -EINVAL;
    int rc = moirai__io_acquire(io);
    if (rc != 0)
        return rc;
    uint32_t open = 0;
    /* Seq_cst: pairs with the waiters' seq_cst re-check after arming, so
     * either the waiter sees the flag or this notify finds its arm. */
    if (!atomic_compare_exchange_strong_explicit(&io->closed, &open, 1, memory_order_seq_cst,
                                                 memory_order_relaxed)) {
        moirai__io_release(io);
        return -EBADF;
    }
    moirai__io_notify(&io->rslot);
    moirai__io_notify(&io->wslot);
    moirai__io_release(io); /* this call's */
    moirai__io_release(io); /* the user's */
    return 0;
}

int moirai_io_fd(moirai_io_t *io)
{
    int rc = moirai__io_acquire(io);
    if (rc != 0)
        return rc;
    int fd = io->fd;
    moirai__io_release(io);
    return fd;
}

static int name_of(moirai_io_t *io, struct sockaddr *addr, socklen_t *len, bool peer)
{
    if (addr == NULL || len == NULL)
        return -EINVAL;
    int rc = moirai__io_acquire(io);
    if (rc != 0)
        return rc;
    int r = peer ? getpeername(io->fd, addr, len) : getsockname(io->fd, addr, len);
    rc = r == 0 ? 0 : -errno;
    moirai__io_release(io);
    return rc;
}

int moirai_io_local_addr(moirai_io_t *io, struct sockaddr *addr, socklen_t *len)
{
    return name_of(io, addr, len, false);
}

int moirai_io_peer_addr(moirai_io_t *io, struct sockaddr *addr, socklen_t *len)
{
    return name_of(io, addr, len, true);
}
