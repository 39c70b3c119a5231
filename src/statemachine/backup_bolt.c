/* The bbolt face of a backup: see backup_bolt.h. Page and element layouts
 * are bbolt 1.3's (go.etcd.io/bbolt page.go, db.go). */
#include "statemachine/backup_bolt.h"

#include <inttypes.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"

enum {
    PAGE_HEADER = 16, /* id u64, flags u16, count u16, overflow u32 */
    F_BRANCH = 0x01,
    F_LEAF = 0x02,
    F_META = 0x04,
    F_FREELIST = 0x10,
    BUCKET_LEAF_FLAG = 0x01,
    ELEMENT = 16,     /* leaf: flags, pos, ksize, vsize; branch: pos, ksize, pgid */
    KEY_MAX = 18,     /* revision key, 't' for a tombstone */
    VALUE = 1,
    PER_LEAF = (BOLT_PAGE_BYTES - PAGE_HEADER) / (ELEMENT + KEY_MAX + VALUE),
    PER_BRANCH = (BOLT_PAGE_BYTES - PAGE_HEADER) / (ELEMENT + KEY_MAX),
    ROOT_PAGE = 3,
    TREE_START = 4,
};

#define BOLT_MAGIC 0xED0CDAEDu
#define BOLT_VERSION 2
#define META_SUM_BYTES 56 /* magic .. txid: what the checksum covers */

int backup_bolt_layout(struct backup_bolt *b, const struct bolt_rev *revs, size_t n)
{
    *b = (struct backup_bolt){.revs = revs, .n = n};
    uint64_t count = n == 0 ? 1 : (n + PER_LEAF - 1) / PER_LEAF;
    uint64_t next = TREE_START;
    for (int l = 0;; l++) {
        if (l == 8)
            return LSKV_ETOOLARGE;
        b->start[l] = next;
        b->count[l] = count;
        next += count;
        b->levels = l + 1;
        if (count == 1)
            break;
        count = (count + PER_BRANCH - 1) / PER_BRANCH;
    }
    b->root = next - 1;
    b->pages = next;
    return 0;
}

static size_t rev_key(const struct bolt_rev *r, uint8_t out[KEY_MAX])
{
    put_u64be(out, (uint64_t)r->main);
    out[8] = '_';
    put_u64be(out + 9, (uint64_t)r->sub);
    if (!r->tombstone)
        return 17;
    out[17] = 't';
    return 18;
}

static void page_header(uint8_t *page, uint64_t id, uint16_t flags, uint16_t count)
{
    put_u64le(page, id);
    page[8] = (uint8_t)flags;
    page[9] = (uint8_t)(flags >> 8);
    page[10] = (uint8_t)count;
    page[11] = (uint8_t)(count >> 8);
    put_u32le(page + 12, 0);
}

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void meta_page(const struct backup_bolt *b, uint64_t id, uint8_t *page)
{
    page_header(page, id, F_META, 0);
    uint8_t *m = page + PAGE_HEADER;
    put_u32le(m, BOLT_MAGIC);
    put_u32le(m + 4, BOLT_VERSION);
    put_u32le(m + 8, BOLT_PAGE_BYTES);
    put_u32le(m + 12, 0);
    put_u64le(m + 16, ROOT_PAGE); /* root bucket: root page, sequence */
    put_u64le(m + 24, 0);
    put_u64le(m + 32, 2); /* freelist page */
    put_u64le(m + 40, b->pages);
    put_u64le(m + 48, id); /* txid: meta 1 is the newer, both the same tree */
    put_u64le(m + META_SUM_BYTES, fnv1a64(m, META_SUM_BYTES));
}

/* Leaf elements at the start of the page, their keys and values after
 * them; pos counts from the element. */
static void leaf_page(const struct backup_bolt *b, uint64_t id, uint64_t i, uint8_t *page)
{
    uint64_t first = i * PER_LEAF;
    size_t k = first >= b->n ? 0 : (b->n - first < PER_LEAF ? b->n - first : PER_LEAF);
    page_header(page, id, F_LEAF, (uint16_t)k);
    size_t data = PAGE_HEADER + k * ELEMENT;
    for (size_t j = 0; j < k; j++) {
        uint8_t *e = page + PAGE_HEADER + j * ELEMENT;
        size_t klen = rev_key(&b->revs[first + j], page + data);
        page[data + klen] = 0x00; /* no mvccpb.KeyValue: see the header */
        put_u32le(e, 0);
        put_u32le(e + 4, (uint32_t)(data - (PAGE_HEADER + j * ELEMENT)));
        put_u32le(e + 8, (uint32_t)klen);
        put_u32le(e + 12, VALUE);
        data += klen + VALUE;
    }
}

/* Node i of level l (l > 0): its children are nodes i * PER_BRANCH ... of
 * level l - 1, each keyed by the first revision under it. */
static void branch_page(const struct backup_bolt *b, uint64_t id, int l, uint64_t i,
                        uint8_t *page)
{
    uint64_t child = i * PER_BRANCH;
    uint64_t k = b->count[l - 1] - child < PER_BRANCH ? b->count[l - 1] - child : PER_BRANCH;
    page_header(page, id, F_BRANCH, (uint16_t)k);
    uint64_t leaves_under_child = 1;
    for (int m = 1; m < l; m++)
        leaves_under_child *= PER_BRANCH;
    size_t data = PAGE_HEADER + k * ELEMENT;
    for (uint64_t j = 0; j < k; j++) {
        uint8_t *e = page + PAGE_HEADER + j * ELEMENT;
        uint64_t first = (child + j) * leaves_under_child * PER_LEAF;
        size_t klen = first < b->n ? rev_key(&b->revs[first], page + data) : 0;
        put_u32le(e, (uint32_t)(data - (PAGE_HEADER + j * ELEMENT)));
        put_u32le(e + 4, (uint32_t)klen);
        put_u64le(e + 8, b->start[l - 1] + child + j);
        data += klen;
    }
}

void backup_bolt_page(const struct backup_bolt *b, uint64_t id, uint8_t page[BOLT_PAGE_BYTES])
{
    memset(page, 0, BOLT_PAGE_BYTES);
    if (id < 2) {
        meta_page(b, id, page);
    } else if (id == 2) {
        page_header(page, id, F_FREELIST, 0);
    } else if (id == ROOT_PAGE) {
        static const char name[] = "key";
        page_header(page, id, F_LEAF, 1);
        uint8_t *e = page + PAGE_HEADER;
        put_u32le(e, BUCKET_LEAF_FLAG);
        put_u32le(e + 4, ELEMENT);
        put_u32le(e + 8, 3);
        put_u32le(e + 12, 16);
        memcpy(e + ELEMENT, name, 3);
        put_u64le(e + ELEMENT + 3, b->root); /* the bucket: root page, sequence */
        put_u64le(e + ELEMENT + 11, 0);
    } else {
        for (int l = 0; l < b->levels; l++) {
            if (id >= b->start[l] && id < b->start[l] + b->count[l]) {
                if (l == 0)
                    leaf_page(b, id, id - b->start[0], page);
                else
                    branch_page(b, id, l, id - b->start[l], page);
                return;
            }
        }
    }
}

int backup_bolt_skip(const uint8_t *p, size_t len, uint64_t *offset, char *errmsg)
{
    if (len < BOLT_META_BYTES) {
        errmsg_printf(errmsg, "shorter than a bbolt meta page");
        return LSKV_ECORRUPT;
    }
    const uint8_t *m = p + PAGE_HEADER;
    uint32_t page_size = get_u32le(m + 8);
    uint64_t hwm = get_u64le(m + 40);
    if ((p[8] | p[9] << 8) != F_META || get_u32le(m) != BOLT_MAGIC ||
        get_u32le(m + 4) != BOLT_VERSION) {
        errmsg_printf(errmsg, "not a bbolt meta page");
        return LSKV_ECORRUPT;
    }
    if (get_u64le(m + META_SUM_BYTES) != fnv1a64(m, META_SUM_BYTES)) {
        errmsg_printf(errmsg, "bbolt meta page: bad checksum");
        return LSKV_ECORRUPT;
    }
    if (page_size < 512 || page_size > 65536 || (page_size & (page_size - 1)) != 0 ||
        hwm < TREE_START || hwm > (UINT64_MAX >> 17)) {
        errmsg_printf(errmsg, "bbolt meta page: page size %" PRIu32 ", %" PRIu64 " pages",
                      page_size, hwm);
        return LSKV_ECORRUPT;
    }
    *offset = hwm * page_size;
    return 0;
}
