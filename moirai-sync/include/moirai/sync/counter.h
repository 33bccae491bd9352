/* Sharded counter: a 64-bit counter that many threads can add to without
 * contending.
 *
 * The counter keeps one slot per CPU (as many as moirai_topology_cpu_count()
 * reports), each on its own cache line (moirai_topology_cache_line_size()),
 * and an add goes to the slot of the CPU the caller runs on; concurrent
 * adds from different CPUs therefore never write the same cache line. A
 * read sums the slots, so reads cost O(CPUs) and are meant to be rare
 * (statistics, not a sequence number).
 *
 * Arithmetic wraps modulo 2^64 (reported as int64_t), so adding and
 * subtracting never has undefined behaviour.
 *
 * Memory ordering: relaxed throughout. An add orders nothing; a read is
 * not a snapshot of one instant while adds run concurrently (it returns a
 * value between the totals at its start and at its end only if all
 * concurrent adds are positive). Once every add has completed and that
 * completion is made visible to the reader (a join, a mutex, a barrier),
 * the read returns the exact total.
 *
 * A heavy object: created and destroyed, never embedded. */
#ifndef MOIRAI_SYNC_COUNTER_H
#define MOIRAI_SYNC_COUNTER_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/sync/export.h>

/* A sharded counter (see above). Opaque; created and destroyed by the functions below. */
typedef struct moirai_counter moirai_counter_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Creates a counter at zero in `*out`. Thread-safe. Returns 0, -EINVAL if
 * `out` is NULL, or -ENOMEM (`*out` untouched, nothing leaked). */
MOIRAI_SYNC_API int moirai_counter_create(moirai_counter_t **out);

/* Frees `counter` (NULL does nothing). No thread may use it any more. */
MOIRAI_SYNC_API void moirai_counter_destroy(moirai_counter_t *counter);

/* Adds `delta` (may be negative) to the current CPU's slot. Never blocks;
 * one uncontended atomic add. Relaxed. Thread-safe. */
MOIRAI_SYNC_API void moirai_counter_add(moirai_counter_t *counter, int64_t delta);

/* The sum of all slots. Never blocks. Relaxed (see above). Thread-safe. */
MOIRAI_SYNC_API int64_t moirai_counter_read(const moirai_counter_t *counter);

/* The number of slots (at least 1). */
MOIRAI_SYNC_API size_t moirai_counter_slots(const moirai_counter_t *counter);

#ifdef __cplusplus
}
#endif

#endif
