/* TRANSITIONAL: the contract of moirai-transport/src/link.h exactly as
 * /work/shared-notes/ISSUE12_SPEC.md states it, so that link_mpi.c and its
 * test build before helper LINK's refactor lands. meson uses this
 * directory only while moirai-transport/src/link.h does not exist; once it
 * does, this file is unused and can be deleted. */
#ifndef MOIRAI_TRANSPORT_LINK_H
#define MOIRAI_TRANSPORT_LINK_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "frame.h"

struct moirai_node;
struct link;

struct link_ops {
    ssize_t (*read)(struct link *l, void *buf, size_t len, uint64_t deadline);
    int (*writev)(struct link *l, const struct iovec *iov, int cnt, uint64_t deadline);
    void (*shutdown)(struct link *l);
    void (*close)(struct link *l);
    int (*peer_addr)(struct link *l, struct frame_addr *out);
};
struct link {
    const struct link_ops *ops;
};

struct backend_ops {
    int (*parse)(const char *text, struct frame_addr *out);
    int (*listen)(struct moirai_node *node, const struct frame_addr *where,
                  struct frame_addr *self);
    int (*dial)(struct moirai_node *node, const struct frame_addr *to, uint64_t deadline,
                struct link **out);
    void (*stop)(struct moirai_node *node);
};

#endif
