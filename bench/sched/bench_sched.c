/* moirai-bench, suite "sched": the work-stealing scheduler against Rayon,
 * oneTBB and OpenMP.
 *
 * Every implementation runs the work on 2 pool threads, or on 1 pool
 * thread and the calling thread where the runtime has the caller take
 * part. Moirai: a scheduler created before the clock starts and destroyed
 * (DRAIN) after it stops, with 2 workers for fib30_join and
 * spawn_external_1m, and 1 worker for the two loop cases, where the bench
 * thread (not a worker) takes part in the join. The peers are shared modules loaded with
 * dlopen(RTLD_LOCAL) (see peer.h for their interface and why they are
 * modules): "rayon" (a 2-thread ThreadPool entered with install(), so the
 * bench thread waits as it does for Moirai), "tbb" (a task_arena of 2 that
 * the bench thread joins with execute(), working beside one TBB worker),
 * "gomp" and "omp" (OpenMP with gcc's libgomp and with LLVM's libomp; the
 * bench thread is the master of a team of 2). Each peer builds its pool
 * before its clock starts and takes it down after, so no idle thread of
 * one implementation spins into another's round. A peer that was not
 * built, or whose module cannot be loaded, is reported missing.
 *
 * fib30_join
 *   fib(n) with every call for n >= 2 a fork-join and no cutoff: Moirai
 *   moirai_join(NULL, ...) on the workers, Rayon rayon::join, TBB
 *   task_group run + wait, OpenMP task + taskwait. Moirai's top-level call
 *   is spawned onto a worker (moirai_sched_spawn) and the bench thread
 *   parks until it is done, as Rayon's install() does: the whole recursion
 *   runs on the 2 workers. (A moirai_join from the bench thread would make
 *   it a third working thread, since an outside caller takes part in the
 *   join as a guest worker; tree_search_external measures that form.) The
 *   case's iteration count is n: 30 in a full run (832040, about 1.3
 *   million joins), 25 with --quick (75025) so that the slowest peer
 *   (libgomp's tasks) keeps a round in the tens of milliseconds. The
 *   result is checked. Metric: seconds.
 *
 * parallel_for_empty
 *   One operation is a parallel loop over 2 indices with an empty body,
 *   called from the bench thread: moirai_parallel_for(sched, 0, 2, 1, ...),
 *   tbb::parallel_for(0, 2, 1, ...) inside arena.execute(), and
 *   "#pragma omp parallel for" over 2 indices (gomp and omp). This is the
 *   latency of one fork-join entered from outside. The designs differ
 *   here: the calling thread takes part in TBB's and OpenMP's loop, and TBB's
 *   caller, finding its worker asleep, runs both iterations itself (in a
 *   check of 100k loops here the TBB worker ran none), so its number is a
 *   fork-join that never leaves the calling thread. Moirai's caller, not a
 *   worker, also runs one half of each split itself and offers the other
 *   to its 1 worker (see moirai/sched/join.h). At most 100k loops a
 *   round (10k with --quick): on a loaded 2-CPU machine the fork-join
 *   runtimes can fall into a regime a hundred times slower, where the pool
 *   thread has lost its CPU at every fork, and the runner only recalibrates
 *   once, after the warm-up round; the low cap keeps such a round to
 *   seconds. Metric: ns per loop.
 *
 * parallel_reduce_16m
 *   The sum (64-bit) of 16M int32 values, the array filled before the
 *   clock starts: moirai_parallel_reduce with automatic grain,
 *   tbb::parallel_reduce over a blocked_range (auto partitioner), OpenMP
 *   "parallel for schedule(static) reduction(+)" (gomp and omp). Called
 *   from the bench thread, which takes part in all of them beside one pool
 *   thread (Moirai: 1 worker). The sum
 *   is checked. Metric: seconds per sum.
 *
 * spawn_external_1m
 *   1M empty tasks submitted one by one from the bench thread (not one of
 *   the pool's), then a wait until all have run. Moirai: detached
 *   moirai_sched_spawn (no handle) into the 2 workers; TBB:
 *   task_arena::enqueue into an arena of 2 workers (no slot reserved for
 *   the bench thread, which only submits). Both tasks count down the same
 *   kind of atomic counter, the last one waking the bench thread, which
 *   spins briefly and then sleeps on a futex (moirai_park for Moirai, the
 *   futex directly in the C++ peer). The protocol is the same on both
 *   sides so that only the schedulers differ: enqueue has no wait of its
 *   own, and a moirai_waitgroup_t would count down with a CAS loop where
 *   the peer uses one fetch_sub. The iteration count is the number of
 *   tasks: 1M, 100k with --quick.
 *   Metric: seconds.
 *
 * tree_search_external
 *   A search of the skewed tree of tree.h (450k nodes, 45k with --quick;
 *   the iteration count is the node count), every node with two non-empty
 *   subtrees a fork-join with no cutoff; the sum of the node values is
 *   checked against a serial search. This is fork-join entered from a
 *   plain thread, the README's own usage. "moirai": the bench thread calls
 *   moirai_join(sched, ...) itself on a scheduler of 1 worker, and so
 *   works beside it (as a guest worker: see moirai/sched/join.h), two
 *   threads in all. "root": the same search spawned as one task onto a
 *   scheduler of 2 workers while the bench thread parks, so that the
 *   whole recursion starts inside the pool (the speed "moirai" must reach).
 *   "tbb": tbb::parallel_invoke recursion run from the bench thread in a
 *   task_arena of 2 (the bench thread beside one TBB worker). Every
 *   implementation first searches a 20k-node tree untimed, so that its
 *   threads are up. Metric: seconds.
 *
 * fib30_external, mergesort_external
 *   The same comparison for fine-grained and for memory-bound fork-join.
 *   fib30_external: fib30_join's recursion (iteration count n, 30; 25 with
 *   --quick), "moirai" started with moirai_join(sched, fib(n-1), fib(n-2))
 *   from the bench thread on 1 worker, "root" spawned as one task onto 2
 *   workers, "tbb" as in fib30_join (task_group recursion run by the bench
 *   thread in an arena of 2). mergesort_external: a parallel merge sort of
 *   2M int32 (256k with --quick; the count is the iteration count), a join
 *   per split down to 4096 elements, which a leaf sorts with qsort(), and
 *   the merge into a scratch array done by the splitting call; "moirai"
 *   called from the bench thread, whose first split is the outside
 *   moirai_join(sched, ...), on 1 worker; "root" as one task onto 2
 *   workers.
 *   The data (fixed pseudo-random values) is refilled before each round's
 *   clock starts and checked (sorted, same sum) after. Metric: seconds. */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/sched/join.h>
#include <moirai/sched/parallel.h>
#include <moirai/sched/sched.h>

#include <moirai/core/park.h>

#include "../bench.h"
#include "peer.h"
#include "tree.h"

#define THREADS      2
#define REDUCE_COUNT (16u << 20)

/* ---- common ---- */

static double seconds_since(uint64_t t0)
{
    return (double)(bench_now_ns() - t0) * 1e-9;
}

/* fib(n) computed in a loop, to check the parallel results. */
static uint64_t fib_expected(int n)
{
    uint64_t a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        uint64_t t = a + b;
        a = b;
        b = t;
    }
    return a;
}

/* fib's n from the case's iteration count (see fib30_join above). */
static int fib_n(uint64_t iters)
{
    return iters > 40 ? 40 : (int)iters;
}

/* The reduce case's data: deterministic values in [-2048, 2047], so the
 * sum exercises signed arithmetic and fits comfortably in 64 bits. */
typedef struct reduce_data {
    int32_t *v;
    int64_t expected;
} reduce_data_t;

static int reduce_data_make(reduce_data_t *d)
{
    d->v = malloc(REDUCE_COUNT * sizeof(*d->v));
    if (!d->v)
        return -ENOMEM;
    int64_t s = 0;
    for (uint32_t i = 0; i < REDUCE_COUNT; i++) {
        d->v[i] = (int32_t)((i * 2654435761u) >> 20) - 2048;
        s += d->v[i];
    }
    d->expected = s;
    return 0;
}

/* Keeps an empty body from being optimized away; costs no more than the
 * call. The peers use the same statement. */
static inline void empty_work(size_t i)
{
    __asm__ volatile("" : : "r"(i) : "memory");
}

/* ---- Moirai ---- */

/* A scheduler with `workers` workers: THREADS where only the pool works,
 * THREADS - 1 where the bench thread takes part (as TBB's arena of 2 and
 * OpenMP's team of 2 count their caller), so every implementation computes
 * on the same number of threads. */
static int moirai_setup(moirai_sched_t **out, int workers)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = workers;
    return moirai_sched_create(out, &cfg);
}

/* Set when a join inside the recursion fails; checked after the run. */
static _Atomic int fib_failed;

typedef struct fib_frame {
    int n;
    uint64_t r;
} fib_frame_t;

static void fib_moirai_fn(void *arg)
{
    fib_frame_t *f = arg;
    if (f->n < 2) {
        f->r = (uint64_t)f->n;
        return;
    }
    fib_frame_t a = {f->n - 1, 0}, b = {f->n - 2, 0};
    if (moirai_join(NULL, fib_moirai_fn, &a, fib_moirai_fn, &b) != 0) {
        /* Relaxed: read after the top-level join returns, which orders it. */
        atomic_store_explicit(&fib_failed, 1, memory_order_relaxed);
        return;
    }
    f->r = a.r + b.r;
}

static void nothing(void *arg)
{
    (void)arg;
}

/* One join before the clock starts, as the peers warm up their pools: the
 * workers exist already (moirai_sched_create waits for them), so this only
 * keeps a first-use cost out of the measurement. */
static int moirai_warm_up(moirai_sched_t *sched)
{
    return moirai_join(sched, nothing, NULL, nothing, NULL);
}

/* The top-level fib, run as a task on a worker so that the whole
 * recursion stays in the pool (see fib30_join above). */
typedef struct fib_top {
    fib_frame_t frame;
    _Atomic uint32_t done;
} fib_top_t;

static int fib_top_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    fib_top_t *top = arg;
    fib_moirai_fn(&top->frame);
    /* Release: the result is visible to the bench thread's acquire load. */
    atomic_store_explicit(&top->done, 1, memory_order_release);
    moirai_unpark_one(&top->done);
    return 0;
}

/* Runs `top` as a task and parks until it is done. */
static int fib_top_run(moirai_sched_t *sched, fib_top_t *top)
{
    int rc = moirai_sched_spawn(sched, fib_top_task, top, NULL, NULL);
    /* Acquire: pairs with the task's release of `done`. */
    while (rc == 0 && !atomic_load_explicit(&top->done, memory_order_acquire))
        moirai_park(&top->done, 0, MOIRAI_DEADLINE_NEVER);
    return rc;
}

static double fib30_join_moirai(uint64_t iters)
{
    int n = fib_n(iters);
    moirai_sched_t *sched;
    if (moirai_setup(&sched, THREADS) != 0)
        return -1.0;
    atomic_store_explicit(&fib_failed, 0, memory_order_relaxed);
    double t = -1.0;
    /* The workload once untimed first, as every implementation of the case
     * does, so that the new workers have settled on the CPUs. */
    fib_top_t top = {{n, 0}, 0};
    if (fib_top_run(sched, &top) == 0) {
        top = (fib_top_t){{n, 0}, 0};
        uint64_t t0 = bench_now_ns();
        int rc = fib_top_run(sched, &top);
        t = seconds_since(t0);
        uint64_t r = top.frame.r;
        if (rc != 0 || atomic_load_explicit(&fib_failed, memory_order_relaxed) ||
            r != fib_expected(n)) {
            fprintf(stderr, "sched/fib30_join: moirai: fib(%d) = %llu, rc %d\n", n,
                    (unsigned long long)r, rc);
            t = -1.0;
        }
    }
    if (moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN) != 0)
        t = -1.0;
    return t;
}

static void for_empty_body(void *arg, size_t begin, size_t end)
{
    (void)arg;
    for (size_t i = begin; i < end; i++)
        empty_work(i);
}

static double parallel_for_empty_moirai(uint64_t iters)
{
    moirai_sched_t *sched;
    if (moirai_setup(&sched, THREADS - 1) != 0)
        return -1.0;
    double t = -1.0;
    if (moirai_warm_up(sched) == 0) {
        int rc = 0;
        uint64_t t0 = bench_now_ns();
        for (uint64_t k = 0; k < iters && rc == 0; k++)
            rc = moirai_parallel_for(sched, 0, 2, 1, for_empty_body, NULL);
        t = (double)(bench_now_ns() - t0) / (double)(iters ? iters : 1);
        if (rc != 0)
            t = -1.0;
    }
    if (moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN) != 0)
        t = -1.0;
    return t;
}

static void sum_identity(void *arg, void *acc)
{
    (void)arg;
    *(int64_t *)acc = 0;
}

static void sum_chunk(void *arg, size_t begin, size_t end, void *acc)
{
    const int32_t *v = arg;
    int64_t s = *(int64_t *)acc;
    for (size_t i = begin; i < end; i++)
        s += v[i];
    *(int64_t *)acc = s;
}

static void sum_combine(void *arg, void *acc, const void *right)
{
    (void)arg;
    *(int64_t *)acc += *(const int64_t *)right;
}

static double parallel_reduce_16m_moirai(uint64_t iters)
{
    static const moirai_reduce_desc_t desc = {sizeof(int64_t), sum_identity, sum_chunk,
                                              sum_combine};
    reduce_data_t d;
    if (reduce_data_make(&d) != 0)
        return -1.0;
    moirai_sched_t *sched;
    if (moirai_setup(&sched, THREADS - 1) != 0) {
        free(d.v);
        return -1.0;
    }
    double t = moirai_warm_up(sched) == 0 ? 0.0 : -1.0;
    for (uint64_t k = 0; k < iters && t >= 0.0; k++) {
        int64_t sum = 0;
        uint64_t t0 = bench_now_ns();
        int rc = moirai_parallel_reduce(sched, 0, REDUCE_COUNT, 0, &desc, d.v, &sum);
        t += seconds_since(t0);
        if (rc != 0 || sum != d.expected) {
            fprintf(stderr, "sched/parallel_reduce_16m: moirai: sum %lld, expected %lld, rc %d\n",
                    (long long)sum, (long long)d.expected, rc);
            t = -1.0;
        }
    }
    if (moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN) != 0)
        t = -1.0;
    free(d.v);
    return t;
}

/* The spawn case's completion counter. TBB's side (peer_tbb.cpp) uses the
 * same protocol, so the two differ only in their schedulers: each task
 * decrements `remaining`; the one that brings it to zero sets `done` and
 * wakes the bench thread, which waits with moirai_park (a short spin, then
 * a futex). */
typedef struct countdown {
    _Atomic uint64_t remaining;
    _Atomic uint32_t done;
} countdown_t;

static int spawn_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    countdown_t *c = arg;
    /* acq_rel: the last decrement must see every other task's release
     * before it publishes `done` (release) to the waiter. */
    if (atomic_fetch_sub_explicit(&c->remaining, 1, memory_order_acq_rel) == 1) {
        atomic_store_explicit(&c->done, 1, memory_order_release);
        moirai_unpark_one(&c->done);
    }
    return 0;
}

static double spawn_external_1m_moirai(uint64_t iters)
{
    moirai_sched_t *sched;
    if (moirai_setup(&sched, THREADS) != 0)
        return -1.0;
    double t = -1.0;
    if (moirai_warm_up(sched) == 0) {
        countdown_t c;
        atomic_init(&c.remaining, iters);
        atomic_init(&c.done, iters == 0);
        uint64_t k = 0;
        uint64_t t0 = bench_now_ns();
        for (; k < iters; k++) {
            if (moirai_sched_spawn(sched, spawn_task, &c, NULL, NULL) != 0)
                break;
        }
        /* A failed spawn: take the tasks that were never submitted off the
         * count (completing it if the others are done), wait for the rest,
         * and fail the round. */
        if (k < iters &&
            atomic_fetch_sub_explicit(&c.remaining, iters - k, memory_order_acq_rel) == iters - k)
            atomic_store_explicit(&c.done, 1, memory_order_release);
        /* Acquire: pairs with the last task's release of `done`. */
        while (!atomic_load_explicit(&c.done, memory_order_acquire))
            moirai_park(&c.done, 0, MOIRAI_DEADLINE_NEVER);
        t = seconds_since(t0);
        if (k < iters)
            t = -1.0;
    }
    if (moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN) != 0)
        t = -1.0;
    return t;
}

/* ---- tree_search_external ---- */

/* Set when a join inside the search fails; checked after the run. */
static _Atomic int tree_failed;

typedef struct tree_frame {
    moirai_sched_t *sched;
    uint64_t seed, nodes, sum;
} tree_frame_t;

static void tree_moirai_fn(void *arg)
{
    tree_frame_t *f = arg;
    if (f->nodes == 0) {
        f->sum = 0;
        return;
    }
    uint64_t rest = f->nodes - 1, left = tree_left_nodes(f->seed, rest);
    uint64_t v = tree_node_value(f->seed);
    tree_frame_t a = {f->sched, tree_left_seed(f->seed), left, 0};
    tree_frame_t b = {f->sched, tree_right_seed(f->seed), rest - left, 0};
    if (a.nodes == 0 || b.nodes == 0) {
        /* A single child: nothing to fork. */
        tree_moirai_fn(&a);
        tree_moirai_fn(&b);
    } else if (moirai_join(f->sched, tree_moirai_fn, &a, tree_moirai_fn, &b) != 0) {
        /* Relaxed: read after the top-level call returns, which orders it. */
        atomic_store_explicit(&tree_failed, 1, memory_order_relaxed);
        return;
    }
    f->sum = v + a.sum + b.sum;
}

/* The expected sum for `nodes`, searched serially once (untimed). */
static uint64_t tree_expected(uint64_t nodes)
{
    static uint64_t cached_nodes, cached_sum;
    if (cached_nodes != nodes) {
        cached_sum = tree_search_serial(TREE_ROOT_SEED, nodes);
        cached_nodes = nodes;
    }
    return cached_sum;
}

/* Nodes of the untimed warm-up search. */
#define TREE_WARM_NODES 20000

/* The root task of impl "root": the whole search inside the pool. */
typedef struct tree_top {
    tree_frame_t frame;
    _Atomic uint32_t done;
} tree_top_t;

static int tree_top_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    tree_top_t *top = arg;
    tree_moirai_fn(&top->frame);
    /* Release: the sum is visible to the bench thread's acquire load. */
    atomic_store_explicit(&top->done, 1, memory_order_release);
    moirai_unpark_one(&top->done);
    return 0;
}

/* Searches `nodes` from the bench thread (root false) or as a root task
 * (root true). Returns 0 and the sum, or a negative errno. */
static int tree_run(moirai_sched_t *sched, bool root, uint64_t nodes, uint64_t *sum)
{
    tree_top_t top = {{sched, TREE_ROOT_SEED, nodes, 0}, 0};
    if (!root) {
        tree_moirai_fn(&top.frame);
        *sum = top.frame.sum;
        return 0;
    }
    int rc = moirai_sched_spawn(sched, tree_top_task, &top, NULL, NULL);
    /* Acquire: pairs with the task's release of `done`. */
    while (rc == 0 && !atomic_load_explicit(&top.done, memory_order_acquire))
        moirai_park(&top.done, 0, MOIRAI_DEADLINE_NEVER);
    *sum = top.frame.sum;
    return rc;
}

static double tree_search_moirai_as(bool root, uint64_t nodes)
{
    uint64_t expected = tree_expected(nodes);
    moirai_sched_t *sched;
    if (moirai_setup(&sched, root ? THREADS : THREADS - 1) != 0)
        return -1.0;
    atomic_store_explicit(&tree_failed, 0, memory_order_relaxed);
    double t = -1.0;
    uint64_t sum = 0;
    if (tree_run(sched, root, TREE_WARM_NODES, &sum) == 0) {
        uint64_t t0 = bench_now_ns();
        int rc = tree_run(sched, root, nodes, &sum);
        t = seconds_since(t0);
        if (rc != 0 || atomic_load_explicit(&tree_failed, memory_order_relaxed) ||
            sum != expected) {
            fprintf(stderr, "sched/tree_search_external: %s: sum %llu, expected %llu, rc %d\n",
                    root ? "root" : "moirai", (unsigned long long)sum, (unsigned long long)expected,
                    rc);
            t = -1.0;
        }
    }
    if (moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN) != 0)
        t = -1.0;
    return t;
}

/* ---- fib30_external, mergesort_external ---- */

/* The root task of impl "root" of the external cases: `fn(arg)` inside the
 * pool. */
typedef struct ext_top {
    moirai_join_fn fn;
    void *arg;
    _Atomic uint32_t done;
} ext_top_t;

static int ext_top_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    ext_top_t *top = arg;
    top->fn(top->arg);
    /* Release: the results are visible to the bench thread's acquire. */
    atomic_store_explicit(&top->done, 1, memory_order_release);
    moirai_unpark_one(&top->done);
    return 0;
}

/* Runs `fn(arg)` as a root task of `sched` and parks until it is done. */
static int ext_run_root(moirai_sched_t *sched, moirai_join_fn fn, void *arg)
{
    ext_top_t top = {fn, arg, 0};
    int rc = moirai_sched_spawn(sched, ext_top_task, &top, NULL, NULL);
    /* Acquire: pairs with the task's release of `done`. */
    while (rc == 0 && !atomic_load_explicit(&top.done, memory_order_acquire))
        moirai_park(&top.done, 0, MOIRAI_DEADLINE_NEVER);
    return rc;
}

/* fib(n) split once at the top with moirai_join(`sched`, ...): from the
 * bench thread that is the outside join; inside a root task `sched` is the
 * task's own scheduler, so the same code runs as an ordinary worker join. */
typedef struct fib_split {
    moirai_sched_t *sched;
    int n;
    uint64_t r;
    int rc;
} fib_split_t;

static void fib_split_fn(void *arg)
{
    fib_split_t *f = arg;
    fib_frame_t a = {f->n - 1, 0}, b = {f->n - 2, 0};
    f->rc = moirai_join(f->sched, fib_moirai_fn, &a, fib_moirai_fn, &b);
    f->r = a.r + b.r;
}

static double fib30_external_as(bool root, uint64_t iters)
{
    int n = fib_n(iters);
    if (n < 2)
        n = 2;
    moirai_sched_t *sched;
    if (moirai_setup(&sched, root ? THREADS : THREADS - 1) != 0)
        return -1.0;
    atomic_store_explicit(&fib_failed, 0, memory_order_relaxed);
    double t = -1.0;
    /* The workload once untimed first, as fib30_join does. */
    fib_split_t f = {sched, n, 0, 0};
    int rc = root ? ext_run_root(sched, fib_split_fn, &f) : (fib_split_fn(&f), 0);
    if (rc == 0 && f.rc == 0) {
        f = (fib_split_t){sched, n, 0, 0};
        uint64_t t0 = bench_now_ns();
        rc = root ? ext_run_root(sched, fib_split_fn, &f) : (fib_split_fn(&f), 0);
        t = seconds_since(t0);
        if (rc != 0 || f.rc != 0 || atomic_load_explicit(&fib_failed, memory_order_relaxed) ||
            f.r != fib_expected(n)) {
            fprintf(stderr, "sched/fib30_external: %s: fib(%d) = %llu, rc %d/%d\n",
                    root ? "root" : "moirai", n, (unsigned long long)f.r, rc, f.rc);
            t = -1.0;
        }
    }
    if (moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN) != 0)
        t = -1.0;
    return t;
}

static double fib30_external_moirai(uint64_t iters)
{
    return fib30_external_as(false, iters);
}

static double fib30_external_root(uint64_t iters)
{
    return fib30_external_as(true, iters);
}

/* Elements a merge sort leaf sorts itself. */
#define SORT_LEAF 4096

typedef struct sort_frame {
    moirai_sched_t *sched;
    int32_t *a, *tmp;
    size_t n;
} sort_frame_t;

static _Atomic int sort_failed;

static int cmp_i32(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

static void sort_fn(void *arg)
{
    sort_frame_t *f = arg;
    if (f->n <= SORT_LEAF) {
        qsort(f->a, f->n, sizeof *f->a, cmp_i32);
        return;
    }
    size_t h = f->n / 2;
    sort_frame_t l = {f->sched, f->a, f->tmp, h};
    sort_frame_t r = {f->sched, f->a + h, f->tmp + h, f->n - h};
    if (moirai_join(f->sched, sort_fn, &l, sort_fn, &r) != 0) {
        /* Relaxed: read after the top-level call returns, which orders it. */
        atomic_store_explicit(&sort_failed, 1, memory_order_relaxed);
        return;
    }
    size_t i = 0, j = h, k = 0;
    while (i < h && j < f->n)
        f->tmp[k++] = f->a[i] <= f->a[j] ? f->a[i++] : f->a[j++];
    while (i < h)
        f->tmp[k++] = f->a[i++];
    while (j < f->n)
        f->tmp[k++] = f->a[j++];
    memcpy(f->a, f->tmp, f->n * sizeof *f->a);
}

/* Fills `a` with fixed pseudo-random values; returns their sum. */
static int64_t sort_fill(int32_t *a, size_t n)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        a[i] = (int32_t)(x >> 32);
        sum += a[i];
    }
    return sum;
}

static bool sort_check(const int32_t *a, size_t n, int64_t sum)
{
    int64_t s = n > 0 ? a[0] : 0;
    for (size_t i = 1; i < n; i++) {
        if (a[i - 1] > a[i])
            return false;
        s += a[i];
    }
    return s == sum;
}

static double mergesort_external_as(bool root, uint64_t iters)
{
    size_t n = (size_t)iters;
    int32_t *a = malloc(n * sizeof *a), *tmp = malloc(n * sizeof *tmp);
    moirai_sched_t *sched = NULL;
    double t = -1.0;
    if (a == NULL || tmp == NULL || moirai_setup(&sched, root ? THREADS : THREADS - 1) != 0)
        goto out;
    atomic_store_explicit(&sort_failed, 0, memory_order_relaxed);
    /* A small sort untimed first, so that the threads are up. */
    int64_t sum = sort_fill(a, n < 65536 ? n : 65536);
    sort_frame_t warm = {sched, a, tmp, n < 65536 ? n : 65536};
    int rc = root ? ext_run_root(sched, sort_fn, &warm) : (sort_fn(&warm), 0);
    if (rc == 0) {
        sum = sort_fill(a, n);
        sort_frame_t f = {sched, a, tmp, n};
        uint64_t t0 = bench_now_ns();
        /* From the bench thread sort_fn's first split is the outside join
         * (moirai_join(sched, ...), as in the README): the bench thread
         * becomes a guest there and everything below runs as in the pool.
         * Wrapping the whole sort in moirai_join(sched, sort_fn, &f,
         * nothing, NULL) instead measured 1.06x the root task here. */
        rc = root ? ext_run_root(sched, sort_fn, &f) : (sort_fn(&f), 0);
        t = seconds_since(t0);
        if (rc != 0 || atomic_load_explicit(&sort_failed, memory_order_relaxed) ||
            !sort_check(a, n, sum)) {
            fprintf(stderr, "sched/mergesort_external: %s: not sorted, rc %d\n",
                    root ? "root" : "moirai", rc);
            t = -1.0;
        }
    }
out:
    if (sched != NULL && moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN) != 0)
        t = -1.0;
    free(a);
    free(tmp);
    return t;
}

static double mergesort_external_moirai(uint64_t iters)
{
    return mergesort_external_as(false, iters);
}

static double mergesort_external_root(uint64_t iters)
{
    return mergesort_external_as(true, iters);
}

static double tree_search_external_moirai(uint64_t iters)
{
    return tree_search_moirai_as(false, iters);
}

static double tree_search_external_root(uint64_t iters)
{
    return tree_search_moirai_as(true, iters);
}

/* ---- the peers ---- */

typedef double (*peer_fib_fn)(int, int, uint64_t *);
typedef double (*peer_for_fn)(int, uint64_t);
typedef double (*peer_reduce_fn)(int, const int32_t *, size_t, int64_t *);
typedef double (*peer_spawn_fn)(int, uint64_t);
typedef double (*peer_tree_fn)(int, uint64_t, uint64_t *);

typedef struct peer {
    const char *impl;
    const char *path;      /* the module, NULL when it was not built */
    const char *not_built; /* why not, when path is NULL */
    peer_fib_fn fib;       /* each NULL if the module does not export it */
    peer_for_fn for_empty;
    peer_reduce_fn reduce;
    peer_spawn_fn spawn;
    peer_tree_fn tree;
    char missing[256];
} peer_t;

enum { PEER_RAYON, PEER_TBB, PEER_GOMP, PEER_OMP, PEER_COUNT };

/* The modules' paths and, for those not built, the reason, come from
 * bench/meson.build. */
#ifndef MOIRAI_BENCH_SCHED_RAYON
#define MOIRAI_BENCH_SCHED_RAYON NULL
#endif
#ifndef MOIRAI_BENCH_SCHED_TBB
#define MOIRAI_BENCH_SCHED_TBB NULL
#endif
#ifndef MOIRAI_BENCH_SCHED_GOMP
#define MOIRAI_BENCH_SCHED_GOMP NULL
#endif
#ifndef MOIRAI_BENCH_SCHED_OMP
#define MOIRAI_BENCH_SCHED_OMP NULL
#endif
#ifndef MOIRAI_BENCH_SCHED_RAYON_MISSING
#define MOIRAI_BENCH_SCHED_RAYON_MISSING "not built"
#endif
#ifndef MOIRAI_BENCH_SCHED_TBB_MISSING
#define MOIRAI_BENCH_SCHED_TBB_MISSING "not built"
#endif
#ifndef MOIRAI_BENCH_SCHED_GOMP_MISSING
#define MOIRAI_BENCH_SCHED_GOMP_MISSING "not built"
#endif
#ifndef MOIRAI_BENCH_SCHED_OMP_MISSING
#define MOIRAI_BENCH_SCHED_OMP_MISSING "not built"
#endif

static peer_t peers[PEER_COUNT] = {
    [PEER_RAYON] = {"rayon", MOIRAI_BENCH_SCHED_RAYON, MOIRAI_BENCH_SCHED_RAYON_MISSING},
    [PEER_TBB] = {"tbb", MOIRAI_BENCH_SCHED_TBB, MOIRAI_BENCH_SCHED_TBB_MISSING},
    [PEER_GOMP] = {"gomp", MOIRAI_BENCH_SCHED_GOMP, MOIRAI_BENCH_SCHED_GOMP_MISSING},
    [PEER_OMP] = {"omp", MOIRAI_BENCH_SCHED_OMP, MOIRAI_BENCH_SCHED_OMP_MISSING},
};

/* Loads one peer's module. On failure sets `missing`. The module stays
 * loaded for the life of the process: an OpenMP or TBB runtime cannot be
 * unloaded safely. */
static void peer_load(peer_t *p)
{
    if (!p->path) {
        snprintf(p->missing, sizeof(p->missing), "%s", p->not_built);
        return;
    }
    void *h = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(p->missing, sizeof(p->missing), "dlopen: %s", dlerror());
        return;
    }
    /* POSIX allows converting dlsym's object pointer to a function
     * pointer; the cast through uintptr_t keeps -Wpedantic quiet. */
    p->fib = (peer_fib_fn)(uintptr_t)dlsym(h, "moirai_peer_fib");
    p->for_empty = (peer_for_fn)(uintptr_t)dlsym(h, "moirai_peer_for_empty");
    p->reduce = (peer_reduce_fn)(uintptr_t)dlsym(h, "moirai_peer_reduce");
    p->spawn = (peer_spawn_fn)(uintptr_t)dlsym(h, "moirai_peer_spawn");
    p->tree = (peer_tree_fn)(uintptr_t)dlsym(h, "moirai_peer_tree");
}

static double peer_fib(int which, uint64_t iters)
{
    int n = fib_n(iters);
    uint64_t r = 0;
    double t = peers[which].fib(THREADS, n, &r);
    if (t >= 0.0 && r != fib_expected(n)) {
        fprintf(stderr, "sched/fib30_join: %s: fib(%d) = %llu\n", peers[which].impl, n,
                (unsigned long long)r);
        return -1.0;
    }
    return t;
}

static double peer_for_empty(int which, uint64_t iters)
{
    return peers[which].for_empty(THREADS, iters);
}

static double peer_reduce(int which, uint64_t iters)
{
    reduce_data_t d;
    if (reduce_data_make(&d) != 0)
        return -1.0;
    double t = 0.0;
    for (uint64_t k = 0; k < iters && t >= 0.0; k++) {
        int64_t sum = 0;
        double one = peers[which].reduce(THREADS, d.v, REDUCE_COUNT, &sum);
        if (one < 0.0 || sum != d.expected) {
            fprintf(stderr, "sched/parallel_reduce_16m: %s: sum %lld, expected %lld\n",
                    peers[which].impl, (long long)sum, (long long)d.expected);
            t = -1.0;
        } else {
            t += one;
        }
    }
    free(d.v);
    return t;
}

static double peer_spawn(int which, uint64_t iters)
{
    return peers[which].spawn(THREADS, iters);
}

static double peer_tree(int which, uint64_t iters)
{
    uint64_t expected = tree_expected(iters), sum = 0;
    double t = peers[which].tree(THREADS, iters, &sum);
    if (t >= 0 && sum != expected) {
        fprintf(stderr, "sched/tree_search_external: %s: sum %llu, expected %llu\n",
                peers[which].impl, (unsigned long long)sum, (unsigned long long)expected);
        return -1.0;
    }
    return t;
}

#define PEER_RUN(name, fn, which)                                                                  \
    static double name(uint64_t iters)                                                             \
    {                                                                                              \
        return fn(which, iters);                                                                   \
    }

PEER_RUN(fib30_join_rayon, peer_fib, PEER_RAYON)
PEER_RUN(fib30_join_tbb, peer_fib, PEER_TBB)
PEER_RUN(fib30_join_gomp, peer_fib, PEER_GOMP)
PEER_RUN(fib30_join_omp, peer_fib, PEER_OMP)
PEER_RUN(parallel_for_empty_tbb, peer_for_empty, PEER_TBB)
PEER_RUN(parallel_for_empty_omp, peer_for_empty, PEER_OMP)
PEER_RUN(parallel_for_empty_gomp, peer_for_empty, PEER_GOMP)
PEER_RUN(parallel_reduce_16m_tbb, peer_reduce, PEER_TBB)
PEER_RUN(parallel_reduce_16m_omp, peer_reduce, PEER_OMP)
PEER_RUN(parallel_reduce_16m_gomp, peer_reduce, PEER_GOMP)
PEER_RUN(spawn_external_1m_tbb, peer_spawn, PEER_TBB)
PEER_RUN(tree_search_external_tbb, peer_tree, PEER_TBB)
PEER_RUN(fib30_external_tbb, peer_fib, PEER_TBB)

/* ---- the cases ---- */

/* Each peer impl's run is set once its module has loaded (see
 * bench_sched_cases); `peer` says which module. */
typedef struct impl_binding {
    bench_impl_t *impl;
    int peer;
    double (*run)(uint64_t);
} impl_binding_t;

static bench_impl_t fib30_join_impls[] = {
    {"moirai", fib30_join_moirai, NULL},
    {"rayon", NULL, NULL},
    {"tbb", NULL, NULL},
    {"gomp", NULL, NULL},
    {"omp", NULL, NULL},
};
static bench_impl_t parallel_for_empty_impls[] = {
    {"moirai", parallel_for_empty_moirai, NULL},
    {"tbb", NULL, NULL},
    {"omp", NULL, NULL},
    {"gomp", NULL, NULL},
};
static bench_impl_t parallel_reduce_16m_impls[] = {
    {"moirai", parallel_reduce_16m_moirai, NULL},
    {"tbb", NULL, NULL},
    {"omp", NULL, NULL},
    {"gomp", NULL, NULL},
};
static bench_impl_t spawn_external_1m_impls[] = {
    {"moirai", spawn_external_1m_moirai, NULL},
    {"tbb", NULL, NULL},
};
static bench_impl_t fib30_external_impls[] = {
    {"moirai", fib30_external_moirai, NULL},
    {"root", fib30_external_root, NULL},
    {"tbb", NULL, NULL},
};
static bench_impl_t mergesort_external_impls[] = {
    {"moirai", mergesort_external_moirai, NULL},
    {"root", mergesort_external_root, NULL},
};
static bench_impl_t tree_search_external_impls[] = {
    {"moirai", tree_search_external_moirai, NULL},
    {"root", tree_search_external_root, NULL},
    {"tbb", NULL, NULL},
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static const bench_case_t cases[] = {
    {"sched", "fib30_join", "seconds", 30, 25, fib30_join_impls, COUNT_OF(fib30_join_impls)},
    {"sched", "parallel_for_empty", "ns_per_op", 100000, 10000, parallel_for_empty_impls,
     COUNT_OF(parallel_for_empty_impls)},
    {"sched", "parallel_reduce_16m", "seconds", 1, 1, parallel_reduce_16m_impls,
     COUNT_OF(parallel_reduce_16m_impls)},
    {"sched", "spawn_external_1m", "seconds", 1000000, 100000, spawn_external_1m_impls,
     COUNT_OF(spawn_external_1m_impls)},
    {"sched", "tree_search_external", "seconds", 450000, 45000, tree_search_external_impls,
     COUNT_OF(tree_search_external_impls)},
    {"sched", "fib30_external", "seconds", 30, 25, fib30_external_impls,
     COUNT_OF(fib30_external_impls)},
    {"sched", "mergesort_external", "seconds", 2u << 20, 256u << 10, mergesort_external_impls,
     COUNT_OF(mergesort_external_impls)},
};

const bench_case_t *bench_sched_cases(size_t *count)
{
    static bool loaded;
    if (!loaded) {
        loaded = true;
        for (int i = 0; i < PEER_COUNT; i++)
            peer_load(&peers[i]);
        const impl_binding_t bindings[] = {
            {&fib30_join_impls[1], PEER_RAYON, peers[PEER_RAYON].fib ? fib30_join_rayon : NULL},
            {&fib30_join_impls[2], PEER_TBB, peers[PEER_TBB].fib ? fib30_join_tbb : NULL},
            {&fib30_join_impls[3], PEER_GOMP, peers[PEER_GOMP].fib ? fib30_join_gomp : NULL},
            {&fib30_join_impls[4], PEER_OMP, peers[PEER_OMP].fib ? fib30_join_omp : NULL},
            {&parallel_for_empty_impls[1], PEER_TBB,
             peers[PEER_TBB].for_empty ? parallel_for_empty_tbb : NULL},
            {&parallel_for_empty_impls[2], PEER_OMP,
             peers[PEER_OMP].for_empty ? parallel_for_empty_omp : NULL},
            {&parallel_for_empty_impls[3], PEER_GOMP,
             peers[PEER_GOMP].for_empty ? parallel_for_empty_gomp : NULL},
            {&parallel_reduce_16m_impls[1], PEER_TBB,
             peers[PEER_TBB].reduce ? parallel_reduce_16m_tbb : NULL},
            {&parallel_reduce_16m_impls[2], PEER_OMP,
             peers[PEER_OMP].reduce ? parallel_reduce_16m_omp : NULL},
            {&parallel_reduce_16m_impls[3], PEER_GOMP,
             peers[PEER_GOMP].reduce ? parallel_reduce_16m_gomp : NULL},
            {&spawn_external_1m_impls[1], PEER_TBB,
             peers[PEER_TBB].spawn ? spawn_external_1m_tbb : NULL},
            {&tree_search_external_impls[2], PEER_TBB,
             peers[PEER_TBB].tree ? tree_search_external_tbb : NULL},
            {&fib30_external_impls[2], PEER_TBB, peers[PEER_TBB].fib ? fib30_external_tbb : NULL},
        };
        for (size_t i = 0; i < COUNT_OF(bindings); i++) {
            const impl_binding_t *b = &bindings[i];
            b->impl->run = b->run;
            if (b->run)
                continue;
            const peer_t *p = &peers[b->peer];
            b->impl->missing =
                p->missing[0] ? p->missing : "the module does not export this case's entry point";
        }
    }
    *count = COUNT_OF(cases);
    return cases;
}
