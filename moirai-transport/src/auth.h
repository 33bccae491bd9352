/* Cluster authentication: an HMAC-SHA256 challenge-response in both
 * directions over a shared cluster key (libsodium). See docs/transport.md,
 * "Remote tasks: security model". */
#ifndef MOIRAI_TRANSPORT_AUTH_H
#define MOIRAI_TRANSPORT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* Which side of a handshake a MAC proves: the two directions use
 * different labels, so a MAC cannot be reflected back to its sender. */
enum auth_role { AUTH_ACCEPTOR = 0, AUTH_INITIATOR = 1 };

/* Initialises libsodium (idempotent, thread-safe). Returns 0 or -EIO. */
int moirai__auth_init(void);

/* Fills `nonce` with fresh random bytes. */
void moirai__auth_nonce(uint8_t nonce[FRAME_NONCE_SIZE]);

/* The MAC `role` sends: HMAC-SHA256 under `key` over a label for the role
 * followed by the initiator's and the acceptor's HELLO bodies (each
 * FRAME_HELLO_SIZE bytes, nonces and node ids included), so the MAC
 * binds both fresh nonces and both identities. */
void moirai__auth_mac(const uint8_t *key, size_t key_len, enum auth_role role,
                      const uint8_t *hello_initiator, const uint8_t *hello_acceptor,
                      uint8_t mac[FRAME_MAC_SIZE]);

/* Checks `mac` against the expected one in constant time. */
bool moirai__auth_verify(const uint8_t *key, size_t key_len, enum auth_role role,
                         const uint8_t *hello_initiator, const uint8_t *hello_acceptor,
                         const uint8_t *mac);

#endif
