#include "common/err.h"
#include "crypto/aead.h"
#include "crypto/keyring.h"
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

/* ---- crypto/keyring.h ------------------------------------------------------- */

TEST(keyring, keys_differ_by_purpose_and_epoch_and_are_rederived)
{
    static const uint8_t master[AEAD_KEY_BYTES] = {1, 2, 3};
    uint8_t a[AEAD_KEY_BYTES], b[AEAD_KEY_BYTES], c[AEAD_KEY_BYTES];
    ASSERT_EQ(keyring_derive(master, "raft", 0, a), 0);
    ASSERT_EQ(keyring_derive(master, "raft", 1, b), 0);
    ASSERT_EQ(keyring_derive(master, "records", 0, c), 0);
    ASSERT(memcmp(a, b, sizeof a) != 0 && memcmp(a, c, sizeof a) != 0);
    ASSERT(memcmp(a, master, sizeof a) != 0); /* the master never seals */

    keyring *k;
    ASSERT_EQ(keyring_new(master, "raft", 10, &k), 0);
    ASSERT_EQ(keyring_epoch_of(k, 9), 0);
    ASSERT_EQ(keyring_epoch_of(k, 10), 1);
    ASSERT_EQ(keyring_epoch_of(k, UINT64_MAX), UINT32_MAX);
    /* a message sealed under each of 20 epochs (more than the cache holds)
     * opens under a fresh derivation of its epoch's key, and no other */
    uint8_t sealed[20][4 + AEAD_OVERHEAD], out[4];
    for (uint32_t e = 0; e < 20; e++) {
        aead_key *key;
        ASSERT_EQ(keyring_count_seal(k, e), 0);
        ASSERT_EQ(keyring_key(k, e, &key), 0);
        ASSERT_EQ(aead_key_seal(key, NULL, 0, (const uint8_t *)"abcd", 4, sealed[e]), 0);
        ASSERT_EQ(keyring_seals(k, e), 1);
    }
    ASSERT_EQ(keyring_last_epoch(k), 19);
    ASSERT_EQ(keyring_epochs_used(k), 20);
    for (uint32_t e = 0; e < 20; e++) {
        uint8_t key[AEAD_KEY_BYTES];
        ASSERT_EQ(keyring_derive(master, "raft", e, key), 0);
        ASSERT_EQ(aead_open(key, NULL, 0, sealed[e], sizeof sealed[e], out), 0);
        ASSERT_MEM_EQ(out, "abcd", 4);
        ASSERT_EQ(keyring_derive(master, "raft", e + 1, key), 0);
        ASSERT_EQ(aead_open(key, NULL, 0, sealed[e], sizeof sealed[e], out), LSKV_ECORRUPT);
    }
    keyring_free(k);
    ASSERT_EQ(keyring_new(master, "raft", 0, &k), LSKV_EINVAL);
}
