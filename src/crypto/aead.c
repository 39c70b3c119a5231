#include "crypto/aead.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

/* The two GCM operations every entry point shares. ctx is either a fresh
 * context (key given) or a keyed one already set up with cipher and key
 * (key NULL); only the nonce changes per call. */
static int gcm_seal(EVP_CIPHER_CTX *ctx, const uint8_t *key, const uint8_t *nonce,
                    const uint8_t *aad, size_t aad_len, const uint8_t *plain, size_t plain_len,
                    uint8_t *out)
{
    int len = 0;
    if (plain_len > INT32_MAX || aad_len > INT32_MAX)
        return LSKV_EIO;
    memmove(out, nonce, AEAD_NONCE_BYTES);
    if (EVP_EncryptInit_ex(ctx, key ? EVP_aes_256_gcm() : NULL, NULL, key, out) != 1)
        return LSKV_EIO;
    if (aad_len && EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aad_len) != 1)
        return LSKV_EIO;
    if (plain_len &&
        EVP_EncryptUpdate(ctx, out + AEAD_NONCE_BYTES, &len, plain, (int)plain_len) != 1)
        return LSKV_EIO;
    if (EVP_EncryptFinal_ex(ctx, out + AEAD_NONCE_BYTES + plain_len, &len) != 1)
        return LSKV_EIO;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, AEAD_TAG_BYTES,
                            out + AEAD_NONCE_BYTES + plain_len) != 1)
        return LSKV_EIO;
    return 0;
}

static int gcm_open(EVP_CIPHER_CTX *ctx, const uint8_t *key, const uint8_t *aad,
                    size_t aad_len, const uint8_t *sealed, size_t sealed_len, uint8_t *out)
{
    if (sealed_len < AEAD_OVERHEAD || sealed_len - AEAD_OVERHEAD > INT32_MAX ||
        aad_len > INT32_MAX)
        return LSKV_ECORRUPT;
    size_t plain_len = sealed_len - AEAD_OVERHEAD;
    int len = 0;
    int rv = LSKV_EIO;
    if (EVP_DecryptInit_ex(ctx, key ? EVP_aes_256_gcm() : NULL, NULL, key, sealed) != 1)
        goto out;
    if (aad_len && EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)aad_len) != 1)
        goto out;
    if (plain_len && EVP_DecryptUpdate(ctx, out, &len, sealed + AEAD_NONCE_BYTES,
                                       (int)plain_len) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, AEAD_TAG_BYTES,
                            (void *)(sealed + AEAD_NONCE_BYTES + plain_len)) != 1)
        goto out;
    if (EVP_DecryptFinal_ex(ctx, out + plain_len, &len) != 1) {
        rv = LSKV_ECORRUPT;
        goto out;
    }
    rv = 0;
out:
    if (rv != 0 && plain_len)
        OPENSSL_cleanse(out, plain_len);
    return rv;
}

int aead_seal_with_nonce(const uint8_t key[AEAD_KEY_BYTES],
                         const uint8_t nonce[AEAD_NONCE_BYTES], const uint8_t *aad,
                         size_t aad_len, const uint8_t *plain, size_t plain_len,
                         uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return LSKV_ENOMEM;
    int rv = gcm_seal(ctx, key, nonce, aad, aad_len, plain, plain_len, out);
    EVP_CIPHER_CTX_free(ctx);
    return rv;
}

int aead_seal(const uint8_t key[AEAD_KEY_BYTES], const uint8_t *aad, size_t aad_len,
              const uint8_t *plain, size_t plain_len, uint8_t *out)
{
    uint8_t nonce[AEAD_NONCE_BYTES];
    if (RAND_bytes(nonce, sizeof nonce) != 1)
        return LSKV_EIO;
    return aead_seal_with_nonce(key, nonce, aad, aad_len, plain, plain_len, out);
}

int aead_open(const uint8_t key[AEAD_KEY_BYTES], const uint8_t *aad, size_t aad_len,
              const uint8_t *sealed, size_t sealed_len, uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return LSKV_ENOMEM;
    int rv = gcm_open(ctx, key, aad, aad_len, sealed, sealed_len, out);
    EVP_CIPHER_CTX_free(ctx);
    return rv;
}

/* ---- keyed contexts ---------------------------------------------------------
 * Each context holds an encryption and a decryption EVP context initialised
 * once with the cipher and key; an operation only sets the nonce. Nonces are
 * still fresh random 96-bit values, drawn from the DRBG in blocks: one
 * RAND_bytes call costs about as much as sealing a small record. */

enum { NONCE_POOL = 64 };

struct aead_key {
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
    size_t nonces_left;
    uint8_t nonces[NONCE_POOL * AEAD_NONCE_BYTES];
};

void aead_key_free(aead_key *k)
{
    if (k == NULL)
        return;
    EVP_CIPHER_CTX_free(k->enc); /* frees (and cleanses) the key schedule */
    EVP_CIPHER_CTX_free(k->dec);
    free(k);
}

int aead_key_new(const uint8_t key[AEAD_KEY_BYTES], aead_key **out)
{
    aead_key *k = calloc(1, sizeof *k);
    if (k == NULL)
        return LSKV_ENOMEM;
    k->enc = EVP_CIPHER_CTX_new();
    k->dec = EVP_CIPHER_CTX_new();
    if (k->enc == NULL || k->dec == NULL) {
        aead_key_free(k);
        return LSKV_ENOMEM;
    }
    if (EVP_EncryptInit_ex(k->enc, EVP_aes_256_gcm(), NULL, key, NULL) != 1 ||
        EVP_DecryptInit_ex(k->dec, EVP_aes_256_gcm(), NULL, key, NULL) != 1) {
        aead_key_free(k);
        return LSKV_EIO;
    }
    *out = k;
    return 0;
}

int aead_key_seal(aead_key *k, const uint8_t *aad, size_t aad_len, const uint8_t *plain,
                  size_t plain_len, uint8_t *out)
{
    uint8_t nonce[AEAD_NONCE_BYTES];
    if (k->nonces_left == 0) {
        if (RAND_bytes(k->nonces, sizeof k->nonces) != 1)
            return LSKV_EIO;
        k->nonces_left = NONCE_POOL;
    }
    /* Take the nonce out of the pool and erase it there: never used twice. */
    uint8_t *pooled = k->nonces + --k->nonces_left * AEAD_NONCE_BYTES;
    memcpy(nonce, pooled, AEAD_NONCE_BYTES);
    memset(pooled, 0, AEAD_NONCE_BYTES);
    return gcm_seal(k->enc, NULL, nonce, aad, aad_len, plain, plain_len, out);
}

int aead_key_seal_with_nonce(aead_key *k, const uint8_t nonce[AEAD_NONCE_BYTES],
                             const uint8_t *aad, size_t aad_len, const uint8_t *plain,
                             size_t plain_len, uint8_t *out)
{
    return gcm_seal(k->enc, NULL, nonce, aad, aad_len, plain, plain_len, out);
}

int aead_key_open(aead_key *k, const uint8_t *aad, size_t aad_len, const uint8_t *sealed,
                  size_t sealed_len, uint8_t *out)
{
    return gcm_open(k->dec, NULL, aad, aad_len, sealed, sealed_len, out);
}
