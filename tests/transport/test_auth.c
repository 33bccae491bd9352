/* The handshake's MACs (moirai-transport/src/auth.c, compiled in): HMAC-
 * SHA256 over both HELLOs under a per-role label; a wrong key, a changed
 * HELLO byte, a reflected MAC or a swapped order all fail. */
#include <criterion/criterion.h>

#include <string.h>

#include "auth.h"

static const uint8_t key[] = "0123456789abcdef-cluster";
static const uint8_t other[] = "0123456789abcdef-clusteR";

static void hellos(uint8_t a[FRAME_HELLO_SIZE], uint8_t b[FRAME_HELLO_SIZE])
{
    struct frame_addr addr = {.family = 4, .port = 1, .addr = {127, 0, 0, 1}};
    uint8_t n1[FRAME_NONCE_SIZE], n2[FRAME_NONCE_SIZE];
    moirai__auth_nonce(n1);
    moirai__auth_nonce(n2);
    cr_assert_neq(memcmp(n1, n2, sizeof n1), 0, "two nonces are equal");
    moirai__frame_put_hello(a, 1, 11, &addr, n1);
    moirai__frame_put_hello(b, 2, 22, &addr, n2);
}

Test(auth, mac_verifies_only_with_the_same_key_role_and_hellos)
{
    cr_assert_eq(moirai__auth_init(), 0);
    uint8_t hi[FRAME_HELLO_SIZE], ha[FRAME_HELLO_SIZE], mac[FRAME_MAC_SIZE];
    hellos(hi, ha);
    moirai__auth_mac(key, sizeof key, AUTH_ACCEPTOR, hi, ha, mac);
    cr_assert(moirai__auth_verify(key, sizeof key, AUTH_ACCEPTOR, hi, ha, mac));
    cr_assert_not(moirai__auth_verify(other, sizeof other, AUTH_ACCEPTOR, hi, ha, mac));
    /* Reflection: the acceptor's MAC is not the initiator's. */
    cr_assert_not(moirai__auth_verify(key, sizeof key, AUTH_INITIATOR, hi, ha, mac));
    /* Order of the HELLOs matters. */
    cr_assert_not(moirai__auth_verify(key, sizeof key, AUTH_ACCEPTOR, ha, hi, mac));
    /* Every byte of either HELLO is covered. */
    for (size_t i = 0; i < FRAME_HELLO_SIZE; i++) {
        hi[i] ^= 0x40;
        cr_assert_not(moirai__auth_verify(key, sizeof key, AUTH_ACCEPTOR, hi, ha, mac), "%zu", i);
        hi[i] ^= 0x40;
        ha[i] ^= 0x01;
        cr_assert_not(moirai__auth_verify(key, sizeof key, AUTH_ACCEPTOR, hi, ha, mac), "%zu", i);
        ha[i] ^= 0x01;
    }
    mac[31] ^= 1;
    cr_assert_not(moirai__auth_verify(key, sizeof key, AUTH_ACCEPTOR, hi, ha, mac));
}

Test(auth, fresh_nonces_give_fresh_macs)
{
    cr_assert_eq(moirai__auth_init(), 0);
    uint8_t hi[FRAME_HELLO_SIZE], ha[FRAME_HELLO_SIZE], m1[FRAME_MAC_SIZE], m2[FRAME_MAC_SIZE];
    hellos(hi, ha);
    moirai__auth_mac(key, sizeof key, AUTH_INITIATOR, hi, ha, m1);
    hellos(hi, ha);
    moirai__auth_mac(key, sizeof key, AUTH_INITIATOR, hi, ha, m2);
    cr_assert_neq(memcmp(m1, m2, sizeof m1), 0, "a replayed MAC would verify");
}
