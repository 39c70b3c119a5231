/* The committed membership: see member_table.h. */
#include "statemachine/member_table.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"

/* An owned copy of every field of m (packed and unpacked: the copy has
 * protobuf-c's allocator). */
static Etcdserverpb__Member *copy_member(const Etcdserverpb__Member *m)
{
    Etcdserverpb__Member c = ETCDSERVERPB__MEMBER__INIT;
    c.id = m->id;
    c.name = m->name;
    c.peerurls = m->peerurls;
    c.n_peerurls = m->n_peerurls;
    c.clienturls = m->clienturls;
    c.n_clienturls = m->n_clienturls;
    c.islearner = m->islearner;
    size_t n = etcdserverpb__member__get_packed_size(&c);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return NULL;
    etcdserverpb__member__pack(&c, buf);
    Etcdserverpb__Member *out = etcdserverpb__member__unpack(NULL, n, buf);
    free(buf);
    return out;
}

static size_t index_of(const struct member_table *t, uint64_t id)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->m[i]->id == id)
            return i;
    return t->n;
}

/* Stores c (owned) as member c->id, replacing the entry it had. */
static int put(struct member_table *t, Etcdserverpb__Member *c)
{
    if (c == NULL)
        return LSKV_ENOMEM;
    size_t i = index_of(t, c->id);
    if (i < t->n) {
        etcdserverpb__member__free_unpacked(t->m[i], NULL);
        t->m[i] = c;
        return 0;
    }
    if (t->n == MEMBER_TABLE_MAX) {
        etcdserverpb__member__free_unpacked(c, NULL);
        return LSKV_EINVAL;
    }
    t->m[t->n++] = c;
    return 0;
}

/* old (may be NULL) with the raft attributes of r and the published
 * attributes of p (either may be NULL: old's stay). */
static int merge(struct member_table *t, uint64_t id, const Etcdserverpb__Member *r,
                 const Etcdserverpb__Member *p)
{
    const Etcdserverpb__Member *old = member_table_get(t, id);
    Etcdserverpb__Member c = ETCDSERVERPB__MEMBER__INIT;
    c.id = id;
    if (old != NULL)
        c = *old;
    if (r != NULL) {
        c.peerurls = r->peerurls;
        c.n_peerurls = r->n_peerurls;
        c.islearner = r->islearner;
    }
    if (p != NULL) {
        c.name = p->name;
        c.clienturls = p->clienturls;
        c.n_clienturls = p->n_clienturls;
    }
    return put(t, copy_member(&c));
}

bool member_table_initialized(const struct member_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->m[i]->n_peerurls > 0)
            return true;
    return false;
}

int member_table_init(struct member_table *t, const Etcdserverpb__Member *const *list, size_t n)
{
    if (member_table_initialized(t))
        return 0;
    if (n == 0 || n > MEMBER_TABLE_MAX)
        return LSKV_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (list[i]->id == 0 || list[i]->n_peerurls == 0)
            return LSKV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        Etcdserverpb__Member r = *list[i];
        r.islearner = 0;
        int rv = merge(t, list[i]->id, &r, NULL);
        if (rv != 0)
            return rv;
    }
    return 0;
}

int member_table_set(struct member_table *t, const Etcdserverpb__Member *m)
{
    if (m->id == 0)
        return LSKV_EINVAL;
    if (member_table_initialized(t) && member_table_get(t, m->id) == NULL)
        return 0; /* removed: etcd ignores a removed member's publish */
    return merge(t, m->id, NULL, m);
}

/* A peer URL of urls that a member other than id has. */
static bool url_taken(const struct member_table *t, uint64_t id, char *const *urls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const Etcdserverpb__Member *o = member_table_find_url(t, urls[i]);
        if (o != NULL && o->id != id)
            return true;
    }
    return false;
}

int member_table_add(struct member_table *t, const Etcdserverpb__Member *m)
{
    if (!member_table_initialized(t))
        return LSKV_ENOTREADY;
    if (m->id == 0 || m->n_peerurls == 0)
        return LSKV_EINVAL;
    if (member_table_get(t, m->id) != NULL)
        return LSKV_EMEMBEREXIST;
    if (url_taken(t, m->id, m->peerurls, m->n_peerurls))
        return LSKV_EPEERURLEXIST;
    if (m->islearner) {
        size_t learners = 0;
        for (size_t i = 0; i < t->n; i++)
            learners += t->m[i]->islearner != 0;
        if (learners >= MEMBER_TABLE_MAX_LEARNERS)
            return LSKV_ETOOMANYLEARNERS;
    }
    Etcdserverpb__Member c = ETCDSERVERPB__MEMBER__INIT;
    c.id = m->id;
    c.peerurls = m->peerurls;
    c.n_peerurls = m->n_peerurls;
    c.islearner = m->islearner;
    return put(t, copy_member(&c));
}

int member_table_remove(struct member_table *t, uint64_t id)
{
    if (!member_table_initialized(t))
        return LSKV_ENOTREADY;
    size_t i = index_of(t, id);
    if (i == t->n)
        return LSKV_EMEMBERNOTFOUND;
    /* The last member would leave a table that looks uninitialized. */
    if (t->n == 1)
        return LSKV_EINVAL;
    etcdserverpb__member__free_unpacked(t->m[i], NULL);
    memmove(&t->m[i], &t->m[i + 1], (t->n - i - 1) * sizeof t->m[0]);
    t->n--;
    return 0;
}

int member_table_update(struct member_table *t, uint64_t id, char *const *peer_urls,
                        size_t n_peer_urls)
{
    if (!member_table_initialized(t))
        return LSKV_ENOTREADY;
    const Etcdserverpb__Member *old = member_table_get(t, id);
    if (old == NULL)
        return LSKV_EMEMBERNOTFOUND;
    if (n_peer_urls == 0)
        return LSKV_EINVAL;
    if (url_taken(t, id, peer_urls, n_peer_urls))
        return LSKV_EPEERURLEXIST;
    Etcdserverpb__Member r = *old;
    r.peerurls = (char **)peer_urls;
    r.n_peerurls = n_peer_urls;
    return merge(t, id, &r, NULL);
}

int member_table_promote(struct member_table *t, uint64_t id)
{
    if (!member_table_initialized(t))
        return LSKV_ENOTREADY;
    const Etcdserverpb__Member *old = member_table_get(t, id);
    if (old == NULL)
        return LSKV_EMEMBERNOTFOUND;
    if (!old->islearner)
        return LSKV_EMEMBERNOTLEARNER;
    Etcdserverpb__Member r = *old;
    r.islearner = 0;
    return merge(t, id, &r, NULL);
}

const Etcdserverpb__Member *member_table_get(const struct member_table *t, uint64_t id)
{
    size_t i = index_of(t, id);
    return i < t->n ? t->m[i] : NULL;
}

const Etcdserverpb__Member *member_table_find_url(const struct member_table *t,
                                                  const char *url)
{
    for (size_t i = 0; i < t->n; i++)
        for (size_t j = 0; j < t->m[i]->n_peerurls; j++)
            if (strcmp(t->m[i]->peerurls[j], url) == 0)
                return t->m[i];
    return NULL;
}

size_t member_table_sorted(const struct member_table *t, const Etcdserverpb__Member **out)
{
    for (size_t i = 0; i < t->n; i++) {
        size_t j = i;
        for (; j > 0 && out[j - 1]->id > t->m[i]->id; j--)
            out[j] = out[j - 1];
        out[j] = t->m[i];
    }
    return t->n;
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
        rv = r->members[i]->id == 0 || member_table_get(t, r->members[i]->id) != NULL
                 ? LSKV_ECORRUPT
                 : put(t, copy_member(r->members[i]));
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
