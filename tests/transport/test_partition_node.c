/* A cluster node as a separate process for the partition test
 * (test_partition.c), run inside a network namespace by `ip netns exec`:
 *
 *   test_partition_node <id> <key> <listen> [seed]
 *
 * Listens on `listen` ("a.b.c.d:0": the namespace's address, a free port),
 * prints "READY <port>" on stdout, then answers commands read from stdin,
 * one per line, each with one line on stdout:
 *   view            -> "VIEW <live> <peers_dead> <started> <cancelled> [id ...]":
 *                      the live peers' count, the peers this node declared
 *                      dead, the `work` tasks that blocked here and those of
 *                      them whose token was cancelled, then the live ids
 *   runs <n>        -> "RUNS <c0> <c1> ... <c(n-1)>": how many times `work`
 *                      ran with x = 0 .. n-1 here (n at most WORK_XS)
 *   connect <addr>  -> "CONNECT <rc>": moirai_node_connect()'s result
 * and at the end of stdin (the test's end of the pipe closed, also when the
 * test died) destroys its node and runtime and exits 0.
 *
 * The commands go through stdin rather than through remote tasks because
 * the isolated node must answer them while no network reaches it.
 *
 * Registered function:
 *   work  u64 x, u64 block_on -> u64 x*x, u64 this node's id; on the node
 *                                whose id is block_on it first waits for its
 *                                cancel token (30 s at most) and returns
 *                                -ECANCELED once cancelled */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/async/runtime.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/transport/node.h>

#define WORK_XS  256
#define MAX_VIEW 16

static uint64_t self_id;
static moirai_node_t *node;
/* Counters written by task fibers on any worker and read by the command
 * loop: each is a count on its own, read for a report,
 * never used to order other memory, so relaxed is enough. */
static _Atomic uint32_t runs[WORK_XS];
static _Atomic uint64_t blocked_started, blocked_cancelled;

static int fn_work(void *arg, const void *payload, size_t len, const moirai_cancel_token_t *cancel,
                   void **result, size_t *result_len)
{
    (void)arg;
    uint64_t in[2];
    if (len != sizeof in)
        return -EINVAL;
    memcpy(in, payload, sizeof in);
    if (in[0] >= WORK_XS)
        return -EINVAL;
    atomic_fetch_add_explicit(&runs[in[0]], 1, memory_order_relaxed);
    if (in[1] == self_id) {
        atomic_fetch_add_explicit(&blocked_started, 1, memory_order_relaxed);
        /* Bounded: a lost cancel shows as a result, not as a hang. */
        if (moirai_cancel_token_wait_timed(cancel, moirai_deadline_after(30000000000ull)) == 0) {
            atomic_fetch_add_explicit(&blocked_cancelled, 1, memory_order_relaxed);
            return -ECANCELED;
        }
    }
    uint64_t *out = moirai_malloc(2 * sizeof *out);
    if (!out)
        return -ENOMEM;
    out[0] = in[0] * in[0];
    out[1] = self_id;
    *result = out;
    *result_len = 2 * sizeof *out;
    return 0;
}

/* Stores live, peers_dead, then up to MAX_VIEW live ids; returns how many
 * u64s it stored (0 on an error). */
static size_t view(uint64_t *out)
{
    moirai_node_stats_t st;
    long live = moirai_node_peers(node, out + 2, MAX_VIEW);
    if (live < 0 || moirai_node_stats(node, &st) < 0)
        return 0;
    out[0] = (uint64_t)live;
    out[1] = st.peers_dead;
    return 2 + (size_t)(live < MAX_VIEW ? live : MAX_VIEW);
}

static void command(char *line)
{
    char addr[64];
    unsigned n;
    if (strncmp(line, "view", 4) == 0) {
        uint64_t v[2 + MAX_VIEW];
        size_t k = view(v);
        printf("VIEW %llu %llu %llu %llu", (unsigned long long)(k ? v[0] : 0),
               (unsigned long long)(k ? v[1] : 0),
               (unsigned long long)atomic_load_explicit(&blocked_started, memory_order_relaxed),
               (unsigned long long)atomic_load_explicit(&blocked_cancelled, memory_order_relaxed));
        for (size_t i = 2; i < k; i++)
            printf(" %llu", (unsigned long long)v[i]);
        printf("\n");
    } else if (sscanf(line, "runs %u", &n) == 1 && n <= WORK_XS) {
        printf("RUNS");
        for (unsigned i = 0; i < n; i++)
            printf(" %u", (unsigned)atomic_load_explicit(&runs[i], memory_order_relaxed));
        printf("\n");
    } else if (sscanf(line, "connect %63s", addr) == 1) {
        printf("CONNECT %d\n",
               moirai_node_connect(node, addr, moirai_deadline_after(5000000000ull)));
    } else {
        printf("ERROR unknown command\n");
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s id key listen [seed]\n", argv[0]);
        return 2;
    }
    self_id = strtoull(argv[1], NULL, 0);
    moirai_runtime_t *rt;
    if (moirai_runtime_create(&rt, NULL) < 0)
        return 1;
    moirai_node_config_t cfg;
    moirai_node_config_init(&cfg);
    cfg.runtime = rt;
    cfg.id = self_id;
    cfg.key = argv[2];
    cfg.key_len = strlen(argv[2]);
    cfg.listen = argv[3];
    cfg.seeds = (const char *const *)&argv[4];
    cfg.seed_count = (size_t)(argc - 4);
    /* As the test's own node: 1 s without a frame is a death. */
    cfg.heartbeat_ns = 50000000ull;
    cfg.heartbeat_misses = 20;
    int rc = moirai_node_create(&node, &cfg);
    if (rc < 0) {
        fprintf(stderr, "node_create: %s\n", strerror(-rc));
        return 1;
    }
    if (moirai_node_register(node, "work", fn_work, NULL) < 0)
        return 1;
    printf("READY %u\n", (unsigned)moirai_node_port(node));
    fflush(stdout);
    char line[128];
    while (fgets(line, sizeof line, stdin))
        command(line);
    moirai_node_destroy(node);
    moirai_runtime_destroy(rt);
    return 0;
}
