/* Select (moirai/async/select.h): one wait (netpoll.h's moirai__wait_t)
 * with an arm per source. Socket arms go into the handle's readiness
 * slot; timer, handle and word arms are watchers in the wait table on the
 * word that changes (waitq.c), so the unpark that wakes that word's
 * waiters also fires the arm. Each round registers every arm, parks until
 * one fires, takes every arm back, and checks the winner's condition: a
 * word that changed for another reason (a handle's word also changes when
 * it starts running) means another round. */
#include <errno.h>
#include <stddef.h>

#include <moirai/async/select.h>
#include <moirai/core/clock.h>

#include "async_internal.h"
#include "iowait.h"
#include "netpoll.h"

typedef struct arm_state {
    moirai__arm_t arm;
    moirai__waiter_t watcher;
    _Atomic uintptr_t *slot; /* socket arms: the slot installed in */
    bool installed;          /* in its slot, or queued as a watcher */
} arm_state_t;

static void watcher_notify(moirai__waiter_t *w)
{
    arm_state_t *st = (arm_state_t *)((char *)w - offsetof(arm_state_t, watcher));
    if (!moirai__wait_fire(&st->arm))
        atomic_store_explicit(&st->arm.done, 1, memory_order_release);
}

static int check_arm(const moirai_select_arm_t *a)
{
    switch (a->kind) {
    case MOIRAI_SELECT_READABLE:
    case MOIRAI_SELECT_WRITABLE:
        return a->io != NULL ? 0 : -EINVAL;
    case MOIRAI_SELECT_TIMER:
        return a->timer != NULL ? 0 : -EINVAL;
    case MOIRAI_SELECT_HANDLE:
        return a->handle != NULL ? 0 : -EINVAL;
    case MOIRAI_SELECT_WORD:
        return a->word != NULL ? 0 : -EINVAL;
    }
    return -EINVAL;
}

/* The word a watcher arm watches and the value it expects; NULL when the
 * arm is ready now. */
static _Atomic uint32_t *watched(const moirai_select_arm_t *a, uint32_t *expected)
{
    if (a->kind == MOIRAI_SELECT_HANDLE)
        return moirai_handle_wait_word(a->handle, expected);
    if (a->kind == MOIRAI_SELECT_TIMER) {
        _Atomic uint32_t *w = moirai__timer_word(a->timer);
        /* Acquire: a fired timer's armer's writes are visible. */
        *expected = atomic_load_explicit(w, memory_order_acquire);
        return (*expected & MOIRAI__TIMER_MASK) == MOIRAI__TIMER_FIRED ? NULL : w;
    }
    *expected = a->expected;
    return atomic_load_explicit(a->word, memory_order_acquire) != a->expected ? NULL : a->word;
}

/* Is the condition of a watcher arm that fired true? */
static bool holds(const moirai_select_arm_t *a)
{
    if (a->kind == MOIRAI_SELECT_HANDLE)
        return moirai_handle_is_finished(a->handle);
    if (a->kind == MOIRAI_SELECT_TIMER)
        return (atomic_load_explicit(moirai__timer_word(a->timer), memory_order_acquire) &
                MOIRAI__TIMER_MASK) == MOIRAI__TIMER_FIRED;
    return true; /* a word arm reports unparks too */
}

/* Registers arm `i`: 0 installed, 1 ready now, or an error. */
static int install(const moirai_select_arm_t *a, arm_state_t *st)
{
    st->installed = false;
    if (a->kind == MOIRAI_SELECT_READABLE || a->kind == MOIRAI_SELECT_WRITABLE) {
        st->slot = a->kind == MOIRAI_SELECT_READABLE ? &a->io->rslot : &a->io->wslot;
        int rc = moirai__io_arm(st->slot, &st->arm);
        if (rc == 1) {
            /* Readiness is reported, not consumed: put it back for the
             * operation that follows. */
            moirai__io_notify(st->slot);
            return 1;
        }
        if (rc != 0)
            return rc;
        st->installed = true;
        /* A closed handle is "ready": its operation reports -EBADF. */
        return atomic_load_explicit(&a->io->closed, memory_order_seq_cst) ? 1 : 0;
    }
    uint32_t expected;
    _Atomic uint32_t *word = watched(a, &expected);
    if (word == NULL)
        return 1;
    st->watcher.notify = watcher_notify;
    atomic_init(&st->watcher.busy, 0);
    st->watcher.queued = false;
    /* A fresh arm, as moirai__io_arm() makes for socket arms. Left as a
     * lost notify of an earlier round set it (or as the stack left it on
     * the first round), uninstall's moirai__arm_release() could return
     * while an unparker that had just dequeued this watcher was still
     * about to call its notify: a later round (or another call's frame)
     * would then be notified, and TSan saw the write of `notify` above
     * race with that unparker's read of it. */
    atomic_init(&st->arm.done, 0);
    if (!moirai__waitq_watch(&st->watcher, word, expected))
        return holds(a) ? 1 : 2; /* 2: changed, look again */
    st->installed = true;
    return 0;
}

/* Takes arm `i` back (see moirai__io_disarm). */
static void uninstall(const moirai_select_arm_t *a, arm_state_t *st)
{
    if (!st->installed)
        return;
    if (a->kind == MOIRAI_SELECT_READABLE || a->kind == MOIRAI_SELECT_WRITABLE)
        moirai__io_disarm(st->slot, &st->arm);
    else if (!moirai__waitq_unwatch(&st->watcher))
        moirai__arm_release(&st->arm);
}

/* One round: registers, waits, takes back. Returns the ready index,
 * -EAGAIN for "look again", or the error. */
static int round_once(const moirai_select_arm_t *arms, size_t n, arm_state_t *st, size_t start,
                      uint64_t deadline)
{
    moirai__wait_t w;
    moirai__wait_init(&w);
    size_t done = 0;
    int ready = -1, rc = 0;
    for (; done < n; done++) {
        size_t i = (start + done) % n;
        st[i].arm.wait = &w;
        st[i].arm.index = (int)i;
        int r = install(&arms[i], &st[i]);
        if (r == 0)
            continue;
        if (r == 1)
            ready = (int)i;
        else
            rc = r == 2 ? -EAGAIN : r;
        done++;
        break;
    }
    if (ready < 0 && rc == 0) {
        while (atomic_load_explicit(&w.word, memory_order_acquire) == 0) {
            rc = moirai__iowait_park_for(&w.word, 0, deadline, "select");
            if (rc != 0)
                break;
        }
    }
    int winner = -1;
    if (!moirai__wait_close(&w)) {
        moirai__wait_settle(&w);
        winner = atomic_load_explicit(&w.winner, memory_order_acquire);
    }
    for (size_t k = 0; k < done; k++) {
        size_t i = (start + k) % n;
        if ((int)i != winner)
            uninstall(&arms[i], &st[i]);
    }
    if (ready >= 0)
        return ready;
    if (winner >= 0) {
        const moirai_select_arm_t *a = &arms[winner];
        if (a->kind == MOIRAI_SELECT_READABLE || a->kind == MOIRAI_SELECT_WRITABLE) {
            /* The poller handed its edge to us: keep it for the operation. */
            moirai__io_notify(st[winner].slot);
            return winner;
        }
        return holds(a) ? winner : -EAGAIN;
    }
    return rc != 0 ? rc : -EAGAIN;
}

int moirai_select_timed(uint64_t deadline, const moirai_select_arm_t *arms, size_t n)
{
    if (arms == NULL || n == 0 || n > MOIRAI_SELECT_MAX_ARMS)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (check_arm(&arms[i]) != 0)
            return -EINVAL;
    if (moirai_runtime_current() == NULL)
        return -EPERM;
    int rc = moirai__iowait_check();
    if (rc != 0)
        return rc;
    /* Socket arms hold a reference for the whole select. */
    size_t held = 0;
    for (; held < n; held++) {
        const moirai_select_arm_t *a = &arms[held];
        if (a->kind != MOIRAI_SELECT_READABLE && a->kind != MOIRAI_SELECT_WRITABLE)
            continue;
        rc = moirai__io_acquire(a->io);
        if (rc != 0)
            break;
    }
    static _Thread_local size_t rotation;
    arm_state_t st[MOIRAI_SELECT_MAX_ARMS];
    if (rc == 0) {
        do
            rc = round_once(arms, n, st, rotation++ % n, deadline);
        while (rc == -EAGAIN);
    }
    for (size_t i = 0; i < held; i++)
        if (arms[i].kind == MOIRAI_SELECT_READABLE || arms[i].kind == MOIRAI_SELECT_WRITABLE)
            moirai__io_release(arms[i].io);
    return rc;
}

int moirai_select(const moirai_select_arm_t *arms, size_t n)
{
    return moirai_select_timed(MOIRAI_DEADLINE_NEVER, arms, n);
}
