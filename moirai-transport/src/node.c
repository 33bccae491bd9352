/* A node's life: configuration, the backend table, creation (the
 * backend's listener, the seeds), destruction, and the queries and
 * statistics the header offers. The work of a connection is in peer.c,
 * its bytes in the backend's link (link.h), the membership in
 * membership.c, the tasks in remote_spawn.c and remote_exec.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/async/fiber.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/log.h>

#include "auth.h"
#include "node_internal.h"

void moirai_node_config_init(moirai_node_config_t *cfg)
{
    if (cfg)
        memset(cfg, 0, sizeof *cfg);
}

/* ---- Helpers other files use ---- */

void moirai__node_count(_Atomic uint64_t *c, uint64_t n)
{
    /* Relaxed: a statistics counter orders nothing. */
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void moirai__node_rtt(struct node_counters *st, uint64_t ns)
{
    moirai__node_count(&st->rtt_count, 1);
    moirai__node_count(&st->rtt_sum_ns, ns);
    /* Relaxed CAS loops: min and max are independent statistics. */
    uint64_t cur = atomic_load_explicit(&st->rtt_min_ns, memory_order_relaxed);
    while ((cur == 0 || ns < cur) &&
           !atomic_compare_exchange_weak_explicit(&st->rtt_min_ns, &cur, ns ? ns : 1,
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
    cur = atomic_load_explicit(&st->rtt_max_ns, memory_order_relaxed);
    while (ns > cur && !atomic_compare_exchange_weak_explicit(
                           &st->rtt_max_ns, &cur, ns, memory_order_relaxed, memory_order_relaxed)) {
    }
}

struct fiber_start {
    struct moirai_node *node;
    moirai_task_fn fn;
    void *arg;
};

static int fiber_main(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    struct fiber_start fs = *(struct fiber_start *)arg;
    moirai_free(arg);
    int rc = fs.fn(fs.arg, cancel, result);
    /* The last thing the fiber does with the node: destroy waits for it. */
    moirai_waitgroup_done(&fs.node->fibers);
    return rc;
}

/* Starts a fiber that moirai_node_destroy() waits for. */
int moirai__node_spawn_fiber(struct moirai_node *node, moirai_task_fn fn, void *arg)
{
    struct fiber_start *fs = moirai_malloc(sizeof *fs);
    if (!fs)
        return -ENOMEM;
    fs->node = node;
    fs->fn = fn;
    fs->arg = arg;
    moirai_waitgroup_add(&node->fibers, 1);
    int rc = moirai_fiber_spawn(node->rt, fiber_main, fs, NULL, NULL);
    if (rc < 0) {
        moirai_waitgroup_done(&node->fibers);
        moirai_free(fs);
    }
    return rc;
}

/* ---- Backends ---- */

/* The backends by moirai_node_backend_t. MPI and SHM are weak references
 * (link.h): they are NULL, and refused with -ENOTSUP, until link_mpi.c or
 * link_shm.c is compiled into the library, which defines them; nothing
 * here changes then. */
static const struct backend_ops *backend_of(int b)
{
    switch (b) {
    case MOIRAI_NODE_BACKEND_TCP:
        return &moirai__backend_tcp;
    case MOIRAI_NODE_BACKEND_MPI:
        return &moirai__backend_mpi;
    case MOIRAI_NODE_BACKEND_SHM:
        return &moirai__backend_shm;
    default:
        return NULL;
    }
}

bool moirai_node_backend_supported(moirai_node_backend_t backend)
{
    return backend_of((int)backend) != NULL;
}

/* ---- Config ---- */

struct resolved {
    uint64_t heartbeat_ns, handshake_ns;
    uint32_t misses, max_payload, max_retries, max_running;
    const struct backend_ops *backend;
    struct frame_addr listen; /* all zero: the backend's default */
};

static int check_config(const moirai_node_config_t *c, struct resolved *r)
{
    if (!c->runtime || !c->key || c->key_len < 16 || c->key_len > 1024)
        return -EINVAL;
    r->heartbeat_ns = c->heartbeat_ns ? c->heartbeat_ns : 100000000ull;
    if (r->heartbeat_ns < 1000000ull || r->heartbeat_ns > 60000000000ull)
        return -EINVAL;
    r->misses = c->heartbeat_misses ? c->heartbeat_misses : 10;
    if (r->misses < 2 || r->misses > 1000)
        return -EINVAL;
    size_t mp = c->max_payload ? c->max_payload : (size_t)1 << 20;
    if (mp > MOIRAI_REMOTE_PAYLOAD_MAX)
        return -EINVAL;
    r->max_payload = (uint32_t)mp;
    r->max_retries = c->max_retries ? c->max_retries : 3;
    if (r->max_retries > 100)
        return -EINVAL;
    r->max_running = c->max_running ? c->max_running : 1024;
    if (r->max_running > 1000000)
        return -EINVAL;
    r->handshake_ns = c->handshake_timeout_ns ? c->handshake_timeout_ns : 5000000000ull;
    if (r->handshake_ns > 60000000000ull)
        return -EINVAL;
    /* Locality needs a key per spawn: it is no node-wide policy. */
    if (c->placement != MOIRAI_PLACEMENT_DEFAULT && c->placement != MOIRAI_PLACEMENT_ROUND_ROBIN &&
        c->placement != MOIRAI_PLACEMENT_LEAST_LOADED)
        return -EINVAL;
    if (c->seed_count > MOIRAI_NODE_SEEDS_MAX || (c->seed_count > 0 && !c->seeds))
        return -EINVAL;
    /* The value is read as an int: an enum holding something outside its
     * list is the caller's bug, reported, not undefined. */
    int b = (int)c->backend;
    if (b < MOIRAI_NODE_BACKEND_TCP || b > MOIRAI_NODE_BACKEND_SHM)
        return -EINVAL;
    r->backend = backend_of(b);
    if (!r->backend)
        return -ENOTSUP;
    for (size_t i = 0; i < c->seed_count; i++) {
        struct frame_addr a;
        if (!c->seeds[i] || r->backend->parse(c->seeds[i], &a) < 0)
            return -EINVAL;
    }
    memset(&r->listen, 0, sizeof r->listen);
    if (c->listen && r->backend->parse(c->listen, &r->listen) < 0)
        return -EINVAL;
    return 0;
}

/* ---- Seeds ---- */

struct seed_dial {
    struct moirai_node *node;
    struct frame_addr to;
};

/* Dials a seed until a handshake with it completes, backing off from 50 ms
 * to 1 s between attempts, so a cluster can start in any order; gives up
 * on a wrong key (retrying cannot fix it) and when the node stops. */
static int seed_main(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct seed_dial *sd = arg;
    struct moirai_node *node = sd->node;
    uint64_t pause = 50000000ull;
    while (!atomic_load_explicit(&node->stopping, memory_order_acquire)) {
        struct connect_wait *cw = moirai__connect_wait_new();
        int rc = cw ? moirai__peer_dial(node, &sd->to, NULL, cw) : -ENOMEM;
        if (rc == 0)
            rc = moirai__connect_wait(cw, MOIRAI_DEADLINE_NEVER);
        moirai__connect_wait_put(cw);
        if (rc == 0 || rc == -EACCES || rc == -ESHUTDOWN) {
            if (rc == -EACCES)
                MOIRAI_LOG(MOIRAI_LOG_WARN, "node %llx: a seed refused the cluster key",
                           (unsigned long long)node->id);
            break;
        }
        /* Sleep, but wake at once when the node stops. */
        moirai_mutex_lock(&node->lock);
        uint64_t until = moirai_deadline_after(pause);
        while (!atomic_load_explicit(&node->stopping, memory_order_acquire) &&
               moirai_condvar_wait_timed(&node->cv, &node->lock, until) == 0) {
        }
        moirai_mutex_unlock(&node->lock);
        pause = pause * 2 > 1000000000ull ? 1000000000ull : pause * 2;
    }
    moirai_free(sd);
    return 0;
}

/* ---- Create and destroy ---- */

static void free_node(struct moirai_node *node)
{
    moirai__registry_fini(node);
    if (node->members)
        moirai__keys_fini(node);
    moirai__htab_fini(&node->ptab);
    moirai_condvar_destroy(&node->cv);
    moirai_mutex_destroy(&node->lock);
    moirai_mutex_destroy(&node->reg_lock);
    moirai_mutex_destroy(&node->keys_lock);
    moirai_mutex_destroy(&node->ptab_lock);
    moirai_mutex_destroy(&node->xq_lock);
    if (node->key) {
        memset(node->key, 0, node->key_len);
        moirai_free(node->key);
    }
    moirai_free(node->members);
    moirai_free(node);
}

int moirai_node_create(moirai_node_t **out, const moirai_node_config_t *cfg)
{
    if (!out || !cfg)
        return -EINVAL;
    struct resolved r;
    int rc = check_config(cfg, &r);
    if (rc < 0)
        return rc;
    if (moirai__auth_init() < 0)
        return -EIO;
    struct moirai_node *node = moirai_calloc(1, sizeof *node);
    if (!node)
        return -ENOMEM;
    moirai_mutex_init(&node->lock);
    moirai_mutex_init(&node->reg_lock);
    moirai_mutex_init(&node->keys_lock);
    moirai_mutex_init(&node->ptab_lock);
    moirai_mutex_init(&node->xq_lock);
    moirai_condvar_init(&node->cv);
    moirai_waitgroup_init(&node->fibers);
    node->rt = cfg->runtime;
    node->heartbeat_ns = r.heartbeat_ns;
    node->heartbeat_misses = r.misses;
    node->max_payload = r.max_payload;
    node->max_retries = r.max_retries;
    node->max_running = r.max_running;
    node->handshake_ns = r.handshake_ns;
    node->placement =
        cfg->placement == MOIRAI_PLACEMENT_DEFAULT ? MOIRAI_PLACEMENT_ROUND_ROBIN : cfg->placement;
    node->incarnation = cfg->incarnation ? cfg->incarnation : moirai__membership_incarnation();
    node->members = moirai_calloc(MOIRAI_NODE_MEMBERS_MAX, sizeof *node->members);
    node->key = moirai_malloc(cfg->key_len);
    if (!node->members || !node->key) {
        free_node(node);
        return -ENOMEM;
    }
    memcpy(node->key, cfg->key, cfg->key_len);
    node->key_len = cfg->key_len;
    node->id = cfg->id;
    node->id_given = cfg->id != 0;
    while (node->id == 0) {
        uint8_t b[FRAME_NONCE_SIZE];
        moirai__auth_nonce(b);
        node->id = moirai__frame_get_u64(b);
    }

    node->backend = r.backend;
    rc = node->backend->listen(node, &r.listen, &node->self_addr);
    if (rc < 0) {
        free_node(node);
        return rc;
    }
    node->port = node->self_addr.port;

    rc = moirai__membership_start(node);
    for (size_t i = 0; rc == 0 && i < cfg->seed_count; i++) {
        struct seed_dial *sd = moirai_malloc(sizeof *sd);
        if (!sd) {
            rc = -ENOMEM;
            break;
        }
        sd->node = node;
        node->backend->parse(cfg->seeds[i], &sd->to); /* checked above */
        rc = moirai__node_spawn_fiber(node, seed_main, sd);
        if (rc < 0)
            moirai_free(sd);
    }
    if (rc < 0) {
        moirai_node_destroy(node);
        return rc;
    }
    *out = node;
    return 0;
}

int moirai_node_destroy(moirai_node_t *node)
{
    if (!node)
        return 0;
    moirai_mutex_lock(&node->lock);
    /* Release: fibers that see `stopping` see everything before it. */
    atomic_store_explicit(&node->stopping, true, memory_order_release);
    moirai_condvar_broadcast(&node->cv);
    moirai_mutex_unlock(&node->lock);
    node->backend->stop(node);
    /* Kill every connection; peer_start refuses new ones from now on. */
    for (;;) {
        moirai_mutex_lock(&node->lock);
        struct peer *p = NULL;
        for (struct peer *q = node->conns; q; q = q->next) {
            if (atomic_load_explicit(&q->state, memory_order_acquire) != PEER_DEAD) {
                p = q;
                moirai__peer_ref(p);
                break;
            }
        }
        moirai_mutex_unlock(&node->lock);
        if (!p)
            break;
        moirai__peer_kill(p);
        moirai__peer_unref(p);
    }
    moirai_waitgroup_wait(&node->fibers);
    moirai__spawn_shutdown(node);
    free_node(node);
    return 0;
}

/* ---- Queries ---- */

uint64_t moirai_node_id(const moirai_node_t *node)
{
    return node ? node->id : 0;
}

uint16_t moirai_node_port(const moirai_node_t *node)
{
    return node ? node->port : 0;
}

uint64_t moirai_node_incarnation(const moirai_node_t *node)
{
    return node ? node->incarnation : 0;
}

int moirai_node_connect(moirai_node_t *node, const char *addr, uint64_t deadline)
{
    if (!node)
        return -EINVAL;
    struct frame_addr to;
    if (!addr || node->backend->parse(addr, &to) < 0)
        return -EINVAL;
    struct connect_wait *cw = moirai__connect_wait_new();
    if (!cw)
        return -ENOMEM;
    int rc = moirai__peer_dial(node, &to, NULL, cw);
    if (rc == 0)
        rc = moirai__connect_wait(cw, deadline);
    moirai__connect_wait_put(cw);
    return rc;
}

int moirai_node_wait_peers(moirai_node_t *node, size_t count, uint64_t deadline)
{
    if (!node)
        return -EINVAL;
    int rc = 0;
    moirai_mutex_lock(&node->lock);
    while (node->live < count && rc == 0)
        rc = moirai_condvar_wait_timed(&node->cv, &node->lock, deadline);
    if (node->live >= count)
        rc = 0;
    moirai_mutex_unlock(&node->lock);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

long moirai_node_peers(moirai_node_t *node, uint64_t *ids, size_t max)
{
    if (!node || (!ids && max > 0))
        return -EINVAL;
    size_t n = 0;
    moirai_mutex_lock(&node->lock);
    for (size_t i = 0; i < node->nmembers; i++) {
        struct member *m = &node->members[i];
        if (m->state == MEMBER_ALIVE && m->peer &&
            atomic_load_explicit(&m->peer->state, memory_order_relaxed) == PEER_LIVE) {
            if (n < max)
                ids[n] = m->id;
            n++;
        }
    }
    moirai_mutex_unlock(&node->lock);
    if (ids && n > 0)
        qsort(ids, n < max ? n : max, sizeof *ids, cmp_u64);
    return (long)n;
}

static void copy_stats(const struct node_counters *c, moirai_node_stats_t *out)
{
#define LOAD(f) out->f = atomic_load_explicit(&c->f, memory_order_relaxed)
    LOAD(tasks_sent);
    LOAD(tasks_received);
    LOAD(tasks_retried);
    LOAD(tasks_failed);
    LOAD(tasks_completed);
    LOAD(bytes_sent);
    LOAD(bytes_received);
    LOAD(rtt_count);
    LOAD(rtt_sum_ns);
    LOAD(rtt_min_ns);
    LOAD(rtt_max_ns);
    LOAD(auth_failures);
    LOAD(protocol_errors);
    LOAD(peers_dead);
    LOAD(batches);
    LOAD(batched_frames);
#undef LOAD
}

int moirai_node_stats(moirai_node_t *node, moirai_node_stats_t *out)
{
    if (!node || !out)
        return -EINVAL;
    copy_stats(&node->st, out);
    return 0;
}

int moirai_node_peer_stats(moirai_node_t *node, uint64_t peer_id, moirai_node_stats_t *out)
{
    if (!node || !out)
        return -EINVAL;
    int rc = -ENOENT;
    moirai_mutex_lock(&node->lock);
    for (size_t i = 0; i < node->nmembers; i++) {
        if (node->members[i].id == peer_id) {
            copy_stats(&node->members[i].st, out);
            rc = 0;
            break;
        }
    }
    moirai_mutex_unlock(&node->lock);
    return rc;
}
