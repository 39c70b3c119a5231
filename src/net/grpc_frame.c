#include "net/grpc_frame.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "common/hex.h"

void grpc_deframer_init(struct grpc_deframer *d, size_t max_bytes)
{
    memset(d, 0, sizeof *d);
    d->max_bytes = max_bytes;
}

void grpc_deframer_free(struct grpc_deframer *d)
{
    free(d->buf);
    d->buf = NULL;
    d->buf_have = d->buf_cap = 0;
    d->prefix_have = 0;
}

bool grpc_deframer_partial(const struct grpc_deframer *d)
{
    return d->prefix_have > 0;
}

size_t grpc_deframer_buffered(const struct grpc_deframer *d)
{
    return d->buf_cap;
}

/* Grows buf to hold at least need bytes, doubling but never past msg_len, so
 * memory follows the bytes actually received. */
static int reserve(struct grpc_deframer *d, size_t need)
{
    if (need <= d->buf_cap)
        return 0;
    size_t cap = d->buf_cap ? d->buf_cap : 4096;
    while (cap < need)
        cap *= 2;
    if (cap > d->msg_len)
        cap = d->msg_len;
    uint8_t *p = realloc(d->buf, cap);
    if (p == NULL)
        return LSKV_ENOMEM;
    d->buf = p;
    d->buf_cap = cap;
    return 0;
}

int grpc_deframer_push(struct grpc_deframer *d, const uint8_t *data, size_t len,
                       grpc_deframer_cb cb, void *arg)
{
    while (len > 0) {
        if (d->prefix_have < GRPC_FRAME_PREFIX_BYTES) {
            size_t n = GRPC_FRAME_PREFIX_BYTES - d->prefix_have;
            if (n > len)
                n = len;
            memcpy(d->prefix + d->prefix_have, data, n);
            d->prefix_have += n;
            data += n;
            len -= n;
            if (d->prefix_have < GRPC_FRAME_PREFIX_BYTES)
                return 0;
            if (d->prefix[0] == 1)
                return LSKV_EUNIMPLEMENTED;
            if (d->prefix[0] != 0)
                return LSKV_ECORRUPT;
            d->msg_len = get_u32be(d->prefix + 1);
            if (d->msg_len > d->max_bytes) {
                d->too_large_len = d->msg_len;
                return LSKV_ETOOLARGE;
            }
            d->buf_have = 0;
        }
        size_t want = d->msg_len - d->buf_have;
        if (want > 0 && len == 0)
            return 0;
        const uint8_t *msg;
        if (d->buf_have == 0 && len >= want) {
            /* The whole body is here: hand it over without a copy. */
            msg = data;
        } else {
            size_t n = want < len ? want : len;
            int rv = reserve(d, d->buf_have + n);
            if (rv != 0)
                return rv;
            memcpy(d->buf + d->buf_have, data, n);
            d->buf_have += n;
            data += n;
            len -= n;
            if (d->buf_have < d->msg_len)
                return 0;
            msg = d->buf;
            want = 0;
        }
        data += want;
        len -= want;
        d->prefix_have = 0;
        size_t mlen = d->msg_len;
        d->buf_have = 0;
        int rv = cb(arg, mlen ? msg : (const uint8_t *)"", mlen);
        /* Drop big buffers between messages; keep a small one for reuse. */
        if (d->buf_cap > 65536) {
            free(d->buf);
            d->buf = NULL;
            d->buf_cap = 0;
        }
        if (rv != 0)
            return rv;
    }
    return 0;
}

void grpc_frame_prefix(uint8_t out[GRPC_FRAME_PREFIX_BYTES], uint32_t len)
{
    out[0] = 0;
    put_u32be(out + 1, len);
}

void grpc_frame_too_large_text(char *out, size_t cap, uint64_t len, size_t max_bytes)
{
    snprintf(out, cap, "grpc: received message larger than max (%" PRIu64 " vs. %zu)", len,
             max_bytes);
}

char *grpc_frame_percent_encode(const char *msg)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(msg);
    char *out = malloc(3 * n + 1);
    if (out == NULL)
        return NULL;
    char *p = out;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)msg[i];
        if (c >= 0x20 && c <= 0x7e && c != '%') {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    *p = '\0';
    return out;
}

void grpc_frame_percent_decode(const char *in, char *out)
{
    while (*in) {
        int hi, lo;
        if (in[0] == '%' && (hi = hex_digit(in[1])) >= 0 && (lo = hex_digit(in[2])) >= 0) {
            *out++ = (char)(hi * 16 + lo);
            in += 3;
        } else {
            *out++ = *in++;
        }
    }
    *out = '\0';
}

int grpc_timeout_parse(const uint8_t *v, size_t len, int64_t *out_ns)
{
    if (len < 2 || len > 9)
        return LSKV_EINVAL;
    int64_t unit;
    switch (v[len - 1]) {
    case 'H': unit = 3600000000000LL; break;
    case 'M': unit = 60000000000LL; break;
    case 'S': unit = 1000000000LL; break;
    case 'm': unit = 1000000LL; break;
    case 'u': unit = 1000LL; break;
    case 'n': unit = 1LL; break;
    default: return LSKV_EINVAL;
    }
    /* strconv.ParseInt(s, 10, 64): an optional sign, then digits. */
    size_t i = 0, end = len - 1;
    bool neg = false;
    if (v[0] == '+' || v[0] == '-') {
        neg = v[0] == '-';
        i = 1;
    }
    if (i == end)
        return LSKV_EINVAL;
    int64_t n = 0; /* at most 8 digits: no overflow */
    for (; i < end; i++) {
        if (v[i] < '0' || v[i] > '9')
            return LSKV_EINVAL;
        n = n * 10 + (v[i] - '0');
    }
    if (n > INT64_MAX / unit)
        *out_ns = neg ? INT64_MIN : INT64_MAX;
    else
        *out_ns = neg ? -n * unit : n * unit;
    return 0;
}
