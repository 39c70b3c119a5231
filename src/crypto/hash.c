/* See hash.h. The low-level SHA-256 functions are deprecated in OpenSSL 3
 * in favour of EVP, whose per-call algorithm fetch is what this avoids. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "crypto/hash.h"

#include <openssl/crypto.h>
#include <string.h>

void hash_sha256(const void *buf, size_t len, uint8_t out[HASH_BYTES])
{
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, buf, len);
    SHA256_Final(out, &c);
}

void hash_sha256_begin(struct hash_sha256_stream *h)
{
    SHA256_Init(&h->c);
}

void hash_sha256_add(struct hash_sha256_stream *h, const void *buf, size_t len)
{
    SHA256_Update(&h->c, buf, len);
}

void hash_sha256_end(struct hash_sha256_stream *h, uint8_t out[HASH_BYTES])
{
    SHA256_Final(out, &h->c);
}

void hash_hmac_init(struct hash_hmac *h, const uint8_t *key, size_t key_len)
{
    uint8_t k[SHA256_CBLOCK] = {0}, pad[SHA256_CBLOCK];
    if (key_len > sizeof k)
        hash_sha256(key, key_len, k);
    else
        memcpy(k, key, key_len);
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k[i] ^ 0x36;
    SHA256_Init(&h->inner);
    SHA256_Update(&h->inner, pad, sizeof pad);
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k[i] ^ 0x5c;
    SHA256_Init(&h->outer);
    SHA256_Update(&h->outer, pad, sizeof pad);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
}

void hash_hmac(const struct hash_hmac *h, const void *msg, size_t len, uint8_t out[HASH_BYTES])
{
    SHA256_CTX c = h->inner;
    uint8_t ih[HASH_BYTES];
    SHA256_Update(&c, msg, len);
    SHA256_Final(ih, &c);
    c = h->outer;
    SHA256_Update(&c, ih, sizeof ih);
    SHA256_Final(out, &c);
    OPENSSL_cleanse(&c, sizeof c);
}

void hash_hmac_wipe(struct hash_hmac *h)
{
    OPENSSL_cleanse(h, sizeof *h);
}
