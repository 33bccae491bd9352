/* moirai-core: errors, version, clock, topology, metrics and their
 * Prometheus export, logging, the allocation hook, the task model,
 * completion handles, the parking layer, the executor interface and the
 * trace recorder. Link with `pkg-config --libs moirai-core`. */
#ifndef MOIRAI_CORE_H
#define MOIRAI_CORE_H

#include <moirai/core/alloc.h>
#include <moirai/core/atomic.h>
#include <moirai/core/cache.h>
#include <moirai/core/clock.h>
#include <moirai/core/error.h>
#include <moirai/core/executor.h>
#include <moirai/core/handle.h>
#include <moirai/core/log.h>
#include <moirai/core/metrics.h>
#include <moirai/core/park.h>
#include <moirai/core/prom.h>
#include <moirai/core/spin.h>
#include <moirai/core/task.h>
#include <moirai/core/topology.h>
#include <moirai/core/trace.h>
#include <moirai/core/version.h>

#endif
