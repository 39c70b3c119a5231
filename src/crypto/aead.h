/* AES-256-GCM sealing, the only authenticated encryption in lskv.
 *
 * Sealed layout (byte order: as written):
 *   nonce[12] | ciphertext[plain_len] | tag[16]
 * so sealed_len = plain_len + AEAD_OVERHEAD. */
#ifndef LSKV_CRYPTO_AEAD_H
#define LSKV_CRYPTO_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define AEAD_KEY_BYTES 32
#define AEAD_NONCE_BYTES 12
#define AEAD_TAG_BYTES 16
#define AEAD_OVERHEAD (AEAD_NONCE_BYTES + AEAD_TAG_BYTES)

/* Seals plain under key with a fresh random nonce, binding aad.
 * out must hold plain_len + AEAD_OVERHEAD bytes.
 * Errors: LSKV_EIO (OpenSSL failure). */
int aead_seal(const uint8_t key[AEAD_KEY_BYTES], const uint8_t *aad, size_t aad_len,
              const uint8_t *plain, size_t plain_len, uint8_t *out);

/* As aead_seal with a caller-chosen nonce. The caller guarantees that a
 * (key, nonce) pair never seals two different plaintexts. */
int aead_seal_with_nonce(const uint8_t key[AEAD_KEY_BYTES],
                         const uint8_t nonce[AEAD_NONCE_BYTES], const uint8_t *aad,
                         size_t aad_len, const uint8_t *plain, size_t plain_len,
                         uint8_t *out);

/* Opens sealed (sealed_len >= AEAD_OVERHEAD) into out, which must hold
 * sealed_len - AEAD_OVERHEAD bytes. On failure out is wiped.
 * Errors: LSKV_ECORRUPT (too short, or authentication failed), LSKV_EIO. */
int aead_open(const uint8_t key[AEAD_KEY_BYTES], const uint8_t *aad, size_t aad_len,
              const uint8_t *sealed, size_t sealed_len, uint8_t *out);

/* A keyed context for sealing and opening many records under one key: the
 * cipher is fetched and the key schedule computed once, instead of per call
 * (several times cheaper for small records). Same layout and errors as
 * aead_seal/aead_open. Not thread safe: one user at a time. */
typedef struct aead_key aead_key;

/* Copies key. Errors: LSKV_ENOMEM, LSKV_EIO. */
int aead_key_new(const uint8_t key[AEAD_KEY_BYTES], aead_key **out);
/* Wipes and frees. NULL is a no-op. */
void aead_key_free(aead_key *k);
int aead_key_seal(aead_key *k, const uint8_t *aad, size_t aad_len, const uint8_t *plain,
                  size_t plain_len, uint8_t *out);
/* As aead_key_seal with a caller-chosen nonce (see aead_seal_with_nonce:
 * the caller guarantees a nonce never seals two different plaintexts). */
int aead_key_seal_with_nonce(aead_key *k, const uint8_t nonce[AEAD_NONCE_BYTES],
                             const uint8_t *aad, size_t aad_len, const uint8_t *plain,
                             size_t plain_len, uint8_t *out);
int aead_key_open(aead_key *k, const uint8_t *aad, size_t aad_len, const uint8_t *sealed,
                  size_t sealed_len, uint8_t *out);

#endif
