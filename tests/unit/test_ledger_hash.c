/* Tests for src/ledger/hash.c and the hardware CRC path of chunk.c: both
 * must agree with the reference implementations byte for byte. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "ledger/chunk.h"
#include "ledger/ledger.h"
#include "crypto/hash.h"
#include "runner.h"

static uint32_t crc_ref(const uint8_t *b, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= b[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

TEST(ledger_hash, crc32c_matches_bitwise_reference_at_every_length_and_offset)
{
    uint8_t buf[300];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t off = 0; off < 9; off++)
        for (size_t n = 0; n + off <= sizeof buf; n += 1 + n / 16)
            ASSERT_EQ(chunk_crc32c(buf + off, n), crc_ref(buf + off, n));
}

TEST(ledger_hash, sha256_and_hmac_match_openssl)
{
    uint8_t msg[200], key[100], a[32], b[32];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i ^ 0x5a);
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(i * 3);
    size_t lens[] = {0, 1, 26, 55, 56, 63, 64, 65, 200};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        hash_sha256(msg, lens[i], a);
        unsigned int n = 32;
        EVP_Digest(msg, lens[i], b, &n, EVP_sha256(), NULL);
        ASSERT_EQ(memcmp(a, b, 32), 0);
        size_t klens[] = {0, 32, 64, 100}; /* 100: longer than a block, hashed */
        for (size_t k = 0; k < 4; k++) {
            struct hash_hmac h;
            hash_hmac_init(&h, key, klens[k]);
            hash_hmac(&h, msg, lens[i], a);
            HMAC(EVP_sha256(), key, (int)klens[k], msg, lens[i], b, &n);
            ASSERT_EQ(memcmp(a, b, 32), 0);
            hash_hmac_wipe(&h);
        }
    }
}

TEST(ledger_hash, derived_keys_match_openssl_hmac)
{
    uint8_t secret[LEDGER_SECRET_BYTES], k[32], want[32];
    for (size_t i = 0; i < sizeof secret; i++)
        secret[i] = (uint8_t)(i * 7 + 1);
    static const char label[] = "lskv-ledger-private-v1";
    unsigned int n = 32;
    HMAC(EVP_sha256(), secret, (int)sizeof secret, (const unsigned char *)label,
         sizeof label - 1, want, &n);
    ledger_private_key(secret, k);
    ASSERT_MEM_EQ(k, want, 32);
    /* commit evidence: "ce:<t>.<i>:" + hex(HMAC(K_ce, "lskv-ce-v1" | u64 t | u64 i)) */
    static const char cel[] = "lskv-ledger-commit-evidence-v1";
    uint8_t kce[32], msg[26] = "lskv-ce-v1", h[32];
    HMAC(EVP_sha256(), secret, (int)sizeof secret, (const unsigned char *)cel, sizeof cel - 1,
         kce, &n);
    msg[17] = 3;  /* term 3 */
    msg[25] = 42; /* index 42 */
    HMAC(EVP_sha256(), kce, 32, msg, sizeof msg, h, &n);
    char ce[LEDGER_CE_MAX], hex[65], expect[LEDGER_CE_MAX];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    snprintf(expect, sizeof expect, "ce:3.42:%s", hex);
    ledger_commit_evidence(secret, 3, 42, ce);
    ASSERT_STR_EQ(ce, expect);
}
