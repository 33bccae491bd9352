/* The poller: readiness of every socket and pipe of a runtime, from one
 * edge-triggered epoll set (netpoll.c), and the handles it serves (io.c).
 *
 * Each descriptor is added to the set once, when its handle is made, for
 * input and output, edge-triggered: no system call per operation, and no
 * lock, since epoll_ctl and epoll_wait are thread-safe. Who waits for the
 * set: with a scheduler the runtime created, its idle workers (through
 * moirai-sched's idle hooks), so that the worker that saw an event runs
 * the fiber it woke; with a borrowed scheduler, a poller thread of our own.
 *
 * Each handle has two readiness slots, read and write. A slot holds 0
 * (nothing known), SLOT_READY (an edge came and nobody took it) or a
 * pointer to the arm of a waiting caller. A waiter that finds READY takes
 * it and retries its system call; one that finds 0 installs its arm and
 * parks; the poller swaps an arm out and fires it, or leaves READY. A
 * retry after a spurious READY only costs an EAGAIN, so the poller never
 * needs to know what the waiter wanted.
 *
 * Handles live in slabs that are freed only with the poller, and an event
 * names its handle by slab index and generation: an event for a handle
 * closed since is dropped, and one that races with the close at worst
 * marks a reused slot READY, which is harmless as said above. */
#ifndef MOIRAI_ASYNC_NETPOLL_H
#define MOIRAI_ASYNC_NETPOLL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <moirai/async/net.h>
#include <moirai/sched/job.h>

#include "lock.h"

typedef struct moirai__netpoll moirai__netpoll_t;

#define MOIRAI__SLOT_READY ((uintptr_t)1)

/* One wait of one caller, possibly on several sources at once (select):
 * whichever source fires first claims `winner` and wakes the caller. */
typedef struct moirai__wait {
    _Atomic int winner;          /* -1 until claimed; then the arm's index */
    _Atomic uint32_t word;       /* set to 1 by the winner, then unparked */
    _Atomic uint32_t *park_addr; /* what the caller parks on (normally &word) */
} moirai__wait_t;

/* One source of a wait. `done` is set by a poller that swapped the arm
 * out of its slot but lost the claim: the last moment it touches the arm,
 * which lives on the waiter's stack. */
typedef struct moirai__arm {
    moirai__wait_t *wait;
    int index;
    _Atomic uint32_t done;
} moirai__arm_t;

enum moirai__io_kind {
    MOIRAI__IO_LISTENER = 1,
    MOIRAI__IO_SOCKET, /* a connected stream socket */
    MOIRAI__IO_PIPE,   /* a pipe, FIFO or character device */
    MOIRAI__IO_DGRAM,
};

struct moirai_io {
    _Atomic uintptr_t rslot;
    _Atomic uintptr_t wslot;
    /* Live handle: 1 for the user plus one per operation in progress; 0
     * when it is free. Taken only by CAS from a non-zero value. */
    _Atomic uint32_t refs;
    _Atomic uint32_t closed;
    _Atomic uint32_t gen; /* bumped when the slot is freed */
    int fd;
    int kind;
    moirai_tcp_config_t tcp; /* listeners: what accepted streams get */
    moirai__netpoll_t *np;
    uint32_t index;
    struct moirai_io *next_free;
};

/* ---- netpoll.c ---- */

/* Creates the poller for `workers` regular workers; with `own_thread` it
 * also starts the poller thread (borrowed scheduler). */
int moirai__netpoll_create(moirai__netpoll_t **out, int workers, bool own_thread);
/* Frees it: every handle must be closed and its operations over. */
void moirai__netpoll_destroy(moirai__netpoll_t *np);
/* The idle hooks a scheduler created for the runtime uses. */
const moirai_sched_idle_hooks_t *moirai__netpoll_hooks(moirai__netpoll_t *np);
/* Open handles (closed handles whose last operation has not left count). */
uint64_t moirai__netpoll_open_handles(moirai__netpoll_t *np);

/* ---- io.c ---- */

/* Makes a handle for `fd` (non-blocking already) and adds it to the epoll
 * set. On error the fd is left open. */
int moirai__io_new(moirai__netpoll_t *np, int fd, int kind, moirai_io_t **out);
/* Takes a reference for an operation: -EINVAL (NULL) or -EBADF (closed). */
int moirai__io_acquire(moirai_io_t *io);
void moirai__io_release(moirai_io_t *io);
/* The poller saw readiness for `slot`. */
void moirai__io_notify(_Atomic uintptr_t *slot);
/* The poller's event for handle (index, generation). */
void moirai__io_event(moirai__netpoll_t *np, uint64_t data, uint32_t events);
/* Waits until `slot` reports readiness: 0 (retry the system call),
 * -EBADF (closed meanwhile), -EBUSY (someone else waits on the slot),
 * -ETIMEDOUT or -ECANCELED. */
int moirai__io_wait(moirai_io_t *io, _Atomic uintptr_t *slot, uint64_t deadline);

/* Arms: shared with select.c. Installs `arm` in `slot`: 1 if readiness
 * was there already (taken; nothing installed), 0 if installed, -EBUSY. */
int moirai__io_arm(_Atomic uintptr_t *slot, moirai__arm_t *arm);
/* Removes `arm` from `slot` if it is still there; otherwise waits until
 * the poller that took it is done with it. */
void moirai__io_disarm(_Atomic uintptr_t *slot, moirai__arm_t *arm);
/* Waits until whoever took `arm` out of its source (a poller, an
 * unparker) is done with it: it set `done`, or it won the wait. */
void moirai__arm_release(moirai__arm_t *arm);
/* Claims `wait` for `arm` and wakes its caller; false if another arm won. */
bool moirai__wait_fire(moirai__arm_t *arm);
void moirai__wait_init(moirai__wait_t *w);
/* Closes the wait so no arm can win it any more: true if none had. */
bool moirai__wait_close(moirai__wait_t *w);
/* After an arm won: waits until the winner finished waking us. */
void moirai__wait_settle(moirai__wait_t *w);

/* The slab slot of `index`, for the poller (NULL if never allocated). */
moirai_io_t *moirai__netpoll_slot(moirai__netpoll_t *np, uint32_t index);
/* Slab allocation (netpoll.c): a free handle with `refs` 0, or NULL. */
moirai_io_t *moirai__netpoll_alloc(moirai__netpoll_t *np);
void moirai__netpoll_free(moirai__netpoll_t *np, moirai_io_t *io);
int moirai__netpoll_epfd(moirai__netpoll_t *np);

#endif
