#include "common/err.h"
#include "crypto/aead.h"
#include "runner.h"

TEST(aead, roundtrip_and_tamper)
{
    uint8_t key[AEAD_KEY_BYTES] = {1, 2, 3};
    const uint8_t aad[] = "id-1";
    const uint8_t plain[] = "hello value";
    uint8_t sealed[sizeof plain + AEAD_OVERHEAD];
    uint8_t out[sizeof plain];
    ASSERT_EQ(aead_seal(key, aad, sizeof aad, plain, sizeof plain, sealed), 0);
    ASSERT_EQ(aead_open(key, aad, sizeof aad, sealed, sizeof sealed, out), 0);
    ASSERT_MEM_EQ(out, plain, sizeof plain);

    const uint8_t other_aad[] = "id-2";
    ASSERT_EQ(aead_open(key, other_aad, sizeof other_aad, sealed, sizeof sealed, out),
              LSKV_ECORRUPT);
    for (size_t i = 0; i < sizeof sealed; i++) {
        sealed[i] ^= 0x01;
        ASSERT_EQ(aead_open(key, aad, sizeof aad, sealed, sizeof sealed, out),
                  LSKV_ECORRUPT);
        sealed[i] ^= 0x01;
    }
    ASSERT_EQ(aead_open(key, aad, sizeof aad, sealed, AEAD_OVERHEAD - 1, out),
              LSKV_ECORRUPT);
}

TEST(aead, keyed_context_interoperates)
{
    uint8_t key[AEAD_KEY_BYTES] = {4, 5, 6};
    const uint8_t aad[] = "id-1";
    uint8_t plain[300];
    for (size_t i = 0; i < sizeof plain; i++)
        plain[i] = (uint8_t)i;
    uint8_t sealed[sizeof plain + AEAD_OVERHEAD], sealed2[sizeof sealed];
    uint8_t out[sizeof plain];
    aead_key *k;
    ASSERT_EQ(aead_key_new(key, &k), 0);
    /* Keyed seal opens with the one-shot open and vice versa, over more
     * seals than one nonce pool holds; nonces never repeat. */
    uint8_t nonces[200][AEAD_NONCE_BYTES];
    for (int i = 0; i < 200; i++) {
        ASSERT_EQ(aead_key_seal(k, aad, sizeof aad, plain, sizeof plain, sealed), 0);
        memcpy(nonces[i], sealed, AEAD_NONCE_BYTES);
        for (int j = 0; j < i; j++)
            ASSERT(memcmp(nonces[i], nonces[j], AEAD_NONCE_BYTES) != 0);
        ASSERT_EQ(aead_open(key, aad, sizeof aad, sealed, sizeof sealed, out), 0);
        ASSERT_MEM_EQ(out, plain, sizeof plain);
    }
    ASSERT_EQ(aead_seal(key, aad, sizeof aad, plain, sizeof plain, sealed2), 0);
    ASSERT_EQ(aead_key_open(k, aad, sizeof aad, sealed2, sizeof sealed2, out), 0);
    ASSERT_MEM_EQ(out, plain, sizeof plain);
    /* Empty plaintext, wrong AAD, every flipped bit, short input. */
    ASSERT_EQ(aead_key_seal(k, aad, sizeof aad, plain, 0, sealed), 0);
    ASSERT_EQ(aead_key_open(k, aad, sizeof aad, sealed, AEAD_OVERHEAD, out), 0);
    ASSERT_EQ(aead_key_open(k, aad, 3, sealed2, sizeof sealed2, out), LSKV_ECORRUPT);
    for (size_t i = 0; i < sizeof sealed2 * 8; i += 5) {
        sealed2[i / 8] ^= (uint8_t)(1u << (i % 8));
        ASSERT_EQ(aead_key_open(k, aad, sizeof aad, sealed2, sizeof sealed2, out),
                  LSKV_ECORRUPT);
        sealed2[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    ASSERT_EQ(aead_key_open(k, aad, sizeof aad, sealed2, sizeof sealed2, out), 0);
    ASSERT_EQ(aead_key_open(k, aad, sizeof aad, sealed2, AEAD_OVERHEAD - 1, out),
              LSKV_ECORRUPT);
    aead_key_free(k);
}
