/* The on-log entry format: a plain header, then the payload sealed with
 * AES-256-GCM under the service data key; the header and the cluster id are
 * the AAD.
 *
 * Used for raft COMMAND entries (the payload is the state machine command)
 * and for raft snapshots (the payload is the state machine's snapshot), so raft
 * log segments and snapshot files never hold keys or values in the clear.
 * Every entry is bound to its place: its raft index, the term it was proposed
 * in, the cluster, and a chain value over the command entry before it, so the
 * host cannot duplicate, move, reorder, drop or splice entries without the
 * reader noticing. docs/entry-format.md is the byte-level description; every
 * field is big endian.
 *
 *   off size field
 *     0    1 format version (ENTRY_FORMAT_VERSION)
 *     1    1 kind (ENTRY_KIND_*)
 *     2    1 reserved, zero
 *     3    1 pad: number of zero bytes after the sealed payload (0..7)
 *     4    4 key id: the data key epoch it is sealed under (crypto/keyring.h)
 *     8    8 term      command: raft term it was proposed in
 *                      snapshot: term of the last entry it covers
 *    16    8 index     command: its raft index; snapshot: last index it covers
 *    24    8 stamp     command: proposed_ms, leader wall clock (unix ms)
 *                      snapshot: zero
 *    32   32 chain     command: chain value of the command entry before it
 *                      snapshot: chain value after the last entry it covers
 *    64  ... sealed payload: nonce[12] | ciphertext | tag[16]  (crypto/aead.h)
 *   end  pad zero bytes, so that the entry length is a multiple of 8
 *
 * Chain: c_0 = 32 zero bytes; after a command entry E,
 *   c = SHA-256("lskv-raft-chain-v1" || c_prev || header(E) || tag(E))
 * (entry_chain_next). The tag authenticates the ciphertext and the AAD, so
 * the chain commits to every byte of every command before it.
 *
 * Why the padding: raft_uv 0.15 writes each entry's bytes as they are but its
 * loader steps over them rounded up to 8 bytes, so an entry whose length is
 * not a multiple of 8 corrupts the next batch of its segment.
 */
#ifndef LSKV_CONSENSUS_ENTRY_H
#define LSKV_CONSENSUS_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/aead.h"

#define ENTRY_FORMAT_VERSION 2
#define ENTRY_HEADER_BYTES 64
#define ENTRY_CHAIN_BYTES 32
/* Bytes an entry adds to its payload, before padding. */
#define ENTRY_OVERHEAD (ENTRY_HEADER_BYTES + AEAD_OVERHEAD)

enum entry_kind {
    ENTRY_KIND_COMMAND = 1,  /* a raft COMMAND entry */
    ENTRY_KIND_SNAPSHOT = 2, /* a raft snapshot */
};

struct entry_header {
    uint8_t kind;    /* ENTRY_KIND_* */
    uint32_t key_id; /* data key epoch (crypto/keyring.h); the sealer picks it */
    uint64_t term;   /* command: term proposed in; snapshot: term of its last entry */
    uint64_t index;  /* command: raft index; snapshot: last covered index */
    uint64_t stamp;  /* command: proposed_ms; snapshot: 0 */
    uint8_t chain[ENTRY_CHAIN_BYTES]; /* see above */
};

/* Length of the sealed entry for a payload of plain_len bytes (padding
 * included: a multiple of 8), or 0 when it would overflow. */
size_t entry_sealed_len(size_t plain_len);

/* Writes header + sealed payload into out (entry_sealed_len(plain_len) bytes),
 * with a fresh random nonce; cluster_id is authenticated, not stored. key
 * must be the key of header->key_id. plain is borrowed. Errors: LSKV_EINVAL (unknown kind, length overflow), LSKV_EIO
 * (OpenSSL). */
int entry_seal(const uint8_t key[AEAD_KEY_BYTES], uint64_t cluster_id,
               const struct entry_header *header, const uint8_t *plain, size_t plain_len,
               uint8_t *out);

/* As entry_seal and entry_open, with a keyed context (crypto/aead.h): the
 * cipher and key schedule are set up once, not per entry. Same bytes, same
 * errors: an entry sealed by one flavour opens with the other. */
int entry_seal_k(aead_key *key, uint64_t cluster_id, const struct entry_header *header,
                 const uint8_t *plain, size_t plain_len, uint8_t *out);
int entry_open_k(aead_key *key, uint64_t cluster_id, uint8_t kind, const uint8_t *buf,
                 size_t len, struct entry_header *header, uint8_t *out);

/* Parses the plain header of buf and checks the framing (nothing is
 * authenticated yet). On success *plain_len is the payload's length.
 * Errors: LSKV_ECORRUPT (short, bad kind, non-zero reserved or padding
 *                        bytes, length not matching the padding),
 *         LSKV_EFORMAT (format version this build does not know). */
int entry_parse(const uint8_t *buf, size_t len, struct entry_header *header,
                size_t *plain_len);

/* Parses and authenticates buf, expecting kind, and decrypts the payload into
 * out, which must hold the *plain_len entry_parse reports. The caller wipes
 * out when done (it holds keys and values). On failure out is wiped.
 * Errors: LSKV_ECORRUPT (as entry_parse, wrong kind, authentication failed:
 *                        changed bytes, another data key or cluster id),
 *         LSKV_EFORMAT, LSKV_EIO (OpenSSL). */
int entry_open(const uint8_t key[AEAD_KEY_BYTES], uint64_t cluster_id, uint8_t kind,
               const uint8_t *buf, size_t len, struct entry_header *header, uint8_t *out);

/* Where the next command entry must fit: the chain value and the term of
 * the command entry before it (zero chain, term 0 before the first). */
struct entry_place {
    uint8_t chain[ENTRY_CHAIN_BYTES];
    uint64_t term;
};

/* NULL when the parsed command entry h may stand at raft index `index`
 * after place; else why not (a sentence for messages). */
const char *entry_misplaced(const struct entry_header *h, uint64_t index,
                            const struct entry_place *place);
/* Moves place past the sealed command entry buf (len bytes, header h). */
void entry_place_advance(struct entry_place *place, const struct entry_header *h,
                         const uint8_t *buf, size_t len);

/* The chain value after the sealed command entry buf (len bytes, parsed
 * already) given the chain value before it: see the header comment. */
void entry_chain_next(const uint8_t prev[ENTRY_CHAIN_BYTES], const uint8_t *buf, size_t len,
                      uint8_t out[ENTRY_CHAIN_BYTES]);

#endif
