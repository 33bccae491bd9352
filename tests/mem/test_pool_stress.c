/* Object pool stress: threads allocate, hand objects to each other, free
 * them on other threads and allocate again, 10^7 allocations in all
 * (divided by MOIRAI_TEST_SCALE under sanitizers). Exact invariants:
 *   - no object is handed out twice while live: every object carries its
 *     state and owner, checked on allocation and on release;
 *   - none is lost: allocations == releases and in_use returns to 0, and
 *     the statistics equal the threads' own counts;
 *   - a capacity bound holds at every moment under contention. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <moirai/core/error.h>
#include <moirai/mem/pool.h>

#define LIVE_MAGIC UINT64_C(0x4c4956454f424a31) /* held by a thread */
#define FREE_MAGIC UINT64_C(0x465245454f424a31) /* released by the test */

enum { MAX_THREADS = 8, HELD = 256, INBOX = 1024 };

typedef struct object {
    uint64_t state; /* LIVE_MAGIC while held, FREE_MAGIC before release */
    uint64_t owner; /* thread index holding it */
    uint64_t serial;
    uint64_t pad;
} object_t;

typedef struct inbox {
    pthread_mutex_t lock;
    object_t *items[INBOX];
    int count;
} inbox_t;

typedef struct stress {
    moirai_pool_t *pool;
    int threads;
    uint64_t allocs_per_thread;   /* successful allocations each thread makes */
    uint64_t attempts_per_thread; /* bounded pools: attempts instead */
    size_t capacity;
    atomic_long live; /* incremented after an allocation, decremented before a release */
    atomic_long max_live;
    atomic_int errors;
    inbox_t inbox[MAX_THREADS];
    pthread_barrier_t start;
} stress_t;

typedef struct worker {
    stress_t *s;
    int index;
    uint64_t allocs, frees, failures;
    object_t *held[HELD];
    int nheld;
    uint32_t rng;
} worker_t;

static long scale(void)
{
    const char *v = getenv("MOIRAI_TEST_SCALE");
    long n = v ? atol(v) : 1;
    return n > 0 ? n : 1;
}

static uint32_t next_rand(worker_t *w)
{
    uint32_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return w->rng = x;
}

static void fail(worker_t *w)
{
    atomic_fetch_add(&w->s->errors, 1);
}

static void release(worker_t *w, object_t *o)
{
    if (o->state != LIVE_MAGIC || o->owner != (uint64_t)w->index)
        fail(w); /* someone else was handed this object while we held it */
    o->state = FREE_MAGIC;
    atomic_fetch_sub_explicit(&w->s->live, 1, memory_order_relaxed);
    moirai_pool_free(w->s->pool, o);
    w->frees++;
}

static void drain_inbox(worker_t *w)
{
    inbox_t *in = &w->s->inbox[w->index];
    object_t *got[INBOX];
    pthread_mutex_lock(&in->lock);
    int n = in->count;
    memcpy(got, in->items, (size_t)n * sizeof(got[0]));
    in->count = 0;
    pthread_mutex_unlock(&in->lock);
    for (int i = 0; i < n; i++)
        release(w, got[i]);
}

/* Hands `o` to thread `to`; returns false when its inbox is full. */
static bool give(worker_t *w, object_t *o, int to)
{
    inbox_t *in = &w->s->inbox[to];
    bool ok = false;
    pthread_mutex_lock(&in->lock);
    if (in->count < INBOX) {
        o->owner = (uint64_t)to; /* written under the lock: the receiver sees it */
        in->items[in->count++] = o;
        ok = true;
    }
    pthread_mutex_unlock(&in->lock);
    return ok;
}

static bool try_alloc(worker_t *w)
{
    void *p;
    int rc = moirai_pool_alloc(w->s->pool, &p);
    if (rc != 0) {
        if (rc != -ENOMEM || !w->s->capacity)
            fail(w);
        w->failures++;
        return false;
    }
    long live = atomic_fetch_add_explicit(&w->s->live, 1, memory_order_relaxed) + 1;
    long max = atomic_load_explicit(&w->s->max_live, memory_order_relaxed);
    while (live > max && !atomic_compare_exchange_weak(&w->s->max_live, &max, live)) {
    }
    object_t *o = p;
    if (o->state == LIVE_MAGIC)
        fail(w); /* handed out while another thread holds it */
    o->state = LIVE_MAGIC;
    o->owner = (uint64_t)w->index;
    o->serial = w->allocs;
    w->held[w->nheld++] = o;
    w->allocs++;
    return true;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    stress_t *s = w->s;
    pthread_barrier_wait(&s->start);
    uint64_t attempts = 0;
    for (;;) {
        if (s->capacity ? attempts >= s->attempts_per_thread : w->allocs >= s->allocs_per_thread)
            break;
        uint32_t r = next_rand(w);
        if (w->nheld < HELD && (r & 3) != 0) {
            attempts++;
            if (!try_alloc(w)) {
                /* Exhausted: give back what we hold and cache. */
                while (w->nheld)
                    release(w, w->held[--w->nheld]);
                drain_inbox(w);
                moirai_pool_flush(s->pool);
            }
            continue;
        }
        if (w->nheld == 0) {
            drain_inbox(w);
            continue;
        }
        /* Release one held object: here (1/4) or on another thread (3/4). */
        int i = (int)((r >> 8) % (uint32_t)w->nheld);
        object_t *o = w->held[i];
        w->held[i] = w->held[--w->nheld];
        int to = (int)((r >> 20) % (uint32_t)s->threads);
        if ((r & 0xc0) == 0 || to == w->index || !give(w, o, to))
            release(w, o);
        if ((r & 0xf00) == 0)
            drain_inbox(w);
    }
    while (w->nheld)
        release(w, w->held[--w->nheld]);
    /* Objects may still arrive from threads that are not done yet. */
    pthread_barrier_wait(&s->start);
    drain_inbox(w);
    return NULL;
}

static void run_stress(int threads, uint64_t total, size_t magazine, size_t capacity)
{
    stress_t *s = calloc(1, sizeof(*s));
    cr_assert_not_null(s);
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, sizeof(object_t));
    cfg.magazine_size = magazine;
    cfg.capacity = capacity;
    cfg.chunk_objects = 128; /* many chunks */
    cr_assert_eq(moirai_pool_create(&s->pool, &cfg), 0);
    s->threads = threads;
    s->capacity = capacity;
    s->allocs_per_thread = total / (uint64_t)threads;
    s->attempts_per_thread = total / (uint64_t)threads;
    for (int t = 0; t < threads; t++)
        pthread_mutex_init(&s->inbox[t].lock, NULL);
    pthread_barrier_init(&s->start, NULL, (unsigned)threads);
    worker_t *w = calloc((size_t)threads, sizeof(*w));
    cr_assert_not_null(w);
    pthread_t th[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        w[t].s = s;
        w[t].index = t;
        w[t].rng = 0x9e3779b9u * (uint32_t)(t + 1);
        cr_assert_eq(pthread_create(&th[t], NULL, worker_main, &w[t]), 0);
    }
    uint64_t allocs = 0, frees = 0, failures = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        allocs += w[t].allocs;
        frees += w[t].frees;
        failures += w[t].failures;
    }
    cr_assert_eq(atomic_load(&s->errors), 0, "objects handed out twice or with a wrong owner");
    cr_assert_eq(allocs, frees, "every allocated object was released once");
    cr_assert_eq(atomic_load(&s->live), 0);
    if (!capacity)
        cr_assert_eq(allocs, s->allocs_per_thread * (uint64_t)threads);
    else
        cr_assert_leq(atomic_load(&s->max_live), (long)capacity, "the capacity was exceeded");

    moirai_pool_stats_t st;
    cr_assert_eq(moirai_pool_stats(s->pool, &st), 0);
    cr_assert_eq(st.allocations, allocs);
    cr_assert_eq(st.frees, frees);
    cr_assert_eq(st.failures, failures);
    cr_assert_eq(st.in_use, 0, "in_use returns to zero");
    cr_assert_eq(st.allocations, st.cache_hits + st.depot_hits + st.fresh);
    cr_assert_geq(st.high_water, (uint64_t)atomic_load(&s->max_live));
    cr_assert_leq(st.high_water, st.objects);
    if (capacity)
        cr_assert_leq(st.objects, capacity);
    moirai_pool_destroy(s->pool);
    for (int t = 0; t < threads; t++)
        pthread_mutex_destroy(&s->inbox[t].lock);
    pthread_barrier_destroy(&s->start);
    free(w);
    free(s);
}

#define TOTAL ((uint64_t)10000000)

Test(pool_stress, ten_million_cross_thread, .timeout = 600)
{
    run_stress(4, TOTAL / (uint64_t)scale(), 0, 0);
}

Test(pool_stress, small_magazines_hammer_the_depot, .timeout = 300)
{
    run_stress(4, TOTAL / 10 / (uint64_t)scale(), 1, 0);
}

Test(pool_stress, capacity_bound_under_contention, .timeout = 300)
{
    /* Far fewer objects than the threads would like to hold. */
    run_stress(4, TOTAL / 10 / (uint64_t)scale(), 8, 300);
}
