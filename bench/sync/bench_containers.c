/* moirai-bench, suite "sync": the lock-free containers against Concurrency
 * Kit, liburcu and a mutex.
 *
 * spsc_ring_1p1c
 *   One producer thread pushes `iters` items through a 1024-slot ring to
 *   one consumer thread, one item per call. Peer: ck_ring SPSC ("ck").
 *   Placement and timing differ from the other cases, for a stable ratio:
 *   - The producer is bound to the lowest CPU of the process's affinity
 *     mask and the consumer to the next one, in every round of both
 *     implementations. Left to the scheduler, the two threads sometimes
 *     ran on one CPU and sometimes on two, and the two regimes cost
 *     different things (sharing a CPU, ck_ring, inlined into the loop,
 *     took 3.6-7 ns per item; on two CPUs 17-25 ns), so a round's figure
 *     depended on where its threads landed and the ratio moved between
 *     0.3 and 2.9 from run to run. With a single CPU allowed the threads
 *     are not bound and share it: `taskset -c 0 moirai-bench --case
 *     spsc_ring_1p1c` measures that regime (docs/sync.md has figures).
 *   - Producer and consumer move their items in consecutive parts of
 *     SPSC_PART_ITEMS (32768) items and time each part, in wall-clock
 *     time and in the CPU time the thread itself got. The round's figure
 *     is the consumer's wall-clock time per item over the parts in which
 *     both threads had their CPU for at least 90% of the part. A part in
 *     which another process (this machine is shared) took a thread's CPU
 *     is left out, where the whole run's time would carry however many
 *     preemptions that round happened to get (such a part often costs
 *     5-50x a clean one). If no part was clean, or the run has fewer
 *     than two parts (such as the runner's calibration probe), the whole
 *     run's time per item is the figure.
 *   So the figure is the cost per item while producer and consumer both
 *   have a CPU of their own. The sum check covers the whole run as for
 *   every case (each part of the producer pushes items 0 .. n-1 of
 *   producer 0 again, so the expected sum is taken part by part).
 * mpmc_ring_1p1c, mpmc_ring_2p2c
 *   The same through a 1024-slot MPMC ring with one producer and one
 *   consumer, or two of each (each producer pushes iters / 2 items, each
 *   consumer pops iters / 2). Moirai uses the try_ calls. Peers: ck_ring
 *   MPMC ("ck"), and a pthread mutex around an array ring ("mutex").
 * queue_unbounded_2p2c
 *   Two producers and two consumers move `iters` items through an
 *   unbounded queue of `void *`. Peers: liburcu's wfcqueue ("urcu"; a
 *   malloc'ed node per item, dequeue with cds_wfcq_dequeue_blocking(),
 *   which takes the queue's mutex) and a pthread mutex around a linked
 *   list ("mutex"; a malloc'ed node per item).
 * stack_push_pop_2t
 *   Two threads each push an item and pop an item, iters / 2 times, on an
 *   intrusive stack. Moirai: moirai_node_stack_t, following its reuse rule
 *   the way a program would: each thread pushes nodes from a pool of 4096
 *   and collects the nodes it pops; when the pool is empty it calls
 *   moirai_rcu_synchronize() once and reuses the collected batch (that
 *   call is inside the measured time). Peers: ck_stack's MPMC push/pop
 *   ("ck"; double-width CAS with a generation counter, so each thread can
 *   reuse a popped entry at once) and liburcu's lfstack ("urcu";
 *   cds_lfs_push and cds_lfs_pop_blocking, whose pops take the stack's
 *   mutex, which is what makes immediate reuse safe without RCU). For
 *   reference, "moirai_items" runs the same loop on moirai_stack_t, the
 *   stack of `void *` items that allocates and recycles its own nodes.
 *
 * Metric: wall-clock ns per item moved (per push + pop pair for the
 * stack), all threads together: (latest end - earliest start) / iters,
 * except for spsc_ring_1p1c (the parts in which both threads ran, above).
 * Threads meet at a start line before timing; creating them and the
 * containers is outside the measured section. Waiting is the same for
 * every implementation: a failed try is followed by a pause, and every
 * 64th consecutive failure by sched_yield() (there are more threads than
 * CPUs in the 2p2c cases). Every run checks its work: the sum of all
 * popped values must equal the sum of all pushed values, or the run fails.
 *
 * The liburcu peers are compiled with _LGPL_SOURCE, i.e. with liburcu's
 * inline fast paths: the strongest form of the peer (moirai-bench is a
 * development tool and is not distributed). */
#define _LGPL_SOURCE

#include <assert.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <urcu/lfstack.h>
#include <urcu/wfcqueue.h>

#include <moirai/sync/queue.h>
#include <moirai/sync/rcu.h>
#include <moirai/sync/ring_mpmc.h>
#include <moirai/sync/ring_spsc.h>
#include <moirai/sync/stack.h>

#ifdef MOIRAI_BENCH_HAVE_CK
#include <ck_ring.h>
#include <ck_stack.h>
#endif

#include <moirai/core/spin.h>

#include "../bench.h"

#define CACHE_LINE  128
#define RING_SLOTS  1024
#define MAX_THREADS 4
/* Items per timed part in spsc_ring_1p1c: many times the ring, so that
 * how far the producer runs ahead of the consumer (at most a ring's
 * worth) hardly shows in a part's time, and few enough that a part takes
 * well under a millisecond (0.2-0.8 ms at 6-25 ns per item), shorter than
 * the time slice of a process that preempts one of the threads, so that
 * most parts escape a preemption. */
#define SPSC_PART_ITEMS (32 * RING_SLOTS)

/* After a failed try: pause, and yield the CPU every 64th time in a row. */
static inline void backoff(unsigned *fails)
{
    if (++*fails % 64 == 0)
        sched_yield();
    else
        moirai_cpu_relax();
}

/* The value of producer p's i-th item: never NULL, distinct per item. */
static inline uintptr_t item_value(unsigned p, uint64_t i)
{
    return (((uintptr_t)p << 40) | (uintptr_t)i) + 1;
}

/* ---- generic producer / consumer harness ---- */

/* One implementation: a container and the loops that drive it. produce()
 * pushes producer p's items 0 .. n-1; consume() pops n items and returns
 * the sum of their values; pushpop() (stack) pushes and pops n times and
 * returns the sum of what it popped. create() returns NULL on failure. */
typedef struct impl_ops {
    void *(*create)(void);
    void (*destroy)(void *c);
    void (*produce)(void *c, unsigned p, uint64_t n);
    uint64_t (*consume)(void *c, uint64_t n);
    uint64_t (*pushpop)(void *c, unsigned t, uint64_t n);
} impl_ops_t;

/* One timed part of a thread's items: wall-clock time, and the CPU time
 * the thread itself got meanwhile. */
typedef struct part_time {
    uint64_t wall, cpu;
} part_time_t;

typedef struct run_ctx {
    const impl_ops_t *ops;
    void *c;
    unsigned threads;
    alignas(CACHE_LINE) _Atomic unsigned ready;
    _Atomic bool abort; /* a thread could not be created: nobody works */
    alignas(CACHE_LINE) _Atomic uint64_t popped_sum;
    uint64_t start[MAX_THREADS], end[MAX_THREADS];
    uint64_t count[MAX_THREADS];
    int role[MAX_THREADS]; /* 0 producer, 1 consumer, 2 push-pop */
    unsigned index[MAX_THREADS];
    /* With parts > 1 (one producer, one consumer), each of the two moves
     * its items in `parts` near-equal parts and times each one in
     * part[role][k]. */
    uint64_t parts;
    part_time_t *part[2];
} run_ctx_t;

typedef struct run_arg {
    run_ctx_t *r;
    unsigned id;
} run_arg_t;

/* The k-th of `parts` near-equal parts of `count` items. */
static inline uint64_t part_size(uint64_t count, uint64_t parts, uint64_t k)
{
    return count / parts + (k < count % parts);
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* Producer or consumer `id` moves its items part by part, timing each
 * part; returns the sum of the values popped (0 for the producer). Each
 * part of the producer pushes the values of items 0 .. n-1 again. */
static uint64_t run_parts(run_ctx_t *r, unsigned id)
{
    part_time_t *pt = r->part[r->role[id]];
    uint64_t sum = 0;
    for (uint64_t k = 0; k < r->parts; k++) {
        uint64_t n = part_size(r->count[id], r->parts, k);
        uint64_t wall = bench_now_ns(), cpu = thread_cpu_ns();
        if (r->role[id] == 0)
            r->ops->produce(r->c, r->index[id], n);
        else
            sum += r->ops->consume(r->c, n);
        pt[k] = (part_time_t){bench_now_ns() - wall, thread_cpu_ns() - cpu};
    }
    return sum;
}

/* Whether a thread had its CPU for the whole of a part: it was not
 * preempted or descheduled for more than a tenth of it. */
static inline bool part_on_cpu(part_time_t t)
{
    return t.cpu * 10 >= t.wall * 9;
}

static void *run_thread(void *p)
{
    run_arg_t *a = p;
    run_ctx_t *r = a->r;
    unsigned id = a->id;
    atomic_fetch_add_explicit(&r->ready, 1, memory_order_acq_rel);
    unsigned spins = 0;
    while (atomic_load_explicit(&r->ready, memory_order_acquire) < r->threads) {
        if (atomic_load_explicit(&r->abort, memory_order_acquire))
            return NULL;
        backoff(&spins);
    }
    r->start[id] = bench_now_ns();
    uint64_t sum = 0;
    switch (r->parts > 1 ? -1 : r->role[id]) {
    case -1:
        sum = run_parts(r, id);
        break;
    case 0:
        r->ops->produce(r->c, r->index[id], r->count[id]);
        break;
    case 1:
        sum = r->ops->consume(r->c, r->count[id]);
        break;
    default:
        sum = r->ops->pushpop(r->c, r->index[id], r->count[id]);
        break;
    }
    r->end[id] = bench_now_ns();
    atomic_fetch_add_explicit(&r->popped_sum, sum, memory_order_relaxed);
    return NULL;
}

/* Fills cpus[0 .. threads) with the lowest CPUs of the calling thread's
 * affinity mask, one per thread. Returns false when the mask holds fewer
 * than `threads` CPUs (the threads then run where the scheduler puts them). */
static bool pick_cpus(unsigned threads, int *cpus)
{
    cpu_set_t allowed;
    if (pthread_getaffinity_np(pthread_self(), sizeof(allowed), &allowed) != 0)
        return false;
    unsigned k = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && k < threads; cpu++)
        if (CPU_ISSET(cpu, &allowed))
            cpus[k++] = cpu;
    return k == threads;
}

/* Starts run_thread(arg) in `*t`, bound to `cpu` unless it is negative. */
static int start_thread(pthread_t *t, int cpu, run_arg_t *arg)
{
    if (cpu < 0)
        return pthread_create(t, NULL, run_thread, arg);
    pthread_attr_t attr;
    int err = pthread_attr_init(&attr);
    if (err != 0)
        return err;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    err = pthread_attr_setaffinity_np(&attr, sizeof(one), &one);
    if (err == 0)
        err = pthread_create(t, &attr, run_thread, arg);
    pthread_attr_destroy(&attr);
    return err;
}

/* Runs `producers` x `consumers` (or, with producers == 0, `consumers`
 * push-pop threads) over `iters` items; returns ns per item or -1.
 * With `pin`, each thread is bound to a CPU of its own (producers first,
 * on the lowest CPUs of the affinity mask) when the mask has enough of
 * them. With `part_items` not 0 (one producer and one consumer only) and
 * at least two parts' worth of items, both threads move their items in
 * parts of about `part_items`, and the result is the consumer's time per
 * item over the parts in which both threads had their CPU throughout
 * (the whole run's time per item if there was no such part). */
static double run_placed(const impl_ops_t *ops, unsigned producers, unsigned consumers,
                         uint64_t iters, bool pin, uint64_t part_items)
{
    run_ctx_t *r = aligned_alloc(CACHE_LINE, sizeof(*r));
    if (r == NULL)
        return -1;
    *r = (run_ctx_t){.ops = ops, .threads = producers + consumers};
    if (iters < r->threads)
        iters = r->threads;
    assert(part_items == 0 || (producers == 1 && consumers == 1));
    r->parts = part_items ? iters / part_items : 0;
    if (r->parts > 1) {
        r->part[0] = malloc(2 * r->parts * sizeof(part_time_t));
        if (r->part[0] == NULL) {
            free(r);
            return -1;
        }
        r->part[1] = r->part[0] + r->parts;
    }
    r->c = ops->create();
    if (r->c == NULL) {
        free(r->part[0]);
        free(r);
        return -1;
    }
    uint64_t expect = 0;
    unsigned id = 0;
    for (unsigned p = 0; p < producers; p++, id++) {
        r->role[id] = 0;
        r->index[id] = p;
        r->count[id] = iters / producers + (p < iters % producers);
        for (uint64_t k = 0; k < (r->parts > 1 ? r->parts : 1); k++) {
            uint64_t n = r->parts > 1 ? part_size(r->count[id], r->parts, k) : r->count[id];
            for (uint64_t i = 0; i < n; i++)
                expect += item_value(p, i);
        }
    }
    for (unsigned k = 0; k < consumers; k++, id++) {
        r->role[id] = producers == 0 ? 2 : 1;
        r->index[id] = k;
        r->count[id] = iters / consumers + (k < iters % consumers);
        if (producers == 0)
            for (uint64_t i = 0; i < r->count[id]; i++)
                expect += item_value(k, i);
    }
    int cpus[MAX_THREADS];
    if (!pin || !pick_cpus(r->threads, cpus))
        for (unsigned i = 0; i < r->threads; i++)
            cpus[i] = -1;
    pthread_t t[MAX_THREADS];
    run_arg_t args[MAX_THREADS];
    unsigned started = 0;
    bool ok = true;
    for (; started < r->threads; started++) {
        args[started] = (run_arg_t){r, started};
        if (start_thread(&t[started], cpus[started], &args[started]) != 0) {
            ok = false;
            break;
        }
    }
    if (!ok) {
        /* Release the threads already waiting at the start line. */
        atomic_store_explicit(&r->abort, true, memory_order_release);
        for (unsigned i = 0; i < started; i++)
            pthread_join(t[i], NULL);
        ops->destroy(r->c);
        free(r->part[0]);
        free(r);
        return -1;
    }
    for (unsigned i = 0; i < r->threads; i++)
        pthread_join(t[i], NULL);
    uint64_t first = UINT64_MAX, last = 0;
    for (unsigned i = 0; i < r->threads; i++) {
        if (r->start[i] < first)
            first = r->start[i];
        if (r->end[i] > last)
            last = r->end[i];
    }
    bool right = atomic_load(&r->popped_sum) == expect;
    double ns = (double)(last - first) / (double)iters;
    if (r->parts > 1) {
        uint64_t wall = 0, items = 0;
        for (uint64_t k = 0; k < r->parts; k++) {
            if (part_on_cpu(r->part[0][k]) && part_on_cpu(r->part[1][k])) {
                wall += r->part[1][k].wall;
                items += part_size(r->count[1], r->parts, k);
            }
        }
        if (items > 0)
            ns = (double)wall / (double)items;
    }
    ops->destroy(r->c);
    free(r->part[0]);
    free(r);
    if (!right)
        return -1;
    return ns;
}

/* run_placed() with the threads wherever the scheduler puts them. */
static double run(const impl_ops_t *ops, unsigned producers, unsigned consumers, uint64_t iters)
{
    return run_placed(ops, producers, consumers, iters, false, 0);
}

/* ---- Moirai ---- */

static void *m_spsc_create(void)
{
    moirai_ring_spsc_t *r;
    return moirai_ring_spsc_create(&r, RING_SLOTS) == 0 ? r : NULL;
}

static void m_spsc_destroy(void *c)
{
    moirai_ring_spsc_destroy(c);
}

static void m_spsc_produce(void *c, unsigned p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        unsigned fails = 0;
        while (moirai_ring_spsc_try_push(c, (void *)item_value(p, i)) != 0)
            backoff(&fails);
    }
}

static uint64_t m_spsc_consume(void *c, uint64_t n)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        void *v;
        unsigned fails = 0;
        while (moirai_ring_spsc_try_pop(c, &v) != 0)
            backoff(&fails);
        sum += (uintptr_t)v;
    }
    return sum;
}

static void *m_mpmc_create(void)
{
    moirai_ring_mpmc_t *r;
    return moirai_ring_mpmc_create(&r, RING_SLOTS) == 0 ? r : NULL;
}

static void m_mpmc_destroy(void *c)
{
    moirai_ring_mpmc_destroy(c);
}

static void m_mpmc_produce(void *c, unsigned p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        unsigned fails = 0;
        while (moirai_ring_mpmc_try_push(c, (void *)item_value(p, i)) != 0)
            backoff(&fails);
    }
}

static uint64_t m_mpmc_consume(void *c, uint64_t n)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        void *v;
        unsigned fails = 0;
        while (moirai_ring_mpmc_try_pop(c, &v) != 0)
            backoff(&fails);
        sum += (uintptr_t)v;
    }
    return sum;
}

static void *m_queue_create(void)
{
    moirai_queue_t *q;
    return moirai_queue_create(&q) == 0 ? q : NULL;
}

static void m_queue_destroy(void *c)
{
    moirai_queue_destroy(c);
}

static void m_queue_produce(void *c, unsigned p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        unsigned fails = 0;
        /* Only -ENOMEM can fail: wait for memory like the peers would. */
        while (moirai_queue_push(c, (void *)item_value(p, i)) != 0)
            backoff(&fails);
    }
}

static uint64_t m_queue_consume(void *c, uint64_t n)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        void *v;
        unsigned fails = 0;
        while (moirai_queue_try_pop(c, &v) != 0)
            backoff(&fails);
        sum += (uintptr_t)v;
    }
    return sum;
}

static void *m_stack_create(void)
{
    moirai_stack_t *s;
    return moirai_stack_create(&s) == 0 ? s : NULL;
}

static void m_stack_destroy(void *c)
{
    moirai_stack_destroy(c);
}

static uint64_t m_stack_pushpop(void *c, unsigned t, uint64_t n)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        unsigned fails = 0;
        while (moirai_stack_push(c, (void *)item_value(t, i)) != 0)
            backoff(&fails);
        void *v;
        /* Never empty: this thread's own push is not yet matched. */
        while (moirai_stack_try_pop(c, &v) != 0)
            backoff(&fails);
        sum += (uintptr_t)v;
    }
    return sum;
}

#define NODE_POOL 16384

typedef struct m_item {
    moirai_stack_node_t node;
    uintptr_t value;
} m_item_t;

typedef struct m_nstack {
    alignas(CACHE_LINE) moirai_node_stack_t s;
    alignas(CACHE_LINE) m_item_t items[MAX_THREADS][NODE_POOL];
    m_item_t *spare[MAX_THREADS][2][NODE_POOL];
} m_nstack_t;

static void *m_nstack_create(void)
{
    m_nstack_t *s = aligned_alloc(CACHE_LINE, sizeof(*s));
    if (s != NULL)
        moirai_node_stack_init(&s->s);
    return s;
}

static void m_nstack_destroy(void *c)
{
    free(c);
}

static uint64_t m_nstack_pushpop(void *c, unsigned t, uint64_t n)
{
    m_nstack_t *s = c;
    m_item_t **ready = s->spare[t][0], **popped = s->spare[t][1];
    size_t nready = NODE_POOL, npopped = 0;
    for (size_t i = 0; i < NODE_POOL; i++)
        ready[i] = &s->items[t][i];
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        m_item_t *mine = ready[--nready];
        mine->value = item_value(t, i);
        moirai_node_stack_push(&s->s, &mine->node);
        moirai_stack_node_t *node;
        unsigned fails = 0;
        /* Never empty: this thread's own push is not yet matched. */
        while (moirai_node_stack_try_pop(&s->s, &node) != 0)
            backoff(&fails);
        m_item_t *got = (m_item_t *)((char *)node - offsetof(m_item_t, node));
        sum += got->value;
        popped[npopped++] = got;
        if (nready == 0) {
            /* The reuse rule: one grace period, then the whole batch of
             * popped nodes may be pushed again. */
            moirai_rcu_synchronize();
            m_item_t **tmp = ready;
            ready = popped;
            popped = tmp;
            nready = npopped;
            npopped = 0;
        }
    }
    return sum;
}

/* ---- the "mutex" peers ---- */

typedef struct mutex_ring {
    pthread_mutex_t lock;
    uint64_t head, tail;
    void *slots[RING_SLOTS];
} mutex_ring_t;

static void *x_ring_create(void)
{
    mutex_ring_t *r = calloc(1, sizeof(*r));
    if (r != NULL)
        pthread_mutex_init(&r->lock, NULL);
    return r;
}

static void x_ring_destroy(void *c)
{
    mutex_ring_t *r = c;
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void x_ring_produce(void *c, unsigned p, uint64_t n)
{
    mutex_ring_t *r = c;
    for (uint64_t i = 0; i < n;) {
        unsigned fails = 0;
        pthread_mutex_lock(&r->lock);
        bool done = r->tail - r->head < RING_SLOTS;
        if (done)
            r->slots[r->tail++ % RING_SLOTS] = (void *)item_value(p, i);
        pthread_mutex_unlock(&r->lock);
        if (done)
            i++;
        else
            backoff(&fails);
    }
}

static uint64_t x_ring_consume(void *c, uint64_t n)
{
    mutex_ring_t *r = c;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n;) {
        unsigned fails = 0;
        void *v = NULL;
        pthread_mutex_lock(&r->lock);
        bool done = r->head != r->tail;
        if (done)
            v = r->slots[r->head++ % RING_SLOTS];
        pthread_mutex_unlock(&r->lock);
        if (done) {
            sum += (uintptr_t)v;
            i++;
        } else {
            backoff(&fails);
        }
    }
    return sum;
}

typedef struct list_node {
    struct list_node *next;
    void *item;
} list_node_t;

typedef struct mutex_list {
    pthread_mutex_t lock;
    list_node_t *head, *tail;
} mutex_list_t;

static void *x_list_create(void)
{
    mutex_list_t *l = calloc(1, sizeof(*l));
    if (l != NULL)
        pthread_mutex_init(&l->lock, NULL);
    return l;
}

static void x_list_destroy(void *c)
{
    mutex_list_t *l = c;
    while (l->head != NULL) {
        list_node_t *n = l->head;
        l->head = n->next;
        free(n);
    }
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static void x_list_produce(void *c, unsigned p, uint64_t n)
{
    mutex_list_t *l = c;
    for (uint64_t i = 0; i < n; i++) {
        list_node_t *node;
        unsigned fails = 0;
        while ((node = malloc(sizeof(*node))) == NULL)
            backoff(&fails);
        node->next = NULL;
        node->item = (void *)item_value(p, i);
        pthread_mutex_lock(&l->lock);
        if (l->tail != NULL)
            l->tail->next = node;
        else
            l->head = node;
        l->tail = node;
        pthread_mutex_unlock(&l->lock);
    }
}

static uint64_t x_list_consume(void *c, uint64_t n)
{
    mutex_list_t *l = c;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n;) {
        unsigned fails = 0;
        pthread_mutex_lock(&l->lock);
        list_node_t *node = l->head;
        if (node != NULL) {
            l->head = node->next;
            if (l->head == NULL)
                l->tail = NULL;
        }
        pthread_mutex_unlock(&l->lock);
        if (node != NULL) {
            sum += (uintptr_t)node->item;
            free(node);
            i++;
        } else {
            backoff(&fails);
        }
    }
    return sum;
}

/* ---- the "urcu" peers ---- */

typedef struct wfcq {
    alignas(CACHE_LINE) struct cds_wfcq_head head; /* with its mutex */
    alignas(CACHE_LINE) struct cds_wfcq_tail tail;
} wfcq_t;

typedef struct wfcq_item {
    struct cds_wfcq_node node;
    void *item;
} wfcq_item_t;

static void *u_wfcq_create(void)
{
    wfcq_t *q = aligned_alloc(CACHE_LINE, sizeof(*q));
    if (q != NULL)
        cds_wfcq_init(&q->head, &q->tail);
    return q;
}

static void u_wfcq_destroy(void *c)
{
    wfcq_t *q = c;
    struct cds_wfcq_node *n;
    while ((n = cds_wfcq_dequeue_blocking(&q->head, &q->tail)) != NULL)
        free(caa_container_of(n, wfcq_item_t, node));
    cds_wfcq_destroy(&q->head, &q->tail);
    free(q);
}

static_assert(sizeof(struct cds_wfcq_head) <= CACHE_LINE,
              "the head must not reach the tail's line");

static void u_wfcq_produce(void *c, unsigned p, uint64_t n)
{
    wfcq_t *q = c;
    for (uint64_t i = 0; i < n; i++) {
        wfcq_item_t *it;
        unsigned fails = 0;
        while ((it = malloc(sizeof(*it))) == NULL)
            backoff(&fails);
        cds_wfcq_node_init(&it->node);
        it->item = (void *)item_value(p, i);
        cds_wfcq_enqueue(&q->head, &q->tail, &it->node);
    }
}

static uint64_t u_wfcq_consume(void *c, uint64_t n)
{
    wfcq_t *q = c;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n;) {
        unsigned fails = 0;
        struct cds_wfcq_node *node = cds_wfcq_dequeue_blocking(&q->head, &q->tail);
        if (node != NULL) {
            wfcq_item_t *it = caa_container_of(node, wfcq_item_t, node);
            sum += (uintptr_t)it->item;
            free(it);
            i++;
        } else {
            backoff(&fails);
        }
    }
    return sum;
}

typedef struct lfs_item {
    struct cds_lfs_node node;
    uintptr_t value;
} lfs_item_t;

typedef struct lfs {
    alignas(CACHE_LINE) struct cds_lfs_stack s;
    lfs_item_t items[MAX_THREADS];
} lfs_t;

static void *u_lfs_create(void)
{
    lfs_t *s = aligned_alloc(CACHE_LINE, sizeof(*s));
    if (s != NULL)
        cds_lfs_init(&s->s);
    return s;
}

static void u_lfs_destroy(void *c)
{
    lfs_t *s = c;
    cds_lfs_destroy(&s->s);
    free(s);
}

static uint64_t u_lfs_pushpop(void *c, unsigned t, uint64_t n)
{
    lfs_t *s = c;
    /* One entry per thread in flight: push it, pop whichever is on top,
     * and push that one next time (safe: pops hold the stack's mutex). */
    lfs_item_t *mine = &s->items[t];
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        mine->value = item_value(t, i);
        cds_lfs_node_init(&mine->node);
        cds_lfs_push(&s->s, &mine->node);
        struct cds_lfs_node *node = cds_lfs_pop_blocking(&s->s);
        /* Never NULL: this thread's own push is not yet matched. */
        mine = caa_container_of(node, lfs_item_t, node);
        sum += mine->value;
    }
    return sum;
}

/* ---- the "ck" peers ---- */

#ifdef MOIRAI_BENCH_HAVE_CK
typedef struct ckring {
    alignas(CACHE_LINE) ck_ring_t ring;
    alignas(CACHE_LINE) ck_ring_buffer_t slots[RING_SLOTS];
} ckring_t;

static void *k_ring_create(void)
{
    ckring_t *r = aligned_alloc(CACHE_LINE, sizeof(*r));
    if (r != NULL)
        ck_ring_init(&r->ring, RING_SLOTS);
    return r;
}

static void k_ring_destroy(void *c)
{
    free(c);
}

static void k_spsc_produce(void *c, unsigned p, uint64_t n)
{
    ckring_t *r = c;
    for (uint64_t i = 0; i < n; i++) {
        unsigned fails = 0;
        while (!ck_ring_enqueue_spsc(&r->ring, r->slots, (void *)item_value(p, i)))
            backoff(&fails);
    }
}

static uint64_t k_spsc_consume(void *c, uint64_t n)
{
    ckring_t *r = c;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        void *v;
        unsigned fails = 0;
        while (!ck_ring_dequeue_spsc(&r->ring, r->slots, &v))
            backoff(&fails);
        sum += (uintptr_t)v;
    }
    return sum;
}

static void k_mpmc_produce(void *c, unsigned p, uint64_t n)
{
    ckring_t *r = c;
    for (uint64_t i = 0; i < n; i++) {
        unsigned fails = 0;
        while (!ck_ring_enqueue_mpmc(&r->ring, r->slots, (void *)item_value(p, i)))
            backoff(&fails);
    }
}

static uint64_t k_mpmc_consume(void *c, uint64_t n)
{
    ckring_t *r = c;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        void *v;
        unsigned fails = 0;
        while (!ck_ring_dequeue_mpmc(&r->ring, r->slots, &v))
            backoff(&fails);
        sum += (uintptr_t)v;
    }
    return sum;
}

typedef struct ck_item {
    ck_stack_entry_t entry;
    uintptr_t value;
} ck_item_t;

CK_STACK_CONTAINER(ck_item_t, entry, ck_item_of)

typedef struct ckstack {
    alignas(CACHE_LINE) ck_stack_t s;
    alignas(CACHE_LINE) ck_item_t items[MAX_THREADS];
} ckstack_t;

static void *k_stack_create(void)
{
    ckstack_t *s = aligned_alloc(CACHE_LINE, sizeof(*s));
    if (s != NULL)
        ck_stack_init(&s->s);
    return s;
}

static void k_stack_destroy(void *c)
{
    free(c);
}

static uint64_t k_stack_pushpop(void *c, unsigned t, uint64_t n)
{
    ckstack_t *s = c;
    /* As for lfstack; immediate reuse is safe thanks to the generation
     * counter of ck_stack_pop_mpmc(). */
    ck_item_t *mine = &s->items[t];
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        mine->value = item_value(t, i);
        ck_stack_push_mpmc(&s->s, &mine->entry);
        ck_stack_entry_t *e = ck_stack_pop_mpmc(&s->s);
        mine = ck_item_of(e);
        sum += mine->value;
    }
    return sum;
}
#endif

/* ---- cases ---- */

static const impl_ops_t m_spsc = {m_spsc_create, m_spsc_destroy, m_spsc_produce, m_spsc_consume,
                                  NULL};
static const impl_ops_t m_mpmc = {m_mpmc_create, m_mpmc_destroy, m_mpmc_produce, m_mpmc_consume,
                                  NULL};
static const impl_ops_t m_queue = {m_queue_create, m_queue_destroy, m_queue_produce,
                                   m_queue_consume, NULL};
static const impl_ops_t m_stack = {m_stack_create, m_stack_destroy, NULL, NULL, m_stack_pushpop};
static const impl_ops_t m_nstack = {m_nstack_create, m_nstack_destroy, NULL, NULL,
                                    m_nstack_pushpop};
static const impl_ops_t x_ring = {x_ring_create, x_ring_destroy, x_ring_produce, x_ring_consume,
                                  NULL};
static const impl_ops_t x_list = {x_list_create, x_list_destroy, x_list_produce, x_list_consume,
                                  NULL};
static const impl_ops_t u_wfcq = {u_wfcq_create, u_wfcq_destroy, u_wfcq_produce, u_wfcq_consume,
                                  NULL};
static const impl_ops_t u_lfs = {u_lfs_create, u_lfs_destroy, NULL, NULL, u_lfs_pushpop};
#ifdef MOIRAI_BENCH_HAVE_CK
static const impl_ops_t k_spsc = {k_ring_create, k_ring_destroy, k_spsc_produce, k_spsc_consume,
                                  NULL};
static const impl_ops_t k_mpmc = {k_ring_create, k_ring_destroy, k_mpmc_produce, k_mpmc_consume,
                                  NULL};
static const impl_ops_t k_stack = {k_stack_create, k_stack_destroy, NULL, NULL, k_stack_pushpop};
#endif

static double spsc_moirai(uint64_t iters)
{
    return run_placed(&m_spsc, 1, 1, iters, true, SPSC_PART_ITEMS);
}

static double mpmc11_moirai(uint64_t iters)
{
    return run(&m_mpmc, 1, 1, iters);
}

static double mpmc11_mutex(uint64_t iters)
{
    return run(&x_ring, 1, 1, iters);
}

static double mpmc22_moirai(uint64_t iters)
{
    return run(&m_mpmc, 2, 2, iters);
}

static double mpmc22_mutex(uint64_t iters)
{
    return run(&x_ring, 2, 2, iters);
}

static double queue_moirai(uint64_t iters)
{
    return run(&m_queue, 2, 2, iters);
}

static double queue_urcu(uint64_t iters)
{
    return run(&u_wfcq, 2, 2, iters);
}

static double queue_mutex(uint64_t iters)
{
    return run(&x_list, 2, 2, iters);
}

static double stack_moirai(uint64_t iters)
{
    return run(&m_nstack, 0, 2, iters);
}

static double stack_moirai_items(uint64_t iters)
{
    return run(&m_stack, 0, 2, iters);
}

static double stack_urcu(uint64_t iters)
{
    return run(&u_lfs, 0, 2, iters);
}

#ifdef MOIRAI_BENCH_HAVE_CK
static double spsc_ck(uint64_t iters)
{
    return run_placed(&k_spsc, 1, 1, iters, true, SPSC_PART_ITEMS);
}

static double mpmc11_ck(uint64_t iters)
{
    return run(&k_mpmc, 1, 1, iters);
}

static double mpmc22_ck(uint64_t iters)
{
    return run(&k_mpmc, 2, 2, iters);
}

static double stack_ck(uint64_t iters)
{
    return run(&k_stack, 0, 2, iters);
}
#define CK_IMPL(fn)                                                                                \
    {                                                                                              \
        "ck", fn, NULL                                                                             \
    }
#else
#define CK_IMPL(fn)                                                                                \
    {                                                                                              \
        "ck", NULL, "Concurrency Kit (ck.pc) was not found at build time"                          \
    }
#endif

static const bench_impl_t spsc_impls[] = {
    {"moirai", spsc_moirai, NULL},
    CK_IMPL(spsc_ck),
};
static const bench_impl_t mpmc11_impls[] = {
    {"moirai", mpmc11_moirai, NULL},
    CK_IMPL(mpmc11_ck),
    {"mutex", mpmc11_mutex, NULL},
};
static const bench_impl_t mpmc22_impls[] = {
    {"moirai", mpmc22_moirai, NULL},
    CK_IMPL(mpmc22_ck),
    {"mutex", mpmc22_mutex, NULL},
};
static const bench_impl_t queue_impls[] = {
    {"moirai", queue_moirai, NULL},
    {"urcu", queue_urcu, NULL},
    {"mutex", queue_mutex, NULL},
};
static const bench_impl_t stack_impls[] = {
    {"moirai", stack_moirai, NULL},
    CK_IMPL(stack_ck),
    {"urcu", stack_urcu, NULL},
    {"moirai_items", stack_moirai_items, NULL},
};

#define IMPLS(a) (a), (sizeof(a) / sizeof((a)[0]))

static const bench_case_t container_cases[] = {
    {"sync", "spsc_ring_1p1c", "ns_per_op", 20000000, 2000000, IMPLS(spsc_impls)},
    {"sync", "mpmc_ring_1p1c", "ns_per_op", 20000000, 2000000, IMPLS(mpmc11_impls)},
    {"sync", "mpmc_ring_2p2c", "ns_per_op", 10000000, 1000000, IMPLS(mpmc22_impls)},
    {"sync", "queue_unbounded_2p2c", "ns_per_op", 10000000, 1000000, IMPLS(queue_impls)},
    {"sync", "stack_push_pop_2t", "ns_per_op", 10000000, 1000000, IMPLS(stack_impls)},
};

const bench_case_t *bench_sync_containers_cases(size_t *count)
{
    *count = sizeof(container_cases) / sizeof(container_cases[0]);
    return container_cases;
}
