/* A cluster node as a separate process for the partition test
 * (test_partition.c), run inside a network namespace by `ip netns exec`:
 *
 *   test_partition_node <id> <key> <listen> [seed]
 *
 * Listens on `listen` ("a.b.c.d:0": the namespace's address, a free port),
 * registers "work" (test_partition_work.h), prints "READY <port>" on
 * stdout, then answers commands read from stdin, one per line, each with
 * one line on stdout:
 *   view            -> "VIEW <live> <peers_dead> <started> <cancelled> [id ...]":
 *                      the live peers' count, the peers this node declared
 *                      dead, the `work` runs that blocked here and those of
 *                      them whose token was cancelled, then the live ids
 *   runs <n>        -> "RUNS <c0> <c1> ... <c(n-1)>": how many times `work`
 *                      ran here with x = 0 .. n-1 (n at most WORK_XS)
 *   spawn <n> <target> <block_on>
 *                   -> "SPAWNED <rc>": spawns n `work` tasks on `target`,
 *                      x = 100 .. 100+n-1, even ones idempotent, blocking on
 *                      node block_on, and keeps their handles (n at most
 *                      MAX_SPAWNED; rc is the first spawn error, or 0)
 *   join            -> "JOINED <answered> <hostdown> <other>": joins the kept
 *                      handles (30 s at most each) and counts how they ended
 *   connect <addr>  -> "CONNECT <rc>": moirai_node_connect()'s result
 * and at the end of stdin (the test's end of the pipe closed, also when the
 * test died) destroys its node and runtime and exits 0.
 *
 * The commands go through stdin rather than through remote tasks because
 * the isolated node must answer them while no network reaches it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/async/runtime.h>
#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/transport/node.h>

#include "test_partition_work.h"

#define MAX_VIEW    16
#define MAX_SPAWNED 64

static moirai_node_t *node;
static struct work_counts counts;
static moirai_handle_t *spawned[MAX_SPAWNED];
static unsigned spawned_n;

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

static int spawn_many(unsigned n, uint64_t target, uint64_t block_on)
{
    if (n > MAX_SPAWNED - spawned_n)
        return -EINVAL;
    for (unsigned i = 0; i < n; i++) {
        uint64_t in[2] = {100 + i, block_on};
        uint32_t flags = i % 2 == 0 ? MOIRAI_REMOTE_IDEMPOTENT : 0;
        int rc = moirai_node_spawn(node, target, "work", in, sizeof in, flags,
                                   MOIRAI_DEADLINE_NEVER, &spawned[spawned_n]);
        if (rc < 0)
            return rc;
        spawned_n++;
    }
    return 0;
}

static void join_all(void)
{
    unsigned answered = 0, hostdown = 0, other = 0;
    for (unsigned i = 0; i < spawned_n; i++) {
        void *v = NULL;
        int rc = moirai_handle_join_timed(spawned[i], moirai_deadline_after(30000000000ull), &v);
        if (rc == 0)
            answered++;
        else if (rc == -EHOSTDOWN)
            hostdown++;
        else
            other++;
        moirai_remote_result_free(v);
        moirai_handle_release(spawned[i]);
    }
    spawned_n = 0;
    printf("JOINED %u %u %u\n", answered, hostdown, other);
}

static void command(char *line)
{
    char addr[64];
    unsigned n;
    unsigned long long target, block_on;
    if (strncmp(line, "view", 4) == 0) {
        uint64_t v[2 + MAX_VIEW];
        size_t k = view(v);
        printf("VIEW %llu %llu %llu %llu", (unsigned long long)(k ? v[0] : 0),
               (unsigned long long)(k ? v[1] : 0),
               (unsigned long long)atomic_load_explicit(&counts.started, memory_order_relaxed),
               (unsigned long long)atomic_load_explicit(&counts.cancelled, memory_order_relaxed));
        for (size_t i = 2; i < k; i++)
            printf(" %llu", (unsigned long long)v[i]);
        printf("\n");
    } else if (sscanf(line, "runs %u", &n) == 1 && n <= WORK_XS) {
        printf("RUNS");
        for (unsigned i = 0; i < n; i++)
            printf(" %u", (unsigned)atomic_load_explicit(&counts.runs[i], memory_order_relaxed));
        printf("\n");
    } else if (sscanf(line, "spawn %u %llu %llu", &n, &target, &block_on) == 3) {
        printf("SPAWNED %d\n", spawn_many(n, target, block_on));
    } else if (strncmp(line, "join", 4) == 0) {
        join_all();
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
    counts.self_id = strtoull(argv[1], NULL, 0);
    moirai_runtime_t *rt;
    if (moirai_runtime_create(&rt, NULL) < 0)
        return 1;
    moirai_node_config_t cfg;
    moirai_node_config_init(&cfg);
    cfg.runtime = rt;
    cfg.id = counts.self_id;
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
    if (moirai_node_register(node, "work", partition_work, &counts) < 0)
        return 1;
    printf("READY %u\n", (unsigned)moirai_node_port(node));
    fflush(stdout);
    char line[128];
    while (fgets(line, sizeof line, stdin))
        command(line);
    /* Handles a test left unjoined (it failed) have ended by the end of
     * the destroy (-ESHUTDOWN at the latest); a result is freed. */
    moirai_node_destroy(node);
    for (unsigned i = 0; i < spawned_n; i++) {
        void *v = NULL;
        if (moirai_handle_try_join(spawned[i], &v) == 0)
            moirai_remote_result_free(v);
        moirai_handle_release(spawned[i]);
    }
    moirai_runtime_destroy(rt);
    return 0;
}
