/* moirai-bench, suite "transport": the C interface of the peers loaded as
 * shared modules.
 *
 * Only the crossbeam-channel peer is a shared module (a Rust cdylib,
 * bench/transport/crossbeam, loaded with dlopen(RTLD_LOCAL) on first use
 * by bench_transport.c, which looks these names up with dlsym). The Go and
 * Boost.Fiber peers are programs run once per round (a second Go runtime
 * or a second Boost.Fiber work_stealing pool cannot live in moirai-bench
 * beside the async suite's), and the ZeroMQ, Unix-socket and ck_ring peers
 * are C in bench_transport.c.
 *
 * Each function starts its second thread before its clock starts, measures
 * only the workload, joins the thread after the clock stops, and returns
 * its metric, or a negative value if its work came back wrong (a value
 * lost, duplicated or out of order). Not thread-safe: the bench calls them
 * from its one thread. */
#ifndef MOIRAI_BENCH_TRANSPORT_PEER_H
#define MOIRAI_BENCH_TRANSPORT_PEER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* chan_bounded_1p1c: the calling thread sends the 8-byte values 0..n-1
 * through a bounded channel of `capacity`; a second thread receives them
 * and checks their order. Returns ns per message. */
double moirai_peer_chan_bounded_1p1c(uint64_t n, uint64_t capacity);

/* chan_pingpong: two threads, two rendezvous (capacity 0) channels; the
 * calling thread sends i and waits for i + 1, `n` times. Returns ns per
 * round trip. */
double moirai_peer_chan_pingpong(uint64_t n);

#ifdef __cplusplus
}
#endif

#endif
