/* Two processes and one shared-memory ring: the child produces messages
 * of varying length in place (reserve, write, commit), the parent reads
 * them in place (peek, check, release). When the child detaches, the
 * parent's peek returns -EPIPE after the last message: nothing lost,
 * nothing copied through the kernel.
 *
 *   ./example_transport_ring_pair [count]      (default 1000000) */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <moirai/transport.h>

/* Message i carries its number and i % 57 filler bytes equal to i & 0xff. */
static size_t length_of(uint64_t i)
{
    return sizeof i + (size_t)(i % 57);
}

static int produce(int fd, uint64_t count)
{
    moirai_shm_ring_t *r;
    if (moirai_shm_ring_attach(&r, fd, MOIRAI_SHM_RING_PRODUCER) != 0)
        return 1;
    for (uint64_t i = 0; i < count; i++) {
        void *buf;
        if (moirai_shm_ring_reserve(r, length_of(i), &buf) != 0)
            return 1;
        memcpy(buf, &i, sizeof i);
        memset((char *)buf + sizeof i, (int)(i & 0xff), length_of(i) - sizeof i);
        moirai_shm_ring_commit(r);
    }
    moirai_shm_ring_detach(r);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t count = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    int fd;
    moirai_shm_ring_t *r;
    /* A 64 KiB memfd ring; the consumer attaches before the fork so the
     * child finds its peer registered. */
    moirai_shm_ring_config_t cfg;
    moirai_shm_ring_config_init(&cfg);
    cfg.size = 64 * 1024;
    if (moirai_shm_ring_create(&fd, &cfg) != 0 ||
        moirai_shm_ring_attach(&r, fd, MOIRAI_SHM_RING_CONSUMER) != 0) {
        fprintf(stderr, "ring setup failed\n");
        return 1;
    }
    pid_t child = fork();
    if (child == 0)
        _exit(produce(fd, count));
    close(fd);

    uint64_t got = 0, bad = 0;
    int rc;
    void *buf;
    size_t len;
    while ((rc = moirai_shm_ring_peek(r, &buf, &len)) == 0) {
        uint64_t i;
        memcpy(&i, buf, sizeof i);
        const unsigned char *fill = (const unsigned char *)buf + sizeof i;
        if (i != got || len != length_of(i))
            bad++;
        for (size_t k = 0; k < len - sizeof i && bad == 0; k++)
            if (fill[k] != (unsigned char)(i & 0xff))
                bad++;
        moirai_shm_ring_release(r);
        got++;
    }
    int status = 0;
    waitpid(child, &status, 0);
    moirai_shm_ring_detach(r);
    printf("ring pair: %llu messages received in order, %llu bad, ended with %d\n",
           (unsigned long long)got, (unsigned long long)bad, rc);
    return got == count && bad == 0 && rc == -EPIPE && WIFEXITED(status) && WEXITSTATUS(status) == 0
               ? 0
               : 1;
}
