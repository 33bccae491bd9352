/* Time: sleeps end in deadline order, plain threads sleep too, timed waits
 * time out, and sleeping fibers cost no CPU. */
#include "async_test_util.h"

#include <stdatomic.h>
#include <sys/resource.h>

#include "test_scale.h"

struct sleeper {
    uint64_t ns;
    _Atomic int *next;
    int *order;
    int index;
};

static int sleep_then_record(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct sleeper *s = arg;
    uint64_t start = moirai_clock_now_ns();
    int rc = moirai_fiber_sleep(s->ns);
    if (rc != 0)
        return rc;
    if (moirai_clock_now_ns() - start < s->ns)
        return -EFAULT; /* woke before its time */
    s->order[atomic_fetch_add(s->next, 1)] = s->index;
    return 0;
}

Test(fiber_time, sleeps_end_in_deadline_order, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    enum { N = 8 };
    _Atomic int next = 0;
    int order[N];
    struct sleeper s[N];
    moirai_handle_t *hs[N];
    /* Spawned longest first; 30 ms apart, so noise cannot reorder them. */
    for (int i = 0; i < N; i++) {
        s[i] = (struct sleeper){(uint64_t)(N - i) * 30 * MOIRAI_NS_PER_MS, &next, order, N - 1 - i};
        hs[i] = spawn_with_handle(rt, sleep_then_record, &s[i], NULL);
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(join_and_release(hs[i], NULL), 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(order[i], i, "wake %d was sleeper %d", i, order[i]);
    drop_runtime(rt);
}

Test(fiber_time, thread_sleep_and_bad_deadline, .timeout = 30)
{
    uint64_t start = moirai_clock_now_ns();
    cr_assert_eq(moirai_fiber_sleep(5 * MOIRAI_NS_PER_MS), 0);
    cr_assert_geq(moirai_clock_now_ns() - start, 5 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_fiber_sleep(0), 0);
    cr_assert_eq(moirai_fiber_sleep_until(0), 0);
    cr_assert_eq(moirai_fiber_sleep_until(MOIRAI_DEADLINE_NEVER), -EINVAL);
}

static int timed_waits(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    (void)arg;
    moirai_mutex_t m;
    moirai_mutex_init(&m);
    moirai_mutex_lock(&m);
    moirai_event_t e;
    moirai_event_init(&e, MOIRAI_EVENT_MANUAL, false);
    moirai_semaphore_t sem;
    moirai_semaphore_init(&sem, 0);
    uint64_t d = moirai_deadline_after(10 * MOIRAI_NS_PER_MS);
    if (moirai_event_wait_timed(&e, d) != -ETIMEDOUT)
        return -EFAULT;
    if (moirai_clock_now_ns() < d)
        return -EFAULT;
    if (moirai_semaphore_wait_timed(&sem, moirai_deadline_after(MOIRAI_NS_PER_MS)) != -ETIMEDOUT)
        return -EFAULT;
    moirai_handle_t *h = NULL;
    moirai_handle_create(&h);
    int rc = moirai_handle_join_timed(h, moirai_deadline_after(MOIRAI_NS_PER_MS), NULL);
    moirai_handle_release(h);
    if (rc != -ETIMEDOUT)
        return -EFAULT;
    moirai_mutex_unlock(&m);
    return 0;
}

Test(fiber_time, timed_waits_time_out_in_fibers, .timeout = 30)
{
    moirai_runtime_t *rt = make_runtime(2);
    moirai_handle_t *hs[16];
    for (int i = 0; i < 16; i++)
        hs[i] = spawn_with_handle(rt, timed_waits, NULL, NULL);
    for (int i = 0; i < 16; i++)
        cr_assert_eq(join_and_release(hs[i], NULL), 0);
    moirai_runtime_stats_t st = idle_stats(rt);
    cr_assert_geq(st.timers_armed, 16 * 3);
    drop_runtime(rt);
}

static uint64_t process_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * MOIRAI_NS_PER_S +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * MOIRAI_NS_PER_US;
}

static _Atomic int asleep;

static int sleep_until_arg(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    atomic_fetch_add(&asleep, 1);
    return moirai_fiber_sleep_until(*(const uint64_t *)arg);
}

/* A property, not a speed: 10 000 fibers asleep use well under 1% of a
 * core. They all sleep until one deadline; the measured window starts once
 * all are asleep and ends before any wakes. */
Test(fiber_time, sleeping_fibers_cost_no_cpu, .timeout = 120)
{
    moirai_runtime_t *rt = make_runtime(2);
    /* 10 000 in the plain build; fewer under a sanitizer, which slows the
     * spawns down (the property is the same). */
    const int N = (int)scaled(10000);
    static moirai_handle_t *hs[10000];
    static uint64_t wake_at;
    wake_at = moirai_deadline_after(6 * MOIRAI_NS_PER_S);
    for (int i = 0; i < N; i++)
        hs[i] = spawn_with_handle(rt, sleep_until_arg, &wake_at, NULL);
    while (atomic_load(&asleep) < N && moirai_clock_now_ns() < wake_at)
        moirai_fiber_sleep(MOIRAI_NS_PER_MS);
    cr_assert_eq(atomic_load(&asleep), N);
    /* The last fiber counted itself just before parking: give it time. */
    moirai_fiber_sleep(100 * MOIRAI_NS_PER_MS);
    uint64_t end = wake_at - 300 * MOIRAI_NS_PER_MS;
    uint64_t cpu0 = process_cpu_ns(), wall0 = moirai_clock_now_ns();
    bool enough = wall0 + MOIRAI_NS_PER_S <= end;
    if (enough)
        moirai_fiber_sleep_until(end);
    uint64_t cpu = process_cpu_ns() - cpu0, wall = moirai_clock_now_ns() - wall0;
    for (int i = 0; i < N; i++)
        cr_assert_eq(join_and_release(hs[i], NULL), 0);
    if (!enough) {
        drop_runtime(rt);
        cr_skip_test("spawning took too long on this machine to leave a 1 s window");
    }
    cr_log_info("%d sleeping fibers: %.3f%% of a core over %.2f s", N,
                100.0 * (double)cpu / (double)wall, (double)wall / 1e9);
    cr_assert_lt(cpu, wall / 100, "sleeping fibers used %llu ns of CPU in %llu ns",
                 (unsigned long long)cpu, (unsigned long long)wall);
    drop_runtime(rt);
}
