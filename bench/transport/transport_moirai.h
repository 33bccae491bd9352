/* moirai-bench, suite "transport": the Moirai side of each case
 * (bench_transport_chan.c, _ring.c, _batch.c). */
#ifndef MOIRAI_BENCH_TRANSPORT_MOIRAI_H
#define MOIRAI_BENCH_TRANSPORT_MOIRAI_H

#include <stdint.h>

#include "proc.h"

double moirai_bench_chan_bounded(uint64_t n);
double moirai_bench_chan_pingpong(uint64_t n);
double moirai_bench_chan_fibers(uint64_t n);
double moirai_bench_ring_stream(uint64_t n);
double moirai_bench_ring_pingpong(uint64_t n);
int moirai_bench_ring_stream_child(const bench_child_args_t *a);
int moirai_bench_ring_pingpong_child(const bench_child_args_t *a);
double moirai_bench_remote_rtt(uint64_t n);
int moirai_bench_remote_child(const bench_child_args_t *a);
double moirai_bench_remote_stream(uint64_t n);
int moirai_bench_stream_child(const bench_child_args_t *a);
double moirai_bench_batch(uint64_t n);
double moirai_bench_unbatched(uint64_t n);
int moirai_bench_batch_child(const bench_child_args_t *a);
int moirai_bench_unbatched_child(const bench_child_args_t *a);

#endif
