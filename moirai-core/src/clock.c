/* Monotonic clock and deadline arithmetic. */
#include <time.h>

#include <moirai/core/clock.h>

uint64_t moirai_clock_now_ns(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail on Linux with a valid pointer, so the
     * return value carries no information worth propagating. */
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * MOIRAI_NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t moirai_deadline_after(uint64_t timeout_ns)
{
    uint64_t now;

    if (timeout_ns == MOIRAI_DEADLINE_NEVER)
        return MOIRAI_DEADLINE_NEVER;
    now = moirai_clock_now_ns();
    /* Saturate instead of wrapping: a wrapped deadline would lie in the
     * past and turn a very long wait into an immediate timeout. */
    if (timeout_ns >= MOIRAI_DEADLINE_NEVER - now)
        return MOIRAI_DEADLINE_NEVER;
    return now + timeout_ns;
}

uint64_t moirai_deadline_remaining(uint64_t deadline)
{
    uint64_t now;

    if (deadline == MOIRAI_DEADLINE_NEVER)
        return MOIRAI_DEADLINE_NEVER;
    now = moirai_clock_now_ns();
    return deadline > now ? deadline - now : 0;
}

bool moirai_deadline_expired(uint64_t deadline)
{
    if (deadline == MOIRAI_DEADLINE_NEVER)
        return false;
    return moirai_clock_now_ns() >= deadline;
}
