/* What the files of a node share: the node, its members, its connections
 * and the entry points each file offers the others.
 *
 * Files: node.c (config, the backend table, create/destroy, queries),
 * link.h with link_tcp.c (the bytes: links and backends), registry.c (task
 * names), keys.c (data keys: this node's, and those its peers hold),
 * membership.c (members, heartbeats, deaths, rejoins, deadlines), peer.c
 * (one connection: handshake, reader, writer), remote_spawn.c (the
 * caller's side of a task), remote_exec.c (the executing side), htab.c,
 * frame.c (the codec), auth.c.
 *
 * Locks, always taken in this order: node->keys_lock (this node's data
 * keys) -> node->ptab_lock (tasks this node waits for) -> node->lock
 * (members, connections, the keys peers hold) -> the lock inside
 * peer->batch (a connection's batcher) -> peer->wlock (a connection's
 * outgoing bytes); peer->xlock (tasks run for that peer) and
 * node->reg_lock are leaves. No lock is held across a wait for the
 * network or a write to a link (a write runs unlocked, with the
 * connection's `writing` set). */
#ifndef MOIRAI_TRANSPORT_NODE_INTERNAL_H
#define MOIRAI_TRANSPORT_NODE_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <moirai/async/runtime.h>
#include <moirai/sync/condvar.h>
#include <moirai/sync/mutex.h>
#include <moirai/sync/waitgroup.h>
#include <moirai/transport/batch.h>
#include <moirai/transport/node.h>

#include "frame.h"
#include "htab.h"
#include "link.h"

/* Counters shared by the node and each member (relaxed atomics: each is
 * an independent count, read for statistics only). */
struct node_counters {
    _Atomic uint64_t tasks_sent, tasks_received, tasks_retried, tasks_failed, tasks_completed;
    _Atomic uint64_t bytes_sent, bytes_received;
    _Atomic uint64_t rtt_count, rtt_sum_ns, rtt_min_ns, rtt_max_ns;
    _Atomic uint64_t auth_failures, protocol_errors, peers_dead;
    _Atomic uint64_t batches, batched_frames;
};

enum member_state { MEMBER_KNOWN = 0, MEMBER_ALIVE = 1, MEMBER_DEAD = 2 };

/* A sorted set of data keys, each NUL-terminated in a fixed slot. */
struct keyset {
    char (*keys)[FRAME_NAME_MAX + 1];
    uint32_t count, cap;
};

/* A node this node knows of. Entries are never removed, so pointers to
 * them stay valid for the node's life: a dead member stays dead until a
 * later incarnation of the same id connects (membership.c), which reuses
 * the entry. Fields other than the counters are guarded by node->lock. */
struct member {
    uint64_t id;
    uint64_t incarnation;   /* the latest life of `id` heard of; 0: none yet */
    int state;              /* enum member_state, of that incarnation */
    struct keyset keys;     /* the data keys its live connection announced */
    struct frame_addr addr; /* where it listens */
    struct peer *peer;      /* the connection to it, live or in handshake */
    bool dialing;           /* a dial to it is under way */
    uint32_t load_running, load_queued, load_workers; /* its last LOAD frame */
    _Atomic uint32_t inflight;                        /* tasks this node waits for there */
    struct node_counters st;
};

enum peer_state { PEER_HANDSHAKE = 0, PEER_LIVE = 1, PEER_DEAD = 2 };

/* Frames up to this size (header included) go through the connection's
 * batcher; larger ones are written on their own. */
#define PEER_SMALL_FRAME 1024u
/* The batcher's size bound: the most bytes (with its 4-byte framing) one
 * batch holds before it goes out. */
#define PEER_BATCH_BYTES 16384u

/* One connection. Reference counted: its reader fiber, its writer fiber,
 * every task running for it, and whoever briefly holds it. The last
 * reference closes the link, so no one uses a closed link. */
struct peer {
    struct moirai_node *node;
    struct link *link;
    _Atomic uint32_t refs;
    _Atomic int state; /* enum peer_state */
    bool initiator;
    bool keys_synced;                 /* this node's keys were sent (node->keys_lock) */
    uint64_t id;                      /* the other node, once its HELLO is in */
    uint64_t incarnation;             /* and which life of it */
    struct member *m;                 /* its member entry, once claimed (node->lock) */
    _Atomic(struct member *) stats_m; /* the same, for lock-free statistics */
    _Atomic uint64_t last_recv_ns;
    /* Outgoing frames: small ones through the batcher, whose sink queues
     * them under wlock; the queue is written by the sending thread when
     * the link is idle (kick()), else by the writer fiber. */
    moirai_batch_t *batch;
    moirai_mutex_t wlock;
    moirai_condvar_t wcv;
    uint8_t *qbuf; /* bytes to write, in order */
    size_t qlen, qcap;
    uint8_t *sbuf; /* a spare buffer for kick() */
    size_t scap;
    bool writing; /* a thread or the writer fiber is writing now */
    bool wshut;   /* shut the link down once flushed */
    bool wdead;   /* the connection is over: queued bytes are dropped */
    /* writing or bytes queued, for the batcher's busy callback, which
     * reads it without the lock (peer.c, write_ended()). */
    _Atomic bool wbusy;
    _Atomic bool batch_held; /* the batcher kept frames because a write was under way */
    _Atomic bool wclosed;    /* no more frames; the writer flushes and leaves */
    /* Tasks this node runs for the peer, by task id. */
    moirai_mutex_t xlock;
    struct htab exec;
    struct connect_wait *cw; /* a moirai_node_connect() waiting, or NULL */
    struct peer *next;       /* node->conns */
};

struct exec;

struct reg_entry {
    char name[FRAME_NAME_MAX + 1];
    moirai_remote_fn fn;
    void *arg;
};

struct moirai_node {
    moirai_runtime_t *rt;
    uint64_t id;
    uint64_t incarnation; /* this life of `id`, sent in HELLOs */
    /* config.id was set. Otherwise `id` is random when the backend's
     * listen() runs, which may replace it (MPI: rank + 1) before it
     * starts any fiber. */
    bool id_given;
    uint8_t *key;
    size_t key_len;
    uint64_t heartbeat_ns;
    uint32_t heartbeat_misses;
    uint32_t max_payload;
    uint32_t max_retries;
    uint64_t handshake_ns;
    moirai_placement_t placement;
    const struct backend_ops *backend;
    void *backend_state;         /* the backend's own (link_*.c) */
    struct frame_addr self_addr; /* as advertised in HELLOs */
    uint16_t port;

    moirai_mutex_t lock;
    moirai_condvar_t cv;    /* membership changed, or stopping */
    struct member *members; /* MOIRAI_NODE_MEMBERS_MAX entries */
    size_t nmembers;
    size_t rr;          /* round-robin cursor */
    struct peer *conns; /* every connection with a reader */
    size_t live;        /* live peers */

    moirai_mutex_t reg_lock;
    struct reg_entry *reg;
    size_t nreg, capreg;

    moirai_mutex_t keys_lock;
    struct keyset keys; /* the data keys this node holds */

    moirai_mutex_t ptab_lock;
    struct htab ptab; /* struct rtask by task id */
    size_t ndeadline; /* of them, with a deadline */

    /* Tasks received here wait in this FIFO while max_running fibers
     * run others (remote_exec.c). */
    moirai_mutex_t xq_lock;
    struct exec *xq_head, *xq_tail;
    uint32_t exec_fibers;
    uint32_t max_running;

    moirai_waitgroup_t fibers;
    _Atomic bool stopping;
    _Atomic uint32_t running; /* tasks executing here, for LOAD */
    _Atomic uint32_t queued;  /* received here, not started yet */
    struct node_counters st;
};

/* node.c */
int moirai__node_spawn_fiber(struct moirai_node *node, moirai_task_fn fn, void *arg);
void moirai__node_count(_Atomic uint64_t *c, uint64_t n);
void moirai__node_rtt(struct node_counters *st, uint64_t ns);

/* registry.c */
moirai_remote_fn moirai__registry_find(struct moirai_node *node, const uint8_t *name, size_t len,
                                       void **arg);
void moirai__registry_fini(struct moirai_node *node);

/* keys.c */
/* True if `set` holds the key (`len` bytes). */
bool moirai__keyset_has(const struct keyset *set, const uint8_t *key, size_t len);
void moirai__keyset_clear(struct keyset *set);
/* Applies a KEY frame from the live peer `p`. Returns 0, or -EPROTO when
 * the peer announces more than MOIRAI_NODE_KEYS_MAX keys, -ENOMEM; either
 * closes the connection. */
int moirai__keys_apply(struct peer *p, const struct frame *f);
/* Sends every key of this node to `p`, which just went live, and marks it
 * as one that later changes go to. */
void moirai__keys_sync(struct peer *p);
void moirai__keys_fini(struct moirai_node *node);

/* peer.c */
struct connect_wait;
/* Starts a connection over `link` (accepted, or dialed when `initiator`),
 * on a new reader fiber. Takes ownership of the link (closes it on
 * error). `cw` may be NULL. Returns 0 or a negative errno. */
int moirai__peer_start(struct moirai_node *node, struct link *link, bool initiator,
                       struct connect_wait *cw);
/* Dials `to` through the node's backend on a fiber and reports to `cw`
 * (may be NULL); `m`, if not NULL, is the member being dialed (its
 * `dialing` flag is cleared when the attempt ends). */
int moirai__peer_dial(struct moirai_node *node, const struct frame_addr *to, struct member *m,
                      struct connect_wait *cw);
/* Queues one frame: header and up to two body parts. Returns 0 or -EPIPE
 * (the connection is closing), -ENOMEM. */
int moirai__peer_send(struct peer *p, uint8_t type, uint16_t flags, uint64_t task_id, const void *a,
                      size_t alen, const void *b, size_t blen);
void moirai__peer_ref(struct peer *p);
void moirai__peer_unref(struct peer *p);
/* Declares the connection over: wakes its reader and writer; if it was
 * live, the member dies (see membership.c). Idempotent. */
void moirai__peer_kill(struct peer *p);
struct connect_wait *moirai__connect_wait_new(void);
int moirai__connect_wait(struct connect_wait *cw, uint64_t deadline);
void moirai__connect_wait_put(struct connect_wait *cw);

/* membership.c */
/* Finds or adds the member `id` (node->lock held). NULL when the table is
 * full. */
struct member *moirai__member_get(struct moirai_node *node, uint64_t id);
/* The live connection to `id`, referenced, or NULL (node->lock not held). */
struct peer *moirai__member_peer(struct moirai_node *node, uint64_t id);
/* Sends the member list to every live peer. */
void moirai__membership_broadcast(struct moirai_node *node);
/* Applies a MEMBERSHIP frame received from a live peer. */
void moirai__membership_apply(struct moirai_node *node, const struct frame *f);
/* The member of a live connection that ended died: fails or retries its
 * tasks, tells the others. Called once per live connection. */
void moirai__membership_dead(struct moirai_node *node, struct peer *p);
/* Starts the heartbeat fiber. */
int moirai__membership_start(struct moirai_node *node);
/* True if incarnation `inc` of the member may connect: it is later than
 * every one heard of, or the current one and not dead (node->lock held). */
bool moirai__member_admits(const struct member *m, uint64_t inc);
/* If `m` has a connection to an incarnation earlier than `inc`, ends it:
 * kills it (releasing node->lock meanwhile) or waits for a kill under way
 * to let go of the entry. Returns true if it did (the caller re-checks
 * `m`), false if there is no such connection. node->lock held. */
bool moirai__member_retire(struct moirai_node *node, struct member *m, uint64_t inc);
/* Claims the member entry of `p`'s node (p->id, p->incarnation, listening
 * at `addr`) for the connection `p`. Returns 0; -EALREADY (a connection
 * to that incarnation exists or is being made); -EHOSTDOWN (that
 * incarnation died, or a later one is known); -ENOMEM (member table
 * full). A connection of an earlier incarnation still in place is killed
 * first: the process it reached is gone. node->lock not held. */
int moirai__member_claim(struct moirai_node *node, struct peer *p, const struct frame_addr *addr);
/* The automatic incarnation of a node created now: the wall clock in ns,
 * and above every earlier one of this process. */
uint64_t moirai__membership_incarnation(void);

/* remote_spawn.c */
void moirai__spawn_on_result(struct moirai_node *node, struct peer *p, const struct frame *f);
/* Ends or re-sends every task waiting on incarnation `inc` of the dead
 * member `id` (tasks on a later incarnation are left alone). */
void moirai__spawn_peer_dead(struct moirai_node *node, uint64_t id, uint64_t inc);
/* Ends the tasks whose deadline passed; cancels them on their nodes. */
void moirai__spawn_expire(struct moirai_node *node, uint64_t now);
/* Ends every task still waiting with -ESHUTDOWN (node destroy). */
void moirai__spawn_shutdown(struct moirai_node *node);

/* remote_exec.c */
void moirai__exec_on_spawn(struct peer *p, const struct frame *f);
void moirai__exec_on_cancel(struct peer *p, uint64_t task_id);
/* Cancels every task running for `p` (its node died). */
void moirai__exec_cancel_all(struct peer *p);

#endif
