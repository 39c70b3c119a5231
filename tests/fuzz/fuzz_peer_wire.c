/* Fuzzes what a peer sends after the TLS handshake (net/peer_wire.c): the
 * identity proof decoder (operator TLS), the preamble decoder and the
 * message framer. Any bytes must give an answer,
 * never a crash or an overread. A decoded preamble must encode back to the
 * bytes it came from, and no shorter prefix may decode; the framer must
 * deliver the same messages (that re-frame to the bytes it consumed)
 * whether fed at once or in chunks of any size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "net/peer_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
    uint8_t *out; /* the messages re-framed */
    size_t len;
};

static int collect(void *arg, const uint8_t *msg, size_t len)
{
    struct sink *s = arg;
    uint8_t *p = realloc(s->out, s->len + PEER_FRAME_HEADER + len + 1);
    if (p == NULL)
        abort();
    s->out = p;
    peer_frame_header(len, p + s->len);
    if (len > 0)
        memcpy(p + s->len + PEER_FRAME_HEADER, msg, len);
    s->len += PEER_FRAME_HEADER + len;
    return 0;
}

static void check_preamble(const uint8_t *buf, size_t size)
{
    struct peer_preamble p;
    int rv = peer_preamble_decode(buf, size, &p);
    if (rv != 0 && rv != LSKV_ECORRUPT && (rv < PEER_PREAMBLE_FIXED || (size_t)rv > size))
        abort();
    if (rv <= 0)
        return;
    uint8_t enc[PEER_PREAMBLE_MAX];
    if (peer_preamble_encode(&p, enc) != (size_t)rv || memcmp(enc, buf, (size_t)rv) != 0)
        abort();
    for (size_t k = 0; k < (size_t)rv; k++)
        if (peer_preamble_decode(buf, k, &p) != 0)
            abort();
}

/* A decoded proof encodes back to its bytes; no shorter prefix decodes. */
static void check_proof(const uint8_t *buf, size_t size)
{
    struct peer_proof p;
    int rv = peer_proof_decode(buf, size, &p);
    if (rv != 0 && rv != LSKV_ECORRUPT && (rv < PEER_PROOF_FIXED || (size_t)rv > size))
        abort();
    if (rv <= 0)
        return;
    static uint8_t enc[PEER_PROOF_MAX];
    if (peer_proof_encode(p.cert_pem, p.cert_len, p.sig, p.sig_len, enc) != (size_t)rv ||
        memcmp(enc, buf, (size_t)rv) != 0)
        abort();
    for (size_t k = 0; k < (size_t)rv; k += 1 + k / 8)
        if (peer_proof_decode(buf, k, &p) != 0)
            abort();
}

static int feed(struct peer_framer *f, const uint8_t *buf, size_t size, size_t chunk,
                struct sink *s)
{
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        int rv = peer_framer_feed(f, buf + off, n, collect, s);
        if (rv != 0)
            return rv;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t chunk = (size_t)data[0] % 23 + 1;
    data++;
    size--;
    /* exact-size copy so ASan sees any read past the end */
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    check_preamble(copy, size);
    check_proof(copy, size);

    struct peer_framer f1 = {0}, f2 = {0};
    struct sink s1 = {0}, s2 = {0};
    int r1 = feed(&f1, copy, size, size ? size : 1, &s1);
    int r2 = feed(&f2, copy, size, chunk, &s2);
    if (r1 != r2 || (r1 != 0 && r1 != LSKV_ETOOLARGE))
        abort();
    if (s1.len != s2.len || (s1.len > 0 && memcmp(s1.out, s2.out, s1.len) != 0))
        abort();
    /* What was delivered is a prefix of the input, framed as it was. */
    if (s1.len > size || (s1.len > 0 && memcmp(s1.out, copy, s1.len) != 0))
        abort();
    peer_framer_free(&f1);
    peer_framer_free(&f2);
    free(s1.out);
    free(s2.out);
    free(copy);
    return 0;
}
