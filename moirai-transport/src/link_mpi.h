/* The MPI backend of remote tasks (link_mpi.c): one link per pair of MPI
 * ranks, carried by the progress engine (mpi_engine.h). */
#ifndef MOIRAI_TRANSPORT_LINK_MPI_H
#define MOIRAI_TRANSPORT_LINK_MPI_H

#include "link.h"

/* The backend: parse "mpi:<rank>"; listen links this rank to every other
 * rank; dial finds nothing to add (-EHOSTUNREACH); stop ends the epoch. */
extern const struct backend_ops moirai__backend_mpi;

/* This process's MPI rank (>= 0), starting the progress engine if needed
 * (see moirai__mpi_engine_acquire() for what that waits for), or a
 * negative errno from it. For node.c: an MPI node's id is rank + 1 unless
 * its configuration sets one, and it must be known before listen() starts
 * the handshakes. */
int moirai__link_mpi_rank(void);

/* The rank at the other end of a link of this backend. */
int moirai__link_mpi_peer_rank(const struct link *l);

#endif
