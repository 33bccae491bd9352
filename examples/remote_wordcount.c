/* Word count over three nodes as processes on loopback.
 *
 * The parent forks two workers first (before any thread exists), then
 * becomes node 1: it listens on 127.0.0.1, hands its port to the workers
 * through pipes, and they join the cluster as nodes 2 and 3 with node 1 as
 * their seed. Each worker registers "wordcount", which counts the words of
 * a chunk of text and answers "word count" lines. Node 1 cuts a text into
 * chunks, spawns one remote task per chunk on any node (round robin),
 * joins the handles and merges the counts, then checks the total against
 * a count made locally. Closing the pipes stops the workers.
 *
 *   remote_wordcount [copies of the text, default 200]
 *
 * Exits 0 when the remote total equals the local one. Over several
 * machines the same code runs with `listen = "0.0.0.0:7000"` on each and
 * the others' addresses as seeds (docs/transport.md, "Remote tasks"). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <moirai/async/runtime.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/transport/node.h>

static const char key[] = "example-cluster-key: change me in real use";

static const char text[] = "the moirai spin the thread of life and measure it and cut it "
                           "clotho spins lachesis measures atropos cuts and the thread ends "
                           "a task is a thread of work and a node is a place where it runs ";

/* Counts the words of `payload`; answers one "word count\n" line per
 * distinct word. A small linear table: chunks are short. */
static int wordcount(void *arg, const void *payload, size_t len,
                     const moirai_cancel_token_t *cancel, void **result, size_t *result_len)
{
    (void)arg;
    (void)cancel;
    enum { MAXW = 256 };
    struct {
        char w[32];
        unsigned n;
    } tab[MAXW];
    size_t nw = 0;
    const char *p = payload, *end = p + len;
    while (p < end) {
        while (p < end && !isalpha((unsigned char)*p))
            p++;
        const char *s = p;
        while (p < end && isalpha((unsigned char)*p))
            p++;
        size_t l = (size_t)(p - s);
        if (l == 0 || l >= sizeof tab[0].w)
            continue;
        size_t i = 0;
        while (i < nw && !(strlen(tab[i].w) == l && memcmp(tab[i].w, s, l) == 0))
            i++;
        if (i == nw) {
            if (nw == MAXW)
                return -E2BIG;
            memcpy(tab[nw].w, s, l);
            tab[nw].w[l] = '\0';
            tab[nw++].n = 0;
        }
        tab[i].n++;
    }
    char *out = moirai_malloc(nw * 48 + 1);
    if (!out)
        return -ENOMEM;
    size_t o = 0;
    for (size_t i = 0; i < nw; i++)
        o += (size_t)sprintf(out + o, "%s %u\n", tab[i].w, tab[i].n);
    *result = out;
    *result_len = o;
    return 0;
}

static moirai_node_t *start_node(moirai_runtime_t **rt, uint64_t id, const char *seed)
{
    if (moirai_runtime_create(rt, NULL) < 0)
        return NULL;
    moirai_node_config_t cfg;
    moirai_node_config_init(&cfg);
    cfg.runtime = *rt;
    cfg.id = id;
    cfg.key = key;
    cfg.key_len = sizeof key - 1;
    cfg.seeds = &seed;
    cfg.seed_count = seed ? 1 : 0;
    moirai_node_t *node;
    int rc = moirai_node_create(&node, &cfg);
    if (rc < 0) {
        fprintf(stderr, "node %llu: %s\n", (unsigned long long)id, strerror(-rc));
        return NULL;
    }
    return node;
}

/* A worker: reads node 1's port, joins, serves until the pipe closes. */
static int worker(uint64_t id, int from_parent)
{
    unsigned port;
    char line[32] = {0};
    if (read(from_parent, line, sizeof line - 1) <= 0 || sscanf(line, "%u", &port) != 1)
        return 1;
    char seed[32];
    snprintf(seed, sizeof seed, "127.0.0.1:%u", port);
    moirai_runtime_t *rt;
    moirai_node_t *node = start_node(&rt, id, seed);
    if (!node || moirai_node_register(node, "wordcount", wordcount, NULL) < 0)
        return 1;
    while (read(from_parent, line, sizeof line) > 0) {
    }
    moirai_node_destroy(node);
    moirai_runtime_destroy(rt);
    return 0;
}

/* Adds "word count" lines to the running total of words. */
static unsigned long add_counts(const char *p, size_t len)
{
    unsigned long total = 0;
    const char *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        const char *sp = memchr(p, ' ', (size_t)(nl - p));
        if (sp)
            total += strtoul(sp + 1, NULL, 10);
        p = nl + 1;
    }
    return total;
}

int main(int argc, char **argv)
{
    int copies = argc > 1 ? atoi(argv[1]) : 200;
    if (copies <= 0)
        copies = 200;
    int pipes[2][2];
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        if (pipe(pipes[i]) < 0)
            return 1;
        pids[i] = fork();
        if (pids[i] < 0)
            return 1;
        if (pids[i] == 0) {
            close(pipes[i][1]);
            if (i == 1)
                close(pipes[0][1]);
            _exit(worker((uint64_t)i + 2, pipes[i][0]));
        }
        close(pipes[i][0]);
    }

    moirai_runtime_t *rt;
    moirai_node_t *node = start_node(&rt, 1, NULL);
    if (!node)
        return 1;
    char port[16];
    int n = snprintf(port, sizeof port, "%u\n", (unsigned)moirai_node_port(node));
    for (int i = 0; i < 2; i++)
        if (write(pipes[i][1], port, (size_t)n) != n)
            return 1;
    int rc = moirai_node_wait_peers(node, 2, moirai_deadline_after(30000000000ull));
    if (rc < 0) {
        fprintf(stderr, "the workers did not join: %s\n", strerror(-rc));
        return 1;
    }

    /* One chunk per copy of the text; a local count to check against. */
    unsigned long local = 0;
    for (const char *p = text; *p;) {
        while (*p && !isalpha((unsigned char)*p))
            p++;
        if (*p)
            local++;
        while (isalpha((unsigned char)*p))
            p++;
    }
    local *= (unsigned long)copies;
    moirai_handle_t **hs = calloc((size_t)copies, sizeof *hs);
    if (!hs)
        return 1;
    for (int i = 0; i < copies; i++) {
        rc = moirai_node_spawn(node, MOIRAI_NODE_ANY, "wordcount", text, sizeof text - 1,
                               MOIRAI_REMOTE_IDEMPOTENT, MOIRAI_DEADLINE_NEVER, &hs[i]);
        if (rc < 0) {
            fprintf(stderr, "spawn: %s\n", strerror(-rc));
            return 1;
        }
    }
    unsigned long remote = 0;
    for (int i = 0; i < copies; i++) {
        void *v;
        rc = moirai_handle_join(hs[i], &v);
        moirai_handle_release(hs[i]);
        if (rc < 0) {
            fprintf(stderr, "chunk %d: %s\n", i, strerror(-rc));
            return 1;
        }
        size_t len;
        const char *d = moirai_remote_result_data(v, &len);
        remote += add_counts(d, len);
        moirai_remote_result_free(v);
    }
    free(hs);
    moirai_node_stats_t st;
    moirai_node_stats(node, &st);
    printf("%d chunks over 2 workers: %lu words (local count %lu); mean round trip %.1f us\n",
           copies, remote, local,
           st.rtt_count ? (double)st.rtt_sum_ns / (double)st.rtt_count / 1e3 : 0.0);

    moirai_node_destroy(node);
    moirai_runtime_destroy(rt);
    int ok = 1;
    for (int i = 0; i < 2; i++) {
        close(pipes[i][1]);
        int status;
        waitpid(pids[i], &status, 0);
        ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    return remote == local && ok ? 0 : 1;
}
