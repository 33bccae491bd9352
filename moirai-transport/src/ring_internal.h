/* A process's handle on a shared-memory ring, and the functions the ring's
 * source files share. Everything here is local to one process; the shared
 * bytes are described in ring_layout.h. */
#ifndef MOIRAI_TRANSPORT_RING_INTERNAL_H
#define MOIRAI_TRANSPORT_RING_INTERNAL_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/clock.h>
#include <moirai/transport/ring.h>

#include "ring_layout.h"

/* A pidfd kept open on a peer's pid, so that a pid recycled after the
 * peer died is not mistaken for it once watched. */
struct ring_watch {
    uint32_t pid; /* 0: none watched */
    int fd;       /* -1: pidfd_open failed, fall back on kill(pid, 0) */
    bool dead;    /* a probe found `pid` exited: remembered, never asked again */
};

struct moirai_shm_ring {
    struct ring_shared *sh; /* the header page */
    unsigned char *data;    /* the data region, sh + RING_HEADER_SIZE */
    size_t map_size;        /* bytes mapped (header and data) */
    bool mapped;            /* munmap on detach (false for a test's buffer) */

    /* The geometry, copied once at attach and validated: never re-read
     * from the shared page, which the peer can rewrite at any time. */
    uint64_t size;
    uint64_t mask;
    bool mpsc;
    uint32_t max_producers;
    moirai_shm_ring_role_t role;
    struct ring_slot *slot; /* this handle's slot */

    /* Producer (SPSC): the tail it owns. Consumer: the head it owns. The
     * owner's index is authoritative here; the shared copy only tells
     * the peer. */
    uint64_t pos;
    /* The peer's index as last read and validated: the consumer's head
     * (producer) or the SPSC tail (consumer). */
    uint64_t other;

    /* The outstanding reservation (producer) or peeked message
     * (consumer). */
    bool pending;
    uint64_t pend_pos; /* its record's index */
    uint64_t pend_rec; /* its record's size */
    size_t pend_len;   /* its payload length */

    /* Set when a peer wrote something impossible: the handle answers
     * -EPROTO from then on. */
    bool broken;

    struct ring_watch watch[MOIRAI_SHM_RING_MAX_PRODUCERS];
    uint64_t last_probe; /* moirai_clock_now_ns() of the last probe; 0: none */
    moirai_shm_ring_stats_t stats;
};

/* Builds a handle over the ring mapped at `base` (`map_size` bytes),
 * validating the header, and registers `role` in it. `mapped`: munmap on
 * detach. The fuzz target calls this on a plain buffer. Returns 0,
 * -EPROTO, -EBUSY, -EINVAL or -ENOMEM; on error `base` is left alone. */
int moirai__ring_attach_mapped(moirai_shm_ring_t **out, void *base, size_t map_size, bool mapped,
                               moirai_shm_ring_role_t role);

/* Sleeps on the shared futex word `word` while it holds `expected`, at
 * most until `deadline` and at most one liveness slice. Process-shared
 * (no FUTEX_PRIVATE_FLAG). A fiber does not sleep its worker: the futex
 * wait runs on the scheduler's blocking pool while the fiber parks.
 * Returns 0, or -ECANCELED when the calling fiber's task is cancelled. */
int moirai__ring_wait_futex(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline);

/* A plain thread's part of moirai__ring_wait_futex (ring_wait.c). */
void moirai__ring_thread_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline);

/* ring_park.c: whether the caller is a moirai-async fiber; a yield of the
 * fiber (or of the thread); a fiber's wait (blocking pool + park). */
bool moirai__ring_in_fiber(void);
void moirai__ring_yield(void);
int moirai__ring_fiber_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline);

/* Wakes every process sleeping on `word`. */
void moirai__ring_wake_futex(_Atomic uint32_t *word);

/* The liveness of the participant in `slot`, watched through `w`. With
 * `probe` false an attached participant counts as alive without asking
 * the kernel (the states in the shared slot are still read): the system
 * call is made at most once per slice (see moirai__ring_should_probe). */
enum ring_peer {
    RING_PEER_ABSENT, /* never attached */
    RING_PEER_ALIVE,  /* attached and running (or attaching) */
    RING_PEER_GONE,   /* detached cleanly */
    RING_PEER_DEAD,   /* attached and exited without detaching */
    RING_PEER_BAD,    /* the slot holds an impossible state or pid */
};
enum ring_peer moirai__ring_peer(struct ring_slot *slot, struct ring_watch *w, bool probe);

/* True when `ring`'s last liveness probe is a slice old or more (or there
 * was none), and then starts a new slice: a waiting side asks the kernel
 * about its peers at most once per slice, not before every sleep. */
bool moirai__ring_should_probe(moirai_shm_ring_t *ring);

/* Closes the pidfds of `ring`'s watches. */
void moirai__ring_unwatch(moirai_shm_ring_t *ring);

/* The longest single futex sleep: a waiting side re-checks its peers'
 * liveness at least this often. */
#define RING_SLICE_NS UINT64_C(50000000)

/* How long a side polls before it goes to sleep. A wake-up across
 * processes through the futex costs 5-20 us here, so a side first polls
 * for a while, giving up its CPU between looks (sched_yield): on a busy
 * machine the peer that will answer often waits for the very CPU the
 * poller holds, and a pause-based spin measured 2-20x slower round trips
 * than no spin at all, while a yielding poll of 10 us measured 2-4 us
 * round trips against 5-10 us for a Unix socket. A side with nothing to
 * do still sleeps after 10 us. Overridable for experiments with
 * -DRING_SPIN_NS. */
#ifndef RING_SPIN_NS
#define RING_SPIN_NS 10000u
#endif

/* One round of the poll before sleeping: true (after yielding the CPU)
 * while the side should keep polling. `spins` counts the rounds from 0;
 * `*start` is set on round 0. */
static inline bool ring_keep_spinning(int spins, uint64_t *start)
{
    uint64_t now = moirai_clock_now_ns();
    if (spins == 0)
        *start = now;
    else if (now - *start >= RING_SPIN_NS)
        return false;
    moirai__ring_yield();
    return true;
}

#endif
