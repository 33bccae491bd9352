/* moirai-bench, suite "transport": the Boost.Fiber peer of
 * chan_fibers_4p4c, impl "boost_fiber".
 *
 * A program, not a shared module: Boost.Fiber's work_stealing can be
 * installed only once per process (a static barrier and a static,
 * once-sized array of schedulers), and the async suite's Boost.Fiber
 * module already installs it in moirai-bench. moirai-bench runs this
 * program once per round as
 *
 *     peer_boost_fiber N
 *
 * and reads one line from its standard output: ns per message, or a
 * negative number if the work came back wrong.
 *
 * The workload: 4 producer and 4 consumer fibers on 2 threads (the main
 * thread and one helper, both under work_stealing(2)) share one
 * boost::fibers::buffered_channel<uint64_t> of capacity 1024; producer p
 * sends N/4 values p, p+4, p+8, ...; the consumers count and sum what
 * they receive, and the totals must be exact. The fibers are created
 * before the clock starts and wait at a start gate. */
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/fiber/algo/work_stealing.hpp>
#include <boost/fiber/all.hpp>

namespace bf = boost::fibers;

namespace {

constexpr int THREADS = 2;
constexpr int FIBERS = 4;              /* producers, and consumers */
constexpr std::size_t CAPACITY = 1024; /* a power of two, as Boost wants */

bf::mutex done_mutex;
bf::condition_variable done_cv;
bool done = false;

/* The helper thread: a second scheduler of the work_stealing pool. It
 * runs (and steals) fibers while it waits, as a fiber, for the end. */
void helper()
{
    bf::use_scheduling_algorithm<bf::algo::work_stealing>(THREADS);
    std::unique_lock<bf::mutex> lk(done_mutex);
    done_cv.wait(lk, [] { return done; });
}

} // namespace

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: peer_boost_fiber N\n");
        return 2;
    }
    uint64_t n = std::strtoull(argv[1], nullptr, 10);
    uint64_t per = n / FIBERS ? n / FIBERS : 1;
    uint64_t total = per * FIBERS;

    std::thread helper_thread(helper);
    bf::use_scheduling_algorithm<bf::algo::work_stealing>(THREADS);

    bf::buffered_channel<uint64_t> ch(CAPACITY);
    bf::mutex gate_mutex;
    bf::condition_variable gate_cv;
    bool open = false;
    int arrived = 0;
    std::atomic<uint64_t> count{0}, sum{0};

    auto wait_gate = [&] {
        std::unique_lock<bf::mutex> lk(gate_mutex);
        arrived++;
        gate_cv.notify_all();
        gate_cv.wait(lk, [&] { return open; });
    };

    std::vector<bf::fiber> producers, consumers;
    for (int c = 0; c < FIBERS; c++) {
        consumers.emplace_back([&] {
            wait_gate();
            uint64_t k = 0, s = 0, v;
            while (ch.pop(v) == bf::channel_op_status::success) {
                k++;
                s += v;
            }
            count.fetch_add(k, std::memory_order_relaxed);
            sum.fetch_add(s, std::memory_order_relaxed);
        });
    }
    for (int p = 0; p < FIBERS; p++) {
        producers.emplace_back([&, p] {
            wait_gate();
            for (uint64_t i = 0; i < per; i++)
                ch.push(static_cast<uint64_t>(p) + i * FIBERS);
        });
    }
    {
        std::unique_lock<bf::mutex> lk(gate_mutex);
        gate_cv.wait(lk, [&] { return arrived == 2 * FIBERS; });
    }
    auto t0 = std::chrono::steady_clock::now();
    {
        std::lock_guard<bf::mutex> lk(gate_mutex);
        open = true;
    }
    gate_cv.notify_all();
    for (auto &f : producers)
        f.join();
    ch.close();
    for (auto &f : consumers)
        f.join();
    auto t1 = std::chrono::steady_clock::now();

    {
        std::lock_guard<bf::mutex> lk(done_mutex);
        done = true;
    }
    done_cv.notify_all();
    helper_thread.join();

    double ns =
        static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    bool ok = count.load() == total && sum.load() == total * (total - 1) / 2;
    std::printf("%.6g\n", ok ? ns / static_cast<double>(total) : -1.0);
    return 0;
}
