/* Object-pool magazines under contention, at thread exit and through the
 * orphan list: no object is lost and none is handed out twice.
 *
 * The pool's free objects live in per-thread magazines, in the depot's
 * magazine stacks and in the orphan list; a bug in moving them (a
 * magazine dropped when both of a cache's magazines are full, a stale
 * count when a cache is flushed at thread exit, an orphan chain not given
 * back) loses objects or duplicates them without crashing. Each test ends
 * with an exact recount on a fresh thread once every other thread has
 * exited: the pool must hand out exactly its objects, all distinct, before
 * it needs a new one (unbounded pool) or reports -ENOMEM (bounded pool).
 * Objects are stamped with a token while held, so a second hand-out of a
 * held object shows up as a changed stamp, and the pool's statistics
 * must match the operations counted by the test.
 *
 * Worker threads only count violations; the test thread asserts. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <moirai/mem/pool.h>

#include "oom.h"
#include "ptr_distinct.h"
#include "test_scale.h"

enum {
    OBJECT_SIZE = 32, /* four words, all stamped */
    MAG = 4,          /* small magazines: many trips to the depot */
};

static moirai_pool_t *make_pool_sized(size_t size, size_t capacity, size_t magazine)
{
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, size);
    cfg.capacity = capacity;
    cfg.magazine_size = magazine;
    moirai_pool_t *pool = NULL;
    cr_assert_eq(moirai_pool_create(&pool, &cfg), 0);
    return pool;
}

static moirai_pool_stats_t stats_of(moirai_pool_t *pool)
{
    moirai_pool_stats_t s;
    cr_assert_eq(moirai_pool_stats(pool, &s), 0);
    return s;
}

static moirai_pool_t *make_pool_mag(size_t capacity, size_t magazine)
{
    return make_pool_sized(OBJECT_SIZE, capacity, magazine);
}

static moirai_pool_t *make_pool(size_t capacity)
{
    return make_pool_mag(capacity, MAG);
}

/* The identities of a quiescent pool's statistics. */
static void assert_stats_consistent(const moirai_pool_stats_t *s)
{
    cr_assert_eq(s->allocations, s->cache_hits + s->depot_hits + s->fresh);
    cr_assert_eq(s->in_use, s->allocations - s->frees);
    cr_assert_leq(s->in_use, s->objects);
}

/* A held object carries its holder's token in every word. */
/* Word i of the stamp `token` gives an object. */
static uint64_t stamp_word(uint64_t token, size_t i)
{
    return token ^ (i * UINT64_C(0x9e3779b97f4a7c15));
}

/* Writes the stamp into every word of an object of `size` bytes. */
static void stamp_n(void *obj, uint64_t token, size_t size)
{
    uint64_t *w = obj;
    for (size_t i = 0; i < size / sizeof(uint64_t); i++)
        w[i] = stamp_word(token, i);
}

static bool stamped_n(const void *obj, uint64_t token, size_t size)
{
    const uint64_t *w = obj;
    for (size_t i = 0; i < size / sizeof(uint64_t); i++)
        if (w[i] != stamp_word(token, i))
            return false;
    return true;
}

static void stamp(void *obj, uint64_t token)
{
    stamp_n(obj, token, OBJECT_SIZE);
}

static bool stamped(const void *obj, uint64_t token)
{
    return stamped_n(obj, token, OBJECT_SIZE);
}

/* Runs fn(arg, i) on `n` threads (i = 0..n-1) and joins them all. */
typedef struct thread_ctx {
    void *(*fn)(void *arg, int index);
    void *arg;
    int index;
} thread_ctx_t;

static void *thread_tramp(void *p)
{
    thread_ctx_t *c = p;
    return c->fn(c->arg, c->index);
}

static void run_threads(int n, void *(*fn)(void *arg, int index), void *arg)
{
    pthread_t th[16];
    thread_ctx_t ctx[16];
    cr_assert_leq(n, 16);
    for (int i = 0; i < n; i++) {
        ctx[i] = (thread_ctx_t){fn, arg, i};
        cr_assert_eq(pthread_create(&th[i], NULL, thread_tramp, &ctx[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

/* ---- the exact recount ---- */

typedef struct recount {
    moirai_pool_t *pool;
    size_t n;
    void **objs;
    size_t got;   /* allocations that succeeded, of n */
    int fail_rc;  /* what the first failed one returned */
    int extra_rc; /* the allocation after the n */
    uint64_t objects_before, objects_after_n, objects_after_extra;
} recount_t;

static void *recount_thread(void *p)
{
    recount_t *r = p;
    moirai_pool_stats_t s;
    moirai_pool_stats(r->pool, &s);
    r->objects_before = s.objects;
    for (r->got = 0; r->got < r->n; r->got++) {
        int rc = moirai_pool_alloc(r->pool, &r->objs[r->got]);
        if (rc != 0) {
            r->fail_rc = rc;
            break;
        }
    }
    moirai_pool_stats(r->pool, &s);
    r->objects_after_n = s.objects;
    void *extra;
    r->extra_rc = moirai_pool_alloc(r->pool, &extra);
    moirai_pool_stats(r->pool, &s);
    r->objects_after_extra = s.objects;
    if (r->extra_rc == 0)
        moirai_pool_free(r->pool, extra);
    for (size_t i = 0; i < r->got; i++)
        moirai_pool_free(r->pool, r->objs[i]);
    return NULL;
}

/* With no object held and every thread that used the pool gone (or
 * flushed), the free objects are exactly the pool's objects: a fresh
 * thread gets `objects` of them (the capacity, for a bounded pool), all
 * distinct, without a new one being created; the next allocation needs a
 * new object (unbounded) or fails (bounded). */
static void assert_free_set_exact(moirai_pool_t *pool, size_t capacity, const char *when)
{
    moirai_pool_stats_t s = stats_of(pool);
    assert_stats_consistent(&s);
    cr_assert_eq(s.in_use, 0, "%s: %lu objects still in use", when, (unsigned long)s.in_use);
    recount_t r = {.pool = pool, .n = capacity ? capacity : (size_t)s.objects};
    r.objs = malloc((r.n + 1) * sizeof(void *));
    cr_assert_not_null(r.objs);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, recount_thread, &r), 0);
    pthread_join(th, NULL);
    cr_assert_eq(r.got, r.n, "%s: only %zu of the pool's %zu free objects could be had (rc %d)",
                 when, r.got, r.n, r.fail_rc);
    cr_assert(all_distinct(r.objs, r.n), "%s: an object was handed out twice", when);
    if (capacity) {
        cr_assert_eq(r.extra_rc, -ENOMEM,
                     "%s: the bounded pool handed out more than its %zu objects", when, capacity);
    } else {
        cr_assert_eq(r.objects_after_n, r.objects_before,
                     "%s: %lu new objects were needed: free objects were lost", when,
                     (unsigned long)(r.objects_after_n - r.objects_before));
        cr_assert_eq(r.extra_rc, 0);
        cr_assert_gt(r.objects_after_extra, r.objects_after_n,
                     "%s: an object beyond the pool's %zu was free: one was duplicated", when, r.n);
    }
    free(r.objs);
}

/* ---- cross-thread churn ---- */

enum {
    CHURN_MAX_THREADS = 8,
    CHURN_BATCH = 3 * MAG, /* a batch spans magazines */
    MAILBOX = 64,
    TIGHT_CAPACITY = 96, /* below what the threads can hold: allocations fail */
};

typedef struct held {
    void *obj;
    uint64_t token;
} held_t;

/* Batches handed to thread t to release: the cross-thread frees. */
typedef struct mailbox {
    pthread_mutex_t lock;
    int n;
    held_t items[MAILBOX];
} mailbox_t;

typedef struct churn_ctx {
    moirai_pool_t *pool;
    long iters;
    bool bounded;
    int threads;
    mailbox_t box[CHURN_MAX_THREADS];
    pthread_barrier_t done;
    _Atomic long allocs, frees, failures;
    _Atomic long corrupt;   /* a held object's stamp changed: handed out twice */
    _Atomic long bad_codes; /* an allocation failed other than a bounded pool's -ENOMEM */
} churn_ctx_t;

static void release(churn_ctx_t *c, held_t h, long *frees)
{
    if (!stamped(h.obj, h.token))
        atomic_fetch_add(&c->corrupt, 1);
    moirai_pool_free(c->pool, h.obj);
    (*frees)++;
}

static void drain_box(churn_ctx_t *c, int t, long *frees)
{
    held_t got[MAILBOX];
    mailbox_t *b = &c->box[t];
    pthread_mutex_lock(&b->lock);
    int n = b->n;
    memcpy(got, b->items, (size_t)n * sizeof(held_t));
    b->n = 0;
    pthread_mutex_unlock(&b->lock);
    for (int i = 0; i < n; i++)
        release(c, got[i], frees);
}

static void *churn_thread(void *arg, int t)
{
    churn_ctx_t *c = arg;
    unsigned seed = (unsigned)t * 7919u + 1u;
    uint64_t token = (uint64_t)(t + 1) << 56;
    long allocs = 0, frees = 0, failures = 0;
    for (long it = 0; it < c->iters; it++) {
        held_t batch[CHURN_BATCH];
        int n = 1 + (int)(rand_r(&seed) % CHURN_BATCH), got = 0;
        for (; got < n; got++) {
            int rc = moirai_pool_alloc(c->pool, &batch[got].obj);
            if (rc != 0) {
                if (rc == -ENOMEM && c->bounded)
                    failures++;
                else
                    atomic_fetch_add(&c->bad_codes, 1);
                break;
            }
            allocs++;
            batch[got].token = ++token;
            stamp(batch[got].obj, batch[got].token);
        }
        /* Hold the batch while the others allocate, then check it. */
        if (it % 4 == 0)
            sched_yield();
        for (int k = 0; k < got; k++)
            if (!stamped(batch[k].obj, batch[k].token))
                atomic_fetch_add(&c->corrupt, 1);
        /* The next thread releases it, or this one when its box is full. */
        mailbox_t *next = &c->box[(t + 1) % c->threads];
        pthread_mutex_lock(&next->lock);
        int room = MAILBOX - next->n;
        int give = got < room ? got : room;
        memcpy(&next->items[next->n], batch, (size_t)give * sizeof(held_t));
        next->n += give;
        pthread_mutex_unlock(&next->lock);
        for (int k = give; k < got; k++)
            release(c, batch[k], &frees);
        drain_box(c, t, &frees);
        if (it % 64 == 63)
            moirai_pool_flush(c->pool);
    }
    pthread_barrier_wait(&c->done);
    drain_box(c, t, &frees);
    atomic_fetch_add(&c->allocs, allocs);
    atomic_fetch_add(&c->frees, frees);
    atomic_fetch_add(&c->failures, failures);
    return NULL; /* exiting returns the thread's magazines to the depot */
}

static void run_churn(size_t capacity, size_t magazine, int threads)
{
    static churn_ctx_t c;
    memset(&c, 0, sizeof(c));
    c.pool = make_pool_mag(capacity, magazine);
    c.threads = threads;
    c.bounded = capacity != 0;
    c.iters = scaled(20000);
    for (int t = 0; t < c.threads; t++)
        pthread_mutex_init(&c.box[t].lock, NULL);
    pthread_barrier_init(&c.done, NULL, c.threads);
    run_threads(c.threads, churn_thread, &c);

    cr_assert_eq(atomic_load(&c.bad_codes), 0);
    cr_assert_eq(atomic_load(&c.corrupt), 0,
                 "%ld times a held object's stamp changed: it was handed out twice",
                 atomic_load(&c.corrupt));
    moirai_pool_stats_t s = stats_of(c.pool);
    assert_stats_consistent(&s);
    cr_assert_eq(s.allocations, (uint64_t)atomic_load(&c.allocs));
    cr_assert_eq(s.frees, (uint64_t)atomic_load(&c.frees));
    cr_assert_eq(s.failures, (uint64_t)atomic_load(&c.failures));
    cr_assert_eq(s.in_use, 0);
    if (c.bounded)
        cr_assert_leq(s.objects, capacity);
    cr_log_info("churn (capacity %zu): %ld allocations, %ld failures, %lu objects", capacity,
                atomic_load(&c.allocs), atomic_load(&c.failures), (unsigned long)s.objects);
    assert_free_set_exact(c.pool, capacity, "after the churn");
    moirai_pool_destroy(c.pool);
    for (int t = 0; t < c.threads; t++)
        pthread_mutex_destroy(&c.box[t].lock);
    pthread_barrier_destroy(&c.done);
}

Test(pool_magazines, cross_thread_churn_unbounded, .timeout = 60)
{
    run_churn(0, MAG, 4);
}

/* At the capacity, allocations take back other threads' cached objects
 * (moirai__pool_reclaim()) while those threads use their magazines. */
Test(pool_magazines, cross_thread_churn_at_capacity, .timeout = 60)
{
    run_churn(TIGHT_CAPACITY, MAG, 4);
}

/* Magazines of one object and twice as many threads as CPUs: nearly
 * every allocation and release goes through the depot's stacks. */
Test(pool_magazines, depot_churn_single_object_magazines, .timeout = 60)
{
    run_churn(0, 1, CHURN_MAX_THREADS);
}

/* ---- threads that exit holding full magazines ---- */

enum {
    EXIT_THREADS = 4,
    /* Enough released objects for ~150 full magazines per thread: the
     * magazine storage then grows past several segments. */
    EXIT_MANY = 150 * MAG,
    EXIT_KEEP = MAG + 1, /* objects a thread still holds when it exits */
};

typedef struct exit_arg {
    moirai_pool_t *pool;
    int shape;
    void **give; /* objects to release */
    size_t n_give;
    void *kept[EXIT_KEEP]; /* shape 3: allocated and still held at exit */
    int rc;
} exit_arg_t;

/* Leaves the thread's cache in one of four states, then exits:
 *   0: both magazines exactly full (2 x MAG releases into an empty cache);
 *   1: ~150 full magazines pushed to the depot, then both full again;
 *   2: as 1, plus a loaded magazine holding 2 objects;
 *   3: allocated 3 x MAG + 1 itself, released 2 x MAG, still holds the rest. */
static void *exit_thread(void *p)
{
    exit_arg_t *a = p;
    for (size_t i = 0; i < a->n_give; i++)
        moirai_pool_free(a->pool, a->give[i]);
    if (a->shape == 3) {
        void *mine[3 * MAG + 1];
        for (int i = 0; i < 3 * MAG + 1; i++)
            if ((a->rc = moirai_pool_alloc(a->pool, &mine[i])) != 0)
                return NULL;
        for (int i = 0; i < 2 * MAG; i++)
            moirai_pool_free(a->pool, mine[i]);
        memcpy(a->kept, &mine[2 * MAG], sizeof(a->kept));
    }
    return NULL; /* the exit returns the cache's magazines to the depot */
}

static size_t exit_give_count(int shape)
{
    return shape == 0 ? 2 * MAG : shape == 1 ? EXIT_MANY : shape == 2 ? EXIT_MANY + 2 : 0;
}

static void exit_rounds(size_t capacity)
{
    moirai_pool_t *pool = make_pool(capacity);
    size_t total = 0;
    for (int s = 0; s < EXIT_THREADS; s++)
        total += exit_give_count(s);
    void **objs = malloc(total * sizeof(void *));
    void **copy = malloc(total * sizeof(void *));
    cr_assert(objs != NULL && copy != NULL);
    long rounds = scaled(12);
    if (rounds < 3)
        rounds = 3;
    for (long round = 0; round < rounds; round++) {
        for (size_t i = 0; i < total; i++) {
            cr_assert_eq(moirai_pool_alloc(pool, &objs[i]), 0);
            stamp(objs[i], i);
        }
        memcpy(copy, objs, total * sizeof(void *));
        cr_assert(all_distinct(copy, total), "round %ld: an object was handed out twice", round);
        /* This thread keeps nothing cached: every free object is in the
         * depot or in the exiting threads' caches. */
        moirai_pool_flush(pool);
        exit_arg_t args[EXIT_THREADS];
        pthread_t th[EXIT_THREADS];
        void **give = objs;
        for (int t = 0; t < EXIT_THREADS; t++) {
            /* Each thread takes each shape in turn over the rounds. */
            int shape = (int)((t + round) % EXIT_THREADS);
            args[t] = (exit_arg_t){
                .pool = pool, .shape = shape, .give = give, .n_give = exit_give_count(shape)};
            give += args[t].n_give;
        }
        for (int t = 0; t < EXIT_THREADS; t++)
            cr_assert_eq(pthread_create(&th[t], NULL, exit_thread, &args[t]), 0);
        for (int t = 0; t < EXIT_THREADS; t++)
            pthread_join(th[t], NULL);
        moirai_pool_stats_t s = stats_of(pool);
        assert_stats_consistent(&s);
        cr_assert_eq(s.in_use, EXIT_KEEP, "round %ld: %lu objects in use, %d held", round,
                     (unsigned long)s.in_use, EXIT_KEEP);
        for (int t = 0; t < EXIT_THREADS; t++) {
            cr_assert_eq(args[t].rc, 0);
            if (args[t].shape == 3)
                for (int i = 0; i < EXIT_KEEP; i++)
                    moirai_pool_free(pool, args[t].kept[i]);
        }
        moirai_pool_flush(pool);
        assert_free_set_exact(pool, capacity, "after the threads exited");
    }
    free(objs);
    free(copy);
    moirai_pool_destroy(pool);
}

Test(pool_magazines, exiting_threads_return_full_magazines, .timeout = 60)
{
    exit_rounds(0);
}

Test(pool_magazines, exiting_threads_return_full_magazines_bounded, .timeout = 60)
{
    /* Exactly the objects the round needs: any loss fails an allocation. */
    exit_rounds(2 * MAG + EXIT_MANY + EXIT_MANY + 2 + EXIT_KEEP + 2 * MAG);
}

/* ---- orphans: releases without a magazine ----
 *
 * A release that cannot get a magazine (its thread's cache cannot be
 * created, or no magazine can be allocated) links the object into the
 * orphan list through a word inside the object itself: the second word,
 * or the first and only one when the object fills its 8-byte stride. The
 * objects are carved side by side; every other one is orphaned while its
 * neighbours stay held and stamped, so a link written one word too far
 * shows up in a neighbour. Several threads then take the orphans back at
 * once: a refill takes at most a magazine of them and gives the rest of
 * the chain back, racing the others' takes. */

enum {
    /* Magazines whose rounds end exactly at the end of their storage slot
     * (a 16-byte header and 6 pointers are 64 bytes): writing one round
     * too many would land in the next magazine, not in padding. */
    ORPHAN_MAG = 6,
    ORPHANS = 12 * ORPHAN_MAG + 2, /* more than one refill takes: the rest is given back */
    ORPHAN_ALL = 2 * ORPHANS,      /* the orphans and their held neighbours */
    TAKERS = 3,
};

typedef struct orphan_ctx {
    moirai_pool_t *pool;
    size_t size;
    void *objs[ORPHAN_ALL]; /* in carving order: even ones are orphaned */
    void *taken[ORPHANS];
    _Atomic long ticket;
    pthread_barrier_t all_taken;
    _Atomic long failures; /* allocations that failed with objects still free */
    _Atomic long corrupt;  /* a held object's stamp changed */
    int extra_rc;
} orphan_ctx_t;

/* Releases every even object on a thread whose cache cannot be created
 * (its first allocation, the thread's cache table, fails each time): each
 * goes to the orphan list. */
static void *orphan_maker(void *p)
{
    orphan_ctx_t *c = p;
    for (int i = 0; i < ORPHAN_ALL; i += 2) {
        moirai_test_oom_fail_at(0);
        moirai_pool_free(c->pool, c->objs[i]);
    }
    moirai_test_oom_fail_at(-1);
    return NULL;
}

/* Takes the orphans back, concurrently: each ticket is one allocation
 * that must succeed, since fewer than the capacity are in use. */
static void *orphan_taker(void *arg, int t)
{
    orphan_ctx_t *c = arg;
    long i;
    while ((i = atomic_fetch_add(&c->ticket, 1)) < ORPHANS) {
        if (moirai_pool_alloc(c->pool, &c->taken[i]) != 0) {
            atomic_fetch_add(&c->failures, 1);
            c->taken[i] = NULL;
        } else {
            stamp_n(c->taken[i], UINT64_C(1) << 40 | (uint64_t)i, c->size);
        }
    }
    pthread_barrier_wait(&c->all_taken);
    if (t == 0) {
        /* Every object is held: the capacity is reached. */
        void *extra;
        c->extra_rc = moirai_pool_alloc(c->pool, &extra);
        if (c->extra_rc == 0)
            moirai_pool_free(c->pool, extra);
    }
    pthread_barrier_wait(&c->all_taken);
    /* Release another thread's share. */
    for (long k = (t + 1) % TAKERS; k < ORPHANS; k += TAKERS)
        if (c->taken[k] != NULL) {
            if (!stamped_n(c->taken[k], UINT64_C(1) << 40 | (uint64_t)k, c->size))
                atomic_fetch_add(&c->corrupt, 1);
            moirai_pool_free(c->pool, c->taken[k]);
        }
    return NULL;
}

static void orphan_rounds(size_t size)
{
    static orphan_ctx_t c;
    long rounds = scaled(50);
    if (rounds < 5)
        rounds = 5;
    moirai_test_oom_install();
    for (long round = 0; round < rounds; round++) {
        memset(&c, 0, sizeof(c));
        c.size = size;
        /* Bounded at exactly the objects used: a lost one fails an
         * allocation, a duplicated one lets the extra allocation succeed. */
        c.pool = make_pool_sized(size, ORPHAN_ALL, ORPHAN_MAG);
        for (int i = 0; i < ORPHAN_ALL; i++)
            cr_assert_eq(moirai_pool_alloc(c.pool, &c.objs[i]), 0);
        /* In address order, so that even and odd ones are neighbours. */
        qsort(c.objs, ORPHAN_ALL, sizeof(void *), ptr_distinct_cmp);
        for (int i = 0; i < ORPHAN_ALL; i++)
            stamp_n(c.objs[i], (uint64_t)i, size);
        moirai_pool_flush(c.pool);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, orphan_maker, &c), 0);
        pthread_join(th, NULL);
        moirai_pool_stats_t s = stats_of(c.pool);
        assert_stats_consistent(&s);
        cr_assert_eq(s.frees, ORPHANS, "cacheless releases are counted");
        cr_assert_eq(s.in_use, ORPHANS);
        for (int i = 1; i < ORPHAN_ALL; i += 2)
            cr_assert(stamped_n(c.objs[i], (uint64_t)i, size),
                      "round %ld: orphaning a neighbour overwrote held object %d (size %zu)", round,
                      i, size);

        pthread_barrier_init(&c.all_taken, NULL, TAKERS);
        run_threads(TAKERS, orphan_taker, &c);
        pthread_barrier_destroy(&c.all_taken);
        cr_assert_eq(atomic_load(&c.failures), 0, "round %ld: %ld orphans could not be had back",
                     round, atomic_load(&c.failures));
        cr_assert_eq(atomic_load(&c.corrupt), 0, "round %ld: a taken orphan changed while held",
                     round);
        void *taken[ORPHANS];
        memcpy(taken, c.taken, sizeof(taken));
        cr_assert(all_distinct(taken, ORPHANS), "round %ld: an orphan was handed out twice", round);
        cr_assert_eq(c.extra_rc, -ENOMEM, "round %ld: more objects than the %d orphans were free",
                     round, ORPHANS);
        for (int i = 1; i < ORPHAN_ALL; i += 2) {
            cr_assert(stamped_n(c.objs[i], (uint64_t)i, size),
                      "round %ld: held object %d changed while its neighbours moved", round, i);
            moirai_pool_free(c.pool, c.objs[i]);
        }
        moirai_pool_flush(c.pool);
        s = stats_of(c.pool);
        assert_stats_consistent(&s);
        cr_assert_eq(s.allocations, ORPHAN_ALL + ORPHANS);
        cr_assert_eq(s.failures, 1);
        cr_assert_eq(s.objects, ORPHAN_ALL);
        assert_free_set_exact(c.pool, ORPHAN_ALL, "after the orphans were taken back");
        moirai_pool_destroy(c.pool);
    }
    moirai_test_oom_uninstall();
}

Test(pool_magazines, orphans_are_all_taken_back_concurrently, .timeout = 60)
{
    orphan_rounds(OBJECT_SIZE);
}

/* 8-byte objects: the orphan link is the object's only word. */
Test(pool_magazines, orphans_filling_their_stride, .timeout = 60)
{
    orphan_rounds(8);
}

/* ---- half a magazine moved between a cache's two magazines ---- */

/* One thread's random walk of allocations and releases (at most
 * `max_held` held): with magazines this small the loaded magazine runs
 * empty and full again and again, and each time up to half a magazine
 * moves between the cache's two magazines. Checks: no object handed out
 * twice (stamps), exact statistics (one thread: the peak too), new
 * objects made only when no free one existed, and every free object
 * recovered at the end. */
static void half_magazine_walk(size_t capacity, size_t magazine, int max_held)
{
    moirai_pool_t *pool = make_pool_mag(capacity, magazine);
    held_t held[64];
    int n = 0, peak = 0;
    uint64_t allocs = 0, frees = 0, token = 1;
    uint32_t rng = 12345u;
    for (int i = 0; i < 20000; i++) {
        rng = rng * 1103515245u + 12345u;
        if (n == 0 || (n < max_held && ((rng >> 16) & 1))) {
            void *p;
            cr_assert_eq(moirai_pool_alloc(pool, &p), 0);
            stamp(p, token);
            held[n++] = (held_t){p, token++};
            allocs++;
            if (n > peak)
                peak = n;
        } else {
            int k = (int)((rng >> 8) % (uint32_t)n);
            cr_assert(stamped(held[k].obj, held[k].token), "an object was handed out twice");
            moirai_pool_free(pool, held[k].obj);
            held[k] = held[--n];
            frees++;
        }
    }
    moirai_pool_stats_t s = stats_of(pool);
    assert_stats_consistent(&s);
    cr_assert_eq(s.allocations, allocs);
    cr_assert_eq(s.frees, frees);
    cr_assert_eq(s.in_use, (uint64_t)n);
    cr_assert_eq(s.high_water, (uint64_t)peak, "exact with one thread");
    /* New objects are made only when no free one is left, a magazine at
     * a time. */
    cr_assert_leq(s.objects, (uint64_t)peak + magazine,
                  "objects were made while free ones existed");
    for (int k = 0; k < n; k++) {
        cr_assert(stamped(held[k].obj, held[k].token), "an object was handed out twice");
        moirai_pool_free(pool, held[k].obj);
    }
    /* The recount runs on another thread: hand this one's cache back. */
    moirai_pool_flush(pool);
    assert_free_set_exact(pool, capacity, "after the walk");
    moirai_pool_destroy(pool);
}

Test(pool_magazines, half_magazines_move_between_a_caches_magazines, .timeout = 60)
{
    half_magazine_walk(0, 1, 40);
    half_magazine_walk(0, 2, 40);
    half_magazine_walk(0, 3, 40);
    half_magazine_walk(0, 16, 60);
    half_magazine_walk(64, 16, 60);
}
