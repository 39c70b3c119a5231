/* Tests for statemachine/backup.c: the backup file (docs/backup-format.md).
 * With LSKV_WRITE_BACKUP_SEED=DIR set, the valid backup of write_read is
 * also written to DIR/small (the fuzz seed, tests/fuzz/corpus/backup). */
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

/* A backup of the example, records [0, n_recs) of recs. */
static uint8_t *make_backup(size_t n_recs, size_t *len)
{
    uint8_t salt[BACKUP_SALT_BYTES] = {7};
    backup_writer *w;
    ASSERT_EQ(backup_writer_new(key, salt, 0x1234, 0x5678, &w), 0);
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
    size_t n;
    const uint8_t *p = backup_writer_output(w, &n);
    ASSERT_EQ(n, backup_writer_total(w));
    uint8_t *out = malloc(n);
    memcpy(out, p, n);
    backup_writer_consume(w, n);
    size_t total = n;
    backup_writer_output(w, &n);
    ASSERT_EQ(n, 0u);
    *len = total;
    backup_writer_free(w);
    return out;
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
        char path[512];
        snprintf(path, sizeof path, "%s/small", seed);
        FILE *f = fopen(path, "wb");
        ASSERT(f != NULL);
        fputc(0, f); /* mode 0: the file */
        fwrite(b, 1, len, f);
        fclose(f);
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
