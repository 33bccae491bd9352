/* The MPI backend in a program that initialized MPI itself, run as
 * `mpirun.mpich -np 2 test_transport_mpi_init MODE`:
 *
 *   single    MPI_Init_thread(MPI_THREAD_SINGLE): the backend must refuse
 *             (-ENOTSUP, every time: the failure is remembered), and the
 *             program still finalizes MPI normally.
 *   multiple  MPI_Init_thread(MPI_THREAD_MULTIPLE): the backend uses the
 *             program's MPI (bytes both ways between the two ranks);
 *             after stop() the progress thread makes no more MPI calls,
 *             so the program finalizes MPI itself; at exit the thread
 *             sees MPI finalized and leaves it alone.
 *
 * Like test_mpi_link.c, a plain program with its own
 * moirai__peer_start(); a failed check exits 1. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include <moirai/core/clock.h>

#include "frame.h"
#include "link.h"
#include "link_mpi.h"
#include "node_internal.h"

static int me = -1;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s\n", me, __FILE__, __LINE__, #cond);  \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static struct link *peer;

int moirai__peer_start(struct moirai_node *node, struct link *l, bool initiator,
                       struct connect_wait *cw)
{
    (void)node;
    (void)initiator;
    (void)cw;
    CHECK(peer == NULL);
    peer = l;
    return 0;
}

static void single(void)
{
    int provided;
    CHECK(MPI_Init_thread(NULL, NULL, MPI_THREAD_SINGLE, &provided) == MPI_SUCCESS);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (provided >= MPI_THREAD_MULTIPLE) {
        /* An MPI that always gives the full level leaves nothing to test. */
        printf("rank %d: MPI gave MPI_THREAD_MULTIPLE for SINGLE; nothing to refuse\n", me);
    } else {
        static struct moirai_node node;
        struct frame_addr self;
        CHECK(moirai__link_mpi_rank() == -ENOTSUP);
        CHECK(moirai__backend_mpi.listen(&node, NULL, &self) == -ENOTSUP);
        CHECK(moirai__link_mpi_rank() == -ENOTSUP);
        CHECK(peer == NULL);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
}

static void multiple(void)
{
    int provided, size;
    CHECK(MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) == MPI_SUCCESS);
    CHECK(provided == MPI_THREAD_MULTIPLE);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    CHECK(size == 2);
    CHECK(moirai__link_mpi_rank() == me);
    static struct moirai_node node;
    struct frame_addr self;
    CHECK(moirai__backend_mpi.listen(&node, NULL, &self) == 0);
    CHECK(peer != NULL);
    CHECK(moirai__link_mpi_peer_rank(peer) == 1 - me);
    /* The program's own MPI traffic and the backend's do not mix. */
    int token = 100 + me, got = -1;
    MPI_Sendrecv(&token, 1, MPI_INT, 1 - me, 0, &got, 1, MPI_INT, 1 - me, 0, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
    CHECK(got == 101 - me);
    char msg[24] = {0}, in[24] = {0};
    snprintf(msg, sizeof msg, "hello from %d", me);
    struct iovec v = {msg, sizeof msg};
    CHECK(peer->ops->writev(peer, &v, 1, MOIRAI_DEADLINE_NEVER) == 0);
    size_t off = 0;
    while (off < sizeof in) {
        ssize_t n = peer->ops->read(peer, in + off, sizeof in - off, MOIRAI_DEADLINE_NEVER);
        CHECK(n > 0);
        off += (size_t)n;
    }
    char want[24] = {0};
    snprintf(want, sizeof want, "hello from %d", 1 - me);
    CHECK(memcmp(in, want, sizeof want) == 0);
    peer->ops->shutdown(peer);
    char c;
    CHECK(peer->ops->read(peer, &c, 1, MOIRAI_DEADLINE_NEVER) == -ECANCELED);
    peer->ops->close(peer);
    moirai__backend_mpi.stop(&node);
    /* The progress thread is quiet now: the program finalizes. */
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "single") == 0)
        single();
    else if (argc == 2 && strcmp(argv[1], "multiple") == 0)
        multiple();
    else
        return 2;
    printf("rank %d: ok\n", me);
    return 0;
}
