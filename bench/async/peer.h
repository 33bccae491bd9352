/* moirai-bench, suite "async": the C interface every peer module exports.
 *
 * Each peer (Boost.Context's fcontext, Boost.Fiber, Go, Tokio) is built as
 * its own shared module and loaded with dlopen(RTLD_LOCAL) by
 * bench/async/bench_async.c, which looks these names up with dlsym; a
 * module that does not export one is not a peer of that case. Modules keep
 * moirai-bench a C program without a C++, Go or Rust runtime linked in, and
 * keep each runtime's symbols to itself. The Go peer repeats these
 * signatures in bench/async/go/peer.go, the Tokio peer in
 * bench/async/tokio/src/lib.rs.
 *
 * Every function sets up its runtime (threads, schedulers) before its
 * clock starts, measures only the workload, and after the clock stops
 * takes the runtime down, or, where the runtime cannot be taken down (the
 * Go runtime lives as long as the process; Boost.Fiber's work_stealing
 * can be built only once per process), leaves its threads blocked in the
 * kernel, so that no thread of it spins into the next implementation's
 * round. `threads` is the number of threads that run fibers. Each returns
 * its metric, or a negative value if its runtime cannot be set up or its
 * work came back wrong. None is thread-safe: the bench calls them from
 * its one thread. */
#ifndef MOIRAI_BENCH_ASYNC_PEER_H
#define MOIRAI_BENCH_ASYNC_PEER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* fiber_switch: two contexts on the calling thread switch to each other
 * `switches` times in all. Returns ns per switch. */
double moirai_peer_fiber_switch(uint64_t switches);

/* fiber_spawn_join: from inside one fiber (goroutine, task) of a runtime
 * with `threads` threads, `iters` times: spawn an empty child with a join
 * handle (WaitGroup, JoinHandle) and join it. Returns ns per iteration. */
double moirai_peer_spawn_join(int threads, uint64_t iters);

/* fiber_yield_2w: `fibers` fibers each yield `yields` times on `threads`
 * threads. Returns wall-clock ns (first spawn to last join) per yield. */
double moirai_peer_yield(int threads, int fibers, uint64_t yields);

/* mutex_handoff_fibers: `fibers` fibers on `threads` threads each take one
 * shared lock `per_fiber` times; in the critical section each increments
 * a counter and yields once. `*counter` gets the final count for the
 * caller to check. Returns wall-clock ns per acquisition. */
double moirai_peer_mutex_handoff(int threads, int fibers, uint64_t per_fiber, uint64_t *counter);

/* sleep_10k: `fibers` fibers each sleep `sleep_ns`, then all are joined.
 * Returns the process's CPU time (getrusage RUSAGE_SELF, user + system)
 * from before the first spawn to after the last join, in ns per fiber. */
double moirai_peer_sleep(int threads, int fibers, uint64_t sleep_ns);

/* parked_rss: `fibers` fibers each block on a wait (channel receive,
 * condition variable) with the default stack; once all are blocked, the
 * resident set (/proc/self/statm) minus the resident set before the first
 * spawn is divided by `fibers`; then all are released and joined. Returns
 * bytes per fiber. */
double moirai_peer_parked_rss(int threads, int fibers);

/* The I/O cases (bench/async/bench_async_io.c, io_peers.h): client and
 * server always in this one process. */

/* tcp_echo_rtt: a server and one client on a loopback connection, both
 * fibers (goroutines, tasks) of a runtime of `threads` threads; 100
 * untimed round trips of 64 B, then `iters` timed ones, each echo checked.
 * Returns us per round trip. */
double moirai_peer_echo_rtt(int threads, uint64_t iters);

/* tcp_echo_100c: `conns` such client/server pairs, each client making 10
 * untimed round trips, then (once all have) `per_conn` timed ones.
 * Returns ns per request overall. */
double moirai_peer_echo_conns(int threads, int conns, uint64_t per_conn);

/* http_hello_keepalive: starts a keep-alive HTTP/1.1 server answering
 * every request with "Hello, World!" on 127.0.0.1 and an ephemeral port
 * (set in `*port`) on `threads` threads, and returns 0 (or a negative
 * errno) while it keeps serving; moirai_peer_http_stop closes it and every
 * connection. */
int moirai_peer_http_start(int threads, int *port);
int moirai_peer_http_stop(void);

#ifdef __cplusplus
}
#endif

#endif
