/* One connection between two nodes: the handshake, the reader fiber that
 * decodes and dispatches frames, and the writer fiber that moves queued
 * frames to the socket.
 *
 * Handshake (docs/transport.md, "Remote tasks: security model"):
 *   initiator -> HELLO (id, listen address, nonce Ni)
 *   acceptor  -> AUTH_CHALLENGE (id, listen address, nonce Na, MAC_a)
 *   initiator -> AUTH_RESPONSE (MAC_i)
 *   acceptor  -> HEARTBEAT (the acknowledgement; the connection is live)
 * MAC_a and MAC_i are HMAC-SHA256 under the cluster key over both HELLO
 * bodies with a label per role (auth.c). Before the acknowledgement, any
 * other frame, a bad MAC, a malformed frame or the handshake deadline
 * closes the connection; nothing of the peer's is acted on.
 *
 * Who keeps a connection: the node with the smaller id. When the larger
 * one dialed, the acceptor verifies it, acknowledges, closes, and dials it
 * back; so between two nodes there is one connection, opened by the
 * smaller id, and a duplicate dial is refused before it is used.
 *
 * Writing never waits for the network (a sender may be the reader fiber,
 * and two nodes whose readers both waited to write would deadlock). A
 * small frame goes through the connection's adaptive batcher
 * (moirai_batch_t): when the link is idle the batcher hands it over at
 * once, and the sending thread writes it with one non-blocking call of
 * the link's try_writev (one system call, no wake-up); while the writer
 * fiber is busy, frames coalesce in the batcher (up to PEER_BATCH_BYTES)
 * and go out together when the writer is done, which flushes the batcher.
 * What a direct write leaves, and every batch that comes while a write is
 * under way, is queued for the writer fiber, which writes everything
 * queued in one call. Large frames skip the batcher (after flushing it,
 * so one thread's frames keep their order). */
#include <errno.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/log.h>

#include "auth.h"
#include "node_internal.h"

/* ---- Waiting for a connection's handshake (moirai_node_connect) ---- */

struct connect_wait {
    _Atomic uint32_t refs;
    moirai_mutex_t lock;
    moirai_condvar_t cv;
    bool done;
    int rc;
};

struct connect_wait *moirai__connect_wait_new(void)
{
    struct connect_wait *cw = moirai_calloc(1, sizeof *cw);
    if (!cw)
        return NULL;
    atomic_init(&cw->refs, 1);
    moirai_mutex_init(&cw->lock);
    moirai_condvar_init(&cw->cv);
    return cw;
}

static void cw_get(struct connect_wait *cw)
{
    /* Relaxed: the caller holds a reference already. */
    atomic_fetch_add_explicit(&cw->refs, 1, memory_order_relaxed);
}

void moirai__connect_wait_put(struct connect_wait *cw)
{
    /* Acq_rel: the last holder sees every other holder's writes. */
    if (cw && atomic_fetch_sub_explicit(&cw->refs, 1, memory_order_acq_rel) == 1) {
        moirai_condvar_destroy(&cw->cv);
        moirai_mutex_destroy(&cw->lock);
        moirai_free(cw);
    }
}

static void cw_report(struct connect_wait *cw, int rc)
{
    if (!cw)
        return;
    moirai_mutex_lock(&cw->lock);
    if (!cw->done) {
        cw->done = true;
        cw->rc = rc;
        moirai_condvar_broadcast(&cw->cv);
    }
    moirai_mutex_unlock(&cw->lock);
}

int moirai__connect_wait(struct connect_wait *cw, uint64_t deadline)
{
    int rc = 0;
    moirai_mutex_lock(&cw->lock);
    while (!cw->done && rc == 0)
        rc = moirai_condvar_wait_timed(&cw->cv, &cw->lock, deadline);
    if (cw->done)
        rc = cw->rc;
    moirai_mutex_unlock(&cw->lock);
    return rc;
}

/* ---- References ---- */

void moirai__peer_ref(struct peer *p)
{
    /* Relaxed: the caller holds a reference or the node's lock. */
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void moirai__peer_unref(struct peer *p)
{
    /* Acq_rel: the last holder sees every other holder's writes before
     * closing and freeing. */
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    /* A dead connection's batcher drops what it holds (the sink takes and
     * drops); one that was never killed (its writer could not start) has
     * nothing to write to either. */
    moirai_mutex_lock(&p->wlock);
    p->wdead = true;
    moirai_mutex_unlock(&p->wlock);
    moirai_batch_destroy(p->batch);
    link_shutdown(p->link); /* the link's contract: shut down before close */
    link_close(p->link);
    moirai_free(p->qbuf);
    moirai_free(p->sbuf);
    moirai__htab_fini(&p->exec);
    moirai_condvar_destroy(&p->wcv);
    moirai_mutex_destroy(&p->wlock);
    moirai_mutex_destroy(&p->xlock);
    moirai__connect_wait_put(p->cw);
    moirai_free(p);
}

/* ---- Writing ---- */

static void count_sent(struct peer *p, size_t n)
{
    if (n == 0)
        return;
    moirai__node_count(&p->node->st.bytes_sent, n);
    /* Acquire: pairs with claim()'s release of the member. */
    struct member *m = atomic_load_explicit(&p->stats_m, memory_order_acquire);
    if (m)
        moirai__node_count(&m->st.bytes_sent, n);
}

/* Appends `n` bytes to the buffer *buf (capacity *cap, *len used),
 * growing it. Returns 0 or -ENOMEM (nothing changed). */
static int enqueue_into(uint8_t **buf, size_t *cap, size_t *len, const void *b, size_t n)
{
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *len + n)
            c *= 2;
        uint8_t *nb = moirai_realloc(*buf, c);
        if (!nb)
            return -ENOMEM;
        *buf = nb;
        *cap = c;
    }
    memcpy(*buf + *len, b, n);
    *len += n;
    return 0;
}

/* Appends bytes to the queue (wlock held). Whoever queues calls kick()
 * after, which writes them or wakes the writer fiber. */
static int enqueue(struct peer *p, const void *b, size_t n)
{
    int rc = enqueue_into(&p->qbuf, &p->qcap, &p->qlen, b, n);
    if (rc == 0 && n > 0)
        /* Relaxed: the batcher's busy callback re-reads it, seq_cst,
         * before it relies on it (batch_busy()). */
        atomic_store_explicit(&p->wbusy, true, memory_order_relaxed);
    return rc;
}

/* A write ended (wlock held): publishes whether the connection is still
 * busy, then reports whether the batcher kept frames meanwhile. The two
 * sides of a Dekker pair with batch_busy(), which stores `batch_held`
 * and then loads `wbusy`: seq_cst on all four (the stores as exchanges,
 * which every platform orders before a later load), so that either the
 * sender sees the connection idle and sends itself, or this side sees
 * `batch_held` and has the writer fiber flush the batcher; never
 * neither. */
static bool write_ended(struct peer *p)
{
    atomic_exchange_explicit(&p->wbusy, p->writing || p->qlen > 0, memory_order_seq_cst);
    return atomic_load_explicit(&p->batch_held, memory_order_seq_cst);
}

/* Queues whole frames (`n` bytes) behind everything handed over before
 * (wlock held). A dead connection takes them and drops them. */
static int queue_frames(struct peer *p, const uint8_t *b, size_t n)
{
    return p->wdead ? 0 : enqueue(p, b, n);
}

/* Moves what is queued to the link from the calling thread, without
 * waiting for the network: when nobody is writing, one non-blocking call
 * of the link's try_writev (one system call, no wake-up). What the link
 * does not take, what was queued meanwhile, and frames the batcher kept
 * because this write was under way are left to the writer fiber, which
 * is woken for them. Without try_writev the writer fiber does it all. */
static void kick(struct peer *p)
{
    bool failed = false;
    moirai_mutex_lock(&p->wlock);
    if (p->writing || p->wdead || p->qlen == 0 || !p->link->ops->try_writev) {
        /* Seq_cst: see write_ended(). */
        if (!p->writing &&
            (p->qlen > 0 || atomic_load_explicit(&p->batch_held, memory_order_seq_cst)))
            moirai_condvar_signal(&p->wcv);
        moirai_mutex_unlock(&p->wlock);
        return;
    }
    /* Take the queue; senders fill the spare buffer meanwhile. */
    uint8_t *buf = p->qbuf;
    size_t cap = p->qcap, n = p->qlen;
    p->qbuf = p->sbuf;
    p->qcap = p->scap;
    p->qlen = 0;
    p->sbuf = NULL;
    p->scap = 0;
    p->writing = true;
    /* Relaxed: as in enqueue(). */
    atomic_store_explicit(&p->wbusy, true, memory_order_relaxed);
    moirai_mutex_unlock(&p->wlock);
    struct iovec iov = {.iov_base = buf, .iov_len = n};
    ssize_t w = p->link->ops->try_writev(p->link, &iov, 1);
    count_sent(p, w > 0 ? (size_t)w : 0);
    moirai_mutex_lock(&p->wlock);
    p->writing = false;
    if (w < 0)
        failed = true;
    else if ((size_t)w < n && !p->wdead) {
        /* The rest goes before anything queued meanwhile. */
        size_t rest = n - (size_t)w;
        memmove(buf, buf + w, rest);
        if (p->qlen > 0 && enqueue_into(&buf, &cap, &rest, p->qbuf, p->qlen) < 0)
            failed = true; /* a frame cut in two: the connection cannot go on */
        else {
            uint8_t *old = p->qbuf;
            size_t oldcap = p->qcap;
            p->qbuf = buf;
            p->qcap = cap;
            p->qlen = rest;
            buf = old;
            cap = oldcap;
        }
    }
    /* Keep one spare buffer. */
    if (!p->sbuf) {
        p->sbuf = buf;
        p->scap = cap;
    } else
        moirai_free(buf);
    bool held = write_ended(p);
    if (p->qlen > 0 || held || atomic_load_explicit(&p->wclosed, memory_order_relaxed))
        moirai_condvar_signal(&p->wcv);
    moirai_mutex_unlock(&p->wlock);
    if (failed) {
        /* Not moirai__peer_kill() here: the caller may hold the task
         * table's lock, which a death takes. Shutting the link down
         * wakes the reader, which declares the death from its own fiber. */
        link_shutdown(p->link);
    }
}

/* The batcher's sink: a batch of frames, each behind the batcher's 4-byte
 * length, joins the queue as the frames back to back (the wire format has
 * its own lengths). It only queues (under wlock, never the network): the
 * batcher calls it under its own lock, which every sender takes, so a
 * system call here would hold them all. The thread whose call reached
 * the sink writes the queue after (kick()). */
static int batch_sink(void *arg, const void *buf, size_t len, uint32_t count)
{
    struct peer *p = arg;
    size_t off = 0, mlen;
    const void *msg;
    int rc = 0;
    moirai_mutex_lock(&p->wlock);
    bool dead = p->wdead;
    while (!dead && rc == 0 && moirai_batch_next(buf, len, &off, &msg, &mlen) == 1)
        rc = queue_frames(p, msg, mlen);
    moirai_mutex_unlock(&p->wlock);
    if (rc < 0)
        return rc; /* -ENOMEM: the batch stays in the batcher */
    if (dead)
        return 0; /* taken and dropped, and not counted as sent */
    moirai__node_count(&p->node->st.batches, 1);
    moirai__node_count(&p->node->st.batched_frames, count);
    /* Acquire: pairs with claim()'s release of the member. */
    struct member *m = atomic_load_explicit(&p->stats_m, memory_order_acquire);
    if (m) {
        moirai__node_count(&m->st.batches, 1);
        moirai__node_count(&m->st.batched_frames, count);
    }
    return 0;
}

/* The batcher's question: is the connection behind? Yes while a write is
 * under way or bytes are queued; then frames wait in the batcher (up to
 * its size bound) and `batch_held` tells the writer fiber to flush the
 * batcher once it has caught up. No lock: the answer is asked for the
 * first frames of every batch. */
static int batch_busy(void *arg)
{
    struct peer *p = arg;
    /* Relaxed: an idle connection (the common case) needs nothing more;
     * a busy one is confirmed below. */
    if (!atomic_load_explicit(&p->wbusy, memory_order_relaxed))
        return 0;
    /* Seq_cst, the other side of write_ended()'s pair. */
    atomic_exchange_explicit(&p->batch_held, true, memory_order_seq_cst);
    return atomic_load_explicit(&p->wbusy, memory_order_seq_cst);
}

int moirai__peer_send(struct peer *p, uint8_t type, uint16_t flags, uint64_t task_id, const void *a,
                      size_t alen, const void *b, size_t blen)
{
    size_t n = FRAME_HEADER_SIZE + alen + blen;
    /* Relaxed: a hint (a frame that passes while the connection closes is
     * dropped by queue_frames() or never written). */
    if (atomic_load_explicit(&p->wclosed, memory_order_relaxed))
        return -EPIPE;
    int rc;
    if (n <= PEER_SMALL_FRAME) {
        /* Small frames (tasks, results, heartbeats) go through the
         * batcher, which hands one over at once when the connection is
         * idle and coalesces them while it is busy. */
        uint8_t f[PEER_SMALL_FRAME];
        moirai__frame_put_header(f, type, flags, task_id, (uint32_t)(alen + blen));
        if (alen)
            memcpy(f + FRAME_HEADER_SIZE, a, alen);
        if (blen)
            memcpy(f + FRAME_HEADER_SIZE + alen, b, blen);
        rc = moirai_batch_send(p->batch, f, n);
    } else {
        /* A large frame is a batch of its own: what the batcher holds
         * goes first, so that one thread's frames keep their order. */
        rc = moirai_batch_flush(p->batch);
        if (rc == 0) {
            uint8_t hdr[FRAME_HEADER_SIZE];
            moirai__frame_put_header(hdr, type, flags, task_id, (uint32_t)(alen + blen));
            moirai_mutex_lock(&p->wlock);
            size_t before = p->qlen;
            rc = queue_frames(p, hdr, sizeof hdr);
            if (rc == 0 && alen)
                rc = queue_frames(p, a, alen);
            if (rc == 0 && blen)
                rc = queue_frames(p, b, blen);
            if (rc < 0)
                p->qlen = before; /* nothing of the frame stays */
            moirai_mutex_unlock(&p->wlock);
        }
    }
    kick(p);
    return rc;
}

static int writer_main(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct peer *p = arg;
    uint8_t *out = NULL;
    size_t outcap = 0;
    bool shut = false;
    moirai_mutex_lock(&p->wlock);
    for (;;) {
        if (p->wdead)
            break;
        if (p->writing) {
            /* A thread writes directly; it wakes us if it leaves bytes. */
            moirai_condvar_wait(&p->wcv, &p->wlock);
            continue;
        }
        if (p->qlen > 0) {
            /* Take everything queued; senders fill the other buffer
             * meanwhile. */
            uint8_t *buf = p->qbuf;
            size_t bufcap = p->qcap, n = p->qlen;
            p->qbuf = out;
            p->qcap = outcap;
            p->qlen = 0;
            out = buf;
            outcap = bufcap;
            p->writing = true;
            moirai_mutex_unlock(&p->wlock);
            struct iovec iov = {.iov_base = buf, .iov_len = n};
            int w = link_writev(p->link, &iov, 1, MOIRAI_DEADLINE_NEVER);
            if (w == 0)
                count_sent(p, n);
            moirai_mutex_lock(&p->wlock);
            p->writing = false;
            write_ended(p); /* the loop reads batch_held next */
            if (w != 0) {
                moirai_mutex_unlock(&p->wlock);
                moirai__peer_kill(p);
                moirai_mutex_lock(&p->wlock);
                break;
            }
            continue;
        }
        bool closing = atomic_load_explicit(&p->wclosed, memory_order_relaxed);
        /* Seq_cst: see write_ended(). */
        if (atomic_exchange_explicit(&p->batch_held, false, memory_order_seq_cst) || closing) {
            /* Caught up: the frames the batcher kept while a write was
             * under way go now (the sink queues them; the loop writes). */
            moirai_mutex_unlock(&p->wlock);
            moirai_batch_flush(p->batch);
            moirai_mutex_lock(&p->wlock);
            if (closing && p->qlen == 0 && !p->writing) {
                shut = p->wshut;
                break;
            }
            continue;
        }
        moirai_condvar_wait(&p->wcv, &p->wlock);
    }
    moirai_mutex_unlock(&p->wlock);
    if (shut)
        link_shutdown(p->link);
    moirai_free(out);
    moirai__peer_unref(p);
    return 0;
}

/* ---- Death ---- */

void moirai__peer_kill(struct peer *p)
{
    /* Acq_rel: exactly one caller moves the peer to DEAD and does the
     * rest; it sees what the reader wrote before going live. */
    int old = atomic_exchange_explicit(&p->state, PEER_DEAD, memory_order_acq_rel);
    if (old == PEER_DEAD)
        return;
    struct moirai_node *node = p->node;
    /* Wake the reader (end of stream) and a blocked write; the link stays
     * open until the last reference goes, so no call races a close. */
    link_shutdown(p->link);
    moirai_mutex_lock(&p->wlock);
    /* Relaxed: as in on_handshake(). */
    atomic_store_explicit(&p->wclosed, true, memory_order_relaxed);
    p->wdead = true;
    p->qlen = 0; /* unsent: the connection is over */
    moirai_condvar_broadcast(&p->wcv);
    moirai_mutex_unlock(&p->wlock);
    moirai_mutex_lock(&node->lock);
    if (p->m && p->m->peer == p)
        p->m->peer = NULL;
    if (old == PEER_LIVE) {
        node->live--;
        p->m->state = MEMBER_DEAD;
    }
    moirai_condvar_broadcast(&node->cv);
    moirai_mutex_unlock(&node->lock);
    if (old == PEER_LIVE)
        moirai__membership_dead(node, p);
}

/* ---- The reader: handshake, then dispatch ---- */

struct reader {
    struct peer *p;
    int phase;
    uint8_t mine[FRAME_HELLO_SIZE];
    uint8_t theirs[FRAME_HELLO_SIZE];
    struct frame_addr their_addr; /* resolved */
    int result;                   /* for the connect waiter */
    bool bounced;
};

static void resolve_addr(struct peer *p, const struct frame_addr *adv, struct frame_addr *out)
{
    *out = *adv;
    if (adv->family != 0)
        return;
    /* "Where you see me from": the link's remote address with the port
     * the HELLO advertised (the connection's own port is ephemeral). */
    struct frame_addr seen;
    if (p->link->ops->peer_addr(p->link, &seen) < 0)
        return;
    out->family = seen.family;
    memcpy(out->addr, seen.addr, sizeof out->addr);
}

static void go_live(struct reader *r)
{
    struct peer *p = r->p;
    struct moirai_node *node = p->node;
    moirai_mutex_lock(&node->lock);
    int expected = PEER_HANDSHAKE;
    /* Release: a thread that finds the peer live sees its member set. */
    if (atomic_compare_exchange_strong_explicit(&p->state, &expected, PEER_LIVE,
                                                memory_order_acq_rel, memory_order_acquire)) {
        p->m->state = MEMBER_ALIVE;
        p->m->addr = r->their_addr;
        node->live++;
        moirai_condvar_broadcast(&node->cv);
    }
    moirai_mutex_unlock(&node->lock);
    if (expected == PEER_HANDSHAKE) {
        moirai__membership_broadcast(node);
        moirai__keys_sync(p);
    }
}

/* Claims the member entry of the node at the other end for this
 * connection (membership.c). Returns 0, or -EALREADY (a connection to it
 * exists or is being made), -EHOSTDOWN (that incarnation was declared
 * dead: a returning node needs a larger incarnation), -ENOMEM (member
 * table full). */
static int claim(struct reader *r)
{
    return moirai__member_claim(r->p->node, r->p, &r->their_addr);
}

/* The acceptor met a larger id: remember where it listens and dial it. */
static void dial_back(struct reader *r)
{
    struct peer *p = r->p;
    struct moirai_node *node = p->node;
    struct member *m = NULL;
    moirai_mutex_lock(&node->lock);
    struct member *c = moirai__member_get(node, p->id);
    /* A connection to an earlier life of it reaches a process that is
     * gone: it dies first (membership.c). */
    while (c && moirai__member_retire(node, c, p->incarnation)) {
    }
    if (c && moirai__member_admits(c, p->incarnation) && !c->peer && !c->dialing) {
        c->addr = r->their_addr;
        c->dialing = true;
        m = c;
    }
    moirai_mutex_unlock(&node->lock);
    if (m)
        moirai__peer_dial(node, &r->their_addr, m, NULL);
}

/* Handles one frame during the handshake. Returns 0 to go on, 1 to stop
 * reading quietly, or a negative errno that closes the connection. */
static int on_handshake(struct reader *r, const struct frame *f)
{
    struct peer *p = r->p;
    struct moirai_node *node = p->node;
    uint8_t mac[FRAME_MAC_SIZE];
    if (p->initiator && r->phase == 0) {
        if (f->type != FRAME_AUTH_CHALLENGE)
            return -EPROTO;
        memcpy(r->theirs, f->u.hello.raw, FRAME_HELLO_SIZE);
        if (!moirai__auth_verify(node->key, node->key_len, AUTH_ACCEPTOR, r->mine, r->theirs,
                                 f->challenge_mac))
            return -EACCES;
        p->id = f->u.hello.node_id;
        p->incarnation = f->u.hello.incarnation;
        resolve_addr(p, &f->u.hello.listen, &r->their_addr);
        if (p->id == node->id) {
            r->result = 0; /* dialed itself (a seed list naming this node) */
            return 1;
        }
        if (node->id < p->id) {
            int rc = claim(r);
            if (rc == -EALREADY) {
                r->result = 0; /* connected already */
                return 1;
            }
            if (rc < 0)
                return rc;
        } else {
            r->bounced = true;
        }
        moirai__auth_mac(node->key, node->key_len, AUTH_INITIATOR, r->mine, r->theirs, mac);
        moirai__peer_send(p, FRAME_AUTH_RESPONSE, 0, 0, mac, sizeof mac, NULL, 0);
        r->phase = 1;
        return 0;
    }
    if (p->initiator && r->phase == 1) {
        if (f->type != FRAME_HEARTBEAT)
            return -EPROTO;
        r->result = 0;
        cw_report(p->cw, 0);
        if (r->bounced) {
            r->phase = 2; /* the acceptor closes and dials us back */
            return 0;
        }
        go_live(r);
        return 0;
    }
    if (p->initiator)
        return -EPROTO; /* a bounced connection carries nothing more */
    if (r->phase == 0) {
        if (f->type != FRAME_HELLO)
            return -EPROTO;
        memcpy(r->theirs, f->u.hello.raw, FRAME_HELLO_SIZE);
        p->id = f->u.hello.node_id;
        p->incarnation = f->u.hello.incarnation;
        resolve_addr(p, &f->u.hello.listen, &r->their_addr);
        uint8_t nonce[FRAME_NONCE_SIZE];
        moirai__auth_nonce(nonce);
        moirai__frame_put_hello(r->mine, node->id, node->incarnation, &node->self_addr, nonce);
        moirai__auth_mac(node->key, node->key_len, AUTH_ACCEPTOR, r->theirs, r->mine, mac);
        moirai__peer_send(p, FRAME_AUTH_CHALLENGE, 0, 0, r->mine, FRAME_HELLO_SIZE, mac,
                          sizeof mac);
        r->phase = 1;
        return 0;
    }
    if (r->phase == 1) {
        if (f->type != FRAME_AUTH_RESPONSE)
            return -EPROTO;
        if (!moirai__auth_verify(node->key, node->key_len, AUTH_INITIATOR, r->theirs, r->mine,
                                 f->u.mac))
            return -EACCES;
        if (p->id == node->id)
            return 1;
        uint8_t now[8];
        moirai__frame_put_u64(now, moirai_clock_now_ns());
        if (p->id > node->id) {
            /* Acknowledge, flush, shut down; then own the connection by
             * dialing back. */
            moirai__peer_send(p, FRAME_HEARTBEAT, 0, 0, now, 8, NULL, 0);
            moirai_mutex_lock(&p->wlock);
            /* Relaxed: wlock orders it for the writer; senders only
             * take it as a hint. */
            atomic_store_explicit(&p->wclosed, true, memory_order_relaxed);
            p->wshut = true;
            moirai_condvar_broadcast(&p->wcv);
            moirai_mutex_unlock(&p->wlock);
            dial_back(r);
            r->phase = 2;
            return 0;
        }
        int rc = claim(r);
        if (rc < 0)
            return rc;
        moirai__peer_send(p, FRAME_HEARTBEAT, 0, 0, now, 8, NULL, 0);
        go_live(r);
        return 0;
    }
    return -EPROTO;
}

static int on_live(struct reader *r, const struct frame *f)
{
    struct peer *p = r->p;
    struct moirai_node *node = p->node;
    switch (f->type) {
    case FRAME_SPAWN:
        moirai__exec_on_spawn(p, f);
        return 0;
    case FRAME_RESULT:
    case FRAME_ERROR:
        moirai__spawn_on_result(node, p, f);
        return 0;
    case FRAME_CANCEL:
        moirai__exec_on_cancel(p, f->task_id);
        return 0;
    case FRAME_HEARTBEAT:
        return 0;
    case FRAME_KEY:
        return moirai__keys_apply(p, f);
    case FRAME_MEMBERSHIP:
        moirai__membership_apply(node, f);
        return 0;
    case FRAME_LOAD:
        moirai_mutex_lock(&node->lock);
        p->m->load_running = f->u.load.running;
        p->m->load_queued = f->u.load.queued;
        p->m->load_workers = f->u.load.workers;
        moirai_mutex_unlock(&node->lock);
        return 0;
    default:
        return -EPROTO; /* a handshake frame on a live connection */
    }
}

static int dispatch(struct reader *r, const struct frame *f)
{
    int st = atomic_load_explicit(&r->p->state, memory_order_acquire);
    if (st == PEER_LIVE)
        return on_live(r, f);
    if (st == PEER_DEAD)
        return 1;
    return on_handshake(r, f);
}

#define READ_CHUNK ((size_t)64 * 1024)

static void read_loop(struct reader *r)
{
    struct peer *p = r->p;
    struct moirai_node *node = p->node;
    uint32_t max = node->max_payload + 2 + FRAME_NAME_MAX;
    uint64_t hs_deadline = moirai_deadline_after(node->handshake_ns);
    size_t cap = READ_CHUNK, len = 0;
    uint8_t *buf = moirai_malloc(cap);
    int rc = buf ? 0 : -ENOMEM;
    r->result = -ECONNRESET;
    if (p->initiator && rc == 0) {
        uint8_t nonce[FRAME_NONCE_SIZE];
        moirai__auth_nonce(nonce);
        moirai__frame_put_hello(r->mine, node->id, node->incarnation, &node->self_addr, nonce);
        rc = moirai__peer_send(p, FRAME_HELLO, 0, 0, r->mine, FRAME_HELLO_SIZE, NULL, 0);
    }
    while (rc == 0) {
        size_t off = 0, need = FRAME_HEADER_SIZE;
        while (rc == 0) {
            struct frame f;
            long n = moirai__frame_decode(buf + off, len - off, max, &f, &need);
            if (n < 0)
                rc = (int)n;
            else if (n == 0)
                break;
            else {
                rc = dispatch(r, &f);
                off += (size_t)n;
            }
        }
        if (rc != 0)
            break;
        memmove(buf, buf + off, len - off);
        len -= off;
        /* Room for the frame being read, and at least a chunk. */
        size_t want = need > len + READ_CHUNK ? need : len + READ_CHUNK;
        if (want > cap) {
            uint8_t *nb = moirai_realloc(buf, want);
            if (!nb) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            cap = want;
        }
        bool live = atomic_load_explicit(&p->state, memory_order_relaxed) == PEER_LIVE;
        ssize_t got = link_read(p->link, buf + len, cap - len,
                                live || r->phase == 2 ? MOIRAI_DEADLINE_NEVER : hs_deadline);
        if (got <= 0) {
            rc = got == 0 ? 1 : (int)got;
            break;
        }
        len += (size_t)got;
        /* Relaxed: the heartbeat fiber only compares times. */
        atomic_store_explicit(&p->last_recv_ns, moirai_clock_now_ns(), memory_order_relaxed);
        moirai__node_count(&node->st.bytes_received, (uint64_t)got);
        struct member *m = atomic_load_explicit(&p->stats_m, memory_order_acquire);
        if (m)
            moirai__node_count(&m->st.bytes_received, (uint64_t)got);
    }
    moirai_free(buf);
    int st = atomic_load_explicit(&p->state, memory_order_acquire);
    if (rc < 0 && rc != -EBADF && rc != -ECANCELED && st == PEER_LIVE) {
        moirai__node_count(&node->st.protocol_errors, 1);
        MOIRAI_LOG(MOIRAI_LOG_WARN, "node %llx: peer %llx: %s; connection closed",
                   (unsigned long long)node->id, (unsigned long long)p->id, strerror(-rc));
    } else if (st == PEER_HANDSHAKE && !p->initiator && r->phase != 2) {
        /* Accepted but never authenticated: a wrong key (the other side
         * hung up on our challenge, or sent a bad MAC), garbage, or a
         * handshake that ran out of time. A node that dialed itself
         * (rc 1 with phase 1 after a good MAC) is not counted. */
        if (rc != 1 || r->phase != 1 || p->id != node->id) {
            moirai__node_count(&node->st.auth_failures, 1);
            MOIRAI_LOG(MOIRAI_LOG_INFO, "node %llx: handshake refused: %s",
                       (unsigned long long)node->id, rc < 0 ? strerror(-rc) : "closed");
        }
    }
    if (p->initiator && r->result != 0) {
        if (rc == 1 || rc == -ECONNRESET || rc == -EPIPE)
            /* Closed on our response: it refused our key. */
            r->result = r->phase == 1 ? -EACCES : -ECONNRESET;
        else if (rc == -EPROTONOSUPPORT || rc == -EMSGSIZE)
            r->result = -EPROTO;
        else if (rc < 0)
            r->result = rc;
    }
    cw_report(p->cw, r->result);
}

/* The reader's end: the connection is over, leave the node's list. */
static void reader_exit(struct peer *p)
{
    moirai__peer_kill(p);
    struct moirai_node *node = p->node;
    moirai_mutex_lock(&node->lock);
    for (struct peer **q = &node->conns; *q; q = &(*q)->next) {
        if (*q == p) {
            *q = p->next;
            break;
        }
    }
    moirai_condvar_broadcast(&node->cv);
    moirai_mutex_unlock(&node->lock);
    moirai__peer_unref(p);
}

static void reader_run(struct peer *p)
{
    struct reader r;
    memset(&r, 0, sizeof r);
    r.p = p;
    read_loop(&r);
    reader_exit(p);
}

static int reader_main(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    reader_run(arg);
    return 0;
}

/* Makes the peer and its writer; registers it with the node. On error
 * closes the link and reports to cw. */
static struct peer *peer_create(struct moirai_node *node, struct link *link, bool initiator,
                                struct connect_wait *cw)
{
    struct peer *p = moirai_calloc(1, sizeof *p);
    if (!p) {
        link_shutdown(link);
        link_close(link);
        cw_report(cw, -ENOMEM);
        return NULL;
    }
    moirai_batch_config_t bc;
    moirai_batch_config_init(&bc);
    bc.sink = batch_sink;
    bc.busy = batch_busy;
    bc.arg = p;
    bc.max_bytes = PEER_BATCH_BYTES;
    /* No flusher thread: frames wait in the batcher only while the
     * writer fiber is busy, and the writer flushes it when done. */
    bc.manual_deadline = true;
    if (moirai_batch_create(&p->batch, &bc) < 0) {
        moirai_free(p);
        link_shutdown(link);
        link_close(link);
        cw_report(cw, -ENOMEM);
        return NULL;
    }
    p->node = node;
    p->link = link;
    p->initiator = initiator;
    atomic_init(&p->refs, 2); /* the reader and the writer */
    atomic_init(&p->state, PEER_HANDSHAKE);
    atomic_init(&p->last_recv_ns, moirai_clock_now_ns());
    moirai_mutex_init(&p->wlock);
    moirai_mutex_init(&p->xlock);
    moirai_condvar_init(&p->wcv);
    if (cw) {
        cw_get(cw);
        p->cw = cw;
    }
    moirai_mutex_lock(&node->lock);
    bool stopping = atomic_load_explicit(&node->stopping, memory_order_acquire);
    if (!stopping) {
        p->next = node->conns;
        node->conns = p;
    }
    moirai_mutex_unlock(&node->lock);
    int rc = stopping ? -ESHUTDOWN : moirai__node_spawn_fiber(node, writer_main, p);
    if (rc < 0) {
        cw_report(cw, rc);
        atomic_store_explicit(&p->refs, 1, memory_order_relaxed);
        if (!stopping) {
            /* Unlink through the reader's exit path. */
            atomic_store_explicit(&p->state, PEER_DEAD, memory_order_relaxed);
            moirai_mutex_lock(&node->lock);
            for (struct peer **q = &node->conns; *q; q = &(*q)->next) {
                if (*q == p) {
                    *q = p->next;
                    break;
                }
            }
            moirai_mutex_unlock(&node->lock);
        }
        moirai__peer_unref(p);
        return NULL;
    }
    return p;
}

int moirai__peer_start(struct moirai_node *node, struct link *link, bool initiator,
                       struct connect_wait *cw)
{
    struct peer *p = peer_create(node, link, initiator, cw);
    if (!p)
        return -ENOMEM;
    int rc = moirai__node_spawn_fiber(node, reader_main, p);
    if (rc < 0) {
        cw_report(cw, rc);
        reader_exit(p);
    }
    return rc;
}

struct dial {
    struct moirai_node *node;
    struct frame_addr to;
    struct member *m;
    struct connect_wait *cw;
};

static int dial_main(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct dial *d = arg;
    struct moirai_node *node = d->node;
    struct link *link = NULL;
    int rc = node->backend->dial(node, &d->to, moirai_deadline_after(node->handshake_ns), &link);
    struct peer *p = NULL;
    if (rc < 0)
        cw_report(d->cw, rc);
    else
        p = peer_create(node, link, true, d->cw);
    moirai__connect_wait_put(d->cw);
    if (p)
        reader_run(p);
    /* Only now: while the handshake ran, a second dial to the member
     * would have made a duplicate. */
    if (d->m) {
        moirai_mutex_lock(&node->lock);
        d->m->dialing = false;
        moirai_mutex_unlock(&node->lock);
    }
    moirai_free(d);
    return 0;
}

int moirai__peer_dial(struct moirai_node *node, const struct frame_addr *to, struct member *m,
                      struct connect_wait *cw)
{
    struct dial *d = moirai_malloc(sizeof *d);
    int rc = -ENOMEM;
    if (d) {
        d->node = node;
        d->to = *to;
        d->m = m;
        d->cw = cw;
        if (cw)
            cw_get(cw);
        rc = moirai__node_spawn_fiber(node, dial_main, d);
        if (rc < 0) {
            moirai__connect_wait_put(cw);
            moirai_free(d);
        }
    }
    if (rc < 0 && m) {
        moirai_mutex_lock(&node->lock);
        m->dialing = false;
        moirai_mutex_unlock(&node->lock);
    }
    return rc;
}
