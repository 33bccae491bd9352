/* The shared-memory backend's pieces, shared by its files and its tests:
 * names, the link over a pair of rings (link_shm.c), waiting on a ring
 * with a stop flag (shm_wait.c), and the accept ring's protocol, dial
 * and listen (shm_accept.c). docs/transport.md, "Shared-memory backend",
 * describes the names and the protocol for people.
 *
 * Names: a listener called NAME (1 to SHM_NAME_MAX characters among
 * [A-Za-z0-9_-]; listen and seed strings "shm:NAME") owns the POSIX shm
 * object "/moirai-shm.NAME", its accept ring. A dial creates two rings,
 * "/moirai-shm.NAME.PID.SEQ.a" (dialer to acceptor) and ".b" (acceptor to
 * dialer), and for each a doorbell FIFO, "/dev/shm/moirai-shm.NAME.PID.SEQ.fa"
 * and ".fb"; all four are unlinked as soon as both sides opened them. The
 * listener also has a doorbell, "/dev/shm/moirai-shm.NAME.bell", which a
 * dialer rings after announcing itself, so that an idle acceptor fiber
 * sleeps in the reactor (a second at a time) instead of waking every
 * 50 ms. */
#ifndef MOIRAI_TRANSPORT_LINK_SHM_H
#define MOIRAI_TRANSPORT_LINK_SHM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/async/net.h>
#include <moirai/transport/ring.h>

#include "frame.h"
#include "link.h"

/* A listener's address is FRAME_ADDR_SHM (frame.h): addr holds the
 * name, NUL-padded (a name of 16 characters has no NUL). */
#define SHM_NAME_MAX 16u
#define SHM_PREFIX   "/moirai-shm."
/* Longest object name: prefix, name, ".", pid, ".", seq, ".a", NUL. */
#define SHM_PATH_MAX 80u

/* Each direction of a link is one ring of this many bytes unless the
 * dialer asks otherwise. */
#define SHM_LINK_RING_SIZE ((size_t)1 << 20)
/* The accept ring: announcements are 16 bytes each. */
#define SHM_ACCEPT_RING_SIZE ((size_t)1 << 16)
/* The largest record a link writes: a quarter of its ring (at most
 * 64 KiB), so that a long write streams through a ring the reader
 * drains meanwhile instead of waiting for the whole ring to empty. */
#define SHM_CHUNK_MAX ((size_t)1 << 16)

/* True when `name` (NUL-terminated) is a valid listener name. */
bool moirai__shm_name_valid(const char *name);

/* Parses "shm:NAME" into a FRAME_ADDR_SHM address. 0 or -EINVAL. */
int moirai__shm_parse(const char *text, struct frame_addr *out);

/* The listener name held by a FRAME_ADDR_SHM address, NUL-terminated in
 * `name`. 0 or -EINVAL (another family, an invalid name). */
int moirai__shm_addr_name(const struct frame_addr *a, char name[SHM_NAME_MAX + 1]);

/* A link's doorbell: a FIFO the reading side's fibers wait on in the
 * runtime's reactor instead of the ring's futex (a futex wait from a
 * fiber costs a thread of the blocking pool and one more wake-up per
 * message). The writer writes a byte into it when a commit woke the
 * reader (the ring's data_seq moved); shutdown writes one to wake this
 * side's own reader. Both sides open both FIFOs read-write, so an open
 * never waits for the other end and a write never raises SIGPIPE. */
struct shm_bell {
    moirai_io_t *io;   /* the inbound FIFO, on the runtime that made the link; NULL: none */
    int fd;            /* its descriptor (owned by io), for shutdown's wake-up */
    bool broken;       /* a read of it failed: back to the futex */
    uint64_t slice_ns; /* the longest sleep on it; 0: RING_SLICE_NS */
};

/* link_shm.c. Builds a link that reads from `in` (a consumer handle) and
 * writes to `out` (a producer handle), taking both handles and both
 * descriptors (on error too: they are detached and closed). `bell_in`
 * and `bell_out` are the doorbell FIFOs (-1: none); the inbound one is
 * used only when the caller is a fiber (its runtime then hosts it).
 * Returns 0 or -ENOMEM. */
int moirai__shm_link_new(moirai_shm_ring_t *in, moirai_shm_ring_t *out, int bell_in, int bell_out,
                         struct link **link);

/* link_shm.c. Stops using the link's doorbells (the other side does not
 * ring them): its reader waits on the futex. Before any use of the link. */
void moirai__shm_link_drop_bells(struct link *link);

/* shm_wait.c. Peeks at `r` (a consumer handle) waiting until a message
 * arrives, `deadline`, or `*stop` becomes non-zero (-ECANCELED; also when
 * the calling fiber's task is cancelled). With `gone_idles`, a ring whose
 * producers all detached is waited on like an empty one (a listener's
 * accept ring), except once all its producer slots are used (then
 * -EPIPE: nobody can attach any more). With a `bell` (not NULL, open and
 * not broken) a fiber sleeps on it instead of the futex. Otherwise returns what
 * moirai_shm_ring_try_peek() returns besides -EAGAIN. Parks a fiber, blocks a thread. */
int moirai__shm_wait_peek(moirai_shm_ring_t *r, _Atomic uint32_t *stop, bool gone_idles,
                          struct shm_bell *bell, uint64_t deadline, void **buf, size_t *len);

/* shm_wait.c. Reserves `len` bytes on `r` (a producer handle), waiting
 * for room until `deadline` or `*stop` (-ECANCELED). Otherwise returns
 * what moirai_shm_ring_try_reserve() returns besides -EAGAIN. */
int moirai__shm_wait_reserve(moirai_shm_ring_t *r, _Atomic uint32_t *stop, uint64_t deadline,
                             size_t len, void **buf);

/* shm_wait.c. Wakes whoever waits in the two functions above on `r` (in
 * this process or another): they look again, and see a stop flag set
 * before this call. */
void moirai__shm_wake(moirai_shm_ring_t *r);

/* shm_wait.c. Marks this side of `r` as gone in the shared header, as a
 * detach does, without unmapping: the peer sees end of stream (-EPIPE)
 * while this process may still be inside a call on the handle. */
void moirai__shm_mark_gone(moirai_shm_ring_t *r);

/* shm_wait.c. True when every producer slot of `r` has been claimed (an
 * MPSC ring admits MOIRAI_SHM_RING_MAX_PRODUCERS attaches over its life). */
bool moirai__shm_slots_exhausted(moirai_shm_ring_t *r);

/* shm_accept.c. Connects to the listener `name`: creates the link's two
 * rings (each `ring_size` bytes, 0 = SHM_LINK_RING_SIZE), announces them
 * on the listener's accept ring and waits until the acceptor attached
 * both, at most until `deadline`. Parks a fiber, blocks a thread.
 * Returns 0, -EINVAL (bad name or ring size), -ECONNREFUSED (no such
 * listener, or it stopped or refused), -ETIMEDOUT, -ENOMEM, or another
 * negative errno from creating the rings. On error nothing is left in
 * /dev/shm. */
int moirai__shm_dial(const char *name, size_t ring_size, uint64_t deadline, struct link **out);

struct shm_listener;

/* shm_accept.c. Creates the listener `name`'s accept ring. A leftover
 * object of a listener process that died is replaced. Returns 0, -EINVAL
 * (bad name), -EADDRINUSE (a live listener has the name), -ENOMEM, or a
 * negative errno from shm_open or mmap. */
int moirai__shm_listen(struct shm_listener **out, const char *name);

/* shm_accept.c. Waits for the next dial and answers it, at most until
 * `deadline`. One caller at a time. Returns 0 with the new link in
 * `*out`, -ETIMEDOUT, -ECANCELED (moirai__shm_listener_stop was called,
 * or the calling fiber's task was cancelled), -ENOMEM, or a negative
 * errno from renewing the accept ring. A dial that cannot be answered
 * (its dialer died, its rings are malformed) is skipped, not returned. */
int moirai__shm_accept(struct shm_listener *l, uint64_t deadline, struct link **out);

/* shm_accept.c. Makes moirai__shm_accept return -ECANCELED, now and from
 * then on. Any thread; idempotent. */
void moirai__shm_listener_stop(struct shm_listener *l);

/* shm_accept.c. Detaches the accept ring, unlinks its names and frees
 * the listener. No accept may be in progress. A listener accepted on
 * from a fiber keeps its doorbell in that fiber's runtime: destroy it
 * before the runtime (as a link made on a fiber is closed before its
 * runtime). NULL is ignored. */
void moirai__shm_listener_destroy(struct shm_listener *l);

#endif
