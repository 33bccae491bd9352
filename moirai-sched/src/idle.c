/* Idle workers: how a worker that found no work sleeps, and how it is
 * woken (the sleeper list, the `idle` counts, and the re-check that
 * closes the Dekker pattern described in sched_internal.h).
 *
 * Separate from worker.c because a worker only comes here once its search
 * (worker.c) found nothing, and spawners only call in when nobody searches
 * and somebody sleeps (moirai__sched_notify()): neither the path from one
 * job to the next nor a spawn's common case enters this file. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/core/park.h>
#include <moirai/sched/job.h>

#include "moirai_probe.h"
#include "sched_internal.h"

/* True if any queue of the pool may hold a job, not counting the LIFO
 * slot of `skip_lifo` (NULL: every queue; any_work() is the re-check
 * before parking). seq_cst loads of the counts pair with the pushers'
 * seq_cst RMWs; deques and slots are read as they are. */
bool moirai__idle_work_queued(moirai_sched_t *s, const moirai__worker_t *skip_lifo)
{
    if (moirai__injector_maybe_seq_cst(&s->inj) ||
        atomic_load_explicit(&s->ext_used, memory_order_seq_cst) > 0)
        return true;
    for (int i = 0; i < s->nslots; i++) {
        moirai__worker_t *v = &s->workers[i];
        if (atomic_load_explicit(&v->inbox_count, memory_order_seq_cst) > 0 ||
            (v != skip_lifo && atomic_load_explicit(&v->lifo, memory_order_acquire) != NULL) ||
            moirai__deque_size(v->deque) > 0)
            return true;
    }
    return false;
}

static bool any_work(moirai_sched_t *s)
{
    return moirai__idle_work_queued(s, NULL);
}

static void list_remove_locked(moirai_sched_t *s, moirai__worker_t *w)
{
    int slot = w->sleep_slot;
    moirai__worker_t *last = s->sleepers[--s->nsleepers];
    s->sleepers[slot] = last;
    last->sleep_slot = slot;
    atomic_store_explicit(&w->listed, false, memory_order_release);
}

/* Removes sleeper `w` (under the lock) and counts it as searching, then
 * makes its park return. */
static void wake_locked_then_unpark(moirai_sched_t *s, moirai__worker_t *w)
{
    list_remove_locked(s, w);
    MOIRAI_PROBE2(worker_wake, s, w->index);
    _Atomic uint32_t *addr = w->wake_addr;
    atomic_fetch_add_explicit(&s->idle, MOIRAI__IDLE_SEARCHER - MOIRAI__IDLE_SLEEPER,
                              memory_order_seq_cst);
    if (addr == &w->park_word) {
        atomic_store_explicit(&w->park_word, 0, memory_order_release);
    } else {
        /* The worker parks on its latch (or its join_word, which works
         * the same way), whose word must stay unset; turn
         * SLEEPY back to UNSET so that a park not yet entered returns at
         * once (the unpark below could come before it). The latch is
         * still alive: its waiter cannot leave while it is listed, and
         * only we, holding the lock, unlist it. If the latch was set
         * meanwhile, the CAS fails and changes nothing. */
        uint32_t sleepy = MOIRAI__LATCH_SLEEPY;
        atomic_compare_exchange_strong_explicit(addr, &sleepy, MOIRAI__LATCH_UNSET,
                                                memory_order_relaxed, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->sleep_lock);
    /* The worker struct outlives the pool's workers; a latch address may
     * be gone by now, and a futex wake on it is harmless (see latch.h). */
    if (addr != &w->park_word)
        moirai_unpark_all(addr);
    else if (w->hooked)
        s->cfg.idle_hooks->wake(s->cfg.idle_hooks->arg, w->index);
    else
        moirai_unpark_one(addr);
}

void moirai__idle_wake_one(moirai_sched_t *s, moirai__worker_t *prefer)
{
    pthread_mutex_lock(&s->sleep_lock);
    uint64_t v = atomic_load_explicit(&s->idle, memory_order_relaxed);
    if (s->nsleepers == 0 || MOIRAI__IDLE_SEARCHING(v) != 0) {
        pthread_mutex_unlock(&s->sleep_lock);
        return;
    }
    moirai__worker_t *w = s->sleepers[s->nsleepers - 1];
    if (prefer != NULL && atomic_load_explicit(&prefer->listed, memory_order_relaxed))
        w = prefer;
    wake_locked_then_unpark(s, w);
}

void moirai__idle_wake_worker(moirai_sched_t *s, moirai__worker_t *w)
{
    pthread_mutex_lock(&s->sleep_lock);
    if (!atomic_load_explicit(&w->listed, memory_order_relaxed)) {
        pthread_mutex_unlock(&s->sleep_lock);
        return;
    }
    wake_locked_then_unpark(s, w);
}

void moirai__idle_wake_all(moirai_sched_t *s)
{
    for (;;) {
        pthread_mutex_lock(&s->sleep_lock);
        if (s->nsleepers == 0) {
            pthread_mutex_unlock(&s->sleep_lock);
            return;
        }
        wake_locked_then_unpark(s, s->sleepers[s->nsleepers - 1]);
    }
}

/* Sleeps until woken for work (then returns counted as searching), or
 * until what `h` waits for (if not NULL) is over or the pool stops (then
 * returns not counted). Waiting for a latch, the worker parks on the
 * latch word, which it has turned SLEEPY, so both the latch's setter and a
 * waker for new work can end the park. Waiting for a handle, it parks on
 * its own join_word (SLEEPY, turned back by a waker as a latch is) and on
 * the handle's word at once (moirai_park_either()), until the deadline. A
 * hooked worker that waits for nothing waits in the idle hook instead; it
 * returns true when the hook says outside work is ready, and then counts
 * as searching, so that the jobs its poll submits wake nobody else. */
bool moirai__idle_sleep(moirai__worker_t *w, const moirai__helping_t *h)
{
    bool outside = false;
    moirai_sched_t *s = w->sched;
    _Atomic uint32_t *addr;
    uint32_t expected;
    if (h != NULL && h->latch != NULL) {
        uint32_t unset = MOIRAI__LATCH_UNSET;
        /* Acquire on failure: the latch may be set, and then the caller
         * returns and must see the setter's writes. */
        if (!atomic_compare_exchange_strong_explicit(&h->latch->state, &unset, MOIRAI__LATCH_SLEEPY,
                                                     memory_order_acquire, memory_order_acquire) &&
            unset == MOIRAI__LATCH_SET)
            return false;
        addr = &h->latch->state;
        expected = MOIRAI__LATCH_SLEEPY;
    } else if (h != NULL) {
        /* Relaxed: the sleeper lock below orders it before any waker's
         * look at it. */
        addr = &w->join_word;
        expected = MOIRAI__LATCH_SLEEPY;
        atomic_store_explicit(&w->join_word, MOIRAI__LATCH_SLEEPY, memory_order_relaxed);
    } else {
        addr = &w->park_word;
        expected = 1;
        atomic_store_explicit(&w->park_word, 1, memory_order_relaxed);
    }

    pthread_mutex_lock(&s->sleep_lock);
    w->wake_addr = addr;
    w->sleep_slot = s->nsleepers;
    s->sleepers[s->nsleepers++] = w;
    atomic_store_explicit(&w->listed, true, memory_order_relaxed);
    uint64_t delta = MOIRAI__IDLE_SLEEPER - (w->searching ? MOIRAI__IDLE_SEARCHER : 0);
    w->searching = false;
    /* seq_cst: the announcement half of the Dekker pattern; the re-check
     * below comes after it. */
    atomic_fetch_add_explicit(&s->idle, delta, memory_order_seq_cst);
    pthread_mutex_unlock(&s->sleep_lock);

    bool parked = false;
    for (;;) {
        if (any_work(s) || atomic_load_explicit(&s->stop, memory_order_acquire) ||
            (h != NULL && moirai__helping_done(h)))
            break;
        if (!parked) {
            /* Counted before the park, so that a reader sees a parked
             * worker as parked. */
            parked = true;
            moirai__stat_add(&w->stats.parks, 1);
            MOIRAI_PROBE2(worker_sleep, s, w->index);
        }
        if (h == NULL && w->hooked) {
            const moirai_sched_idle_hooks_t *hooks = s->cfg.idle_hooks;
            if (hooks->wait(hooks->arg, w->index)) {
                outside = true;
                break;
            }
        } else if (h != NULL && h->handle != NULL) {
            /* Asked afresh each time: the handle's word also changes when
             * its task starts. NULL: finished. */
            uint32_t hexp;
            _Atomic uint32_t *hword = moirai_handle_wait_word(h->handle, &hexp);
            if (hword == NULL)
                break;
            (void)moirai_park_either(addr, expected, hword, hexp, h->deadline);
        } else {
            moirai_park_nospin(addr, expected, MOIRAI_DEADLINE_NEVER);
        }
        /* Acquire: pairs with the waker's release store of `listed`. */
        if (!atomic_load_explicit(&w->listed, memory_order_acquire)) {
            /* A waker took us off the list and counted us as searching. */
            w->searching = true;
            break;
        }
        /* Spurious, or what `h` waits for is over: look again. */
    }
    if (atomic_load_explicit(&w->listed, memory_order_acquire)) {
        pthread_mutex_lock(&s->sleep_lock);
        if (atomic_load_explicit(&w->listed, memory_order_relaxed)) {
            list_remove_locked(s, w);
            /* Not woken by anybody: back to searching ourselves. */
            atomic_fetch_add_explicit(&s->idle, MOIRAI__IDLE_SEARCHER - MOIRAI__IDLE_SLEEPER,
                                      memory_order_seq_cst);
        }
        w->searching = true;
        pthread_mutex_unlock(&s->sleep_lock);
    } else {
        w->searching = true;
    }
    /* A latch left SLEEPY costs its setter one futex wake; it is not
     * turned back here, since another thread may be parked on it too. */
    return outside;
}
