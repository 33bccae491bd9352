/* Loops and reductions that can fail (moirai/sched/parallel_fallible.h):
 * a failing piece stops the loop and its value reaches the caller; where
 * the schedule is deterministic (no scheduler, or one worker running the
 * loop from inside a task, where every join runs its halves in order on
 * that worker) exactly the pieces up to the failing one start; a cancel
 * token stops the loop with -ECANCELED; pieces that started have finished
 * when the call returns; a 4 KiB accumulator reduces exactly, in index
 * order; every accumulator identity set up is destroyed exactly once (or
 * handed over as the result); -ENOMEM, -EINVAL and -ESHUTDOWN are reached
 * and leave the result untouched.
 *
 * Callbacks never call Criterion's asserts (they may run on workers): they
 * record what they saw and the test thread checks it afterwards. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <moirai/core/handle.h>
#include <moirai/sched/parallel_fallible.h>

#include "oom.h"
#include "sched_test_util.h"
#include "test_scale.h"

/* ---- parallel_for_fallible ---- */

typedef struct loop {
    size_t n;
    size_t fail_at;  /* the piece containing this index fails; SIZE_MAX: none */
    int fail_rc;     /* what it returns */
    size_t fail_at2; /* a second failing index; SIZE_MAX: none */
    int fail_rc2;
    size_t cancel_at; /* the piece containing this index cancels `handle`; SIZE_MAX: none */
    moirai_handle_t *handle;
    unsigned spin;              /* busy iterations per index, to make pieces take a while */
    _Atomic size_t starts;      /* pieces entered */
    _Atomic size_t finishes;    /* pieces returned */
    _Atomic uint8_t *hits;      /* hits[i]: times index i was in a started piece */
    _Atomic size_t max_started; /* highest index of a started piece */
} loop_t;

static void loop_init(loop_t *l, size_t n)
{
    memset(l, 0, sizeof *l);
    l->n = n;
    l->fail_at = SIZE_MAX;
    l->cancel_at = SIZE_MAX;
    l->fail_rc = -EIO;
    l->fail_at2 = SIZE_MAX;
    l->hits = calloc(n, sizeof *l->hits);
    cr_assert_not_null(l->hits);
}

static void loop_fini(loop_t *l)
{
    free((void *)l->hits);
}

static int loop_body(void *arg, size_t b, size_t e)
{
    loop_t *l = arg;
    atomic_fetch_add(&l->starts, 1);
    size_t seen = atomic_load(&l->max_started);
    while (e - 1 > seen && !atomic_compare_exchange_weak(&l->max_started, &seen, e - 1)) {
    }
    int rc = 0;
    for (size_t i = b; i < e; i++) {
        atomic_fetch_add_explicit(&l->hits[i], 1, memory_order_relaxed);
        for (volatile unsigned k = 0; k < l->spin; k++) {
        }
        if (i == l->fail_at)
            rc = l->fail_rc;
        if (i == l->fail_at2)
            rc = l->fail_rc2;
        if (i == l->cancel_at)
            (void)moirai_handle_cancel(l->handle);
    }
    atomic_fetch_add(&l->finishes, 1);
    return rc;
}

/* How many of [0, n) were in a started piece, and whether any twice. */
static size_t loop_hit_count(loop_t *l, bool *twice)
{
    size_t c = 0;
    *twice = false;
    for (size_t i = 0; i < l->n; i++) {
        uint8_t h = atomic_load(&l->hits[i]);
        c += h != 0;
        if (h > 1)
            *twice = true;
    }
    return c;
}

Test(parallel_fallible, success_covers_every_index_once, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    size_t grains[] = {0, 1, 7, 1000};
    for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++) {
        loop_t l;
        loop_init(&l, 10000);
        cr_assert_eq(moirai_parallel_for_fallible(s, 0, l.n, grains[g], loop_body, &l, NULL), 0);
        bool twice;
        cr_assert_eq(loop_hit_count(&l, &twice), l.n, "grain %zu: an index was never visited",
                     grains[g]);
        cr_assert(!twice, "grain %zu: an index was visited twice", grains[g]);
        loop_fini(&l);
    }
    /* An empty range calls nothing and succeeds. */
    loop_t l;
    loop_init(&l, 1);
    cr_assert_eq(moirai_parallel_for_fallible(s, 5, 5, 0, loop_body, &l, NULL), 0);
    cr_assert_eq(atomic_load(&l.starts), 0);
    loop_fini(&l);
    drop_sched(s);
}

/* Without a scheduler the pieces run in index order on the caller: the
 * failing piece is the last one to start. */
Test(parallel_fallible, error_stops_sequential_loop_exactly, .timeout = 30)
{
    loop_t l;
    loop_init(&l, 1000);
    l.fail_at = 100;
    int rc = moirai_parallel_for_fallible(NULL, 0, l.n, 1, loop_body, &l, NULL);
    cr_assert_eq(rc, -EIO);
    cr_assert_eq(atomic_load(&l.starts), 101, "%zu pieces started; 101 expected",
                 atomic_load(&l.starts));
    cr_assert_eq(atomic_load(&l.max_started), 100, "a piece after the failing one started");
    loop_fini(&l);
}

/* One worker running the loop from inside a task: every join pushes its
 * right half and runs the left one first, and nobody steals, so the pieces
 * run in index order on that worker, through the real join path. */
typedef struct in_task {
    loop_t *loop;
    size_t grain;
    int rc;
} in_task_t;

static int loop_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)result;
    in_task_t *t = arg;
    t->rc = moirai_parallel_for_fallible(NULL, 0, t->loop->n, t->grain, loop_body, t->loop, cancel);
    return t->rc;
}

Test(parallel_fallible, error_stops_loop_on_one_worker_exactly, .timeout = 30)
{
    moirai_sched_t *s = make_sched(1);
    loop_t l;
    loop_init(&l, 4096);
    l.fail_at = 1234;
    in_task_t t = {&l, 1, 0};
    cr_assert_eq(run_in_task(s, loop_task, &t), -EIO);
    cr_assert_eq(t.rc, -EIO);
    cr_assert_eq(atomic_load(&l.starts), 1235, "%zu pieces started; 1235 expected",
                 atomic_load(&l.starts));
    cr_assert_eq(atomic_load(&l.max_started), 1234, "a piece after the failing one started");
    loop_fini(&l);
    drop_sched(s);
}

/* On two workers with the caller taking part, a failure in the first piece
 * stops the loop long before its end, the error reaches the caller, and
 * every piece that started has finished when the call returns. */
Test(parallel_fallible, error_stops_parallel_loop, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    for (int round = 0; round < 5; round++) {
        loop_t l;
        loop_init(&l, 20000);
        l.spin = 200;
        l.fail_at = 0;
        l.fail_rc = 42; /* any non-zero value reaches the caller as it is */
        int rc = moirai_parallel_for_fallible(s, 0, l.n, 1, loop_body, &l, NULL);
        cr_assert_eq(rc, 42);
        size_t starts = atomic_load(&l.starts);
        cr_assert_eq(atomic_load(&l.finishes), starts, "a started piece had not finished");
        cr_assert_lt(starts, l.n, "round %d: every piece started despite the first one failing",
                     round);
        bool twice;
        (void)loop_hit_count(&l, &twice);
        cr_assert(!twice);
        loop_fini(&l);
    }
    drop_sched(s);
}

/* Pieces failing with different values at both ends: the call returns
 * one of them. */
Test(parallel_fallible, one_of_several_errors_is_returned, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    for (int round = 0; round < 10; round++) {
        loop_t l;
        loop_init(&l, 1000);
        l.fail_at = 0;
        l.fail_rc = -EPIPE;
        l.fail_at2 = 999;
        l.fail_rc2 = -EIO;
        int rc = moirai_parallel_for_fallible(s, 0, l.n, 1, loop_body, &l, NULL);
        cr_assert(rc == -EPIPE || rc == -EIO, "returned %d", rc);
        cr_assert_eq(atomic_load(&l.finishes), atomic_load(&l.starts));
        loop_fini(&l);
    }
    drop_sched(s);
}

/* A token already cancelled: nothing starts. */
Test(parallel_fallible, cancelled_token_runs_nothing, .timeout = 30)
{
    moirai_sched_t *s = make_sched(2);
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    /* A handle that never had a task: cancelling finishes it, and its
     * token reads cancelled. */
    cr_assert_eq(moirai_handle_cancel(h), 0);
    const moirai_cancel_token_t *tok = moirai_handle_token(h);
    cr_assert(moirai_cancel_token_is_cancelled(tok));
    moirai_sched_t *scheds[] = {s, NULL};
    for (int k = 0; k < 2; k++) {
        loop_t l;
        loop_init(&l, 1000);
        cr_assert_eq(moirai_parallel_for_fallible(scheds[k], 0, l.n, 0, loop_body, &l, tok),
                     -ECANCELED);
        cr_assert_eq(atomic_load(&l.starts), 0, "a piece started under a cancelled token");
        loop_fini(&l);
    }
    moirai_handle_release(h);
    drop_sched(s);
}

/* A task's loop whose piece k cancels the task: the loop stops with
 * -ECANCELED after exactly k + 1 pieces on one worker, and well before the
 * end on two. */
typedef struct cancel_run {
    loop_t loop;
    moirai_sched_t *sched; /* NULL: the task's own scheduler */
    int rc;
} cancel_run_t;

static int cancelling_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)result;
    cancel_run_t *c = arg;
    c->rc = moirai_parallel_for_fallible(c->sched, 0, c->loop.n, 1, loop_body, &c->loop, cancel);
    return c->rc;
}

static void run_cancelling(moirai_sched_t *s, cancel_run_t *c)
{
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    c->loop.handle = h;
    cr_assert_eq(moirai_sched_spawn(s, cancelling_task, c, NULL, h), 0);
    int rc = moirai_handle_join_timed(h, moirai_deadline_after(WAIT_NS), NULL);
    cr_assert_eq(rc, -ECANCELED, "the task returned %d", rc);
    moirai_handle_release(h);
}

Test(parallel_fallible, cancel_during_loop_stops_it, .timeout = 60)
{
    moirai_sched_t *s1 = make_sched(1);
    cancel_run_t c;
    loop_init(&c.loop, 4096);
    c.loop.cancel_at = 700;
    c.sched = NULL;
    run_cancelling(s1, &c);
    cr_assert_eq(c.rc, -ECANCELED);
    cr_assert_eq(atomic_load(&c.loop.starts), 701, "%zu pieces started; 701 expected",
                 atomic_load(&c.loop.starts));
    loop_fini(&c.loop);
    drop_sched(s1);

    moirai_sched_t *s2 = make_sched(2);
    loop_init(&c.loop, 20000);
    c.loop.spin = 200;
    c.loop.cancel_at = 0;
    run_cancelling(s2, &c);
    cr_assert_eq(c.rc, -ECANCELED);
    cr_assert_lt(atomic_load(&c.loop.starts), c.loop.n);
    cr_assert_eq(atomic_load(&c.loop.finishes), atomic_load(&c.loop.starts));
    loop_fini(&c.loop);
    drop_sched(s2);
}

/* An error recorded before the cancel stays the result. */
Test(parallel_fallible, error_before_cancel_wins, .timeout = 30)
{
    moirai_sched_t *s1 = make_sched(1);
    cancel_run_t c;
    loop_init(&c.loop, 1000);
    c.loop.fail_at = 10;
    c.loop.fail_rc = -EPIPE;
    c.loop.cancel_at = 10; /* the same piece: it fails after cancelling */
    c.sched = NULL;
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    c.loop.handle = h;
    cr_assert_eq(moirai_sched_spawn(s1, cancelling_task, &c, NULL, h), 0);
    (void)moirai_handle_join_timed(h, moirai_deadline_after(WAIT_NS), NULL);
    moirai_handle_release(h);
    /* The piece's own error is recorded as it returns; the token is only
     * looked at before later pieces, which the error already stopped. */
    cr_assert_eq(c.rc, -EPIPE);
    cr_assert_eq(atomic_load(&c.loop.starts), 11);
    loop_fini(&c.loop);
    drop_sched(s1);
}

static int never(void *arg, size_t b, size_t e)
{
    (void)b;
    (void)e;
    atomic_fetch_add((_Atomic int *)arg, 1);
    return 0;
}

Test(parallel_fallible, for_bad_input_is_einval, .timeout = 30)
{
    _Atomic int ran = 0;
    cr_assert_eq(moirai_parallel_for_fallible(NULL, 0, 10, 0, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_parallel_for_fallible(NULL, 10, 9, 0, never, &ran, NULL), -EINVAL);
    cr_assert_eq(atomic_load(&ran), 0);
}

/* ---- parallel_reduce_fallible ---- */

/* A 4 KiB accumulator: per-bucket sums, plus the first and last index
 * folded, so that combining out of index order would show. */
#define BUCKETS 510
typedef struct big_acc {
    uint64_t sum[BUCKETS];
    uint64_t first; /* UINT64_MAX: no index yet */
    uint64_t last;
} big_acc_t;
_Static_assert(sizeof(big_acc_t) == 4096, "the accumulator is 4 KiB");

typedef struct reduce_probe {
    _Atomic long identities;  /* accumulators identity set up */
    _Atomic long destroys;    /* accumulators destroyed */
    _Atomic long chunks;      /* chunk calls entered */
    size_t fail_chunk_at;     /* chunk containing this index fails with -EIO; SIZE_MAX: none */
    long fail_identity_after; /* identity calls after this many fail (-ENOSPC); -1: none */
    long fail_combine_after;  /* combine calls after this many fail (-EPIPE); -1: none */
    _Atomic long combines;
    _Atomic int order_broken; /* combine saw a right part not following the left */
} reduce_probe_t;

static void probe_init(reduce_probe_t *p)
{
    memset(p, 0, sizeof *p);
    p->fail_chunk_at = SIZE_MAX;
    p->fail_identity_after = -1;
    p->fail_combine_after = -1;
}

static int big_identity(void *arg, void *acc)
{
    reduce_probe_t *p = arg;
    long k = atomic_fetch_add(&p->identities, 1);
    if (p->fail_identity_after >= 0 && k >= p->fail_identity_after) {
        atomic_fetch_sub(&p->identities, 1); /* not set up */
        return -ENOSPC;
    }
    big_acc_t *a = acc;
    memset(a, 0, sizeof *a);
    a->first = UINT64_MAX;
    return 0;
}

static int big_chunk(void *arg, size_t b, size_t e, void *acc)
{
    reduce_probe_t *p = arg;
    big_acc_t *a = acc;
    atomic_fetch_add(&p->chunks, 1);
    for (size_t i = b; i < e; i++) {
        if (i == p->fail_chunk_at)
            return -EIO;
        a->sum[i % BUCKETS] += i;
        if (a->first == UINT64_MAX)
            a->first = i;
        a->last = i;
    }
    return 0;
}

static int big_combine(void *arg, void *acc, void *right)
{
    reduce_probe_t *p = arg;
    long k = atomic_fetch_add(&p->combines, 1);
    if (p->fail_combine_after >= 0 && k >= p->fail_combine_after)
        return -EPIPE;
    big_acc_t *a = acc;
    const big_acc_t *r = right;
    if (r->first != UINT64_MAX) {
        if (a->first == UINT64_MAX) {
            a->first = r->first;
        } else if (r->first != a->last + 1) {
            atomic_store(&p->order_broken, 1);
        }
        a->last = r->last;
    }
    for (int i = 0; i < BUCKETS; i++)
        a->sum[i] += r->sum[i];
    return 0;
}

static void big_destroy(void *arg, void *acc)
{
    (void)acc;
    reduce_probe_t *p = arg;
    atomic_fetch_add(&p->destroys, 1);
}

static const moirai_reduce_fallible_desc_t big_desc = {
    sizeof(big_acc_t), 0, big_identity, big_chunk, big_combine, big_destroy,
};

/* What a sequential fold of [0, n) gives. */
static void big_expected(size_t n, big_acc_t *out)
{
    memset(out, 0, sizeof *out);
    out->first = n > 0 ? 0 : UINT64_MAX;
    out->last = n > 0 ? n - 1 : 0;
    for (size_t i = 0; i < n; i++)
        out->sum[i % BUCKETS] += i;
}

typedef struct reduce_in_task {
    size_t n, grain;
    reduce_probe_t *probe;
    big_acc_t *result;
    int rc;
} reduce_in_task_t;

static int reduce_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)result;
    reduce_in_task_t *t = arg;
    t->rc = moirai_parallel_reduce_fallible(NULL, 0, t->n, t->grain, &big_desc, t->probe, cancel,
                                            t->result);
    return t->rc;
}

Test(parallel_fallible, big_accumulator_reduces_exactly, .timeout = 120)
{
    moirai_sched_t *s = make_sched(2);
    size_t n = (size_t)scaled(200000);
    big_acc_t *want = malloc(sizeof *want);
    big_acc_t *got = malloc(sizeof *got);
    cr_assert(want != NULL && got != NULL);
    big_expected(n, want);
    size_t grains[] = {0, 1000, 97};
    for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++) {
        /* From outside the pool, from inside a task, and with no scheduler. */
        for (int where = 0; where < 3; where++) {
            reduce_probe_t p;
            probe_init(&p);
            memset(got, 0xab, sizeof *got);
            int rc;
            if (where == 0) {
                rc = moirai_parallel_reduce_fallible(s, 0, n, grains[g], &big_desc, &p, NULL, got);
            } else if (where == 1) {
                reduce_in_task_t t = {n, grains[g], &p, got, 1};
                cr_assert_eq(run_in_task(s, reduce_task, &t), 0);
                rc = t.rc;
            } else {
                rc = moirai_parallel_reduce_fallible(NULL, 0, n, grains[g], &big_desc, &p, NULL,
                                                     got);
            }
            cr_assert_eq(rc, 0, "grain %zu where %d: %d", grains[g], where, rc);
            cr_assert(memcmp(got, want, sizeof *want) == 0,
                      "grain %zu where %d: the result differs from the sequential fold", grains[g],
                      where);
            cr_assert_eq(atomic_load(&p.order_broken), 0);
            /* Every accumulator but the result was destroyed once. */
            cr_assert_eq(atomic_load(&p.identities), atomic_load(&p.destroys) + 1,
                         "%ld set up, %ld destroyed", atomic_load(&p.identities),
                         atomic_load(&p.destroys));
        }
    }
    free(want);
    free(got);
    drop_sched(s);
}

/* Small accumulators with a stricter alignment than max_align_t also go
 * to the heap; the result is the same. */
typedef struct aligned_sum {
    alignas(64) uint64_t v;
} aligned_sum_t;

static int as_identity(void *arg, void *acc)
{
    (void)arg;
    if (((uintptr_t)acc & 63) != 0)
        return -EFAULT; /* misaligned: fails the test through the result */
    ((aligned_sum_t *)acc)->v = 0;
    return 0;
}

static int as_chunk(void *arg, size_t b, size_t e, void *acc)
{
    (void)arg;
    for (size_t i = b; i < e; i++)
        ((aligned_sum_t *)acc)->v += i;
    return 0;
}

static int as_combine(void *arg, void *acc, void *right)
{
    (void)arg;
    ((aligned_sum_t *)acc)->v += ((aligned_sum_t *)right)->v;
    return 0;
}

Test(parallel_fallible, aligned_accumulator, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    moirai_reduce_fallible_desc_t d = {
        sizeof(aligned_sum_t), 64, as_identity, as_chunk, as_combine, NULL};
    aligned_sum_t r;
    cr_assert_eq(moirai_parallel_reduce_fallible(s, 0, 100000, 10, &d, NULL, NULL, &r), 0);
    cr_assert_eq(r.v, (uint64_t)100000 * 99999 / 2);
    drop_sched(s);
}

/* A failing chunk, identity or combine: its value is returned, the result
 * is untouched and every accumulator set up is destroyed. */
static void check_failure(moirai_sched_t *s, reduce_probe_t *p, int want_rc, size_t grain)
{
    big_acc_t *got = malloc(sizeof *got);
    cr_assert_not_null(got);
    memset(got, 0xab, sizeof *got);
    int rc = moirai_parallel_reduce_fallible(s, 0, 50000, grain, &big_desc, p, NULL, got);
    cr_assert_eq(rc, want_rc, "returned %d, expected %d", rc, want_rc);
    for (size_t i = 0; i < sizeof *got; i++)
        cr_assert_eq(((unsigned char *)got)[i], 0xab, "the result was written on failure");
    cr_assert_eq(atomic_load(&p->identities), atomic_load(&p->destroys),
                 "%ld accumulators set up, %ld destroyed", atomic_load(&p->identities),
                 atomic_load(&p->destroys));
    free(got);
}

Test(parallel_fallible, reduce_failures_destroy_everything, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    moirai_sched_t *where[] = {s, NULL};
    for (int k = 0; k < 2; k++) {
        reduce_probe_t p;
        probe_init(&p);
        p.fail_chunk_at = 25000;
        check_failure(where[k], &p, -EIO, 100);

        probe_init(&p);
        p.fail_identity_after = 7;
        check_failure(where[k], &p, -ENOSPC, 100);

        probe_init(&p);
        p.fail_combine_after = 3;
        check_failure(where[k], &p, -EPIPE, 100);
    }
    /* Sequentially the failing chunk is the last to start. */
    reduce_probe_t p;
    probe_init(&p);
    p.fail_chunk_at = 250; /* in the 3rd chunk of 100 */
    check_failure(NULL, &p, -EIO, 100);
    cr_assert_eq(atomic_load(&p.chunks), 3);
    drop_sched(s);
}

Test(parallel_fallible, reduce_cancelled_token, .timeout = 30)
{
    moirai_handle_t *h;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_handle_cancel(h), 0);
    reduce_probe_t p;
    probe_init(&p);
    big_acc_t *got = malloc(sizeof *got);
    cr_assert_not_null(got);
    memset(got, 0xab, sizeof *got);
    cr_assert_eq(moirai_parallel_reduce_fallible(NULL, 0, 1000, 10, &big_desc, &p,
                                                 moirai_handle_token(h), got),
                 -ECANCELED);
    cr_assert_eq(atomic_load(&p.identities), 0);
    cr_assert_eq(atomic_load(&p.chunks), 0);
    cr_assert_eq(((unsigned char *)got)[0], 0xab);
    free(got);
    moirai_handle_release(h);
}

Test(parallel_fallible, reduce_empty_range_is_identity, .timeout = 30)
{
    reduce_probe_t p;
    probe_init(&p);
    big_acc_t *got = malloc(sizeof *got);
    cr_assert_not_null(got);
    memset(got, 0xab, sizeof *got);
    cr_assert_eq(moirai_parallel_reduce_fallible(NULL, 3, 3, 0, &big_desc, &p, NULL, got), 0);
    cr_assert_eq(got->first, UINT64_MAX);
    cr_assert_eq(got->sum[0], 0);
    cr_assert_eq(atomic_load(&p.identities), 1);
    cr_assert_eq(atomic_load(&p.destroys), 0, "the result was destroyed");
    /* A failing identity on an empty range is returned too. */
    probe_init(&p);
    p.fail_identity_after = 0;
    memset(got, 0xab, sizeof *got);
    cr_assert_eq(moirai_parallel_reduce_fallible(NULL, 3, 3, 0, &big_desc, &p, NULL, got), -ENOSPC);
    cr_assert_eq(((unsigned char *)got)[0], 0xab);
    free(got);
}

/* -ENOMEM: every allocation of a 4 KiB reduction made to fail in turn. */
typedef struct oom_ctx {
    moirai_sched_t *sched;
    reduce_probe_t probe;
    big_acc_t result;
} oom_ctx_t;

static int oom_op(void *arg)
{
    oom_ctx_t *c = arg;
    probe_init(&c->probe);
    memset(&c->result, 0xab, sizeof c->result);
    return moirai_parallel_reduce_fallible(c->sched, 0, 640, 10, &big_desc, &c->probe, NULL,
                                           &c->result);
}

static void oom_unchanged(void *arg, long n)
{
    oom_ctx_t *c = arg;
    (void)n;
    cr_assert_eq(((unsigned char *)&c->result)[0], 0xab, "the result was written on -ENOMEM");
    cr_assert_eq(atomic_load(&c->probe.identities), atomic_load(&c->probe.destroys),
                 "an accumulator leaked on -ENOMEM");
}

Test(parallel_fallible, reduce_enomem_sequential_sweep, .timeout = 60)
{
    static oom_ctx_t c;
    c.sched = NULL;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(oom_op, oom_unchanged, &c);
    moirai_test_oom_uninstall();
    /* 64 pieces: the top accumulator and one per split (63). */
    cr_assert_eq(failures, 64, "%ld allocations could fail", failures);
    big_acc_t want;
    big_expected(640, &want);
    cr_assert(memcmp(&c.result, &want, sizeof want) == 0);
}

Test(parallel_fallible, reduce_enomem_on_pool, .timeout = 60)
{
    static oom_ctx_t c;
    c.sched = make_sched(2);
    moirai_test_oom_install();
    int enomem = 0;
    for (long k = 0; k < 80; k++) {
        moirai_test_oom_fail_at(k);
        int rc = oom_op(&c);
        moirai_test_oom_fail_at(-1);
        cr_assert(rc == 0 || rc == -ENOMEM, "failing allocation %ld gave %d", k, rc);
        if (rc == -ENOMEM) {
            enomem++;
            oom_unchanged(&c, k);
        } else {
            cr_assert_eq(atomic_load(&c.probe.identities), atomic_load(&c.probe.destroys) + 1);
        }
    }
    moirai_test_oom_uninstall();
    cr_assert_gt(enomem, 0, "no run reached -ENOMEM");
    drop_sched(c.sched);
}

Test(parallel_fallible, reduce_bad_input_is_einval, .timeout = 30)
{
    reduce_probe_t p;
    probe_init(&p);
    big_acc_t r;
    memset(&r, 0xab, sizeof r);
    moirai_reduce_fallible_desc_t d = big_desc;
    cr_assert_eq(moirai_parallel_reduce_fallible(NULL, 0, 10, 0, NULL, &p, NULL, &r), -EINVAL);
    cr_assert_eq(moirai_parallel_reduce_fallible(NULL, 0, 10, 0, &d, &p, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_parallel_reduce_fallible(NULL, 10, 9, 0, &d, &p, NULL, &r), -EINVAL);
    d = big_desc;
    d.identity = NULL;
    cr_assert_eq(moirai_parallel_reduce_fallible(NULL, 0, 10, 0, &d, &p, NULL, &r), -EINVAL);
    d = big_desc;
    d.chunk = NULL;
    cr_assert_eq(moirai_parallel_reduce_fallible(NULL, 0, 10, 0, &d, &p, NULL, &r), -EINVAL);
    d = big_desc;
    d.combine = NULL;
    cr_assert_eq(moirai_parallel_reduce_fallible(NULL, 0, 10, 0, &d, &p, NULL, &r), -EINVAL);
    d = big_desc;
    d.acc_size = 0;
    cr_assert_eq(moirai_parallel_reduce_fallible(NULL, 0, 10, 0, &d, &p, NULL, &r), -EINVAL);
    d.acc_size = MOIRAI_REDUCE_FALLIBLE_ACC_MAX + 1;
    cr_assert_eq(moirai_parallel_reduce_fallible(NULL, 0, 10, 0, &d, &p, NULL, &r), -EINVAL);
    d = big_desc;
    d.acc_align = 3;
    cr_assert_eq(moirai_parallel_reduce_fallible(NULL, 0, 10, 0, &d, &p, NULL, &r), -EINVAL);
    d.acc_align = 8192;
    cr_assert_eq(moirai_parallel_reduce_fallible(NULL, 0, 10, 0, &d, &p, NULL, &r), -EINVAL);
    cr_assert_eq(atomic_load(&p.identities), 0, "a callback ran on bad input");
    cr_assert_eq(((unsigned char *)&r)[0], 0xab);
}

/* ---- -ESHUTDOWN from outside the pool once destroy has begun ---- */

Test(parallel_fallible, shutdown_is_reported_and_runs_nothing, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    hold_t hold;
    hold_worker(s, &hold);
    destroyer_t d;
    start_destroy(&d, s, MOIRAI_SHUTDOWN_DRAIN);
    bool began = await_shutdown(s);
    _Atomic int ran = 0;
    int for_rc = moirai_parallel_for_fallible(s, 0, 100, 0, never, &ran, NULL);
    reduce_probe_t p;
    probe_init(&p);
    static big_acc_t r;
    memset(&r, 0xab, sizeof r);
    int reduce_rc = moirai_parallel_reduce_fallible(s, 0, 100, 0, &big_desc, &p, NULL, &r);
    release_worker(&hold);
    cr_assert_eq(finish_destroy(&d), 0);
    cr_assert(began, "destroy never began");
    cr_assert_eq(for_rc, -ESHUTDOWN);
    cr_assert_eq(reduce_rc, -ESHUTDOWN);
    cr_assert_eq(atomic_load(&ran), 0);
    cr_assert_eq(atomic_load(&p.identities), 0);
    cr_assert_eq(((unsigned char *)&r)[0], 0xab);
}
