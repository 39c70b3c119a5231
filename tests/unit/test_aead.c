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
