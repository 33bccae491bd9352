// Moirai's public headers used from C++17: the C++ view of every shared
// struct has the layout the C library was compiled with, the static
// initializers work, and atomic words cross the language boundary both
// ways (a std::atomic word parked on by the C library, a C mutex taken by
// C++ threads, the log threshold and the trace session the C library
// writes read inline by the C++ views of MOIRAI_LOG_ENABLED and
// MOIRAI_TRACE_ENABLED). A plain program: exit status 0 means
// every check held.
#include <moirai/core.h>
#include <moirai/async.h>
#include <moirai/sched/job.h>
#include <moirai/sync.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "layout.h"

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            std::fprintf(stderr, "test_cxx: check failed: %s (line %d)\n", #cond, __LINE__);       \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define CXX_LAYOUT(type, field)                                                                    \
    {#type "." #field, sizeof(type), alignof(type), offsetof(type, field)},

static const moirai_test_layout_t cxx_layouts[] = {MOIRAI_TEST_LAYOUTS(CXX_LAYOUT)};

// Statically initialised objects, as a C++ user writes them.
static moirai_mutex_t mutex = MOIRAI_MUTEX_INIT;
static moirai_once_t once = MOIRAI_ONCE_INIT;
static moirai_waitgroup_t waitgroup = MOIRAI_WAITGROUP_INIT;
static int once_runs;

static void count_once(void *arg)
{
    (void)arg;
    once_runs++;
}

static void check_layouts()
{
    size_t n = 0;
    const moirai_test_layout_t *c = moirai_test_c_layouts(&n);
    CHECK(n == sizeof(cxx_layouts) / sizeof(cxx_layouts[0]));
    for (size_t i = 0; i < n && i < sizeof(cxx_layouts) / sizeof(cxx_layouts[0]); i++) {
        const moirai_test_layout_t &x = cxx_layouts[i];
        CHECK(std::strcmp(c[i].name, x.name) == 0);
        if (c[i].size != x.size || c[i].align != x.align || c[i].offset != x.offset) {
            std::fprintf(stderr, "test_cxx: %s: C size %zu align %zu offset %zu, C++ %zu %zu %zu\n",
                         x.name, c[i].size, c[i].align, c[i].offset, x.size, x.align, x.offset);
            failures++;
        }
    }
    std::printf("test_cxx: %zu layouts agree between C and C++\n", n);
}

// A C++ thread parks in the C library on a std::atomic word until the main
// thread publishes a value and unparks it: the value it then reads is the
// one published (release store, acquire load on the word itself).
static void check_park()
{
    std::atomic<uint32_t> word{0};
    uint32_t seen = 0;
    std::thread waiter([&] {
        while (word.load(std::memory_order_acquire) == 0)
            moirai_park(&word, 0, MOIRAI_DEADLINE_NEVER);
        seen = word.load(std::memory_order_relaxed);
    });
    word.store(7, std::memory_order_release);
    moirai_unpark_all(&word);
    waiter.join();
    CHECK(seen == 7);
}

// Four C++ threads increment a plain counter under a statically
// initialised C mutex: not one increment is lost.
static void check_mutex()
{
    const int threads = 4, rounds = 20000;
    long counter = 0;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++)
        pool.emplace_back([&] {
            for (int i = 0; i < rounds; i++) {
                moirai_mutex_lock(&mutex);
                counter++;
                moirai_mutex_unlock(&mutex);
            }
        });
    for (auto &t : pool)
        t.join();
    CHECK(counter == (long)threads * rounds);
}

int main()
{
    check_layouts();
    check_park();
    check_mutex();

    CHECK(moirai_once_call(&once, count_once, nullptr) == 0);
    CHECK(moirai_once_call(&once, count_once, nullptr) == 0);
    CHECK(once_runs == 1);
    CHECK(moirai_waitgroup_add(&waitgroup, 1) == 0);
    CHECK(moirai_waitgroup_done(&waitgroup) == 0);
    moirai_waitgroup_wait(&waitgroup);

    // The C library sets the threshold; the C++ view of the macro reads it.
    CHECK(moirai_log_level_set(MOIRAI_LOG_ERROR) == 0);
    CHECK(!MOIRAI_LOG_ENABLED(MOIRAI_LOG_WARN));
    CHECK(MOIRAI_LOG_ENABLED(MOIRAI_LOG_ERROR));
    CHECK(moirai_log_level_set(MOIRAI_LOG_WARN) == 0);
    CHECK(MOIRAI_LOG_ENABLED(MOIRAI_LOG_WARN));

    // Likewise the trace session number behind MOIRAI_TRACE_ENABLED(), and
    // the recorder used through the C++ view of MOIRAI_TRACE().
    CHECK(!MOIRAI_TRACE_ENABLED());
    CHECK(moirai_trace_start(nullptr) == 0);
    CHECK(MOIRAI_TRACE_ENABLED());
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_BEGIN, "cxx", "span", "n", 1);
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_END, "cxx", nullptr, nullptr, 0);
    CHECK(moirai_trace_stop() == 0);
    CHECK(!MOIRAI_TRACE_ENABLED());
    moirai_trace_stats_t trace_stats;
    CHECK(moirai_trace_stats(&trace_stats) == 0);
    CHECK(trace_stats.recorded == 2 && trace_stats.dropped == 0);

    if (failures) {
        std::fprintf(stderr, "test_cxx: %d check(s) failed\n", failures);
        return 1;
    }
    std::printf("test_cxx: all checks passed\n");
    return 0;
}
