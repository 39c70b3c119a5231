/* Signature entry payloads (see sig.h). */
#include "ledger/sig.h"

#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "crypto/hash.h"

#define FIXED 79 /* version, tree_size, root, service_digest, sig_len, cert_len */

size_t sig_payload_size(const struct sig_payload *p)
{
    return FIXED + p->sig_len + p->cert_len;
}

void sig_payload_encode(const struct sig_payload *p, uint8_t *out)
{
    out[0] = SIG_PAYLOAD_VERSION;
    put_u64be(out + 1, p->tree_size);
    memcpy(out + 9, p->root, MERKLE_HASH_BYTES);
    memcpy(out + 41, p->service_digest, MERKLE_HASH_BYTES);
    out[73] = (uint8_t)(p->sig_len >> 8);
    out[74] = (uint8_t)p->sig_len;
    memcpy(out + 75, p->sig, p->sig_len);
    put_u32be(out + 75 + p->sig_len, (uint32_t)p->cert_len);
    memcpy(out + 79 + p->sig_len, p->cert_pem, p->cert_len);
}

int sig_payload_decode(const uint8_t *buf, size_t len, struct sig_payload *p, char *errmsg)
{
    if (len < 1) {
        errmsg_printf(errmsg, "signature payload: empty");
        return LSKV_ECORRUPT;
    }
    if (buf[0] != SIG_PAYLOAD_VERSION) {
        errmsg_printf(errmsg, "signature payload: version %u, want %d", buf[0],
                      SIG_PAYLOAD_VERSION);
        return LSKV_EFORMAT;
    }
    if (len < FIXED) {
        errmsg_printf(errmsg, "signature payload: %zu bytes, too short", len);
        return LSKV_ECORRUPT;
    }
    size_t sl = (size_t)buf[73] << 8 | buf[74];
    if (sl == 0 || sl > CERT_SIG_MAX_BYTES || sl > len - FIXED) {
        errmsg_printf(errmsg, "signature payload: signature length %zu out of range", sl);
        return LSKV_ECORRUPT;
    }
    size_t cl = get_u32be(buf + 75 + sl);
    if (cl == 0 || cl > SIG_MAX_CERT_BYTES || cl != len - FIXED - sl) {
        errmsg_printf(errmsg, "signature payload: certificate length %zu does not fit", cl);
        return LSKV_ECORRUPT;
    }
    p->tree_size = get_u64be(buf + 1);
    memcpy(p->root, buf + 9, MERKLE_HASH_BYTES);
    memcpy(p->service_digest, buf + 41, MERKLE_HASH_BYTES);
    p->sig = buf + 75;
    p->sig_len = sl;
    p->cert_pem = (const char *)buf + 79 + sl;
    p->cert_len = cl;
    return 0;
}

void sig_statement_digest(uint64_t tree_size, const uint8_t root[MERKLE_HASH_BYTES],
                          const uint8_t service_digest[MERKLE_HASH_BYTES],
                          uint8_t out[MERKLE_HASH_BYTES])
{
    uint8_t st[sizeof SIG_STATEMENT_LABEL - 1 + 8 + 2 * MERKLE_HASH_BYTES];
    size_t n = sizeof SIG_STATEMENT_LABEL - 1;
    memcpy(st, SIG_STATEMENT_LABEL, n);
    put_u64be(st + n, tree_size);
    memcpy(st + n + 8, root, MERKLE_HASH_BYTES);
    memcpy(st + n + 8 + MERKLE_HASH_BYTES, service_digest, MERKLE_HASH_BYTES);
    hash_sha256(st, sizeof st, out);
}

int sig_make(const cert_node *node, const uint8_t service_digest[MERKLE_HASH_BYTES],
             uint64_t tree_size, const uint8_t root[MERKLE_HASH_BYTES], uint8_t **out,
             size_t *out_len)
{
    uint8_t sig[CERT_SIG_MAX_BYTES], digest[MERKLE_HASH_BYTES];
    struct sig_payload p = {.tree_size = tree_size, .sig = sig};
    memcpy(p.root, root, MERKLE_HASH_BYTES);
    memcpy(p.service_digest, service_digest, MERKLE_HASH_BYTES);
    sig_statement_digest(tree_size, root, service_digest, digest);
    int rv = cert_node_sign(node, digest, sig, &p.sig_len);
    if (rv != 0)
        return rv;
    p.cert_pem = cert_node_pem(node);
    p.cert_len = strlen(p.cert_pem);
    size_t n = sig_payload_size(&p);
    uint8_t *buf = malloc(n);
    if (buf == NULL)
        return LSKV_ENOMEM;
    sig_payload_encode(&p, buf);
    *out = buf;
    *out_len = n;
    return 0;
}

int sig_check(const struct sig_payload *p, char *errmsg)
{
    uint8_t digest[MERKLE_HASH_BYTES];
    sig_statement_digest(p->tree_size, p->root, p->service_digest, digest);
    return cert_verify_digest(p->cert_pem, p->cert_len, digest, p->sig, p->sig_len, errmsg);
}

int sig_check_service(const struct sig_payload *p, const cert_service *service, char *errmsg)
{
    uint8_t want[MERKLE_HASH_BYTES];
    if (cert_service_digest(service, want) != 0) {
        errmsg_printf(errmsg, "cannot hash the service certificate");
        return LSKV_EINVAL;
    }
    if (memcmp(want, p->service_digest, MERKLE_HASH_BYTES) != 0) {
        errmsg_printf(errmsg, "signed by another service identity (the statement names service "
                      "certificate digest %02x%02x%02x%02x..., not %02x%02x%02x%02x...)",
                      p->service_digest[0], p->service_digest[1], p->service_digest[2],
                      p->service_digest[3], want[0], want[1], want[2], want[3]);
        return LSKV_ECORRUPT;
    }
    return cert_check_endorsed(service, p->cert_pem, p->cert_len, errmsg);
}

int sig_verify(const struct sig_payload *p, const cert_service *service, char *errmsg)
{
    int rv = sig_check(p, errmsg);
    if (rv == 0 && service != NULL)
        rv = sig_check_service(p, service, errmsg);
    return rv;
}
