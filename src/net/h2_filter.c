#include "net/h2_filter.h"

#include <string.h>

#include "common/bytes.h"

void h2_filter_init(struct h2_filter *f)
{
    memset(f, 0, sizeof *f);
}

struct frame_head {
    uint32_t length;
    uint8_t type;
    uint32_t stream_id;
};

static struct frame_head parse_head(const uint8_t *p)
{
    struct frame_head h;
    h.length = ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2];
    h.type = p[3];
    h.stream_id = get_u32be(p + 5) & 0x7fffffffu; /* without the reserved bit */
    return h;
}

static bool is_candidate(const struct frame_head *h)
{
    return h->type == H2_FILTER_TYPE_RST_STREAM && h->length == H2_FILTER_RST_STREAM_LENGTH &&
           h->stream_id != 0;
}

static int pass(const struct h2_filter_ops *ops, void *ud, const uint8_t *p, size_t n)
{
    return n > 0 ? ops->pass(ud, p, n) : 0;
}

int h2_filter_feed(struct h2_filter *f, const uint8_t *data, size_t len,
                   const struct h2_filter_ops *ops, void *ud)
{
    size_t i = 0;
    size_t run = 0; /* start of the bytes not yet passed (data[run..i) pass) */
    int rv;
    while (i < len) {
        if (f->payload_left > 0) {
            size_t n = len - i < f->payload_left ? len - i : f->payload_left;
            f->payload_left -= (uint32_t)n;
            if (f->dropping) {
                if ((rv = pass(ops, ud, data + run, i - run)) != 0)
                    return rv;
                run = i + n;
            }
            i += n;
            continue;
        }
        /* At a frame header. */
        struct frame_head h;
        if (f->hdr_have > 0 || len - i < H2_FILTER_HEADER_BYTES) {
            /* Split across chunks: hold it until complete. */
            if ((rv = pass(ops, ud, data + run, i - run)) != 0)
                return rv;
            size_t n = H2_FILTER_HEADER_BYTES - f->hdr_have;
            if (n > len - i)
                n = len - i;
            memcpy(f->hdr + f->hdr_have, data + i, n);
            f->hdr_have += n;
            i += n;
            run = i;
            if (f->hdr_have < H2_FILTER_HEADER_BYTES)
                break;
            f->hdr_have = 0;
            h = parse_head(f->hdr);
            f->payload_left = h.length;
            f->dropping = is_candidate(&h) && ops->is_idle(ud, h.stream_id);
            if (f->dropping)
                f->dropped_frames++;
            else if ((rv = ops->pass(ud, f->hdr, H2_FILTER_HEADER_BYTES)) != 0)
                return rv;
            continue;
        }
        h = parse_head(data + i);
        f->payload_left = h.length;
        f->dropping = false;
        if (is_candidate(&h)) {
            if ((rv = pass(ops, ud, data + run, i - run)) != 0)
                return rv;
            run = i;
            if (ops->is_idle(ud, h.stream_id)) {
                f->dropping = true;
                f->dropped_frames++;
                run = i + H2_FILTER_HEADER_BYTES;
            }
        }
        i += H2_FILTER_HEADER_BYTES;
    }
    return pass(ops, ud, data + run, len - run);
}
