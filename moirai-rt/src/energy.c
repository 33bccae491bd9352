/* Energy-aware packing over an injected power model (see
 * moirai/rt/energy.h). The candidate placements are, for each k, the
 * first-fit decreasing partition onto the first k CPUs (as packed as the
 * deadlines allow) and the worst-fit one (balanced over those k); its energy over the window
 * is the sum of the awake CPUs' model power at their utilization plus the
 * sleeping CPUs' sleep power. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/rt/energy.h>

static double linear_awake(void *arg, int cpu, double u)
{
    (void)cpu;
    const moirai_rt_power_model_t *m = arg;
    return m->idle_w + (m->busy_w - m->idle_w) * u;
}

int moirai_rt_power_model_linear(moirai_rt_power_model_t *model, double sleep_w, double idle_w,
                                 double busy_w)
{
    if (!model || !isfinite(sleep_w) || !isfinite(idle_w) || !isfinite(busy_w) || sleep_w < 0 ||
        idle_w < 0 || busy_w < idle_w)
        return -EINVAL;
    model->awake = linear_awake;
    model->arg = model;
    model->sleep_w = sleep_w;
    model->idle_w = idle_w;
    model->busy_w = busy_w;
    return 0;
}

/* Energy in joules of placement `cpu_of` on `cpus` CPUs over the window,
 * and the number of awake CPUs. */
static double energy_of(const moirai_rt_analysis_task_t *tasks, size_t n, const int *cpu_of,
                        int cpus, const moirai_rt_power_model_t *m, uint64_t window, double *load,
                        int *awake)
{
    for (int c = 0; c < cpus; c++)
        load[c] = 0;
    for (size_t i = 0; i < n; i++)
        load[cpu_of[i]] += (double)tasks[i].wcet_ns / (double)tasks[i].period_ns;
    double watts = 0;
    *awake = 0;
    for (int c = 0; c < cpus; c++) {
        bool used = false;
        for (size_t i = 0; i < n; i++)
            used |= cpu_of[i] == c;
        if (used) {
            ++*awake;
            watts += m->awake(m->arg, c, load[c]);
        } else {
            watts += m->sleep_w;
        }
    }
    return watts * (double)window * 1e-9;
}

int moirai_rt_energy_pack(const moirai_rt_analysis_task_t *tasks, size_t n, int cpus,
                          moirai_rt_test_t test, const moirai_rt_power_model_t *model,
                          uint64_t window_ns, int *cpu_of, moirai_rt_energy_report_t *report)
{
    if (!model || !model->awake || !report || (n > 0 && (!tasks || !cpu_of)) || cpus < 1 ||
        cpus > 1024 || window_ns == 0 || (test != MOIRAI_RT_TEST_EDF && test != MOIRAI_RT_TEST_RTA))
        return -EINVAL;
    size_t sz = n ? n : 1;
    int *try = moirai_calloc(sz, sizeof(int)), *best = moirai_calloc(sz, sizeof(int));
    double *load = moirai_calloc((size_t)cpus, sizeof(double));
    int rc = 0;
    if (!try || !best || !load) {
        rc = -ENOMEM;
        goto out;
    }
    moirai_rt_analysis_result_t r;
    /* The spread placement is the reference. */
    rc = moirai_rt_analysis_partition(tasks, n, cpus, MOIRAI_RT_FIT_WORST, test, try, &r);
    if (rc)
        goto out;
    moirai_rt_energy_report_t rep;
    memset(&rep, 0, sizeof(rep));
    bool spread_ok = r.schedulable;
    if (spread_ok)
        rep.energy_spread_j =
            energy_of(tasks, n, try, cpus, model, window_ns, load, &rep.cpus_active_spread);
    double best_e = INFINITY;
    int best_awake = 0;
    for (int cand = 0; cand < 2 * cpus; cand++) {
        int k = cand / 2 + 1;
        moirai_rt_fit_t fit = cand % 2 ? MOIRAI_RT_FIT_WORST : MOIRAI_RT_FIT_FIRST;
        rc = moirai_rt_analysis_partition(tasks, n, k, fit, test, try, &r);
        if (rc)
            goto out;
        if (!r.schedulable)
            continue;
        int awake;
        double e = energy_of(tasks, n, try, cpus, model, window_ns, load, &awake);
        if (e < best_e - 1e-12) {
            best_e = e;
            best_awake = awake;
            memcpy(best, try, sz * sizeof(int));
        }
    }
    if (best_e == INFINITY) {
        rc = -EBUSY;
        goto out;
    }
    if (!spread_ok) {
        /* Spreading fails where packing fits (worst fit can strand a big
         * task): compare with every CPU awake at the packed loads. */
        rep.cpus_active_spread = cpus;
        int awake;
        double packed = energy_of(tasks, n, best, cpus, model, window_ns, load, &awake);
        rep.energy_spread_j = packed + (double)(cpus - awake) * 1e-9 * (double)window_ns *
                                           (model->awake(model->arg, 0, 0) - model->sleep_w);
    }
    rep.cpus_active = best_awake;
    rep.active_cpu_ns = (uint64_t)best_awake * window_ns;
    rep.active_cpu_ns_spread = (uint64_t)rep.cpus_active_spread * window_ns;
    rep.saved_active_cpu_ns = rep.active_cpu_ns_spread > rep.active_cpu_ns
                                  ? rep.active_cpu_ns_spread - rep.active_cpu_ns
                                  : 0;
    rep.energy_j = best_e;
    rep.saved_j = rep.energy_spread_j > best_e ? rep.energy_spread_j - best_e : 0;
    memcpy(cpu_of, best, n * sizeof(int));
    *report = rep;
out:
    moirai_free(try);
    moirai_free(best);
    moirai_free(load);
    return rc;
}
