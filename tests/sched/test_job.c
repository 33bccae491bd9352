/* Runtime jobs (moirai/sched/job.h): every submission runs exactly once,
 * also under concurrent submitters on workers and outside threads and
 * when a job resubmits itself from its own body; jobs follow the levels
 * and the aging of tasks, FIFO with the tasks of their level; a YIELD
 * queues behind the waiting work while a plain NORMAL resubmission on a
 * worker runs next; a submission from outside wakes a parked pool; destroy
 * runs every submitted job, under DRAIN and CANCEL, also jobs submitted
 * while it waits; bad arguments are refused and change nothing.
 *
 * Job bodies never call Criterion's asserts (they run on worker threads);
 * they record what they saw, and the test thread checks it after a
 * waitgroup or event says they are done (done releases, wait acquires). */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <moirai/core/clock.h>
#include <moirai/sched.h>
#include <moirai/sync/event.h>
#include <moirai/sync/waitgroup.h>

#include "oom.h"
#include "sched_test_util.h"
#include "test_scale.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

static moirai_sched_t *make_sched_cfg(int workers, uint64_t aging_ns, bool lifo)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = workers;
    cfg.aging_ns = aging_ns == 0 ? MOIRAI_SCHED_STRICT_PRIORITIES : aging_ns;
    cfg.no_lifo_slot = !lifo;
    moirai_sched_t *s = NULL;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    return s;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / MOIRAI_NS_PER_S), (long)(ns % MOIRAI_NS_PER_S)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* An aging period no test outlives: order tests see the nominal levels. */
#define NO_AGING_NS MOIRAI_SCHED_STRICT_PRIORITIES

/* ---- Errors ---- */

static void nop_run(moirai_sched_job_t *job)
{
    (void)job;
}

Test(job, bad_arguments_are_refused_and_change_nothing, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    moirai_sched_job_t job;
    moirai_sched_job_init(&job, nop_run, "j");
    moirai_sched_job_t before = job;

    cr_assert_eq(moirai_sched_job_submit(NULL, &job, MOIRAI_PRIORITY_NORMAL, 0), -EINVAL);
    cr_assert_eq(moirai_sched_job_submit(s, NULL, MOIRAI_PRIORITY_NORMAL, 0), -EINVAL);
    cr_assert_eq(moirai_sched_job_submit(s, &job, (moirai_priority_t)MOIRAI_PRIORITY_COUNT, 0),
                 -EINVAL);
    cr_assert_eq(moirai_sched_job_submit(s, &job, (moirai_priority_t)-1, 0), -EINVAL);
    cr_assert_eq(moirai_sched_job_submit(s, &job, MOIRAI_PRIORITY_NORMAL, 2u), -EINVAL);
    cr_assert_eq(
        moirai_sched_job_submit(s, &job, MOIRAI_PRIORITY_NORMAL, MOIRAI_SCHED_JOB_YIELD | 0x80u),
        -EINVAL);
    cr_assert_eq(memcmp(&job, &before, sizeof job), 0, "a refused submit changed the job");

    moirai_sched_job_t no_run;
    moirai_sched_job_init(&no_run, NULL, NULL);
    cr_assert_eq(moirai_sched_job_submit(s, &no_run, MOIRAI_PRIORITY_NORMAL, 0), -EINVAL);

    moirai_sched_job_init(NULL, nop_run, NULL); /* ignored, no crash */
    drop_sched(s);
}

Test(job, init_sets_the_fields_and_clears_the_reserved_words, .timeout = 60)
{
    moirai_sched_job_t job;
    memset(&job, 0xab, sizeof job);
    moirai_sched_job_init(&job, nop_run, "name");
    for (int i = 0; i < 4; i++)
        cr_assert_eq(job.reserved[i], 0);
    cr_assert_eq(job.run, nop_run);
    cr_assert_str_eq(job.name, "name");
}

/* ---- Exactly once under concurrent submitters ---- */

/* A job that counts its runs and resubmits itself from its own body until
 * it has run `target` times, varying the priority and the flag so that
 * every route (LIFO slot, deque, injector levels, yield) is taken. */
typedef struct counted {
    moirai_sched_job_t job;
    moirai_sched_t *s;
    _Atomic uint32_t runs;
    _Atomic uint32_t running; /* 1 while the body runs: two at once is a bug */
    _Atomic int overlap;      /* set if the body ever ran twice at once */
    uint32_t target;          /* runs of this round, then done() */
    _Atomic int submit_errors;
    moirai_waitgroup_t *wg;
} counted_t;

static void counted_run(moirai_sched_job_t *job)
{
    counted_t *c = container_of(job, counted_t, job);
    if (atomic_exchange(&c->running, 1) != 0)
        atomic_store(&c->overlap, 1);
    uint32_t n = atomic_fetch_add(&c->runs, 1) + 1;
    moirai_waitgroup_t *wg = c->wg;
    atomic_store(&c->running, 0);
    if (n % c->target != 0) {
        moirai_priority_t prio = (moirai_priority_t)(n % MOIRAI_PRIORITY_COUNT);
        unsigned flags = (n / MOIRAI_PRIORITY_COUNT) % 2 ? MOIRAI_SCHED_JOB_YIELD : 0;
        if (moirai_sched_job_submit(c->s, job, prio, flags) != 0)
            atomic_fetch_add(&c->submit_errors, 1);
    } else {
        /* The last touch of the job this round: after done() the test may
         * submit it again. */
        moirai_waitgroup_done(wg);
    }
}

#define SUBMITTERS 4 /* two outside threads, two tasks on workers */

typedef struct submit_range {
    moirai_sched_t *s;
    counted_t *jobs;
    int begin, end;
    _Atomic int errors;
} submit_range_t;

static void submit_range(submit_range_t *r)
{
    for (int i = r->begin; i < r->end; i++) {
        moirai_priority_t prio = (moirai_priority_t)(i % MOIRAI_PRIORITY_COUNT);
        unsigned flags = i % 3 == 0 ? MOIRAI_SCHED_JOB_YIELD : 0;
        if (moirai_sched_job_submit(r->s, &r->jobs[i].job, prio, flags) != 0)
            atomic_fetch_add(&r->errors, 1);
    }
}

static void *submit_thread(void *arg)
{
    submit_range(arg);
    return NULL;
}

static int submit_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    submit_range(arg);
    return 0;
}

static void check_exactly_once(int workers, bool lifo)
{
    moirai_sched_t *s = make_sched_cfg(workers, 0, lifo);
    int njobs = (int)scaled(2000);
    uint32_t per_round = (uint32_t)scaled(20) + 1;
    counted_t *jobs = calloc((size_t)njobs, sizeof *jobs);
    cr_assert_not_null(jobs);
    moirai_waitgroup_t wg;
    moirai_waitgroup_init(&wg);
    for (int i = 0; i < njobs; i++) {
        moirai_sched_job_init(&jobs[i].job, counted_run, "counted");
        jobs[i].s = s;
        jobs[i].target = per_round;
        jobs[i].wg = &wg;
    }
    /* Two rounds: the second resubmits jobs that have finished a round,
     * again from both kinds of submitter at once. */
    for (int round = 1; round <= 2; round++) {
        cr_assert_eq(moirai_waitgroup_add(&wg, njobs), 0);
        submit_range_t r[SUBMITTERS];
        pthread_t th[2];
        for (int k = 0; k < SUBMITTERS; k++) {
            r[k].s = s;
            r[k].jobs = jobs;
            r[k].begin = njobs * k / SUBMITTERS;
            r[k].end = njobs * (k + 1) / SUBMITTERS;
            atomic_init(&r[k].errors, 0);
        }
        moirai_handle_t *h[2];
        for (int k = 0; k < 2; k++) {
            cr_assert_eq(moirai_handle_create(&h[k]), 0);
            cr_assert_eq(moirai_sched_spawn(s, submit_task, &r[2 + k], NULL, h[k]), 0);
        }
        for (int k = 0; k < 2; k++)
            cr_assert_eq(pthread_create(&th[k], NULL, submit_thread, &r[k]), 0);
        for (int k = 0; k < 2; k++) {
            cr_assert_eq(pthread_join(th[k], NULL), 0);
            cr_assert_eq(moirai_handle_join_timed(h[k], moirai_deadline_after(WAIT_NS), NULL), 0);
            moirai_handle_release(h[k]);
        }
        for (int k = 0; k < SUBMITTERS; k++)
            cr_assert_eq(atomic_load(&r[k].errors), 0);
        cr_assert_eq(moirai_waitgroup_wait_timed(&wg, moirai_deadline_after(WAIT_NS)), 0,
                     "round %d: not every job finished", round);
        for (int i = 0; i < njobs; i++) {
            cr_assert_eq(atomic_load(&jobs[i].runs), per_round * (uint32_t)round,
                         "job %d ran %u times, expected %u", i, atomic_load(&jobs[i].runs),
                         per_round * (uint32_t)round);
            cr_assert_eq(atomic_load(&jobs[i].overlap), 0, "job %d ran twice at once", i);
            cr_assert_eq(atomic_load(&jobs[i].submit_errors), 0);
        }
    }
    drop_sched(s);
    /* Destroy has returned: the scheduler no longer touches the jobs. */
    free(jobs);
}

Test(job, exactly_once_under_concurrent_submitters, .timeout = 120)
{
    check_exactly_once(2, true);
}

Test(job, exactly_once_under_concurrent_submitters_without_lifo_slot, .timeout = 120)
{
    check_exactly_once(2, false);
}

Test(job, exactly_once_under_concurrent_submitters_four_workers, .timeout = 120)
{
    check_exactly_once(4, true);
}

/* ---- From a worker of another scheduler ---- */

/* Records which scheduler's worker ran it. */
typedef struct where_job {
    moirai_sched_job_t job;
    moirai_sched_t *ran_on;
    moirai_waitgroup_t *wg;
} where_job_t;

static void where_run(moirai_sched_job_t *job)
{
    where_job_t *j = container_of(job, where_job_t, job);
    j->ran_on = moirai_sched_current();
    moirai_waitgroup_done(j->wg);
}

#define WHERE_N 64

typedef struct cross {
    moirai_sched_t *target;
    where_job_t *jobs;
    _Atomic int errors;
} cross_t;

static int cross_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    cross_t *c = arg;
    for (int i = 0; i < WHERE_N; i++)
        if (moirai_sched_job_submit(c->target, &c->jobs[i].job, MOIRAI_PRIORITY_NORMAL,
                                    i % 2 ? MOIRAI_SCHED_JOB_YIELD : 0) != 0)
            atomic_fetch_add(&c->errors, 1);
    return 0;
}

/* A task on scheduler A submits jobs to scheduler B: they are outside
 * submissions for B and run on B's workers, never in A's queues. */
Test(job, submit_from_a_worker_of_another_scheduler_runs_there, .timeout = 60)
{
    moirai_sched_t *a = make_sched(1);
    moirai_sched_t *b = make_sched(2);
    static where_job_t jobs[WHERE_N];
    moirai_waitgroup_t wg;
    moirai_waitgroup_init(&wg);
    for (int i = 0; i < WHERE_N; i++) {
        moirai_sched_job_init(&jobs[i].job, where_run, NULL);
        jobs[i].wg = &wg;
    }
    cross_t c = {.target = b, .jobs = jobs};
    cr_assert_eq(moirai_waitgroup_add(&wg, WHERE_N), 0);
    cr_assert_eq(run_in_task(a, cross_task, &c), 0);
    cr_assert_eq(moirai_waitgroup_wait_timed(&wg, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(atomic_load(&c.errors), 0);
    for (int i = 0; i < WHERE_N; i++)
        cr_assert_eq(jobs[i].ran_on, b, "job %d ran on the wrong scheduler", i);
    drop_sched(a);
    drop_sched(b);
}

/* ---- Resubmission from inside run ---- */

Test(job, resubmits_itself_from_its_body, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2);
    counted_t c;
    memset(&c, 0, sizeof c);
    moirai_waitgroup_t wg;
    moirai_waitgroup_init(&wg);
    moirai_sched_job_init(&c.job, counted_run, "self");
    c.s = s;
    c.target = (uint32_t)scaled(100000);
    c.wg = &wg;
    cr_assert_eq(moirai_waitgroup_add(&wg, 1), 0);
    cr_assert_eq(moirai_sched_job_submit(s, &c.job, MOIRAI_PRIORITY_NORMAL, 0), 0);
    cr_assert_eq(moirai_waitgroup_wait_timed(&wg, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(atomic_load(&c.runs), c.target);
    cr_assert_eq(atomic_load(&c.overlap), 0);
    cr_assert_eq(atomic_load(&c.submit_errors), 0);
    drop_sched(s);
}

/* ---- A deque that cannot grow ---- */

#define FLOOD 600 /* well past the deque's first 256 slots */

typedef struct flood {
    moirai_sched_job_t job;
    moirai_sched_t *s;
    counted_t *jobs;
    _Atomic int errors;
    _Atomic long allocs; /* allocations attempted while submitting */
} flood_t;

/* On the only worker: submits FLOOD NORMAL jobs locally with every
 * allocation failing, so the deque cannot grow and the submissions past
 * its capacity must take the injector. No other thread allocates
 * meanwhile (the test thread waits), so fail_at() is at a quiet point. */
static void flood_run(moirai_sched_job_t *job)
{
    flood_t *f = container_of(job, flood_t, job);
    long allocs = 0;
    for (int i = 0; i < FLOOD; i++) {
        moirai_test_oom_fail_at(0);
        if (moirai_sched_job_submit(f->s, &f->jobs[i].job, MOIRAI_PRIORITY_NORMAL, 0) != 0)
            atomic_fetch_add(&f->errors, 1);
        allocs += moirai_test_oom_count();
    }
    moirai_test_oom_fail_at(-1);
    atomic_store(&f->allocs, allocs);
}

static void check_flood(bool lifo)
{
    moirai_sched_t *s = make_sched_cfg(1, 0, lifo);
    static counted_t jobs[FLOOD];
    static flood_t f;
    memset(jobs, 0, sizeof jobs);
    memset(&f, 0, sizeof f);
    moirai_waitgroup_t wg;
    moirai_waitgroup_init(&wg);
    for (int i = 0; i < FLOOD; i++) {
        moirai_sched_job_init(&jobs[i].job, counted_run, NULL);
        jobs[i].s = s;
        jobs[i].target = 1;
        jobs[i].wg = &wg;
    }
    f.s = s;
    f.jobs = jobs;
    moirai_sched_job_init(&f.job, flood_run, "flood");
    cr_assert_eq(moirai_waitgroup_add(&wg, FLOOD), 0);
    moirai_test_oom_install();
    cr_assert_eq(moirai_sched_job_submit(s, &f.job, MOIRAI_PRIORITY_NORMAL, 0), 0);
    cr_assert_eq(moirai_waitgroup_wait_timed(&wg, moirai_deadline_after(WAIT_NS)), 0);
    moirai_test_oom_uninstall();
    cr_assert_eq(atomic_load(&f.errors), 0, "a submission failed for want of memory");
    cr_assert_gt(atomic_load(&f.allocs), 0, "the deque never tried to grow: test too small");
    for (int i = 0; i < FLOOD; i++)
        cr_assert_eq(atomic_load(&jobs[i].runs), 1, "job %d ran %u times", i,
                     atomic_load(&jobs[i].runs));
    drop_sched(s);
}

Test(job, full_deque_that_cannot_grow_falls_back_to_the_injector, .timeout = 60)
{
    check_flood(true);
}

Test(job, full_deque_that_cannot_grow_falls_back_to_the_injector_without_lifo_slot, .timeout = 60)
{
    check_flood(false);
}

/* ---- Order: levels, FIFO with tasks, yield ---- */

#define REC_MAX 256

/* Bodies append their tag; with one worker the appends are sequential. */
typedef struct recorder {
    _Atomic int n;
    int tags[REC_MAX];
    moirai_waitgroup_t wg;
} recorder_t;

static void rec_push(recorder_t *r, int tag)
{
    int i = atomic_fetch_add_explicit(&r->n, 1, memory_order_relaxed);
    if (i < REC_MAX)
        r->tags[i] = tag;
}

typedef struct tagged {
    moirai_sched_job_t job;
    recorder_t *rec;
    int tag;
    moirai_sched_t *s;
    unsigned again_flags; /* resubmit once with these flags (if `again`) */
    bool again;
} tagged_t;

static void tagged_run(moirai_sched_job_t *job)
{
    tagged_t *t = container_of(job, tagged_t, job);
    rec_push(t->rec, t->tag);
    if (t->again) {
        t->again = false;
        (void)moirai_sched_job_submit(t->s, job, MOIRAI_PRIORITY_NORMAL, t->again_flags);
        return; /* done() comes with the second run */
    }
    moirai_waitgroup_done(&t->rec->wg);
}

typedef struct tagged_task {
    recorder_t *rec;
    int tag;
} tagged_task_t;

static int tagged_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    tagged_task_t *t = arg;
    rec_push(t->rec, t->tag);
    moirai_waitgroup_done(&t->rec->wg);
    return 0;
}

/* The only worker, held until the test opens the gate. */
typedef struct gate {
    moirai_event_t started;
    moirai_event_t open;
} gate_t;

static int gate_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    gate_t *g = arg;
    moirai_event_set(&g->started);
    (void)moirai_event_wait_timed(&g->open, moirai_deadline_after(WAIT_NS));
    return 0;
}

static void gate_close(moirai_sched_t *s, gate_t *g)
{
    moirai_event_init(&g->started, MOIRAI_EVENT_MANUAL, false);
    moirai_event_init(&g->open, MOIRAI_EVENT_MANUAL, false);
    cr_assert_eq(moirai_sched_spawn(s, gate_task, g, NULL, NULL), 0);
    cr_assert_eq(moirai_event_wait_timed(&g->started, moirai_deadline_after(WAIT_NS)), 0);
}

#define ORDER_N 60

/* Jobs and tasks at mixed levels, submitted from outside while the only
 * worker is held: they run by level, and within a level in submission
 * order whatever their kind. */
Test(job, levels_and_fifo_shared_with_tasks, .timeout = 60)
{
    moirai_sched_t *s = make_sched_cfg(1, NO_AGING_NS, true);
    gate_t g;
    gate_close(s, &g);
    static recorder_t rec;
    memset(&rec, 0, sizeof rec);
    moirai_waitgroup_init(&rec.wg);
    static tagged_t jobs[ORDER_N];
    static tagged_task_t tasks[ORDER_N];
    moirai_priority_t level[ORDER_N];
    unsigned seed = 11;
    cr_assert_eq(moirai_waitgroup_add(&rec.wg, ORDER_N), 0);
    for (int i = 0; i < ORDER_N; i++) {
        seed = seed * 1103515245u + 12345u;
        level[i] = (moirai_priority_t)((seed >> 16) % MOIRAI_PRIORITY_COUNT);
        if (i % 2 == 0) {
            jobs[i] = (tagged_t){.rec = &rec, .tag = i, .s = s};
            moirai_sched_job_init(&jobs[i].job, tagged_run, NULL);
            cr_assert_eq(moirai_sched_job_submit(s, &jobs[i].job, level[i], 0), 0);
        } else {
            tasks[i] = (tagged_task_t){&rec, i};
            moirai_task_attr_t a = MOIRAI_TASK_ATTR_INIT;
            a.priority = level[i];
            cr_assert_eq(moirai_sched_spawn(s, tagged_task, &tasks[i], &a, NULL), 0);
        }
    }
    cr_assert_eq(atomic_load(&rec.n), 0, "something ran while the only worker was held");
    moirai_event_set(&g.open);
    cr_assert_eq(moirai_waitgroup_wait_timed(&rec.wg, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(atomic_load(&rec.n), ORDER_N);
    int k = 0;
    for (int p = 0; p < MOIRAI_PRIORITY_COUNT; p++)
        for (int i = 0; i < ORDER_N; i++)
            if ((int)level[i] == p) {
                cr_assert_eq(rec.tags[k], i, "position %d ran %d, expected %d", k, rec.tags[k], i);
                k++;
            }
    drop_sched(s);
}

/* Three NORMAL jobs A, B, C submitted from outside while the only worker
 * is held; A resubmits itself once from its body with `flags`. */
static void check_resubmit_order(bool lifo, unsigned flags, const int *expected)
{
    moirai_sched_t *s = make_sched_cfg(1, NO_AGING_NS, lifo);
    gate_t g;
    gate_close(s, &g);
    static recorder_t rec;
    memset(&rec, 0, sizeof rec);
    moirai_waitgroup_init(&rec.wg);
    static tagged_t jobs[3];
    cr_assert_eq(moirai_waitgroup_add(&rec.wg, 3), 0);
    for (int i = 0; i < 3; i++) {
        jobs[i] = (tagged_t){.rec = &rec, .tag = i, .s = s, .again = i == 0, .again_flags = flags};
        moirai_sched_job_init(&jobs[i].job, tagged_run, NULL);
        cr_assert_eq(moirai_sched_job_submit(s, &jobs[i].job, MOIRAI_PRIORITY_NORMAL, 0), 0);
    }
    moirai_event_set(&g.open);
    cr_assert_eq(moirai_waitgroup_wait_timed(&rec.wg, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(atomic_load(&rec.n), 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(rec.tags[i], expected[i], "position %d ran %d, expected %d", i, rec.tags[i],
                     expected[i]);
    drop_sched(s);
}

Test(job, yield_queues_behind_waiting_jobs, .timeout = 60)
{
    static const int order[4] = {0, 1, 2, 0};
    check_resubmit_order(true, MOIRAI_SCHED_JOB_YIELD, order);
}

Test(job, yield_queues_behind_waiting_jobs_without_lifo_slot, .timeout = 60)
{
    static const int order[4] = {0, 1, 2, 0};
    check_resubmit_order(false, MOIRAI_SCHED_JOB_YIELD, order);
}

Test(job, normal_resubmission_on_a_worker_runs_next, .timeout = 60)
{
    static const int order[4] = {0, 0, 1, 2};
    check_resubmit_order(true, 0, order);
}

Test(job, normal_resubmission_on_a_worker_runs_next_without_lifo_slot, .timeout = 60)
{
    static const int order[4] = {0, 0, 1, 2};
    check_resubmit_order(false, 0, order);
}

/* ---- Aging ---- */

/* A HIGH job that resubmits itself (HIGH) until the BACKGROUND job has run
 * or `cap` runs, each run busy for about `work_ns`. */
typedef struct stream {
    moirai_sched_job_t job;
    moirai_sched_t *s;
    _Atomic int *bg_ran;
    uint64_t cap, work_ns, runs;
    _Atomic uint64_t runs_when_bg_seen; /* 0 until the stream saw bg */
    moirai_event_t done;
} stream_t;

static void stream_run(moirai_sched_job_t *job)
{
    stream_t *st = container_of(job, stream_t, job);
    uint64_t end = moirai_clock_now_ns() + st->work_ns;
    while (moirai_clock_now_ns() < end)
        ;
    st->runs++;
    if (atomic_load(st->bg_ran)) {
        atomic_store(&st->runs_when_bg_seen, st->runs);
        moirai_event_set(&st->done);
        return;
    }
    if (st->runs >= st->cap) {
        moirai_event_set(&st->done);
        return;
    }
    (void)moirai_sched_job_submit(st->s, job, MOIRAI_PRIORITY_HIGH, 0);
}

typedef struct bg {
    moirai_sched_job_t job;
    _Atomic int ran;
    moirai_event_t done;
} bg_t;

static void bg_run(moirai_sched_job_t *job)
{
    bg_t *b = container_of(job, bg_t, job);
    atomic_store(&b->ran, 1);
    moirai_event_set(&b->done);
}

/* With aging, the BACKGROUND job runs while the HIGH stream still goes on
 * (the stream sees it and stops before its cap); without, only after the
 * stream has reached its cap. */
static void check_aging(uint64_t aging_ns, uint64_t cap, bool expect_through)
{
    moirai_sched_t *s = make_sched_cfg(1, aging_ns, true);
    static stream_t st;
    static bg_t b;
    memset(&st, 0, sizeof st);
    memset(&b, 0, sizeof b);
    moirai_event_init(&st.done, MOIRAI_EVENT_MANUAL, false);
    moirai_event_init(&b.done, MOIRAI_EVENT_MANUAL, false);
    moirai_sched_job_init(&st.job, stream_run, "stream");
    moirai_sched_job_init(&b.job, bg_run, "background");
    st.s = s;
    st.bg_ran = &b.ran;
    st.cap = cap;
    st.work_ns = 200 * MOIRAI_NS_PER_US;
    cr_assert_eq(moirai_sched_job_submit(s, &st.job, MOIRAI_PRIORITY_HIGH, 0), 0);
    cr_assert_eq(moirai_sched_job_submit(s, &b.job, MOIRAI_PRIORITY_BACKGROUND, 0), 0);
    cr_assert_eq(moirai_event_wait_timed(&st.done, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(moirai_event_wait_timed(&b.done, moirai_deadline_after(WAIT_NS)), 0);
    if (expect_through)
        cr_assert_neq(atomic_load(&st.runs_when_bg_seen), 0,
                      "the BACKGROUND job waited for the whole HIGH stream (%llu runs)",
                      (unsigned long long)st.runs);
    else
        cr_assert_eq(atomic_load(&st.runs_when_bg_seen), 0,
                     "the BACKGROUND job ran before the HIGH stream ended, without aging");
    drop_sched(s);
}

Test(job, aging_lets_a_background_job_through_a_high_job_stream, .timeout = 90)
{
    /* 5 ms periods: the BACKGROUND job counts as CRITICAL after about 20
     * ms plus a tick; the cap (10 s of stream) is far beyond that. */
    check_aging(5 * MOIRAI_NS_PER_MS, 50000, true);
}

Test(job, strict_levels_hold_a_background_job_until_the_stream_ends, .timeout = 60)
{
    check_aging(0, 500, false);
}

/* ---- Waking a parked pool ---- */

typedef struct flag_job {
    moirai_sched_job_t job;
    moirai_event_t ran;
} flag_job_t;

static void flag_run(moirai_sched_job_t *job)
{
    flag_job_t *f = container_of(job, flag_job_t, job);
    moirai_event_set(&f->ran);
}

static void await_all_parked(moirai_sched_t *s)
{
    int n = moirai_sched_worker_count(s);
    uint64_t deadline = moirai_deadline_after(WAIT_NS);
    for (int w = 0; w < n; w++) {
        moirai_sched_worker_stats_t st;
        for (;;) {
            cr_assert_eq(moirai_sched_worker_stats(s, w, &st), 0);
            if (st.parks >= 1)
                break;
            cr_assert(!moirai_deadline_expired(deadline), "worker %d never parked", w);
            sleep_ns(MOIRAI_NS_PER_MS);
        }
    }
}

typedef struct outside {
    moirai_sched_t *s;
    moirai_sched_job_t *job;
    moirai_priority_t prio;
    int rc;
} outside_t;

static void *outside_submit(void *arg)
{
    outside_t *o = arg;
    o->rc = moirai_sched_job_submit(o->s, o->job, o->prio, 0);
    return NULL;
}

static void check_wakes_parked_pool(int workers, moirai_priority_t prio)
{
    moirai_sched_t *s = make_sched(workers);
    await_all_parked(s);
    /* One job and event per round, alive until destroy: a setter may
     * still be inside moirai_event_set() when the waiter returns. */
    static flag_job_t flags[3];
    for (int round = 0; round < 3; round++) {
        flag_job_t *f = &flags[round];
        moirai_sched_job_init(&f->job, flag_run, NULL);
        moirai_event_init(&f->ran, MOIRAI_EVENT_MANUAL, false);
        /* The first round starts on a pool whose workers have all parked;
         * later ones give the woken worker time to park again (spin_ns is
         * 50 us). Submitted from a plain thread, neither the test's nor a
         * worker. */
        if (round > 0)
            sleep_ns(5 * MOIRAI_NS_PER_MS);
        outside_t o = {s, &f->job, prio, 1};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, outside_submit, &o), 0);
        cr_assert_eq(pthread_join(th, NULL), 0);
        cr_assert_eq(o.rc, 0);
        cr_assert_eq(moirai_event_wait_timed(&f->ran, moirai_deadline_after(WAIT_NS)), 0,
                     "a job submitted onto a parked pool never ran (lost wake-up)");
    }
    drop_sched(s);
}

Test(job, submit_from_a_plain_thread_wakes_a_parked_pool, .timeout = 60)
{
    check_wakes_parked_pool(2, MOIRAI_PRIORITY_NORMAL);
}

Test(job, submit_from_a_plain_thread_wakes_a_parked_single_worker, .timeout = 60)
{
    check_wakes_parked_pool(1, MOIRAI_PRIORITY_BACKGROUND);
}

/* ---- Destroy ---- */

/* Counts its runs; resubmits itself `again` more times. */
typedef struct dj {
    moirai_sched_job_t job;
    moirai_sched_t *s;
    _Atomic int runs;
    int again;
} dj_t;

static void dj_run(moirai_sched_job_t *job)
{
    dj_t *d = container_of(job, dj_t, job);
    atomic_fetch_add(&d->runs, 1);
    if (d->again > 0) {
        d->again--;
        (void)moirai_sched_job_submit(d->s, job, MOIRAI_PRIORITY_LOW, 0);
    }
}

#define DJ_BEFORE 50
#define DJ_DURING 50
#define DJ_AGAIN  3

/* Jobs submitted before destroy, and from outside while destroy waits for
 * a held task, all run, with their resubmissions from inside, before
 * destroy returns. */
static void check_destroy_runs_jobs(moirai_shutdown_t how)
{
    moirai_sched_t *s = make_sched(1);
    hold_t hold;
    hold_worker(s, &hold);
    static dj_t jobs[DJ_BEFORE + DJ_DURING];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < DJ_BEFORE + DJ_DURING; i++) {
        moirai_sched_job_init(&jobs[i].job, dj_run, "dj");
        jobs[i].s = s;
        jobs[i].again = DJ_AGAIN;
    }
    for (int i = 0; i < DJ_BEFORE; i++)
        cr_assert_eq(moirai_sched_job_submit(s, &jobs[i].job, (moirai_priority_t)(i % 5), 0), 0);
    destroyer_t d;
    start_destroy(&d, s, how);
    cr_assert(await_shutdown(s), "destroy never began");
    /* The held task keeps destroy waiting, so these submissions return
     * before it does, as job.h requires. */
    for (int i = DJ_BEFORE; i < DJ_BEFORE + DJ_DURING; i++)
        cr_assert_eq(moirai_sched_job_submit(s, &jobs[i].job, (moirai_priority_t)(i % 5), 0), 0);
    for (int i = 0; i < DJ_BEFORE + DJ_DURING; i++)
        cr_assert_eq(atomic_load(&jobs[i].runs), 0, "a job ran while the only worker was held");
    release_worker(&hold);
    cr_assert_eq(finish_destroy(&d), 0);
    for (int i = 0; i < DJ_BEFORE + DJ_DURING; i++)
        cr_assert_eq(atomic_load(&jobs[i].runs), 1 + DJ_AGAIN, "job %d ran %d times, expected %d",
                     i, atomic_load(&jobs[i].runs), 1 + DJ_AGAIN);
}

Test(job, destroy_drain_runs_every_submitted_job, .timeout = 60)
{
    check_destroy_runs_jobs(MOIRAI_SHUTDOWN_DRAIN);
}

Test(job, destroy_cancel_runs_every_submitted_job, .timeout = 60)
{
    check_destroy_runs_jobs(MOIRAI_SHUTDOWN_CANCEL);
}

/* ---- Statistics ---- */

/* Submissions from a worker count in `spawned`, every run in `executed`;
 * exact once the job's last run has signalled (the counts were stored
 * before it). */
Test(job, submissions_from_a_worker_count_as_spawned, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1);
    counted_t c;
    memset(&c, 0, sizeof c);
    moirai_waitgroup_t wg;
    moirai_waitgroup_init(&wg);
    moirai_sched_job_init(&c.job, counted_run, NULL);
    c.s = s;
    c.target = 100;
    c.wg = &wg;
    moirai_sched_worker_stats_t before, after;
    cr_assert_eq(moirai_sched_stats(s, &before), 0);
    cr_assert_eq(moirai_waitgroup_add(&wg, 1), 0);
    cr_assert_eq(moirai_sched_job_submit(s, &c.job, MOIRAI_PRIORITY_NORMAL, 0), 0);
    cr_assert_eq(moirai_waitgroup_wait_timed(&wg, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(moirai_sched_stats(s, &after), 0);
    cr_assert_eq(after.spawned - before.spawned, 99);
    cr_assert_eq(after.executed - before.executed, 100);
    drop_sched(s);
}
