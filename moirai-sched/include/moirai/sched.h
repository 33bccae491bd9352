/* moirai-sched: a work-stealing scheduler with fork-join, scopes, parallel
 * loops and pipelines. Link with `pkg-config --libs moirai-sched`. */
#ifndef MOIRAI_SCHED_H
#define MOIRAI_SCHED_H

#include <moirai/sched/combinable.h>
#include <moirai/sched/dump.h>
#include <moirai/sched/job.h>
#include <moirai/sched/join.h>
#include <moirai/sched/metrics.h>
#include <moirai/sched/parallel.h>
#include <moirai/sched/parallel_fallible.h>
#include <moirai/sched/pipeline.h>
#include <moirai/sched/sched.h>
#include <moirai/sched/scope.h>
#include <moirai/sched/version.h>

#endif
