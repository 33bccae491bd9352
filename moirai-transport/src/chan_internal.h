/* The inside of a channel, shared by chan.c (send, receive, close),
 * chan_buf.c (the element buffer) and chan_select.c (select). */
#ifndef MOIRAI_TRANSPORT_CHAN_INTERNAL_H
#define MOIRAI_TRANSPORT_CHAN_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/sync/mutex.h>
#include <moirai/transport/chan.h>

/* A blocked sender or receiver, on its own stack. It parks on `state`,
 * which the peer that completes it (or close) changes under the channel
 * lock, so the waiter never touches the channel again after it sees the
 * change. */
typedef struct chan_waiter {
    struct chan_waiter *next, *prev;
    void *elem; /* a sender's element, or a receiver's destination (may be NULL) */
    _Atomic uint32_t state;
} chan_waiter_t;

enum { WAITER_WAITING = 0, WAITER_DONE = 1, WAITER_CLOSED = 2 };

/* A FIFO of waiters. */
typedef struct chan_waitq {
    chan_waiter_t *head, *tail;
    size_t n;
} chan_waitq_t;

/* One segment of an unbounded channel's list. */
typedef struct chan_seg {
    struct chan_seg *next;
    unsigned char data[];
} chan_seg_t;

/* The element buffer: a ring (bounded) or a list of segments (unbounded).
 * A rendezvous channel has capacity 0 and no storage. */
typedef struct chan_buf {
    size_t elem; /* bytes per element */
    size_t cap;  /* bounded: ring slots; unbounded: SIZE_MAX; rendezvous: 0 */
    size_t len;  /* elements held */
    size_t head; /* ring: slot of the oldest; segments: index in head_seg */
    unsigned char *ring;
    chan_seg_t *head_seg, *tail_seg, *spare;
    size_t seg_elems; /* elements per segment */
    size_t tail_idx;  /* segments: next free index in tail_seg */
} chan_buf_t;

struct moirai_chan {
    moirai_mutex_t lock;
    chan_buf_t buf;
    chan_waitq_t senders;   /* blocked senders (full buffer, or rendezvous) */
    chan_waitq_t receivers; /* blocked receivers (empty buffer) */
    bool oneshot, close_on_last_sender, close_on_last_receiver;
    bool oneshot_sent;
    uint64_t nsenders, nreceivers; /* endpoint counts, under the lock (never overflow) */
    _Atomic bool closed;           /* written under the lock, read anywhere */
    /* Select words, one per direction: bit 0 says "a select may be
     * watching" (set by moirai_chan_select_arm()), the other bits count
     * changes. A change of the direction's readiness, made under the lock,
     * bumps the count and clears the bit only when the bit is set, so a
     * channel nobody selects on pays one relaxed load per operation. */
    _Atomic uint32_t recv_word; /* an element arrived, a sender waits, or closed */
    _Atomic uint32_t send_word; /* room freed, a receiver waits, or closed */
    /* Counters, written and read (by moirai_chan_stats) under the lock. */
    uint64_t sent, received, blocked_sends, blocked_recvs;
};

/* chan_buf.c. Everything below runs under the channel lock. */
int moirai__chan_buf_init(chan_buf_t *b, size_t elem, size_t cap);
void moirai__chan_buf_fini(chan_buf_t *b);
/* Room for one more element without waiting (unbounded: always). */
bool moirai__chan_buf_has_room(const chan_buf_t *b);
/* Appends; 0 or -ENOMEM (unbounded growth failed; nothing changed). */
int moirai__chan_buf_push(chan_buf_t *b, const void *elem);
/* Removes the oldest into `out` (NULL: dropped). len must be > 0. */
void moirai__chan_buf_pop(chan_buf_t *b, void *out);

/* chan_select.c: bumps a select word (see above) if a select may be
 * watching; returns true when the caller must unpark it after unlocking.
 * Under the lock. */
bool moirai__chan_word_bump(_Atomic uint32_t *word);
/* Unparks a bumped word's watchers (after unlocking). */
void moirai__chan_word_wake(_Atomic uint32_t *word);

/* chan.c, for select: the operation if it can proceed now (0, -EPIPE,
 * -ENOMEM), else -EAGAIN. */
int moirai__chan_try_op(moirai_chan_t *ch, moirai_chan_dir_t dir, void *elem);
/* chan.c: is `dir` ready now (an operation would not wait)? Locks. */
bool moirai__chan_ready(moirai_chan_t *ch, moirai_chan_dir_t dir);

#endif
