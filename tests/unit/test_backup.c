/* Tests for statemachine/backup.c: the backup file (docs/backup-format.md).
 * With LSKV_WRITE_BACKUP_SEED=DIR set, the valid backups of write_read and
 * read_past_the_bolt_face are also written to DIR/small and
 * DIR/with_bolt_face (fuzz seeds, tests/fuzz/corpus/backup). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "crypto/hash.h"
#include "runner.h"
#include "statemachine/backup.h"
#include "statemachine/snapshot.h"

/* The KV snapshot of docs/snapshot-format.md's example: "a" put at 2 and
 * deleted at 3, "b" put at 4 and 5. */
static const uint8_t kv_example[] = {
    'L', 'S', 'K', 'V', 'S', 'N', 'A', 'P', 0, 0, 0, 1,
    0, 0, 0, 0, 0, 0, 0, 5,                         /* revision 5 */
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* never compacted */
    0, 0, 0, 0, 0, 0, 0, 2,                         /* 2 keys */
    0, 0, 0, 1, 'a', 0, 0, 0, 2,
    0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2,
    0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 1, 'b', 0, 0, 0, 1,
    0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2,
    0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0,
};

static uint8_t key[BACKUP_KEY_BYTES];

struct rec {
    int64_t main;
    bool tombstone;
    const char *key, *value;
    int64_t create, version;
};
static const struct rec recs[] = {
    {2, false, "a", "v1", 2, 1},
    {3, true, "a", "", 0, 0},
    {4, false, "b", "v2", 4, 1},
    {5, false, "b", "v3", 4, 2},
};

static uint8_t *make_sm(size_t *len)
{
    uint8_t position[40] = {0};
    struct sm_sections s = {0};
    s.data[SM_SECTION_POSITION] = position;
    s.len[SM_SECTION_POSITION] = sizeof position;
    s.data[SM_SECTION_KV] = kv_example;
    s.len[SM_SECTION_KV] = sizeof kv_example;
    uint8_t *out;
    if (sm_snapshot_encode(&s, &out, len) != 0)
        abort();
    return out;
}

/* A backup of the example, records [0, n_recs) of recs, after the bbolt
 * face bolt (NULL: none). */
static uint8_t *make_backup_after(size_t n_recs, const struct backup_bolt *bolt, size_t *len)
{
    uint8_t salt[BACKUP_SALT_BYTES] = {7};
    backup_writer *w;
    ASSERT_EQ(backup_writer_new(key, salt, 0x1234, 0x5678, bolt, &w), 0);
    size_t sm_len;
    uint8_t *sm = make_sm(&sm_len);
    ASSERT_EQ(backup_writer_sm(w, sm, sm_len), 0);
    ASSERT_EQ(backup_writer_sm(w, sm, sm_len), LSKV_EINVAL);
    free(sm);
    for (size_t i = 0; i < n_recs; i++) {
        const struct rec *r = &recs[i];
        struct kv_record kr = {.key = (const uint8_t *)r->key, .key_len = strlen(r->key),
                               .value = (const uint8_t *)r->value,
                               .value_len = strlen(r->value), .create_revision = r->create,
                               .mod_revision = r->main, .version = r->version,
                               .tombstone = r->tombstone};
        ASSERT_EQ(backup_writer_record(w, r->main, 0, &kr), 0);
    }
    ASSERT_EQ(backup_writer_end(w, 5), 0);
    size_t n, total = 0;
    uint8_t *out = malloc(backup_writer_total(w));
    const uint8_t *p;
    while ((p = backup_writer_output(w, &n)), n > 0) {
        ASSERT(total + n <= backup_writer_total(w));
        memcpy(out + total, p, n);
        total += n;
        backup_writer_consume(w, n);
    }
    ASSERT_EQ(total, backup_writer_total(w));
    *len = total;
    backup_writer_free(w);
    return out;
}

static uint8_t *make_backup(size_t n_recs, size_t *len)
{
    return make_backup_after(n_recs, NULL, len);
}

struct seen {
    int records;
    size_t sm_len;
    uint64_t cluster_id;
    char values[64];
};

static int on_header(void *arg, const struct backup_header *h)
{
    ((struct seen *)arg)->cluster_id = h->cluster_id;
    return 0;
}
static int on_snapshot(void *arg, const uint8_t *buf, size_t len)
{
    (void)buf;
    ((struct seen *)arg)->sm_len = len;
    return 0;
}
static int on_record(void *arg, int64_t main, int64_t sub, const struct kv_record *rec)
{
    struct seen *s = arg;
    (void)main;
    (void)sub;
    s->records++;
    strncat(s->values, (const char *)rec->value, rec->value_len);
    return 0;
}

static int read_mem(const uint8_t *buf, size_t len, struct seen *s, struct backup_summary *sum,
                    char *errmsg)
{
    FILE *f = fmemopen((void *)buf, len, "rb");
    ASSERT(f != NULL);
    struct backup_visitor v = {.header = on_header, .snapshot = on_snapshot,
                               .record = on_record, .arg = s};
    int rv = backup_read(f, len, key, &v, sum, errmsg);
    fclose(f);
    return rv;
}

/* A fuzz seed of mode 0 (the file): DIR/name. */
static void write_file_seed(const char *dir, const char *name, const uint8_t *buf, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    fputc(0, f);
    fwrite(buf, 1, len, f);
    fclose(f);
}

static void fix_trailer(uint8_t *buf, size_t len)
{
    hash_sha256(buf, len - 32, buf + len - 32);
}

/* The fuzzer's mode 1 seed: split | the items of the example backup. */
static void write_items_seed(const char *dir)
{
    size_t sm_len;
    uint8_t *sm = make_sm(&sm_len);
    uint8_t buf[1024];
    size_t n = 0;
    buf[n++] = 1; /* mode */
    buf[n++] = 0;
    buf[n++] = 0; /* split: filled below */
    buf[n++] = 1;
    put_u32be(buf + n, (uint32_t)sm_len);
    memcpy(buf + n + 4, sm, sm_len);
    n += 4 + sm_len;
    size_t split = n - 3;
    buf[1] = (uint8_t)(split >> 8);
    buf[2] = (uint8_t)split;
    for (size_t i = 0; i < 4; i++) {
        const struct rec *r = &recs[i];
        buf[n] = 2;
        put_u64be(buf + n + 1, (uint64_t)r->main);
        put_u64be(buf + n + 9, 0);
        buf[n + 17] = r->tombstone;
        put_u64be(buf + n + 18, (uint64_t)r->create);
        put_u64be(buf + n + 26, (uint64_t)r->version);
        put_u64be(buf + n + 34, 0);
        size_t kl = strlen(r->key), vl = strlen(r->value);
        put_u32be(buf + n + 42, (uint32_t)kl);
        memcpy(buf + n + 46, r->key, kl);
        put_u32be(buf + n + 46 + kl, (uint32_t)vl);
        memcpy(buf + n + 50 + kl, r->value, vl);
        n += 50 + kl + vl;
    }
    buf[n] = 3;
    put_u64be(buf + n + 1, 5);
    put_u64be(buf + n + 9, 4);
    put_u64be(buf + n + 17, sm_len);
    n += 25;
    free(sm);
    char path[512];
    snprintf(path, sizeof path, "%s/items", dir);
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    fwrite(buf, 1, n, f);
    fclose(f);
}

TEST(backup, write_read_and_refuse_tampering)
{
    memset(key, 0x11, sizeof key);
    size_t len;
    uint8_t *b = make_backup(4, &len);
    ASSERT_EQ((len - 32) % 512, 0u);
    const char *seed = getenv("LSKV_WRITE_BACKUP_SEED");
    if (seed != NULL) {
        write_file_seed(seed, "small", b, len);
        write_items_seed(seed);
    }
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct seen s = {0};
    struct backup_summary sum;
    ASSERT_EQ(read_mem(b, len, &s, &sum, errmsg), 0);
    ASSERT_EQ(s.records, 4);
    ASSERT_EQ(s.cluster_id, 0x1234u);
    ASSERT_STR_EQ(s.values, "v1v2v3");
    ASSERT_EQ(sum.revision, 5);
    ASSERT_EQ(sum.records, 4u);
    ASSERT_EQ(sum.sm_bytes, s.sm_len);

    /* A changed byte anywhere: the trailer says so. */
    uint8_t *t = malloc(len);
    memcpy(t, b, len);
    t[BACKUP_HEADER_BYTES + 20] ^= 1;
    ASSERT_EQ(read_mem(t, len, &s, &sum, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "SHA-256") != NULL);
    /* The same with the trailer recomputed: the seal says so. */
    fix_trailer(t, len);
    ASSERT_EQ(read_mem(t, len, &s, &sum, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "authentication failed") != NULL);
    /* Another cluster id in the header (bound into every frame). */
    memcpy(t, b, len);
    t[23] ^= 1;
    fix_trailer(t, len);
    ASSERT_EQ(read_mem(t, len, &s, &sum, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "authentication failed") != NULL);
    /* Another data key. */
    key[0] ^= 1;
    ASSERT_EQ(read_mem(b, len, &s, &sum, errmsg), LSKV_ECORRUPT);
    key[0] ^= 1;
    /* Not 512 k + 32 bytes. */
    ASSERT_EQ(read_mem(b, len - 1, &s, &sum, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "512 k + 32") != NULL);
    /* Padding that is not zero. */
    memcpy(t, b, len);
    t[len - 33] = 1;
    fix_trailer(t, len);
    ASSERT_EQ(read_mem(t, len, &s, &sum, errmsg), LSKV_ECORRUPT);
    free(t);
    free(b);

    /* A record missing (the index names 5.0): refused, even though every
     * frame is sealed correctly. */
    b = make_backup(3, &len);
    memset(&s, 0, sizeof s);
    ASSERT_EQ(read_mem(b, len, &s, &sum, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "missing") != NULL);
    free(b);
}

TEST(backup, cursor_walks_the_index)
{
    size_t sm_len;
    uint8_t *sm = make_sm(&sm_len);
    struct backup_cursor c;
    char errmsg[LSKV_ERRMSG_SIZE];
    ASSERT_EQ(backup_cursor_open(&c, sm, sm_len, errmsg), 0);
    ASSERT_EQ(c.revision, 5);
    struct backup_rev r;
    const uint8_t *k;
    size_t kl;
    int rv;
    int64_t mains[4];
    bool tomb[4];
    int n = 0;
    while (backup_cursor_next(&c, &r, &k, &kl, &rv)) {
        ASSERT(n < 4);
        mains[n] = r.main;
        tomb[n++] = r.tombstone;
    }
    ASSERT_EQ(rv, 0);
    ASSERT_EQ(n, 4);
    ASSERT_EQ(mains[0], 2);
    ASSERT_EQ(mains[1], 3);
    ASSERT(tomb[1]);
    ASSERT_EQ(mains[3], 5);
    ASSERT(!tomb[3]);
    backup_cursor_close(&c);
    free(sm);
}

/* Walks the bbolt tree under page id as bbolt does (branch elements name
 * child pages, leaf elements hold keys), collecting the keys in order and
 * marking each page seen (once). */
static void walk(const uint8_t *db, uint64_t pages, uint64_t id, uint8_t *seen,
                 uint8_t (*keys)[18], size_t *n_keys, size_t *klens)
{
    ASSERT(id < pages);
    ASSERT(!seen[id]);
    seen[id] = 1;
    const uint8_t *pg = db + id * BOLT_PAGE_BYTES;
    ASSERT_EQ(get_u64le(pg), id);
    unsigned flags = pg[8] | pg[9] << 8, count = pg[10] | pg[11] << 8;
    for (unsigned i = 0; i < count; i++) {
        const uint8_t *e = pg + 16 + 16 * i;
        if (flags == 0x01) { /* branch: pos, ksize, pgid */
            walk(db, pages, get_u64le(e + 8), seen, keys, n_keys, klens);
        } else {
            ASSERT_EQ(flags, 0x02u);
            uint32_t pos = get_u32le(e + 4), ksize = get_u32le(e + 8), vsize = get_u32le(e + 12);
            ASSERT(ksize <= 18 && (size_t)(e - pg) + pos + ksize + vsize <= BOLT_PAGE_BYTES);
            memcpy(keys[*n_keys], e + pos, ksize);
            klens[(*n_keys)++] = ksize;
            ASSERT_EQ(vsize, 1u);
            ASSERT_EQ(e[pos + ksize], 0);
        }
    }
}

TEST(backup, bolt_face_holds_every_revision_in_order)
{
    static const size_t sizes[] = {0, 1, 116, 117, 116 * 120, 116 * 120 + 1, 40000};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        size_t n = sizes[t];
        struct bolt_rev *revs = calloc(n + 1, sizeof *revs);
        for (size_t i = 0; i < n; i++)
            revs[i] = (struct bolt_rev){.main = 2 + (int64_t)i / 3, .sub = (int64_t)i % 3,
                                        .tombstone = i % 7 == 0};
        struct backup_bolt b;
        ASSERT_EQ(backup_bolt_layout(&b, revs, n), 0);
        uint8_t *db = malloc(b.pages * BOLT_PAGE_BYTES);
        for (uint64_t id = 0; id < b.pages; id++)
            backup_bolt_page(&b, id, db + id * BOLT_PAGE_BYTES);
        /* Both metas valid, naming the high water mark. */
        char errmsg[LSKV_ERRMSG_SIZE];
        uint64_t offset;
        ASSERT_EQ(backup_bolt_skip(db, BOLT_META_BYTES, &offset, errmsg), 0);
        ASSERT_EQ(offset, b.pages * BOLT_PAGE_BYTES);
        ASSERT_EQ(backup_bolt_skip(db + BOLT_PAGE_BYTES, BOLT_META_BYTES, &offset, errmsg), 0);
        /* The root bucket page: bucket "key" rooted at the tree's root. */
        const uint8_t *root = db + 3 * BOLT_PAGE_BYTES;
        ASSERT_EQ(root[10], 1);
        ASSERT_EQ(get_u32le(root + 16), 1u); /* bucketLeafFlag */
        ASSERT(memcmp(root + 32, "key", 3) == 0);
        ASSERT_EQ(get_u64le(root + 35), b.root);
        /* Every page reachable once (meta, freelist, bucket page, the tree),
         * every revision there in order, a tombstone marked. */
        uint8_t *seen = calloc(b.pages, 1);
        seen[0] = seen[1] = seen[2] = seen[3] = 1;
        uint8_t (*keys)[18] = malloc((n + 1) * sizeof *keys);
        size_t *klens = malloc((n + 1) * sizeof *klens), got = 0;
        walk(db, b.pages, b.root, seen, keys, &got, klens);
        ASSERT_EQ(got, n);
        for (uint64_t id = 0; id < b.pages; id++)
            ASSERT(seen[id]);
        for (size_t i = 0; i < n; i++) {
            ASSERT_EQ(get_u64be(keys[i]), (uint64_t)revs[i].main);
            ASSERT_EQ(keys[i][8], '_');
            ASSERT_EQ(get_u64be(keys[i] + 9), (uint64_t)revs[i].sub);
            ASSERT_EQ(klens[i], revs[i].tombstone ? 18u : 17u);
        }
        /* A branch element's key is the first key under it. */
        const uint8_t *top = db + b.root * BOLT_PAGE_BYTES;
        if (b.levels > 1)
            ASSERT(memcmp(top + 16 + get_u32le(top + 16), keys[0], 17) == 0);
        /* A changed meta byte fails its checksum. */
        db[16 + 40] ^= 1;
        ASSERT_EQ(backup_bolt_skip(db, BOLT_META_BYTES, &offset, errmsg), LSKV_ECORRUPT);
        free(seen);
        free(keys);
        free(klens);
        free(db);
        free(revs);
    }
}

TEST(backup, read_past_the_bolt_face)
{
    struct bolt_rev revs[] = {{2, 0, false}, {3, 0, true}, {4, 0, false}, {5, 0, false}};
    struct backup_bolt b;
    ASSERT_EQ(backup_bolt_layout(&b, revs, 4), 0);
    size_t len, plain_len;
    uint8_t *buf = make_backup_after(4, &b, &len);
    uint8_t *plain = make_backup(4, &plain_len);
    ASSERT_EQ(len, plain_len + b.pages * BOLT_PAGE_BYTES);
    ASSERT_EQ((len - 32) % 512, 0u);
    /* What follows the database is the backup as it was (the same salt),
     * up to the trailer, which covers the database too. */
    ASSERT(memcmp(buf + b.pages * BOLT_PAGE_BYTES, plain, plain_len - 32) == 0);
    ASSERT(memcmp(buf + len - 32, plain + plain_len - 32, 32) != 0);
    if (getenv("LSKV_WRITE_BACKUP_SEED") != NULL)
        write_file_seed(getenv("LSKV_WRITE_BACKUP_SEED"), "with_bolt_face", buf, len);
    struct seen s = {0};
    struct backup_summary sum;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    ASSERT_EQ(read_mem(buf, len, &s, &sum, errmsg), 0);
    ASSERT_EQ(s.records, 4);
    ASSERT_EQ(sum.revision, 5);
    ASSERT(strcmp(s.values, "v1v2v3") == 0);
    /* The trailer covers the database too. */
    buf[3 * BOLT_PAGE_BYTES + 40] ^= 1;
    ASSERT_EQ(read_mem(buf, len, &s, &sum, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "trailer") != NULL);
    /* A database with no lskv backup after it (an etcd snapshot's shape). */
    buf[3 * BOLT_PAGE_BYTES + 40] ^= 1;
    memset(buf + b.pages * BOLT_PAGE_BYTES, 0, 8);
    fix_trailer(buf, len);
    ASSERT_EQ(read_mem(buf, len, &s, &sum, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "no lskv backup after it") != NULL);
    free(buf);
    free(plain);
}
