/* Shared-memory rings between processes: variable-length messages, zero
 * copy, one consumer and one producer (SPSC) or several (MPSC).
 *
 * A ring lives in a shared-memory object: a memfd (pass it to a child
 * through fork, through exec with its number, or over a Unix socket with
 * SCM_RIGHTS) or a named POSIX shm object. moirai_shm_ring_create() makes
 * and formats the object; each process then attaches one handle per role
 * (moirai_shm_ring_attach() on an fd, moirai_shm_ring_open() on a name),
 * which maps the object and checks its header.
 *
 * A producer reserves room for a message and writes it in place, then
 * commits it; the consumer peeks at the oldest message in place, then
 * releases it. A handle has at most one reservation (or one peeked
 * message) outstanding. Waiting functions sleep on a futex in the shared
 * page after a short spin, so a waiting process uses no CPU. Called from
 * a moirai-async fiber they park the fiber, never its worker: the futex
 * sleep runs on the scheduler's blocking pool (one thread per waiting
 * fiber, one hop per wake-up), and a cancellation of the fiber's task
 * ends the wait with -ECANCELED.
 *
 * The other process is not trusted. The consumer validates every index
 * and length it reads from the shared page before using it, and the
 * producer validates the consumer's index; whatever a peer writes there,
 * a handle never reads or writes outside its mapping, and garbage is
 * reported as -EPROTO. A payload, however, stays writable by the peer
 * while it is peeked: copy what you validate (docs/transport.md, "What a
 * malicious peer can and cannot do").
 *
 * Peer death: a waiting side checks, every 50 ms of sleep and before it
 * would sleep, whether its peers are alive (through pidfds on the pids
 * they recorded in the header). When every producer detached and the ring
 * is drained, peek returns -EPIPE; when a producer died without detaching
 * (killed), it returns -ECONNRESET once the committed messages are
 * drained. A producer gets -EPIPE once the consumer detached, and
 * -ECONNRESET when it would wait for room and the consumer died. Both
 * sides must live in the same pid namespace.
 *
 * Handles are not thread-safe: one thread uses a handle at a time. For
 * several producing threads, attach one producer handle per thread on an
 * MPSC ring. */
#ifndef MOIRAI_TRANSPORT_RING_H
#define MOIRAI_TRANSPORT_RING_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/transport/export.h>

/* One process's handle on a shared ring (see above). Opaque. */
typedef struct moirai_shm_ring moirai_shm_ring_t;

/* The layout version written in the header; two builds whose versions
 * differ refuse each other's rings with -EPROTO. */
#define MOIRAI_SHM_RING_LAYOUT_VERSION 1u

/* Default and bounds of the data region, in bytes (a power of two). */
#define MOIRAI_SHM_RING_DEFAULT_SIZE ((size_t)1 << 20)
#define MOIRAI_SHM_RING_MIN_SIZE     ((size_t)4096)
#define MOIRAI_SHM_RING_MAX_SIZE     ((size_t)1 << 30)

/* Most producer handles an MPSC ring admits at once over its life (their
 * slots are not reused). An SPSC ring admits one. */
#define MOIRAI_SHM_RING_MAX_PRODUCERS 16u

/* The role a handle plays. */
typedef enum moirai_shm_ring_role {
    MOIRAI_SHM_RING_CONSUMER = 1,
    MOIRAI_SHM_RING_PRODUCER = 2,
} moirai_shm_ring_role_t;

/* Flags of moirai_shm_ring_config_t. */
#define MOIRAI_SHM_RING_MPSC 0x1u /* several producers (default: one) */

/* How moirai_shm_ring_create() makes a ring. A zeroed field means its
 * default. */
typedef struct moirai_shm_ring_config {
    /* Bytes of the data region: a power of two between
     * MOIRAI_SHM_RING_MIN_SIZE and MOIRAI_SHM_RING_MAX_SIZE; 0 means
     * MOIRAI_SHM_RING_DEFAULT_SIZE. The largest message is this minus 8. */
    size_t size;
    /* 0 or MOIRAI_SHM_RING_MPSC. */
    uint32_t flags;
    /* NULL: an anonymous memfd. Otherwise the name of a new POSIX shm
     * object ("/name", created exclusively). */
    const char *name;
    /* Permission bits of a named object; 0 means 0600. */
    uint32_t mode;
} moirai_shm_ring_config_t;

/* Counters of one handle (local to the process, never shared). */
typedef struct moirai_shm_ring_stats {
    uint64_t messages; /* committed (producer) or released (consumer) */
    uint64_t bytes;    /* payload bytes of those messages */
    uint64_t blocked;  /* reserve or peek calls that found no room or no message at first */
    uint64_t sleeps;   /* futex waits this handle went into */
    uint64_t wakeups;  /* futex wakes this handle issued to its peers */
} moirai_shm_ring_stats_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Fills `cfg` with the defaults (the same as zeroing it). Never blocks.
 * NULL is ignored. */
MOIRAI_TRANSPORT_API void moirai_shm_ring_config_init(moirai_shm_ring_config_t *cfg);

/* Creates and formats a ring's shared-memory object and stores its file
 * descriptor in `*fd_out` (not close-on-exec, so an exec'd child inherits
 * it; a memfd is sealed against growing and shrinking). The caller owns
 * the fd and closes it once every side attached. NULL `cfg`: defaults.
 * Never blocks. Returns 0, -EINVAL (NULL `fd_out`, `size` not a power of
 * two or out of range, unknown flags, a name that does not start with '/'
 * or has another '/'), -EEXIST (the name exists), or another negative
 * errno from memfd_create, shm_open or ftruncate. */
MOIRAI_TRANSPORT_API int moirai_shm_ring_create(int *fd_out, const moirai_shm_ring_config_t *cfg);

/* Removes a named ring's name (mapped handles keep working). Returns 0,
 * -EINVAL (NULL name) or -ENOENT. */
MOIRAI_TRANSPORT_API int moirai_shm_ring_unlink(const char *name);

/* Maps the ring in `fd` (not taken over: the caller may close it after),
 * checks its header and registers this process in `role`. Never blocks.
 * Thread-safe with other attaches. Returns 0, -EINVAL (NULL `out`, unknown
 * role), -EBADF (`fd` not open), -EPROTO (foreign magic, another layout
 * version or header size, an inconsistent size or flag, an object smaller
 * than its header says), -EBUSY (the role is taken: a second consumer, a
 * second producer on an SPSC ring, or every producer slot used), -ENOMEM,
 * or a negative errno from fstat or mmap. */
MOIRAI_TRANSPORT_API int moirai_shm_ring_attach(moirai_shm_ring_t **out, int fd,
                                                moirai_shm_ring_role_t role);

/* moirai_shm_ring_attach() on the named object `name`. Also -EINVAL (NULL
 * name), -ENOENT (no such name) or -EACCES. */
MOIRAI_TRANSPORT_API int moirai_shm_ring_open(moirai_shm_ring_t **out, const char *name,
                                              moirai_shm_ring_role_t role);

/* Marks this side as gone (the peers then get -EPIPE as described above),
 * wakes the peers, unmaps and frees the handle. An uncommitted
 * reservation is abandoned: the consumer never sees it. A peeked message
 * stays in the ring. NULL is ignored. Never blocks. */
MOIRAI_TRANSPORT_API void moirai_shm_ring_detach(moirai_shm_ring_t *ring);

/* Producer. Reserves room for a message of `len` bytes (0 allowed) and
 * stores where to write it in `*buf` (8-byte aligned); commit publishes
 * it. May block (sleeps on the shared futex while the ring is full).
 * Returns 0, -EINVAL (NULL argument, a consumer handle, a reservation
 * already outstanding), -EMSGSIZE (`len` larger than the ring's size
 * minus 8), -EPIPE (the consumer detached), -ECONNRESET (the consumer
 * died while this waited), -EPROTO (the consumer wrote an impossible
 * index), -ECANCELED (a fiber whose task was cancelled). On error `*buf`
 * is untouched and nothing is reserved. */
MOIRAI_TRANSPORT_API int moirai_shm_ring_reserve(moirai_shm_ring_t *ring, size_t len, void **buf);

/* As moirai_shm_ring_reserve() but never blocks: -EAGAIN when the ring
 * has no room now. */
MOIRAI_TRANSPORT_API int moirai_shm_ring_try_reserve(moirai_shm_ring_t *ring, size_t len,
                                                     void **buf);

/* As moirai_shm_ring_reserve() but waits at most until `deadline`
 * (moirai_clock_now_ns() time): -ETIMEDOUT after it. */
MOIRAI_TRANSPORT_API int moirai_shm_ring_reserve_timed(moirai_shm_ring_t *ring, uint64_t deadline,
                                                       size_t len, void **buf);

/* Producer. Publishes the outstanding reservation; wakes the consumer if
 * it sleeps. Never blocks. Memory ordering: a release: what the producer
 * wrote into the message happens before the consumer's peek that returns
 * it. Returns 0 or -EINVAL (NULL, no reservation outstanding). */
MOIRAI_TRANSPORT_API int moirai_shm_ring_commit(moirai_shm_ring_t *ring);

/* Consumer. Stores the oldest committed message's address and length in
 * `*buf` and `*len` without removing it. May block (sleeps while the ring
 * is empty). Memory ordering: an acquire (see commit). Returns 0,
 * -EINVAL (NULL argument, a producer handle), -EPIPE (every producer
 * detached and the ring is drained), -ECONNRESET (a producer died and
 * nothing committed is left before the point it stopped), -EPROTO (a
 * peer wrote an impossible index, record header or length; the handle is
 * unusable from then on: every call returns -EPROTO), -ECANCELED (a fiber
 * whose task was cancelled). Peeking again before release returns the
 * same message. */
MOIRAI_TRANSPORT_API int moirai_shm_ring_peek(moirai_shm_ring_t *ring, void **buf, size_t *len);

/* As moirai_shm_ring_peek() but never blocks: -EAGAIN when empty. */
MOIRAI_TRANSPORT_API int moirai_shm_ring_try_peek(moirai_shm_ring_t *ring, void **buf, size_t *len);

/* As moirai_shm_ring_peek() but waits at most until `deadline`:
 * -ETIMEDOUT after it. */
MOIRAI_TRANSPORT_API int moirai_shm_ring_peek_timed(moirai_shm_ring_t *ring, uint64_t deadline,
                                                    void **buf, size_t *len);

/* Consumer. Removes the peeked message (its memory goes back to the
 * producers; do not touch it after) and wakes producers waiting for room.
 * Never blocks. Memory ordering: a release: the consumer's reads of the
 * message happen before a producer reuses its room. Returns 0 or -EINVAL
 * (NULL, nothing peeked). */
MOIRAI_TRANSPORT_API int moirai_shm_ring_release(moirai_shm_ring_t *ring);

/* The data region's size in bytes, or 0 for NULL. Never blocks. */
MOIRAI_TRANSPORT_API size_t moirai_shm_ring_size(const moirai_shm_ring_t *ring);

/* Copies this handle's counters into `*out`. Never blocks. Returns 0 or
 * -EINVAL (NULL argument). */
MOIRAI_TRANSPORT_API int moirai_shm_ring_stats(const moirai_shm_ring_t *ring,
                                               moirai_shm_ring_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif
