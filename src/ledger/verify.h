/* Whole-ledger verification (docs/ledger-format.md section 7), one pass in
 * ledger order. ledger_open runs it over every chunk before anything is
 * served; `lskvctl ledger audit` runs the same checks offline.
 *
 * A verifier keeps its own Merkle tree (leaves from the last signed size on,
 * so memory stays bounded) and checks, for every chunk and entry fed to it:
 *  - the chunk header names the next leaf and holds the tree's peaks there;
 *  - txids strictly increase (terms and revisions never decrease);
 *  - signature entries: tree_size in [previous tree_size, own leaf index],
 *    root equal to the tree's, ECDSA verifies over the signed statement,
 *    certificate endorsed by the service certificate (sig.h);
 *  - with the ledger secret: commit evidence digest, nonce = txid, private
 *    part opens under its AAD and decodes (the claims digest is bound by
 *    the tree and signatures only: claims are not kept);
 *  - a sealed chunk holds the leaves its name says and ends with a signature.
 * Frames are decoded (CRC, lengths) by the caller (chunk.h) or by
 * verify_chunk. Not thread-safe; no I/O. */
#ifndef LSKV_LEDGER_VERIFY_H
#define LSKV_LEDGER_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity/cert.h"
#include "ledger/chunk.h"

typedef struct verifier verifier;

struct verify_config {
    const cert_service *service; /* NULL: certificates are not checked against it */
    const uint8_t *secret;       /* LEDGER_SECRET_BYTES, copied; NULL: private parts
                                    are not checked */
    /* Optional: called with MTH of every aligned block of 2^block_log2
     * leaves (block j covers [j << block_log2, (j + 1) << block_log2)) as
     * soon as its last entry is verified, in order. */
    void (*on_block)(void *arg, uint64_t block, const uint8_t hash[MERKLE_HASH_BYTES]);
    void *block_arg;
    unsigned block_log2;         /* 1..40 when on_block is set */
    /* Optional: called by verify_chunk with every entry it has verified,
     * its leaf index and its offset in the chunk (e borrows the buffer). */
    void (*on_entry)(void *arg, uint64_t leaf, size_t offset, const struct chunk_entry *e);
    void *entry_arg;
};

/* Where the ledger stands after the entries fed so far. */
struct verify_state {
    uint64_t size;               /* leaves */
    uint64_t signed_size;        /* covered by the last signature */
    uint64_t signatures;
    uint64_t last_term, last_index;
    int64_t last_rev;
    int64_t last_nonsig_leaf;    /* -1 if none */
};

/* Errors: LSKV_ENOMEM, LSKV_EIO. */
int verify_open(const struct verify_config *c, verifier **out);
/* Wipes the keys. NULL is a no-op. */
void verify_close(verifier *v);

/* A chunk named to start at name_first begins with header h.
 * Errors: LSKV_ECORRUPT. */
int verify_chunk_begin(verifier *v, uint64_t name_first, const struct chunk_header *h,
                       char *errmsg);
/* Checks the next entry and adds its leaf.
 * Errors: LSKV_ECORRUPT, LSKV_EFORMAT (signature payload version),
 * LSKV_ENOMEM. */
int verify_entry(verifier *v, const struct chunk_entry *e, char *errmsg);
/* A sealed chunk named to end at name_last ends here. Errors: LSKV_ECORRUPT. */
int verify_chunk_end(verifier *v, uint64_t name_last, char *errmsg);

/* Verifies a whole chunk file's bytes: begin, every frame, and (sealed) end.
 * torn_ok: a last frame cut short, or whose checksum fails and that ends
 * buf, is a torn tail: *valid_len is where it starts (else len).
 * *first_rev gets the first entry's revision (INT64_MAX if none); *offset
 * the offset of the failing part (0 for the header) and, with a txid,
 * *have_txid, *term, *index. Errors: as the functions above. */
struct verify_chunk_result {
    size_t valid_len;
    int64_t first_rev;
    size_t offset;
    bool have_txid;
    uint64_t term, index;
};
int verify_chunk(verifier *v, const uint8_t *buf, size_t len, uint64_t first, uint64_t last,
                 bool sealed, bool torn_ok, struct verify_chunk_result *r, char *errmsg);

/* An anchor (anchor.h: a signed root saved earlier, already verified):
 * once the ledger reaches `size` leaves its root there must be `root`
 * (else the entry that makes the size fails: a forked ledger), and
 * verify_anchor_reached must find that it got there (else: rolled back). */
void verify_set_anchor(verifier *v, uint64_t size, const uint8_t root[MERKLE_HASH_BYTES]);
/* Errors: LSKV_ECORRUPT (the ledger ends before the anchor's size). */
int verify_anchor_reached(const verifier *v, char *errmsg);

void verify_get_state(const verifier *v, struct verify_state *out);
/* The payload of the last signature entry verified (NULL, 0 if none);
 * valid until the next call that feeds v. */
void verify_last_signature(const verifier *v, const uint8_t **payload, size_t *len);
/* Peaks of the tree at its current size (room for MERKLE_MAX_DEPTH);
 * *n = their number. */
void verify_peaks(const verifier *v, uint8_t (*out)[MERKLE_HASH_BYTES], size_t *n);

/* Checks a list of chunk names sorted by first leaf: contiguous from leaf 0
 * and no sealed chunk after an open one; several open-named chunks are a
 * crash between a rotation and a sync, allowed only when unsynced_ok.
 * *bad = the index of the first offending name.
 * Errors: LSKV_ECORRUPT (errmsg says "missing or overlapping chunk" or why). */
struct verify_name {
    uint64_t first, last;
    bool sealed;
};
int verify_names(const struct verify_name *names, size_t n, bool unsynced_ok, size_t *bad,
                 char *errmsg);

#endif
