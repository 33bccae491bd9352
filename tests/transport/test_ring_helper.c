/* A separate program the two-process ring tests exec, handing it the
 * ring's memfd by number:
 *
 *     test_ring_helper produce <fd> <id> <count>
 *     test_ring_helper consume <fd> <producers> <count-per-producer>
 *
 * It exits 0 when it sent (or received and checked, then saw -EPIPE)
 * everything, and a code naming the failure otherwise. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/transport/ring.h>

#include "test_ring_msg.h"

static int produce(int fd, unsigned id, uint64_t count)
{
    moirai_shm_ring_t *r = NULL;
    if (moirai_shm_ring_attach(&r, fd, MOIRAI_SHM_RING_PRODUCER) != 0)
        return 10;
    for (uint64_t i = 0; i < count; i++)
        if (msg_send(r, id, i) != 0)
            return 11;
    moirai_shm_ring_detach(r);
    return 0;
}

static int consume(int fd, unsigned nprod, uint64_t count)
{
    moirai_shm_ring_t *r = NULL;
    if (nprod == 0 || nprod > 16 || moirai_shm_ring_attach(&r, fd, MOIRAI_SHM_RING_CONSUMER) != 0)
        return 20;
    uint64_t next[16] = {0};
    for (uint64_t i = 0; i < count * nprod; i++) {
        void *buf;
        size_t len;
        if (moirai_shm_ring_peek(r, &buf, &len) != 0)
            return 21;
        if (msg_check(buf, len, next, nprod) != 0)
            return 22;
        moirai_shm_ring_release(r);
    }
    void *buf;
    size_t len;
    if (moirai_shm_ring_peek(r, &buf, &len) != -EPIPE)
        return 23;
    moirai_shm_ring_detach(r);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    int fd = atoi(argv[2]);
    unsigned a = (unsigned)atoi(argv[3]);
    uint64_t count = strtoull(argv[4], NULL, 10);
    if (strcmp(argv[1], "produce") == 0)
        return produce(fd, a, count);
    if (strcmp(argv[1], "consume") == 0)
        return consume(fd, a, count);
    return 2;
}
