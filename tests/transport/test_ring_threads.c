/* Shared-memory rings with both sides as threads of one process on one
 * mapping. Between processes ThreadSanitizer sees nothing; here it sees
 * every access of the publish/consume protocol and of the futex
 * hand-shake, so these tests are the ring's memory-ordering check. The
 * ring's sources are compiled in to reach moirai__ring_attach_mapped(). */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <moirai/transport.h>

#include "ring_internal.h"
#include "test_ring_msg.h"
#include "test_scale.h"

struct shared_map {
    void *base;
    size_t len;
};

/* One mapping of a fresh ring that every handle of the test shares. */
static struct shared_map map_ring(size_t size, uint32_t flags)
{
    moirai_shm_ring_config_t cfg;
    moirai_shm_ring_config_init(&cfg);
    cfg.size = size;
    cfg.flags = flags;
    int fd = -1;
    cr_assert_eq(moirai_shm_ring_create(&fd, &cfg), 0);
    struct shared_map m = {.len = RING_HEADER_SIZE + size};
    m.base = mmap(NULL, m.len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(m.base, MAP_FAILED);
    close(fd);
    return m;
}

struct producer_arg {
    struct shared_map *m;
    unsigned id;
    uint64_t count;
    pthread_barrier_t *attached;
    int rc;
};

static void *producer(void *p)
{
    struct producer_arg *a = p;
    moirai_shm_ring_t *r = NULL;
    a->rc = moirai__ring_attach_mapped(&r, a->m->base, a->m->len, false, MOIRAI_SHM_RING_PRODUCER);
    pthread_barrier_wait(a->attached);
    if (a->rc != 0)
        return NULL;
    for (uint64_t i = 0; i < a->count && a->rc == 0; i++)
        a->rc = msg_send(r, a->id, i);
    moirai_shm_ring_detach(r);
    return NULL;
}

static void stream(uint32_t flags, unsigned nprod, size_t size, uint64_t per)
{
    struct shared_map m = map_ring(size, flags);
    moirai_shm_ring_t *c = NULL;
    cr_assert_eq(moirai__ring_attach_mapped(&c, m.base, m.len, false, MOIRAI_SHM_RING_CONSUMER), 0);
    pthread_barrier_t attached;
    pthread_barrier_init(&attached, NULL, nprod + 1);
    pthread_t th[8];
    struct producer_arg args[8];
    for (unsigned i = 0; i < nprod; i++) {
        args[i] = (struct producer_arg){.m = &m, .id = i, .count = per, .attached = &attached};
        cr_assert_eq(pthread_create(&th[i], NULL, producer, &args[i]), 0);
    }
    pthread_barrier_wait(&attached);
    uint64_t next[8] = {0};
    for (uint64_t i = 0; i < per * nprod; i++) {
        void *buf;
        size_t len;
        int rc = moirai_shm_ring_peek(c, &buf, &len);
        cr_assert_eq(rc, 0, "message %lu: %d", (unsigned long)i, rc);
        int bad = msg_check(buf, len, next, nprod);
        if (bad != 0)
            cr_assert_fail("message %lu is wrong (%d)", (unsigned long)i, bad);
        cr_assert_eq(moirai_shm_ring_release(c), 0);
    }
    for (unsigned i = 0; i < nprod; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(args[i].rc, 0, "producer %u", i);
        cr_assert_eq(next[i], per);
    }
    void *buf;
    size_t len;
    cr_assert_eq(moirai_shm_ring_peek(c, &buf, &len), -EPIPE);
    moirai_shm_ring_stats_t st;
    cr_assert_eq(moirai_shm_ring_stats(c, &st), 0);
    cr_assert_eq(st.messages, per * nprod);
    moirai_shm_ring_detach(c);
    pthread_barrier_destroy(&attached);
    munmap(m.base, m.len);
}

Test(transport_ring_threads, spsc_stream, .timeout = 120)
{
    stream(0, 1, 4096, (uint64_t)scaled(1000000));
}

Test(transport_ring_threads, mpsc_stream, .timeout = 120)
{
    stream(MOIRAI_SHM_RING_MPSC, 3, 4096, (uint64_t)scaled(300000));
}
