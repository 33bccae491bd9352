/* Round trip of a remote task between two nodes in two processes of one
 * host: the shared-memory backend (MOIRAI_NODE_BACKEND_SHM) against the
 * TCP backend on loopback, in the same run. A forked child runs one node
 * of each backend on one runtime, with "empty" registered (it answers
 * its 8-byte payload); this process runs the other node of each pair and,
 * from a plain thread, spawns "empty" with a sequence number, joins the
 * handle and checks the answer, one task in flight at a time. Samples
 * alternate between the backends (A B A B ...); medians and their ratio
 * are printed.
 *
 * Usage: moirai-bench-shm-node-rtt [samples (11)] [tasks per sample (1000)]. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <moirai/async/runtime.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/transport/node.h>

static const char key[] = "moirai-bench shm_node_rtt key 0123456789";

static int empty(void *arg, const void *payload, size_t len, const moirai_cancel_token_t *cancel,
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

static moirai_node_t *make(moirai_runtime_t *rt, uint64_t id, moirai_node_backend_t backend,
                           const char *listen, const char *seed)
{
    moirai_node_config_t cfg;
    moirai_node_config_init(&cfg);
    cfg.runtime = rt;
    cfg.id = id;
    cfg.key = key;
    cfg.key_len = sizeof key - 1;
    cfg.backend = backend;
    cfg.listen = listen;
    cfg.seeds = &seed;
    cfg.seed_count = seed ? 1 : 0;
    moirai_node_t *n;
    int rc = moirai_node_create(&n, &cfg);
    if (rc != 0) {
        fprintf(stderr, "shm_node_rtt: node create: %s\n", strerror(-rc));
        exit(1);
    }
    return n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int samples = argc > 1 ? atoi(argv[1]) : 11;
    int per = argc > 2 ? atoi(argv[2]) : 1000;
    if (samples <= 0 || per <= 0 || !moirai_node_backend_supported(MOIRAI_NODE_BACKEND_SHM)) {
        fprintf(stderr, "shm_node_rtt: bad arguments, or no shm backend in this build\n");
        return 1;
    }
    char shm[32];
    snprintf(shm, sizeof shm, "shm:rtt%u", (unsigned)getpid());
    int ready[2];
    if (pipe(ready) != 0)
        return 1;
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        moirai_runtime_t *rt;
        if (moirai_runtime_create(&rt, NULL) != 0)
            _exit(1);
        moirai_node_t *t = make(rt, 2, MOIRAI_NODE_BACKEND_TCP, "127.0.0.1:0", NULL);
        moirai_node_t *s = make(rt, 2, MOIRAI_NODE_BACKEND_SHM, shm, NULL);
        moirai_node_register(t, "empty", empty, NULL);
        moirai_node_register(s, "empty", empty, NULL);
        uint16_t port = moirai_node_port(t);
        if (write(ready[1], &port, sizeof port) != sizeof port)
            _exit(1);
        pause(); /* killed by the parent */
        _exit(0);
    }
    uint16_t port;
    if (read(ready[0], &port, sizeof port) != sizeof port)
        return 1;
    char tcp[32];
    snprintf(tcp, sizeof tcp, "127.0.0.1:%u", port);
    moirai_runtime_t *rt;
    if (moirai_runtime_create(&rt, NULL) != 0)
        return 1;
    moirai_node_t *n[2] = {make(rt, 1, MOIRAI_NODE_BACKEND_SHM, NULL, shm),
                           make(rt, 1, MOIRAI_NODE_BACKEND_TCP, "127.0.0.1:0", tcp)};
    for (int i = 0; i < 2; i++)
        if (moirai_node_wait_peers(n[i], 1, moirai_deadline_after(10 * MOIRAI_NS_PER_S)) != 0) {
            fprintf(stderr, "shm_node_rtt: no peer\n");
            return 1;
        }
    uint64_t *ns[2] = {calloc((size_t)samples, 8), calloc((size_t)samples, 8)};
    for (int s = -1; s < samples; s++) { /* sample -1 warms up */
        for (int w = 0; w < 2; w++) {
            uint64_t t0 = moirai_clock_now_ns();
            for (int i = 0; i < per; i++) {
                uint64_t seq = (uint64_t)i;
                moirai_handle_t *h;
                void *v;
                if (moirai_node_spawn(n[w], 2, "empty", &seq, sizeof seq, 0, MOIRAI_DEADLINE_NEVER,
                                      &h) != 0 ||
                    moirai_handle_join(h, &v) != 0) {
                    fprintf(stderr, "shm_node_rtt: task failed\n");
                    return 1;
                }
                size_t len;
                const void *d = moirai_remote_result_data(v, &len);
                if (len != sizeof seq || memcmp(d, &seq, sizeof seq) != 0) {
                    fprintf(stderr, "shm_node_rtt: wrong answer\n");
                    return 1;
                }
                moirai_remote_result_free(v);
                moirai_handle_release(h);
            }
            if (s >= 0)
                ns[w][s] = (moirai_clock_now_ns() - t0) / (uint64_t)per;
        }
    }
    for (int w = 0; w < 2; w++)
        qsort(ns[w], (size_t)samples, sizeof *ns[w], cmp_u64);
    uint64_t ms = ns[0][samples / 2], mt = ns[1][samples / 2];
    printf("remote task round trip between two processes, median of %d samples x %d:\n", samples,
           per);
    printf("  shm backend   %8.2f us  (min %.2f, max %.2f)\n", ms / 1e3, ns[0][0] / 1e3,
           ns[0][samples - 1] / 1e3);
    printf("  tcp backend   %8.2f us  (min %.2f, max %.2f)\n", mt / 1e3, ns[1][0] / 1e3,
           ns[1][samples - 1] / 1e3);
    printf("  tcp / shm     %8.2f x\n", ms > 0 ? (double)mt / (double)ms : 0.0);
    for (int i = 0; i < 2; i++)
        moirai_node_destroy(n[i]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    moirai_runtime_destroy(rt);
    free(ns[0]);
    free(ns[1]);
    /* The killed child's listener leaves its accept ring and doorbell
     * (docs/transport.md, "When a process dies"): remove them. */
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/moirai-shm.%s", shm + 4);
    unlink(path);
    snprintf(path, sizeof path, "/dev/shm/moirai-shm.%s.bell", shm + 4);
    unlink(path);
    return 0;
}
