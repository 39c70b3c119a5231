/* Receipts and transaction status (DESIGN.md section 4, Appendix A), in
 * LSKV's lskvserverpb shapes under the etcdserverpb service prefix:
 *
 *   /etcdserverpb.Receipt/GetReceipt    GetReceiptRequest -> GetReceiptResponse
 *   /etcdserverpb.Maintenance/TxStatus  TxStatusRequest   -> TxStatusResponse
 *   /etcdserverpb.Receipt/GetConsistencyProof
 *                       GetConsistencyProofRequest -> GetConsistencyProofResponse
 *
 * GetConsistencyProof(from_size, to_size): the signed roots at both signed
 * sizes (to_size 0: the latest) and the RFC 9162 proof that the first tree
 * is a prefix of the second; from_size 0 gives just the latest signed root
 * (an anchor to save). Nothing signed yet: UNAVAILABLE as for receipts; no
 * signature at exactly that size: NOT_FOUND.
 *
 * GetReceipt(revision, raft_term[, claims_digest]): the receipt of the write
 * that made revision (raft_term 0 = any term); with claims_digest (64 hex
 * digits), of the entry at that revision with those claims, which is how a
 * lease grant or revoke is found (its revision is shared with others). Until a signature covers it, or while
 * the write is still in flight: UNAVAILABLE "lskv: receipt not ready, retry
 * (retry-after-ms: N)" with trailer retry-after-ms: N (over JSON: 202 with
 * Retry-After); a revision no write made (or made in another term):
 * NOT_FOUND.
 *
 * TxStatus(revision, raft_term): Committed (the ledger holds the write that
 * made revision, in that term or any term when 0), Invalid (it was made in
 * another term), Pending (beyond the applied revision but within the writes
 * this node has proposed and not answered yet, in the current term),
 * Unknown otherwise. */
#include <inttypes.h>
#include <stdio.h>

#include "api/api.h"
#include "common/arena.h"
#include "common/err.h"
#include "common/hex.h"
#include "proto/lskvserver.pb-c.h"

/* True when revision may still be made by a write this node proposed. */
static bool pending(struct api *api, int64_t revision, uint64_t raft_term)
{
    struct consensus_status st;
    consensus_get_status(api->node, &st);
    int64_t rev = kvstore_revision(api->kv);
    return (raft_term == 0 || raft_term == st.term) && revision > rev &&
           (uint64_t)(revision - rev) <= api->writes_in_flight;
}

/* The hint goes both in the text (etcdctl-style clients show it) and in a
 * retry-after-ms trailer (programs read it; the JSON gateway turns it into
 * 202 + Retry-After). */
static void not_ready(struct api *api, grpc_call *call)
{
    uint64_t ms = api->receipt_retry_ms ? api->receipt_retry_ms : 50;
    char msg[96], value[24];
    snprintf(msg, sizeof msg, "lskv: receipt not ready, retry (retry-after-ms: %" PRIu64 ")", ms);
    snprintf(value, sizeof value, "%" PRIu64, ms);
    (void)grpc_call_set_trailer(call, "retry-after-ms", value); /* best effort: the text has it */
    grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, msg);
}

static void get_receipt(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    Lskvserverpb__GetReceiptRequest *req =
        api_decode(call, &lskvserverpb__get_receipt_request__descriptor, msg, len, &a);
    if (req == NULL)
        goto out;
    if (req->revision <= 0) {
        grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "lskv: revision must be positive");
        goto out;
    }
    if (api->ledger == NULL) {
        grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "lskv: no ledger");
        goto out;
    }
    uint8_t claims[32];
    bool by_claims = req->claims_digest != NULL && req->claims_digest[0] != '\0';
    if (by_claims && hex_decode(req->claims_digest, claims, sizeof claims) != 0) {
        grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                         "lskv: claims_digest must be 64 hex digits");
        goto out;
    }
    Lskvserverpb__Receipt *receipt = NULL;
    int rv = ledger_receipt_claimed(api->ledger, req->revision, req->raft_term,
                                    by_claims ? claims : NULL, &a, &receipt, errmsg);
    if (rv == LSKV_ENOTFOUND && pending(api, req->revision, req->raft_term))
        rv = LSKV_ENOTREADY;
    if (rv == LSKV_ENOTREADY) {
        not_ready(api, call);
        goto out;
    }
    if (rv == LSKV_ENOTFOUND) {
        char m[160];
        snprintf(m, sizeof m, "lskv: no write %s revision %" PRId64 "%s%s",
                 by_claims ? "at" : "made", req->revision, req->raft_term ? " in that term" : "",
                 by_claims ? " with those claims" : "");
        grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, m);
        goto out;
    }
    if (rv != 0) {
        api_fail(api, call, rv, errmsg);
        goto out;
    }
    Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &header);
    Lskvserverpb__GetReceiptResponse resp = LSKVSERVERPB__GET_RECEIPT_RESPONSE__INIT;
    resp.header = &header;
    resp.receipt = receipt;
    api_reply(call, &resp.base);
out:
    arena_close(&a);
}

static void tx_status(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    Lskvserverpb__TxStatusRequest *req =
        api_decode(call, &lskvserverpb__tx_status_request__descriptor, msg, len, &a);
    if (req == NULL)
        goto out;
    enum ledger_tx_status status = LEDGER_TX_UNKNOWN;
    if (api->ledger != NULL) {
        int rv = ledger_tx_status(api->ledger, req->revision, req->raft_term, &status, errmsg);
        if (rv != 0) {
            api_fail(api, call, rv, errmsg);
            goto out;
        }
    }
    if (status == LEDGER_TX_UNKNOWN && pending(api, req->revision, req->raft_term))
        status = LEDGER_TX_PENDING;
    Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &header);
    Lskvserverpb__TxStatusResponse resp = LSKVSERVERPB__TX_STATUS_RESPONSE__INIT;
    resp.header = &header;
    switch (status) {
    case LEDGER_TX_PENDING:
        resp.status = LSKVSERVERPB__TX_STATUS_RESPONSE__STATUS__Pending;
        break;
    case LEDGER_TX_COMMITTED:
        resp.status = LSKVSERVERPB__TX_STATUS_RESPONSE__STATUS__Committed;
        break;
    case LEDGER_TX_INVALID:
        resp.status = LSKVSERVERPB__TX_STATUS_RESPONSE__STATUS__Invalid;
        break;
    case LEDGER_TX_UNKNOWN:
        resp.status = LSKVSERVERPB__TX_STATUS_RESPONSE__STATUS__Unknown;
        break;
    }
    api_reply(call, &resp.base);
out:
    arena_close(&a);
}

static void get_consistency_proof(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    Lskvserverpb__GetConsistencyProofRequest *req =
        api_decode(call, &lskvserverpb__get_consistency_proof_request__descriptor, msg, len, &a);
    if (req == NULL)
        goto out;
    if (api->ledger == NULL) {
        grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "lskv: no ledger");
        goto out;
    }
    Lskvserverpb__GetConsistencyProofResponse *resp = NULL;
    int rv = ledger_consistency(api->ledger, req->from_size, req->to_size, &a, &resp, errmsg);
    if (rv == LSKV_ENOTREADY) {
        not_ready(api, call);
        goto out;
    }
    if (rv == LSKV_ENOTFOUND || rv == LSKV_EINVAL) {
        char m[LSKV_ERRMSG_SIZE + 8];
        snprintf(m, sizeof m, "lskv: %s", errmsg);
        grpc_call_finish(call, rv == LSKV_EINVAL ? GRPC_STATUS_INVALID_ARGUMENT
                                                 : GRPC_STATUS_NOT_FOUND, m);
        goto out;
    }
    if (rv != 0) {
        api_fail(api, call, rv, errmsg);
        goto out;
    }
    Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &header);
    resp->header = &header;
    api_reply(call, &resp->base);
out:
    arena_close(&a);
}

size_t receipt_service_methods(struct api *api, struct grpc_method *m)
{
    m[0] = (struct grpc_method){.path = "/etcdserverpb.Receipt/GetReceipt",
                                .on_message = get_receipt, .ctx = api};
    m[1] = (struct grpc_method){.path = "/etcdserverpb.Maintenance/TxStatus",
                                .on_message = tx_status, .ctx = api};
    m[2] = (struct grpc_method){.path = "/etcdserverpb.Receipt/GetConsistencyProof",
                                .on_message = get_consistency_proof, .ctx = api};
    return 3;
}
