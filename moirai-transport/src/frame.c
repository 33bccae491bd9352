/* The remote-task frame codec (see frame.h and docs/transport.md, "Remote
 * tasks: wire format"). The decoder trusts nothing: every length is
 * checked against what is in the buffer before anything is read through
 * it, every field with a closed set of values is checked against the
 * set, and every reserved bit must be zero, so that a frame means one
 * thing or is refused. */
#include "frame.h"

#include <errno.h>
#include <string.h>

void moirai__frame_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void moirai__frame_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void moirai__frame_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

uint16_t moirai__frame_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

uint32_t moirai__frame_get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t moirai__frame_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void moirai__frame_put_header(uint8_t *out, uint8_t type, uint16_t flags, uint64_t task_id,
                              uint32_t payload_len)
{
    moirai__frame_put_u32(out, FRAME_MAGIC);
    out[4] = FRAME_VERSION;
    out[5] = type;
    moirai__frame_put_u16(out + 6, flags);
    moirai__frame_put_u64(out + 8, task_id);
    moirai__frame_put_u32(out + 16, payload_len);
    moirai__frame_put_u32(out + 20, 0);
}

static void put_addr(uint8_t *family, uint8_t *port, uint8_t *addr, const struct frame_addr *a)
{
    *family = a->family;
    moirai__frame_put_u16(port, a->port);
    memcpy(addr, a->addr, 16);
}

void moirai__frame_put_hello(uint8_t *out, uint64_t node_id, uint64_t incarnation,
                             const struct frame_addr *listen, const uint8_t nonce[FRAME_NONCE_SIZE])
{
    moirai__frame_put_u64(out, node_id);
    out[9] = 0;
    put_addr(&out[8], out + 10, out + 12, listen);
    moirai__frame_put_u64(out + 28, incarnation);
    memcpy(out + 36, nonce, FRAME_NONCE_SIZE);
}

void moirai__frame_put_member(uint8_t *out, const struct frame_member *m)
{
    moirai__frame_put_u64(out, m->node_id);
    out[8] = m->state;
    put_addr(&out[9], out + 10, out + 12, &m->addr);
    moirai__frame_put_u64(out + 28, m->incarnation);
}

bool moirai__frame_name_valid(const uint8_t *name, size_t len)
{
    if (len == 0 || len > FRAME_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == ':' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* An address is canonical: family 0 carries no address bytes, family 4
 * only the first four, so two encodings never mean the same address. */
static bool get_addr(uint8_t family, const uint8_t *port, const uint8_t *addr,
                     struct frame_addr *out)
{
    size_t used;
    switch (family) {
    case 0:
        used = 0;
        break;
    case 4:
    case FRAME_ADDR_MPI:
        used = 4;
        break;
    case 6:
    case FRAME_ADDR_SHM:
        used = 16;
        break;
    default:
        return false;
    }
    for (size_t i = used; i < 16; i++)
        if (addr[i] != 0)
            return false;
    out->family = family;
    out->port = moirai__frame_get_u16(port);
    memcpy(out->addr, addr, 16);
    return true;
}

static bool get_hello(const uint8_t *p, struct frame_hello *out)
{
    out->node_id = moirai__frame_get_u64(p);
    out->incarnation = moirai__frame_get_u64(p + 28);
    if (out->node_id == 0 || out->incarnation == 0 || p[9] != 0)
        return false;
    if (!get_addr(p[8], p + 10, p + 12, &out->listen))
        return false;
    memcpy(out->nonce, p + 36, FRAME_NONCE_SIZE);
    out->raw = p;
    return true;
}

void moirai__frame_member_at(const struct frame *f, uint32_t i, struct frame_member *out)
{
    const uint8_t *p = f->u.members.entries + (size_t)i * FRAME_MEMBER_SIZE;
    out->node_id = moirai__frame_get_u64(p);
    out->state = p[8];
    get_addr(p[9], p + 10, p + 12, &out->addr);
    out->incarnation = moirai__frame_get_u64(p + 28);
}

/* Checks the body of a frame whose header is valid and whose payload is
 * wholly in the buffer. */
static int decode_body(struct frame *f)
{
    const uint8_t *p = f->payload;
    uint32_t n = f->payload_len;
    bool task_frame = f->type == FRAME_SPAWN || f->type == FRAME_RESULT || f->type == FRAME_ERROR ||
                      f->type == FRAME_CANCEL;
    /* Task frames name a task (id 0 is never issued); the others none. */
    if (task_frame ? f->task_id == 0 : f->task_id != 0)
        return -EPROTO;
    if (f->flags != 0 && !(f->type == FRAME_SPAWN && f->flags == FRAME_FLAG_IDEMPOTENT))
        return -EPROTO;
    switch (f->type) {
    case FRAME_HELLO:
        if (n != FRAME_HELLO_SIZE || !get_hello(p, &f->u.hello))
            return -EPROTO;
        return 0;
    case FRAME_AUTH_CHALLENGE:
        if (n != FRAME_HELLO_SIZE + FRAME_MAC_SIZE || !get_hello(p, &f->u.hello))
            return -EPROTO;
        f->challenge_mac = p + FRAME_HELLO_SIZE;
        return 0;
    case FRAME_AUTH_RESPONSE:
        if (n != FRAME_MAC_SIZE)
            return -EPROTO;
        f->u.mac = p;
        return 0;
    case FRAME_SPAWN: {
        if (n < 2)
            return -EPROTO;
        uint32_t name_len = moirai__frame_get_u16(p);
        if (name_len > n - 2 || !moirai__frame_name_valid(p + 2, name_len))
            return -EPROTO;
        f->u.spawn.name = p + 2;
        f->u.spawn.name_len = name_len;
        f->u.spawn.data = p + 2 + name_len;
        f->u.spawn.data_len = n - 2 - name_len;
        return 0;
    }
    case FRAME_RESULT:
        return 0;
    case FRAME_ERROR: {
        if (n != 4)
            return -EPROTO;
        int32_t e = (int32_t)moirai__frame_get_u32(p);
        if (e >= 0 || e < -4095)
            return -EPROTO;
        f->u.error = e;
        return 0;
    }
    case FRAME_CANCEL:
        return n == 0 ? 0 : -EPROTO;
    case FRAME_HEARTBEAT:
        if (n != 8)
            return -EPROTO;
        f->u.heartbeat_ns = moirai__frame_get_u64(p);
        return 0;
    case FRAME_MEMBERSHIP: {
        if (n < 4)
            return -EPROTO;
        uint32_t count = moirai__frame_get_u32(p);
        if (count > FRAME_MEMBERS_MAX || n != 4 + (size_t)count * FRAME_MEMBER_SIZE)
            return -EPROTO;
        for (uint32_t i = 0; i < count; i++) {
            const uint8_t *e = p + 4 + (size_t)i * FRAME_MEMBER_SIZE;
            struct frame_addr a;
            if (moirai__frame_get_u64(e) == 0 || moirai__frame_get_u64(e + 28) == 0 ||
                (e[8] != FRAME_MEMBER_ALIVE && e[8] != FRAME_MEMBER_DEAD) ||
                !get_addr(e[9], e + 10, e + 12, &a))
                return -EPROTO;
        }
        f->u.members.count = count;
        f->u.members.entries = p + 4;
        return 0;
    }
    case FRAME_LOAD:
        if (n != 12)
            return -EPROTO;
        f->u.load.running = moirai__frame_get_u32(p);
        f->u.load.queued = moirai__frame_get_u32(p + 4);
        f->u.load.workers = moirai__frame_get_u32(p + 8);
        return 0;
    case FRAME_KEY:
        /* The length bounds the key (1 to 63 bytes), so a KEY frame fits
         * under any receiver's limit (max_payload + 65 bytes). */
        if (n < FRAME_KEY_MIN || n > FRAME_KEY_MAX ||
            (p[0] != FRAME_KEY_ADD && p[0] != FRAME_KEY_REMOVE) ||
            !moirai__frame_name_valid(p + 1, n - 1))
            return -EPROTO;
        f->u.key.op = p[0];
        f->u.key.name = p + 1;
        f->u.key.len = n - 1;
        return 0;
    default:
        return -EPROTO;
    }
}

long moirai__frame_decode(const uint8_t *buf, size_t len, uint32_t max_payload, struct frame *out,
                          size_t *need)
{
    if (need)
        *need = FRAME_HEADER_SIZE;
    if (max_payload > FRAME_PAYLOAD_HARD_MAX)
        max_payload = FRAME_PAYLOAD_HARD_MAX;
    /* The magic is checked as soon as its bytes are in, so a stream of
     * garbage is refused after four bytes, not after a whole header. */
    uint8_t magic[4];
    moirai__frame_put_u32(magic, FRAME_MAGIC);
    for (size_t i = 0; i < len && i < 4; i++)
        if (buf[i] != magic[i])
            return -EPROTO;
    if (len < FRAME_HEADER_SIZE)
        return 0;
    if (buf[4] != FRAME_VERSION)
        return -EPROTONOSUPPORT;
    memset(out, 0, sizeof *out);
    out->type = buf[5];
    out->flags = moirai__frame_get_u16(buf + 6);
    out->task_id = moirai__frame_get_u64(buf + 8);
    out->payload_len = moirai__frame_get_u32(buf + 16);
    if (moirai__frame_get_u32(buf + 20) != 0 || out->type < FRAME_HELLO || out->type > FRAME_KEY)
        return -EPROTO;
    if (out->payload_len > max_payload)
        return -EMSGSIZE;
    size_t total = FRAME_HEADER_SIZE + (size_t)out->payload_len;
    if (need)
        *need = total;
    if (len < total)
        return 0;
    out->payload = buf + FRAME_HEADER_SIZE;
    int rc = decode_body(out);
    if (rc < 0)
        return rc;
    return (long)total;
}
