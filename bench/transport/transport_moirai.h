/* moirai-bench, suite "transport": the Moirai side of each case, or the
 * reason it is missing.
 *
 * Each group is compiled only when the moirai-transport API it measures
 * is in this tree (bench/meson.build defines MOIRAI_BENCH_TRANSPORT_HAVE_*
 * from the headers it finds); otherwise the case's "moirai" row is
 * reported missing with the reason below, while its peers still run. */
#ifndef MOIRAI_BENCH_TRANSPORT_MOIRAI_H
#define MOIRAI_BENCH_TRANSPORT_MOIRAI_H

#include <stdint.h>

#include "proc.h"

#ifdef MOIRAI_BENCH_TRANSPORT_HAVE_CHAN
double moirai_bench_chan_bounded(uint64_t n);
double moirai_bench_chan_pingpong(uint64_t n);
double moirai_bench_chan_fibers(uint64_t n);
#define MOIRAI_CHAN_BOUNDED_RUN  moirai_bench_chan_bounded
#define MOIRAI_CHAN_PINGPONG_RUN moirai_bench_chan_pingpong
#define MOIRAI_CHAN_FIBERS_RUN   moirai_bench_chan_fibers
#define MOIRAI_CHAN_WHY          NULL
#else
#define MOIRAI_CHAN_BOUNDED_RUN  NULL
#define MOIRAI_CHAN_PINGPONG_RUN NULL
#define MOIRAI_CHAN_FIBERS_RUN   NULL
#define MOIRAI_CHAN_WHY                                                                            \
    "moirai-transport's channel API (moirai/transport/chan.h) is not in this tree at "             \
    "configure time"
#endif

#ifdef MOIRAI_BENCH_TRANSPORT_HAVE_RING
double moirai_bench_ring_stream(uint64_t n);
double moirai_bench_ring_pingpong(uint64_t n);
int moirai_bench_ring_stream_child(const bench_child_args_t *a);
int moirai_bench_ring_pingpong_child(const bench_child_args_t *a);
#define MOIRAI_RING_STREAM_RUN   moirai_bench_ring_stream
#define MOIRAI_RING_PINGPONG_RUN moirai_bench_ring_pingpong
#define MOIRAI_RING_WHY          NULL
#else
#define MOIRAI_RING_STREAM_RUN   NULL
#define MOIRAI_RING_PINGPONG_RUN NULL
#define MOIRAI_RING_WHY                                                                            \
    "moirai-transport's shared-memory ring API (moirai/transport/ring.h) is not in this "          \
    "tree at configure time"
#endif

#ifdef MOIRAI_BENCH_TRANSPORT_HAVE_BATCH
double moirai_bench_batch(uint64_t n);
double moirai_bench_unbatched(uint64_t n);
int moirai_bench_batch_child(const bench_child_args_t *a);
int moirai_bench_unbatched_child(const bench_child_args_t *a);
#define MOIRAI_BATCH_RUN     moirai_bench_batch
#define MOIRAI_UNBATCHED_RUN moirai_bench_unbatched
#define MOIRAI_BATCH_WHY     NULL
#else
#define MOIRAI_BATCH_RUN     NULL
#define MOIRAI_UNBATCHED_RUN NULL
#define MOIRAI_BATCH_WHY                                                                           \
    "moirai-transport's batcher (moirai/transport/batch.h) is not in this tree at "                \
    "configure time"
#endif

#endif
