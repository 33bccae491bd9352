/* Proportional share: CPU time divided by weights.
 *
 * moirai_rt_share_split() turns weights into exact shares of a window
 * (largest-remainder rounding, so the shares add up to the window).
 * moirai_rt_share_t is a stride scheduler (Waldspurger & Weihl, 1995):
 * each client has a pass value that grows by (time used) / weight; the
 * client with the smallest pass runs next. Over any window each client's
 * time is its weighted share to within one charge. Use the split to set
 * quota group budgets, the stride scheduler to pick among clients. */
#ifndef MOIRAI_RT_SHARE_H
#define MOIRAI_RT_SHARE_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/rt/export.h>

/* A stride scheduler (see above). Opaque; created and destroyed by the functions below. */
typedef struct moirai_rt_share moirai_rt_share_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Writes into out[i] client i's share of `window_ns`: window * w_i / sum w,
 * rounded so the shares sum to exactly `window_ns` (the remainders go to
 * the largest fractions, ties to the lower index). A weight of 0 gets 0.
 * Never blocks; thread-safe. Returns 0 or -EINVAL (NULL arrays with
 * n > 0, every weight 0, n above 65536). */
MOIRAI_RT_API int moirai_rt_share_split(const uint32_t *weights, size_t n, uint64_t window_ns,
                                        uint64_t *out);

/* Creates a stride scheduler over `n` clients with `weights` (each > 0).
 * Returns 0, -EINVAL (NULL, n 0 or above 65536, a zero weight) or -ENOMEM. */
MOIRAI_RT_API int moirai_rt_share_create(moirai_rt_share_t **out, const uint32_t *weights,
                                         size_t n);

/* Frees it. Ignores NULL. */
MOIRAI_RT_API void moirai_rt_share_destroy(moirai_rt_share_t *share);

/* The client to run next (smallest pass; ties to the lower index), or
 * -EINVAL for NULL. Not thread-safe: one owner drives a share. */
MOIRAI_RT_API int moirai_rt_share_pick(const moirai_rt_share_t *share);

/* Charges `used_ns` of CPU time to client `client`. Returns 0 or -EINVAL. */
MOIRAI_RT_API int moirai_rt_share_charge(moirai_rt_share_t *share, int client, uint64_t used_ns);

/* Changes a weight (> 0); the client keeps its place. 0 or -EINVAL. */
MOIRAI_RT_API int moirai_rt_share_set_weight(moirai_rt_share_t *share, int client, uint32_t weight);

/* Total time charged to `client` (0 for a bad argument). */
MOIRAI_RT_API uint64_t moirai_rt_share_used(const moirai_rt_share_t *share, int client);

#ifdef __cplusplus
}
#endif

#endif
