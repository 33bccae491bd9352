/* moirai_barrier_t: generations never mix, exactly one serial thread per
 * generation, work before the barrier is visible after it. */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include <moirai/sync/barrier.h>

#include "lock_test_util.h"

Test(barrier, init_rejects_bad_counts, .timeout = 10)
{
    moirai_barrier_t b = MOIRAI_BARRIER_INIT(3);
    cr_assert_eq(moirai_barrier_init(&b, 0), -EINVAL);
    cr_assert_eq(moirai_barrier_init(&b, UINT32_MAX), -EINVAL);
    /* Rejected inits changed nothing: still a barrier of 3... */
    cr_assert_eq(b.priv_count, 3, "a rejected init modified the barrier");
    cr_assert_eq(moirai_barrier_init(&b, 1), 0);
    moirai_barrier_destroy(&b);
}

Test(barrier, single_participant_never_blocks, .timeout = 10)
{
    moirai_barrier_t b = MOIRAI_BARRIER_INIT(1);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(moirai_barrier_wait(&b), MOIRAI_BARRIER_SERIAL);
}

/* Per generation g: `arrived[g]` counts arrivals, `serial[g]` counts
 * serial returns. After returning from generation g a thread checks that
 * all N arrived at g and that nobody has arrived at g + 2 (impossible
 * before this thread arrives at g + 1). Plain double-buffered data checks
 * the barrier's memory ordering: in generation g each thread writes its
 * cell of data[g % 2]; after the barrier it reads every cell of it. */
#define MAX_GENS    4096
#define MAX_THREADS 64

typedef struct gen_ctx {
    moirai_barrier_t b;
    int n;
    long gens;
    _Atomic long arrived[MAX_GENS + 2];
    _Atomic long serial[MAX_GENS];
    _Atomic long violations;
    long data[2][MAX_THREADS];
} gen_ctx_t;

/* The counters are relaxed: they must not order anything themselves, or
 * they would carry the plain `data` across the barrier and hide a barrier
 * that does not (a seq_cst `arrived` did hide a relaxed generation
 * increment from ThreadSanitizer). */
static void *gen_worker(void *arg, int index)
{
    gen_ctx_t *c = arg;
    for (long g = 0; g < c->gens; g++) {
        c->data[g % 2][index] = g;
        atomic_fetch_add_explicit(&c->arrived[g], 1, memory_order_relaxed);
        if (moirai_barrier_wait(&c->b) == MOIRAI_BARRIER_SERIAL)
            atomic_fetch_add_explicit(&c->serial[g], 1, memory_order_relaxed);
        if (atomic_load_explicit(&c->arrived[g], memory_order_relaxed) != c->n ||
            atomic_load_explicit(&c->arrived[g + 2], memory_order_relaxed) != 0)
            atomic_fetch_add_explicit(&c->violations, 1, memory_order_relaxed);
        for (int j = 0; j < c->n; j++)
            if (c->data[g % 2][j] != g)
                atomic_fetch_add(&c->violations, 1);
    }
    return NULL;
}

static void run_gens(int n, long gens)
{
    static gen_ctx_t c;
    memset(&c, 0, sizeof c);
    cr_assert_eq(moirai_barrier_init(&c.b, (uint32_t)n), 0);
    c.n = n;
    c.gens = gens;
    test_run_threads(n, gen_worker, &c);
    cr_assert_eq(atomic_load(&c.violations), 0, "generations mixed");
    for (long g = 0; g < gens; g++) {
        cr_assert_eq(atomic_load(&c.arrived[g]), n);
        cr_assert_eq(atomic_load(&c.serial[g]), 1, "generation %ld had %ld serial threads", g,
                     atomic_load(&c.serial[g]));
    }
}

Test(barrier, generations_never_mix, .timeout = 60)
{
    long gens = test_iters(MAX_GENS, 100);
    run_gens(test_threads(), gens > MAX_GENS ? MAX_GENS : gens);
}

Test(barrier, two_threads_many_generations, .timeout = 60)
{
    long gens = test_iters(MAX_GENS, 100);
    run_gens(2, gens > MAX_GENS ? MAX_GENS : gens);
}

Test(barrier, more_threads_than_cpus, .timeout = 60)
{
    /* Forces parking: most participants must sleep while others run. */
    run_gens(16, 200 / (int)test_scale() + 20);
}
