/* moirai-bench, suite "core": completion handles and the parking layer
 * against the textbook pthread mutex + condition variable equivalents.
 *
 * handle_complete_join
 *   One thread creates handles and joins them, another completes them,
 *   like a spawner and a worker. The joiner keeps a window of HCJ_WINDOW
 *   handles in flight: it creates a handle, passes it to the completer
 *   through a single-producer single-consumer ring, and joins the handle
 *   created HCJ_WINDOW steps earlier, so some joins find the handle
 *   finished and some must wait. Creating, completing, joining and
 *   releasing all sit inside the measured loop. The peer ("pthread") is a
 *   reference-counted promise made of a mutex, a condition variable and a
 *   flag; both implementations use the same ring and the same window and
 *   check every value they join. Metric: ns per handle.
 *
 * park_unpark_pingpong
 *   Two threads pass a counter back and forth: each waits until the word
 *   holds the value it expects, then writes the next value and wakes the
 *   other. Moirai uses moirai_park / moirai_unpark_one on the word; the
 *   peer ("pthread") guards the word with a mutex and waits on a condition
 *   variable. Metric: ns per round trip (two hand-offs).
 *
 * Thread creation and the start-up hand-shake are outside the measured
 * section; each run joins its threads and frees everything before it
 * returns. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <moirai/core.h>

#include <moirai/core/spin.h>

#include "../bench.h"

#define CACHE_LINE 64

/* Spin-wait helper shared by both implementations of a case, so the
 * waiting that is not under test costs them the same. It yields now and
 * then because on a 2-CPU machine the thread it waits for may be runnable
 * on this very CPU. */
static inline void relax(unsigned *spins)
{
    if (++*spins % 64 == 0) {
        sched_yield();
    } else {
        moirai_cpu_relax();
    }
}

/* ---- handle_complete_join ---- */

#define HCJ_WINDOW 16
#define HCJ_RING   32 /* power of two >= HCJ_WINDOW: the ring never fills */

/* Single-producer single-consumer ring of pointers: the joiner pushes
 * freshly created handles, the completer pops them. The producer publishes
 * a slot with a release store of `tail` and the consumer reads `tail` with
 * acquire, so the slot's pointer (and the object behind it) is visible
 * before it is used; `head` carries the same guarantee back for reuse of a
 * slot. */
typedef struct hcj_ring {
    _Alignas(CACHE_LINE) _Atomic uint64_t tail;
    _Alignas(CACHE_LINE) _Atomic uint64_t head;
    _Alignas(CACHE_LINE) void *slot[HCJ_RING];
} hcj_ring_t;

static void ring_push(hcj_ring_t *ring, uint64_t pos, void *item)
{
    unsigned spins = 0;
    while (pos - atomic_load_explicit(&ring->head, memory_order_acquire) >= HCJ_RING)
        relax(&spins);
    ring->slot[pos % HCJ_RING] = item;
    atomic_store_explicit(&ring->tail, pos + 1, memory_order_release);
}

static void *ring_pop(hcj_ring_t *ring, uint64_t pos)
{
    unsigned spins = 0;
    while (atomic_load_explicit(&ring->tail, memory_order_acquire) == pos)
        relax(&spins);
    void *item = ring->slot[pos % HCJ_RING];
    atomic_store_explicit(&ring->head, pos + 1, memory_order_release);
    return item;
}

typedef struct hcj_shared {
    hcj_ring_t ring;
    uint64_t iters;
    _Atomic int completer_errors;
    _Atomic int ready; /* the completer is running */
} hcj_shared_t;

/* The value the i-th handle is completed with: never NULL, and a wrong
 * pairing of handle and value shows up in the joiner's check. */
static void *hcj_value(uint64_t i)
{
    return (void *)(uintptr_t)(i + 1);
}

static hcj_shared_t *hcj_shared_new(uint64_t iters)
{
    hcj_shared_t *sh = aligned_alloc(CACHE_LINE, sizeof(*sh));
    if (!sh)
        return NULL;
    atomic_init(&sh->ring.tail, 0);
    atomic_init(&sh->ring.head, 0);
    atomic_init(&sh->completer_errors, 0);
    atomic_init(&sh->ready, 0);
    sh->iters = iters;
    return sh;
}

/* As in the ping-pong below, the completer announces itself before the
 * joiner starts its clock, so thread start-up is not measured. */
static void hcj_announce(hcj_shared_t *sh)
{
    atomic_store_explicit(&sh->ready, 1, memory_order_release);
}

static void hcj_await_completer(hcj_shared_t *sh)
{
    unsigned spins = 0;
    while (!atomic_load_explicit(&sh->ready, memory_order_acquire))
        relax(&spins);
}

static void *hcj_moirai_completer(void *arg)
{
    hcj_shared_t *sh = arg;
    hcj_announce(sh);
    for (uint64_t i = 0; i < sh->iters; i++) {
        moirai_handle_t *h = ring_pop(&sh->ring, i);
        if (!h)
            break; /* the joiner could not create more: stop */
        if (moirai_handle_complete(h, hcj_value(i)) != 0)
            atomic_fetch_add_explicit(&sh->completer_errors, 1, memory_order_relaxed);
        moirai_handle_release(h);
    }
    return NULL;
}

static double hcj_moirai(uint64_t iters)
{
    hcj_shared_t *sh = hcj_shared_new(iters);
    if (!sh)
        return -1.0;
    pthread_t thread;
    if (pthread_create(&thread, NULL, hcj_moirai_completer, sh) != 0) {
        free(sh);
        return -1.0;
    }

    hcj_await_completer(sh);
    moirai_handle_t *window[HCJ_WINDOW];
    uint64_t errors = 0, created = 0;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        if (i >= HCJ_WINDOW) {
            void *value = NULL;
            moirai_handle_t *old = window[i % HCJ_WINDOW];
            errors += moirai_handle_join(old, &value) != 0 || value != hcj_value(i - HCJ_WINDOW);
            moirai_handle_release(old);
        }
        moirai_handle_t *h;
        if (moirai_handle_create(&h) != 0) {
            errors++;
            break;
        }
        created++;
        moirai_handle_retain(h); /* the completer's reference */
        window[i % HCJ_WINDOW] = h;
        ring_push(&sh->ring, i, h);
    }
    for (uint64_t i = created > HCJ_WINDOW ? created - HCJ_WINDOW : 0; i < created; i++) {
        void *value = NULL;
        moirai_handle_t *old = window[i % HCJ_WINDOW];
        errors += moirai_handle_join(old, &value) != 0 || value != hcj_value(i);
        moirai_handle_release(old);
    }
    uint64_t t1 = bench_now_ns();

    /* After a failed create the completer waits for handles that will
     * never come: a NULL tells it to stop. */
    if (created < iters)
        ring_push(&sh->ring, created, NULL);
    pthread_join(thread, NULL);
    errors += (uint64_t)atomic_load_explicit(&sh->completer_errors, memory_order_relaxed);
    free(sh);
    return errors ? -1.0 : (double)(t1 - t0) / (double)iters;
}

/* The peer: a one-shot promise as one writes it with pthreads. Reference
 * counted like a handle so that either side may let go first. */
typedef struct promise {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    void *value;
    _Atomic unsigned refs;
} promise_t;

static promise_t *promise_create(void)
{
    promise_t *p = malloc(sizeof(*p));
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->done = false;
    p->value = NULL;
    atomic_init(&p->refs, 1);
    return p;
}

static void promise_retain(promise_t *p)
{
    /* Relaxed: the caller holds a reference, so the promise stays alive. */
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

static void promise_release(promise_t *p)
{
    /* acq_rel: the last owner must see every other owner's use of the
     * promise before destroying it. */
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        free(p);
    }
}

static void promise_complete(promise_t *p, void *value)
{
    pthread_mutex_lock(&p->lock);
    p->value = value;
    p->done = true;
    pthread_mutex_unlock(&p->lock);
    /* Broadcast, as a handle wakes every joiner. The caller's reference
     * keeps the condition variable alive after the unlock. */
    pthread_cond_broadcast(&p->cond);
}

static void *promise_join(promise_t *p)
{
    pthread_mutex_lock(&p->lock);
    while (!p->done)
        pthread_cond_wait(&p->cond, &p->lock);
    void *value = p->value;
    pthread_mutex_unlock(&p->lock);
    return value;
}

static void *hcj_pthread_completer(void *arg)
{
    hcj_shared_t *sh = arg;
    hcj_announce(sh);
    for (uint64_t i = 0; i < sh->iters; i++) {
        promise_t *p = ring_pop(&sh->ring, i);
        if (!p)
            break;
        promise_complete(p, hcj_value(i));
        promise_release(p);
    }
    return NULL;
}

static double hcj_pthread(uint64_t iters)
{
    hcj_shared_t *sh = hcj_shared_new(iters);
    if (!sh)
        return -1.0;
    pthread_t thread;
    if (pthread_create(&thread, NULL, hcj_pthread_completer, sh) != 0) {
        free(sh);
        return -1.0;
    }

    hcj_await_completer(sh);
    promise_t *window[HCJ_WINDOW];
    uint64_t errors = 0, created = 0;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        if (i >= HCJ_WINDOW) {
            promise_t *old = window[i % HCJ_WINDOW];
            errors += promise_join(old) != hcj_value(i - HCJ_WINDOW);
            promise_release(old);
        }
        promise_t *p = promise_create();
        if (!p) {
            errors++;
            break;
        }
        created++;
        promise_retain(p); /* the completer's reference */
        window[i % HCJ_WINDOW] = p;
        ring_push(&sh->ring, i, p);
    }
    for (uint64_t i = created > HCJ_WINDOW ? created - HCJ_WINDOW : 0; i < created; i++) {
        promise_t *old = window[i % HCJ_WINDOW];
        errors += promise_join(old) != hcj_value(i);
        promise_release(old);
    }
    uint64_t t1 = bench_now_ns();

    if (created < iters)
        ring_push(&sh->ring, created, NULL);
    pthread_join(thread, NULL);
    free(sh);
    return errors ? -1.0 : (double)(t1 - t0) / (double)iters;
}

/* ---- park_unpark_pingpong ----
 *
 * The word counts hand-offs: the measuring thread turns 2i into 2i+1 (the
 * ping of round i), the partner turns 2i+1 into 2i+2 (the pong). */

typedef struct pingpong {
    _Alignas(CACHE_LINE) _Atomic uint32_t word;
    _Alignas(CACHE_LINE) _Atomic int ready;
    uint64_t iters;
    pthread_mutex_t lock; /* the pthread peer's */
    pthread_cond_t cond;
    uint32_t plain_word; /* the pthread peer's word, under `lock` */
} pingpong_t;

static pingpong_t *pingpong_new(uint64_t iters)
{
    pingpong_t *pp = aligned_alloc(CACHE_LINE, sizeof(*pp));
    if (!pp)
        return NULL;
    atomic_init(&pp->word, 0);
    atomic_init(&pp->ready, 0);
    pp->iters = iters;
    pthread_mutex_init(&pp->lock, NULL);
    pthread_cond_init(&pp->cond, NULL);
    pp->plain_word = 0;
    return pp;
}

static void pingpong_free(pingpong_t *pp)
{
    pthread_cond_destroy(&pp->cond);
    pthread_mutex_destroy(&pp->lock);
    free(pp);
}

/* Both the Moirai and the pthread partner announce they are running before
 * the measuring thread starts its clock, so thread start-up is not
 * measured. Release/acquire is more than needed; it keeps the hand-shake
 * obviously correct. */
static void pingpong_announce(pingpong_t *pp)
{
    atomic_store_explicit(&pp->ready, 1, memory_order_release);
}

static void pingpong_await_partner(pingpong_t *pp)
{
    unsigned spins = 0;
    while (!atomic_load_explicit(&pp->ready, memory_order_acquire))
        relax(&spins);
}

static void *pp_moirai_partner(void *arg)
{
    pingpong_t *pp = arg;
    pingpong_announce(pp);
    for (uint64_t i = 0; i < pp->iters; i++) {
        uint32_t idle = (uint32_t)(2 * i);
        /* Acquire pairs with the pinger's release store: a real payload
         * written before the ping would be visible here. */
        while (atomic_load_explicit(&pp->word, memory_order_acquire) == idle)
            moirai_park(&pp->word, idle, MOIRAI_DEADLINE_NEVER);
        atomic_store_explicit(&pp->word, idle + 2, memory_order_release);
        moirai_unpark_one(&pp->word);
    }
    return NULL;
}

static double pp_moirai(uint64_t iters)
{
    pingpong_t *pp = pingpong_new(iters);
    if (!pp)
        return -1.0;
    pthread_t thread;
    if (pthread_create(&thread, NULL, pp_moirai_partner, pp) != 0) {
        pingpong_free(pp);
        return -1.0;
    }
    pingpong_await_partner(pp);

    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        uint32_t ping = (uint32_t)(2 * i + 1);
        atomic_store_explicit(&pp->word, ping, memory_order_release);
        moirai_unpark_one(&pp->word);
        while (atomic_load_explicit(&pp->word, memory_order_acquire) == ping)
            moirai_park(&pp->word, ping, MOIRAI_DEADLINE_NEVER);
    }
    uint64_t t1 = bench_now_ns();

    pthread_join(thread, NULL);
    bool ok = atomic_load_explicit(&pp->word, memory_order_relaxed) == (uint32_t)(2 * iters);
    pingpong_free(pp);
    return ok ? (double)(t1 - t0) / (double)iters : -1.0;
}

static void *pp_pthread_partner(void *arg)
{
    pingpong_t *pp = arg;
    pingpong_announce(pp);
    pthread_mutex_lock(&pp->lock);
    for (uint64_t i = 0; i < pp->iters; i++) {
        uint32_t idle = (uint32_t)(2 * i);
        while (pp->plain_word == idle)
            pthread_cond_wait(&pp->cond, &pp->lock);
        pp->plain_word = idle + 2;
        /* Only the other thread can be waiting on the one condvar. */
        pthread_cond_signal(&pp->cond);
    }
    pthread_mutex_unlock(&pp->lock);
    return NULL;
}

static double pp_pthread(uint64_t iters)
{
    pingpong_t *pp = pingpong_new(iters);
    if (!pp)
        return -1.0;
    pthread_t thread;
    if (pthread_create(&thread, NULL, pp_pthread_partner, pp) != 0) {
        pingpong_free(pp);
        return -1.0;
    }
    pingpong_await_partner(pp);

    uint64_t t0 = bench_now_ns();
    pthread_mutex_lock(&pp->lock);
    for (uint64_t i = 0; i < iters; i++) {
        uint32_t ping = (uint32_t)(2 * i + 1);
        pp->plain_word = ping;
        pthread_cond_signal(&pp->cond);
        while (pp->plain_word == ping)
            pthread_cond_wait(&pp->cond, &pp->lock);
    }
    pthread_mutex_unlock(&pp->lock);
    uint64_t t1 = bench_now_ns();

    pthread_join(thread, NULL);
    bool ok = pp->plain_word == (uint32_t)(2 * iters);
    pingpong_free(pp);
    return ok ? (double)(t1 - t0) / (double)iters : -1.0;
}

/* ---- the suite ---- */

static const bench_impl_t hcj_impls[] = {
    {"moirai", hcj_moirai, NULL},
    {"pthread", hcj_pthread, NULL},
};

static const bench_impl_t pp_impls[] = {
    {"moirai", pp_moirai, NULL},
    {"pthread", pp_pthread, NULL},
};

static const bench_case_t core_cases[] = {
    {"core", "handle_complete_join", "ns_per_op", 2000000, 200000, hcj_impls,
     sizeof(hcj_impls) / sizeof(hcj_impls[0])},
    {"core", "park_unpark_pingpong", "ns_per_op", 1000000, 200000, pp_impls,
     sizeof(pp_impls) / sizeof(pp_impls[0])},
};

const bench_case_t *bench_core_cases(size_t *count)
{
    *count = sizeof(core_cases) / sizeof(core_cases[0]);
    return core_cases;
}
