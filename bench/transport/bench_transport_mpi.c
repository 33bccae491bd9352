/* moirai-bench, suite "transport", two cases over MPI (ns per round trip,
 * two MPI ranks on this host), each against a raw MPICH ping-pong
 * ("mpich": blocking MPI_Send / MPI_Recv from the main thread of a plain
 * MPICH program):
 *
 *   remote_task_rtt_mpi  "moirai": an empty remote task (8 bytes each way)
 *                        between two nodes on MOIRAI_NODE_BACKEND_MPI,
 *                        spawned and joined from a plain thread;
 *   mpi_link_rtt         "moirai": an 8-byte message and its echo through
 *                        the MPI backend's pair of links alone (the bytes
 *                        under a remote task), plain threads parked in
 *                        link reads.
 *
 * moirai-bench is one process, so every round of every implementation
 * runs `mpirun.mpich -np 2 moirai-bench-transport-mpi IMPL N`
 * (bench_mpi_rtt.c), whose rank 0 times its own measured section (after a
 * warm-up) and prints ns per round trip; the launch is outside the
 * number. The implementations of a case run in the same moirai-bench run,
 * round after round, like every other case. Without MPICH or mpirun.mpich
 * at configure time they are reported missing, with the reason. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../bench.h"

#ifdef MOIRAI_BENCH_TRANSPORT_MPI
extern char **environ;

/* Runs the program under mpirun for `impl` and returns what rank 0
 * prints, or -1 if it cannot be run, fails, or prints no number. */
static double run_mpi(const char *impl, uint64_t n)
{
    char count[32];
    snprintf(count, sizeof count, "%llu", (unsigned long long)(n ? n : 1));
    char *argv[] = {(char *)MOIRAI_BENCH_MPIRUN,
                    "-np",
                    "2",
                    (char *)MOIRAI_BENCH_TRANSPORT_MPI,
                    (char *)impl,
                    count,
                    NULL};
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0)
        return -1.0;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    pid_t pid;
    int err = posix_spawn(&pid, MOIRAI_BENCH_MPIRUN, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    if (err != 0) {
        fprintf(stderr, "transport: cannot run %s: %s\n", MOIRAI_BENCH_MPIRUN, strerror(err));
        close(out[0]);
        return -1.0;
    }
    char buf[128];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(out[0], buf + len, sizeof buf - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == sizeof buf - 1)
            break;
    }
    buf[len] = '\0';
    close(out[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1.0;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "transport: remote_task_rtt_mpi %s failed\n", impl);
        return -1.0;
    }
    char *end;
    double v = strtod(buf, &end);
    return end == buf ? -1.0 : v;
}

static double mpi_task(uint64_t n)
{
    return run_mpi("moirai_task", n);
}

static double mpi_link(uint64_t n)
{
    return run_mpi("moirai_link", n);
}

static double mpi_mpich(uint64_t n)
{
    return run_mpi("mpich", n);
}

static const bench_impl_t task_rtt_impls[] = {
    {"moirai", mpi_task, NULL},
    {"mpich", mpi_mpich, NULL},
};
static const bench_impl_t link_rtt_impls[] = {
    {"moirai", mpi_link, NULL},
    {"mpich", mpi_mpich, NULL},
};
#else
static const bench_impl_t task_rtt_impls[] = {
    {"moirai", NULL, MOIRAI_BENCH_TRANSPORT_MPI_MISSING},
    {"mpich", NULL, MOIRAI_BENCH_TRANSPORT_MPI_MISSING},
};
static const bench_impl_t link_rtt_impls[] = {
    {"moirai", NULL, MOIRAI_BENCH_TRANSPORT_MPI_MISSING},
    {"mpich", NULL, MOIRAI_BENCH_TRANSPORT_MPI_MISSING},
};
#endif

static const bench_case_t cases[] = {
    {"transport", "remote_task_rtt_mpi", "ns_per_op", 20000, 2000, task_rtt_impls,
     sizeof task_rtt_impls / sizeof task_rtt_impls[0]},
    {"transport", "mpi_link_rtt", "ns_per_op", 200000, 20000, link_rtt_impls,
     sizeof link_rtt_impls / sizeof link_rtt_impls[0]},
};

const bench_case_t *bench_transport_mpi_cases(size_t *count)
{
    *count = sizeof cases / sizeof cases[0];
    return cases;
}
