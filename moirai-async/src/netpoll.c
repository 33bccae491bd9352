/* The poller (see netpoll.h): the epoll set, the handle slabs, and the
 * two ways the set is waited for.
 *
 * Idle workers. A worker that has just run a job and finds nothing else
 * polls the shared set without waiting (moirai-sched calls the poll hook
 * while it searches), so the fibers the events wake run on this worker,
 * on a warm cache. The last worker to go idle takes the poller role and
 * waits in an epoll set of its own holding its eventfd (the scheduler's
 * wake) and the shared set; the others wait on their eventfd alone, for
 * ever while the role is held and for PLAIN_SLEEP_MS while it is free
 * (someone runs), after which they take it: a worker stuck in a long job
 * leaves I/O unwatched for at most that long while another is idle. (A
 * nested epoll set cannot be waited for with EPOLLEXCLUSIVE, so letting
 * every idle worker wait for the shared set would wake them all per
 * event, and a second worker woken by every event races the first for
 * it.) When the role holder's wait returns "outside work", the scheduler
 * counts it as searching and calls poll, which takes the events and
 * wakes their fibers onto this worker. A busy worker also polls once per
 * MOIRAI_SCHED_IDLE_POLL_JOBS jobs while nobody holds the role.
 *
 * Poller thread. With a scheduler the runtime did not create, the hooks
 * cannot be installed; a thread then waits for the shared set and wakes
 * fibers from outside (one more thread hop per event). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <moirai/core/alloc.h>

#include "netpoll.h"

/* Handles per slab chunk, and chunks at most: 2^20 open handles. */
#define CHUNK       256u
#define MAX_CHUNKS  4096u
#define POLL_EVENTS 64

typedef struct park_set {
    int efd; /* the scheduler's wake */
    int pfd; /* epoll over efd and the shared set */
    /* How the worker sleeps on efd alone, if it does (seq_cst, see
     * hook_wait). */
    _Atomic int plain;
} __attribute__((aligned(64))) park_set_t;

struct moirai__netpoll {
    int epfd;
    int nworkers;
    park_set_t *park;
    /* 1 while an idle worker waits for the shared set (the poller role). */
    _Atomic int role;
    /* Workers inside hook_wait. */
    _Atomic int waiting;
    moirai_sched_idle_hooks_t hooks;

    bool thread_started;
    pthread_t thread;
    int stop_efd;
    _Atomic uint32_t stop;

    /* Slabs: chunks only ever added, read by the poller without the lock
     * (acquire pairs with the release that publishes a chunk). */
    _Atomic(moirai_io_t *) chunks[MAX_CHUNKS];
    moirai__lock_t lock; /* the fields below */
    uint32_t nchunks;
    moirai_io_t *free_head; /* FIFO: a freed slot is reused as late as possible */
    moirai_io_t *free_tail;
    _Atomic uint64_t open; /* handles taken and not yet freed */
};

/* Takes the ready events of the shared set, waiting at most
 * `timeout_ms`, and wakes their waiters. */
static void poll_now(moirai__netpoll_t *np, int timeout_ms)
{
    struct epoll_event ev[POLL_EVENTS];
    int n = epoll_wait(np->epfd, ev, POLL_EVENTS, timeout_ms);
    for (int i = 0; i < n; i++)
        moirai__io_event(np, ev[i].data.u64, ev[i].events);
}

static void drain(int efd)
{
    uint64_t v;
    /* Drains the wake; a wake that comes after this read makes the next
     * wait return at once, so none is lost. */
    ssize_t r = read(efd, &v, sizeof v);
    (void)r;
}

static void hook_wake(void *arg, int worker);

/* How long an idle worker that is not the last one sleeps before it
 * takes the poller role itself (see the top of the file). */
#define PLAIN_SLEEP_MS 10

/* park_set_t.plain */
enum { AWAKE = 0, PLAIN_TIMED = 1, PLAIN_FOREVER = 2 };

/* Waits in the shared set as the role holder. Returns whether I/O is
 * ready; sets *woken when the scheduler's wake came. */
static bool wait_with_role(moirai__netpoll_t *np, park_set_t *p, bool *woken)
{
    struct epoll_event ev[2];
    int n = epoll_wait(p->pfd, ev, 2, -1);
    bool io = false;
    for (int i = 0; i < n; i++) {
        if (ev[i].data.fd == p->efd) {
            drain(p->efd);
            *woken = true;
        } else {
            io = true;
        }
    }
    /* Seq_cst, with the sleepers' announcement: see hook_wait. */
    (void)atomic_exchange_explicit(&np->role, 0, memory_order_seq_cst);
    return io;
}

static bool hook_wait(void *arg, int worker)
{
    moirai__netpoll_t *np = arg;
    park_set_t *p = &np->park[worker];
    atomic_fetch_add_explicit(&np->waiting, 1, memory_order_seq_cst);
    bool io = false, woken = false, timed_out = false;
    for (;;) {
        bool last = atomic_load_explicit(&np->waiting, memory_order_seq_cst) == np->nworkers;
        int free_role = 0;
        if ((last || timed_out) &&
            atomic_compare_exchange_strong_explicit(&np->role, &free_role, 1, memory_order_seq_cst,
                                                    memory_order_relaxed)) {
            io = wait_with_role(np, p, &woken);
            /* Leaving the role: a sleeper that counted on the holder must
             * look again. In steady work nobody sleeps for ever (the role
             * is free then), so this costs nothing on the I/O path. */
            for (int i = 0; i < np->nworkers; i++) {
                if (i != worker && atomic_load_explicit(&np->park[i].plain, memory_order_seq_cst) ==
                                       PLAIN_FOREVER) {
                    hook_wake(np, i);
                    break;
                }
            }
            break;
        }
        /* Sleep on the eventfd alone: for ever while another idle worker
         * holds the role, else for PLAIN_SLEEP_MS, after which this worker
         * takes the role, so that a worker stuck in a long job does not
         * leave I/O unwatched. Announce, then re-check the role (seq_cst
         * both, paired with the holder's release then scan). */
        bool forever = atomic_load_explicit(&np->role, memory_order_seq_cst) != 0;
        (void)atomic_exchange_explicit(&p->plain, forever ? PLAIN_FOREVER : PLAIN_TIMED,
                                       memory_order_seq_cst);
        if (forever && atomic_load_explicit(&np->role, memory_order_seq_cst) == 0) {
            forever = false;
            atomic_store_explicit(&p->plain, PLAIN_TIMED, memory_order_seq_cst);
        }
        struct pollfd pfd = {.fd = p->efd, .events = POLLIN};
        int rc = poll(&pfd, 1, forever ? -1 : PLAIN_SLEEP_MS);
        atomic_store_explicit(&p->plain, AWAKE, memory_order_relaxed);
        if (rc == 0) {
            timed_out = true;
            continue;
        }
        drain(p->efd);
        break;
    }
    atomic_fetch_sub_explicit(&np->waiting, 1, memory_order_seq_cst);
    return io;
}

static void hook_wake(void *arg, int worker)
{
    moirai__netpoll_t *np = arg;
    uint64_t one = 1;
    ssize_t r = write(np->park[worker].efd, &one, sizeof one);
    (void)r;
}

static void hook_poll(void *arg, int worker, bool busy)
{
    (void)worker;
    moirai__netpoll_t *np = arg;
    /* A busy worker's periodic call: an idle worker that holds the role
     * will take the events. Relaxed: a stale value costs one empty
     * epoll_wait or one delayed poll, nothing more. An idle worker polls
     * anyway: taking a ready event here beats waiting for the role
     * holder to wake up on another CPU. */
    if (busy && atomic_load_explicit(&np->role, memory_order_relaxed) != 0)
        return;
    poll_now(np, 0);
}

static void *poller_main(void *arg)
{
    moirai__netpoll_t *np = arg;
    struct epoll_event ev;
    int pfd = np->park[0].pfd;
    /* The thread waits in the park set of slot 0, which holds its stop
     * eventfd instead of a worker's wake. */
    while (!atomic_load_explicit(&np->stop, memory_order_acquire)) {
        if (epoll_wait(pfd, &ev, 1, -1) == 1 && ev.data.fd != np->stop_efd)
            poll_now(np, 0);
    }
    return NULL;
}

static int park_set_open(park_set_t *p, int shared)
{
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    p->pfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->efd < 0 || p->pfd < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = p->efd};
    if (epoll_ctl(p->pfd, EPOLL_CTL_ADD, p->efd, &ev) != 0)
        return -errno;
    ev.data.fd = shared;
    if (epoll_ctl(p->pfd, EPOLL_CTL_ADD, shared, &ev) != 0)
        return -errno;
    return 0;
}

int moirai__netpoll_create(moirai__netpoll_t **out, int workers, bool own_thread)
{
    moirai__netpoll_t *np = moirai_aligned_alloc(64, sizeof *np);
    if (np == NULL)
        return -ENOMEM;
    memset(np, 0, sizeof *np);
    moirai__lock_init(&np->lock);
    atomic_init(&np->role, 0);
    atomic_init(&np->waiting, 0);
    atomic_init(&np->stop, 0);
    atomic_init(&np->open, 0);
    for (unsigned i = 0; i < MAX_CHUNKS; i++)
        atomic_init(&np->chunks[i], NULL);
    np->stop_efd = -1;
    np->nworkers = own_thread ? 1 : workers;
    np->epfd = epoll_create1(EPOLL_CLOEXEC);
    int rc = np->epfd < 0 ? -errno : 0;
    if (rc == 0) {
        np->park = moirai_aligned_alloc(64, (size_t)np->nworkers * sizeof *np->park);
        if (np->park == NULL)
            rc = -ENOMEM;
    }
    if (np->park != NULL) {
        for (int i = 0; i < np->nworkers; i++) {
            np->park[i].efd = np->park[i].pfd = -1;
            atomic_init(&np->park[i].plain, 0);
        }
        for (int i = 0; i < np->nworkers && rc == 0; i++)
            rc = park_set_open(&np->park[i], np->epfd);
    }
    np->hooks = (moirai_sched_idle_hooks_t){hook_wait, hook_wake, hook_poll, np};
    if (rc == 0 && own_thread) {
        np->stop_efd = np->park[0].efd;
        rc = -pthread_create(&np->thread, NULL, poller_main, np);
        np->thread_started = rc == 0;
    }
    if (rc != 0) {
        moirai__netpoll_destroy(np);
        return rc;
    }
    *out = np;
    return 0;
}

void moirai__netpoll_destroy(moirai__netpoll_t *np)
{
    if (np == NULL)
        return;
    if (np->thread_started) {
        /* Release: the thread reads `stop` with acquire after the wake. */
        atomic_store_explicit(&np->stop, 1, memory_order_release);
        hook_wake(np, 0);
        pthread_join(np->thread, NULL);
    }
    if (np->park != NULL) {
        for (int i = 0; i < np->nworkers; i++) {
            if (np->park[i].efd >= 0)
                close(np->park[i].efd);
            if (np->park[i].pfd >= 0)
                close(np->park[i].pfd);
        }
        moirai_free(np->park);
    }
    if (np->epfd >= 0)
        close(np->epfd);
    for (unsigned i = 0; i < np->nchunks; i++) {
        moirai_io_t *chunk = atomic_load_explicit(&np->chunks[i], memory_order_relaxed);
        /* Handles the program left open: their descriptors go with them. */
        for (unsigned k = 0; k < CHUNK; k++)
            if (atomic_load_explicit(&chunk[k].refs, memory_order_relaxed) != 0 && chunk[k].fd >= 0)
                close(chunk[k].fd);
        moirai_free(chunk);
    }
    moirai_free(np);
}

const moirai_sched_idle_hooks_t *moirai__netpoll_hooks(moirai__netpoll_t *np)
{
    return &np->hooks;
}

int moirai__netpoll_epfd(moirai__netpoll_t *np)
{
    return np->epfd;
}

uint64_t moirai__netpoll_open_handles(moirai__netpoll_t *np)
{
    return atomic_load_explicit(&np->open, memory_order_relaxed);
}

moirai_io_t *moirai__netpoll_slot(moirai__netpoll_t *np, uint32_t index)
{
    if (index / CHUNK >= MAX_CHUNKS)
        return NULL;
    moirai_io_t *chunk = atomic_load_explicit(&np->chunks[index / CHUNK], memory_order_acquire);
    return chunk != NULL ? &chunk[index % CHUNK] : NULL;
}

/* Adds a chunk of free handles (under the lock). */
static bool grow(moirai__netpoll_t *np)
{
    if (np->nchunks == MAX_CHUNKS)
        return false;
    moirai_io_t *chunk = moirai_calloc(CHUNK, sizeof *chunk);
    if (chunk == NULL)
        return false;
    for (uint32_t i = 0; i < CHUNK; i++) {
        moirai_io_t *io = &chunk[i];
        atomic_init(&io->rslot, 0);
        atomic_init(&io->wslot, 0);
        atomic_init(&io->refs, 0);
        atomic_init(&io->closed, 1);
        atomic_init(&io->gen, 0);
        io->fd = -1;
        io->np = np;
        io->index = np->nchunks * CHUNK + i;
        io->next_free = i + 1 < CHUNK ? &chunk[i + 1] : NULL;
    }
    if (np->free_tail != NULL)
        np->free_tail->next_free = chunk;
    else
        np->free_head = chunk;
    np->free_tail = &chunk[CHUNK - 1];
    /* Release: the poller's acquire load sees the initialised handles. */
    atomic_store_explicit(&np->chunks[np->nchunks], chunk, memory_order_release);
    np->nchunks++;
    return true;
}

moirai_io_t *moirai__netpoll_alloc(moirai__netpoll_t *np)
{
    moirai__lock_acquire(&np->lock);
    moirai_io_t *io = np->free_head;
    if (io == NULL && grow(np))
        io = np->free_head;
    if (io != NULL) {
        np->free_head = io->next_free;
        if (np->free_head == NULL)
            np->free_tail = NULL;
        io->next_free = NULL;
        atomic_fetch_add_explicit(&np->open, 1, memory_order_relaxed);
    }
    moirai__lock_release(&np->lock);
    return io;
}

void moirai__netpoll_free(moirai__netpoll_t *np, moirai_io_t *io)
{
    moirai__lock_acquire(&np->lock);
    if (np->free_tail != NULL)
        np->free_tail->next_free = io;
    else
        np->free_head = io;
    np->free_tail = io;
    atomic_fetch_sub_explicit(&np->open, 1, memory_order_relaxed);
    moirai__lock_release(&np->lock);
}
