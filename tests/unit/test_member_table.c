/* Tests for statemachine/member_table.c: the committed membership and what
 * members publish. */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "runner.h"
#include "statemachine/member_table.h"

/* What a member publishes (name, client URLs) or what MemberAdd carries
 * (peer URLs, learner flag). */
static Etcdserverpb__Member member_of(uint64_t id, char *name, char **urls, size_t n,
                                      char **peer, size_t n_peer, bool learner)
{
    Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
    m.id = id;
    m.name = name;
    m.clienturls = urls;
    m.n_clienturls = n;
    m.peerurls = peer;
    m.n_peerurls = n_peer;
    m.islearner = learner;
    return m;
}
#define member(id, name, urls, n) member_of(id, name, urls, n, NULL, 0, false)
#define raft_member(id, peer, n, learner) member_of(id, "", NULL, 0, peer, n, learner)

TEST(member_table, publish_replace_and_round_trip)
{
    struct member_table t = {0}, u = {0};
    char *a[] = {"http://a:2379", "http://a:22379"}, *b[] = {"http://b:2379"};
    Etcdserverpb__Member m1 = member(1, "a", a, 2), m2 = member(2, "b", b, 1);
    ASSERT_EQ(member_table_set(&t, &m1), 0);
    ASSERT_EQ(member_table_set(&t, &m2), 0);
    m1.name = "a2"; /* a restart with another name replaces, not adds */
    m1.n_clienturls = 1;
    ASSERT_EQ(member_table_set(&t, &m1), 0);
    ASSERT_EQ(t.n, 2u);
    const Etcdserverpb__Member *g = member_table_get(&t, 1);
    ASSERT(g != NULL);
    ASSERT_STR_EQ(g->name, "a2");
    ASSERT_EQ(g->n_clienturls, 1u);
    ASSERT(member_table_get(&t, 3) == NULL);
    Etcdserverpb__Member zero = member(0, "z", NULL, 0);
    ASSERT_EQ(member_table_set(&t, &zero), LSKV_EINVAL);
    uint8_t *buf;
    size_t len;
    ASSERT_EQ(member_table_encode(&t, &buf, &len), 0);
    ASSERT_EQ(member_table_decode(&u, buf, len), 0);
    ASSERT_EQ(u.n, 2u);
    ASSERT_STR_EQ(member_table_get(&u, 2)->clienturls[0], "http://b:2379");
    /* Garbage and a header (never written) are refused; nothing is kept. */
    ASSERT_EQ(member_table_decode(&u, buf, len - 1), LSKV_ECORRUPT);
    ASSERT_EQ(u.n, 0u);
    uint8_t with_header[] = {0x0a, 0x00};
    ASSERT_EQ(member_table_decode(&u, with_header, sizeof with_header), LSKV_ECORRUPT);
    free(buf);
    member_table_clear(&t);
    member_table_clear(&u);
}

/* The bootstrap list, then etcd's changes with etcd's refusals. */
TEST(member_table, init_add_update_promote_remove)
{
    struct member_table t = {0}, u = {0};
    char *p1[] = {"http://a:2380"}, *p2[] = {"http://b:2380"}, *p3[] = {"http://c:2380"};
    char *p4[] = {"http://d:2380"}, *c1[] = {"http://a:2379"};
    Etcdserverpb__Member b1 = raft_member(10, p1, 1, false), b2 = raft_member(5, p2, 1, false);
    const Etcdserverpb__Member *boot[] = {&b1, &b2};
    Etcdserverpb__Member m3 = raft_member(7, p3, 1, false);
    /* Before the bootstrap list: publishing works, changes wait. */
    Etcdserverpb__Member pub = member(10, "a", c1, 1);
    ASSERT_EQ(member_table_set(&t, &pub), 0);
    ASSERT(!member_table_initialized(&t));
    ASSERT_EQ(member_table_add(&t, &m3), LSKV_ENOTREADY);
    ASSERT_EQ(member_table_init(&t, boot, 2), 0);
    ASSERT(member_table_initialized(&t));
    ASSERT_EQ(t.n, 2u);
    /* The name published before stays; the peer URLs came with init. */
    ASSERT_STR_EQ(member_table_get(&t, 10)->name, "a");
    ASSERT_STR_EQ(member_table_get(&t, 10)->peerurls[0], "http://a:2380");
    /* A second init (another member's) changes nothing. */
    Etcdserverpb__Member other = raft_member(99, p4, 1, false);
    const Etcdserverpb__Member *boot2[] = {&other};
    ASSERT_EQ(member_table_init(&t, boot2, 1), 0);
    ASSERT(member_table_get(&t, 99) == NULL);

    ASSERT_EQ(member_table_add(&t, &m3), 0);
    ASSERT_EQ(member_table_add(&t, &m3), LSKV_EMEMBEREXIST);
    Etcdserverpb__Member dup = raft_member(8, p2, 1, false);
    ASSERT_EQ(member_table_add(&t, &dup), LSKV_EPEERURLEXIST);
    Etcdserverpb__Member l1 = raft_member(11, p4, 1, true);
    ASSERT_EQ(member_table_add(&t, &l1), 0);
    char *p5[] = {"http://e:2380"};
    Etcdserverpb__Member l2 = raft_member(12, p5, 1, true);
    ASSERT_EQ(member_table_add(&t, &l2), LSKV_ETOOMANYLEARNERS);
    /* Update: its own URL again is fine, another member's is not. */
    ASSERT_EQ(member_table_update(&t, 7, p3, 1), 0);
    ASSERT_EQ(member_table_update(&t, 7, p1, 1), LSKV_EPEERURLEXIST);
    ASSERT_EQ(member_table_update(&t, 7, p5, 1), 0);
    ASSERT_STR_EQ(member_table_get(&t, 7)->peerurls[0], "http://e:2380");
    ASSERT(member_table_find_url(&t, "http://c:2380") == NULL);
    ASSERT_EQ(member_table_update(&t, 42, p3, 1), LSKV_EMEMBERNOTFOUND);
    /* Promote: only a learner. */
    ASSERT_EQ(member_table_promote(&t, 7), LSKV_EMEMBERNOTLEARNER);
    ASSERT_EQ(member_table_promote(&t, 42), LSKV_EMEMBERNOTFOUND);
    ASSERT_EQ(member_table_promote(&t, 11), 0);
    ASSERT(!member_table_get(&t, 11)->islearner);
    /* Sorted by id, as etcd lists. */
    const Etcdserverpb__Member *list[MEMBER_TABLE_MAX];
    ASSERT_EQ(member_table_sorted(&t, list), 4u);
    ASSERT_EQ(list[0]->id, 5u);
    ASSERT_EQ(list[3]->id, 11u);
    /* Remove; a removed member's late publish is ignored. */
    ASSERT_EQ(member_table_remove(&t, 7), 0);
    ASSERT_EQ(member_table_remove(&t, 7), LSKV_EMEMBERNOTFOUND);
    Etcdserverpb__Member late = member(7, "c", c1, 1);
    ASSERT_EQ(member_table_set(&t, &late), 0);
    ASSERT(member_table_get(&t, 7) == NULL);
    /* The snapshot section keeps every field. */
    uint8_t *buf;
    size_t len;
    ASSERT_EQ(member_table_encode(&t, &buf, &len), 0);
    ASSERT_EQ(member_table_decode(&u, buf, len), 0);
    ASSERT(member_table_initialized(&u));
    ASSERT_EQ(u.n, 3u);
    ASSERT_STR_EQ(member_table_get(&u, 10)->name, "a");
    ASSERT_STR_EQ(member_table_get(&u, 11)->peerurls[0], "http://d:2380");
    free(buf);
    member_table_clear(&t);
    member_table_clear(&u);
}
