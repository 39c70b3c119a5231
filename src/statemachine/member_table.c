/* Published member attributes: see member_table.h. */
#include "statemachine/member_table.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"

/* An owned copy of m's id, name and client URLs (packed and unpacked: the
 * copy has protobuf-c's allocator). */
static Etcdserverpb__Member *copy_member(const Etcdserverpb__Member *m)
{
    Etcdserverpb__Member c = ETCDSERVERPB__MEMBER__INIT;
    c.id = m->id;
    c.name = m->name;
    c.clienturls = m->clienturls;
    c.n_clienturls = m->n_clienturls;
    size_t n = etcdserverpb__member__get_packed_size(&c);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return NULL;
    etcdserverpb__member__pack(&c, buf);
    Etcdserverpb__Member *out = etcdserverpb__member__unpack(NULL, n, buf);
    free(buf);
    return out;
}

int member_table_set(struct member_table *t, const Etcdserverpb__Member *m)
{
    if (m->id == 0)
        return LSKV_EINVAL;
    Etcdserverpb__Member *c = copy_member(m);
    if (c == NULL)
        return LSKV_ENOMEM;
    for (size_t i = 0; i < t->n; i++) {
        if (t->m[i]->id == m->id) {
            etcdserverpb__member__free_unpacked(t->m[i], NULL);
            t->m[i] = c;
            return 0;
        }
    }
    if (t->n == MEMBER_TABLE_MAX) {
        etcdserverpb__member__free_unpacked(c, NULL);
        return LSKV_EINVAL;
    }
    t->m[t->n++] = c;
    return 0;
}

const Etcdserverpb__Member *member_table_get(const struct member_table *t, uint64_t id)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->m[i]->id == id)
            return t->m[i];
    return NULL;
}

int member_table_encode(const struct member_table *t, uint8_t **out, size_t *len)
{
    Etcdserverpb__MemberListResponse r = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    r.members = (Etcdserverpb__Member **)t->m;
    r.n_members = t->n;
    *len = etcdserverpb__member_list_response__get_packed_size(&r);
    if ((*out = malloc(*len ? *len : 1)) == NULL)
        return LSKV_ENOMEM;
    etcdserverpb__member_list_response__pack(&r, *out);
    return 0;
}

int member_table_decode(struct member_table *t, const uint8_t *buf, size_t len)
{
    member_table_clear(t);
    Etcdserverpb__MemberListResponse *r =
        etcdserverpb__member_list_response__unpack(NULL, len, buf);
    if (r == NULL)
        return LSKV_ECORRUPT;
    int rv = r->header != NULL || r->n_members > MEMBER_TABLE_MAX ? LSKV_ECORRUPT : 0;
    for (size_t i = 0; i < r->n_members && rv == 0; i++)
        rv = member_table_set(t, r->members[i]);
    etcdserverpb__member_list_response__free_unpacked(r, NULL);
    if (rv != 0)
        member_table_clear(t);
    return rv == LSKV_EINVAL ? LSKV_ECORRUPT : rv;
}

void member_table_clear(struct member_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        etcdserverpb__member__free_unpacked(t->m[i], NULL);
    t->n = 0;
}
