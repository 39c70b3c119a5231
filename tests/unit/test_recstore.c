/* Tests for storage/recstore.c, storage/cache.c and storage/engine_leveldb.c.
 * Invariant numbers refer to the design notes at the top of recstore.c. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/arena.h"
#include "common/bytes.h"
#include "common/err.h"
#include "crypto/aead.h"
#include "crypto/keyring.h"
#include "runner.h"
#include "storage/cache.h"
#include "storage/engine.h"
#include "storage/recstore.h"
#include "tamper_engine.h"

static const uint8_t KEY[AEAD_KEY_BYTES] = {0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9};
enum { CLUSTER_ID = 0x1234 };

static char *db_path(void)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/db", test_tmpdir());
    return path;
}

static recstore *open_store(struct engine *engine, size_t cache_bytes)
{
    struct recstore_config cfg = {
        .path = db_path(),
        .data_key = KEY,
        .cluster_id = CLUSTER_ID,
        .cache_bytes = cache_bytes,
        .engine = engine,
    };
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    recstore *rs = NULL;
    int rv = recstore_open(&cfg, &rs, errmsg);
    if (rv != 0)
        TEST_FAIL("recstore_open: %s: %s", lskv_errname(rv), errmsg);
    return rs;
}

/* A tamper engine around a fresh LevelDB at db_path(). */
static struct engine *open_tamper(void)
{
    char errmsg[LSKV_ERRMSG_SIZE];
    struct engine *inner, *te;
    ASSERT_EQ(engine_leveldb_open(db_path(), &inner, errmsg), 0);
    ASSERT_EQ(tamper_engine_open(inner, &te), 0);
    return te;
}

static struct kv_record live(const char *key, const char *value, int64_t rev)
{
    return (struct kv_record){
        .key = (const uint8_t *)key,
        .key_len = strlen(key),
        .value = (const uint8_t *)value,
        .value_len = strlen(value),
        .create_revision = rev,
        .mod_revision = rev,
        .version = 1,
        .lease = 0,
    };
}

static void put1(recstore *rs, int64_t main, int64_t sub, const char *key, const char *value)
{
    struct kv_record r = live(key, value, main);
    ASSERT_EQ(recstore_put(rs, main, sub, &r), 0);
}

static void assert_record(recstore *rs, int64_t main, int64_t sub, const char *key,
                          const char *value)
{
    struct arena a;
    struct kv_record r;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    arena_init(&a);
    int rv = recstore_get(rs, main, sub, &a, &r, errmsg);
    if (rv != 0)
        TEST_FAIL("get %lld.%lld: %s: %s", (long long)main, (long long)sub,
                  lskv_errname(rv), errmsg);
    ASSERT_EQ(r.key_len, strlen(key));
    ASSERT_MEM_EQ(r.key, key, r.key_len);
    ASSERT_EQ(r.value_len, strlen(value));
    ASSERT_MEM_EQ(r.value, value, r.value_len);
    ASSERT_EQ(r.mod_revision, main);
    arena_close(&a);
}

/* Expects LSKV_ECORRUPT and an errmsg containing want. */
static void assert_corrupt(recstore *rs, int64_t main, int64_t sub, const char *want)
{
    struct arena a;
    struct kv_record r;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    arena_init(&a);
    int rv = recstore_get(rs, main, sub, &a, &r, errmsg);
    if (rv != LSKV_ECORRUPT)
        TEST_FAIL("get %lld.%lld: want LSKV_ECORRUPT, got %s (%s)", (long long)main,
                  (long long)sub, lskv_errname(rv), errmsg);
    if (strstr(errmsg, want) == NULL)
        TEST_FAIL("errmsg \"%s\" lacks \"%s\"", errmsg, want);
    arena_close(&a);
}

/* ---- round trips ------------------------------------------------------------ */

TEST(recstore, roundtrip_from_engine)
{
    recstore *rs = open_store(NULL, 0); /* no cache: every get reads LevelDB */
    size_t big_len = 1 << 20;
    char *big = malloc(big_len + 1);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)('a' + i % 26);
    big[big_len] = '\0';

    put1(rs, 2, 0, "foo", "bar");
    put1(rs, 2, 1, "empty", "");
    put1(rs, 3, 0, "big", big);
    struct kv_record upd = live("foo", "baz", 4);
    upd.create_revision = 2;
    upd.version = 2;
    upd.lease = 7587;
    ASSERT_EQ(recstore_put(rs, 4, 0, &upd), 0);
    struct kv_record tomb = {.key = (const uint8_t *)"foo", .key_len = 3,
                             .mod_revision = 5, .tombstone = true};
    ASSERT_EQ(recstore_put(rs, 5, 0, &tomb), 0);
    ASSERT_EQ(recstore_commit(rs), 0);

    assert_record(rs, 2, 0, "foo", "bar");
    assert_record(rs, 2, 1, "empty", "");
    assert_record(rs, 3, 0, "big", big);

    struct arena a;
    struct kv_record r;
    char errmsg[LSKV_ERRMSG_SIZE];
    arena_init(&a);
    ASSERT_EQ(recstore_get(rs, 4, 0, &a, &r, errmsg), 0);
    ASSERT_EQ(r.create_revision, 2);
    ASSERT_EQ(r.mod_revision, 4);
    ASSERT_EQ(r.version, 2);
    ASSERT_EQ(r.lease, 7587);
    ASSERT(!r.tombstone);
    ASSERT_EQ(recstore_get(rs, 5, 0, &a, &r, errmsg), 0);
    ASSERT(r.tombstone);
    ASSERT_EQ(r.key_len, 3);
    ASSERT_EQ(r.create_revision, 0);
    ASSERT_EQ(r.version, 0);
    ASSERT_EQ(r.value_len, 0);
    arena_close(&a);

    struct recstore_stats st;
    recstore_stats(rs, &st);
    ASSERT_EQ(st.cache_hits, 0);
    ASSERT_EQ(st.engine_reads, 5);
    ASSERT_EQ(st.cache_entries, 0);
    recstore_close(rs);
    free(big);
}

TEST(recstore, staged_visible_before_commit)
{
    struct engine *te = open_tamper();
    recstore *rs = open_store(te, 1 << 20);
    put1(rs, 7, 0, "k", "staged");
    assert_record(rs, 7, 0, "k", "staged");   /* (5): read your own writes */
    ASSERT_EQ(tamper_gets(te), 0);            /* served from the pending batch */
    uint8_t *raw;
    size_t raw_len;
    ASSERT_EQ(tamper_read_raw(te, 7, 0, &raw, &raw_len), LSKV_ENOTFOUND);
    struct recstore_stats st;
    recstore_stats(rs, &st);
    ASSERT_EQ(st.pending_records, 1);

    ASSERT_EQ(recstore_commit(rs), 0);
    ASSERT_EQ(tamper_read_raw(te, 7, 0, &raw, &raw_len), 0);
    free(raw);
    recstore_stats(rs, &st);
    ASSERT_EQ(st.pending_records, 0);
    assert_record(rs, 7, 0, "k", "staged");

    /* A staged delete hides the record at once and removes it on commit. */
    ASSERT_EQ(recstore_delete(rs, 7, 0), 0);
    assert_corrupt(rs, 7, 0, "record 7.0: missing");
    ASSERT_EQ(recstore_commit(rs), 0);
    ASSERT_EQ(tamper_read_raw(te, 7, 0, &raw, &raw_len), LSKV_ENOTFOUND);
    assert_corrupt(rs, 7, 0, "record 7.0: missing from engine");

    /* Many staged records (the pending table grows) all stay visible. */
    char key[32], value[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        snprintf(value, sizeof value, "value-%d", i);
        put1(rs, 100, i, key, value);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        snprintf(value, sizeof value, "value-%d", i);
        assert_record(rs, 100, i, key, value);
    }
    ASSERT_EQ(recstore_commit(rs), 0);
    recstore_close(rs);
    te->close(te);
}

TEST(recstore, reopen_keeps_data)
{
    recstore *rs = open_store(NULL, 1 << 20);
    put1(rs, 1, 0, "a", "one");
    put1(rs, 2, 0, "b", "two");
    ASSERT_EQ(recstore_commit(rs), 0); /* unsynced: still survives a clean close */
    recstore_close(rs);

    rs = open_store(NULL, 1 << 20);
    assert_record(rs, 1, 0, "a", "one");
    assert_record(rs, 2, 0, "b", "two");
    struct recstore_stats st;
    recstore_stats(rs, &st);
    ASSERT_EQ(st.engine_reads, 2);
    assert_record(rs, 1, 0, "a", "one");
    recstore_stats(rs, &st);
    ASSERT_EQ(st.cache_hits, 1);
    ASSERT_EQ(st.engine_reads, 2);
    ASSERT_EQ(recstore_sync(rs), 0);
    ASSERT_GT(recstore_disk_bytes(rs), 0);
    recstore_close(rs);
}

/* A defragment gives back the space of deleted records, also when the
 * records and their deletions were written together (one memtable flush
 * that LevelDB places at the deepest level, where its CompactRange alone
 * never rewrites it); what is live stays readable. */
TEST(recstore, defragment_drops_deleted_records)
{
    recstore *rs = open_store(NULL, 0);
    char value[4097], errmsg[LSKV_ERRMSG_SIZE] = "";
    memset(value, 'v', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    for (int64_t main = 1; main <= 40; main++)
        put1(rs, main, 0, "k", value);
    ASSERT_EQ(recstore_sync(rs), 0);
    for (int64_t main = 1; main < 40; main++)
        ASSERT_EQ(recstore_delete(rs, main, 0), 0);
    ASSERT_EQ(recstore_sync(rs), 0);
    ASSERT_EQ(recstore_compact_engine(rs, errmsg), 0);
    int64_t after = recstore_disk_bytes_now(rs);
    if (after > 16 * 1024) /* one 4 kB record and LevelDB's own files */
        TEST_FAIL("%lld bytes on disk after the defragment", (long long)after);
    assert_record(rs, 40, 0, "k", value);
    ASSERT(!recstore_contains(rs, 39, 0));
    recstore_close(rs);
    rs = open_store(NULL, 0); /* the sentinels left nothing behind */
    assert_record(rs, 40, 0, "k", value);
    recstore_close(rs);
}

TEST(recstore, wrong_key_or_cluster_fails_authentication)
{
    recstore *rs = open_store(NULL, 0);
    put1(rs, 1, 0, "a", "one");
    ASSERT_EQ(recstore_sync(rs), 0);
    recstore_close(rs);

    uint8_t other_key[AEAD_KEY_BYTES] = {9};
    struct recstore_config cfg = {.path = db_path(), .data_key = other_key,
                                  .cluster_id = CLUSTER_ID};
    char errmsg[LSKV_ERRMSG_SIZE];
    ASSERT_EQ(recstore_open(&cfg, &rs, errmsg), 0);
    assert_corrupt(rs, 1, 0, "record 1.0: authentication failed");
    recstore_close(rs);

    cfg.data_key = KEY;
    cfg.cluster_id = CLUSTER_ID + 1;
    ASSERT_EQ(recstore_open(&cfg, &rs, errmsg), 0);
    assert_corrupt(rs, 1, 0, "record 1.0: authentication failed");
    recstore_close(rs);
}

TEST(recstore, put_rejects_malformed_records)
{
    recstore *rs = open_store(NULL, 0);
    struct kv_record r = live("k", "v", 5);
    r.mod_revision = 4;
    ASSERT_EQ(recstore_put(rs, 5, 0, &r), LSKV_EINVAL);
    r = live("", "v", 5);
    ASSERT_EQ(recstore_put(rs, 5, 0, &r), LSKV_EINVAL);
    r = live("k", "v", 5);
    r.create_revision = 6;
    ASSERT_EQ(recstore_put(rs, 5, 0, &r), LSKV_EINVAL);
    r = live("k", "v", 5);
    r.version = 0;
    ASSERT_EQ(recstore_put(rs, 5, 0, &r), LSKV_EINVAL);
    r = live("k", "v", 5);
    r.tombstone = true;
    ASSERT_EQ(recstore_put(rs, 5, 0, &r), LSKV_EINVAL);
    r = live("k", "v", 5);
    ASSERT_EQ(recstore_put(rs, 0, 0, &r), LSKV_EINVAL);
    ASSERT_EQ(recstore_put(rs, 5, -1, &r), LSKV_EINVAL);
    struct recstore_stats st;
    recstore_stats(rs, &st);
    ASSERT_EQ(st.pending_records, 0);
    ASSERT_EQ(recstore_put(rs, 5, 0, &r), 0);
    recstore_close(rs); /* drops the pending batch without leaking */
}

/* ---- what the host sees ----------------------------------------------------- */

static bool dir_contains(const char *dir, const char *marker, size_t *total)
{
    DIR *d = opendir(dir);
    ASSERT(d != NULL);
    struct dirent *e;
    bool found = false;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        ASSERT(f != NULL);
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *buf = malloc((size_t)n + 1);
        ASSERT_EQ(fread(buf, 1, (size_t)n, f), (size_t)n);
        fclose(f);
        *total += (size_t)n;
        if (memmem(buf, (size_t)n, marker, strlen(marker)) != NULL)
            found = true;
        free(buf);
    }
    closedir(d);
    return found;
}

TEST(recstore, engine_files_hold_no_plaintext)
{
    struct engine *te = open_tamper();
    recstore *rs = open_store(te, 1 << 20);
    for (int i = 0; i < 100; i++)
        put1(rs, 10 + i, 0, "MARKERKEY-7f3a", "MARKERVALUE-c91e-payload");
    ASSERT_EQ(recstore_sync(rs), 0);
    recstore_close(rs);
    /* The same bytes written unsealed are found: the search itself works. */
    ASSERT_EQ(tamper_write_raw(te, 1, 0, (const uint8_t *)"PLAINCONTROL-55", 15), 0);
    te->close(te);

    size_t total = 0;
    ASSERT(!dir_contains(db_path(), "MARKERKEY", &total));
    ASSERT(!dir_contains(db_path(), "MARKERVALUE", &total));
    ASSERT(dir_contains(db_path(), "PLAINCONTROL-55", &total));
    ASSERT_GT(total, 100 * 24);
}

/* ---- tampering (invariants 2-4) --------------------------------------------- */

static recstore *tamper_setup(struct engine **te)
{
    *te = open_tamper();
    recstore *rs = open_store(*te, 0); /* no cache: reads reach the engine */
    put1(rs, 5, 0, "five", "value five");
    put1(rs, 6, 0, "six", "value six");
    put1(rs, 6, 1, "six.1", "value six.1");
    ASSERT_EQ(recstore_commit(rs), 0);
    assert_record(rs, 5, 0, "five", "value five");
    return rs;
}

TEST(tamper, bit_flip_anywhere_fails)
{
    struct engine *te;
    recstore *rs = tamper_setup(&te);
    uint8_t *raw;
    size_t raw_len;
    ASSERT_EQ(tamper_read_raw(te, 5, 0, &raw, &raw_len), 0);
    free(raw);
    for (size_t bit = 0; bit < raw_len * 8; bit += 7) {
        ASSERT_EQ(tamper_flip_bit(te, 5, 0, bit), 0);
        assert_corrupt(rs, 5, 0, bit < 8 ? "record 5.0: unsupported record format"
                                         : "record 5.0: authentication failed");
        ASSERT_EQ(tamper_flip_bit(te, 5, 0, bit), 0);
        assert_record(rs, 5, 0, "five", "value five");
    }
    recstore_close(rs);
    te->close(te);
}

TEST(tamper, truncated_value_fails)
{
    struct engine *te;
    recstore *rs = tamper_setup(&te);
    uint8_t *raw;
    size_t raw_len;
    ASSERT_EQ(tamper_read_raw(te, 5, 0, &raw, &raw_len), 0);
    ASSERT_EQ(tamper_write_raw(te, 5, 0, raw, raw_len - 1), 0);
    assert_corrupt(rs, 5, 0, "record 5.0: authentication failed");
    ASSERT_EQ(tamper_write_raw(te, 5, 0, raw, 10), 0);
    assert_corrupt(rs, 5, 0, "record 5.0: engine value of 10 bytes is too short");
    ASSERT_EQ(tamper_write_raw(te, 5, 0, raw, 0), 0);
    assert_corrupt(rs, 5, 0, "record 5.0: engine value of 0 bytes");
    free(raw);
    recstore_close(rs);
    te->close(te);
}

TEST(tamper, swap_fails)
{
    struct engine *te;
    recstore *rs = tamper_setup(&te);
    ASSERT_EQ(tamper_swap(te, 5, 0, 6, 0), 0);
    assert_corrupt(rs, 5, 0, "record 5.0: authentication failed");
    assert_corrupt(rs, 6, 0, "record 6.0: authentication failed");
    ASSERT_EQ(tamper_swap(te, 6, 0, 6, 1), 0); /* same main, different sub */
    assert_corrupt(rs, 6, 1, "record 6.1: authentication failed");
    recstore_close(rs);
    te->close(te);
}

TEST(tamper, replay_under_other_id_fails)
{
    struct engine *te;
    recstore *rs = tamper_setup(&te);
    ASSERT_EQ(tamper_copy(te, 5, 0, 6, 0), 0);
    assert_corrupt(rs, 6, 0, "record 6.0: authentication failed");
    assert_record(rs, 5, 0, "five", "value five");
    /* Resurrecting a deleted (compacted) id with its own old value is not an
     * attack on reads: the index no longer asks for it. A value of another
     * id sealed earlier is: */
    uint8_t *old;
    size_t old_len;
    ASSERT_EQ(tamper_read_raw(te, 6, 1, &old, &old_len), 0);
    ASSERT_EQ(tamper_write_raw(te, 5, 0, old, old_len), 0);
    assert_corrupt(rs, 5, 0, "record 5.0: authentication failed");
    free(old);
    recstore_close(rs);
    te->close(te);
}

TEST(tamper, hidden_record_is_missing)
{
    struct engine *te;
    recstore *rs = tamper_setup(&te);
    tamper_hide(te, 5, 0, true);
    assert_corrupt(rs, 5, 0, "record 5.0: missing from engine");
    assert_record(rs, 6, 0, "six", "value six");
    tamper_hide(te, 5, 0, false);
    assert_record(rs, 5, 0, "five", "value five");
    recstore_close(rs);
    te->close(te);
}

TEST(tamper, engine_read_errors_are_not_data)
{
    struct engine *te;
    recstore *rs = tamper_setup(&te);
    tamper_fail_reads(te, LSKV_ECORRUPT);
    assert_corrupt(rs, 5, 0, "record 5.0: engine: tamper: injected read failure");
    tamper_fail_reads(te, LSKV_EIO);
    struct arena a;
    struct kv_record r;
    arena_init(&a);
    ASSERT_EQ(recstore_get(rs, 5, 0, &a, &r, NULL), LSKV_EIO);
    arena_close(&a);
    tamper_fail_reads(te, 0);
    assert_record(rs, 5, 0, "five", "value five");
    recstore_close(rs);
    te->close(te);
}

/* Key epochs: with 2 revisions per record key, 30 revisions are sealed
 * under 15 keys (the key id in each value says which), all read back, and a
 * value moved under another key id fails authentication. */
TEST(recstore, records_across_key_epochs)
{
    struct engine *te = open_tamper();
    struct recstore_config cfg = {.data_key = KEY, .cluster_id = CLUSTER_ID,
                                  .key_epoch_size = 2, .engine = te};
    recstore *rs;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    ASSERT_EQ(recstore_open(&cfg, &rs, errmsg), 0);
    char key[16], val[16];
    for (int64_t m = 1; m <= 30; m++) {
        snprintf(key, sizeof key, "k%02d", (int)m);
        snprintf(val, sizeof val, "v%02d", (int)m);
        put1(rs, m, 0, key, val);
    }
    ASSERT_EQ(recstore_commit(rs), 0);
    uint32_t epoch;
    uint64_t seals;
    recstore_key_stats(rs, &epoch, &seals);
    ASSERT_EQ(epoch, 15);
    ASSERT_EQ(seals, 1);
    for (int64_t m = 1; m <= 30; m++) {
        uint8_t *raw;
        size_t raw_len;
        ASSERT_EQ(tamper_read_raw(te, m, 0, &raw, &raw_len), 0);
        ASSERT_EQ(get_u32be(raw + 1), (uint32_t)(m / 2));
        free(raw);
        snprintf(key, sizeof key, "k%02d", (int)m);
        snprintf(val, sizeof val, "v%02d", (int)m);
        assert_record(rs, m, 0, key, val);
    }
    recstore_close(rs);
    /* reopened with the default epoch size: still reads every epoch */
    cfg.key_epoch_size = 0;
    ASSERT_EQ(recstore_open(&cfg, &rs, errmsg), 0);
    assert_record(rs, 7, 0, "k07", "v07");
    uint8_t *raw;
    size_t raw_len;
    ASSERT_EQ(tamper_read_raw(te, 7, 0, &raw, &raw_len), 0);
    put_u32be(raw + 1, 4); /* claims another epoch's key */
    ASSERT_EQ(tamper_write_raw(te, 7, 0, raw, raw_len), 0);
    free(raw);
    assert_corrupt(rs, 7, 0, "record 7.0: authentication failed");
    recstore_close(rs);
    te->close(te);
}

/* Writes body sealed correctly (right key, AAD) under (main, sub): what only
 * a holder of the data key could do, to reach the body checks. */
static void forge(struct engine *te, int64_t main, int64_t sub, const uint8_t *body,
                  size_t len)
{
    uint8_t aad[RECSTORE_AAD_BYTES], key[AEAD_KEY_BYTES];
    recstore_make_aad(RECSTORE_FORMAT_VERSION, 0, main, sub, CLUSTER_ID, aad);
    ASSERT_EQ(keyring_derive(KEY, RECSTORE_KEY_PURPOSE, 0, key), 0);
    uint8_t *val = malloc(len + RECSTORE_VALUE_OVERHEAD);
    val[0] = RECSTORE_FORMAT_VERSION;
    put_u32be(val + 1, 0);
    ASSERT_EQ(aead_seal(key, aad, sizeof aad, body, len, val + RECSTORE_VALUE_HEADER_BYTES), 0);
    ASSERT_EQ(tamper_write_raw(te, main, sub, val, len + RECSTORE_VALUE_OVERHEAD), 0);
    free(val);
}

static size_t make_body(uint8_t *p, uint8_t version, uint8_t flags, int64_t create,
                        int64_t mod, int64_t ver, const char *key, const char *value)
{
    size_t kl = strlen(key), vl = strlen(value);
    p[0] = version;
    p[1] = flags;
    put_u64be(p + 2, (uint64_t)create);
    put_u64be(p + 10, (uint64_t)mod);
    put_u64be(p + 18, (uint64_t)ver);
    put_u64be(p + 26, 0);
    put_u32be(p + 34, (uint32_t)kl);
    put_u32be(p + 38, (uint32_t)vl);
    memcpy(p + 42, key, kl);
    memcpy(p + 42 + kl, value, vl);
    return 42 + kl + vl;
}

TEST(tamper, authenticated_but_wrong_body_is_rejected)
{
    struct engine *te;
    recstore *rs = tamper_setup(&te);
    uint8_t body[256];
    size_t n = make_body(body, 1, 0, 5, 5, 1, "five", "forged");
    forge(te, 5, 0, body, n);
    assert_record(rs, 5, 0, "five", "forged"); /* the layout matches the doc */

    n = make_body(body, 1, 0, 4, 4, 1, "five", "forged");
    forge(te, 5, 0, body, n);
    assert_corrupt(rs, 5, 0, "record 5.0: mod_revision 4 is not the id's revision");
    n = make_body(body, 1, 0, 5, 5, 1, "five", "forged");
    body[n] = 0;
    forge(te, 5, 0, body, n + 1);
    assert_corrupt(rs, 5, 0, "record 5.0: trailing bytes");
    forge(te, 5, 0, body, n - 1);
    assert_corrupt(rs, 5, 0, "record 5.0: truncated body");
    forge(te, 5, 0, body, 20);
    assert_corrupt(rs, 5, 0, "record 5.0: body of 20 bytes is shorter");
    n = make_body(body, 2, 0, 5, 5, 1, "five", "forged");
    forge(te, 5, 0, body, n);
    assert_corrupt(rs, 5, 0, "record 5.0: body format version 2");
    n = make_body(body, 1, 0x80, 5, 5, 1, "five", "forged");
    forge(te, 5, 0, body, n);
    assert_corrupt(rs, 5, 0, "record 5.0: unknown flags 0x80");
    n = make_body(body, 1, 1, 5, 5, 1, "five", "");
    forge(te, 5, 0, body, n);
    assert_corrupt(rs, 5, 0, "record 5.0: tombstone with create_revision 5");
    n = make_body(body, 1, 0, 5, 5, 0, "five", "x");
    forge(te, 5, 0, body, n);
    assert_corrupt(rs, 5, 0, "record 5.0: version 0 of a live key");
    recstore_close(rs);
    te->close(te);
}

TEST(tamper, cache_is_trusted)
{
    struct engine *te = open_tamper();
    recstore *rs = open_store(te, 1 << 20);
    put1(rs, 5, 0, "five", "value five");
    ASSERT_EQ(recstore_commit(rs), 0);
    ASSERT_EQ(tamper_flip_bit(te, 5, 0, 100), 0);
    assert_record(rs, 5, 0, "five", "value five"); /* written through to the cache */
    ASSERT_EQ(tamper_gets(te), 0);
    recstore_close(rs);
    rs = open_store(te, 1 << 20);
    assert_corrupt(rs, 5, 0, "record 5.0: authentication failed");
    /* A failed record is not cached: the next read checks again. */
    assert_corrupt(rs, 5, 0, "record 5.0: authentication failed");
    ASSERT_EQ(tamper_gets(te), 2);
    recstore_close(rs);
    te->close(te);
}

/* ---- sticky write errors (invariant 6) -------------------------------------- */

TEST(recstore, write_error_is_sticky)
{
    struct engine *te = open_tamper();
    recstore *rs = open_store(te, 1 << 20);
    put1(rs, 1, 0, "a", "ok");
    ASSERT_EQ(recstore_commit(rs), 0);
    ASSERT_STR_EQ(recstore_errmsg(rs), "");

    put1(rs, 2, 0, "b", "lost");
    tamper_fail_writes(te, true);
    ASSERT_EQ(recstore_commit(rs), LSKV_EIO);
    ASSERT(strstr(recstore_errmsg(rs), "injected write failure") != NULL);
    tamper_fail_writes(te, false); /* the engine recovers; the store must not */

    struct kv_record r = live("c", "never", 3);
    ASSERT_EQ(recstore_put(rs, 3, 0, &r), LSKV_EIO);
    ASSERT_EQ(recstore_delete(rs, 1, 0), LSKV_EIO);
    ASSERT_EQ(recstore_commit(rs), LSKV_EIO);
    ASSERT_EQ(recstore_sync(rs), LSKV_EIO);
    /* Reads still serve verified data; the failed batch is gone. */
    assert_record(rs, 1, 0, "a", "ok");
    assert_corrupt(rs, 2, 0, "record 2.0: missing from engine");
    uint8_t *raw;
    size_t raw_len;
    ASSERT_EQ(tamper_read_raw(te, 3, 0, &raw, &raw_len), LSKV_ENOTFOUND);
    recstore_close(rs);

    rs = open_store(te, 1 << 20); /* reopening clears the state */
    put1(rs, 3, 0, "c", "again");
    ASSERT_EQ(recstore_sync(rs), 0);
    assert_record(rs, 3, 0, "c", "again");
    recstore_close(rs);
    te->close(te);
}

/* ---- cache ------------------------------------------------------------------- */

TEST(recstore, cache_bound_holds)
{
    size_t bound = 20000;
    recstore *rs = open_store(NULL, bound);
    char value[501];
    memset(value, 'v', 500);
    value[500] = '\0';
    char key[32];
    for (int i = 1; i <= 200; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        put1(rs, i, 0, key, value);
        ASSERT_EQ(recstore_commit(rs), 0);
        struct recstore_stats st;
        recstore_stats(rs, &st);
        ASSERT_LE(st.cache_bytes, bound);
    }
    for (int i = 1; i <= 200; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        assert_record(rs, i, 0, key, value);
        struct recstore_stats st;
        recstore_stats(rs, &st);
        ASSERT_LE(st.cache_bytes, bound);
        ASSERT_GT(st.cache_entries, 0);
        ASSERT_LT(st.cache_entries, 200);
    }
    struct recstore_stats st;
    recstore_stats(rs, &st);
    uint64_t reads = st.engine_reads;
    ASSERT_GE(reads, 150); /* most of the early ones were evicted */
    assert_record(rs, 200, 0, "key-200", value); /* most recent: a hit */
    recstore_stats(rs, &st);
    ASSERT_EQ(st.engine_reads, reads);
    recstore_close(rs);
}

TEST(cache, lru_order_and_bound)
{
    cache *c;
    ASSERT_EQ(cache_open(3 * (CACHE_ENTRY_OVERHEAD + 10), &c), 0);
    uint8_t body[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    size_t len;
    ASSERT_EQ(cache_put(c, 1, 0, body, 10), 0);
    ASSERT_EQ(cache_put(c, 2, 0, body, 10), 0);
    ASSERT_EQ(cache_put(c, 3, 0, body, 10), 0);
    ASSERT_EQ(cache_count(c), 3);
    ASSERT(cache_get(c, 1, 0, &len) != NULL); /* 1 is now most recent */
    ASSERT_EQ(len, 10);
    ASSERT_EQ(cache_put(c, 4, 0, body, 10), 0); /* evicts 2 */
    ASSERT(cache_get(c, 2, 0, &len) == NULL);
    ASSERT(cache_get(c, 1, 0, &len) != NULL);
    ASSERT(cache_get(c, 3, 0, &len) != NULL);
    ASSERT(cache_get(c, 4, 0, &len) != NULL);
    ASSERT_EQ(cache_bytes(c), 3 * (CACHE_ENTRY_OVERHEAD + 10));
    /* Replacing keeps one entry per id; a too-large body is not cached. */
    ASSERT_EQ(cache_put(c, 4, 0, body, 5), 0);
    ASSERT_EQ(cache_count(c), 3);
    uint8_t huge[400] = {0};
    ASSERT_EQ(cache_put(c, 9, 0, huge, sizeof huge), 0);
    ASSERT(cache_get(c, 9, 0, &len) == NULL);
    ASSERT_EQ(cache_count(c), 3);
    cache_remove(c, 3, 0);
    ASSERT(cache_get(c, 3, 0, &len) == NULL);
    ASSERT_EQ(cache_count(c), 2);
    ASSERT_EQ(cache_bytes(c), 2 * CACHE_ENTRY_OVERHEAD + 15);
    cache_close(c);
}

TEST(cache, many_entries_and_zero_bound)
{
    cache *c;
    ASSERT_EQ(cache_open(1 << 20, &c), 0);
    uint8_t body[8];
    for (int64_t i = 0; i < 5000; i++) {
        put_u64be(body, (uint64_t)i);
        ASSERT_EQ(cache_put(c, i / 7, i % 7, body, 8), 0);
    }
    ASSERT_EQ(cache_count(c), 5000);
    for (int64_t i = 0; i < 5000; i++) {
        size_t len;
        const uint8_t *p = cache_get(c, i / 7, i % 7, &len);
        ASSERT(p != NULL);
        ASSERT_EQ(get_u64be(p), (uint64_t)i);
    }
    cache_close(c);
    ASSERT_EQ(cache_open(0, &c), 0);
    ASSERT_EQ(cache_put(c, 1, 0, body, 8), 0);
    ASSERT_EQ(cache_count(c), 0);
    cache_close(c);
}

/* ---- the host edits LevelDB's files directly ---------------------------------- */

/* Flips bytes in the first three quarters of every file of the given suffix; returns how
 * many files it touched. */
static int corrupt_files(const char *suffix)
{
    DIR *d = opendir(db_path());
    ASSERT(d != NULL);
    struct dirent *e;
    int touched = 0;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name), sn = strlen(suffix);
        if (n < sn || strcmp(e->d_name + n - sn, suffix) != 0)
            continue;
        char path[8192];
        int pn = snprintf(path, sizeof path, "%s/%s", db_path(), e->d_name);
        ASSERT(pn > 0 && (size_t)pn < sizeof path);
        FILE *f = fopen(path, "r+b");
        ASSERT(f != NULL);
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        if (size < 1024) {
            fclose(f);
            continue;
        }
        /* Several flips, away from the table footer: a single one may land
         * in a block checksum, which LevelDB does not read (verification is
         * the AEAD's job), and then no record is affected at all. */
        for (long off = size / 8; off < size * 6 / 8; off += size / 8) {
            fseek(f, off, SEEK_SET);
            int c = fgetc(f);
            fseek(f, off, SEEK_SET);
            fputc(c ^ 0x5a, f);
        }
        fclose(f);
        touched++;
    }
    closedir(d);
    return touched;
}

/* Every record either reads back exactly or is LSKV_ECORRUPT naming it, and
 * at least one is corrupt. */
static void check_all_or_corrupt(int n, const char *value)
{
    recstore *rs = open_store(NULL, 0);
    int bad = 0;
    char key[32], want[64];
    for (int i = 1; i <= n; i++) {
        struct arena a;
        struct kv_record r;
        char errmsg[LSKV_ERRMSG_SIZE] = "";
        arena_init(&a);
        int rv = recstore_get(rs, i, 0, &a, &r, errmsg);
        snprintf(key, sizeof key, "key-%06d", i);
        if (rv == 0) {
            ASSERT_EQ(r.key_len, strlen(key));
            ASSERT_MEM_EQ(r.key, key, r.key_len);
            ASSERT_EQ(r.value_len, strlen(value));
            ASSERT_MEM_EQ(r.value, value, r.value_len);
        } else {
            ASSERT_EQ(rv, LSKV_ECORRUPT);
            snprintf(want, sizeof want, "record %d.0: ", i);
            ASSERT(strncmp(errmsg, want, strlen(want)) == 0);
            bad++;
        }
        arena_close(&a);
    }
    ASSERT_GT(bad, 0);
    ASSERT_LT(bad, n);
    recstore_close(rs);
}

/* settle: reopen once, so that LevelDB turns its logs into tables at
 * recovery (a close during a background memtable flush can leave a table
 * file that recovery later rewrites under the same name). */
static void write_many(int n, const char *value, bool settle)
{
    recstore *rs = open_store(NULL, 0);
    char key[32];
    for (int i = 1; i <= n; i++) {
        snprintf(key, sizeof key, "key-%06d", i);
        put1(rs, i, 0, key, value);
        if (i % 100 == 0)
            ASSERT_EQ(recstore_commit(rs), 0);
    }
    ASSERT_EQ(recstore_sync(rs), 0);
    recstore_close(rs);
    if (settle)
        recstore_close(open_store(NULL, 0));
}

TEST(tamper, corrupted_leveldb_log_is_detected)
{
    char value[1001];
    memset(value, 'x', 1000);
    value[1000] = '\0';
    write_many(1000, value, false); /* 1 MB: stays in the log (write buffer 4 MiB) */
    ASSERT_GT(corrupt_files(".log"), 0);
    check_all_or_corrupt(1000, value);
}

TEST(tamper, corrupted_leveldb_table_is_detected)
{
    char value[1001];
    memset(value, 'y', 1000);
    value[1000] = '\0';
    write_many(6000, value, true); /* 6 MB: the memtable is flushed to a table */
    int touched = corrupt_files(".ldb");
    ASSERT_GT(touched, 0);
    check_all_or_corrupt(6000, value);
}

TEST(tamper, rolled_back_engine_loses_only_newer_records)
{
    /* The host keeps a copy of the whole engine directory and later puts it
     * back. Records present in the copy are the only plaintext their ids ever
     * had (invariant 2), so they are still right; newer ones are missing
     * (invariant 4): nothing stale is served as current. */
    recstore *rs = open_store(NULL, 0);
    put1(rs, 1, 0, "a", "first");
    ASSERT_EQ(recstore_sync(rs), 0);
    recstore_close(rs);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s.old'", db_path(), db_path());
    ASSERT_EQ(system(cmd), 0);

    rs = open_store(NULL, 0);
    struct kv_record upd = live("a", "second", 2);
    upd.create_revision = 1;
    upd.version = 2;
    ASSERT_EQ(recstore_put(rs, 2, 0, &upd), 0);
    ASSERT_EQ(recstore_delete(rs, 1, 0), 0); /* compaction at 2 */
    ASSERT_EQ(recstore_sync(rs), 0);
    recstore_close(rs);

    int cn = snprintf(cmd, sizeof cmd, "rm -rf '%s' && mv '%s.old' '%s'", db_path(), db_path(),
                      db_path());
    ASSERT(cn > 0 && (size_t)cn < sizeof cmd);
    ASSERT_EQ(system(cmd), 0);
    rs = open_store(NULL, 0);
    assert_corrupt(rs, 2, 0, "record 2.0: missing from engine");
    assert_record(rs, 1, 0, "a", "first"); /* resurrected, but the index no
                                              longer asks for it */
    recstore_close(rs);
}
