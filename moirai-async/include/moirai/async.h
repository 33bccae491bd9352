/* moirai-async: stackful fibers on moirai-sched's workers, waits that park
 * the fiber and not the thread, and timers on a libuv reactor. Link with
 * `pkg-config --libs moirai-async`. */
#ifndef MOIRAI_ASYNC_H
#define MOIRAI_ASYNC_H

#include <moirai/async/dns.h>
#include <moirai/async/dump.h>
#include <moirai/async/fiber.h>
#include <moirai/async/fs.h>
#include <moirai/async/metrics.h>
#include <moirai/async/net.h>
#include <moirai/async/runtime.h>
#include <moirai/async/select.h>
#include <moirai/async/signal.h>
#include <moirai/async/timer.h>
#include <moirai/async/version.h>

#endif
