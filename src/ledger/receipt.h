/* Receipts (DESIGN.md section 4, Appendix A): building lskvserverpb.Receipt
 * messages and verifying them. Verification is shared by lskvd's tests and
 * lskvctl; it follows docs/ledger-format.md section 6 step by step:
 *
 *  1. leaf = SHA-256(hex-decoded write_set_digest || SHA-256(commit_evidence
 *     bytes) || hex-decoded claims_digest)
 *  2. every proof element has exactly one of left / right, 64 hex digits
 *  3. the left/right pattern equals merkle_shape(leaf_index, tree_size)
 *  4. h = leaf; for each element h = SHA-256(left || h) or SHA-256(h || right)
 *  5. signature verifies over the signed statement of (tree_size, h,
 *     service_cert_digest) (sig.h) with the public key of cert (ECDSA P-384);
 *     node_id, when set, is the cert's node id
 *  6. service_cert_digest is the service certificate's and cert is endorsed
 *     by it
 *  7. (optional) claims_digest equals the digest of the client's own
 *     request and response. */
#ifndef LSKV_LEDGER_RECEIPT_H
#define LSKV_LEDGER_RECEIPT_H

#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "identity/cert.h"
#include "ledger/merkle.h"
#include "proto/lskvserver.pb-c.h"

/* Everything a receipt is made of. Pointers are borrowed for the call. */
struct receipt_parts {
    const char *cert_pem;                            /* node cert */
    size_t cert_len;
    const uint8_t *sig;                              /* DER signature over the statement */
    size_t sig_len;
    uint8_t service_digest[MERKLE_HASH_BYTES];       /* named by the statement */
    const char *node_id;                             /* hex, NUL-terminated */
    uint8_t write_set_digest[MERKLE_HASH_BYTES];
    const char *commit_evidence;                     /* NUL-terminated */
    uint8_t claims_digest[MERKLE_HASH_BYTES];
    const struct merkle_step *steps;                 /* leaf to root */
    size_t n_steps;
    uint64_t leaf_index;
    uint64_t tree_size;
};

/* Builds a Receipt (tx_receipt) in arena a; *out lives until arena_close.
 * Errors: LSKV_ENOMEM. */
int receipt_build(const struct receipt_parts *p, struct arena *a, Lskvserverpb__Receipt **out);

/* The writes a receipt can be for. */
enum receipt_kind {
    RECEIPT_PUT,
    RECEIPT_DELETE_RANGE,
    RECEIPT_TXN,
    RECEIPT_LEASE_GRANT,
    RECEIPT_LEASE_REVOKE
};

/* The kind named "put", "delete_range", "txn", "lease_grant" or
 * "lease_revoke". Errors: LSKV_EINVAL. */
int receipt_kind_from_name(const char *name, enum receipt_kind *out);
/* The request and response message types of kind (PutRequest, ...). */
const ProtobufCMessageDescriptor *receipt_request_type(enum receipt_kind k);
const ProtobufCMessageDescriptor *receipt_response_type(enum receipt_kind k);
/* Makes c claim request and response (borrowed; of kind's types). */
void receipt_claims_set(Lskvserverpb__ReceiptClaims *c, enum receipt_kind k,
                        const ProtobufCMessage *request, const ProtobufCMessage *response);

/* Serialises claims with the response header cleared (the caller's message
 * is not changed) into a malloc'ed buffer (caller frees); *len may be 0.
 * Errors: LSKV_ENOMEM, LSKV_EINVAL (no request or no response set). */
int receipt_claims_pack(const Lskvserverpb__ReceiptClaims *claims, uint8_t **buf, size_t *len);
/* claims digest = SHA-256(receipt_claims_pack(claims)). Errors: as pack. */
int receipt_claims_digest(const Lskvserverpb__ReceiptClaims *claims,
                          uint8_t out[MERKLE_HASH_BYTES]);

/* Verifies r (steps 1-6, step 6 only when service is not NULL; step 7 when
 * claims_digest is not NULL). root_out (may be NULL) gets the signed root.
 * With service, an absent service_cert_digest is taken to be service's.
 * Errors: LSKV_EINVAL (malformed receipt: missing parts, bad hex),
 * LSKV_ECORRUPT (a check failed; errmsg says which). */
int receipt_verify(const Lskvserverpb__Receipt *r, const cert_service *service,
                   const uint8_t *claims_digest, uint8_t root_out[MERKLE_HASH_BYTES],
                   char *errmsg);

/* JSON as the grpc-gateway writes it (original field names, bytes base64,
 * 64-bit integers as strings): the Receipt object. Returns a malloc'ed
 * NUL-terminated string (caller frees) or NULL on ENOMEM. */
char *receipt_to_json(const Lskvserverpb__Receipt *r);
/* Parses a Receipt object or a GetReceiptResponse object ({"receipt": ...});
 * accepts camelCase names too. *out lives in arena a.
 * Errors: LSKV_EINVAL (not JSON or wrong shape), LSKV_ENOMEM. */
int receipt_from_json(const char *json, size_t len, struct arena *a,
                      Lskvserverpb__Receipt **out, char *errmsg);

#endif
