/* moirai-bench, suite "transport", cases remote_task_rtt_mpi and
 * mpi_link_rtt: the program run as
 * `mpirun.mpich -np 2 moirai-bench-transport-mpi IMPL N`, once per round,
 * by bench_transport_mpi.c (moirai-bench itself is one process and cannot
 * be two MPI ranks). Rank 0 prints the nanoseconds per round trip of its
 * measured section on stdout, and nothing else; a wrong answer exits
 * non-zero.
 *
 * IMPL "moirai_task": an empty remote task (8 bytes each way) between two
 * nodes on MOIRAI_NODE_BACKEND_MPI, one per rank, each on a moirai-async
 * runtime: rank 0 (node 1) spawns "echo" on node 2 from a plain thread
 * and joins it, one in flight, checking the answer; a last "stop" task
 * lets rank 1 leave.
 * IMPL "moirai_link": an 8-byte message and its echo through the MPI
 * backend's pair of links alone (link_mpi.c, compiled in, with this
 * program as its moirai__peer_start()), both sides plain threads parked
 * in link reads: the bytes under a remote task.
 * IMPL "mpich": the same ping-pong with MPI_Send and MPI_Recv on
 * MPI_COMM_WORLD from the main thread (MPI_Init: the usual raw MPI
 * program, blocking calls that poll the shared-memory queues).
 *
 * In every case each side checks the sequence number, and 1000 untimed
 * round trips warm up first. In the Moirai cases every MPI call is made
 * by each process's progress thread. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include <moirai/async/runtime.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/sync/event.h>
#include <moirai/transport/node.h>

#include "frame.h"
#include "link.h"
#include "link_mpi.h"
#include "node_internal.h"

#define WARMUP 1000

/* ---- moirai_link: the backend's links, with this program as "peer.c" ---- */

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

/* ---- moirai_task: an empty remote task between two MPI nodes ---- */

static const char task_key[] = "moirai-bench remote_task_rtt_mpi";
static moirai_event_t stop_event = MOIRAI_EVENT_INIT_MANUAL;

/* The task: answers its 8-byte payload. */
static int echo(void *arg, const void *payload, size_t len, const moirai_cancel_token_t *cancel,
                void **result, size_t *result_len)
{
    (void)arg;
    (void)cancel;
    void *out = moirai_malloc(len ? len : 1);
    if (!out)
        return -ENOMEM;
    memcpy(out, payload, len);
    *result = out;
    *result_len = len;
    return 0;
}

/* Rank 0's last task: lets rank 1 destroy its node. */
static int stop(void *arg, const void *payload, size_t len, const moirai_cancel_token_t *cancel,
                void **result, size_t *result_len)
{
    (void)arg;
    (void)payload;
    (void)len;
    (void)cancel;
    (void)result;
    (void)result_len;
    moirai_event_set(&stop_event);
    return 0;
}

static bool task_round(moirai_node_t *node, uint64_t seq)
{
    moirai_handle_t *h;
    int rc = moirai_node_spawn(node, 2, "echo", &seq, sizeof seq, 0, MOIRAI_DEADLINE_NEVER, &h);
    if (rc < 0) {
        fprintf(stderr, "moirai-bench-transport-mpi: spawn: %d\n", rc);
        return false;
    }
    void *v = NULL;
    rc = moirai_handle_join(h, &v);
    if (rc != 0)
        fprintf(stderr, "moirai-bench-transport-mpi: task %llu: %d\n", (unsigned long long)seq, rc);
    bool ok = rc == 0;
    moirai_handle_release(h);
    if (ok) {
        size_t len;
        const void *d = moirai_remote_result_data(v, &len);
        uint64_t got;
        ok = len == sizeof got;
        if (ok) {
            memcpy(&got, d, sizeof got);
            ok = got == seq;
        }
    }
    moirai_remote_result_free(v);
    return ok;
}

static int run_task(uint64_t n)
{
    moirai_runtime_t *rt;
    if (moirai_runtime_create(&rt, NULL) < 0)
        return 1;
    moirai_node_config_t cfg;
    moirai_node_config_init(&cfg);
    cfg.runtime = rt;
    cfg.key = task_key;
    cfg.key_len = sizeof task_key - 1;
    cfg.backend = MOIRAI_NODE_BACKEND_MPI;
    moirai_node_t *node = NULL;
    bool ok = moirai_node_create(&node, &cfg) == 0;
    /* Node ids are rank + 1. */
    uint64_t id = ok ? moirai_node_id(node) : 0;
    ok = ok && (id == 1 || id == 2);
    ok = ok && (id == 1 || (moirai_node_register(node, "echo", echo, NULL) == 0 &&
                            moirai_node_register(node, "stop", stop, NULL) == 0));
    ok = ok && moirai_node_wait_peers(node, 1, moirai_deadline_after(30000000000ull)) == 0;
    uint64_t t0 = 0, t1 = 0;
    if (ok && id == 1) {
        for (uint64_t i = 0; ok && i < WARMUP; i++)
            ok = task_round(node, i);
        t0 = moirai_clock_now_ns();
        for (uint64_t i = 0; ok && i < n; i++)
            ok = task_round(node, WARMUP + i);
        t1 = moirai_clock_now_ns();
        /* Whatever happened, rank 1 is told to stop. Its answer races
         * with rank 1 destroying its node, so only the spawn counts. */
        moirai_handle_t *h;
        int rc = moirai_node_spawn(node, 2, "stop", NULL, 0, 0, MOIRAI_DEADLINE_NEVER, &h);
        if (rc == 0) {
            void *v = NULL;
            moirai_handle_join(h, &v);
            moirai_remote_result_free(v);
            moirai_handle_release(h);
        } else {
            fprintf(stderr, "moirai-bench-transport-mpi: spawn stop: %d\n", rc);
            ok = false;
        }
    } else if (ok) {
        moirai_event_wait(&stop_event);
    }
    moirai_node_destroy(node);
    moirai_runtime_destroy(rt);
    if (!ok) {
        fprintf(stderr, "moirai-bench-transport-mpi: node %llu: a remote task failed\n",
                (unsigned long long)id);
        return 1;
    }
    if (id == 1)
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
        fprintf(stderr, "usage: mpirun.mpich -np 2 %s moirai_task|moirai_link|mpich N\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "moirai_task") == 0)
        return run_task(n);
    if (strcmp(argv[1], "moirai_link") == 0)
        return run_moirai(n);
    if (strcmp(argv[1], "mpich") == 0)
        return run_mpich(n);
    fprintf(stderr, "%s: unknown implementation %s\n", argv[0], argv[1]);
    return 2;
}
