/* See anchor.h. */
#include "ledger/anchor.h"

#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/hex.h"

int anchor_from_sig(const struct sig_payload *p, struct arena *a,
                    Lskvserverpb__SignedRoot **out)
{
    Lskvserverpb__SignedRoot *s = arena_alloc(a, sizeof *s);
    char id[CERT_NODE_ID_HEX];
    if (s == NULL)
        return LSKV_ENOMEM;
    if (cert_node_id_of_pem(p->cert_pem, p->cert_len, id) != 0)
        return LSKV_EINVAL;
    lskvserverpb__signed_root__init(s);
    s->tree_size = p->tree_size;
    s->root = arena_hex(a, p->root, MERKLE_HASH_BYTES);
    s->signature.data = arena_memdup(a, p->sig, p->sig_len);
    s->signature.len = p->sig_len;
    s->cert = arena_strndup(a, p->cert_pem, p->cert_len);
    s->node_id = arena_strndup(a, id, strlen(id));
    s->service_cert_digest = arena_hex(a, p->service_digest, MERKLE_HASH_BYTES);
    if (s->root == NULL || s->signature.data == NULL || s->cert == NULL || s->node_id == NULL ||
        s->service_cert_digest == NULL)
        return LSKV_ENOMEM;
    *out = s;
    return 0;
}

int anchor_verify(const Lskvserverpb__SignedRoot *s, const cert_service *service,
                  uint8_t root_out[MERKLE_HASH_BYTES], char *errmsg)
{
    struct sig_payload p = {.tree_size = s->tree_size};
    if (s->root == NULL || hex_decode(s->root, p.root, sizeof p.root) != 0 ||
        s->service_cert_digest == NULL ||
        hex_decode(s->service_cert_digest, p.service_digest, sizeof p.service_digest) != 0 ||
        s->cert == NULL || s->cert[0] == '\0' || s->signature.len == 0 ||
        s->signature.len > CERT_SIG_MAX_BYTES || s->tree_size == 0) {
        errmsg_printf(errmsg, "signed root: needs tree_size, root and service_cert_digest "
                      "(64 hex digits), cert and signature");
        return LSKV_EINVAL;
    }
    p.sig = s->signature.data;
    p.sig_len = s->signature.len;
    p.cert_pem = s->cert;
    p.cert_len = strlen(s->cert);
    char why[LSKV_ERRMSG_SIZE];
    int rv = sig_check(&p, why);
    if (rv == 0 && service != NULL)
        rv = sig_check_service(&p, service, why);
    if (rv != 0) {
        errmsg_printf(errmsg, "signed root over %" PRIu64 " leaves: %s", s->tree_size, why);
        return rv == LSKV_EINVAL ? rv : LSKV_ECORRUPT;
    }
    if (s->node_id != NULL && s->node_id[0] != '\0') {
        char id[CERT_NODE_ID_HEX];
        if (cert_node_id_of_pem(p.cert_pem, p.cert_len, id) != 0 || strcmp(id, s->node_id)) {
            errmsg_printf(errmsg, "signed root: node_id does not match the certificate");
            return LSKV_ECORRUPT;
        }
    }
    if (root_out != NULL)
        memcpy(root_out, p.root, MERKLE_HASH_BYTES);
    return 0;
}

int anchor_check_proof(uint64_t m, const uint8_t root_m[32], uint64_t n_size,
                       const uint8_t root_n[32], char *const *proof, size_t n, char *errmsg)
{
    if (n > MERKLE_MAX_CONSISTENCY) {
        errmsg_printf(errmsg, "consistency proof: %zu hashes", n);
        return LSKV_EINVAL;
    }
    uint8_t h[MERKLE_MAX_CONSISTENCY][MERKLE_HASH_BYTES];
    for (size_t i = 0; i < n; i++) {
        if (proof[i] == NULL || hex_decode(proof[i], h[i], MERKLE_HASH_BYTES) != 0) {
            errmsg_printf(errmsg, "consistency proof: hash %zu is not 64 hex digits", i);
            return LSKV_EINVAL;
        }
    }
    if (!merkle_consistency_verify(m, n_size, root_m, root_n, (const uint8_t(*)[32])h, n)) {
        errmsg_printf(errmsg, "the tree of %" PRIu64 " leaves is not a prefix of the tree of %"
                      PRIu64 " (rolled back or forked)", m, n_size);
        return LSKV_ECORRUPT;
    }
    return 0;
}

int anchor_check_receipt(const Lskvserverpb__Receipt *r, const uint8_t receipt_root[32],
                         const Lskvserverpb__SignedRoot *anchor,
                         const uint8_t anchor_root[32], char *errmsg)
{
    if (r->tx_receipt == NULL) {
        errmsg_printf(errmsg, "receipt: no tx_receipt");
        return LSKV_EINVAL;
    }
    uint64_t rs = r->tx_receipt->tree_size, as = anchor->tree_size;
    if (r->anchor_size != as || (rs != as && r->n_anchor_proof == 0)) {
        errmsg_printf(errmsg, "receipt carries no consistency proof to the anchor's %" PRIu64
                      " leaves (fetch it with lskvctl receipt get --anchor)", as);
        return LSKV_EINVAL;
    }
    int rv = as <= rs ? anchor_check_proof(as, anchor_root, rs, receipt_root, r->anchor_proof,
                                           r->n_anchor_proof, errmsg)
                      : anchor_check_proof(rs, receipt_root, as, anchor_root, r->anchor_proof,
                                           r->n_anchor_proof, errmsg);
    if (rv != 0)
        errmsg_wrapf(errmsg, "receipt and anchor");
    return rv;
}

char *anchor_to_json(const Lskvserverpb__SignedRoot *s)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    char num[32];
    snprintf(num, sizeof num, "%" PRIu64, s->tree_size);
    json_object_set_new(o, "tree_size", json_string(num));
    json_object_set_new(o, "root", json_string(s->root ? s->root : ""));
    char *b64 = malloc(4 * ((s->signature.len + 2) / 3) + 1);
    if (b64 == NULL) {
        json_decref(o);
        return NULL;
    }
    EVP_EncodeBlock((unsigned char *)b64, s->signature.data, (int)s->signature.len);
    json_object_set_new(o, "signature", json_string(b64));
    free(b64);
    json_object_set_new(o, "cert", json_string(s->cert ? s->cert : ""));
    json_object_set_new(o, "node_id", json_string(s->node_id ? s->node_id : ""));
    json_object_set_new(o, "service_cert_digest",
                        json_string(s->service_cert_digest ? s->service_cert_digest : ""));
    char *out = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return out;
}

static int get_str(struct arena *a, const json_t *o, const char *snake, const char *camel,
                   char **out)
{
    json_t *v = json_object_get(o, snake);
    if (v == NULL)
        v = json_object_get(o, camel);
    if (v == NULL) {
        *out = arena_strndup(a, "", 0);
        return *out ? 0 : LSKV_ENOMEM;
    }
    if (!json_is_string(v))
        return LSKV_EINVAL;
    *out = arena_strndup(a, json_string_value(v), json_string_length(v));
    return *out ? 0 : LSKV_ENOMEM;
}

int anchor_from_json(const char *json, size_t len, struct arena *a,
                     Lskvserverpb__SignedRoot **out, char *errmsg)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (root == NULL) {
        errmsg_printf(errmsg, "anchor JSON: line %d: %s", jerr.line, jerr.text);
        return LSKV_EINVAL;
    }
    const json_t *o = root;
    if (json_is_object(json_object_get(root, "to")))
        o = json_object_get(root, "to");
    Lskvserverpb__SignedRoot *s = arena_alloc(a, sizeof *s);
    int rv = LSKV_ENOMEM;
    char *sig64 = NULL, *size = NULL;
    if (s == NULL)
        goto out;
    lskvserverpb__signed_root__init(s);
    rv = LSKV_EINVAL;
    if (!json_is_object(o) || get_str(a, o, "tree_size", "treeSize", &size) != 0 ||
        get_str(a, o, "root", "root", &s->root) != 0 ||
        get_str(a, o, "signature", "signature", &sig64) != 0 ||
        get_str(a, o, "cert", "cert", &s->cert) != 0 ||
        get_str(a, o, "node_id", "nodeId", &s->node_id) != 0 ||
        get_str(a, o, "service_cert_digest", "serviceCertDigest", &s->service_cert_digest) !=
            0) {
        errmsg_printf(errmsg, "anchor JSON: want an object of strings (tree_size, root, "
                      "signature, cert, node_id, service_cert_digest)");
        goto out;
    }
    char *end;
    if (size[0] < '0' || size[0] > '9' || (s->tree_size = strtoull(size, &end, 10), *end)) {
        errmsg_printf(errmsg, "anchor JSON: tree_size is not a number");
        goto out;
    }
    size_t sl = strlen(sig64);
    uint8_t *sig = arena_alloc(a, sl / 4 * 3 + 3);
    int n = sig && sl % 4 == 0 ? EVP_DecodeBlock(sig, (const unsigned char *)sig64, (int)sl) : -1;
    if (n < 0) {
        errmsg_printf(errmsg, "anchor JSON: signature is not base64");
        goto out;
    }
    if (sl >= 1 && sig64[sl - 1] == '=')
        n--;
    if (sl >= 2 && sig64[sl - 2] == '=')
        n--;
    s->signature.data = sig;
    s->signature.len = (size_t)n;
    *out = s;
    rv = 0;
out:
    json_decref(root);
    return rv;
}
