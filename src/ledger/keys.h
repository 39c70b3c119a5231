/* The ledger secret's derived keys, the private parts' nonces and commit
 * evidence (docs/ledger-format.md sections 3.1 and 3.2), shared by the
 * ledger, its verifier and lskvctl. The public one-shot forms are declared
 * in ledger.h (ledger_private_key, ledger_commit_evidence, ledger_nonce);
 * these are the keyed forms for the per-entry path. */
#ifndef LSKV_LEDGER_KEYS_H
#define LSKV_LEDGER_KEYS_H

#include <stdint.h>

#include "crypto/hash.h"
#include "ledger/ledger.h"

/* K_ce = HMAC-SHA256(secret, "lskv-ledger-commit-evidence-v1"), as an HMAC
 * key. Wipe with hash_hmac_wipe. */
void keys_ce_init(struct hash_hmac *k, const uint8_t secret[LEDGER_SECRET_BYTES]);
/* The commit evidence string of txid under K_ce. */
void keys_ce_format(const struct hash_hmac *k, uint64_t term, uint64_t index,
                    char out[LEDGER_CE_MAX]);
/* SHA-256 of that string: what an entry stores. */
void keys_ce_digest(const struct hash_hmac *k, uint64_t term, uint64_t index,
                    uint8_t out[HASH_BYTES]);

#endif
