/* The program the bpftrace test traces (run_bpftrace.sh): runs exactly N
 * tasks on a two-worker scheduler, half spawned from outside the pool
 * (through the injector) and half from inside a task (into the spawning
 * worker's own queues), so both spawn paths fire task_spawn. It checks by
 * itself that every task ran exactly once and prints "ran N"; the script
 * compares that with the events the tracer counted.
 *
 *   probe_spawn N        (N even, 2 to 100000) */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <moirai/sched.h>

static _Atomic long ran;

static int leaf(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    /* Relaxed: read after destroy, which joins the workers. */
    atomic_fetch_add_explicit(&ran, 1, memory_order_relaxed);
    return 0;
}

static int parent(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    int rc = moirai_sched_spawn(arg, leaf, NULL, NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "probe_spawn: inner spawn failed: %d\n", rc);
        exit(1);
    }
    return leaf(NULL, NULL, NULL);
}

int main(int argc, char **argv)
{
    long n = argc == 2 ? strtol(argv[1], NULL, 10) : 0;
    if (n < 2 || n > 100000 || n % 2 != 0) {
        fprintf(stderr, "usage: probe_spawn N (N even, 2 to 100000)\n");
        return 2;
    }
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 2;
    moirai_sched_t *s;
    int rc = moirai_sched_create(&s, &cfg);
    if (rc != 0) {
        fprintf(stderr, "probe_spawn: create failed: %d\n", rc);
        return 1;
    }
    for (long i = 0; i < n / 2; i++) {
        rc = moirai_sched_spawn(s, parent, s, NULL, NULL);
        if (rc != 0) {
            fprintf(stderr, "probe_spawn: spawn failed: %d\n", rc);
            return 1;
        }
    }
    /* DRAIN runs every accepted task, the ones they spawn included. */
    rc = moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN);
    if (rc != 0) {
        fprintf(stderr, "probe_spawn: destroy failed: %d\n", rc);
        return 1;
    }
    long got = atomic_load_explicit(&ran, memory_order_relaxed);
    if (got != n) {
        fprintf(stderr, "probe_spawn: %ld tasks ran, expected %ld\n", got, n);
        return 1;
    }
    printf("ran %ld\n", got);
    return 0;
}
