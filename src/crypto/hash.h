/* SHA-256 and HMAC-SHA256 for per-entry hot paths (ledger hashes, key
 * derivation, commit evidence).
 *
 * OpenSSL 3's one-shot SHA256() and HMAC() fetch the algorithm from the
 * provider on every call (a lock and a hash lookup: more than the hash of a
 * 64-byte node). These use the low-level SHA-256 (same assembly, SHA-NI when
 * the CPU has it) and, for HMAC, the inner and outer states of a key
 * precomputed once: two compressions per short message instead of four plus
 * a fetch. Pure functions; no errors. */
#ifndef LSKV_CRYPTO_HASH_H
#define LSKV_CRYPTO_HASH_H

#include <openssl/sha.h>
#include <stddef.h>
#include <stdint.h>

#define HASH_BYTES 32

/* SHA-256 of buf. */
void hash_sha256(const void *buf, size_t len, uint8_t out[HASH_BYTES]);

/* SHA-256 over a stream of pieces (a file too big to hold at once). */
struct hash_sha256_stream {
    SHA256_CTX c;
};
void hash_sha256_begin(struct hash_sha256_stream *h);
void hash_sha256_add(struct hash_sha256_stream *h, const void *buf, size_t len);
void hash_sha256_end(struct hash_sha256_stream *h, uint8_t out[HASH_BYTES]);

/* A keyed HMAC-SHA256 (inner and outer states after the padded key). Holds
 * key material: wipe with hash_hmac_wipe. */
struct hash_hmac {
    SHA256_CTX inner, outer;
};
void hash_hmac_init(struct hash_hmac *h, const uint8_t *key, size_t key_len);
void hash_hmac(const struct hash_hmac *h, const void *msg, size_t len, uint8_t out[HASH_BYTES]);
void hash_hmac_wipe(struct hash_hmac *h);

#endif
