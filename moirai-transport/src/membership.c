/* Membership: the members a node knows, the heartbeats that show a peer
 * is alive, what happens when one dies, and the membership frames that
 * tell every member about the others.
 *
 * Failure detection. Any frame counts as a sign of life. Every heartbeat
 * period the node sends each live peer a HEARTBEAT and a LOAD frame; a
 * peer from which nothing arrived for `heartbeat_misses` periods is
 * declared dead, as is one whose connection ends; bytes waiting unread
 * in its socket count as a sign of life, so a node too busy to read is
 * not mistaken for a silent peer. A death is final: the
 * id stays dead (a returning process joins under a new id), and the node
 * tells every other member in a MEMBERSHIP frame, whose receivers declare
 * it dead too. So a node that is only unreachable from one member is cut
 * off by all: the cluster prefers one view to a split one. */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

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

void moirai__member_sockaddr(const struct frame_addr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == 6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        memcpy(&s6->sin6_addr, a->addr, 16);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(a->port);
        memcpy(&s4->sin_addr, a->addr, 4);
    }
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
    struct frame_member fm = {
        .node_id = node->id, .state = FRAME_MEMBER_ALIVE, .addr = node->self_addr};
    moirai__frame_put_member(body + 4, &fm);
    count++;
    for (size_t i = 0; i < node->nmembers && count < FRAME_MEMBERS_MAX; i++) {
        struct member *m = &node->members[i];
        if (m->state == MEMBER_KNOWN)
            continue;
        fm.node_id = m->id;
        fm.state = m->state == MEMBER_ALIVE ? FRAME_MEMBER_ALIVE : FRAME_MEMBER_DEAD;
        fm.addr = m->addr;
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
        moirai_mutex_lock(&node->lock);
        struct member *m = moirai__member_get(node, e.node_id);
        if (m && e.state == FRAME_MEMBER_DEAD && m->state != MEMBER_DEAD) {
            if (m->peer) {
                kill = m->peer;
                moirai__peer_ref(kill);
            }
            if (m->state != MEMBER_ALIVE)
                m->state = MEMBER_DEAD; /* a live one dies through its peer */
        } else if (m && e.state == FRAME_MEMBER_ALIVE && m->state == MEMBER_KNOWN && !m->peer &&
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
            /* Its state was HANDSHAKE or the kill made it dead. */
            moirai_mutex_lock(&node->lock);
            m->state = MEMBER_DEAD;
            moirai_mutex_unlock(&node->lock);
        }
        if (dial) {
            struct sockaddr_storage ss;
            moirai__member_sockaddr(&e.addr, &ss);
            moirai__peer_dial(node, &ss, dial, NULL);
        }
    }
}

void moirai__membership_dead(struct moirai_node *node, struct peer *p)
{
    moirai__node_count(&node->st.peers_dead, 1);
    moirai__node_count(&p->m->st.peers_dead, 1);
    MOIRAI_LOG(MOIRAI_LOG_INFO, "node %llx: peer %llx is dead", (unsigned long long)node->id,
               (unsigned long long)p->id);
    moirai__exec_cancel_all(p);
    moirai__spawn_peer_dead(node, p->id);
    if (!atomic_load_explicit(&node->stopping, memory_order_acquire))
        moirai__membership_broadcast(node);
}

/* Bytes received on the peer's socket and not read yet. */
static int unread(struct peer *p)
{
    int fd = moirai_io_fd(p->io), n = 0;
    if (fd < 0 || ioctl(fd, FIONREAD, &n) < 0)
        return 0;
    return n;
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
                /* Bytes wait in the socket: the peer spoke and this node
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
