/* moirai-bench, suite "transport", case remote_task_rtt_mpi: the program
 * run as `mpirun.mpich -np 2 moirai-bench-transport-mpi IMPL N`, once per
 * round, by bench_transport_mpi.c (moirai-bench itself is one process and
 * cannot be two MPI ranks). Rank 0 prints the nanoseconds per round trip
 * of its measured section on stdout, and nothing else; a wrong answer
 * exits non-zero.
 *
 * IMPL "moirai": an 8-byte message and its echo through a pair of the MPI
 * backend's links (link_mpi.c), both sides plain threads parked in link
 * reads, every MPI call made by each process's progress thread.
 * IMPL "mpich": the same ping-pong with MPI_Send and MPI_Recv on
 * MPI_COMM_WORLD from the main thread (MPI_Init: the usual raw MPI
 * program, blocking calls that poll the shared-memory queues).
 *
 * Each side carries the sequence number and checks it; 1000 untimed round
 * trips warm up first. The backend's links are the bytes under a remote
 * task; the task itself (frames, handshake, remote_exec) joins once the
 * nodes run on this backend (see docs/transport.md, "MPI backend"). */
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

#define WARMUP 1000

/* ---- moirai: the backend's links, with this program as "peer.c" ---- */

static struct link *peer_link;
static int peer_links;

int moirai__peer_start(struct moirai_node *node, struct link *l, bool initiator,
                       struct connect_wait *cw)
{
    (void)node;
    (void)initiator;
    (void)cw;
    peer_link = l;
    peer_links++;
    return 0;
}

static bool link_read_exact(struct link *l, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = l->ops->read(l, (uint8_t *)buf + got, len - got, MOIRAI_DEADLINE_NEVER);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

static bool link_round(struct link *l, int rank, uint64_t seq)
{
    uint64_t got;
    struct iovec v = {&seq, sizeof seq};
    if (rank == 0) {
        if (l->ops->writev(l, &v, 1, MOIRAI_DEADLINE_NEVER) != 0 ||
            !link_read_exact(l, &got, sizeof got))
            return false;
        return got == seq + 1;
    }
    if (!link_read_exact(l, &got, sizeof got) || got != seq)
        return false;
    got = seq + 1;
    v.iov_base = &got;
    return l->ops->writev(l, &v, 1, MOIRAI_DEADLINE_NEVER) == 0;
}

static int run_moirai(uint64_t n)
{
    static struct moirai_node node_storage;
    struct moirai_node *node = &node_storage;
    struct frame_addr self;
    if (moirai__backend_mpi.listen(node, NULL, &self) != 0 || peer_links != 1) {
        fprintf(stderr, "moirai-bench-transport-mpi: needs exactly 2 ranks\n");
        return 1;
    }
    int rank = (int)moirai__frame_get_u32(self.addr);
    bool ok = true;
    for (uint64_t i = 0; ok && i < WARMUP; i++)
        ok = link_round(peer_link, rank, i);
    uint64_t t0 = moirai_clock_now_ns();
    for (uint64_t i = 0; ok && i < n; i++)
        ok = link_round(peer_link, rank, WARMUP + i);
    uint64_t t1 = moirai_clock_now_ns();
    peer_link->ops->shutdown(peer_link);
    peer_link->ops->close(peer_link);
    moirai__backend_mpi.stop(node);
    if (!ok)
        return 1;
    if (rank == 0)
        printf("%.1f\n", (double)(t1 - t0) / (double)n);
    return 0;
}

/* ---- mpich: the raw ping-pong ---- */

static bool mpi_round(int rank, uint64_t seq)
{
    uint64_t got;
    if (rank == 0) {
        MPI_Send(&seq, 1, MPI_UINT64_T, 1, 0, MPI_COMM_WORLD);
        MPI_Recv(&got, 1, MPI_UINT64_T, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        return got == seq + 1;
    }
    MPI_Recv(&got, 1, MPI_UINT64_T, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (got != seq)
        return false;
    got = seq + 1;
    MPI_Send(&got, 1, MPI_UINT64_T, 0, 0, MPI_COMM_WORLD);
    return true;
}

static int run_mpich(uint64_t n)
{
    MPI_Init(NULL, NULL);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    bool ok = true;
    for (uint64_t i = 0; ok && i < WARMUP; i++)
        ok = mpi_round(rank, i);
    uint64_t t0 = moirai_clock_now_ns();
    for (uint64_t i = 0; ok && i < n; i++)
        ok = mpi_round(rank, WARMUP + i);
    uint64_t t1 = moirai_clock_now_ns();
    if (!ok)
        MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Finalize();
    if (rank == 0)
        printf("%.1f\n", (double)(t1 - t0) / (double)n);
    return 0;
}

int main(int argc, char **argv)
{
    char *end = NULL;
    uint64_t n = argc == 3 ? strtoull(argv[2], &end, 10) : 0;
    if (argc != 3 || !end || *end || n == 0) {
        fprintf(stderr, "usage: mpirun.mpich -np 2 %s moirai|mpich N\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "moirai") == 0)
        return run_moirai(n);
    if (strcmp(argv[1], "mpich") == 0)
        return run_mpich(n);
    fprintf(stderr, "%s: unknown implementation %s\n", argv[0], argv[1]);
    return 2;
}
