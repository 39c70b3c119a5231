#include "consensus/entry.h"

#include <stdint.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"

/* Layout (docs/entry-format.md), big endian:
 *   [0] version  [1] kind  [2] reserved = 0  [3] pad  [4..11] term  [12..19] stamp
 *   [20..] nonce[12] | ciphertext | tag[16], AAD = bytes [0..19]
 *   then pad zero bytes (total length % 8 == 0)
 * The whole header is the AAD, so a flipped header bit fails authentication
 * just like a flipped ciphertext bit; the parse checks come first only so
 * that garbage is reported as garbage without touching OpenSSL. */

static int kind_known(uint8_t kind)
{
    return kind == ENTRY_KIND_COMMAND || kind == ENTRY_KIND_SNAPSHOT;
}

static size_t pad_of(size_t unpadded)
{
    return (8 - unpadded % 8) % 8;
}

size_t entry_sealed_len(size_t plain_len)
{
    if (plain_len > SIZE_MAX - ENTRY_OVERHEAD - 8)
        return 0;
    return plain_len + ENTRY_OVERHEAD + pad_of(plain_len + ENTRY_OVERHEAD);
}

/* Writes the plain header and the padding of an entry into out. */
static int write_frame(const struct entry_header *header, size_t plain_len, uint8_t *out)
{
    if (!kind_known(header->kind) || entry_sealed_len(plain_len) == 0)
        return LSKV_EINVAL;
    size_t pad = pad_of(plain_len + ENTRY_OVERHEAD);
    out[0] = ENTRY_FORMAT_VERSION;
    out[1] = header->kind;
    out[2] = 0;
    out[3] = (uint8_t)pad;
    put_u64be(out + 4, header->term);
    put_u64be(out + 12, header->stamp);
    memset(out + ENTRY_OVERHEAD + plain_len, 0, pad);
    return 0;
}

int entry_seal(const uint8_t key[AEAD_KEY_BYTES], const struct entry_header *header,
               const uint8_t *plain, size_t plain_len, uint8_t *out)
{
    int rv = write_frame(header, plain_len, out);
    if (rv != 0)
        return rv;
    return aead_seal(key, out, ENTRY_HEADER_BYTES, plain, plain_len,
                     out + ENTRY_HEADER_BYTES);
}

int entry_seal_k(aead_key *key, const struct entry_header *header, const uint8_t *plain,
                 size_t plain_len, uint8_t *out)
{
    int rv = write_frame(header, plain_len, out);
    if (rv != 0)
        return rv;
    return aead_key_seal(key, out, ENTRY_HEADER_BYTES, plain, plain_len,
                         out + ENTRY_HEADER_BYTES);
}

int entry_parse(const uint8_t *buf, size_t len, struct entry_header *header,
                size_t *plain_len)
{
    if (len < 1)
        return LSKV_ECORRUPT;
    if (buf[0] != ENTRY_FORMAT_VERSION)
        return buf[0] == 0 ? LSKV_ECORRUPT : LSKV_EFORMAT;
    if (len < ENTRY_OVERHEAD)
        return LSKV_ECORRUPT;
    uint8_t pad = buf[3];
    if (!kind_known(buf[1]) || buf[2] != 0 || pad > 7 || len % 8 != 0 ||
        len < (size_t)ENTRY_OVERHEAD + pad)
        return LSKV_ECORRUPT;
    for (size_t i = len - pad; i < len; i++)
        if (buf[i] != 0)
            return LSKV_ECORRUPT;
    header->kind = buf[1];
    header->term = get_u64be(buf + 4);
    header->stamp = get_u64be(buf + 12);
    *plain_len = len - ENTRY_OVERHEAD - pad;
    return 0;
}

int entry_open(const uint8_t key[AEAD_KEY_BYTES], uint8_t kind, const uint8_t *buf,
               size_t len, struct entry_header *header, uint8_t *out)
{
    /* The raw-key form (tests, tools) is the keyed form with a one-off context. */
    aead_key *k = NULL;
    int rv = aead_key_new(key, &k);
    if (rv != 0)
        return rv;
    rv = entry_open_k(k, kind, buf, len, header, out);
    aead_key_free(k);
    return rv;
}

int entry_open_k(aead_key *key, uint8_t kind, const uint8_t *buf, size_t len,
                 struct entry_header *header, uint8_t *out)
{
    size_t plain_len;
    int rv = entry_parse(buf, len, header, &plain_len);
    if (rv != 0)
        return rv;
    if (header->kind != kind)
        return LSKV_ECORRUPT;
    return aead_key_open(key, buf, ENTRY_HEADER_BYTES, buf + ENTRY_HEADER_BYTES,
                         plain_len + AEAD_OVERHEAD, out);
}
