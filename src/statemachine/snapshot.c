#include "statemachine/snapshot.h"

#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"

static const uint8_t MAGIC[8] = {'L', 'S', 'K', 'V', 'S', 'M', 'S', 'N'};
#define HEAD_BYTES 16    /* magic, version, count */
#define SECTION_HEAD 12  /* id, length */

int sm_snapshot_encode(const struct sm_sections *s, uint8_t **out, size_t *out_len)
{
    size_t total = HEAD_BYTES;
    uint32_t n = 0;
    for (unsigned id = 1; id <= SM_SECTION_MAX; id++) {
        if (s->data[id] == NULL)
            continue;
        total += SECTION_HEAD + s->len[id];
        n++;
    }
    uint8_t *buf = malloc(total);
    if (buf == NULL)
        return LSKV_ENOMEM;
    memcpy(buf, MAGIC, 8);
    put_u32be(buf + 8, SM_SNAPSHOT_VERSION);
    put_u32be(buf + 12, n);
    size_t off = HEAD_BYTES;
    for (unsigned id = 1; id <= SM_SECTION_MAX; id++) {
        if (s->data[id] == NULL)
            continue;
        put_u32be(buf + off, id);
        put_u64be(buf + off + 4, s->len[id]);
        if (s->len[id])
            memcpy(buf + off + SECTION_HEAD, s->data[id], s->len[id]);
        off += SECTION_HEAD + s->len[id];
    }
    *out = buf;
    *out_len = total;
    return 0;
}

int sm_snapshot_decode(const uint8_t *buf, size_t len, struct sm_sections *out)
{
    memset(out, 0, sizeof *out);
    if (len < HEAD_BYTES || memcmp(buf, MAGIC, 8) != 0)
        return LSKV_ECORRUPT;
    if (get_u32be(buf + 8) != SM_SNAPSHOT_VERSION)
        return LSKV_EFORMAT;
    uint32_t n = get_u32be(buf + 12);
    size_t off = HEAD_BYTES;
    uint32_t last = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (len - off < SECTION_HEAD)
            return LSKV_ECORRUPT;
        uint32_t id = get_u32be(buf + off);
        uint64_t slen = get_u64be(buf + off + 4);
        off += SECTION_HEAD;
        if (id <= last || slen > len - off)
            return LSKV_ECORRUPT;
        if (id > SM_SECTION_MAX)
            return LSKV_EFORMAT;
        out->data[id] = buf + off;
        out->len[id] = (size_t)slen;
        off += (size_t)slen;
        last = id;
    }
    return off == len ? 0 : LSKV_ECORRUPT;
}
