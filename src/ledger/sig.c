/* Signature entry payloads (see sig.h). */
#include "ledger/sig.h"

#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"

size_t sig_payload_size(const struct sig_payload *p)
{
    return 1 + 8 + MERKLE_HASH_BYTES + 2 + p->sig_len + 4 + p->cert_len;
}

void sig_payload_encode(const struct sig_payload *p, uint8_t *out)
{
    out[0] = SIG_PAYLOAD_VERSION;
    put_u64be(out + 1, p->tree_size);
    memcpy(out + 9, p->root, MERKLE_HASH_BYTES);
    out[41] = (uint8_t)(p->sig_len >> 8);
    out[42] = (uint8_t)p->sig_len;
    memcpy(out + 43, p->sig, p->sig_len);
    put_u32be(out + 43 + p->sig_len, (uint32_t)p->cert_len);
    memcpy(out + 47 + p->sig_len, p->cert_pem, p->cert_len);
}

int sig_payload_decode(const uint8_t *buf, size_t len, struct sig_payload *p, char *errmsg)
{
    if (len < 47) {
        errmsg_printf(errmsg, "signature payload: %zu bytes, too short", len);
        return LSKV_ECORRUPT;
    }
    if (buf[0] != SIG_PAYLOAD_VERSION) {
        errmsg_printf(errmsg, "signature payload: version %u", buf[0]);
        return LSKV_EFORMAT;
    }
    size_t sl = (size_t)buf[41] << 8 | buf[42];
    if (sl == 0 || sl > CERT_SIG_MAX_BYTES || sl > len - 47) {
        errmsg_printf(errmsg, "signature payload: signature length %zu out of range", sl);
        return LSKV_ECORRUPT;
    }
    size_t cl = get_u32be(buf + 43 + sl);
    if (cl == 0 || cl > SIG_MAX_CERT_BYTES || cl != len - 47 - sl) {
        errmsg_printf(errmsg, "signature payload: certificate length %zu does not fit", cl);
        return LSKV_ECORRUPT;
    }
    p->tree_size = get_u64be(buf + 1);
    memcpy(p->root, buf + 9, MERKLE_HASH_BYTES);
    p->sig = buf + 43;
    p->sig_len = sl;
    p->cert_pem = (const char *)buf + 47 + sl;
    p->cert_len = cl;
    return 0;
}

int sig_make(const cert_node *node, uint64_t tree_size, const uint8_t root[MERKLE_HASH_BYTES],
             uint8_t **out, size_t *out_len)
{
    uint8_t sig[CERT_SIG_MAX_BYTES];
    struct sig_payload p = {.tree_size = tree_size, .sig = sig};
    memcpy(p.root, root, MERKLE_HASH_BYTES);
    int rv = cert_node_sign(node, root, sig, &p.sig_len);
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
    return cert_verify_digest(p->cert_pem, p->cert_len, p->root, p->sig, p->sig_len, errmsg);
}

int sig_check_service(const struct sig_payload *p, const cert_service *service, char *errmsg)
{
    return cert_check_endorsed(service, p->cert_pem, p->cert_len, errmsg);
}

int sig_verify(const struct sig_payload *p, const cert_service *service, char *errmsg)
{
    int rv = sig_check(p, errmsg);
    if (rv == 0 && service != NULL)
        rv = sig_check_service(p, service, errmsg);
    return rv;
}
