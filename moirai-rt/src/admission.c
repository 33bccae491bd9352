/* Online admission: a new task joins only if the exact test of the
 * executor's policy still passes on a worker with it (see executor.h).
 *
 * The analysis runs on a snapshot of the admitted set taken under the
 * executor's lock and is done outside it, so workers keep dispatching
 * while it runs; the executor commits the result only if the set has not
 * changed meanwhile (its generation counter), and otherwise takes a new
 * snapshot and decides again.
 *
 * The per-worker task set handed to the analysis carries, for each task,
 * a blocking term with two parts:
 *   - non-preemptive blocking: steps never preempt each other, so a job
 *     can wait for the longest step (plus that step's own waits for
 *     remote locks) of any less urgent task on its worker. With this term
 *     the fully preemptive response-time test is a sufficient test for
 *     limited-preemptive fixed priorities (Davis, Burns, Bril, Lukkien,
 *     Real-Time Systems 35(3), 2007, the "sufficient test" of section 4),
 *     and the demand test with b(t) one for limited-preemptive EDF
 *     (Baruah, "The limited-preemption uniprocessor scheduling of sporadic
 *     task systems", ECRTS 2005);
 *   - remote blocking: a section on a lock that tasks of other workers
 *     also use may wait for them. The wait W of one request satisfies
 *     W = sum_j (ceil(W / T_j) + 1) * cs_j over those tasks j (each can
 *     hold the lock once per job, and a job already running at the start
 *     adds one); the sum over the task's sections is added.
 * Locks are never held across steps (the executor checks), so a lock held
 * on the same worker is already inside a step and covered by the first
 * part. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/core/alloc.h>

#include "analysis_internal.h"
#include "executor_internal.h"

/* Bytes of a task's name kept in a snapshot, for the reason. */
#define NAME_KEEP 32

typedef struct snap_task {
    uint64_t id; /* 0 for the candidate */
    uint64_t period, deadline, wcet, step;
    int prio;
    int worker; /* the candidate's is set per placement tried */
    size_t sec_first, sec_count;
    char name[NAME_KEEP];
} snap_task_t;

struct moirai__snapshot {
    moirai_rt_policy_t policy;
    moirai_rt_placement_t placement;
    int nworkers;
    uint64_t generation;
    size_t n; /* admitted non-demoted tasks, then the candidate at [n] */
    snap_task_t *tasks;
    moirai_rt_task_section_t *secs;
    double *u;  /* per worker */
    int pinned; /* the candidate's worker + 1, or 0 */
};

static void snap_fill(snap_task_t *s, const moirai_rt_task_t *t, uint64_t id, int worker,
                      size_t sec_first)
{
    s->id = id;
    s->period = t->cfg.period_ns;
    s->deadline = t->deadline;
    s->wcet = t->cfg.wcet_ns;
    s->step = t->step;
    s->prio = t->prio;
    s->worker = worker;
    s->sec_first = sec_first;
    s->sec_count = t->cfg.section_count;
    /* A bounded copy (names are for the reason only; a long one is cut). */
    size_t len = t->cfg.name ? strnlen(t->cfg.name, sizeof(s->name) - 1) : 0;
    memcpy(s->name, t->cfg.name ? t->cfg.name : "", len);
    s->name[len] = 0;
}

void moirai__snapshot_free(moirai__snapshot_t *s)
{
    if (!s)
        return;
    moirai_free(s->tasks);
    moirai_free(s->secs);
    moirai_free(s->u);
    moirai_free(s);
}

int moirai__snapshot_take(moirai_rt_executor_t *ex, const moirai_rt_task_t *cand,
                          moirai__snapshot_t **out)
{
    size_t n = 0, nsec = cand->cfg.section_count;
    for (int w = 0; w < ex->nworkers; w++)
        for (const moirai_rt_task_t *t = ex->w[w].tasks; t; t = t->next)
            if (!t->demoted) {
                n++;
                nsec += t->cfg.section_count;
            }
    moirai__snapshot_t *s = moirai_calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->tasks = moirai_calloc(n + 1, sizeof(*s->tasks));
    s->secs = moirai_calloc(nsec ? nsec : 1, sizeof(*s->secs));
    s->u = moirai_calloc((size_t)ex->nworkers, sizeof(*s->u));
    if (!s->tasks || !s->secs || !s->u) {
        moirai__snapshot_free(s);
        return -ENOMEM;
    }
    s->policy = ex->cfg.policy;
    s->placement = ex->cfg.placement;
    s->nworkers = ex->nworkers;
    s->generation = ex->generation;
    s->pinned = cand->cfg.worker;
    size_t k = 0, q = 0;
    for (int w = 0; w < ex->nworkers; w++) {
        s->u[w] = ex->w[w].u;
        for (const moirai_rt_task_t *t = ex->w[w].tasks; t; t = t->next) {
            if (t->demoted)
                continue;
            snap_fill(&s->tasks[k++], t, t->id, w, q);
            memcpy(&s->secs[q], t->sections, t->cfg.section_count * sizeof(*s->secs));
            q += t->cfg.section_count;
        }
    }
    snap_fill(&s->tasks[k], cand, 0, -1, q);
    if (cand->cfg.section_count)
        memcpy(&s->secs[q], cand->sections, cand->cfg.section_count * sizeof(*s->secs));
    s->n = n;
    *out = s;
    return 0;
}

/* The remote blocking of task `t`: waits for its sections' locks held by
 * tasks on other workers. UINT64_MAX when a wait would pass its deadline. */
static uint64_t remote_blocking(const moirai__snapshot_t *s, const snap_task_t *t)
{
    uint64_t total = 0;
    for (size_t q = 0; q < t->sec_count; q++) {
        int lock = s->secs[t->sec_first + q].lock;
        uint64_t w = 0, prev;
        /* Fixed point of the wait, starting from one section of each. */
        for (int round = 0; round < 1000; round++) {
            prev = w;
            uint64_t next = 0;
            for (size_t k = 0; k <= s->n; k++) {
                const snap_task_t *o = &s->tasks[k];
                if (o == t || o->worker == t->worker)
                    continue;
                uint64_t cs = 0;
                for (size_t r = 0; r < o->sec_count; r++) {
                    const moirai_rt_task_section_t *sec = &s->secs[o->sec_first + r];
                    if (sec->lock == lock && sec->length_ns > cs)
                        cs = sec->length_ns;
                }
                if (!cs)
                    continue;
                uint64_t jobs = (round == 0 ? 0 : (w + o->period - 1) / o->period) + 1;
                next += jobs * cs;
            }
            w = next;
            if (w > t->deadline)
                return UINT64_MAX;
            if (w == prev)
                break;
        }
        total += w;
        if (total > t->deadline)
            return UINT64_MAX;
    }
    return total;
}

/* The urgency order of a worker's tasks. qsort has no context argument,
 * so the set being sorted is passed per thread. */
static _Thread_local struct {
    const moirai_rt_analysis_task_t *set;
    moirai_rt_policy_t policy;
} sort_ctx;

static uint64_t urgency_key(const moirai_rt_analysis_task_t *t, moirai_rt_policy_t policy)
{
    switch (policy) {
    case MOIRAI_RT_POLICY_RM:
        return t->period_ns;
    case MOIRAI_RT_POLICY_FIFO:
    case MOIRAI_RT_POLICY_RR:
        return (uint64_t)(100 - t->priority);
    default:
        return t->deadline_ns;
    }
}

static int by_urgency(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    uint64_t kx = urgency_key(&sort_ctx.set[x], sort_ctx.policy);
    uint64_t ky = urgency_key(&sort_ctx.set[y], sort_ctx.policy);
    if (kx != ky)
        return kx < ky ? -1 : 1;
    return (x > y) - (x < y);
}

/* Whether two tasks are equally urgent for the blocking term: equal
 * deadlines under EDF, equal priorities otherwise (RM and DM priorities
 * are distinct ranks by then). */
static bool same_urgency(const moirai_rt_analysis_task_t *a, const moirai_rt_analysis_task_t *b,
                         bool edf)
{
    return edf ? a->deadline_ns == b->deadline_ns : a->priority == b->priority;
}

/* Tests worker `w` with the candidate where the snapshot puts it.
 * Returns 0 with `r` filled (and `*failing` the failing task, or NULL),
 * or a negative errno. */
static int test_worker(const moirai__snapshot_t *s, int w, moirai_rt_analysis_result_t *r,
                       const snap_task_t **failing)
{
    size_t n = 0;
    for (size_t k = 0; k <= s->n; k++)
        n += s->tasks[k].worker == w;
    size_t cap = n ? n : 1;
    moirai_rt_analysis_task_t *set = moirai_calloc(cap, sizeof(*set));
    const snap_task_t **who = moirai_calloc(cap, sizeof(*who));
    uint64_t *remote = moirai_calloc(cap, sizeof(*remote));
    size_t *order = moirai_calloc(cap, sizeof(*order));
    int rc = 0;
    *failing = NULL;
    if (!set || !who || !remote || !order) {
        rc = -ENOMEM;
        goto out;
    }
    /* Admission order (the candidate, last in the snapshot, comes last),
     * which is also the dispatcher's tie order. */
    size_t k = 0;
    for (size_t i = 0; i <= s->n; i++)
        if (s->tasks[i].worker == w)
            who[k++] = &s->tasks[i];
    for (size_t i = 0; i < n; i++) {
        const snap_task_t *t = who[i];
        set[i].period_ns = t->period;
        set[i].deadline_ns = t->deadline;
        set[i].wcet_ns = t->wcet;
        set[i].priority = t->prio;
        remote[i] = remote_blocking(s, t);
        if (remote[i] == UINT64_MAX) {
            memset(r, 0, sizeof(*r));
            r->task = (int)i;
            r->cpu = w;
            snprintf(r->reason, sizeof(r->reason),
                     "waiting for locks held on other workers could exceed the deadline "
                     "(%llu ns)",
                     (unsigned long long)t->deadline);
            *failing = t;
            goto out;
        }
    }
    bool edf = s->policy == MOIRAI_RT_POLICY_EDF;
    /* Indices by decreasing urgency, as the dispatcher ranks them: RM by
     * period, DM and EDF by relative deadline (EDF's static order for the
     * blocking term), FIFO and RR by priority; ties by admission order.
     * O(n log n). */
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    sort_ctx.set = set;
    sort_ctx.policy = s->policy;
    qsort(order, n, sizeof(*order), by_urgency);
    if (s->policy == MOIRAI_RT_POLICY_RM || s->policy == MOIRAI_RT_POLICY_DM)
        for (size_t q = 0; q < n; q++)
            set[order[q]].priority = (int)(n - q);
    /* Non-preemptive blocking: the longest step (plus its remote waits) of
     * any strictly less urgent task, a running maximum from the least
     * urgent end, taken over whole groups of equal urgency. */
    uint64_t below = 0;
    for (size_t q = n; q > 0;) {
        size_t first = q - 1;
        while (first > 0 && same_urgency(&set[order[first - 1]], &set[order[q - 1]], edf))
            first--;
        uint64_t group_max = 0;
        for (size_t p = first; p < q; p++) {
            size_t i = order[p];
            set[i].blocking_ns = below + remote[i];
            uint64_t own = who[i]->step + remote[i];
            if (own > group_max)
                group_max = own;
        }
        if (group_max > below)
            below = group_max;
        q = first;
    }
    rc = moirai__analysis_cpu_test(set, n, edf ? MOIRAI_RT_TEST_EDF : MOIRAI_RT_TEST_RTA, r);
    if (rc == 0) {
        r->cpu = w;
        *failing = !r->schedulable && r->task >= 0 ? who[r->task] : NULL;
    }
out:
    moirai_free(set);
    moirai_free(who);
    moirai_free(remote);
    moirai_free(order);
    return rc;
}

/* Rewrites the analysis reason in the executor's terms. */
static void explain(moirai_rt_analysis_result_t *why, int w, const snap_task_t *failing)
{
    char inner[sizeof(why->reason)];
    memcpy(inner, why->reason, sizeof(inner));
    if (failing)
        snprintf(why->reason, sizeof(why->reason), "worker %d: task %s%s%s(id %llu) %s: %.100s", w,
                 failing->name[0] ? "'" : "", failing->name, failing->name[0] ? "' " : "",
                 (unsigned long long)failing->id,
                 failing->id == 0 ? "(the new one) fails" : "would fail", inner);
    else
        snprintf(why->reason, sizeof(why->reason), "worker %d: %.180s", w, inner);
}

int moirai__admission_decide(moirai__snapshot_t *s, moirai_rt_analysis_result_t *why)
{
    moirai_rt_analysis_result_t r, last;
    memset(&last, 0, sizeof(last));
    last.task = -1;
    last.cpu = -1;
    snap_task_t *cand = &s->tasks[s->n];
    /* Candidate workers in the placement's order. */
    int order[256] = {0};
    int count = 0;
    if (s->pinned > 0) {
        order[count++] = s->pinned - 1;
    } else {
        for (int i = 0; i < s->nworkers; i++)
            order[count++] = i;
        if (s->placement == MOIRAI_RT_PLACE_SPREAD)
            for (int a = 1; a < count; a++) {
                int x = order[a], b = a;
                while (b > 0 && s->u[order[b - 1]] > s->u[x]) {
                    order[b] = order[b - 1];
                    b--;
                }
                order[b] = x;
            }
    }
    int last_w = order[0];
    const snap_task_t *last_failing = NULL;
    for (int a = 0; a < count; a++) {
        int w = order[a];
        cand->worker = w;
        const snap_task_t *failing = NULL;
        int rc = test_worker(s, w, &r, &failing);
        if (rc)
            return rc;
        bool ok = r.schedulable;
        /* Sections on shared locks change the remote blocking of tasks on
         * the other workers: they must still pass too. */
        if (ok && cand->sec_count > 0)
            for (int o = 0; o < s->nworkers && ok; o++) {
                if (o == w)
                    continue;
                moirai_rt_analysis_result_t ro;
                rc = test_worker(s, o, &ro, &failing);
                if (rc)
                    return rc;
                if (!ro.schedulable) {
                    ok = false;
                    r = ro;
                }
            }
        if (ok) {
            if (why) {
                *why = r;
                snprintf(why->reason, sizeof(why->reason), "admitted on worker %d: %.170s", w,
                         r.reason);
            }
            return w;
        }
        last = r;
        last_w = r.cpu >= 0 ? r.cpu : w;
        last_failing = failing;
    }
    explain(&last, last_w, last_failing);
    if (why)
        *why = last;
    return -EBUSY;
}

int moirai__admission_group_check(const moirai_rt_task_t *t, moirai_rt_analysis_result_t *why)
{
    moirai_rt_group_t *g = t->cfg.group;
    if (!g)
        return 0;
    double cap = (double)g->budget / (double)g->period;
    if (g->member_u + moirai__task_u(t) <= cap + 1e-9)
        return 0;
    if (why) {
        memset(why, 0, sizeof(*why));
        why->task = -1;
        why->cpu = -1;
        why->utilization = g->member_u + moirai__task_u(t);
        why->bound = cap;
        snprintf(why->reason, sizeof(why->reason),
                 "the group's tasks would need utilization %.4f, above its quota %.4f",
                 why->utilization, cap);
    }
    return -EBUSY;
}
