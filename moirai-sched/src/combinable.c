/* Per-worker values (see moirai/sched/combinable.h).
 *
 * Two kinds of slot. Workers of the configured scheduler index an array
 * allocated at create: one value per worker slot, each starting a cache
 * line (or value_align) of its own, plus a byte per slot saying whether
 * its value was created. A worker reads its index from the scheduler's
 * initial-exec thread-local, so finding its value is a compare and an
 * add. Every other thread gets a slot allocated on its first call and
 * pushed onto a lock-free list (a CAS on the head; slots are never
 * removed before destroy), keyed by the address of a thread-local byte,
 * which is unique among live threads; a one-entry thread-local cache
 * (combinable id, value) makes later calls a compare. Ids come from a
 * process-wide counter and are never reused, so a cache entry left by a
 * destroyed combinable can never match a new one at the same address.
 *
 * A thread that exits leaves its slot in the list; its value is still
 * combined and destroyed. A later thread whose thread-local byte lands at
 * the same address takes that slot over, which is harmless: the old
 * thread is gone, so the value still has one user at a time. */
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/sched/combinable.h>

#include "sched_internal.h"

/* The largest value_align accepted (combinable.h). */
#define ALIGN_MAX 4096

/* A slot of a thread that is not one of the configured scheduler's
 * workers. `next` and `key` are written before the slot is published and
 * never change; the value follows the header at `value_off`. */
typedef struct thread_slot {
    struct thread_slot *next;
    const void *key;
} thread_slot_t;

struct moirai_combinable {
    uint64_t id; /* unique in the process; matched by the thread caches */
    size_t size;
    size_t line;      /* each value's alignment and spacing: max(64, value_align) */
    size_t stride;    /* bytes between two worker values: size rounded up to `line` */
    size_t value_off; /* where a thread slot's value starts */
    moirai_combinable_init_cb init;
    moirai_combinable_destroy_cb destroy;
    void *arg;

    moirai_sched_t *sched; /* whose workers own the indexed slots (never dereferenced) */
    int nworkers;          /* indexed slots */
    unsigned char *worker_values;
    /* 1 once the worker slot's value exists. Written only by the thread of
     * that worker slot (release), read by it (relaxed) and by visitors
     * (acquire). */
    _Atomic uint8_t *worker_created;

    /* The other threads' slots, newest first (release push, acquire read). */
    _Atomic(thread_slot_t *) threads;
};

/* Combinable ids; 0 is never used, so a zeroed thread cache matches none.
 * Relaxed: only uniqueness matters. */
static _Atomic uint64_t next_id = 1;

/* The calling thread's last lookup outside the indexed slots: the
 * combinable's id and this thread's value in it. The default TLS model
 * (not initial-exec) keeps the library's static TLS small for dlopen(). */
static __thread uint64_t cache_id;
static __thread void *cache_value;

/* Its address identifies the calling thread among live threads. */
static __thread char thread_key;

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

void moirai_combinable_config_init(moirai_combinable_config_t *cfg, size_t value_size)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->value_size = value_size;
}

int moirai_combinable_create(moirai_combinable_t **out, const moirai_combinable_config_t *cfg)
{
    if (out == NULL || cfg == NULL || cfg->value_size == 0 ||
        cfg->value_size > MOIRAI_COMBINABLE_VALUE_MAX || cfg->value_align > ALIGN_MAX ||
        (cfg->value_align & (cfg->value_align - 1)) != 0)
        return -EINVAL;
    size_t align = cfg->value_align != 0 ? cfg->value_align : alignof(max_align_t);
    moirai_combinable_t *c = moirai_malloc(sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    memset(c, 0, sizeof *c);
    c->size = cfg->value_size;
    c->line = align > MOIRAI_CACHE_LINE ? align : MOIRAI_CACHE_LINE;
    c->stride = round_up(c->size, c->line);
    c->value_off = round_up(sizeof(thread_slot_t), c->line);
    c->init = cfg->init;
    c->destroy = cfg->destroy;
    c->arg = cfg->arg;
    c->sched = cfg->sched;
    atomic_init(&c->threads, NULL);
    if (c->sched != NULL) {
        c->nworkers = moirai_sched_worker_count(c->sched);
        /* The values are not touched here: each is zeroed when its worker
         * first asks, so untouched slots cost address space only. */
        c->worker_values = moirai_aligned_alloc(c->line, (size_t)c->nworkers * c->stride);
        c->worker_created = moirai_calloc((size_t)c->nworkers, sizeof *c->worker_created);
        if (c->worker_values == NULL || c->worker_created == NULL) {
            moirai_free(c->worker_values);
            moirai_free((void *)c->worker_created);
            moirai_free(c);
            return -ENOMEM;
        }
    }
    c->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    *out = c;
    return 0;
}

/* Zero-fills a new value and runs init on it. Returns init's result. */
static int make_value(moirai_combinable_t *c, void *value)
{
    memset(value, 0, c->size);
    return c->init != NULL ? c->init(c->arg, value) : 0;
}

static void *slot_value(const moirai_combinable_t *c, thread_slot_t *t)
{
    return (unsigned char *)t + c->value_off;
}

/* The calling thread's value outside the indexed slots. */
static int thread_value(moirai_combinable_t *c, void **value)
{
    if (cache_id == c->id) {
        *value = cache_value;
        return 0;
    }
    const void *key = &thread_key;
    /* Acquire: pairs with the pushing CAS, so a slot's header is visible. */
    thread_slot_t *t = atomic_load_explicit(&c->threads, memory_order_acquire);
    for (; t != NULL; t = t->next) {
        if (t->key == key)
            break;
    }
    if (t == NULL) {
        t = moirai_aligned_alloc(c->line, c->value_off + c->stride);
        if (t == NULL)
            return -ENOMEM;
        int rc = make_value(c, slot_value(c, t));
        if (rc != 0) {
            moirai_free(t);
            return rc;
        }
        t->key = key;
        thread_slot_t *head = atomic_load_explicit(&c->threads, memory_order_relaxed);
        do {
            t->next = head;
            /* Release: publishes the header and the initialised value to
             * visitors and to other threads' lookups (acquire). */
        } while (!atomic_compare_exchange_weak_explicit(&c->threads, &head, t, memory_order_release,
                                                        memory_order_relaxed));
    }
    cache_id = c->id;
    cache_value = slot_value(c, t);
    *value = cache_value;
    return 0;
}

int moirai_combinable_local(moirai_combinable_t *c, void **value)
{
    if (c == NULL || value == NULL)
        return -EINVAL;
    moirai__worker_t *w = moirai__worker_current();
    if (w != NULL && w->sched == c->sched && w->index < c->nworkers) {
        int i = w->index;
        unsigned char *v = c->worker_values + (size_t)i * c->stride;
        /* Relaxed: only this worker slot's thread writes its flag (a
         * compensating slot's successive threads are ordered by the
         * watchdog's join and create). */
        if (!atomic_load_explicit(&c->worker_created[i], memory_order_relaxed)) {
            int rc = make_value(c, v);
            if (rc != 0)
                return rc;
            /* Release: a visitor reading the flag with acquire sees the
             * value initialised. */
            atomic_store_explicit(&c->worker_created[i], 1, memory_order_release);
        }
        *value = v;
        return 0;
    }
    return thread_value(c, value);
}

/* Calls visit(c, ctx, value) on every value that exists, in the
 * documented order. */
static void visit_all(moirai_combinable_t *c, void (*visit)(moirai_combinable_t *, void *, void *),
                      void *ctx)
{
    for (int i = 0; i < c->nworkers; i++) {
        /* Acquire: pairs with the creating worker's release store. */
        if (atomic_load_explicit(&c->worker_created[i], memory_order_acquire))
            visit(c, ctx, c->worker_values + (size_t)i * c->stride);
    }
    for (thread_slot_t *t = atomic_load_explicit(&c->threads, memory_order_acquire); t != NULL;
         t = t->next)
        visit(c, ctx, slot_value(c, t));
}

typedef struct combine_ctx {
    moirai_combinable_combine_cb fn;
    void *arg;
    void *acc;
} combine_ctx_t;

static void visit_combine(moirai_combinable_t *c, void *ctx, void *value)
{
    (void)c;
    combine_ctx_t *x = ctx;
    x->fn(x->arg, x->acc, value);
}

int moirai_combinable_combine(moirai_combinable_t *c, moirai_combinable_combine_cb fn, void *arg,
                              void *acc)
{
    if (c == NULL || fn == NULL || acc == NULL)
        return -EINVAL;
    combine_ctx_t x = {fn, arg, acc};
    visit_all(c, visit_combine, &x);
    return 0;
}

typedef struct each_ctx {
    moirai_combinable_each_cb fn;
    void *arg;
} each_ctx_t;

static void visit_each(moirai_combinable_t *c, void *ctx, void *value)
{
    (void)c;
    each_ctx_t *x = ctx;
    x->fn(x->arg, value);
}

int moirai_combinable_for_each(moirai_combinable_t *c, moirai_combinable_each_cb fn, void *arg)
{
    if (c == NULL || fn == NULL)
        return -EINVAL;
    each_ctx_t x = {fn, arg};
    visit_all(c, visit_each, &x);
    return 0;
}

static void visit_destroy(moirai_combinable_t *c, void *ctx, void *value)
{
    (void)ctx;
    c->destroy(c->arg, value);
}

void moirai_combinable_destroy(moirai_combinable_t *c)
{
    if (c == NULL)
        return;
    if (c->destroy != NULL)
        visit_all(c, visit_destroy, NULL);
    thread_slot_t *t = atomic_load_explicit(&c->threads, memory_order_acquire);
    while (t != NULL) {
        thread_slot_t *next = t->next;
        moirai_free(t);
        t = next;
    }
    moirai_free(c->worker_values);
    moirai_free((void *)c->worker_created);
    moirai_free(c);
}
