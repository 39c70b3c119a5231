#include "common/pbdepth.h"

#include <stdbool.h>
#include <stdlib.h>

#include "common/err.h"

struct frame {
    const ProtobufCMessageDescriptor *desc;
    size_t end; /* offset just past this message's bytes */
};

/* A varint at *pos before end; false when truncated or over 10 bytes. */
static bool read_varint(const uint8_t *buf, size_t end, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70 && *pos < end; shift += 7) {
        uint8_t b = buf[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << (shift < 64 ? shift : 0);
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

int pbdepth_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                  unsigned max_depth)
{
    if (max_depth == 0)
        return LSKV_ETOODEEP;
    /* Frames live on the heap: the point is to use no stack per level. */
    struct frame *st = malloc(sizeof *st * max_depth);
    if (st == NULL)
        return LSKV_ENOMEM;
    unsigned n = 1;
    st[0] = (struct frame){desc, len};
    size_t pos = 0;
    int rv = 0;
    while (rv == 0) {
        while (n > 0 && pos == st[n - 1].end)
            n--;
        if (n == 0)
            break;
        size_t end = st[n - 1].end;
        uint64_t tag, v;
        if (!read_varint(buf, end, &pos, &tag))
            break; /* malformed: unpack refuses it */
        switch (tag & 7) {
        case 0:
            if (!read_varint(buf, end, &pos, &v))
                goto malformed;
            continue;
        case 1:
            if (end - pos < 8)
                goto malformed;
            pos += 8;
            continue;
        case 5:
            if (end - pos < 4)
                goto malformed;
            pos += 4;
            continue;
        case 2:
            break;
        default:
            goto malformed; /* groups: protobuf-c refuses them */
        }
        if (!read_varint(buf, end, &pos, &v) || v > end - pos)
            goto malformed;
        const ProtobufCFieldDescriptor *f =
            tag >> 3 > UINT32_MAX
                ? NULL
                : protobuf_c_message_descriptor_get_field(st[n - 1].desc, (unsigned)(tag >> 3));
        if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE) {
            pos += (size_t)v;
            continue;
        }
        if (n == max_depth) {
            rv = LSKV_ETOODEEP;
            break;
        }
        st[n++] = (struct frame){f->descriptor, pos + (size_t)v};
    }
malformed:
    free(st);
    return rv;
}
