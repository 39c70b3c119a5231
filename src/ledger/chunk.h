/* Ledger chunk files: names, chunk header and entry frames (the byte formats
 * of docs/ledger-format.md; all integers big endian). Pure encoders and
 * decoders plus whole-file reading; no policy. Decoders take untrusted bytes:
 * every failure is an error code with a message, never a crash.
 *
 * Chunk header (FORMAT_VERSION 1):
 *   magic[8] "LSKVLDGR" | u32 version | u64 first_leaf | u32 n_peaks |
 *   peaks[n_peaks][32] | u32 crc32c(all preceding header bytes)
 *   n_peaks = popcount(first_leaf): the Merkle peaks of leaves [0, first_leaf).
 *
 * Entry frame (ENTRY_VERSION 1):
 *   u32 frame_len (bytes after this field) | body | u32 crc32c(body)
 *   body = u8 version | u8 type | u16 flags (0) | u64 term | u64 index |
 *          i64 revision | claims_digest[32] | commit_evidence_digest[32] |
 *          u32 public_len | public[public_len] |
 *          u32 private_len | private[private_len]
 *   private is empty or AES-256-GCM sealed (nonce[12] | ct | tag[16]) with
 *   AAD = body up to and including private_len.
 *   write_set_digest = SHA-256(body); leaf = merkle_leaf_hash_ced(
 *   write_set_digest, commit_evidence_digest, claims_digest).
 *
 * Private plaintext (PRIVATE_VERSION 2):
 *   u8 version | u32 write_set_len | write_set
 *   (version 1 also held the claims; only their digest is kept now: the
 *   client holds its own request and response.) */
#ifndef LSKV_LEDGER_CHUNK_H
#define LSKV_LEDGER_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger/merkle.h"

#define CHUNK_MAGIC "LSKVLDGR"
#define CHUNK_FORMAT_VERSION 1
#define CHUNK_ENTRY_VERSION 1
#define CHUNK_PRIVATE_VERSION 2
#define CHUNK_MAX_FRAME_BYTES (64u * 1024 * 1024) /* larger frame_len is corrupt */
#define CHUNK_ENTRY_FIXED_BYTES 100 /* body bytes besides public and private */
#define CHUNK_NAME_MAX 64

/* Entry types (public, u8). Unknown types are corrupt. */
enum chunk_entry_type {
    CHUNK_ENTRY_KV = 1,        /* Put / DeleteRange / Txn: claims, receipts */
    CHUNK_ENTRY_COMPACT = 2,
    CHUNK_ENTRY_LEASE = 3,     /* grant / revoke / expiry */
    CHUNK_ENTRY_MEMBER = 4,    /* membership change */
    CHUNK_ENTRY_SIGNATURE = 5, /* public part = signature payload (sig.h) */
    CHUNK_ENTRY_OTHER = 6,
};
const char *chunk_entry_type_name(unsigned type);

struct chunk_header {
    uint64_t first_leaf;                                 /* leaf index of the first entry */
    size_t n_peaks;                                      /* popcount(first_leaf) */
    uint8_t peaks[MERKLE_MAX_DEPTH][MERKLE_HASH_BYTES];  /* largest subtree first */
};

/* Bytes of an encoded header with n_peaks peaks. */
size_t chunk_header_size(size_t n_peaks);
/* Encodes h into out (chunk_header_size(h->n_peaks) bytes). */
void chunk_header_encode(const struct chunk_header *h, uint8_t *out);
/* Decodes a header at the start of buf; *consumed = its size.
 * Errors: LSKV_ECORRUPT (short, bad magic, checksum, n_peaks),
 * LSKV_EFORMAT (unknown version). */
int chunk_header_decode(const uint8_t *buf, size_t len, struct chunk_header *h,
                        size_t *consumed, char *errmsg);

/* A decoded entry. Pointers borrow the decoded buffer. */
struct chunk_entry {
    uint8_t type;                                   /* enum chunk_entry_type */
    uint64_t term, index;                           /* txid (raft term.index) */
    int64_t revision;                               /* store revision after the entry */
    uint8_t claims_digest[MERKLE_HASH_BYTES];       /* zeros when no claims */
    uint8_t commit_evidence_digest[MERKLE_HASH_BYTES];
    const uint8_t *public_part;                     /* plain, type-specific */
    uint32_t public_len;
    const uint8_t *sealed;                          /* private part, sealed; may be empty */
    uint32_t sealed_len;
    const uint8_t *body;                            /* covered by write_set_digest */
    size_t body_len;
    size_t aad_len;                                 /* body prefix used as AAD */
    size_t frame_len;                               /* total bytes of the frame */
};

/* Total frame bytes for the given part sizes. */
size_t chunk_entry_size(uint32_t public_len, uint32_t sealed_len);
/* Writes e's frame into out (chunk_entry_size bytes) except the sealed bytes
 * when e->sealed is NULL (e->sealed_len are reserved at out + *sealed_off) and
 * except the checksum: call chunk_entry_finish after filling them.
 * aad_off and aad_len locate the AAD inside out. */
void chunk_entry_begin(const struct chunk_entry *e, uint8_t *out, size_t *aad_off,
                       size_t *aad_len, size_t *sealed_off);
/* Writes the checksum of a frame of frame_len bytes laid out by begin. */
void chunk_entry_finish(uint8_t *out, size_t frame_len);

/* Decodes one frame at the start of buf. On LSKV_ECORRUPT, *truncated tells
 * whether buf simply ends inside the frame (a torn tail) rather than holding
 * bad bytes. Errors: LSKV_ECORRUPT, LSKV_EFORMAT (unknown entry version). */
int chunk_entry_decode(const uint8_t *buf, size_t len, struct chunk_entry *e,
                       bool *truncated, char *errmsg);
/* write_set_digest = SHA-256(body) and the Merkle leaf of e. */
void chunk_entry_wsd(const struct chunk_entry *e, uint8_t out[MERKLE_HASH_BYTES]);
void chunk_entry_leaf(const struct chunk_entry *e, uint8_t out[MERKLE_HASH_BYTES]);

/* Private plaintext. encode writes chunk_private_size bytes. */
size_t chunk_private_size(size_t write_set_len);
void chunk_private_encode(const uint8_t *ws, size_t ws_len, uint8_t *out);
/* Errors: LSKV_ECORRUPT, LSKV_EFORMAT (other versions). *ws borrows plain. */
int chunk_private_decode(const uint8_t *plain, size_t len, const uint8_t **ws,
                         size_t *ws_len, char *errmsg);

/* Chunk file names: "ledger_<first>" (open) and
 * "ledger_<first>-<last>.committed" (sealed), decimal leaf indexes.
 * parse returns false for any other name. */
bool chunk_name_parse(const char *name, uint64_t *first, uint64_t *last, bool *committed);
void chunk_name_format(char out[CHUNK_NAME_MAX], uint64_t first, uint64_t last,
                       bool committed);

/* CRC-32C (Castagnoli) of buf, as stored in frames and headers. */
uint32_t chunk_crc32c(const uint8_t *buf, size_t len);

#endif
