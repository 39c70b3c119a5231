#include "crypto/mac.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/err.h"

int mac_hmac_sha256(const uint8_t *key, size_t key_len, const void *msg, size_t len,
                    uint8_t out[MAC_BYTES])
{
    unsigned n = 0;
    static const uint8_t empty[1];
    if (HMAC(EVP_sha256(), key, (int)key_len, len ? msg : empty, len, out, &n) == NULL ||
        n != MAC_BYTES)
        return LSKV_EIO;
    return 0;
}

int mac_equal(const uint8_t a[MAC_BYTES], const uint8_t b[MAC_BYTES])
{
    return CRYPTO_memcmp(a, b, MAC_BYTES) == 0;
}
