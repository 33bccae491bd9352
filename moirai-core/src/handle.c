/* Completion handles.
 *
 * Everything a joiner, a canceller or the task synchronises on is one 32-bit
 * atomic word, so that joiners can park on it directly:
 *
 *     bits 0-1  the state: PENDING, RUNNING, COMPLETING or FINISHED
 *     bit  2    cancellation requested (what the task's token reports)
 *     bit  3    some joiner is parked, or about to park, on the word
 *
 * COMPLETING is the one state handle.h does not name. Completion, failure
 * and cancellation of a pending handle race with each other; the winner is
 * whoever moves the word to COMPLETING first. Only the winner then writes
 * the result fields, and it publishes them with a release increment from
 * COMPLETING to FINISHED. Outside observers see COMPLETING as "not finished
 * yet" (joiners wait, try_join says -EAGAIN) and as "already decided" where
 * a second completion or a cancel is concerned (-EALREADY). The window is a
 * few instructions long.
 *
 * The cancellation token is the handle itself, seen through a different
 * pointer type so that a task cannot complete its own handle by accident. */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/core/park.h>
#include <moirai/core/spin.h>

#include "handle_internal.h"
#include "pause_point.h"
#include "park_internal.h"

/* The listener list's lock is a bit with acquire/release atomics, which
 * ThreadSanitizer models; the annotations let it check the lock as a lock
 * (lock order, unlocking an unlocked lock) too. */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define LST_TSAN_CREATE(a)      __tsan_mutex_create((void *)(a), __tsan_mutex_not_static)
#define LST_TSAN_DESTROY(a)     __tsan_mutex_destroy((void *)(a), __tsan_mutex_not_static)
#define LST_TSAN_PRE_LOCK(a)    __tsan_mutex_pre_lock((void *)(a), 0)
#define LST_TSAN_POST_LOCK(a)   __tsan_mutex_post_lock((void *)(a), 0, 0)
#define LST_TSAN_PRE_UNLOCK(a)  ((void)__tsan_mutex_pre_unlock((void *)(a), 0))
#define LST_TSAN_POST_UNLOCK(a) __tsan_mutex_post_unlock((void *)(a), 0)
#else
#define LST_TSAN_CREATE(a)      ((void)0)
#define LST_TSAN_DESTROY(a)     ((void)0)
#define LST_TSAN_PRE_LOCK(a)    ((void)0)
#define LST_TSAN_POST_LOCK(a)   ((void)0)
#define LST_TSAN_PRE_UNLOCK(a)  ((void)0)
#define LST_TSAN_POST_UNLOCK(a) ((void)0)
#endif

#define STATE_MASK       UINT32_C(0x3)
#define STATE_PENDING    UINT32_C(0x0)
#define STATE_RUNNING    UINT32_C(0x1)
#define STATE_COMPLETING UINT32_C(0x2)
#define STATE_FINISHED   UINT32_C(0x3)
#define CANCEL_BIT       UINT32_C(0x4)
#define WAITERS_BIT      UINT32_C(0x8)

struct moirai_handle {
    /* The state word described above; the parking address of joiners. */
    _Atomic uint32_t state;
    /* References: the creator's, plus one per executor holding it. */
    _Atomic uint32_t refs;
    /* Nonzero once a spawn has taken the handle (handle_internal.h). */
    _Atomic uint32_t bound;
    /* The result. Written only by the thread that moved the state to
     * COMPLETING, read only after observing FINISHED with acquire. */
    int error;
    void *value;
    moirai_task_id_t id;
    /* The latest start allowed (moirai__handle_bind()); written before the
     * spawn hands the handle on, read by the executor that runs it. */
    uint64_t start_by;
    /* The cancel watch (moirai_cancel_token_watch): WATCH_* below, and the
     * callback, written by the registrar before it publishes WATCH_ARMED. */
    _Atomic uint32_t watch;
    moirai_cancel_cb watch_cb;
    void *watch_arg;
    /* Cancel listeners (moirai_cancel_token_listen): a doubly linked list
     * of the callers' nodes under `lst_lock`, and whether cancellation has
     * been delivered to it (then a new listener runs at once). */
    _Atomic uint32_t lst_lock;
    bool lst_fired;
    struct listener *lst_head, *lst_tail;
};

/* A cancel listener as stored in moirai_cancel_listener_t. Every field is
 * under the lock of the handle it is listed on. */
typedef struct listener {
    struct listener *next, *prev;
    moirai_cancel_cb cb;
    void *arg;
    uintptr_t state; /* LST_* below */
} listener_t;

_Static_assert(sizeof(listener_t) <= sizeof(moirai_cancel_listener_t),
               "a listener must fit its public storage");
_Static_assert(_Alignof(listener_t) <= _Alignof(moirai_cancel_listener_t),
               "a listener must be aligned in its public storage");

#define LST_IDLE   0u /* not listed (never, removed, or fired and collected) */
#define LST_LISTED 1u
#define LST_FIRING 2u /* its callback runs on the cancelling thread */
#define LST_DONE   3u /* fired; unlisten collects it */

/* The listener whose callback this thread runs, until that callback
 * unlistens or re-listens it (then NULL): unlisten from inside its own
 * callback must not wait for itself, and once the callback has let go of
 * the node the canceller must not touch it again. */
static __thread listener_t *tls_firing;

/* Life of a cancel watch: EMPTY -> SETTING (the registrar writes the
 * callback) -> ARMED -> FIRING (whoever moved it there runs the callback)
 * -> FIRED; unwatch moves ARMED or FIRED back to EMPTY. */
#define WATCH_EMPTY   UINT32_C(0)
#define WATCH_SETTING UINT32_C(1)
#define WATCH_ARMED   UINT32_C(2)
#define WATCH_FIRING  UINT32_C(3)
#define WATCH_FIRED   UINT32_C(4)

static void fire_watch(moirai_handle_t *handle);
static void fire_listeners(moirai_handle_t *handle);

int moirai_handle_create(moirai_handle_t **out)
{
    if (out == NULL)
        return -EINVAL;
    moirai_handle_t *handle = moirai_malloc(sizeof(*handle));
    if (handle == NULL)
        return -ENOMEM;
    /* Plain initialisation: the handle is not shared until the caller
     * passes the pointer on, which orders these writes for the receiver. */
    atomic_init(&handle->state, STATE_PENDING);
    atomic_init(&handle->refs, 1);
    atomic_init(&handle->bound, 0);
    atomic_init(&handle->watch, WATCH_EMPTY);
    handle->watch_cb = NULL;
    handle->watch_arg = NULL;
    atomic_init(&handle->lst_lock, 0);
    LST_TSAN_CREATE(&handle->lst_lock);
    handle->lst_fired = false;
    handle->lst_head = NULL;
    handle->lst_tail = NULL;
    handle->error = 0;
    handle->value = NULL;
    handle->id = moirai_task_id_next();
    handle->start_by = MOIRAI_DEADLINE_NEVER;
    *out = handle;
    return 0;
}

void moirai_handle_retain(moirai_handle_t *handle)
{
    if (handle == NULL)
        return;
    /* Relaxed: the caller holds a reference, so the count cannot reach zero
     * concurrently and no memory needs ordering with the increment. */
    atomic_fetch_add_explicit(&handle->refs, 1, memory_order_relaxed);
}

void moirai_handle_release(moirai_handle_t *handle)
{
    if (handle == NULL)
        return;
    /* Release so that everything this owner did with the handle happens
     * before the free; acquire so that the owner dropping the last
     * reference sees every other owner's accesses before freeing. Both sit
     * on the decrement itself (acq_rel) rather than in a separate acquire
     * fence on the last reference, which ThreadSanitizer would not see. */
    if (atomic_fetch_sub_explicit(&handle->refs, 1, memory_order_acq_rel) == 1) {
        LST_TSAN_DESTROY(&handle->lst_lock);
        moirai_free(handle);
    }
}

moirai_task_id_t moirai_handle_id(const moirai_handle_t *handle)
{
    if (handle == NULL)
        return MOIRAI_TASK_ID_NONE;
    return handle->id;
}

int moirai__handle_bind(moirai_handle_t *handle, uint64_t start_by)
{
    uint32_t expected = 0;
    /* Relaxed: the flag only arbitrates between spawns; the handle's
     * contents reach the executor through the spawn call itself. */
    if (atomic_compare_exchange_strong_explicit(&handle->bound, &expected, 1, memory_order_relaxed,
                                                memory_order_relaxed)) {
        handle->start_by = start_by;
        return 0;
    }
    return -EINVAL;
}

void moirai__handle_unbind(moirai_handle_t *handle)
{
    /* Relaxed: a spawn racing with this one already failed on the flag; one
     * that comes later is ordered by whatever tells its caller the first
     * spawn failed. */
    atomic_store_explicit(&handle->bound, 0, memory_order_relaxed);
}

/* Moves a pending or running handle to COMPLETING. Returns 0 if the caller
 * won and must now write the result and call publish(), or -EALREADY if
 * someone else decided the result first. */
static int claim(moirai_handle_t *handle)
{
    uint32_t s = atomic_load_explicit(&handle->state, memory_order_relaxed);
    for (;;) {
        if ((s & STATE_MASK) >= STATE_COMPLETING)
            return -EALREADY;
        uint32_t next = (s & ~STATE_MASK) | STATE_COMPLETING;
        /* Relaxed: the claim publishes nothing (the result is published by
         * the release in publish()); failure only re-reads the state. */
        if (atomic_compare_exchange_weak_explicit(&handle->state, &s, next, memory_order_relaxed,
                                                  memory_order_relaxed))
            return 0;
    }
}

/* Publishes the result written after a successful claim() and wakes the
 * joiners, if any said they were waiting. */
static void publish(moirai_handle_t *handle)
{
    /* COMPLETING + 1 == FINISHED: an increment changes only the state bits
     * while a joiner may be setting WAITERS_BIT concurrently. Release makes
     * the result fields visible to every joiner that reads FINISHED with
     * acquire. The returned old value says whether a joiner set
     * WAITERS_BIT before this increment; one that tries afterwards fails
     * its compare-and-swap, sees FINISHED and never parks, so skipping the
     * wake-up when the bit is clear loses nobody. */
    MOIRAI_PAUSE_POINT("handle_publish:before");
    uint32_t old = atomic_fetch_add_explicit(&handle->state, 1, memory_order_release);
    if (old & WAITERS_BIT)
        moirai_unpark_all(&handle->state);
}

bool moirai_handle_try_start(moirai_handle_t *handle)
{
    if (handle == NULL)
        return false;
    uint32_t s = atomic_load_explicit(&handle->state, memory_order_relaxed);
    while ((s & STATE_MASK) == STATE_PENDING) {
        /* Relaxed: starting publishes nothing (the task's inputs travel with
         * the spawn) and a canceller's data reaches the task through the
         * token's acquire load. */
        if (atomic_compare_exchange_weak_explicit(&handle->state, &s,
                                                  (s & ~STATE_MASK) | STATE_RUNNING,
                                                  memory_order_relaxed, memory_order_relaxed))
            return true;
    }
    return false;
}

int moirai_handle_complete(moirai_handle_t *handle, void *value)
{
    if (handle == NULL)
        return -EINVAL;
    int rc = claim(handle);
    if (rc != 0)
        return rc;
    MOIRAI_PAUSE_POINT("handle_complete:claimed");
    handle->error = 0;
    handle->value = value;
    publish(handle);
    return 0;
}

int moirai_handle_fail(moirai_handle_t *handle, int error)
{
    if (handle == NULL || error >= 0)
        return -EINVAL;
    int rc = claim(handle);
    if (rc != 0)
        return rc;
    handle->error = error;
    handle->value = NULL;
    publish(handle);
    return 0;
}

const moirai_cancel_token_t *moirai_handle_token(const moirai_handle_t *handle)
{
    return (const moirai_cancel_token_t *)handle;
}

bool moirai_cancel_token_is_cancelled(const moirai_cancel_token_t *token)
{
    if (token == NULL)
        return false;
    const moirai_handle_t *handle = (const moirai_handle_t *)token;
    /* Acquire pairs with the release compare-and-swap in
     * moirai_handle_cancel() that set the bit. */
    return (atomic_load_explicit(&handle->state, memory_order_acquire) & CANCEL_BIT) != 0;
}

int moirai_handle_cancel(moirai_handle_t *handle)
{
    if (handle == NULL)
        return -EINVAL;
    uint32_t s = atomic_load_explicit(&handle->state, memory_order_relaxed);
    for (;;) {
        uint32_t state = s & STATE_MASK;
        if (state == STATE_PENDING) {
            /* Claim the pending handle directly rather than through claim(),
             * which would also accept a handle that started meanwhile.
             * Release: a token that sees CANCEL_BIT sees what the canceller
             * wrote before cancelling (the task never runs here, but the
             * token stays truthful for anyone holding it). */
            uint32_t next = (s & ~STATE_MASK) | STATE_COMPLETING | CANCEL_BIT;
            if (atomic_compare_exchange_weak_explicit(&handle->state, &s, next,
                                                      memory_order_release, memory_order_relaxed)) {
                handle->error = -ECANCELED;
                handle->value = NULL;
                publish(handle);
                fire_listeners(handle);
                return 0;
            }
            continue;
        }
        if (state != STATE_RUNNING)
            return -EALREADY;
        if (s & CANCEL_BIT)
            return -EBUSY;
        /* Release pairs with the token's acquire load, as documented;
         * seq_cst because it is the canceller's half of the Dekker pair with
         * moirai_cancel_token_watch() (see fire_watch()). */
        if (atomic_compare_exchange_weak_explicit(&handle->state, &s, s | CANCEL_BIT,
                                                  memory_order_seq_cst, memory_order_relaxed)) {
            /* Waiters on the token (moirai_cancel_token_wait_timed()) and
             * joiners announced themselves with WAITERS_BIT before parking
             * on this word: wake them all; joiners re-check and park again. */
            if (s & WAITERS_BIT)
                moirai_unpark_all(&handle->state);
            fire_watch(handle);
            fire_listeners(handle);
            return -EBUSY;
        }
        /* The state moved (started, completed, or a joiner set its bit):
         * decide again from the value just read. */
    }
}

/* Runs the armed watch of a cancelled handle, if this caller is the one
 * that moves it from ARMED to FIRING. Both the canceller (after setting
 * CANCEL_BIT) and the registrar (after arming) call it, each having done a
 * seq_cst write before this seq_cst read of the other's word, so at least
 * one of them sees both and the compare-and-swap picks exactly one. */
static void fire_watch(moirai_handle_t *handle)
{
    uint32_t w = WATCH_ARMED;
    if (atomic_load_explicit(&handle->watch, memory_order_seq_cst) != WATCH_ARMED ||
        !atomic_compare_exchange_strong_explicit(&handle->watch, &w, WATCH_FIRING,
                                                 memory_order_acquire, memory_order_relaxed))
        return;
    /* Acquire above pairs with the registrar's release of ARMED: the
     * callback fields are written. */
    handle->watch_cb(handle->watch_arg);
    /* Release: an unwatcher that sees FIRED knows the callback returned. */
    atomic_store_explicit(&handle->watch, WATCH_FIRED, memory_order_release);
}

int moirai_cancel_token_watch(const moirai_cancel_token_t *token, moirai_cancel_cb cb, void *arg)
{
    if (token == NULL || cb == NULL)
        return -EINVAL;
    /* The token is the handle; the watch fields are the only ones a token
     * holder may write, and only through this function. */
    moirai_handle_t *handle = (moirai_handle_t *)(uintptr_t)token;
    uint32_t w = WATCH_EMPTY;
    /* Relaxed: the slot is only reserved here; ARMED publishes. */
    if (!atomic_compare_exchange_strong_explicit(&handle->watch, &w, WATCH_SETTING,
                                                 memory_order_relaxed, memory_order_relaxed))
        return -EBUSY;
    handle->watch_cb = cb;
    handle->watch_arg = arg;
    /* Seq_cst (release included): the registrar's half of the Dekker pair
     * in fire_watch(). An exchange, not a store: see CONTRIBUTING.md,
     * "Atomics and sanitizers". */
    (void)atomic_exchange_explicit(&handle->watch, WATCH_ARMED, memory_order_seq_cst);
    if (atomic_load_explicit(&handle->state, memory_order_seq_cst) & CANCEL_BIT)
        fire_watch(handle);
    return 0;
}

int moirai_cancel_token_unwatch(const moirai_cancel_token_t *token)
{
    if (token == NULL)
        return -EINVAL;
    moirai_handle_t *handle = (moirai_handle_t *)(uintptr_t)token;
    for (unsigned spins = 0;; spins++) {
        /* Acquire: after FIRED, the callback's effects are visible. */
        uint32_t w = atomic_load_explicit(&handle->watch, memory_order_acquire);
        if (w == WATCH_EMPTY || w == WATCH_SETTING)
            return -ENOENT;
        if (w == WATCH_ARMED || w == WATCH_FIRED) {
            /* Relaxed: whoever re-arms the slot publishes with its own
             * seq_cst exchange. */
            if (atomic_compare_exchange_strong_explicit(&handle->watch, &w, WATCH_EMPTY,
                                                        memory_order_relaxed, memory_order_relaxed))
                return 0;
            continue;
        }
        /* FIRING: the callback runs on the cancelling thread right now and
         * is documented to be short and non-blocking; wait it out. */
        moirai_cpu_relax();
        if ((spins & 255) == 255)
            sched_yield();
    }
}

/* ---- Cancel listeners ---- */

static void lst_lock(moirai_handle_t *h)
{
    LST_TSAN_PRE_LOCK(&h->lst_lock);
    /* Acquire: the list as the previous holder left it. Test before the
     * exchange, so that a waiter spins on a shared line. Held only for a
     * few pointer updates, never across a callback. */
    for (unsigned spins = 0;; spins++) {
        if (atomic_load_explicit(&h->lst_lock, memory_order_relaxed) == 0 &&
            atomic_exchange_explicit(&h->lst_lock, 1, memory_order_acquire) == 0)
            break;
        moirai_cpu_relax();
        if ((spins & 255) == 255)
            sched_yield();
    }
    LST_TSAN_POST_LOCK(&h->lst_lock);
}

static void lst_unlock(moirai_handle_t *h)
{
    LST_TSAN_PRE_UNLOCK(&h->lst_lock);
    /* Release: publishes the list changes to the next holder. */
    atomic_store_explicit(&h->lst_lock, 0, memory_order_release);
    LST_TSAN_POST_UNLOCK(&h->lst_lock);
}

static void lst_unlink(moirai_handle_t *h, listener_t *n)
{
    if (n->prev != NULL)
        n->prev->next = n->next;
    else
        h->lst_head = n->next;
    if (n->next != NULL)
        n->next->prev = n->prev;
    else
        h->lst_tail = n->prev;
    n->next = n->prev = NULL;
}

/* Delivers cancellation to the listeners of a handle whose CANCEL_BIT is
 * set: each is taken off the list and its callback run, in the order they
 * were listed, with the lock dropped around each call. Later listeners
 * run at once (lst_fired). Called once per handle, by the canceller. */
static void fire_listeners(moirai_handle_t *handle)
{
    lst_lock(handle);
    handle->lst_fired = true;
    listener_t *n;
    while ((n = handle->lst_head) != NULL) {
        lst_unlink(handle, n);
        n->state = LST_FIRING;
        lst_unlock(handle);
        listener_t *outer = tls_firing;
        tls_firing = n;
        n->cb(n->arg);
        bool kept = tls_firing == n;
        tls_firing = outer;
        lst_lock(handle);
        /* After this store (published by the unlock) an unlistener may
         * free the node: it is not touched again. A callback that let go
         * of its node may have freed or reused it already. */
        if (kept)
            n->state = LST_DONE;
    }
    lst_unlock(handle);
}

int moirai_cancel_token_listen(const moirai_cancel_token_t *token,
                               moirai_cancel_listener_t *listener, moirai_cancel_cb cb, void *arg)
{
    if (token == NULL || listener == NULL || cb == NULL)
        return -EINVAL;
    /* The token is the handle; the listener fields are the only ones a
     * token holder may write, and only under their lock. */
    moirai_handle_t *handle = (moirai_handle_t *)(uintptr_t)token;
    listener_t *n = (listener_t *)(void *)listener;
    if (tls_firing == n)
        tls_firing = NULL; /* re-listened from its own callback */
    n->cb = cb;
    n->arg = arg;
    n->next = n->prev = NULL;
    lst_lock(handle);
    if (handle->lst_fired) {
        /* Cancelled already: the callback runs here, once. */
        n->state = LST_DONE;
        lst_unlock(handle);
        cb(arg);
        return 0;
    }
    n->state = LST_LISTED;
    n->prev = handle->lst_tail;
    if (handle->lst_tail != NULL)
        handle->lst_tail->next = n;
    else
        handle->lst_head = n;
    handle->lst_tail = n;
    lst_unlock(handle);
    return 0;
}

int moirai_cancel_token_unlisten(const moirai_cancel_token_t *token,
                                 moirai_cancel_listener_t *listener)
{
    if (token == NULL || listener == NULL)
        return -EINVAL;
    moirai_handle_t *handle = (moirai_handle_t *)(uintptr_t)token;
    listener_t *n = (listener_t *)(void *)listener;
    for (unsigned spins = 0;; spins++) {
        lst_lock(handle);
        uintptr_t st = n->state;
        if (st == LST_LISTED) {
            lst_unlink(handle, n);
            n->state = LST_IDLE;
            /* Cancelled, but the canceller has not reached this listener
             * yet (it sets the bit before it takes the lock): it will not
             * find it now, so the callback runs here, once. Acquire: pairs
             * with the canceller's seq_cst CAS that set the bit. */
            bool cancelled =
                (atomic_load_explicit(&handle->state, memory_order_acquire) & CANCEL_BIT) != 0;
            lst_unlock(handle);
            if (cancelled)
                n->cb(n->arg);
            return 0;
        }
        if (st == LST_DONE || (st == LST_FIRING && tls_firing == n)) {
            /* Fired; or firing, and this is its own callback letting go
             * of it (the canceller leaves it alone from now on). */
            n->state = LST_IDLE;
            if (tls_firing == n)
                tls_firing = NULL;
            lst_unlock(handle);
            return 0;
        }
        lst_unlock(handle);
        if (st == LST_IDLE)
            return -ENOENT;
        /* FIRING on another thread: the callback is short and
         * non-blocking by contract; wait it out. */
        moirai_cpu_relax();
        if ((spins & 255) == 255)
            sched_yield();
    }
}

/* ---- Waiting on a token ---- */

/* Parks until `deadline` with nothing to wake it early (a NULL token, or
 * the task finished uncancelled: it can no longer be cancelled). Through
 * the park layer, so that a fiber parks instead of blocking its thread.
 * Returns -ETIMEDOUT, or -ECANCELED from a fiber whose own task was
 * cancelled. */
static int sleep_plain(uint64_t deadline)
{
    _Atomic uint32_t word = 0;
    for (;;) {
        int rc = moirai_park_nospin_for(&word, 0, deadline, "sleep");
        if (rc == -ETIMEDOUT || rc == -ECANCELED)
            return rc;
        if (moirai_deadline_expired(deadline))
            return -ETIMEDOUT;
    }
}

int moirai_cancel_token_wait_timed(const moirai_cancel_token_t *token, uint64_t deadline)
{
    if (token == NULL)
        return sleep_plain(deadline);
    moirai_handle_t *handle = (moirai_handle_t *)(uintptr_t)token;
    /* Acquire: pairs with the canceller's release of CANCEL_BIT, so that
     * what it wrote before cancelling is visible once this returns 0. */
    uint32_t s = atomic_load_explicit(&handle->state, memory_order_acquire);
    for (;;) {
        if (s & CANCEL_BIT)
            return 0;
        if ((s & STATE_MASK) == STATE_FINISHED)
            return sleep_plain(deadline);
        if (moirai_deadline_expired(deadline))
            return -ETIMEDOUT;
        if (!(s & WAITERS_BIT)) {
            /* Announced on the word itself: a cancel (or completion) that
             * comes later sees the bit in the value it replaces and wakes;
             * one that came first makes this CAS fail. */
            if (!atomic_compare_exchange_weak_explicit(&handle->state, &s, s | WAITERS_BIT,
                                                       memory_order_acquire, memory_order_acquire))
                continue;
            s |= WAITERS_BIT;
        }
        /* No spin: a cancel is not a quick hand-off. */
        int rc = moirai_park_nospin_for(&handle->state, s, deadline, "cancel token");
        s = atomic_load_explicit(&handle->state, memory_order_acquire);
        if (rc == -ECANCELED && !(s & CANCEL_BIT))
            return -ECANCELED;
    }
}

int moirai_cancel_token_sleep_until(const moirai_cancel_token_t *token, uint64_t deadline)
{
    int rc = moirai_cancel_token_wait_timed(token, deadline);
    if (rc == 0)
        return -ECANCELED;
    return rc == -ETIMEDOUT ? 0 : rc;
}

int moirai_cancel_token_sleep(const moirai_cancel_token_t *token, uint64_t ns)
{
    return moirai_cancel_token_sleep_until(token, moirai_deadline_after(ns));
}

/* Reports the result of a handle observed FINISHED with acquire. */
static int result(const moirai_handle_t *handle, void **value)
{
    if (handle->error == 0) {
        if (value != NULL)
            *value = handle->value;
        return 0;
    }
    if (value != NULL)
        *value = NULL;
    return handle->error;
}

int moirai_handle_run(moirai_handle_t *handle, moirai_task_fn fn, void *arg)
{
    void *value = NULL;
    if (handle == NULL)
        return fn(arg, NULL, &value);
    if (!moirai_handle_try_start(handle))
        return -ECANCELED;
    /* A task whose start deadline passed while it waited ends at once
     * without running. One predictable branch for tasks without one. */
    if (__builtin_expect(handle->start_by != MOIRAI_DEADLINE_NEVER, 0) &&
        moirai_clock_now_ns() >= handle->start_by) {
        int rc = moirai_handle_fail(handle, -ETIMEDOUT);
        return rc == -EALREADY ? -EALREADY : -ETIMEDOUT;
    }
    int status = fn(arg, moirai_handle_token(handle), &value);
    /* A task must return 0 or a negative errno. A positive value is almost
     * always an errno returned without its sign; treat it as that error
     * rather than losing the failure. */
    if (status > 0)
        status = -status;
    int rc =
        status == 0 ? moirai_handle_complete(handle, value) : moirai_handle_fail(handle, status);
    if (rc == -EALREADY)
        return -EALREADY;
    return status;
}

/* The calling thread's waiter (moirai_handle_waiter_set()), if any.
 * Initial-exec, as park.c's thread-local: one instruction to reach. */
static __thread struct {
    moirai_handle_waiter_cb cb;
    void *arg;
} waiter __attribute__((tls_model("initial-exec")));

void moirai_handle_waiter_set(moirai_handle_waiter_cb cb, void *arg)
{
    waiter.cb = cb;
    waiter.arg = cb != NULL ? arg : NULL;
}

int moirai_handle_join_timed(moirai_handle_t *handle, uint64_t deadline, void **value)
{
    if (handle == NULL) {
        if (value != NULL)
            *value = NULL;
        return -EINVAL;
    }
    /* Acquire on every load that may observe FINISHED pairs with the
     * release in publish(), making the result fields readable. */
    uint32_t s = atomic_load_explicit(&handle->state, memory_order_acquire);
    for (;;) {
        if ((s & STATE_MASK) == STATE_FINISHED)
            return result(handle, value);
        if (moirai_deadline_expired(deadline)) {
            if (value != NULL)
                *value = NULL;
            return -ETIMEDOUT;
        }
        if (!(s & WAITERS_BIT)) {
            /* Announce the waiter before parking, so the completer knows
             * to wake; on failure `s` holds the current word (acquire: it
             * may be FINISHED) and the loop decides again. */
            if (!atomic_compare_exchange_weak_explicit(&handle->state, &s, s | WAITERS_BIT,
                                                       memory_order_acquire, memory_order_acquire))
                continue;
            s |= WAITERS_BIT;
        }
        int rc;
        if (waiter.cb != NULL && !moirai__park_hook_applies()) {
            /* A scheduler's worker runs other work until the handle is
             * finished or the deadline passes; the loop re-checks both. */
            rc = waiter.cb(waiter.arg, handle, deadline);
        } else {
            /* Returns when the word is no longer `s`, when woken,
             * spuriously, or at the deadline; the loop re-checks all of
             * those. */
            rc = moirai_park_for(&handle->state, s, deadline, "join");
        }
        s = atomic_load_explicit(&handle->state, memory_order_acquire);
        /* A fiber runtime's park reports that the waiting fiber was
         * cancelled; a join is a wait that can fail, so it passes that on
         * unless the result arrived meanwhile. */
        if (rc == -ECANCELED && (s & STATE_MASK) != STATE_FINISHED) {
            if (value != NULL)
                *value = NULL;
            return -ECANCELED;
        }
    }
}

_Atomic uint32_t *moirai_handle_wait_word(moirai_handle_t *handle, uint32_t *expected)
{
    if (handle == NULL || expected == NULL)
        return NULL;
    /* Acquire: as in join, a FINISHED word makes the result readable. */
    uint32_t s = atomic_load_explicit(&handle->state, memory_order_acquire);
    for (;;) {
        if ((s & STATE_MASK) == STATE_FINISHED)
            return NULL;
        if (s & WAITERS_BIT)
            break;
        /* The same announcement a joiner makes before it parks. */
        if (atomic_compare_exchange_weak_explicit(&handle->state, &s, s | WAITERS_BIT,
                                                  memory_order_acquire, memory_order_acquire)) {
            s |= WAITERS_BIT;
            break;
        }
    }
    *expected = s;
    return &handle->state;
}

int moirai_handle_join(moirai_handle_t *handle, void **value)
{
    return moirai_handle_join_timed(handle, MOIRAI_DEADLINE_NEVER, value);
}

int moirai_handle_try_join(moirai_handle_t *handle, void **value)
{
    if (handle == NULL) {
        if (value != NULL)
            *value = NULL;
        return -EINVAL;
    }
    uint32_t s = atomic_load_explicit(&handle->state, memory_order_acquire);
    if ((s & STATE_MASK) == STATE_FINISHED)
        return result(handle, value);
    if (value != NULL)
        *value = NULL;
    return -EAGAIN;
}

bool moirai_handle_is_finished(const moirai_handle_t *handle)
{
    if (handle == NULL)
        return false;
    /* Acquire, as documented: a caller that sees true may read whatever the
     * task wrote before completing. */
    return (atomic_load_explicit(&handle->state, memory_order_acquire) & STATE_MASK) ==
           STATE_FINISHED;
}
