/* Anchors: signed roots a client or auditor saved (docs/ledger-format.md
 * section 8). A later ledger, signed root or receipt that does not extend an
 * anchor shows a rolled-back or forked node, which a single node's own
 * checks cannot see.
 *
 * An anchor is an lskvserverpb.SignedRoot; its JSON is the grpc-gateway's
 * (snake_case names, tree_size as a string, signature base64):
 *   {"tree_size": "N", "root": hex, "signature": b64, "cert": PEM,
 *    "node_id": hex, "service_cert_digest": hex} */
#ifndef LSKV_LEDGER_ANCHOR_H
#define LSKV_LEDGER_ANCHOR_H

#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "identity/cert.h"
#include "ledger/merkle.h"
#include "ledger/sig.h"
#include "proto/lskvserver.pb-c.h"

/* The SignedRoot of a signature payload (borrowed), in arena a.
 * Errors: LSKV_ENOMEM, LSKV_EINVAL (bad cert). */
int anchor_from_sig(const struct sig_payload *p, struct arena *a,
                    Lskvserverpb__SignedRoot **out);

/* Checks a signed root: hex fields, its statement's signature with its
 * cert, node_id, and (service not NULL) the service digest and the cert's
 * endorsement. root_out (may be NULL) gets the root.
 * Errors: LSKV_EINVAL (malformed), LSKV_ECORRUPT (a check failed). */
int anchor_verify(const Lskvserverpb__SignedRoot *s, const cert_service *service,
                  uint8_t root_out[MERKLE_HASH_BYTES], char *errmsg);

/* Checks the consistency proof a receipt carries (anchor_size, anchor_proof)
 * between its tree (tree_size, receipt_root: as receipt_verify found it)
 * and the anchor's (verified by anchor_verify).
 * Errors: LSKV_EINVAL (no or malformed proof, or for another size),
 * LSKV_ECORRUPT (the trees are not one history). */
int anchor_check_receipt(const Lskvserverpb__Receipt *r, const uint8_t receipt_root[32],
                         const Lskvserverpb__SignedRoot *anchor,
                         const uint8_t anchor_root[32], char *errmsg);

/* Checks hex proof (n hashes) between (m, root_m) and (n_size, root_n).
 * Errors: LSKV_EINVAL (not hex, too long), LSKV_ECORRUPT (does not verify). */
int anchor_check_proof(uint64_t m, const uint8_t root_m[32], uint64_t n_size,
                       const uint8_t root_n[32], char *const *proof, size_t n, char *errmsg);

/* JSON of a SignedRoot; malloc'ed (caller frees), NULL on ENOMEM. */
char *anchor_to_json(const Lskvserverpb__SignedRoot *s);
/* Parses a SignedRoot object, or a GetConsistencyProofResponse object (its
 * "to"). *out lives in arena a. Errors: LSKV_EINVAL, LSKV_ENOMEM. */
int anchor_from_json(const char *json, size_t len, struct arena *a,
                     Lskvserverpb__SignedRoot **out, char *errmsg);

#endif
