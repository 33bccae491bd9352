/* The metrics registry: a list of collectors, each an object with the
 * callback that writes its metrics, run in the order added (see prom.h).
 *
 * One lock guards the list and is held through a whole write, so that a
 * remove returning means its collector is not running and never will
 * again: the caller may then destroy the object. The lock is built on
 * core's parking layer rather than on a POSIX mutex because a write may
 * run on a fiber (an exporter serving HTTP with moirai-async) and its
 * collectors may park that fiber on their objects' locks: the fiber can
 * then resume on another worker thread and unlock there, which a POSIX
 * mutex forbids, and a waiter for the lock parks its fiber instead of
 * blocking the worker. */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/park.h>
#include <moirai/core/prom.h>

/* The lock is three values in a word (after Drepper's "Futexes are
 * tricky"): FREE; LOCKED, with nobody parked; CONTENDED, where a waiter
 * may be parked, so the unlock must wake one. ThreadSanitizer sees the
 * atomics; the annotations let it check the lock as a lock (lock order,
 * unlocking a lock that is not held), and the divert pair around parking
 * and waking lets it check what a parking hook runs meanwhile. */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define REG_TSAN_CREATE(a)      __tsan_mutex_create((void *)(a), __tsan_mutex_not_static)
#define REG_TSAN_DESTROY(a)     __tsan_mutex_destroy((void *)(a), __tsan_mutex_not_static)
#define REG_TSAN_PRE_LOCK(a)    __tsan_mutex_pre_lock((void *)(a), 0)
#define REG_TSAN_POST_LOCK(a)   __tsan_mutex_post_lock((void *)(a), 0, 0)
#define REG_TSAN_PRE_UNLOCK(a)  ((void)__tsan_mutex_pre_unlock((void *)(a), 0))
#define REG_TSAN_POST_UNLOCK(a) __tsan_mutex_post_unlock((void *)(a), 0)
#define REG_TSAN_PRE_DIVERT(a)  __tsan_mutex_pre_divert((void *)(a), 0)
#define REG_TSAN_POST_DIVERT(a) __tsan_mutex_post_divert((void *)(a), 0)
#else
#define REG_TSAN_CREATE(a)      ((void)0)
#define REG_TSAN_DESTROY(a)     ((void)0)
#define REG_TSAN_PRE_LOCK(a)    ((void)0)
#define REG_TSAN_POST_LOCK(a)   ((void)0)
#define REG_TSAN_PRE_UNLOCK(a)  ((void)0)
#define REG_TSAN_POST_UNLOCK(a) ((void)0)
#define REG_TSAN_PRE_DIVERT(a)  ((void)0)
#define REG_TSAN_POST_DIVERT(a) ((void)0)
#endif

#define LOCK_FREE      UINT32_C(0)
#define LOCK_LOCKED    UINT32_C(1)
#define LOCK_CONTENDED UINT32_C(2)

typedef struct entry {
    char *name;
    moirai_metrics_collect_cb collect;
    void *arg;
} entry_t;

struct moirai_metrics_registry {
    _Atomic uint32_t lock; /* LOCK_* above */
    entry_t *entries;      /* under lock */
    size_t n, cap;         /* under lock */
};

/* Acquire on taking the lock: the list as the last holder left it is
 * visible. */
static void reg_lock(moirai_metrics_registry_t *reg)
{
    REG_TSAN_PRE_LOCK(&reg->lock);
    uint32_t c = LOCK_FREE;
    if (!atomic_compare_exchange_strong_explicit(&reg->lock, &c, LOCK_LOCKED, memory_order_acquire,
                                                 memory_order_relaxed)) {
        /* Announce a waiter before parking, so the unlock wakes one; a
         * waiter that gets the lock this way keeps CONTENDED, which at
         * worst costs one needless wake-up. A cancelled fiber's park
         * returns early: the loop waits again, the lock is not
         * cancellable. */
        while (atomic_exchange_explicit(&reg->lock, LOCK_CONTENDED, memory_order_acquire) !=
               LOCK_FREE) {
            REG_TSAN_PRE_DIVERT(&reg->lock);
            moirai_park(&reg->lock, LOCK_CONTENDED, MOIRAI_DEADLINE_NEVER);
            REG_TSAN_POST_DIVERT(&reg->lock);
        }
    }
    REG_TSAN_POST_LOCK(&reg->lock);
}

/* Release on freeing it: the holder's changes to the list reach the next
 * holder. */
static void reg_unlock(moirai_metrics_registry_t *reg)
{
    REG_TSAN_PRE_UNLOCK(&reg->lock);
    if (atomic_exchange_explicit(&reg->lock, LOCK_FREE, memory_order_release) == LOCK_CONTENDED) {
        REG_TSAN_PRE_DIVERT(&reg->lock);
        moirai_unpark_one(&reg->lock);
        REG_TSAN_POST_DIVERT(&reg->lock);
    }
    REG_TSAN_POST_UNLOCK(&reg->lock);
}

int moirai_metrics_registry_create(moirai_metrics_registry_t **out)
{
    if (!out)
        return -EINVAL;
    moirai_metrics_registry_t *reg = moirai_calloc(1, sizeof(*reg));
    if (!reg)
        return -ENOMEM;
    atomic_init(&reg->lock, LOCK_FREE);
    REG_TSAN_CREATE(&reg->lock);
    *out = reg;
    return 0;
}

void moirai_metrics_registry_destroy(moirai_metrics_registry_t *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++)
        moirai_free(reg->entries[i].name);
    moirai_free(reg->entries);
    REG_TSAN_DESTROY(&reg->lock);
    moirai_free(reg);
}

int moirai_metrics_registry_add(moirai_metrics_registry_t *reg, const char *name,
                                moirai_metrics_collect_cb collect, void *arg)
{
    if (!reg || !name || !collect)
        return -EINVAL;
    /* Copied before taking the lock: the allocation may be slow. */
    size_t len = strlen(name) + 1;
    char *copy = moirai_malloc(len);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, name, len);
    int err = 0;
    reg_lock(reg);
    for (size_t i = 0; i < reg->n && !err; i++) {
        entry_t *e = &reg->entries[i];
        if (e->collect == collect && (e->arg == arg || strcmp(e->name, name) == 0))
            err = -EEXIST;
    }
    if (!err && reg->n == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 8;
        entry_t *es = moirai_realloc(reg->entries, cap * sizeof(*es));
        if (es) {
            reg->entries = es;
            reg->cap = cap;
        } else {
            err = -ENOMEM;
        }
    }
    if (!err)
        reg->entries[reg->n++] = (entry_t){copy, collect, arg};
    reg_unlock(reg);
    if (err)
        moirai_free(copy);
    return err;
}

int moirai_metrics_registry_remove(moirai_metrics_registry_t *reg,
                                   moirai_metrics_collect_cb collect, void *arg)
{
    if (!reg || !collect)
        return -EINVAL;
    char *name = NULL;
    reg_lock(reg);
    for (size_t i = 0; i < reg->n; i++) {
        if (reg->entries[i].collect == collect && reg->entries[i].arg == arg) {
            name = reg->entries[i].name;
            /* Shifted, not swapped with the last, to keep the order in
             * which collectors run (and families first appear). */
            memmove(&reg->entries[i], &reg->entries[i + 1],
                    (reg->n - i - 1) * sizeof(reg->entries[0]));
            reg->n--;
            break;
        }
    }
    reg_unlock(reg);
    if (!name)
        return -ENOENT;
    moirai_free(name);
    return 0;
}

int moirai_metrics_registry_write(moirai_metrics_registry_t *reg, moirai_prom_writer_t *w)
{
    if (!reg || !w)
        return -EINVAL;
    moirai_prom_mark_t mark = moirai_prom_writer_mark(w);
    int err = 0;
    reg_lock(reg);
    for (size_t i = 0; i < reg->n && !err; i++)
        err = reg->entries[i].collect(reg->entries[i].arg, w, reg->entries[i].name);
    reg_unlock(reg);
    if (err)
        moirai_prom_writer_rollback(w, mark);
    return err;
}
