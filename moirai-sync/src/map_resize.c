/* The concurrent hash map's resizing: the load policy, the process-wide
 * resizer thread that applies it, and moirai_map_stats().
 *
 * Separate from map.c because resizing runs on its own thread and its own
 * schedule: no lookup ever enters this file, and an update only calls
 * moirai__map_resize_check() once in CHECK_EVERY updates (map.c), as it did
 * when the map was one file. The entries it counts are map.c's
 * (moirai_map_count()). */
#include "map_internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <urcu/rculfhash.h>

#include <moirai/core/clock.h>
#include <moirai/core/park.h>
#include <moirai/sync/map.h>
#include <moirai/sync/rcu.h>

/* ------------------------------------------------------------------------
 * Resizing.
 *
 * The map does not use liburcu's automatic resizing (CDS_LFHT_AUTO_RESIZE).
 * In liburcu 0.13 (and its master branch as of this writing) that has a
 * lost-update race: __cds_lfht_resize_lazy_launch() queues the resize work
 * and only afterwards sets ht->resize_initiated; when the worker thread
 * runs the whole resize in between, it clears the flag before the launcher
 * sets it, the flag then stays set with nothing queued, and the table never
 * resizes again. On this project's 2-CPU machines that happened in about
 * one run in three of a fill-then-churn workload: a table stuck at 64
 * buckets holding 65536 entries, every lookup walking a chain of about a
 * thousand nodes.
 *
 * So Moirai owns the policy. Each map counts its entries (the counters of
 * moirai_map_count()); when an updater sees the load leave its bounds it
 * queues the map for one process-wide resizer thread, which calls
 * cds_lfht_resize(): synchronous, safe from a registered thread outside
 * any read-side critical section, and, called from a single thread, free
 * of the race. Readers and updaters never wait for a resize: the split-
 * ordered list stays valid while buckets are added or removed.
 *
 * Policy: grow when entries exceed buckets (load above 1), shrink when
 * they fall below an eighth of the buckets, both to the power of two at or
 * above twice the entries (load between 1/4 and 1/2 right after a resize),
 * never below the map's initial size. */

#define SHRINK_DIVISOR 8

static bool load_out_of_bounds(const moirai_map_t *map, size_t entries, size_t buckets)
{
    if (entries > buckets)
        return buckets < MOIRAI__MAP_MAX_BUCKETS;
    return buckets > map->min_buckets && entries < buckets / SHRINK_DIVISOR;
}

static size_t target_buckets(const moirai_map_t *map, size_t entries)
{
    size_t want = moirai__map_round_pow2(
        entries > MOIRAI__MAP_MAX_BUCKETS / 2 ? MOIRAI__MAP_MAX_BUCKETS : 2 * entries);
    return want < map->min_buckets ? map->min_buckets : want;
}

/* Process-wide resizer state. The thread runs while at least one map
 * exists: the first create starts it, the last destroy stops and joins it,
 * both under rs_lock (which the thread itself never takes). Requests go
 * through a lock-free stack that the thread empties in one exchange, so
 * updaters never block on it. */
static pthread_mutex_t rs_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t rs_maps;      /* under rs_lock */
static pthread_t rs_thread; /* under rs_lock */
static atomic_bool rs_stop;
static _Atomic(moirai_map_t *) rs_queue;
static _Atomic uint32_t rs_wake; /* bumped on every request; the thread parks on it */
static _Atomic uint32_t rs_done; /* bumped after every map is done; destroy parks on it */

static void resize_one(moirai_map_t *map)
{
    /* A few rounds, for a map that kept growing while it was resized;
     * beyond that the next updater's check asks again. */
    for (int round = 0; round < 4; round++) {
        size_t entries = moirai_map_count(map);
        /* Relaxed: only this thread writes `buckets` once the map is
         * published. */
        size_t buckets = atomic_load_explicit(&map->buckets, memory_order_relaxed);
        if (!load_out_of_bounds(map, entries, buckets))
            return;
        size_t target = target_buckets(map, entries);
        cds_lfht_resize(map->ht, target);
        atomic_store_explicit(&map->buckets, target, memory_order_relaxed);
        atomic_fetch_add_explicit(&map->resizes, 1, memory_order_relaxed);
    }
}

static void *resizer_main(void *arg)
{
    (void)arg;
    /* cds_lfht_resize() needs a registered RCU thread. If registration
     * fails (it cannot allocate its exit hook), maps stay correct and
     * simply keep their size. */
    bool can_resize = moirai_rcu_thread_register() == 0;
    for (;;) {
        /* Read the wake word before looking at the queue: a request made
         * after the look changes the word, and the park returns at once. */
        uint32_t seen = atomic_load_explicit(&rs_wake, memory_order_acquire);
        /* Acquire: pairs with the requests' release push, so each map's
         * `resize_next` is visible. */
        moirai_map_t *list = atomic_exchange_explicit(&rs_queue, NULL, memory_order_acquire);
        if (list == NULL) {
            if (atomic_load_explicit(&rs_stop, memory_order_acquire))
                break;
            moirai_park(&rs_wake, seen, MOIRAI_DEADLINE_NEVER);
            continue;
        }
        while (list != NULL) {
            moirai_map_t *map = list;
            list = map->resize_next;
            if (can_resize)
                resize_one(map);
            /* Release: destroy's acquire load of `queued` sees this
             * thread's last access to the map, which is this store. */
            atomic_store_explicit(&map->queued, 0, memory_order_release);
            atomic_fetch_add_explicit(&rs_done, 1, memory_order_release);
            moirai_unpark_all(&rs_done);
        }
    }
    moirai_rcu_thread_unregister();
    return NULL;
}

/* Queues `map` for the resizer unless it is queued already. Never blocks:
 * a compare-and-swap push and, when the resizer may be asleep, a wake-up
 * system call (rare: once per resize). */
static void request_resize(moirai_map_t *map)
{
    uint32_t idle = 0;
    /* Acquire on success: the resizer's release of `queued` after its last
     * read of `resize_next` happens before our write below. */
    if (!atomic_compare_exchange_strong_explicit(&map->queued, &idle, 1, memory_order_acquire,
                                                 memory_order_relaxed))
        return;
    moirai_map_t *head = atomic_load_explicit(&rs_queue, memory_order_relaxed);
    do {
        map->resize_next = head;
        /* Release: publishes `resize_next` to the resizer's exchange. */
    } while (!atomic_compare_exchange_weak_explicit(&rs_queue, &head, map, memory_order_release,
                                                    memory_order_relaxed));
    atomic_fetch_add_explicit(&rs_wake, 1, memory_order_release);
    moirai_unpark_one(&rs_wake);
}

/* Out of line (and kept so under LTO): an updater calls it once every
 * CHECK_EVERY updates, and its body should not weigh on theirs. */
__attribute__((noinline)) void moirai__map_resize_check(moirai_map_t *map)
{
    size_t buckets = atomic_load_explicit(&map->buckets, memory_order_relaxed);
    if (load_out_of_bounds(map, moirai_map_count(map), buckets))
        request_resize(map);
}

/* Counts a new map in and starts the resizer with the first one.
 * Returns 0 or -EAGAIN (the system refused a thread). The thread's stack
 * is the C library's default: a stack of our own (from moirai_malloc())
 * would also have to hold the static TLS of every library in the process,
 * whose size we cannot know (ThreadSanitizer's alone needs 900 KiB). */
int moirai__map_resize_acquire(void)
{
    int rc = 0;
    pthread_mutex_lock(&rs_lock);
    if (rs_maps == 0) {
        /* The resizer must not take the application's signals. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        atomic_store_explicit(&rs_stop, false, memory_order_relaxed);
        int err = pthread_create(&rs_thread, NULL, resizer_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (err != 0)
            rc = -EAGAIN;
    }
    if (rc == 0)
        rs_maps++;
    pthread_mutex_unlock(&rs_lock);
    return rc;
}

/* Counts a map out; the last one stops and joins the resizer. */
void moirai__map_resize_release(void)
{
    pthread_mutex_lock(&rs_lock);
    if (--rs_maps == 0) {
        atomic_store_explicit(&rs_stop, true, memory_order_release);
        atomic_fetch_add_explicit(&rs_wake, 1, memory_order_release);
        moirai_unpark_all(&rs_wake);
        pthread_join(rs_thread, NULL);
    }
    pthread_mutex_unlock(&rs_lock);
}

/* Waits until the resizer no longer holds `map`. */
void moirai__map_resize_forget(moirai_map_t *map)
{
    for (;;) {
        /* Read rs_done before `queued`: if the resizer releases the map
         * after our check, rs_done has moved and the park returns. */
        uint32_t done = atomic_load_explicit(&rs_done, memory_order_acquire);
        if (atomic_load_explicit(&map->queued, memory_order_acquire) == 0)
            return;
        moirai_park(&rs_done, done, MOIRAI_DEADLINE_NEVER);
    }
}

int moirai_map_stats(const moirai_map_t *map, moirai_map_stats_t *out)
{
    if (map == NULL || out == NULL)
        return -EINVAL;
    out->entries = moirai_map_count(map);
    out->buckets = atomic_load_explicit(&map->buckets, memory_order_relaxed);
    out->resizes = atomic_load_explicit(&map->resizes, memory_order_relaxed);
    return 0;
}
