/* Data key epochs: the AES-256-GCM keys that seal raft entries, snapshots
 * and records are derived from the master data key, one per (purpose,
 * epoch), so that no key seals more random-nonce messages than its budget.
 *
 *   K(purpose, e) = HMAC-SHA256(master, "lskv-data-key-v1" || purpose || 0x00 || u32be e)
 *
 * A sealer picks e = position / epoch_size, where position only grows and
 * is sealed a bounded number of times (a raft index: once per leader term
 * that proposes there; a main revision: once per apply or replay), and
 * writes e into the sealed header as the key id. An opener derives the key
 * from the key id it reads (authenticated with the rest of the header), so
 * the epoch size is each sealer's own policy and old epochs never need to be
 * stored: every key of every epoch is re-derived from the master on demand.
 * The master key itself never seals anything.
 *
 * The keyring counts the seals it makes per epoch (keyring_seals) and
 * refuses a seal past KEYRING_SEAL_BUDGET under one key (2^32 random 96-bit
 * nonces is NIST's bound; we stop far below it). Not thread-safe. */
#ifndef LSKV_CRYPTO_KEYRING_H
#define LSKV_CRYPTO_KEYRING_H

#include <stdint.h>

#include "crypto/aead.h"

#define KEYRING_DEFAULT_EPOCH_SIZE (1ull << 24) /* raft indexes / revisions per key */
#define KEYRING_SEAL_BUDGET (1ull << 30)

typedef struct keyring keyring;

/* purpose: a short label ("raft", "records"), copied. epoch_size >= 1.
 * Errors: LSKV_EINVAL, LSKV_ENOMEM. */
int keyring_new(const uint8_t master[AEAD_KEY_BYTES], const char *purpose, uint64_t epoch_size,
                keyring **out);
/* Wipes every key. NULL is a no-op. */
void keyring_free(keyring *k);

/* The epoch a seal at position uses (saturates at UINT32_MAX). */
uint32_t keyring_epoch_of(const keyring *k, uint64_t position);

/* The key context of epoch (derived on first use; the last few are cached),
 * borrowed until the next keyring call. Errors: LSKV_ENOMEM, LSKV_EIO. */
int keyring_key(keyring *k, uint32_t epoch, aead_key **out);

/* Counts one seal under epoch's key, before it is made.
 * Errors: LSKV_EIO (that key's budget is spent: the caller must not seal). */
int keyring_count_seal(keyring *k, uint32_t epoch);
/* Seals counted under epoch since the keyring was made. */
uint64_t keyring_seals(const keyring *k, uint32_t epoch);
/* Highest epoch sealed under so far, and how many epochs were used. */
uint32_t keyring_last_epoch(const keyring *k);
uint32_t keyring_epochs_used(const keyring *k);

/* The derived key itself (tests, offline tools). Errors: LSKV_EIO. */
int keyring_derive(const uint8_t master[AEAD_KEY_BYTES], const char *purpose, uint32_t epoch,
                   uint8_t out[AEAD_KEY_BYTES]);

#endif
