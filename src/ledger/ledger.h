/* The ledger: every applied raft entry, in order, in chunk files under one
 * directory, with a Merkle tree over them, signature entries and receipts
 * (DESIGN.md section 4; byte formats in docs/ledger-format.md).
 *
 * Call it from the deterministic apply path: ledger_append for every applied
 * entry, ledger_apply_signature for signature entries. The leader asks
 * ledger_signature_due / ledger_make_signature and proposes the payload as a
 * raft entry. Receipts and tx status are served from memory for the open
 * chunk and re-derived otherwise from the few blocks of entries an
 * in-memory offset index points to (never a whole chunk file).
 *
 * Not thread-safe: one thread (the loop that applies) owns a ledger. (A
 * ledger starts one internal thread at its first rotation that only
 * fdatasyncs rotated chunk files; ledger_close joins it.)
 *
 * Failures that may leave the files and memory out of step (a failed write,
 * fsync or rename) are sticky: every later call fails with the same code
 * until the ledger is reopened. */
#ifndef LSKV_LEDGER_LEDGER_H
#define LSKV_LEDGER_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "identity/cert.h"
#include "proto/lskvserver.pb-c.h"

#define LEDGER_SECRET_BYTES 32
#define LEDGER_DEFAULT_CHUNK_BYTES (5u * 1024 * 1024)
#define LEDGER_DEFAULT_SIG_TX_INTERVAL 5000
#define LEDGER_DEFAULT_SIG_MS_INTERVAL 100
#define LEDGER_CE_MAX 128 /* commit evidence string incl. NUL */
/* Largest write set ledger_append takes (a frame is at most 64 MiB); the
 * state machine must refuse a request whose write set would be bigger. */
#define LEDGER_MAX_WRITE_SET_BYTES (32u * 1024 * 1024 - 64)

typedef struct ledger ledger;

/* Public entry types (u8 on disk; same values as chunk.h). */
enum ledger_entry_type {
    LEDGER_ENTRY_KV = 1,        /* Put / DeleteRange / Txn: has claims, gets receipts */
    LEDGER_ENTRY_COMPACT = 2,
    LEDGER_ENTRY_LEASE = 3,
    LEDGER_ENTRY_MEMBER = 4,
    LEDGER_ENTRY_SIGNATURE = 5, /* only through ledger_apply_signature */
    LEDGER_ENTRY_OTHER = 6,
};

struct ledger_config {
    const char *dir;                 /* e.g. <data-dir>/ledger; created if missing */
    const uint8_t *secret;           /* LEDGER_SECRET_BYTES, copied; wiped on close */
    const cert_service *service;     /* borrowed until close; may be NULL: then
                                        signature certs are not checked for endorsement */
    uint64_t chunk_bytes;            /* rotate after a signature once the chunk is this big;
                                        0 = LEDGER_DEFAULT_CHUNK_BYTES */
    uint64_t sig_tx_interval;        /* entries; 0 = default 5000 */
    uint64_t sig_ms_interval;        /* ms; 0 = default 100 */
    bool fsync_each;                 /* fdatasync after every append (else see ledger_sync) */
    /* A missing open chunk (the last one sealed) is not created by
     * ledger_open but by ledger_begin_writes, so that a start that the
     * checks after ledger_open refuse has changed no file. */
    bool defer_open_chunk;
    /* Called about once a second while ledger_open verifies the sealed
     * chunks, and once at their end (may be NULL): bytes verified of the
     * ledger's total, entries so far. */
    void (*progress)(void *arg, uint64_t done_bytes, uint64_t total_bytes, uint64_t entries);
    void *progress_arg;
};

struct ledger_entry {
    uint64_t term;                   /* raft term of the entry (< 2^32) */
    uint64_t index;                  /* raft index; strictly increasing */
    int64_t revision;                /* store revision after applying the entry */
    unsigned type;                   /* enum ledger_entry_type, not SIGNATURE */
    const uint8_t *write_set;        /* private bytes (sealed at rest), borrowed; may be NULL */
    size_t write_set_len;            /* at most LEDGER_MAX_WRITE_SET_BYTES */
    const uint8_t *claims;           /* receipt_claims_pack() output, borrowed; NULL = none:
                                        claims digest is then 32 zero bytes. Only hashed:
                                        the bytes are not stored, so any size is fine */
    size_t claims_len;
};

struct ledger_position {
    uint64_t size;                   /* number of entries (leaves) */
    uint64_t term, index;            /* txid of the last entry (0.0 when empty) */
    int64_t revision;                /* revision of the last entry (0 when empty) */
    uint64_t signed_size;            /* leaves covered by the last signature */
};

enum ledger_tx_status {
    LEDGER_TX_UNKNOWN = 0,           /* values as lskvserverpb TxStatusResponse.Status */
    LEDGER_TX_PENDING = 1,           /* never returned by the ledger: the server knows */
    LEDGER_TX_COMMITTED = 2,
    LEDGER_TX_INVALID = 3,
};

/* Opens (creating if needed) the ledger in config->dir and verifies all of
 * it before returning (verify.h: chunk names, headers, every frame, txid
 * order, every signature and, with the secret, every private part),
 * truncating only a torn tail (an incomplete or checksum-failing last frame)
 * of the open-named chunks (invariant 7).
 * Errors: negated errno, LSKV_ECORRUPT (anything else wrong; errmsg starts
 * with the file's path, then "offset N, txid T.I: " and the reason),
 * LSKV_EFORMAT, LSKV_ENOMEM, LSKV_EINVAL. */
int ledger_open(const struct ledger_config *config, ledger **out, char *errmsg);
/* Creates the open chunk that ledger_open deferred (defer_open_chunk), if
 * any; appends before it fail. Errors: negated errno (errmsg names the
 * file), LSKV_ENOMEM. */
int ledger_begin_writes(ledger *l, char *errmsg);
/* Syncs and closes; wipes the secret. NULL is a no-op. */
void ledger_close(ledger *l);

/* Appends one applied entry (copied into the chunk; nothing is retained).
 * Errors (each with its own errmsg; nothing written): LSKV_EINVAL (index
 * not above the last, term >= 2^32, term or revision below the last, type
 * SIGNATURE or unknown, NULL bytes with a length), LSKV_ETOOLARGE (write set
 * above LEDGER_MAX_WRITE_SET_BYTES); negated errno / LSKV_EIO (write failed:
 * sticky), LSKV_ENOMEM. */
int ledger_append(ledger *l, const struct ledger_entry *e, char *errmsg);

/* Replay after a restart: raft re-applies entries after its snapshot and
 * the ledger may already hold some of them. True when raft index `index` is
 * at or below the ledger's last entry: then call ledger_check (or
 * ledger_check_signature) instead of appending. */
bool ledger_has_index(const ledger *l, uint64_t index);
/* Checks that e, sealed as ledger_append would seal it, is byte for byte the
 * entry the ledger holds at raft index e->index (compares write set
 * digests). Writes nothing.
 * Errors: LSKV_ECORRUPT (differs, or no entry has that index), LSKV_EINVAL,
 * negated errno (reading chunk files), LSKV_ENOMEM. */
int ledger_check(ledger *l, const struct ledger_entry *e, char *errmsg);
/* As ledger_check for a signature entry; an absent one is fine (a stale
 * signature is dropped, not appended). */
int ledger_check_signature(ledger *l, uint64_t term, uint64_t index, int64_t revision,
                           const uint8_t *payload, size_t len, char *errmsg);

/* Where the ledger is. */
void ledger_position(const ledger *l, struct ledger_position *out);

/* Merkle root over the first size entries (from memory for the open chunk,
 * else from chunk files). Errors: LSKV_ENOTFOUND (size is 0 or beyond the
 * ledger), LSKV_ECORRUPT, negated errno, LSKV_ENOMEM. */
int ledger_root_at(ledger *l, uint64_t size, uint8_t out[32], char *errmsg);

/* True when entries exist that no signature covers and either
 * sig_tx_interval of them have accumulated or sig_ms_interval has passed
 * since the last ledger_make_signature (now_ms: caller's monotonic clock). */
bool ledger_signature_due(const ledger *l, uint64_t now_ms);

/* Leader: signs the statement (sig.h: tree size, root, service digest)
 * over every entry applied so far with node's key
 * and returns the payload to propose as a raft entry (malloc'ed; caller
 * frees). Records now_ms for ledger_signature_due.
 * Errors: LSKV_EINVAL (empty ledger, or no service in the config), LSKV_EIO, LSKV_ENOMEM, sticky error. */
int ledger_make_signature(ledger *l, const cert_node *node, uint64_t now_ms,
                          uint8_t **payload, size_t *len);

/* Applies a signature entry (payload borrowed): checks the signature, the
 * certificate's endorsement (when config->service is set) and that the root
 * matches this node's tree at the covered size, then appends it. A payload
 * covering fewer leaves than the last applied signature is stale (two in
 * flight across a leader change): checked, then dropped (*appended false).
 * appended may be NULL.
 * Errors: LSKV_ECORRUPT (bad payload or signature, root mismatch: a fatal
 * divergence), LSKV_EINVAL (index not above the last), as ledger_append. */
int ledger_apply_signature(ledger *l, uint64_t term, uint64_t index, int64_t revision,
                           const uint8_t *payload, size_t len, bool *appended,
                           char *errmsg);

/* Receipt for the KV entry that made `revision` (the first KV entry with
 * that revision); raft_term 0 matches any term. *out lives in arena a.
 * Errors: LSKV_ENOTFOUND (no such entry, or its term differs),
 * LSKV_ENOTREADY (no signature covers it yet: retry), LSKV_ECORRUPT
 * (chunk files disagree with the tree), negated errno, LSKV_ENOMEM. */
int ledger_receipt(ledger *l, int64_t revision, uint64_t raft_term, struct arena *a,
                   Lskvserverpb__Receipt **out, char *errmsg);
/* As ledger_receipt for the entry at `revision` whose claims digest is
 * claims_digest (32 bytes; any entry type), NULL: as ledger_receipt. */
int ledger_receipt_claimed(ledger *l, int64_t revision, uint64_t raft_term,
                           const uint8_t *claims_digest, struct arena *a,
                           Lskvserverpb__Receipt **out, char *errmsg);
/* As ledger_receipt for a leaf index (any entry type). */
int ledger_receipt_at(ledger *l, uint64_t leaf, struct arena *a, Lskvserverpb__Receipt **out,
                      char *errmsg);

/* The signed roots at two signed tree sizes and the RFC 9162 consistency
 * proof that the first tree is a prefix of the second (docs/ledger-format.md
 * section 8). to_size 0: the last signature's size; from_size 0: no proof,
 * just the signed root at to_size (an anchor to save). Reads the chunk
 * files from from_size on. *out (header unset) lives in arena a.
 * Errors: LSKV_EINVAL (from_size above to_size), LSKV_ENOTREADY (nothing
 * signed yet), LSKV_ENOTFOUND (no signature covers exactly that many
 * leaves), LSKV_ECORRUPT, negated errno, LSKV_ENOMEM. */
int ledger_consistency(ledger *l, uint64_t from_size, uint64_t to_size, struct arena *a,
                       Lskvserverpb__GetConsistencyProofResponse **out, char *errmsg);

/* Status of (revision, raft_term) as far as the ledger knows: COMMITTED if
 * the KV entry that made revision has that term (0 matches any), INVALID if
 * it has another, UNKNOWN if no KV entry made it (yet).
 * Errors: negated errno, LSKV_ECORRUPT, LSKV_ENOMEM. */
int ledger_tx_status(ledger *l, int64_t revision, uint64_t raft_term,
                     enum ledger_tx_status *out, char *errmsg);

/* Catching up a member (ledger_copy.c). ledger_read_frames copies the
 * frames of leaves [from, to) as they are on disk into *out (malloc'ed,
 * frames back to back; each starts with its u32 length), stopping before
 * max_bytes unless a single frame is bigger; *n = the frames copied (0 when
 * from is at or past the end). Errors: negated errno, LSKV_ECORRUPT,
 * LSKV_ENOMEM.
 * ledger_append_copy appends one such frame taken from another member
 * after checking it is exactly the frame this ledger would write for that
 * entry (private part opens with the secret and seals again to the same
 * bytes; a signature verifies over this ledger's leaves as in
 * ledger_apply_signature). The caller checks the root the copied leaves
 * reach (ledger_root_at) against what it trusts (a snapshot's position).
 * Errors: LSKV_ECORRUPT (errmsg says why), LSKV_EFORMAT, LSKV_EINVAL (out
 * of order), the errors of appending. */
int ledger_read_frames(ledger *l, uint64_t from, uint64_t to, size_t max_bytes, uint8_t **out,
                       size_t *out_len, uint64_t *n, char *errmsg);
int ledger_append_copy(ledger *l, const uint8_t *frame, size_t len, char *errmsg);

/* Writes the frames appended since the last flush to the open chunk
 * (ledger_append buffers them in memory; receipts and status already see
 * them). Call once per loop turn after applying entries; ledger_sync,
 * rotation, close and any read of the chunk files flush first. The raft log,
 * not the ledger, is the source of truth: frames lost in a crash are
 * appended again when raft re-applies their entries.
 * Errors: negated errno (sticky). */
int ledger_flush(ledger *l);

/* Makes every entry appended so far durable: flushes, then for each chunk
 * rotated since the last sync waits for its fdatasync (started at rotation
 * on the ledger's syncer thread) and renames it to .committed, fdatasyncs
 * the open chunk, and fsyncs the directory once if names changed (rotation
 * itself does no fsync on the caller's thread; ledger.c invariant 7,
 * docs/ledger-format.md). Call before a raft snapshot that covers the
 * entries. Errors: negated errno (sticky). */
int ledger_sync(ledger *l);

/* Commit evidence of a txid: "ce:<term>.<index>:<64 hex>" where the hex is
 * HMAC-SHA256(K_ce, "lskv-ce-v1" || u64be term || u64be index) and
 * K_ce = HMAC-SHA256(secret, "lskv-ledger-commit-evidence-v1"). */
void ledger_commit_evidence(const uint8_t secret[LEDGER_SECRET_BYTES], uint64_t term,
                            uint64_t index, char out[LEDGER_CE_MAX]);
/* The AES-256-GCM key that seals private parts:
 * HMAC-SHA256(secret, "lskv-ledger-private-v1"). */
void ledger_private_key(const uint8_t secret[LEDGER_SECRET_BYTES], uint8_t out[32]);
/* The 12-byte nonce of txid: u64be index || u32be term. */
void ledger_nonce(uint64_t term, uint64_t index, uint8_t out[12]);

#endif
