/* The two-hop steal through a real pool of three workers: a task spawned
 * on worker X, batch-stolen by worker Y and stolen from Y's deque by
 * worker Z, which runs it once and sees what its spawner wrote.
 *
 * The path is forced, not hoped for. Blockers hold Y and Z while a task R
 * on X spawns three children (no LIFO slot, so all three go to X's
 * deque); Y is let go and batch-steals half of that deque rounded up, the
 * oldest child (it runs, and waits) and the next one (pushed onto Y's own
 * deque); R returns and X pops the newest child (it runs, and waits).
 * Only then is Z let go: X's deque is empty and Y is busy, so the only job
 * there is to take is the one in Y's deque. Which child ran where, and
 * the steal counters of Y and Z, say that exactly this happened.
 *
 * The turns are taken through relaxed flags, so that they add no
 * happens-before of their own. The pool adds others, though: Z reads X's
 * deque (empty, but written by X after the payloads) before it steals from
 * Y, so a release missing on Y's push is covered here, and ThreadSanitizer
 * did not report it in 5 runs with it planted. test_steal_hops.c checks
 * that publication on the deques alone, where nothing can cover for it;
 * this test checks that the path exists in the pool and runs each task
 * once (a batch limit of 1, planted, fails the counters here). */
#include <criterion/criterion.h>

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include <moirai/core/clock.h>
#include <moirai/sched/sched.h>

#define WAIT_NS  (30 * MOIRAI_NS_PER_S)
#define CHILDREN 3

typedef struct pool_hops {
    moirai_sched_t *s;
    atomic_int go[2]; /* lets blocker 0 (on Y) or 1 (on Z) return */
    atomic_int blocker_on[2];
    atomic_int r_on;    /* X: where R runs (-1 before) */
    atomic_int spawned; /* R has spawned every child */
    atomic_int started; /* children started */
    atomic_int release; /* lets the children return */
    atomic_int child_on[CHILDREN];
    atomic_int runs[CHILDREN];
    atomic_int done; /* children finished (release, the last word) */
    atomic_int bad;  /* a lost turn, a wrong payload, a failed spawn */
    /* Written plainly by R before each spawn, read by the child. */
    uint64_t payload[CHILDREN][2];
} pool_hops_t;

static pool_hops_t hops;

/* Waits until `*flag` reaches `want` (relaxed); counts a timeout as bad. */
static void await_relaxed(atomic_int *flag, int want)
{
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (atomic_load_explicit(flag, memory_order_relaxed) < want) {
        if (moirai_clock_now_ns() > deadline) {
            atomic_fetch_add_explicit(&hops.bad, 1, memory_order_relaxed);
            return;
        }
        sched_yield();
    }
}

static uint64_t expected(intptr_t i, int k)
{
    return (uint64_t)(i + 1) * UINT64_C(0x9E3779B97F4A7C15) + (uint64_t)k;
}

static int child(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    intptr_t i = (intptr_t)arg;
    if (hops.payload[i][0] != expected(i, 0) || hops.payload[i][1] != expected(i, 1))
        atomic_fetch_add_explicit(&hops.bad, 1, memory_order_relaxed);
    atomic_store_explicit(&hops.child_on[i], moirai_sched_worker_index(), memory_order_relaxed);
    atomic_fetch_add_explicit(&hops.runs[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hops.started, 1, memory_order_relaxed);
    await_relaxed(&hops.release, 1);
    /* Release: the test thread reads every record after it sees 3. */
    atomic_fetch_add_explicit(&hops.done, 1, memory_order_release);
    return 0;
}

static int blocker(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    intptr_t k = (intptr_t)arg;
    atomic_store_explicit(&hops.blocker_on[k], moirai_sched_worker_index(), memory_order_relaxed);
    await_relaxed(&hops.go[k], 1);
    return 0;
}

static int spawner(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    atomic_store_explicit(&hops.r_on, moirai_sched_worker_index(), memory_order_relaxed);
    for (intptr_t i = 0; i < CHILDREN; i++) {
        hops.payload[i][0] = expected(i, 0);
        hops.payload[i][1] = expected(i, 1);
        if (moirai_sched_spawn(hops.s, child, (void *)i, NULL, NULL) != 0)
            atomic_fetch_add_explicit(&hops.bad, 1, memory_order_relaxed);
    }
    atomic_store_explicit(&hops.spawned, 1, memory_order_relaxed);
    /* Return, so that X pops its last child, only once Y runs the first. */
    await_relaxed(&hops.started, 1);
    return 0;
}

static void stats_of(int w, moirai_sched_worker_stats_t *out)
{
    cr_assert_eq(moirai_sched_worker_stats(hops.s, w, out), 0);
}

Test(steal_hops_pool, child_batch_stolen_then_stolen_again_runs_once_on_the_third_worker,
     .timeout = 60)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = 3;
    cfg.no_lifo_slot = true;
    cr_assert_eq(moirai_sched_create(&hops.s, &cfg), 0);
    for (int k = 0; k < 2; k++)
        atomic_init(&hops.blocker_on[k], -1);
    atomic_init(&hops.r_on, -1);

    /* Y and Z: the workers the two blockers hold. */
    for (intptr_t k = 0; k < 2; k++)
        cr_assert_eq(moirai_sched_spawn(hops.s, blocker, (void *)k, NULL, NULL), 0);
    for (int k = 0; k < 2; k++)
        await_relaxed(&hops.blocker_on[k], 0);
    cr_assert_eq(atomic_load(&hops.bad), 0, "the blockers did not start");
    /* X: the only free worker takes R, which spawns the children. */
    cr_assert_eq(moirai_sched_spawn(hops.s, spawner, NULL, NULL, NULL), 0);
    await_relaxed(&hops.spawned, 1);
    cr_assert_eq(atomic_load(&hops.bad), 0, "R did not spawn");
    int x = atomic_load_explicit(&hops.r_on, memory_order_relaxed);
    int y = atomic_load_explicit(&hops.blocker_on[0], memory_order_relaxed);
    int z = atomic_load_explicit(&hops.blocker_on[1], memory_order_relaxed);
    cr_assert(x != y && y != z && x != z, "workers %d %d %d", x, y, z);
    /* Every worker is busy: the counters stand still. */
    moirai_sched_worker_stats_t y0, z0;
    stats_of(y, &y0);
    stats_of(z, &z0);

    /* Y batch-steals two, runs the oldest; R returns, X pops the newest. */
    atomic_store_explicit(&hops.go[0], 1, memory_order_relaxed);
    await_relaxed(&hops.started, 2);
    /* Z: nothing left on X, so it takes the child Y pushed. */
    atomic_store_explicit(&hops.go[1], 1, memory_order_relaxed);
    await_relaxed(&hops.started, 3);
    atomic_store_explicit(&hops.release, 1, memory_order_relaxed);
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    while (atomic_load_explicit(&hops.done, memory_order_acquire) < CHILDREN &&
           moirai_clock_now_ns() < deadline)
        sched_yield();
    cr_assert_eq(atomic_load_explicit(&hops.done, memory_order_acquire), CHILDREN);

    cr_assert_eq(atomic_load(&hops.bad), 0, "a lost turn or a child without its payload");
    for (int i = 0; i < CHILDREN; i++)
        cr_assert_eq(atomic_load(&hops.runs[i]), 1, "child %d ran %d times", i,
                     atomic_load(&hops.runs[i]));
    cr_assert_eq(atomic_load(&hops.child_on[0]), y, "the oldest child runs on the batch thief");
    cr_assert_eq(atomic_load(&hops.child_on[1]), z, "the second child took the second hop");
    cr_assert_eq(atomic_load(&hops.child_on[2]), x, "the owner pops the newest child");
    /* Y: one steal of two jobs; Z: one steal of one job. Idle workers may
     * have tried and failed since, which counts attempts only. */
    moirai_sched_worker_stats_t y1, z1;
    stats_of(y, &y1);
    stats_of(z, &z1);
    cr_assert_eq(y1.steals - y0.steals, 1);
    cr_assert_eq(y1.stolen - y0.stolen, 2, "Y's steal was a batch of two");
    cr_assert_eq(z1.steals - z0.steals, 1);
    cr_assert_eq(z1.stolen - z0.stolen, 1);
    cr_assert_eq(moirai_sched_destroy(hops.s, MOIRAI_SHUTDOWN_DRAIN), 0);
}
