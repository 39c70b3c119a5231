/* The MVCC store: etcd 3.4's mvcc/kvstore*.go and etcdserver/apply.go over
 * the trusted key index (kv/index.c) and sealed records (storage/recstore.c).
 *
 * NOTES ON THE DESIGN
 *
 * Terms. The index maps each key to the (main, sub) revisions of its puts and
 * deletions; a record is the sealed content of one revision. "rev" is the
 * store's current revision; a write that changes something creates revision
 * rev + 1, its n-th change getting sub revision n.
 *
 * Invariants.
 * (1) Every revision in the index has a record in the record store, written
 *     in the same write (or earlier); compaction removes a revision from the
 *     index and deletes its record in the same step.
 * (2) A record read through the index must agree with it: same key, mod
 *     revision = main, create revision and version as the index computes,
 *     not a tombstone. Anything else is LSKV_ECORRUPT, never data.
 * (3) A write either completes (index updated, records staged, one
 *     recstore_commit unless commits are deferred, rev + 1 if it changed
 *     something) or leaves the index
 *     and rev as they were: changes update the index as they go (reads later
 *     in a txn see them) with an undo log, and their records stay in memory
 *     (kv->changes) until the whole write has succeeded; only then are they
 *     staged in the record store.
 * (4) Everything here is deterministic: same state + same request = same
 *     state and response on every node.
 *
 * Life of a write: kv_write_begin -> kv_exec_put / kv_exec_delete / txn
 * steps (index + kv->changes + kv->undo) -> kv_write_end (stage records,
 * commit, rev++; or undo everything). */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "kv/kvstore_impl.h"

/* ---- life cycle ---- */

int kvstore_open(recstore *rs, kvstore **out)
{
    kvstore *kv = calloc(1, sizeof(*kv));
    if (kv == NULL)
        return LSKV_ENOMEM;
    if (kvindex_new(&kv->ix) != 0) {
        free(kv);
        return LSKV_ENOMEM;
    }
    kv->rs = rs;
    kv->rev = 1;
    kv->compact_main = -1;
    *out = kv;
    return 0;
}

void kvstore_close(kvstore *kv)
{
    if (kv == NULL)
        return;
    kvindex_free(kv->ix);
    kv_history_free(&kv->history);
    free(kv->changes);
    free(kv->undo);
    free(kv);
}

int64_t kvstore_revision(const kvstore *kv)
{
    return kv->rev;
}

int64_t kvstore_compact_revision(const kvstore *kv)
{
    return kv->compact_main < 0 ? 0 : kv->compact_main;
}

size_t kvstore_key_count(const kvstore *kv)
{
    return kvindex_live(kv->ix);
}

struct kvstore_counts kvstore_counts(const kvstore *kv)
{
    return kv->counts;
}

void kvstore_set_deferred_commit(kvstore *kv, bool on)
{
    kv->defer_commit = on;
}

void kvstore_set_lease_lookup(kvstore *kv, kvstore_lease_fn fn, void *arg)
{
    kv->lease_exists = fn;
    kv->lease_arg = arg;
}

void kvstore_forget_changes(kvstore *kv)
{
    if (!kv->writing)
        kv->n_changes = 0;
}

const struct kv_record *kvstore_changes(const kvstore *kv, size_t *n)
{
    *n = kv->writing ? 0 : kv->n_changes;
    return kv->changes;
}

int kv_lease_check(kvstore *kv, int64_t lease)
{
    if (lease == 0)
        return 0;
    if (kv->lease_exists != NULL && kv->lease_exists(kv->lease_arg, lease))
        return 0;
    return LSKV_ELEASENOTFOUND;
}

/* ---- helpers ---- */

Etcdserverpb__ResponseHeader *kv_header(struct arena *a, int64_t revision)
{
    Etcdserverpb__ResponseHeader *h = arena_alloc(a, sizeof(*h));
    if (h == NULL)
        return NULL;
    etcdserverpb__response_header__init(h);
    h->revision = revision;
    return h;
}

void keyrange_from(struct keyrange *r, const ProtobufCBinaryData *key,
                   const ProtobufCBinaryData *range_end)
{
    r->key = key->data;
    r->key_len = key->len;
    r->end = range_end->data;
    r->end_len = range_end->len;
    /* etcd's mkGteRange: a range end of "\0" means every key >= key. */
    r->end_all = range_end->len == 1 && range_end->data[0] == 0;
}

int kv_visit(kvstore *kv, const struct keyrange *r, int64_t at_rev, kv_visit_fn cb, void *arg)
{
    struct kvindex_hit hit;
    if (r->end_len == 0) {
        const kvindex_entry *e = kvindex_find(kv->ix, r->key, r->key_len);
        if (e != NULL && kvindex_entry_get(e, at_rev, &hit))
            return cb(arg, e, &hit);
        return 0;
    }
    for (const kvindex_entry *e = kvindex_seek(kv->ix, r->key, r->key_len); e;
         e = kvindex_next(e)) {
        size_t klen;
        const uint8_t *k = kvindex_entry_key(e, &klen);
        if (!r->end_all && bytes_order(k, klen, r->end, r->end_len) >= 0)
            break;
        if (!kvindex_entry_get(e, at_rev, &hit))
            continue;
        int rv = cb(arg, e, &hit);
        if (rv != 0)
            return rv;
    }
    return 0;
}

static void errmsg_rev(char *errmsg, const char *what, const struct kvindex_hit *hit)
{
    if (errmsg)
        errmsg_printf(errmsg, "record %lld.%lld: %s", (long long)hit->mod.main,
                      (long long)hit->mod.sub, what);
}

int kv_read(kvstore *kv, const kvindex_entry *e, const struct kvindex_hit *hit,
            struct arena *a, Mvccpb__KeyValue **out, char *errmsg)
{
    struct kv_record rec;
    bool own = kv->writing && hit->mod.main == kv->rev + 1;
    if (own) {
        /* A change of the write in progress: not staged yet (invariant 3). */
        if (hit->mod.sub < 0 || (uint64_t)hit->mod.sub >= kv->n_changes) {
            errmsg_rev(errmsg, "pending change missing", hit);
            return LSKV_ECORRUPT;
        }
        rec = kv->changes[hit->mod.sub];
    } else {
        int rv = recstore_get(kv->rs, hit->mod.main, hit->mod.sub, a, &rec, errmsg);
        if (rv != 0) {
            if (errmsg && rv == LSKV_ECORRUPT)
                errmsg_wrapf(errmsg, "record %lld.%lld", (long long)hit->mod.main,
                             (long long)hit->mod.sub);
            return rv;
        }
    }
    /* Invariant 2: the record must be what the index says. */
    size_t klen;
    const uint8_t *key = kvindex_entry_key(e, &klen);
    if (rec.tombstone || rec.key_len != klen || memcmp(rec.key, key, klen) != 0 ||
        rec.mod_revision != hit->mod.main || rec.create_revision != hit->create_revision ||
        rec.version != hit->version) {
        errmsg_rev(errmsg, "does not match the key index", hit);
        return LSKV_ECORRUPT;
    }
    Mvccpb__KeyValue *kvp = arena_alloc(a, sizeof(*kvp));
    if (kvp == NULL)
        return LSKV_ENOMEM;
    mvccpb__key_value__init(kvp);
    if (own) {
        /* Copy: the change points into the caller's request. */
        kvp->key.data = arena_memdup(a, rec.key, rec.key_len);
        kvp->value.data = arena_memdup(a, rec.value, rec.value_len);
        if (kvp->key.data == NULL || kvp->value.data == NULL)
            return LSKV_ENOMEM;
    } else {
        kvp->key.data = (uint8_t *)rec.key;
        kvp->value.data = (uint8_t *)rec.value;
    }
    kvp->key.len = rec.key_len;
    kvp->value.len = rec.value_len;
    kvp->create_revision = rec.create_revision;
    kvp->mod_revision = rec.mod_revision;
    kvp->version = rec.version;
    kvp->lease = rec.lease;
    *out = kvp;
    return 0;
}

/* ---- range ---- */

struct cand {
    const kvindex_entry *e;
    struct kvindex_hit hit;
    Mvccpb__KeyValue *kv; /* read lazily */
    size_t idx;           /* position in key order: ties keep key order */
};

struct collect {
    const Etcdserverpb__RangeRequest *req;
    struct cand *v;
    size_t n, cap;
    size_t keep_max; /* store at most this many (SIZE_MAX: all) */
    int64_t count;   /* every key in range, as etcd's Count */
};

static bool filtered_out(const Etcdserverpb__RangeRequest *req, const struct kvindex_hit *h)
{
    if (req->max_mod_revision != 0 && h->mod.main > req->max_mod_revision)
        return true;
    if (req->min_mod_revision != 0 && h->mod.main < req->min_mod_revision)
        return true;
    if (req->max_create_revision != 0 && h->create_revision > req->max_create_revision)
        return true;
    if (req->min_create_revision != 0 && h->create_revision < req->min_create_revision)
        return true;
    return false;
}

static int collect_cb(void *arg, const kvindex_entry *e, const struct kvindex_hit *hit)
{
    struct collect *c = arg;
    c->count++;
    if (c->req->count_only || c->n >= c->keep_max || filtered_out(c->req, hit))
        return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct cand *v = realloc(c->v, cap * sizeof(*v));
        if (v == NULL)
            return LSKV_ENOMEM;
        c->v = v;
        c->cap = cap;
    }
    struct cand *x = &c->v[c->n];
    x->e = e;
    x->hit = *hit;
    x->kv = NULL;
    x->idx = c->n;
    c->n++;
    return 0;
}

struct sort_ctx {
    int target;
    bool desc;
};

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b ? 1 : 0;
}

static int cand_cmp(const void *pa, const void *pb, void *arg)
{
    const struct cand *a = pa, *b = pb;
    const struct sort_ctx *s = arg;
    int c = 0;
    size_t al, bl;
    switch (s->target) {
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY: {
        const uint8_t *ak = kvindex_entry_key(a->e, &al), *bk = kvindex_entry_key(b->e, &bl);
        c = bytes_order(ak, al, bk, bl);
        break;
    }
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION:
        c = cmp_i64(a->hit.version, b->hit.version);
        break;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE:
        c = cmp_i64(a->hit.create_revision, b->hit.create_revision);
        break;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD:
        c = cmp_i64(a->hit.mod.main, b->hit.mod.main);
        break;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE:
        c = bytes_order(a->kv->value.data, a->kv->value.len, b->kv->value.data, b->kv->value.len);
        break;
    default:
        break;
    }
    if (s->desc)
        c = -c;
    /* Equal elements keep key order in both directions, as Go's insertion
     * sort (used by sort.Sort for up to 12 elements) does. */
    return c != 0 ? c : cmp_i64((int64_t)a->idx, (int64_t)b->idx);
}

int kv_exec_range(kvstore *kv, const Etcdserverpb__RangeRequest *req, int64_t cur_rev,
                  struct arena *a, Etcdserverpb__RangeResponse **resp, char *errmsg)
{
    /* etcd's rangeKeys: future first, then 0 (or less) = current, then compacted. */
    int64_t rev = req->revision;
    if (rev > cur_rev)
        return LSKV_EFUTUREREV;
    if (rev <= 0)
        rev = cur_rev;
    if (rev < kv->compact_main)
        return LSKV_ECOMPACTED;

    int order = req->sort_order;
    int target = req->sort_target;
    if (target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
        order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE)
        order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    bool filters = req->min_mod_revision || req->max_mod_revision ||
                   req->min_create_revision || req->max_create_revision;
    bool sorting = order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND ||
                   order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
    if (target < ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY ||
        target > ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE)
        sorting = false;

    struct keyrange r;
    keyrange_from(&r, &req->key, &req->range_end);
    struct collect c = {.req = req, .keep_max = SIZE_MAX};
    /* Without a requested sort order or filters only limit + 1 candidates
     * matter (the extra one sets "more"); the count still covers the whole
     * range. As etcd, this tests the request's sort_order, not the defaulted
     * one: NONE with a non-KEY target keeps the first limit + 1 keys in key
     * order and then sorts those. */
    if (req->limit > 0 && req->sort_order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE &&
        !filters)
        c.keep_max = (uint64_t)req->limit < SIZE_MAX - 1 ? (size_t)req->limit + 1 : SIZE_MAX;
    int rv = kv_visit(kv, &r, rev, collect_cb, &c);
    if (rv != 0)
        goto out;

    Etcdserverpb__RangeResponse *out = arena_alloc(a, sizeof(*out));
    if (out == NULL) {
        rv = LSKV_ENOMEM;
        goto out;
    }
    etcdserverpb__range_response__init(out);
    out->header = kv_header(a, cur_rev);
    if (out->header == NULL) {
        rv = LSKV_ENOMEM;
        goto out;
    }
    out->count = c.count;

    if (sorting && c.n > 1) {
        if (target == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE) {
            for (size_t i = 0; i < c.n; i++) {
                rv = kv_read(kv, c.v[i].e, &c.v[i].hit, a, &c.v[i].kv, errmsg);
                if (rv != 0)
                    goto out;
            }
        }
        struct sort_ctx s = {target, order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND};
        qsort_r(c.v, c.n, sizeof(*c.v), cand_cmp, &s);
    }
    size_t n = c.n;
    if (req->limit > 0 && (uint64_t)n > (uint64_t)req->limit) {
        n = (size_t)req->limit;
        out->more = 1;
    }
    if (n > 0) {
        out->kvs = arena_alloc(a, n * sizeof(*out->kvs));
        if (out->kvs == NULL) {
            rv = LSKV_ENOMEM;
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        Mvccpb__KeyValue *kvp = c.v[i].kv;
        if (kvp == NULL) {
            rv = kv_read(kv, c.v[i].e, &c.v[i].hit, a, &kvp, errmsg);
            if (rv != 0)
                goto out;
        }
        if (req->keys_only) {
            kvp->value.data = NULL;
            kvp->value.len = 0;
        }
        out->kvs[i] = kvp;
    }
    out->n_kvs = n;
    *resp = out;
out:
    free(c.v);
    return rv;
}

int kvstore_range(kvstore *kv, const Etcdserverpb__RangeRequest *req, struct arena *a,
                  Etcdserverpb__RangeResponse **resp, char *errmsg)
{
    kv->counts.ranges++;
    return kv_exec_range(kv, req, kv->rev, a, resp, errmsg);
}

int kvstore_range_uncounted(kvstore *kv, const Etcdserverpb__RangeRequest *req,
                            struct arena *a, Etcdserverpb__RangeResponse **resp, char *errmsg)
{
    return kv_exec_range(kv, req, kv->rev, a, resp, errmsg);
}

/* ---- writes ---- */

void kv_write_begin(kvstore *kv)
{
    assert(!kv->writing);
    kv->writing = true;
    kv->n_changes = 0;
}

/* Room for one more change and its undo slot. */
static int reserve_change(kvstore *kv)
{
    if (kv->n_changes >= UINT32_MAX)
        return LSKV_ETOOLARGE; /* sub revisions are 32-bit in the index */
    if (kv->n_changes < kv->cap_changes)
        return 0;
    size_t cap = kv->cap_changes ? kv->cap_changes * 2 : 16;
    struct kv_record *c = realloc(kv->changes, cap * sizeof(*c));
    if (c == NULL)
        return LSKV_ENOMEM;
    kv->changes = c;
    kvindex_entry **u = realloc(kv->undo, cap * sizeof(*u));
    if (u == NULL)
        return LSKV_ENOMEM;
    kv->undo = u;
    kv->cap_changes = cap;
    return 0;
}

int kv_write_end(kvstore *kv, int rv, char *errmsg)
{
    assert(kv->writing);
    size_t staged = 0;
    if (rv == 0 && kv->n_changes > 0 && (rv = kv_history_reserve(&kv->history)) != 0 && errmsg)
        errmsg_printf(errmsg, "revision log: %s", lskv_strerror(rv));
    if (rv == 0) {
        for (; staged < kv->n_changes; staged++) {
            rv = recstore_put(kv->rs, kv->rev + 1, (int64_t)staged, &kv->changes[staged]);
            if (rv != 0) {
                if (errmsg)
                    errmsg_printf(errmsg, "staging record %lld.%zu: %s",
                                  (long long)(kv->rev + 1), staged, lskv_strerror(rv));
                break;
            }
        }
    }
    if (rv == 0 && kv->n_changes > 0 && !kv->defer_commit) {
        rv = recstore_commit(kv->rs);
        if (rv != 0 && errmsg)
            errmsg_printf(errmsg, "commit of revision %lld: %s", (long long)(kv->rev + 1),
                          recstore_errmsg(kv->rs));
    }
    if (rv != 0) {
        /* Invariant 3. Records staged before a failure stay in the record
         * store's pending batch under ids of revision rev + 1; the next write
         * that changes something rewrites those ids (a later put of an id in
         * a batch replaces the earlier one), and any left over are garbage
         * the index never points to. */
        for (size_t i = kv->n_changes; i-- > 0;)
            kvindex_undo(kv->ix, kv->undo[i]);
        kv->n_changes = 0;
    } else if (kv->n_changes > 0) {
        kv->rev++;
        kv_history_append(&kv->history, kv->rev, kv->n_changes);
    }
    kv->writing = false;
    return rv;
}

int kv_exec_put(kvstore *kv, const Etcdserverpb__PutRequest *req, bool in_txn,
                struct arena *a, Etcdserverpb__PutResponse **resp, char *errmsg)
{
    int rv;
    if (!in_txn && (rv = kv_lease_check(kv, req->lease)) != 0)
        return rv;
    kv->counts.puts++;
    Mvccpb__KeyValue *prev = NULL;
    struct kvindex_hit hit;
    kvindex_entry *e = kvindex_find(kv->ix, req->key.data, req->key.len);
    bool exists = e != NULL && kvindex_entry_get(e, kv_read_rev(kv), &hit);
    if ((req->ignore_value || req->ignore_lease || req->prev_kv) && exists) {
        rv = kv_read(kv, e, &hit, a, &prev, errmsg);
        if (rv != 0)
            return rv;
    }
    if ((req->ignore_value || req->ignore_lease) && prev == NULL)
        return LSKV_EKEYNOTFOUND;

    Etcdserverpb__PutResponse *out = arena_alloc(a, sizeof(*out));
    if (out == NULL)
        return LSKV_ENOMEM;
    etcdserverpb__put_response__init(out);
    int64_t main = kv->rev + 1;
    out->header = kv_header(a, main);
    if (out->header == NULL)
        return LSKV_ENOMEM;
    if (req->prev_kv)
        out->prev_kv = prev;
    if ((rv = reserve_change(kv)) != 0)
        return rv;

    /* The index at rev + 1 is the index now: it holds this write's changes. */
    struct kv_record *c = &kv->changes[kv->n_changes];
    memset(c, 0, sizeof(*c));
    c->key = req->key.data;
    c->key_len = req->key.len;
    c->value = req->ignore_value ? prev->value.data : req->value.data;
    c->value_len = req->ignore_value ? prev->value.len : req->value.len;
    c->lease = req->ignore_lease ? prev->lease : req->lease;
    c->mod_revision = main;
    c->create_revision = exists ? hit.create_revision : main;
    c->version = exists ? hit.version + 1 : 1;
    struct kvindex_rev r = {main, (int64_t)kv->n_changes};
    rv = kvindex_put(kv->ix, req->key.data, req->key.len, r, &kv->undo[kv->n_changes]);
    if (rv != 0)
        return rv;
    kv->n_changes++;
    *resp = out;
    return 0;
}

struct prev_collect {
    kvstore *kv;
    struct arena *a;
    char *errmsg;
    Mvccpb__KeyValue **v;
    size_t n, cap;
};

static int prev_cb(void *arg, const kvindex_entry *e, const struct kvindex_hit *hit)
{
    struct prev_collect *p = arg;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        Mvccpb__KeyValue **v = arena_alloc(p->a, cap * sizeof(*v));
        if (v == NULL)
            return LSKV_ENOMEM;
        if (p->n)
            memcpy(v, p->v, p->n * sizeof(*v));
        p->v = v;
        p->cap = cap;
    }
    int rv = kv_read(p->kv, e, hit, p->a, &p->v[p->n], p->errmsg);
    if (rv != 0)
        return rv;
    p->n++;
    return 0;
}

struct del_ctx {
    kvstore *kv;
    int64_t deleted;
};

static int del_cb(void *arg, const kvindex_entry *ce, const struct kvindex_hit *hit)
{
    (void)hit;
    struct del_ctx *d = arg;
    kvstore *kv = d->kv;
    kvindex_entry *e = (kvindex_entry *)ce;
    int rv = reserve_change(kv);
    if (rv != 0)
        return rv;
    struct kvindex_rev r = {kv->rev + 1, (int64_t)kv->n_changes};
    /* Tombstoning appends to the entry: the tree, and this walk, are unchanged. */
    rv = kvindex_tombstone(kv->ix, e, r);
    if (rv != 0)
        return rv;
    struct kv_record *c = &kv->changes[kv->n_changes];
    memset(c, 0, sizeof(*c));
    c->key = kvindex_entry_key(e, &c->key_len);
    c->mod_revision = r.main;
    c->tombstone = true;
    kv->undo[kv->n_changes] = e;
    kv->n_changes++;
    d->deleted++;
    return 0;
}

int kv_exec_delete(kvstore *kv, const Etcdserverpb__DeleteRangeRequest *req,
                   struct arena *a, Etcdserverpb__DeleteRangeResponse **resp, char *errmsg)
{
    struct keyrange r;
    kv->counts.deletes++;
    keyrange_from(&r, &req->key, &req->range_end);
    Etcdserverpb__DeleteRangeResponse *out = arena_alloc(a, sizeof(*out));
    if (out == NULL)
        return LSKV_ENOMEM;
    etcdserverpb__delete_range_response__init(out);
    int64_t at = kv_read_rev(kv);
    int rv;
    if (req->prev_kv) {
        struct prev_collect p = {kv, a, errmsg, NULL, 0, 0};
        rv = kv_visit(kv, &r, at, prev_cb, &p);
        if (rv != 0)
            return rv;
        out->prev_kvs = p.v;
        out->n_prev_kvs = p.n;
    }
    /* Keys that exist at the read revision are exactly the live entries:
     * the index holds this write's earlier changes. */
    struct del_ctx d = {kv, 0};
    rv = kv_visit(kv, &r, at, del_cb, &d);
    if (rv != 0)
        return rv;
    out->deleted = d.deleted;
    out->header = kv_header(a, kv->n_changes > 0 ? kv->rev + 1 : kv->rev);
    if (out->header == NULL)
        return LSKV_ENOMEM;
    *resp = out;
    return 0;
}

int kvstore_put(kvstore *kv, const Etcdserverpb__PutRequest *req, struct arena *a,
                Etcdserverpb__PutResponse **resp, char *errmsg)
{
    kv_write_begin(kv);
    int rv = kv_exec_put(kv, req, false, a, resp, errmsg);
    return kv_write_end(kv, rv, errmsg);
}

int kvstore_delete_range(kvstore *kv, const Etcdserverpb__DeleteRangeRequest *req,
                         struct arena *a, Etcdserverpb__DeleteRangeResponse **resp,
                         char *errmsg)
{
    kv_write_begin(kv);
    int rv = kv_exec_delete(kv, req, a, resp, errmsg);
    return kv_write_end(kv, rv, errmsg);
}

/* ---- validation (etcd's v3rpc/key.go checks) ---- */

int kvstore_validate_range(const Etcdserverpb__RangeRequest *req)
{
    return req->key.len == 0 ? LSKV_EEMPTYKEY : 0;
}

int kvstore_validate_put(const Etcdserverpb__PutRequest *req)
{
    if (req->key.len == 0)
        return LSKV_EEMPTYKEY;
    if (req->ignore_value && req->value.len != 0)
        return LSKV_EVALUEPROVIDED;
    if (req->ignore_lease && req->lease != 0)
        return LSKV_ELEASEPROVIDED;
    return 0;
}

int kvstore_validate_delete_range(const Etcdserverpb__DeleteRangeRequest *req)
{
    return req->key.len == 0 ? LSKV_EEMPTYKEY : 0;
}

/* ---- compaction ---- */

struct compact_ctx {
    recstore *rs;
    int rv;
    int64_t at;          /* the compaction point */
    uint32_t *dropped;   /* subs deleted at it */
    size_t n_dropped, cap_dropped;
};

static void compact_drop(void *arg, struct kvindex_rev rev)
{
    struct compact_ctx *c = arg;
    if (c->rv == 0)
        c->rv = recstore_delete(c->rs, rev.main, rev.sub);
    /* The revision log keeps the subs that survive at the compaction point. */
    if (c->rv == 0 && rev.main == c->at) {
        if (c->n_dropped == c->cap_dropped) {
            size_t cap = c->cap_dropped ? c->cap_dropped * 2 : 16;
            uint32_t *p = realloc(c->dropped, cap * sizeof *p);
            if (p == NULL) {
                c->rv = LSKV_ENOMEM;
                return;
            }
            c->dropped = p;
            c->cap_dropped = cap;
        }
        c->dropped[c->n_dropped++] = (uint32_t)rev.sub;
    }
}

int kvstore_compact(kvstore *kv, const Etcdserverpb__CompactionRequest *req,
                    struct arena *a, Etcdserverpb__CompactionResponse **resp,
                    char *errmsg)
{
    if (req->revision <= kv->compact_main)
        return LSKV_ECOMPACTED;
    if (req->revision > kv->rev)
        return LSKV_EFUTUREREV;
    Etcdserverpb__CompactionResponse *out = arena_alloc(a, sizeof(*out));
    if (out == NULL)
        return LSKV_ENOMEM;
    etcdserverpb__compaction_response__init(out);
    out->header = kv_header(a, kv->rev);
    if (out->header == NULL)
        return LSKV_ENOMEM;
    /* The index is the keyset, so it is compacted whatever happens to the
     * record deletions: a record left behind is garbage nobody reads. */
    struct compact_ctx c = {.rs = kv->rs, .at = req->revision};
    kvindex_compact(kv->ix, req->revision, compact_drop, &c);
    kv->compact_main = req->revision;
    kv->n_changes = 0;
    int rv = c.rv;
    if (rv == 0)
        rv = kv_history_compact(&kv->history, req->revision, c.dropped, c.n_dropped);
    free(c.dropped);
    if (rv == 0)
        rv = recstore_commit(kv->rs);
    if (rv != 0) {
        if (errmsg)
            errmsg_printf(errmsg, "compaction at %lld: deleting records: %s",
                          (long long)req->revision, lskv_strerror(rv));
        return rv;
    }
    *resp = out;
    return 0;
}

/* ---- snapshot ----
 *
 * magic "LSKVSNAP" (8) | format version u32 | revision i64 | compact_main i64 |
 * index (kvindex_encode). Big endian. docs/snapshot-format.md. */

#define SNAP_MAGIC "LSKVSNAP"
#define SNAP_VERSION 1
#define SNAP_HEADER_BYTES 28

int kvstore_snapshot(kvstore *kv, uint8_t **buf, size_t *len)
{
    size_t n = SNAP_HEADER_BYTES + kvindex_encoded_size(kv->ix);
    uint8_t *p = malloc(n);
    if (p == NULL)
        return LSKV_ENOMEM;
    memcpy(p, SNAP_MAGIC, 8);
    put_u32be(p + 8, SNAP_VERSION);
    put_u64be(p + 12, (uint64_t)kv->rev);
    put_u64be(p + 20, (uint64_t)kv->compact_main);
    kvindex_encode(kv->ix, p + SNAP_HEADER_BYTES);
    *buf = p;
    *len = n;
    return 0;
}

/* The header of a snapshot and its decoded index. */
static int snapshot_index(const uint8_t *buf, size_t len, int64_t *rev, int64_t *compact_main,
                          kvindex **ix)
{
    if (len < SNAP_HEADER_BYTES || memcmp(buf, SNAP_MAGIC, 8) != 0)
        return LSKV_ECORRUPT;
    if (get_u32be(buf + 8) != SNAP_VERSION)
        return LSKV_EFORMAT;
    *rev = (int64_t)get_u64be(buf + 12);
    *compact_main = (int64_t)get_u64be(buf + 20);
    /* Bounds keep every later revision and version computation in range. */
    if (*rev < 1 || *rev > INT64_MAX / 4 || *compact_main < -1 || *compact_main > *rev)
        return LSKV_ECORRUPT;
    size_t used;
    int rv = kvindex_decode(buf + SNAP_HEADER_BYTES, len - SNAP_HEADER_BYTES, *rev, ix, &used);
    if (rv != 0)
        return rv;
    if (used != len - SNAP_HEADER_BYTES) {
        kvindex_free(*ix);
        return LSKV_ECORRUPT;
    }
    return 0;
}

int kvstore_snapshot_index(const uint8_t *buf, size_t len, kvindex **out, int64_t *revision)
{
    int64_t compact_main;
    return snapshot_index(buf, len, revision, &compact_main, out);
}

int kvstore_restore(kvstore *kv, const uint8_t *buf, size_t len)
{
    int64_t rev, compact_main;
    kvindex *ix;
    int rv = snapshot_index(buf, len, &rev, &compact_main, &ix);
    if (rv != 0)
        return rv;
    struct kv_history history = {0};
    if ((rv = kv_history_rebuild(&history, ix, compact_main, rev)) != 0) {
        kv_history_free(&history);
        kvindex_free(ix);
        return rv;
    }
    kvindex_free(kv->ix);
    kv_history_free(&kv->history);
    kv->ix = ix;
    kv->history = history;
    kv->rev = rev;
    kv->compact_main = compact_main;
    kv->n_changes = 0;
    return 0;
}

struct needed_walk {
    int (*cb)(void *arg, const struct kvstore_needed *n);
    void *arg;
};

static int report_needed(void *arg, const kvindex_entry *e, struct kvindex_rev rev,
                         bool tombstone)
{
    struct needed_walk *w = arg;
    struct kvstore_needed n = {.main = rev.main, .sub = rev.sub, .tombstone = tombstone};
    n.key = kvindex_entry_key(e, &n.key_len);
    struct kvindex_hit hit;
    if (!tombstone) {
        if (!kvindex_entry_get(e, rev.main, &hit) || hit.mod.main != rev.main ||
            hit.mod.sub != rev.sub)
            return LSKV_ECORRUPT;
        n.create_revision = hit.create_revision;
        n.version = hit.version;
    }
    return w->cb(w->arg, &n);
}

int kvstore_snapshot_records(const uint8_t *buf, size_t len,
                             int (*cb)(void *arg, const struct kvstore_needed *n), void *arg)
{
    int64_t rev, compact_main;
    kvindex *ix;
    int rv = snapshot_index(buf, len, &rev, &compact_main, &ix);
    if (rv != 0)
        return rv;
    struct needed_walk w = {.cb = cb, .arg = arg};
    for (const kvindex_entry *e = kvindex_seek(ix, NULL, 0); e != NULL && rv == 0;
         e = kvindex_next(e))
        rv = kvindex_entry_since(e, 0, report_needed, &w);
    kvindex_free(ix);
    return rv;
}
