/* Tests for kv/index.c: etcd's keyIndex semantics (get at revision,
 * generations, compaction as in key_index.go's examples), tree order and
 * balance under many keys, undo, and the serialised form. */
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "kv/index.h"
#include "runner.h"

#define K(s) (const uint8_t *)(s), strlen(s)

static struct kvindex_rev R(int64_t main, int64_t sub)
{
    struct kvindex_rev r = {main, sub};
    return r;
}

static kvindex *new_index(void)
{
    kvindex *ix;
    ASSERT_EQ(kvindex_new(&ix), 0);
    return ix;
}

static void put(kvindex *ix, const char *key, int64_t main, int64_t sub)
{
    ASSERT_EQ(kvindex_put(ix, K(key), R(main, sub), NULL), 0);
}

static void tomb(kvindex *ix, const char *key, int64_t main, int64_t sub)
{
    kvindex_entry *e = kvindex_find(ix, K(key));
    ASSERT(e != NULL);
    ASSERT_EQ(kvindex_tombstone(ix, e, R(main, sub)), 0);
}

/* Asserts the key's state at rev: mod main (0 = absent), create, version. */
static void expect(kvindex *ix, const char *key, int64_t at, int64_t mod, int64_t create,
                   int64_t ver)
{
    struct kvindex_hit h;
    bool found = kvindex_get(ix, K(key), at, &h);
    if (mod == 0) {
        if (found)
            TEST_FAIL("%s@%lld: expected absent, got mod %lld", key, (long long)at,
                      (long long)h.mod.main);
        return;
    }
    if (!found)
        TEST_FAIL("%s@%lld: expected mod %lld, got absent", key, (long long)at, (long long)mod);
    ASSERT_EQ(h.mod.main, mod);
    ASSERT_EQ(h.create_revision, create);
    ASSERT_EQ(h.version, ver);
}

/* key_index.go's example: put(1) put(2) tomb(3) put(4) tomb(5) on foo. */
static kvindex *example(void)
{
    kvindex *ix = new_index();
    put(ix, "foo", 1, 0);
    put(ix, "foo", 2, 0);
    tomb(ix, "foo", 3, 0);
    put(ix, "foo", 4, 0);
    tomb(ix, "foo", 5, 0);
    return ix;
}

TEST(index, get_across_generations)
{
    kvindex *ix = example();
    expect(ix, "foo", 0, 0, 0, 0);
    expect(ix, "foo", 1, 1, 1, 1);
    expect(ix, "foo", 2, 2, 1, 2);
    expect(ix, "foo", 3, 0, 0, 0);
    expect(ix, "foo", 4, 4, 4, 1);
    expect(ix, "foo", 5, 0, 0, 0);
    expect(ix, "foo", 100, 0, 0, 0);
    ASSERT_EQ(kvindex_size(ix), 1);
    ASSERT_EQ(kvindex_live(ix), 0);
    ASSERT_EQ(kvindex_revisions(ix), 5);
    put(ix, "foo", 7, 2);
    expect(ix, "foo", 6, 0, 0, 0);
    expect(ix, "foo", 7, 7, 7, 1);
    expect(ix, "foo", 1000, 7, 7, 1);
    ASSERT_EQ(kvindex_live(ix), 1);
    ASSERT_EQ(kvindex_check(ix), 0);
    kvindex_free(ix);
}

TEST(index, tombstone_missing_key)
{
    kvindex *ix = example();
    kvindex_entry *e = kvindex_find(ix, K("foo"));
    ASSERT_EQ(kvindex_tombstone(ix, e, R(9, 0)), LSKV_ENOTFOUND);
    ASSERT_EQ(kvindex_revisions(ix), 5);
    kvindex_free(ix);
}

static struct kvindex_rev dropped[64];
static size_t n_dropped;

static void on_drop(void *arg, struct kvindex_rev rev)
{
    (void)arg;
    if (n_dropped < 64)
        dropped[n_dropped] = rev;
    n_dropped++;
}

static void compact(kvindex *ix, int64_t at)
{
    n_dropped = 0;
    kvindex_compact(ix, at, on_drop, NULL);
    ASSERT_EQ(kvindex_check(ix), 0);
}

static bool was_dropped(int64_t main, int64_t sub)
{
    for (size_t i = 0; i < n_dropped && i < 64; i++)
        if (dropped[i].main == main && dropped[i].sub == sub)
            return true;
    return false;
}

/* The compaction examples of key_index.go, one fresh index each. */
TEST(index, compact_like_etcd)
{
    kvindex *ix = example();
    compact(ix, 1); /* nothing below the kept 1.0 */
    ASSERT_EQ(n_dropped, 0);
    expect(ix, "foo", 1, 1, 1, 1);
    compact(ix, 2); /* {2.0 3.0t} {4.0 5.0t} {} */
    ASSERT_EQ(n_dropped, 1);
    ASSERT(was_dropped(1, 0));
    expect(ix, "foo", 2, 2, 1, 2); /* version and created survive */
    compact(ix, 4); /* {4.0 5.0t} {} */
    ASSERT_EQ(n_dropped, 2);
    ASSERT(was_dropped(2, 0) && was_dropped(3, 0));
    expect(ix, "foo", 4, 4, 4, 1);
    ASSERT_EQ(kvindex_size(ix), 1);
    compact(ix, 5); /* {} : the key goes */
    ASSERT_EQ(n_dropped, 2);
    ASSERT(was_dropped(4, 0) && was_dropped(5, 0));
    ASSERT_EQ(kvindex_size(ix), 0);
    ASSERT_EQ(kvindex_revisions(ix), 0);
    kvindex_free(ix);

    ix = example();
    compact(ix, 3); /* the whole first generation goes, tombstone included */
    ASSERT_EQ(n_dropped, 3);
    expect(ix, "foo", 4, 4, 4, 1);
    kvindex_free(ix);

    ix = example();
    compact(ix, 6);
    ASSERT_EQ(n_dropped, 5);
    ASSERT_EQ(kvindex_size(ix), 0);
    kvindex_free(ix);

    /* A live key keeps its newest revision <= at and everything after. */
    ix = new_index();
    for (int64_t r = 2; r <= 10; r++)
        put(ix, "k", r, 0);
    compact(ix, 6);
    ASSERT_EQ(n_dropped, 4);
    expect(ix, "k", 6, 6, 2, 5);
    expect(ix, "k", 10, 10, 2, 9);
    ASSERT_EQ(kvindex_revisions(ix), 5);
    kvindex_free(ix);
}

struct since_log {
    int64_t main[32];
    int64_t sub[32];
    bool tomb[32];
    size_t n;
};

static int on_since(void *arg, const kvindex_entry *e, struct kvindex_rev rev, bool tombstone)
{
    (void)e;
    struct since_log *l = arg;
    ASSERT_LT(l->n, 32);
    l->main[l->n] = rev.main;
    l->sub[l->n] = rev.sub;
    l->tomb[l->n] = tombstone;
    l->n++;
    return 0;
}

TEST(index, same_main_put_and_tombstone)
{
    /* A txn can put a key and delete it with a from-key delete (etcd's
     * duplicate check misses "\0" range ends): two revisions share a main. */
    kvindex *ix = new_index();
    put(ix, "a", 2, 0);
    put(ix, "a", 3, 0);
    tomb(ix, "a", 3, 1);
    expect(ix, "a", 2, 2, 2, 1);
    expect(ix, "a", 3, 0, 0, 0);
    kvindex_entry *e = kvindex_find(ix, K("a"));
    ASSERT_EQ(kvindex_tombstone(ix, e, R(4, 0)), LSKV_ENOTFOUND);
    /* ... and the reverse: delete then re-create in one txn. */
    put(ix, "a", 4, 0);
    tomb(ix, "a", 5, 0);
    put(ix, "a", 5, 1);
    expect(ix, "a", 5, 5, 5, 1);
    ASSERT_EQ(kvindex_check(ix), 0);

    /* since collapses a main to its last sub, and flags tombstones. */
    struct since_log l = {0};
    ASSERT_EQ(kvindex_entry_since(e, 3, on_since, &l), 0);
    ASSERT_EQ(l.n, 3);
    ASSERT_EQ(l.main[0], 3);
    ASSERT_EQ(l.sub[0], 1);
    ASSERT(l.tomb[0]);
    ASSERT_EQ(l.main[1], 4);
    ASSERT(!l.tomb[1]);
    ASSERT_EQ(l.main[2], 5);
    ASSERT_EQ(l.sub[2], 1);
    ASSERT(!l.tomb[2]);
    kvindex_free(ix);
}

TEST(index, since)
{
    kvindex *ix = example();
    kvindex_entry *e = kvindex_find(ix, K("foo"));
    struct since_log l = {0};
    ASSERT_EQ(kvindex_entry_since(e, 1, on_since, &l), 0);
    ASSERT_EQ(l.n, 5);
    ASSERT(!l.tomb[0] && !l.tomb[1] && l.tomb[2] && !l.tomb[3] && l.tomb[4]);
    memset(&l, 0, sizeof(l));
    ASSERT_EQ(kvindex_entry_since(e, 4, on_since, &l), 0);
    ASSERT_EQ(l.n, 2);
    ASSERT_EQ(l.main[0], 4);
    memset(&l, 0, sizeof(l));
    ASSERT_EQ(kvindex_entry_since(e, 6, on_since, &l), 0);
    ASSERT_EQ(l.n, 0);
    kvindex_free(ix);
}

TEST(index, undo_restores_previous_state)
{
    kvindex *ix = example();
    put(ix, "x", 6, 0);
    kvindex_entry *foo = kvindex_find(ix, K("foo"));
    kvindex_entry *x = kvindex_find(ix, K("x"));

    /* Undo a put that re-created a deleted key. */
    put(ix, "foo", 7, 0);
    ASSERT_EQ(kvindex_live(ix), 2);
    kvindex_undo(ix, foo);
    expect(ix, "foo", 7, 0, 0, 0);
    ASSERT_EQ(kvindex_live(ix), 1);
    /* Undo a tombstone. */
    ASSERT_EQ(kvindex_tombstone(ix, x, R(7, 0)), 0);
    kvindex_undo(ix, x);
    expect(ix, "x", 7, 6, 6, 1);
    /* Undo the put that created x: the entry goes. */
    kvindex_undo(ix, x);
    ASSERT(kvindex_find(ix, K("x")) == NULL);
    ASSERT_EQ(kvindex_size(ix), 1);
    ASSERT_EQ(kvindex_revisions(ix), 5);
    ASSERT_EQ(kvindex_check(ix), 0);
    /* The key can be written again after the undo. */
    put(ix, "x", 6, 0);
    put(ix, "foo", 6, 1);
    expect(ix, "foo", 6, 6, 6, 1);
    ASSERT_EQ(kvindex_check(ix), 0);
    kvindex_free(ix);
}

static void keyname(char *buf, unsigned i)
{
    sprintf(buf, "key%07u", i);
}

TEST(index, many_keys_order_balance_and_removal)
{
    kvindex *ix = new_index();
    enum { N = 20000 };
    char k[32];
    /* Insert in a scrambled order (i * 7919 mod N is a permutation). */
    for (unsigned i = 0; i < N; i++) {
        keyname(k, (i * 7919u) % N);
        put(ix, k, 2 + i, 0);
    }
    ASSERT_EQ(kvindex_size(ix), N);
    ASSERT_EQ(kvindex_check(ix), 0);
    unsigned n = 0;
    for (kvindex_entry *e = kvindex_seek(ix, NULL, 0); e; e = kvindex_next(e), n++) {
        size_t len;
        const uint8_t *key = kvindex_entry_key(e, &len);
        keyname(k, n);
        ASSERT_EQ(len, strlen(k));
        ASSERT_MEM_EQ(key, k, len);
    }
    ASSERT_EQ(n, N);
    /* seek lands on the first key >= the probe. */
    kvindex_entry *e = kvindex_seek(ix, K("key0001234x"));
    size_t len;
    ASSERT_MEM_EQ(kvindex_entry_key(e, &len), "key0001235", 10);
    ASSERT(kvindex_seek(ix, K("kez")) == NULL);
    /* Delete every other key, compact, and check the tree stays balanced. */
    for (unsigned i = 0; i < N; i += 2) {
        keyname(k, i);
        tomb(ix, k, 100000 + i, 0);
    }
    compact(ix, 200000);
    ASSERT_EQ(n_dropped, N); /* put + tombstone of each deleted key */
    ASSERT_EQ(kvindex_size(ix), N / 2);
    ASSERT_EQ(kvindex_live(ix), N / 2);
    keyname(k, 4);
    ASSERT(kvindex_find(ix, K(k)) == NULL);
    keyname(k, 5);
    ASSERT(kvindex_find(ix, K(k)) != NULL);
    /* Undo removal path at scale: create and undo many keys. */
    for (unsigned i = 0; i < N; i += 2) {
        keyname(k, i);
        kvindex_entry *ne;
        ASSERT_EQ(kvindex_put(ix, K(k), R(300000, i), &ne), 0);
        kvindex_undo(ix, ne);
    }
    ASSERT_EQ(kvindex_size(ix), N / 2);
    ASSERT_EQ(kvindex_check(ix), 0);
    kvindex_free(ix);
}

/* Keys a client chose to collide in the lookup table: past the probe limit
 * they live in the tree only; lookups (hits and misses) stay right, and
 * removals keep the table consistent. */
TEST(index, colliding_keys_fall_back_to_the_tree)
{
    kvindex *ix = new_index();
    enum { N = 48, CAP_MASK = 127 };
    static char keys[N][24];
    unsigned found = 0;
    for (unsigned i = 0; found < N; i++) {
        char k[24];
        snprintf(k, sizeof k, "c%u", i);
        /* Home slot 0 in a table of up to 128 slots (N entries fit at load 1/2). */
        if ((kvindex_key_hash(K(k)) & CAP_MASK) == 0)
            memcpy(keys[found++], k, sizeof k);
    }
    for (unsigned i = 0; i < N; i++)
        put(ix, keys[i], 2 + i, 0);
    ASSERT_EQ(kvindex_size(ix), N);
    ASSERT_GT(kvindex_unhashed(ix), 0);
    ASSERT_EQ(kvindex_check(ix), 0);
    for (unsigned i = 0; i < N; i++) {
        kvindex_entry *e = kvindex_find(ix, K(keys[i]));
        ASSERT(e != NULL);
        size_t len;
        ASSERT_MEM_EQ(kvindex_entry_key(e, &len), keys[i], strlen(keys[i]));
        /* A put of an existing colliding key appends, never duplicates. */
        put(ix, keys[i], 100 + i, 0);
    }
    ASSERT_EQ(kvindex_size(ix), N);
    ASSERT(kvindex_find(ix, K("c-absent")) == NULL);
    /* Remove hashed and unhashed keys alike: tombstone then compact. */
    for (unsigned i = 0; i < N; i += 3)
        tomb(ix, keys[i], 200 + i, 0);
    compact(ix, 1000);
    ASSERT_EQ(kvindex_check(ix), 0);
    for (unsigned i = 0; i < N; i++)
        ASSERT((kvindex_find(ix, K(keys[i])) == NULL) == (i % 3 == 0));
    /* A new key and an undo of it. */
    kvindex_entry *ne;
    ASSERT_EQ(kvindex_put(ix, K("fresh"), R(2000, 0), &ne), 0);
    ASSERT(kvindex_find(ix, K("fresh")) == ne);
    kvindex_undo(ix, ne);
    ASSERT(kvindex_find(ix, K("fresh")) == NULL);
    ASSERT_EQ(kvindex_check(ix), 0);
    kvindex_free(ix);
}

TEST(index, hot_key_history_lookup)
{
    /* 200k revisions on one key: lookups at any revision are binary searches. */
    kvindex *ix = new_index();
    enum { N = 200000 };
    for (int64_t r = 2; r < 2 + N; r++)
        put(ix, "hot", r, 0);
    for (int i = 0; i < 100000; i++) {
        struct kvindex_hit h;
        ASSERT(kvindex_get(ix, K("hot"), 2 + N, &h));
        ASSERT_EQ(h.version, N);
    }
    expect(ix, "hot", 1000, 1000, 2, 999);
    /* Many generations: delete/re-create 50k times. */
    kvindex *ix2 = new_index();
    for (int64_t r = 2; r < 100002; r += 2) {
        put(ix2, "g", r, 0);
        tomb(ix2, "g", r + 1, 0);
    }
    expect(ix2, "g", 50000, 50000, 50000, 1);
    expect(ix2, "g", 50001, 0, 0, 0);
    expect(ix2, "g", 1, 0, 0, 0);
    ASSERT_EQ(kvindex_check(ix2), 0);
    compact(ix2, 99990);
    ASSERT_EQ(kvindex_revisions(ix2), 12); /* 99990..100001 */
    kvindex_free(ix2);
    kvindex_free(ix);
}

static uint8_t *encode(kvindex *ix, size_t *len)
{
    *len = kvindex_encoded_size(ix);
    uint8_t *buf = malloc(*len);
    ASSERT(buf != NULL);
    kvindex_encode(ix, buf);
    return buf;
}

TEST(index, encode_decode_roundtrip)
{
    kvindex *ix = example();
    put(ix, "bar", 6, 0);
    put(ix, "bar", 7, 3);
    put(ix, "zzz", 8, 0);
    compact(ix, 2);
    size_t len;
    uint8_t *buf = encode(ix, &len);
    kvindex *back;
    size_t used;
    ASSERT_EQ(kvindex_decode(buf, len, 8, &back, &used), 0);
    ASSERT_EQ(used, len);
    ASSERT_EQ(kvindex_check(back), 0);
    ASSERT_EQ(kvindex_size(back), 3);
    ASSERT_EQ(kvindex_live(back), 2);
    ASSERT_EQ(kvindex_revisions(back), kvindex_revisions(ix));
    expect(back, "foo", 2, 2, 1, 2);
    expect(back, "foo", 4, 4, 4, 1);
    expect(back, "bar", 8, 7, 6, 2);
    /* Re-encoding gives the same bytes. */
    size_t len2;
    uint8_t *buf2 = encode(back, &len2);
    ASSERT_EQ(len2, len);
    ASSERT_MEM_EQ(buf, buf2, len);
    /* max_rev bounds every revision. */
    ASSERT_EQ(kvindex_decode(buf, len, 7, &back, &used), LSKV_ECORRUPT);
    /* Every truncation fails cleanly. */
    for (size_t cut = 0; cut < len; cut++) {
        kvindex *t = NULL;
        ASSERT_EQ(kvindex_decode(buf, cut, 8, &t, &used), LSKV_ECORRUPT);
    }
    free(buf2);
    kvindex_free(back);
    free(buf);
    kvindex_free(ix);
}

TEST(index, decode_rejects_broken_invariants)
{
    kvindex *ix = new_index();
    put(ix, "a", 2, 0);
    put(ix, "b", 3, 0);
    size_t len, used;
    uint8_t *buf = encode(ix, &len);
    kvindex *t;
    /* Layout: count(8) | len(4) "a" ngens(4) created(8) ver(8) n(4) main(8) sub(4) | ... */
    uint8_t *bad = malloc(len);
    /* Keys out of order. */
    memcpy(bad, buf, len);
    bad[12] = 'c';
    ASSERT_EQ(kvindex_decode(bad, len, 10, &t, &used), LSKV_ECORRUPT);
    /* Duplicate key. */
    memcpy(bad, buf, len);
    bad[12] = 'b';
    ASSERT_EQ(kvindex_decode(bad, len, 10, &t, &used), LSKV_ECORRUPT);
    /* Version 0. */
    memcpy(bad, buf, len);
    bad[12 + 1 + 4 + 8 + 7] = 0;
    ASSERT_EQ(kvindex_decode(bad, len, 10, &t, &used), LSKV_ECORRUPT);
    /* Created after the first revision. */
    memcpy(bad, buf, len);
    bad[12 + 1 + 4 + 7] = 9;
    ASSERT_EQ(kvindex_decode(bad, len, 10, &t, &used), LSKV_ECORRUPT);
    /* Huge entry count. */
    memcpy(bad, buf, len);
    bad[0] = 0x7f;
    ASSERT_EQ(kvindex_decode(bad, len, 10, &t, &used), LSKV_ECORRUPT);
    /* Empty key. */
    memcpy(bad, buf, len);
    bad[11] = 0;
    ASSERT_EQ(kvindex_decode(bad, len, 10, &t, &used), LSKV_ECORRUPT);
    /* The original decodes. */
    ASSERT_EQ(kvindex_decode(buf, len, 10, &t, &used), 0);
    kvindex_free(t);
    free(bad);
    free(buf);
    kvindex_free(ix);
}

/* A key holding one put is stored packed (main below 2^47, sub below 2^16);
 * revisions outside that range, and every later write, use the general form.
 * Both must give the same answers, through writes, undo, compaction and
 * the serialised form. */
TEST(index, packed_and_general_forms_agree)
{
    const int64_t big = (int64_t)1 << 47; /* first main that does not pack */
    kvindex *ix = new_index();
    put(ix, "a", 5, 0);         /* packed */
    put(ix, "b", 5, 65535);     /* packed, largest sub */
    put(ix, "c", 5, 65536);     /* sub too big */
    put(ix, "d", big - 1, 0);   /* packed, largest main */
    put(ix, "e", big, 1);       /* main too big */
    ASSERT_EQ(kvindex_check(ix), 0);
    struct kvindex_hit h;
    ASSERT(kvindex_get(ix, K("b"), 5, &h));
    ASSERT_EQ(h.mod.sub, 65535);
    ASSERT(kvindex_get(ix, K("c"), 5, &h));
    ASSERT_EQ(h.mod.sub, 65536);
    expect(ix, "d", big - 1, big - 1, big - 1, 1);
    ASSERT(kvindex_get(ix, K("e"), big, &h));
    ASSERT_EQ(h.mod.main, big);
    ASSERT_EQ(h.mod.sub, 1);
    expect(ix, "a", 4, 0, 0, 0);

    /* A second put unpacks; undoing it packs again with the same answers. */
    put(ix, "a", 6, 0);
    expect(ix, "a", 6, 6, 5, 2);
    kvindex_undo(ix, kvindex_find(ix, K("a")));
    expect(ix, "a", 6, 5, 5, 1);
    ASSERT_EQ(kvindex_revisions(ix), 5);
    ASSERT_EQ(kvindex_check(ix), 0);

    /* Tombstone of a packed key, then undo of the tombstone. */
    ASSERT_EQ(kvindex_tombstone(ix, kvindex_find(ix, K("a")), R(7, 0)), 0);
    expect(ix, "a", 7, 0, 0, 0);
    expect(ix, "a", 6, 5, 5, 1);
    ASSERT_EQ(kvindex_live(ix), 4);
    kvindex_undo(ix, kvindex_find(ix, K("a")));
    expect(ix, "a", 7, 5, 5, 1);
    ASSERT_EQ(kvindex_live(ix), 5);

    /* Undo of the put that created a packed key removes it. */
    put(ix, "f", 8, 0);
    kvindex_undo(ix, kvindex_find(ix, K("f")));
    ASSERT(kvindex_find(ix, K("f")) == NULL);
    ASSERT_EQ(kvindex_size(ix), 5);

    /* Compaction leaves one put of "a", which packs; "g" is deleted. */
    put(ix, "a", 9, 0);
    put(ix, "a", 10, 0);
    put(ix, "g", 9, 1);
    ASSERT_EQ(kvindex_tombstone(ix, kvindex_find(ix, K("g")), R(10, 1)), 0);
    compact(ix, 10);
    ASSERT_EQ(n_dropped, 4); /* a@5 and a@9, g's put and tombstone */
    ASSERT(was_dropped(5, 0) && was_dropped(9, 0) && was_dropped(9, 1) && was_dropped(10, 1));
    ASSERT(kvindex_find(ix, K("g")) == NULL);
    ASSERT(kvindex_get(ix, K("a"), 10, &h));
    ASSERT_EQ(h.mod.main, 10);
    ASSERT_EQ(h.version, 3); /* puts at 5, 9 and 10 (6 was undone) */
    ASSERT_EQ(h.create_revision, 5);
    ASSERT_EQ(kvindex_check(ix), 0);

    /* The serialised form does not depend on the form in memory. */
    size_t len, len2, used;
    uint8_t *buf = encode(ix, &len);
    kvindex *back;
    ASSERT_EQ(kvindex_decode(buf, len, big, &back, &used), 0);
    ASSERT_EQ(kvindex_check(back), 0);
    uint8_t *buf2 = encode(back, &len2);
    ASSERT_EQ(len2, len);
    ASSERT_MEM_EQ(buf, buf2, len);
    ASSERT(kvindex_get(back, K("c"), 5, &h));
    ASSERT_EQ(h.mod.sub, 65536);
    ASSERT(kvindex_get(back, K("e"), big, &h));
    ASSERT_EQ(h.mod.main, big);
    expect(back, "b", 5, 5, 5, 1);
    free(buf);
    free(buf2);
    kvindex_free(back);
    kvindex_free(ix);
}

/* Entries of every size class and beyond it (key lengths 1..300; the
 * largest go to malloc), removed and added again: freed entries are reused,
 * and every key keeps its own bytes and revision. */
TEST(index, entries_of_every_size_reused)
{
    kvindex *ix = new_index();
    uint8_t key[300];
    for (int round = 0; round < 2; round++) {
        for (size_t len = 1; len <= sizeof key; len++) {
            memset(key, (int)('a' + len % 26), len);
            ASSERT_EQ(kvindex_put(ix, key, len, R((int64_t)(round * 1000 + len), 0), NULL), 0);
        }
        /* Remove the even lengths (undo of their creating put). */
        for (size_t len = 2; len <= sizeof key; len += 2) {
            memset(key, (int)('a' + len % 26), len);
            kvindex_entry *e = kvindex_find(ix, key, len);
            ASSERT(e != NULL);
            kvindex_undo(ix, e);
        }
        ASSERT_EQ(kvindex_check(ix), 0);
        if (round == 0) /* the odd ones get a second put next round */
            continue;
        for (size_t len = 1; len <= sizeof key; len++) {
            memset(key, (int)('a' + len % 26), len);
            struct kvindex_hit h;
            bool found = kvindex_get(ix, key, len, 5000, &h);
            ASSERT_EQ(found, len % 2 == 1);
            if (found) {
                size_t kl;
                const uint8_t *k = kvindex_entry_key(kvindex_find(ix, key, len), &kl);
                ASSERT_EQ(kl, len);
                ASSERT_MEM_EQ(k, key, len);
                ASSERT_EQ(h.mod.main, (int64_t)(1000 + len));
                ASSERT_EQ(h.version, 2);
            }
        }
    }
    ASSERT_EQ(kvindex_size(ix), 150);
    kvindex_free(ix);
}
