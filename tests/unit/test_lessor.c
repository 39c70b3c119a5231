/* Tests for lease/lessor.c: etcd 3.4's lessor rules (grant floor and cap,
 * duplicate ids, keys moving between leases, revoke order, renew of an
 * expired lease, Promote on restart) and the snapshot round trip. */
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/err.h"
#include "lease/lessor.h"
#include "runner.h"

static void set_key(lessor *l, const char *k, int64_t id, int want)
{
    int rv = lessor_set_key(l, (const uint8_t *)k, strlen(k), id);
    if (rv != want)
        TEST_FAIL("set %s -> %lld: %s", k, (long long)id, lskv_errname(rv));
}

static int64_t lease_of(lessor *l, const char *k)
{
    return lessor_lease_of(l, (const uint8_t *)k, strlen(k));
}

TEST(lessor, grant_as_etcd)
{
    lessor *l;
    ASSERT_EQ(lessor_new(2, &l), 0);
    int64_t ttl = 0;
    ASSERT_EQ(lessor_grant(l, 0, 10, &ttl), LSKV_ELEASENOTFOUND);
    ASSERT_EQ(lessor_grant(l, 7, 1, &ttl), 0);
    ASSERT_EQ(ttl, 2); /* the floor */
    ASSERT_EQ(lessor_grant(l, 7, 10, &ttl), LSKV_ELEASEEXISTS);
    ASSERT_EQ(lessor_grant(l, 8, LEASE_MAX_TTL + 1, &ttl), LSKV_ELEASETTLTOOLARGE);
    ASSERT_EQ(lessor_grant(l, 8, LEASE_MAX_TTL, &ttl), 0);
    ASSERT_EQ(ttl, LEASE_MAX_TTL);
    ASSERT_EQ(lessor_grant(l, 9, -5, &ttl), 0);
    ASSERT_EQ(ttl, 2);
    ASSERT_EQ(lessor_count(l), 3);
    ASSERT(lessor_exists(l, 7) && !lessor_exists(l, 10));
    lessor_free(l);
}

TEST(lessor, keys_move_between_leases_and_revoke_lists_them_sorted)
{
    lessor *l;
    ASSERT_EQ(lessor_new(2, &l), 0);
    int64_t ttl;
    ASSERT_EQ(lessor_grant(l, 1, 10, &ttl), 0);
    ASSERT_EQ(lessor_grant(l, 2, 10, &ttl), 0);
    set_key(l, "c", 1, 0);
    set_key(l, "a", 1, 0);
    set_key(l, "b", 1, 0);
    set_key(l, "x", 3, LSKV_ELEASENOTFOUND);
    ASSERT_EQ(lease_of(l, "x"), 0);
    set_key(l, "b", 2, 0); /* moves */
    set_key(l, "c", 0, 0); /* detached */
    set_key(l, "zz", 0, 0); /* detaching a free key is a no-op */
    ASSERT_EQ(lease_of(l, "a"), 1);
    ASSERT_EQ(lease_of(l, "b"), 2);
    ASSERT_EQ(lease_of(l, "c"), 0);
    struct arena a;
    arena_init(&a);
    uint8_t **keys;
    size_t *lens, n;
    set_key(l, "aa", 1, 0);
    set_key(l, "", 1, 0);
    ASSERT_EQ(lessor_keys(l, 1, &a, &keys, &lens, &n), 0);
    ASSERT_EQ(n, 3);
    ASSERT_EQ(lens[0], 0);
    ASSERT(lens[1] == 1 && keys[1][0] == 'a');
    ASSERT(lens[2] == 2 && memcmp(keys[2], "aa", 2) == 0);
    ASSERT_EQ(lessor_remove(l, 1), 0);
    ASSERT_EQ(lessor_remove(l, 1), LSKV_ELEASENOTFOUND);
    ASSERT_EQ(lease_of(l, "a"), 0);
    ASSERT_EQ(lease_of(l, "aa"), 0);
    ASSERT_EQ(lease_of(l, "b"), 2);
    ASSERT_EQ(lessor_keys(l, 1, &a, &keys, &lens, &n), LSKV_ELEASENOTFOUND);
    arena_close(&a);
    lessor_free(l);
}

TEST(lessor, clocks_renew_and_expiry)
{
    lessor *l;
    ASSERT_EQ(lessor_new(2, &l), 0);
    int64_t ttl;
    ASSERT_EQ(lessor_grant(l, 5, 10, &ttl), 0);
    ASSERT_EQ(lessor_grant(l, 6, 3, &ttl), 0);
    struct lease_info info;
    /* No clock yet: the whole TTL remains, nothing expires. */
    ASSERT_EQ(lessor_info(l, 5, 1000000, &info), 0);
    ASSERT_EQ(info.remaining_ms, 10000);
    int64_t ids[4];
    ASSERT_EQ(lessor_expired(l, UINT64_MAX / 2, 1000, ids, 4), 0);
    lessor_start_clocks(l, 1000, 0, false);
    ASSERT_EQ(lessor_info(l, 6, 2000, &info), 0);
    ASSERT_EQ(info.remaining_ms, 2000);
    ASSERT_EQ(lessor_expired(l, 3999, 1000, ids, 4), 0);
    ASSERT_EQ(lessor_expired(l, 4000, 1000, ids, 4), 1);
    ASSERT_EQ(ids[0], 6);
    /* Pending: not handed out again until the retry time. */
    ASSERT_EQ(lessor_expired(l, 4500, 1000, ids, 4), 0);
    ASSERT_EQ(lessor_expired(l, 5000, 1000, ids, 4), 1);
    /* An expired lease is not renewed (its revoke is on its way). */
    ASSERT_EQ(lessor_renew(l, 6, 5000, &ttl), LSKV_ELEASENOTFOUND);
    ASSERT_EQ(lessor_renew(l, 5, 5000, &ttl), 0);
    ASSERT_EQ(ttl, 10);
    ASSERT_EQ(lessor_info(l, 5, 5000, &info), 0);
    ASSERT_EQ(info.remaining_ms, 10000);
    /* A restart (Promote) gives every lease its TTL again plus the
     * extension: none expires early. */
    lessor_start_clocks(l, 100000, 1000, true);
    ASSERT_EQ(lessor_expired(l, 103999, 1000, ids, 4), 0);
    ASSERT_EQ(lessor_expired(l, 104000, 1000, ids, 4), 1);
    ASSERT_EQ(lessor_expired(l, 200000, 1000, ids, 4), 2);
    ASSERT_EQ(ids[0], 6); /* oldest expiry first */
    ASSERT_EQ(lessor_renew(l, 42, 0, &ttl), LSKV_ELEASENOTFOUND);
    lessor_free(l);
}

TEST(lessor, snapshot_round_trip_and_refusals)
{
    lessor *l, *m;
    ASSERT_EQ(lessor_new(2, &l), 0);
    ASSERT_EQ(lessor_new(2, &m), 0);
    int64_t ttl;
    char key[32];
    for (int64_t id = 1; id <= 300; id++) {
        ASSERT_EQ(lessor_grant(l, id * 7919, id, &ttl), 0);
        for (int k = 0; k < (int)(id % 4); k++) {
            snprintf(key, sizeof key, "k/%lld/%d", (long long)id, k);
            set_key(l, key, id * 7919, 0);
        }
    }
    uint8_t *buf, *again;
    size_t len, len2;
    ASSERT_EQ(lessor_encode(l, &buf, &len), 0);
    ASSERT_EQ(lessor_decode(m, buf, len), 0);
    ASSERT_EQ(lessor_count(m), 300);
    ASSERT_EQ(lease_of(m, "k/299/1"), 299 * 7919);
    ASSERT_EQ(lessor_encode(m, &again, &len2), 0);
    ASSERT_EQ(len2, len);
    ASSERT(memcmp(buf, again, len) == 0); /* same state, same bytes */
    free(again);
    /* Every cut is refused and leaves the lessor empty. */
    for (size_t cut = 0; cut < len; cut += 97) {
        ASSERT(lessor_decode(m, buf, cut) != 0);
        ASSERT_EQ(lessor_count(m), 0);
    }
    buf[0] = 9;
    ASSERT_EQ(lessor_decode(m, buf, len), LSKV_EFORMAT);
    buf[0] = 1;
    /* Two leases with one id. */
    lessor *p;
    ASSERT_EQ(lessor_new(2, &p), 0);
    ASSERT_EQ(lessor_grant(p, 10, 5, &ttl), 0);
    ASSERT_EQ(lessor_grant(p, 20, 5, &ttl), 0);
    uint8_t *two;
    size_t two_len;
    ASSERT_EQ(lessor_encode(p, &two, &two_len), 0);
    ASSERT_EQ(two_len, 5 + 2 * 20);
    memcpy(two + 25, two + 5, 8);
    ASSERT_EQ(lessor_decode(m, two, two_len), LSKV_ECORRUPT);
    free(two);
    lessor_free(p);
    ASSERT_EQ(lessor_decode(m, buf, len), 0);
    free(buf);
    lessor_free(l);
    lessor_free(m);
}
