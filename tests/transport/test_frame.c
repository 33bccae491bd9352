/* The remote-task frame codec (moirai-transport/src/frame.c, compiled
 * in): every frame type round-trips, and every malformed input named in
 * docs/transport.md ("Remote tasks: wire format") is refused with its
 * error, never read past the buffer. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define MAXP 4096u

/* A frame in a heap buffer of exactly its size, so ASan catches any read
 * beyond it. */
static uint8_t *build(uint8_t type, uint16_t flags, uint64_t tid, const void *body, uint32_t len,
                      size_t *total)
{
    *total = FRAME_HEADER_SIZE + len;
    uint8_t *b = malloc(*total);
    cr_assert(b);
    moirai__frame_put_header(b, type, flags, tid, len);
    if (len)
        memcpy(b + FRAME_HEADER_SIZE, body, len);
    return b;
}

static long decode(const uint8_t *b, size_t n, struct frame *f)
{
    size_t need = 0;
    return moirai__frame_decode(b, n, MAXP, f, &need);
}

Test(frame, header_layout_is_little_endian)
{
    uint8_t h[FRAME_HEADER_SIZE];
    moirai__frame_put_header(h, FRAME_CANCEL, 0, 0x0102030405060708ull, 0);
    static const uint8_t want[FRAME_HEADER_SIZE] = {'M', 'R', 'T', '1', 2, 7, 0, 0, 8, 7, 6, 5,
                                                    4,   3,   2,   1,   0, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_arr_eq(h, want, sizeof want);
}

Test(frame, spawn_round_trip_and_every_prefix_is_incomplete)
{
    uint8_t body[2 + 6 + 5];
    moirai__frame_put_u16(body, 6);
    memcpy(body + 2, "square", 6);
    memcpy(body + 8, "hello", 5);
    size_t n;
    uint8_t *b = build(FRAME_SPAWN, FRAME_FLAG_IDEMPOTENT, 42, body, sizeof body, &n);
    struct frame f;
    cr_assert_eq(decode(b, n, &f), (long)n);
    cr_assert_eq(f.type, FRAME_SPAWN);
    cr_assert_eq(f.flags, FRAME_FLAG_IDEMPOTENT);
    cr_assert_eq(f.task_id, 42);
    cr_assert_eq(f.u.spawn.name_len, 6);
    cr_assert_eq(memcmp(f.u.spawn.name, "square", 6), 0);
    cr_assert_eq(f.u.spawn.data_len, 5);
    cr_assert_eq(memcmp(f.u.spawn.data, "hello", 5), 0);
    for (size_t k = 0; k < n; k++) {
        uint8_t *c = malloc(k ? k : 1);
        memcpy(c, b, k);
        size_t need = 0;
        cr_assert_eq(moirai__frame_decode(c, k, MAXP, &f, &need), 0, "prefix %zu", k);
        cr_assert_eq(need, k < FRAME_HEADER_SIZE ? FRAME_HEADER_SIZE : n);
        free(c);
    }
    free(b);
}

Test(frame, header_errors)
{
    size_t n;
    uint8_t *b = build(FRAME_CANCEL, 0, 1, NULL, 0, &n);
    struct frame f;
    cr_assert_eq(decode(b, n, &f), (long)n);
    b[0] ^= 1; /* magic: refused from its first byte */
    cr_assert_eq(decode(b, 1, &f), -EPROTO);
    b[0] ^= 1;
    b[4] = 1; /* version 1: no incarnations, no KEY frame */
    cr_assert_eq(decode(b, n, &f), -EPROTONOSUPPORT);
    b[4] = 3;
    cr_assert_eq(decode(b, n, &f), -EPROTONOSUPPORT);
    b[4] = FRAME_VERSION;
    b[5] = 0; /* type 0 */
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    b[5] = 12; /* unknown type */
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    b[5] = FRAME_CANCEL;
    b[21] = 1; /* reserved word */
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    b[21] = 0;
    b[6] = 1; /* a flag on CANCEL */
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    b[6] = 0;
    moirai__frame_put_u64(b + 8, 0); /* task id 0 on a task frame */
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    /* A payload over the limit is refused from the header alone. */
    uint8_t h[FRAME_HEADER_SIZE];
    moirai__frame_put_header(h, FRAME_RESULT, 0, 1, MAXP + 1);
    cr_assert_eq(decode(h, sizeof h, &f), -EMSGSIZE);
    moirai__frame_put_header(h, FRAME_RESULT, 0, 1, 0xffffffffu);
    cr_assert_eq(moirai__frame_decode(h, sizeof h, 0xffffffffu, &f, NULL), -EMSGSIZE);
    /* Non-task frames carry no task id. */
    moirai__frame_put_header(h, FRAME_AUTH_RESPONSE, 0, 5, 0);
    cr_assert_eq(decode(h, sizeof h, &f), -EPROTO);
}

Test(frame, hello_and_challenge)
{
    uint8_t nonce[FRAME_NONCE_SIZE];
    memset(nonce, 0xab, sizeof nonce);
    struct frame_addr a = {.family = 4, .port = 4242, .addr = {127, 0, 0, 1}};
    uint8_t body[FRAME_HELLO_SIZE + FRAME_MAC_SIZE];
    moirai__frame_put_hello(body, 77, 0x1122334455667788ull, &a, nonce);
    /* The byte layout: id, family, pad, port, address, incarnation, nonce. */
    cr_assert_eq(body[0], 77);
    cr_assert_eq(body[8], 4);
    cr_assert_eq(moirai__frame_get_u16(body + 10), 4242);
    cr_assert_eq(body[12], 127);
    cr_assert_eq(moirai__frame_get_u64(body + 28), 0x1122334455667788ull);
    cr_assert_eq(body[36], 0xab);
    cr_assert_eq(body[FRAME_HELLO_SIZE - 1], 0xab);
    memset(body + FRAME_HELLO_SIZE, 0xcd, FRAME_MAC_SIZE);
    size_t n;
    uint8_t *b = build(FRAME_HELLO, 0, 0, body, FRAME_HELLO_SIZE, &n);
    struct frame f;
    cr_assert_eq(decode(b, n, &f), (long)n);
    cr_assert_eq(f.u.hello.node_id, 77);
    cr_assert_eq(f.u.hello.incarnation, 0x1122334455667788ull);
    cr_assert_eq(f.u.hello.listen.family, 4);
    cr_assert_eq(f.u.hello.listen.port, 4242);
    cr_assert_eq(f.u.hello.listen.addr[0], 127);
    cr_assert_arr_eq(f.u.hello.nonce, nonce, sizeof nonce);
    free(b);
    b = build(FRAME_AUTH_CHALLENGE, 0, 0, body, sizeof body, &n);
    cr_assert_eq(decode(b, n, &f), (long)n);
    cr_assert_eq(f.challenge_mac[0], 0xcd);
    free(b);
    /* Wrong sizes, node id 0, a bad family, address bytes beyond the
     * family's, the pad byte. */
    b = build(FRAME_HELLO, 0, 0, body, FRAME_HELLO_SIZE - 1, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    b = build(FRAME_HELLO, 0, 0, body, FRAME_HELLO_SIZE + 1, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    b = build(FRAME_AUTH_CHALLENGE, 0, 0, body, sizeof body - 1, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    uint8_t bad[FRAME_HELLO_SIZE];
    memcpy(bad, body, sizeof bad);
    moirai__frame_put_u64(bad, 0);
    b = build(FRAME_HELLO, 0, 0, bad, sizeof bad, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    /* Incarnation 0. */
    memcpy(bad, body, sizeof bad);
    moirai__frame_put_u64(bad + 28, 0);
    b = build(FRAME_HELLO, 0, 0, bad, sizeof bad, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    static const size_t offs[] = {8, 9, 16};
    static const uint8_t vals[] = {5, 1, 1};
    for (size_t i = 0; i < 3; i++) {
        memcpy(bad, body, sizeof bad);
        bad[offs[i]] = vals[i];
        b = build(FRAME_HELLO, 0, 0, bad, sizeof bad, &n);
        cr_assert_eq(decode(b, n, &f), -EPROTO, "case %zu", i);
        free(b);
    }
}

Test(frame, spawn_names)
{
    struct frame f;
    size_t n;
    uint8_t body[2 + 70];
    memset(body + 2, 'a', 70);
    /* Name length beyond the payload, 0, 64, and a forbidden byte. */
    static const uint16_t lens[] = {71, 0, 64, 3};
    for (size_t i = 0; i < 4; i++) {
        moirai__frame_put_u16(body, lens[i]);
        if (i == 3)
            body[3] = '/';
        uint32_t len = i == 0 ? 2 + 70 : 2 + 70;
        uint8_t *b = build(FRAME_SPAWN, 0, 1, body, len, &n);
        cr_assert_eq(decode(b, n, &f), -EPROTO, "case %zu", i);
        free(b);
    }
    uint8_t *b = build(FRAME_SPAWN, 0, 1, body, 1, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    cr_assert(moirai__frame_name_valid((const uint8_t *)"a.b:c-d_9", 9));
    cr_assert_not(moirai__frame_name_valid((const uint8_t *)"a b", 3));
}

Test(frame, error_heartbeat_load_cancel)
{
    struct frame f;
    size_t n;
    uint8_t e[4];
    static const int32_t good[] = {-1, -4095, -ENOENT};
    for (size_t i = 0; i < 3; i++) {
        moirai__frame_put_u32(e, (uint32_t)good[i]);
        uint8_t *b = build(FRAME_ERROR, 0, 3, e, 4, &n);
        cr_assert_eq(decode(b, n, &f), (long)n);
        cr_assert_eq(f.u.error, good[i]);
        free(b);
    }
    static const int32_t bad[] = {0, 1, -4096, INT32_MIN};
    for (size_t i = 0; i < 4; i++) {
        moirai__frame_put_u32(e, (uint32_t)bad[i]);
        uint8_t *b = build(FRAME_ERROR, 0, 3, e, 4, &n);
        cr_assert_eq(decode(b, n, &f), -EPROTO);
        free(b);
    }
    uint8_t hb[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint8_t *b = build(FRAME_HEARTBEAT, 0, 0, hb, 8, &n);
    cr_assert_eq(decode(b, n, &f), (long)n);
    cr_assert_eq(f.u.heartbeat_ns, 0x0807060504030201ull);
    free(b);
    b = build(FRAME_HEARTBEAT, 0, 0, hb, 7, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    b = build(FRAME_LOAD, 0, 0, hb, 12, &n);
    cr_assert_eq(decode(b, n, &f), (long)n);
    cr_assert_eq(f.u.load.workers, 0x0c0b0a09u);
    free(b);
    b = build(FRAME_LOAD, 0, 0, hb, 11, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    b = build(FRAME_CANCEL, 0, 9, hb, 1, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
}

Test(frame, membership)
{
    uint8_t body[4 + 2 * FRAME_MEMBER_SIZE];
    moirai__frame_put_u32(body, 2);
    struct frame_member m = {.node_id = 5,
                             .state = FRAME_MEMBER_ALIVE,
                             .addr = {.family = 6, .port = 9},
                             .incarnation = 0xa1a2a3a4a5a6a7a8ull};
    m.addr.addr[15] = 1;
    moirai__frame_put_member(body + 4, &m);
    /* The byte layout: id, state, family, port, address, incarnation. */
    cr_assert_eq(body[4 + 8], FRAME_MEMBER_ALIVE);
    cr_assert_eq(body[4 + 9], 6);
    cr_assert_eq(body[4 + 27], 1);
    cr_assert_eq(moirai__frame_get_u64(body + 4 + 28), 0xa1a2a3a4a5a6a7a8ull);
    m.node_id = 6;
    m.incarnation = 1;
    m.state = FRAME_MEMBER_DEAD;
    m.addr.family = 0;
    memset(m.addr.addr, 0, 16);
    moirai__frame_put_member(body + 4 + FRAME_MEMBER_SIZE, &m);
    size_t n;
    struct frame f;
    uint8_t *b = build(FRAME_MEMBERSHIP, 0, 0, body, sizeof body, &n);
    cr_assert_eq(decode(b, n, &f), (long)n);
    cr_assert_eq(f.u.members.count, 2);
    struct frame_member out;
    moirai__frame_member_at(&f, 0, &out);
    cr_assert_eq(out.node_id, 5);
    cr_assert_eq(out.addr.family, 6);
    cr_assert_eq(out.addr.addr[15], 1);
    cr_assert_eq(out.incarnation, 0xa1a2a3a4a5a6a7a8ull);
    moirai__frame_member_at(&f, 1, &out);
    cr_assert_eq(out.state, FRAME_MEMBER_DEAD);
    cr_assert_eq(out.incarnation, 1);
    free(b);
    /* A length one byte off either way (entries are 36 bytes now). */
    b = build(FRAME_MEMBERSHIP, 0, 0, body, sizeof body - 1, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    uint8_t longer[sizeof body + 1];
    memcpy(longer, body, sizeof body);
    longer[sizeof body] = 0;
    b = build(FRAME_MEMBERSHIP, 0, 0, longer, sizeof longer, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    /* Incarnation 0 in the second entry. */
    uint8_t zinc[sizeof body];
    memcpy(zinc, body, sizeof body);
    moirai__frame_put_u64(zinc + 4 + FRAME_MEMBER_SIZE + 28, 0);
    b = build(FRAME_MEMBERSHIP, 0, 0, zinc, sizeof zinc, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    /* A count that disagrees with the length; a count over the bound; a
     * bad state; node id 0. */
    moirai__frame_put_u32(body, 3);
    b = build(FRAME_MEMBERSHIP, 0, 0, body, sizeof body, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    moirai__frame_put_u32(body, FRAME_MEMBERS_MAX + 1);
    b = build(FRAME_MEMBERSHIP, 0, 0, body, 4, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    moirai__frame_put_u32(body, 2);
    body[4 + 8] = 3;
    b = build(FRAME_MEMBERSHIP, 0, 0, body, sizeof body, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    body[4 + 8] = FRAME_MEMBER_ALIVE;
    moirai__frame_put_u64(body + 4, 0);
    b = build(FRAME_MEMBERSHIP, 0, 0, body, sizeof body, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
}

Test(frame, key)
{
    struct frame f;
    size_t n;
    uint8_t body[1 + 64];
    body[0] = FRAME_KEY_ADD;
    memcpy(body + 1, "shard-7", 7);
    uint8_t *b = build(FRAME_KEY, 0, 0, body, 8, &n);
    cr_assert_eq(decode(b, n, &f), (long)n);
    cr_assert_eq(f.type, FRAME_KEY);
    cr_assert_eq(f.u.key.op, FRAME_KEY_ADD);
    cr_assert_eq(f.u.key.len, 7);
    cr_assert_eq(memcmp(f.u.key.name, "shard-7", 7), 0);
    free(b);
    body[0] = FRAME_KEY_REMOVE;
    b = build(FRAME_KEY, 0, 0, body, 8, &n);
    cr_assert_eq(decode(b, n, &f), (long)n);
    cr_assert_eq(f.u.key.op, FRAME_KEY_REMOVE);
    free(b);
    /* The longest key, 63 bytes, and the shortest, 1. */
    memset(body + 1, 'k', 64);
    b = build(FRAME_KEY, 0, 0, body, FRAME_KEY_MAX, &n);
    cr_assert_eq(decode(b, n, &f), (long)n);
    cr_assert_eq(f.u.key.len, 63);
    free(b);
    b = build(FRAME_KEY, 0, 0, body, FRAME_KEY_MIN, &n);
    cr_assert_eq(decode(b, n, &f), (long)n);
    cr_assert_eq(f.u.key.len, 1);
    free(b);
    /* Bad lengths: empty, the operation alone, a 64-byte key. */
    static const uint32_t bad_lens[] = {0, 1, FRAME_KEY_MAX + 1};
    for (size_t i = 0; i < 3; i++) {
        b = build(FRAME_KEY, 0, 0, body, bad_lens[i], &n);
        cr_assert_eq(decode(b, n, &f), -EPROTO, "length %u", bad_lens[i]);
        free(b);
    }
    /* Bad operations, a forbidden byte in the key, a task id, a flag. */
    static const uint8_t bad_ops[] = {0, 3, 0xff};
    for (size_t i = 0; i < 3; i++) {
        body[0] = bad_ops[i];
        b = build(FRAME_KEY, 0, 0, body, 8, &n);
        cr_assert_eq(decode(b, n, &f), -EPROTO, "op %u", bad_ops[i]);
        free(b);
    }
    body[0] = FRAME_KEY_ADD;
    body[3] = '/';
    b = build(FRAME_KEY, 0, 0, body, 8, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    body[3] = 'k';
    b = build(FRAME_KEY, 0, 9, body, 8, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    b = build(FRAME_KEY, FRAME_FLAG_IDEMPOTENT, 0, body, 8, &n);
    cr_assert_eq(decode(b, n, &f), -EPROTO);
    free(b);
    /* Every prefix is incomplete, with the right size needed. */
    b = build(FRAME_KEY, 0, 0, body, 8, &n);
    for (size_t k = 0; k < n; k++) {
        size_t need = 0;
        cr_assert_eq(moirai__frame_decode(b, k, MAXP, &f, &need), 0, "prefix %zu", k);
        cr_assert_eq(need, k < FRAME_HEADER_SIZE ? FRAME_HEADER_SIZE : n);
    }
    free(b);
}

Test(frame, consecutive_frames_in_one_buffer)
{
    uint8_t buf[3 * FRAME_HEADER_SIZE + 4];
    moirai__frame_put_header(buf, FRAME_CANCEL, 0, 1, 0);
    moirai__frame_put_header(buf + 24, FRAME_RESULT, 0, 2, 4);
    memcpy(buf + 48, "abcd", 4);
    moirai__frame_put_header(buf + 52, FRAME_CANCEL, 0, 3, 0);
    size_t off = 0;
    uint64_t ids = 0;
    struct frame f;
    while (off < sizeof buf) {
        long n = decode(buf + off, sizeof buf - off, &f);
        cr_assert_gt(n, 0);
        ids = ids * 10 + f.task_id;
        off += (size_t)n;
    }
    cr_assert_eq(ids, 123);
}
