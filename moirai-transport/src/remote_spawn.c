/* The caller's side of a remote task: spawning it on a peer, the table of
 * tasks this node waits for, and every way such a task ends. Each task
 * is in the table until exactly one path removes it under the table's
 * lock (its result, its error, its node's death, its deadline, the node's
 * destruction); that path alone completes its handle, so each task ends
 * exactly once. */
#include <errno.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>

#include "node_internal.h"

struct moirai_remote_result {
    size_t len;
    uint8_t data[];
};

struct rtask {
    struct hnode hn; /* key: the task id, the handle's id */
    struct moirai_node *node;
    moirai_handle_t *h; /* our reference */
    uint64_t peer_id;
    uint64_t peer_inc; /* the incarnation of peer_id it was sent to */
    struct member *m;  /* peer_id's member, whose `inflight` counts this task */
    uint64_t deadline;
    uint64_t sent_ns;
    uint32_t flags;
    uint32_t retries_left;
    bool cancelled;
    bool detached;                /* fire and forget: nobody joins */
    bool fallback;                /* locality: the node's policy when nobody holds the key */
    moirai_placement_t placement; /* resolved: round robin, least loaded or locality */
    uint8_t key_len;              /* locality: the data key */
    char key[FRAME_NAME_MAX + 1];
    uint8_t head[2 + FRAME_NAME_MAX]; /* the SPAWN body's name part */
    size_t head_len;
    uint8_t *payload; /* kept only for a retry (idempotent tasks) */
    size_t len;
    moirai_cancel_listener_t listener;
};

const void *moirai_remote_result_data(const moirai_remote_result_t *result, size_t *len)
{
    if (len)
        *len = result ? result->len : 0;
    return result ? result->data : NULL;
}

void moirai_remote_result_free(moirai_remote_result_t *result)
{
    moirai_free(result);
}

/* A member's load for least-loaded placement: the larger of the tasks
 * this node waits for there (fresh) and the load it last published in a
 * LOAD frame (running plus queued, everyone's tasks, up to a heartbeat
 * old). node->lock held. */
static uint64_t load_of(const struct member *m)
{
    /* Relaxed: a placement hint. */
    uint64_t mine = atomic_load_explicit(&m->inflight, memory_order_relaxed);
    uint64_t published = (uint64_t)m->load_running + m->load_queued;
    return mine > published ? mine : published;
}

/* Where a MOIRAI_NODE_ANY task goes: a resolved policy (round robin or
 * least loaded; locality adds a key the chosen peer must hold, picking
 * among holders by the node's policy). */
struct where {
    moirai_placement_t policy;
    const char *key; /* NULL unless locality */
    size_t key_len;
    bool fallback; /* locality with nobody holding the key: policy alone */
};

/* The live peer the placement picks, other than `exclude`, referenced; or
 * NULL. Round robin: the next live peer after the cursor. Least loaded:
 * the live peer with the least load_of(), ties broken by the round-robin
 * order. Locality: the same among the live peers holding the key; if none
 * does, with `fallback`, the policy among all. */
static struct peer *place(struct moirai_node *node, uint64_t exclude, const struct where *w)
{
    struct peer *p = NULL;
    moirai_mutex_lock(&node->lock);
    size_t n = node->nmembers, best = n;
    for (int pass = 0; pass < 2 && best == n; pass++) {
        const char *key = pass == 0 ? w->key : NULL;
        if (pass == 1 && (!w->key || !w->fallback))
            break;
        uint64_t best_load = UINT64_MAX;
        for (size_t k = 0; k < n; k++) {
            size_t i = (node->rr + k) % n;
            struct member *m = &node->members[i];
            if (m->id == exclude || m->state != MEMBER_ALIVE || !m->peer ||
                atomic_load_explicit(&m->peer->state, memory_order_relaxed) != PEER_LIVE)
                continue;
            if (key && !moirai__keyset_has(&m->keys, (const uint8_t *)key, w->key_len))
                continue;
            if (w->policy == MOIRAI_PLACEMENT_ROUND_ROBIN) {
                best = i;
                break;
            }
            uint64_t l = load_of(m);
            if (l < best_load) {
                best = i;
                best_load = l;
            }
        }
    }
    if (best < n) {
        p = node->members[best].peer;
        moirai__peer_ref(p);
        node->rr = best + 1;
    }
    moirai_mutex_unlock(&node->lock);
    return p;
}

static void task_where(const struct rtask *t, struct where *w)
{
    bool local = t->placement == MOIRAI_PLACEMENT_LOCALITY;
    w->policy = local ? t->node->placement : t->placement;
    w->key = local ? t->key : NULL;
    w->key_len = t->key_len;
    w->fallback = t->fallback;
}

/* The task leaves its member's count of tasks waited for. */
static void leave_member(struct rtask *t)
{
    if (t->m) {
        /* Relaxed: a placement hint. */
        atomic_fetch_sub_explicit(&t->m->inflight, 1, memory_order_relaxed);
        t->m = NULL;
    }
}

/* Queues the SPAWN frame to `p` (ptab_lock held). A failure because the
 * connection is closing is no failure: its death will reach this task
 * through moirai__spawn_peer_dead(), which waits for the lock we hold. */
static int send_spawn(struct rtask *t, struct peer *p, const void *payload)
{
    t->peer_id = p->id;
    t->peer_inc = p->incarnation;
    t->sent_ns = moirai_clock_now_ns();
    int rc = moirai__peer_send(p, FRAME_SPAWN, (uint16_t)t->flags, t->hn.key, t->head, t->head_len,
                               payload, t->len);
    if (rc == -EPIPE)
        rc = 0;
    if (rc == 0) {
        moirai__node_count(&t->node->st.tasks_sent, 1);
        moirai__node_count(&p->m->st.tasks_sent, 1);
        leave_member(t);
        t->m = p->m;
        atomic_fetch_add_explicit(&t->m->inflight, 1, memory_order_relaxed);
    }
    return rc;
}

static void free_task(struct rtask *t)
{
    leave_member(t);
    moirai_handle_release(t->h);
    moirai_free(t->payload);
    moirai_free(t);
}

/* Ends a task removed from the table: `rc` 0 with `res`, or an error. */
static void finish(struct rtask *t, int rc, moirai_remote_result_t *res)
{
    struct moirai_node *node = t->node;
    /* After this the cancel callback neither runs nor will run. */
    moirai_cancel_token_unlisten(moirai_handle_token(t->h), &t->listener);
    if (rc == 0) {
        moirai__node_count(&node->st.tasks_completed, 1);
        if (t->detached)
            moirai_remote_result_free(res);
        else
            moirai_handle_complete(t->h, res);
    } else {
        moirai__node_count(&node->st.tasks_failed, 1);
        moirai_handle_fail(t->h, rc);
    }
    free_task(t);
}

static void on_cancel(void *arg)
{
    struct rtask *t = arg;
    struct moirai_node *node = t->node;
    moirai_mutex_lock(&node->ptab_lock);
    if (moirai__htab_find(&node->ptab, t->hn.key) == &t->hn) {
        t->cancelled = true;
        struct peer *p = moirai__member_peer(node, t->peer_id);
        if (p) {
            moirai__peer_send(p, FRAME_CANCEL, 0, t->hn.key, NULL, 0, NULL, 0);
            moirai__peer_unref(p);
        }
    }
    moirai_mutex_unlock(&node->ptab_lock);
}

void moirai_remote_attr_init(moirai_remote_attr_t *attr)
{
    if (attr)
        memset(attr, 0, sizeof *attr);
}

int moirai_node_spawn(moirai_node_t *node, uint64_t target, const char *name, const void *payload,
                      size_t len, uint32_t flags, uint64_t deadline, moirai_handle_t **handle)
{
    if (flags & ~MOIRAI_REMOTE_IDEMPOTENT)
        return -EINVAL;
    /* An absolute deadline of 0 has passed already; in the attributes 0
     * means none, so it is handed on as 1, which has passed as well. */
    moirai_remote_attr_t attr = {.flags = flags, .deadline = deadline ? deadline : 1};
    return moirai_node_spawn_attr(node, target, name, payload, len, &attr, handle);
}

int moirai_node_spawn_attr(moirai_node_t *node, uint64_t target, const char *name,
                           const void *payload, size_t len, const moirai_remote_attr_t *attr,
                           moirai_handle_t **handle)
{
    static const moirai_remote_attr_t defaults;
    if (!attr)
        attr = &defaults;
    uint32_t flags = attr->flags;
    uint64_t deadline = attr->deadline ? attr->deadline : MOIRAI_DEADLINE_NEVER;
    bool local = attr->placement == MOIRAI_PLACEMENT_LOCALITY;
    if (!node || !name || (!payload && len > 0) ||
        (flags & ~(MOIRAI_REMOTE_IDEMPOTENT | MOIRAI_REMOTE_FALLBACK)))
        return -EINVAL;
    if ((unsigned)attr->placement > MOIRAI_PLACEMENT_LOCALITY || (attr->key != NULL) != local ||
        ((flags & MOIRAI_REMOTE_FALLBACK) && !local) ||
        (target != MOIRAI_NODE_ANY && attr->placement != MOIRAI_PLACEMENT_DEFAULT))
        return -EINVAL;
    size_t key_len = local ? strnlen(attr->key, FRAME_NAME_MAX + 1) : 0;
    if (local && !moirai__frame_name_valid((const uint8_t *)attr->key, key_len))
        return -EINVAL;
    size_t name_len = strnlen(name, FRAME_NAME_MAX + 1);
    if (!moirai__frame_name_valid((const uint8_t *)name, name_len))
        return -EINVAL;
    if (len > node->max_payload)
        return -EMSGSIZE;
    struct rtask *t = moirai_calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->node = node;
    t->flags = flags & MOIRAI_REMOTE_IDEMPOTENT ? FRAME_FLAG_IDEMPOTENT : 0;
    t->retries_left = t->flags ? node->max_retries : 0;
    t->deadline = deadline;
    t->detached = handle == NULL;
    t->len = len;
    t->placement = attr->placement == MOIRAI_PLACEMENT_DEFAULT ? node->placement : attr->placement;
    t->fallback = (flags & MOIRAI_REMOTE_FALLBACK) != 0;
    t->key_len = (uint8_t)key_len;
    if (local)
        memcpy(t->key, attr->key, key_len);
    moirai__frame_put_u16(t->head, (uint16_t)name_len);
    memcpy(t->head + 2, name, name_len);
    t->head_len = 2 + name_len;
    if (t->flags && len > 0) {
        t->payload = moirai_malloc(len);
        if (!t->payload) {
            moirai_free(t);
            return -ENOMEM;
        }
        memcpy(t->payload, payload, len);
    }
    int rc = moirai_handle_create(&t->h);
    if (rc < 0) {
        moirai_free(t->payload);
        moirai_free(t);
        return rc;
    }
    /* Running from the caller's view: a cancel reaches the token (and so
     * on_cancel), never finishes the handle behind this node's back. */
    moirai_handle_try_start(t->h);
    t->hn.key = moirai_handle_id(t->h);
    /* Before the task is visible to anyone: nothing can cancel it yet. */
    moirai_cancel_token_listen(moirai_handle_token(t->h), &t->listener, on_cancel, t);

    struct where w;
    task_where(t, &w);
    struct peer *p =
        target == MOIRAI_NODE_ANY ? place(node, 0, &w) : moirai__member_peer(node, target);
    if (!p) {
        /* Locality: -ENOENT when peers are live but none holds the key
         * (with fallback, none is live at all: -EHOSTUNREACH). */
        rc = local && !t->fallback ? -ENOENT : -EHOSTUNREACH;
        goto fail;
    }
    moirai_mutex_lock(&node->ptab_lock);
    rc = moirai__htab_insert(&node->ptab, &t->hn);
    if (rc == 0) {
        rc = send_spawn(t, p, payload);
        if (rc < 0)
            moirai__htab_remove(&node->ptab, t->hn.key);
        else if (deadline != MOIRAI_DEADLINE_NEVER)
            node->ndeadline++;
    }
    if (rc == 0 && handle) {
        moirai_handle_retain(t->h);
        *handle = t->h;
    }
    moirai_mutex_unlock(&node->ptab_lock);
    moirai__peer_unref(p);
    if (rc == 0)
        return 0;
fail:
    moirai_cancel_token_unlisten(moirai_handle_token(t->h), &t->listener);
    moirai_handle_fail(t->h, rc);
    free_task(t);
    return rc;
}

void moirai__spawn_on_result(struct moirai_node *node, struct peer *p, const struct frame *f)
{
    moirai_mutex_lock(&node->ptab_lock);
    struct hnode *n = moirai__htab_find(&node->ptab, f->task_id);
    struct rtask *t = (struct rtask *)n;
    /* Only the node (the incarnation) the task was sent to can end it. */
    if (!t || t->peer_id != p->id || t->peer_inc != p->incarnation) {
        moirai_mutex_unlock(&node->ptab_lock);
        return;
    }
    moirai__htab_remove(&node->ptab, f->task_id);
    if (t->deadline != MOIRAI_DEADLINE_NEVER)
        node->ndeadline--;
    moirai_mutex_unlock(&node->ptab_lock);
    uint64_t rtt = moirai_clock_now_ns() - t->sent_ns;
    moirai__node_rtt(&node->st, rtt);
    moirai__node_rtt(&p->m->st, rtt);
    if (f->type == FRAME_ERROR) {
        moirai__node_count(&p->m->st.tasks_failed, 1);
        finish(t, f->u.error, NULL);
        return;
    }
    moirai_remote_result_t *res = moirai_malloc(sizeof *res + f->payload_len);
    if (!res) {
        finish(t, -ENOMEM, NULL);
        return;
    }
    res->len = f->payload_len;
    memcpy(res->data, f->payload, f->payload_len);
    moirai__node_count(&p->m->st.tasks_completed, 1);
    finish(t, 0, res);
}

/* Unlinks every task for which `pick` says so (ptab_lock held) and
 * returns them as a list through hn.next. */
static struct rtask *unlink_where(struct moirai_node *node, bool (*pick)(struct rtask *, void *),
                                  void *arg)
{
    struct rtask *out = NULL;
    struct htab *tab = &node->ptab;
    for (size_t b = 0; b < tab->nbuckets; b++) {
        struct hnode **pp = &tab->buckets[b];
        while (*pp) {
            struct rtask *t = (struct rtask *)*pp;
            if (pick(t, arg)) {
                *pp = t->hn.next;
                tab->count--;
                if (t->deadline != MOIRAI_DEADLINE_NEVER)
                    node->ndeadline--;
                t->hn.next = out ? &out->hn : NULL;
                out = t;
            } else {
                pp = &(*pp)->next;
            }
        }
    }
    return out;
}

struct dead_arg {
    uint64_t id, inc;
    bool stopping;
};

/* A task on the dead node: retried in place when it may be, else picked
 * for failure. */
static bool pick_dead(struct rtask *t, void *arg)
{
    struct dead_arg *d = arg;
    if (t->peer_id != d->id || t->peer_inc != d->inc)
        return false;
    if (d->stopping || t->cancelled || !t->flags || t->retries_left == 0)
        return true;
    struct where w;
    task_where(t, &w);
    struct peer *p = place(t->node, d->id, &w);
    if (!p)
        return true;
    t->retries_left--;
    if (send_spawn(t, p, t->payload) < 0) {
        moirai__peer_unref(p);
        return true;
    }
    moirai__node_count(&t->node->st.tasks_retried, 1);
    moirai__node_count(&p->m->st.tasks_retried, 1);
    moirai__peer_unref(p);
    return false;
}

void moirai__spawn_peer_dead(struct moirai_node *node, uint64_t id, uint64_t inc)
{
    struct dead_arg d = {id, inc, atomic_load_explicit(&node->stopping, memory_order_acquire)};
    moirai_mutex_lock(&node->ptab_lock);
    struct rtask *t = unlink_where(node, pick_dead, &d);
    moirai_mutex_unlock(&node->ptab_lock);
    while (t) {
        struct rtask *next = (struct rtask *)t->hn.next;
        finish(t, d.stopping ? -ESHUTDOWN : t->cancelled ? -ECANCELED : -EHOSTDOWN, NULL);
        t = next;
    }
}

static bool pick_expired(struct rtask *t, void *arg)
{
    uint64_t now = *(uint64_t *)arg;
    if (t->deadline > now)
        return false;
    /* Stop it on its node too; the answer, if any, will find no task. */
    struct peer *p = moirai__member_peer(t->node, t->peer_id);
    if (p) {
        moirai__peer_send(p, FRAME_CANCEL, 0, t->hn.key, NULL, 0, NULL, 0);
        moirai__peer_unref(p);
    }
    return true;
}

void moirai__spawn_expire(struct moirai_node *node, uint64_t now)
{
    moirai_mutex_lock(&node->ptab_lock);
    struct rtask *t = node->ndeadline ? unlink_where(node, pick_expired, &now) : NULL;
    moirai_mutex_unlock(&node->ptab_lock);
    while (t) {
        struct rtask *next = (struct rtask *)t->hn.next;
        finish(t, -ETIMEDOUT, NULL);
        t = next;
    }
}

static bool pick_all(struct rtask *t, void *arg)
{
    (void)t;
    (void)arg;
    return true;
}

void moirai__spawn_shutdown(struct moirai_node *node)
{
    moirai_mutex_lock(&node->ptab_lock);
    struct rtask *t = unlink_where(node, pick_all, NULL);
    moirai_mutex_unlock(&node->ptab_lock);
    while (t) {
        struct rtask *next = (struct rtask *)t->hn.next;
        finish(t, -ESHUTDOWN, NULL);
        t = next;
    }
}
