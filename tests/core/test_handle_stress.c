/* Completion handles under contention.
 *
 * Parameters (environment, defaults in brackets; the handle count is
 * divided by MOIRAI_TEST_SCALE):
 *   MOIRAI_STRESS_HANDLES     handles per test                 [20000]
 *   MOIRAI_STRESS_COMPLETERS  completer threads                [2]
 *   MOIRAI_STRESS_JOINERS     joiner threads                   [3]
 *
 * Threads walk the handles in batches of BATCH, meeting at a barrier before
 * each batch, so that the operations on one handle really overlap. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include <moirai/core.h>

#include "test_scale.h"

#define BATCH       64
#define MAX_THREADS 32

static long handle_count(void)
{
    long n = scaled(env_long("MOIRAI_STRESS_HANDLES", 20000));
    /* Whole batches keep every thread at the same barrier count. */
    n -= n % BATCH;
    return n < BATCH ? BATCH : n;
}

static int thread_count(const char *name, long fallback)
{
    long n = env_long(name, fallback);
    return (int)(n > MAX_THREADS / 2 ? MAX_THREADS / 2 : n);
}

static void **values_for(long n)
{
    /* Distinct, recognisable values: the address of slot i. */
    void **v = calloc((size_t)n, sizeof(*v));
    cr_assert_not_null(v);
    for (long i = 0; i < n; i++)
        v[i] = &v[i];
    return v;
}

static moirai_handle_t **handles_for(long n)
{
    moirai_handle_t **h = calloc((size_t)n, sizeof(*h));
    cr_assert_not_null(h);
    for (long i = 0; i < n; i++)
        cr_assert_eq(moirai_handle_create(&h[i]), 0);
    return h;
}

static void release_all(moirai_handle_t **h, long n)
{
    for (long i = 0; i < n; i++)
        moirai_handle_release(h[i]);
    free(h);
}

/* ---- N completers x M joiners: every joiner sees every result once ---- */

typedef struct cj {
    moirai_handle_t **handles;
    void **values;
    long n;
    int completers;
    int joiners;
    pthread_barrier_t barrier;
    /* seen[j * n + i]: how often joiner j got handle i's result;
     * wrong[j]: results that differed from the completer's value. */
    int *seen;
    long wrong[MAX_THREADS];
    int complete_rc_errors;
} cj_t;

typedef struct cj_arg {
    cj_t *cj;
    int index;
    bool joiner;
} cj_arg_t;

static void *cj_main(void *p)
{
    cj_arg_t *a = p;
    cj_t *cj = a->cj;
    for (long base = 0; base < cj->n; base += BATCH) {
        pthread_barrier_wait(&cj->barrier);
        for (long k = 0; k < BATCH; k++) {
            long i = base + k;
            if (!a->joiner) {
                if (i % cj->completers != a->index)
                    continue;
                /* Half the handles start first, half complete from pending. */
                if (i & 1)
                    moirai_handle_try_start(cj->handles[i]);
                if (moirai_handle_complete(cj->handles[i], cj->values[i]) != 0)
                    __atomic_fetch_add(&cj->complete_rc_errors, 1, __ATOMIC_RELAXED);
                continue;
            }
            /* Joiners take the batch in different orders and use all three
             * ways of waiting. */
            long j = base + (a->index & 1 ? BATCH - 1 - k : k);
            void *v = NULL;
            int rc;
            switch ((a->index + j) % 3) {
            case 0:
                rc = moirai_handle_join(cj->handles[j], &v);
                break;
            case 1:
                rc = moirai_handle_join_timed(cj->handles[j],
                                              moirai_deadline_after(60 * MOIRAI_NS_PER_S), &v);
                break;
            default:
                while ((rc = moirai_handle_try_join(cj->handles[j], &v)) == -EAGAIN)
                    sched_yield();
                break;
            }
            if (rc == 0)
                cj->seen[(long)a->index * cj->n + j]++;
            if (rc != 0 || v != cj->values[j])
                cj->wrong[a->index]++;
        }
    }
    return NULL;
}

Test(handle_stress, completers_and_joiners_see_each_result_once, .timeout = 200)
{
    cj_t cj = {.n = handle_count(),
               .completers = thread_count("MOIRAI_STRESS_COMPLETERS", 2),
               .joiners = thread_count("MOIRAI_STRESS_JOINERS", 3)};
    cj.handles = handles_for(cj.n);
    cj.values = values_for(cj.n);
    cj.seen = calloc((size_t)(cj.joiners * cj.n), sizeof(*cj.seen));
    cr_assert_not_null(cj.seen);
    int total = cj.completers + cj.joiners;
    pthread_barrier_init(&cj.barrier, NULL, (unsigned)total);
    pthread_t t[MAX_THREADS];
    cj_arg_t args[MAX_THREADS];
    for (int i = 0; i < total; i++) {
        bool joiner = i >= cj.completers;
        args[i] = (cj_arg_t){&cj, joiner ? i - cj.completers : i, joiner};
        cr_assert_eq(pthread_create(&t[i], NULL, cj_main, &args[i]), 0);
    }
    for (int i = 0; i < total; i++)
        pthread_join(t[i], NULL);

    cr_assert_eq(cj.complete_rc_errors, 0);
    for (int j = 0; j < cj.joiners; j++) {
        cr_assert_eq(cj.wrong[j], 0, "joiner %d saw %ld wrong results", j, cj.wrong[j]);
        for (long i = 0; i < cj.n; i++)
            cr_assert_eq(cj.seen[(long)j * cj.n + i], 1, "joiner %d, handle %ld", j, i);
    }
    pthread_barrier_destroy(&cj.barrier);
    release_all(cj.handles, cj.n);
    free(cj.values);
    free(cj.seen);
}

/* ---- Several threads race to finish each handle: exactly one wins ---- */

enum { RACE_COMPLETE, RACE_FAIL, RACE_CANCEL, RACERS };

typedef struct race {
    moirai_handle_t **handles;
    void **values;
    long n;
    pthread_barrier_t barrier;
    int *rc[RACERS]; /* each racer's return code per handle */
} race_t;

typedef struct race_arg {
    race_t *race;
    int kind;
} race_arg_t;

static void *race_main(void *p)
{
    race_arg_t *a = p;
    race_t *r = a->race;
    for (long base = 0; base < r->n; base += BATCH) {
        pthread_barrier_wait(&r->barrier);
        for (long k = 0; k < BATCH; k++) {
            /* Each racer walks the batch in its own order (forwards,
             * backwards, strided) so their paths cross at many handles. */
            long i = base + (a->kind == RACE_COMPLETE ? k
                             : a->kind == RACE_FAIL   ? BATCH - 1 - k
                                                      : (k * 37) % BATCH);
            switch (a->kind) {
            case RACE_COMPLETE:
                r->rc[a->kind][i] = moirai_handle_complete(r->handles[i], r->values[i]);
                break;
            case RACE_FAIL:
                r->rc[a->kind][i] = moirai_handle_fail(r->handles[i], -EIO);
                break;
            default:
                r->rc[a->kind][i] = moirai_handle_cancel(r->handles[i]);
                break;
            }
        }
    }
    return NULL;
}

Test(handle_stress, exactly_one_completion_wins, .timeout = 200)
{
    race_t r = {.n = handle_count()};
    r.handles = handles_for(r.n);
    r.values = values_for(r.n);
    for (int k = 0; k < RACERS; k++) {
        r.rc[k] = calloc((size_t)r.n, sizeof(int));
        cr_assert_not_null(r.rc[k]);
    }
    pthread_barrier_init(&r.barrier, NULL, RACERS);
    pthread_t t[RACERS];
    race_arg_t args[RACERS];
    for (int k = 0; k < RACERS; k++) {
        args[k] = (race_arg_t){&r, k};
        cr_assert_eq(pthread_create(&t[k], NULL, race_main, &args[k]), 0);
    }
    for (int k = 0; k < RACERS; k++)
        pthread_join(t[k], NULL);

    long wins[RACERS] = {0};
    for (long i = 0; i < r.n; i++) {
        int winner = -1;
        for (int k = 0; k < RACERS; k++) {
            if (r.rc[k][i] == 0) {
                cr_assert_eq(winner, -1, "handle %ld: two winners (%d and %d)", i, winner, k);
                winner = k;
            } else {
                cr_assert_eq(r.rc[k][i], -EALREADY, "handle %ld racer %d: rc %d", i, k, r.rc[k][i]);
            }
        }
        cr_assert_neq(winner, -1, "handle %ld: nobody won", i);
        wins[winner]++;
        void *v = NULL;
        int rc = moirai_handle_join(r.handles[i], &v);
        switch (winner) {
        case RACE_COMPLETE:
            cr_assert_eq(rc, 0);
            cr_assert_eq(v, r.values[i]);
            break;
        case RACE_FAIL:
            cr_assert_eq(rc, -EIO);
            break;
        default:
            cr_assert_eq(rc, -ECANCELED);
            break;
        }
    }
    cr_log_info("wins: complete %ld, fail %ld, cancel %ld", wins[0], wins[1], wins[2]);
    pthread_barrier_destroy(&r.barrier);
    release_all(r.handles, r.n);
    free(r.values);
    for (int k = 0; k < RACERS; k++)
        free(r.rc[k]);
}

/* ---- Cancel versus start: the task runs exactly once or never ---- */

typedef struct cs {
    moirai_handle_t **handles;
    void **values;
    long n;
    pthread_barrier_t barrier;
    _Atomic int *ran;  /* how often each task body ran */
    int *run_rc;       /* moirai_handle_run's status per handle */
    int *cancel_rc;    /* moirai_handle_cancel's status per handle */
    int *join_rc;      /* the concurrent joiner's status per handle */
    void **join_value; /* and the value it got */
} cs_t;

typedef struct cs_task_arg {
    cs_t *cs;
    long i;
} cs_task_arg_t;

static int cs_task(void *arg, const moirai_cancel_token_t *token, void **result)
{
    (void)token; /* ignores cancellation: a run is a run */
    cs_task_arg_t *a = arg;
    atomic_fetch_add_explicit(&a->cs->ran[a->i], 1, memory_order_relaxed);
    *result = a->cs->values[a->i];
    return 0;
}

typedef struct cs_arg {
    cs_t *cs;
    int role; /* 0 runner, 1 canceller, 2 joiner */
} cs_arg_t;

static void *cs_main(void *p)
{
    cs_arg_t *a = p;
    cs_t *cs = a->cs;
    for (long base = 0; base < cs->n; base += BATCH) {
        pthread_barrier_wait(&cs->barrier);
        for (long i = base; i < base + BATCH; i++) {
            if (a->role == 0) {
                cs_task_arg_t ta = {cs, i};
                cs->run_rc[i] = moirai_handle_run(cs->handles[i], cs_task, &ta);
            } else if (a->role == 1) {
                /* Walking the batch backwards meets the runner in the
                 * middle: both outcomes occur in every batch. */
                long r = base + (base + BATCH - 1 - i);
                cs->cancel_rc[r] = moirai_handle_cancel(cs->handles[r]);
            } else {
                cs->join_rc[i] = moirai_handle_join(cs->handles[i], &cs->join_value[i]);
            }
        }
    }
    return NULL;
}

Test(handle_stress, cancel_versus_start_runs_once_or_never, .timeout = 200)
{
    cs_t cs = {.n = handle_count()};
    cs.handles = handles_for(cs.n);
    cs.values = values_for(cs.n);
    cs.ran = calloc((size_t)cs.n, sizeof(*cs.ran));
    cs.run_rc = calloc((size_t)cs.n, sizeof(int));
    cs.cancel_rc = calloc((size_t)cs.n, sizeof(int));
    cs.join_rc = calloc((size_t)cs.n, sizeof(int));
    cs.join_value = calloc((size_t)cs.n, sizeof(void *));
    cr_assert(cs.ran && cs.run_rc && cs.cancel_rc && cs.join_rc && cs.join_value);
    pthread_barrier_init(&cs.barrier, NULL, 3);
    pthread_t t[3];
    cs_arg_t args[3];
    for (int k = 0; k < 3; k++) {
        args[k] = (cs_arg_t){&cs, k};
        cr_assert_eq(pthread_create(&t[k], NULL, cs_main, &args[k]), 0);
    }
    for (int k = 0; k < 3; k++)
        pthread_join(t[k], NULL);

    long ran_count = 0, cancelled_count = 0;
    for (long i = 0; i < cs.n; i++) {
        int ran = atomic_load(&cs.ran[i]);
        void *v = NULL;
        int rc = moirai_handle_try_join(cs.handles[i], &v);
        if (ran == 1) {
            /* Ran exactly once: the value is there, the cancel came too
             * late (while running, or after). */
            ran_count++;
            cr_assert_eq(cs.run_rc[i], 0, "handle %ld", i);
            cr_assert_eq(rc, 0, "handle %ld", i);
            cr_assert_eq(v, cs.values[i]);
            cr_assert(cs.cancel_rc[i] == -EBUSY || cs.cancel_rc[i] == -EALREADY,
                      "handle %ld: cancel rc %d", i, cs.cancel_rc[i]);
            cr_assert_eq(cs.join_rc[i], 0);
            cr_assert_eq(cs.join_value[i], cs.values[i]);
        } else {
            /* Never ran: cancelled before start, and everybody knows. */
            cr_assert_eq(ran, 0, "handle %ld ran %d times", i, ran);
            cancelled_count++;
            cr_assert_eq(cs.run_rc[i], -ECANCELED);
            cr_assert_eq(cs.cancel_rc[i], 0);
            cr_assert_eq(rc, -ECANCELED);
            cr_assert_eq(cs.join_rc[i], -ECANCELED);
            cr_assert_null(cs.join_value[i]);
        }
    }
    cr_log_info("ran %ld, cancelled before start %ld", ran_count, cancelled_count);
    pthread_barrier_destroy(&cs.barrier);
    release_all(cs.handles, cs.n);
    free(cs.values);
    free(cs.ran);
    free(cs.run_rc);
    free(cs.cancel_rc);
    free(cs.join_rc);
    free(cs.join_value);
}
