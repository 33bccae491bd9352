/* moirai-rt: real-time tasks beside best-effort work: schedulability
 * analysis, online admission, an RT executor with EDF / RM / DM / FIFO /
 * RR dispatch on an injectable clock, OS real-time policies,
 * priority-inheritance and ceiling locks, CPU quotas, proportional share
 * and energy-aware packing. Link with `pkg-config --libs moirai-rt`. */
#ifndef MOIRAI_RT_H
#define MOIRAI_RT_H

#include <moirai/rt/analysis.h>
#include <moirai/rt/clock.h>
#include <moirai/rt/energy.h>
#include <moirai/rt/executor.h>
#include <moirai/rt/lock.h>
#include <moirai/rt/metrics.h>
#include <moirai/rt/os.h>
#include <moirai/rt/quota.h>
#include <moirai/rt/share.h>
#include <moirai/rt/task.h>
#include <moirai/rt/version.h>

#endif
