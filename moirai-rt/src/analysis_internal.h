/* Parts of the analysis the executor's admission reuses. */
#ifndef MOIRAI_RT_ANALYSIS_INTERNAL_H
#define MOIRAI_RT_ANALYSIS_INTERNAL_H

#include <moirai/rt/analysis.h>

/* Worst-case response of task i under fixed priorities (UINT64_MAX past
 * its deadline, with the first iterate past it in *exceeded). */
int moirai__analysis_response(const moirai_rt_analysis_task_t *tasks, size_t n, size_t i,
                              uint64_t *response, uint64_t *exceeded);

/* The per-CPU test of a partitioning. */
int moirai__analysis_cpu_test(const moirai_rt_analysis_task_t *set, size_t count,
                              moirai_rt_test_t test, moirai_rt_analysis_result_t *r);

#endif
