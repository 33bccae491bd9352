/* TRANSITIONAL (see link.h here): force-included (-include) into the
 * translation units of the MPI link test while moirai-transport/src/link.h
 * does not exist. It stands in for node_internal.h after LINK's refactor,
 * of which link_mpi.c needs only moirai__peer_start() taking a link; the
 * include guard keeps today's node_internal.h (which takes a moirai_io_t)
 * out. The test defines moirai__peer_start() itself. */
#ifndef MOIRAI_TRANSPORT_NODE_INTERNAL_H
#define MOIRAI_TRANSPORT_NODE_INTERNAL_H

#include <stdbool.h>

struct moirai_node;
struct link;
struct connect_wait;

int moirai__peer_start(struct moirai_node *node, struct link *link, bool initiator,
                       struct connect_wait *cw);

#endif
