/* The bytes of one connection between two nodes, whatever carries them
 * (TCP, MPI, shared memory), and a backend: how a node listens for and
 * dials such connections. Everything above bytes (handshake, frames,
 * membership, tasks) is one code path over these operations. This is
 * the interface of issue 12's shared contract, copied as specified. */
#ifndef MOIRAI_TRANSPORT_LINK_H
#define MOIRAI_TRANSPORT_LINK_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "frame.h"

struct moirai_node;
struct link;

struct link_ops {
    /* Reads 1..len bytes into buf, parking the calling fiber (or blocking the calling
     * thread) until some arrive. Returns the count, 0 at end of stream (the other side
     * shut down or closed), -ETIMEDOUT at `deadline` (absolute, moirai_clock_now_ns(),
     * MOIRAI_DEADLINE_NEVER = none), -ECONNRESET/-EPIPE when the other side died,
     * -ECANCELED when link_shutdown() was called. One reader at a time. */
    ssize_t (*read)(struct link *l, void *buf, size_t len, uint64_t deadline);
    /* Writes every byte of the `cnt` (<= 4) iovecs, in order, parking/blocking as needed.
     * 0, or -EPIPE/-ECONNRESET (other side gone), -ETIMEDOUT at deadline,
     * -ECANCELED after shutdown. One writer at a time (peer.c serializes). */
    int (*writev)(struct link *l, const struct iovec *iov, int cnt, uint64_t deadline);
    /* Ends both directions now: a read or writev parked in another fiber/thread returns
     * promptly (-ECANCELED or 0); the other side sees end of stream. Idempotent, any thread. */
    void (*shutdown)(struct link *l);
    /* Frees the link. Called once, after shutdown, when no read/writev is in progress. */
    void (*close)(struct link *l);
    /* The address the other side connects from, for HELLO address resolution; -ENOTSUP
     * when the backend has none (MPI, shm: the HELLO's advertised address is used as is). */
    int (*peer_addr)(struct link *l, struct frame_addr *out);
};

struct link {
    const struct link_ops *ops;
};

struct backend_ops {
    /* Parses a listen/seed string of this backend into an address. -EINVAL if malformed. */
    int (*parse)(const char *text, struct frame_addr *out);
    /* Starts accepting: every accepted link goes to moirai__peer_start(node, link, false,
     * NULL) (from a fiber the backend runs). Fills *self with the address to advertise. */
    int (*listen)(struct moirai_node *node, const struct frame_addr *where,
                  struct frame_addr *self);
    /* Connects to `to`, parking the calling fiber up to `deadline`. */
    int (*dial)(struct moirai_node *node, const struct frame_addr *to, uint64_t deadline,
                struct link **out);
    /* Stops accepting and releases the backend's resources (node destroy); links already
     * handed out are closed by their peers. */
    void (*stop)(struct moirai_node *node);
};

#endif
