/* config/members: etcd 3.4's member and cluster ids, each expected value
 * measured on Debian's etcd 3.4.23 (`etcdctl member list -w json` /
 * `endpoint status -w json`) started with the same flags. */
#include <string.h>

#include "common/err.h"
#include "config/members.h"
#include "runner.h"

TEST(members, etcd_defaults)
{
    struct members m;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    char *ap[] = {"http://localhost:2380"};
    ASSERT_EQ(members_parse("default=http://localhost:2380", MEMBERS_DEFAULT_TOKEN, &m, errmsg),
              0);
    ASSERT_EQ(members_find_local(&m, "default", ap, 1, NULL, errmsg), 0);
    ASSERT_EQ(m.n, 1);
    ASSERT_EQ(m.self, 0);
    ASSERT_STR_EQ(m.m[0].name, "default");
    ASSERT(m.m[0].id == 0x8e9e05c52164694dULL);
    ASSERT(m.cluster_id == 0xcdf818194e3a8c32ULL);
    members_free(&m);
}

/* Three members on 127.0.0.1 with --initial-cluster-token lskv-test-3:
 * etcd listed m1 50c7206fca233981, m3 75b15df8ebb70aa8, m2 95e68c40024afb72
 * in cluster 5c23e4b9d1e25ab2. */
TEST(members, three_members_as_etcd)
{
    struct members m;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    ASSERT_EQ(members_parse("m1=http://127.0.0.1:25381,m2=http://127.0.0.1:25382,"
                            "m3=http://127.0.0.1:25383", "lskv-test-3", &m, errmsg), 0);
    ASSERT_EQ(m.n, 3);
    /* sorted by id, as member list shows them */
    ASSERT_STR_EQ(m.m[0].name, "m1");
    ASSERT(m.m[0].id == 0x50c7206fca233981ULL);
    ASSERT_STR_EQ(m.m[1].name, "m3");
    ASSERT(m.m[1].id == 0x75b15df8ebb70aa8ULL);
    ASSERT_STR_EQ(m.m[2].name, "m2");
    ASSERT(m.m[2].id == 0x95e68c40024afb72ULL);
    ASSERT(m.cluster_id == 0x5c23e4b9d1e25ab2ULL);
    char *ap[] = {"http://127.0.0.1:25382"};
    ASSERT_EQ(members_find_local(&m, "m2", ap, 1, NULL, errmsg), 0);
    ASSERT_EQ(m.self, 2);
    uint64_t ids[] = {0x95e68c40024afb72ULL, 0x50c7206fca233981ULL, 0x75b15df8ebb70aa8ULL};
    ASSERT(members_cluster_id(ids, 3) == 0x5c23e4b9d1e25ab2ULL); /* any order */
    members_free(&m);
}

/* A repeated name gives one member two peer URLs; etcd (token tok2) made
 * member 01736c09848c5862 in cluster ab2d585756325ee9. */
TEST(members, repeated_name_is_one_member_with_sorted_urls)
{
    struct members m;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    ASSERT_EQ(members_parse("a=http://127.0.0.1:25386,a=http://127.0.0.1:25385", "tok2", &m,
                            errmsg), 0);
    ASSERT_EQ(m.n, 1);
    ASSERT_EQ(m.m[0].n_peer_urls, 2);
    ASSERT_STR_EQ(m.m[0].peer_urls[0], "http://127.0.0.1:25385");
    ASSERT(m.m[0].id == 0x01736c09848c5862ULL);
    ASSERT(m.cluster_id == 0xab2d585756325ee9ULL);
    char *ap[] = {"http://127.0.0.1:25385", "http://127.0.0.1:25386"};
    ASSERT_EQ(members_find_local(&m, "a", ap, 2, NULL, errmsg), 0);
    /* one advertised URL of the two: etcd's text */
    ASSERT_EQ(members_find_local(&m, "a", ap, 1, NULL, errmsg), LSKV_EINVAL);
    ASSERT_STR_EQ(errmsg, "--initial-cluster has a=http://127.0.0.1:25386 but missing from "
                          "--initial-advertise-peer-urls=http://127.0.0.1:25385 "
                          "(len([\"http://127.0.0.1:25385\"]) != len([\"http://127.0.0.1:25385\" "
                          "\"http://127.0.0.1:25386\"]))");
    members_free(&m);
}

TEST(members, local_member_checks_use_etcds_texts)
{
    struct members m;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    ASSERT_EQ(members_parse("a=http://h:1", "t", &m, errmsg), 0);
    char *ap[] = {"http://h:1"};
    ASSERT_EQ(members_find_local(&m, "b", ap, 1, NULL, errmsg), LSKV_EINVAL);
    ASSERT_STR_EQ(errmsg, "couldn't find local name \"b\" in the initial cluster configuration");
    char *other[] = {"http://h:2"};
    ASSERT_EQ(members_find_local(&m, "a", other, 1, NULL, errmsg), LSKV_EINVAL);
    ASSERT_STR_EQ(errmsg, "--initial-cluster has a=http://h:1 but missing from "
                          "--initial-advertise-peer-urls=http://h:2 (resolved urls: "
                          "\"http://h:2\" != \"http://h:1\")");
    members_free(&m);
    ASSERT_EQ(members_parse("a=http://h:1,a=http://h:2", "t", &m, errmsg), 0);
    char *three[] = {"http://h:1", "http://h:2", "http://h:3"};
    ASSERT_EQ(members_find_local(&m, "a", three, 3, NULL, errmsg), LSKV_EINVAL);
    ASSERT_STR_EQ(errmsg, "--initial-advertise-peer-urls has http://h:3 but missing from "
                          "--initial-cluster=a=http://h:1,a=http://h:2,a=http://h:3");
    members_free(&m);
}

TEST(members, malformed_initial_cluster_refused)
{
    struct members m;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    static const struct {
        const char *ic, *why;
    } cases[] = {
        {"a=http://h:1,b=http://h:1", "initial cluster a=http://h:1,b=http://h:1 has duplicate url"},
        {"a=http://h:1/", "URL must not contain a path"},
        {"a=ftp://h:1", "scheme must be http"},
        {"a=http://h", "missing port"},
        {"a", "--initial-cluster=a:"},
        {",,", "names no member"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ASSERT_EQ(members_parse(cases[i].ic, "t", &m, errmsg), LSKV_EINVAL);
        ASSERT(strstr(errmsg, cases[i].why) != NULL);
        members_free(&m);
    }
    /* empty entries are skipped, as etcd's parser does */
    ASSERT_EQ(members_parse(",a=http://h:1,", "t", &m, errmsg), 0);
    ASSERT_EQ(m.n, 1);
    members_free(&m);
}

/* A member MemberAdd added, or one restarting from its data dir, takes the
 * ids the cluster gave; the list stays sorted with self on it. */
TEST(members, reassign_takes_the_clusters_ids)
{
    struct members m;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    ASSERT_EQ(members_parse("m1=http://127.0.0.1:25381,m2=http://127.0.0.1:25382,"
                            "m3=http://127.0.0.1:25383", "lskv-test-3", &m, errmsg), 0);
    char *ap[] = {"http://127.0.0.1:25382"};
    ASSERT_EQ(members_find_local(&m, "m2", ap, 1, NULL, errmsg), 0);
    ASSERT_EQ(members_reassign(&m, 0x10, 0x77, errmsg), 0);
    ASSERT_EQ(m.self, 0u);
    ASSERT_STR_EQ(m.m[0].name, "m2");
    ASSERT(m.m[0].id == 0x10 && m.cluster_id == 0x77);
    ASSERT_STR_EQ(m.m[1].name, "m1");
    ASSERT_STR_EQ(m.m[2].name, "m3");
    /* Another member's id, or 0, is refused and changes nothing. */
    ASSERT_EQ(members_reassign(&m, 0x50c7206fca233981ULL, 0x77, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "member m1's") != NULL);
    ASSERT_EQ(members_reassign(&m, 0, 0x77, errmsg), LSKV_EINVAL);
    ASSERT(m.m[m.self].id == 0x10);
    members_free(&m);
}
