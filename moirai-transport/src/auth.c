/* HMAC-SHA256 challenge-response over the cluster key (see auth.h). Each
 * side sends a fresh 32-byte nonce in its HELLO; each proves knowledge of
 * the key by a MAC over both HELLOs under its own role's label. Nothing
 * here keeps state: the handshake's order is the connection's business
 * (peer.c). */
#include "auth.h"

#include <errno.h>
#include <sodium.h>

static const char *const labels[2] = {"moirai-remote-v1 acceptor", "moirai-remote-v1 initiator"};

int moirai__auth_init(void)
{
    /* sodium_init() is thread-safe and returns 1 when already done. */
    return sodium_init() < 0 ? -EIO : 0;
}

void moirai__auth_nonce(uint8_t nonce[FRAME_NONCE_SIZE])
{
    randombytes_buf(nonce, FRAME_NONCE_SIZE);
}

void moirai__auth_mac(const uint8_t *key, size_t key_len, enum auth_role role,
                      const uint8_t *hello_initiator, const uint8_t *hello_acceptor,
                      uint8_t mac[FRAME_MAC_SIZE])
{
    crypto_auth_hmacsha256_state st;
    const char *label = labels[role];
    size_t label_len = 0;
    while (label[label_len])
        label_len++;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    /* The label includes its terminating NUL, so no label is a prefix of
     * another's input. */
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)label, label_len + 1);
    crypto_auth_hmacsha256_update(&st, hello_initiator, FRAME_HELLO_SIZE);
    crypto_auth_hmacsha256_update(&st, hello_acceptor, FRAME_HELLO_SIZE);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof st);
}

bool moirai__auth_verify(const uint8_t *key, size_t key_len, enum auth_role role,
                         const uint8_t *hello_initiator, const uint8_t *hello_acceptor,
                         const uint8_t *mac)
{
    uint8_t want[FRAME_MAC_SIZE];
    moirai__auth_mac(key, key_len, role, hello_initiator, hello_acceptor, want);
    bool ok = sodium_memcmp(want, mac, FRAME_MAC_SIZE) == 0;
    sodium_memzero(want, sizeof want);
    return ok;
}
