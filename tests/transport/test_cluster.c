/* Remote tasks across processes: this test process is node 1 and starts
 * helper nodes (test_cluster_node, ids 2 and 3) as separate processes on
 * loopback. Every wait is bounded; every helper exits when this process's
 * end of its stdin closes, so a failing test leaves nothing behind. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <moirai/async/runtime.h>
#include <moirai/core/clock.h>
#include <moirai/transport/node.h>

#include "test_scale.h"

#define KEY     "test-cluster-key-0123456789"
#define BAD_KEY "another-cluster-key-98765"

struct helper {
    pid_t pid;
    int in; /* its stdin: closing it stops the helper */
    uint16_t port;
};

static moirai_runtime_t *rt;
static moirai_node_t *n1;
static struct helper h2, h3;

static void start_helper(struct helper *h, int id, const char *key, int hs_ms, const char *seed)
{
    const char *bin = getenv("MOIRAI_CLUSTER_NODE");
    cr_assert(bin, "MOIRAI_CLUSTER_NODE is not set");
    int in[2], out[2];
    /* Close-on-exec, so no helper inherits another's stdin and keeps it
     * open after this process closed its end. */
    cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        char ids[16], hs[16];
        snprintf(ids, sizeof ids, "%d", id);
        snprintf(hs, sizeof hs, "%d", hs_ms);
        execl(bin, bin, ids, key, hs, seed, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    h->pid = pid;
    h->in = in[1];
    char line[64] = {0};
    size_t n = 0;
    struct pollfd pfd = {.fd = out[0], .events = POLLIN};
    while (n < sizeof line - 1 && (n == 0 || line[n - 1] != '\n')) {
        cr_assert_gt(poll(&pfd, 1, 30000), 0, "helper %d did not start", id);
        ssize_t r = read(out[0], line + n, 1);
        cr_assert_eq(r, 1, "helper %d exited before READY", id);
        n++;
    }
    close(out[0]);
    unsigned port = 0;
    cr_assert_eq(sscanf(line, "READY %u", &port), 1);
    h->port = (uint16_t)port;
}

static int stop_helper(struct helper *h)
{
    if (h->pid <= 0)
        return 0;
    close(h->in);
    int st = 0;
    waitpid(h->pid, &st, 0);
    h->pid = 0;
    return st;
}

static moirai_node_t *make_node(uint64_t id, const char *key)
{
    moirai_node_config_t cfg;
    moirai_node_config_init(&cfg);
    cfg.runtime = rt;
    cfg.id = id;
    cfg.key = key;
    cfg.key_len = strlen(key);
    cfg.heartbeat_ns = 50000000ull;
    cfg.heartbeat_misses = 20;
    moirai_node_t *n;
    cr_assert_eq(moirai_node_create(&n, &cfg), 0);
    return n;
}

static void cluster_up(void)
{
    cr_assert_eq(moirai_runtime_create(&rt, NULL), 0);
    n1 = make_node(1, KEY);
    char seed[32];
    snprintf(seed, sizeof seed, "127.0.0.1:%u", (unsigned)moirai_node_port(n1));
    start_helper(&h2, 2, KEY, 5000, seed);
    start_helper(&h3, 3, KEY, 1000, seed);
    cr_assert_eq(moirai_node_wait_peers(n1, 2, moirai_deadline_after(30000000000ull)), 0);
}

static void cluster_down(void)
{
    moirai_node_destroy(n1);
    cr_assert_eq(stop_helper(&h2), 0);
    int st = stop_helper(&h3);
    cr_assert(st == 0 || (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL));
    moirai_runtime_destroy(rt);
}

static uint64_t deadline_s(int s)
{
    return moirai_deadline_after((uint64_t)s * 1000000000ull);
}

/* Joins `h` (30 s at most) and returns its error or reads two u64s. */
static int join2(moirai_handle_t *h, uint64_t *a, uint64_t *b)
{
    void *v = NULL;
    int rc = moirai_handle_join_timed(h, deadline_s(30), &v);
    cr_assert_neq(rc, -ETIMEDOUT, "a remote task never ended");
    if (rc == 0) {
        size_t len;
        const uint64_t *d = moirai_remote_result_data(v, &len);
        cr_assert_eq(len, 2 * sizeof(uint64_t));
        *a = d[0];
        *b = d[1];
        moirai_remote_result_free(v);
    }
    moirai_handle_release(h);
    return rc;
}

/* The helper's counters, through its "stat" task. */
static void node_stat(uint64_t id, uint64_t out[4])
{
    moirai_handle_t *h;
    cr_assert_eq(moirai_node_spawn(n1, id, "stat", NULL, 0, 0, MOIRAI_DEADLINE_NEVER, &h), 0);
    void *v;
    cr_assert_eq(moirai_handle_join_timed(h, deadline_s(30), &v), 0);
    size_t len;
    const void *d = moirai_remote_result_data(v, &len);
    cr_assert_eq(len, 4 * sizeof(uint64_t));
    memcpy(out, d, len);
    moirai_remote_result_free(v);
    moirai_handle_release(h);
}

TestSuite(cluster, .init = cluster_up, .fini = cluster_down, .timeout = 240);

/* N tasks over the two helpers, round robin: every result exact, every
 * handle finished exactly once (joined once, released), and the helpers
 * ran the function exactly N times between them. */
Test(cluster, many_tasks)
{
    /* The meson file lowers it under the sanitizers (see there). */
    long n = env_long("MOIRAI_CLUSTER_TASKS", 100000);
    moirai_handle_t **hs = malloc((size_t)n * sizeof *hs);
    cr_assert(hs);
    uint64_t t0 = moirai_clock_now_ns();
    for (long i = 0; i < n; i++) {
        uint64_t x = (uint64_t)i + 1;
        cr_assert_eq(moirai_node_spawn(n1, MOIRAI_NODE_ANY, "square", &x, sizeof x, 0,
                                       MOIRAI_DEADLINE_NEVER, &hs[i]),
                     0);
    }
    long on2 = 0, on3 = 0;
    for (long i = 0; i < n; i++) {
        uint64_t sq = 0, who = 0, x = (uint64_t)i + 1;
        int rc = join2(hs[i], &sq, &who);
        cr_assert_eq(rc, 0, "task %ld: %d", i, rc);
        cr_assert_eq(sq, x * x);
        cr_assert(who == 2 || who == 3);
        if (who == 2)
            on2++;
        else
            on3++;
    }
    uint64_t t1 = moirai_clock_now_ns();
    free(hs);
    /* Round robin over two live peers: an even split. */
    cr_assert_eq(on2, (n + 1) / 2);
    cr_assert_eq(on3, n / 2);
    uint64_t s2[4], s3[4];
    node_stat(2, s2);
    node_stat(3, s3);
    cr_assert_eq(s2[0] + s3[0], (uint64_t)n, "the helpers ran square %llu times for %ld tasks",
                 (unsigned long long)(s2[0] + s3[0]), n);
    moirai_node_stats_t st;
    cr_assert_eq(moirai_node_stats(n1, &st), 0);
    cr_assert_eq(st.tasks_completed, (uint64_t)n + 2);
    cr_assert_eq(st.tasks_failed, 0);
    cr_assert_eq(st.rtt_count, (uint64_t)n + 2);
    cr_assert(st.rtt_min_ns > 0 && st.rtt_min_ns <= st.rtt_max_ns);
    moirai_node_stats_t p2;
    cr_assert_eq(moirai_node_peer_stats(n1, 2, &p2), 0);
    cr_assert_eq(p2.tasks_sent, (uint64_t)(n + 1) / 2 + 1);
    cr_assert_gt(p2.bytes_sent, 0);
    cr_assert_gt(p2.bytes_received, 0);
    fprintf(stderr, "many_tasks: %ld tasks in %.2f s\n", n, (double)(t1 - t0) / 1e9);
}

/* Errors from the far side reach the joiner as they were returned. */
Test(cluster, remote_errors)
{
    moirai_handle_t *h;
    int32_t e = -EDOM;
    cr_assert_eq(moirai_node_spawn(n1, 2, "fail", &e, sizeof e, 0, MOIRAI_DEADLINE_NEVER, &h), 0);
    cr_assert_eq(moirai_handle_join_timed(h, deadline_s(30), NULL), -EDOM);
    moirai_handle_release(h);
    cr_assert_eq(moirai_node_spawn(n1, 3, "nosuch", NULL, 0, 0, MOIRAI_DEADLINE_NEVER, &h), 0);
    cr_assert_eq(moirai_handle_join_timed(h, deadline_s(30), NULL), -ENOENT);
    moirai_handle_release(h);
    cr_assert_eq(moirai_node_spawn(n1, 3, "square", "abc", 3, 0, MOIRAI_DEADLINE_NEVER, &h), 0);
    cr_assert_eq(moirai_handle_join_timed(h, deadline_s(30), NULL), -EINVAL);
    moirai_handle_release(h);
    /* A target that is not a peer. */
    cr_assert_eq(moirai_node_spawn(n1, 77, "square", NULL, 0, 0, MOIRAI_DEADLINE_NEVER, &h),
                 -EHOSTUNREACH);
}

/* A started task on another node sees its token cancelled; tasks
 * cancelled at once end with -ECANCELED, dropped before they start or
 * cancelled while running, never both or neither. */
Test(cluster, cancel_across_nodes)
{
    moirai_handle_t *h;
    cr_assert_eq(moirai_node_spawn(n1, 2, "block", NULL, 0, 0, MOIRAI_DEADLINE_NEVER, &h), 0);
    uint64_t s[4] = {0};
    uint64_t until = deadline_s(30);
    do {
        node_stat(2, s);
    } while (s[2] < 1 && !moirai_deadline_expired(until));
    cr_assert_eq(s[2], 1, "the blocking task never started");
    cr_assert_eq(moirai_handle_try_join(h, NULL), -EAGAIN);
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY); /* running, from the caller's view */
    cr_assert_eq(moirai_handle_join_timed(h, deadline_s(30), NULL), -ECANCELED);
    cr_assert_eq(moirai_handle_cancel(h), -EALREADY);
    moirai_handle_release(h);
    node_stat(2, s);
    cr_assert_eq(s[3], 1);

    enum { K = 200 };
    for (int i = 0; i < K; i++) {
        cr_assert_eq(moirai_node_spawn(n1, 3, "block", NULL, 0, 0, MOIRAI_DEADLINE_NEVER, &h), 0);
        moirai_handle_cancel(h);
        cr_assert_eq(moirai_handle_join_timed(h, deadline_s(30), NULL), -ECANCELED);
        moirai_handle_release(h);
    }
    node_stat(3, s);
    /* Every task that started was cancelled while running; the rest were
     * dropped before starting. */
    cr_assert_eq(s[2], s[3]);
    cr_assert_leq(s[2], K);
    fprintf(stderr, "cancel: %d tasks, %llu started then cancelled, %llu dropped unstarted\n", K,
            (unsigned long long)s[2], (unsigned long long)(K - s[2]));
}

/* A deadline ends a task with -ETIMEDOUT and cancels it on its node. */
Test(cluster, deadline)
{
    moirai_handle_t *h;
    cr_assert_eq(
        moirai_node_spawn(n1, 3, "block", NULL, 0, 0, moirai_deadline_after(200000000ull), &h), 0);
    cr_assert_eq(moirai_handle_join_timed(h, deadline_s(30), NULL), -ETIMEDOUT);
    moirai_handle_release(h);
    uint64_t s[4] = {0};
    uint64_t until = deadline_s(30);
    do {
        node_stat(3, s);
    } while (s[3] < s[2] && !moirai_deadline_expired(until));
    cr_assert_eq(s[2], s[3], "the timed-out task was not cancelled on its node");
}

/* kill -9 of node 3 while tasks run there: every task ends exactly once;
 * idempotent tasks finish on node 2, the others that were on node 3 fail
 * with -EHOSTDOWN; node 2 ran each task it reports exactly once; the
 * survivors keep working and agree that node 3 is dead. */
Test(cluster, kill9)
{
    enum { M = 400 };
    moirai_handle_t *hs[M];
    bool idem[M];
    for (int i = 0; i < M; i++) {
        struct __attribute__((packed)) {
            uint64_t x;
            uint32_t us;
        } arg = {(uint64_t)i + 7, 300000};
        idem[i] = (i / 2) % 2 == 0;
        cr_assert_eq(moirai_node_spawn(n1, MOIRAI_NODE_ANY, "slowsq", &arg, sizeof arg,
                                       idem[i] ? MOIRAI_REMOTE_IDEMPOTENT : 0,
                                       MOIRAI_DEADLINE_NEVER, &hs[i]),
                     0);
    }
    uint64_t s3[4] = {0};
    uint64_t until = deadline_s(30);
    do {
        node_stat(3, s3);
    } while (s3[1] < M / 2 && !moirai_deadline_expired(until));
    cr_assert_eq(kill(h3.pid, SIGKILL), 0);
    int done = 0, down = 0, on2 = 0, idem_on2 = 0, nonidem_on2 = 0;
    for (int i = 0; i < M; i++) {
        uint64_t sq = 0, who = 0, x = (uint64_t)i + 7;
        int rc = join2(hs[i], &sq, &who);
        if (idem[i]) {
            cr_assert_eq(rc, 0, "idempotent task %d: %d", i, rc);
        } else {
            cr_assert(rc == 0 || rc == -EHOSTDOWN, "task %d: %d", i, rc);
        }
        if (rc == 0) {
            cr_assert_eq(sq, x * x);
            done++;
            on2 += who == 2;
            if (who == 2 && idem[i])
                idem_on2++;
            else if (who == 2)
                nonidem_on2++;
        } else {
            down++;
        }
    }
    cr_assert_eq(done + down, M);
    uint64_t s2[4];
    node_stat(2, s2);
    /* Node 2 ran slowsq once per result it produced: no task ran twice
     * there, and none that failed ran there. */
    cr_assert_eq(s2[1], (uint64_t)on2);
    moirai_node_stats_t st;
    moirai_node_stats(n1, &st);
    cr_assert_eq(st.peers_dead, 1);
    fprintf(stderr, "kill9: %d tasks: %d completed (%d on node 2), %d -EHOSTDOWN, %llu retried\n",
            M, done, on2, down, (unsigned long long)st.tasks_retried);
    /* Round robin gave each node M/2 tasks, a quarter of all of each
     * kind; every retry went to node 2 and finished there. */
    cr_assert_eq(nonidem_on2, M / 4);
    cr_assert_eq(st.tasks_retried, (uint64_t)(idem_on2 - M / 4));
    uint64_t ids[4];
    cr_assert_eq(moirai_node_peers(n1, ids, 4), 1);
    cr_assert_eq(ids[0], 2);
    /* The survivors keep working. */
    for (int i = 0; i < 100; i++) {
        moirai_handle_t *h;
        uint64_t x = (uint64_t)i, sq, who;
        cr_assert_eq(moirai_node_spawn(n1, MOIRAI_NODE_ANY, "square", &x, sizeof x, 0,
                                       MOIRAI_DEADLINE_NEVER, &h),
                     0);
        cr_assert_eq(join2(h, &sq, &who), 0);
        cr_assert_eq(sq, x * x);
        cr_assert_eq(who, 2);
    }
    /* Node 3 is unreachable by id now. */
    moirai_handle_t *h;
    cr_assert_eq(moirai_node_spawn(n1, 3, "square", NULL, 0, 0, MOIRAI_DEADLINE_NEVER, &h),
                 -EHOSTUNREACH);
}

/* Spawns "square" of `x` where data key `key` lives. */
static int spawn_at_key(const char *key, uint64_t x, moirai_handle_t **h)
{
    moirai_remote_attr_t attr;
    moirai_remote_attr_init(&attr);
    attr.placement = MOIRAI_PLACEMENT_LOCALITY;
    attr.key = key;
    return moirai_node_spawn_attr(n1, MOIRAI_NODE_ANY, "square", &x, sizeof x, &attr, h);
}

/* How many live peers helper `id` has, through its "peers" task. */
static uint64_t helper_peers(uint64_t id)
{
    moirai_handle_t *h;
    uint64_t n = 0, who = 0;
    cr_assert_eq(moirai_node_spawn(n1, id, "peers", NULL, 0, 0, MOIRAI_DEADLINE_NEVER, &h), 0);
    cr_assert_eq(join2(h, &n, &who), 0);
    cr_assert_eq(who, id);
    return n;
}

/* kill -9 of node 3 with tasks on it, then node 3 restarted as a new
 * process under the same id (a later incarnation, from the clock): it
 * joins through node 1, becomes alive on node 1 and node 2 (which dials
 * it after node 1's membership frame), and runs new tasks placed by its
 * data key "node-3"; the tasks of the killed process ended exactly once
 * with -EHOSTDOWN and none reached the new one. */
Test(cluster, rejoin_after_kill9)
{
    enum { M = 20 };
    uint64_t until = deadline_s(30);
    while (moirai_node_key_holders(n1, "node-3", NULL, 0) != 1 && !moirai_deadline_expired(until))
        usleep(1000);
    moirai_handle_t *hs[M];
    for (int i = 0; i < M; i++)
        cr_assert_eq(moirai_node_spawn(n1, 3, "block", NULL, 0, 0, MOIRAI_DEADLINE_NEVER, &hs[i]),
                     0);
    uint64_t s3[4] = {0};
    until = deadline_s(30);
    do {
        node_stat(3, s3);
    } while (s3[2] < M && !moirai_deadline_expired(until));
    cr_assert_eq(s3[2], M, "the blocking tasks did not all start on node 3");
    cr_assert_eq(kill(h3.pid, SIGKILL), 0);
    int st = stop_helper(&h3);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    for (int i = 0; i < M; i++) {
        uint64_t a, b;
        cr_assert_eq(join2(hs[i], &a, &b), -EHOSTDOWN, "task %d", i);
    }
    until = deadline_s(30);
    while (helper_peers(2) != 1 && !moirai_deadline_expired(until))
        usleep(1000);
    cr_assert_eq(helper_peers(2), 1, "node 2 did not see node 3 die");
    moirai_handle_t *h;
    cr_assert_eq(spawn_at_key("node-3", 1, &h), -ENOENT);

    char seed[32];
    snprintf(seed, sizeof seed, "127.0.0.1:%u", (unsigned)moirai_node_port(n1));
    start_helper(&h3, 3, KEY, 1000, seed);
    cr_assert_eq(moirai_node_wait_peers(n1, 2, deadline_s(30)), 0);
    until = deadline_s(30);
    while ((helper_peers(2) != 2 || helper_peers(3) != 2) && !moirai_deadline_expired(until))
        usleep(1000);
    cr_assert_eq(helper_peers(2), 2, "node 2 did not reconnect to node 3");
    cr_assert_eq(helper_peers(3), 2, "node 3 did not rejoin the whole mesh");
    until = deadline_s(30);
    while (moirai_node_key_holders(n1, "node-3", NULL, 0) != 1 && !moirai_deadline_expired(until))
        usleep(1000);
    for (int i = 0; i < M; i++)
        cr_assert_eq(spawn_at_key("node-3", (uint64_t)i, &hs[i]), 0);
    for (int i = 0; i < M; i++) {
        uint64_t sq = 0, who = 0;
        cr_assert_eq(join2(hs[i], &sq, &who), 0);
        cr_assert_eq(sq, (uint64_t)i * (uint64_t)i);
        cr_assert_eq(who, 3);
    }
    node_stat(3, s3);
    cr_assert_eq(s3[0], M, "the new node 3 ran something else than the new tasks");
    cr_assert_eq(s3[2], 0, "an old task reached the new node 3");
    moirai_node_stats_t ns;
    moirai_node_stats(n1, &ns);
    cr_assert_eq(ns.tasks_failed, M);
    cr_assert_eq(ns.peers_dead, 1);
}

/* A node with another key is refused both ways, and the cluster keeps
 * serving. */
Test(cluster, wrong_key)
{
    moirai_node_t *bad = make_node(9, BAD_KEY);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)h2.port);
    cr_assert_eq(moirai_node_connect(bad, addr, deadline_s(30)), -EACCES);
    moirai_node_stats_t st;
    moirai_node_stats(bad, &st);
    cr_assert_eq(st.tasks_received, 0);
    moirai_node_destroy(bad);

    /* A helper process with the wrong key dials node 1. */
    struct helper h4;
    char seed[32];
    snprintf(seed, sizeof seed, "127.0.0.1:%u", (unsigned)moirai_node_port(n1));
    start_helper(&h4, 4, BAD_KEY, 1000, seed);
    uint64_t until = deadline_s(30);
    do {
        moirai_node_stats(n1, &st);
    } while (st.auth_failures < 1 && !moirai_deadline_expired(until));
    cr_assert_geq(st.auth_failures, 1);
    cr_assert_eq(moirai_node_peers(n1, NULL, 0), 2);
    cr_assert_eq(stop_helper(&h4), 0);

    moirai_handle_t *h;
    uint64_t x = 5, sq, who;
    cr_assert_eq(moirai_node_spawn(n1, 2, "square", &x, sizeof x, 0, MOIRAI_DEADLINE_NEVER, &h), 0);
    cr_assert_eq(join2(h, &sq, &who), 0);
    cr_assert_eq(sq, 25);
}

static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* True when the other side closed `fd` within 30 s. */
static bool closed_by_peer(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char b[256];
    uint64_t until = deadline_s(30);
    while (!moirai_deadline_expired(until)) {
        if (poll(&p, 1, 1000) <= 0)
            continue;
        ssize_t r = read(fd, b, sizeof b);
        if (r <= 0)
            return true;
        /* An AUTH_CHALLENGE may come first for a valid HELLO; read on. */
    }
    return false;
}

/* Garbage, an oversized frame header, and a peer that stops mid-frame:
 * each connection is closed, and the node keeps serving the others. */
Test(cluster, garbage)
{
    int fd = raw_connect(h2.port);
    char junk[64];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 37 + 11);
    cr_assert_eq(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    cr_assert(closed_by_peer(fd), "garbage did not close the connection");
    close(fd);

    /* A valid magic and version, a HELLO of 1 GiB. */
    unsigned char hdr[24] = {'M', 'R', 'T', '1', 1, 1, 0, 0};
    hdr[16] = 0;
    hdr[17] = 0;
    hdr[18] = 0;
    hdr[19] = 0x40;
    fd = raw_connect(h2.port);
    cr_assert_eq(write(fd, hdr, sizeof hdr), (ssize_t)sizeof hdr);
    cr_assert(closed_by_peer(fd), "an oversized frame did not close the connection");
    close(fd);

    /* Half a header, then silence: node 3's handshake timeout (1 s). */
    fd = raw_connect(h3.port);
    cr_assert_eq(write(fd, hdr, 10), 10);
    cr_assert(closed_by_peer(fd), "a stalled handshake was not closed");
    close(fd);

    moirai_handle_t *h;
    uint64_t x = 9, sq, who;
    for (uint64_t id = 2; id <= 3; id++) {
        cr_assert_eq(
            moirai_node_spawn(n1, id, "square", &x, sizeof x, 0, MOIRAI_DEADLINE_NEVER, &h), 0);
        cr_assert_eq(join2(h, &sq, &who), 0);
        cr_assert_eq(sq, 81);
        cr_assert_eq(who, id);
    }
}
