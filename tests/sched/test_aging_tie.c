/* Aging ties between priority levels in the injector (internal), as
 * docs/sched.md states the rule: a level none of whose jobs has been taken
 * for k whole periods of aging_ns competes as k levels more urgent, on
 * past CRITICAL; its clock restarts when one of its jobs is taken; on a tie
 * the naturally more urgent level wins.
 *
 * The injector has no injectable clock: it reads CLOCK_MONOTONIC_COARSE
 * itself. The tests set each level's "served since" time stamp instead
 * (the only input aging reads besides the clock), half a period inside
 * the wanted period count, with a period of one second: the clock would
 * have to move by half a second between the stamp and the pop, or be off
 * by more than its tick, to change the count. So the ties are exact and
 * the order asserted is the tie-break, not a race with the clock. */
#include <criterion/criterion.h>

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <moirai/core/clock.h>
#include <moirai/core/task.h>

#include "injector.h"

#define AGING_NS MOIRAI_NS_PER_S

/* The injector's clock (injector.c's aging_now()). */
static uint64_t coarse_now(void)
{
    struct timespec ts;
    cr_assert_eq(clock_gettime(CLOCK_MONOTONIC_COARSE, &ts), 0);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static moirai__injector_t inj;
static moirai__job_t jobs[MOIRAI_PRIORITY_COUNT][4];

/* Makes `level` look as if none of its jobs had been taken for `periods`
 * whole periods (plus half of one), so it competes as `periods` levels
 * more urgent. Set after the pushes, which restart an empty level's
 * clock. */
static void age(int level, uint64_t periods)
{
    uint64_t now = coarse_now();
    uint64_t back = periods * AGING_NS + AGING_NS / 2;
    cr_assert_gt(now, back, "the clock is too young for this test");
    atomic_store_explicit(&inj.since[level], now - back, memory_order_relaxed);
}

static void push(int level, int k)
{
    moirai__injector_push(&inj, &jobs[level][k], level);
}

/* Pops one job and asserts that it is job k of `level`. */
static void expect_pop(int level, int k)
{
    moirai__job_t *j = moirai__injector_pop(&inj, MOIRAI_PRIORITY_COUNT);
    cr_assert_not_null(j, "expected job %d of level %d, got none", k, level);
    long got = j - &jobs[0][0];
    cr_assert_eq(j, &jobs[level][k], "expected job %d of level %d, got job %ld of level %ld", k,
                 level, got % 4, got / 4);
}

static void expect_empty(void)
{
    cr_assert_null(moirai__injector_pop(&inj, MOIRAI_PRIORITY_COUNT));
    cr_assert(!moirai__injector_maybe(&inj));
}

/* Every level aged to the same effective rank as CRITICAL (level l waited
 * l periods): five-way tie, taken from the most urgent level down. A
 * tie-break towards the less urgent level would give the reverse. */
Test(aging_tie, five_levels_tied_are_taken_most_urgent_first, .timeout = 30)
{
    moirai__injector_init(&inj, AGING_NS);
    for (int l = 0; l < MOIRAI_PRIORITY_COUNT; l++)
        push(l, 0);
    for (int l = 0; l < MOIRAI_PRIORITY_COUNT; l++)
        age(l, (uint64_t)l);
    for (int l = 0; l < MOIRAI_PRIORITY_COUNT; l++)
        expect_pop(l, 0);
    expect_empty();
}

/* HIGH aged one period and LOW aged three tie at CRITICAL's rank: HIGH
 * wins the tie, and taking its job restarts its clock, so LOW (still aged)
 * goes next, then HIGH, whose clock restarts again, then LOW, whose
 * clock restarted when its first job was taken: they alternate. */
Test(aging_tie, tie_goes_to_the_more_urgent_level_and_its_clock_restarts, .timeout = 30)
{
    moirai__injector_init(&inj, AGING_NS);
    push(MOIRAI_PRIORITY_HIGH, 0);
    push(MOIRAI_PRIORITY_HIGH, 1);
    push(MOIRAI_PRIORITY_LOW, 0);
    push(MOIRAI_PRIORITY_LOW, 1);
    age(MOIRAI_PRIORITY_HIGH, 1);
    age(MOIRAI_PRIORITY_LOW, 3);
    expect_pop(MOIRAI_PRIORITY_HIGH, 0); /* tie at 0: HIGH is more urgent */
    expect_pop(MOIRAI_PRIORITY_LOW, 0);  /* LOW 0 beats HIGH, restarted at 1 */
    expect_pop(MOIRAI_PRIORITY_HIGH, 1); /* HIGH 1 beats LOW, restarted at 3 */
    expect_pop(MOIRAI_PRIORITY_LOW, 1);
    expect_empty();
}

/* BACKGROUND aged four periods ties with CRITICAL and loses; aged five it
 * ranks past CRITICAL and wins, which is what keeps a CRITICAL stream from
 * starving it (aging that stopped at CRITICAL's rank would lose here). */
Test(aging_tie, background_ties_with_critical_at_four_periods_and_wins_at_five, .timeout = 30)
{
    moirai__injector_init(&inj, AGING_NS);
    push(MOIRAI_PRIORITY_CRITICAL, 0);
    push(MOIRAI_PRIORITY_CRITICAL, 1);
    push(MOIRAI_PRIORITY_CRITICAL, 2);
    push(MOIRAI_PRIORITY_BACKGROUND, 0);
    push(MOIRAI_PRIORITY_BACKGROUND, 1);
    age(MOIRAI_PRIORITY_BACKGROUND, 4);
    /* Tied: CRITICAL, twice (its restarted clock keeps it at rank 0). */
    expect_pop(MOIRAI_PRIORITY_CRITICAL, 0);
    expect_pop(MOIRAI_PRIORITY_CRITICAL, 1);
    /* One period more: BACKGROUND ranks -1 and goes before CRITICAL. */
    age(MOIRAI_PRIORITY_BACKGROUND, 5);
    expect_pop(MOIRAI_PRIORITY_BACKGROUND, 0);
    /* Its clock restarted: back to rank 4, behind CRITICAL. */
    expect_pop(MOIRAI_PRIORITY_CRITICAL, 2);
    expect_pop(MOIRAI_PRIORITY_BACKGROUND, 1);
    expect_empty();
}

/* Without aging (aging_ns 0) the stamps mean nothing: strict order. */
Test(aging_tie, stamps_are_ignored_without_aging, .timeout = 30)
{
    moirai__injector_init(&inj, 0);
    push(MOIRAI_PRIORITY_BACKGROUND, 0);
    push(MOIRAI_PRIORITY_CRITICAL, 0);
    age(MOIRAI_PRIORITY_BACKGROUND, 100);
    expect_pop(MOIRAI_PRIORITY_CRITICAL, 0);
    expect_pop(MOIRAI_PRIORITY_BACKGROUND, 0);
    expect_empty();
}
