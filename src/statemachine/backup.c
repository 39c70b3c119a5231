/* See backup.h and docs/backup-format.md.
 *
 * Items inside the frames (a frame holds whole items):
 *   0x01 snapshot piece: u32 n (1..BACKUP_PIECE_MAX) | n bytes
 *   0x02 record: i64 main | i64 sub | u8 tombstone | i64 create | i64 version
 *               | i64 lease | u32 key_len | key | u32 value_len | value
 *   0x03 end: i64 revision | u64 records | u64 snapshot bytes
 * Pieces come first; the records follow in backup_cursor order and must be
 * exactly the revisions the snapshot's index names; end is the last item of
 * the last frame. */
#include "statemachine/backup.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "crypto/aead.h"
#include "crypto/hash.h"
#include "crypto/keyring.h"
#include "crypto/mac.h"
#include "kv/index.h"
#include "kv/kvstore.h"
#include "statemachine/snapshot.h"

#define MAGIC "LSKVBKUP"
#define KEY_PURPOSE "backup"
#define KEY_LABEL "lskv-backup-v1"
#define FRAME_HEADER_BYTES 5
#define FLAG_LAST 1u
#define ITEM_PIECE 1
#define ITEM_RECORD 2
#define ITEM_END 3
#define RECORD_FIXED_BYTES 50 /* type .. key_len, value_len */
#define END_BYTES 25
#define AAD_BYTES (BACKUP_HEADER_BYTES + 9)

static int derive_key(const uint8_t data_key[BACKUP_KEY_BYTES], const uint8_t *salt,
                      uint8_t out[BACKUP_KEY_BYTES])
{
    uint8_t k[AEAD_KEY_BYTES];
    uint8_t msg[sizeof KEY_LABEL - 1 + BACKUP_SALT_BYTES];
    int rv = keyring_derive(data_key, KEY_PURPOSE, 0, k);
    if (rv == 0) {
        memcpy(msg, KEY_LABEL, sizeof KEY_LABEL - 1);
        memcpy(msg + sizeof KEY_LABEL - 1, salt, BACKUP_SALT_BYTES);
        rv = mac_hmac_sha256(k, sizeof k, msg, sizeof msg, out);
    }
    explicit_bzero(k, sizeof k);
    return rv;
}

static void frame_nonce_aad(const uint8_t *header, uint64_t index, uint8_t flags,
                            uint8_t nonce[AEAD_NONCE_BYTES], uint8_t aad[AAD_BYTES])
{
    memset(nonce, 0, AEAD_NONCE_BYTES);
    put_u64be(nonce + 4, index);
    memcpy(aad, header, BACKUP_HEADER_BYTES);
    put_u64be(aad + BACKUP_HEADER_BYTES, index);
    aad[BACKUP_HEADER_BYTES + 8] = flags;
}

/* --- Cursor ----------------------------------------------------------------- */

static int collect(void *arg, const kvindex_entry *e, struct kvindex_rev rev, bool tombstone)
{
    (void)e;
    struct backup_cursor *c = arg;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct backup_rev *r = realloc(c->revs, cap * sizeof *r);
        if (r == NULL)
            return LSKV_ENOMEM;
        c->revs = r;
        c->cap = cap;
    }
    c->revs[c->n++] = (struct backup_rev){rev.main, rev.sub, tombstone};
    return 0;
}

int backup_cursor_open(struct backup_cursor *c, const uint8_t *sm, size_t len, char *errmsg)
{
    *c = (struct backup_cursor){0};
    struct sm_sections s;
    int rv = sm_snapshot_decode(sm, len, &s);
    if (rv != 0) {
        errmsg_printf(errmsg, "state machine snapshot: %s", lskv_strerror(rv));
        return rv;
    }
    if (s.data[SM_SECTION_KV] == NULL || s.data[SM_SECTION_POSITION] == NULL) {
        errmsg_printf(errmsg, "state machine snapshot: no KV or POSITION section");
        return LSKV_ECORRUPT;
    }
    if ((rv = kvstore_snapshot_index(s.data[SM_SECTION_KV], s.len[SM_SECTION_KV], &c->ix,
                                     &c->revision)) != 0) {
        errmsg_printf(errmsg, "the snapshot's key index: %s", lskv_strerror(rv));
        return rv;
    }
    c->e = kvindex_seek(c->ix, NULL, 0);
    return 0;
}

void backup_cursor_close(struct backup_cursor *c)
{
    kvindex_free(c->ix);
    free(c->revs);
    *c = (struct backup_cursor){0};
}

bool backup_cursor_next(struct backup_cursor *c, struct backup_rev *rev, const uint8_t **key,
                        size_t *key_len, int *rv)
{
    *rv = 0;
    while (c->e != NULL && c->i == c->n) {
        if (c->n > 0) { /* this key is done: the next one */
            c->e = kvindex_next(c->e);
            c->n = c->i = 0;
            continue;
        }
        if ((*rv = kvindex_entry_since(c->e, 0, collect, c)) != 0)
            return false;
        if (c->n == 0) /* cannot happen (invariant 3); skip it all the same */
            c->e = kvindex_next(c->e);
    }
    if (c->e == NULL)
        return false;
    *rev = c->revs[c->i++];
    *key = kvindex_entry_key(c->e, key_len);
    return true;
}

/* --- Writer ----------------------------------------------------------------- */

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static int buf_reserve(struct buf *b, size_t more)
{
    if (b->cap - b->len >= more)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL)
        return LSKV_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

struct backup_writer {
    aead_key *key;
    uint8_t header[BACKUP_HEADER_BYTES];
    struct buf plain; /* items of the frame being filled (wiped) */
    struct buf out;   /* output not yet consumed; out_start bytes of it were */
    size_t out_start;
    uint64_t total;   /* bytes produced */
    uint64_t frames;
    uint64_t records;
    uint64_t sm_bytes;
    bool have_sm, have_record, ended;
    int64_t last_main, last_sub;
    struct hash_sha256_stream sha;
    /* The bbolt face (backup_bolt.h), output before everything else: a
     * chunk of its pages at a time, from page bolt_next on. */
    const struct backup_bolt *bolt;
    uint64_t bolt_next;
    uint8_t chunk[BOLT_CHUNK_PAGES * BOLT_PAGE_BYTES];
    size_t chunk_len, chunk_start;
};

/* The next chunk of the bbolt pages, or none once they are all out. */
static void bolt_chunk(backup_writer *w)
{
    w->chunk_len = w->chunk_start = 0;
    while (w->bolt != NULL && w->bolt_next < w->bolt->pages &&
           w->chunk_len < sizeof w->chunk) {
        backup_bolt_page(w->bolt, w->bolt_next++, w->chunk + w->chunk_len);
        w->chunk_len += BOLT_PAGE_BYTES;
    }
}

static int emit(backup_writer *w, const uint8_t *p, size_t n)
{
    if (w->out_start > 0 && w->out_start == w->out.len)
        w->out.len = w->out_start = 0;
    int rv = buf_reserve(&w->out, n);
    if (rv != 0)
        return rv;
    memcpy(w->out.p + w->out.len, p, n);
    w->out.len += n;
    w->total += n;
    hash_sha256_add(&w->sha, p, n);
    return 0;
}

static int seal_frame(backup_writer *w, uint8_t flags)
{
    size_t n = w->plain.len + AEAD_OVERHEAD;
    uint8_t fh[FRAME_HEADER_BYTES];
    fh[0] = flags;
    put_u32be(fh + 1, (uint32_t)n);
    uint8_t nonce[AEAD_NONCE_BYTES], aad[AAD_BYTES];
    frame_nonce_aad(w->header, w->frames, flags, nonce, aad);
    int rv = emit(w, fh, sizeof fh);
    if (rv != 0 || (rv = buf_reserve(&w->out, n)) != 0)
        return rv;
    uint8_t *dst = w->out.p + w->out.len;
    if ((rv = aead_key_seal_with_nonce(w->key, nonce, aad, sizeof aad, w->plain.p,
                                       w->plain.len, dst)) != 0)
        return rv;
    w->out.len += n;
    w->total += n;
    hash_sha256_add(&w->sha, dst, n);
    explicit_bzero(w->plain.p, w->plain.len);
    w->plain.len = 0;
    w->frames++;
    return 0;
}

/* Makes room for an item of n bytes, sealing the frame when it is full. */
static int item_room(backup_writer *w, size_t n)
{
    if (w->plain.len > 0 && w->plain.len + n > BACKUP_FRAME_TARGET) {
        int rv = seal_frame(w, 0);
        if (rv != 0)
            return rv;
    }
    /* Grow by hand so that no plaintext is left behind by realloc. */
    if (w->plain.cap - w->plain.len < n) {
        size_t cap = w->plain.cap ? w->plain.cap : BACKUP_FRAME_TARGET;
        while (cap - w->plain.len < n)
            cap *= 2;
        uint8_t *p = malloc(cap);
        if (p == NULL)
            return LSKV_ENOMEM;
        if (w->plain.len > 0)
            memcpy(p, w->plain.p, w->plain.len);
        if (w->plain.p != NULL)
            explicit_bzero(w->plain.p, w->plain.cap);
        free(w->plain.p);
        w->plain.p = p;
        w->plain.cap = cap;
    }
    return 0;
}

int backup_writer_new(const uint8_t data_key[BACKUP_KEY_BYTES],
                      const uint8_t salt[BACKUP_SALT_BYTES], uint64_t cluster_id,
                      uint64_t member_id, const struct backup_bolt *bolt, backup_writer **out)
{
    backup_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return LSKV_ENOMEM;
    uint8_t k[BACKUP_KEY_BYTES];
    int rv = derive_key(data_key, salt, k);
    if (rv == 0)
        rv = aead_key_new(k, &w->key);
    explicit_bzero(k, sizeof k);
    if (rv != 0) {
        free(w);
        return rv;
    }
    memcpy(w->header, MAGIC, 8);
    put_u32be(w->header + 8, BACKUP_FORMAT_VERSION);
    put_u32be(w->header + 12, 0);
    put_u64be(w->header + 16, cluster_id);
    put_u64be(w->header + 24, member_id);
    memcpy(w->header + 32, salt, BACKUP_SALT_BYTES);
    hash_sha256_begin(&w->sha);
    /* The trailer covers the pages too: hashed now, made again as they go. */
    for (uint64_t id = 0; bolt != NULL && id < bolt->pages; id++) {
        backup_bolt_page(bolt, id, w->chunk);
        hash_sha256_add(&w->sha, w->chunk, BOLT_PAGE_BYTES);
        w->total += BOLT_PAGE_BYTES;
    }
    w->bolt = bolt;
    bolt_chunk(w);
    if ((rv = emit(w, w->header, sizeof w->header)) != 0) {
        backup_writer_free(w);
        return rv;
    }
    *out = w;
    return 0;
}

void backup_writer_free(backup_writer *w)
{
    if (w == NULL)
        return;
    aead_key_free(w->key);
    if (w->plain.p != NULL)
        explicit_bzero(w->plain.p, w->plain.cap);
    free(w->plain.p);
    free(w->out.p);
    free(w);
}

int backup_writer_sm(backup_writer *w, const uint8_t *buf, size_t len)
{
    if (w->have_sm || w->have_record || w->ended || len == 0)
        return LSKV_EINVAL;
    for (size_t off = 0; off < len;) {
        size_t n = len - off < BACKUP_PIECE_MAX ? len - off : BACKUP_PIECE_MAX;
        int rv = item_room(w, 5 + n);
        if (rv != 0)
            return rv;
        uint8_t *p = w->plain.p + w->plain.len;
        p[0] = ITEM_PIECE;
        put_u32be(p + 1, (uint32_t)n);
        memcpy(p + 5, buf + off, n);
        w->plain.len += 5 + n;
        off += n;
    }
    w->have_sm = true;
    w->sm_bytes = len;
    return 0;
}

static bool record_ok(int64_t main, int64_t sub, const struct kv_record *r)
{
    if (main < 1 || sub < 0 || r->key_len < 1 || r->lease < 0 || r->mod_revision != main)
        return false;
    if (r->tombstone)
        return r->create_revision == 0 && r->version == 0 && r->value_len == 0;
    return r->create_revision >= 1 && r->create_revision <= main && r->version >= 1;
}

int backup_writer_record(backup_writer *w, int64_t main, int64_t sub,
                         const struct kv_record *rec)
{
    if (!w->have_sm || w->ended || !record_ok(main, sub, rec))
        return LSKV_EINVAL;
    if (rec->key_len > BACKUP_FRAME_MAX || rec->value_len > BACKUP_FRAME_MAX - rec->key_len ||
        rec->key_len + rec->value_len > BACKUP_FRAME_MAX - RECORD_FIXED_BYTES)
        return LSKV_ETOOLARGE;
    size_t n = RECORD_FIXED_BYTES + rec->key_len + rec->value_len;
    int rv = item_room(w, n);
    if (rv != 0)
        return rv;
    uint8_t *p = w->plain.p + w->plain.len;
    p[0] = ITEM_RECORD;
    put_u64be(p + 1, (uint64_t)main);
    put_u64be(p + 9, (uint64_t)sub);
    p[17] = rec->tombstone ? 1 : 0;
    put_u64be(p + 18, (uint64_t)rec->create_revision);
    put_u64be(p + 26, (uint64_t)rec->version);
    put_u64be(p + 34, (uint64_t)rec->lease);
    put_u32be(p + 42, (uint32_t)rec->key_len);
    memcpy(p + 46, rec->key, rec->key_len);
    put_u32be(p + 46 + rec->key_len, (uint32_t)rec->value_len);
    if (rec->value_len > 0)
        memcpy(p + 50 + rec->key_len, rec->value, rec->value_len);
    w->plain.len += n;
    w->have_record = true;
    w->records++;
    w->last_main = main;
    w->last_sub = sub;
    return 0;
}

int backup_writer_end(backup_writer *w, int64_t revision)
{
    if (!w->have_sm || w->ended || revision < 1)
        return LSKV_EINVAL;
    int rv = item_room(w, END_BYTES);
    if (rv != 0)
        return rv;
    uint8_t *p = w->plain.p + w->plain.len;
    p[0] = ITEM_END;
    put_u64be(p + 1, (uint64_t)revision);
    put_u64be(p + 9, w->records);
    put_u64be(p + 17, w->sm_bytes);
    w->plain.len += END_BYTES;
    if ((rv = seal_frame(w, FLAG_LAST)) != 0)
        return rv;
    static const uint8_t zero[BACKUP_ALIGN];
    size_t pad = (BACKUP_ALIGN - w->total % BACKUP_ALIGN) % BACKUP_ALIGN;
    if ((rv = emit(w, zero, pad)) != 0)
        return rv;
    uint8_t sum[HASH_BYTES];
    hash_sha256_end(&w->sha, sum);
    if ((rv = emit(w, sum, sizeof sum)) != 0)
        return rv;
    w->ended = true;
    return 0;
}

const uint8_t *backup_writer_output(const backup_writer *w, size_t *len)
{
    if (w->chunk_len > w->chunk_start) {
        *len = w->chunk_len - w->chunk_start;
        return w->chunk + w->chunk_start;
    }
    *len = w->out.len - w->out_start;
    return w->out.p + w->out_start;
}

bool backup_writer_in_bolt(const backup_writer *w)
{
    return w->chunk_len > w->chunk_start;
}

void backup_writer_consume(backup_writer *w, size_t n)
{
    if (w->chunk_len > w->chunk_start) {
        w->chunk_start += n;
        if (w->chunk_start >= w->chunk_len)
            bolt_chunk(w);
        return;
    }
    w->out_start += n;
    if (w->out_start >= w->out.len)
        w->out.len = w->out_start = 0;
}

uint64_t backup_writer_total(const backup_writer *w)
{
    return w->total;
}

/* --- Reader ----------------------------------------------------------------- */

struct reader {
    FILE *f;
    uint64_t pos, data_end; /* data_end: where the trailer starts */
    const struct backup_visitor *v;
    struct buf sm;          /* the snapshot being assembled */
    bool sm_done, ended;
    struct backup_cursor cur;
    bool cur_open;
    struct backup_summary sum;
    char *errmsg;
};

static int read_exact(struct reader *r, uint8_t *p, size_t n)
{
    if (n > r->data_end - r->pos) {
        errmsg_printf(r->errmsg, "offset %" PRIu64 ": truncated (%zu bytes wanted, %" PRIu64
                      " left before the trailer)", r->pos, n, r->data_end - r->pos);
        return LSKV_ECORRUPT;
    }
    if (n > 0 && fread(p, 1, n, r->f) != n) {
        int e = ferror(r->f) ? -EIO : LSKV_ECORRUPT;
        errmsg_printf(r->errmsg, "offset %" PRIu64 ": short read", r->pos);
        return e;
    }
    r->pos += n;
    return 0;
}

static int check_trailer(struct reader *r, uint64_t size)
{
    struct hash_sha256_stream h;
    hash_sha256_begin(&h);
    uint8_t buf[65536];
    for (uint64_t left = size - BACKUP_TRAILER_BYTES; left > 0;) {
        size_t n = left < sizeof buf ? (size_t)left : sizeof buf;
        if (fread(buf, 1, n, r->f) != n) {
            errmsg_printf(r->errmsg, "short read while checking the SHA-256 trailer");
            return ferror(r->f) ? -EIO : LSKV_ECORRUPT;
        }
        hash_sha256_add(&h, buf, n);
        left -= n;
    }
    uint8_t want[HASH_BYTES], got[HASH_BYTES];
    hash_sha256_end(&h, got);
    if (fread(want, 1, sizeof want, r->f) != sizeof want) {
        errmsg_printf(r->errmsg, "short read of the SHA-256 trailer");
        return ferror(r->f) ? -EIO : LSKV_ECORRUPT;
    }
    if (memcmp(want, got, sizeof got) != 0) {
        errmsg_printf(r->errmsg, "the SHA-256 trailer does not match the file: it was "
                      "damaged or truncated");
        return LSKV_ECORRUPT;
    }
    if (fseeko(r->f, 0, SEEK_SET) != 0) {
        errmsg_printf(r->errmsg, "cannot seek back to the start");
        return -errno;
    }
    return 0;
}

static int sm_done(struct reader *r)
{
    if (r->sm_done)
        return 0;
    if (r->sm.len == 0) {
        errmsg_printf(r->errmsg, "no state machine snapshot before the records");
        return LSKV_ECORRUPT;
    }
    r->sm_done = true;
    r->sum.sm_bytes = r->sm.len;
    int rv = backup_cursor_open(&r->cur, r->sm.p, r->sm.len, r->errmsg);
    if (rv != 0)
        return rv;
    r->cur_open = true;
    return r->v->snapshot ? r->v->snapshot(r->v->arg, r->sm.p, r->sm.len) : 0;
}

static int item_record(struct reader *r, const uint8_t *p, size_t left, size_t *used)
{
    if (left < RECORD_FIXED_BYTES) {
        errmsg_printf(r->errmsg, "truncated record");
        return LSKV_ECORRUPT;
    }
    int64_t main = (int64_t)get_u64be(p + 1), sub = (int64_t)get_u64be(p + 9);
    struct kv_record rec = {
        .tombstone = p[17] == 1,
        .create_revision = (int64_t)get_u64be(p + 18),
        .version = (int64_t)get_u64be(p + 26),
        .lease = (int64_t)get_u64be(p + 34),
        .mod_revision = main,
    };
    uint32_t klen = get_u32be(p + 42);
    if (p[17] > 1 || klen > left - RECORD_FIXED_BYTES) {
        errmsg_printf(r->errmsg, "record %" PRId64 ".%" PRId64 ": bad flags or key length",
                      main, sub);
        return LSKV_ECORRUPT;
    }
    uint32_t vlen = get_u32be(p + 46 + klen);
    if (vlen > left - RECORD_FIXED_BYTES - klen) {
        errmsg_printf(r->errmsg, "record %" PRId64 ".%" PRId64 ": bad value length", main, sub);
        return LSKV_ECORRUPT;
    }
    rec.key = p + 46;
    rec.key_len = klen;
    rec.value = p + 50 + klen;
    rec.value_len = vlen;
    if (!record_ok(main, sub, &rec)) {
        errmsg_printf(r->errmsg, "record %" PRId64 ".%" PRId64 ": malformed", main, sub);
        return LSKV_ECORRUPT;
    }
    /* It must be the next revision the index names, with the index's key. */
    struct backup_rev want;
    const uint8_t *key;
    size_t key_len;
    int rv;
    if (!backup_cursor_next(&r->cur, &want, &key, &key_len, &rv)) {
        if (rv != 0)
            return rv;
        errmsg_printf(r->errmsg, "record %" PRId64 ".%" PRId64 ": the index names no more "
                      "revisions", main, sub);
        return LSKV_ECORRUPT;
    }
    if (want.main != main || want.sub != sub || want.tombstone != rec.tombstone ||
        key_len != klen || memcmp(key, rec.key, klen) != 0) {
        errmsg_printf(r->errmsg, "record %" PRId64 ".%" PRId64 ": the index names %" PRId64
                      ".%" PRId64 " here", main, sub, want.main, want.sub);
        return LSKV_ECORRUPT;
    }
    r->sum.records++;
    *used = RECORD_FIXED_BYTES + klen + vlen;
    return r->v->record ? r->v->record(r->v->arg, main, sub, &rec) : 0;
}

static int parse_items(struct reader *r, const uint8_t *p, size_t len, bool last)
{
    size_t off = 0;
    int rv;
    while (off < len) {
        if (r->ended) {
            errmsg_printf(r->errmsg, "bytes after the end item");
            return LSKV_ECORRUPT;
        }
        size_t left = len - off, used = 0;
        switch (p[off]) {
        case ITEM_PIECE: {
            uint32_t n = left >= 5 ? get_u32be(p + off + 1) : 0;
            if (r->sm_done || n == 0 || n > BACKUP_PIECE_MAX || n > left - 5) {
                errmsg_printf(r->errmsg, "bad snapshot piece");
                return LSKV_ECORRUPT;
            }
            if ((rv = buf_reserve(&r->sm, n)) != 0)
                return rv;
            memcpy(r->sm.p + r->sm.len, p + off + 5, n);
            r->sm.len += n;
            used = 5 + (size_t)n;
            break;
        }
        case ITEM_RECORD:
            if ((rv = sm_done(r)) != 0 || (rv = item_record(r, p + off, left, &used)) != 0)
                return rv;
            break;
        case ITEM_END: {
            if ((rv = sm_done(r)) != 0)
                return rv;
            if (left != END_BYTES || !last) {
                errmsg_printf(r->errmsg, "the end item is not the last bytes of the last frame");
                return LSKV_ECORRUPT;
            }
            int64_t revision = (int64_t)get_u64be(p + off + 1);
            uint64_t records = get_u64be(p + off + 9), sm_bytes = get_u64be(p + off + 17);
            struct backup_rev extra;
            const uint8_t *k;
            size_t kl;
            if (backup_cursor_next(&r->cur, &extra, &k, &kl, &rv) || rv != 0) {
                if (rv != 0)
                    return rv;
                errmsg_printf(r->errmsg, "the record of %" PRId64 ".%" PRId64 " is missing",
                              extra.main, extra.sub);
                return LSKV_ECORRUPT;
            }
            if (revision != r->cur.revision || records != r->sum.records ||
                sm_bytes != r->sum.sm_bytes) {
                errmsg_printf(r->errmsg, "the end item disagrees with the contents");
                return LSKV_ECORRUPT;
            }
            r->sum.revision = revision;
            r->ended = true;
            used = END_BYTES;
            break;
        }
        default:
            errmsg_printf(r->errmsg, "unknown item type %u", p[off]);
            return LSKV_ECORRUPT;
        }
        off += used;
    }
    if (last && !r->ended) {
        errmsg_printf(r->errmsg, "the last frame has no end item");
        return LSKV_ECORRUPT;
    }
    return 0;
}

static int read_frames(struct reader *r, const uint8_t data_key[BACKUP_KEY_BYTES])
{
    uint8_t header[BOLT_META_BYTES];
    int rv = read_exact(r, header, BACKUP_HEADER_BYTES);
    if (rv != 0)
        return rv;
    if (memcmp(header, MAGIC, 8) != 0) { /* the bbolt face first (backup_bolt.h)? */
        uint64_t offset;
        char why[LSKV_ERRMSG_SIZE];
        if (read_exact(r, header + BACKUP_HEADER_BYTES, BOLT_META_BYTES - BACKUP_HEADER_BYTES)
                != 0 ||
            backup_bolt_skip(header, BOLT_META_BYTES, &offset, why) != 0) {
            errmsg_printf(r->errmsg, "not an lskv backup (bad magic; an etcd snapshot is a "
                          "bbolt file)");
            return LSKV_ECORRUPT;
        }
        if (offset > r->data_end || r->data_end - offset < BACKUP_HEADER_BYTES ||
            fseeko(r->f, (off_t)offset, SEEK_SET) != 0) {
            errmsg_printf(r->errmsg, "not an lskv backup: a bbolt database of %" PRIu64
                          " bytes (an etcd snapshot?) with no lskv backup after it", offset);
            return LSKV_ECORRUPT;
        }
        r->pos = offset;
        if ((rv = read_exact(r, header, BACKUP_HEADER_BYTES)) != 0)
            return rv;
        if (memcmp(header, MAGIC, 8) != 0) {
            errmsg_printf(r->errmsg, "not an lskv backup: a bbolt database (an etcd snapshot?) "
                          "with no lskv backup after it");
            return LSKV_ECORRUPT;
        }
    }
    struct backup_header h = {.version = get_u32be(header + 8),
                              .cluster_id = get_u64be(header + 16),
                              .member_id = get_u64be(header + 24)};
    memcpy(h.salt, header + 32, BACKUP_SALT_BYTES);
    if (h.version != BACKUP_FORMAT_VERSION) {
        errmsg_printf(r->errmsg, "backup format version %u (this build reads %d)", h.version,
                      BACKUP_FORMAT_VERSION);
        return LSKV_EFORMAT;
    }
    if (get_u32be(header + 12) != 0 || h.cluster_id == 0) {
        errmsg_printf(r->errmsg, "malformed header");
        return LSKV_ECORRUPT;
    }
    if (r->v->header != NULL && (rv = r->v->header(r->v->arg, &h)) != 0)
        return rv;
    uint8_t k[BACKUP_KEY_BYTES];
    aead_key *key = NULL;
    if ((rv = derive_key(data_key, h.salt, k)) == 0)
        rv = aead_key_new(k, &key);
    explicit_bzero(k, sizeof k);
    if (rv != 0)
        return rv;
    uint8_t *sealed = NULL, *plain = NULL;
    for (uint64_t i = 0; rv == 0; i++) {
        uint8_t fh[FRAME_HEADER_BYTES];
        if ((rv = read_exact(r, fh, sizeof fh)) != 0)
            break;
        uint32_t n = get_u32be(fh + 1);
        if (fh[0] > FLAG_LAST || n <= AEAD_OVERHEAD || n > BACKUP_FRAME_MAX + AEAD_OVERHEAD ||
            n > r->data_end - r->pos) {
            errmsg_printf(r->errmsg, "frame %" PRIu64 " at offset %" PRIu64 ": bad flags or "
                          "length", i, r->pos - sizeof fh);
            rv = LSKV_ECORRUPT;
            break;
        }
        /* Bounded by the bytes the file still has: a short file cannot make
         * us allocate much. */
        uint8_t *s2 = realloc(sealed, n), *p2 = s2 ? malloc(n - AEAD_OVERHEAD) : NULL;
        if (s2 != NULL)
            sealed = s2;
        if (p2 == NULL) {
            rv = LSKV_ENOMEM;
            break;
        }
        if (plain != NULL)
            free(plain);
        plain = p2;
        if ((rv = read_exact(r, sealed, n)) != 0)
            break;
        uint8_t nonce[AEAD_NONCE_BYTES], aad[AAD_BYTES];
        frame_nonce_aad(header, i, fh[0], nonce, aad);
        /* The nonce is derived, so a copy in the frame must match it too. */
        if (memcmp(sealed, nonce, AEAD_NONCE_BYTES) != 0 ||
            aead_key_open(key, aad, sizeof aad, sealed, n, plain) != 0) {
            errmsg_printf(r->errmsg, "frame %" PRIu64 " (offset %" PRIu64 "): authentication "
                          "failed: the file was altered, or it is not sealed with this data "
                          "key", i, r->pos - n - sizeof fh);
            rv = LSKV_ECORRUPT;
            break;
        }
        r->sum.frames++;
        bool last = fh[0] & FLAG_LAST;
        rv = parse_items(r, plain, n - AEAD_OVERHEAD, last);
        explicit_bzero(plain, n - AEAD_OVERHEAD);
        if (rv != 0)
            errmsg_wrapf(r->errmsg, "frame %" PRIu64, i);
        if (r->v->progress != NULL)
            r->v->progress(r->v->arg, r->pos, r->data_end + BACKUP_TRAILER_BYTES);
        if (last)
            break;
    }
    free(sealed);
    free(plain);
    aead_key_free(key);
    if (rv != 0)
        return rv;
    /* Only the padding to the 512-byte boundary may follow, all zeros. */
    uint64_t pad = r->data_end - r->pos;
    if (pad != (BACKUP_ALIGN - r->pos % BACKUP_ALIGN) % BACKUP_ALIGN) {
        errmsg_printf(r->errmsg, "%" PRIu64 " bytes between the last frame and the trailer "
                      "(padding is %" PRIu64 ")", pad,
                      (uint64_t)((BACKUP_ALIGN - r->pos % BACKUP_ALIGN) % BACKUP_ALIGN));
        return LSKV_ECORRUPT;
    }
    uint8_t zero[BACKUP_ALIGN], got[BACKUP_ALIGN];
    memset(zero, 0, sizeof zero);
    if ((rv = read_exact(r, got, (size_t)pad)) != 0)
        return rv;
    if (memcmp(got, zero, (size_t)pad) != 0) {
        errmsg_printf(r->errmsg, "the padding is not zero");
        return LSKV_ECORRUPT;
    }
    return 0;
}

int backup_read(FILE *f, uint64_t size, const uint8_t data_key[BACKUP_KEY_BYTES],
                const struct backup_visitor *v, struct backup_summary *out, char *errmsg)
{
    struct reader r = {.f = f, .v = v, .errmsg = errmsg};
    if (size < BACKUP_ALIGN + BACKUP_TRAILER_BYTES ||
        (size - BACKUP_TRAILER_BYTES) % BACKUP_ALIGN != 0) {
        errmsg_printf(errmsg, "size %" PRIu64 " is not 512 k + 32 bytes: not a complete backup",
                      size);
        return LSKV_ECORRUPT;
    }
    r.data_end = size - BACKUP_TRAILER_BYTES;
    int rv = check_trailer(&r, size);
    if (rv == 0)
        rv = read_frames(&r, data_key);
    if (r.sm.p != NULL)
        explicit_bzero(r.sm.p, r.sm.cap);
    free(r.sm.p);
    if (r.cur_open)
        backup_cursor_close(&r.cur);
    if (rv == 0 && v->progress != NULL)
        v->progress(v->arg, size, size);
    if (rv == 0 && out != NULL)
        *out = r.sum;
    return rv;
}
