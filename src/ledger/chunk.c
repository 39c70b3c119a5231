/* Ledger chunk byte formats (see chunk.h and docs/ledger-format.md).
 *
 * Why a CRC when the Merkle tree authenticates everything: the CRC tells a
 * torn or flipped frame apart early, with its byte offset, before signature
 * checks that can only say "the root does not match"; it is not a security
 * control (anyone can recompute it), the tree and the AEAD are. */
#include "ledger/chunk.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "crypto/aead.h"
#include "crypto/hash.h"

uint32_t chunk_crc32c(const uint8_t *buf, size_t len)
{
    return crc32c_update(0, buf, len);
}

const char *chunk_entry_type_name(unsigned type)
{
    switch (type) {
    case CHUNK_ENTRY_KV:
        return "kv";
    case CHUNK_ENTRY_COMPACT:
        return "compact";
    case CHUNK_ENTRY_LEASE:
        return "lease";
    case CHUNK_ENTRY_MEMBER:
        return "member";
    case CHUNK_ENTRY_SIGNATURE:
        return "signature";
    case CHUNK_ENTRY_OTHER:
        return "other";
    }
    return "unknown";
}

/* --- Header ------------------------------------------------------------ */

size_t chunk_header_size(size_t n_peaks)
{
    return 8 + 4 + 8 + 4 + n_peaks * MERKLE_HASH_BYTES + 4;
}

void chunk_header_encode(const struct chunk_header *h, uint8_t *out)
{
    memcpy(out, CHUNK_MAGIC, 8);
    put_u32be(out + 8, CHUNK_FORMAT_VERSION);
    put_u64be(out + 12, h->first_leaf);
    put_u32be(out + 20, (uint32_t)h->n_peaks);
    memcpy(out + 24, h->peaks, h->n_peaks * MERKLE_HASH_BYTES);
    size_t n = 24 + h->n_peaks * MERKLE_HASH_BYTES;
    put_u32be(out + n, chunk_crc32c(out, n));
}

int chunk_header_decode(const uint8_t *buf, size_t len, struct chunk_header *h,
                        size_t *consumed, char *errmsg)
{
    if (len < 24) {
        errmsg_printf(errmsg, "chunk header: %zu bytes, want at least 24", len);
        return LSKV_ECORRUPT;
    }
    if (memcmp(buf, CHUNK_MAGIC, 8) != 0) {
        errmsg_printf(errmsg, "chunk header: bad magic");
        return LSKV_ECORRUPT;
    }
    uint32_t version = get_u32be(buf + 8);
    if (version != CHUNK_FORMAT_VERSION) {
        errmsg_printf(errmsg, "chunk header: format version %" PRIu32 ", want %d", version,
                      CHUNK_FORMAT_VERSION);
        return LSKV_EFORMAT;
    }
    uint64_t first = get_u64be(buf + 12);
    uint32_t n_peaks = get_u32be(buf + 20);
    if (n_peaks != (uint32_t)__builtin_popcountll(first)) {
        errmsg_printf(errmsg, "chunk header: %" PRIu32 " peaks for first leaf %" PRIu64,
                      n_peaks, first);
        return LSKV_ECORRUPT;
    }
    size_t need = chunk_header_size(n_peaks);
    if (len < need) {
        errmsg_printf(errmsg, "chunk header: %zu bytes, want %zu", len, need);
        return LSKV_ECORRUPT;
    }
    if (get_u32be(buf + need - 4) != chunk_crc32c(buf, need - 4)) {
        errmsg_printf(errmsg, "chunk header: checksum mismatch");
        return LSKV_ECORRUPT;
    }
    h->first_leaf = first;
    h->n_peaks = n_peaks;
    memcpy(h->peaks, buf + 24, (size_t)n_peaks * MERKLE_HASH_BYTES);
    *consumed = need;
    return 0;
}

/* --- Entry frames ------------------------------------------------------- */

size_t chunk_entry_size(uint32_t public_len, uint32_t sealed_len)
{
    return 4 + CHUNK_ENTRY_FIXED_BYTES + (size_t)public_len + sealed_len + 4;
}

void chunk_entry_begin(const struct chunk_entry *e, uint8_t *out, size_t *aad_off,
                       size_t *aad_len, size_t *sealed_off)
{
    size_t frame = chunk_entry_size(e->public_len, e->sealed_len);
    put_u32be(out, (uint32_t)(frame - 4));
    uint8_t *b = out + 4;
    b[0] = CHUNK_ENTRY_VERSION;
    b[1] = e->type;
    b[2] = b[3] = 0;
    put_u64be(b + 4, e->term);
    put_u64be(b + 12, e->index);
    put_u64be(b + 20, (uint64_t)e->revision);
    memcpy(b + 28, e->claims_digest, MERKLE_HASH_BYTES);
    memcpy(b + 60, e->commit_evidence_digest, MERKLE_HASH_BYTES);
    put_u32be(b + 92, e->public_len);
    if (e->public_len)
        memcpy(b + 96, e->public_part, e->public_len);
    put_u32be(b + 96 + e->public_len, e->sealed_len);
    size_t off = 4 + 100 + e->public_len;
    if (e->sealed != NULL && e->sealed_len)
        memcpy(out + off, e->sealed, e->sealed_len);
    *aad_off = 4;
    *aad_len = off - 4;
    *sealed_off = off;
}

void chunk_entry_finish(uint8_t *out, size_t frame_len)
{
    put_u32be(out + frame_len - 4, chunk_crc32c(out + 4, frame_len - 8));
}

int chunk_entry_decode(const uint8_t *buf, size_t len, struct chunk_entry *e,
                       bool *truncated, char *errmsg)
{
    *truncated = false;
    if (len < 4) {
        *truncated = true;
        errmsg_printf(errmsg, "entry: file ends inside the length field");
        return LSKV_ECORRUPT;
    }
    uint32_t flen = get_u32be(buf);
    if (flen < CHUNK_ENTRY_FIXED_BYTES + 4 || flen > CHUNK_MAX_FRAME_BYTES) {
        errmsg_printf(errmsg, "entry: frame length %" PRIu32 " out of range", flen);
        return LSKV_ECORRUPT;
    }
    if (len - 4 < flen) {
        *truncated = true;
        errmsg_printf(errmsg, "entry: file ends %zu bytes into a %" PRIu32 "-byte frame",
                      len - 4, flen);
        return LSKV_ECORRUPT;
    }
    const uint8_t *b = buf + 4;
    size_t blen = flen - 4;
    if (get_u32be(b + blen) != chunk_crc32c(b, blen)) {
        errmsg_printf(errmsg, "entry: frame checksum mismatch");
        return LSKV_ECORRUPT;
    }
    if (b[0] != CHUNK_ENTRY_VERSION) {
        errmsg_printf(errmsg, "entry: version %u, want %d", b[0], CHUNK_ENTRY_VERSION);
        return LSKV_EFORMAT;
    }
    if (b[1] < CHUNK_ENTRY_KV || b[1] > CHUNK_ENTRY_OTHER || b[2] || b[3]) {
        errmsg_printf(errmsg, "entry: unknown type %u or flags %u", b[1], b[2] << 8 | b[3]);
        return LSKV_ECORRUPT;
    }
    uint32_t pub = get_u32be(b + 92);
    if (pub > blen - CHUNK_ENTRY_FIXED_BYTES) {
        errmsg_printf(errmsg, "entry: public length %" PRIu32 " exceeds frame", pub);
        return LSKV_ECORRUPT;
    }
    uint32_t priv = get_u32be(b + 96 + pub);
    if ((size_t)priv != blen - CHUNK_ENTRY_FIXED_BYTES - pub ||
        (priv != 0 && priv < AEAD_OVERHEAD)) {
        errmsg_printf(errmsg, "entry: private length %" PRIu32 " does not fit the frame", priv);
        return LSKV_ECORRUPT;
    }
    e->type = b[1];
    e->term = get_u64be(b + 4);
    e->index = get_u64be(b + 12);
    e->revision = (int64_t)get_u64be(b + 20);
    memcpy(e->claims_digest, b + 28, MERKLE_HASH_BYTES);
    memcpy(e->commit_evidence_digest, b + 60, MERKLE_HASH_BYTES);
    e->public_part = b + 96;
    e->public_len = pub;
    e->sealed = b + 100 + pub;
    e->sealed_len = priv;
    e->body = b;
    e->body_len = blen;
    e->aad_len = 100 + (size_t)pub;
    e->frame_len = 4 + (size_t)flen;
    return 0;
}

void chunk_entry_wsd(const struct chunk_entry *e, uint8_t out[MERKLE_HASH_BYTES])
{
    hash_sha256(e->body, e->body_len, out);
}

void chunk_entry_leaf(const struct chunk_entry *e, uint8_t out[MERKLE_HASH_BYTES])
{
    uint8_t wsd[MERKLE_HASH_BYTES];
    chunk_entry_wsd(e, wsd);
    merkle_leaf_hash_ced(wsd, e->commit_evidence_digest, e->claims_digest, out);
}

/* --- Private plaintext -------------------------------------------------- */

size_t chunk_private_size(size_t write_set_len)
{
    return 1 + 4 + write_set_len;
}

void chunk_private_encode(const uint8_t *ws, size_t ws_len, uint8_t *out)
{
    out[0] = CHUNK_PRIVATE_VERSION;
    put_u32be(out + 1, (uint32_t)ws_len);
    if (ws_len)
        memcpy(out + 5, ws, ws_len);
}

int chunk_private_decode(const uint8_t *plain, size_t len, const uint8_t **ws,
                         size_t *ws_len, char *errmsg)
{
    if (len < 1) {
        errmsg_printf(errmsg, "private part: empty");
        return LSKV_ECORRUPT;
    }
    if (plain[0] != CHUNK_PRIVATE_VERSION) {
        errmsg_printf(errmsg, "private part: version %u, want %d", plain[0],
                      CHUNK_PRIVATE_VERSION);
        return LSKV_EFORMAT;
    }
    if (len < 5) {
        errmsg_printf(errmsg, "private part: %zu bytes, too short", len);
        return LSKV_ECORRUPT;
    }
    size_t w = get_u32be(plain + 1);
    if (w != len - 5) {
        errmsg_printf(errmsg, "private part: write set length %zu does not fit the part", w);
        return LSKV_ECORRUPT;
    }
    *ws = plain + 5;
    *ws_len = w;
    return 0;
}

/* --- Names and files ---------------------------------------------------- */

static bool parse_u64(const char **p, uint64_t *out)
{
    const char *s = *p;
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
        return false;
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        s++;
    }
    *p = s;
    *out = v;
    return true;
}

bool chunk_name_parse(const char *name, uint64_t *first, uint64_t *last, bool *committed)
{
    if (strncmp(name, "ledger_", 7) != 0)
        return false;
    const char *p = name + 7;
    if (!parse_u64(&p, first))
        return false;
    if (*p == '\0') {
        *last = 0;
        *committed = false;
        return true;
    }
    if (*p++ != '-' || !parse_u64(&p, last) || strcmp(p, ".committed") != 0 || *last < *first)
        return false;
    *committed = true;
    return true;
}

void chunk_name_format(char out[CHUNK_NAME_MAX], uint64_t first, uint64_t last, bool committed)
{
    if (committed)
        snprintf(out, CHUNK_NAME_MAX, "ledger_%" PRIu64 "-%" PRIu64 ".committed", first, last);
    else
        snprintf(out, CHUNK_NAME_MAX, "ledger_%" PRIu64, first);
}
