/* The messages the two-process ring tests stream: each carries a 64-bit
 * tag (producer number in the top 16 bits, sequence number below) and a
 * payload derived from it, with a length that varies with the sequence
 * number, so a lost, duplicated, reordered, torn or misplaced message is
 * caught. Header-only; used by test_ring_proc.c and test_ring_helper.c. */
#ifndef MOIRAI_TEST_RING_MSG_H
#define MOIRAI_TEST_RING_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <moirai/transport/ring.h>

#define MSG_SEQ_BITS 48
#define MSG_SEQ_MASK ((UINT64_C(1) << MSG_SEQ_BITS) - 1)

/* The payload length of message `seq`: 8 to 64 bytes. */
static inline size_t msg_len(uint64_t seq)
{
    return 8 + 8 * (size_t)(seq % 8);
}

/* Word `i` (1..) of the message tagged `tag`. */
static inline uint64_t msg_word(uint64_t tag, size_t i)
{
    return tag * UINT64_C(0x9E3779B97F4A7C15) + i;
}

/* Sends message `seq` of producer `id`, waiting for room. Returns what
 * reserve returned. */
static inline int msg_send(moirai_shm_ring_t *r, unsigned id, uint64_t seq)
{
    uint64_t tag = ((uint64_t)id << MSG_SEQ_BITS) | seq;
    size_t len = msg_len(seq);
    void *buf;
    int rc = moirai_shm_ring_reserve(r, len, &buf);
    if (rc != 0)
        return rc;
    uint64_t w[8];
    w[0] = tag;
    for (size_t i = 1; i < len / 8; i++)
        w[i] = msg_word(tag, i);
    memcpy(buf, w, len);
    return moirai_shm_ring_commit(r);
}

/* Checks a received message against `next[id]`, the next sequence number
 * expected from each producer (ids below `nprod`), and advances it.
 * Returns 0, or a small positive code naming what was wrong. */
static inline int msg_check(const void *buf, size_t len, uint64_t *next, unsigned nprod)
{
    uint64_t w[8];
    if (len < 8 || len > sizeof(w) || len % 8 != 0)
        return 1;
    memcpy(w, buf, len); /* copy first: the peer can still write the ring */
    unsigned id = (unsigned)(w[0] >> MSG_SEQ_BITS);
    uint64_t seq = w[0] & MSG_SEQ_MASK;
    if (id >= nprod)
        return 2;
    if (seq != next[id])
        return 3; /* lost, duplicated or reordered */
    if (len != msg_len(seq))
        return 4;
    for (size_t i = 1; i < len / 8; i++)
        if (w[i] != msg_word(w[0], i))
            return 5;
    next[id]++;
    return 0;
}

#endif
