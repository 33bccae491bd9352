/* Connecting two processes of one host through the shared-memory backend
 * (docs/transport.md, "Shared-memory backend"): the listener's accept
 * ring, a dial, and the acceptor's answer.
 *
 * A listener NAME owns the MPSC ring "/moirai-shm.NAME". A dial creates
 * its link's two SPSC rings under names made of NAME, its pid and a
 * sequence number, attaches its ends, and announces them with one
 * 16-byte record on the accept ring (attach, reserve, commit, and detach
 * once answered). The acceptor opens the two rings by the same names,
 * attaches the other ends, unlinks both names (from then on nothing of
 * the link is in /dev/shm, so no process death can leak it) and answers
 * with a 4-byte record on the ring towards the dialer. A refusal is a
 * detach without that record (the dialer sees -EPIPE).
 *
 * An MPSC ring admits MOIRAI_SHM_RING_MAX_PRODUCERS attaches over its
 * life, and a dialer that died inside its reservation blocks the ring's
 * head for good: the acceptor then renews the accept ring (unlinks the
 * name, creates a fresh ring under it, and drains the old one before
 * detaching it). A dialer that finds the old ring gone retries on the new
 * one. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <moirai/async/fiber.h>
#include <moirai/async/net.h>
#include <moirai/async/runtime.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/sync/mutex.h>
#include <moirai/transport/ring.h>

#include "link_shm.h"
#include "ring_internal.h"

/* The dial's announcement on the accept ring. */
struct shm_announce {
    uint32_t magic; /* SHM_ANNOUNCE_MAGIC */
    uint32_t pid;   /* the dialer's pid */
    uint32_t seq;   /* its dial number */
    uint32_t flags; /* SHM_BELLS: the dialer made the doorbell FIFOs */
};
_Static_assert(sizeof(struct shm_announce) == 16, "16-byte announcements");
#define SHM_ANNOUNCE_MAGIC UINT32_C(0x314d5348) /* "HSM1" */
/* The acceptor's answer: the magic and the flags (SHM_BELLS: the
 * acceptor opened both doorbells, so both sides ring them). */
#define SHM_ACCEPT_MAGIC UINT32_C(0x4b4f4d53) /* "SMOK" */
#define SHM_BELLS        UINT32_C(1)
#define SHM_PID_MAX      4194304u
#define SHM_FIFO_MAX     (SHM_PATH_MAX + 16)
_Static_assert(sizeof(((struct frame_addr *)0)->addr) == SHM_NAME_MAX,
               "a listener's name fills a frame_addr's address bytes");

struct shm_listener {
    char path[SHM_PATH_MAX]; /* "/moirai-shm.NAME" */
    char name[SHM_NAME_MAX + 1];
    moirai_shm_ring_t *acc; /* consumer of the current accept ring */
    moirai_shm_ring_t *old; /* a renewed ring, drained before anything else */
    bool renew;             /* the accept ring must be renewed before waiting */
    _Atomic uint32_t stop;
    /* Guards the changes of `acc` and `old` (by the accepting side)
     * against a stop's wake from another thread, which must not touch a
     * handle being detached. The accepting side reads them unlocked. */
    moirai_mutex_t lock;
    /* The listener's doorbell (link_shm.h): its descriptor (-1: none),
     * and its handle in the accepting fiber's runtime, made by the first
     * accept on a fiber (which then owns the descriptor). */
    int bell_fd;
    struct shm_bell bell;
    char bell_path[SHM_FIFO_MAX];
};

/* How long an idle acceptor sleeps on its doorbell at most: a safety net
 * for a dialer that could not ring it (out of descriptors). Dead dialers
 * need no watching while nobody dials. */
#define SHM_ACCEPT_SLICE_NS (1000 * MOIRAI_NS_PER_MS)

static _Atomic uint32_t dial_seq;

static void ring_path(char out[SHM_PATH_MAX], const char *name, uint32_t pid, uint32_t seq,
                      char dir)
{
    snprintf(out, SHM_PATH_MAX, SHM_PREFIX "%s.%u.%u.%c", name, pid, seq, dir);
}

/* The doorbell FIFO of the ring `dir`, in the directory of POSIX shm
 * objects (tmpfs on Linux), so that the same cleanup finds it. */
static void fifo_path(char out[SHM_FIFO_MAX], const char *name, uint32_t pid, uint32_t seq,
                      char dir)
{
    snprintf(out, SHM_FIFO_MAX, "/dev/shm" SHM_PREFIX "%s.%u.%u.f%c", name, pid, seq, dir);
}

/* Opens a doorbell read-write and non-blocking: read-write so that the
 * open never waits for the other end and a write never raises SIGPIPE. */
static int fifo_open(const char *path)
{
    return open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
}

/* Opens both doorbells of a link into *a and *b, or neither (each side
 * rings only the other's, so one alone is of no use): both -1 then. */
static void bells_open(const char *fa, const char *fb, int *a, int *b)
{
    *a = fifo_open(fa);
    *b = fifo_open(fb);
    if (*a < 0 || *b < 0) {
        if (*a >= 0)
            close(*a);
        if (*b >= 0)
            close(*b);
        *a = *b = -1;
    }
}

/* Sleeps `ns`, parking a fiber or blocking a thread. */
static void pause_ns(uint64_t ns)
{
    if (moirai_fiber_current() != NULL) {
        (void)moirai_fiber_sleep(ns);
        return;
    }
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ns};
    nanosleep(&ts, NULL);
}

/* Creates the named ring `path` and attaches `role` to it. */
static int make_ring(const char *path, size_t size, uint32_t flags, moirai_shm_ring_role_t role,
                     moirai_shm_ring_t **out)
{
    moirai_shm_ring_config_t cfg;
    moirai_shm_ring_config_init(&cfg);
    cfg.size = size;
    cfg.flags = flags;
    cfg.name = path;
    int fd = -1;
    int rc = moirai_shm_ring_create(&fd, &cfg);
    if (rc != 0)
        return rc;
    rc = moirai_shm_ring_attach(out, fd, role);
    close(fd);
    if (rc != 0)
        moirai_shm_ring_unlink(path);
    return rc;
}

/* ---- dial ---- */

/* How long a dial keeps looking when the accept ring's name is missing or
 * its ring is not initialised yet: the gap of a renewal (unlink, create,
 * initialise), which a loaded machine can stretch well past a
 * millisecond (5 ms was not enough in CI). A dial to a name nobody
 * listens on is refused after it. */
#define SHM_RENEW_GAP_NS (200 * MOIRAI_NS_PER_MS)

/* Announces the dial on the accept ring, opening it first. -EAGAIN: try
 * again (the ring is being renewed). */
static int announce(const char *acc_path, uint32_t pid, uint32_t seq, uint32_t flags,
                    uint64_t deadline, moirai_shm_ring_t **acc)
{
    int rc = moirai_shm_ring_open(acc, acc_path, MOIRAI_SHM_RING_PRODUCER);
    if (rc == -ENOENT || rc == -EPROTO)
        return rc; /* missing, or not initialised yet: the caller decides */
    if (rc == -EACCES)
        return -ECONNREFUSED;
    if (rc == -EBUSY)
        return -EAGAIN; /* every slot used: the acceptor renews the ring */
    if (rc != 0)
        return rc;
    void *p;
    rc = moirai_shm_ring_reserve_timed(*acc, deadline, sizeof(struct shm_announce), &p);
    if (rc == 0) {
        struct shm_announce a = {SHM_ANNOUNCE_MAGIC, pid, seq, flags};
        memcpy(p, &a, sizeof a);
        moirai_shm_ring_commit(*acc);
        /* Ring the listener's doorbell (read-write: never SIGPIPE, even
         * when the listener is gone); without it the acceptor still looks
         * within its slice. */
        char bell[SHM_FIFO_MAX];
        snprintf(bell, sizeof bell, "/dev/shm%s.bell", acc_path);
        int fd = fifo_open(bell);
        if (fd >= 0) {
            ssize_t w = write(fd, "", 1);
            (void)w;
            close(fd);
        }
        return 0;
    }
    moirai_shm_ring_detach(*acc);
    *acc = NULL;
    if (rc == -EPIPE)
        return -EAGAIN; /* renewed (or stopping) meanwhile */
    if (rc == -ECONNRESET)
        return -ECONNREFUSED;
    return rc;
}

/* How long a dial waits for the acceptor to take up its announcement
 * before it announces again. A repeated announcement is harmless: the
 * acceptor unlinks a dial's ring names when it opens them, so a second
 * announcement of a dial already answered finds no rings and is skipped.
 * Why an announcement can go unanswered was not found: 50 dials from two
 * threads at once (shm_link::many_dials) timed out once in about 20 runs,
 * across a renewal of the accept ring; announcing again makes such a dial
 * cost half a second instead of failing. */
#define SHM_REANNOUNCE_NS (500 * MOIRAI_NS_PER_MS)

/* Waits for the acceptor's answer on `in`. -EAGAIN: announce again, the
 * accept ring having been left behind (renewed), or no acceptor having
 * taken the dial up within SHM_REANNOUNCE_NS. */
static int await_answer(moirai_shm_ring_t *in, moirai_shm_ring_t *acc, uint64_t deadline,
                        uint32_t *flags)
{
    struct ring_watch w = {.pid = 0, .fd = -1, .dead = false};
    uint64_t reannounce = moirai_deadline_after(SHM_REANNOUNCE_NS);
    int rc;
    for (;;) {
        /* Look at the listener's liveness every slice while waiting. */
        uint64_t step = moirai_deadline_after(RING_SLICE_NS);
        void *p;
        size_t n;
        rc = moirai_shm_ring_peek_timed(in, step < deadline ? step : deadline, &p, &n);
        if (rc == 0) {
            uint32_t ans[2] = {0, 0};
            if (n == sizeof ans)
                memcpy(ans, p, sizeof ans);
            moirai_shm_ring_release(in);
            rc = ans[0] == SHM_ACCEPT_MAGIC ? 0 : -ECONNREFUSED;
            *flags = ans[1];
            break;
        }
        if (rc == -EPIPE || rc == -ECONNRESET) {
            rc = -ECONNREFUSED; /* refused, or the acceptor died answering */
            break;
        }
        if (rc != -ETIMEDOUT)
            break;
        if (moirai_deadline_expired(deadline))
            break;
        enum ring_peer st = moirai__ring_peer(&acc->sh->consumer, &w, true);
        /* Nobody attached this side's ring yet: a listener that left
         * clean may have renewed its ring (announce again); one that
         * died never answers. */
        bool answered = atomic_load_explicit(&in->sh->producers[0].state, memory_order_acquire) !=
                        RING_SLOT_FREE;
        if (!answered && (st == RING_PEER_GONE || moirai_deadline_expired(reannounce))) {
            rc = -EAGAIN;
            break;
        }
        if (!answered && (st == RING_PEER_DEAD || st == RING_PEER_BAD)) {
            rc = -ECONNREFUSED;
            break;
        }
    }
    if (w.fd >= 0)
        close(w.fd);
    return rc;
}

int moirai__shm_dial(const char *name, size_t ring_size, uint64_t deadline, struct link **out)
{
    if (!moirai__shm_name_valid(name) || out == NULL)
        return -EINVAL;
    if (ring_size == 0)
        ring_size = SHM_LINK_RING_SIZE;
    uint32_t pid = (uint32_t)getpid();
    /* Relaxed: only unique within this process (the pid tells processes
     * apart). */
    uint32_t seq = atomic_fetch_add_explicit(&dial_seq, 1, memory_order_relaxed);
    char pa[SHM_PATH_MAX], pb[SHM_PATH_MAX], acc_path[SHM_PATH_MAX];
    char fa[SHM_FIFO_MAX], fb[SHM_FIFO_MAX];
    ring_path(pa, name, pid, seq, 'a');
    ring_path(pb, name, pid, seq, 'b');
    fifo_path(fa, name, pid, seq, 'a');
    fifo_path(fb, name, pid, seq, 'b');
    snprintf(acc_path, sizeof acc_path, SHM_PREFIX "%s", name);

    moirai_shm_ring_t *ta = NULL, *rb = NULL, *acc = NULL;
    struct link *link = NULL;
    int rc = make_ring(pa, ring_size, 0, MOIRAI_SHM_RING_PRODUCER, &ta);
    if (rc != 0)
        return rc;
    rc = make_ring(pb, ring_size, 0, MOIRAI_SHM_RING_CONSUMER, &rb);
    if (rc != 0) {
        moirai_shm_ring_detach(ta);
        moirai_shm_ring_unlink(pa);
        return rc;
    }
    /* The doorbells, for a dial from a fiber (a thread's link waits on
     * the futex). Without them the link still works. */
    int bell_a = -1, bell_b = -1;
    if (moirai_fiber_current() != NULL && mkfifo(fa, 0600) == 0) {
        if (mkfifo(fb, 0600) == 0)
            bells_open(fa, fb, &bell_a, &bell_b);
        if (bell_a < 0) {
            unlink(fa);
            unlink(fb);
        }
    }
    uint32_t flags = bell_a >= 0 ? SHM_BELLS : 0;
    /* The link owns both handles and both doorbells from here (also on
     * error). */
    rc = moirai__shm_link_new(rb, ta, bell_b, bell_a, &link);
    uint64_t gap_until = moirai_deadline_after(SHM_RENEW_GAP_NS);
    uint32_t answer = 0;
    while (rc == 0) {
        rc = announce(acc_path, pid, seq, flags, deadline, &acc);
        if (rc == 0)
            rc = await_answer(rb, acc, deadline, &answer);
        if (acc != NULL) {
            moirai_shm_ring_detach(acc);
            acc = NULL;
        }
        if (rc == -ENOENT || rc == -EPROTO) {
            /* A renewing listener unlinks the name, creates it again and
             * then initialises the ring: a dial in that gap finds it
             * missing or not yet valid, and looks again for a while. */
            rc = moirai_deadline_expired(gap_until) ? -ECONNREFUSED : -EAGAIN;
        } else if (rc == -ECONNREFUSED && !moirai_deadline_expired(gap_until)) {
            /* The name may be between its unlink and its re-creation by a
             * renewing listener: look again for a few milliseconds. */
            int fd = shm_open(acc_path, O_RDONLY | O_CLOEXEC, 0);
            if (fd >= 0)
                close(fd);
            else if (errno == ENOENT)
                rc = -EAGAIN;
        }
        if (rc != -EAGAIN)
            break;
        if (moirai_deadline_expired(deadline)) {
            rc = -ETIMEDOUT;
            break;
        }
        pause_ns(MOIRAI_NS_PER_MS);
        rc = 0;
    }
    /* The acceptor unlinked these when it opened them; these are for the
     * failures (ENOENT otherwise, ignored). */
    moirai_shm_ring_unlink(pa);
    moirai_shm_ring_unlink(pb);
    if (flags != 0) {
        unlink(fa);
        unlink(fb);
    }
    if (rc != 0) {
        if (link != NULL)
            link->ops->close(link);
        return rc;
    }
    if ((answer & SHM_BELLS) == 0)
        moirai__shm_link_drop_bells(link); /* the acceptor would not ring them */
    *out = link;
    return 0;
}

/* ---- listen and accept ---- */

/* True when the object `path` is a leftover: an accept ring whose
 * listener process died or left without unlinking it. An object being
 * created right now (its consumer not attached yet) or a foreign one is
 * not. */
static bool leftover(const char *path)
{
    int fd = shm_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct stat st;
    bool stale = false;
    if (fstat(fd, &st) == 0 && st.st_size >= (off_t)RING_HEADER_SIZE) {
        void *p = mmap(NULL, RING_HEADER_SIZE, PROT_READ, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
            struct ring_shared *sh = p;
            struct ring_watch w = {.pid = 0, .fd = -1, .dead = false};
            if (atomic_load_explicit(&sh->magic, memory_order_relaxed) == RING_MAGIC) {
                enum ring_peer c = moirai__ring_peer(&sh->consumer, &w, true);
                stale = c == RING_PEER_DEAD || c == RING_PEER_GONE;
            }
            if (w.fd >= 0)
                close(w.fd);
            munmap(p, RING_HEADER_SIZE);
        }
    }
    close(fd);
    return stale;
}

static int make_accept_ring(const char *path, moirai_shm_ring_t **out)
{
    int rc =
        make_ring(path, SHM_ACCEPT_RING_SIZE, MOIRAI_SHM_RING_MPSC, MOIRAI_SHM_RING_CONSUMER, out);
    if (rc == -EEXIST) {
        if (!leftover(path))
            return -EADDRINUSE;
        moirai_shm_ring_unlink(path);
        rc = make_ring(path, SHM_ACCEPT_RING_SIZE, MOIRAI_SHM_RING_MPSC, MOIRAI_SHM_RING_CONSUMER,
                       out);
        if (rc == -EEXIST)
            rc = -EADDRINUSE; /* another listener took it meanwhile */
    }
    return rc;
}

int moirai__shm_listen(struct shm_listener **out, const char *name)
{
    if (out == NULL || !moirai__shm_name_valid(name))
        return -EINVAL;
    struct shm_listener *l = moirai_malloc(sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    memset(l, 0, sizeof *l);
    strcpy(l->name, name);
    snprintf(l->path, sizeof l->path, SHM_PREFIX "%s", name);
    atomic_init(&l->stop, 0);
    moirai_mutex_init(&l->lock);
    l->bell_fd = -1;
    int rc = make_accept_ring(l->path, &l->acc);
    if (rc != 0) {
        moirai_mutex_destroy(&l->lock);
        moirai_free(l);
        return rc;
    }
    /* The doorbell is optional: without it the acceptor wakes every
     * slice. A leftover of a dead listener under the name goes first. */
    snprintf(l->bell_path, sizeof l->bell_path, "/dev/shm%s.bell", l->path);
    unlink(l->bell_path);
    if (mkfifo(l->bell_path, 0600) == 0) {
        l->bell_fd = fifo_open(l->bell_path);
        if (l->bell_fd < 0)
            unlink(l->bell_path);
    }
    l->bell.slice_ns = SHM_ACCEPT_SLICE_NS;
    *out = l;
    return 0;
}

/* Replaces the accept ring by a fresh one under the same name; the old
 * one is drained by the next accepts, then detached. */
static int renew(struct shm_listener *l)
{
    if (l->old != NULL)
        return 0; /* drain the previous one first */
    moirai_shm_ring_unlink(l->path);
    moirai_shm_ring_t *fresh = NULL;
    int rc = make_accept_ring(l->path, &fresh);
    if (rc != 0)
        return rc; /* the old ring stays, nameless; the next accept retries */
    moirai_mutex_lock(&l->lock);
    l->old = l->acc;
    l->acc = fresh;
    moirai_mutex_unlock(&l->lock);
    l->renew = false;
    return 0;
}

/* Answers the announcement `a`. 0 with a link; -ENOMEM; or -EAGAIN when
 * the dial cannot be answered (skipped). */
static int answer(struct shm_listener *l, const struct shm_announce *a, struct link **out)
{
    if (a->magic != SHM_ANNOUNCE_MAGIC || a->pid == 0 || a->pid > SHM_PID_MAX)
        return -EAGAIN;
    char pa[SHM_PATH_MAX], pb[SHM_PATH_MAX], fa[SHM_FIFO_MAX], fb[SHM_FIFO_MAX];
    ring_path(pa, l->name, a->pid, a->seq, 'a');
    ring_path(pb, l->name, a->pid, a->seq, 'b');
    fifo_path(fa, l->name, a->pid, a->seq, 'a');
    fifo_path(fb, l->name, a->pid, a->seq, 'b');
    moirai_shm_ring_t *in = NULL, *to = NULL;
    int rc = moirai_shm_ring_open(&to, pb, MOIRAI_SHM_RING_PRODUCER);
    if (rc == 0) {
        rc = moirai_shm_ring_open(&in, pa, MOIRAI_SHM_RING_CONSUMER);
        if (rc != 0) {
            moirai_shm_ring_detach(to); /* the dialer sees -EPIPE: refused */
            to = NULL;
        }
    }
    int bell_a = -1, bell_b = -1;
    if (rc == 0 && (a->flags & SHM_BELLS) != 0)
        bells_open(fa, fb, &bell_a, &bell_b);
    /* Attached or not, the names have served (a dialer that died before
     * this leaves them to this cleanup). */
    moirai_shm_ring_unlink(pa);
    moirai_shm_ring_unlink(pb);
    if ((a->flags & SHM_BELLS) != 0) {
        unlink(fa);
        unlink(fb);
    }
    if (rc != 0)
        return rc == -ENOMEM ? -ENOMEM : -EAGAIN;
    uint32_t ans[2] = {SHM_ACCEPT_MAGIC, bell_a >= 0 ? SHM_BELLS : 0};
    moirai_shm_ring_t *reply = to;
    struct link *link;
    rc = moirai__shm_link_new(in, to, bell_a, bell_b, &link);
    if (rc != 0)
        return rc;
    void *p;
    rc = moirai_shm_ring_try_reserve(reply, sizeof ans, &p);
    if (rc != 0) {
        link->ops->close(link); /* the dialer left (-EPIPE), or garbage */
        return -EAGAIN;
    }
    memcpy(p, ans, sizeof ans);
    moirai_shm_ring_commit(reply);
    *out = link;
    return 0;
}

/* Takes the next announcement from `r`, copying it out (the dialer can
 * still write into the record). */
static int take(moirai_shm_ring_t *r, void *p, size_t n, struct shm_announce *a)
{
    int ok = n == sizeof *a;
    if (ok)
        memcpy(a, p, sizeof *a);
    moirai_shm_ring_release(r);
    return ok ? 0 : -EAGAIN;
}

int moirai__shm_accept(struct shm_listener *l, uint64_t deadline, struct link **out)
{
    if (l == NULL || out == NULL)
        return -EINVAL;
    for (;;) {
        if (atomic_load_explicit(&l->stop, memory_order_acquire) != 0)
            return -ECANCELED;
        struct shm_announce a;
        void *p;
        size_t n;
        int rc;
        if (l->old != NULL) {
            rc = moirai_shm_ring_try_peek(l->old, &p, &n);
            if (rc != 0) {
                /* Drained (or broken): dialers still attached see the
                 * consumer gone and announce again on the new ring. */
                moirai_mutex_lock(&l->lock);
                moirai_shm_ring_detach(l->old);
                l->old = NULL;
                moirai_mutex_unlock(&l->lock);
                continue;
            }
            rc = take(l->old, p, n, &a);
        } else {
            if (l->renew || moirai__shm_slots_exhausted(l->acc)) {
                l->renew = true;
                rc = renew(l);
                if (rc != 0)
                    return rc;
                continue;
            }
            if (l->bell.io == NULL && l->bell_fd >= 0 && moirai_fiber_current() != NULL &&
                moirai_pipe_open(&l->bell.io, moirai_runtime_current(), l->bell_fd) == 0)
                l->bell.fd = l->bell_fd; /* the handle owns it now */
            rc = moirai__shm_wait_peek(l->acc, &l->stop, true, &l->bell, deadline, &p, &n);
            if (rc == -EPIPE || rc == -ECONNRESET || rc == -EPROTO) {
                /* No dialer can attach any more, or a dead one's
                 * reservation blocks the head, or garbage: renew. */
                l->renew = true;
                continue;
            }
            if (rc != 0)
                return rc;
            rc = take(l->acc, p, n, &a);
        }
        if (rc == 0)
            rc = answer(l, &a, out);
        if (rc != -EAGAIN)
            return rc;
    }
}

void moirai__shm_listener_stop(struct shm_listener *l)
{
    if (l == NULL)
        return;
    /* Seq_cst, before the bumps (see shm_wait.c, stopped()). */
    if (atomic_exchange_explicit(&l->stop, 1, memory_order_seq_cst) != 0)
        return;
    /* Wakes the ring the accepting side may sleep on. If it renews the
     * ring meanwhile, it looks at the flag before it sleeps on the new
     * one. */
    moirai_mutex_lock(&l->lock);
    moirai__shm_wake(l->acc);
    moirai_mutex_unlock(&l->lock);
    /* An accepting fiber asleep on the doorbell (the descriptor lives
     * until destroy). */
    if (l->bell_fd >= 0) {
        ssize_t w = write(l->bell_fd, "", 1);
        (void)w;
    }
}

void moirai__shm_listener_destroy(struct shm_listener *l)
{
    if (l == NULL)
        return;
    /* Unlink first so no new dial finds the name, then detach: a dialer
     * waiting for an answer sees the consumer gone and is refused. */
    moirai_shm_ring_unlink(l->path);
    moirai_shm_ring_detach(l->old);
    moirai_shm_ring_detach(l->acc);
    if (l->bell.io != NULL)
        moirai_io_close(l->bell.io);
    else if (l->bell_fd >= 0)
        close(l->bell_fd);
    if (l->bell_fd >= 0)
        unlink(l->bell_path);
    moirai_mutex_destroy(&l->lock);
    moirai_free(l);
}
