/* The MPI backend of remote tasks: links over MPICH, moved by the
 * progress engine (mpi_engine.c), so no worker or fiber ever calls MPI.
 *
 * One node per MPI rank, one link per pair of ranks. listen() opens an
 * engine epoch and hands this rank's link to every other rank to
 * moirai__peer_start(), as the initiator when this rank is the lower of
 * the two and as the acceptor otherwise, so every pair runs exactly one
 * handshake and no listen or seed address is needed. A dial therefore
 * finds nothing to add: it returns a link only if one to that rank is
 * still unclaimed (never, once listen() ran) and -EHOSTUNREACH otherwise;
 * a link that ended stays ended, since an MPI job does not get a rank
 * back.
 *
 * A rank that dies is not seen by MPI here (MPICH's default is to abort
 * the whole job; with a fault-tolerant setting its link simply goes
 * silent): the node's heartbeats declare it dead, as on TCP. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/sync/mutex.h>

#include "frame.h"
#include "link.h"
#include "link_mpi.h"
#include "mpi_engine.h"
#include "node_internal.h"

struct link_mpi {
    struct link base; /* first: a struct link * is a struct link_mpi * */
    struct mpi_chan *chan;
};

static struct link_mpi *lm(struct link *l)
{
    return (struct link_mpi *)l;
}

static ssize_t lm_read(struct link *l, void *buf, size_t len, uint64_t deadline)
{
    return moirai__mpi_chan_read(lm(l)->chan, buf, len, deadline);
}

static int lm_writev(struct link *l, const struct iovec *iov, int cnt, uint64_t deadline)
{
    return moirai__mpi_chan_writev(lm(l)->chan, iov, cnt, deadline);
}

/* Lets peer.c send a frame from the sending thread (a copy into the
 * progress thread's queue) instead of waking its writer fiber. */
static ssize_t lm_try_writev(struct link *l, const struct iovec *iov, int cnt)
{
    return moirai__mpi_chan_try_writev(lm(l)->chan, iov, cnt);
}

static size_t lm_unread(struct link *l)
{
    return moirai__mpi_chan_unread(lm(l)->chan);
}

static void lm_shutdown(struct link *l)
{
    moirai__mpi_chan_shutdown(lm(l)->chan);
}

static void lm_close(struct link *l)
{
    moirai__mpi_chan_close(lm(l)->chan);
    moirai_free(l);
}

/* MPI has no "address the connection comes from": the HELLO's advertised
 * FRAME_ADDR_MPI address is used as is. */
static int lm_peer_addr(struct link *l, struct frame_addr *out)
{
    (void)l;
    (void)out;
    return -ENOTSUP;
}

static const struct link_ops link_mpi_ops = {
    .read = lm_read,
    .writev = lm_writev,
    .shutdown = lm_shutdown,
    .close = lm_close,
    .peer_addr = lm_peer_addr,
    .try_writev = lm_try_writev,
    .unread = lm_unread,
};

int moirai__link_mpi_peer_rank(const struct link *l)
{
    return moirai__mpi_chan_rank(((const struct link_mpi *)l)->chan);
}

/* The backend's state: one listening node per process at a time. */
static struct {
    moirai_mutex_t lock;
    struct moirai_node *node; /* listening, or NULL */
    uint32_t epoch;
    int rank, size;
} B = {.lock = MOIRAI_MUTEX_INIT};

static void addr_of_rank(int rank, struct frame_addr *out)
{
    memset(out, 0, sizeof *out);
    out->family = FRAME_ADDR_MPI;
    moirai__frame_put_u32(out->addr, (uint32_t)rank);
}

/* "mpi:<rank>", the rank in decimal, 0 to INT32_MAX. */
static int mpi_parse(const char *text, struct frame_addr *out)
{
    if (!text || !out || strncmp(text, "mpi:", 4) != 0)
        return -EINVAL;
    const char *p = text + 4;
    if (*p < '0' || *p > '9')
        return -EINVAL;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > INT32_MAX)
            return -EINVAL;
    }
    if (*p != '\0')
        return -EINVAL;
    addr_of_rank((int)v, out);
    return 0;
}

static struct link_mpi *link_new(void)
{
    struct link_mpi *l = moirai_calloc(1, sizeof *l);
    if (l)
        l->base.ops = &link_mpi_ops;
    return l;
}

/* Links this rank to every other one. `where` is ignored: an MPI node's
 * address is its rank. Fills *self (node.c passes &node->self_addr) and,
 * when config.id was 0, sets the node's id to rank + 1, before the first
 * handshake starts: the links go to moirai__peer_start() from here, whose
 * reader fibers may send their HELLO at once.
 * Returns 0; -EADDRINUSE when a node of this process listens already;
 * -ENOMEM (nothing started); or an error of moirai__mpi_engine_acquire()
 * or moirai__mpi_epoch_open(). A link whose moirai__peer_start() fails
 * was closed by it (the other rank reads end of stream); that pair stays
 * unconnected and the others go on. */
static int mpi_listen(struct moirai_node *node, const struct frame_addr *where,
                      struct frame_addr *self)
{
    (void)where;
    if (!node || !self)
        return -EINVAL;
    moirai_mutex_lock(&B.lock);
    if (B.node) {
        moirai_mutex_unlock(&B.lock);
        return -EADDRINUSE;
    }
    int rank, size;
    int rc = moirai__mpi_engine_acquire(&rank, &size);
    if (rc < 0) {
        moirai_mutex_unlock(&B.lock);
        return rc;
    }
    /* The link objects are made before the epoch opens, and opening it
     * either succeeds or changes nothing: a listen that fails leaves the
     * process's epoch count where it was, in step with the other ranks. */
    struct link_mpi **links = moirai_calloc((size_t)size, sizeof *links);
    bool ok = links != NULL;
    for (int r = 0; ok && r < size; r++) {
        if (r != rank) {
            links[r] = link_new();
            ok = links[r] != NULL;
        }
    }
    uint32_t epoch = 0;
    if (ok) {
        rc = moirai__mpi_epoch_open(&epoch);
    } else {
        rc = -ENOMEM;
    }
    if (rc < 0) {
        for (int r = 0; links && r < size; r++)
            moirai_free(links[r]);
        moirai_free(links);
        moirai__mpi_engine_release();
        moirai_mutex_unlock(&B.lock);
        return rc == -EBUSY ? -EADDRINUSE : rc;
    }
    /* A fresh epoch's channels are all unclaimed. */
    for (int r = 0; r < size; r++) {
        if (r != rank)
            moirai__mpi_chan_claim(epoch, r, &links[r]->chan);
    }
    B.node = node;
    B.epoch = epoch;
    B.rank = rank;
    B.size = size;
    addr_of_rank(rank, self);
    /* Before any fiber of the node starts (link.h): an MPI node without a
     * configured id is rank + 1. */
    if (!node->id_given)
        node->id = (uint64_t)rank + 1;
    moirai_mutex_unlock(&B.lock);
    for (int r = 0; r < size; r++) {
        if (r != rank)
            moirai__peer_start(node, &links[r]->base, rank < r, NULL);
    }
    moirai_free(links);
    return 0;
}

static int mpi_dial(struct moirai_node *node, const struct frame_addr *to, uint64_t deadline,
                    struct link **out)
{
    (void)deadline;
    if (!node || !to || !out)
        return -EINVAL;
    if (to->family != FRAME_ADDR_MPI)
        return -EAFNOSUPPORT;
    uint32_t r = moirai__frame_get_u32(to->addr);
    struct link_mpi *l = link_new();
    if (!l)
        return -ENOMEM;
    moirai_mutex_lock(&B.lock);
    int rc = -EHOSTUNREACH;
    if (B.node == node && r <= INT32_MAX)
        rc = moirai__mpi_chan_claim(B.epoch, (int)r, &l->chan);
    moirai_mutex_unlock(&B.lock);
    if (rc < 0) {
        moirai_free(l);
        return rc;
    }
    *out = &l->base;
    return 0;
}

/* Ends the epoch: links not handed out are shut down and freed; the
 * others end when their peers close them. Then drops the engine
 * reference, waiting (boundedly) for the last sends to go. */
static void mpi_stop(struct moirai_node *node)
{
    moirai_mutex_lock(&B.lock);
    if (!node || B.node != node) {
        moirai_mutex_unlock(&B.lock);
        return;
    }
    B.node = NULL;
    moirai__mpi_epoch_close(B.epoch);
    moirai_mutex_unlock(&B.lock);
    moirai__mpi_engine_release();
}

int moirai__link_mpi_rank(void)
{
    int rank;
    int rc = moirai__mpi_engine_acquire(&rank, NULL);
    if (rc < 0)
        return rc;
    moirai__mpi_engine_release();
    return rank;
}

const struct backend_ops moirai__backend_mpi = {
    .parse = mpi_parse,
    .listen = mpi_listen,
    .dial = mpi_dial,
    .stop = mpi_stop,
};
