/* Monotonic clock and deadlines. */
#include <time.h>

#include <criterion/criterion.h>

#include <moirai/core/clock.h>

Test(clock, now_never_goes_backwards, .timeout = 10)
{
    uint64_t prev = moirai_clock_now_ns();

    cr_assert_gt(prev, 0);
    for (int i = 0; i < 100000; i++) {
        uint64_t now = moirai_clock_now_ns();

        cr_assert_geq(now, prev, "clock went back from %llu to %llu", (unsigned long long)prev,
                      (unsigned long long)now);
        prev = now;
    }
}

Test(clock, now_is_clock_monotonic, .timeout = 10)
{
    struct timespec a, b;
    uint64_t ours;

    /* Bracketing: our reading lies between two direct readings. */
    clock_gettime(CLOCK_MONOTONIC, &a);
    ours = moirai_clock_now_ns();
    clock_gettime(CLOCK_MONOTONIC, &b);
    cr_assert_geq(ours, (uint64_t)a.tv_sec * MOIRAI_NS_PER_S + (uint64_t)a.tv_nsec);
    cr_assert_leq(ours, (uint64_t)b.tv_sec * MOIRAI_NS_PER_S + (uint64_t)b.tv_nsec);
}

Test(clock, deadline_saturates, .timeout = 10)
{
    cr_assert_eq(moirai_deadline_after(MOIRAI_DEADLINE_NEVER), MOIRAI_DEADLINE_NEVER);
    /* now > 1, so these would wrap past UINT64_MAX without saturation. */
    cr_assert_eq(moirai_deadline_after(UINT64_MAX - 1), MOIRAI_DEADLINE_NEVER);
    /* Passes UINT64_MAX by at least 1, since the clock only moves on. */
    cr_assert_eq(moirai_deadline_after(UINT64_MAX - moirai_clock_now_ns() + 1),
                 MOIRAI_DEADLINE_NEVER);
    cr_assert_eq(moirai_deadline_remaining(MOIRAI_DEADLINE_NEVER), MOIRAI_DEADLINE_NEVER);
    cr_assert_not(moirai_deadline_expired(MOIRAI_DEADLINE_NEVER));
}

Test(clock, deadline_after_is_now_plus_timeout, .timeout = 10)
{
    const uint64_t timeout = 3600 * MOIRAI_NS_PER_S;
    uint64_t before = moirai_clock_now_ns();
    uint64_t d = moirai_deadline_after(timeout);
    uint64_t after = moirai_clock_now_ns();
    uint64_t left = moirai_deadline_remaining(d);

    cr_assert_geq(d, before + timeout);
    cr_assert_leq(d, after + timeout);
    /* The test's own timeout (10 s) is far below an hour, so the deadline
     * cannot have passed and at most the elapsed time is gone. */
    cr_assert_leq(left, timeout);
    cr_assert_gt(left, 0);
    cr_assert_not(moirai_deadline_expired(d));
}

Test(clock, zero_timeout_has_already_arrived, .timeout = 10)
{
    uint64_t d = moirai_deadline_after(0);

    cr_assert(moirai_deadline_expired(d));
    cr_assert_eq(moirai_deadline_remaining(d), 0);
    cr_assert(moirai_deadline_expired(0));
    cr_assert_eq(moirai_deadline_remaining(0), 0);
}

Test(clock, short_deadline_expires, .timeout = 10)
{
    uint64_t d = moirai_deadline_after(MOIRAI_NS_PER_MS);
    struct timespec nap = {0, 100000};

    /* Bounded by the test timeout, not by a threshold of ours. */
    while (!moirai_deadline_expired(d))
        nanosleep(&nap, NULL);
    cr_assert_geq(moirai_clock_now_ns(), d);
    cr_assert_eq(moirai_deadline_remaining(d), 0);
    cr_assert(moirai_deadline_expired(d), "expiry is permanent");
}
