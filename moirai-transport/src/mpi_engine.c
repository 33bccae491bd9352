/* The MPI progress engine (see mpi_engine.h for the model).
 *
 * Wire format, on a duplicate of MPI_COMM_WORLD: the tag of every message
 * is (epoch << 2) | kind. DATA carries bytes of the sender's channel to the
 * receiver in that epoch; EOF (empty) says the sender shut its channel
 * down, after every DATA it sent before; CREDIT (8 bytes, little-endian)
 * gives back window the receiver's reader has consumed. All kinds match
 * the engine's one receive (any source, any tag), so MPI's non-overtaking
 * rule keeps them in the order they were sent.
 *
 * Threads: the progress thread is the only one calling MPI. Readers and
 * writers of a channel (fibers or threads) take its mutex; writers queue
 * messages under E.qlock and kick the thread.
 *
 * Locks, in this order: E.lock (start, references) is taken alone;
 * E.tlock (the channel table) -> chan->m -> E.qlock (the outgoing queue,
 * a leaf). The progress thread holds E.tlock while it locks a channel to
 * deliver into it, so a channel cannot be freed under it (closing one
 * takes E.tlock to unlink it first). */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/spin.h>
#include <moirai/sync/condvar.h>
#include <moirai/sync/mutex.h>

#include "frame.h"
#include "mpi_engine.h"

enum { KIND_DATA = 0, KIND_EOF = 1, KIND_CREDIT = 2 };

/* After its last piece of work the thread spins this long (a reply to
 * what it just sent often comes within it), then sleeps, each nap an
 * eighth of the time it has been idle, between NAP_MIN_NS and NAP_MAX_NS:
 * an answer arriving after an idle gap waits at most about an eighth of
 * that gap more (a ping-pong slower than the spin does not fall into
 * millisecond naps), and a long idle period costs one wake-up per
 * millisecond. The thread's timer slack is set to TIMER_SLACK_NS so that
 * a short nap is not stretched by the default 50 us. */
#define SPIN_NS        ((uint64_t)50 * 1000)
#define NAP_MIN_NS     ((uint64_t)10 * 1000)
#define NAP_MAX_NS     ((uint64_t)1000 * 1000)
#define TIMER_SLACK_NS 1000
/* How long the stopping thread waits, at exit, for its last sends and the
 * other ranks (see drain()). */
#define STOP_DRAIN_NS ((uint64_t)5000 * 1000 * 1000)
/* How long moirai__mpi_engine_release() waits for the thread to finish
 * its sends once the last reference is gone. */
#define RELEASE_DRAIN_NS ((uint64_t)2000 * 1000 * 1000)
/* Messages received per pass before the thread looks at its queue again. */
#define RECV_BURST 64

/* Received bytes of one DATA message, consumed from `off`. */
struct chunk {
    struct chunk *next;
    size_t len, off;
    uint8_t data[];
};

/* One message to send, owned by the progress thread once queued. */
struct out_msg {
    struct out_msg *next;
    MPI_Request req;
    int rank, tag, len;
    uint8_t data[];
};

struct mpi_chan {
    int rank;
    uint32_t epoch;
    bool claimed; /* E.tlock */
    moirai_mutex_t m;
    moirai_condvar_t cv; /* bytes, EOF, credit or shutdown arrived */
    /* Guarded by m. */
    struct chunk *in_head, *in_tail;
    size_t consumed; /* read since the last credit was queued */
    size_t unacked;  /* sent, not yet credited back */
    bool shut;       /* shut down here */
    bool eof;        /* the other side's EOF arrived */
    /* Bytes delivered and not read yet, for moirai__mpi_chan_unread(),
     * which reads it without the lock (a statistic: relaxed). */
    _Atomic size_t unread;
    struct out_msg *eof_msg; /* allocated up front, queued by shutdown */
    struct mpi_chan *next;   /* E.others */
};

enum engine_state { ENGINE_NONE = 0, ENGINE_STARTING, ENGINE_RUNNING, ENGINE_FAILED };

static struct engine {
    /* Start and references (lock, cv). */
    moirai_mutex_t lock;
    moirai_condvar_t cv;
    int state;  /* enum engine_state */
    int err;    /* ENGINE_FAILED's error */
    bool quiet; /* no reference, nothing in flight: no more MPI calls */
    bool atexit_set;
    pthread_t thread;
    int efd;
    /* Read by the thread without E.lock: written once before RUNNING is
     * published under E.lock. */
    int rank, size;
    uint32_t epoch_max;
    bool we_init;
    MPI_Comm comm;
    /* References, read by the progress thread to know whether to poll. */
    _Atomic int refs;

    /* The channel table (tlock). `cur` indexes the channels of the open
     * epoch by rank; `others` holds channels of a later epoch (bytes that
     * came early) and claimed channels of closed epochs. */
    moirai_mutex_t tlock;
    bool open;
    uint32_t cur_epoch, next_epoch;
    struct mpi_chan **cur;
    struct mpi_chan *others;
    /* Claimed channels not closed yet. The thread polls MPI while an epoch
     * is open (a reference) or such a channel lives. */
    _Atomic uint32_t nlive;

    /* Outgoing messages (qlock). */
    moirai_mutex_t qlock;
    struct out_msg *qhead, *qtail;

    /* Waking the thread: every event bumps `events` and writes the
     * eventfd if `sleeping` (a Dekker pair: see kick()). */
    _Atomic uint32_t events;
    _Atomic uint32_t sleeping;
    _Atomic bool stop;
} E = {
    .lock = MOIRAI_MUTEX_INIT,
    .cv = MOIRAI_CONDVAR_INIT,
    .tlock = MOIRAI_MUTEX_INIT,
    .qlock = MOIRAI_MUTEX_INIT,
    .efd = -1,
};

/* MPICH is loaded (dlopen) when the first MPI node starts, not linked:
 * a program that never makes an MPI node never maps MPICH and UCX, whose
 * memory hooks, installed as soon as libucm is loaded, would otherwise
 * patch every program using moirai-transport (and crash threads' exits
 * under ThreadSanitizer). The prototypes are mpi.h's; MPICH's handles and
 * predefined objects (MPI_COMM_WORLD, MPI_BYTE, ...) are compile-time
 * constants of its ABI, which the MPICH ABI names libmpi.so.12 share. */
static struct {
    __typeof__(MPI_Comm_free) *Comm_free;
    __typeof__(MPI_Comm_get_attr) *Comm_get_attr;
    __typeof__(MPI_Comm_idup) *Comm_idup;
    __typeof__(MPI_Comm_rank) *Comm_rank;
    __typeof__(MPI_Comm_size) *Comm_size;
    __typeof__(MPI_Finalize) *Finalize;
    __typeof__(MPI_Finalized) *Finalized;
    __typeof__(MPI_Get_count) *Get_count;
    __typeof__(MPI_Ibarrier) *Ibarrier;
    __typeof__(MPI_Init_thread) *Init_thread;
    __typeof__(MPI_Initialized) *Initialized;
    __typeof__(MPI_Iprobe) *Iprobe;
    __typeof__(MPI_Irecv) *Irecv;
    __typeof__(MPI_Isend) *Isend;
    __typeof__(MPI_Query_thread) *Query_thread;
    __typeof__(MPI_Test) *Test;
} M;

/* Fills M from the MPI library already in the process (an MPI program) or
 * loaded now. 0, or -ENOTSUP when no MPICH-ABI library is found. */
static int mpi_load(void)
{
    static const char *const names[] = {"libmpich.so.12", "libmpi.so.12", "libmpich.so"};
    void *h = NULL;
    for (size_t i = 0; !h && i < sizeof names / sizeof names[0]; i++) {
        /* RTLD_GLOBAL: MPICH's own plugins resolve its symbols. */
        h = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    }
    if (!h)
        return -ENOTSUP;
    struct {
        void **slot;
        const char *name;
    } syms[] = {
        {(void **)&M.Comm_free, "MPI_Comm_free"},
        {(void **)&M.Comm_get_attr, "MPI_Comm_get_attr"},
        {(void **)&M.Comm_idup, "MPI_Comm_idup"},
        {(void **)&M.Comm_rank, "MPI_Comm_rank"},
        {(void **)&M.Comm_size, "MPI_Comm_size"},
        {(void **)&M.Finalize, "MPI_Finalize"},
        {(void **)&M.Finalized, "MPI_Finalized"},
        {(void **)&M.Get_count, "MPI_Get_count"},
        {(void **)&M.Ibarrier, "MPI_Ibarrier"},
        {(void **)&M.Init_thread, "MPI_Init_thread"},
        {(void **)&M.Initialized, "MPI_Initialized"},
        {(void **)&M.Iprobe, "MPI_Iprobe"},
        {(void **)&M.Irecv, "MPI_Irecv"},
        {(void **)&M.Isend, "MPI_Isend"},
        {(void **)&M.Query_thread, "MPI_Query_thread"},
        {(void **)&M.Test, "MPI_Test"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(h, syms[i].name);
        if (!*syms[i].slot)
            return -ENOTSUP; /* the handle stays open: harmless, once */
    }
    return 0;
}

/* The progress thread's own state. */
static struct out_msg *inflight;
static struct {
    bool active;
    MPI_Request req;
    int src, tag, len;
    struct chunk *c;
} rx;

/* ---- waking the thread ---- */

/* Tells the thread something changed. The bump is a seq_cst RMW and the
 * load of `sleeping` seq_cst; the thread's exchange of `sleeping` and its
 * load of `events` are too, so at least one side sees the other: either
 * the thread sees the new count and does not sleep, or this sees it
 * sleeping and writes the eventfd. */
static void kick(void)
{
    atomic_fetch_add_explicit(&E.events, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&E.sleeping, memory_order_seq_cst)) {
        uint64_t one = 1;
        ssize_t r = write(E.efd, &one, sizeof one);
        (void)r; /* a full counter already wakes the thread */
    }
}

static void enqueue(struct out_msg *msg)
{
    msg->next = NULL;
    moirai_mutex_lock(&E.qlock);
    if (E.qtail)
        E.qtail->next = msg;
    else
        E.qhead = msg;
    E.qtail = msg;
    moirai_mutex_unlock(&E.qlock);
    kick();
}

static struct out_msg *msg_new(int rank, uint32_t epoch, int kind, size_t len)
{
    struct out_msg *msg = moirai_malloc(sizeof *msg + (len ? len : 1));
    if (!msg)
        return NULL;
    msg->next = NULL;
    msg->rank = rank;
    msg->tag = (int)((epoch << 2) | (uint32_t)kind);
    msg->len = (int)len;
    return msg;
}

/* ---- channels ---- */

static struct mpi_chan *chan_new(int rank, uint32_t epoch)
{
    struct mpi_chan *c = moirai_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->eof_msg = msg_new(rank, epoch, KIND_EOF, 0);
    if (!c->eof_msg) {
        moirai_free(c);
        return NULL;
    }
    c->rank = rank;
    c->epoch = epoch;
    moirai_mutex_init(&c->m);
    moirai_condvar_init(&c->cv);
    return c;
}

static void chan_free(struct mpi_chan *c)
{
    struct chunk *k = c->in_head;
    while (k) {
        struct chunk *next = k->next;
        moirai_free(k);
        k = next;
    }
    moirai_free(c->eof_msg); /* NULL once queued */
    moirai_condvar_destroy(&c->cv);
    moirai_mutex_destroy(&c->m);
    moirai_free(c);
}

/* The channel of (rank, epoch), or NULL (E.tlock held). */
static struct mpi_chan *chan_find(int rank, uint32_t epoch)
{
    if (E.open && epoch == E.cur_epoch)
        return E.cur[rank];
    for (struct mpi_chan *c = E.others; c; c = c->next)
        if (c->rank == rank && c->epoch == epoch)
            return c;
    return NULL;
}

/* Unlinks `c` from the table (E.tlock held). */
static void chan_unlink(struct mpi_chan *c)
{
    if (E.open && c->epoch == E.cur_epoch && E.cur[c->rank] == c) {
        E.cur[c->rank] = NULL;
    } else {
        for (struct mpi_chan **pp = &E.others; *pp; pp = &(*pp)->next) {
            if (*pp == c) {
                *pp = c->next;
                break;
            }
        }
    }
    if (c->claimed)
        atomic_fetch_sub_explicit(&E.nlive, 1, memory_order_relaxed);
}

/* Shuts `c` down (c->m held): wakes its reader and writer and queues the
 * EOF, behind every DATA queued before (writers queue under c->m too). */
static void chan_shut_locked(struct mpi_chan *c)
{
    if (c->shut)
        return;
    c->shut = true;
    struct out_msg *eof = c->eof_msg;
    c->eof_msg = NULL;
    enqueue(eof);
    moirai_condvar_broadcast(&c->cv);
}

/* ---- the progress thread: receiving ---- */

/* Makes sure a channel exists for bytes from (src, epoch) when the epoch
 * is a later one than this process opened (E.tlock held). Returns false
 * when memory ran out: the message is left in MPI and tried again. */
static bool chan_ensure_future(int src, uint32_t epoch)
{
    if (epoch < E.next_epoch || chan_find(src, epoch))
        return true;
    struct mpi_chan *c = chan_new(src, epoch);
    if (!c)
        return false;
    c->next = E.others;
    E.others = c;
    return true;
}

/* Hands a received message to its channel; bytes of a channel that is
 * gone or shut down here are dropped (as a closed socket drops them). */
static void deliver(int src, int tag, struct chunk *k, int len)
{
    uint32_t epoch = (uint32_t)tag >> 2;
    int kind = tag & 3;
    moirai_mutex_lock(&E.tlock);
    struct mpi_chan *c = src >= 0 && src < E.size ? chan_find(src, epoch) : NULL;
    if (!c) {
        moirai_mutex_unlock(&E.tlock);
        moirai_free(k);
        return;
    }
    moirai_mutex_lock(&c->m);
    if (kind == KIND_DATA && len > 0 && !c->shut) {
        k->next = NULL;
        k->len = (size_t)len;
        k->off = 0;
        if (c->in_tail)
            c->in_tail->next = k;
        else
            c->in_head = k;
        c->in_tail = k;
        k = NULL;
        atomic_store_explicit(&c->unread,
                              atomic_load_explicit(&c->unread, memory_order_relaxed) + (size_t)len,
                              memory_order_relaxed);
    } else if (kind == KIND_EOF) {
        c->eof = true;
    } else if (kind == KIND_CREDIT && len == 8) {
        uint64_t n = moirai__frame_get_u64(k->data);
        c->unacked -= n < c->unacked ? (size_t)n : c->unacked;
    }
    moirai_mutex_unlock(&c->m);
    /* Woken after the unlock, the reader does not run into the mutex still
     * held (a second sleep and wake-up); E.tlock, still held, keeps the
     * channel from being freed meanwhile. */
    moirai_condvar_broadcast(&c->cv);
    moirai_mutex_unlock(&E.tlock);
    moirai_free(k);
}

/* Completes the receive under way, then matches new messages. Returns
 * true if anything happened. One receive at a time keeps the order MPI
 * matched them in. */
static bool poll_recv(bool probe)
{
    bool work = false;
    for (int i = 0; i < RECV_BURST; i++) {
        if (rx.active) {
            int done = 0;
            M.Test(&rx.req, &done, MPI_STATUS_IGNORE);
            if (!done)
                return work;
            rx.active = false;
            deliver(rx.src, rx.tag, rx.c, rx.len);
            work = true;
        }
        if (!probe)
            return work;
        int flag = 0;
        MPI_Status st;
        M.Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, E.comm, &flag, &st);
        if (!flag)
            return work;
        int count = 0;
        M.Get_count(&st, MPI_BYTE, &count);
        moirai_mutex_lock(&E.tlock);
        bool ok = chan_ensure_future(st.MPI_SOURCE, (uint32_t)st.MPI_TAG >> 2);
        moirai_mutex_unlock(&E.tlock);
        struct chunk *k = ok ? moirai_malloc(sizeof *k + (size_t)(count > 0 ? count : 1)) : NULL;
        if (!k)
            return work; /* out of memory: the message waits in MPI */
        /* Only this thread receives on E.comm, so this receive matches the
         * message just probed (the first from that source with that tag). */
        M.Irecv(k->data, count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, E.comm, &rx.req);
        rx.active = true;
        rx.src = st.MPI_SOURCE;
        rx.tag = st.MPI_TAG;
        rx.len = count;
        rx.c = k;
        work = true;
    }
    return work;
}

/* ---- the progress thread: sending ---- */

static bool take_queue(void)
{
    moirai_mutex_lock(&E.qlock);
    struct out_msg *msg = E.qhead;
    E.qhead = E.qtail = NULL;
    moirai_mutex_unlock(&E.qlock);
    bool work = msg != NULL;
    struct out_msg **tail = &inflight;
    while (*tail)
        tail = &(*tail)->next;
    while (msg) {
        struct out_msg *next = msg->next;
        msg->next = NULL;
        M.Isend(msg->data, msg->len, MPI_BYTE, msg->rank, msg->tag, E.comm, &msg->req);
        *tail = msg;
        tail = &msg->next;
        msg = next;
    }
    return work;
}

static bool test_inflight(void)
{
    bool work = false;
    for (struct out_msg **pp = &inflight; *pp;) {
        int done = 0;
        M.Test(&(*pp)->req, &done, MPI_STATUS_IGNORE);
        if (done) {
            struct out_msg *msg = *pp;
            *pp = msg->next;
            moirai_free(msg);
            work = true;
        } else {
            pp = &(*pp)->next;
        }
    }
    return work;
}

/* ---- the progress thread ---- */

/* Sleeps until kicked, or `ns` passed (0: no timeout). */
static void nap(uint32_t seen, uint64_t ns)
{
    /* The exchange and the load below are seq_cst: see kick(). */
    atomic_exchange_explicit(&E.sleeping, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&E.events, memory_order_seq_cst) == seen &&
        !atomic_load_explicit(&E.stop, memory_order_acquire)) {
        struct pollfd p = {.fd = E.efd, .events = POLLIN};
        struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
        ppoll(&p, 1, ns ? &ts : NULL, NULL);
    }
    atomic_store_explicit(&E.sleeping, 0, memory_order_relaxed);
    uint64_t v;
    ssize_t r = read(E.efd, &v, sizeof v); /* non-blocking: clears a wake-up */
    (void)r;
}

/* Tells wait_quiet() that the thread makes no more MPI calls: no
 * reference and no live channel is left and nothing was queued since the
 * thread last looked (`seen`), checked under E.lock, where wait_quiet()
 * resets `quiet` before it kicks. */
static void set_quiet(uint32_t seen)
{
    moirai_mutex_lock(&E.lock);
    if (!E.quiet && atomic_load_explicit(&E.refs, memory_order_relaxed) == 0 &&
        atomic_load_explicit(&E.nlive, memory_order_relaxed) == 0 &&
        atomic_load_explicit(&E.events, memory_order_acquire) == seen) {
        E.quiet = true;
        moirai_condvar_broadcast(&E.cv);
    }
    moirai_mutex_unlock(&E.lock);
}

static void run(void)
{
    uint32_t seen = atomic_load_explicit(&E.events, memory_order_acquire) - 1;
    uint64_t idle_since = 0;
    prctl(PR_SET_TIMERSLACK, TIMER_SLACK_NS, 0, 0, 0);
    while (!atomic_load_explicit(&E.stop, memory_order_acquire)) {
        bool work = false;
        /* Acquire: pairs with kick()'s RMW, so the queue's new messages
         * (published by E.qlock anyway) and new channels are seen. */
        uint32_t ev = atomic_load_explicit(&E.events, memory_order_acquire);
        if (ev != seen) {
            seen = ev;
            work |= take_queue();
        }
        work |= test_inflight();
        /* Incoming messages are looked for only while someone uses MPI
         * through this engine; with no reference and no channel it makes
         * no MPI call, so a program may finalize MPI. */
        bool users = atomic_load_explicit(&E.refs, memory_order_relaxed) > 0 ||
                     atomic_load_explicit(&E.nlive, memory_order_relaxed) > 0;
        work |= poll_recv(users);
        if (work) {
            idle_since = 0;
            continue;
        }
        bool busy = users || inflight != NULL || rx.active;
        if (!busy) {
            set_quiet(seen);
            nap(seen, 0);
            continue;
        }
        uint64_t now = moirai_clock_now_ns();
        if (idle_since == 0)
            idle_since = now;
        if (now - idle_since < SPIN_NS) {
            moirai_cpu_relax();
            continue;
        }
        uint64_t nap_ns = (now - idle_since) / 8;
        if (nap_ns < NAP_MIN_NS)
            nap_ns = NAP_MIN_NS;
        if (nap_ns > NAP_MAX_NS)
            nap_ns = NAP_MAX_NS;
        nap(seen, nap_ns);
    }
}

/* At exit: sends what is queued, then enters a non-blocking barrier with
 * the other ranks' engines and, until it completes (boundedly), keeps
 * completing sends and receiving (bytes for channels that are gone are
 * dropped), so no rank finalizes with another's last messages (the EOFs
 * of its closed links) unmatched. Returns true when the barrier completed:
 * only then may the communicator be freed. */
static bool drain(void)
{
    uint64_t end = moirai_clock_now_ns() + STOP_DRAIN_NS;
    take_queue();
    MPI_Request barrier;
    M.Ibarrier(E.comm, &barrier);
    int passed = 0;
    while (moirai_clock_now_ns() < end) {
        test_inflight();
        bool got = poll_recv(true);
        if (!passed)
            M.Test(&barrier, &passed, MPI_STATUS_IGNORE);
        if (passed && !got && !inflight && !rx.active)
            return true;
        if (!got) {
            struct timespec ts = {0, 50 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return false;
}

static int mpi_start(void)
{
    int fin = 0, inited = 0, provided = MPI_THREAD_SINGLE;
    int err = mpi_load();
    if (err)
        return err;
    M.Finalized(&fin);
    if (fin)
        return -ENOTSUP;
    M.Initialized(&inited);
    if (!inited) {
        if (M.Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
            return -EIO;
        E.we_init = true;
    } else {
        M.Query_thread(&provided);
        if (provided < MPI_THREAD_MULTIPLE)
            return -ENOTSUP;
    }
    /* A non-blocking duplicate: it completes once every rank's engine has
     * started, and this thread must not busy-wait in MPI meanwhile. */
    MPI_Request req;
    if (M.Comm_idup(MPI_COMM_WORLD, &E.comm, &req) != MPI_SUCCESS)
        return -EIO;
    uint64_t ns = NAP_MIN_NS;
    for (;;) {
        int done = 0;
        M.Test(&req, &done, MPI_STATUS_IGNORE);
        if (done)
            break;
        if (atomic_load_explicit(&E.stop, memory_order_acquire))
            return -ECANCELED;
        struct timespec ts = {0, (long)ns};
        nanosleep(&ts, NULL);
        ns = ns * 2 > NAP_MAX_NS ? NAP_MAX_NS : ns * 2;
    }
    M.Comm_rank(E.comm, &E.rank);
    M.Comm_size(E.comm, &E.size);
    void *attr = NULL;
    int flag = 0;
    M.Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &attr, &flag);
    int tag_ub = flag && attr ? *(int *)attr : 32767;
    E.epoch_max = (uint32_t)tag_ub >> 2;
    return 0;
}

static void *engine_main(void *arg)
{
    (void)arg;
    int err = mpi_start();
    moirai_mutex_lock(&E.lock);
    E.state = err ? ENGINE_FAILED : ENGINE_RUNNING;
    E.err = err == -ECANCELED ? -EIO : err;
    moirai_condvar_broadcast(&E.cv);
    moirai_mutex_unlock(&E.lock);
    if (err) {
        pthread_detach(pthread_self()); /* no one joins a thread that failed */
        return NULL;
    }
    run();
    int fin = 0;
    M.Finalized(&fin);
    /* Finalizing is collective: with a rank that does not come (it
     * waits for this one, or died) MPI_Finalize would never return, so
     * then the process exits without it and MPICH ends the job. */
    if (!fin && drain()) {
        M.Comm_free(&E.comm);
        if (E.we_init)
            M.Finalize();
    }
    return NULL;
}

/* At exit: stops the thread, which finalizes MPI if it initialized it. */
static void engine_atexit(void)
{
    moirai_mutex_lock(&E.lock);
    bool running = E.state == ENGINE_RUNNING || E.state == ENGINE_STARTING;
    moirai_mutex_unlock(&E.lock);
    if (!running)
        return;
    atomic_store_explicit(&E.stop, true, memory_order_release);
    kick();
    pthread_join(E.thread, NULL);
}

/* ---- the API ---- */

int moirai__mpi_engine_acquire(int *rank, int *size)
{
    moirai_mutex_lock(&E.lock);
    if (E.state == ENGINE_NONE) {
        int err = 0;
        E.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (E.efd < 0) {
            err = errno == ENOMEM ? -ENOMEM : -EAGAIN;
        } else if (!E.atexit_set && atexit(engine_atexit) != 0) {
            err = -ENOMEM;
        } else {
            E.atexit_set = true;
            /* The thread does not take part in the program's signals: it
             * starts with every signal blocked (it inherits the mask). */
            sigset_t all, old;
            sigfillset(&all);
            pthread_sigmask(SIG_SETMASK, &all, &old);
            int perr = pthread_create(&E.thread, NULL, engine_main, NULL);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            if (perr)
                err = perr == ENOMEM ? -ENOMEM : -EAGAIN;
        }
        if (err) {
            /* Nothing started: a later call may try again. */
            if (E.efd >= 0)
                close(E.efd);
            E.efd = -1;
            moirai_mutex_unlock(&E.lock);
            return err;
        }
        E.state = ENGINE_STARTING;
    }
    while (E.state == ENGINE_STARTING)
        moirai_condvar_wait(&E.cv, &E.lock);
    if (E.state == ENGINE_FAILED) {
        int err = E.err;
        moirai_mutex_unlock(&E.lock);
        return err;
    }
    atomic_fetch_add_explicit(&E.refs, 1, memory_order_relaxed);
    E.quiet = false;
    if (rank)
        *rank = E.rank;
    if (size)
        *size = E.size;
    moirai_mutex_unlock(&E.lock);
    kick();
    return 0;
}

/* Once nothing uses the engine (no reference, no live channel), waits
 * (at most RELEASE_DRAIN_NS) until the thread has sent what was queued
 * (the last channels' EOFs) and makes no more MPI calls, so that a
 * program that finalizes MPI itself may do so next. */
static void wait_quiet(void)
{
    moirai_mutex_lock(&E.lock);
    if (E.state == ENGINE_RUNNING && atomic_load_explicit(&E.refs, memory_order_relaxed) == 0 &&
        atomic_load_explicit(&E.nlive, memory_order_relaxed) == 0) {
        E.quiet = false;
        moirai_mutex_unlock(&E.lock);
        kick();
        moirai_mutex_lock(&E.lock);
        uint64_t end = moirai_clock_now_ns() + RELEASE_DRAIN_NS;
        while (!E.quiet && atomic_load_explicit(&E.refs, memory_order_relaxed) == 0 &&
               atomic_load_explicit(&E.nlive, memory_order_relaxed) == 0 &&
               moirai_condvar_wait_timed(&E.cv, &E.lock, end) == 0) {
        }
    }
    moirai_mutex_unlock(&E.lock);
}

void moirai__mpi_engine_release(void)
{
    moirai_mutex_lock(&E.lock);
    atomic_fetch_sub_explicit(&E.refs, 1, memory_order_relaxed);
    moirai_mutex_unlock(&E.lock);
    wait_quiet();
}

int moirai__mpi_engine_cputime(uint64_t *ns)
{
    moirai_mutex_lock(&E.lock);
    bool running = E.state == ENGINE_RUNNING;
    clockid_t cid;
    int err = running ? pthread_getcpuclockid(E.thread, &cid) : ESRCH;
    moirai_mutex_unlock(&E.lock);
    struct timespec ts;
    if (err || clock_gettime(cid, &ts) != 0)
        return -ESRCH;
    *ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    return 0;
}

int moirai__mpi_epoch_open(uint32_t *epoch)
{
    moirai_mutex_lock(&E.tlock);
    if (E.open) {
        moirai_mutex_unlock(&E.tlock);
        return -EBUSY;
    }
    uint32_t e = E.next_epoch;
    if (e > E.epoch_max) {
        moirai_mutex_unlock(&E.tlock);
        return -ENOSPC;
    }
    struct mpi_chan **cur = moirai_calloc((size_t)E.size, sizeof *cur);
    if (!cur) {
        moirai_mutex_unlock(&E.tlock);
        return -ENOMEM;
    }
    for (int r = 0; r < E.size; r++) {
        if (r == E.rank)
            continue;
        struct mpi_chan *c = chan_find(r, e); /* bytes that came early */
        if (!c) {
            c = chan_new(r, e);
            if (!c)
                goto nomem;
        }
        cur[r] = c;
    }
    /* Every channel of the epoch now lives in `cur`, not in `others`. */
    for (struct mpi_chan **pp = &E.others; *pp;) {
        if ((*pp)->epoch == e)
            *pp = (*pp)->next;
        else
            pp = &(*pp)->next;
    }
    E.cur = cur;
    E.cur_epoch = e;
    E.next_epoch = e + 1;
    E.open = true;
    moirai_mutex_unlock(&E.tlock);
    kick(); /* the thread starts polling for the new channels */
    *epoch = e;
    return 0;
nomem:
    for (int r = 0; r < E.size; r++) {
        /* Free only what this call created; early channels stay in others. */
        if (cur[r] && !chan_find(r, e))
            chan_free(cur[r]);
    }
    moirai_free(cur);
    moirai_mutex_unlock(&E.tlock);
    return -ENOMEM;
}

int moirai__mpi_chan_claim(uint32_t epoch, int rank, struct mpi_chan **out)
{
    moirai_mutex_lock(&E.tlock);
    struct mpi_chan *c = NULL;
    if (E.open && epoch == E.cur_epoch && rank >= 0 && rank < E.size)
        c = E.cur[rank];
    if (!c || c->claimed) {
        moirai_mutex_unlock(&E.tlock);
        return -EHOSTUNREACH;
    }
    c->claimed = true;
    atomic_fetch_add_explicit(&E.nlive, 1, memory_order_relaxed);
    moirai_mutex_unlock(&E.tlock);
    *out = c;
    return 0;
}

void moirai__mpi_epoch_close(uint32_t epoch)
{
    moirai_mutex_lock(&E.tlock);
    if (!E.open || epoch != E.cur_epoch) {
        moirai_mutex_unlock(&E.tlock);
        return;
    }
    struct mpi_chan *unclaimed = NULL;
    for (int r = 0; r < E.size; r++) {
        struct mpi_chan *c = E.cur[r];
        if (!c)
            continue;
        if (c->claimed) {
            c->next = E.others;
            E.others = c;
        } else {
            c->next = unclaimed;
            unclaimed = c;
        }
    }
    moirai_free(E.cur);
    E.cur = NULL;
    E.open = false;
    moirai_mutex_unlock(&E.tlock);
    while (unclaimed) {
        struct mpi_chan *c = unclaimed;
        unclaimed = c->next;
        moirai_mutex_lock(&c->m);
        chan_shut_locked(c);
        moirai_mutex_unlock(&c->m);
        chan_free(c);
    }
}

int moirai__mpi_chan_rank(const struct mpi_chan *c)
{
    return c->rank;
}

/* Queues a credit for what the reader consumed once a quarter window
 * accumulated (c->m held). On allocation failure the debt stays and is
 * retried by the next read or by the reader's wait. */
static void credit_maybe(struct mpi_chan *c)
{
    if (c->consumed < MPI_ENGINE_WINDOW / 4 || c->shut)
        return;
    struct out_msg *msg = msg_new(c->rank, c->epoch, KIND_CREDIT, 8);
    if (!msg)
        return;
    moirai__frame_put_u64(msg->data, c->consumed);
    c->consumed = 0;
    enqueue(msg);
}

ssize_t moirai__mpi_chan_read(struct mpi_chan *c, void *buf, size_t len, uint64_t deadline)
{
    if (!buf || len == 0)
        return -EINVAL;
    moirai_mutex_lock(&c->m);
    for (;;) {
        if (c->shut) {
            moirai_mutex_unlock(&c->m);
            return -ECANCELED;
        }
        if (c->in_head || c->eof)
            break;
        /* A credit that could not be queued for want of memory is retried
         * every millisecond while the reader waits. */
        bool owed = c->consumed >= MPI_ENGINE_WINDOW / 4;
        uint64_t until = deadline;
        if (owed) {
            credit_maybe(c);
            if (c->consumed >= MPI_ENGINE_WINDOW / 4) {
                uint64_t soon = moirai_clock_now_ns() + 1000000u;
                until = soon < deadline ? soon : deadline;
            }
        }
        if (moirai_condvar_wait_timed(&c->cv, &c->m, until) == -ETIMEDOUT && until == deadline &&
            !c->in_head && !c->eof && !c->shut) {
            moirai_mutex_unlock(&c->m);
            return -ETIMEDOUT;
        }
    }
    size_t got = 0;
    struct chunk *done = NULL;
    while (got < len && c->in_head) {
        struct chunk *k = c->in_head;
        size_t n = k->len - k->off;
        if (n > len - got)
            n = len - got;
        memcpy((uint8_t *)buf + got, k->data + k->off, n);
        k->off += n;
        got += n;
        if (k->off == k->len) {
            c->in_head = k->next;
            if (!c->in_head)
                c->in_tail = NULL;
            k->next = done;
            done = k;
        }
    }
    c->consumed += got;
    atomic_store_explicit(&c->unread, atomic_load_explicit(&c->unread, memory_order_relaxed) - got,
                          memory_order_relaxed);
    credit_maybe(c);
    moirai_mutex_unlock(&c->m);
    while (done) {
        struct chunk *next = done->next;
        moirai_free(done);
        done = next;
    }
    return (ssize_t)got;
}

/* Checks an iovec array and sums it. 0 or -EINVAL. */
static int iov_total(const struct iovec *iov, int cnt, size_t *total)
{
    if (cnt < 0 || cnt > 4 || (cnt > 0 && !iov))
        return -EINVAL;
    *total = 0;
    for (int i = 0; i < cnt; i++) {
        if (iov[i].iov_len && !iov[i].iov_base)
            return -EINVAL;
        *total += iov[i].iov_len;
    }
    return 0;
}

/* Whether the window takes a message of n bytes now (c->m held); an empty
 * window always takes one. */
static bool window_has(const struct mpi_chan *c, size_t n)
{
    return c->unacked == 0 || c->unacked + n <= MPI_ENGINE_WINDOW;
}

/* Copies the next n bytes of the iovecs (from the cursor *vi, *voff) into
 * one DATA message and queues it (c->m held, so a shutdown's EOF goes
 * after it). false when memory ran out (nothing queued). */
static bool queue_data(struct mpi_chan *c, const struct iovec *iov, int *vi, size_t *voff, size_t n)
{
    struct out_msg *msg = msg_new(c->rank, c->epoch, KIND_DATA, n);
    if (!msg)
        return false;
    for (size_t put = 0; put < n;) {
        size_t m = iov[*vi].iov_len - *voff;
        if (m > n - put)
            m = n - put;
        memcpy(msg->data + put, (const uint8_t *)iov[*vi].iov_base + *voff, m);
        put += m;
        *voff += m;
        if (*voff == iov[*vi].iov_len) {
            (*vi)++;
            *voff = 0;
        }
    }
    c->unacked += n;
    enqueue(msg);
    return true;
}

int moirai__mpi_chan_writev(struct mpi_chan *c, const struct iovec *iov, int cnt, uint64_t deadline)
{
    size_t total;
    int rc = iov_total(iov, cnt, &total);
    if (rc)
        return rc;
    int vi = 0;
    size_t voff = 0;
    moirai_mutex_lock(&c->m);
    while (!rc) {
        if (c->shut) {
            rc = -ECANCELED;
        } else if (c->eof) {
            rc = -EPIPE;
        } else if (total == 0) {
            break;
        } else {
            size_t n = total < MPI_ENGINE_MSG_MAX ? total : MPI_ENGINE_MSG_MAX;
            if (!window_has(c, n)) {
                /* Credit, EOF or shutdown wakes this; the state is
                 * checked again either way. */
                if (moirai_condvar_wait_timed(&c->cv, &c->m, deadline) == -ETIMEDOUT &&
                    !window_has(c, n) && !c->shut && !c->eof)
                    rc = -ETIMEDOUT;
            } else if (!queue_data(c, iov, &vi, &voff, n)) {
                rc = -ENOMEM;
            } else {
                total -= n;
            }
        }
    }
    moirai_mutex_unlock(&c->m);
    return rc;
}

ssize_t moirai__mpi_chan_try_writev(struct mpi_chan *c, const struct iovec *iov, int cnt)
{
    size_t total;
    int rc = iov_total(iov, cnt, &total);
    if (rc)
        return rc;
    int vi = 0;
    size_t voff = 0, taken = 0;
    moirai_mutex_lock(&c->m);
    if (c->shut || c->eof) {
        moirai_mutex_unlock(&c->m);
        return c->shut ? -ECANCELED : -EPIPE;
    }
    while (taken < total) {
        size_t n = total - taken < MPI_ENGINE_MSG_MAX ? total - taken : MPI_ENGINE_MSG_MAX;
        /* Out of window or of memory: the caller writes the rest with
         * writev(), which waits or reports. */
        if (!window_has(c, n) || !queue_data(c, iov, &vi, &voff, n))
            break;
        taken += n;
    }
    moirai_mutex_unlock(&c->m);
    return (ssize_t)taken;
}

size_t moirai__mpi_chan_unread(const struct mpi_chan *c)
{
    return atomic_load_explicit(&c->unread, memory_order_relaxed);
}

void moirai__mpi_chan_shutdown(struct mpi_chan *c)
{
    moirai_mutex_lock(&c->m);
    chan_shut_locked(c);
    moirai_mutex_unlock(&c->m);
}

void moirai__mpi_chan_close(struct mpi_chan *c)
{
    moirai_mutex_lock(&E.tlock);
    chan_unlink(c);
    moirai_mutex_unlock(&E.tlock);
    moirai_mutex_lock(&c->m);
    chan_shut_locked(c);
    moirai_mutex_unlock(&c->m);
    chan_free(c);
    wait_quiet();
}
