/* moirai-bench, suite "sched": the OpenMP peers (see peer.h).
 *
 * One source, built twice: with gcc -fopenmp against gcc's libgomp (impl
 * "gomp") and with clang -fopenmp=libomp against LLVM's libomp (impl
 * "omp"), each as a shared module of its own (bench/meson.build).
 *
 * The calling thread is the master of every parallel region, so a team of
 * 2 is the caller plus one pool thread, both working. Before the clock
 * starts an empty region of the team's size makes the runtime create its
 * pool thread; after the clock stops omp_pause_resource_all(omp_pause_hard)
 * releases the pool. That matters for fairness in interleaved rounds:
 * libomp's idle threads otherwise spin for KMP_BLOCKTIME (200 ms) after a
 * region and libgomp's for GOMP_SPINCOUNT, taking a CPU from whichever
 * implementation runs next. Within the measured section the runtimes keep
 * their default wait policies, so back-to-back regions find the pool
 * thread awake, as tuned. */
#include <stdint.h>
#include <time.h>

#include <omp.h>

#include "peer.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Creates the team's pool threads outside the measured section. */
static int team_up(int threads)
{
    int got = 0;
    omp_set_dynamic(0);
#pragma omp parallel num_threads(threads)
    {
#pragma omp master
        got = omp_get_num_threads();
    }
    return got == threads ? 0 : -1;
}

/* Releases the pool so no thread of it spins after the round. The return
 * value is ignored: a runtime that cannot pause leaves its threads parked
 * after their spin, which skews the next round a little but breaks
 * nothing. */
static void team_down(void)
{
    (void)omp_pause_resource_all(omp_pause_hard);
}

/* Every call with n >= 2 forks fib(n - 1) as a task, runs fib(n - 2) itself
 * and joins with taskwait: the OpenMP form of a join. */
static uint64_t fib(int n)
{
    if (n < 2)
        return (uint64_t)n;
    uint64_t x, y;
#pragma omp task shared(x) firstprivate(n)
    x = fib(n - 1);
    y = fib(n - 2);
#pragma omp taskwait
    return x + y;
}

double moirai_peer_fib(int threads, int n, uint64_t *result)
{
    if (team_up(threads) < 0)
        return -1.0;
    uint64_t r = 0;
    /* The workload once untimed first, as every implementation of the case
     * does, so that the team's threads have settled on the CPUs. */
#pragma omp parallel num_threads(threads)
    {
#pragma omp single
        r = fib(n);
    }
    double t0 = now_s();
#pragma omp parallel num_threads(threads)
    {
#pragma omp single
        r = fib(n);
    }
    double t = now_s() - t0;
    team_down();
    *result = r;
    return t;
}

/* Keeps the empty body from being optimized into nothing but costs no
 * more than a call. */
static void empty_body(long i)
{
    __asm__ volatile("" : : "r"(i) : "memory");
}

double moirai_peer_for_empty(int threads, uint64_t iters)
{
    if (team_up(threads) < 0)
        return -1.0;
    double t0 = now_s();
    for (uint64_t k = 0; k < iters; k++) {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (long i = 0; i < 2; i++)
            empty_body(i);
    }
    double t = now_s() - t0;
    team_down();
    return t * 1e9 / (double)(iters ? iters : 1);
}

double moirai_peer_reduce(int threads, const int32_t *data, size_t n, int64_t *sum)
{
    if (team_up(threads) < 0)
        return -1.0;
    int64_t s = 0;
    long count = (long)n;
    double t0 = now_s();
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : s)
    for (long i = 0; i < count; i++)
        s += data[i];
    double t = now_s() - t0;
    team_down();
    *sum = s;
    return t;
}
