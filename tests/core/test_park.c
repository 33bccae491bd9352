/* The parking layer on plain threads (the futex path).
 *
 * To know that a waiter is really asleep (and not about to check the word),
 * tests read /proc/self/task/<tid>/syscall, which names the system call a
 * blocked thread sits in and its arguments: futex on our word's address
 * means parked. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <moirai/core.h>

#include "futex_probe.h"
#include "test_scale.h"

static void wait_until_parked(_Atomic pid_t *tid, const void *addr)
{
    pid_t t;
    while ((t = atomic_load(tid)) == 0)
        sched_yield();
    while (!in_futex_on(t, addr))
        sched_yield();
}

Test(park, mismatched_word_returns_at_once, .timeout = 10)
{
    _Atomic uint32_t word = 1;
    cr_assert_eq(moirai_park(&word, 0, MOIRAI_DEADLINE_NEVER), 0);
    cr_assert_eq(moirai_park_nospin(&word, 0, MOIRAI_DEADLINE_NEVER), 0);
    /* The word is checked before the deadline: a stale value is a normal
     * return even when the deadline has passed too. */
    cr_assert_eq(moirai_park(&word, 0, 0), 0);
    cr_assert_eq(moirai_park_nospin(&word, 0, 0), 0);
}

Test(park, past_deadline_times_out, .timeout = 10)
{
    _Atomic uint32_t word = 0;
    cr_assert_eq(moirai_park(&word, 0, 0), -ETIMEDOUT);
    cr_assert_eq(moirai_park_nospin(&word, 0, 0), -ETIMEDOUT);
    uint64_t just_now = moirai_clock_now_ns() - 1;
    cr_assert_eq(moirai_park(&word, 0, just_now), -ETIMEDOUT);
    cr_assert_eq(moirai_park_nospin(&word, 0, just_now), -ETIMEDOUT);
}

static void check_near_future_timeout(int (*park)(_Atomic uint32_t *, uint32_t, uint64_t))
{
    _Atomic uint32_t word = 0;
    uint64_t deadline = moirai_deadline_after(3 * MOIRAI_NS_PER_MS);
    int rc;
    int spurious = 0;
    /* A spurious return (0) is allowed; loop until the timeout, bounded by
     * the test's timeout. */
    while ((rc = park(&word, 0, deadline)) == 0)
        spurious++;
    cr_assert_eq(rc, -ETIMEDOUT);
    cr_assert_geq(moirai_clock_now_ns(), deadline, "timed out before the deadline");
    cr_assert_lt(spurious, 1000);
}

Test(park, near_future_deadline_times_out_after_it, .timeout = 10)
{
    check_near_future_timeout(moirai_park);
    check_near_future_timeout(moirai_park_nospin);
}

Test(park, unpark_without_waiters_wakes_nobody, .timeout = 10)
{
    _Atomic uint32_t word = 0;
    cr_assert_eq(moirai_unpark_one(&word), 0);
    cr_assert_eq(moirai_unpark_all(&word), 0);
}

#define WAITERS 4

typedef struct sleeper {
    _Atomic uint32_t *word;
    _Atomic pid_t tid;
    _Atomic int *woken;
    int rc;
    bool spin;
} sleeper_t;

/* Parks exactly once and reports it returned. */
static void *sleep_once(void *p)
{
    sleeper_t *s = p;
    atomic_store(&s->tid, (pid_t)syscall(SYS_gettid));
    s->rc = s->spin ? moirai_park(s->word, 0, MOIRAI_DEADLINE_NEVER)
                    : moirai_park_nospin(s->word, 0, MOIRAI_DEADLINE_NEVER);
    atomic_fetch_add(s->woken, 1);
    return NULL;
}

static void start_sleepers(sleeper_t *s, pthread_t *threads, int n, _Atomic uint32_t *word,
                           _Atomic int *woken)
{
    for (int i = 0; i < n; i++) {
        s[i] = (sleeper_t){.word = word, .woken = woken, .spin = (i % 2) == 0};
        cr_assert_eq(pthread_create(&threads[i], NULL, sleep_once, &s[i]), 0);
    }
    for (int i = 0; i < n; i++)
        wait_until_parked(&s[i].tid, word);
}

Test(park, unpark_one_wakes_exactly_one, .timeout = 30)
{
    _Atomic uint32_t word = 0;
    _Atomic int woken = 0;
    sleeper_t s[WAITERS];
    pthread_t threads[WAITERS];
    start_sleepers(s, threads, WAITERS, &word, &woken);

    cr_assert_eq(moirai_unpark_one(&word), 1);
    while (atomic_load(&woken) != 1)
        sched_yield();
    /* Exactly one returned; the others are still asleep on the word. */
    int still_parked = 0;
    for (int i = 0; i < WAITERS; i++)
        still_parked += in_futex_on(atomic_load(&s[i].tid), &word);
    cr_assert_eq(still_parked, WAITERS - 1);
    cr_assert_eq(atomic_load(&woken), 1);

    cr_assert_eq(moirai_unpark_all(&word), WAITERS - 1);
    for (int i = 0; i < WAITERS; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(s[i].rc, 0);
    }
    cr_assert_eq(atomic_load(&woken), WAITERS);
}

Test(park, unpark_all_wakes_every_waiter, .timeout = 30)
{
    _Atomic uint32_t word = 0;
    _Atomic int woken = 0;
    sleeper_t s[WAITERS];
    pthread_t threads[WAITERS];
    start_sleepers(s, threads, WAITERS, &word, &woken);
    atomic_store(&word, 1);
    cr_assert_eq(moirai_unpark_all(&word), WAITERS);
    for (int i = 0; i < WAITERS; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(s[i].rc, 0);
    }
    cr_assert_eq(atomic_load(&woken), WAITERS);
}

Test(park, unpark_on_other_address_wakes_nobody, .timeout = 30)
{
    _Atomic uint32_t word = 0, other = 0;
    _Atomic int woken = 0;
    sleeper_t s[1];
    pthread_t threads[1];
    start_sleepers(s, threads, 1, &word, &woken);
    cr_assert_eq(moirai_unpark_all(&other), 0);
    cr_assert(in_futex_on(atomic_load(&s[0].tid), &word));
    cr_assert_eq(atomic_load(&woken), 0);
    cr_assert_eq(moirai_unpark_one(&word), 1);
    pthread_join(threads[0], NULL);
}

/* Ping-pong: two threads take turns through one word. Each wait has a
 * bounded deadline, so a lost wake-up shows as a timeout, not a hang. */
#define PINGPONG_ROUNDS 20000

typedef struct pingpong {
    _Atomic uint32_t word; /* whose turn: even = A, odd = B */
    long plain_counter;    /* written only by the thread whose turn it is */
    bool nospin;
} pingpong_t;

static void play(pingpong_t *pp, uint32_t parity, long rounds, int *timeouts)
{
    for (long i = 0; i < rounds; i++) {
        uint32_t mine = (uint32_t)(2 * i) + parity;
        uint32_t w;
        while ((w = atomic_load_explicit(&pp->word, memory_order_acquire)) != mine) {
            uint64_t deadline = moirai_deadline_after(20 * MOIRAI_NS_PER_S);
            int rc = pp->nospin ? moirai_park_nospin(&pp->word, w, deadline)
                                : moirai_park(&pp->word, w, deadline);
            if (rc == -ETIMEDOUT) {
                (*timeouts)++;
                return;
            }
        }
        pp->plain_counter++;
        atomic_store_explicit(&pp->word, mine + 1, memory_order_release);
        moirai_unpark_one(&pp->word);
    }
}

static long pingpong_rounds;

static void *player_b(void *p)
{
    pingpong_t *pp = p;
    int timeouts_b = 0;
    play(pp, 1, pingpong_rounds, &timeouts_b);
    return (void *)(intptr_t)timeouts_b;
}

static void run_pingpong(bool nospin)
{
    pingpong_rounds = scaled(PINGPONG_ROUNDS);
    pingpong_t pp = {.nospin = nospin};
    pthread_t b;
    cr_assert_eq(pthread_create(&b, NULL, player_b, &pp), 0);
    int timeouts_a = 0;
    play(&pp, 0, pingpong_rounds, &timeouts_a);
    void *timeouts_b;
    pthread_join(b, &timeouts_b);
    cr_assert_eq(timeouts_a, 0, "lost wake-up on A");
    cr_assert_eq((int)(intptr_t)timeouts_b, 0, "lost wake-up on B");
    cr_assert_eq(pp.plain_counter, 2 * pingpong_rounds);
    cr_assert_eq(atomic_load(&pp.word), (uint32_t)(2 * pingpong_rounds));
}

Test(park, pingpong_loses_no_wakeup, .timeout = 60)
{
    run_pingpong(false);
}

Test(park, pingpong_nospin_loses_no_wakeup, .timeout = 60)
{
    run_pingpong(true);
}
