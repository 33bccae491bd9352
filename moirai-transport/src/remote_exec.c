/* The executing side of a remote task: a SPAWN frame from an
 * authenticated peer becomes a fiber that calls the registered function;
 * its result or error goes back in one frame. Each task has a core handle
 * of its own, used for its cancel token: a CANCEL frame cancels that
 * handle, so a task whose fiber has not started never calls its function
 * (and answers -ECANCELED), and a started one sees its token cancelled. */
#include <errno.h>
#include <string.h>

#include <moirai/core/alloc.h>

#include "node_internal.h"

struct exec {
    struct hnode hn; /* key: the spawner's task id */
    struct peer *p;  /* referenced: the answer goes back on it */
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

static int exec_main(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct exec *e = arg;
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
        rc = moirai__node_spawn_fiber(node, exec_main, e);
        if (rc < 0) {
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
    moirai_mutex_lock(&p->xlock);
    struct exec *e = (struct exec *)moirai__htab_find(&p->exec, task_id);
    if (e)
        moirai_handle_cancel(e->h);
    moirai_mutex_unlock(&p->xlock);
}

void moirai__exec_cancel_all(struct peer *p)
{
    moirai_mutex_lock(&p->xlock);
    for (size_t b = 0; b < p->exec.nbuckets; b++)
        for (struct hnode *n = p->exec.buckets[b]; n; n = n->next)
            moirai_handle_cancel(((struct exec *)n)->h);
    moirai_mutex_unlock(&p->xlock);
}
