/* Channels (moirai/transport/chan.h): one lock per channel over an element
 * buffer and two FIFOs of blocked waiters, in the manner of Go's runtime.
 *
 * Why a lock: every operation touches the buffer and, when someone waits,
 * a waiter queue; one short critical section keeps close, rendezvous and
 * hand-off exact (nothing lost or duplicated whatever interleaves) and
 * makes each waiter's wake-up targeted instead of a broadcast. The lock is
 * moirai-sync's mutex, which spins briefly and then parks, so a fiber that
 * finds it taken parks like any other Moirai wait.
 *
 * Why waiters on their own words: a blocked sender or receiver parks on a
 * word in its own stack frame. The peer that completes it copies the
 * element directly (to the receiver's destination, or out of the sender's
 * source), then stores DONE with release under the lock, so the waiter's
 * acquire load of its word sees the element. The waker unparks after
 * unlocking; by then the waiter may have returned, which is harmless,
 * because unparking reads nothing at the address (at worst another wait
 * later placed there wakes spuriously and re-checks). */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <string.h>

#include <moirai/async/fiber.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/park.h>
#include <moirai/core/task.h>
#include <moirai/transport/chan.h>

#include "chan_internal.h"
#include "moirai_probe.h"

/* How many times a blocked thread yields its CPU before parking. A
 * channel's peer often answers within microseconds (a ping-pong), but on
 * a loaded machine the peer may be waiting for this very CPU; a sleep and
 * a futex wake-up cost 10-20 us there, a yield a fraction of that. The
 * yields are bounded, so an idle wait still ends parked. Fibers never
 * yield here: parking a fiber is already cheap. */
#define WAIT_YIELDS 16

/* Wake-ups collected under the lock and done after unlocking. */
typedef struct wake {
    _Atomic uint32_t *waiter;
    bool recv_word, send_word;
} wake_t;

static void do_wake(moirai_chan_t *ch, const wake_t *wk)
{
    if (wk->waiter != NULL)
        moirai_unpark_one(wk->waiter);
    if (wk->recv_word)
        moirai__chan_word_wake(&ch->recv_word);
    if (wk->send_word)
        moirai__chan_word_wake(&ch->send_word);
}

static void q_push(chan_waitq_t *q, chan_waiter_t *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail != NULL)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    q->n++;
}

static void q_remove(chan_waitq_t *q, chan_waiter_t *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    q->n--;
}

static chan_waiter_t *q_pop(chan_waitq_t *q)
{
    chan_waiter_t *w = q->head;
    if (w != NULL)
        q_remove(q, w);
    return w;
}

/* Counters are written only under the lock; stats reads them there too. */
static void count(uint64_t *c)
{
    (*c)++;
}

/* Ends a waiter's wait. Release: the element copied for it (or from it)
 * is visible once the waiter sees the new state. */
static void complete(chan_waiter_t *w, uint32_t state)
{
    MOIRAI_PROBE2(chan_wake, w, state);
    atomic_store_explicit(&w->state, state, memory_order_release);
}

/* Marks the channel closed and fails every waiter with -EPIPE. Waiters
 * are unparked here, under the lock, because they cannot be remembered
 * past it without memory; close is rare and the hold is short. */
static void close_locked(moirai_chan_t *ch, wake_t *wk)
{
    /* Release: pairs with moirai_chan_is_closed()'s acquire load. */
    atomic_store_explicit(&ch->closed, true, memory_order_release);
    chan_waitq_t *qs[2] = {&ch->senders, &ch->receivers};
    for (int k = 0; k < 2; k++) {
        chan_waiter_t *w;
        while ((w = q_pop(qs[k])) != NULL) {
            _Atomic uint32_t *state = &w->state;
            complete(w, WAITER_CLOSED);
            moirai_unpark_one(state);
        }
    }
    wk->recv_word |= moirai__chan_word_bump(&ch->recv_word);
    wk->send_word |= moirai__chan_word_bump(&ch->send_word);
}

static bool is_closed_locked(const moirai_chan_t *ch)
{
    /* Relaxed: written only under the lock, which the caller holds. */
    return atomic_load_explicit(&ch->closed, memory_order_relaxed);
}

/* After a one-shot's send: close it. */
static void after_send(moirai_chan_t *ch, wake_t *wk)
{
    if (ch->oneshot) {
        ch->oneshot_sent = true;
        close_locked(ch, wk);
    }
}

/* A send that does not wait: 0, -EPIPE, -ENOMEM or -EAGAIN. Locked. */
static int send_locked(moirai_chan_t *ch, const void *elem, wake_t *wk)
{
    if (is_closed_locked(ch))
        return -EPIPE;
    chan_waiter_t *r = q_pop(&ch->receivers);
    if (r != NULL) {
        if (r->elem != NULL)
            memcpy(r->elem, elem, ch->buf.elem);
        wk->waiter = &r->state;
        complete(r, WAITER_DONE);
        count(&ch->sent);
        count(&ch->received);
        after_send(ch, wk);
        return 0;
    }
    if (!moirai__chan_buf_has_room(&ch->buf))
        return -EAGAIN;
    int rc = moirai__chan_buf_push(&ch->buf, elem);
    if (rc != 0)
        return rc;
    count(&ch->sent);
    wk->recv_word |= moirai__chan_word_bump(&ch->recv_word);
    after_send(ch, wk);
    return 0;
}

/* A receive that does not wait: 0, -EPIPE or -EAGAIN. Locked. */
static int recv_locked(moirai_chan_t *ch, void *out, wake_t *wk)
{
    chan_waiter_t *s;
    if (ch->buf.len > 0) {
        moirai__chan_buf_pop(&ch->buf, out);
        count(&ch->received);
        /* A sender blocked on the full ring moves into the slot just
         * freed, which keeps every producer's order. */
        if ((s = q_pop(&ch->senders)) != NULL) {
            (void)moirai__chan_buf_push(&ch->buf, s->elem); /* a ring with room: cannot fail */
            wk->waiter = &s->state;
            complete(s, WAITER_DONE);
            count(&ch->sent);
        } else {
            wk->send_word |= moirai__chan_word_bump(&ch->send_word);
        }
        return 0;
    }
    if ((s = q_pop(&ch->senders)) != NULL) {
        /* Rendezvous: take the element straight from the sender. */
        if (out != NULL)
            memcpy(out, s->elem, ch->buf.elem);
        wk->waiter = &s->state;
        complete(s, WAITER_DONE);
        count(&ch->sent);
        count(&ch->received);
        return 0;
    }
    return is_closed_locked(ch) ? -EPIPE : -EAGAIN;
}

static bool cancelled(void)
{
    const moirai_cancel_token_t *t = moirai_fiber_token();
    return t != NULL && moirai_cancel_token_is_cancelled(t);
}

/* Send or receive, waiting until `deadline` when `wait`. */
static int op(moirai_chan_t *ch, moirai_chan_dir_t dir, void *elem, uint64_t deadline, bool wait)
{
    wake_t wk = {0};
    moirai_mutex_lock(&ch->lock);
    int rc = dir == MOIRAI_CHAN_SEND ? send_locked(ch, elem, &wk) : recv_locked(ch, elem, &wk);
    if (rc != -EAGAIN || !wait) {
        moirai_mutex_unlock(&ch->lock);
        do_wake(ch, &wk);
        return rc;
    }
    /* A cancelled fiber never starts a wait (cancellation is sticky, as
     * for every other Moirai wait of a fiber). */
    if (cancelled())
        rc = -ECANCELED;
    else if (deadline != MOIRAI_DEADLINE_NEVER && moirai_deadline_expired(deadline))
        rc = -ETIMEDOUT;
    if (rc != -EAGAIN) {
        moirai_mutex_unlock(&ch->lock);
        return rc;
    }
    chan_waiter_t w = {.elem = elem};
    atomic_init(&w.state, WAITER_WAITING);
    chan_waitq_t *q = dir == MOIRAI_CHAN_SEND ? &ch->senders : &ch->receivers;
    q_push(q, &w);
    count(dir == MOIRAI_CHAN_SEND ? &ch->blocked_sends : &ch->blocked_recvs);
    MOIRAI_PROBE3(chan_block, ch, dir, &w);
    /* On a rendezvous channel a waiting sender is what makes receiving
     * ready (and the other way round): tell selects. On a ring the other
     * direction is ready already whenever anyone has to wait. */
    if (ch->buf.cap == 0) {
        if (dir == MOIRAI_CHAN_SEND)
            wk.recv_word = moirai__chan_word_bump(&ch->recv_word);
        else
            wk.send_word = moirai__chan_word_bump(&ch->send_word);
    }
    moirai_mutex_unlock(&ch->lock);
    do_wake(ch, &wk);

    int yields = moirai_fiber_current() == NULL ? WAIT_YIELDS : 0;
    for (;;) {
        /* Acquire: pairs with complete(); the element is then in place. */
        uint32_t st = atomic_load_explicit(&w.state, memory_order_acquire);
        if (st != WAITER_WAITING)
            return st == WAITER_DONE ? 0 : -EPIPE;
        int prc;
        if (yields > 0 &&
            (deadline == MOIRAI_DEADLINE_NEVER || !moirai_deadline_expired(deadline))) {
            /* A thread whose peer is about to answer: let it run on this
             * CPU instead of paying for a sleep and a wake-up (see WAIT_YIELDS). */
            yields--;
            sched_yield();
            continue;
        }
        prc = moirai_park_for(&w.state, WAITER_WAITING, deadline, "channel");
        if (prc == 0)
            continue; /* woken, changed or spurious: look again */
        /* Deadline or cancellation: leave the queue, unless a peer
         * completed the wait meanwhile, which then counts. */
        moirai_mutex_lock(&ch->lock);
        st = atomic_load_explicit(&w.state, memory_order_acquire);
        if (st == WAITER_WAITING)
            q_remove(q, &w);
        moirai_mutex_unlock(&ch->lock);
        if (st == WAITER_WAITING)
            return prc;
        return st == WAITER_DONE ? 0 : -EPIPE;
    }
}

int moirai__chan_try_op(moirai_chan_t *ch, moirai_chan_dir_t dir, void *elem)
{
    return op(ch, dir, elem, MOIRAI_DEADLINE_NEVER, false);
}

bool moirai__chan_ready(moirai_chan_t *ch, moirai_chan_dir_t dir)
{
    moirai_mutex_lock(&ch->lock);
    bool ready = is_closed_locked(ch);
    if (dir == MOIRAI_CHAN_SEND)
        ready = ready || ch->receivers.n > 0 || moirai__chan_buf_has_room(&ch->buf);
    else
        ready = ready || ch->buf.len > 0 || ch->senders.n > 0;
    moirai_mutex_unlock(&ch->lock);
    return ready;
}

void moirai_chan_config_init(moirai_chan_config_t *cfg)
{
    if (cfg != NULL)
        memset(cfg, 0, sizeof *cfg);
}

int moirai_chan_create(moirai_chan_t **out, const moirai_chan_config_t *cfg)
{
    moirai_chan_config_t def;
    if (cfg == NULL) {
        moirai_chan_config_init(&def);
        cfg = &def;
    }
    if (out == NULL)
        return -EINVAL;
    size_t elem = cfg->elem_size != 0 ? cfg->elem_size : sizeof(void *);
    size_t cap = cfg->capacity;
    if (elem > MOIRAI_CHAN_ELEM_MAX)
        return -EINVAL;
    if (cfg->oneshot) {
        if (cap > 1)
            return -EINVAL;
        cap = 1;
    }
    if (cap != MOIRAI_CHAN_UNBOUNDED) {
        size_t bytes;
        if (cap > MOIRAI_CHAN_CAPACITY_MAX || __builtin_mul_overflow(cap, elem, &bytes) ||
            (uint64_t)bytes > MOIRAI_CHAN_BUFFER_MAX)
            return -EINVAL;
    }
    moirai_chan_t *ch = moirai_calloc(1, sizeof *ch);
    if (ch == NULL)
        return -ENOMEM;
    int rc = moirai__chan_buf_init(&ch->buf, elem, cap);
    if (rc != 0) {
        moirai_free(ch);
        return rc;
    }
    moirai_mutex_init(&ch->lock);
    ch->oneshot = cfg->oneshot;
    ch->close_on_last_sender = cfg->close_on_last_sender;
    ch->close_on_last_receiver = cfg->close_on_last_receiver;
    atomic_init(&ch->closed, false);
    atomic_init(&ch->recv_word, 0);
    atomic_init(&ch->send_word, 0);
    *out = ch;
    return 0;
}

int moirai_chan_destroy(moirai_chan_t *ch)
{
    if (ch == NULL)
        return 0;
    moirai_mutex_lock(&ch->lock);
    bool busy = ch->senders.n > 0 || ch->receivers.n > 0;
    moirai_mutex_unlock(&ch->lock);
    if (busy)
        return -EBUSY;
    moirai__chan_buf_fini(&ch->buf);
    moirai_mutex_destroy(&ch->lock);
    moirai_free(ch);
    return 0;
}

size_t moirai_chan_elem_size(const moirai_chan_t *ch)
{
    return ch != NULL ? ch->buf.elem : 0;
}

int moirai_chan_send(moirai_chan_t *ch, const void *elem)
{
    return moirai_chan_send_timed(ch, MOIRAI_DEADLINE_NEVER, elem);
}

int moirai_chan_send_timed(moirai_chan_t *ch, uint64_t deadline, const void *elem)
{
    if (ch == NULL || elem == NULL)
        return -EINVAL;
    return op(ch, MOIRAI_CHAN_SEND, (void *)(uintptr_t)elem, deadline, true);
}

int moirai_chan_try_send(moirai_chan_t *ch, const void *elem)
{
    if (ch == NULL || elem == NULL)
        return -EINVAL;
    return op(ch, MOIRAI_CHAN_SEND, (void *)(uintptr_t)elem, MOIRAI_DEADLINE_NEVER, false);
}

int moirai_chan_recv(moirai_chan_t *ch, void *elem)
{
    return moirai_chan_recv_timed(ch, MOIRAI_DEADLINE_NEVER, elem);
}

int moirai_chan_recv_timed(moirai_chan_t *ch, uint64_t deadline, void *elem)
{
    if (ch == NULL)
        return -EINVAL;
    return op(ch, MOIRAI_CHAN_RECV, elem, deadline, true);
}

int moirai_chan_try_recv(moirai_chan_t *ch, void *elem)
{
    if (ch == NULL)
        return -EINVAL;
    return op(ch, MOIRAI_CHAN_RECV, elem, MOIRAI_DEADLINE_NEVER, false);
}

int moirai_chan_close(moirai_chan_t *ch)
{
    if (ch == NULL)
        return -EINVAL;
    wake_t wk = {0};
    moirai_mutex_lock(&ch->lock);
    bool already = is_closed_locked(ch);
    if (!already)
        close_locked(ch, &wk);
    moirai_mutex_unlock(&ch->lock);
    do_wake(ch, &wk);
    return already ? -EALREADY : 0;
}

bool moirai_chan_is_closed(const moirai_chan_t *ch)
{
    /* Acquire: pairs with close_locked(). */
    return ch != NULL && atomic_load_explicit(&ch->closed, memory_order_acquire);
}

/* Adds `delta` (+1 or -1) to an endpoint count; closes the channel when a
 * drop reaches zero and `close_at_zero`. */
static int endpoint(moirai_chan_t *ch, bool senders, int delta)
{
    if (ch == NULL)
        return -EINVAL;
    wake_t wk = {0};
    int rc = 0;
    moirai_mutex_lock(&ch->lock);
    uint64_t *n = senders ? &ch->nsenders : &ch->nreceivers;
    bool close_at_zero = senders ? ch->close_on_last_sender : ch->close_on_last_receiver;
    if (delta < 0 && *n == 0) {
        rc = -EINVAL;
    } else if (delta > 0) {
        (*n)++;
    } else {
        (*n)--;
        if (*n == 0 && close_at_zero && !is_closed_locked(ch))
            close_locked(ch, &wk);
    }
    moirai_mutex_unlock(&ch->lock);
    do_wake(ch, &wk);
    return rc;
}

int moirai_chan_sender_add(moirai_chan_t *ch)
{
    return endpoint(ch, true, 1);
}

int moirai_chan_sender_drop(moirai_chan_t *ch)
{
    return endpoint(ch, true, -1);
}

int moirai_chan_receiver_add(moirai_chan_t *ch)
{
    return endpoint(ch, false, 1);
}

int moirai_chan_receiver_drop(moirai_chan_t *ch)
{
    return endpoint(ch, false, -1);
}

int moirai_chan_stats(const moirai_chan_t *ch, moirai_chan_stats_t *out)
{
    if (ch == NULL || out == NULL)
        return -EINVAL;
    moirai_chan_t *c = (moirai_chan_t *)(uintptr_t)ch;
    moirai_mutex_lock(&c->lock);
    out->sent = c->sent;
    out->received = c->received;
    out->bytes_sent = c->sent * c->buf.elem;
    out->bytes_received = c->received * c->buf.elem;
    out->blocked_sends = c->blocked_sends;
    out->blocked_recvs = c->blocked_recvs;
    out->len = c->buf.len;
    moirai_mutex_unlock(&c->lock);
    return 0;
}
