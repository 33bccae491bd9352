/* The concurrent hash map under concurrent insert / remove / lookup while
 * its bucket array grows and shrinks underneath (every map here starts
 * with one bucket). Exact invariants only:
 *
 * - partitioned log replay: each thread updates its own keys at random and
 *   logs every call with its result; replaying each log against a plain
 *   model must reproduce every result, and the final map must equal the
 *   replayed model (linearizability per key, nothing lost, nothing extra);
 * - shared keys: of all threads racing insert_unique on a key exactly one
 *   wins and every loser is told the winner's value; then racing removes
 *   succeed exactly once per key;
 * - replace / remove on a few hot keys: every value put in comes out
 *   exactly once (as an old value or as what is left at the end);
 * - visibility: once a remove returned and the remover published that
 *   through an atomic, readers that saw the publication never find the
 *   key; symmetrically, published inserts are always found;
 * - publication: a value found by a lookup points to a fully written
 *   object (checked by ThreadSanitizer in the TSan build).
 *
 * Parameters (environment): MOIRAI_MAP_THREADS (updater threads, default
 * 4), MOIRAI_MAP_OPS (operations per thread, default 500000), divided by
 * MOIRAI_TEST_SCALE (set under sanitizers). Criterion asserts only on the
 * main thread; worker threads count violations. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/sync/map.h>

#include "test_scale.h"

#define V(x) ((void *)(uintptr_t)(x))
#define U(p) ((uint64_t)(uintptr_t)(p))

static int threads_param(void)
{
    long t = env_long("MOIRAI_MAP_THREADS", 4);
    return t > 64 ? 64 : (int)t;
}

static long ops_param(void)
{
    long ops = scaled(env_long("MOIRAI_MAP_OPS", 500000));
    return ops < 1000 ? 1000 : ops;
}

/* xorshift64*: a cheap per-thread generator. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static moirai_map_t *tiny_map(void)
{
    moirai_map_config_t cfg = {.initial_buckets = 1};
    moirai_map_t *map = NULL;
    cr_assert_eq(moirai_map_create(&map, &cfg), 0);
    return map;
}

/* A start line, so that threads begin their races together. */
typedef struct gate {
    atomic_int arrived;
    int n;
} gate_t;

static void gate_wait(gate_t *g)
{
    /* acq_rel: each thread's set-up happens before anyone races. */
    atomic_fetch_add_explicit(&g->arrived, 1, memory_order_acq_rel);
    while (atomic_load_explicit(&g->arrived, memory_order_acquire) < g->n)
        sched_yield();
}

/* ------------------------------------------------------------------------
 * Partitioned log replay during resizes. */

enum { OP_INSERT, OP_UNIQUE, OP_REPLACE, OP_REMOVE, OP_LOOKUP, OP_KINDS };

typedef struct log_entry {
    uint32_t k;
    uint8_t op;
    int8_t rc;
    uint64_t val; /* value passed in */
    uint64_t out; /* value received (existing / old / looked up) */
} log_entry_t;

#define KEYS_PER_THREAD 8192u

typedef struct replay {
    moirai_map_t *map;
    int threads;
    long ops;
    gate_t gate;
    log_entry_t **logs;
    atomic_long foreign_bad;  /* foreign lookups returning a value of another key */
    atomic_long foreign_seen; /* foreign lookups that found something */
    atomic_int updaters_left;
    atomic_long iter_bad;
    atomic_long iter_passes;
    atomic_long iter_visits;
} replay_t;

typedef struct replay_arg {
    replay_t *r;
    int t;
} replay_arg_t;

/* Keys are 12 bytes: owner thread, key index, and a constant tail, so the
 * map's byte keys are exercised beyond word size. */
typedef struct pkey {
    uint32_t owner;
    uint32_t k;
    uint32_t tail;
} pkey_t;

static pkey_t make_pkey(int t, uint32_t k)
{
    pkey_t key = {(uint32_t)t, k, 0xc0ffee};
    return key;
}

/* Values name their key: owner in the top byte, key index in bits
 * 32..55, a sequence number below; never 0. */
static uint64_t make_val(int t, uint32_t k, uint32_t seq)
{
    return ((uint64_t)t << 56) | ((uint64_t)k << 32) | (seq + 1u);
}

static bool val_belongs(uint64_t v, uint32_t owner, uint32_t k)
{
    return (v >> 56) == owner && ((v >> 32) & 0xffffff) == k && (uint32_t)v != 0;
}

static void *replay_updater(void *p)
{
    replay_arg_t *a = p;
    replay_t *r = a->r;
    int t = a->t;
    log_entry_t *log = r->logs[t];
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1);
    gate_wait(&r->gate);

    for (long i = 0; i < r->ops; i++) {
        /* Six phases: filling (the table grows), draining (it shrinks),
         * three times over. Weights for insert, unique, replace, remove,
         * lookup. */
        static const int weights[2][OP_KINDS] = {
            {50, 10, 15, 10, 15},
            {5, 5, 5, 65, 20},
        };
        const int *w = weights[(i * 6 / r->ops) & 1];
        int pick = (int)(rnd(&s) % 100);
        int op = 0;
        while (pick >= w[op]) {
            pick -= w[op];
            op++;
        }

        /* One call in ten looks up another thread's key instead, checking
         * that what it finds belongs to that key (no cross-key mix-ups
         * while buckets split and merge). */
        if (r->threads > 1 && rnd(&s) % 10 == 0) {
            int other = (int)((uint64_t)t + 1 + rnd(&s) % (uint64_t)(r->threads - 1)) % r->threads;
            uint32_t k = (uint32_t)(rnd(&s) % KEYS_PER_THREAD);
            pkey_t key = make_pkey(other, k);
            void *v = NULL;
            if (moirai_map_lookup(r->map, &key, sizeof key, &v) == 0) {
                atomic_fetch_add_explicit(&r->foreign_seen, 1, memory_order_relaxed);
                if (!val_belongs(U(v), (uint32_t)other, k))
                    atomic_fetch_add_explicit(&r->foreign_bad, 1, memory_order_relaxed);
            }
        }

        uint32_t k = (uint32_t)(rnd(&s) % KEYS_PER_THREAD);
        pkey_t key = make_pkey(t, k);
        uint64_t val = make_val(t, k, (uint32_t)i);
        void *out = V(0);
        int rc = 0;
        switch (op) {
        case OP_INSERT:
            rc = moirai_map_insert(r->map, &key, sizeof key, V(val));
            break;
        case OP_UNIQUE:
            rc = moirai_map_insert_unique(r->map, &key, sizeof key, V(val), &out);
            break;
        case OP_REPLACE:
            rc = moirai_map_replace(r->map, &key, sizeof key, V(val), &out);
            break;
        case OP_REMOVE:
            rc = moirai_map_remove(r->map, &key, sizeof key, &out);
            break;
        default:
            rc = moirai_map_lookup(r->map, &key, sizeof key, &out);
            break;
        }
        log[i] =
            (log_entry_t){.k = k, .op = (uint8_t)op, .rc = (int8_t)rc, .val = val, .out = U(out)};
    }
    /* Release: the iterator stops after the last updater's calls. */
    atomic_fetch_sub_explicit(&r->updaters_left, 1, memory_order_release);
    return NULL;
}

static int replay_iter_cb(void *arg, const void *key, size_t len, void *value)
{
    replay_t *r = arg;
    pkey_t pk;
    if (len != sizeof pk) {
        atomic_fetch_add_explicit(&r->iter_bad, 1, memory_order_relaxed);
        return 0;
    }
    memcpy(&pk, key, sizeof pk);
    if (pk.tail != 0xc0ffee || !val_belongs(U(value), pk.owner, pk.k))
        atomic_fetch_add_explicit(&r->iter_bad, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->iter_visits, 1, memory_order_relaxed);
    return 0;
}

/* Iterates over and over while the updaters run: every entry it meets
 * must be consistent. */
static void *replay_iterator(void *p)
{
    replay_t *r = p;
    gate_wait(&r->gate);
    while (atomic_load_explicit(&r->updaters_left, memory_order_acquire) > 0) {
        if (moirai_map_iterate(r->map, replay_iter_cb, r) != 0)
            atomic_fetch_add_explicit(&r->iter_bad, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&r->iter_passes, 1, memory_order_relaxed);
    }
    return NULL;
}

typedef struct model {
    bool present[KEYS_PER_THREAD];
    uint64_t value[KEYS_PER_THREAD];
} model_t;

typedef struct final_check {
    model_t *models;
    int threads;
    long visited;
    long wrong;
    unsigned char *seen; /* threads * KEYS_PER_THREAD */
} final_check_t;

static int final_cb(void *arg, const void *key, size_t len, void *value)
{
    final_check_t *f = arg;
    pkey_t pk;
    f->visited++;
    if (len != sizeof pk) {
        f->wrong++;
        return 0;
    }
    memcpy(&pk, key, sizeof pk);
    if (pk.owner >= (uint32_t)f->threads || pk.k >= KEYS_PER_THREAD) {
        f->wrong++;
        return 0;
    }
    model_t *m = &f->models[pk.owner];
    if (!m->present[pk.k] || m->value[pk.k] != U(value))
        f->wrong++;
    f->seen[pk.owner * KEYS_PER_THREAD + pk.k]++;
    return 0;
}

Test(map_stress, partitioned_log_replay_during_resizes, .timeout = 600)
{
    replay_t r = {.map = tiny_map(), .threads = threads_param(), .ops = ops_param()};
    r.gate.n = r.threads + 1;
    atomic_init(&r.updaters_left, r.threads);
    r.logs = calloc((size_t)r.threads, sizeof *r.logs);
    cr_assert_not_null(r.logs);
    for (int t = 0; t < r.threads; t++) {
        r.logs[t] = calloc((size_t)r.ops, sizeof(log_entry_t));
        cr_assert_not_null(r.logs[t]);
    }

    pthread_t th[65];
    replay_arg_t args[64];
    for (int t = 0; t < r.threads; t++) {
        args[t] = (replay_arg_t){&r, t};
        cr_assert_eq(pthread_create(&th[t], NULL, replay_updater, &args[t]), 0);
    }
    cr_assert_eq(pthread_create(&th[r.threads], NULL, replay_iterator, &r), 0);
    for (int t = 0; t <= r.threads; t++)
        cr_assert_eq(pthread_join(th[t], NULL), 0);

    /* Replay each log against a plain model: every logged result must be
     * what a sequential map would have returned. */
    model_t *models = calloc((size_t)r.threads, sizeof *models);
    cr_assert_not_null(models);
    long counts[OP_KINDS][2] = {{0}};
    for (int t = 0; t < r.threads; t++) {
        model_t *m = &models[t];
        for (long i = 0; i < r.ops; i++) {
            const log_entry_t *e = &r.logs[t][i];
            bool had = m->present[e->k];
            uint64_t cur = m->value[e->k];
            int want_rc = 0;
            uint64_t want_out = 0;
            switch (e->op) {
            case OP_INSERT:
            case OP_UNIQUE:
                want_rc = had ? -EEXIST : 0;
                want_out = had && e->op == OP_UNIQUE ? cur : 0;
                if (!had) {
                    m->present[e->k] = true;
                    m->value[e->k] = e->val;
                }
                break;
            case OP_REPLACE:
                want_rc = had ? 1 : 0;
                want_out = had ? cur : 0;
                m->present[e->k] = true;
                m->value[e->k] = e->val;
                break;
            case OP_REMOVE:
                want_rc = had ? 0 : -ENOENT;
                want_out = had ? cur : 0;
                m->present[e->k] = false;
                break;
            default:
                want_rc = had ? 0 : -ENOENT;
                want_out = had ? cur : 0;
                break;
            }
            cr_assert_eq(e->rc, want_rc, "thread %d op %ld (kind %d, key %u): rc %d, replay %d", t,
                         i, e->op, e->k, e->rc, want_rc);
            cr_assert_eq(e->out, want_out,
                         "thread %d op %ld (kind %d, key %u): value %#lx, "
                         "replay %#lx",
                         t, i, e->op, e->k, e->out, want_out);
            /* Outcomes: replace inserted (0) or replaced (1); the others
             * failed or succeeded. */
            counts[e->op][e->op == OP_REPLACE ? e->rc == 1 : e->rc == 0]++;
        }
    }
    /* The mix really exercised both outcomes of every kind of call. */
    for (int op = 0; op < OP_KINDS; op++)
        cr_assert(counts[op][0] > 0 && counts[op][1] > 0, "op kind %d: outcomes %ld / %ld", op,
                  counts[op][0], counts[op][1]);

    /* The final map equals the replayed models: same count, every entry
     * visited once with the model's value, every modelled key found. */
    long expected = 0;
    for (int t = 0; t < r.threads; t++)
        for (uint32_t k = 0; k < KEYS_PER_THREAD; k++)
            expected += models[t].present[k];
    cr_assert_eq((long)moirai_map_count(r.map), expected);
    final_check_t f = {.models = models, .threads = r.threads};
    f.seen = calloc((size_t)r.threads * KEYS_PER_THREAD, 1);
    cr_assert_not_null(f.seen);
    cr_assert_eq(moirai_map_iterate(r.map, final_cb, &f), 0);
    cr_assert_eq(f.wrong, 0, "%ld entries not in the replayed model", f.wrong);
    cr_assert_eq(f.visited, expected);
    for (int t = 0; t < r.threads; t++) {
        for (uint32_t k = 0; k < KEYS_PER_THREAD; k++) {
            cr_assert_eq(f.seen[t * KEYS_PER_THREAD + k], models[t].present[k], "t %d k %u", t, k);
            pkey_t key = make_pkey(t, k);
            void *v = NULL;
            int rc = moirai_map_lookup(r.map, &key, sizeof key, &v);
            cr_assert_eq(rc, models[t].present[k] ? 0 : -ENOENT);
            if (rc == 0)
                cr_assert_eq(U(v), models[t].value[k]);
        }
    }

    cr_assert_eq(atomic_load(&r.foreign_bad), 0, "%ld foreign lookups returned another key's value",
                 atomic_load(&r.foreign_bad));
    cr_assert_eq(atomic_load(&r.iter_bad), 0, "%ld inconsistent entries seen while iterating",
                 atomic_load(&r.iter_bad));
    cr_assert_gt(atomic_load(&r.iter_passes), 0);
    /* The run went through resizes: from one bucket to tens of thousands
     * of entries and back, three times. How many resizes that takes
     * depends on how far behind the resizer thread runs (each resize
     * targets the size of the moment), but the first request is made
     * after a few dozen inserts, long before the run ends. */
    moirai_map_stats_t st;
    cr_assert_eq(moirai_map_stats(r.map, &st), 0);
    cr_assert_geq(st.resizes, 1, "the table never resized");
    cr_log_info("replay: %d threads x %ld ops, %ld entries left, %ld foreign hits, %ld "
                "concurrent iterations visiting %ld entries, %lu resizes",
                r.threads, r.ops, expected, atomic_load(&r.foreign_seen),
                atomic_load(&r.iter_passes), atomic_load(&r.iter_visits),
                (unsigned long)st.resizes);

    free(f.seen);
    free(models);
    for (int t = 0; t < r.threads; t++)
        free(r.logs[t]);
    free(r.logs);
    moirai_map_destroy(r.map);
}

/* ------------------------------------------------------------------------
 * Shared keys: insert_unique and remove races. */

typedef struct race {
    moirai_map_t *map;
    int threads;
    uint32_t keys;
    gate_t gate_insert;
    gate_t gate_remove;
    unsigned char *won_insert; /* threads * keys */
    uint64_t *told;            /* threads * keys: existing reported on -EEXIST */
    unsigned char *won_remove; /* threads * keys */
    uint64_t *removed_val;     /* threads * keys */
    atomic_long bad_rc;
} race_t;

typedef struct race_arg {
    race_t *r;
    int t;
} race_arg_t;

static void *race_thread(void *p)
{
    race_arg_t *a = p;
    race_t *r = a->r;
    int t = a->t;
    size_t base = (size_t)t * r->keys;

    gate_wait(&r->gate_insert);
    for (uint32_t k = 0; k < r->keys; k++) {
        void *existing = NULL;
        int rc = moirai_map_insert_unique(r->map, &k, sizeof k, V(t + 1), &existing);
        if (rc == 0)
            r->won_insert[base + k] = 1;
        else if (rc == -EEXIST)
            r->told[base + k] = U(existing);
        else
            atomic_fetch_add_explicit(&r->bad_rc, 1, memory_order_relaxed);
    }

    /* Everyone finished inserting before anyone removes. */
    gate_wait(&r->gate_remove);
    for (uint32_t k = 0; k < r->keys; k++) {
        /* Walk the keys from a different starting point per thread half
         * the time, the same order the other half: both collide a lot. */
        uint32_t kk = (t & 1) ? r->keys - 1 - k : k;
        void *old = NULL;
        int rc = moirai_map_remove(r->map, &kk, sizeof kk, &old);
        if (rc == 0) {
            r->won_remove[base + kk] = 1;
            r->removed_val[base + kk] = U(old);
        } else if (rc != -ENOENT) {
            atomic_fetch_add_explicit(&r->bad_rc, 1, memory_order_relaxed);
        }
    }
    return NULL;
}

Test(map_stress, shared_keys_exactly_one_winner, .timeout = 600)
{
    race_t r = {.map = tiny_map(), .threads = threads_param()};
    r.keys = (uint32_t)(ops_param() / 4);
    r.gate_insert.n = r.threads;
    r.gate_remove.n = r.threads;
    size_t cells = (size_t)r.threads * r.keys;
    r.won_insert = calloc(cells, 1);
    r.won_remove = calloc(cells, 1);
    r.told = calloc(cells, sizeof(uint64_t));
    r.removed_val = calloc(cells, sizeof(uint64_t));
    cr_assert(r.won_insert && r.won_remove && r.told && r.removed_val);

    pthread_t th[64];
    race_arg_t args[64];
    for (int t = 0; t < r.threads; t++) {
        args[t] = (race_arg_t){&r, t};
        cr_assert_eq(pthread_create(&th[t], NULL, race_thread, &args[t]), 0);
    }
    for (int t = 0; t < r.threads; t++)
        cr_assert_eq(pthread_join(th[t], NULL), 0);

    cr_assert_eq(atomic_load(&r.bad_rc), 0, "unexpected return codes");
    long contested = 0;
    for (uint32_t k = 0; k < r.keys; k++) {
        int winners = 0, winner = -1, removers = 0, remover = -1;
        for (int t = 0; t < r.threads; t++) {
            if (r.won_insert[(size_t)t * r.keys + k]) {
                winners++;
                winner = t;
            }
            if (r.won_remove[(size_t)t * r.keys + k]) {
                removers++;
                remover = t;
            }
        }
        cr_assert_eq(winners, 1, "key %u: %d insert_unique winners", k, winners);
        cr_assert_eq(removers, 1, "key %u: %d successful removes", k, removers);
        for (int t = 0; t < r.threads; t++) {
            if (t != winner) {
                cr_assert_eq(r.told[(size_t)t * r.keys + k], (uint64_t)winner + 1,
                             "key %u: loser %d told %lu, winner %d", k, t,
                             r.told[(size_t)t * r.keys + k], winner);
            }
        }
        cr_assert_eq(r.removed_val[(size_t)remover * r.keys + k], (uint64_t)winner + 1);
        contested += winner != 0;
    }
    cr_assert_eq(moirai_map_count(r.map), 0);
    for (uint32_t k = 0; k < r.keys; k += 7)
        cr_assert_eq(moirai_map_lookup(r.map, &k, sizeof k, NULL), -ENOENT);
    cr_log_info("shared keys: %u keys, %ld not won by thread 0", r.keys, contested);

    free(r.won_insert);
    free(r.won_remove);
    free(r.told);
    free(r.removed_val);
    moirai_map_destroy(r.map);
}

/* ------------------------------------------------------------------------
 * Replace and remove on hot keys: every value comes out exactly once. */

#define HOT_KEYS 8

typedef struct hot {
    moirai_map_t *map;
    int threads;
    long ops;
    gate_t gate;
    uint64_t **out; /* per thread: old values that came out, in order */
    long *out_n;
    atomic_long bad_rc;
} hot_t;

typedef struct hot_arg {
    hot_t *h;
    int t;
} hot_arg_t;

static void *hot_thread(void *p)
{
    hot_arg_t *a = p;
    hot_t *h = a->h;
    int t = a->t;
    uint64_t s = 0xdeadbeefull * (uint64_t)(t + 3);
    long n = 0;
    gate_wait(&h->gate);
    for (long i = 0; i < h->ops; i++) {
        uint32_t k = (uint32_t)(rnd(&s) % HOT_KEYS);
        uint64_t val = ((uint64_t)t << 40) | (uint64_t)(i + 1);
        void *old = NULL;
        int rc;
        if (rnd(&s) % 4 == 0) {
            rc = moirai_map_remove(h->map, &k, sizeof k, &old);
            if (rc == 0)
                h->out[t][n++] = U(old);
            else if (rc != -ENOENT)
                atomic_fetch_add_explicit(&h->bad_rc, 1, memory_order_relaxed);
        } else {
            rc = moirai_map_replace(h->map, &k, sizeof k, V(val), &old);
            if (rc == 1)
                h->out[t][n++] = U(old);
            else if (rc != 0)
                atomic_fetch_add_explicit(&h->bad_rc, 1, memory_order_relaxed);
        }
    }
    h->out_n[t] = n;
    return NULL;
}

static int hot_collect(void *arg, const void *key, size_t len, void *value)
{
    (void)key;
    (void)len;
    uint64_t **cursor = arg;
    *(*cursor)++ = U(value);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

Test(map_stress, replace_remove_values_come_out_exactly_once, .timeout = 600)
{
    hot_t h = {.map = tiny_map(), .threads = threads_param(), .ops = ops_param()};
    h.gate.n = h.threads;
    h.out = calloc((size_t)h.threads, sizeof *h.out);
    h.out_n = calloc((size_t)h.threads, sizeof *h.out_n);
    cr_assert(h.out && h.out_n);
    for (int t = 0; t < h.threads; t++) {
        h.out[t] = calloc((size_t)h.ops, sizeof(uint64_t));
        cr_assert_not_null(h.out[t]);
    }
    pthread_t th[64];
    hot_arg_t args[64];
    for (int t = 0; t < h.threads; t++) {
        args[t] = (hot_arg_t){&h, t};
        cr_assert_eq(pthread_create(&th[t], NULL, hot_thread, &args[t]), 0);
    }
    for (int t = 0; t < h.threads; t++)
        cr_assert_eq(pthread_join(th[t], NULL), 0);
    cr_assert_eq(atomic_load(&h.bad_rc), 0);

    /* Gather every value that came out plus what is left in the map.
     * Sorted, it must be exactly the set of values put in: value (t, i)
     * for every replace call, each once. */
    long total = HOT_KEYS;
    for (int t = 0; t < h.threads; t++)
        total += h.out_n[t];
    uint64_t *all = calloc((size_t)total, sizeof *all);
    cr_assert_not_null(all);
    uint64_t *cursor = all;
    for (int t = 0; t < h.threads; t++)
        for (long i = 0; i < h.out_n[t]; i++)
            *cursor++ = h.out[t][i];
    cr_assert_leq(moirai_map_count(h.map), HOT_KEYS);
    cr_assert_eq(moirai_map_iterate(h.map, hot_collect, &cursor), 0);
    long got = cursor - all;
    qsort(all, (size_t)got, sizeof *all, cmp_u64);

    /* The values put in, regenerated from the same random streams. */
    long put = 0;
    uint64_t *want = calloc((size_t)h.threads * (size_t)h.ops, sizeof *want);
    cr_assert_not_null(want);
    for (int t = 0; t < h.threads; t++) {
        uint64_t s = 0xdeadbeefull * (uint64_t)(t + 3);
        for (long i = 0; i < h.ops; i++) {
            (void)rnd(&s);
            if (rnd(&s) % 4 != 0)
                want[put++] = ((uint64_t)t << 40) | (uint64_t)(i + 1);
        }
    }
    qsort(want, (size_t)put, sizeof *want, cmp_u64);
    cr_assert_eq(got, put, "%ld values came out or remain, %ld were put in", got, put);
    for (long i = 0; i < put; i++)
        cr_assert_eq(all[i], want[i], "value %#lx lost or duplicated", want[i]);

    free(want);
    free(all);
    for (int t = 0; t < h.threads; t++)
        free(h.out[t]);
    free(h.out);
    free(h.out_n);
    moirai_map_destroy(h.map);
}

/* ------------------------------------------------------------------------
 * Visibility of completed removes and inserts. */

#define REMOVERS 2

typedef struct vis {
    moirai_map_t *map;
    uint32_t n; /* keys per remover, and inserts */
    gate_t gate;
    atomic_uint removed[REMOVERS]; /* keys removed so far, in order */
    atomic_uint inserted;          /* keys inserted so far, in order */
    atomic_int writers_left;
    atomic_long stale_found;      /* removed keys found after publication */
    atomic_long inserted_missing; /* published inserts not found */
    atomic_long checks;
    atomic_long bad_rc;
} vis_t;

/* Removal keys: (1 << 31) | remover << 24 | index; insert keys: index. */
static uint32_t rm_key(int remover, uint32_t i)
{
    return (1u << 31) | ((uint32_t)remover << 24) | i;
}

typedef struct vis_arg {
    vis_t *v;
    int id;
} vis_arg_t;

static void *vis_remover(void *p)
{
    vis_arg_t *a = p;
    vis_t *v = a->v;
    gate_wait(&v->gate);
    for (uint32_t i = 0; i < v->n; i++) {
        uint32_t key = rm_key(a->id, i);
        if (moirai_map_remove(v->map, &key, sizeof key, NULL) != 0)
            atomic_fetch_add_explicit(&v->bad_rc, 1, memory_order_relaxed);
        /* Release: a reader that reads i + 1 here happens-after the
         * remove returned. */
        atomic_store_explicit(&v->removed[a->id], i + 1, memory_order_release);
    }
    atomic_fetch_sub_explicit(&v->writers_left, 1, memory_order_release);
    return NULL;
}

static void *vis_inserter(void *p)
{
    vis_t *v = p;
    gate_wait(&v->gate);
    for (uint32_t i = 0; i < v->n; i++) {
        if (moirai_map_insert(v->map, &i, sizeof i, V(i + 1)) != 0)
            atomic_fetch_add_explicit(&v->bad_rc, 1, memory_order_relaxed);
        atomic_store_explicit(&v->inserted, i + 1, memory_order_release);
    }
    atomic_fetch_sub_explicit(&v->writers_left, 1, memory_order_release);
    return NULL;
}

static void *vis_reader(void *p)
{
    vis_arg_t *a = p;
    vis_t *v = a->v;
    uint64_t s = 0x1234567ull + (uint64_t)a->id;
    gate_wait(&v->gate);
    while (atomic_load_explicit(&v->writers_left, memory_order_acquire) > 0) {
        for (int r = 0; r < REMOVERS; r++) {
            /* Acquire pairs with the remover's release. */
            uint32_t done = atomic_load_explicit(&v->removed[r], memory_order_acquire);
            if (done == 0)
                continue;
            uint32_t probe[2] = {done - 1, (uint32_t)(rnd(&s) % done)};
            for (int j = 0; j < 2; j++) {
                uint32_t key = rm_key(r, probe[j]);
                if (moirai_map_lookup(v->map, &key, sizeof key, NULL) != -ENOENT)
                    atomic_fetch_add_explicit(&v->stale_found, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&v->checks, 1, memory_order_relaxed);
            }
        }
        uint32_t ins = atomic_load_explicit(&v->inserted, memory_order_acquire);
        if (ins > 0) {
            uint32_t probe[2] = {ins - 1, (uint32_t)(rnd(&s) % ins)};
            for (int j = 0; j < 2; j++) {
                void *val = NULL;
                if (moirai_map_lookup(v->map, &probe[j], sizeof probe[j], &val) != 0 ||
                    val != V(probe[j] + 1))
                    atomic_fetch_add_explicit(&v->inserted_missing, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&v->checks, 1, memory_order_relaxed);
            }
        }
    }
    return NULL;
}

Test(map_stress, removal_and_insert_visible_once_returned, .timeout = 600)
{
    vis_t v = {.map = tiny_map()};
    v.n = (uint32_t)(ops_param() / 2);
    int readers = threads_param() > 2 ? threads_param() - 2 : 2;
    v.gate.n = REMOVERS + 1 + readers;
    atomic_init(&v.writers_left, REMOVERS + 1);

    /* Pre-fill the keys the removers will take out. */
    for (int r = 0; r < REMOVERS; r++) {
        for (uint32_t i = 0; i < v.n; i++) {
            uint32_t key = rm_key(r, i);
            cr_assert_eq(moirai_map_insert(v.map, &key, sizeof key, V(1)), 0);
        }
    }

    pthread_t th[REMOVERS + 1 + 64];
    vis_arg_t args[REMOVERS + 64];
    int n = 0;
    for (int r = 0; r < REMOVERS; r++) {
        args[n] = (vis_arg_t){&v, r};
        cr_assert_eq(pthread_create(&th[n], NULL, vis_remover, &args[n]), 0);
        n++;
    }
    cr_assert_eq(pthread_create(&th[n++], NULL, vis_inserter, &v), 0);
    for (int i = 0; i < readers; i++) {
        args[REMOVERS + i] = (vis_arg_t){&v, i};
        cr_assert_eq(pthread_create(&th[n++], NULL, vis_reader, &args[REMOVERS + i]), 0);
    }
    for (int i = 0; i < n; i++)
        cr_assert_eq(pthread_join(th[i], NULL), 0);

    cr_assert_eq(atomic_load(&v.bad_rc), 0);
    cr_assert_eq(atomic_load(&v.stale_found), 0,
                 "%ld lookups found a key whose removal had returned and been published",
                 atomic_load(&v.stale_found));
    cr_assert_eq(atomic_load(&v.inserted_missing), 0,
                 "%ld lookups missed a key whose insert had returned and been published",
                 atomic_load(&v.inserted_missing));
    cr_assert_gt(atomic_load(&v.checks), 0);
    cr_assert_eq(moirai_map_count(v.map), v.n, "only the inserted keys remain");
    cr_log_info("visibility: %ld checks", atomic_load(&v.checks));
    moirai_map_destroy(v.map);
}

/* ------------------------------------------------------------------------
 * Published objects are complete when found. */

typedef struct obj {
    uint32_t key;
    uint32_t gen;
    uint64_t check;
} obj_t;

typedef struct pubs {
    moirai_map_t *map;
    obj_t *objs; /* writers * per_writer, freed only at the end */
    long per_writer;
    int writers;
    gate_t gate;
    atomic_int writers_left;
    atomic_long bad;
    atomic_long found;
} pubs_t;

typedef struct pubs_arg {
    pubs_t *p;
    int id;
} pubs_arg_t;

#define PUB_KEYS 64

static void *pubs_writer(void *arg)
{
    pubs_arg_t *a = arg;
    pubs_t *p = a->p;
    gate_wait(&p->gate);
    for (long i = 0; i < p->per_writer; i++) {
        obj_t *o = &p->objs[(long)a->id * p->per_writer + i];
        uint32_t key = (uint32_t)(i % PUB_KEYS);
        /* Plain writes, published only by the map's replace. */
        o->key = key;
        o->gen = (uint32_t)i;
        o->check = (uint64_t)key * 0x9e3779b97f4a7c15ull ^ (uint64_t)i;
        if (moirai_map_replace(p->map, &key, sizeof key, o, NULL) < 0)
            atomic_fetch_add_explicit(&p->bad, 1, memory_order_relaxed);
    }
    atomic_fetch_sub_explicit(&p->writers_left, 1, memory_order_release);
    return NULL;
}

static void *pubs_reader(void *arg)
{
    pubs_t *p = arg;
    uint64_t s = 77;
    gate_wait(&p->gate);
    while (atomic_load_explicit(&p->writers_left, memory_order_acquire) > 0) {
        uint32_t key = (uint32_t)(rnd(&s) % PUB_KEYS);
        void *v = NULL;
        if (moirai_map_lookup(p->map, &key, sizeof key, &v) == 0) {
            const obj_t *o = v;
            if (o->key != key || o->check != ((uint64_t)key * 0x9e3779b97f4a7c15ull ^ o->gen))
                atomic_fetch_add_explicit(&p->bad, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&p->found, 1, memory_order_relaxed);
        }
    }
    return NULL;
}

Test(map_stress, found_values_are_fully_published, .timeout = 600)
{
    pubs_t p = {.map = tiny_map(), .writers = 2, .per_writer = ops_param() / 2};
    p.objs = calloc((size_t)p.writers * (size_t)p.per_writer, sizeof *p.objs);
    cr_assert_not_null(p.objs);
    int readers = 2;
    p.gate.n = p.writers + readers;
    atomic_init(&p.writers_left, p.writers);
    pthread_t th[4];
    pubs_arg_t args[2];
    for (int i = 0; i < p.writers; i++) {
        args[i] = (pubs_arg_t){&p, i};
        cr_assert_eq(pthread_create(&th[i], NULL, pubs_writer, &args[i]), 0);
    }
    for (int i = 0; i < readers; i++)
        cr_assert_eq(pthread_create(&th[p.writers + i], NULL, pubs_reader, &p), 0);
    for (int i = 0; i < p.writers + readers; i++)
        cr_assert_eq(pthread_join(th[i], NULL), 0);
    cr_assert_eq(atomic_load(&p.bad), 0, "%ld incomplete objects seen", atomic_load(&p.bad));
    cr_assert_eq(moirai_map_count(p.map), PUB_KEYS);
    cr_log_info("publication: %ld objects found", atomic_load(&p.found));
    moirai_map_destroy(p.map);
    free(p.objs);
}

/* ------------------------------------------------------------------------
 * Replacement is atomic: a key that is only ever replaced is never missing,
 * and a remove that races with replacements of a present key still
 * removes it (it must not report -ENOENT because the entry it found was
 * swapped out under it). */

typedef struct churn {
    moirai_map_t *map;
    long ops;
    gate_t gate;
    atomic_int replacers_left;
    atomic_long missing;    /* lookups of the always-present key that failed */
    atomic_long bad_remove; /* removes of a present key that failed */
    atomic_long lookups;
    atomic_long removes;
} churn_t;

static const uint32_t KEY_STAY = 1;  /* only replaced */
static const uint32_t KEY_CYCLE = 2; /* removed by one thread, replaced by all */

static void *churn_replacer(void *p)
{
    churn_t *c = p;
    gate_wait(&c->gate);
    for (long i = 0; i < c->ops; i++) {
        uint32_t key = (i & 1) ? KEY_STAY : KEY_CYCLE;
        (void)moirai_map_replace(c->map, &key, sizeof key, V(i + 1), NULL);
    }
    atomic_fetch_sub_explicit(&c->replacers_left, 1, memory_order_release);
    return NULL;
}

static void *churn_reader(void *p)
{
    churn_t *c = p;
    gate_wait(&c->gate);
    while (atomic_load_explicit(&c->replacers_left, memory_order_acquire) > 0) {
        if (moirai_map_lookup(c->map, &KEY_STAY, sizeof KEY_STAY, NULL) != 0)
            atomic_fetch_add_explicit(&c->missing, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->lookups, 1, memory_order_relaxed);
    }
    return NULL;
}

/* The only thread that removes KEY_CYCLE: after it puts the key back, the
 * key stays present (replacers only replace or re-add it) until its own
 * next remove, which therefore must succeed. */
static void *churn_remover(void *p)
{
    churn_t *c = p;
    gate_wait(&c->gate);
    while (atomic_load_explicit(&c->replacers_left, memory_order_acquire) > 0) {
        if (moirai_map_remove(c->map, &KEY_CYCLE, sizeof KEY_CYCLE, NULL) != 0)
            atomic_fetch_add_explicit(&c->bad_remove, 1, memory_order_relaxed);
        (void)moirai_map_replace(c->map, &KEY_CYCLE, sizeof KEY_CYCLE, V(7), NULL);
        atomic_fetch_add_explicit(&c->removes, 1, memory_order_relaxed);
    }
    return NULL;
}

Test(map_stress, replace_is_atomic_for_lookups_and_removes, .timeout = 600)
{
    churn_t c = {.map = tiny_map(), .ops = ops_param()};
    enum { REPLACERS = 2 };
    c.gate.n = REPLACERS + 2;
    atomic_init(&c.replacers_left, REPLACERS);
    cr_assert_eq(moirai_map_insert(c.map, &KEY_STAY, sizeof KEY_STAY, V(1)), 0);
    cr_assert_eq(moirai_map_insert(c.map, &KEY_CYCLE, sizeof KEY_CYCLE, V(1)), 0);
    pthread_t th[REPLACERS + 2];
    for (int i = 0; i < REPLACERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, churn_replacer, &c), 0);
    cr_assert_eq(pthread_create(&th[REPLACERS], NULL, churn_reader, &c), 0);
    cr_assert_eq(pthread_create(&th[REPLACERS + 1], NULL, churn_remover, &c), 0);
    for (int i = 0; i < REPLACERS + 2; i++)
        cr_assert_eq(pthread_join(th[i], NULL), 0);
    cr_assert_eq(atomic_load(&c.missing), 0, "%ld lookups missed a key that was only replaced",
                 atomic_load(&c.missing));
    cr_assert_eq(atomic_load(&c.bad_remove), 0, "%ld removes of a present key failed",
                 atomic_load(&c.bad_remove));
    cr_assert_gt(atomic_load(&c.lookups), 0);
    cr_assert_gt(atomic_load(&c.removes), 0);
    cr_assert_eq(moirai_map_count(c.map), 2);
    cr_log_info("replace atomicity: %ld lookups, %ld remove cycles", atomic_load(&c.lookups),
                atomic_load(&c.removes));
    moirai_map_destroy(c.map);
}
