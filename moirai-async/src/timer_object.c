/* Timer objects (moirai/async/timer.h): an entry of the runtime's timer
 * heap without a fiber, and a state word that waiters park on. The state
 * changes only under the timer lock (arm and disarm here, the expiry in
 * timer.c), so an arming racing with an expiry is never fired by it; each
 * arming bumps the count above the state bits, so a waiter of an earlier
 * arming sees the word change. */
#include <errno.h>
#include <sched.h>

#include <moirai/async/timer.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/park.h>

#include "async_internal.h"
#include "iowait.h"

struct moirai_timer {
    moirai__waiter_t entry; /* first member */
    moirai_runtime_t *rt;
    _Atomic uint32_t state; /* MOIRAI__TIMER_* | arming count << 2 */
};

static void fire_notify(moirai__waiter_t *w)
{
    moirai_unpark_all(w->addr);
}

int moirai_timer_create(moirai_timer_t **out, moirai_runtime_t *rt)
{
    if (out == NULL || rt == NULL)
        return -EINVAL;
    moirai_timer_t *t = moirai_calloc(1, sizeof *t);
    if (t == NULL)
        return -ENOMEM;
    /* One heap slot per timer object besides the fibers' (never fails
     * to add later). */
    uint64_t n = atomic_fetch_add_explicit(&rt->timer_objects, 1, memory_order_relaxed) + 1;
    uint64_t live = atomic_load_explicit(&rt->gate, memory_order_relaxed) & ~MOIRAI__GATE_SHUT;
    int rc = moirai__timers_reserve(&rt->timers, (size_t)(n + live));
    if (rc != 0) {
        atomic_fetch_sub_explicit(&rt->timer_objects, 1, memory_order_relaxed);
        moirai_free(t);
        return rc;
    }
    t->rt = rt;
    atomic_init(&t->state, MOIRAI__TIMER_IDLE);
    t->entry.fiber = NULL;
    t->entry.addr = &t->state;
    t->entry.notify = fire_notify;
    t->entry.heap_index = MOIRAI__NOT_IN_HEAP;
    t->entry.deadline = MOIRAI_DEADLINE_NEVER;
    atomic_init(&t->entry.busy, 0);
    *out = t;
    return 0;
}

_Atomic uint32_t *moirai__timer_word(moirai_timer_t *timer)
{
    return &timer->state;
}

static moirai_timer_t *timer_of(moirai__waiter_t *w)
{
    return (moirai_timer_t *)w;
}

/* Under the timer lock: the new arming. */
static void set_armed(moirai__waiter_t *w)
{
    moirai_timer_t *t = timer_of(w);
    uint32_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
    /* Release: pairs with the waiters' acquire loads. */
    atomic_store_explicit(&t->state, ((s & ~MOIRAI__TIMER_MASK) + 4u) | MOIRAI__TIMER_ARMED,
                          memory_order_release);
}

/* Under the timer lock: back to idle; remembers whether it was armed. */
static void set_idle(moirai__waiter_t *w)
{
    moirai_timer_t *t = timer_of(w);
    uint32_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
    w->result = (s & MOIRAI__TIMER_MASK) == MOIRAI__TIMER_ARMED ? 0 : -EALREADY;
    if (w->result == 0)
        atomic_store_explicit(&t->state, (s & ~MOIRAI__TIMER_MASK) | MOIRAI__TIMER_IDLE,
                              memory_order_release);
}

int moirai_timer_arm(moirai_timer_t *timer, uint64_t deadline)
{
    if (timer == NULL || deadline == MOIRAI_DEADLINE_NEVER)
        return -EINVAL;
    moirai_runtime_t *rt = timer->rt;
    /* Waiters of an earlier arming see the count change. */
    if (moirai__timers_set(&rt->timers, &timer->entry, deadline, set_armed))
        moirai__reactor_kick(rt->reactor);
    moirai_unpark_all(&timer->state);
    return 0;
}

int moirai_timer_disarm(moirai_timer_t *timer)
{
    if (timer == NULL)
        return -EINVAL;
    moirai__timers_set(&timer->rt->timers, &timer->entry, MOIRAI_DEADLINE_NEVER, set_idle);
    /* Written under the lock by set_idle, read by this thread only. */
    int rc = timer->entry.result;
    if (rc == 0)
        moirai_unpark_all(&timer->state);
    return rc;
}

void moirai_timer_destroy(moirai_timer_t *timer)
{
    if (timer == NULL)
        return;
    moirai_runtime_t *rt = timer->rt;
    moirai__timers_set(&rt->timers, &timer->entry, MOIRAI_DEADLINE_NEVER, NULL);
    /* Acquire: pairs with the reactor's release once its notify is done. */
    while (atomic_load_explicit(&timer->entry.busy, memory_order_acquire))
        sched_yield();
    atomic_fetch_sub_explicit(&rt->timer_objects, 1, memory_order_relaxed);
    moirai_free(timer);
}

int moirai_timer_wait_timed(moirai_timer_t *timer, uint64_t deadline)
{
    if (timer == NULL)
        return -EINVAL;
    int rc = moirai__iowait_check();
    if (rc != 0)
        return rc;
    /* Acquire: pairs with the release stores of arm and the expiry. */
    uint32_t s = atomic_load_explicit(&timer->state, memory_order_acquire);
    for (;;) {
        if ((s & MOIRAI__TIMER_MASK) == MOIRAI__TIMER_FIRED)
            return 0;
        if ((s & MOIRAI__TIMER_MASK) == MOIRAI__TIMER_IDLE)
            return -EAGAIN;
        /* Armed: a re-arm changes the word and the wait goes on for the
         * new deadline. */
        rc = moirai__iowait_park(&timer->state, s, deadline);
        if (rc != 0)
            return rc;
        s = atomic_load_explicit(&timer->state, memory_order_acquire);
    }
}

int moirai_timer_wait(moirai_timer_t *timer)
{
    return moirai_timer_wait_timed(timer, MOIRAI_DEADLINE_NEVER);
}
