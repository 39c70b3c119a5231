#include "consensus/entry.h"

#include <stdint.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "crypto/hash.h"

/* Layout: consensus/entry.h and docs/entry-format.md. AAD = the whole header
 * || u64be cluster id, so a flipped header bit fails authentication just
 * like a flipped ciphertext bit; the parse checks come first only so that
 * garbage is reported as garbage without touching OpenSSL. */

#define AAD_BYTES (ENTRY_HEADER_BYTES + 8)

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

static void make_aad(const uint8_t *header, uint64_t cluster_id, uint8_t aad[AAD_BYTES])
{
    memcpy(aad, header, ENTRY_HEADER_BYTES);
    put_u64be(aad + ENTRY_HEADER_BYTES, cluster_id);
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
    put_u32be(out + 4, header->key_id);
    put_u64be(out + 8, header->term);
    put_u64be(out + 16, header->index);
    put_u64be(out + 24, header->stamp);
    memcpy(out + 32, header->chain, ENTRY_CHAIN_BYTES);
    memset(out + ENTRY_OVERHEAD + plain_len, 0, pad);
    return 0;
}

int entry_seal(const uint8_t key[AEAD_KEY_BYTES], uint64_t cluster_id,
               const struct entry_header *header, const uint8_t *plain, size_t plain_len,
               uint8_t *out)
{
    /* The raw-key form (tests, tools) is the keyed form with a one-off context. */
    aead_key *k = NULL;
    int rv = aead_key_new(key, &k);
    if (rv != 0)
        return rv;
    rv = entry_seal_k(k, cluster_id, header, plain, plain_len, out);
    aead_key_free(k);
    return rv;
}

int entry_seal_k(aead_key *key, uint64_t cluster_id, const struct entry_header *header,
                 const uint8_t *plain, size_t plain_len, uint8_t *out)
{
    int rv = write_frame(header, plain_len, out);
    if (rv != 0)
        return rv;
    uint8_t aad[AAD_BYTES];
    make_aad(out, cluster_id, aad);
    return aead_key_seal(key, aad, sizeof aad, plain, plain_len, out + ENTRY_HEADER_BYTES);
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
    if (!kind_known(buf[1]) || buf[2] != 0 || pad > 7 ||
        len % 8 != 0 || len < (size_t)ENTRY_OVERHEAD + pad)
        return LSKV_ECORRUPT;
    for (size_t i = len - pad; i < len; i++)
        if (buf[i] != 0)
            return LSKV_ECORRUPT;
    header->kind = buf[1];
    header->key_id = get_u32be(buf + 4);
    header->term = get_u64be(buf + 8);
    header->index = get_u64be(buf + 16);
    header->stamp = get_u64be(buf + 24);
    memcpy(header->chain, buf + 32, ENTRY_CHAIN_BYTES);
    *plain_len = len - ENTRY_OVERHEAD - pad;
    return 0;
}

int entry_open(const uint8_t key[AEAD_KEY_BYTES], uint64_t cluster_id, uint8_t kind,
               const uint8_t *buf, size_t len, struct entry_header *header, uint8_t *out)
{
    aead_key *k = NULL;
    int rv = aead_key_new(key, &k);
    if (rv != 0)
        return rv;
    rv = entry_open_k(k, cluster_id, kind, buf, len, header, out);
    aead_key_free(k);
    return rv;
}

int entry_open_k(aead_key *key, uint64_t cluster_id, uint8_t kind, const uint8_t *buf,
                 size_t len, struct entry_header *header, uint8_t *out)
{
    size_t plain_len;
    int rv = entry_parse(buf, len, header, &plain_len);
    if (rv != 0)
        return rv;
    if (header->kind != kind)
        return LSKV_ECORRUPT;
    uint8_t aad[AAD_BYTES];
    make_aad(buf, cluster_id, aad);
    return aead_key_open(key, aad, sizeof aad, buf + ENTRY_HEADER_BYTES,
                         plain_len + AEAD_OVERHEAD, out);
}

const char *entry_misplaced(const struct entry_header *h, uint64_t index,
                            const struct entry_place *place)
{
    if (h->kind != ENTRY_KIND_COMMAND)
        return "not a command entry";
    if (h->index != index)
        return "it was sealed for another index (duplicated or moved)";
    if (memcmp(h->chain, place->chain, ENTRY_CHAIN_BYTES) != 0)
        return "it does not follow the entry before it (entries dropped, reordered or "
               "spliced from another log)";
    if (h->term < place->term)
        return "its term is below the term of the entry before it";
    return NULL;
}

void entry_place_advance(struct entry_place *place, const struct entry_header *h,
                         const uint8_t *buf, size_t len)
{
    entry_chain_next(place->chain, buf, len, place->chain);
    place->term = h->term;
}

void entry_chain_next(const uint8_t prev[ENTRY_CHAIN_BYTES], const uint8_t *buf, size_t len,
                      uint8_t out[ENTRY_CHAIN_BYTES])
{
    static const char label[] = "lskv-raft-chain-v1";
    uint8_t m[sizeof label - 1 + ENTRY_CHAIN_BYTES + ENTRY_HEADER_BYTES + AEAD_TAG_BYTES];
    size_t pad = buf[3];
    memcpy(m, label, sizeof label - 1);
    memcpy(m + sizeof label - 1, prev, ENTRY_CHAIN_BYTES);
    memcpy(m + sizeof label - 1 + ENTRY_CHAIN_BYTES, buf, ENTRY_HEADER_BYTES);
    memcpy(m + sizeof label - 1 + ENTRY_CHAIN_BYTES + ENTRY_HEADER_BYTES,
           buf + len - pad - AEAD_TAG_BYTES, AEAD_TAG_BYTES);
    hash_sha256(m, sizeof m, out);
}
