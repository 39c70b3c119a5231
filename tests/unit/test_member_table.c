/* Tests for statemachine/member_table.c: what members publish. */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "runner.h"
#include "statemachine/member_table.h"

static Etcdserverpb__Member member(uint64_t id, char *name, char **urls, size_t n)
{
    Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
    m.id = id;
    m.name = name;
    m.clienturls = urls;
    m.n_clienturls = n;
    return m;
}

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
