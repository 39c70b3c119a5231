/* Receipts (see receipt.h). */
#include "ledger/receipt.h"

#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/hex.h"
#include "ledger/sig.h"

int receipt_build(const struct receipt_parts *p, struct arena *a, Lskvserverpb__Receipt **out)
{
    Lskvserverpb__Receipt *r = arena_alloc(a, sizeof *r);
    Lskvserverpb__TxReceipt *tx = arena_alloc(a, sizeof *tx);
    Lskvserverpb__LeafComponents *lc = arena_alloc(a, sizeof *lc);
    Lskvserverpb__Proof **proof = arena_calloc(a, p->n_steps ? p->n_steps : 1, sizeof *proof);
    if (r == NULL || tx == NULL || lc == NULL || proof == NULL)
        return LSKV_ENOMEM;
    lskvserverpb__receipt__init(r);
    lskvserverpb__tx_receipt__init(tx);
    lskvserverpb__leaf_components__init(lc);
    lc->claims_digest = arena_hex(a, p->claims_digest, MERKLE_HASH_BYTES);
    lc->write_set_digest = arena_hex(a, p->write_set_digest, MERKLE_HASH_BYTES);
    lc->commit_evidence = arena_strndup(a, p->commit_evidence, strlen(p->commit_evidence));
    if (lc->claims_digest == NULL || lc->write_set_digest == NULL || lc->commit_evidence == NULL)
        return LSKV_ENOMEM;
    for (size_t i = 0; i < p->n_steps; i++) {
        Lskvserverpb__Proof *e = arena_alloc(a, sizeof *e);
        char *h = arena_hex(a, p->steps[i].hash, MERKLE_HASH_BYTES);
        if (e == NULL || h == NULL)
            return LSKV_ENOMEM;
        lskvserverpb__proof__init(e);
        if (p->steps[i].left)
            e->left = h;
        else
            e->right = h;
        proof[i] = e;
    }
    tx->leaf_components = lc;
    tx->n_proof = p->n_steps;
    tx->proof = proof;
    tx->leaf_index = p->leaf_index;
    tx->tree_size = p->tree_size;
    r->cert = arena_strndup(a, p->cert_pem, p->cert_len);
    r->signature.data = arena_memdup(a, p->sig, p->sig_len);
    r->signature.len = p->sig_len;
    r->node_id = arena_strndup(a, p->node_id, strlen(p->node_id));
    r->service_cert_digest = arena_hex(a, p->service_digest, MERKLE_HASH_BYTES);
    if (r->cert == NULL || r->signature.data == NULL || r->node_id == NULL ||
        r->service_cert_digest == NULL)
        return LSKV_ENOMEM;
    r->receipt_extras_case = LSKVSERVERPB__RECEIPT__RECEIPT_EXTRAS_TX_RECEIPT;
    r->tx_receipt = tx;
    *out = r;
    return 0;
}

static const struct {
    const char *name;
    Lskvserverpb__ReceiptClaims__RequestCase request_case;
    Lskvserverpb__ReceiptClaims__ResponseCase response_case;
    const ProtobufCMessageDescriptor *request, *response;
} kinds[] = {
    [RECEIPT_PUT] = {"put", LSKVSERVERPB__RECEIPT_CLAIMS__REQUEST_REQUEST_PUT,
                     LSKVSERVERPB__RECEIPT_CLAIMS__RESPONSE_RESPONSE_PUT,
                     &etcdserverpb__put_request__descriptor,
                     &etcdserverpb__put_response__descriptor},
    [RECEIPT_DELETE_RANGE] = {"delete_range",
                              LSKVSERVERPB__RECEIPT_CLAIMS__REQUEST_REQUEST_DELETE_RANGE,
                              LSKVSERVERPB__RECEIPT_CLAIMS__RESPONSE_RESPONSE_DELETE_RANGE,
                              &etcdserverpb__delete_range_request__descriptor,
                              &etcdserverpb__delete_range_response__descriptor},
    [RECEIPT_TXN] = {"txn", LSKVSERVERPB__RECEIPT_CLAIMS__REQUEST_REQUEST_TXN,
                     LSKVSERVERPB__RECEIPT_CLAIMS__RESPONSE_RESPONSE_TXN,
                     &etcdserverpb__txn_request__descriptor,
                     &etcdserverpb__txn_response__descriptor},
    [RECEIPT_LEASE_GRANT] = {"lease_grant",
                             LSKVSERVERPB__RECEIPT_CLAIMS__REQUEST_REQUEST_LEASE_GRANT,
                             LSKVSERVERPB__RECEIPT_CLAIMS__RESPONSE_RESPONSE_LEASE_GRANT,
                             &etcdserverpb__lease_grant_request__descriptor,
                             &etcdserverpb__lease_grant_response__descriptor},
    [RECEIPT_LEASE_REVOKE] = {"lease_revoke",
                              LSKVSERVERPB__RECEIPT_CLAIMS__REQUEST_REQUEST_LEASE_REVOKE,
                              LSKVSERVERPB__RECEIPT_CLAIMS__RESPONSE_RESPONSE_LEASE_REVOKE,
                              &etcdserverpb__lease_revoke_request__descriptor,
                              &etcdserverpb__lease_revoke_response__descriptor},
};

int receipt_kind_from_name(const char *name, enum receipt_kind *out)
{
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        if (strcmp(kinds[k].name, name) == 0) {
            *out = (enum receipt_kind)k;
            return 0;
        }
    }
    return LSKV_EINVAL;
}

const ProtobufCMessageDescriptor *receipt_request_type(enum receipt_kind k)
{
    return kinds[k].request;
}

const ProtobufCMessageDescriptor *receipt_response_type(enum receipt_kind k)
{
    return kinds[k].response;
}

/* The claims' oneof members are found by field number (= their case value)
 * through protobuf-c's reflection, so one code path serves every kind.
 * Returns the member's address, or NULL for an unknown case. */
static void *claims_member(Lskvserverpb__ReceiptClaims *c, unsigned field)
{
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field(&lskvserverpb__receipt_claims__descriptor, field);
    return fd ? (char *)c + fd->offset : NULL;
}

void receipt_claims_set(Lskvserverpb__ReceiptClaims *c, enum receipt_kind k,
                        const ProtobufCMessage *request, const ProtobufCMessage *response)
{
    c->request_case = kinds[k].request_case;
    c->response_case = kinds[k].response_case;
    memcpy(claims_member(c, c->request_case), &request, sizeof request);
    memcpy(claims_member(c, c->response_case), &response, sizeof response);
}

int receipt_claims_pack(const Lskvserverpb__ReceiptClaims *claims, uint8_t **buf, size_t *len)
{
    Lskvserverpb__ReceiptClaims c = *claims;
    void *req_slot = claims_member(&c, c.request_case);
    void *resp_slot = claims_member(&c, c.response_case);
    const ProtobufCMessage *req = NULL, *resp = NULL;
    if (req_slot != NULL)
        memcpy(&req, req_slot, sizeof req);
    if (resp_slot != NULL)
        memcpy(&resp, resp_slot, sizeof resp);
    if (req == NULL || resp == NULL)
        return LSKV_EINVAL;
    /* A shallow copy of the response with the header cleared: the caller's
     * message stays as it is. */
    union {
        Etcdserverpb__PutResponse put;
        Etcdserverpb__DeleteRangeResponse del;
        Etcdserverpb__TxnResponse txn;
    } copy;
    const ProtobufCFieldDescriptor *header =
        protobuf_c_message_descriptor_get_field_by_name(resp->descriptor, "header");
    if (resp->descriptor->sizeof_message > sizeof copy || header == NULL)
        return LSKV_EINVAL;
    memcpy(&copy, resp, resp->descriptor->sizeof_message);
    memset((char *)&copy + header->offset, 0, sizeof(void *));
    const ProtobufCMessage *stripped = (const ProtobufCMessage *)(const void *)&copy;
    memcpy(resp_slot, &stripped, sizeof stripped);
    size_t n = lskvserverpb__receipt_claims__get_packed_size(&c);
    uint8_t *b = malloc(n ? n : 1);
    if (b == NULL)
        return LSKV_ENOMEM;
    lskvserverpb__receipt_claims__pack(&c, b);
    *buf = b;
    *len = n;
    return 0;
}

int receipt_claims_digest(const Lskvserverpb__ReceiptClaims *claims,
                          uint8_t out[MERKLE_HASH_BYTES])
{
    uint8_t *b;
    size_t n;
    int rv = receipt_claims_pack(claims, &b, &n);
    if (rv != 0)
        return rv;
    SHA256(b, n, out);
    free(b);
    return 0;
}

int receipt_verify(const Lskvserverpb__Receipt *r, const cert_service *service,
                   const uint8_t *claims_digest, uint8_t root_out[MERKLE_HASH_BYTES],
                   char *errmsg)
{
    if (r->receipt_extras_case != LSKVSERVERPB__RECEIPT__RECEIPT_EXTRAS_TX_RECEIPT ||
        r->tx_receipt == NULL || r->tx_receipt->leaf_components == NULL) {
        errmsg_printf(errmsg, "receipt: no tx_receipt with leaf_components");
        return LSKV_EINVAL;
    }
    if (r->cert == NULL || r->cert[0] == '\0' || r->signature.len == 0) {
        errmsg_printf(errmsg, "receipt: no cert or no signature");
        return LSKV_EINVAL;
    }
    const Lskvserverpb__TxReceipt *tx = r->tx_receipt;
    const Lskvserverpb__LeafComponents *lc = tx->leaf_components;
    uint8_t wsd[MERKLE_HASH_BYTES], cd[MERKLE_HASH_BYTES], leaf[MERKLE_HASH_BYTES];
    if (hex_decode(lc->write_set_digest, wsd, sizeof wsd) != 0 ||
        hex_decode(lc->claims_digest, cd, sizeof cd) != 0 || lc->commit_evidence == NULL) {
        errmsg_printf(errmsg, "receipt: leaf components: digests must be 64 hex digits");
        return LSKV_EINVAL;
    }
    /* Step 1. */
    merkle_leaf_hash(wsd, lc->commit_evidence, strlen(lc->commit_evidence), cd, leaf);
    /* Steps 2-3. */
    if (tx->n_proof > MERKLE_MAX_DEPTH) {
        errmsg_printf(errmsg, "receipt: proof has %zu elements", tx->n_proof);
        return LSKV_EINVAL;
    }
    struct merkle_step steps[MERKLE_MAX_DEPTH];
    for (size_t i = 0; i < tx->n_proof; i++) {
        const Lskvserverpb__Proof *e = tx->proof[i];
        bool has_l = e && e->left && e->left[0], has_r = e && e->right && e->right[0];
        if (has_l == has_r) {
            errmsg_printf(errmsg, "receipt: proof element %zu must have exactly one of left/right",
                          i);
            return LSKV_EINVAL;
        }
        steps[i].left = has_l;
        if (hex_decode(has_l ? e->left : e->right, steps[i].hash, MERKLE_HASH_BYTES) != 0) {
            errmsg_printf(errmsg, "receipt: proof element %zu is not 64 hex digits", i);
            return LSKV_EINVAL;
        }
    }
    bool dirs[MERKLE_MAX_DEPTH];
    int want = merkle_shape(tx->leaf_index, tx->tree_size, dirs);
    if (want < 0) {
        errmsg_printf(errmsg, "receipt: leaf_index %" PRIu64 " not below tree_size %" PRIu64,
                      tx->leaf_index, tx->tree_size);
        return LSKV_ECORRUPT;
    }
    if ((size_t)want != tx->n_proof) {
        errmsg_printf(errmsg,
                      "receipt: proof has %zu elements, leaf %" PRIu64 " of %" PRIu64 " needs %d",
                      tx->n_proof, tx->leaf_index, tx->tree_size, want);
        return LSKV_ECORRUPT;
    }
    for (int i = 0; i < want; i++) {
        if (dirs[i] != steps[i].left) {
            errmsg_printf(errmsg,
                          "receipt: proof element %d is %s, leaf %" PRIu64 " of %" PRIu64
                          " needs %s",
                          i, steps[i].left ? "left" : "right", tx->leaf_index, tx->tree_size,
                          dirs[i] ? "left" : "right");
            return LSKV_ECORRUPT;
        }
    }
    /* Step 4. */
    uint8_t root[MERKLE_HASH_BYTES];
    merkle_fold(leaf, steps, tx->n_proof, root);
    /* Step 5: the statement binds tree_size, root and the service. */
    uint8_t svc[MERKLE_HASH_BYTES], want_svc[MERKLE_HASH_BYTES], digest[MERKLE_HASH_BYTES];
    bool have_svc = r->service_cert_digest != NULL && r->service_cert_digest[0] != '\0';
    if (have_svc && hex_decode(r->service_cert_digest, svc, sizeof svc) != 0) {
        errmsg_printf(errmsg, "receipt: service_cert_digest must be 64 hex digits");
        return LSKV_EINVAL;
    }
    if (service != NULL) {
        if (cert_service_digest(service, want_svc) != 0) {
            errmsg_printf(errmsg, "receipt: cannot hash the service certificate");
            return LSKV_EINVAL;
        }
        if (have_svc && memcmp(svc, want_svc, sizeof svc) != 0) {
            errmsg_printf(errmsg, "receipt: signed by another service identity "
                          "(service_cert_digest is not the service certificate's)");
            return LSKV_ECORRUPT;
        }
        memcpy(svc, want_svc, sizeof svc);
    } else if (!have_svc) {
        errmsg_printf(errmsg, "receipt: no service_cert_digest and no service certificate");
        return LSKV_EINVAL;
    }
    sig_statement_digest(tx->tree_size, root, svc, digest);
    size_t cert_len = strlen(r->cert);
    int rv = cert_verify_digest(r->cert, cert_len, digest, r->signature.data, r->signature.len,
                                errmsg);
    if (rv != 0) {
        errmsg_wrapf(errmsg, "receipt");
        return rv == LSKV_EINVAL ? LSKV_EINVAL : LSKV_ECORRUPT;
    }
    if (r->node_id != NULL && r->node_id[0] != '\0') {
        char id[CERT_NODE_ID_HEX];
        if (cert_node_id_of_pem(r->cert, cert_len, id) != 0 || strcmp(id, r->node_id) != 0) {
            errmsg_printf(errmsg, "receipt: node_id does not match the certificate");
            return LSKV_ECORRUPT;
        }
    }
    /* Step 6. */
    if (service != NULL) {
        rv = cert_check_endorsed(service, r->cert, cert_len, errmsg);
        if (rv != 0) {
            errmsg_wrapf(errmsg, "receipt");
            return LSKV_ECORRUPT;
        }
    }
    /* Step 7. */
    if (claims_digest != NULL && memcmp(claims_digest, cd, MERKLE_HASH_BYTES) != 0) {
        errmsg_printf(errmsg, "receipt: claims digest does not match the request and response");
        return LSKV_ECORRUPT;
    }
    if (root_out != NULL)
        memcpy(root_out, root, MERKLE_HASH_BYTES);
    return 0;
}

/* --- JSON ---------------------------------------------------------------- */

char *receipt_to_json(const Lskvserverpb__Receipt *r)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "cert", json_string(r->cert ? r->cert : ""));
    size_t b64n = 4 * ((r->signature.len + 2) / 3) + 1;
    char *b64 = malloc(b64n);
    if (b64 == NULL) {
        json_decref(o);
        return NULL;
    }
    EVP_EncodeBlock((unsigned char *)b64, r->signature.data, (int)r->signature.len);
    json_object_set_new(o, "signature", json_string(b64));
    free(b64);
    json_object_set_new(o, "node_id", json_string(r->node_id ? r->node_id : ""));
    if (r->service_cert_digest != NULL && r->service_cert_digest[0] != '\0')
        json_object_set_new(o, "service_cert_digest", json_string(r->service_cert_digest));
    if (r->receipt_extras_case == LSKVSERVERPB__RECEIPT__RECEIPT_EXTRAS_TX_RECEIPT &&
        r->tx_receipt != NULL) {
        const Lskvserverpb__TxReceipt *tx = r->tx_receipt;
        json_t *t = json_object(), *proof = json_array();
        if (tx->leaf_components != NULL) {
            json_t *lc = json_object();
            json_object_set_new(lc, "claims_digest",
                                json_string(tx->leaf_components->claims_digest));
            json_object_set_new(lc, "commit_evidence",
                                json_string(tx->leaf_components->commit_evidence));
            json_object_set_new(lc, "write_set_digest",
                                json_string(tx->leaf_components->write_set_digest));
            json_object_set_new(t, "leaf_components", lc);
        }
        for (size_t i = 0; i < tx->n_proof; i++) {
            json_t *e = json_object();
            if (tx->proof[i]->left && tx->proof[i]->left[0])
                json_object_set_new(e, "left", json_string(tx->proof[i]->left));
            else
                json_object_set_new(e, "right", json_string(tx->proof[i]->right));
            json_array_append_new(proof, e);
        }
        json_object_set_new(t, "proof", proof);
        char num[32];
        snprintf(num, sizeof num, "%" PRIu64, tx->leaf_index);
        json_object_set_new(t, "leaf_index", json_string(num));
        snprintf(num, sizeof num, "%" PRIu64, tx->tree_size);
        json_object_set_new(t, "tree_size", json_string(num));
        json_object_set_new(o, "tx_receipt", t);
    }
    if (r->anchor_size != 0) {
        char num[32];
        json_t *ap = json_array();
        snprintf(num, sizeof num, "%" PRIu64, r->anchor_size);
        json_object_set_new(o, "anchor_size", json_string(num));
        for (size_t i = 0; i < r->n_anchor_proof; i++)
            json_array_append_new(ap, json_string(r->anchor_proof[i]));
        json_object_set_new(o, "anchor_proof", ap);
    }
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

static json_t *get2(const json_t *o, const char *snake, const char *camel)
{
    json_t *v = json_object_get(o, snake);
    return v ? v : json_object_get(o, camel);
}

static int get_str(struct arena *a, const json_t *o, const char *snake, const char *camel,
                   char **out)
{
    json_t *v = get2(o, snake, camel);
    if (v == NULL) {
        *out = arena_strndup(a, "", 0);
        return *out ? 0 : LSKV_ENOMEM;
    }
    if (!json_is_string(v))
        return LSKV_EINVAL;
    *out = arena_strndup(a, json_string_value(v), json_string_length(v));
    return *out ? 0 : LSKV_ENOMEM;
}

static int get_u64(const json_t *o, const char *snake, const char *camel, uint64_t *out)
{
    json_t *v = get2(o, snake, camel);
    *out = 0;
    if (v == NULL)
        return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return LSKV_EINVAL;
    const char *s = json_string_value(v);
    char *end;
    if (*s < '0' || *s > '9')
        return LSKV_EINVAL;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end != '\0')
        return LSKV_EINVAL;
    *out = x;
    return 0;
}

int receipt_from_json(const char *json, size_t len, struct arena *a,
                      Lskvserverpb__Receipt **out, char *errmsg)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (root == NULL) {
        errmsg_printf(errmsg, "receipt JSON: line %d: %s", jerr.line, jerr.text);
        return LSKV_EINVAL;
    }
    int rv = LSKV_EINVAL;
    const json_t *o = root;
    if (json_is_object(json_object_get(root, "receipt")))
        o = json_object_get(root, "receipt");
    const json_t *t = get2(o, "tx_receipt", "txReceipt");
    const json_t *lcj = t ? get2(t, "leaf_components", "leafComponents") : NULL;
    const json_t *pj = t ? json_object_get(t, "proof") : NULL;
    if (!json_is_object(o) || !json_is_object(t) || !json_is_object(lcj) ||
        (pj != NULL && !json_is_array(pj))) {
        errmsg_printf(errmsg, "receipt JSON: want an object with tx_receipt.leaf_components");
        goto out;
    }
    Lskvserverpb__Receipt *r = arena_alloc(a, sizeof *r);
    Lskvserverpb__TxReceipt *tx = arena_alloc(a, sizeof *tx);
    Lskvserverpb__LeafComponents *lc = arena_alloc(a, sizeof *lc);
    size_t np = pj ? json_array_size(pj) : 0;
    Lskvserverpb__Proof **proof = arena_calloc(a, np ? np : 1, sizeof *proof);
    rv = LSKV_ENOMEM;
    if (r == NULL || tx == NULL || lc == NULL || proof == NULL)
        goto out;
    lskvserverpb__receipt__init(r);
    lskvserverpb__tx_receipt__init(tx);
    lskvserverpb__leaf_components__init(lc);
    char *sig64 = NULL;
    if ((rv = get_str(a, o, "cert", "cert", &r->cert)) != 0 ||
        (rv = get_str(a, o, "node_id", "nodeId", &r->node_id)) != 0 ||
        (rv = get_str(a, o, "service_cert_digest", "serviceCertDigest",
                      &r->service_cert_digest)) != 0 ||
        (rv = get_str(a, o, "signature", "signature", &sig64)) != 0 ||
        (rv = get_str(a, lcj, "claims_digest", "claimsDigest", &lc->claims_digest)) != 0 ||
        (rv = get_str(a, lcj, "commit_evidence", "commitEvidence", &lc->commit_evidence)) != 0 ||
        (rv = get_str(a, lcj, "write_set_digest", "writeSetDigest", &lc->write_set_digest)) != 0 ||
        (rv = get_u64(t, "leaf_index", "leafIndex", &tx->leaf_index)) != 0 ||
        (rv = get_u64(t, "tree_size", "treeSize", &tx->tree_size)) != 0) {
        errmsg_printf(errmsg, "receipt JSON: a field has the wrong type");
        goto out;
    }
    size_t sl = strlen(sig64);
    uint8_t *sig = arena_alloc(a, sl / 4 * 3 + 3);
    rv = LSKV_ENOMEM;
    if (sig == NULL)
        goto out;
    int n = sl ? EVP_DecodeBlock(sig, (const unsigned char *)sig64, (int)sl) : 0;
    rv = LSKV_EINVAL;
    if (n < 0 || sl % 4 != 0) {
        errmsg_printf(errmsg, "receipt JSON: signature is not base64");
        goto out;
    }
    /* EVP_DecodeBlock counts padding as zero bytes: drop them. */
    if (sl >= 1 && sig64[sl - 1] == '=')
        n--;
    if (sl >= 2 && sig64[sl - 2] == '=')
        n--;
    r->signature.data = sig;
    r->signature.len = (size_t)n;
    for (size_t i = 0; i < np; i++) {
        const json_t *ej = json_array_get(pj, i);
        Lskvserverpb__Proof *e = arena_alloc(a, sizeof *e);
        rv = LSKV_ENOMEM;
        if (e == NULL)
            goto out;
        lskvserverpb__proof__init(e);
        rv = LSKV_EINVAL;
        if (!json_is_object(ej) || get_str(a, ej, "left", "left", &e->left) != 0 ||
            get_str(a, ej, "right", "right", &e->right) != 0) {
            errmsg_printf(errmsg, "receipt JSON: proof element %zu is malformed", i);
            goto out;
        }
        proof[i] = e;
    }
    const json_t *apj = json_object_get(o, "anchor_proof");
    if (apj == NULL)
        apj = json_object_get(o, "anchorProof");
    size_t nap = json_is_array(apj) ? json_array_size(apj) : 0;
    rv = LSKV_EINVAL;
    if ((apj != NULL && !json_is_array(apj)) || nap > MERKLE_MAX_CONSISTENCY ||
        get_u64(o, "anchor_size", "anchorSize", &r->anchor_size) != 0) {
        errmsg_printf(errmsg, "receipt JSON: anchor_size or anchor_proof is malformed");
        goto out;
    }
    r->anchor_proof = arena_calloc(a, nap ? nap : 1, sizeof *r->anchor_proof);
    if (r->anchor_proof == NULL) {
        rv = LSKV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nap; i++) {
        const json_t *h = json_array_get(apj, i);
        if (!json_is_string(h)) {
            errmsg_printf(errmsg, "receipt JSON: anchor_proof element %zu is not a string", i);
            goto out;
        }
        r->anchor_proof[i] = arena_strndup(a, json_string_value(h), json_string_length(h));
        if (r->anchor_proof[i] == NULL) {
            rv = LSKV_ENOMEM;
            goto out;
        }
    }
    r->n_anchor_proof = nap;
    tx->leaf_components = lc;
    tx->proof = proof;
    tx->n_proof = np;
    r->receipt_extras_case = LSKVSERVERPB__RECEIPT__RECEIPT_EXTRAS_TX_RECEIPT;
    r->tx_receipt = tx;
    *out = r;
    rv = 0;
out:
    json_decref(root);
    return rv;
}
