#include "net/peer_wire.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"

static const uint8_t magic[4] = {'L', 'S', 'K', 'P'};
enum { WIRE_VERSION = 2 };

static void put_u16be(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get_u16be(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

size_t peer_preamble_encode(const struct peer_preamble *p, uint8_t out[PEER_PREAMBLE_MAX])
{
    size_t alen = strlen(p->address);
    memcpy(out, magic, sizeof magic);
    out[4] = WIRE_VERSION;
    out[5] = p->channel;
    put_u64be(out + 6, p->raft_id);
    put_u64be(out + 14, p->incarnation);
    put_u16be(out + 22, (uint16_t)alen);
    memcpy(out + PEER_PREAMBLE_FIXED, p->address, alen);
    return PEER_PREAMBLE_FIXED + alen;
}

int peer_preamble_decode(const uint8_t *buf, size_t len, struct peer_preamble *out)
{
    /* Check what has arrived as it arrives, so junk fails at once. */
    size_t m = len < sizeof magic ? len : sizeof magic;
    if (memcmp(buf, magic, m) != 0)
        return LSKV_ECORRUPT;
    if (len > 4 && buf[4] != WIRE_VERSION)
        return LSKV_ECORRUPT;
    if (len > 5 && (buf[5] < PEER_RAFT || buf[5] > PEER_PROBE))
        return LSKV_ECORRUPT;
    if (len < PEER_PREAMBLE_FIXED)
        return 0;
    uint8_t channel = buf[5];
    uint64_t id = get_u64be(buf + 6);
    uint64_t incarnation = get_u64be(buf + 14);
    size_t alen = get_u16be(buf + 22);
    bool raft = channel == PEER_RAFT;
    if ((id != 0) != raft || (alen != 0) != raft || alen > PEER_ADDRESS_MAX || incarnation == 0)
        return LSKV_ECORRUPT;
    size_t have = len - PEER_PREAMBLE_FIXED < alen ? len - PEER_PREAMBLE_FIXED : alen;
    if (memchr(buf + PEER_PREAMBLE_FIXED, '\0', have) != NULL)
        return LSKV_ECORRUPT;
    if (have < alen)
        return 0;
    out->channel = channel;
    out->raft_id = id;
    out->incarnation = incarnation;
    memcpy(out->address, buf + PEER_PREAMBLE_FIXED, alen);
    out->address[alen] = '\0';
    return (int)(PEER_PREAMBLE_FIXED + alen);
}

static const uint8_t proof_magic[4] = {'L', 'S', 'K', 'I'};
#define PROOF_VERSION 1

size_t peer_proof_encode(const uint8_t *cert_pem, size_t cert_len, const uint8_t *sig,
                         size_t sig_len, uint8_t out[PEER_PROOF_MAX])
{
    if (cert_len == 0 || cert_len > PEER_PROOF_CERT_MAX || sig_len == 0 ||
        sig_len > PEER_PROOF_SIG_MAX)
        return 0;
    memcpy(out, proof_magic, 4);
    out[4] = PROOF_VERSION;
    put_u32be(out + 5, (uint32_t)cert_len);
    memcpy(out + PEER_PROOF_FIXED, cert_pem, cert_len);
    put_u16be(out + PEER_PROOF_FIXED + cert_len, (uint16_t)sig_len);
    memcpy(out + PEER_PROOF_FIXED + cert_len + 2, sig, sig_len);
    return PEER_PROOF_FIXED + cert_len + 2 + sig_len;
}

int peer_proof_decode(const uint8_t *buf, size_t len, struct peer_proof *out)
{
    size_t m = len < sizeof proof_magic ? len : sizeof proof_magic;
    if (memcmp(buf, proof_magic, m) != 0)
        return LSKV_ECORRUPT;
    if (len > 4 && buf[4] != PROOF_VERSION)
        return LSKV_ECORRUPT;
    if (len < PEER_PROOF_FIXED)
        return 0;
    size_t clen = get_u32be(buf + 5);
    if (clen == 0 || clen > PEER_PROOF_CERT_MAX)
        return LSKV_ECORRUPT;
    if (len < PEER_PROOF_FIXED + clen + 2)
        return 0;
    size_t slen = get_u16be(buf + PEER_PROOF_FIXED + clen);
    if (slen == 0 || slen > PEER_PROOF_SIG_MAX)
        return LSKV_ECORRUPT;
    size_t total = PEER_PROOF_FIXED + clen + 2 + slen;
    if (len < total)
        return 0;
    out->cert_pem = buf + PEER_PROOF_FIXED;
    out->cert_len = clen;
    out->sig = buf + PEER_PROOF_FIXED + clen + 2;
    out->sig_len = slen;
    return (int)total;
}

void peer_proof_message(bool server, const uint8_t exporter[PEER_EXPORTER_BYTES],
                        uint8_t out[PEER_PROOF_MESSAGE_BYTES])
{
    memcpy(out, "lskv-peer-proof-v1", 19); /* with its NUL: a fixed 19 bytes */
    out[19] = server ? 1 : 0;
    memcpy(out + 20, exporter, PEER_EXPORTER_BYTES);
}

void peer_frame_header(size_t len, uint8_t out[PEER_FRAME_HEADER])
{
    put_u32be(out, (uint32_t)len);
}

/* Room for want bytes in f->buf, grown geometrically with what arrived so a
 * peer announcing 64 MiB and sending little costs little. */
static int reserve(struct peer_framer *f, size_t need)
{
    if (need <= f->cap)
        return 0;
    size_t cap = f->cap ? f->cap : 4096;
    while (cap < need)
        cap *= 2;
    if (cap > f->want)
        cap = f->want;
    uint8_t *p = realloc(f->buf, cap);
    if (p == NULL)
        return LSKV_ENOMEM;
    f->buf = p;
    f->cap = cap;
    return 0;
}

int peer_framer_feed(struct peer_framer *f, const uint8_t *data, size_t len,
                     peer_framer_cb cb, void *arg)
{
    while (len > 0) {
        if (f->header_len < PEER_FRAME_HEADER) {
            size_t n = PEER_FRAME_HEADER - f->header_len;
            if (n > len)
                n = len;
            memcpy(f->header + f->header_len, data, n);
            f->header_len += n;
            data += n;
            len -= n;
            if (f->header_len < PEER_FRAME_HEADER)
                return 0;
            f->want = get_u32be(f->header);
            f->got = 0;
            if (f->want > PEER_MAX_MESSAGE)
                return LSKV_ETOOLARGE;
        }
        const uint8_t *msg;
        if (f->got == 0 && len >= f->want) {
            msg = data; /* whole message in this feed: no copy */
            data += f->want;
            len -= f->want;
        } else {
            size_t n = f->want - f->got;
            if (n > len)
                n = len;
            int rv = reserve(f, f->got + n);
            if (rv != 0)
                return rv;
            if (n > 0)
                memcpy(f->buf + f->got, data, n);
            f->got += n;
            data += n;
            len -= n;
            if (f->got < f->want)
                return 0;
            msg = f->buf;
        }
        size_t mlen = f->want;
        f->header_len = 0;
        f->got = f->want = 0;
        int rv = cb(arg, msg, mlen);
        if (msg == f->buf && f->cap > (1u << 20)) {
            /* Do not keep a large message's buffer for the link's life. */
            free(f->buf);
            f->buf = NULL;
            f->cap = 0;
        }
        if (rv != 0)
            return rv;
    }
    return 0;
}

void peer_framer_free(struct peer_framer *f)
{
    free(f->buf);
    f->buf = NULL;
    f->cap = 0;
}
