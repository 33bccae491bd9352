/* Schedulability analysis (see moirai/rt/analysis.h for the tests and
 * their sources). Everything here is integer arithmetic on nanoseconds
 * except the utilization bounds, which are ratios by nature; overflow is
 * checked, never wrapped. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/rt/analysis.h>

#include "analysis_internal.h"

/* 128-bit products (a GNU extension; -Wpedantic wants it marked). */
__extension__ typedef unsigned __int128 u128;

/* The most deadline points the demand test checks before giving up. */
#define EDF_MAX_POINTS 10000000u
/* The most busy-period iterations before the demand test gives up. */
#define EDF_MAX_ITERATIONS 10000000u

static uint64_t rel_deadline(const moirai_rt_analysis_task_t *t)
{
    return t->deadline_ns ? t->deadline_ns : t->period_ns;
}

static bool add_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

int moirai_rt_analysis_task_validate(const moirai_rt_analysis_task_t *task)
{
    if (!task || task->period_ns == 0 || task->wcet_ns == 0)
        return -EINVAL;
    uint64_t d = rel_deadline(task);
    if (task->wcet_ns > d || d > task->period_ns)
        return -EINVAL;
    return 0;
}

static int validate_set(const moirai_rt_analysis_task_t *tasks, size_t n)
{
    if (n > 0 && !tasks)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (moirai_rt_analysis_task_validate(&tasks[i]))
            return -EINVAL;
    return 0;
}

static void result_reset(moirai_rt_analysis_result_t *r, bool exact)
{
    memset(r, 0, sizeof(*r));
    r->exact = exact;
    r->task = -1;
    r->cpu = -1;
}

static double utilization_of(const moirai_rt_analysis_task_t *tasks, size_t n)
{
    double u = 0;
    for (size_t i = 0; i < n; i++)
        u += (double)tasks[i].wcet_ns / (double)tasks[i].period_ns;
    return u;
}

int moirai_rt_analysis_utilization(const moirai_rt_analysis_task_t *tasks, size_t n, double *out)
{
    if (!out || validate_set(tasks, n))
        return -EINVAL;
    *out = utilization_of(tasks, n);
    return 0;
}

double moirai_rt_analysis_ll_bound(size_t n)
{
    if (n <= 1)
        return 1.0;
    return (double)n * (pow(2.0, 1.0 / (double)n) - 1.0);
}

/* The bounds assume implicit deadlines: the checks both share. */
static int implicit_set(const moirai_rt_analysis_task_t *tasks, size_t n,
                        moirai_rt_analysis_result_t *result)
{
    if (!result || validate_set(tasks, n))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (rel_deadline(&tasks[i]) != tasks[i].period_ns)
            return -EINVAL;
    result_reset(result, false);
    result->utilization = utilization_of(tasks, n);
    return 0;
}

/* Comparisons of a ratio against a bound allow for the rounding of the
 * sum: a set exactly at the bound (hyperbolic product exactly 2) passes. */
#define BOUND_EPSILON 1e-12

int moirai_rt_analysis_rm_ll(const moirai_rt_analysis_task_t *tasks, size_t n,
                             moirai_rt_analysis_result_t *result)
{
    int rc = implicit_set(tasks, n, result);
    if (rc)
        return rc;
    result->bound = moirai_rt_analysis_ll_bound(n);
    result->schedulable = result->utilization <= result->bound + BOUND_EPSILON;
    snprintf(result->reason, sizeof(result->reason),
             result->schedulable
                 ? "utilization %.4f is within Liu & Layland's bound %.4f for %zu tasks"
                 : "utilization %.4f exceeds Liu & Layland's bound %.4f for %zu tasks "
                   "(the bound is only sufficient: try response-time analysis)",
             result->utilization, result->bound, n);
    return 0;
}

int moirai_rt_analysis_rm_hyperbolic(const moirai_rt_analysis_task_t *tasks, size_t n,
                                     moirai_rt_analysis_result_t *result)
{
    int rc = implicit_set(tasks, n, result);
    if (rc)
        return rc;
    double product = 1.0;
    for (size_t i = 0; i < n; i++)
        product *= (double)tasks[i].wcet_ns / (double)tasks[i].period_ns + 1.0;
    result->bound = 2.0;
    result->schedulable = product <= 2.0 + BOUND_EPSILON;
    snprintf(result->reason, sizeof(result->reason),
             result->schedulable ? "hyperbolic product %.4f is within 2 (utilization %.4f)"
                                 : "hyperbolic product %.4f exceeds 2 (utilization %.4f; the "
                                   "bound is only sufficient: try response-time analysis)",
             product, result->utilization);
    /* value_ns carries no time here; the product is in the reason. */
    return 0;
}

int moirai_rt_analysis_assign_priorities(moirai_rt_analysis_task_t *tasks, size_t n,
                                         moirai_rt_order_t order)
{
    if (validate_set(tasks, n) ||
        (order != MOIRAI_RT_ORDER_RATE_MONOTONIC && order != MOIRAI_RT_ORDER_DEADLINE_MONOTONIC))
        return -EINVAL;
    if (n > (size_t)INT32_MAX)
        return -EINVAL;
    /* Priority of i = 1 + the number of tasks less urgent than i: a
     * counting rank, quadratic but allocation-free (sets here are small). */
    for (size_t i = 0; i < n; i++) {
        uint64_t ki =
            order == MOIRAI_RT_ORDER_RATE_MONOTONIC ? tasks[i].period_ns : rel_deadline(&tasks[i]);
        int rank = 1;
        for (size_t j = 0; j < n; j++) {
            uint64_t kj = order == MOIRAI_RT_ORDER_RATE_MONOTONIC ? tasks[j].period_ns
                                                                  : rel_deadline(&tasks[j]);
            if (kj > ki || (kj == ki && j > i))
                rank++;
        }
        tasks[i].priority = rank;
    }
    return 0;
}

/* The response time of task i, or UINT64_MAX with `*exceeded` the first
 * iterate past the deadline. Returns 0 or -EOVERFLOW. */
int moirai__analysis_response(const moirai_rt_analysis_task_t *tasks, size_t n, size_t i,
                              uint64_t *response, uint64_t *exceeded)
{
    const moirai_rt_analysis_task_t *ti = &tasks[i];
    uint64_t d = rel_deadline(ti);
    uint64_t r;
    if (!add_ok(ti->wcet_ns, ti->blocking_ns, &r))
        return -EOVERFLOW;
    /* Start from C + B + the sum of the interferers' C (a lower bound on
     * the fixed point: each releases at least once in any window), which
     * saves the first round of the iteration. */
    for (size_t j = 0; j < n; j++)
        if (j != i && tasks[j].priority >= ti->priority && !add_ok(r, tasks[j].wcet_ns, &r))
            return -EOVERFLOW;
    for (;;) {
        uint64_t next = ti->wcet_ns + ti->blocking_ns;
        for (size_t j = 0; j < n; j++) {
            if (j == i || tasks[j].priority < ti->priority)
                continue;
            uint64_t interference;
            if (!mul_ok(ceil_div(r, tasks[j].period_ns), tasks[j].wcet_ns, &interference) ||
                !add_ok(next, interference, &next))
                return -EOVERFLOW;
        }
        if (next > d) {
            *response = UINT64_MAX;
            *exceeded = next;
            return 0;
        }
        if (next == r) {
            *response = r;
            *exceeded = 0;
            return 0;
        }
        r = next;
    }
}

int moirai_rt_analysis_rta(const moirai_rt_analysis_task_t *tasks, size_t n,
                           moirai_rt_analysis_result_t *result, uint64_t *response)
{
    if (!result || validate_set(tasks, n))
        return -EINVAL;
    moirai_rt_analysis_result_t r;
    bool blocking = false;
    for (size_t i = 0; i < n; i++)
        blocking |= tasks[i].blocking_ns != 0;
    result_reset(&r, !blocking);
    r.utilization = utilization_of(tasks, n);
    r.schedulable = true;
    uint64_t worst_slack = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        uint64_t resp, exceeded;
        int rc = moirai__analysis_response(tasks, n, i, &resp, &exceeded);
        if (rc)
            return rc;
        if (response)
            response[i] = resp;
        if (resp == UINT64_MAX && r.schedulable) {
            r.schedulable = false;
            r.task = (int)i;
            r.value_ns = exceeded;
            r.limit_ns = rel_deadline(&tasks[i]);
            snprintf(r.reason, sizeof(r.reason),
                     "task %zu (priority %d): response time reaches %llu ns, past its deadline "
                     "%llu ns by %llu ns (blocking %llu ns, utilization %.4f)",
                     i, tasks[i].priority, (unsigned long long)exceeded,
                     (unsigned long long)r.limit_ns, (unsigned long long)(exceeded - r.limit_ns),
                     (unsigned long long)tasks[i].blocking_ns, r.utilization);
        } else if (resp != UINT64_MAX && rel_deadline(&tasks[i]) - resp < worst_slack) {
            worst_slack = rel_deadline(&tasks[i]) - resp;
            if (r.schedulable) {
                r.task = (int)i;
                r.value_ns = resp;
                r.limit_ns = rel_deadline(&tasks[i]);
            }
        }
    }
    if (r.schedulable) {
        if (n == 0)
            snprintf(r.reason, sizeof(r.reason), "an empty set is schedulable");
        else
            snprintf(r.reason, sizeof(r.reason),
                     "every response time is within its deadline; least slack %llu ns (task %d: "
                     "response %llu of %llu ns)",
                     (unsigned long long)worst_slack, r.task, (unsigned long long)r.value_ns,
                     (unsigned long long)r.limit_ns);
        r.task = -1;
    }
    *result = r;
    return 0;
}

/* Demand of the synchronous pattern in an interval of length t. */
static int demand(const moirai_rt_analysis_task_t *tasks, size_t n, uint64_t t, uint64_t *out)
{
    uint64_t sum = 0, block = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t d = rel_deadline(&tasks[i]);
        if (t < d)
            continue;
        uint64_t jobs = (t - d) / tasks[i].period_ns + 1, c;
        if (!mul_ok(jobs, tasks[i].wcet_ns, &c) || !add_ok(sum, c, &sum))
            return -EOVERFLOW;
        if (tasks[i].blocking_ns > block)
            block = tasks[i].blocking_ns;
    }
    if (!add_ok(sum, block, &sum))
        return -EOVERFLOW;
    *out = sum;
    return 0;
}

int moirai_rt_analysis_edf(const moirai_rt_analysis_task_t *tasks, size_t n,
                           moirai_rt_analysis_result_t *result)
{
    if (!result || validate_set(tasks, n))
        return -EINVAL;
    moirai_rt_analysis_result_t r;
    uint64_t max_block = 0;
    for (size_t i = 0; i < n; i++)
        if (tasks[i].blocking_ns > max_block)
            max_block = tasks[i].blocking_ns;
    result_reset(&r, max_block == 0);
    r.utilization = utilization_of(tasks, n);
    r.bound = 1.0;
    if (n == 0) {
        r.schedulable = true;
        snprintf(r.reason, sizeof(r.reason), "an empty set is schedulable");
        *result = r;
        return 0;
    }
    /* A utilization above 1 overloads the CPU in the long run whatever the
     * deadlines (the rounding allowance keeps a set at exactly 1, whose
     * sum of ratios may round up, for the exact busy-period check). */
    if (r.utilization > 1.0 + 1e-9) {
        r.schedulable = false;
        snprintf(r.reason, sizeof(r.reason),
                 "utilization %.4f exceeds 1: the demand outgrows any interval", r.utilization);
        *result = r;
        return 0;
    }
    /* The synchronous busy period L: the first instant the work released
     * since 0 (plus the largest blocking) is done. No deadline miss can
     * first happen after it. */
    uint64_t l = max_block;
    for (size_t i = 0; i < n; i++)
        if (!add_ok(l, tasks[i].wcet_ns, &l))
            return -EOVERFLOW;
    for (unsigned it = 0;; it++) {
        if (it >= EDF_MAX_ITERATIONS)
            return -ERANGE;
        uint64_t next = max_block;
        for (size_t i = 0; i < n; i++) {
            uint64_t c;
            if (!mul_ok(ceil_div(l, tasks[i].period_ns), tasks[i].wcet_ns, &c) ||
                !add_ok(next, c, &next))
                return -EOVERFLOW;
        }
        if (next == l)
            break;
        l = next;
    }
    /* Every absolute deadline t <= L of each task; the smallest failing t
     * is the one reported. */
    uint64_t points = 0, fail_t = UINT64_MAX, fail_demand = 0;
    int fail_task = -1;
    for (size_t i = 0; i < n; i++) {
        for (uint64_t t = rel_deadline(&tasks[i]); t <= l && t < fail_t;) {
            if (++points > EDF_MAX_POINTS)
                return -ERANGE;
            uint64_t h;
            int rc = demand(tasks, n, t, &h);
            if (rc)
                return rc;
            if (h > t) {
                fail_t = t;
                fail_demand = h;
                fail_task = (int)i;
                break;
            }
            if (!add_ok(t, tasks[i].period_ns, &t))
                break;
        }
    }
    if (fail_task >= 0) {
        r.schedulable = false;
        r.task = fail_task;
        r.at_ns = fail_t;
        r.limit_ns = fail_t;
        r.value_ns = fail_demand;
        snprintf(r.reason, sizeof(r.reason),
                 "in an interval of %llu ns (a deadline of task %d) the demand is %llu ns, %llu ns "
                 "more than the interval (utilization %.4f)",
                 (unsigned long long)fail_t, fail_task, (unsigned long long)fail_demand,
                 (unsigned long long)(fail_demand - fail_t), r.utilization);
    } else {
        r.schedulable = true;
        r.at_ns = l;
        snprintf(r.reason, sizeof(r.reason),
                 "demand stays within every interval up to the busy period of %llu ns "
                 "(utilization %.4f, %llu deadlines checked)",
                 (unsigned long long)l, r.utilization, (unsigned long long)points);
    }
    *result = r;
    return 0;
}

int moirai_rt_analysis_blocking(const moirai_rt_analysis_task_t *tasks, size_t n,
                                const moirai_rt_section_t *sections, size_t count,
                                moirai_rt_protocol_t protocol, uint64_t *blocking)
{
    if ((n > 0 && (!tasks || !blocking)) || (count > 0 && !sections))
        return -EINVAL;
    if (protocol != MOIRAI_RT_PROTOCOL_INHERIT && protocol != MOIRAI_RT_PROTOCOL_CEILING)
        return -EINVAL;
    for (size_t s = 0; s < count; s++)
        if (sections[s].task < 0 || (size_t)sections[s].task >= n || sections[s].lock < 0)
            return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int pi = tasks[i].priority;
        /* Sections that can block task i: held by a lower-priority task on
         * a lock whose ceiling (highest priority of its users) is >= pi. */
        uint64_t longest = 0, per_task = 0, per_lock = 0;
        for (size_t s = 0; s < count; s++) {
            const moirai_rt_section_t *cs = &sections[s];
            if (tasks[cs->task].priority >= pi)
                continue;
            int ceiling = INT32_MIN;
            for (size_t u = 0; u < count; u++)
                if (sections[u].lock == cs->lock && tasks[sections[u].task].priority > ceiling)
                    ceiling = tasks[sections[u].task].priority;
            if (ceiling < pi)
                continue;
            if (cs->length_ns > longest)
                longest = cs->length_ns;
            /* Is this the longest relevant section of its task, and of its
             * lock? Count it once in each sum (first of equals wins). */
            bool task_max = true, lock_max = true;
            for (size_t u = 0; u < count; u++) {
                const moirai_rt_section_t *o = &sections[u];
                if (u == s || tasks[o->task].priority >= pi)
                    continue;
                int oc = INT32_MIN;
                for (size_t v = 0; v < count; v++)
                    if (sections[v].lock == o->lock && tasks[sections[v].task].priority > oc)
                        oc = tasks[sections[v].task].priority;
                if (oc < pi)
                    continue;
                bool beats =
                    o->length_ns > cs->length_ns || (o->length_ns == cs->length_ns && u < s);
                if (o->task == cs->task && beats)
                    task_max = false;
                if (o->lock == cs->lock && beats)
                    lock_max = false;
            }
            if (task_max)
                per_task += cs->length_ns;
            if (lock_max)
                per_lock += cs->length_ns;
        }
        if (protocol == MOIRAI_RT_PROTOCOL_CEILING)
            blocking[i] = longest;
        else
            blocking[i] = per_task < per_lock ? per_task : per_lock;
    }
    return 0;
}

/* Runs `test` on the set `set` of `count` tasks. */
int moirai__analysis_cpu_test(const moirai_rt_analysis_task_t *set, size_t count,
                              moirai_rt_test_t test, moirai_rt_analysis_result_t *r)
{
    return test == MOIRAI_RT_TEST_EDF ? moirai_rt_analysis_edf(set, count, r)
                                      : moirai_rt_analysis_rta(set, count, r, NULL);
}

int moirai_rt_analysis_partition(const moirai_rt_analysis_task_t *tasks, size_t n, int cpus,
                                 moirai_rt_fit_t fit, moirai_rt_test_t test, int *cpu_of,
                                 moirai_rt_analysis_result_t *result)
{
    if (!result || (n > 0 && !cpu_of) || validate_set(tasks, n) || cpus < 1 || cpus > 1024 ||
        (fit != MOIRAI_RT_FIT_FIRST && fit != MOIRAI_RT_FIT_WORST) ||
        (test != MOIRAI_RT_TEST_EDF && test != MOIRAI_RT_TEST_RTA))
        return -EINVAL;
    moirai_rt_analysis_result_t r;
    result_reset(&r, false);
    r.utilization = utilization_of(tasks, n);
    size_t *order = moirai_calloc(n ? n : 1, sizeof(*order));
    moirai_rt_analysis_task_t *set = moirai_calloc(n ? n : 1, sizeof(*set));
    double *load = moirai_calloc((size_t)cpus, sizeof(*load));
    int *tried = moirai_calloc((size_t)cpus, sizeof(*tried));
    int *placed = moirai_calloc(n ? n : 1, sizeof(*placed));
    int rc = 0;
    if (!order || !set || !load || !tried || !placed) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
        placed[i] = -1;
    }
    /* Insertion sort by decreasing utilization (compared exactly by cross
     * multiplication in 128 bits), ties by index. */
    for (size_t i = 1; i < n; i++) {
        size_t x = order[i], j = i;
        while (j > 0) {
            size_t y = order[j - 1];
            u128 ux = (u128)tasks[x].wcet_ns * tasks[y].period_ns;
            u128 uy = (u128)tasks[y].wcet_ns * tasks[x].period_ns;
            if (ux > uy || (ux == uy && x < y)) {
                order[j] = y;
                j--;
            } else {
                break;
            }
        }
        order[j] = x;
    }
    r.schedulable = true;
    for (size_t k = 0; k < n && r.schedulable; k++) {
        size_t t = order[k];
        /* Candidate CPUs in the fit's order. */
        for (int c = 0; c < cpus; c++)
            tried[c] = c;
        if (fit == MOIRAI_RT_FIT_WORST)
            for (int a = 1; a < cpus; a++) {
                int x = tried[a], b = a;
                while (b > 0 && load[tried[b - 1]] > load[x]) {
                    tried[b] = tried[b - 1];
                    b--;
                }
                tried[b] = x;
            }
        int chosen = -1;
        moirai_rt_analysis_result_t last;
        result_reset(&last, false);
        for (int a = 0; a < cpus && chosen < 0; a++) {
            int c = tried[a];
            size_t count = 0;
            for (size_t j = 0; j < n; j++)
                if (placed[j] == c)
                    set[count++] = tasks[j];
            set[count++] = tasks[t];
            rc = moirai__analysis_cpu_test(set, count, test, &last);
            if (rc)
                goto out;
            if (last.schedulable)
                chosen = c;
        }
        if (chosen < 0) {
            r.schedulable = false;
            r.task = (int)t;
            r.cpu = tried[cpus - 1];
            r.value_ns = last.value_ns;
            r.limit_ns = last.limit_ns;
            r.at_ns = last.at_ns;
            snprintf(r.reason, sizeof(r.reason),
                     "task %zu (utilization %.4f) fits on none of %d CPUs; on CPU %d: %.110s", t,
                     (double)tasks[t].wcet_ns / (double)tasks[t].period_ns, cpus, r.cpu,
                     last.reason);
            break;
        }
        placed[t] = chosen;
        load[chosen] += (double)tasks[t].wcet_ns / (double)tasks[t].period_ns;
    }
    if (r.schedulable) {
        int used = 0;
        double peak = 0;
        for (int c = 0; c < cpus; c++) {
            used += load[c] > 0;
            if (load[c] > peak)
                peak = load[c];
        }
        r.bound = peak;
        snprintf(r.reason, sizeof(r.reason),
                 "all %zu tasks placed on %d of %d CPUs (total utilization %.4f, busiest CPU %.4f)",
                 n, used, cpus, r.utilization, peak);
    }
    for (size_t i = 0; i < n; i++)
        cpu_of[i] = placed[i];
    *result = r;
out:
    moirai_free(order);
    moirai_free(set);
    moirai_free(load);
    moirai_free(tried);
    moirai_free(placed);
    return rc;
}
