/* HMAC-SHA256 for small and rare uses (a file's tag, a key derived once at
 * start). Hot paths keep a keyed state instead (crypto/hash.h). */
#ifndef LSKV_CRYPTO_MAC_H
#define LSKV_CRYPTO_MAC_H

#include <stddef.h>
#include <stdint.h>

#define MAC_BYTES 32

/* out = HMAC-SHA256(key, msg). Errors: LSKV_EIO (OpenSSL). */
int mac_hmac_sha256(const uint8_t *key, size_t key_len, const void *msg, size_t len,
                    uint8_t out[MAC_BYTES]);

/* Constant-time comparison of two MAC_BYTES tags: true when equal. */
int mac_equal(const uint8_t a[MAC_BYTES], const uint8_t b[MAC_BYTES]);

#endif
