/* moirai-bench, suite "sched": the oneTBB peer, impl "tbb" (see peer.h).
 *
 * Built as a shared module (bench/meson.build) so that moirai-bench itself
 * stays C and needs no C++ runtime; its entry points have C linkage.
 *
 * fork-join cases (fib, for_empty, reduce): a task_arena of concurrency 2
 * with the default one slot reserved for an external thread, and the work
 * submitted with arena.execute() from the bench thread. That is TBB's
 * idiomatic form: the bench thread joins the arena and works beside one
 * TBB worker, so two threads run the work.
 *
 * spawn case: the bench thread only submits (task_arena::enqueue), so the
 * arena reserves no slot for it (task_arena(2, 0)) and two TBB workers run
 * the tasks, as two Moirai workers do. TBB sizes its worker pool to one
 * less than the CPUs by default (one worker here), so a global_control
 * raises the limit to 3 threads (2 workers + the bench thread) for the
 * round. Waiting: the tasks count down an atomic counter and the last one
 * wakes the bench thread through a futex, the protocol the Moirai side
 * uses too; enqueue has no waiting mechanism of its own (task_group::run
 * would add a context and a wait of TBB's own, and would no longer be the
 * "enqueue from outside" path being measured).
 *
 * tree case: the same arena of 2 entered with execute() from the bench
 * thread, and tbb::parallel_invoke at every node with two non-empty
 * subtrees: the bench thread starts the fork-join and works in it.
 *
 * Pools: each call attaches a task_scheduler_handle before creating its
 * arena and, once the clock has stopped and the arena is gone, finalizes
 * it, which waits until TBB's worker threads have exited. So no TBB
 * thread spins into the next implementation's round. Before the clock
 * starts a short warm-up makes TBB start its workers. */
#include <atomic>
#include <cstdint>
#include <ctime>
#include <functional>
#include <new>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_invoke.h>
#include <oneapi/tbb/parallel_reduce.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include "peer.h"
#include "tree.h"

namespace {

double now_s()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

/* Makes the arena's workers exist before the clock starts: a parallel loop
 * long enough that a worker joins. */
void warm_up(tbb::task_arena &arena)
{
    arena.execute([] {
        tbb::parallel_for(0, 1 << 16, [](int i) { asm volatile("" : : "r"(i) : "memory"); });
    });
}

/* Every call with n >= 2 runs fib(n - 1) as a task of a task_group,
 * fib(n - 2) itself, and waits: TBB's form of a join. */
uint64_t fib(int n)
{
    if (n < 2)
        return static_cast<uint64_t>(n);
    uint64_t x = 0, y = 0;
    tbb::task_group g;
    g.run([&x, n] { x = fib(n - 1); });
    y = fib(n - 2);
    g.wait();
    return x + y;
}

/* The skewed tree search (tree.h), one parallel_invoke per fork. */
uint64_t tree_search(uint64_t seed, uint64_t nodes)
{
    if (nodes == 0)
        return 0;
    uint64_t rest = nodes - 1, left = tree_left_nodes(seed, rest);
    uint64_t v = tree_node_value(seed);
    if (left == 0 || rest - left == 0)
        return v + tree_search(tree_left_seed(seed), left) +
               tree_search(tree_right_seed(seed), rest - left);
    uint64_t a = 0, b = 0;
    tbb::parallel_invoke(
        [&a, seed, left] { a = tree_search(tree_left_seed(seed), left); },
        [&b, seed, rest, left] { b = tree_search(tree_right_seed(seed), rest - left); });
    return v + a + b;
}

/* The completion counter of the spawn case, the protocol of bench_sched.c's
 * Moirai side: each task decrements `remaining`; the one that reaches zero
 * sets `done` and wakes the waiter. */
struct countdown {
    std::atomic<uint64_t> remaining;
    std::atomic<uint32_t> done;
};

inline void cpu_relax()
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

void countdown_wait(countdown &c)
{
    /* A short spin first, as moirai_park does (4 us there; 100 pauses
     * here), then the futex. */
    for (int i = 0; i < 100; i++) {
        if (c.done.load(std::memory_order_acquire))
            return;
        cpu_relax();
    }
    while (!c.done.load(std::memory_order_acquire))
        syscall(SYS_futex, reinterpret_cast<uint32_t *>(&c.done), FUTEX_WAIT_PRIVATE, 0, nullptr,
                nullptr, 0);
}

void countdown_one(countdown &c)
{
    /* acq_rel: the last decrement must see every other task's release
     * before it publishes `done`. */
    if (c.remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        c.done.store(1, std::memory_order_release);
        syscall(SYS_futex, reinterpret_cast<uint32_t *>(&c.done), FUTEX_WAKE_PRIVATE, 1, nullptr,
                nullptr, 0);
    }
}

} // namespace

extern "C" double moirai_peer_fib(int threads, int n, uint64_t *result)
{
    double t = -1.0;
    tbb::task_scheduler_handle handle{tbb::attach{}};
    try {
        tbb::task_arena arena(threads);
        uint64_t r = 0;
        /* The workload once untimed first, as every implementation of the
         * case does, so that the new threads have settled on the CPUs. */
        arena.execute([&r, n] { r = fib(n); });
        double t0 = now_s();
        arena.execute([&r, n] { r = fib(n); });
        t = now_s() - t0;
        *result = r;
    } catch (...) {
        t = -1.0;
    }
    if (!tbb::finalize(handle, std::nothrow))
        t = -1.0;
    return t;
}

extern "C" double moirai_peer_for_empty(int threads, uint64_t iters)
{
    double t = -1.0;
    tbb::task_scheduler_handle handle{tbb::attach{}};
    try {
        tbb::task_arena arena(threads);
        warm_up(arena);
        double t0 = now_s();
        for (uint64_t k = 0; k < iters; k++) {
            arena.execute([] {
                tbb::parallel_for(0, 2, 1, [](int i) { asm volatile("" : : "r"(i) : "memory"); });
            });
        }
        t = (now_s() - t0) * 1e9 / static_cast<double>(iters ? iters : 1);
    } catch (...) {
        t = -1.0;
    }
    if (!tbb::finalize(handle, std::nothrow))
        t = -1.0;
    return t;
}

extern "C" double moirai_peer_reduce(int threads, const int32_t *data, size_t n, int64_t *sum)
{
    double t = -1.0;
    tbb::task_scheduler_handle handle{tbb::attach{}};
    try {
        tbb::task_arena arena(threads);
        warm_up(arena);
        int64_t s = 0;
        double t0 = now_s();
        arena.execute([&s, data, n] {
            s = tbb::parallel_reduce(
                tbb::blocked_range<size_t>(0, n), int64_t{0},
                [data](const tbb::blocked_range<size_t> &r, int64_t acc) {
                    for (size_t i = r.begin(); i != r.end(); i++)
                        acc += data[i];
                    return acc;
                },
                std::plus<int64_t>());
        });
        t = now_s() - t0;
        *sum = s;
    } catch (...) {
        t = -1.0;
    }
    if (!tbb::finalize(handle, std::nothrow))
        t = -1.0;
    return t;
}

extern "C" double moirai_peer_spawn(int threads, uint64_t tasks)
{
    double t = -1.0;
    tbb::task_scheduler_handle handle{tbb::attach{}};
    try {
        tbb::global_control limit(tbb::global_control::max_allowed_parallelism,
                                  static_cast<size_t>(threads) + 1);
        tbb::task_arena arena(threads, 0);
        warm_up(arena);
        countdown c;
        c.remaining.store(tasks, std::memory_order_relaxed);
        c.done.store(tasks == 0, std::memory_order_relaxed);
        double t0 = now_s();
        for (uint64_t k = 0; k < tasks; k++)
            arena.enqueue([&c] { countdown_one(c); });
        countdown_wait(c);
        t = now_s() - t0;
    } catch (...) {
        t = -1.0;
    }
    if (!tbb::finalize(handle, std::nothrow))
        t = -1.0;
    return t;
}

extern "C" double moirai_peer_tree(int threads, uint64_t nodes, uint64_t *sum)
{
    double t = -1.0;
    tbb::task_scheduler_handle handle{tbb::attach{}};
    try {
        tbb::task_arena arena(threads);
        uint64_t r = 0;
        /* A small search untimed first, as every implementation does. */
        arena.execute([&r] { r = tree_search(TREE_ROOT_SEED, 20000); });
        double t0 = now_s();
        arena.execute([&r, nodes] { r = tree_search(TREE_ROOT_SEED, nodes); });
        t = now_s() - t0;
        *sum = r;
    } catch (...) {
        t = -1.0;
    }
    if (!tbb::finalize(handle, std::nothrow))
        t = -1.0;
    return t;
}
