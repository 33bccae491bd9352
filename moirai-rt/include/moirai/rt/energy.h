/* Energy-aware placement: pack a task set onto as few CPUs as its
 * deadlines allow so the rest can sleep, judged by an injectable power
 * model.
 *
 * Many machines (this project's CI VM among them) expose no cpufreq,
 * powercap or RAPL interface, so the policy never reads hardware: the
 * caller supplies a power model, the watts a CPU draws when awake at a
 * given utilization and when asleep. moirai_rt_power_model_linear() gives
 * the usual linear model (idle + (busy - idle) * utilization). The report
 * compares the packed placement with the spread one (worst-fit over all
 * CPUs), in active-CPU time (an awake CPU counts for the whole window) and
 * in the model's energy. */
#ifndef MOIRAI_RT_ENERGY_H
#define MOIRAI_RT_ENERGY_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/rt/analysis.h>
#include <moirai/rt/export.h>

/* Watts drawn by awake CPU `cpu` at `utilization` (0..1). */
typedef double (*moirai_rt_power_cb)(void *arg, int cpu, double utilization);

/* A power model: how many watts a CPU draws, awake (by utilization) or in
 * its deepest idle state. moirai_rt_power_model_linear() fills a linear one. */
typedef struct moirai_rt_power_model {
    moirai_rt_power_cb awake; /* required */
    void *arg;                /* passed to `awake` as `arg` */
    double sleep_w;           /* watts of a CPU in its deepest idle state */
    double idle_w,            /* the linear model's watts of an awake CPU at utilization 0 */
        busy_w;               /* the linear model's watts of an awake CPU at utilization 1 */
} moirai_rt_power_model_t;

/* What moirai_rt_energy_pack() chose, against the spread placement, over
 * its window. */
typedef struct moirai_rt_energy_report {
    int cpus_active;               /* awake CPUs in the chosen placement */
    int cpus_active_spread;        /* awake CPUs when spread */
    uint64_t active_cpu_ns;        /* cpus_active * window */
    uint64_t active_cpu_ns_spread; /* cpus_active_spread * window */
    uint64_t saved_active_cpu_ns;  /* the difference */
    double energy_j;               /* model energy over the window, chosen placement */
    double energy_spread_j;        /* and spread */
    double saved_j;                /* the difference (may be 0) */
} moirai_rt_energy_report_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Fills `*model` with the linear model: awake = idle_w + (busy_w -
 * idle_w) * u, asleep = sleep_w. Returns 0 or -EINVAL (NULL, a negative
 * or non-finite figure, busy_w < idle_w). */
MOIRAI_RT_API int moirai_rt_power_model_linear(moirai_rt_power_model_t *model, double sleep_w,
                                               double idle_w, double busy_w);

/* Chooses, among placements of the set on k = 1..cpus CPUs (for each k,
 * first-fit decreasing, which packs, and worst-fit decreasing, which
 * balances; `test` checks each CPU), the one of least model energy over
 * `window_ns` (ties: the one found first, fewer CPUs), writes each task's
 * CPU into `cpu_of`
 * and fills `report`. Never blocks; thread-safe. Returns 0; -EINVAL (NULL
 * arguments, cpus out of 1..1024, window 0, an invalid task or test);
 * -EBUSY (the set fits on no number of CPUs; `cpu_of` untouched);
 * -ENOMEM; -EOVERFLOW / -ERANGE (from the test). */
MOIRAI_RT_API int moirai_rt_energy_pack(const moirai_rt_analysis_task_t *tasks, size_t n, int cpus,
                                        moirai_rt_test_t test, const moirai_rt_power_model_t *model,
                                        uint64_t window_ns, int *cpu_of,
                                        moirai_rt_energy_report_t *report);

#ifdef __cplusplus
}
#endif

#endif
