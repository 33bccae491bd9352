/* The byte movers under remote tasks: a `struct link` is one connection's
 * two byte streams, a `struct backend` is how a node reaches others (TCP
 * on moirai-async, MPI, shared memory). Everything above bytes (the
 * handshake, authentication, frames, membership, tasks: peer.c,
 * membership.c, node.c) is one code path for every backend; only the
 * link_*.c files differ. docs/transport.md, "Remote tasks: backends",
 * describes the contract for people writing a backend.
 *
 * A backend's files define one `const struct backend_ops
 * moirai__backend_<name>`, declared below; node.c's table maps
 * moirai_node_backend_t to it. */
#ifndef MOIRAI_TRANSPORT_LINK_H
#define MOIRAI_TRANSPORT_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "frame.h"

struct moirai_node;
struct link;

/* The most iovecs one writev takes. */
#define LINK_IOV_MAX 4

struct link_ops {
    /* Reads 1..len bytes into buf, parking the calling fiber (or blocking
     * the calling thread) until some arrive. Returns the count, 0 at end
     * of stream (the other side shut down or closed), -ETIMEDOUT at
     * `deadline` (absolute, moirai_clock_now_ns(), MOIRAI_DEADLINE_NEVER =
     * none), -ECONNRESET/-EPIPE when the other side died, -ECANCELED when
     * shutdown() was called. One reader at a time. */
    ssize_t (*read)(struct link *l, void *buf, size_t len, uint64_t deadline);
    /* Writes every byte of the `cnt` (<= LINK_IOV_MAX) iovecs, in order,
     * parking/blocking as needed. 0, or -EPIPE/-ECONNRESET (other side
     * gone), -ETIMEDOUT at deadline, -ECANCELED after shutdown. One writer
     * at a time (peer.c serializes). */
    int (*writev)(struct link *l, const struct iovec *iov, int cnt, uint64_t deadline);
    /* Ends both directions now: a read or writev parked in another
     * fiber/thread returns promptly (-ECANCELED or 0); the other side sees
     * end of stream. Idempotent, any thread. */
    void (*shutdown)(struct link *l);
    /* Frees the link. Called once, after shutdown, when no read/writev is
     * in progress. */
    void (*close)(struct link *l);
    /* The address the other side connects from, for HELLO address
     * resolution (peer.c uses its family and addr, and keeps the port the
     * HELLO advertised); -ENOTSUP when the backend has none (MPI, shm: the
     * HELLO's advertised address is used as is). */
    int (*peer_addr)(struct link *l, struct frame_addr *out);

    /* Optional (NULL: not offered). */

    /* Writes what the link takes now, in order, without waiting. Returns
     * the bytes taken (0 when there is no room now), or -EPIPE/-ECONNRESET
     * (other side gone), -ECANCELED after shutdown. Same one-writer rule
     * as writev (peer.c never runs both at once). peer.c uses it to send a
     * frame from the sending thread when the link is idle, which costs
     * one system call instead of a wake-up of the writer fiber; without
     * it, every write goes through the writer fiber. */
    ssize_t (*try_writev)(struct link *l, const struct iovec *iov, int cnt);
    /* Bytes that arrived and were not read yet (0 when unknown). The
     * failure detector takes them as a sign of life, so a node too busy
     * to read is not mistaken for a silent peer. Never blocks. */
    size_t (*unread)(struct link *l);
};

/* A backend's link begins with this (the backend's own state follows). */
struct link {
    const struct link_ops *ops;
};

struct backend_ops {
    /* Parses a listen/seed string of this backend into an address. -EINVAL
     * if malformed. Never blocks. */
    int (*parse)(const char *text, struct frame_addr *out);
    /* Starts accepting: every accepted link goes to moirai__peer_start(node,
     * link, false, NULL) (from a fiber the backend runs, started with
     * moirai__node_spawn_fiber() so that destroy waits for it). `where` is
     * the parsed config.listen, or all zero when config.listen is NULL (the
     * backend's default). Fills *self with the address to advertise
     * (its port is what moirai_node_port() reports). May keep its state
     * in node->backend_state. May replace node->id when !node->id_given
     * (config.id was 0; node->id is then random), before it starts any
     * fiber: nothing else of the node runs yet. Returns 0 or a negative
     * errno (nothing is left running then). */
    int (*listen)(struct moirai_node *node, const struct frame_addr *where,
                  struct frame_addr *self);
    /* Connects to `to`, parking the calling fiber up to `deadline`. Stores
     * the new link in *out and returns 0, or a negative errno
     * (-ECONNREFUSED, -ETIMEDOUT, -ENOMEM, ...). */
    int (*dial)(struct moirai_node *node, const struct frame_addr *to, uint64_t deadline,
                struct link **out);
    /* Stops accepting and releases the backend's resources (node destroy);
     * links already handed out are closed by their peers. Fibers the
     * backend started must end promptly after it (destroy waits for them
     * before freeing the node). */
    void (*stop)(struct moirai_node *node);
};

/* The backends. A backend that is not built in is a weak reference that
 * the static link resolves to NULL (node.c then refuses it with
 * -ENOTSUP); hidden, so that no other loaded object can supply it at run
 * time. Adding link_mpi.c or link_shm.c to the library's sources is all
 * it takes to plug one in. */
extern const struct backend_ops moirai__backend_tcp;
extern const struct backend_ops moirai__backend_mpi __attribute__((weak, visibility("hidden")));
extern const struct backend_ops moirai__backend_shm __attribute__((weak, visibility("hidden")));

/* Shorthands for peer.c and membership.c. */
static inline ssize_t link_read(struct link *l, void *buf, size_t len, uint64_t deadline)
{
    return l->ops->read(l, buf, len, deadline);
}

static inline int link_writev(struct link *l, const struct iovec *iov, int cnt, uint64_t deadline)
{
    return l->ops->writev(l, iov, cnt, deadline);
}

static inline void link_shutdown(struct link *l)
{
    l->ops->shutdown(l);
}

static inline void link_close(struct link *l)
{
    l->ops->close(l);
}

#endif
