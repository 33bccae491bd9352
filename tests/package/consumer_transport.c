/* An out-of-tree user of moirai-transport, built by check_consumer.sh
 * against an installed tree with nothing but `pkg-config --cflags --libs
 * moirai-transport` (which brings core, sync, mem and async through
 * Requires). Exit status 0 means every check held. */
#include <moirai/core.h>
#include <moirai/transport.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "consumer_check.h"

/* A bounded channel: what goes in comes out, in order, then -EPIPE after
 * close. */
static void check_chan(void)
{
    moirai_chan_config_t cfg;
    moirai_chan_config_init(&cfg);
    cfg.elem_size = sizeof(int);
    cfg.capacity = 4;
    moirai_chan_t *ch = NULL;
    CHECK(moirai_chan_create(&ch, &cfg) == 0);
    if (ch == NULL)
        return;
    for (int i = 0; i < 4; i++)
        CHECK(moirai_chan_send(ch, &i) == 0);
    int extra = 4;
    CHECK(moirai_chan_try_send(ch, &extra) == -EAGAIN);
    CHECK(moirai_chan_close(ch) == 0);
    for (int i = 0; i < 4; i++) {
        int v = -1;
        CHECK(moirai_chan_recv(ch, &v) == 0 && v == i);
    }
    int v;
    CHECK(moirai_chan_recv(ch, &v) == -EPIPE);
    moirai_chan_destroy(ch);
}

/* A shared-memory ring with both ends in this process. */
static void check_ring(void)
{
    int fd = -1;
    CHECK(moirai_shm_ring_create(&fd, NULL) == 0);
    moirai_shm_ring_t *cons = NULL, *prod = NULL;
    CHECK(moirai_shm_ring_attach(&cons, fd, MOIRAI_SHM_RING_CONSUMER) == 0);
    CHECK(moirai_shm_ring_attach(&prod, fd, MOIRAI_SHM_RING_PRODUCER) == 0);
    close(fd);
    if (cons == NULL || prod == NULL)
        return;
    void *buf = NULL;
    size_t len = 0;
    CHECK(moirai_shm_ring_reserve(prod, 5, &buf) == 0);
    memcpy(buf, "hello", 5);
    CHECK(moirai_shm_ring_commit(prod) == 0);
    CHECK(moirai_shm_ring_peek(cons, &buf, &len) == 0 && len == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(moirai_shm_ring_release(cons) == 0);
    CHECK(moirai_shm_ring_try_peek(cons, &buf, &len) == -EAGAIN);
    moirai_shm_ring_detach(prod);
    moirai_shm_ring_detach(cons);
}

int main(void)
{
    CHECK(strcmp(moirai_transport_version(), MOIRAI_TRANSPORT_VERSION_STRING) == 0);
    check_chan();
    check_ring();
    return failures == 0 ? 0 : 1;
}
