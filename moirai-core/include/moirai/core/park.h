/* The parking layer: the one blocking model every Moirai module uses.
 *
 * A waiter parks on the address of a 32-bit atomic word while the word
 * holds an expected value; a waker changes the word and unparks. From a
 * plain thread, parking sleeps on a futex. A fiber runtime can install a
 * hook so that parking from one of its fibers suspends the fiber instead
 * and the worker thread runs other work; wakers need not know which kind
 * of waiter they wake.
 *
 * The usual pattern (the waiter re-checks, so spurious returns are
 * harmless):
 *
 *     while (atomic_load_explicit(&word, memory_order_acquire) == BUSY)
 *         moirai_park(&word, BUSY, MOIRAI_DEADLINE_NEVER);
 *
 *     atomic_store_explicit(&word, FREE, memory_order_release);
 *     moirai_unpark_all(&word);
 *
 * No wake-up is lost: the kernel (or the hook) checks the word and queues
 * the waiter atomically, so a change plus unpark that happens after the
 * waiter's check either makes the park return at once or wakes it.
 *
 * Memory ordering: park and unpark order nothing themselves. Publish data
 * with a release store to the word (or elsewhere) before unparking and read
 * it with an acquire load after parking returns, as above. */
#ifndef MOIRAI_CORE_PARK_H
#define MOIRAI_CORE_PARK_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/atomic.h>
#include <moirai/core/export.h>

/* A parking runtime other than the kernel, such as moirai-async's fibers.
 *
 *   applies(arg)  true when the calling context is one the hook parks
 *                 (for example: the caller is a fiber). Called on every
 *                 park; must be cheap and must not block.
 *   park(...)     same contract as moirai_park(): return 0 when woken or
 *                 when *addr != expected, -ETIMEDOUT at the deadline;
 *                 may also return -ECANCELED when the waiting fiber was
 *                 cancelled (moirai_park() passes it on).
 *   unpark(...)   wakes up to `max` waiters that this hook parked on
 *                 `addr` (INT_MAX: all) and returns how many it woke.
 *
 * Each function receives `arg` first. Wakers call unpark first; threads
 * parked on the futex are woken for whatever count the hook did not use. */
typedef struct moirai_park_hook {
    bool (*applies)(void *arg);
    int (*park)(void *arg, MOIRAI_ATOMIC(uint32_t) *addr, uint32_t expected, uint64_t deadline);
    int (*unpark)(void *arg, MOIRAI_ATOMIC(uint32_t) *addr, int max);
    void *arg;
} moirai_park_hook_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Parks the caller while `*addr == expected`, until an unpark on `addr`,
 * the `deadline` (absolute, moirai_clock_now_ns() scale;
 * MOIRAI_DEADLINE_NEVER for none) or a spurious wake-up. It first spins
 * briefly re-reading the word, because waking a sleeper on another CPU
 * costs 10-20 us on typical VMs while a short spin catches most quick
 * hand-offs.
 * Returns 0 (woken, or the word differed, or spurious: re-check your
 * condition), -ETIMEDOUT once the deadline has passed, or, from a fiber
 * whose task was cancelled, -ECANCELED once (waits that can fail pass it
 * on, the others re-check and wait again). Blocks. */
MOIRAI_CORE_API int moirai_park(MOIRAI_ATOMIC(uint32_t) *addr, uint32_t expected,
                                uint64_t deadline);

/* As moirai_park() without the initial spin, for callers that have spun
 * already (an adaptive mutex) or know the wait will be long. */
MOIRAI_CORE_API int moirai_park_nospin(MOIRAI_ATOMIC(uint32_t) *addr, uint32_t expected,
                                       uint64_t deadline);

/* As moirai_park() and moirai_park_nospin(), and say what the caller
 * waits for: `what` is a short description that outlives the wait,
 * normally a string literal naming the primitive ("mutex", "channel").
 * A park hook reads it with moirai_park_what() (moirai-async shows it in
 * its fiber dumps); a thread that parks on the futex ignores it, at no
 * cost. NULL means "not said". Same returns; blocks as they do. */
MOIRAI_CORE_API int moirai_park_for(MOIRAI_ATOMIC(uint32_t) *addr, uint32_t expected,
                                    uint64_t deadline, const char *what);
MOIRAI_CORE_API int moirai_park_nospin_for(MOIRAI_ATOMIC(uint32_t) *addr, uint32_t expected,
                                           uint64_t deadline, const char *what);

/* For a park hook, inside its park(): the `what` of the moirai_park_for()
 * or moirai_park_nospin_for() call being hooked on this thread, or NULL
 * (a plain moirai_park(), or called outside a hook's park). Never blocks;
 * reads thread-local state. */
MOIRAI_CORE_API const char *moirai_park_what(void);

/* Parks the calling thread while `*addr == expected` and `*addr2 ==
 * expected2`, until an unpark on either address, the `deadline` (as for
 * moirai_park()) or a spurious wake-up; no spin. For a thread that must
 * wake for either of two events whose wakers each know only their own word
 * (moirai-sched's workers helping while a task joins a handle). Uses
 * futex_waitv (Linux 5.16); on a kernel without it, it sleeps on `addr` in
 * slices of 1 ms and re-reads `addr2` between them, so a change of `addr2`
 * is seen up to 1 ms late, never missed. Blocks; thread-safe; orders
 * nothing (as moirai_park()). Returns 0 (woken, a word differed, or
 * spurious: re-check), -ETIMEDOUT once the deadline has passed, -EINVAL
 * for a NULL address, -EPERM when called from a fiber of a runtime whose
 * park hook applies (a fiber parks on one word through moirai_park()). */
MOIRAI_CORE_API int moirai_park_either(MOIRAI_ATOMIC(uint32_t) *addr, uint32_t expected,
                                       MOIRAI_ATOMIC(uint32_t) *addr2, uint32_t expected2,
                                       uint64_t deadline);

/* Wakes one waiter parked on `addr`, if any. Returns the number woken (0 or
 * 1). Never blocks (costs a system call: keep a "has waiters" flag in the
 * word and skip the call when it is clear). Thread-safe. */
MOIRAI_CORE_API int moirai_unpark_one(MOIRAI_ATOMIC(uint32_t) *addr);

/* Wakes every waiter parked on `addr`. Returns the number woken. */
MOIRAI_CORE_API int moirai_unpark_all(MOIRAI_ATOMIC(uint32_t) *addr);

/* Installs `hook` (not copied: it must stay valid until replaced) or, with
 * NULL, removes it. Install before any waiter can use it and remove only
 * once none is parked through it. Release: a thread that sees the new hook
 * sees its fields. Returns 0, or -EINVAL if a function pointer is NULL. */
MOIRAI_CORE_API int moirai_park_hook_set(const moirai_park_hook_t *hook);

#ifdef __cplusplus
}
#endif

#endif
