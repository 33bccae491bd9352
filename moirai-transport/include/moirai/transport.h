/* moirai-transport: channels between threads and fibers, shared-memory
 * rings between processes, adaptive batching, remote tasks between
 * nodes. Link with
 * `pkg-config --libs moirai-transport`. */
#ifndef MOIRAI_TRANSPORT_H
#define MOIRAI_TRANSPORT_H

#include <moirai/transport/batch.h>
#include <moirai/transport/chan.h>
#include <moirai/transport/metrics.h>
#include <moirai/transport/node.h>
#include <moirai/transport/ring.h>
#include <moirai/transport/version.h>

#endif
