/* moirai-mem: object pools, size-class memory pools, arenas, alignment
 * helpers and NUMA placement. Link with `pkg-config --libs moirai-mem`. */
#ifndef MOIRAI_MEM_H
#define MOIRAI_MEM_H

#include <moirai/mem/align.h>
#include <moirai/mem/arena.h>
#include <moirai/mem/mempool.h>
#include <moirai/mem/metrics.h>
#include <moirai/mem/numa.h>
#include <moirai/mem/numa_pool.h>
#include <moirai/mem/pool.h>
#include <moirai/mem/version.h>

#endif
