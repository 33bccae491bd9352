/* Per-worker values (moirai/sched/combinable.h): 10^6 increments made
 * through moirai_combinable_local() from parallel loops and tasks sum to
 * exactly 10^6 when combined; combine and for_each visit every value
 * exactly once; every value created is destroyed exactly once (counted);
 * a worker always gets its own slot and plain threads get one each; init
 * errors and -ENOMEM leave nothing behind; bad input is -EINVAL.
 *
 * Callbacks never call Criterion's asserts (they may run on workers): they
 * record what they saw and the test thread checks it afterwards. */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <moirai/core/spin.h>
#include <moirai/sched/combinable.h>
#include <moirai/sched/parallel.h>

#include "oom.h"
#include "sched_test_util.h"
#include "test_scale.h"

/* A value: the count of increments, which thread made it, and how often
 * the combine visited it. */
typedef struct counter {
    uint64_t count;
    pthread_t owner;
    int owner_index; /* moirai_sched_worker_index() at creation */
    long visits;
} counter_t;

typedef struct counts {
    _Atomic long inits;
    _Atomic long destroys;
    _Atomic long fail_inits; /* the next this many inits fail with -EIO */
    _Atomic int foreign;     /* a value was used by a thread other than its owner */
    /* Every value created, and how often destroy saw it (under `lock`). */
    pthread_mutex_t lock;
    int nvalues;
    void *values[64];
    int destroyed[64];
    int unknown_destroyed; /* destroy got a value init never made */
} counts_t;

/* True if every value created was destroyed exactly once. */
static bool each_destroyed_once(counts_t *c)
{
    pthread_mutex_lock(&c->lock);
    bool ok = c->unknown_destroyed == 0;
    for (int i = 0; i < c->nvalues; i++)
        ok = ok && c->destroyed[i] == 1;
    pthread_mutex_unlock(&c->lock);
    return ok;
}

static int counter_init(void *arg, void *value)
{
    counts_t *c = arg;
    counter_t *v = value;
    if (v->count != 0 || v->visits != 0)
        atomic_store(&c->foreign, 2); /* not zero-filled */
    long f = atomic_load(&c->fail_inits);
    while (f > 0) {
        if (atomic_compare_exchange_weak(&c->fail_inits, &f, f - 1))
            return -EIO;
    }
    v->owner = pthread_self();
    v->owner_index = moirai_sched_worker_index();
    pthread_mutex_lock(&c->lock);
    if (c->nvalues < 64)
        c->values[c->nvalues++] = value;
    pthread_mutex_unlock(&c->lock);
    atomic_fetch_add(&c->inits, 1);
    return 0;
}

static void counter_destroy(void *arg, void *value)
{
    counts_t *c = arg;
    pthread_mutex_lock(&c->lock);
    int i = 0;
    while (i < c->nvalues && c->values[i] != value)
        i++;
    if (i < c->nvalues)
        c->destroyed[i]++;
    else
        c->unknown_destroyed++;
    pthread_mutex_unlock(&c->lock);
    atomic_fetch_add(&c->destroys, 1);
}

/* Also counts the visit in the value itself (the test's bookkeeping, not
 * something combine callbacks normally do: the value is the test's own
 * memory, so casting the const away is sound). */
static void counter_add(void *arg, void *acc, const void *value)
{
    (void)arg;
    *(uint64_t *)acc += ((const counter_t *)value)->count;
    ((counter_t *)(uintptr_t)value)->visits++;
}

static void counter_check_visits(void *arg, void *value)
{
    long *bad = arg;
    if (((counter_t *)value)->visits != 1)
        (*bad)++;
}

static void counter_tally(void *arg, void *value)
{
    (void)value;
    (*(long *)arg)++;
}

static moirai_combinable_t *make_counter(moirai_sched_t *s, counts_t *counts)
{
    memset(counts, 0, sizeof *counts);
    pthread_mutex_init(&counts->lock, NULL);
    moirai_combinable_config_t cfg;
    moirai_combinable_config_init(&cfg, sizeof(counter_t));
    cfg.sched = s;
    cfg.init = counter_init;
    cfg.destroy = counter_destroy;
    cfg.arg = counts;
    moirai_combinable_t *c = NULL;
    cr_assert_eq(moirai_combinable_create(&c, &cfg), 0);
    cr_assert_not_null(c);
    return c;
}

/* One increment through local(), checking the value is the caller's. */
static void bump(moirai_combinable_t *c, counts_t *counts)
{
    counter_t *v;
    if (moirai_combinable_local(c, (void **)&v) != 0) {
        atomic_store(&counts->foreign, 3);
        return;
    }
    if (!pthread_equal(v->owner, pthread_self()))
        atomic_store(&counts->foreign, 1);
    v->count++;
}

typedef struct bump_arg {
    moirai_combinable_t *c;
    counts_t *counts;
} bump_arg_t;

static void bump_body(void *arg, size_t b, size_t e)
{
    bump_arg_t *a = arg;
    for (size_t i = b; i < e; i++)
        bump(a->c, a->counts);
}

/* A task that makes `per_task` increments. */
typedef struct bump_task_arg {
    bump_arg_t b;
    size_t per_task;
} bump_task_arg_t;

static int bump_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    bump_task_arg_t *t = arg;
    bump_body(&t->b, 0, t->per_task);
    return 0;
}

/* Half of the increments from a parallel loop (workers and the caller
 * taking part), half from spawned tasks and from a loop inside them. */
Test(combinable, parallel_increments_combine_exactly, .timeout = 120)
{
    const size_t total = 1000000;
    moirai_sched_t *s = make_sched(2);
    counts_t counts;
    moirai_combinable_t *c = make_counter(s, &counts);
    bump_arg_t a = {c, &counts};
    cr_assert_eq(moirai_parallel_for(s, 0, total / 2, 1000, bump_body, &a), 0);
    enum { TASKS = 100 };
    bump_task_arg_t ta = {a, total / 2 / TASKS};
    moirai_handle_t *h[TASKS];
    for (int i = 0; i < TASKS; i++) {
        cr_assert_eq(moirai_handle_create(&h[i]), 0);
        cr_assert_eq(moirai_sched_spawn(s, bump_task, &ta, NULL, h[i]), 0);
    }
    for (int i = 0; i < TASKS; i++) {
        cr_assert_eq(moirai_handle_join_timed(h[i], moirai_deadline_after(WAIT_NS), NULL), 0);
        moirai_handle_release(h[i]);
    }
    cr_assert_eq(atomic_load(&counts.foreign), 0, "a thread used a value it does not own (%d)",
                 atomic_load(&counts.foreign));

    uint64_t sum = 0;
    cr_assert_eq(moirai_combinable_combine(c, counter_add, NULL, &sum), 0);
    cr_assert_eq(sum, total, "combined %" PRIu64 ", expected %zu", sum, total);
    long bad = 0;
    cr_assert_eq(moirai_combinable_for_each(c, counter_check_visits, &bad), 0);
    cr_assert_eq(bad, 0, "%ld values were not combined exactly once", bad);
    long values = 0;
    cr_assert_eq(moirai_combinable_for_each(c, counter_tally, &values), 0);
    cr_assert_eq(values, atomic_load(&counts.inits), "for_each visited %ld of %ld values", values,
                 atomic_load(&counts.inits));
    /* At most one value per worker slot plus the calling thread. */
    cr_assert_leq(values, moirai_sched_worker_count(s) + 1);
    cr_assert_geq(values, 1);

    /* The scheduler may go first; the values stay until destroy. */
    drop_sched(s);
    sum = 0;
    cr_assert_eq(moirai_combinable_combine(c, counter_add, NULL, &sum), 0);
    cr_assert_eq(sum, total);
    cr_assert_eq(atomic_load(&counts.destroys), 0);
    moirai_combinable_destroy(c);
    cr_assert_eq(atomic_load(&counts.destroys), atomic_load(&counts.inits),
                 "%ld values created, %ld destroyed", atomic_load(&counts.inits),
                 atomic_load(&counts.destroys));
    cr_assert(each_destroyed_once(&counts), "a value was not destroyed exactly once");
}

/* Each worker gets one value, the same every time, created on it. */
typedef struct where_arg {
    moirai_combinable_t *c;
    void *seen[8];           /* the value pointer each worker index got first */
    _Atomic int mismatch;    /* a worker got another pointer later */
    _Atomic int wrong_index; /* the value was created on another index */
    pthread_mutex_t lock;
} where_arg_t;

static void where_body(void *arg, size_t b, size_t e)
{
    where_arg_t *w = arg;
    (void)b;
    (void)e;
    int idx = moirai_sched_worker_index();
    counter_t *v;
    if (moirai_combinable_local(w->c, (void **)&v) != 0) {
        atomic_store(&w->mismatch, 1);
        return;
    }
    if (idx < 0)
        return; /* the caller taking part: covered by the plain-thread test */
    if (v->owner_index != idx)
        atomic_store(&w->wrong_index, 1);
    pthread_mutex_lock(&w->lock);
    if (w->seen[idx] == NULL)
        w->seen[idx] = v;
    else if (w->seen[idx] != v)
        atomic_store(&w->mismatch, 1);
    pthread_mutex_unlock(&w->lock);
}

Test(combinable, one_value_per_worker, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    counts_t counts;
    moirai_combinable_t *c = make_counter(s, &counts);
    where_arg_t w;
    memset(&w, 0, sizeof w);
    w.c = c;
    pthread_mutex_init(&w.lock, NULL);
    for (int round = 0; round < 20; round++)
        cr_assert_eq(moirai_parallel_for(s, 0, 1000, 1, where_body, &w), 0);
    cr_assert_eq(atomic_load(&w.mismatch), 0, "a worker got two different values");
    cr_assert_eq(atomic_load(&w.wrong_index), 0, "a worker got another worker's value");
    if (w.seen[0] != NULL && w.seen[1] != NULL)
        cr_assert_neq(w.seen[0], w.seen[1], "two workers share a value");
    pthread_mutex_destroy(&w.lock);
    drop_sched(s);
    moirai_combinable_destroy(c);
    cr_assert_eq(atomic_load(&counts.destroys), atomic_load(&counts.inits));
    cr_assert(each_destroyed_once(&counts));
}

/* Plain threads (no scheduler configured): one value each, found again on
 * every call, and two combinables used alternately keep theirs apart. */
typedef struct thread_arg {
    moirai_combinable_t *a, *b;
    counts_t *ca, *cb;
    long n;
    void *first_a;
    int same; /* every call gave first_a */
} thread_arg_t;

static void *plain_thread(void *arg)
{
    thread_arg_t *t = arg;
    t->same = 1;
    for (long i = 0; i < t->n; i++) {
        counter_t *va, *vb;
        if (moirai_combinable_local(t->a, (void **)&va) != 0 ||
            moirai_combinable_local(t->b, (void **)&vb) != 0) {
            t->same = 0;
            return NULL;
        }
        if (t->first_a == NULL)
            t->first_a = va;
        if (va != t->first_a || (void *)va == (void *)vb)
            t->same = 0;
        va->count++;
        vb->count += 2;
    }
    return NULL;
}

Test(combinable, plain_threads_get_a_value_each, .timeout = 60)
{
    enum { THREADS = 4 };
    long n = scaled(100000);
    counts_t ca, cb;
    moirai_combinable_t *a = make_counter(NULL, &ca);
    moirai_combinable_t *b = make_counter(NULL, &cb);
    pthread_t th[THREADS];
    thread_arg_t args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (thread_arg_t){a, b, &ca, &cb, n, NULL, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, plain_thread, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_assert(args[i].same, "thread %d did not keep its own value", i);
    }
    uint64_t sa = 0, sb = 0;
    cr_assert_eq(moirai_combinable_combine(a, counter_add, NULL, &sa), 0);
    cr_assert_eq(moirai_combinable_combine(b, counter_add, NULL, &sb), 0);
    cr_assert_eq(sa, (uint64_t)(THREADS * n));
    cr_assert_eq(sb, (uint64_t)(2 * THREADS * n));
    cr_assert_eq(atomic_load(&ca.inits), THREADS);
    cr_assert_eq(atomic_load(&cb.inits), THREADS);
    cr_assert_eq(atomic_load(&ca.foreign), 0);
    moirai_combinable_destroy(a);
    moirai_combinable_destroy(b);
    cr_assert_eq(atomic_load(&ca.destroys), THREADS);
    cr_assert_eq(atomic_load(&cb.destroys), THREADS);
    cr_assert(each_destroyed_once(&ca) && each_destroyed_once(&cb));
}

/* A combinable without callbacks: values start zeroed and are aligned as
 * asked; combine and for_each on an empty one call nothing. */
static void never_combine(void *arg, void *acc, const void *value)
{
    (void)acc;
    (void)value;
    (*(int *)arg)++;
}

Test(combinable, defaults_zeroed_and_aligned, .timeout = 30)
{
    moirai_combinable_config_t cfg;
    moirai_combinable_config_init(&cfg, 3);
    cfg.value_align = 256;
    moirai_combinable_t *c;
    cr_assert_eq(moirai_combinable_create(&c, &cfg), 0);
    int calls = 0;
    uint64_t acc = 5;
    cr_assert_eq(moirai_combinable_combine(c, never_combine, &calls, &acc), 0);
    cr_assert_eq(calls, 0);
    cr_assert_eq(acc, 5);
    unsigned char *v;
    cr_assert_eq(moirai_combinable_local(c, (void **)&v), 0);
    cr_assert_eq((uintptr_t)v % 256, 0, "value not aligned to 256");
    cr_assert(v[0] == 0 && v[1] == 0 && v[2] == 0, "value not zeroed");
    v[0] = 9;
    unsigned char *again;
    cr_assert_eq(moirai_combinable_local(c, (void **)&again), 0);
    cr_assert_eq(again, v);
    cr_assert_eq(again[0], 9);
    moirai_combinable_destroy(c);
}

/* An init that fails: the error is returned, nothing is kept or
 * destroyed, and the next call creates the value. On a worker slot and on
 * a thread slot. */
typedef struct init_fail_arg {
    moirai_combinable_t *c;
    int first_rc, second_rc;
    void *untouched;
} init_fail_arg_t;

static int init_fail_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    init_fail_arg_t *a = arg;
    void *v = &a->untouched;
    a->first_rc = moirai_combinable_local(a->c, &v);
    a->untouched = v;
    a->second_rc = moirai_combinable_local(a->c, &v);
    return 0;
}

Test(combinable, init_error_keeps_nothing, .timeout = 30)
{
    moirai_sched_t *s = make_sched(1);
    counts_t counts;
    moirai_combinable_t *c = make_counter(s, &counts);
    init_fail_arg_t a = {c, 1, 1, NULL};
    /* Worker slot. */
    atomic_store(&counts.fail_inits, 1);
    cr_assert_eq(run_in_task(s, init_fail_task, &a), 0);
    cr_assert_eq(a.first_rc, -EIO);
    cr_assert_eq(a.untouched, &a.untouched, "*value was written on error");
    cr_assert_eq(a.second_rc, 0);
    /* Thread slot (this thread is not a worker). */
    atomic_store(&counts.fail_inits, 1);
    void *v = &v;
    cr_assert_eq(moirai_combinable_local(c, &v), -EIO);
    cr_assert_eq(v, (void *)&v);
    long values = 0;
    cr_assert_eq(moirai_combinable_for_each(c, counter_tally, &values), 0);
    cr_assert_eq(values, 1, "a failed value was kept");
    cr_assert_eq(moirai_combinable_local(c, &v), 0);
    values = 0;
    cr_assert_eq(moirai_combinable_for_each(c, counter_tally, &values), 0);
    cr_assert_eq(values, 2);
    drop_sched(s);
    moirai_combinable_destroy(c);
    cr_assert_eq(atomic_load(&counts.inits), 2);
    cr_assert_eq(atomic_load(&counts.destroys), 2);
    cr_assert(each_destroyed_once(&counts));
}

/* -ENOMEM: create with worker slots, and a thread's first local(). */
typedef struct oom_ctx {
    moirai_sched_t *sched;
    counts_t counts;
} oom_ctx_t;

static int oom_op(void *arg)
{
    oom_ctx_t *o = arg;
    memset(&o->counts, 0, sizeof o->counts);
    pthread_mutex_init(&o->counts.lock, NULL);
    moirai_combinable_config_t cfg;
    moirai_combinable_config_init(&cfg, sizeof(counter_t));
    cfg.sched = o->sched;
    cfg.init = counter_init;
    cfg.destroy = counter_destroy;
    cfg.arg = &o->counts;
    moirai_combinable_t *c;
    int rc = moirai_combinable_create(&c, &cfg);
    if (rc != 0)
        return rc;
    void *v = NULL;
    rc = moirai_combinable_local(c, &v);
    if (rc == 0 && v == NULL)
        rc = -EFAULT;
    moirai_combinable_destroy(c);
    return rc;
}

static void oom_balanced(void *arg, long n)
{
    oom_ctx_t *o = arg;
    (void)n;
    cr_assert_eq(atomic_load(&o->counts.inits), atomic_load(&o->counts.destroys));
    cr_assert(each_destroyed_once(&o->counts));
}

Test(combinable, enomem_leaves_nothing, .timeout = 60)
{
    static oom_ctx_t o;
    o.sched = make_sched(1);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(oom_op, oom_balanced, &o);
    moirai_test_oom_uninstall();
    /* The object, the worker values, the created flags, the thread slot. */
    cr_assert_eq(failures, 4, "%ld allocations could fail", failures);
    cr_assert_eq(atomic_load(&o.counts.inits), 1);
    cr_assert_eq(atomic_load(&o.counts.destroys), 1);
    drop_sched(o.sched);
}

Test(combinable, bad_input_is_einval, .timeout = 30)
{
    moirai_combinable_config_t cfg;
    moirai_combinable_config_init(&cfg, 8);
    moirai_combinable_t *c = NULL;
    cr_assert_eq(moirai_combinable_create(NULL, &cfg), -EINVAL);
    cr_assert_eq(moirai_combinable_create(&c, NULL), -EINVAL);
    cfg.value_size = 0;
    cr_assert_eq(moirai_combinable_create(&c, &cfg), -EINVAL);
    cfg.value_size = MOIRAI_COMBINABLE_VALUE_MAX + 1;
    cr_assert_eq(moirai_combinable_create(&c, &cfg), -EINVAL);
    cfg.value_size = 8;
    cfg.value_align = 24;
    cr_assert_eq(moirai_combinable_create(&c, &cfg), -EINVAL);
    cfg.value_align = 8192;
    cr_assert_eq(moirai_combinable_create(&c, &cfg), -EINVAL);
    cr_assert_null(c, "out was written on error");

    cfg.value_align = 0;
    cr_assert_eq(moirai_combinable_create(&c, &cfg), 0);
    void *v;
    uint64_t acc = 0;
    cr_assert_eq(moirai_combinable_local(NULL, &v), -EINVAL);
    cr_assert_eq(moirai_combinable_local(c, NULL), -EINVAL);
    cr_assert_eq(moirai_combinable_combine(NULL, counter_add, NULL, &acc), -EINVAL);
    cr_assert_eq(moirai_combinable_combine(c, NULL, NULL, &acc), -EINVAL);
    cr_assert_eq(moirai_combinable_combine(c, counter_add, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_combinable_for_each(NULL, counter_tally, &acc), -EINVAL);
    cr_assert_eq(moirai_combinable_for_each(c, NULL, NULL), -EINVAL);
    moirai_combinable_destroy(c);
    moirai_combinable_destroy(NULL);
    moirai_combinable_config_init(NULL, 8);
}

/* Two plain threads making their first value at the same moment both get
 * linked: for_each finds each thread's value exactly once (a push that
 * lost its compare-and-swap to the other must retry), and destroy frees
 * both (live.c checks nothing is left). The helper spins on the round
 * counter, so that the two first touches start within a few hundred
 * nanoseconds of each other, and the main thread's start is swept across
 * that delay. */
typedef struct first_touch {
    moirai_combinable_t *_Atomic c;
    _Atomic long round; /* the round the helper should join; -1 to stop */
    _Atomic long done;  /* the last round the helper finished */
    void *helper_value;
    int helper_rc;
} first_touch_t;

static void *first_touch_helper(void *arg)
{
    first_touch_t *f = arg;
    for (long r = 1;; r++) {
        long seen;
        for (unsigned spins = 0; (seen = atomic_load(&f->round)) != r && seen != -1; spins++) {
            if ((spins & 1023) == 1023)
                sched_yield(); /* a loaded machine: let the main thread run */
        }
        if (seen == -1)
            return NULL;
        for (long i = 0; i < (r / 32) % 32; i++)
            moirai_cpu_relax();
        f->helper_rc = moirai_combinable_local(atomic_load(&f->c), &f->helper_value);
        atomic_store(&f->done, r);
    }
}

typedef struct found {
    void *want[2];
    int hits[2];
    long total;
} found_t;

static void count_found(void *arg, void *value)
{
    found_t *f = arg;
    f->total++;
    for (int i = 0; i < 2; i++)
        if (value == f->want[i])
            f->hits[i]++;
}

Test(combinable, first_values_made_at_once_are_all_linked, .timeout = 60)
{
    static first_touch_t f;
    f = (first_touch_t){.c = NULL, .round = 0, .done = 0};
    long rounds = scaled(100000);
    pthread_t helper;
    cr_assert_eq(pthread_create(&helper, NULL, first_touch_helper, &f), 0);
    /* On two CPUs of their own where the machine has them, so that they
     * run at the same time rather than in turns. */
    cpu_set_t allowed;
    cr_assert_eq(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    int cpus[2], ncpus = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && ncpus < 2; cpu++)
        if (CPU_ISSET(cpu, &allowed))
            cpus[ncpus++] = cpu;
    if (ncpus == 2) {
        for (int i = 0; i < 2; i++) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpus[i], &one);
            cr_assert_eq(pthread_setaffinity_np(i == 0 ? pthread_self() : helper, sizeof one, &one),
                         0);
        }
    }
    for (long r = 1; r <= rounds; r++) {
        moirai_combinable_config_t cfg;
        moirai_combinable_config_init(&cfg, sizeof(uint64_t));
        moirai_combinable_t *c = NULL;
        cr_assert_eq(moirai_combinable_create(&c, &cfg), 0);
        atomic_store(&f.c, c);
        atomic_store(&f.round, r);
        /* The helper needs a few hundred nanoseconds to see the round:
         * delays on both sides, swept over that range, make the two
         * pushes meet. */
        for (long i = 0; i < r % 32; i++)
            moirai_cpu_relax();
        void *mine = NULL;
        cr_assert_eq(moirai_combinable_local(c, &mine), 0);
        for (unsigned spins = 0; atomic_load(&f.done) != r; spins++) {
            if ((spins & 1023) == 1023)
                sched_yield();
        }
        cr_assert_eq(f.helper_rc, 0);
        found_t found = {{mine, f.helper_value}, {0, 0}, 0};
        cr_assert_neq(mine, f.helper_value);
        cr_assert_eq(moirai_combinable_for_each(c, count_found, &found), 0);
        cr_assert(found.total == 2 && found.hits[0] == 1 && found.hits[1] == 1,
                  "round %ld: for_each saw %ld values, the main thread's %d times, the "
                  "helper's %d times",
                  r, found.total, found.hits[0], found.hits[1]);
        moirai_combinable_destroy(c);
    }
    atomic_store(&f.round, -1);
    cr_assert_eq(pthread_join(helper, NULL), 0);
}
