/* The remote-task wire format: frame layout, limits and the codec.
 * docs/transport.md, "Remote tasks: wire format", describes every byte;
 * this header and frame.c are its only implementation. All integers are
 * little-endian on the wire, whatever the host. The decoder is a pure
 * function over bytes (no allocation, no globals), so the fuzz target
 * tests/transport/fuzz/fuzz_frame.c can drive it directly. */
#ifndef MOIRAI_TRANSPORT_FRAME_H
#define MOIRAI_TRANSPORT_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_MAGIC 0x3154524du /* "MRT1" as bytes on the wire */
/* 2: HELLO and MEMBERSHIP entries carry an incarnation; the KEY frame. */
#define FRAME_VERSION     2u
#define FRAME_HEADER_SIZE 24u
/* The largest payload any node accepts, whatever its configuration. */
#define FRAME_PAYLOAD_HARD_MAX ((uint32_t)64 * 1024 * 1024)
#define FRAME_NONCE_SIZE       32u
#define FRAME_MAC_SIZE         32u
#define FRAME_NAME_MAX         63u
#define FRAME_MEMBERS_MAX      1024u
#define FRAME_HELLO_SIZE       68u
#define FRAME_MEMBER_SIZE      36u
/* KEY: an operation byte and a data key of 1 to FRAME_NAME_MAX bytes. */
#define FRAME_KEY_MIN 2u
#define FRAME_KEY_MAX (1u + FRAME_NAME_MAX)

enum frame_type {
    FRAME_HELLO = 1,
    FRAME_AUTH_CHALLENGE = 2,
    FRAME_AUTH_RESPONSE = 3,
    FRAME_SPAWN = 4,
    FRAME_RESULT = 5,
    FRAME_ERROR = 6,
    FRAME_CANCEL = 7,
    FRAME_HEARTBEAT = 8,
    FRAME_MEMBERSHIP = 9,
    FRAME_LOAD = 10,
    FRAME_KEY = 11,
};

/* KEY operations: the sender now holds the key, or no longer does. */
#define FRAME_KEY_ADD    1u
#define FRAME_KEY_REMOVE 2u

/* Header flags. Only FLAG_IDEMPOTENT is defined, and only on SPAWN. */
#define FRAME_FLAG_IDEMPOTENT 0x0001u

/* The MPI backend's family ('M'): addr[0..3] is the rank, little-endian,
 * the rest zero; port unused. */
#define FRAME_ADDR_MPI 0x4du

/* An advertised network address: family 0 means "the address you see my
 * connection come from", 4 an IPv4 address in the first 4 bytes, 6 an
 * IPv6 address, FRAME_ADDR_MPI an MPI rank, FRAME_ADDR_SHM the name of a
 * shared-memory listener on the same host (16 bytes, NUL-padded; port
 * unused; link_shm.h). */
#define FRAME_ADDR_SHM 0x53u /* 'S' */
struct frame_addr {
    uint8_t family;
    uint16_t port;
    uint8_t addr[16];
};

struct frame_hello {
    uint64_t node_id;
    uint64_t incarnation; /* non-zero; a restarted node sends a larger one */
    struct frame_addr listen;
    uint8_t nonce[FRAME_NONCE_SIZE];
    const uint8_t *raw; /* the FRAME_HELLO_SIZE bytes as received, for the MAC */
};

struct frame_member {
    uint64_t node_id;
    uint8_t state; /* 1 alive, 2 dead */
    struct frame_addr addr;
    uint64_t incarnation; /* non-zero: which life of node_id this is about */
};

#define FRAME_MEMBER_ALIVE 1u
#define FRAME_MEMBER_DEAD  2u

/* A decoded frame. Pointers point into the buffer given to the decoder. */
struct frame {
    uint8_t type;
    uint16_t flags;
    uint64_t task_id;
    uint32_t payload_len;
    const uint8_t *payload;
    union {
        struct frame_hello hello; /* HELLO, and AUTH_CHALLENGE's first part */
        struct {
            const uint8_t *name;
            uint32_t name_len;
            const uint8_t *data;
            uint32_t data_len;
        } spawn;
        int32_t error;         /* ERROR: a negative errno */
        const uint8_t *mac;    /* AUTH_RESPONSE; AUTH_CHALLENGE's mac below */
        uint64_t heartbeat_ns; /* HEARTBEAT: the sender's clock */
        struct {
            uint32_t count;
            const uint8_t *entries; /* parse with frame_member_at() */
        } members;
        struct {
            uint32_t running, queued, workers;
        } load;
        struct {
            uint8_t op; /* FRAME_KEY_ADD or FRAME_KEY_REMOVE */
            const uint8_t *name;
            uint32_t len; /* 1 to FRAME_NAME_MAX, valid as a name */
        } key;
    } u;
    const uint8_t *challenge_mac; /* AUTH_CHALLENGE */
};

/* Decodes the frame at the start of `buf` (`len` bytes available), whose
 * payload may be at most `max_payload` bytes. Returns the frame's total
 * size (header plus payload) and fills `*out`; 0 when more bytes are
 * needed (`*need`, if not NULL, is the size the frame will have once its
 * header is complete, else FRAME_HEADER_SIZE); or a negative errno:
 * -EPROTO (bad magic, reserved bits, unknown type, malformed payload),
 * -EPROTONOSUPPORT (another version), -EMSGSIZE (payload over the limit).
 * Never reads outside buf[0, len). */
long moirai__frame_decode(const uint8_t *buf, size_t len, uint32_t max_payload, struct frame *out,
                          size_t *need);

/* Reads entry `i` (< count) of a decoded MEMBERSHIP frame. */
void moirai__frame_member_at(const struct frame *f, uint32_t i, struct frame_member *out);

/* True if `name` (`len` bytes) is a valid task name or data key: 1 to 63
 * bytes of [A-Za-z0-9_.:-]. */
bool moirai__frame_name_valid(const uint8_t *name, size_t len);

/* ---- Encoding ---- */

/* Writes the 24-byte header. */
void moirai__frame_put_header(uint8_t *out, uint8_t type, uint16_t flags, uint64_t task_id,
                              uint32_t payload_len);
/* Writes a HELLO body (FRAME_HELLO_SIZE bytes). */
void moirai__frame_put_hello(uint8_t *out, uint64_t node_id, uint64_t incarnation,
                             const struct frame_addr *listen,
                             const uint8_t nonce[FRAME_NONCE_SIZE]);
/* Writes one MEMBERSHIP entry (FRAME_MEMBER_SIZE bytes). */
void moirai__frame_put_member(uint8_t *out, const struct frame_member *m);

void moirai__frame_put_u16(uint8_t *p, uint16_t v);
void moirai__frame_put_u32(uint8_t *p, uint32_t v);
void moirai__frame_put_u64(uint8_t *p, uint64_t v);
uint16_t moirai__frame_get_u16(const uint8_t *p);
uint32_t moirai__frame_get_u32(const uint8_t *p);
uint64_t moirai__frame_get_u64(const uint8_t *p);

#endif
