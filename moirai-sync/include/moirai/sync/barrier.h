/* Barrier: `count` threads wait until all of them have arrived, then all
 * go on; reusable for any number of generations.
 *
 * Memory ordering: everything each participant did before its
 * moirai_barrier_wait() of one generation happens before everything any
 * participant does after returning from that generation's wait.
 *
 * Storage: 12 bytes, embeddable; MOIRAI_BARRIER_INIT(count) or
 * moirai_barrier_init(). */
#ifndef MOIRAI_SYNC_BARRIER_H
#define MOIRAI_SYNC_BARRIER_H

#include <stdint.h>

#include <moirai/core/atomic.h>
#include <moirai/sync/export.h>

/* The fields are private: use only the functions below. */
typedef struct moirai_barrier {
    MOIRAI_ATOMIC(uint32_t) priv_remaining;  /* arrivals still missing in this generation */
    MOIRAI_ATOMIC(uint32_t) priv_generation; /* bumped when a generation completes */
    uint32_t priv_count;                     /* participants per generation */
} moirai_barrier_t;

/* Static initializer for a barrier of `count` (>= 1) participants. */
#define MOIRAI_BARRIER_INIT(count)                                                                 \
    {                                                                                              \
        .priv_remaining = (count), .priv_generation = 0, .priv_count = (count)                     \
    }

/* Returned by moirai_barrier_wait() to exactly one participant of each
 * generation (the last to arrive), like PTHREAD_BARRIER_SERIAL_THREAD. */
#define MOIRAI_BARRIER_SERIAL 1

#ifdef __cplusplus
extern "C" {
#endif

/* Initializes `barrier` for `count` participants per generation. No other
 * thread may use it yet. Returns 0, or -EINVAL when `count` is 0 or above
 * UINT32_MAX / 2 (nothing is changed then). */
MOIRAI_SYNC_API int moirai_barrier_init(moirai_barrier_t *barrier, uint32_t count);

/* Ends the life of `barrier`; every wait of the last generation must have
 * returned. Releases nothing. */
MOIRAI_SYNC_API void moirai_barrier_destroy(moirai_barrier_t *barrier);

/* Arrives at `barrier` and blocks (spins briefly, then parks) until all
 * `count` participants of this generation have arrived. Returns
 * MOIRAI_BARRIER_SERIAL in exactly one participant per generation and 0 in
 * the others. The barrier is ready for the next generation as soon as the
 * last participant arrives. Thread-safe; at most `count` threads may be
 * inside one generation. */
MOIRAI_SYNC_API int moirai_barrier_wait(moirai_barrier_t *barrier);

#ifdef __cplusplus
}
#endif

#endif
