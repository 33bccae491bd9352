/* The shared-memory backend of remote tasks (MOIRAI_NODE_BACKEND_SHM):
 * nodes that are processes of one host, connected by links over
 * shared-memory rings (link_shm.c, shm_accept.c). Listen and seed
 * strings are "shm:NAME"; a node without a listen string listens on a
 * name made of its pid. Accepting runs on one fiber of the node, which
 * parks while no dial comes. docs/transport.md, "Shared-memory backend". */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <moirai/async/fiber.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/log.h>

#include "link.h"
#include "link_shm.h"
#include "node_internal.h"

/* The backend's state in node->backend_state. Both the acceptor fiber
 * and stop use the listener; whichever of the two is last frees it. */
struct shm_backend {
    struct moirai_node *node;
    struct shm_listener *ls;
    _Atomic uint32_t refs;
};

static void backend_put(struct shm_backend *sb)
{
    /* Acq_rel: the other user's last accesses happen before the free. */
    if (atomic_fetch_sub_explicit(&sb->refs, 1, memory_order_acq_rel) == 1) {
        moirai__shm_listener_destroy(sb->ls);
        moirai_free(sb);
    }
}

static int acceptor_main(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct shm_backend *sb = arg;
    struct moirai_node *node = sb->node;
    for (;;) {
        struct link *l;
        int rc = moirai__shm_accept(sb->ls, MOIRAI_DEADLINE_NEVER, &l);
        if (rc == -ECANCELED)
            break; /* stop */
        if (rc < 0) {
            /* -ENOMEM, -EMFILE: that dial is dropped; keep serving, after
             * a pause so an exhausted process does not spin. */
            MOIRAI_LOG(MOIRAI_LOG_WARN, "node %llx: shm accept: %s", (unsigned long long)node->id,
                       strerror(-rc));
            moirai_fiber_sleep(10 * MOIRAI_NS_PER_MS);
            continue;
        }
        moirai__peer_start(node, l, false, NULL); /* on error it closed the link */
    }
    backend_put(sb);
    return 0;
}

static int shm_listen(struct moirai_node *node, const struct frame_addr *where,
                      struct frame_addr *self)
{
    char name[SHM_NAME_MAX + 1];
    static const struct frame_addr none;
    if (memcmp(where, &none, sizeof none) == 0) {
        /* No listen string: a name of this process ("n" pid "-" count). */
        static _Atomic uint32_t count;
        snprintf(name, sizeof name, "n%u-%u", (unsigned)getpid(),
                 atomic_fetch_add_explicit(&count, 1, memory_order_relaxed));
    } else if (moirai__shm_addr_name(where, name) < 0) {
        return -EINVAL;
    }
    struct shm_backend *sb = moirai_calloc(1, sizeof *sb);
    if (!sb)
        return -ENOMEM;
    sb->node = node;
    atomic_init(&sb->refs, 2);
    int rc = moirai__shm_listen(&sb->ls, name);
    if (rc < 0) {
        moirai_free(sb);
        return rc;
    }
    memset(self, 0, sizeof *self);
    self->family = FRAME_ADDR_SHM;
    memcpy(self->addr, name, strlen(name));
    node->backend_state = sb;
    rc = moirai__node_spawn_fiber(node, acceptor_main, sb);
    if (rc < 0) {
        node->backend_state = NULL;
        moirai__shm_listener_destroy(sb->ls);
        moirai_free(sb);
    }
    return rc;
}

static int shm_dial(struct moirai_node *node, const struct frame_addr *to, uint64_t deadline,
                    struct link **out)
{
    (void)node;
    char name[SHM_NAME_MAX + 1];
    if (moirai__shm_addr_name(to, name) < 0)
        return -EINVAL;
    return moirai__shm_dial(name, 0, deadline, out);
}

static void shm_stop(struct moirai_node *node)
{
    struct shm_backend *sb = node->backend_state;
    if (!sb)
        return;
    node->backend_state = NULL;
    moirai__shm_listener_stop(sb->ls);
    backend_put(sb);
}

const struct backend_ops moirai__backend_shm = {
    .parse = moirai__shm_parse,
    .listen = shm_listen,
    .dial = shm_dial,
    .stop = shm_stop,
};
