/* moirai-sync: locks, waits, lock-free containers and a concurrent map.
 * Link with `pkg-config --libs moirai-sync`. */
#ifndef MOIRAI_SYNC_H
#define MOIRAI_SYNC_H

#include <moirai/sync/barrier.h>
#include <moirai/sync/condvar.h>
#include <moirai/sync/counter.h>
#include <moirai/sync/event.h>
#include <moirai/sync/lockstat.h>
#include <moirai/sync/metrics.h>
#include <moirai/sync/map.h>
#include <moirai/sync/mutex.h>
#include <moirai/sync/once.h>
#include <moirai/sync/queue.h>
#include <moirai/sync/rcu.h>
#include <moirai/sync/ring_mpmc.h>
#include <moirai/sync/ring_spsc.h>
#include <moirai/sync/rwlock.h>
#include <moirai/sync/semaphore.h>
#include <moirai/sync/spinlock.h>
#include <moirai/sync/stack.h>
#include <moirai/sync/version.h>
#include <moirai/sync/waitgroup.h>

#endif
