/* The RT executor: workers, release, dispatch, budgets and statistics (see
 * moirai/rt/executor.h). One mutex, with priority inheritance, guards
 * every task and worker; it is held while deciding and dropped while a
 * step runs. Workers are partitioned, so the lock is contended only by
 * admission, removal, stats reads and the other workers' short decisions. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/park.h>
#include <moirai/rt/executor.h>
#include <moirai/rt/lock.h>

#include "clock_internal.h"
#include "executor_internal.h"
#include "moirai_probe.h"

/* A worker whose next release is further away than this parks on its wake
 * word (so admission and stop reach it) until PARK_MARGIN_NS before the
 * release, then sleeps the rest with clock_nanosleep(TIMER_ABSTIME) for
 * precision. A change made during that last stretch waits for its end. */
#define PARK_MARGIN_NS      (1 * MOIRAI_NS_PER_MS)
#define DEFAULT_RR_SLICE_NS (1 * MOIRAI_NS_PER_MS)
#define MAX_WORKERS         256

struct moirai_rt_job {
    moirai_rt_task_t *task;
    uint64_t index, release, deadline, budget_left;
};

/* The executor whose step this thread is running, and the task. */
static __thread moirai_rt_executor_t *in_step __attribute__((tls_model("initial-exec")));
static __thread moirai_rt_task_t *step_task __attribute__((tls_model("initial-exec")));

/* ---- small accessors ---- */

void moirai_rt_task_config_init(moirai_rt_task_config_t *cfg)
{
    if (cfg)
        memset(cfg, 0, sizeof(*cfg));
}

void moirai_rt_executor_config_init(moirai_rt_executor_config_t *cfg)
{
    if (cfg)
        memset(cfg, 0, sizeof(*cfg));
}

const char *moirai_rt_policy_name(moirai_rt_policy_t policy)
{
    static const char *const names[] = {"edf", "rm", "dm", "fifo", "rr"};
    return (unsigned)policy < 5 ? names[policy] : "unknown";
}

uint64_t moirai_rt_job_index(const moirai_rt_job_t *job)
{
    return job ? job->index : 0;
}

uint64_t moirai_rt_job_release_ns(const moirai_rt_job_t *job)
{
    return job ? job->release : 0;
}

uint64_t moirai_rt_job_deadline_ns(const moirai_rt_job_t *job)
{
    return job ? job->deadline : 0;
}

uint64_t moirai_rt_job_budget_left_ns(const moirai_rt_job_t *job)
{
    return job ? job->budget_left : 0;
}

uint64_t moirai_rt_job_now_ns(const moirai_rt_job_t *job)
{
    return job ? moirai_rt_clock_now(job->task->ex->clock) : 0;
}

uint64_t moirai_rt_task_id(const moirai_rt_task_t *task)
{
    return task ? task->id : 0;
}

static uint64_t now_of(const moirai_rt_executor_t *ex)
{
    return moirai_rt_clock_now(ex->clock);
}

static void trace(moirai_rt_executor_t *ex, moirai_rt_event_t ev, const moirai_rt_task_t *t,
                  uint64_t job, uint64_t time)
{
    if (ex->cfg.trace)
        ex->cfg.trace(ex->cfg.trace_arg, ev, t->id, job, t->worker, time);
}

static void wake_worker(moirai__rt_worker_t *w)
{
    /* Relaxed: the executor's lock orders the bump against the worker's
     * read of the word (see moirai__rt_worker_t). */
    atomic_fetch_add_explicit(&w->wake, 1, memory_order_relaxed);
    if (!w->ex->manual)
        moirai_unpark_all(&w->wake);
}

/* ---- the release heap and the ready set ---- */

static bool heap_less(const moirai__rt_worker_t *w, int a, int b)
{
    const moirai_rt_task_t *x = w->heap[a], *y = w->heap[b];
    return x->next_release < y->next_release ||
           (x->next_release == y->next_release && x->id < y->id);
}

static void heap_swap(moirai__rt_worker_t *w, int a, int b)
{
    moirai_rt_task_t *t = w->heap[a];
    w->heap[a] = w->heap[b];
    w->heap[b] = t;
    w->heap[a]->heap_idx = a;
    w->heap[b]->heap_idx = b;
}

static void heap_up(moirai__rt_worker_t *w, int i)
{
    while (i > 0 && heap_less(w, i, (i - 1) / 2)) {
        heap_swap(w, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(moirai__rt_worker_t *w, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->heap_n && heap_less(w, l, m))
            m = l;
        if (r < w->heap_n && heap_less(w, r, m))
            m = r;
        if (m == i)
            return;
        heap_swap(w, i, m);
        i = m;
    }
}

static void heap_push(moirai__rt_worker_t *w, moirai_rt_task_t *t)
{
    t->heap_idx = w->heap_n;
    w->heap[w->heap_n++] = t;
    heap_up(w, t->heap_idx);
}

static void heap_remove(moirai__rt_worker_t *w, moirai_rt_task_t *t)
{
    int i = t->heap_idx;
    if (i < 0)
        return;
    t->heap_idx = -1;
    if (--w->heap_n == i)
        return;
    w->heap[i] = w->heap[w->heap_n];
    w->heap[i]->heap_idx = i;
    heap_up(w, i);
    heap_down(w, w->heap[i]->heap_idx);
}

static void ready_add(moirai__rt_worker_t *w, moirai_rt_task_t *t)
{
    if (t->ready_idx >= 0)
        return;
    t->ready_idx = w->ready_n;
    w->ready[w->ready_n++] = t;
}

static void ready_del(moirai__rt_worker_t *w, moirai_rt_task_t *t)
{
    int i = t->ready_idx;
    if (i < 0)
        return;
    t->ready_idx = -1;
    if (--w->ready_n == i)
        return;
    w->ready[i] = w->ready[w->ready_n];
    w->ready[i]->ready_idx = i;
}

/* Room for `n` tasks on `w`. Returns 0 or -ENOMEM (nothing changed). */
static int ensure_cap(moirai__rt_worker_t *w, int n)
{
    if (n <= w->cap)
        return 0;
    int cap = w->cap ? 2 * w->cap : 8;
    while (cap < n)
        cap *= 2;
    moirai_rt_task_t **heap = moirai_realloc(w->heap, (size_t)cap * sizeof(*heap));
    if (!heap)
        return -ENOMEM;
    w->heap = heap;
    moirai_rt_task_t **ready = moirai_realloc(w->ready, (size_t)cap * sizeof(*ready));
    if (!ready)
        return -ENOMEM; /* the larger heap is kept: harmless */
    w->ready = ready;
    w->cap = cap;
    return 0;
}

/* ---- release and ranking ---- */

static void release_due(moirai_rt_executor_t *ex, moirai__rt_worker_t *w, uint64_t now)
{
    while (w->heap_n > 0 && w->heap[0]->next_release <= now) {
        moirai_rt_task_t *t = w->heap[0];
        while (t->next_release <= now) {
            if (ex->cfg.policy == MOIRAI_RT_POLICY_RR && t->released == t->finished)
                t->rr_stamp = ++w->rr_counter;
            trace(ex, MOIRAI_RT_EVENT_RELEASE, t, t->released, t->next_release);
            t->released++;
            t->next_release += t->cfg.period_ns;
        }
        ready_add(w, t);
        heap_down(w, 0);
    }
}

static uint64_t job_release(const moirai_rt_task_t *t)
{
    return t->first_release + t->finished * t->cfg.period_ns;
}

/* Whether `a` runs before `b` (both real-time, ready). Ties go to the
 * earlier admission. */
static bool more_urgent(const moirai_rt_executor_t *ex, const moirai_rt_task_t *a,
                        const moirai_rt_task_t *b)
{
    uint64_t ka = 0, kb = 0;
    switch (ex->cfg.policy) {
    case MOIRAI_RT_POLICY_EDF:
        ka = job_release(a) + a->deadline;
        kb = job_release(b) + b->deadline;
        break;
    case MOIRAI_RT_POLICY_RM:
        ka = a->cfg.period_ns;
        kb = b->cfg.period_ns;
        break;
    case MOIRAI_RT_POLICY_DM:
        ka = a->deadline;
        kb = b->deadline;
        break;
    case MOIRAI_RT_POLICY_FIFO:
    case MOIRAI_RT_POLICY_RR:
        if (a->prio != b->prio)
            return a->prio > b->prio;
        ka = ex->cfg.policy == MOIRAI_RT_POLICY_FIFO ? job_release(a) : a->rr_stamp;
        kb = ex->cfg.policy == MOIRAI_RT_POLICY_FIFO ? job_release(b) : b->rr_stamp;
        break;
    }
    if (ka != kb)
        return ka < kb;
    return a->id < b->id;
}

/* The job to run next on `w`, or NULL. Real-time jobs first; demoted
 * tasks' jobs only when no real-time job is ready, oldest release first. */
static moirai_rt_task_t *pick(moirai_rt_executor_t *ex, moirai__rt_worker_t *w, uint64_t now)
{
    moirai_rt_task_t *best = NULL, *background = NULL;
    for (int i = 0; i < w->ready_n; i++) {
        moirai_rt_task_t *t = w->ready[i];
        if (t->remove_pending)
            continue;
        if (moirai__group_exhausted(t->cfg.group, now)) {
            moirai_rt_group_t *g = t->cfg.group;
            if (t->throttle_mark != g->windows + 1) {
                t->throttle_mark = g->windows + 1;
                t->throttled++;
                trace(ex, MOIRAI_RT_EVENT_THROTTLE, t, t->finished, now);
            }
            if (g->throttled_window != g->windows + 1) {
                g->throttled_window = g->windows + 1;
                g->throttles++;
            }
            continue;
        }
        if (t->demoted) {
            if (!background || job_release(t) < job_release(background) ||
                (job_release(t) == job_release(background) && t->id < background->id))
                background = t;
        } else if (!best || more_urgent(ex, t, best)) {
            best = t;
        }
    }
    return best ? best : background;
}

/* When `w` next has something to do, given that nothing is ready now. */
static uint64_t next_event(moirai__rt_worker_t *w)
{
    uint64_t next = w->heap_n > 0 ? w->heap[0]->next_release : MOIRAI_DEADLINE_NEVER;
    for (int i = 0; i < w->ready_n; i++) {
        moirai_rt_task_t *t = w->ready[i];
        if (!t->remove_pending && t->cfg.group) {
            uint64_t end = t->cfg.group->window_start + t->cfg.group->period;
            if (end < next)
                next = end;
        }
    }
    return next;
}

/* ---- jobs ---- */

enum job_end { END_DONE, END_FAILED, END_SKIPPED };

static void finish_job(moirai_rt_executor_t *ex, moirai__rt_worker_t *w, moirai_rt_task_t *t,
                       uint64_t at, enum job_end how)
{
    uint64_t index = t->finished, release = job_release(t), deadline = release + t->deadline;
    if (how == END_DONE) {
        t->completed++;
        moirai__hist_add(&t->resp, at - release);
        int64_t late = (int64_t)(at - deadline);
        if (late > t->lateness_max)
            t->lateness_max = late;
        trace(ex, MOIRAI_RT_EVENT_COMPLETE, t, index, at);
    } else if (how == END_FAILED) {
        t->failed++;
    } else {
        t->skipped++;
        trace(ex, MOIRAI_RT_EVENT_SKIP, t, index, at);
    }
    if (at > deadline) {
        t->missed++;
        MOIRAI_PROBE4(deadline_miss, t->id, index, at - deadline, (int)how);
        trace(ex, MOIRAI_RT_EVENT_MISS, t, index, at);
    }
    t->finished++;
    if (t->finished == t->released)
        ready_del(w, t);
    t->job_started = false;
    t->job_overrun = false;
    t->job_exec = 0;
    t->slice_used = 0;
    if (ex->cfg.policy == MOIRAI_RT_POLICY_RR)
        t->rr_stamp = ++w->rr_counter;
}

static void unlink_task(moirai_rt_executor_t *ex, moirai_rt_task_t *t)
{
    moirai__rt_worker_t *w = &ex->w[t->worker];
    for (moirai_rt_task_t **p = &w->tasks; *p; p = &(*p)->next)
        if (*p == t) {
            *p = t->next;
            break;
        }
    w->ntasks--;
    ex->generation++;
    heap_remove(w, t);
    ready_del(w, t);
    if (!t->demoted) {
        w->u -= moirai__task_u(t);
        if (w->u < 1e-12)
            w->u = 0;
        if (t->cfg.group)
            t->cfg.group->member_u -= moirai__task_u(t);
    }
    if (t->cfg.group)
        t->cfg.group->members--;
    moirai_free(t->sections);
    moirai_free(t);
}

static void demote(moirai_rt_executor_t *ex, moirai__rt_worker_t *w, moirai_rt_task_t *t,
                   uint64_t at)
{
    t->demoted = true;
    ex->generation++;
    w->u -= moirai__task_u(t);
    if (w->u < 1e-12)
        w->u = 0;
    if (t->cfg.group)
        t->cfg.group->member_u -= moirai__task_u(t);
    trace(ex, MOIRAI_RT_EVENT_DEMOTE, t, t->finished, at);
}

/* Runs one step of the most urgent ready job on `w`, if any: returns true
 * when a step ran. Called and returns with the lock held; drops it while
 * the step runs. */
static bool dispatch(moirai_rt_executor_t *ex, moirai__rt_worker_t *w, uint64_t now)
{
    release_due(ex, w, now);
    moirai_rt_task_t *t = pick(ex, w, now);
    if (!t)
        return false;
    moirai_rt_job_t job = {t, t->finished, job_release(t), job_release(t) + t->deadline,
                           t->job_exec < t->cfg.wcet_ns ? t->cfg.wcet_ns - t->job_exec : 0};
    trace(ex, MOIRAI_RT_EVENT_STEP, t, job.index, now);
    t->running = true;
    pthread_mutex_unlock(&ex->lock);

    uint64_t t0 = now_of(ex);
    int held = moirai_rt_locks_held();
    in_step = ex;
    step_task = t;
    int rc = t->cfg.fn(t->cfg.arg, &job);
    in_step = NULL;
    step_task = NULL;
    bool kept_lock = moirai_rt_locks_held() != held;
    uint64_t t1 = now_of(ex);

    pthread_mutex_lock(&ex->lock);
    t->running = false;
    if (ex->removers)
        pthread_cond_broadcast(&ex->cond);
    if (!t->job_started) {
        t->job_started = true;
        moirai__hist_add(&t->lat, t0 > job.release ? t0 - job.release : 0);
    }
    uint64_t dt = t1 > t0 ? t1 - t0 : 0;
    t->job_exec += dt;
    t->slice_used += dt;
    if (t->cfg.group) {
        moirai__group_roll(t->cfg.group, t0);
        t->cfg.group->used += dt;
        t->cfg.group->total += dt;
    }
    if (t->remove_pending) {
        unlink_task(ex, t);
        return true;
    }
    bool done = rc != MOIRAI_RT_JOB_MORE;
    if (!t->job_overrun && t->job_exec > t->cfg.wcet_ns) {
        t->job_overrun = true;
        t->overruns++;
        trace(ex, MOIRAI_RT_EVENT_OVERRUN, t, job.index, t1);
        if (t->cfg.overrun == MOIRAI_RT_OVERRUN_SKIP && !done && !kept_lock && rc >= 0) {
            finish_job(ex, w, t, t1, END_SKIPPED);
            return true;
        }
        if (t->cfg.overrun == MOIRAI_RT_OVERRUN_DEMOTE && !t->demoted)
            demote(ex, w, t, t1);
    }
    if (kept_lock || rc < 0) {
        finish_job(ex, w, t, t1, END_FAILED);
    } else if (done) {
        finish_job(ex, w, t, t1, END_DONE);
    } else if (ex->cfg.policy == MOIRAI_RT_POLICY_RR && t->slice_used >= ex->cfg.rr_slice_ns) {
        /* The slice is used up: to the back of its priority's queue. */
        t->slice_used = 0;
        t->rr_stamp = ++w->rr_counter;
    }
    return true;
}

/* ---- workers ---- */

static void worker_sleep(moirai__rt_worker_t *w, uint64_t next, uint32_t seq)
{
    if (next == MOIRAI_DEADLINE_NEVER) {
        moirai_park(&w->wake, seq, MOIRAI_DEADLINE_NEVER);
        return;
    }
    for (;;) {
        if (atomic_load_explicit(&w->wake, memory_order_relaxed) != seq)
            return;
        uint64_t now = moirai_clock_now_ns();
        if (now >= next)
            return;
        if (next - now <= PARK_MARGIN_NS)
            break;
        moirai_park(&w->wake, seq, next - PARK_MARGIN_NS);
    }
    struct timespec ts = {(time_t)(next / MOIRAI_NS_PER_S), (long)(next % MOIRAI_NS_PER_S)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void *worker_main(void *arg)
{
    moirai__rt_worker_t *w = arg;
    moirai_rt_executor_t *ex = w->ex;
    int rc = moirai_rt_os_apply(&ex->cfg.os, &w->os);
    pthread_mutex_lock(&ex->lock);
    if (rc && ex->cfg.os_required && !ex->start_error)
        ex->start_error = rc;
    ex->started++;
    pthread_cond_broadcast(&ex->cond);
    /* Wait until create has seen every worker start, so a failed start
     * stops them all before any runs a job. */
    while (!ex->go && !ex->stopping)
        pthread_cond_wait(&ex->cond, &ex->lock);
    while (!ex->stopping) {
        if (dispatch(ex, w, now_of(ex)))
            continue;
        uint64_t next = next_event(w);
        uint32_t seq = atomic_load_explicit(&w->wake, memory_order_relaxed);
        pthread_mutex_unlock(&ex->lock);
        worker_sleep(w, next, seq);
        pthread_mutex_lock(&ex->lock);
    }
    pthread_mutex_unlock(&ex->lock);
    return NULL;
}

/* ---- create / destroy ---- */

static void free_all(moirai_rt_executor_t *ex)
{
    for (int i = 0; i < ex->nworkers; i++)
        while (ex->w[i].tasks)
            unlink_task(ex, ex->w[i].tasks);
    while (ex->groups) {
        moirai_rt_group_t *g = ex->groups;
        ex->groups = g->next;
        moirai_free(g);
    }
    for (int i = 0; i < ex->nworkers; i++) {
        moirai_free(ex->w[i].heap);
        moirai_free(ex->w[i].ready);
    }
    pthread_cond_destroy(&ex->cond);
    pthread_mutex_destroy(&ex->lock);
    moirai_free(ex->cpus);
    moirai_free(ex->w);
    moirai_free(ex);
}

static void stop_workers(moirai_rt_executor_t *ex)
{
    pthread_mutex_lock(&ex->lock);
    ex->stopping = true;
    pthread_cond_broadcast(&ex->cond);
    for (int i = 0; i < ex->nworkers; i++)
        wake_worker(&ex->w[i]);
    pthread_mutex_unlock(&ex->lock);
    for (int i = 0; i < ex->nworkers; i++)
        if (ex->w[i].thread_started)
            pthread_join(ex->w[i].thread, NULL);
}

int moirai_rt_executor_create(moirai_rt_executor_t **out, const moirai_rt_executor_config_t *cfg)
{
    moirai_rt_executor_config_t c;
    moirai_rt_executor_config_init(&c);
    if (cfg)
        c = *cfg;
    if (!out || (unsigned)c.policy > MOIRAI_RT_POLICY_RR || c.workers < 0 ||
        c.workers > MAX_WORKERS ||
        (c.placement != MOIRAI_RT_PLACE_PACK && c.placement != MOIRAI_RT_PLACE_SPREAD) ||
        (unsigned)c.os.policy > MOIRAI_RT_OS_DEADLINE ||
        (c.clock && !moirai_rt_clock_is_virtual(c.clock) && c.clock != moirai_rt_clock_real()))
        return -EINVAL;
    if (c.os.policy == MOIRAI_RT_OS_FIFO || c.os.policy == MOIRAI_RT_OS_RR)
        if (c.os.priority < 0 || c.os.priority > 99)
            return -EINVAL;
    int nworkers = c.workers ? c.workers : 1;
    if (c.cpus)
        for (int i = 0; i < nworkers; i++)
            if (c.cpus[i] < 0 || c.cpus[i] >= CPU_SETSIZE)
                return -EINVAL;
    if (!c.rr_slice_ns)
        c.rr_slice_ns = DEFAULT_RR_SLICE_NS;
    moirai_rt_executor_t *ex = moirai_calloc(1, sizeof(*ex));
    if (!ex)
        return -ENOMEM;
    ex->w = moirai_calloc((size_t)nworkers, sizeof(*ex->w));
    if (c.cpus)
        ex->cpus = moirai_calloc((size_t)nworkers, sizeof(int));
    if (!ex->w || (c.cpus && !ex->cpus)) {
        moirai_free(ex->w);
        moirai_free(ex->cpus);
        moirai_free(ex);
        return -ENOMEM;
    }
    if (c.cpus) {
        memcpy(ex->cpus, c.cpus, (size_t)nworkers * sizeof(int));
        c.cpus = ex->cpus;
    }
    ex->cfg = c;
    ex->nworkers = nworkers;
    ex->clock = c.clock ? c.clock : moirai_rt_clock_real();
    ex->manual = moirai_rt_clock_is_virtual(ex->clock);
    ex->next_id = 1;
    /* Priority inheritance on the executor's own lock: a worker under
     * SCHED_FIFO waiting for a SCHED_OTHER thread inside add() lends it
     * its priority. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setprotocol(&ma, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&ex->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_cond_init(&ex->cond, NULL);
    uint64_t now = now_of(ex);
    for (int i = 0; i < nworkers; i++) {
        ex->w[i].ex = ex;
        ex->w[i].index = i;
        ex->w[i].vtime = now;
        atomic_init(&ex->w[i].wake, 0);
        ex->w[i].os.requested = MOIRAI_RT_OS_NONE;
        ex->w[i].os.applied = MOIRAI_RT_OS_NONE;
        snprintf(ex->w[i].os.reason, sizeof(ex->w[i].os.reason),
                 ex->manual ? "virtual clock: no worker thread" : "not started");
    }
    if (ex->manual) {
        *out = ex;
        return 0;
    }
    int rc = 0;
    for (int i = 0; i < nworkers && rc == 0; i++) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        /* SCHED_DEADLINE refuses a thread whose affinity is narrower than
         * its root domain, so its workers are not pinned. */
        if (ex->cpus && c.os.policy != MOIRAI_RT_OS_DEADLINE) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(ex->cpus[i], &set);
            pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
        }
        int e = pthread_create(&ex->w[i].thread, &attr, worker_main, &ex->w[i]);
        pthread_attr_destroy(&attr);
        if (e)
            rc = e == EINVAL ? -EINVAL : -EAGAIN;
        else
            ex->w[i].thread_started = true;
    }
    pthread_mutex_lock(&ex->lock);
    int expected = 0;
    for (int i = 0; i < nworkers; i++)
        expected += ex->w[i].thread_started;
    while (ex->started < expected)
        pthread_cond_wait(&ex->cond, &ex->lock);
    if (!rc)
        rc = ex->start_error;
    if (!rc) {
        ex->go = true;
        pthread_cond_broadcast(&ex->cond);
    }
    pthread_mutex_unlock(&ex->lock);
    if (rc) {
        stop_workers(ex);
        free_all(ex);
        return rc;
    }
    *out = ex;
    return 0;
}

int moirai_rt_executor_destroy(moirai_rt_executor_t *ex)
{
    if (!ex)
        return -EINVAL;
    if (in_step == ex)
        return -EDEADLK;
    if (!ex->manual)
        stop_workers(ex);
    free_all(ex);
    return 0;
}

/* ---- tasks ---- */

int moirai_rt_executor_add(moirai_rt_executor_t *ex, const moirai_rt_task_config_t *cfg,
                           moirai_rt_task_t **out, moirai_rt_analysis_result_t *why)
{
    if (!ex || !cfg || !cfg->fn || cfg->period_ns == 0 || cfg->wcet_ns == 0)
        return -EINVAL;
    uint64_t deadline = cfg->deadline_ns ? cfg->deadline_ns : cfg->period_ns;
    if (cfg->wcet_ns > deadline || deadline > cfg->period_ns ||
        (unsigned)cfg->overrun > MOIRAI_RT_OVERRUN_DEMOTE || cfg->priority < 0 ||
        cfg->priority > 99 || cfg->worker < 0 || cfg->worker > ex->nworkers ||
        cfg->max_step_ns > cfg->wcet_ns || (cfg->group && cfg->group->ex != ex) ||
        (cfg->section_count && !cfg->sections))
        return -EINVAL;
    for (size_t s = 0; s < cfg->section_count; s++)
        if (cfg->sections[s].lock < 0 || cfg->sections[s].length_ns > cfg->wcet_ns)
            return -EINVAL;
    moirai_rt_task_t *t = moirai_calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    if (cfg->section_count) {
        t->sections = moirai_calloc(cfg->section_count, sizeof(*t->sections));
        if (!t->sections) {
            moirai_free(t);
            return -ENOMEM;
        }
        memcpy(t->sections, cfg->sections, cfg->section_count * sizeof(*t->sections));
    }
    t->ex = ex;
    t->cfg = *cfg;
    t->cfg.sections = t->sections;
    t->deadline = deadline;
    t->step = cfg->max_step_ns ? cfg->max_step_ns : cfg->wcet_ns;
    t->prio = cfg->priority ? cfg->priority : 1;
    t->lateness_max = INT64_MIN;
    t->heap_idx = -1;
    t->ready_idx = -1;
    moirai__hist_reset(&t->resp);
    moirai__hist_reset(&t->lat);

    pthread_mutex_lock(&ex->lock);
    int w;
    for (;;) {
        if (ex->stopping) {
            w = -ESHUTDOWN;
            break;
        }
        if ((w = moirai__admission_group_check(t, why)) != 0)
            break;
        /* Analyse a snapshot without the lock, so the workers keep
         * dispatching meanwhile; decide again if the set changed. */
        moirai__snapshot_t *snap;
        if ((w = moirai__snapshot_take(ex, t, &snap)) != 0)
            break;
        uint64_t generation = ex->generation;
        pthread_mutex_unlock(&ex->lock);
        w = moirai__admission_decide(snap, why);
        moirai__snapshot_free(snap);
        pthread_mutex_lock(&ex->lock);
        if (ex->generation == generation || (w < 0 && w != -EBUSY))
            break;
    }
    if (w >= 0 && ensure_cap(&ex->w[w], ex->w[w].ntasks + 1) != 0)
        w = -ENOMEM;
    if (w < 0) {
        pthread_mutex_unlock(&ex->lock);
        moirai_free(t->sections);
        moirai_free(t);
        return w;
    }
    t->id = ex->next_id++;
    t->worker = w;
    uint64_t now = ex->manual ? ex->w[w].vtime : now_of(ex);
    if (ex->manual && now_of(ex) > now)
        now = now_of(ex);
    t->first_release = cfg->start_ns ? cfg->start_ns : now;
    t->next_release = t->first_release;
    moirai_rt_task_t **p = &ex->w[w].tasks;
    while (*p)
        p = &(*p)->next;
    *p = t;
    ex->w[w].ntasks++;
    heap_push(&ex->w[w], t);
    ex->w[w].u += moirai__task_u(t);
    if (t->cfg.group) {
        t->cfg.group->members++;
        t->cfg.group->member_u += moirai__task_u(t);
    }
    ex->generation++;
    wake_worker(&ex->w[w]);
    pthread_mutex_unlock(&ex->lock);
    if (out)
        *out = t;
    return 0;
}

int moirai_rt_executor_remove(moirai_rt_executor_t *ex, moirai_rt_task_t *task)
{
    if (!ex || !task || task->ex != ex)
        return -EINVAL;
    pthread_mutex_lock(&ex->lock);
    if (in_step == ex && step_task == task) {
        /* Our own step: the dispatcher frees the task when it returns;
         * until then it is neither released nor ranked. */
        task->remove_pending = true;
        heap_remove(&ex->w[task->worker], task);
        ready_del(&ex->w[task->worker], task);
        pthread_mutex_unlock(&ex->lock);
        return 0;
    }
    ex->removers++;
    while (task->running)
        pthread_cond_wait(&ex->cond, &ex->lock);
    ex->removers--;
    moirai__rt_worker_t *w = &ex->w[task->worker];
    unlink_task(ex, task);
    wake_worker(w);
    pthread_mutex_unlock(&ex->lock);
    return 0;
}

int moirai_rt_executor_task_stats(moirai_rt_executor_t *ex, const moirai_rt_task_t *task,
                                  moirai_rt_task_stats_t *out)
{
    if (!ex || !task || !out || task->ex != ex)
        return -EINVAL;
    pthread_mutex_lock(&ex->lock);
    const moirai_rt_task_t *t = task;
    memset(out, 0, sizeof(*out));
    out->released = t->released;
    out->completed = t->completed;
    out->missed = t->missed;
    out->skipped = t->skipped;
    out->overruns = t->overruns;
    out->failed = t->failed;
    out->throttled = t->throttled;
    if (t->resp.count) {
        out->response_min_ns = t->resp.min;
        out->response_max_ns = t->resp.max;
        out->response_mean_ns = t->resp.sum / t->resp.count;
        out->response_p99_ns = moirai__hist_percentile(&t->resp, 990);
    }
    if (t->lat.count) {
        out->latency_min_ns = t->lat.min;
        out->latency_max_ns = t->lat.max;
        out->latency_mean_ns = t->lat.sum / t->lat.count;
        out->latency_p99_ns = moirai__hist_percentile(&t->lat, 990);
    }
    out->lateness_max_ns = t->lateness_max;
    out->worker = t->worker;
    out->demoted = t->demoted;
    pthread_mutex_unlock(&ex->lock);
    return 0;
}

int moirai_rt_executor_run_until(moirai_rt_executor_t *ex, uint64_t until_ns)
{
    if (!ex || !ex->manual)
        return -EINVAL;
    if (in_step == ex)
        return -EDEADLK;
    uint64_t start = now_of(ex);
    if (until_ns < start)
        return -EINVAL;
    pthread_mutex_lock(&ex->lock);
    for (int i = 0; i < ex->nworkers; i++)
        if (ex->w[i].vtime < start)
            ex->w[i].vtime = start;
    uint64_t latest = until_ns;
    for (;;) {
        /* The worker furthest behind goes next, so the workers' timelines
         * advance together. */
        moirai__rt_worker_t *w = NULL;
        for (int i = 0; i < ex->nworkers; i++)
            if (ex->w[i].vtime < until_ns && (!w || ex->w[i].vtime < w->vtime))
                w = &ex->w[i];
        if (!w)
            break;
        moirai__clock_set(ex->clock, w->vtime);
        if (dispatch(ex, w, w->vtime)) {
            w->vtime = now_of(ex);
        } else {
            uint64_t next = next_event(w);
            w->vtime = next < until_ns ? next : until_ns;
        }
    }
    for (int i = 0; i < ex->nworkers; i++)
        if (ex->w[i].vtime > latest)
            latest = ex->w[i].vtime;
    moirai__clock_set(ex->clock, latest);
    pthread_mutex_unlock(&ex->lock);
    return 0;
}

int moirai_rt_executor_os_status(const moirai_rt_executor_t *ex, int worker,
                                 moirai_rt_os_status_t *out)
{
    if (!ex || !out || worker < 0 || worker >= ex->nworkers)
        return -EINVAL;
    pthread_mutex_lock((pthread_mutex_t *)&ex->lock);
    *out = ex->w[worker].os;
    pthread_mutex_unlock((pthread_mutex_t *)&ex->lock);
    return 0;
}

double moirai_rt_executor_utilization(moirai_rt_executor_t *ex, int worker)
{
    if (!ex || worker < 0 || worker >= ex->nworkers)
        return -1.0;
    pthread_mutex_lock(&ex->lock);
    double u = ex->w[worker].u;
    pthread_mutex_unlock(&ex->lock);
    return u;
}

int moirai_rt_executor_active_workers(moirai_rt_executor_t *ex)
{
    if (!ex)
        return -EINVAL;
    pthread_mutex_lock(&ex->lock);
    int n = 0;
    for (int i = 0; i < ex->nworkers; i++) {
        bool active = false;
        for (moirai_rt_task_t *t = ex->w[i].tasks; t; t = t->next)
            active |= !t->demoted;
        n += active;
    }
    pthread_mutex_unlock(&ex->lock);
    return n;
}

int moirai_rt_executor_worker_count(const moirai_rt_executor_t *ex)
{
    return ex ? ex->nworkers : -EINVAL;
}
