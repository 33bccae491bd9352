/* Channels: typed hand-off between threads and fibers, with Go's
 * semantics.
 *
 * A channel carries elements of one fixed size (pointer-sized by
 * default), copied in on send and out on receive. Its capacity picks the
 * kind:
 *
 *   0 (the default)         rendezvous: a send completes only when a
 *                           receiver takes the element (Go's `make(chan T)`);
 *   N > 0                   bounded: a ring of N elements; a send waits
 *                           while it is full, a receive while it is empty;
 *   MOIRAI_CHAN_UNBOUNDED   a linked list of segments that grows on send
 *                           (a send never waits, but can fail with -ENOMEM);
 *   `oneshot` set           capacity 1 and at most one send ever: that send
 *                           closes the channel, so the receiver gets the
 *                           element and then -EPIPE, and a second send gets
 *                           -EPIPE.
 *
 * Any number of senders and receivers (MPMC), threads and fibers mixed.
 * The try_ forms never wait for room, an element or a peer; like every
 * call here they may wait briefly for the channel's internal lock, which is
 * held only to copy an element and link or unlink a waiter.
 *
 * Blocking goes through core's parking layer (moirai/core/park.h): a
 * blocked fiber parks only itself, a blocked thread yields its CPU a few
 * times, spins briefly and then sleeps. Waiters are
 * served first come, first served, and a sender that finds a receiver
 * waiting copies straight into the receiver's buffer.
 *
 * Closing follows Go: after moirai_chan_close() receivers still drain what
 * is buffered, then get -EPIPE; every send gets -EPIPE (never a crash);
 * blocked senders and receivers are woken with -EPIPE (a blocked sender's
 * element was not accepted and stays the caller's).
 *
 * Memory ordering, for every kind: a successful send happens before the
 * receive that returns its element (everything the sender wrote before
 * sending is visible to the receiver after receiving), and a close happens
 * before every -EPIPE it causes. Per producer, elements are received in the
 * order they were sent. */
#ifndef MOIRAI_TRANSPORT_CHAN_H
#define MOIRAI_TRANSPORT_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/async/select.h>
#include <moirai/transport/export.h>

/* A channel (see above). Opaque; created and destroyed by the functions below. */
typedef struct moirai_chan moirai_chan_t;

/* `capacity` of a channel that grows without bound. */
#define MOIRAI_CHAN_UNBOUNDED SIZE_MAX

/* The largest element, in bytes. Larger payloads go through a pointer. */
#define MOIRAI_CHAN_ELEM_MAX ((size_t)64 * 1024)

/* The largest bounded capacity, in elements; the buffer (capacity times
 * element size) must also stay below MOIRAI_CHAN_BUFFER_MAX bytes. */
#define MOIRAI_CHAN_CAPACITY_MAX ((size_t)1 << 30)
#define MOIRAI_CHAN_BUFFER_MAX   ((uint64_t)1 << 34)

/* How to build a channel. Fill it with moirai_chan_config_init(); a zeroed
 * field means its default. */
typedef struct moirai_chan_config {
    /* Bytes per element. 0: sizeof(void *) (a channel of pointers). At most
     * MOIRAI_CHAN_ELEM_MAX. */
    size_t elem_size;
    /* 0: rendezvous (the default, as Go's unbuffered channel); N: bounded
     * (at most MOIRAI_CHAN_CAPACITY_MAX); MOIRAI_CHAN_UNBOUNDED. */
    size_t capacity;
    /* A one-shot channel: capacity must be 0 or 1 (it gets 1). */
    bool oneshot;
    /* Close the channel when moirai_chan_sender_drop() takes the count of
     * senders to zero. */
    bool close_on_last_sender;
    /* Close the channel when moirai_chan_receiver_drop() takes the count
     * of receivers to zero (later sends then get -EPIPE). */
    bool close_on_last_receiver;
} moirai_chan_config_t;

/* Counters of one channel, read together under the channel's lock: a
 * consistent snapshot, already stale when it returns while the channel is
 * in use. */
typedef struct moirai_chan_stats {
    uint64_t sent;           /* elements accepted by sends */
    uint64_t received;       /* elements returned by receives */
    uint64_t bytes_sent;     /* sent times the element size */
    uint64_t bytes_received; /* received times the element size */
    uint64_t blocked_sends;  /* sends that had to wait (park) */
    uint64_t blocked_recvs;  /* receives that had to wait (park) */
    uint64_t len;            /* elements buffered now */
} moirai_chan_stats_t;

/* The direction of a select case or arm. */
typedef enum moirai_chan_dir {
    MOIRAI_CHAN_SEND = 1, /* send an element into the channel */
    MOIRAI_CHAN_RECV = 2, /* receive an element from the channel */
} moirai_chan_dir_t;

/* One case of moirai_chan_select(). */
typedef struct moirai_chan_case {
    /* The channel; NULL disables the case (it is never chosen, as a nil
     * channel in Go). */
    moirai_chan_t *chan;
    moirai_chan_dir_t dir;
    /* MOIRAI_CHAN_SEND: the element to send (elem_size bytes).
     * MOIRAI_CHAN_RECV: where the received element goes (NULL: dropped). */
    void *elem;
    /* Set on the chosen case only: 0, -EPIPE (the channel is closed; a
     * receive found nothing left) or -ENOMEM (an unbounded channel could
     * not grow; nothing was sent). */
    int result;
} moirai_chan_case_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Sets every field of `*cfg` to its default (all zero: a rendezvous
 * channel of pointers). NULL is ignored. Never blocks. */
MOIRAI_TRANSPORT_API void moirai_chan_config_init(moirai_chan_config_t *cfg);

/* Creates a channel (cfg NULL: all defaults). Never blocks. Thread-safe.
 * Returns 0, -EINVAL (NULL out; elem_size above MOIRAI_CHAN_ELEM_MAX;
 * capacity above MOIRAI_CHAN_CAPACITY_MAX and not MOIRAI_CHAN_UNBOUNDED;
 * capacity times elem_size above MOIRAI_CHAN_BUFFER_MAX; oneshot with a
 * capacity other than 0 or 1) or -ENOMEM; on error `*out` is unchanged. */
MOIRAI_TRANSPORT_API int moirai_chan_create(moirai_chan_t **out, const moirai_chan_config_t *cfg);

/* Frees the channel and any elements still buffered (they are dropped as
 * bytes: pointers in them are not freed). NULL is ignored. Never blocks.
 * Returns 0, or -EBUSY when a sender or receiver is blocked on it (nothing
 * is freed then). Calls that have returned, including those a send or
 * close completed, are done with the channel; no call may start
 * concurrently with or after a successful destroy. */
MOIRAI_TRANSPORT_API int moirai_chan_destroy(moirai_chan_t *ch);

/* The element size, in bytes. Never blocks; thread-safe. 0 for NULL. */
MOIRAI_TRANSPORT_API size_t moirai_chan_elem_size(const moirai_chan_t *ch);

/* Sends the element at `elem` (elem_size bytes, copied). Waits while a
 * bounded channel is full, and on a rendezvous channel until a receiver
 * takes it (parks a fiber). Thread-safe (any number of senders). Release:
 * see the header comment. Returns 0, -EINVAL (NULL ch or elem), -EPIPE
 * (closed, before or while waiting: the element was not accepted),
 * -ENOMEM (an unbounded channel could not grow; nothing changed), or
 * -ECANCELED (the calling fiber's task was cancelled; not accepted). */
MOIRAI_TRANSPORT_API int moirai_chan_send(moirai_chan_t *ch, const void *elem);

/* As moirai_chan_send(), waiting at most until `deadline` (absolute,
 * moirai_clock_now_ns(); MOIRAI_DEADLINE_NEVER: no limit). Also returns
 * -ETIMEDOUT (not accepted). */
MOIRAI_TRANSPORT_API int moirai_chan_send_timed(moirai_chan_t *ch, uint64_t deadline,
                                                const void *elem);

/* As moirai_chan_send() without waiting: -EAGAIN when it would wait (a
 * full bounded channel; a rendezvous channel with no receiver waiting).
 * Never waits for room or a peer (only, briefly, for the internal lock). */
MOIRAI_TRANSPORT_API int moirai_chan_try_send(moirai_chan_t *ch, const void *elem);

/* Receives the oldest element into `elem` (elem_size bytes; NULL drops
 * it). Waits while the channel is empty and open (parks a fiber).
 * Thread-safe (any number of receivers). Acquire: see the header comment.
 * Returns 0, -EINVAL (NULL ch), -EPIPE (closed and drained), or
 * -ECANCELED (the calling fiber's task was cancelled; nothing taken). */
MOIRAI_TRANSPORT_API int moirai_chan_recv(moirai_chan_t *ch, void *elem);

/* As moirai_chan_recv(), waiting at most until `deadline`. Also returns
 * -ETIMEDOUT (nothing taken). */
MOIRAI_TRANSPORT_API int moirai_chan_recv_timed(moirai_chan_t *ch, uint64_t deadline, void *elem);

/* As moirai_chan_recv() without waiting: -EAGAIN when empty and open (on
 * a rendezvous channel: no sender waiting). Never waits for an element
 * or a peer (only, briefly, for the internal lock). */
MOIRAI_TRANSPORT_API int moirai_chan_try_recv(moirai_chan_t *ch, void *elem);

/* Closes the channel (see the header comment) and wakes every blocked
 * sender and receiver. Never blocks. Thread-safe. Returns 0, -EINVAL
 * (NULL), or -EALREADY (already closed, also by a one-shot's send or a
 * last endpoint leaving; nothing changes). */
MOIRAI_TRANSPORT_API int moirai_chan_close(moirai_chan_t *ch);

/* True once the channel is closed. Never blocks; thread-safe (acquire).
 * false for NULL. */
MOIRAI_TRANSPORT_API bool moirai_chan_is_closed(const moirai_chan_t *ch);

/* Count senders and receivers, so that the last one leaving can close the
 * channel (config close_on_last_sender / close_on_last_receiver). Counts
 * start at 0; each user adds itself before use and drops itself when done.
 * Never block; thread-safe. add returns 0 or -EINVAL (NULL; the counts
 * are 64-bit and do not overflow); drop returns 0 or -EINVAL (NULL, or
 * the count is already 0). A drop that closes the channel wakes everyone blocked on it
 * and, like close, happens before the -EPIPE it causes. */
MOIRAI_TRANSPORT_API int moirai_chan_sender_add(moirai_chan_t *ch);
MOIRAI_TRANSPORT_API int moirai_chan_sender_drop(moirai_chan_t *ch);
MOIRAI_TRANSPORT_API int moirai_chan_receiver_add(moirai_chan_t *ch);
MOIRAI_TRANSPORT_API int moirai_chan_receiver_drop(moirai_chan_t *ch);

/* Copies the counters into `*out`. Waits only for the channel's short
 * internal lock; thread-safe. Returns 0 or -EINVAL (a NULL argument). */
MOIRAI_TRANSPORT_API int moirai_chan_stats(const moirai_chan_t *ch, moirai_chan_stats_t *out);

/* Performs exactly one of the `n` cases, as Go's select: it waits until
 * at least one can proceed, picks one of the ready cases at random (so
 * that, over many selects, each ready case wins a fair share), performs
 * it and returns its index with `cases[i].result` set. A receive is ready
 * when an element is there or the channel is closed (result -EPIPE); a
 * send when it would not wait or the channel is closed (result -EPIPE).
 * On a rendezvous channel a select's send pairs with a receiver blocked
 * in moirai_chan_recv() (and a select's receive with a blocked sender),
 * not with another select's opposite case. Parks a fiber; a thread
 * sleeps. Thread-safe. Ordering: as the send or receive performed.
 * Returns the index, -EINVAL (NULL cases, n 0 or above
 * MOIRAI_SELECT_MAX_ARMS, a bad direction, a send case with a NULL elem,
 * or every case disabled with no deadline), -ETIMEDOUT (the `_timed`
 * deadline; nothing was done), or -ECANCELED (the calling fiber's task
 * was cancelled; nothing was done). */
MOIRAI_TRANSPORT_API int moirai_chan_select(moirai_chan_case_t *cases, size_t n);
MOIRAI_TRANSPORT_API int moirai_chan_select_timed(uint64_t deadline, moirai_chan_case_t *cases,
                                                  size_t n);

/* As moirai_chan_select() without waiting: -EAGAIN when no case is ready.
 * Never waits for a case (only, briefly, for the channels' locks). */
MOIRAI_TRANSPORT_API int moirai_chan_try_select(moirai_chan_case_t *cases, size_t n);

/* Fills `*arm` with a MOIRAI_SELECT_WORD arm of moirai-async's select
 * (moirai/async/select.h) that fires when the channel may have become
 * ready for `dir` (an element arrived, room freed, a rendezvous peer
 * began to wait, or the channel closed), so that channels wait together
 * with sockets, timers and handles. If the direction is ready already,
 * the arm fires at once. Arm right before each moirai_select() and, after
 * it returns, do the operation with the try_ form: readiness is reported,
 * not reserved, so another thread may have taken it (then arm and select
 * again). Never blocks; thread-safe. Returns 0 or -EINVAL (NULL ch or
 * arm, a bad direction). */
MOIRAI_TRANSPORT_API int moirai_chan_select_arm(moirai_chan_t *ch, moirai_chan_dir_t dir,
                                                moirai_select_arm_t *arm);

#ifdef __cplusplus
}
#endif

#endif
