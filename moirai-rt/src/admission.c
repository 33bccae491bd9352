/* Online admission: a new task joins only if the exact test of the
 * executor's policy still passes on a worker with it (see executor.h).
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

/* The remote blocking of task `t` placed on worker `tw`, given the
 * candidate `cand` on worker `cw`. UINT64_MAX when a wait would pass the
 * task's deadline. */
static uint64_t remote_blocking(moirai_rt_executor_t *ex, const moirai_rt_task_t *t, int tw,
                                moirai_rt_task_t *cand, int cw)
{
    uint64_t total = 0;
    for (size_t s = 0; s < t->cfg.section_count; s++) {
        int lock = t->sections[s].lock;
        uint64_t w = 0, prev;
        /* Fixed point of the wait, starting from one section of each. */
        for (int round = 0; round < 1000; round++) {
            prev = w;
            uint64_t next = 0;
            for (int k = 0; k <= ex->nworkers; k++) {
                moirai_rt_task_t *o = k < ex->nworkers ? ex->w[k].tasks : cand;
                for (; o; o = k < ex->nworkers ? o->next : NULL) {
                    if (o == t || o->demoted || (k < ex->nworkers && o == cand))
                        continue;
                    int ow = o == cand ? cw : o->worker;
                    if (ow == tw)
                        continue;
                    uint64_t cs = 0;
                    for (size_t q = 0; q < o->cfg.section_count; q++)
                        if (o->sections[q].lock == lock && o->sections[q].length_ns > cs)
                            cs = o->sections[q].length_ns;
                    if (!cs)
                        continue;
                    uint64_t n =
                        (round == 0 ? 0 : (w + o->cfg.period_ns - 1) / o->cfg.period_ns) + 1;
                    next += n * cs;
                }
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

/* Whether a is more urgent than b for the fixed-priority policies (the
 * priority order the analysis uses; matches the dispatcher's ranking). */
static int fp_priority_rank(const moirai_rt_executor_t *ex, const moirai_rt_task_t *t)
{
    (void)ex;
    return t->prio;
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

/* Tests worker `w` with the candidate on worker `cw`. Returns 0 with
 * `r` filled, or a negative errno. */
static int test_worker(moirai_rt_executor_t *ex, int w, moirai_rt_task_t *cand, int cw,
                       moirai_rt_analysis_result_t *r, moirai_rt_task_t **failing)
{
    size_t n = 0;
    for (moirai_rt_task_t *t = ex->w[w].tasks; t; t = t->next)
        n += !t->demoted && t != cand;
    if (cw == w)
        n++;
    moirai_rt_analysis_task_t *set = moirai_calloc(n ? n : 1, sizeof(*set));
    moirai_rt_task_t **who = moirai_calloc(n ? n : 1, sizeof(*who));
    uint64_t *remote = moirai_calloc(n ? n : 1, sizeof(*remote));
    size_t *order = moirai_calloc(n ? n : 1, sizeof(*order));
    int rc = 0;
    if (!set || !who || !remote || !order) {
        rc = -ENOMEM;
        goto out;
    }
    size_t k = 0;
    for (moirai_rt_task_t *t = ex->w[w].tasks; t; t = t->next)
        if (!t->demoted && t != cand)
            who[k++] = t;
    if (cw == w)
        who[k++] = cand;
    for (size_t i = 0; i < n; i++) {
        moirai_rt_task_t *t = who[i];
        set[i].period_ns = t->cfg.period_ns;
        set[i].deadline_ns = t->deadline;
        set[i].wcet_ns = t->cfg.wcet_ns;
        set[i].priority = fp_priority_rank(ex, t);
        remote[i] = remote_blocking(ex, t, w, cand, cw);
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
    bool edf = ex->cfg.policy == MOIRAI_RT_POLICY_EDF;
    /* Indices by decreasing urgency, as the dispatcher ranks them: RM by
     * period, DM and EDF by relative deadline (EDF's static order for the
     * blocking term), FIFO and RR by priority; ties by admission order
     * (the candidate is last in `who`). O(n log n), so admitting into a
     * large set stays cheap under the lock. */
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    sort_ctx.set = set;
    sort_ctx.policy = ex->cfg.policy;
    qsort(order, n, sizeof(*order), by_urgency);
    if (ex->cfg.policy == MOIRAI_RT_POLICY_RM || ex->cfg.policy == MOIRAI_RT_POLICY_DM)
        for (size_t k = 0; k < n; k++)
            set[order[k]].priority = (int)(n - k);
    /* Non-preemptive blocking: the longest step (plus its remote waits) of
     * any strictly less urgent task, a running maximum from the least
     * urgent end, taken over whole groups of equal urgency. */
    uint64_t below = 0;
    for (size_t k = n; k > 0;) {
        size_t first = k - 1;
        while (first > 0 && same_urgency(&set[order[first - 1]], &set[order[k - 1]], edf))
            first--;
        uint64_t group_max = 0;
        for (size_t q = first; q < k; q++) {
            size_t i = order[q];
            set[i].blocking_ns = below + remote[i];
            uint64_t own = who[i]->step + remote[i];
            if (own > group_max)
                group_max = own;
        }
        if (group_max > below)
            below = group_max;
        k = first;
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
static void explain(moirai_rt_analysis_result_t *why, int w, const moirai_rt_task_t *failing,
                    const moirai_rt_task_t *cand)
{
    char inner[sizeof(why->reason)];
    memcpy(inner, why->reason, sizeof(inner));
    if (failing)
        snprintf(why->reason, sizeof(why->reason), "worker %d: task %s%s%s(id %llu) %s: %.120s", w,
                 failing->cfg.name ? "'" : "", failing->cfg.name ? failing->cfg.name : "",
                 failing->cfg.name ? "' " : "",
                 (unsigned long long)(failing == cand ? 0 : failing->id),
                 failing == cand ? "(the new one) fails" : "would fail", inner);
    else
        snprintf(why->reason, sizeof(why->reason), "worker %d: %.180s", w, inner);
}

int moirai__admission_place(moirai_rt_executor_t *ex, moirai_rt_task_t *t,
                            moirai_rt_analysis_result_t *why)
{
    moirai_rt_analysis_result_t r, last;
    memset(&last, 0, sizeof(last));
    last.task = -1;
    last.cpu = -1;
    if (t->cfg.group) {
        moirai_rt_group_t *g = t->cfg.group;
        double cap = (double)g->budget / (double)g->period;
        if (g->member_u + moirai__task_u(t) > cap + 1e-9) {
            last.utilization = g->member_u + moirai__task_u(t);
            last.bound = cap;
            snprintf(last.reason, sizeof(last.reason),
                     "the group's tasks would need utilization %.4f, above its quota %.4f",
                     last.utilization, cap);
            if (why)
                *why = last;
            return -EBUSY;
        }
    }
    /* Candidate workers in the placement's order. */
    int order[256] = {0};
    int count = 0;
    if (t->cfg.worker > 0) {
        order[count++] = t->cfg.worker - 1;
    } else {
        for (int i = 0; i < ex->nworkers; i++)
            order[count++] = i;
        if (ex->cfg.placement == MOIRAI_RT_PLACE_SPREAD)
            for (int a = 1; a < count; a++) {
                int x = order[a], b = a;
                while (b > 0 && ex->w[order[b - 1]].u > ex->w[x].u) {
                    order[b] = order[b - 1];
                    b--;
                }
                order[b] = x;
            }
    }
    int last_w = order[0];
    moirai_rt_task_t *last_failing = NULL;
    for (int a = 0; a < count; a++) {
        int w = order[a];
        moirai_rt_task_t *failing = NULL;
        int rc = test_worker(ex, w, t, w, &r, &failing);
        if (rc)
            return rc;
        bool ok = r.schedulable;
        /* Sections on shared locks change the remote blocking of tasks on
         * the other workers: they must still pass too. */
        if (ok && t->cfg.section_count > 0)
            for (int o = 0; o < ex->nworkers && ok; o++) {
                if (o == w)
                    continue;
                moirai_rt_analysis_result_t ro;
                rc = test_worker(ex, o, t, w, &ro, &failing);
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
    explain(&last, last_w, last_failing, t);
    if (why)
        *why = last;
    return -EBUSY;
}
