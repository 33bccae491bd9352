/* Remote tasks over the shared-memory backend (MOIRAI_NODE_BACKEND_SHM):
 * the same node code as over TCP, with links over shared-memory rings.
 * Nodes in this process (tasks with exact counts, discovery of a third
 * node through membership, the listen string's errors) and a node in a
 * forked process killed with SIGKILL (its death is noticed; nothing is
 * left in /dev/shm). */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <moirai/async/runtime.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/transport/node.h>

#include "test_scale.h"

static const char key[] = "shm-backend-test-key-0123456789";

static uint64_t secs(int s)
{
    return moirai_deadline_after((uint64_t)s * MOIRAI_NS_PER_S);
}

/* "shm:<prefix><pid>_<n>", unique to this process and call. */
static void unique(char *out, size_t n, const char *prefix)
{
    static _Atomic unsigned k;
    snprintf(out, n, "shm:%s%u_%u", prefix, (unsigned)getpid(), atomic_fetch_add(&k, 1));
}

/* Objects of this process's listeners left in /dev/shm. */
static int leftovers(void)
{
    char mine[32];
    snprintf(mine, sizeof mine, "%u_", (unsigned)getpid());
    DIR *d = opendir("/dev/shm");
    cr_assert_not_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "moirai-shm.", 11) == 0 && strstr(e->d_name, mine) != NULL)
            count++;
    closedir(d);
    return count;
}

static moirai_node_t *make(moirai_runtime_t *rt, uint64_t id, const char *listen)
{
    moirai_node_config_t cfg;
    moirai_node_config_init(&cfg);
    cfg.runtime = rt;
    cfg.id = id;
    cfg.key = key;
    cfg.key_len = sizeof key - 1;
    cfg.backend = MOIRAI_NODE_BACKEND_SHM;
    cfg.listen = listen;
    cfg.max_payload = 4 << 20;
    moirai_node_t *n = NULL;
    cr_assert_eq(moirai_node_create(&n, &cfg), 0, "node %llu on %s", (unsigned long long)id,
                 listen ? listen : "(default)");
    return n;
}

static _Atomic long echo_runs;

static int fn_echo(void *arg, const void *payload, size_t len, const moirai_cancel_token_t *cancel,
                   void **result, size_t *result_len)
{
    (void)arg;
    (void)cancel;
    atomic_fetch_add(&echo_runs, 1);
    if (len == 0)
        return 0;
    void *out = moirai_malloc(len);
    if (!out)
        return -ENOMEM;
    memcpy(out, payload, len);
    *result = out;
    *result_len = len;
    return 0;
}

/* Runs `count` echo tasks of `len` bytes on `target` (all in flight at
 * once) and checks each result. */
static void run_echoes(moirai_node_t *from, uint64_t target, int count, size_t len)
{
    moirai_handle_t **h = calloc((size_t)count, sizeof *h);
    uint8_t *payload = malloc(len + 8);
    for (size_t j = 0; j < len + 8; j++)
        payload[j] = (uint8_t)(j * 13);
    for (int i = 0; i < count; i++) {
        /* Task i sends the pattern from offset i % 8. */
        cr_assert_eq(
            moirai_node_spawn(from, target, "echo", payload + i % 8, len, 0, secs(30), &h[i]), 0);
    }
    for (int i = 0; i < count; i++) {
        void *v;
        int rc = moirai_handle_join_timed(h[i], secs(30), &v);
        cr_assert_eq(rc, 0, "task %d of %d (%zu bytes): %d", i, count, len, rc);
        size_t got;
        const uint8_t *d = moirai_remote_result_data(v, &got);
        cr_assert_eq(got, len);
        cr_assert_eq(memcmp(d, payload + i % 8, len), 0, "task %d's result", i);
        moirai_remote_result_free(v);
        moirai_handle_release(h[i]);
    }
    free(payload);
    free(h);
}

static moirai_runtime_t *rt;

static void rt_up(void)
{
    cr_assert_eq(moirai_runtime_create(&rt, NULL), 0);
}

static void rt_down(void)
{
    cr_assert_eq(moirai_runtime_destroy(rt), 0);
}

TestSuite(shm_node, .init = rt_up, .fini = rt_down, .timeout = 60);

Test(shm_node, supported_and_listen_errors)
{
    cr_assert(moirai_node_backend_supported(MOIRAI_NODE_BACKEND_SHM));
    moirai_node_config_t cfg;
    moirai_node_config_init(&cfg);
    cfg.runtime = rt;
    cfg.key = key;
    cfg.key_len = sizeof key - 1;
    cfg.backend = MOIRAI_NODE_BACKEND_SHM;
    moirai_node_t *n = NULL;
    const char *bad[] = {"127.0.0.1:0", "shm:", "shm:a/b", "shm:0123456789abcdefg"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cfg.listen = bad[i];
        cr_assert_eq(moirai_node_create(&n, &cfg), -EINVAL, "%s", bad[i]);
        cr_assert_null(n);
    }
    cfg.listen = NULL;
    const char *seeds[] = {"10.0.0.1:4000"};
    cfg.seeds = seeds;
    cfg.seed_count = 1;
    cr_assert_eq(moirai_node_create(&n, &cfg), -EINVAL, "a TCP seed on the shm backend");
    /* A name is one listener's. */
    char name[40];
    unique(name, sizeof name, "u");
    moirai_node_t *a = make(rt, 1, name);
    cfg.seeds = NULL;
    cfg.seed_count = 0;
    cfg.listen = name;
    cr_assert_eq(moirai_node_create(&n, &cfg), -EADDRINUSE);
    cr_assert_null(n);
    moirai_node_destroy(a);
    cr_assert_eq(leftovers(), 0);
}

/* Two nodes: tasks with exact results and counts, both directions. */
Test(shm_node, two_nodes)
{
    char na[40], nb[40];
    unique(na, sizeof na, "a");
    unique(nb, sizeof nb, "b");
    moirai_node_t *a = make(rt, 10, na), *b = make(rt, 20, nb);
    cr_assert_eq(moirai_node_register(a, "echo", fn_echo, NULL), 0);
    cr_assert_eq(moirai_node_register(b, "echo", fn_echo, NULL), 0);
    cr_assert_eq(moirai_node_connect(a, nb, secs(10)), 0);
    cr_assert_eq(moirai_node_wait_peers(a, 1, secs(10)), 0);
    cr_assert_eq(moirai_node_wait_peers(b, 1, secs(10)), 0);
    long before = atomic_load(&echo_runs);
    run_echoes(a, 20, 500, 64);
    run_echoes(b, 10, 500, 64);
    int big = (int)scaled(8);
    run_echoes(a, 20, big, 3 << 20); /* each larger than a link's ring */
    cr_assert_eq(atomic_load(&echo_runs), before + 1000 + big, "each task ran exactly once");
    moirai_node_stats_t st;
    cr_assert_eq(moirai_node_stats(a, &st), 0);
    cr_assert_eq(st.tasks_completed, (uint64_t)(500 + big));
    cr_assert_eq(st.tasks_failed, 0);
    moirai_node_destroy(a);
    /* b sees the connection end. */
    uint64_t until = secs(10);
    while (moirai_node_peers(b, NULL, 0) > 0 && !moirai_deadline_expired(until))
        usleep(1000);
    cr_assert_eq(moirai_node_peers(b, NULL, 0), 0);
    moirai_node_destroy(b);
    cr_assert_eq(leftovers(), 0);
}

/* A third node that knows only one member finds the other through
 * membership: the shared-memory addresses travel in HELLO and
 * MEMBERSHIP frames unchanged. A node without a listen string gets a
 * name of its own. */
Test(shm_node, discovery)
{
    char na[40];
    unique(na, sizeof na, "d");
    moirai_node_t *a = make(rt, 1, na), *b = make(rt, 2, NULL), *c = make(rt, 3, NULL);
    cr_assert_eq(moirai_node_register(b, "echo", fn_echo, NULL), 0);
    cr_assert_eq(moirai_node_connect(b, na, secs(10)), 0);
    cr_assert_eq(moirai_node_connect(c, na, secs(10)), 0);
    cr_assert_eq(moirai_node_wait_peers(c, 2, secs(10)), 0, "c learnt b from a");
    cr_assert_eq(moirai_node_wait_peers(b, 2, secs(10)), 0);
    run_echoes(c, 2, 100, 100);
    moirai_node_destroy(c);
    moirai_node_destroy(b);
    moirai_node_destroy(a);
    DIR *d = opendir("/dev/shm");
    char pid[32];
    snprintf(pid, sizeof pid, "moirai-shm.n%u-", (unsigned)getpid());
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        cr_assert(strncmp(e->d_name, pid, strlen(pid)) != 0, "left %s", e->d_name);
    closedir(d);
    cr_assert_eq(leftovers(), 0);
}

/* A node in another process serves tasks, then is killed with SIGKILL
 * mid-stream: this node notices (the link reports the death, or the
 * heartbeats stop), its tasks there end, and nothing is left behind. */
Test(shm_node_proc, killed_peer, .timeout = 60)
{
    char name[40];
    unique(name, sizeof name, "k");
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        moirai_runtime_t *crt;
        if (moirai_runtime_create(&crt, NULL) != 0)
            _exit(1);
        moirai_node_t *n = make(crt, 99, name);
        moirai_node_register(n, "echo", fn_echo, NULL);
        char c = 'r';
        if (write(ready[1], &c, 1) != 1)
            _exit(2);
        pause();
        _exit(0);
    }
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1);
    cr_assert_eq(moirai_runtime_create(&rt, NULL), 0);
    moirai_node_t *a = make(rt, 5, NULL);
    cr_assert_eq(moirai_node_connect(a, name, secs(10)), 0);
    cr_assert_eq(moirai_node_wait_peers(a, 1, secs(10)), 0);
    run_echoes(a, 99, 200, 1000);
    /* Tasks in flight when it dies end (-EHOSTDOWN), none hangs. */
    moirai_handle_t *h[50];
    for (int i = 0; i < 50; i++)
        cr_assert_eq(moirai_node_spawn(a, 99, "echo", "x", 1, 0, MOIRAI_DEADLINE_NEVER, &h[i]), 0);
    kill(pid, SIGKILL);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    for (int i = 0; i < 50; i++) {
        void *v = NULL;
        int rc = moirai_handle_join_timed(h[i], secs(20), &v);
        cr_assert(rc == 0 || rc == -EHOSTDOWN, "task %d: %d", i, rc);
        if (rc == 0)
            moirai_remote_result_free(v);
        moirai_handle_release(h[i]);
    }
    uint64_t until = secs(20);
    while (moirai_node_peers(a, NULL, 0) > 0 && !moirai_deadline_expired(until))
        usleep(1000);
    cr_assert_eq(moirai_node_peers(a, NULL, 0), 0, "the dead node is noticed");
    moirai_node_destroy(a);
    cr_assert_eq(moirai_runtime_destroy(rt), 0);
    /* The dead node's accept ring is the only name it could leave; a
     * new listener on the name replaces it. */
    moirai_runtime_create(&rt, NULL);
    moirai_node_t *again = make(rt, 6, name);
    moirai_node_destroy(again);
    moirai_runtime_destroy(rt);
    cr_assert_eq(leftovers(), 0);
}
