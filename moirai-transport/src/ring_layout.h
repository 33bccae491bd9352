/* The byte layout of a shared-memory ring (layout version 1), shared by
 * every process that maps it. docs/transport.md ("Shared-memory rings")
 * describes the same bytes for people; change both together and bump
 * MOIRAI_SHM_RING_LAYOUT_VERSION when a byte moves.
 *
 * Offset 0 holds a 4096-byte header; the data region of `size` bytes (a
 * power of two) follows at offset 4096. Every field is native-endian and
 * both sides must be the same architecture (the header's magic, read in
 * the wrong byte order, does not match, so a mismatch is refused). */
#ifndef MOIRAI_TRANSPORT_RING_LAYOUT_H
#define MOIRAI_TRANSPORT_RING_LAYOUT_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/transport/ring.h>

/* "MoiraiRg" read as a little-endian 64-bit word. */
#define RING_MAGIC       UINT64_C(0x67526961726f694d)
#define RING_HEADER_SIZE 4096u
#define RING_LINE        64

/* The record header: one 64-bit word at an 8-byte aligned offset of the
 * data region, the payload length in its low 32 bits and a tag in its
 * high 32 bits. A record takes 8 bytes plus the payload rounded up to 8,
 * and never wraps around the end of the data region. */
#define RING_TAG_DATA UINT32_C(0x2147534d) /* "MSG!": a message */
#define RING_TAG_SKIP UINT32_C(0x50494b53) /* "SKIP": room to pass over */
#define RING_REC_HDR  8u

/* The states of a participant's slot. A slot is claimed once (FREE to
 * ATTACHED) and released once (ATTACHED to DETACHED); it is never reused. */
#define RING_SLOT_FREE     0u
#define RING_SLOT_ATTACHED 1u
#define RING_SLOT_DETACHED 2u

/* One participant: the pid it recorded (0 while it attaches) and its
 * state. */
struct ring_slot {
    _Atomic uint32_t pid;
    _Atomic uint32_t state;
};

/* The header at offset 0. The geometry line is written once by the
 * creator before anyone else sees the object; each index and each futex
 * word pair lives on its own cache line so the two sides do not share a
 * line they both write. */
struct ring_shared {
    /* Line 0: geometry (offsets 0..31). */
    _Atomic uint64_t magic;         /* 0: RING_MAGIC */
    _Atomic uint32_t version;       /* 8: MOIRAI_SHM_RING_LAYOUT_VERSION */
    _Atomic uint32_t header_size;   /* 12: RING_HEADER_SIZE */
    _Atomic uint64_t size;          /* 16: bytes of the data region */
    _Atomic uint32_t flags;         /* 24: 0 or MOIRAI_SHM_RING_MPSC */
    _Atomic uint32_t max_producers; /* 28: 1, or MOIRAI_SHM_RING_MAX_PRODUCERS */
    /* Line 1 (offset 64): the producers' index, in bytes since creation.
     * SPSC: everything below it is committed. MPSC: everything below it
     * is reserved; a record is committed once its header is non-zero. */
    alignas(RING_LINE) _Atomic uint64_t tail;
    /* Line 2 (offset 128): the consumer's index; everything below it is
     * released. */
    alignas(RING_LINE) _Atomic uint64_t head;
    /* Line 3 (offset 192): the consumer sleeps on data_seq; a producer
     * bumps it and wakes the consumer when cons_waiting is set. */
    alignas(RING_LINE) _Atomic uint32_t data_seq;
    _Atomic uint32_t cons_waiting;
    /* Line 4 (offset 256): producers sleep on space_seq; the consumer
     * bumps it and wakes them all when prod_waiting is set. */
    alignas(RING_LINE) _Atomic uint32_t space_seq;
    _Atomic uint32_t prod_waiting;
    /* Line 5 (offset 320): the consumer's slot. */
    alignas(RING_LINE) struct ring_slot consumer;
    /* Lines 6-7 (offset 384): the producers' slots. */
    alignas(RING_LINE) struct ring_slot producers[MOIRAI_SHM_RING_MAX_PRODUCERS];
};

_Static_assert(sizeof(struct ring_shared) <= RING_HEADER_SIZE, "the header fits its page");
_Static_assert(offsetof(struct ring_shared, tail) == 64, "layout v1: tail at 64");
_Static_assert(offsetof(struct ring_shared, head) == 128, "layout v1: head at 128");
_Static_assert(offsetof(struct ring_shared, data_seq) == 192, "layout v1: data_seq at 192");
_Static_assert(offsetof(struct ring_shared, space_seq) == 256, "layout v1: space_seq at 256");
_Static_assert(offsetof(struct ring_shared, consumer) == 320, "layout v1: consumer at 320");
_Static_assert(offsetof(struct ring_shared, producers) == 384, "layout v1: producers at 384");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4,
               "atomics have their plain size, so the layout is the same in every build");

/* The bytes a record of `len` payload bytes takes. */
static inline uint64_t ring_rec_size(uint64_t len)
{
    return RING_REC_HDR + ((len + 7u) & ~(uint64_t)7u);
}

#endif
