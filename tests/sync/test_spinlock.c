/* moirai_spinlock_t and moirai_ticketlock_t: exclusion with exact counts,
 * try semantics, FIFO order of the ticket lock. */
#include <criterion/criterion.h>

#include <moirai/sync/spinlock.h>

#include "lock_test_util.h"

Test(spinlock, try_semantics, .timeout = 10)
{
    moirai_spinlock_t s = MOIRAI_SPINLOCK_INIT;
    cr_assert(moirai_spinlock_try_lock(&s));
    cr_assert_not(moirai_spinlock_try_lock(&s), "held: trylock must fail");
    moirai_spinlock_unlock(&s);
    moirai_spinlock_lock(&s);
    cr_assert_not(moirai_spinlock_try_lock(&s));
    moirai_spinlock_unlock(&s);
    moirai_spinlock_init(&s);
    cr_assert(moirai_spinlock_try_lock(&s));
    moirai_spinlock_unlock(&s);
    moirai_spinlock_destroy(&s);
}

Test(ticketlock, try_semantics, .timeout = 10)
{
    moirai_ticketlock_t t = MOIRAI_TICKETLOCK_INIT;
    cr_assert(moirai_ticketlock_try_lock(&t));
    cr_assert_not(moirai_ticketlock_try_lock(&t), "held: trylock must fail");
    moirai_ticketlock_unlock(&t);
    moirai_ticketlock_lock(&t);
    cr_assert_not(moirai_ticketlock_try_lock(&t));
    moirai_ticketlock_unlock(&t);
    cr_assert(moirai_ticketlock_try_lock(&t), "free again after unlock");
    moirai_ticketlock_unlock(&t);
    moirai_ticketlock_init(&t);
    moirai_ticketlock_lock(&t);
    moirai_ticketlock_unlock(&t);
    moirai_ticketlock_destroy(&t);
}

/* N threads x M increments of a plain counter, with an "inside" counter
 * that catches two holders at once even without a sanitizer. */
typedef struct count_ctx {
    moirai_spinlock_t s;
    moirai_ticketlock_t t;
    int ticket;
    int use_try;
    long plain;
    long iters;
    _Atomic int inside;
    _Atomic long overlaps;
} count_ctx_t;

static void *count_worker(void *arg, int index)
{
    count_ctx_t *c = arg;
    (void)index;
    for (long i = 0; i < c->iters; i++) {
        if (c->ticket) {
            if (c->use_try) {
                while (!moirai_ticketlock_try_lock(&c->t))
                    sched_yield();
            } else {
                moirai_ticketlock_lock(&c->t);
            }
        } else {
            if (c->use_try) {
                while (!moirai_spinlock_try_lock(&c->s))
                    sched_yield();
            } else {
                moirai_spinlock_lock(&c->s);
            }
        }
        if (atomic_fetch_add_explicit(&c->inside, 1, memory_order_relaxed) != 0)
            atomic_fetch_add_explicit(&c->overlaps, 1, memory_order_relaxed);
        c->plain++;
        atomic_fetch_sub_explicit(&c->inside, 1, memory_order_relaxed);
        if (c->ticket)
            moirai_ticketlock_unlock(&c->t);
        else
            moirai_spinlock_unlock(&c->s);
    }
    return NULL;
}

/* The ticket lock hands the lock to one specific waiter; with more threads
 * than CPUs that waiter is often not running, and every hand-over then
 * waits for the scheduler. Fewer iterations keep the test short; the
 * invariant is the same. */
static void run_count(int ticket, int use_try)
{
    static count_ctx_t c;
    c = (count_ctx_t){.s = MOIRAI_SPINLOCK_INIT,
                      .t = MOIRAI_TICKETLOCK_INIT,
                      .ticket = ticket,
                      .use_try = use_try,
                      .iters = ticket ? test_iters(20000, 500) : test_iters(200000, 2000)};
    int n = test_threads();
    test_run_threads(n, count_worker, &c);
    cr_assert_eq(atomic_load(&c.overlaps), 0, "two holders at once");
    cr_assert_eq(c.plain, (long)n * c.iters, "lost increments");
}

Test(spinlock, exact_count, .timeout = 60)
{
    run_count(0, 0);
}

Test(spinlock, exact_count_trylock, .timeout = 60)
{
    run_count(0, 1);
}

Test(ticketlock, exact_count, .timeout = 60)
{
    run_count(1, 0);
}

Test(ticketlock, exact_count_trylock, .timeout = 60)
{
    run_count(1, 1);
}

/* FIFO: while the main thread holds the lock, waiters start one at a time;
 * each is let in only after it has drawn its ticket (observed through the
 * lock's private `next` counter, which only this white-box test reads).
 * They must then acquire in the order they arrived. */
#define FIFO_N 6

typedef struct fifo_ctx {
    moirai_ticketlock_t t;
    int order[FIFO_N]; /* written under the lock */
    int pos;           /* written under the lock */
} fifo_ctx_t;

typedef struct fifo_arg {
    fifo_ctx_t *c;
    int id;
} fifo_arg_t;

static void *fifo_waiter(void *arg)
{
    fifo_arg_t *a = arg;
    moirai_ticketlock_lock(&a->c->t);
    a->c->order[a->c->pos++] = a->id;
    moirai_ticketlock_unlock(&a->c->t);
    return NULL;
}

Test(ticketlock, fifo_order, .timeout = 60)
{
    static fifo_ctx_t c;
    long rounds = test_iters(20, 3);
    for (long r = 0; r < rounds; r++) {
        c = (fifo_ctx_t){.t = MOIRAI_TICKETLOCK_INIT};
        fifo_arg_t args[FIFO_N];
        pthread_t tids[FIFO_N];
        moirai_ticketlock_lock(&c.t);
        for (int i = 0; i < FIFO_N; i++) {
            args[i] = (fifo_arg_t){&c, i};
            tids[i] = test_spawn(fifo_waiter, &args[i]);
            /* Wait until waiter i has drawn ticket i + 1 (ours is 0). */
            while (atomic_load(&c.t.priv_next) != (uint32_t)(i + 2))
                sched_yield();
        }
        moirai_ticketlock_unlock(&c.t);
        for (int i = 0; i < FIFO_N; i++)
            pthread_join(tids[i], NULL);
        cr_assert_eq(c.pos, FIFO_N);
        for (int i = 0; i < FIFO_N; i++)
            cr_assert_eq(c.order[i], i, "round %ld: position %d went to waiter %d", r, i,
                         c.order[i]);
    }
}
