/* Remote tasks: nodes of a cluster that run each other's registered
 * functions over authenticated TCP connections.
 *
 * A process joins a cluster as a node (moirai_node_create()) on a
 * moirai-async runtime. It registers task functions under stable names
 * (C cannot ship code, so only registered names are callable), learns the
 * other nodes from a static seed list and from membership frames, and
 * spawns tasks on them (moirai_node_spawn()). A spawn returns a core
 * completion handle (moirai/core/handle.h): join, join_timed, try_join and
 * cancel work on it as on a local task's handle. Its value on success is a
 * moirai_remote_result_t holding the result bytes.
 *
 * Where a task runs: a peer named by id, or one the placement policy
 * picks (round robin, least loaded, or, per spawn, locality: a peer that
 * declared it holds a named data key, moirai_node_spawn_attr()). A node
 * declared dead stays dead; a restarted process may rejoin under the
 * same id with a later incarnation (config `incarnation`).
 *
 * Every connection is authenticated both ways with an HMAC-SHA256
 * challenge-response over a shared cluster key before any other frame is
 * accepted. docs/transport.md, "Remote tasks", has the wire format, the
 * failure model (exactly what is guaranteed when a node dies mid-task)
 * and the security model with its limits.
 *
 * Threads: every function here may be called from any thread or fiber
 * unless it says otherwise; the node's own work (accepting, reading,
 * writing, heartbeats, running received tasks) runs on fibers of the
 * runtime given at creation. */
#ifndef MOIRAI_TRANSPORT_NODE_H
#define MOIRAI_TRANSPORT_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/async/runtime.h>
#include <moirai/core/handle.h>
#include <moirai/core/task.h>
#include <moirai/transport/export.h>

/* A node (see above). Opaque; created and destroyed below. */
typedef struct moirai_node moirai_node_t;

/* The result bytes of a remote task, the value its handle completes with
 * (moirai_handle_join() stores it in `*value`). Opaque; owned by whoever
 * spawned the task, who frees it with moirai_remote_result_free() once
 * every joiner is done reading it. */
typedef struct moirai_remote_result moirai_remote_result_t;

/* A registered task function. Called on a fiber of the executing node's
 * runtime with `arg` from registration, the `payload` bytes the spawner
 * sent (`len` of them; valid only during the call) and the task's cancel
 * token, which turns cancelled when the spawner cancels the task or the
 * spawner's node dies. Return 0 and optionally store a result in
 * `*result` (allocated with moirai_malloc(); the node frees it after
 * sending) and its length in `*result_len`, or return a negative errno
 * (from -1 to -4095), which becomes the spawner's join error. */
typedef int (*moirai_remote_fn)(void *arg, const void *payload, size_t len,
                                const moirai_cancel_token_t *cancel, void **result,
                                size_t *result_len);

/* Spawn target: any live peer, chosen by the placement policy. */
#define MOIRAI_NODE_ANY ((uint64_t)0)

/* Spawn flags. */
#define MOIRAI_REMOTE_IDEMPOTENT 0x1u /* may run again on another node if its node dies */
/* With MOIRAI_PLACEMENT_LOCALITY (moirai_node_spawn_attr() only): when
 * no live peer holds the key, place the task by the node's policy
 * instead of failing with -ENOENT. */
#define MOIRAI_REMOTE_FALLBACK 0x2u

/* Limits. */
#define MOIRAI_REMOTE_NAME_MAX    63u                        /* bytes of a task name */
#define MOIRAI_REMOTE_PAYLOAD_MAX ((size_t)64 * 1024 * 1024) /* the largest max_payload */
#define MOIRAI_NODE_SEEDS_MAX     64u                        /* entries of a seed list */
#define MOIRAI_NODE_MEMBERS_MAX   1024u                      /* nodes a node knows */
#define MOIRAI_NODE_KEY_MAX       63u                        /* bytes of a data key */
#define MOIRAI_NODE_KEYS_MAX      1024u                      /* data keys a node holds */

/* Placement of MOIRAI_NODE_ANY spawns. */
typedef enum moirai_placement {
    /* In a node's config: round robin. In a spawn's attributes: the
     * node's policy. */
    MOIRAI_PLACEMENT_DEFAULT = 0,
    /* The next live peer, cyclically, in the order this node learned of
     * them. */
    MOIRAI_PLACEMENT_ROUND_ROBIN = 1,
    /* The live peer with the least load: the larger of the tasks this node
     * waits for there and the load that peer last published (tasks
     * running plus queued, from every spawner; sent every heartbeat);
     * ties go round robin. */
    MOIRAI_PLACEMENT_LEAST_LOADED = 2,
    /* Per spawn only (moirai_node_spawn_attr()): a live peer that holds
     * the spawn's data key (moirai_node_key_add() on that peer); among
     * several holders, the node's policy picks. Not a node policy: in a
     * node's config it is -EINVAL. */
    MOIRAI_PLACEMENT_LOCALITY = 3,
} moirai_placement_t;

/* How a node reaches the others: the byte transport under the frames.
 * Everything above bytes (handshake, authentication, frames, membership,
 * tasks) is the same on every backend; docs/transport.md, "Backends",
 * describes each. A backend not built into this library is -ENOTSUP from
 * moirai_node_create() (see moirai_node_backend_supported()). */
typedef enum moirai_node_backend {
    /* TCP through moirai-async's reactor; `listen` and `seeds` are
     * "host:port". The default. */
    MOIRAI_NODE_BACKEND_TCP = 0,
    /* One node per MPI rank (MPICH); `listen` and `seeds` are ignored and
     * the node id is rank + 1 unless `id` is set. */
    MOIRAI_NODE_BACKEND_MPI = 1,
    /* Shared-memory rings between nodes on one host. */
    MOIRAI_NODE_BACKEND_SHM = 2,
} moirai_node_backend_t;
/* Per-spawn attributes for moirai_node_spawn_attr(). Fill with
 * moirai_remote_attr_init(); a zeroed field means its default, and a
 * NULL attr pointer means all defaults. */
typedef struct moirai_remote_attr {
    /* 0, or MOIRAI_REMOTE_IDEMPOTENT and/or MOIRAI_REMOTE_FALLBACK. */
    uint32_t flags;
    /* Absolute, moirai_clock_now_ns() scale. 0 or MOIRAI_DEADLINE_NEVER:
     * none. */
    uint64_t deadline;
    /* MOIRAI_PLACEMENT_DEFAULT (0): the node's policy. */
    moirai_placement_t placement;
    /* The data key for MOIRAI_PLACEMENT_LOCALITY (1 to
     * MOIRAI_NODE_KEY_MAX bytes of [A-Za-z0-9_.:-]); NULL otherwise.
     * Copied. */
    const char *key;
} moirai_remote_attr_t;

/* How to build a node. Fill it with moirai_node_config_init(); a zeroed
 * field means its default. */
typedef struct moirai_node_config {
    /* The runtime whose fibers do the node's work. Required: NULL is
     * -EINVAL. It must outlive the node. */
    moirai_runtime_t *runtime;
    /* This node's id, unique in the cluster; 0: a random one. */
    uint64_t id;
    /* "host:port" to listen on (IPv4 dotted quad, or [IPv6]). NULL:
     * "127.0.0.1:0" (loopback, a free port). Listening beyond loopback
     * must be asked for. */
    const char *listen;
    /* Seeds to connect to, "host:port" each (numeric addresses);
     * `seed_count` of them (at most MOIRAI_NODE_SEEDS_MAX). NULL/0: none. */
    const char *const *seeds;
    size_t seed_count;
    /* The shared cluster key. Required: NULL or fewer than 16 bytes is
     * -EINVAL; at most 1024 bytes. Copied. */
    const void *key;
    size_t key_len;
    /* Heartbeat period. 0: 100 ms. 1 ms to 60 s. */
    uint64_t heartbeat_ns;
    /* Heartbeat periods without a frame after which a peer is declared
     * dead. 0: 10. 2 to 1000. */
    uint32_t heartbeat_misses;
    /* The largest task payload or result, in bytes. 0: 1 MiB. At most
     * MOIRAI_REMOTE_PAYLOAD_MAX. All nodes of a cluster should agree: a
     * frame over the receiver's limit closes the connection. */
    size_t max_payload;
    /* How many more times an idempotent task may be sent to another node
     * after the node it was on died. 0: 3. At most 100. */
    uint32_t max_retries;
    /* Tasks received from peers that run at once, each on a fiber; more
     * wait in arrival order. 0: 1024. At most 1000000. A task that waits
     * for another task of this node to run may wait forever once this
     * many such tasks hold every slot. */
    uint32_t max_running;
    /* Time allowed for a connection's handshake. 0: 5 s. At most 60 s. */
    uint64_t handshake_timeout_ns;
    /* MOIRAI_PLACEMENT_DEFAULT (0, round robin), _ROUND_ROBIN or
     * _LEAST_LOADED. */
    moirai_placement_t placement;
    /* Which life of `id` this node is. A node declared dead is readmitted
     * under the same id only with a larger incarnation. 0: the wall clock
     * in ns at creation (larger than every earlier automatic one of this
     * process), so a restarted process rejoins as long as the clock did
     * not step back. */
    uint64_t incarnation;
    /* The transport to the other nodes. 0: MOIRAI_NODE_BACKEND_TCP. A
     * value outside the enum is -EINVAL; a backend not built in,
     * -ENOTSUP. Every node of a cluster uses the same backend. */
    moirai_node_backend_t backend;
} moirai_node_config_t;

/* Per-node and per-peer counters. Read with relaxed loads: each counter
 * is exact once the node is idle, approximate while tasks run. */
typedef struct moirai_node_stats {
    uint64_t tasks_sent;      /* spawn frames sent, retries included */
    uint64_t tasks_received;  /* spawn frames received from authenticated peers */
    uint64_t tasks_retried;   /* idempotent tasks sent again after a node died */
    uint64_t tasks_failed;    /* spawned tasks that ended with an error */
    uint64_t tasks_completed; /* spawned tasks that ended with a result */
    uint64_t bytes_sent;      /* bytes written to peers, framing included */
    uint64_t bytes_received;  /* bytes read from peers, framing included */
    uint64_t rtt_count;       /* tasks whose round trip is counted below */
    uint64_t rtt_sum_ns;      /* sum of their spawn-to-result times */
    uint64_t rtt_min_ns;      /* 0 while rtt_count is 0 */
    uint64_t rtt_max_ns;      /* the longest of them; 0 while rtt_count is 0 */
    uint64_t auth_failures;   /* handshakes refused: wrong key, bad frames, timeout */
    uint64_t protocol_errors; /* authenticated connections closed for a bad frame */
    uint64_t peers_dead;      /* peers declared dead */
    /* Batches of small frames handed to connections by their adaptive
     * batchers (docs/transport.md, "Batching on a connection"), each
     * written with one call or queued behind a write under way. */
    uint64_t batches;
    /* The frames in those batches: batched_frames / batches is the mean
     * batch, 1.0 when every frame went out at once. */
    uint64_t batched_frames;
} moirai_node_stats_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Sets `*cfg` to the defaults (all zero). NULL is ignored. */
MOIRAI_TRANSPORT_API void moirai_node_config_init(moirai_node_config_t *cfg);

/* Whether `backend` is built into this library (TCP always is; MPI needs
 * MPICH at build time). False for a value outside the enum. Never blocks;
 * thread-safe. */
MOIRAI_TRANSPORT_API bool moirai_node_backend_supported(moirai_node_backend_t backend);

/* Creates a node: validates `cfg`, listens, and starts connecting to the
 * seeds in the background (a seed that refuses is retried, backing off to
 * one attempt per second, until a handshake with it completes; a seed
 * that refuses the key is given up, with a warning in the log). Never
 * blocks for the network. Thread-safe; several nodes may share one
 * runtime. Returns 0, -EINVAL (NULL out or cfg, NULL runtime, a missing
 * or short key, an unparsable address, a value out of range),
 * -EADDRINUSE, -EIO (libsodium could not start), -ENOTSUP (the backend is
 * not built in), -ENOMEM, or another error of the backend's listen
 * (moirai_tcp_listen() for TCP); on error nothing is left behind and
 * `*out` is untouched. */
MOIRAI_TRANSPORT_API int moirai_node_create(moirai_node_t **out, const moirai_node_config_t *cfg);

/* Stops the node: closes every connection (peers see this node die), ends
 * every spawned task still pending with -ESHUTDOWN, cancels the tasks it
 * runs for others and waits for their fibers to end (a task function
 * that ignores its token delays this). Blocks (parks a fiber). No other
 * call may use the node once this has begun, and it must not be called
 * from a task function of this node or before its runtime is destroyed.
 * Returns 0; NULL is ignored (0). */
MOIRAI_TRANSPORT_API int moirai_node_destroy(moirai_node_t *node);

/* This node's id (0 for NULL). Never blocks; thread-safe. */
MOIRAI_TRANSPORT_API uint64_t moirai_node_id(const moirai_node_t *node);

/* The port the node listens on (useful with port 0; 0 for NULL). Never
 * blocks; thread-safe. */
MOIRAI_TRANSPORT_API uint16_t moirai_node_port(const moirai_node_t *node);

/* This node's incarnation (config `incarnation`, or the automatic one; 0
 * for NULL). Never blocks; thread-safe. */
MOIRAI_TRANSPORT_API uint64_t moirai_node_incarnation(const moirai_node_t *node);

/* Declares that this node holds the data key `key` (1 to
 * MOIRAI_NODE_KEY_MAX bytes of [A-Za-z0-9_.:-]; a name of the user's
 * choosing for data that lives here, not the cluster key), so that
 * MOIRAI_PLACEMENT_LOCALITY spawns naming it may be placed here. Every
 * live peer is told in a KEY frame, and every peer that connects later
 * when its connection goes live. Never blocks (short locks; the frames
 * are queued); thread-safe. Ordering: a peer that reads the frame after
 * this returns places by it; a spawn its node placed before then does
 * not see it. Returns 0, -EINVAL (NULL node or key, a bad key), -EEXIST
 * (held already), -ENOSPC (MOIRAI_NODE_KEYS_MAX held), -ENOMEM. */
MOIRAI_TRANSPORT_API int moirai_node_key_add(moirai_node_t *node, const char *key);

/* Withdraws a data key added by moirai_node_key_add() and tells every
 * live peer. Tasks already placed here stay here. Never blocks;
 * thread-safe. Returns 0, -EINVAL (NULL node or key, a bad key),
 * -ENOENT (not held), -ENOMEM (the list of peers to tell could not be
 * made; the key stays held). */
MOIRAI_TRANSPORT_API int moirai_node_key_remove(moirai_node_t *node, const char *key);

/* Stores the ids of up to `max` live peers that hold the data key `key`
 * in `ids` (sorted in increasing order) and returns how many there are in
 * all (this node is never among them: a spawn never runs on its own
 * node). A snapshot, as of the KEY frames read so far. Never blocks (a
 * short lock); thread-safe. Returns -EINVAL for a NULL node or key, a bad
 * key, or NULL ids with max > 0. */
MOIRAI_TRANSPORT_API long moirai_node_key_holders(moirai_node_t *node, const char *key,
                                                  uint64_t *ids, size_t max);

/* Registers `fn` under `name` (1 to MOIRAI_REMOTE_NAME_MAX bytes of
 * [A-Za-z0-9_.:-]). Spawns that arrive before a name is registered fail
 * with -ENOENT; names cannot be removed. Never blocks (a short lock);
 * thread-safe. Ordering: a spawn frame read after this returns finds the
 * name, and `arg` as it was when registering. Returns 0, -EINVAL (NULL
 * node, name or fn, bad name), -EEXIST (the name is taken), -ENOMEM. */
MOIRAI_TRANSPORT_API int moirai_node_register(moirai_node_t *node, const char *name,
                                              moirai_remote_fn fn, void *arg);

/* Connects to the node at "host:port" and runs the handshake, waiting
 * for it until `deadline` (absolute, moirai_clock_now_ns() scale;
 * MOIRAI_DEADLINE_NEVER: the handshake timeout). The connection is kept
 * (or replaced by one the other node opens, when its id is smaller: the
 * smaller id always owns a connection); use moirai_node_wait_peers() to
 * wait for it to be live. May block (parks a fiber); thread-safe.
 * Returns 0 once both sides proved the key (also when already connected,
 * or when the address is this node's own), -EINVAL (NULL node, bad
 * address), -EACCES (the other side did not prove the key, or refused
 * ours), -ECONNREFUSED, -ETIMEDOUT, -EPROTO (not a node),
 * -EHOSTDOWN (that incarnation of the node's id was declared dead here,
 * or a later incarnation is known), -ENOMEM. */
MOIRAI_TRANSPORT_API int moirai_node_connect(moirai_node_t *node, const char *addr,
                                             uint64_t deadline);

/* Waits until at least `count` peers are live, or `deadline` passes
 * (absolute; a passed one makes it a check). May block (parks a fiber);
 * thread-safe. Returns 0, -ETIMEDOUT, -EINVAL (NULL). */
MOIRAI_TRANSPORT_API int moirai_node_wait_peers(moirai_node_t *node, size_t count,
                                                uint64_t deadline);

/* Stores the ids of up to `max` live peers in `ids` (sorted in increasing
 * order) and returns how many there are in all (which may exceed `max`).
 * A snapshot: peers may come and go as soon as it returns. Never blocks
 * (a short lock); thread-safe. Returns -EINVAL for a NULL node, or NULL
 * ids with max > 0. */
MOIRAI_TRANSPORT_API long moirai_node_peers(moirai_node_t *node, uint64_t *ids, size_t max);

/* Spawns the function registered as `name` on node `target` (a peer id,
 * or MOIRAI_NODE_ANY for the placement policy) with a copy of the `len`
 * bytes of `payload` (NULL if len is 0). `flags`: 0 or
 * MOIRAI_REMOTE_IDEMPOTENT. With `deadline` (absolute;
 * MOIRAI_DEADLINE_NEVER for none) the task ends with -ETIMEDOUT at the
 * deadline (checked each heartbeat period, so up to one period late) and
 * is cancelled on its node. Stores a new handle in `*handle` (NULL: fire
 * and forget) that ends exactly once: with a moirai_remote_result_t, or
 * with the task's own error, -ENOENT (the name is not registered there),
 * -EHOSTDOWN (its node died and it could not be retried), -ETIMEDOUT,
 * -ECANCELED (cancelled before it started there, or it returned that),
 * -EMSGSIZE (its result exceeded that node's max_payload), -ERANGE (its
 * function returned a value the wire cannot carry), -ENOMEM (an
 * allocation failed on either side), or -ESHUTDOWN (this node was
 * destroyed). Join with a non-NULL `value` and free the result: a
 * result whose pointer is dropped leaks. moirai_handle_cancel() on it
 * returns -EBUSY (the task is "running" from the caller's view) and sends
 * a cancel frame: a task not started yet is dropped and ends with
 * -ECANCELED; a started one has its token cancelled. Never blocks; thread-
 * safe. Release: the payload is copied before this returns. Returns 0,
 * -EINVAL (NULL node; bad name; NULL payload with len > 0; unknown
 * flags), -EMSGSIZE (len over max_payload), -EHOSTUNREACH (no live peer,
 * or `target` is not a live peer), -ENOMEM; on error nothing is sent. */
MOIRAI_TRANSPORT_API int moirai_node_spawn(moirai_node_t *node, uint64_t target, const char *name,
                                           const void *payload, size_t len, uint32_t flags,
                                           uint64_t deadline, moirai_handle_t **handle);

/* Sets `*attr` to the defaults (all zero). NULL is ignored. */
MOIRAI_TRANSPORT_API void moirai_remote_attr_init(moirai_remote_attr_t *attr);

/* moirai_node_spawn() with attributes (NULL: the defaults, which make it
 * moirai_node_spawn() with flags 0 and no deadline). `attr->placement`
 * chooses where a MOIRAI_NODE_ANY spawn goes: MOIRAI_PLACEMENT_DEFAULT
 * the node's policy, _ROUND_ROBIN or _LEAST_LOADED that policy for this
 * spawn, _LOCALITY a live peer holding `attr->key` (among several, the
 * node's policy picks one). An idempotent task whose node dies is
 * retried with the same placement: a locality task on another holder of
 * its key. Blocks, threads, ordering and the errors the task ends with
 * are moirai_node_spawn()'s. Returns 0, moirai_node_spawn()'s errors,
 * and: -EINVAL (unknown flags or placement; a key without
 * MOIRAI_PLACEMENT_LOCALITY, or a bad or missing one with it;
 * MOIRAI_REMOTE_FALLBACK without it; a placement other than the default
 * with an explicit `target`), -ENOENT (locality: no live peer holds the
 * key, and no MOIRAI_REMOTE_FALLBACK); on error nothing is sent. */
MOIRAI_TRANSPORT_API int moirai_node_spawn_attr(moirai_node_t *node, uint64_t target,
                                                const char *name, const void *payload, size_t len,
                                                const moirai_remote_attr_t *attr,
                                                moirai_handle_t **handle);

/* The result bytes: returns a pointer to them (valid until the result is
 * freed) and stores their count in `*len` (if not NULL). NULL result:
 * NULL and 0. Never blocks; thread-safe (read-only). Ordering: the bytes
 * are written before the handle completes, and completing is a release
 * that a successful join acquires, so a joiner reads them whole. */
MOIRAI_TRANSPORT_API const void *moirai_remote_result_data(const moirai_remote_result_t *result,
                                                           size_t *len);

/* Frees a result, once no joiner reads it any more. NULL is ignored.
 * Never blocks. */
MOIRAI_TRANSPORT_API void moirai_remote_result_free(moirai_remote_result_t *result);

/* Copies the node's counters into `*out`. Never blocks. Returns 0 or
 * -EINVAL (NULL). */
MOIRAI_TRANSPORT_API int moirai_node_stats(moirai_node_t *node, moirai_node_stats_t *out);

/* Copies the counters of the traffic with peer `peer_id` (alive or dead)
 * into `*out`. Never blocks. Returns 0, -EINVAL (NULL), -ENOENT (never
 * known). */
MOIRAI_TRANSPORT_API int moirai_node_peer_stats(moirai_node_t *node, uint64_t peer_id,
                                                moirai_node_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif
