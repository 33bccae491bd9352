/* The registry of lock contention statistics (moirai/sync/lockstat.h).
 *
 * Two chained hash tables behind one pthread mutex: lock records keyed by
 * lock address, name records keyed by the name's string. A lock record
 * holds one lazily allocated counter block per kind (a mutex uses one, a
 * rwlock two) and a pointer to its name record; a name record holds a
 * block for every kind and is never freed, so the name strings handed out
 * in moirai_lock_stats_t stay valid for the life of the process.
 *
 * Why one plain mutex rather than a lock-free table: recording happens
 * only after a contended wait, which already cost microseconds (a park and
 * a wake-up) or at least a cache-line transfer; an uncontended pthread
 * mutex adds about 20 ns to that. With one lock, readers get consistent
 * snapshots and counters need no atomics, and removal needs no deferred
 * reclamation. The cost of recording is paid only while recording is on.
 *
 * The registry lock is a pthread mutex, not a moirai_mutex_t, because a
 * contended moirai mutex records into the registry. For the same reason a
 * thread that is already inside the registry (its allocator hook took a
 * contended Moirai lock) does not record again: that record is dropped
 * and counted, instead of deadlocking on the registry lock it holds. */
#include <moirai/sync/lockstat.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>

#include "lockstat_internal.h"

_Atomic bool moirai__lockstat_on;
_Atomic uint64_t moirai__lockstat_locks;

typedef struct block {
    uint64_t contended;
    uint64_t total_wait_ns;
    uint64_t max_wait_ns;
    uint64_t hist[MOIRAI_LOCK_STATS_BUCKETS];
} block_t;

/* The head both record types start with, so one table serves both. */
typedef struct node {
    struct node *next;
    uint64_t hash;
} node_t;

typedef struct name_rec {
    node_t node;
    block_t kinds[MOIRAI_LOCK_KIND_COUNT];
    char name[]; /* NUL-terminated */
} name_rec_t;

typedef struct lock_rec {
    node_t node;
    const void *lock;
    name_rec_t *name;                       /* NULL when unnamed */
    block_t *kinds[MOIRAI_LOCK_KIND_COUNT]; /* NULL until that kind contends */
} lock_rec_t;

typedef struct table {
    node_t **buckets; /* NULL until the first insertion */
    size_t nbuckets;  /* a power of two */
    size_t count;
} table_t;

#define TABLE_MIN 16

/* Everything below is guarded by `reg_lock`. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static table_t locks;
static table_t names;
static uint64_t dropped;

/* Set while this thread holds `reg_lock` (see the top). */
static __thread bool in_registry;

static void reg_enter(void)
{
    pthread_mutex_lock(&reg_lock);
    in_registry = true;
}

static void reg_exit(void)
{
    in_registry = false;
    pthread_mutex_unlock(&reg_lock);
}

/* ---- the table ---- */

static uint64_t hash_ptr(const void *p)
{
    /* Fibonacci hashing: spreads aligned addresses over the high bits;
     * the shift folds those down into the bucket index. */
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

static uint64_t hash_str(const char *s)
{
    /* FNV-1a, 64-bit. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static node_t **bucket_of(const table_t *t, uint64_t hash)
{
    return &t->buckets[hash & (t->nbuckets - 1)];
}

/* Makes room for one more node: allocates the first bucket array
 * (-ENOMEM if that fails) or doubles it once the load reaches 1 (a failed
 * doubling is fine: chains just get longer). */
static int table_reserve(table_t *t)
{
    if (t->buckets == NULL) {
        node_t **b = moirai_calloc(TABLE_MIN, sizeof *b);
        if (b == NULL)
            return -ENOMEM;
        t->buckets = b;
        t->nbuckets = TABLE_MIN;
        return 0;
    }
    if (t->count < t->nbuckets)
        return 0;
    size_t n = t->nbuckets * 2;
    node_t **b = moirai_calloc(n, sizeof *b);
    if (b == NULL)
        return 0;
    for (size_t i = 0; i < t->nbuckets; i++) {
        node_t *e = t->buckets[i];
        while (e != NULL) {
            node_t *next = e->next;
            node_t **head = &b[e->hash & (n - 1)];
            e->next = *head;
            *head = e;
            e = next;
        }
    }
    moirai_free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    return 0;
}

/* Links `n` (after table_reserve() succeeded). */
static void table_link(table_t *t, node_t *n)
{
    node_t **head = bucket_of(t, n->hash);
    n->next = *head;
    *head = n;
    t->count++;
}

static void table_unlink(table_t *t, node_t *n)
{
    for (node_t **p = bucket_of(t, n->hash); *p != NULL; p = &(*p)->next) {
        if (*p == n) {
            *p = n->next;
            t->count--;
            return;
        }
    }
}

/* ---- records ---- */

static lock_rec_t *find_lock(const void *lock)
{
    if (locks.buckets == NULL)
        return NULL;
    uint64_t h = hash_ptr(lock);
    for (node_t *n = *bucket_of(&locks, h); n != NULL; n = n->next) {
        lock_rec_t *r = (lock_rec_t *)n;
        if (r->lock == lock)
            return r;
    }
    return NULL;
}

static name_rec_t *find_name(const char *name)
{
    if (names.buckets == NULL)
        return NULL;
    uint64_t h = hash_str(name);
    for (node_t *n = *bucket_of(&names, h); n != NULL; n = n->next) {
        name_rec_t *r = (name_rec_t *)n;
        if (n->hash == h && strcmp(r->name, name) == 0)
            return r;
    }
    return NULL;
}

static void publish_lock_count(void)
{
    /* Relaxed: a hint for the destroy functions, see
     * moirai__lockstat_forget_if_known(). */
    atomic_store_explicit(&moirai__lockstat_locks, locks.count, memory_order_relaxed);
}

static lock_rec_t *new_lock(const void *lock)
{
    if (table_reserve(&locks) != 0)
        return NULL;
    lock_rec_t *r = moirai_calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->lock = lock;
    r->node.hash = hash_ptr(lock);
    table_link(&locks, &r->node);
    publish_lock_count();
    return r;
}

static void free_lock(lock_rec_t *r)
{
    table_unlink(&locks, &r->node);
    publish_lock_count();
    for (int k = 0; k < MOIRAI_LOCK_KIND_COUNT; k++)
        moirai_free(r->kinds[k]);
    moirai_free(r);
}

static name_rec_t *new_name(const char *name, size_t len)
{
    if (table_reserve(&names) != 0)
        return NULL;
    name_rec_t *r = moirai_calloc(1, sizeof *r + len + 1);
    if (r == NULL)
        return NULL;
    memcpy(r->name, name, len + 1);
    r->node.hash = hash_str(name);
    table_link(&names, &r->node);
    return r;
}

static unsigned bucket_of_wait(uint64_t ns)
{
    if (ns < 2)
        return 0;
    unsigned b = 63u - (unsigned)__builtin_clzll(ns);
    return b < MOIRAI_LOCK_STATS_BUCKETS ? b : MOIRAI_LOCK_STATS_BUCKETS - 1;
}

static void block_add(block_t *b, uint64_t ns)
{
    b->contended++;
    b->total_wait_ns += ns;
    if (ns > b->max_wait_ns)
        b->max_wait_ns = ns;
    b->hist[bucket_of_wait(ns)]++;
}

static void fill(moirai_lock_stats_t *out, const block_t *b, const char *name, const void *lock,
                 moirai_lock_kind_t kind)
{
    memset(out, 0, sizeof *out);
    out->name = name;
    out->lock = lock;
    out->kind = kind;
    if (b != NULL) {
        out->contended = b->contended;
        out->total_wait_ns = b->total_wait_ns;
        out->max_wait_ns = b->max_wait_ns;
        memcpy(out->hist, b->hist, sizeof out->hist);
    }
}

static bool kind_ok(moirai_lock_kind_t kind)
{
    return (unsigned)kind < (unsigned)MOIRAI_LOCK_KIND_COUNT;
}

/* ---- the locks' side ---- */

void moirai__lockstat_record(const void *lock, moirai_lock_kind_t kind, uint64_t start_ns)
{
    uint64_t now = moirai_clock_now_ns();
    uint64_t wait = now > start_ns ? now - start_ns : 0;
    if (in_registry) {
        /* Re-entered from an allocation made under the registry lock,
         * which this thread holds: drop the record rather than deadlock. */
        dropped++;
        return;
    }
    reg_enter();
    lock_rec_t *r = find_lock(lock);
    bool created = false;
    if (r == NULL) {
        r = new_lock(lock);
        created = r != NULL;
    }
    block_t *b = r != NULL ? r->kinds[kind] : NULL;
    if (r != NULL && b == NULL) {
        b = moirai_calloc(1, sizeof *b);
        if (b == NULL && created)
            free_lock(r);
        else
            r->kinds[kind] = b;
    }
    if (b == NULL) {
        dropped++;
    } else {
        block_add(b, wait);
        if (r->name != NULL)
            block_add(&r->name->kinds[kind], wait);
    }
    reg_exit();
}

/* ---- the API ---- */

void moirai_lock_stats_enable(bool on)
{
    /* Relaxed: see moirai__lockstat_on. */
    atomic_store_explicit(&moirai__lockstat_on, on, memory_order_relaxed);
}

bool moirai_lock_stats_enabled(void)
{
    return atomic_load_explicit(&moirai__lockstat_on, memory_order_relaxed);
}

int moirai_lock_stats_name(const void *lock, const char *name)
{
    if (lock == NULL || name == NULL || name[0] == '\0')
        return -EINVAL;
    size_t len = strnlen(name, MOIRAI_LOCK_STATS_NAME_MAX);
    if (len >= MOIRAI_LOCK_STATS_NAME_MAX)
        return -ENAMETOOLONG;
    int rc = 0;
    reg_enter();
    name_rec_t *n = find_name(name);
    bool new_n = false;
    if (n == NULL) {
        n = new_name(name, len);
        new_n = n != NULL;
    }
    lock_rec_t *r = n != NULL ? find_lock(lock) : NULL;
    if (n != NULL && r == NULL)
        r = new_lock(lock);
    if (r == NULL) {
        /* Nothing changes on error: undo a name record made just now. */
        if (new_n) {
            table_unlink(&names, &n->node);
            moirai_free(n);
        }
        rc = -ENOMEM;
    } else {
        r->name = n;
    }
    reg_exit();
    return rc;
}

void moirai_lock_stats_forget(const void *lock)
{
    if (lock == NULL)
        return;
    reg_enter();
    lock_rec_t *r = find_lock(lock);
    if (r != NULL)
        free_lock(r);
    reg_exit();
}

int moirai_lock_stats_get(const void *lock, moirai_lock_kind_t kind, moirai_lock_stats_t *out)
{
    if (lock == NULL || out == NULL || !kind_ok(kind))
        return -EINVAL;
    int rc = -ENOENT;
    reg_enter();
    lock_rec_t *r = find_lock(lock);
    if (r != NULL) {
        fill(out, r->kinds[kind], r->name != NULL ? r->name->name : NULL, lock, kind);
        rc = 0;
    }
    reg_exit();
    return rc;
}

int moirai_lock_stats_get_name(const char *name, moirai_lock_kind_t kind, moirai_lock_stats_t *out)
{
    if (name == NULL || out == NULL || !kind_ok(kind))
        return -EINVAL;
    int rc = -ENOENT;
    reg_enter();
    name_rec_t *n = find_name(name);
    if (n != NULL) {
        fill(out, &n->kinds[kind], n->name, NULL, kind);
        rc = 0;
    }
    reg_exit();
    return rc;
}

/* Visits the non-empty records foreach reports, counting them when `out`
 * is NULL, else filling `out`. Returns the number of records. */
static size_t collect(moirai_lock_stats_t *out)
{
    size_t n = 0;
    for (size_t i = 0; i < names.nbuckets; i++) {
        for (node_t *e = names.buckets[i]; e != NULL; e = e->next) {
            name_rec_t *r = (name_rec_t *)e;
            for (int k = 0; k < MOIRAI_LOCK_KIND_COUNT; k++) {
                if (r->kinds[k].contended == 0)
                    continue;
                if (out != NULL)
                    fill(&out[n], &r->kinds[k], r->name, NULL, (moirai_lock_kind_t)k);
                n++;
            }
        }
    }
    for (size_t i = 0; i < locks.nbuckets; i++) {
        for (node_t *e = locks.buckets[i]; e != NULL; e = e->next) {
            lock_rec_t *r = (lock_rec_t *)e;
            if (r->name != NULL)
                continue;
            for (int k = 0; k < MOIRAI_LOCK_KIND_COUNT; k++) {
                if (r->kinds[k] == NULL || r->kinds[k]->contended == 0)
                    continue;
                if (out != NULL)
                    fill(&out[n], r->kinds[k], NULL, r->lock, (moirai_lock_kind_t)k);
                n++;
            }
        }
    }
    return n;
}

int moirai_lock_stats_foreach(moirai_lock_stats_cb cb, void *arg)
{
    if (cb == NULL)
        return -EINVAL;
    reg_enter();
    size_t n = collect(NULL);
    moirai_lock_stats_t *snap = NULL;
    if (n > 0) {
        snap = moirai_calloc(n, sizeof *snap);
        if (snap != NULL)
            collect(snap);
    }
    reg_exit();
    if (n > 0 && snap == NULL)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = cb(arg, &snap[i]);
    moirai_free(snap);
    return rc;
}

void moirai_lock_stats_reset(void)
{
    reg_enter();
    for (size_t i = 0; i < names.nbuckets; i++)
        for (node_t *e = names.buckets[i]; e != NULL; e = e->next)
            memset(((name_rec_t *)e)->kinds, 0, sizeof((name_rec_t *)e)->kinds);
    for (size_t i = 0; i < locks.nbuckets; i++) {
        for (node_t *e = locks.buckets[i]; e != NULL; e = e->next) {
            lock_rec_t *r = (lock_rec_t *)e;
            for (int k = 0; k < MOIRAI_LOCK_KIND_COUNT; k++)
                if (r->kinds[k] != NULL)
                    memset(r->kinds[k], 0, sizeof *r->kinds[k]);
        }
    }
    dropped = 0;
    reg_exit();
}

uint64_t moirai_lock_stats_dropped(void)
{
    reg_enter();
    uint64_t d = dropped;
    reg_exit();
    return d;
}
