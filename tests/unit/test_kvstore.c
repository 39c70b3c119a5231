/* Tests for kv/kvstore.c and kv/txn.c over a real record store (LevelDB in
 * test_tmpdir() behind the tamper engine). Expected values follow etcd 3.4
 * (checked against a real etcd 3.4.23 where noted). Invariant numbers refer to
 * the design notes at the top of kvstore.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/err.h"
#include "crypto/aead.h"
#include "kv/kvstore.h"
#include "runner.h"
#include "storage/engine.h"
#include "storage/recstore.h"
#include "tamper_engine.h"

static const uint8_t DATA_KEY[AEAD_KEY_BYTES] = {7, 7, 7, 1, 2, 3};

struct fx {
    struct engine *te;
    recstore *rs;
    kvstore *kv;
    struct arena a;
    char errmsg[LSKV_ERRMSG_SIZE];
};

static void fx_open_cache(struct fx *f, size_t cache_bytes)
{
    memset(f, 0, sizeof(*f));
    char path[4096], errmsg[LSKV_ERRMSG_SIZE] = "";
    snprintf(path, sizeof path, "%s/db", test_tmpdir());
    struct engine *inner;
    ASSERT_EQ(engine_leveldb_open(path, &inner, errmsg), 0);
    ASSERT_EQ(tamper_engine_open(inner, &f->te), 0);
    struct recstore_config cfg = {
        .path = path,
        .data_key = DATA_KEY,
        .cluster_id = 99,
        .cache_bytes = cache_bytes,
        .engine = f->te,
    };
    ASSERT_EQ(recstore_open(&cfg, &f->rs, errmsg), 0);
    ASSERT_EQ(kvstore_open(f->rs, &f->kv), 0);
    arena_init(&f->a);
}

static void fx_open(struct fx *f)
{
    fx_open_cache(f, 1 << 20);
}

static void fx_close(struct fx *f)
{
    arena_close(&f->a);
    kvstore_close(f->kv);
    recstore_close(f->rs);
    f->te->close(f->te);
}

static ProtobufCBinaryData bin(const char *s)
{
    ProtobufCBinaryData b = {s ? strlen(s) : 0, (uint8_t *)s};
    return b;
}

/* "\0" as a one-byte range end. */
static ProtobufCBinaryData zero_end(void)
{
    static uint8_t z[1] = {0};
    ProtobufCBinaryData b = {1, z};
    return b;
}

static bool bin_is(ProtobufCBinaryData b, const char *s)
{
    return b.len == strlen(s) && memcmp(b.data, s, b.len) == 0;
}

#define ASSERT_BIN(b, s)                                                                   \
    do {                                                                                   \
        if (!bin_is((b), (s)))                                                             \
            TEST_FAIL("%s: \"%.*s\" vs \"%s\"", #b, (int)(b).len, (const char *)(b).data, (s)); \
    } while (0)

/* ---- request builders ---- */

static Etcdserverpb__PutRequest put_req(const char *key, const char *value)
{
    Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
    r.key = bin(key);
    r.value = bin(value);
    return r;
}

static Etcdserverpb__RangeRequest range_req(const char *key, const char *end)
{
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    r.key = bin(key);
    r.range_end = bin(end);
    return r;
}

static Etcdserverpb__DeleteRangeRequest del_req(const char *key, const char *end)
{
    Etcdserverpb__DeleteRangeRequest r = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    r.key = bin(key);
    r.range_end = bin(end);
    return r;
}

/* ---- operations ---- */

static int64_t put(struct fx *f, const char *key, const char *value)
{
    Etcdserverpb__PutRequest r = put_req(key, value);
    Etcdserverpb__PutResponse *resp = NULL;
    int rv = kvstore_put(f->kv, &r, &f->a, &resp, f->errmsg);
    if (rv != 0)
        TEST_FAIL("put %s: %s %s", key, lskv_errname(rv), f->errmsg);
    ASSERT_EQ(resp->header->revision, kvstore_revision(f->kv));
    return resp->header->revision;
}

static int64_t del(struct fx *f, const char *key, const char *end)
{
    Etcdserverpb__DeleteRangeRequest r = del_req(key, end);
    Etcdserverpb__DeleteRangeResponse *resp = NULL;
    int rv = kvstore_delete_range(f->kv, &r, &f->a, &resp, f->errmsg);
    if (rv != 0)
        TEST_FAIL("delete %s: %s %s", key, lskv_errname(rv), f->errmsg);
    ASSERT_EQ(resp->header->revision, kvstore_revision(f->kv));
    return resp->deleted;
}

static Etcdserverpb__RangeResponse *range(struct fx *f, Etcdserverpb__RangeRequest *r)
{
    Etcdserverpb__RangeResponse *resp = NULL;
    int rv = kvstore_range(f->kv, r, &f->a, &resp, f->errmsg);
    if (rv != 0)
        TEST_FAIL("range: %s %s", lskv_errname(rv), f->errmsg);
    ASSERT_EQ(resp->header->revision, kvstore_revision(f->kv));
    return resp;
}

static Etcdserverpb__RangeResponse *get_at(struct fx *f, const char *key, int64_t rev)
{
    Etcdserverpb__RangeRequest r = range_req(key, NULL);
    r.revision = rev;
    return range(f, &r);
}

/* Asserts key's value, create, mod, version at rev (value NULL: absent). */
static void expect_kv(struct fx *f, const char *key, int64_t rev, const char *value,
                      int64_t create, int64_t mod, int64_t version)
{
    Etcdserverpb__RangeResponse *resp = get_at(f, key, rev);
    if (value == NULL) {
        ASSERT_EQ(resp->n_kvs, 0);
        ASSERT_EQ(resp->count, 0);
        return;
    }
    ASSERT_EQ(resp->n_kvs, 1);
    ASSERT_EQ(resp->count, 1);
    Mvccpb__KeyValue *kv = resp->kvs[0];
    ASSERT_BIN(kv->key, key);
    ASSERT_BIN(kv->value, value);
    ASSERT_EQ(kv->create_revision, create);
    ASSERT_EQ(kv->mod_revision, mod);
    ASSERT_EQ(kv->version, version);
}

/* The keys of a range response joined with ',' (a static buffer). */
static const char *keys_of(const Etcdserverpb__RangeResponse *resp)
{
    static char buf[1024];
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < resp->n_kvs; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%.*s", i ? "," : "",
                              (int)resp->kvs[i]->key.len, (const char *)resp->kvs[i]->key.data);
    return buf;
}

/* ---- revisions ---- */

TEST(kvstore, revisions_follow_etcd)
{
    struct fx f;
    fx_open(&f);
    ASSERT_EQ(kvstore_revision(f.kv), 1);
    ASSERT_EQ(kvstore_compact_revision(f.kv), 0);
    ASSERT_EQ(put(&f, "a", "1"), 2);
    ASSERT_EQ(put(&f, "a", "2"), 3);
    ASSERT_EQ(put(&f, "b", "x"), 4);
    expect_kv(&f, "a", 0, "2", 2, 3, 2);
    expect_kv(&f, "a", 2, "1", 2, 2, 1);
    expect_kv(&f, "b", 3, NULL, 0, 0, 0);
    /* Deleting a missing key changes nothing and does not bump. */
    ASSERT_EQ(del(&f, "zz", NULL), 0);
    ASSERT_EQ(kvstore_revision(f.kv), 4);
    ASSERT_EQ(del(&f, "a", NULL), 1);
    ASSERT_EQ(kvstore_revision(f.kv), 5);
    expect_kv(&f, "a", 0, NULL, 0, 0, 0);
    expect_kv(&f, "a", 4, "2", 2, 3, 2); /* history still there */
    /* Re-creation starts a new generation: version 1, new create revision. */
    ASSERT_EQ(put(&f, "a", "3"), 6);
    expect_kv(&f, "a", 0, "3", 6, 6, 1);
    ASSERT_EQ(kvstore_key_count(f.kv), 2);
    /* A range delete of n keys is one revision with n sub revisions. */
    put(&f, "c", "c");
    ASSERT_EQ(del(&f, "a", "d"), 3);
    ASSERT_EQ(kvstore_revision(f.kv), 8);
    ASSERT_EQ(kvstore_key_count(f.kv), 0);
    size_t n;
    const struct kv_record *ch = kvstore_changes(f.kv, &n);
    ASSERT_EQ(n, 3);
    ASSERT(ch[0].tombstone && ch[0].mod_revision == 8);
    ASSERT_EQ(ch[2].key_len, 1);
    ASSERT_EQ(ch[2].key[0], 'c');
    fx_close(&f);
}

/* ---- put options ---- */

TEST(kvstore, put_options)
{
    struct fx f;
    fx_open(&f);
    put(&f, "k", "v1");
    Etcdserverpb__PutRequest r = put_req("k", "v2");
    r.prev_kv = 1;
    Etcdserverpb__PutResponse *resp = NULL;
    ASSERT_EQ(kvstore_put(f.kv, &r, &f.a, &resp, f.errmsg), 0);
    ASSERT(resp->prev_kv != NULL);
    ASSERT_BIN(resp->prev_kv->value, "v1");
    ASSERT_EQ(resp->prev_kv->mod_revision, 2);
    ASSERT_EQ(resp->header->revision, 3);

    /* prev_kv on a new key: none. */
    r = put_req("new", "x");
    r.prev_kv = 1;
    ASSERT_EQ(kvstore_put(f.kv, &r, &f.a, &resp, f.errmsg), 0);
    ASSERT(resp->prev_kv == NULL);

    /* ignore_value keeps the value, bumps version and mod revision. */
    r = put_req("k", NULL);
    r.ignore_value = 1;
    ASSERT_EQ(kvstore_put(f.kv, &r, &f.a, &resp, f.errmsg), 0);
    expect_kv(&f, "k", 0, "v2", 2, 5, 3);

    /* ignore_* on a missing key: etcdserver: key not found, nothing changes. */
    int64_t before = kvstore_revision(f.kv);
    r = put_req("missing", NULL);
    r.ignore_value = 1;
    ASSERT_EQ(kvstore_put(f.kv, &r, &f.a, &resp, f.errmsg), LSKV_EKEYNOTFOUND);
    r = put_req("missing", "v");
    r.ignore_lease = 1;
    ASSERT_EQ(kvstore_put(f.kv, &r, &f.a, &resp, f.errmsg), LSKV_EKEYNOTFOUND);
    ASSERT_EQ(kvstore_revision(f.kv), before);
    expect_kv(&f, "missing", 0, NULL, 0, 0, 0);

    /* No leases exist yet. */
    r = put_req("k", "v");
    r.lease = 42;
    ASSERT_EQ(kvstore_put(f.kv, &r, &f.a, &resp, f.errmsg), LSKV_ELEASENOTFOUND);
    ASSERT_EQ(kvstore_revision(f.kv), before);

    /* Both wrong: a put checks the lease first, a put in a txn the key
     * (etcd 3.4.23 answers so). */
    r = put_req("missing", NULL);
    r.ignore_value = 1;
    r.lease = 5;
    ASSERT_EQ(kvstore_put(f.kv, &r, &f.a, &resp, f.errmsg), LSKV_ELEASENOTFOUND);
    Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
    op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op.request_put = &r;
    Etcdserverpb__RequestOp *ops[1] = {&op};
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    t.n_success = 1;
    t.success = ops;
    Etcdserverpb__TxnResponse *tresp;
    ASSERT_EQ(kvstore_txn(f.kv, &t, &f.a, &tresp, f.errmsg), LSKV_EKEYNOTFOUND);
    ASSERT_EQ(kvstore_revision(f.kv), before);

    /* Validation before proposing. */
    r = put_req("", "v");
    ASSERT_EQ(kvstore_validate_put(&r), LSKV_EEMPTYKEY);
    r = put_req("k", "v");
    r.ignore_value = 1;
    ASSERT_EQ(kvstore_validate_put(&r), LSKV_EVALUEPROVIDED);
    r = put_req("k", NULL);
    r.ignore_lease = 1;
    r.lease = 5;
    ASSERT_EQ(kvstore_validate_put(&r), LSKV_ELEASEPROVIDED);
    r = put_req("k", NULL);
    r.ignore_value = 1;
    r.ignore_lease = 1;
    ASSERT_EQ(kvstore_validate_put(&r), 0);
    Etcdserverpb__DeleteRangeRequest d = del_req("", NULL);
    ASSERT_EQ(kvstore_validate_delete_range(&d), LSKV_EEMPTYKEY);
    Etcdserverpb__RangeRequest rr = range_req("", NULL);
    ASSERT_EQ(kvstore_validate_range(&rr), LSKV_EEMPTYKEY);
    fx_close(&f);
}

static bool lease_7_exists(void *arg, int64_t lease)
{
    (void)arg;
    return lease == 7;
}

TEST(kvstore, lease_lookup_and_ignore_lease)
{
    struct fx f;
    fx_open(&f);
    kvstore_set_lease_lookup(f.kv, lease_7_exists, NULL);
    Etcdserverpb__PutRequest r = put_req("k", "v");
    r.lease = 7;
    Etcdserverpb__PutResponse *resp = NULL;
    ASSERT_EQ(kvstore_put(f.kv, &r, &f.a, &resp, f.errmsg), 0);
    r = put_req("k", "w");
    r.ignore_lease = 1;
    ASSERT_EQ(kvstore_put(f.kv, &r, &f.a, &resp, f.errmsg), 0);
    Etcdserverpb__RangeResponse *g = get_at(&f, "k", 0);
    ASSERT_EQ(g->kvs[0]->lease, 7);
    ASSERT_BIN(g->kvs[0]->value, "w");
    r = put_req("k", "w");
    r.lease = 8;
    ASSERT_EQ(kvstore_put(f.kv, &r, &f.a, &resp, f.errmsg), LSKV_ELEASENOTFOUND);
    fx_close(&f);
}

/* ---- range ---- */

static void put_abcde(struct fx *f)
{
    /* Values chosen so value order differs from key order. */
    put(f, "a", "3"); /* rev 2 */
    put(f, "b", "1"); /* 3 */
    put(f, "c", "2"); /* 4 */
    put(f, "d", "5"); /* 5 */
    put(f, "e", "4"); /* 6 */
    put(f, "b", "1"); /* 7: b version 2 */
    put(f, "d", "0"); /* 8: d version 2 */
    put(f, "d", "0"); /* 9: d version 3 */
}

TEST(kvstore, range_keys_and_ends)
{
    struct fx f;
    fx_open(&f);
    put_abcde(&f);
    Etcdserverpb__RangeRequest r = range_req("b", "d");
    ASSERT_STR_EQ(keys_of(range(&f, &r)), "b,c");
    r = range_req("b", NULL);
    ASSERT_STR_EQ(keys_of(range(&f, &r)), "b");
    r = range_req("bb", NULL);
    ASSERT_EQ(range(&f, &r)->count, 0);
    r = range_req("c", NULL);
    r.range_end = zero_end(); /* from key */
    ASSERT_STR_EQ(keys_of(range(&f, &r)), "c,d,e");
    r = range_req(NULL, NULL); /* key "\0", end "\0": everything */
    r.key = zero_end();
    r.range_end = zero_end();
    ASSERT_STR_EQ(keys_of(range(&f, &r)), "a,b,c,d,e");
    r = range_req("d", "b"); /* end before key: nothing */
    ASSERT_EQ(range(&f, &r)->n_kvs, 0);
    /* Prefix range as etcdctl --prefix sends it. */
    put(&f, "p/1", "x");
    put(&f, "p/2", "y");
    put(&f, "q", "z");
    r = range_req("p/", "p0");
    ASSERT_STR_EQ(keys_of(range(&f, &r)), "p/1,p/2");
    /* At a past revision. */
    r = range_req("a", "z");
    r.revision = 4;
    Etcdserverpb__RangeResponse *resp = range(&f, &r);
    ASSERT_STR_EQ(keys_of(resp), "a,b,c");
    ASSERT_EQ(resp->header->revision, kvstore_revision(f.kv)); /* header: current */
    /* Future revision; negative means current. */
    r.revision = kvstore_revision(f.kv) + 1;
    ASSERT_EQ(kvstore_range(f.kv, &r, &f.a, &resp, f.errmsg), LSKV_EFUTUREREV);
    r.revision = -5;
    ASSERT_EQ(range(&f, &r)->count, 8);
    fx_close(&f);
}

TEST(kvstore, range_limit_count_keys_only_count_only)
{
    struct fx f;
    fx_open(&f);
    put_abcde(&f);
    Etcdserverpb__RangeRequest r = range_req("a", "z");
    r.limit = 2;
    Etcdserverpb__RangeResponse *resp = range(&f, &r);
    ASSERT_STR_EQ(keys_of(resp), "a,b");
    ASSERT_EQ(resp->count, 5);
    ASSERT(resp->more);
    r.limit = 5;
    resp = range(&f, &r);
    ASSERT_EQ(resp->n_kvs, 5);
    ASSERT(!resp->more);
    r.limit = 0;
    r.keys_only = 1;
    resp = range(&f, &r);
    ASSERT_EQ(resp->n_kvs, 5);
    ASSERT_EQ(resp->kvs[0]->value.len, 0);
    ASSERT_EQ(resp->kvs[0]->mod_revision, 2);
    r.keys_only = 0;
    r.count_only = 1;
    r.limit = 1;
    resp = range(&f, &r);
    ASSERT_EQ(resp->n_kvs, 0);
    ASSERT_EQ(resp->count, 5);
    ASSERT(!resp->more);
    fx_close(&f);
}

TEST(kvstore, range_sort)
{
    struct fx f;
    fx_open(&f);
    put_abcde(&f);
    Etcdserverpb__RangeRequest r = range_req("a", "z");
    struct {
        int order, target;
        const char *keys;
    } cases[] = {
        {ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY, "a,b,c,d,e"},
        {ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY, "e,d,c,b,a"},
        {ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE, "d,b,c,a,e"},
        /* NONE with a target other than KEY means ASCEND. */
        {ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE, "d,b,c,a,e"},
        {ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE, "e,a,c,b,d"},
        /* Ties keep key order both ways (a, c, e have version 1). */
        {ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION, "a,c,e,b,d"},
        {ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION, "d,b,a,c,e"},
        {ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE, "e,d,c,b,a"},
        {ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD, "a,c,e,b,d"},
        {ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD, "d,b,e,c,a"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        r.sort_order = cases[i].order;
        r.sort_target = cases[i].target;
        r.limit = 0;
        const char *got = keys_of(range(&f, &r));
        if (strcmp(got, cases[i].keys) != 0)
            TEST_FAIL("case %zu: %s vs %s", i, got, cases[i].keys);
        /* The limit applies after sorting (NONE with another target: see
         * range_limit_before_default_sort). */
        if (cases[i].order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE &&
            cases[i].target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY)
            continue;
        r.limit = 2;
        Etcdserverpb__RangeResponse *resp = range(&f, &r);
        ASSERT_EQ(resp->n_kvs, 2);
        ASSERT(resp->more);
        ASSERT_EQ(resp->count, 5);
        ASSERT_EQ(strncmp(keys_of(resp), cases[i].keys, 3), 0);
    }
    fx_close(&f);
}

TEST(kvstore, range_limit_before_default_sort)
{
    struct fx f;
    fx_open(&f);
    put_abcde(&f); /* by value: d,b,c,a,e; by mod: a,c,e,b,d */
    Etcdserverpb__RangeRequest r = range_req("a", "z");
    /* etcd: sort_order NONE with a non-KEY target first keeps limit + 1 keys
     * in key order (a,b,c), then sorts them ascending and cuts to limit. */
    r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE;
    r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE;
    r.limit = 2;
    Etcdserverpb__RangeResponse *resp = range(&f, &r);
    ASSERT_STR_EQ(keys_of(resp), "b,c");
    ASSERT(resp->more);
    ASSERT_EQ(resp->count, 5);
    r.limit = 1; /* a,b sorted by value: b */
    ASSERT_STR_EQ(keys_of(range(&f, &r)), "b");
    r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD;
    r.limit = 3; /* a,b,c,d by mod: a,c,b,d */
    resp = range(&f, &r);
    ASSERT_STR_EQ(keys_of(resp), "a,c,b");
    ASSERT(resp->more);
    /* An explicit ASCEND sorts the whole range first. */
    r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    ASSERT_STR_EQ(keys_of(range(&f, &r)), "a,c,e");
    r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE;
    r.limit = 2;
    ASSERT_STR_EQ(keys_of(range(&f, &r)), "d,b");
    fx_close(&f);
}

TEST(kvstore, range_revision_filters)
{
    struct fx f;
    fx_open(&f);
    put_abcde(&f); /* mods: a2 b7 c4 d9 e6; creates: a2 b3 c4 d5 e6 */
    Etcdserverpb__RangeRequest r = range_req("a", "z");
    r.min_mod_revision = 5;
    Etcdserverpb__RangeResponse *resp = range(&f, &r);
    ASSERT_STR_EQ(keys_of(resp), "b,d,e");
    ASSERT_EQ(resp->count, 5); /* count ignores the filters */
    r.max_mod_revision = 6;
    ASSERT_STR_EQ(keys_of(range(&f, &r)), "e");
    r = range_req("a", "z");
    r.min_create_revision = 3;
    r.max_create_revision = 5;
    ASSERT_STR_EQ(keys_of(range(&f, &r)), "b,c,d");
    /* limit counts the filtered list. */
    r.limit = 2;
    resp = range(&f, &r);
    ASSERT_STR_EQ(keys_of(resp), "b,c");
    ASSERT(resp->more);
    r.limit = 3;
    resp = range(&f, &r);
    ASSERT(!resp->more);
    fx_close(&f);
}

/* ---- delete ---- */

TEST(kvstore, delete_range_prev_kvs_and_tombstones)
{
    struct fx f;
    fx_open(&f);
    put_abcde(&f);
    Etcdserverpb__DeleteRangeRequest d = del_req("b", "d");
    d.prev_kv = 1;
    Etcdserverpb__DeleteRangeResponse *resp = NULL;
    ASSERT_EQ(kvstore_delete_range(f.kv, &d, &f.a, &resp, f.errmsg), 0);
    ASSERT_EQ(resp->deleted, 2);
    ASSERT_EQ(resp->n_prev_kvs, 2);
    ASSERT_BIN(resp->prev_kvs[0]->key, "b");
    ASSERT_BIN(resp->prev_kvs[1]->value, "2");
    ASSERT_EQ(resp->header->revision, 10);
    /* The tombstones are records of their own (10.0 and 10.1). */
    struct kv_record rec;
    ASSERT_EQ(recstore_get(f.rs, 10, 1, &f.a, &rec, f.errmsg), 0);
    ASSERT(rec.tombstone);
    ASSERT_EQ(rec.key_len, 1);
    ASSERT_EQ(rec.key[0], 'c');
    /* History sees the keys before the deletion. */
    expect_kv(&f, "c", 9, "2", 4, 4, 1);
    expect_kv(&f, "c", 10, NULL, 0, 0, 0);
    /* A from-key delete. */
    d = del_req("c", NULL);
    d.range_end = zero_end();
    ASSERT_EQ(kvstore_delete_range(f.kv, &d, &f.a, &resp, f.errmsg), 0);
    ASSERT_EQ(resp->deleted, 2); /* d, e */
    ASSERT_EQ(kvstore_key_count(f.kv), 1);
    /* prev_kv on nothing: an empty list, no bump. */
    d = del_req("zzz", NULL);
    d.prev_kv = 1;
    ASSERT_EQ(kvstore_delete_range(f.kv, &d, &f.a, &resp, f.errmsg), 0);
    ASSERT_EQ(resp->deleted, 0);
    ASSERT_EQ(resp->n_prev_kvs, 0);
    ASSERT_EQ(resp->header->revision, 11);
    fx_close(&f);
}

/* ---- txn ---- */

static Etcdserverpb__RequestOp *op_put(struct arena *a, const char *key, const char *value)
{
    Etcdserverpb__RequestOp *op = arena_alloc(a, sizeof(*op));
    etcdserverpb__request_op__init(op);
    Etcdserverpb__PutRequest *p = arena_alloc(a, sizeof(*p));
    *p = put_req(key, value);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op->request_put = p;
    return op;
}

static Etcdserverpb__RequestOp *op_range(struct arena *a, const char *key, const char *end)
{
    Etcdserverpb__RequestOp *op = arena_alloc(a, sizeof(*op));
    etcdserverpb__request_op__init(op);
    Etcdserverpb__RangeRequest *r = arena_alloc(a, sizeof(*r));
    *r = range_req(key, end);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    op->request_range = r;
    return op;
}

static Etcdserverpb__RequestOp *op_del(struct arena *a, const char *key, const char *end)
{
    Etcdserverpb__RequestOp *op = arena_alloc(a, sizeof(*op));
    etcdserverpb__request_op__init(op);
    Etcdserverpb__DeleteRangeRequest *d = arena_alloc(a, sizeof(*d));
    *d = del_req(key, end);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    op->request_delete_range = d;
    return op;
}

static Etcdserverpb__TxnRequest *txn_new(struct arena *a)
{
    Etcdserverpb__TxnRequest *t = arena_alloc(a, sizeof(*t));
    etcdserverpb__txn_request__init(t);
    t->compare = arena_alloc(a, 200 * sizeof(void *));
    t->success = arena_alloc(a, 200 * sizeof(void *));
    t->failure = arena_alloc(a, 200 * sizeof(void *));
    return t;
}

static Etcdserverpb__RequestOp *op_txn(struct arena *a, Etcdserverpb__TxnRequest *t)
{
    Etcdserverpb__RequestOp *op = arena_alloc(a, sizeof(*op));
    etcdserverpb__request_op__init(op);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
    op->request_txn = t;
    return op;
}

/* Adds compare "key target result n" (value compares use sval). */
static Etcdserverpb__Compare *cmp_add(struct arena *a, Etcdserverpb__TxnRequest *t,
                                      const char *key, int target, int result, int64_t n,
                                      const char *sval)
{
    Etcdserverpb__Compare *c = arena_alloc(a, sizeof(*c));
    etcdserverpb__compare__init(c);
    c->key = bin(key);
    c->target = target;
    c->result = result;
    switch (target) {
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
        c->version = n;
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
        c->create_revision = n;
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
        c->mod_revision = n;
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE:
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
        c->value = bin(sval);
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
        c->lease = n;
        break;
    }
    t->compare[t->n_compare++] = c;
    return c;
}

/* Runs a txn with a single compare and reports whether it succeeded. */
static bool cmp1(struct fx *f, const char *key, const char *end, int target, int result,
                 int64_t n, const char *sval)
{
    Etcdserverpb__TxnRequest *t = txn_new(&f->a);
    Etcdserverpb__Compare *c = cmp_add(&f->a, t, key, target, result, n, sval);
    if (end)
        c->range_end = bin(end);
    Etcdserverpb__TxnResponse *resp = NULL;
    int rv = kvstore_txn(f->kv, t, &f->a, &resp, f->errmsg);
    if (rv != 0)
        TEST_FAIL("txn: %s %s", lskv_errname(rv), f->errmsg);
    return resp->succeeded;
}

enum {
    VER = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION,
    CRE = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE,
    MOD = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD,
    VAL = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE,
    LEA = ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE,
    EQ = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL,
    GT = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER,
    LT = ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS,
    NE = ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL,
};

TEST(kvstore, txn_compares)
{
    struct fx f;
    fx_open(&f);
    put_abcde(&f); /* b: "1" create 3 mod 7 version 2 */
    ASSERT(cmp1(&f, "b", NULL, VER, EQ, 2, NULL));
    ASSERT(!cmp1(&f, "b", NULL, VER, EQ, 1, NULL));
    ASSERT(cmp1(&f, "b", NULL, VER, GT, 1, NULL));
    ASSERT(cmp1(&f, "b", NULL, VER, LT, 3, NULL));
    ASSERT(cmp1(&f, "b", NULL, VER, NE, 3, NULL));
    ASSERT(cmp1(&f, "b", NULL, CRE, EQ, 3, NULL));
    ASSERT(cmp1(&f, "b", NULL, MOD, EQ, 7, NULL));
    ASSERT(cmp1(&f, "b", NULL, MOD, LT, 8, NULL));
    ASSERT(cmp1(&f, "b", NULL, VAL, EQ, 0, "1"));
    ASSERT(cmp1(&f, "b", NULL, VAL, GT, 0, "0"));
    ASSERT(cmp1(&f, "b", NULL, VAL, LT, 0, "10"));
    ASSERT(!cmp1(&f, "b", NULL, VAL, NE, 0, "1"));
    ASSERT(cmp1(&f, "b", NULL, LEA, EQ, 0, NULL));
    /* A missing key compares as zeros, except for values, which never match. */
    ASSERT(cmp1(&f, "nope", NULL, VER, EQ, 0, NULL));
    ASSERT(cmp1(&f, "nope", NULL, CRE, EQ, 0, NULL));
    ASSERT(cmp1(&f, "nope", NULL, MOD, LT, 1, NULL));
    ASSERT(!cmp1(&f, "nope", NULL, VAL, EQ, 0, ""));
    ASSERT(!cmp1(&f, "nope", NULL, VAL, NE, 0, "x"));
    /* With a range end every key in range must satisfy the compare. */
    ASSERT(cmp1(&f, "a", "z", CRE, GT, 1, NULL));
    ASSERT(!cmp1(&f, "a", "z", VER, EQ, 1, NULL));
    ASSERT(cmp1(&f, "a", "b", VER, EQ, 1, NULL));
    ASSERT(cmp1(&f, "x", "z", VER, EQ, 0, NULL)); /* empty range: zeros */
    /* Compares without a value of the target's type compare against zero. */
    Etcdserverpb__TxnRequest *t = txn_new(&f.a);
    Etcdserverpb__Compare *c = cmp_add(&f.a, t, "b", VER, GT, 5, NULL);
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
    Etcdserverpb__TxnResponse *resp;
    ASSERT_EQ(kvstore_txn(f.kv, t, &f.a, &resp, f.errmsg), 0);
    ASSERT(resp->succeeded); /* 2 > 0 */
    /* Nothing written: the revision stays. */
    ASSERT_EQ(kvstore_revision(f.kv), 9);
    ASSERT_EQ(resp->header->revision, 9);
    fx_close(&f);
}

TEST(kvstore, txn_branches_reads_and_headers)
{
    struct fx f;
    fx_open(&f);
    put(&f, "a", "1"); /* 2 */
    struct arena *a = &f.a;
    Etcdserverpb__TxnRequest *t = txn_new(a);
    cmp_add(a, t, "a", VAL, EQ, 0, "1");
    t->success[t->n_success++] = op_put(a, "a", "2");
    t->success[t->n_success++] = op_range(a, "a", NULL);
    t->success[t->n_success++] = op_del(a, "zz", NULL);
    Etcdserverpb__TxnRequest *nested = txn_new(a);
    nested->success[nested->n_success++] = op_range(a, "a", NULL);
    nested->success[nested->n_success++] = op_put(a, "b", "");
    t->success[t->n_success++] = op_txn(a, nested);
    t->failure[t->n_failure++] = op_put(a, "never", "x");
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), 0);
    Etcdserverpb__TxnResponse *resp = NULL;
    ASSERT_EQ(kvstore_txn(f.kv, t, a, &resp, f.errmsg), 0);
    /* As etcd 3.4.23 answers this very txn. */
    ASSERT(resp->succeeded);
    ASSERT_EQ(resp->header->revision, 3);
    ASSERT_EQ(resp->n_responses, 4);
    Etcdserverpb__ResponseOp **r = resp->responses;
    ASSERT_EQ(r[0]->response_case, ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT);
    ASSERT_EQ(r[0]->response_put->header->revision, 3);
    ASSERT_EQ(r[1]->response_range->header->revision, 3);
    ASSERT_EQ(r[1]->response_range->n_kvs, 1);
    Mvccpb__KeyValue *kv = r[1]->response_range->kvs[0];
    ASSERT_BIN(kv->value, "2"); /* sees the txn's own put */
    ASSERT_EQ(kv->mod_revision, 3);
    ASSERT_EQ(kv->version, 2);
    ASSERT_EQ(r[2]->response_delete_range->header->revision, 3);
    ASSERT_EQ(r[2]->response_delete_range->deleted, 0);
    Etcdserverpb__TxnResponse *nr = r[3]->response_txn;
    ASSERT(nr->succeeded);
    ASSERT_EQ(nr->header->revision, 0); /* nested headers are empty in etcd */
    ASSERT_EQ(nr->responses[0]->response_range->header->revision, 3);
    ASSERT_EQ(nr->responses[1]->response_put->header->revision, 3);
    expect_kv(&f, "b", 0, "", 3, 3, 1);
    Etcdserverpb__RangeResponse *g = get_at(&f, "a", 0);
    ASSERT_EQ(g->kvs[0]->mod_revision, 3);
    size_t n;
    kvstore_changes(f.kv, &n);
    ASSERT_EQ(n, 2); /* a at 3.0, b at 3.1 */
    /* The b record is 3.1. */
    struct kv_record rec;
    ASSERT_EQ(recstore_get(f.rs, 3, 1, a, &rec, f.errmsg), 0);
    ASSERT_EQ(rec.key[0], 'b');

    /* Failure branch; delete before any write in a write txn keeps the
     * header at the old revision, then the put bumps. */
    t = txn_new(a);
    cmp_add(a, t, "a", VAL, EQ, 0, "1");
    t->failure[t->n_failure++] = op_del(a, "zz", NULL);
    t->failure[t->n_failure++] = op_del(a, "b", NULL);
    t->failure[t->n_failure++] = op_range(a, "b", NULL);
    ASSERT_EQ(kvstore_txn(f.kv, t, a, &resp, f.errmsg), 0);
    ASSERT(!resp->succeeded);
    ASSERT_EQ(resp->responses[0]->response_delete_range->header->revision, 3);
    ASSERT_EQ(resp->responses[1]->response_delete_range->header->revision, 4);
    ASSERT_EQ(resp->responses[2]->response_range->n_kvs, 0); /* sees the delete */
    ASSERT_EQ(resp->responses[2]->response_range->header->revision, 4);
    ASSERT_EQ(resp->header->revision, 4);
    fx_close(&f);
}

TEST(kvstore, txn_range_checks_and_errors_leave_no_trace)
{
    struct fx f;
    fx_open(&f);
    put(&f, "a", "1");
    put(&f, "a", "2");
    put(&f, "a", "3"); /* rev 4 */
    Etcdserverpb__CompactionRequest cr = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    cr.revision = 3;
    Etcdserverpb__CompactionResponse *cresp;
    ASSERT_EQ(kvstore_compact(f.kv, &cr, &f.a, &cresp, f.errmsg), 0);
    struct arena *a = &f.a;
    Etcdserverpb__TxnResponse *resp;
    struct {
        int64_t rev;
        int rv;
    } cases[] = {{5, LSKV_EFUTUREREV}, {2, LSKV_ECOMPACTED}, {-1, LSKV_ECOMPACTED},
                 {3, 0}, {0, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Etcdserverpb__TxnRequest *t = txn_new(a);
        t->success[t->n_success++] = op_put(a, "x", "1");
        Etcdserverpb__RequestOp *rop = op_range(a, "a", NULL);
        rop->request_range->revision = cases[i].rev;
        t->success[t->n_success++] = rop;
        int64_t before = kvstore_revision(f.kv);
        ASSERT_EQ(kvstore_txn(f.kv, t, a, &resp, f.errmsg), cases[i].rv);
        if (cases[i].rv != 0) {
            ASSERT_EQ(kvstore_revision(f.kv), before);
            expect_kv(&f, "x", 0, NULL, 0, 0, 0);
        } else {
            del(&f, "x", NULL);
        }
    }
    /* A put with ignore_value on a missing key in a nested txn: nothing of
     * the txn stays, including the earlier put. */
    Etcdserverpb__TxnRequest *t = txn_new(a);
    t->success[t->n_success++] = op_put(a, "y", "1");
    Etcdserverpb__TxnRequest *nested = txn_new(a);
    Etcdserverpb__RequestOp *p = op_put(a, "missing", NULL);
    p->request_put->ignore_value = 1;
    nested->success[nested->n_success++] = p;
    t->success[t->n_success++] = op_txn(a, nested);
    int64_t before = kvstore_revision(f.kv);
    ASSERT_EQ(kvstore_txn(f.kv, t, a, &resp, f.errmsg), LSKV_EKEYNOTFOUND);
    ASSERT_EQ(kvstore_revision(f.kv), before);
    expect_kv(&f, "y", 0, NULL, 0, 0, 0);
    /* Lease in a txn. */
    t = txn_new(a);
    p = op_put(a, "z", "1");
    p->request_put->lease = 9;
    t->success[t->n_success++] = p;
    ASSERT_EQ(kvstore_txn(f.kv, t, a, &resp, f.errmsg), LSKV_ELEASENOTFOUND);
    ASSERT_EQ(kvstore_revision(f.kv), before);
    fx_close(&f);
}

TEST(kvstore, txn_validation)
{
    struct fx f;
    fx_open(&f);
    struct arena *a = &f.a;
    /* Too many ops (compares, success or failure over 128). */
    Etcdserverpb__TxnRequest *t = txn_new(a);
    for (int i = 0; i < KV_TXN_OPS_DEFAULT + 1; i++)
        t->success[t->n_success++] = op_range(a, "k", NULL);
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), LSKV_ETOOMANYOPS);
    t->n_success = KV_TXN_OPS_DEFAULT;
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), 0);
    /* Nested txns share the budget: 100 at the top leaves 28 below. */
    t = txn_new(a);
    for (int i = 0; i < 99; i++)
        t->success[t->n_success++] = op_range(a, "k", NULL);
    Etcdserverpb__TxnRequest *nested = txn_new(a);
    for (int i = 0; i < 29; i++)
        nested->failure[nested->n_failure++] = op_range(a, "k", NULL);
    t->success[t->n_success++] = op_txn(a, nested);
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), LSKV_ETOOMANYOPS);
    nested->n_failure = 28;
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), 0);
    /* Empty op: "key not found"; empty keys. */
    t = txn_new(a);
    Etcdserverpb__RequestOp *empty = arena_alloc(a, sizeof(*empty));
    etcdserverpb__request_op__init(empty);
    t->failure[t->n_failure++] = empty;
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), LSKV_EKEYNOTFOUND);
    t = txn_new(a);
    cmp_add(a, t, "", VER, EQ, 0, NULL);
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), LSKV_EEMPTYKEY);
    t = txn_new(a);
    t->success[t->n_success++] = op_put(a, "", "v");
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), LSKV_EEMPTYKEY);

    /* Duplicate keys. */
    struct {
        const char *what;
        int rv;
    } dup[8];
    size_t nd = 0;
    (void)dup;
    (void)nd;
    /* put k twice */
    t = txn_new(a);
    t->success[t->n_success++] = op_put(a, "k", "1");
    t->success[t->n_success++] = op_put(a, "k", "2");
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), LSKV_EDUPKEY);
    /* put k and delete k; delete range covering k */
    t = txn_new(a);
    t->success[t->n_success++] = op_put(a, "k", "1");
    t->success[t->n_success++] = op_del(a, "k", NULL);
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), LSKV_EDUPKEY);
    t = txn_new(a);
    t->failure[t->n_failure++] = op_del(a, "a", "z");
    t->failure[t->n_failure++] = op_put(a, "k", "1");
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), LSKV_EDUPKEY);
    /* range end is exclusive */
    t = txn_new(a);
    t->success[t->n_success++] = op_del(a, "a", "k");
    t->success[t->n_success++] = op_put(a, "k", "1");
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), 0);
    /* delete twice is fine */
    t = txn_new(a);
    t->success[t->n_success++] = op_del(a, "k", NULL);
    t->success[t->n_success++] = op_del(a, "k", NULL);
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), 0);
    /* puts in success and failure of the same txn: different branches */
    t = txn_new(a);
    t->success[t->n_success++] = op_put(a, "k", "1");
    t->failure[t->n_failure++] = op_put(a, "k", "2");
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), 0);
    /* nested put vs outer put */
    t = txn_new(a);
    nested = txn_new(a);
    nested->success[nested->n_success++] = op_put(a, "k", "1");
    t->success[t->n_success++] = op_txn(a, nested);
    t->success[t->n_success++] = op_put(a, "k", "2");
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), LSKV_EDUPKEY);
    /* nested put vs outer delete */
    t = txn_new(a);
    nested = txn_new(a);
    nested->failure[nested->n_failure++] = op_put(a, "k", "1");
    t->success[t->n_success++] = op_del(a, "k", NULL);
    t->success[t->n_success++] = op_txn(a, nested);
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), LSKV_EDUPKEY);
    /* a nested txn putting k in both branches is fine */
    t = txn_new(a);
    nested = txn_new(a);
    nested->success[nested->n_success++] = op_put(a, "k", "1");
    nested->failure[nested->n_failure++] = op_put(a, "k", "2");
    t->success[t->n_success++] = op_txn(a, nested);
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), 0);
    /* two nested txns putting k */
    t = txn_new(a);
    Etcdserverpb__TxnRequest *n2 = txn_new(a);
    n2->failure[n2->n_failure++] = op_put(a, "k", "2");
    t->success[t->n_success++] = op_txn(a, nested);
    t->success[t->n_success++] = op_txn(a, n2);
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), LSKV_EDUPKEY);
    /* etcd quirks: a "\0" range end covers nothing, and a put in an earlier
     * nested txn is not checked against a later nested txn's delete. */
    t = txn_new(a);
    Etcdserverpb__RequestOp *from = op_del(a, "a", NULL);
    from->request_delete_range->range_end = zero_end();
    t->success[t->n_success++] = op_put(a, "k", "1");
    t->success[t->n_success++] = from;
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), 0);
    t = txn_new(a);
    nested = txn_new(a);
    nested->success[nested->n_success++] = op_put(a, "k", "1");
    n2 = txn_new(a);
    n2->success[n2->n_success++] = op_del(a, "k", NULL);
    t->success[t->n_success++] = op_txn(a, nested);
    t->success[t->n_success++] = op_txn(a, n2);
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), 0);
    /* ... and the swapped order is caught. */
    t->success[0] = op_txn(a, n2);
    t->success[1] = op_txn(a, nested);
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), LSKV_EDUPKEY);
    fx_close(&f);
}

TEST(kvstore, txn_put_and_delete_same_key_via_from_key)
{
    /* What the "\0" quirk lets through runs as etcd runs it: the put at 2.0,
     * the delete at 2.1. */
    struct fx f;
    fx_open(&f);
    struct arena *a = &f.a;
    Etcdserverpb__TxnRequest *t = txn_new(a);
    Etcdserverpb__RequestOp *from = op_del(a, "a", NULL);
    from->request_delete_range->range_end = zero_end();
    t->success[t->n_success++] = op_put(a, "k", "1");
    t->success[t->n_success++] = from;
    t->success[t->n_success++] = op_range(a, "k", NULL);
    Etcdserverpb__TxnResponse *resp;
    ASSERT_EQ(kvstore_txn(f.kv, t, a, &resp, f.errmsg), 0);
    ASSERT_EQ(resp->responses[1]->response_delete_range->deleted, 1);
    ASSERT_EQ(resp->responses[2]->response_range->count, 0);
    ASSERT_EQ(kvstore_revision(f.kv), 2);
    expect_kv(&f, "k", 0, NULL, 0, 0, 0);
    put(&f, "k", "2");
    expect_kv(&f, "k", 0, "2", 3, 3, 1);
    fx_close(&f);
}

/* ---- compaction ---- */

TEST(kvstore, compaction)
{
    struct fx f;
    fx_open(&f);
    Etcdserverpb__CompactionRequest cr = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    Etcdserverpb__CompactionResponse *cresp;
    /* Fresh store: compacting 0 works once (etcd starts at -1). */
    cr.revision = 0;
    ASSERT_EQ(kvstore_compact(f.kv, &cr, &f.a, &cresp, f.errmsg), 0);
    ASSERT_EQ(cresp->header->revision, 1);
    ASSERT_EQ(kvstore_compact(f.kv, &cr, &f.a, &cresp, f.errmsg), LSKV_ECOMPACTED);
    put(&f, "a", "1"); /* 2 */
    put(&f, "a", "2"); /* 3 */
    put(&f, "b", "1"); /* 4 */
    del(&f, "b", NULL); /* 5 */
    put(&f, "a", "3"); /* 6 */
    put(&f, "c", "1"); /* 7 */
    cr.revision = 8;
    ASSERT_EQ(kvstore_compact(f.kv, &cr, &f.a, &cresp, f.errmsg), LSKV_EFUTUREREV);
    cr.revision = 5;
    ASSERT_EQ(kvstore_compact(f.kv, &cr, &f.a, &cresp, f.errmsg), 0);
    ASSERT_EQ(kvstore_compact_revision(f.kv), 5);
    ASSERT_EQ(cresp->header->revision, 7);
    ASSERT_EQ(kvstore_compact(f.kv, &cr, &f.a, &cresp, f.errmsg), LSKV_ECOMPACTED);
    cr.revision = 4;
    ASSERT_EQ(kvstore_compact(f.kv, &cr, &f.a, &cresp, f.errmsg), LSKV_ECOMPACTED);
    /* Reads at the compaction revision work; below it they fail. */
    expect_kv(&f, "a", 5, "2", 2, 3, 2);
    expect_kv(&f, "b", 5, NULL, 0, 0, 0);
    expect_kv(&f, "a", 0, "3", 2, 6, 3);
    Etcdserverpb__RangeRequest r = range_req("a", NULL);
    r.revision = 4;
    Etcdserverpb__RangeResponse *resp;
    ASSERT_EQ(kvstore_range(f.kv, &r, &f.a, &resp, f.errmsg), LSKV_ECOMPACTED);
    /* The dropped records are gone from the engine: 2 (a's old value), 4 and
     * 5 (b's put and tombstone); 3 stays (a's value at 5). */
    struct kv_record rec;
    ASSERT_EQ(recstore_get(f.rs, 2, 0, &f.a, &rec, f.errmsg), LSKV_ECORRUPT);
    ASSERT_EQ(recstore_get(f.rs, 4, 0, &f.a, &rec, f.errmsg), LSKV_ECORRUPT);
    ASSERT_EQ(recstore_get(f.rs, 5, 0, &f.a, &rec, f.errmsg), LSKV_ECORRUPT);
    ASSERT_EQ(recstore_get(f.rs, 3, 0, &f.a, &rec, f.errmsg), 0);
    /* Compacting everything keeps the latest of each live key. */
    cr.revision = 7;
    ASSERT_EQ(kvstore_compact(f.kv, &cr, &f.a, &cresp, f.errmsg), 0);
    expect_kv(&f, "a", 7, "3", 2, 6, 3);
    expect_kv(&f, "c", 7, "1", 7, 7, 1);
    ASSERT_EQ(recstore_get(f.rs, 3, 0, &f.a, &rec, f.errmsg), LSKV_ECORRUPT);
    /* Writes continue from the same revision. */
    ASSERT_EQ(put(&f, "a", "4"), 8);
    expect_kv(&f, "a", 0, "4", 2, 8, 4);
    fx_close(&f);
}

/* ---- snapshot ---- */

static void all_equal(struct fx *x, kvstore *other, int64_t rev)
{
    Etcdserverpb__RangeRequest r = range_req(NULL, NULL);
    r.key = zero_end();
    r.range_end = zero_end();
    r.revision = rev;
    Etcdserverpb__RangeResponse *ra, *rb;
    ASSERT_EQ(kvstore_range(x->kv, &r, &x->a, &ra, x->errmsg), 0);
    ASSERT_EQ(kvstore_range(other, &r, &x->a, &rb, x->errmsg), 0);
    ASSERT_EQ(ra->count, rb->count);
    ASSERT_EQ(ra->n_kvs, rb->n_kvs);
    ASSERT_EQ(ra->header->revision, rb->header->revision);
    for (size_t i = 0; i < ra->n_kvs; i++) {
        size_t la = mvccpb__key_value__get_packed_size(ra->kvs[i]);
        size_t lb = mvccpb__key_value__get_packed_size(rb->kvs[i]);
        ASSERT_EQ(la, lb);
        uint8_t *pa = arena_alloc(&x->a, la + 1), *pb = arena_alloc(&x->a, lb + 1);
        mvccpb__key_value__pack(ra->kvs[i], pa);
        mvccpb__key_value__pack(rb->kvs[i], pb);
        ASSERT_MEM_EQ(pa, pb, la);
    }
}

TEST(kvstore, snapshot_restore)
{
    struct fx f;
    fx_open(&f);
    put_abcde(&f);
    del(&f, "c", NULL);
    put(&f, "c", "again");
    Etcdserverpb__CompactionRequest cr = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    Etcdserverpb__CompactionResponse *cresp;
    cr.revision = 4;
    ASSERT_EQ(kvstore_compact(f.kv, &cr, &f.a, &cresp, f.errmsg), 0);
    uint8_t *buf;
    size_t len;
    ASSERT_EQ(kvstore_snapshot(f.kv, &buf, &len), 0);

    kvstore *copy;
    ASSERT_EQ(kvstore_open(f.rs, &copy), 0);
    ASSERT_EQ(kvstore_restore(copy, buf, len), 0);
    ASSERT_EQ(kvstore_revision(copy), kvstore_revision(f.kv));
    ASSERT_EQ(kvstore_compact_revision(copy), 4);
    ASSERT_EQ(kvstore_key_count(copy), kvstore_key_count(f.kv));
    for (int64_t rev = 4; rev <= kvstore_revision(f.kv); rev++)
        all_equal(&f, copy, rev);
    Etcdserverpb__RangeRequest r = range_req("a", NULL);
    r.revision = 3;
    Etcdserverpb__RangeResponse *resp;
    ASSERT_EQ(kvstore_range(copy, &r, &f.a, &resp, f.errmsg), LSKV_ECOMPACTED);
    ASSERT_EQ(kvstore_compact(copy, &cr, &f.a, &cresp, f.errmsg), LSKV_ECOMPACTED);
    /* A snapshot of the copy is byte-identical. */
    uint8_t *buf2;
    size_t len2;
    ASSERT_EQ(kvstore_snapshot(copy, &buf2, &len2), 0);
    ASSERT_EQ(len2, len);
    ASSERT_MEM_EQ(buf, buf2, len);
    free(buf2);

    /* Bad snapshots fail and leave the state alone. */
    int64_t rev = kvstore_revision(copy);
    ASSERT_EQ(kvstore_restore(copy, buf, len - 1), LSKV_ECORRUPT);
    buf[0] ^= 1;
    ASSERT_EQ(kvstore_restore(copy, buf, len), LSKV_ECORRUPT);
    buf[0] ^= 1;
    buf[11] = 2; /* format version 2 */
    ASSERT_EQ(kvstore_restore(copy, buf, len), LSKV_EFORMAT);
    buf[11] = 1;
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    ASSERT_EQ(kvstore_restore(copy, longer, len + 1), LSKV_ECORRUPT);
    free(longer);
    buf[19] = 1; /* revision 1: below the index's revisions */
    ASSERT_EQ(kvstore_restore(copy, buf, len), LSKV_ECORRUPT);
    ASSERT_EQ(kvstore_revision(copy), rev);
    all_equal(&f, copy, 0);
    /* A fresh store's snapshot restores to a fresh store. */
    kvstore *fresh;
    ASSERT_EQ(kvstore_open(f.rs, &fresh), 0);
    free(buf);
    ASSERT_EQ(kvstore_snapshot(fresh, &buf, &len), 0);
    ASSERT_EQ(kvstore_restore(copy, buf, len), 0);
    ASSERT_EQ(kvstore_revision(copy), 1);
    ASSERT_EQ(kvstore_key_count(copy), 0);
    cr.revision = 0; /* never compacted survives the round trip */
    ASSERT_EQ(kvstore_compact(copy, &cr, &f.a, &cresp, f.errmsg), 0);
    free(buf);
    kvstore_close(fresh);
    kvstore_close(copy);
    fx_close(&f);
}

/* ---- integrity ---- */

TEST(kvstore, tampered_record_is_corrupt)
{
    struct fx f;
    fx_open_cache(&f, 0); /* every read goes to the engine */
    put(&f, "a", "1");     /* 2 */
    put(&f, "b", "2");     /* 3 */
    ASSERT_EQ(tamper_flip_bit(f.te, 3, 0, 100), 0);
    Etcdserverpb__RangeRequest r = range_req("a", "z");
    Etcdserverpb__RangeResponse *resp;
    ASSERT_EQ(kvstore_range(f.kv, &r, &f.a, &resp, f.errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(f.errmsg, "3.0") != NULL);
    /* count_only and keys before the bad one need no record of b... */
    r.count_only = 1;
    ASSERT_EQ(range(&f, &r)->count, 2);
    expect_kv(&f, "a", 0, "1", 2, 2, 1);
    /* ... a swap of two valid records is caught too. */
    ASSERT_EQ(tamper_flip_bit(f.te, 3, 0, 100), 0);
    expect_kv(&f, "b", 0, "2", 3, 3, 1);
    ASSERT_EQ(tamper_swap(f.te, 2, 0, 3, 0), 0);
    r = range_req("a", NULL);
    ASSERT_EQ(kvstore_range(f.kv, &r, &f.a, &resp, f.errmsg), LSKV_ECORRUPT);
    ASSERT_EQ(tamper_swap(f.te, 2, 0, 3, 0), 0);
    /* Omission: a hidden record is corrupt, not absent. */
    tamper_hide(f.te, 2, 0, true);
    ASSERT_EQ(kvstore_range(f.kv, &r, &f.a, &resp, f.errmsg), LSKV_ECORRUPT);
    /* A write needing the record (prev_kv) fails and changes nothing. */
    Etcdserverpb__PutRequest p = put_req("a", "x");
    p.prev_kv = 1;
    Etcdserverpb__PutResponse *presp;
    ASSERT_EQ(kvstore_put(f.kv, &p, &f.a, &presp, f.errmsg), LSKV_ECORRUPT);
    ASSERT_EQ(kvstore_revision(f.kv), 3);
    /* A txn whose later read hits the bad record undoes its earlier put. */
    Etcdserverpb__TxnRequest *t = txn_new(&f.a);
    t->success[t->n_success++] = op_put(&f.a, "c", "1");
    t->success[t->n_success++] = op_range(&f.a, "a", NULL);
    Etcdserverpb__TxnResponse *tresp;
    ASSERT_EQ(kvstore_txn(f.kv, t, &f.a, &tresp, f.errmsg), LSKV_ECORRUPT);
    ASSERT_EQ(kvstore_revision(f.kv), 3);
    tamper_hide(f.te, 2, 0, false);
    expect_kv(&f, "c", 0, NULL, 0, 0, 0);
    expect_kv(&f, "a", 0, "1", 2, 2, 1);
    fx_close(&f);
}

TEST(kvstore, failed_commit_changes_nothing)
{
    struct fx f;
    fx_open(&f);
    put(&f, "a", "1");
    tamper_fail_writes(f.te, true);
    Etcdserverpb__PutRequest p = put_req("a", "2");
    Etcdserverpb__PutResponse *presp;
    ASSERT_EQ(kvstore_put(f.kv, &p, &f.a, &presp, f.errmsg), LSKV_EIO);
    ASSERT_EQ(kvstore_revision(f.kv), 2);
    expect_kv(&f, "a", 0, "1", 2, 2, 1);
    fx_close(&f);
}

TEST(kvstore, deferred_commit_stages_until_recstore_commit)
{
    struct fx f;
    fx_open(&f);
    kvstore_set_deferred_commit(f.kv, true);
    struct recstore_stats st;
    for (int i = 0; i < 10; i++) {
        char k[16], v[16];
        snprintf(k, sizeof k, "k%d", i);
        snprintf(v, sizeof v, "v%d", i);
        ASSERT_EQ(put(&f, k, v), 2 + i);
    }
    ASSERT_EQ(put(&f, "k0", "again"), 12);
    recstore_stats(f.rs, &st);
    ASSERT_EQ(st.pending_records, 11); /* nothing reached the engine */
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    ASSERT(tamper_read_raw(f.te, 2, 0, &raw, &raw_len) != 0);
    /* Pending records are served, at every revision. */
    expect_kv(&f, "k0", 0, "again", 2, 12, 2);
    expect_kv(&f, "k0", 2, "v0", 2, 2, 1);
    expect_kv(&f, "k9", 0, "v9", 11, 11, 1);
    ASSERT_EQ(recstore_commit(f.rs), 0);
    recstore_stats(f.rs, &st);
    ASSERT_EQ(st.pending_records, 0);
    ASSERT_EQ(tamper_read_raw(f.te, 2, 0, &raw, &raw_len), 0);
    free(raw);
    expect_kv(&f, "k0", 2, "v0", 2, 2, 1);
    /* A failing engine write surfaces at the owner's commit; the write
     * itself succeeded (its entry is in the Raft log). */
    tamper_fail_writes(f.te, true);
    ASSERT_EQ(put(&f, "k1", "late"), 13);
    ASSERT_EQ(recstore_commit(f.rs), LSKV_EIO);
    Etcdserverpb__PutRequest p = put_req("k2", "x");
    Etcdserverpb__PutResponse *presp;
    ASSERT_EQ(kvstore_put(f.kv, &p, &f.a, &presp, f.errmsg), LSKV_EIO); /* sticky */
    ASSERT_EQ(kvstore_revision(f.kv), 13);
    fx_close(&f);
}

TEST(kvstore, many_keys_and_hot_key)
{
    struct fx f;
    fx_open(&f);
    char k[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "key%05d", i);
        put(&f, k, k);
    }
    for (int i = 0; i < 3000; i++)
        put(&f, "hot", "v");
    Etcdserverpb__RangeRequest r = range_req("key", "kez");
    r.limit = 10;
    Etcdserverpb__RangeResponse *resp = range(&f, &r);
    ASSERT_EQ(resp->count, 2000);
    ASSERT_EQ(resp->n_kvs, 10);
    expect_kv(&f, "hot", 0, "v", 2002, 5001, 3000);
    expect_kv(&f, "hot", 2500, "v", 2002, 2500, 499);
    fx_close(&f);
}

TEST(kvstore, snapshot_matches_documented_example)
{
    /* The example of docs/snapshot-format.md, byte for byte. */
    static const char *hex =
        "4c534b56534e4150" "00000001" "0000000000000005" "ffffffffffffffff"
        "0000000000000002"
        "00000001" "61" "00000002"
        "0000000000000002" "0000000000000002" "00000002"
        "0000000000000002" "00000000" "0000000000000003" "00000000"
        "0000000000000000" "0000000000000000" "00000000"
        "00000001" "62" "00000001"
        "0000000000000004" "0000000000000002" "00000002"
        "0000000000000004" "00000000" "0000000000000005" "00000000";
    struct fx f;
    fx_open(&f);
    put(&f, "a", "1");
    del(&f, "a", NULL);
    put(&f, "b", "1");
    put(&f, "b", "2");
    uint8_t *buf;
    size_t len;
    ASSERT_EQ(kvstore_snapshot(f.kv, &buf, &len), 0);
    ASSERT_EQ(len * 2, strlen(hex));
    for (size_t i = 0; i < len; i++) {
        unsigned byte;
        sscanf(hex + 2 * i, "%2x", &byte);
        if (buf[i] != byte)
            TEST_FAIL("byte %zu: %02x vs %02x", i, buf[i], byte);
    }
    free(buf);
    fx_close(&f);
}

/* --max-txn-ops: etcd's count per branch (and compares), nested txns taking
 * what the outer level leaves. */
TEST(kvstore, txn_validation_max_ops)
{
    struct fx f;
    fx_open(&f);
    struct arena *a = &f.a;
    Etcdserverpb__TxnRequest *t = txn_new(a);
    for (int i = 0; i < 3; i++)
        t->success[t->n_success++] = op_range(a, "k", NULL);
    ASSERT_EQ(kvstore_validate_txn(t, 2), LSKV_ETOOMANYOPS);
    ASSERT_EQ(kvstore_validate_txn(t, 3), 0);
    t->n_success = 2;
    ASSERT_EQ(kvstore_validate_txn(t, 2), 0);
    /* Two per branch pass: etcd counts each branch on its own. */
    for (int i = 0; i < 2; i++)
        t->failure[t->n_failure++] = op_range(a, "k", NULL);
    ASSERT_EQ(kvstore_validate_txn(t, 2), 0);
    /* One op at the top leaves 1 for the nested txn. */
    t = txn_new(a);
    Etcdserverpb__TxnRequest *nested = txn_new(a);
    for (int i = 0; i < 2; i++)
        nested->success[nested->n_success++] = op_range(a, "k", NULL);
    t->success[t->n_success++] = op_txn(a, nested);
    ASSERT_EQ(kvstore_validate_txn(t, 2), LSKV_ETOOMANYOPS);
    ASSERT_EQ(kvstore_validate_txn(t, 3), 0);
    fx_close(&f);
}

/* A budget above etcd's default is honoured, but nesting stays bounded by
 * KV_TXN_MAX_DEPTH levels below the top (apply recurses per level). */
TEST(kvstore, txn_validation_depth_bound)
{
    struct fx f;
    fx_open(&f);
    struct arena *a = &f.a;
    Etcdserverpb__TxnRequest *t = txn_new(a); /* empty: costs no op */
    for (int level = 0; level < KV_TXN_MAX_DEPTH; level++) {
        Etcdserverpb__TxnRequest *up = txn_new(a);
        up->success[up->n_success++] = op_txn(a, t);
        t = up;
    }
    /* KV_TXN_MAX_DEPTH levels below the top: the default budget just holds
     * (each level above the empty bottom uses one op). */
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_DEFAULT), 0);
    ASSERT_EQ(kvstore_validate_txn(t, KV_TXN_OPS_LIMIT), 0);
    Etcdserverpb__TxnRequest *deeper = txn_new(a);
    deeper->success[deeper->n_success++] = op_txn(a, t);
    ASSERT_EQ(kvstore_validate_txn(deeper, KV_TXN_OPS_LIMIT), LSKV_ETOOMANYOPS);
    /* A flat txn above the default passes under a budget that allows it. */
    Etcdserverpb__TxnRequest *wide = txn_new(a);
    wide->success = arena_alloc(a, 300 * sizeof(void *));
    for (int i = 0; i < 300; i++)
        wide->success[wide->n_success++] = op_range(a, "k", NULL);
    ASSERT_EQ(kvstore_validate_txn(wide, 300), 0);
    ASSERT_EQ(kvstore_validate_txn(wide, 299), LSKV_ETOOMANYOPS);
    ASSERT_EQ(kvstore_validate_txn(wide, KV_TXN_OPS_LIMIT + 1), LSKV_ETOOMANYOPS);
    fx_close(&f);
}

/* ---- history (kv/history.c) ---- */

struct seen {
    char text[2048];
};

static int note_change(void *arg, const struct kv_record *rec, int64_t main, int64_t sub)
{
    struct seen *s = arg;
    size_t n = strlen(s->text);
    snprintf(s->text + n, sizeof s->text - n, "%lld.%lld %s%.*s=%.*s;", (long long)main,
             (long long)sub, rec->tombstone ? "-" : "", (int)rec->key_len,
             (const char *)rec->key, (int)rec->value_len, (const char *)rec->value);
    return 0;
}

static const char *history(struct fx *f, const char *key, const char *end, int64_t from,
                           int64_t to, int want_rv)
{
    static struct seen s;
    memset(&s, 0, sizeof s);
    ProtobufCBinaryData k = bin(key), e = end ? bin(end) : (ProtobufCBinaryData){0};
    int rv = kvstore_history(f->kv, &k, &e, from, to, &f->a, note_change, &s, f->errmsg);
    if (rv != want_rv)
        TEST_FAIL("history from %lld: %s (%s)", (long long)from, lskv_errname(rv), f->errmsg);
    return s.text;
}

static void compact_at(struct fx *f, int64_t rev)
{
    Etcdserverpb__CompactionRequest r = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    r.revision = rev;
    Etcdserverpb__CompactionResponse *resp;
    ASSERT_EQ(kvstore_compact(f->kv, &r, &f->a, &resp, f->errmsg), 0);
}

/* Changes come back in revision order by record id, filtered by range, the
 * subs of a multi-key delete included; compaction keeps what survives at its
 * point (not the tombstone it deleted) and refuses what is below; a restore
 * rebuilds the same log; a record gone from the engine is an error. */
TEST(kvstore, history_by_revision)
{
    struct fx f;
    fx_open_cache(&f, 0);
    put(&f, "a", "1");            /* 2 */
    put(&f, "b", "2");            /* 3 */
    put(&f, "c", "3");            /* 4 */
    ASSERT_EQ(del(&f, "a", "c"), 2); /* 5: a and b, subs 0 and 1 */
    put(&f, "b", "4");            /* 6 */
    put(&f, "x", "5");            /* 7 */
    ASSERT_STR_EQ(history(&f, "a", "z", 1, 100, 0),
                  "2.0 a=1;3.0 b=2;4.0 c=3;5.0 -a=;5.1 -b=;6.0 b=4;7.0 x=5;");
    ASSERT_STR_EQ(history(&f, "b", NULL, 4, 6, 0), "5.1 -b=;6.0 b=4;");
    ASSERT_STR_EQ(history(&f, "c", "\xff", 5, 100, 0), "7.0 x=5;");

    /* A snapshot restored elsewhere gives the same history. */
    uint8_t *snap;
    size_t snap_len;
    ASSERT_EQ(kvstore_snapshot(f.kv, &snap, &snap_len), 0);
    kvstore *copy;
    ASSERT_EQ(kvstore_open(f.rs, &copy), 0);
    ASSERT_EQ(kvstore_restore(copy, snap, snap_len), 0);
    kvstore *orig = f.kv;
    f.kv = copy;
    ASSERT_STR_EQ(history(&f, "a", "z", 1, 100, 0),
                  "2.0 a=1;3.0 b=2;4.0 c=3;5.0 -a=;5.1 -b=;6.0 b=4;7.0 x=5;");
    f.kv = orig;
    kvstore_close(copy);
    free(snap);

    /* Compaction at 5: its tombstones are deleted with the older revisions;
     * history from 5 has what survives there, from 4 is compacted. */
    compact_at(&f, 5);
    history(&f, "a", "z", 4, 100, LSKV_ECOMPACTED);
    ASSERT_STR_EQ(history(&f, "a", "z", 5, 100, 0), "6.0 b=4;7.0 x=5;");
    put(&f, "y", "6");            /* 8 */
    ASSERT_STR_EQ(history(&f, "a", "z", 7, 100, 0), "7.0 x=5;8.0 y=6;");
    ASSERT_EQ(kvstore_snapshot(f.kv, &snap, &snap_len), 0);
    ASSERT_EQ(kvstore_open(f.rs, &copy), 0);
    ASSERT_EQ(kvstore_restore(copy, snap, snap_len), 0);
    f.kv = copy;
    ASSERT_STR_EQ(history(&f, "a", "z", 5, 100, 0), "6.0 b=4;7.0 x=5;8.0 y=6;");
    f.kv = orig;
    kvstore_close(copy);
    free(snap);

    /* The host hides a record the log says exists: an error, not a gap
     * (no cache: every read goes to the engine). */
    ASSERT_EQ(recstore_commit(f.rs), 0);
    tamper_hide(f.te, 7, 0, true);
    history(&f, "a", "z", 5, 100, LSKV_ECORRUPT);
    fx_close(&f);
}
