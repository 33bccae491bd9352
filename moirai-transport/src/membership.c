/* Membership: the members a node knows, the heartbeats that show a peer
 * is alive, what happens when one dies, and the membership frames that
 * tell every member about the others.
 *
 * Failure detection. Any frame counts as a sign of life. Every heartbeat
 * period the node sends each live peer a HEARTBEAT and a LOAD frame; a
 * peer from which nothing arrived for `heartbeat_misses` periods is
 * declared dead, as is one whose connection ends; bytes waiting unread
 * in its socket count as a sign of life, so a node too busy to read is
 * not mistaken for a silent peer. A death is final for that incarnation
 * of the id, and the node tells every other member in a MEMBERSHIP frame,
 * whose receivers declare it dead too. So a node that is only unreachable
 * from one member is cut off by all: the cluster prefers one view to a
 * split one.
 *
 * Rejoining. Every node has an incarnation (config, or the wall clock at
 * creation), sent in its HELLO and with every member entry. A dead id is
 * readmitted only with a larger incarnation: a restarted process, never
 * the one that was declared dead. The member entry is reused for the new
 * incarnation; tasks that were on the old one were ended (or retried)
 * when it died and are matched by incarnation, so nothing of the old life
 * can complete or fail twice. News about an incarnation older than the
 * one known is ignored; news of a newer one supersedes a connection to
 * an older one (that process is gone, whether or not its death was
 * noticed yet). */
#include <errno.h>
#include <string.h>
#include <time.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/log.h>
#include <moirai/sched/sched.h>

#include "node_internal.h"

struct member *moirai__member_get(struct moirai_node *node, uint64_t id)
{
    for (size_t i = 0; i < node->nmembers; i++)
        if (node->members[i].id == id)
            return &node->members[i];
    if (node->nmembers == MOIRAI_NODE_MEMBERS_MAX)
        return NULL;
    struct member *m = &node->members[node->nmembers++];
    m->id = id;
    m->state = MEMBER_KNOWN;
    return m;
}

bool moirai__member_admits(const struct member *m, uint64_t inc)
{
    return inc > m->incarnation || (inc == m->incarnation && m->state != MEMBER_DEAD);
}

uint64_t moirai__membership_incarnation(void)
{
    static _Atomic uint64_t last;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    /* Relaxed CAS: only the values matter (each creation takes a larger
     * one than every earlier one, even if the clock stepped back). */
    uint64_t prev = atomic_load_explicit(&last, memory_order_relaxed), next;
    do {
        next = now > prev ? now : prev + 1;
    } while (!atomic_compare_exchange_weak_explicit(&last, &prev, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    return next;
}

/* A new incarnation takes over the entry: what was known of the old one
 * goes (node->lock held). */
static void member_reincarnate(struct member *m, uint64_t inc)
{
    m->incarnation = inc;
    m->state = MEMBER_KNOWN;
    m->load_running = m->load_queued = m->load_workers = 0;
    moirai__keyset_clear(&m->keys);
}

bool moirai__member_retire(struct moirai_node *node, struct member *m, uint64_t inc)
{
    struct peer *old = m->peer;
    if (!old || inc <= m->incarnation)
        return false;
    /* Acquire: pairs with the kill's exchange; a kill under way clears
     * m->peer and broadcasts node->cv under node->lock, which we hold, so
     * the wake-up cannot be missed. Waiting (not retrying) matters: the
     * killer may be a fiber of this very worker. */
    if (atomic_load_explicit(&old->state, memory_order_acquire) == PEER_DEAD) {
        moirai_condvar_wait(&node->cv, &node->lock);
        return true;
    }
    MOIRAI_LOG(MOIRAI_LOG_INFO, "node %llx: peer %llx came back; its old connection is dead",
               (unsigned long long)node->id, (unsigned long long)m->id);
    moirai__peer_ref(old);
    moirai_mutex_unlock(&node->lock);
    moirai__peer_kill(old);
    moirai__peer_unref(old);
    moirai_mutex_lock(&node->lock);
    return true;
}

int moirai__member_claim(struct moirai_node *node, struct peer *p, const struct frame_addr *addr)
{
    int rc = 0;
    moirai_mutex_lock(&node->lock);
    struct member *m = moirai__member_get(node, p->id);
    /* A connection to an earlier life of this id reaches a process that
     * is gone: it dies (its tasks end or are retried) before the new one
     * takes the entry. */
    while (m && m->peer != p && moirai__member_retire(node, m, p->incarnation)) {
    }
    if (!m) {
        rc = -ENOMEM;
    } else if (!moirai__member_admits(m, p->incarnation)) {
        rc = -EHOSTDOWN;
    } else if (m->peer && m->peer != p) {
        rc = -EALREADY;
    } else {
        if (p->incarnation > m->incarnation || m->state == MEMBER_DEAD)
            member_reincarnate(m, p->incarnation);
        /* A fresh connection announces its keys from scratch. */
        moirai__keyset_clear(&m->keys);
        m->peer = p;
        m->addr = *addr;
        p->m = m;
        /* Release: the writer fiber reads it without the node's lock. */
        atomic_store_explicit(&p->stats_m, m, memory_order_release);
    }
    moirai_mutex_unlock(&node->lock);
    return rc;
}

struct peer *moirai__member_peer(struct moirai_node *node, uint64_t id)
{
    struct peer *p = NULL;
    moirai_mutex_lock(&node->lock);
    for (size_t i = 0; i < node->nmembers; i++) {
        struct member *m = &node->members[i];
        if (m->id == id) {
            if (m->state == MEMBER_ALIVE && m->peer &&
                atomic_load_explicit(&m->peer->state, memory_order_relaxed) == PEER_LIVE) {
                p = m->peer;
                moirai__peer_ref(p);
            }
            break;
        }
    }
    moirai_mutex_unlock(&node->lock);
    return p;
}

/* References to every live peer (node->lock held); returns their count. */
static size_t live_peers(struct moirai_node *node, struct peer **out)
{
    size_t n = 0;
    for (size_t i = 0; i < node->nmembers; i++) {
        struct peer *p = node->members[i].peer;
        if (node->members[i].state == MEMBER_ALIVE && p &&
            atomic_load_explicit(&p->state, memory_order_relaxed) == PEER_LIVE) {
            moirai__peer_ref(p);
            out[n++] = p;
        }
    }
    return n;
}

void moirai__membership_broadcast(struct moirai_node *node)
{
    size_t cap = 4 + (size_t)(MOIRAI_NODE_MEMBERS_MAX)*FRAME_MEMBER_SIZE;
    uint8_t *body = moirai_malloc(cap);
    struct peer **peers = moirai_malloc(MOIRAI_NODE_MEMBERS_MAX * sizeof *peers);
    if (!body || !peers) {
        /* Members learn of each other by the next change instead. */
        moirai_free(body);
        moirai_free(peers);
        return;
    }
    moirai_mutex_lock(&node->lock);
    uint32_t count = 0;
    struct frame_member fm = {.node_id = node->id,
                              .state = FRAME_MEMBER_ALIVE,
                              .addr = node->self_addr,
                              .incarnation = node->incarnation};
    moirai__frame_put_member(body + 4, &fm);
    count++;
    for (size_t i = 0; i < node->nmembers && count < FRAME_MEMBERS_MAX; i++) {
        struct member *m = &node->members[i];
        /* Only what is known of an incarnation (0 goes on no wire). */
        if (m->state == MEMBER_KNOWN || m->incarnation == 0)
            continue;
        fm.node_id = m->id;
        fm.state = m->state == MEMBER_ALIVE ? FRAME_MEMBER_ALIVE : FRAME_MEMBER_DEAD;
        fm.addr = m->addr;
        fm.incarnation = m->incarnation;
        moirai__frame_put_member(body + 4 + (size_t)count * FRAME_MEMBER_SIZE, &fm);
        count++;
    }
    size_t n = live_peers(node, peers);
    moirai_mutex_unlock(&node->lock);
    moirai__frame_put_u32(body, count);
    for (size_t i = 0; i < n; i++) {
        moirai__peer_send(peers[i], FRAME_MEMBERSHIP, 0, 0, body,
                          4 + (size_t)count * FRAME_MEMBER_SIZE, NULL, 0);
        moirai__peer_unref(peers[i]);
    }
    moirai_free(body);
    moirai_free(peers);
}

void moirai__membership_apply(struct moirai_node *node, const struct frame *f)
{
    for (uint32_t i = 0; i < f->u.members.count; i++) {
        struct frame_member e;
        moirai__frame_member_at(f, i, &e);
        if (e.node_id == node->id)
            continue;
        struct peer *kill = NULL;
        struct member *dial = NULL;
        bool dead = e.state == FRAME_MEMBER_DEAD;
        moirai_mutex_lock(&node->lock);
        struct member *m = moirai__member_get(node, e.node_id);
        if (!m || e.incarnation < m->incarnation) {
            /* Table full, or news of an earlier life: nothing to do. */
        } else if (dead && (m->state != MEMBER_DEAD || e.incarnation > m->incarnation)) {
            /* That incarnation died (or, if later than ours, ours is gone
             * as well): whatever connection we have to the id dies. */
            if (m->peer) {
                kill = m->peer;
                moirai__peer_ref(kill);
            }
            if (m->state != MEMBER_ALIVE) {
                m->state = MEMBER_DEAD; /* a live one dies through its peer */
                m->incarnation = e.incarnation;
            }
        } else if (!dead && e.incarnation > m->incarnation) {
            /* A later life of the id is alive: a connection to an earlier
             * one reaches a process that is gone. */
            while (moirai__member_retire(node, m, e.incarnation)) {
            }
            if (!m->peer && e.incarnation > m->incarnation)
                member_reincarnate(m, e.incarnation);
        }
        if (m && !dead && e.incarnation == m->incarnation && m->state == MEMBER_KNOWN && !m->peer &&
            !m->dialing && e.addr.family != 0) {
            m->addr = e.addr;
            /* The smaller id dials; the larger waits to be dialed. */
            if (node->id < e.node_id) {
                m->dialing = true;
                dial = m;
            }
        }
        moirai_mutex_unlock(&node->lock);
        if (kill) {
            MOIRAI_LOG(MOIRAI_LOG_INFO, "node %llx: told that %llx died",
                       (unsigned long long)node->id, (unsigned long long)e.node_id);
            moirai__peer_kill(kill);
            moirai__peer_unref(kill);
            /* Its state was HANDSHAKE or the kill made it dead; unless a
             * later incarnation took the entry meanwhile. */
            moirai_mutex_lock(&node->lock);
            if (e.incarnation >= m->incarnation && !m->peer) {
                m->state = MEMBER_DEAD;
                m->incarnation = e.incarnation;
            }
            moirai_mutex_unlock(&node->lock);
        }
        if (dial)
            moirai__peer_dial(node, &e.addr, dial, NULL);
    }
}

void moirai__membership_dead(struct moirai_node *node, struct peer *p)
{
    moirai__node_count(&node->st.peers_dead, 1);
    moirai__node_count(&p->m->st.peers_dead, 1);
    MOIRAI_LOG(MOIRAI_LOG_INFO, "node %llx: peer %llx is dead", (unsigned long long)node->id,
               (unsigned long long)p->id);
    moirai__exec_cancel_all(p);
    moirai__spawn_peer_dead(node, p->id, p->incarnation);
    /* Its keys go with its connection, unless a new one has the entry. */
    moirai_mutex_lock(&node->lock);
    if (!p->m->peer)
        moirai__keyset_clear(&p->m->keys);
    moirai_mutex_unlock(&node->lock);
    if (!atomic_load_explicit(&node->stopping, memory_order_acquire))
        moirai__membership_broadcast(node);
}

/* Bytes received on the peer's link and not read yet (0 when its backend
 * cannot tell). */
static size_t unread(struct peer *p)
{
    return p->link->ops->unread ? p->link->ops->unread(p->link) : 0;
}

static int heartbeat_main(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct moirai_node *node = arg;
    struct peer **peers = moirai_malloc(MOIRAI_NODE_MEMBERS_MAX * sizeof *peers);
    uint64_t next = moirai_clock_now_ns();
    uint64_t limit = node->heartbeat_ns * node->heartbeat_misses;
    uint32_t workers = (uint32_t)moirai_sched_worker_count(moirai_runtime_sched(node->rt));
    for (;;) {
        next += node->heartbeat_ns;
        moirai_mutex_lock(&node->lock);
        while (!atomic_load_explicit(&node->stopping, memory_order_acquire) &&
               moirai_condvar_wait_timed(&node->cv, &node->lock, next) == 0) {
        }
        bool stop = atomic_load_explicit(&node->stopping, memory_order_acquire);
        size_t n = stop || !peers ? 0 : live_peers(node, peers);
        moirai_mutex_unlock(&node->lock);
        if (stop)
            break;
        uint64_t now = moirai_clock_now_ns();
        if (next < now)
            next = now; /* a late tick does not cause a burst */
        uint8_t hb[8], load[12];
        moirai__frame_put_u64(hb, now);
        /* Relaxed: a published load is a hint. */
        moirai__frame_put_u32(load, atomic_load_explicit(&node->running, memory_order_relaxed));
        moirai__frame_put_u32(load + 4, atomic_load_explicit(&node->queued, memory_order_relaxed));
        moirai__frame_put_u32(load + 8, workers);
        for (size_t i = 0; i < n; i++) {
            struct peer *p = peers[i];
            uint64_t last = atomic_load_explicit(&p->last_recv_ns, memory_order_relaxed);
            if (now > last && now - last > limit && unread(p) > 0) {
                /* Bytes wait in the link: the peer spoke and this node
                 * is the slow one (its reader has not run yet). */
                atomic_store_explicit(&p->last_recv_ns, now, memory_order_relaxed);
                last = now;
            }
            if (now > last && now - last > limit) {
                MOIRAI_LOG(MOIRAI_LOG_INFO, "node %llx: peer %llx missed %u heartbeats",
                           (unsigned long long)node->id, (unsigned long long)p->id,
                           node->heartbeat_misses);
                moirai__peer_kill(p);
            } else {
                moirai__peer_send(p, FRAME_HEARTBEAT, 0, 0, hb, sizeof hb, NULL, 0);
                moirai__peer_send(p, FRAME_LOAD, 0, 0, load, sizeof load, NULL, 0);
            }
            moirai__peer_unref(p);
        }
        moirai__spawn_expire(node, now);
    }
    moirai_free(peers);
    return 0;
}

int moirai__membership_start(struct moirai_node *node)
{
    return moirai__node_spawn_fiber(node, heartbeat_main, node);
}
