/* Select over channels (moirai_chan_select) and channels as arms of
 * moirai-async's select (moirai_chan_select_arm).
 *
 * A select tries its cases (in an order starting at a random case, which
 * makes every ready case win a fair share); if none can proceed it arms a
 * word per case and waits for any of them to change, then tries again.
 * Each channel has a word per direction (chan_internal.h) whose bit 0 a
 * select sets when it arms; an operation that changes readiness bumps the
 * word and unparks it only when that bit is set, so channels nobody
 * selects on never pay for a wake-up.
 *
 * Why no lost wake-up: the arm sets the bit with a read-modify-write and
 * then checks readiness under the channel lock. A change made under the
 * lock before that check is seen by the check (the arm then fires at
 * once); a change made after it finds the bit set (the lock orders the
 * bumper after the arm's read-modify-write), bumps the word and unparks it.
 *
 * With a runtime, the words are MOIRAI_SELECT_WORD arms of moirai_select()
 * (a fiber parks, cancellation ends the wait). Without one (moirai_select()
 * needs its wait table), a thread waits on one process-wide word that
 * every bump also advances while such a select exists: a wider wake-up,
 * but only for threads selecting without a runtime. */
#include <errno.h>
#include <string.h>

#include <moirai/async/fiber.h>
#include <moirai/async/runtime.h>
#include <moirai/core/clock.h>
#include <moirai/core/park.h>
#include <moirai/core/task.h>
#include <moirai/transport/chan.h>

#include "chan_internal.h"

/* The fallback wait of selects without a runtime (see above). */
static _Atomic uint32_t global_word;
static _Atomic uint32_t global_selectors;

bool moirai__chan_word_bump(_Atomic uint32_t *word)
{
    /* Relaxed: bumpers hold the channel lock, and an arm's bit set before
     * the arm's readiness check is ordered before this load by that lock
     * (see above). Only bumpers clear the bit, so it cannot vanish between
     * the load and the add. */
    if ((atomic_load_explicit(word, memory_order_relaxed) & 1) == 0)
        return false;
    /* Adding 1 to an odd word clears the bit and advances the count.
     * Release: a select that sees the new value sees the change behind it
     * (it re-checks under the lock anyway). */
    atomic_fetch_add_explicit(word, 1, memory_order_release);
    return true;
}

void moirai__chan_word_wake(_Atomic uint32_t *word)
{
    moirai_unpark_all(word);
    /* Seq_cst: pairs with the selector's increment, which precedes its
     * look at the channels; either it sees the change or this sees it. */
    if (atomic_load_explicit(&global_selectors, memory_order_seq_cst) > 0) {
        atomic_fetch_add_explicit(&global_word, 1, memory_order_seq_cst);
        moirai_unpark_all(&global_word);
    }
}

int moirai_chan_select_arm(moirai_chan_t *ch, moirai_chan_dir_t dir, moirai_select_arm_t *arm)
{
    if (ch == NULL || arm == NULL || (dir != MOIRAI_CHAN_SEND && dir != MOIRAI_CHAN_RECV))
        return -EINVAL;
    _Atomic uint32_t *word = dir == MOIRAI_CHAN_SEND ? &ch->send_word : &ch->recv_word;
    /* Acq_rel: the bit must be set before the readiness check below reads
     * the channel (see above). */
    uint32_t v = atomic_fetch_or_explicit(word, 1, memory_order_acq_rel) | 1;
    bool ready = moirai__chan_ready(ch, dir);
    memset(arm, 0, sizeof *arm);
    arm->kind = MOIRAI_SELECT_WORD;
    arm->word = word;
    /* Ready now: expect a value the word never holds again (a bump takes
     * the odd v to v + 1, a re-arm keeps it odd), so the arm fires at once. */
    arm->expected = ready ? v - 1 : v;
    return 0;
}

/* A small per-thread generator for the starting case: cheap, and distinct
 * threads draw distinct sequences. */
static size_t random_below(size_t n)
{
    static _Thread_local uint64_t s;
    if (s == 0)
        s = (uint64_t)(uintptr_t)&s ^ moirai_clock_now_ns() ^ UINT64_C(0x9E3779B97F4A7C15);
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (size_t)(s % n);
}

static bool cancelled(void)
{
    const moirai_cancel_token_t *t = moirai_fiber_token();
    return t != NULL && moirai_cancel_token_is_cancelled(t);
}

static int check(const moirai_chan_case_t *cases, size_t n, uint64_t deadline, bool wait)
{
    if (cases == NULL || n == 0 || n > MOIRAI_SELECT_MAX_ARMS)
        return -EINVAL;
    size_t enabled = 0;
    for (size_t i = 0; i < n; i++) {
        if (cases[i].chan == NULL)
            continue;
        if (cases[i].dir != MOIRAI_CHAN_SEND && cases[i].dir != MOIRAI_CHAN_RECV)
            return -EINVAL;
        if (cases[i].dir == MOIRAI_CHAN_SEND && cases[i].elem == NULL)
            return -EINVAL;
        enabled++;
    }
    /* Nothing could ever end this wait. */
    if (enabled == 0 && wait && deadline == MOIRAI_DEADLINE_NEVER)
        return -EINVAL;
    return 0;
}

/* One pass over the cases from a random start: the index of the case
 * performed, or -EAGAIN. */
static int try_all(moirai_chan_case_t *cases, size_t n)
{
    size_t start = random_below(n);
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        if (cases[i].chan == NULL)
            continue;
        int rc = moirai__chan_try_op(cases[i].chan, cases[i].dir, cases[i].elem);
        if (rc != -EAGAIN) {
            cases[i].result = rc;
            return (int)i;
        }
    }
    return -EAGAIN;
}

static int select_impl(uint64_t deadline, moirai_chan_case_t *cases, size_t n, bool wait)
{
    int rc = check(cases, n, deadline, wait);
    if (rc != 0)
        return rc;
    bool fallback = moirai_runtime_current() == NULL;
    if (fallback && wait)
        atomic_fetch_add_explicit(&global_selectors, 1, memory_order_seq_cst);
    for (;;) {
        /* Read before looking at the channels: a change after the look
         * moves it (see moirai__chan_word_wake). */
        uint32_t g = atomic_load_explicit(&global_word, memory_order_seq_cst);
        rc = try_all(cases, n);
        if (rc != -EAGAIN || !wait)
            break;
        if (cancelled()) {
            rc = -ECANCELED;
            break;
        }
        if (deadline != MOIRAI_DEADLINE_NEVER && moirai_deadline_expired(deadline)) {
            rc = -ETIMEDOUT;
            break;
        }
        moirai_select_arm_t arms[MOIRAI_SELECT_MAX_ARMS];
        size_t m = 0;
        bool ready = false;
        for (size_t i = 0; i < n; i++) {
            if (cases[i].chan == NULL)
                continue;
            (void)moirai_chan_select_arm(cases[i].chan, cases[i].dir, &arms[m]);
            ready = ready ||
                    atomic_load_explicit(arms[m].word, memory_order_relaxed) != arms[m].expected;
            m++;
        }
        if (ready)
            continue;
        if (!fallback && m > 0) {
            rc = moirai_select_timed(deadline, arms, m);
            if (rc >= 0)
                continue;
            /* The runtime went away meanwhile: wait as a plain thread. */
            if (rc != -EPERM)
                break;
            fallback = true;
            atomic_fetch_add_explicit(&global_selectors, 1, memory_order_seq_cst);
            continue;
        }
        rc = moirai_park(&global_word, g, deadline);
        if (rc != 0)
            break;
    }
    if (fallback && wait)
        atomic_fetch_sub_explicit(&global_selectors, 1, memory_order_relaxed);
    return rc;
}

int moirai_chan_select_timed(uint64_t deadline, moirai_chan_case_t *cases, size_t n)
{
    return select_impl(deadline, cases, n, true);
}

int moirai_chan_select(moirai_chan_case_t *cases, size_t n)
{
    return select_impl(MOIRAI_DEADLINE_NEVER, cases, n, true);
}

int moirai_chan_try_select(moirai_chan_case_t *cases, size_t n)
{
    return select_impl(MOIRAI_DEADLINE_NEVER, cases, n, false);
}
