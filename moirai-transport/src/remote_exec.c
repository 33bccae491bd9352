/* The executing side of a remote task: a SPAWN frame from an
 * authenticated peer becomes a fiber that calls the registered function;
 * its result or error goes back in one frame. Each task has a core handle
 * of its own, used for its cancel token: a CANCEL frame cancels that
 * handle, so a task whose fiber has not started never calls its function
 * (and answers -ECANCELED), and a started one sees its token cancelled.
 *
 * At most `max_running` fibers run tasks at once; a task that arrives when
 * all are busy waits in a FIFO, and a fiber that finishes a task takes the
 * next one. Without the bound a fast spawner could make the executing
 * node map a fiber stack per task until memory (or the kernel's count of
 * mappings) runs out. */
#include <errno.h>
#include <string.h>

#include <moirai/core/alloc.h>

#include "node_internal.h"

struct exec {
    struct hnode hn;            /* key: the spawner's task id */
    struct exec *qnext, *qprev; /* node->xq, while waiting for a fiber */
    bool in_queue;              /* node->xq_lock */
    struct peer *p;             /* referenced: the answer goes back on it */
    moirai_remote_fn fn;
    void *arg;
    moirai_handle_t *h;
    size_t len;
    uint8_t data[];
};

static void send_error(struct peer *p, uint64_t task_id, int err)
{
    uint8_t b[4];
    moirai__frame_put_u32(b, (uint32_t)(int32_t)err);
    moirai__peer_send(p, FRAME_ERROR, 0, task_id, b, sizeof b, NULL, 0);
}

/* Runs one task and sends its answer; frees it. */
static void run_one(struct exec *e)
{
    struct peer *p = e->p;
    struct moirai_node *node = p->node;
    void *res = NULL;
    size_t rlen = 0;
    int rc;
    /* Relaxed: the load counters are hints for placement. */
    atomic_fetch_sub_explicit(&node->queued, 1, memory_order_relaxed);
    if (moirai_handle_try_start(e->h)) {
        atomic_fetch_add_explicit(&node->running, 1, memory_order_relaxed);
        rc = e->fn(e->arg, e->data, e->len, moirai_handle_token(e->h), &res, &rlen);
        atomic_fetch_sub_explicit(&node->running, 1, memory_order_relaxed);
        if (rc > 0 || rc < -4095)
            rc = -ERANGE; /* not an errno the wire can carry */
        if (rc == 0 && rlen > node->max_payload)
            rc = -EMSGSIZE;
        if (rc < 0) {
            moirai_free(res);
            res = NULL;
            moirai_handle_fail(e->h, rc);
        } else {
            moirai_handle_complete(e->h, NULL);
        }
    } else {
        rc = -ECANCELED; /* cancelled before it started: dropped */
    }
    moirai_mutex_lock(&p->xlock);
    moirai__htab_remove(&p->exec, e->hn.key);
    moirai_mutex_unlock(&p->xlock);
    if (rc == 0)
        moirai__peer_send(p, FRAME_RESULT, 0, e->hn.key, res, res ? rlen : 0, NULL, 0);
    else
        send_error(p, e->hn.key, rc);
    moirai_free(res);
    moirai_handle_release(e->h);
    moirai__peer_unref(p);
    moirai_free(e);
}

/* Takes `e` out of the waiting FIFO (node->xq_lock held). */
static void unqueue(struct moirai_node *node, struct exec *e)
{
    if (e->qprev)
        e->qprev->qnext = e->qnext;
    else
        node->xq_head = e->qnext;
    if (e->qnext)
        e->qnext->qprev = e->qprev;
    else
        node->xq_tail = e->qprev;
    e->qnext = e->qprev = NULL;
    e->in_queue = false;
}

static int exec_main(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct exec *e = arg;
    struct moirai_node *node = e->p->node;
    while (e) {
        run_one(e);
        moirai_mutex_lock(&node->xq_lock);
        e = node->xq_head;
        if (e) {
            unqueue(node, e);
        } else {
            node->exec_fibers--;
        }
        moirai_mutex_unlock(&node->xq_lock);
    }
    return 0;
}

void moirai__exec_on_spawn(struct peer *p, const struct frame *f)
{
    struct moirai_node *node = p->node;
    moirai__node_count(&node->st.tasks_received, 1);
    moirai__node_count(&p->m->st.tasks_received, 1);
    void *arg = NULL;
    moirai_remote_fn fn = moirai__registry_find(node, f->u.spawn.name, f->u.spawn.name_len, &arg);
    if (!fn) {
        send_error(p, f->task_id, -ENOENT);
        return;
    }
    struct exec *e = moirai_malloc(sizeof *e + f->u.spawn.data_len);
    if (!e) {
        send_error(p, f->task_id, -ENOMEM);
        return;
    }
    e->hn.key = f->task_id;
    e->p = p;
    e->fn = fn;
    e->arg = arg;
    e->len = f->u.spawn.data_len;
    memcpy(e->data, f->u.spawn.data, e->len);
    int rc = moirai_handle_create(&e->h);
    if (rc < 0) {
        moirai_free(e);
        send_error(p, f->task_id, rc);
        return;
    }
    moirai_mutex_lock(&p->xlock);
    if (moirai__htab_find(&p->exec, e->hn.key)) {
        /* The peer reused a task id still running here: its first task
         * answers; this copy is refused. */
        rc = -EALREADY;
    } else {
        rc = moirai__htab_insert(&p->exec, &e->hn);
        /* A kill sets the state before cancelling what is in the table
         * under this lock: either it finds this task, or we see it. */
        if (rc == 0 && atomic_load_explicit(&p->state, memory_order_acquire) == PEER_DEAD)
            moirai_handle_cancel(e->h);
    }
    moirai_mutex_unlock(&p->xlock);
    if (rc == 0) {
        moirai__peer_ref(p);
        atomic_fetch_add_explicit(&node->queued, 1, memory_order_relaxed);
        bool start = false;
        e->qnext = e->qprev = NULL;
        e->in_queue = false;
        moirai_mutex_lock(&node->xq_lock);
        if (node->exec_fibers < node->max_running) {
            node->exec_fibers++;
            start = true;
        } else {
            e->qprev = node->xq_tail;
            if (node->xq_tail)
                node->xq_tail->qnext = e;
            else
                node->xq_head = e;
            node->xq_tail = e;
            e->in_queue = true;
        }
        moirai_mutex_unlock(&node->xq_lock);
        rc = start ? moirai__node_spawn_fiber(node, exec_main, e) : 0;
        if (rc < 0) {
            moirai_mutex_lock(&node->xq_lock);
            node->exec_fibers--;
            moirai_mutex_unlock(&node->xq_lock);
            atomic_fetch_sub_explicit(&node->queued, 1, memory_order_relaxed);
            moirai_mutex_lock(&p->xlock);
            moirai__htab_remove(&p->exec, e->hn.key);
            moirai_mutex_unlock(&p->xlock);
            moirai__peer_unref(p);
        }
    }
    if (rc < 0) {
        if (rc != -EALREADY)
            send_error(p, f->task_id, rc == -ESHUTDOWN ? -ESHUTDOWN : -ENOMEM);
        moirai_handle_release(e->h);
        moirai_free(e);
    }
}

void moirai__exec_on_cancel(struct peer *p, uint64_t task_id)
{
    struct moirai_node *node = p->node;
    bool dropped = false;
    moirai_mutex_lock(&p->xlock);
    struct exec *e = (struct exec *)moirai__htab_find(&p->exec, task_id);
    /* 0: it had not started, and never will. */
    if (e && moirai_handle_cancel(e->h) == 0) {
        /* Still waiting for a fiber: answer now rather than when a slot
         * frees up. (Not queued: a fiber has it and will answer.) */
        moirai_mutex_lock(&node->xq_lock);
        if (e->in_queue) {
            unqueue(node, e);
            dropped = true;
        }
        moirai_mutex_unlock(&node->xq_lock);
        if (dropped)
            moirai__htab_remove(&p->exec, task_id);
    }
    moirai_mutex_unlock(&p->xlock);
    if (dropped) {
        atomic_fetch_sub_explicit(&node->queued, 1, memory_order_relaxed);
        send_error(p, task_id, -ECANCELED);
        moirai_handle_release(e->h);
        moirai__peer_unref(p);
        moirai_free(e);
    }
}

void moirai__exec_cancel_all(struct peer *p)
{
    moirai_mutex_lock(&p->xlock);
    for (size_t b = 0; b < p->exec.nbuckets; b++)
        for (struct hnode *n = p->exec.buckets[b]; n; n = n->next)
            moirai_handle_cancel(((struct exec *)n)->h);
    moirai_mutex_unlock(&p->xlock);
}
