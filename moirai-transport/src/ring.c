/* Shared-memory rings: making the shared object, attaching a handle to it
 * (with the header checks that keep a foreign or corrupt object out),
 * detaching, and the handle's counters. Producing and consuming live in
 * ring_produce.c and ring_consume.c; waiting and peer liveness in
 * ring_wait.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <moirai/core/alloc.h>
#include <moirai/transport/ring.h>

#include "ring_internal.h"

void moirai_shm_ring_config_init(moirai_shm_ring_config_t *cfg)
{
    if (cfg != NULL)
        memset(cfg, 0, sizeof(*cfg));
}

static bool valid_size(uint64_t size)
{
    return size >= MOIRAI_SHM_RING_MIN_SIZE && size <= MOIRAI_SHM_RING_MAX_SIZE &&
           (size & (size - 1)) == 0;
}

static bool valid_name(const char *name)
{
    return name[0] == '/' && name[1] != '\0' && strchr(name + 1, '/') == NULL && strlen(name) < 256;
}

/* Writes the geometry into a fresh (zeroed) object. The magic goes last,
 * so an object whose formatting was interrupted is refused by attach. */
static int format(int fd, uint64_t size, uint32_t flags)
{
    void *p = mmap(NULL, RING_HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    struct ring_shared *sh = p;
    /* Relaxed: nobody else maps the object before create returns its fd,
     * and handing the fd over (fork, exec, SCM_RIGHTS) orders these
     * stores before any attach. */
    atomic_store_explicit(&sh->version, MOIRAI_SHM_RING_LAYOUT_VERSION, memory_order_relaxed);
    atomic_store_explicit(&sh->header_size, RING_HEADER_SIZE, memory_order_relaxed);
    atomic_store_explicit(&sh->size, size, memory_order_relaxed);
    atomic_store_explicit(&sh->flags, flags, memory_order_relaxed);
    atomic_store_explicit(&sh->max_producers,
                          (flags & MOIRAI_SHM_RING_MPSC) ? MOIRAI_SHM_RING_MAX_PRODUCERS : 1u,
                          memory_order_relaxed);
    atomic_store_explicit(&sh->magic, RING_MAGIC, memory_order_relaxed);
    munmap(p, RING_HEADER_SIZE);
    return 0;
}

int moirai_shm_ring_create(int *fd_out, const moirai_shm_ring_config_t *cfg)
{
    moirai_shm_ring_config_t def;
    if (cfg == NULL) {
        moirai_shm_ring_config_init(&def);
        cfg = &def;
    }
    uint64_t size = cfg->size != 0 ? cfg->size : MOIRAI_SHM_RING_DEFAULT_SIZE;
    if (fd_out == NULL || !valid_size(size) || (cfg->flags & ~MOIRAI_SHM_RING_MPSC) != 0 ||
        (cfg->name != NULL && !valid_name(cfg->name)) || cfg->mode > 07777)
        return -EINVAL;

    int fd;
    if (cfg->name == NULL) {
        /* Not close-on-exec: an exec'd helper inherits the fd by number.
         * Sealing lets attach trust that the object cannot shrink under
         * its mapping (which would turn accesses into SIGBUS). */
        fd = memfd_create("moirai-shm-ring", MFD_ALLOW_SEALING);
    } else {
        fd = shm_open(cfg->name, O_RDWR | O_CREAT | O_EXCL, cfg->mode != 0 ? cfg->mode : 0600);
    }
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (ftruncate(fd, (off_t)(RING_HEADER_SIZE + size)) != 0)
        rc = -errno;
    if (rc == 0)
        rc = format(fd, size, cfg->flags);
    if (rc == 0 && cfg->name == NULL &&
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
        rc = -errno;
    if (rc != 0) {
        close(fd);
        if (cfg->name != NULL)
            shm_unlink(cfg->name);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

int moirai_shm_ring_unlink(const char *name)
{
    if (name == NULL)
        return -EINVAL;
    return shm_unlink(name) == 0 ? 0 : -errno;
}

/* Claims the first free slot among `slots[0..n)` for this process. */
static struct ring_slot *claim(struct ring_slot *slots, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        uint32_t expect = RING_SLOT_FREE;
        /* Acquire-release: claims of one slot by two processes are
         * ordered, and the pid stored after it is seen with the state. */
        if (atomic_compare_exchange_strong_explicit(&slots[i].state, &expect, RING_SLOT_ATTACHED,
                                                    memory_order_acq_rel, memory_order_relaxed)) {
            /* Release: a peer that reads this pid and then checks it also
             * sees the claim. */
            atomic_store_explicit(&slots[i].pid, (uint32_t)getpid(), memory_order_release);
            return &slots[i];
        }
    }
    return NULL;
}

int moirai__ring_attach_mapped(moirai_shm_ring_t **out, void *base, size_t map_size, bool mapped,
                               moirai_shm_ring_role_t role)
{
    if (out == NULL || (role != MOIRAI_SHM_RING_CONSUMER && role != MOIRAI_SHM_RING_PRODUCER))
        return -EINVAL;
    if (map_size < RING_HEADER_SIZE)
        return -EPROTO;
    struct ring_shared *sh = base;
    /* Each geometry field is read once into a local and checked there:
     * the peer may rewrite the page between two reads. */
    uint64_t magic = atomic_load_explicit(&sh->magic, memory_order_relaxed);
    uint32_t version = atomic_load_explicit(&sh->version, memory_order_relaxed);
    uint32_t header_size = atomic_load_explicit(&sh->header_size, memory_order_relaxed);
    uint64_t size = atomic_load_explicit(&sh->size, memory_order_relaxed);
    uint32_t flags = atomic_load_explicit(&sh->flags, memory_order_relaxed);
    uint32_t maxp = atomic_load_explicit(&sh->max_producers, memory_order_relaxed);
    bool mpsc = (flags & MOIRAI_SHM_RING_MPSC) != 0;
    if (magic != RING_MAGIC || version != MOIRAI_SHM_RING_LAYOUT_VERSION ||
        header_size != RING_HEADER_SIZE || !valid_size(size) ||
        size > map_size - RING_HEADER_SIZE || (flags & ~MOIRAI_SHM_RING_MPSC) != 0 ||
        maxp != (mpsc ? MOIRAI_SHM_RING_MAX_PRODUCERS : 1u))
        return -EPROTO;

    /* Starting indices, checked before anything is claimed. The consumer
     * trusts only its own index, which is the shared head at attach (0
     * for the one consumer a ring ever has). A producer starts from the
     * shared tail (for SPSC, 0 too: a second SPSC producer is refused)
     * and validates the head against it whenever it needs room. */
    uint64_t tail = atomic_load_explicit(&sh->tail, memory_order_acquire);
    uint64_t head = atomic_load_explicit(&sh->head, memory_order_acquire);
    if ((head & 7u) != 0 || (tail & 7u) != 0 || tail - head > size)
        return -EPROTO;

    moirai_shm_ring_t *r = moirai_malloc(sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    memset(r, 0, sizeof(*r));
    r->sh = sh;
    r->data = (unsigned char *)base + RING_HEADER_SIZE;
    r->map_size = map_size;
    r->mapped = mapped;
    r->size = size;
    r->mask = size - 1;
    r->mpsc = mpsc;
    r->max_producers = maxp;
    r->role = role;
    for (uint32_t i = 0; i < MOIRAI_SHM_RING_MAX_PRODUCERS; i++)
        r->watch[i].fd = -1;
    r->pos = role == MOIRAI_SHM_RING_CONSUMER ? head : tail;
    r->other = head;

    r->slot =
        role == MOIRAI_SHM_RING_CONSUMER ? claim(&sh->consumer, 1) : claim(sh->producers, maxp);
    if (r->slot == NULL) {
        moirai_free(r);
        return -EBUSY;
    }
    *out = r;
    return 0;
}

int moirai_shm_ring_attach(moirai_shm_ring_t **out, int fd, moirai_shm_ring_role_t role)
{
    if (out == NULL || (role != MOIRAI_SHM_RING_CONSUMER && role != MOIRAI_SHM_RING_PRODUCER))
        return -EINVAL;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (st.st_size < (off_t)RING_HEADER_SIZE)
        return -EPROTO;
    /* Read the size from the header of a first, header-only mapping, so
     * that the full mapping covers exactly header and data. */
    void *hp = mmap(NULL, RING_HEADER_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    if (hp == MAP_FAILED)
        return -errno;
    uint64_t size = atomic_load_explicit(&((struct ring_shared *)hp)->size, memory_order_relaxed);
    munmap(hp, RING_HEADER_SIZE);
    if (!valid_size(size) || (uint64_t)st.st_size < RING_HEADER_SIZE + size)
        return -EPROTO;
    size_t map_size = RING_HEADER_SIZE + (size_t)size;
    void *p = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    int rc = moirai__ring_attach_mapped(out, p, map_size, true, role);
    if (rc != 0)
        munmap(p, map_size);
    return rc;
}

int moirai_shm_ring_open(moirai_shm_ring_t **out, const char *name, moirai_shm_ring_role_t role)
{
    if (out == NULL || name == NULL ||
        (role != MOIRAI_SHM_RING_CONSUMER && role != MOIRAI_SHM_RING_PRODUCER))
        return -EINVAL;
    int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = moirai_shm_ring_attach(out, fd, role);
    close(fd);
    return rc;
}

void moirai_shm_ring_detach(moirai_shm_ring_t *r)
{
    if (r == NULL)
        return;
    struct ring_shared *sh = r->sh;
    if (r->role == MOIRAI_SHM_RING_PRODUCER && r->pending && r->mpsc) {
        /* The reserved room is the ring's now (the tail moved past it):
         * turn it into a record the consumer passes over, or the
         * consumer would wait for it forever. */
        uint64_t w = ((uint64_t)RING_TAG_SKIP << 32) | (r->pend_rec - RING_REC_HDR);
        atomic_store_explicit((_Atomic uint64_t *)(r->data + (r->pend_pos & r->mask)), w,
                              memory_order_release);
    }
    /* Release: everything this side did happens before a peer that sees
     * the state DETACHED. */
    atomic_store_explicit(&r->slot->state, RING_SLOT_DETACHED, memory_order_seq_cst);
    /* Wake both words: whoever sleeps re-checks and sees the state. */
    atomic_fetch_add_explicit(&sh->data_seq, 1, memory_order_release);
    atomic_fetch_add_explicit(&sh->space_seq, 1, memory_order_release);
    moirai__ring_wake_futex(&sh->data_seq);
    moirai__ring_wake_futex(&sh->space_seq);
    moirai__ring_unwatch(r);
    if (r->mapped)
        munmap(r->sh, r->map_size);
    moirai_free(r);
}

size_t moirai_shm_ring_size(const moirai_shm_ring_t *r)
{
    return r != NULL ? (size_t)r->size : 0;
}

int moirai_shm_ring_stats(const moirai_shm_ring_t *r, moirai_shm_ring_stats_t *out)
{
    if (r == NULL || out == NULL)
        return -EINVAL;
    *out = r->stats;
    return 0;
}
