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
 * Writing: a frame is queued under the peer's lock (never waiting for the
 * network). When nobody is writing, the sending thread then sends the
 * queue itself with one non-blocking send(2); what the socket does not
 * take, and every frame queued while a write is under way, is left to a
 * writer fiber that writes everything queued in one call. So a lone
 * frame costs one system call and no wake-up, and while the socket is
 * busy frames coalesce, one system call for many. */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

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
    moirai_io_close(p->io);
    moirai_free(p->wbuf);
    moirai_free(p->sbuf);
    moirai_free(p->rest);
    moirai__htab_fini(&p->exec);
    moirai_condvar_destroy(&p->wcv);
    moirai_mutex_destroy(&p->wlock);
    moirai_mutex_destroy(&p->xlock);
    moirai__connect_wait_put(p->cw);
    moirai_free(p);
}

/* ---- Writing ---- */

static void count_sent(struct peer *p, ssize_t w)
{
    if (w <= 0)
        return;
    moirai__node_count(&p->node->st.bytes_sent, (uint64_t)w);
    /* Acquire: pairs with claim()'s release of the member. */
    struct member *m = atomic_load_explicit(&p->stats_m, memory_order_acquire);
    if (m)
        moirai__node_count(&m->st.bytes_sent, (uint64_t)w);
}

/* Writes what is queued from the calling thread with one non-blocking
 * send (wlock held on entry and on return; released around the system
 * call). Whatever the socket does not take becomes `rest`, which the
 * writer fiber writes before anything queued later. Returns false when
 * the connection failed. */
static bool write_direct(struct peer *p)
{
    uint8_t *buf = p->wbuf;
    size_t cap = p->wcap, n = p->wlen;
    p->wbuf = p->sbuf;
    p->wcap = p->scap;
    p->wlen = 0;
    p->sbuf = NULL;
    p->scap = 0;
    p->writing = true;
    moirai_mutex_unlock(&p->wlock);
    int fd = moirai_io_fd(p->io);
    ssize_t w = fd < 0 ? -1 : send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    int err = w < 0 ? errno : 0;
    count_sent(p, w);
    moirai_mutex_lock(&p->wlock);
    p->writing = false;
    if (w < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
        moirai_free(buf);
        return false;
    }
    if ((size_t)(w > 0 ? w : 0) == n) {
        if (p->sbuf)
            moirai_free(buf);
        else {
            p->sbuf = buf;
            p->scap = cap;
        }
    } else {
        p->rest = buf;
        p->rest_off = w > 0 ? (size_t)w : 0;
        p->rest_len = n;
    }
    if (p->rest || p->wlen || p->wclosed)
        moirai_condvar_signal(&p->wcv);
    return true;
}

int moirai__peer_send(struct peer *p, uint8_t type, uint16_t flags, uint64_t task_id, const void *a,
                      size_t alen, const void *b, size_t blen)
{
    size_t n = FRAME_HEADER_SIZE + alen + blen;
    int rc = 0;
    bool failed = false;
    moirai_mutex_lock(&p->wlock);
    if (p->wclosed) {
        rc = -EPIPE;
        goto out;
    }
    if (p->wlen + n > p->wcap) {
        size_t cap = p->wcap ? p->wcap : 4096;
        while (cap < p->wlen + n)
            cap *= 2;
        uint8_t *nb = moirai_realloc(p->wbuf, cap);
        if (!nb) {
            rc = -ENOMEM;
            goto out;
        }
        p->wbuf = nb;
        p->wcap = cap;
    }
    uint8_t *w = p->wbuf + p->wlen;
    moirai__frame_put_header(w, type, flags, task_id, (uint32_t)(alen + blen));
    if (alen)
        memcpy(w + FRAME_HEADER_SIZE, a, alen);
    if (blen)
        memcpy(w + FRAME_HEADER_SIZE + alen, b, blen);
    bool first = p->wlen == 0;
    p->wlen += n;
    /* Nobody writing and nothing older waiting: send from this thread
     * rather than wake the writer fiber, whose wake-up costs more than the
     * system call when the socket has room (it usually has). Otherwise
     * the frame joins the queue, and the writer (or the thread writing
     * now) takes it with the others in one write. */
    if (!p->writing && !p->rest)
        failed = !write_direct(p);
    else if (first)
        moirai_condvar_signal(&p->wcv);
out:
    moirai_mutex_unlock(&p->wlock);
    if (failed) {
        /* Not moirai__peer_kill() here: the caller may hold the task
         * table's lock, which a death takes. Shutting the socket down
         * wakes the reader, which declares the death from its own fiber. */
        int fd = moirai_io_fd(p->io);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
    }
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
        bool have = p->rest || p->wlen;
        if (p->writing || (!have && !p->wclosed)) {
            moirai_condvar_wait(&p->wcv, &p->wlock);
            continue;
        }
        if (!have) {
            shut = p->wshut;
            break;
        }
        uint8_t *buf;
        size_t off = 0, n;
        bool was_rest = p->rest != NULL;
        if (was_rest) {
            /* A direct send's tail goes first. */
            buf = p->rest;
            off = p->rest_off;
            n = p->rest_len;
            p->rest = NULL;
        } else {
            /* Take everything queued; the producers fill the other buffer
             * meanwhile. */
            buf = p->wbuf;
            size_t bufcap = p->wcap;
            n = p->wlen;
            p->wbuf = out;
            p->wcap = outcap;
            p->wlen = 0;
            out = buf;
            outcap = bufcap;
        }
        p->writing = true;
        moirai_mutex_unlock(&p->wlock);
        ssize_t w = moirai_stream_write(p->io, buf + off, n - off);
        count_sent(p, w);
        if (was_rest)
            moirai_free(buf);
        moirai_mutex_lock(&p->wlock);
        p->writing = false;
        if (w != (ssize_t)(n - off)) {
            moirai_mutex_unlock(&p->wlock);
            moirai__peer_kill(p);
            moirai_mutex_lock(&p->wlock);
            break;
        }
    }
    moirai_mutex_unlock(&p->wlock);
    if (shut) {
        int fd = moirai_io_fd(p->io);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
    }
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
    /* Wake the reader (end of stream) and a blocked write; the handle
     * stays open until the last reference goes, so no call races a close. */
    int fd = moirai_io_fd(p->io);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    moirai_mutex_lock(&p->wlock);
    p->wclosed = true;
    p->wlen = 0;
    moirai_free(p->rest); /* unsent: the connection is over */
    p->rest = NULL;
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
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    if (moirai_io_peer_addr(p->io, (struct sockaddr *)&ss, &l) < 0)
        return;
    if (ss.ss_family == AF_INET) {
        out->family = 4;
        memcpy(out->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        out->family = 6;
        memcpy(out->addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    }
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
    if (expected == PEER_HANDSHAKE)
        moirai__membership_broadcast(node);
}

/* Claims the member entry of the node at the other end for this
 * connection. Returns 0, or -EALREADY (a connection to it exists or is
 * being made), -EHOSTDOWN (it was declared dead: a returning node needs a
 * new id), -ENOMEM (member table full). */
static int claim(struct reader *r)
{
    struct peer *p = r->p;
    struct moirai_node *node = p->node;
    int rc = 0;
    moirai_mutex_lock(&node->lock);
    struct member *m = moirai__member_get(node, p->id);
    if (!m)
        rc = -ENOMEM;
    else if (m->state == MEMBER_DEAD)
        rc = -EHOSTDOWN;
    else if (m->peer && m->peer != p)
        rc = -EALREADY;
    else {
        m->peer = p;
        m->addr = r->their_addr;
        p->m = m;
        /* Release: the writer fiber reads it without the node's lock. */
        atomic_store_explicit(&p->stats_m, m, memory_order_release);
    }
    moirai_mutex_unlock(&node->lock);
    return rc;
}

/* The acceptor met a larger id: remember where it listens and dial it. */
static void dial_back(struct reader *r)
{
    struct peer *p = r->p;
    struct moirai_node *node = p->node;
    struct sockaddr_storage ss;
    struct member *m = NULL;
    moirai_mutex_lock(&node->lock);
    struct member *c = moirai__member_get(node, p->id);
    if (c && c->state != MEMBER_DEAD && !c->peer && !c->dialing) {
        c->addr = r->their_addr;
        c->dialing = true;
        m = c;
    }
    moirai_mutex_unlock(&node->lock);
    if (m) {
        moirai__member_sockaddr(&r->their_addr, &ss);
        moirai__peer_dial(node, &ss, m, NULL);
    }
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
        resolve_addr(p, &f->u.hello.listen, &r->their_addr);
        uint8_t nonce[FRAME_NONCE_SIZE];
        moirai__auth_nonce(nonce);
        moirai__frame_put_hello(r->mine, node->id, &node->self_addr, nonce);
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
            p->wclosed = true;
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
        moirai__frame_put_hello(r->mine, node->id, &node->self_addr, nonce);
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
        ssize_t got = moirai_stream_read_timed(
            p->io, live || r->phase == 2 ? MOIRAI_DEADLINE_NEVER : hs_deadline, buf + len,
            cap - len);
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
    if (rc < 0 && rc != -EBADF && st == PEER_LIVE) {
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
 * closes io and reports to cw. */
static struct peer *peer_create(struct moirai_node *node, moirai_io_t *io, bool initiator,
                                struct connect_wait *cw)
{
    struct peer *p = moirai_calloc(1, sizeof *p);
    if (!p) {
        moirai_io_close(io);
        cw_report(cw, -ENOMEM);
        return NULL;
    }
    p->node = node;
    p->io = io;
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

int moirai__peer_start(struct moirai_node *node, moirai_io_t *io, bool initiator,
                       struct connect_wait *cw)
{
    struct peer *p = peer_create(node, io, initiator, cw);
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
    struct sockaddr_storage ss;
    struct member *m;
    struct connect_wait *cw;
};

static int dial_main(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct dial *d = arg;
    struct moirai_node *node = d->node;
    moirai_io_t *io = NULL;
    int rc = moirai_tcp_connect_timed(&io, node->rt, moirai_deadline_after(node->handshake_ns),
                                      (const struct sockaddr *)&d->ss, NULL);
    struct peer *p = NULL;
    if (rc < 0)
        cw_report(d->cw, rc);
    else
        p = peer_create(node, io, true, d->cw);
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

int moirai__peer_dial(struct moirai_node *node, const struct sockaddr_storage *ss, struct member *m,
                      struct connect_wait *cw)
{
    struct dial *d = moirai_malloc(sizeof *d);
    int rc = -ENOMEM;
    if (d) {
        d->node = node;
        d->ss = *ss;
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
