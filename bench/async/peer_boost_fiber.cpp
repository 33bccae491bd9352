/* moirai-bench, suite "async": the Boost.Fiber peer, impl "boost_fiber"
 * (see peer.h): fiber_spawn_join, fiber_yield_2w, mutex_handoff_fibers and
 * parked_rss.
 *
 * Fibers run on two threads under Boost.Fiber's work_stealing algorithm:
 * the bench thread, whose main fiber spawns the fibers and joins them, and
 * one helper thread. Both install work_stealing(2) once; work_stealing
 * can be built only once per process (a static barrier and a static,
 * once-sized array of schedulers), so the two threads form a pool for the
 * life of the process rather than one per call. Between calls the helper
 * thread blocks on a std::condition_variable (in the kernel), so it does
 * not spin into other implementations' rounds; each call wakes it before
 * its clock starts and, after its clock stops, waits until it has blocked
 * again. During a call both threads use work_stealing's default
 * (suspend = false): an idle thread keeps looking for fibers to steal
 * instead of sleeping, which is how Boost.Fiber runs by default and what
 * gives it its latency. Fibers get Boost's default stack (fixedsize_stack
 * of stack_traits::default_size()).
 *
 * Built as a shared module (bench/meson.build) so that moirai-bench stays
 * C; its entry points have C linkage.
 *
 * Allocation: this module defines the global operators new and delete,
 * on glibc's malloc and free. moirai-bench's mem suite dlopen()s tcmalloc
 * (RTLD_LOCAL) before this module is loaded, and tcmalloc needs
 * libstdc++, which is then relocated against tcmalloc: inside
 * libstdc++.so, the sized operator delete forwards to tcmalloc's unsized
 * one, while libstdc++'s operator new takes glibc's malloc. Memory from new
 * freed by a sized delete then reaches tcmalloc's free, which aborts. The
 * operators below come first in the lookup scope of this module and of the
 * Boost libraries it loads, so every allocation of theirs pairs with its
 * release whatever was loaded before. */
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

#include <cstdlib>
#include <new>

#include <boost/fiber/algo/work_stealing.hpp>
#include <boost/fiber/all.hpp>

#include "peer.h"

namespace bf = boost::fibers;

/* ---- allocation (see the top of this file) ---- */

namespace {

void *allocate(std::size_t n) noexcept
{
    return std::malloc(n ? n : 1);
}

void *allocate_aligned(std::size_t n, std::align_val_t al) noexcept
{
    std::size_t a = static_cast<std::size_t>(al);
    if (a < sizeof(void *))
        a = sizeof(void *);
    /* aligned_alloc wants a multiple of the alignment. */
    std::size_t rounded = ((n ? n : 1) + a - 1) / a * a;
    return std::aligned_alloc(a, rounded);
}

void *allocate_or_throw(void *p)
{
    if (!p)
        throw std::bad_alloc();
    return p;
}

} // namespace

void *operator new(std::size_t n)
{
    return allocate_or_throw(allocate(n));
}
void *operator new[](std::size_t n)
{
    return allocate_or_throw(allocate(n));
}
void *operator new(std::size_t n, const std::nothrow_t &) noexcept
{
    return allocate(n);
}
void *operator new[](std::size_t n, const std::nothrow_t &) noexcept
{
    return allocate(n);
}
void *operator new(std::size_t n, std::align_val_t a)
{
    return allocate_or_throw(allocate_aligned(n, a));
}
void *operator new[](std::size_t n, std::align_val_t a)
{
    return allocate_or_throw(allocate_aligned(n, a));
}
void *operator new(std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept
{
    return allocate_aligned(n, a);
}
void *operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept
{
    return allocate_aligned(n, a);
}
void operator delete(void *p) noexcept
{
    std::free(p);
}
void operator delete[](void *p) noexcept
{
    std::free(p);
}
void operator delete(void *p, std::size_t) noexcept
{
    std::free(p);
}
void operator delete[](void *p, std::size_t) noexcept
{
    std::free(p);
}
void operator delete(void *p, const std::nothrow_t &) noexcept
{
    std::free(p);
}
void operator delete[](void *p, const std::nothrow_t &) noexcept
{
    std::free(p);
}
void operator delete(void *p, std::align_val_t) noexcept
{
    std::free(p);
}
void operator delete[](void *p, std::align_val_t) noexcept
{
    std::free(p);
}
void operator delete(void *p, std::size_t, std::align_val_t) noexcept
{
    std::free(p);
}
void operator delete[](void *p, std::size_t, std::align_val_t) noexcept
{
    std::free(p);
}
void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept
{
    std::free(p);
}
void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept
{
    std::free(p);
}

namespace {

constexpr int POOL_THREADS = 2;

using clock_type = std::chrono::steady_clock;

double ns_per(clock_type::time_point t0, clock_type::time_point t1, uint64_t ops)
{
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
    return static_cast<double>(ns) / static_cast<double>(ops ? ops : 1);
}

/* The two threads that run fibers: the bench thread and `helper`. A call
 * brackets its work with begin() and end(). */
class pool {
  public:
    /* Starts the helper and installs work_stealing on both threads (its
     * constructor waits for both). Called once, from the bench thread. */
    pool() : helper_([this] { helper_main(); })
    {
        bf::use_scheduling_algorithm<bf::algo::work_stealing>(POOL_THREADS);
    }

    /* Wakes the helper into the fiber world and waits until it is there,
     * so that both threads take fibers from the first spawn on. */
    void begin()
    {
        std::unique_lock<std::mutex> lk(m_);
        ++run_;
        cv_.notify_all();
        cv_.wait(lk, [this] { return entered_ == run_; });
    }

    /* Lets the helper leave the fiber world and waits until it has blocked
     * in the kernel again. Every fiber of the call has been joined. */
    void end()
    {
        uint64_t r;
        {
            std::lock_guard<std::mutex> lk(m_);
            r = run_;
        }
        {
            std::unique_lock<bf::mutex> flk(fm_);
            over_ = r;
        }
        fcv_.notify_all();
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [this, r] { return left_ == r; });
    }

  private:
    void helper_main()
    {
        bf::use_scheduling_algorithm<bf::algo::work_stealing>(POOL_THREADS);
        uint64_t seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> lk(m_);
                cv_.wait(lk, [this, seen] { return run_ != seen; });
                seen = run_;
                entered_ = seen;
            }
            cv_.notify_all();
            /* A fiber wait: this thread's scheduler runs and steals
             * fibers until the bench thread declares the call over. */
            {
                std::unique_lock<bf::mutex> flk(fm_);
                fcv_.wait(flk, [this, seen] { return over_ == seen; });
            }
            {
                std::lock_guard<std::mutex> lk(m_);
                left_ = seen;
            }
            cv_.notify_all();
        }
    }

    std::mutex m_;
    std::condition_variable cv_;
    uint64_t run_ = 0;     /* calls begun */
    uint64_t entered_ = 0; /* the call the helper last entered */
    uint64_t left_ = 0;    /* the call the helper last left */
    bf::mutex fm_;
    bf::condition_variable fcv_;
    uint64_t over_ = 0; /* the last call declared over (under fm_) */
    std::thread helper_;
};

/* The process's one pool, built on first use. The helper thread is never
 * joined: it stays blocked until the process exits. */
pool *the_pool(int threads)
{
    if (threads != POOL_THREADS)
        return nullptr;
    static pool *p = new pool();
    return p;
}

/* Brackets a call with begin() and end(). */
struct in_pool {
    explicit in_pool(pool *p) : p_(p)
    {
        p_->begin();
    }
    ~in_pool()
    {
        p_->end();
    }
    in_pool(const in_pool &) = delete;
    in_pool &operator=(const in_pool &) = delete;
    pool *p_;
};

long rss_bytes()
{
    std::ifstream statm("/proc/self/statm");
    long size = 0, resident = -1;
    if (!(statm >> size >> resident))
        return -1;
    return resident * sysconf(_SC_PAGESIZE);
}

} // namespace

extern "C" double moirai_peer_spawn_join(int threads, uint64_t iters)
{
    pool *p = the_pool(threads);
    if (!p)
        return -1.0;
    in_pool guard(p);
    double result = -1.0;
    /* The loop runs in a fiber of its own, as the other implementations'. */
    bf::fiber driver([iters, &result] {
        for (int i = 0; i < 1000; i++)
            bf::fiber([] {}).join();
        auto t0 = clock_type::now();
        for (uint64_t i = 0; i < iters; i++)
            bf::fiber([] {}).join();
        result = ns_per(t0, clock_type::now(), iters);
    });
    driver.join();
    return result;
}

extern "C" double moirai_peer_yield(int threads, int fibers, uint64_t yields)
{
    pool *p = the_pool(threads);
    if (!p || fibers < 1)
        return -1.0;
    in_pool guard(p);
    std::vector<bf::fiber> fs;
    fs.reserve(static_cast<size_t>(fibers));
    auto t0 = clock_type::now();
    for (int f = 0; f < fibers; f++) {
        fs.emplace_back([yields] {
            for (uint64_t i = 0; i < yields; i++)
                boost::this_fiber::yield();
        });
    }
    for (auto &f : fs)
        f.join();
    return ns_per(t0, clock_type::now(), static_cast<uint64_t>(fibers) * yields);
}

extern "C" double moirai_peer_mutex_handoff(int threads, int fibers, uint64_t per_fiber,
                                            uint64_t *counter)
{
    pool *p = the_pool(threads);
    if (!p || fibers < 1)
        return -1.0;
    in_pool guard(p);
    bf::mutex mu;
    uint64_t count = 0;
    /* The start gate: the fibers are spawned before the clock starts and
     * wait here until all have arrived, so that the clock measures the
     * acquisitions only. */
    bf::mutex gate_mu;
    bf::condition_variable gate_cv;
    bool open = false;
    int arrived = 0;
    std::vector<bf::fiber> fs;
    fs.reserve(static_cast<size_t>(fibers));
    for (int f = 0; f < fibers; f++) {
        fs.emplace_back([per_fiber, &mu, &count, &gate_mu, &gate_cv, &open, &arrived] {
            {
                std::unique_lock<bf::mutex> g(gate_mu);
                arrived++;
                gate_cv.wait(g, [&open] { return open; });
            }
            for (uint64_t i = 0; i < per_fiber; i++) {
                std::unique_lock<bf::mutex> lk(mu);
                count++;
                /* Yield while holding the lock so that the others really
                 * contend for it (see bench_async.c). */
                boost::this_fiber::yield();
            }
        });
    }
    /* Every fiber waits at the gate (counted under its mutex, which the
     * wait releases only once the fiber is suspended). */
    for (;;) {
        std::unique_lock<bf::mutex> g(gate_mu);
        if (arrived == fibers)
            break;
        g.unlock();
        boost::this_fiber::yield();
    }
    auto t0 = clock_type::now();
    {
        std::unique_lock<bf::mutex> g(gate_mu);
        open = true;
    }
    gate_cv.notify_all();
    for (auto &f : fs)
        f.join();
    double t = ns_per(t0, clock_type::now(), static_cast<uint64_t>(fibers) * per_fiber);
    *counter = count;
    return t;
}

extern "C" double moirai_peer_parked_rss(int threads, int fibers)
{
    pool *p = the_pool(threads);
    if (!p || fibers < 1)
        return -1.0;
    in_pool guard(p);
    bf::mutex mu;
    bf::condition_variable cv;
    bool release = false;
    int waiting = 0;
    std::vector<bf::fiber> fs;
    fs.reserve(static_cast<size_t>(fibers));
    long before = rss_bytes();
    for (int f = 0; f < fibers; f++) {
        fs.emplace_back([&] {
            std::unique_lock<bf::mutex> lk(mu);
            waiting++;
            cv.wait(lk, [&release] { return release; });
        });
    }
    /* `waiting` is counted under the mutex that cv.wait releases only once
     * the fiber is suspended: when it reaches `fibers` under the mutex,
     * every fiber is parked. */
    for (;;) {
        std::unique_lock<bf::mutex> lk(mu);
        if (waiting == fibers)
            break;
        lk.unlock();
        boost::this_fiber::yield();
    }
    long after = rss_bytes();
    {
        std::unique_lock<bf::mutex> lk(mu);
        release = true;
    }
    cv.notify_all();
    for (auto &f : fs)
        f.join();
    if (before < 0 || after < 0)
        return -1.0;
    return static_cast<double>(after - before) / static_cast<double>(fibers);
}
