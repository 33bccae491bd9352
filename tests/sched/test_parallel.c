/* Parallel algorithms of moirai-sched, as parallel.h documents them:
 * parallel_for hands the body disjoint pieces that cover the range exactly
 * once and respect the grain; parallel_reduce folds pieces left to right,
 * so an associative but non-commutative combine gives the sequential
 * result; parallel_invoke calls each function exactly once. Each runs from
 * outside the pool, from inside a task, nested, and with no scheduler at
 * all (inline); every error path is reached.
 *
 * Callbacks never call Criterion's asserts (they may run on workers): they
 * record what they saw and the test thread checks it afterwards. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/sched/parallel.h>

#include "sched_test_util.h"
#include "test_scale.h"

/* ---- parallel_for coverage ---- */

typedef struct cover {
    size_t begin, end, grain;
    _Atomic uint8_t *hits; /* hits[i - begin] */
    _Atomic size_t pieces;
    _Atomic size_t bad_pieces; /* empty, reversed, out of range or above grain */
    _Atomic int off_thread;    /* a piece ran on another thread (inline check) */
    pthread_t caller;
} cover_t;

static void cover_body(void *arg, size_t b, size_t e)
{
    cover_t *c = arg;
    atomic_fetch_add_explicit(&c->pieces, 1, memory_order_relaxed);
    if (b >= e || b < c->begin || e > c->end || (c->grain != 0 && e - b > c->grain)) {
        atomic_fetch_add(&c->bad_pieces, 1);
        return;
    }
    if (!pthread_equal(pthread_self(), c->caller))
        atomic_store(&c->off_thread, 1);
    for (size_t i = b; i < e; i++)
        atomic_fetch_add_explicit(&c->hits[i - c->begin], 1, memory_order_relaxed);
}

/* Runs one parallel_for over [begin, end) with `grain` on `s` and checks
 * every index was visited exactly once. */
static void check_cover(moirai_sched_t *s, size_t begin, size_t end, size_t grain, bool inline_)
{
    size_t n = end - begin;
    cover_t c;
    memset(&c, 0, sizeof(c));
    c.begin = begin;
    c.end = end;
    c.grain = grain;
    c.caller = pthread_self();
    c.hits = calloc(n + 1, 1);
    cr_assert_not_null(c.hits);
    cr_assert_eq(moirai_parallel_for(s, begin, end, grain, cover_body, &c), 0);
    cr_assert_eq(atomic_load(&c.bad_pieces), 0, "[%zu,%zu) grain %zu: a piece was malformed", begin,
                 end, grain);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(atomic_load(&c.hits[i]), 1, "[%zu,%zu) grain %zu: index %zu seen %d times",
                     begin, end, grain, begin + i, (int)atomic_load(&c.hits[i]));
    if (n == 0)
        cr_assert_eq(atomic_load(&c.pieces), 0, "an empty range called the body");
    else if (grain != 0)
        cr_assert_geq(atomic_load(&c.pieces), n / grain + (n % grain != 0));
    if (inline_)
        cr_assert_eq(atomic_load(&c.off_thread), 0, "NULL sched off a worker must run inline");
    free(c.hits);
}

static const size_t cover_grains[] = {0, 1, 2, 3, 7, 64, 1000, 4096, SIZE_MAX};

static void cover_all(moirai_sched_t *s, bool inline_)
{
    static const size_t ranges[][2] = {
        {0, 0}, {5, 5},    {0, 1},    {7, 8},    {0, 2},
        {0, 3}, {3, 1003}, {0, 4096}, {1, 4097}, {100, 9999},
    };
    for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++)
        for (size_t g = 0; g < sizeof(cover_grains) / sizeof(cover_grains[0]); g++)
            check_cover(s, ranges[r][0], ranges[r][1], cover_grains[g], inline_);
    /* Indices near the top of size_t must not overflow the split. */
    check_cover(s, SIZE_MAX - 1000, SIZE_MAX, 0, inline_);
    check_cover(s, SIZE_MAX - 1000, SIZE_MAX, 1, inline_);
    /* A large range with the automatic grain. */
    size_t big = (size_t)scaled(1L << 20);
    check_cover(s, 0, big, 0, inline_);
    check_cover(s, 0, big, 100, inline_);
}

Test(parallel, for_covers_every_index_once_from_outside, .timeout = 120)
{
    moirai_sched_t *s = make_sched(2);
    cover_all(s, false);
    drop_sched(s);
}

static int cover_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    /* The workers' own scheduler, through NULL and by name. */
    moirai_sched_t *s = arg;
    static const size_t ranges[][3] = {{0, 0, 0},     {0, 1, 0},   {0, 10000, 0},
                                       {0, 10000, 1}, {5, 777, 3}, {0, 65536, 100}};
    for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
        for (int by_name = 0; by_name < 2; by_name++) {
            size_t begin = ranges[r][0], end = ranges[r][1], grain = ranges[r][2];
            size_t n = end - begin;
            cover_t c;
            memset(&c, 0, sizeof(c));
            c.begin = begin;
            c.end = end;
            c.grain = grain;
            c.caller = pthread_self();
            c.hits = calloc(n + 1, 1);
            if (c.hits == NULL)
                return -ENOMEM;
            int rc = moirai_parallel_for(by_name ? s : NULL, begin, end, grain, cover_body, &c);
            int bad = rc != 0 || atomic_load(&c.bad_pieces) != 0;
            for (size_t i = 0; i < n; i++)
                bad |= atomic_load(&c.hits[i]) != 1;
            free(c.hits);
            if (bad)
                return -EPROTO;
        }
    }
    return 0;
}

Test(parallel, for_covers_every_index_once_from_a_task, .timeout = 120)
{
    moirai_sched_t *s = make_sched(2);
    cr_assert_eq(run_in_task(s, cover_task, s), 0);
    drop_sched(s);
    /* With a single worker the caller does all the work by itself. */
    s = make_sched(1);
    cr_assert_eq(run_in_task(s, cover_task, s), 0);
    drop_sched(s);
}

Test(parallel, for_with_no_scheduler_runs_inline, .timeout = 60)
{
    cover_all(NULL, true);
}

/* ---- Nested parallel_for ---- */

#define NEST_OUTER 64
#define NEST_INNER 1000

typedef struct nest {
    _Atomic uint8_t hits[NEST_OUTER * NEST_INNER];
    _Atomic int inner_errors;
} nest_t;

typedef struct nest_inner {
    nest_t *nest;
    size_t row;
} nest_inner_t;

static void nest_inner_body(void *arg, size_t b, size_t e)
{
    nest_inner_t *in = arg;
    for (size_t j = b; j < e; j++)
        atomic_fetch_add(&in->nest->hits[in->row * NEST_INNER + j], 1);
}

static void nest_outer_body(void *arg, size_t b, size_t e)
{
    nest_t *n = arg;
    for (size_t i = b; i < e; i++) {
        nest_inner_t in = {n, i};
        /* From a worker, NULL means this worker's scheduler. */
        if (moirai_parallel_for(NULL, 0, NEST_INNER, i % 3 == 0 ? 0 : i % 50 + 1, nest_inner_body,
                                &in) != 0)
            atomic_fetch_add(&n->inner_errors, 1);
    }
}

Test(parallel, nested_for, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    nest_t *n = calloc(1, sizeof(*n));
    cr_assert_not_null(n);
    for (long r = 0; r < scaled(10); r++) {
        memset(n, 0, sizeof(*n));
        cr_assert_eq(moirai_parallel_for(s, 0, NEST_OUTER, 1, nest_outer_body, n), 0);
        cr_assert_eq(atomic_load(&n->inner_errors), 0);
        for (size_t i = 0; i < NEST_OUTER * NEST_INNER; i++)
            cr_assert_eq(atomic_load(&n->hits[i]), 1, "(%zu, %zu) seen %d times", i / NEST_INNER,
                         i % NEST_INNER, (int)atomic_load(&n->hits[i]));
    }
    free(n);
    drop_sched(s);
}

/* ---- parallel_for errors ---- */

static void must_not_run(void *arg, size_t b, size_t e)
{
    (void)b;
    (void)e;
    atomic_fetch_add((_Atomic int *)arg, 1);
}

Test(parallel, for_argument_errors, .timeout = 30)
{
    moirai_sched_t *s = make_sched(1);
    _Atomic int ran = 0;
    cr_assert_eq(moirai_parallel_for(s, 0, 10, 0, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_parallel_for(s, 11, 10, 0, must_not_run, &ran), -EINVAL);
    cr_assert_eq(moirai_parallel_for(NULL, 11, 10, 0, must_not_run, &ran), -EINVAL);
    cr_assert_eq(moirai_parallel_for(s, 10, 10, 0, must_not_run, &ran), 0);
    cr_assert_eq(atomic_load(&ran), 0);
    drop_sched(s);
}

/* ---- parallel_reduce: exact sums ---- */

static void sum_identity(void *arg, void *acc)
{
    (void)arg;
    *(uint64_t *)acc = 0;
}

static void sum_chunk(void *arg, size_t b, size_t e, void *acc)
{
    (void)arg;
    uint64_t s = *(uint64_t *)acc;
    for (size_t i = b; i < e; i++)
        s += i;
    *(uint64_t *)acc = s;
}

static void sum_combine(void *arg, void *acc, const void *right)
{
    (void)arg;
    *(uint64_t *)acc += *(const uint64_t *)right;
}

static const moirai_reduce_desc_t sum_desc = {sizeof(uint64_t), sum_identity, sum_chunk,
                                              sum_combine};

/* Sum of begin .. end-1. */
static uint64_t sum_range(uint64_t begin, uint64_t end)
{
    if (begin >= end)
        return 0;
    uint64_t a = begin + end - 1, b = end - begin;
    return a % 2 == 0 ? a / 2 * b : b / 2 * a;
}

static void check_sums(moirai_sched_t *s)
{
    uint64_t n = (uint64_t)scaled(1L << 22);
    static const size_t grains[] = {0, 1, 5, 1000, SIZE_MAX};
    static const uint64_t ranges[][2] = {{0, 0}, {0, 1}, {1, 2}, {1, 101}, {17, 10017}};
    for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++) {
        for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
            uint64_t got = 12345;
            cr_assert_eq(moirai_parallel_reduce(s, ranges[r][0], ranges[r][1], grains[g], &sum_desc,
                                                NULL, &got),
                         0);
            cr_assert_eq(got, sum_range(ranges[r][0], ranges[r][1]), "[%lu,%lu) grain %zu",
                         (unsigned long)ranges[r][0], (unsigned long)ranges[r][1], grains[g]);
        }
        if (grains[g] == 1)
            continue; /* a join per index over millions: too slow to be useful */
        uint64_t got = 0;
        cr_assert_eq(moirai_parallel_reduce(s, 1, n + 1, grains[g], &sum_desc, NULL, &got), 0);
        cr_assert_eq(got, n * (n + 1) / 2, "1..%lu grain %zu", (unsigned long)n, grains[g]);
    }
}

Test(parallel, reduce_sums_exactly, .timeout = 120)
{
    moirai_sched_t *s = make_sched(2);
    check_sums(s);
    drop_sched(s);
    check_sums(NULL);
}

/* ---- parallel_reduce: non-commutative combines ---- */

/* String concatenation into a fixed buffer: index i contributes one
 * letter; only left-to-right combination in index order gives the
 * sequential string. The accumulator is exactly MOIRAI_REDUCE_ACC_MAX
 * bytes. */
typedef struct str_acc {
    uint16_t len;
    char s[MOIRAI_REDUCE_ACC_MAX - sizeof(uint16_t)];
} str_acc_t;
_Static_assert(sizeof(str_acc_t) == MOIRAI_REDUCE_ACC_MAX, "the largest accumulator");

static char letter(size_t i)
{
    return (char)('a' + (i * 7 + i / 26) % 26);
}

static void str_identity(void *arg, void *acc)
{
    (void)arg;
    ((str_acc_t *)acc)->len = 0;
}

static void str_chunk(void *arg, size_t b, size_t e, void *acc)
{
    (void)arg;
    str_acc_t *a = acc;
    for (size_t i = b; i < e; i++)
        a->s[a->len++] = letter(i);
}

static void str_combine(void *arg, void *acc, const void *right)
{
    (void)arg;
    str_acc_t *a = acc;
    const str_acc_t *r = right;
    memcpy(a->s + a->len, r->s, r->len);
    a->len = (uint16_t)(a->len + r->len);
}

static const moirai_reduce_desc_t str_desc = {sizeof(str_acc_t), str_identity, str_chunk,
                                              str_combine};

/* 2x2 matrix products modulo 2^64: associative, not commutative. */
typedef struct mat {
    uint64_t a, b, c, d;
} mat_t;

static mat_t mat_of(size_t i)
{
    mat_t m = {i + 1, 1, 1, 0};
    if (i % 3 == 0)
        m = (mat_t){1, i, 0, 1};
    return m;
}

static mat_t mat_mul(mat_t x, mat_t y)
{
    return (mat_t){x.a * y.a + x.b * y.c, x.a * y.b + x.b * y.d, x.c * y.a + x.d * y.c,
                   x.c * y.b + x.d * y.d};
}

static void mat_identity(void *arg, void *acc)
{
    (void)arg;
    *(mat_t *)acc = (mat_t){1, 0, 0, 1};
}

static void mat_chunk(void *arg, size_t b, size_t e, void *acc)
{
    (void)arg;
    mat_t m = *(mat_t *)acc;
    for (size_t i = b; i < e; i++)
        m = mat_mul(m, mat_of(i));
    *(mat_t *)acc = m;
}

static void mat_combine(void *arg, void *acc, const void *right)
{
    (void)arg;
    *(mat_t *)acc = mat_mul(*(mat_t *)acc, *(const mat_t *)right);
}

static const moirai_reduce_desc_t mat_desc = {sizeof(mat_t), mat_identity, mat_chunk, mat_combine};

static void check_ordered(moirai_sched_t *s)
{
    static const size_t grains[] = {0, 1, 2, 3, 17, SIZE_MAX};
    size_t max_len = sizeof(((str_acc_t *)0)->s);
    for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++) {
        for (size_t n = 0; n <= max_len; n += (n < 20 ? 1 : 37)) {
            size_t begin = 1000 + n; /* offsets the letters from the index */
            str_acc_t got;
            memset(&got, 0x5a, sizeof(got));
            cr_assert_eq(
                moirai_parallel_reduce(s, begin, begin + n, grains[g], &str_desc, NULL, &got), 0);
            cr_assert_eq(got.len, n);
            for (size_t i = 0; i < n; i++)
                cr_assert_eq(got.s[i], letter(begin + i), "n=%zu grain %zu: letter %zu", n,
                             grains[g], i);
        }
        size_t n = (size_t)scaled(100000);
        mat_t want = {1, 0, 0, 1};
        for (size_t i = 3; i < n; i++)
            want = mat_mul(want, mat_of(i));
        mat_t got;
        cr_assert_eq(moirai_parallel_reduce(s, 3, n, grains[g], &mat_desc, NULL, &got), 0);
        cr_assert(got.a == want.a && got.b == want.b && got.c == want.c && got.d == want.d,
                  "matrix product differs from the sequential one (grain %zu)", grains[g]);
    }
}

Test(parallel, reduce_combines_left_to_right, .timeout = 120)
{
    moirai_sched_t *s = make_sched(2);
    for (long r = 0; r < scaled(5); r++)
        check_ordered(s);
    drop_sched(s);
    check_ordered(NULL);
}

static int reduce_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    (void)arg;
    str_acc_t got;
    size_t n = sizeof(got.s);
    int rc = moirai_parallel_reduce(NULL, 0, n, 1, &str_desc, NULL, &got);
    if (rc != 0)
        return rc;
    if (got.len != n)
        return -EPROTO;
    for (size_t i = 0; i < n; i++)
        if (got.s[i] != letter(i))
            return -EPROTO;
    uint64_t sum = 0;
    rc = moirai_parallel_reduce(NULL, 0, 100000, 0, &sum_desc, NULL, &sum);
    if (rc != 0)
        return rc;
    return sum == sum_range(0, 100000) ? 0 : -EPROTO;
}

Test(parallel, reduce_from_a_task, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    for (long r = 0; r < scaled(20); r++)
        cr_assert_eq(run_in_task(s, reduce_task, NULL), 0);
    drop_sched(s);
}

static void bad_identity(void *arg, void *acc)
{
    (void)acc;
    atomic_fetch_add((_Atomic int *)arg, 1);
}

static void bad_chunk(void *arg, size_t b, size_t e, void *acc)
{
    (void)b;
    (void)e;
    (void)acc;
    atomic_fetch_add((_Atomic int *)arg, 1);
}

static void bad_combine(void *arg, void *acc, const void *right)
{
    (void)acc;
    (void)right;
    atomic_fetch_add((_Atomic int *)arg, 1);
}

Test(parallel, reduce_argument_errors, .timeout = 30)
{
    moirai_sched_t *s = make_sched(1);
    _Atomic int ran = 0;
    unsigned char result[MOIRAI_REDUCE_ACC_MAX + 8];
    memset(result, 0xab, sizeof(result));
    moirai_reduce_desc_t d = {8, bad_identity, bad_chunk, bad_combine};
    cr_assert_eq(moirai_parallel_reduce(s, 0, 10, 0, NULL, &ran, result), -EINVAL);
    cr_assert_eq(moirai_parallel_reduce(s, 0, 10, 0, &d, &ran, NULL), -EINVAL);
    cr_assert_eq(moirai_parallel_reduce(s, 10, 9, 0, &d, &ran, result), -EINVAL);
    moirai_reduce_desc_t e = d;
    e.acc_size = 0;
    cr_assert_eq(moirai_parallel_reduce(s, 0, 10, 0, &e, &ran, result), -EINVAL);
    e.acc_size = MOIRAI_REDUCE_ACC_MAX + 1;
    cr_assert_eq(moirai_parallel_reduce(s, 0, 10, 0, &e, &ran, result), -EINVAL);
    e = d;
    e.identity = NULL;
    cr_assert_eq(moirai_parallel_reduce(s, 0, 10, 0, &e, &ran, result), -EINVAL);
    e = d;
    e.chunk = NULL;
    cr_assert_eq(moirai_parallel_reduce(s, 0, 10, 0, &e, &ran, result), -EINVAL);
    e = d;
    e.combine = NULL;
    cr_assert_eq(moirai_parallel_reduce(s, 0, 10, 0, &e, &ran, result), -EINVAL);
    cr_assert_eq(atomic_load(&ran), 0, "a callback ran after -EINVAL");
    for (size_t i = 0; i < sizeof(result); i++)
        cr_assert_eq(result[i], 0xab, "the result was written after -EINVAL");
    /* The limit itself is allowed. */
    e = d;
    e.acc_size = MOIRAI_REDUCE_ACC_MAX;
    cr_assert_eq(moirai_parallel_reduce(s, 0, 10, 0, &e, &ran, result), 0);
    /* An empty range gives the identity and nothing else. */
    uint64_t got = 99;
    cr_assert_eq(moirai_parallel_reduce(s, 5, 5, 0, &sum_desc, NULL, &got), 0);
    cr_assert_eq(got, 0);
    drop_sched(s);
}

/* ---- parallel_invoke ---- */

static void count_arg(void *arg)
{
    atomic_fetch_add((_Atomic int *)arg, 1);
}

static _Atomic int null_arg_calls;

static void count_null_arg(void *arg)
{
    if (arg == NULL)
        atomic_fetch_add(&null_arg_calls, 1);
}

static void check_invoke(moirai_sched_t *s)
{
    static const size_t ns[] = {0, 1, 2, 7, 100};
    enum { MAX_N = 100 };
    moirai_join_fn fns[MAX_N];
    void *args[MAX_N];
    _Atomic int counts[MAX_N];
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        size_t n = ns[k];
        for (size_t i = 0; i < MAX_N; i++) {
            fns[i] = count_arg;
            args[i] = &counts[i];
            atomic_init(&counts[i], 0);
        }
        cr_assert_eq(moirai_parallel_invoke(s, fns, args, n), 0);
        for (size_t i = 0; i < MAX_N; i++)
            cr_assert_eq(atomic_load(&counts[i]), i < n ? 1 : 0, "n=%zu: fn %zu ran %d times", n, i,
                         atomic_load(&counts[i]));
        /* NULL args: every function gets NULL. */
        for (size_t i = 0; i < MAX_N; i++)
            fns[i] = count_null_arg;
        atomic_store(&null_arg_calls, 0);
        cr_assert_eq(moirai_parallel_invoke(s, fns, NULL, n), 0);
        cr_assert_eq(atomic_load(&null_arg_calls), (int)n);
    }
}

Test(parallel, invoke_runs_each_function_once, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    for (long r = 0; r < scaled(50); r++)
        check_invoke(s);
    drop_sched(s);
    check_invoke(NULL);
}

static int invoke_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    (void)arg;
    moirai_join_fn fns[7];
    void *args[7];
    _Atomic int counts[7];
    for (int i = 0; i < 7; i++) {
        fns[i] = count_arg;
        args[i] = &counts[i];
        atomic_init(&counts[i], 0);
    }
    int rc = moirai_parallel_invoke(NULL, fns, args, 7);
    if (rc != 0)
        return rc;
    for (int i = 0; i < 7; i++)
        if (atomic_load(&counts[i]) != 1)
            return -EPROTO;
    return 0;
}

Test(parallel, invoke_from_a_task, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    for (long r = 0; r < scaled(50); r++)
        cr_assert_eq(run_in_task(s, invoke_task, NULL), 0);
    drop_sched(s);
}

Test(parallel, invoke_with_a_null_entry_runs_nothing, .timeout = 30)
{
    moirai_sched_t *s = make_sched(2);
    moirai_join_fn fns[7];
    void *args[7];
    _Atomic int counts[7];
    for (int i = 0; i < 7; i++) {
        fns[i] = count_arg;
        args[i] = &counts[i];
        atomic_init(&counts[i], 0);
    }
    fns[5] = NULL;
    cr_assert_eq(moirai_parallel_invoke(s, fns, args, 7), -EINVAL);
    cr_assert_eq(moirai_parallel_invoke(NULL, fns, args, 7), -EINVAL);
    cr_assert_eq(moirai_parallel_invoke(s, NULL, args, 7), -EINVAL);
    cr_assert_eq(moirai_parallel_invoke(s, NULL, NULL, 0), -EINVAL);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(atomic_load(&counts[i]), 0, "function %d ran after -EINVAL", i);
    /* Up to the NULL entry is fine. */
    cr_assert_eq(moirai_parallel_invoke(s, fns, args, 5), 0);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(atomic_load(&counts[i]), i < 5 ? 1 : 0);
    drop_sched(s);
}

/* ---- -ESHUTDOWN from outside the pool once destroy has begun ---- */

Test(parallel, shutdown_is_reported_and_runs_nothing, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    hold_t hold;
    hold_worker(s, &hold);
    destroyer_t d;
    start_destroy(&d, s, MOIRAI_SHUTDOWN_DRAIN);
    /* Destroy waits for the held task; meanwhile spawns are refused. */
    bool began = await_shutdown(s);
    _Atomic int ran = 0;
    int for_rc = moirai_parallel_for(s, 0, 100, 0, must_not_run, &ran);
    uint64_t got = 77;
    int reduce_rc = moirai_parallel_reduce(s, 0, 100, 0, &sum_desc, NULL, &got);
    moirai_join_fn fns[3] = {count_arg, count_arg, count_arg};
    void *args[3] = {&ran, &ran, &ran};
    int invoke_rc = moirai_parallel_invoke(s, fns, args, 3);
    release_worker(&hold);
    cr_assert_eq(finish_destroy(&d), 0);
    cr_assert(began, "destroy never began");
    cr_assert_eq(for_rc, -ESHUTDOWN);
    cr_assert_eq(reduce_rc, -ESHUTDOWN);
    cr_assert_eq(invoke_rc, -ESHUTDOWN);
    cr_assert_eq(got, 77, "the result was written after -ESHUTDOWN");
    cr_assert_eq(atomic_load(&ran), 0, "work ran after -ESHUTDOWN");
}
