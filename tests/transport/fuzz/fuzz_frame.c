/* libFuzzer target for the remote-task frame decoder, the first code that
 * sees bytes from the network: arbitrary bytes are decoded as a stream of
 * frames, the way a connection's reader consumes them, from an exactly
 * sized heap copy (so AddressSanitizer reports any read outside it), with
 * a payload limit taken from the input. Every decoded frame's parts are
 * read in full, so a pointer or length the decoder got wrong is caught.
 * Built by run-fuzz.sh with clang -fsanitize=fuzzer,address,undefined.
 *
 * Input: [limit: 2 bytes, payload limit = value * 64][stream bytes] */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

static volatile uint32_t sink;

static void touch(const uint8_t *p, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    sink += s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint32_t limit = (uint32_t)moirai__frame_get_u16(data) * 64u;
    size -= 2;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 2, size);
    size_t off = 0;
    while (off <= size) {
        struct frame f;
        size_t need = 0;
        long n = moirai__frame_decode(buf + off, size - off, limit, &f, &need);
        if (n < 0) {
            if (n != -EPROTO && n != -EPROTONOSUPPORT && n != -EMSGSIZE)
                abort(); /* an error the reader does not expect */
            break;
        }
        if (n == 0) {
            if (need <= size - off)
                abort(); /* "need more" while the bytes are there */
            break;
        }
        if ((size_t)n != FRAME_HEADER_SIZE + f.payload_len || (size_t)n > size - off ||
            f.payload_len > limit)
            abort();
        touch(f.payload, f.payload_len);
        switch (f.type) {
        case FRAME_HELLO:
        case FRAME_AUTH_CHALLENGE:
            touch(f.u.hello.raw, FRAME_HELLO_SIZE);
            if (f.u.hello.node_id == 0 || f.u.hello.incarnation == 0)
                abort();
            if (f.type == FRAME_AUTH_CHALLENGE)
                touch(f.challenge_mac, FRAME_MAC_SIZE);
            break;
        case FRAME_SPAWN:
            if (!moirai__frame_name_valid(f.u.spawn.name, f.u.spawn.name_len))
                abort();
            touch(f.u.spawn.data, f.u.spawn.data_len);
            break;
        case FRAME_MEMBERSHIP:
            for (uint32_t i = 0; i < f.u.members.count; i++) {
                struct frame_member m;
                moirai__frame_member_at(&f, i, &m);
                if (m.node_id == 0 || m.incarnation == 0 ||
                    (m.state != FRAME_MEMBER_ALIVE && m.state != FRAME_MEMBER_DEAD))
                    abort();
            }
            break;
        case FRAME_KEY:
            if ((f.u.key.op != FRAME_KEY_ADD && f.u.key.op != FRAME_KEY_REMOVE) ||
                !moirai__frame_name_valid(f.u.key.name, f.u.key.len) ||
                f.u.key.len + 1 != f.payload_len)
                abort();
            break;
        case FRAME_ERROR:
            if (f.u.error >= 0 || f.u.error < -4095)
                abort();
            break;
        default:
            break;
        }
        off += (size_t)n;
    }
    free(buf);
    return 0;
}
