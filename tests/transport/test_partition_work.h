/* The partition test's task function, registered as "work" on every node
 * (test_partition.c's node 1 and test_partition_node's nodes 2 and 3):
 *
 *   work  u64 x, u64 block_on -> u64 x*x, u64 the running node's id
 *
 * On the node whose id is block_on it first waits for its cancel token (30
 * s at most, so a lost cancel shows as a result rather than a hang) and
 * returns -ECANCELED once cancelled: such a task stays in flight until its
 * spawner dies or cancels it. Every run is counted per x. */
#ifndef MOIRAI_TEST_PARTITION_WORK_H
#define MOIRAI_TEST_PARTITION_WORK_H

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/transport/node.h>

#define WORK_XS 256

/* What a node's "work" counted. Written by task fibers on any worker and
 * read by the test: each counter is a count on its own, read for a report
 * and never used to order other memory, so relaxed is enough. */
struct work_counts {
    uint64_t self_id; /* set before registering, then read only */
    _Atomic uint32_t runs[WORK_XS];
    _Atomic uint64_t started;   /* runs that blocked here */
    _Atomic uint64_t cancelled; /* of those, the ones whose token was cancelled */
};

static inline int partition_work(void *arg, const void *payload, size_t len,
                                 const moirai_cancel_token_t *cancel, void **result,
                                 size_t *result_len)
{
    struct work_counts *c = arg;
    uint64_t in[2];
    if (len != sizeof in)
        return -EINVAL;
    memcpy(in, payload, sizeof in);
    if (in[0] >= WORK_XS)
        return -EINVAL;
    atomic_fetch_add_explicit(&c->runs[in[0]], 1, memory_order_relaxed);
    if (in[1] == c->self_id) {
        atomic_fetch_add_explicit(&c->started, 1, memory_order_relaxed);
        if (moirai_cancel_token_wait_timed(cancel, moirai_deadline_after(30000000000ull)) == 0) {
            atomic_fetch_add_explicit(&c->cancelled, 1, memory_order_relaxed);
            return -ECANCELED;
        }
    }
    uint64_t *out = moirai_malloc(2 * sizeof *out);
    if (!out)
        return -ENOMEM;
    out[0] = in[0] * in[0];
    out[1] = c->self_id;
    *result = out;
    *result_len = 2 * sizeof *out;
    return 0;
}

#endif
