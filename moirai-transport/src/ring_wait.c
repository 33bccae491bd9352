/* Waiting on a shared-memory ring: the process-shared futex, and the
 * liveness of the peers a waiting side depends on. A side never sleeps
 * longer than one slice (RING_SLICE_NS) without checking whether its
 * peers still exist, so a peer killed with SIGKILL (which cannot detach)
 * is noticed within a slice instead of hanging the survivor. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/futex.h>

#include <moirai/core/clock.h>

#include "moirai_probe.h"
#include "ring_internal.h"

/* The largest pid Linux hands out (PID_MAX_LIMIT on 64-bit). */
#define RING_PID_MAX 4194304u

void moirai__ring_thread_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline)
{
    uint64_t ns = RING_SLICE_NS;
    if (deadline != MOIRAI_DEADLINE_NEVER) {
        uint64_t left = moirai_deadline_remaining(deadline);
        if (left == 0)
            return;
        if (left < ns)
            ns = left;
    }
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    /* FUTEX_WAIT without FUTEX_PRIVATE_FLAG: the word is in a shared
     * mapping and the waker is another process. EAGAIN (the word moved),
     * EINTR and ETIMEDOUT all mean "look again", which every caller does. */
    (void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, &ts, NULL, 0);
}

int moirai__ring_wait_futex(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline)
{
    MOIRAI_PROBE3(ring_wait, word, expected, deadline);
    if (moirai__ring_in_fiber())
        return moirai__ring_fiber_wait(word, expected, deadline);
    moirai__ring_thread_wait(word, expected, deadline);
    return 0;
}

void moirai__ring_wake_futex(_Atomic uint32_t *word)
{
    MOIRAI_PROBE1(ring_wake, word);
    (void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* True when the process behind `w` has exited (a zombie counts: it will
 * never detach). */
static bool exited(struct ring_watch *w, uint32_t pid)
{
    if (w->pid != pid) {
        if (w->fd >= 0)
            close(w->fd);
        w->pid = pid;
        w->dead = false;
        w->fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
        if (w->fd < 0 && errno == ESRCH)
            return true;
    }
    if (w->fd >= 0) {
        /* A pidfd polls readable once its process has exited. */
        struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
        return poll(&pfd, 1, 0) > 0;
    }
    /* No pidfds (a kernel before 5.3, or out of fds): fall back on
     * kill(pid, 0), which cannot tell a zombie from a live process and
     * is fooled by a recycled pid. */
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

enum ring_peer moirai__ring_peer(struct ring_slot *slot, struct ring_watch *w, bool probe)
{
    /* Acquire: a DETACHED state comes with everything the peer did
     * before detaching (its last commits or releases). */
    uint32_t state = atomic_load_explicit(&slot->state, memory_order_acquire);
    uint32_t pid = atomic_load_explicit(&slot->pid, memory_order_acquire);
    switch (state) {
    case RING_SLOT_FREE:
        return RING_PEER_ABSENT;
    case RING_SLOT_DETACHED:
        return RING_PEER_GONE;
    case RING_SLOT_ATTACHED:
        break;
    default:
        return RING_PEER_BAD;
    }
    if (pid == 0)
        return RING_PEER_ALIVE; /* between claiming the slot and writing its pid */
    if (pid > RING_PID_MAX)
        return RING_PEER_BAD;
    if (w->pid == pid && w->dead)
        return RING_PEER_DEAD;
    if (!probe)
        return RING_PEER_ALIVE;
    w->dead = exited(w, pid);
    return w->dead ? RING_PEER_DEAD : RING_PEER_ALIVE;
}

bool moirai__ring_should_probe(moirai_shm_ring_t *r)
{
    uint64_t now = moirai_clock_now_ns();
    if (r->last_probe != 0 && now - r->last_probe < RING_SLICE_NS)
        return false;
    r->last_probe = now;
    return true;
}

void moirai__ring_unwatch(moirai_shm_ring_t *r)
{
    for (uint32_t i = 0; i < MOIRAI_SHM_RING_MAX_PRODUCERS; i++) {
        if (r->watch[i].fd >= 0)
            close(r->watch[i].fd);
        r->watch[i].fd = -1;
        r->watch[i].pid = 0;
        r->watch[i].dead = false;
    }
}
