/* Txn: validation (etcd's v3rpc checkTxnRequest and checkIntervals), compares
 * and execution (etcdserver/apply.go's Txn, compareToPath, checkRequests,
 * applyTxn), over the write steps of kv/kvstore.c.
 *
 * Compares of the txn and of every nested txn on the taken branches are
 * evaluated first, against the state before the txn, giving the "path": one
 * bool per txn in preorder. The checks (puts: ignore_* keys exist, leases
 * exist; ranges: revision neither future nor compacted) then run over the
 * path, still against the state before the txn, and only then do the ops run,
 * each seeing the earlier ones' writes. */
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "kv/kvstore_impl.h"

/* Deeper nesting cannot pass validation (KV_TXN_MAX_DEPTH); apply refuses
 * it rather than recurse. */
#define TXN_MAX_DEPTH (KV_TXN_MAX_DEPTH + 2)

static bool bytes_eq(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* ---- validation ---- */

static int check_txn_request(const Etcdserverpb__TxnRequest *r, long max_ops, int depth);

static int check_request_op(const Etcdserverpb__RequestOp *u, long max_ops, int depth)
{
    if (u == NULL)
        return LSKV_EKEYNOTFOUND;
    switch (u->request_case) {
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
        return u->request_range ? kvstore_validate_range(u->request_range) : LSKV_EKEYNOTFOUND;
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
        return u->request_put ? kvstore_validate_put(u->request_put) : LSKV_EKEYNOTFOUND;
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
        return u->request_delete_range
                   ? kvstore_validate_delete_range(u->request_delete_range)
                   : LSKV_EKEYNOTFOUND;
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
        return u->request_txn ? check_txn_request(u->request_txn, max_ops, depth + 1)
                              : LSKV_EKEYNOTFOUND;
    default:
        return LSKV_EKEYNOTFOUND; /* an empty op: etcd says "key not found" */
    }
}

static int check_txn_request(const Etcdserverpb__TxnRequest *r, long max_ops, int depth)
{
    size_t opc = r->n_compare;
    if (opc < r->n_success)
        opc = r->n_success;
    if (opc < r->n_failure)
        opc = r->n_failure;
    if ((long)opc > max_ops || depth > KV_TXN_MAX_DEPTH)
        return LSKV_ETOOMANYOPS;
    for (size_t i = 0; i < r->n_compare; i++)
        if (r->compare[i] == NULL || r->compare[i]->key.len == 0)
            return LSKV_EEMPTYKEY;
    /* Nested txns share the budget: etcd passes maxTxnOps - opc down. */
    for (size_t i = 0; i < r->n_success; i++) {
        int rv = check_request_op(r->success[i], max_ops - (long)opc, depth);
        if (rv != 0)
            return rv;
    }
    for (size_t i = 0; i < r->n_failure; i++) {
        int rv = check_request_op(r->failure[i], max_ops - (long)opc, depth);
        if (rv != 0)
            return rv;
    }
    return 0;
}

/* etcd's checkIntervals, step for step (its order dependence included: a put
 * in a nested txn is checked against deletes of this level and of earlier
 * nested txns only). A delete covers key k when k == key (no range end) or
 * key <= k < range_end bytewise; so a "\0" range end covers nothing here,
 * as in etcd, whose interval tree reads it as an empty interval. */
struct ivl {
    const ProtobufCBinaryData *key, *end; /* end NULL: the single key */
};

struct ivls {
    struct ivl *v;
    size_t n, cap;
};

struct keys {
    const ProtobufCBinaryData **v;
    size_t n, cap;
};

static int grow(void **v, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 8;
    void *p = realloc(*v, c * elem);
    if (p == NULL)
        return LSKV_ENOMEM;
    *v = p;
    *cap = c;
    return 0;
}

static int ivls_add(struct ivls *s, struct ivl x)
{
    int rv = grow((void **)&s->v, &s->cap, s->n, sizeof(*s->v));
    if (rv == 0)
        s->v[s->n++] = x;
    return rv;
}

static int keys_add(struct keys *s, const ProtobufCBinaryData *k)
{
    int rv = grow((void **)&s->v, &s->cap, s->n, sizeof(*s->v));
    if (rv == 0)
        s->v[s->n++] = k;
    return rv;
}

static bool keys_has(const struct keys *s, const ProtobufCBinaryData *k)
{
    for (size_t i = 0; i < s->n; i++)
        if (bytes_eq(s->v[i], k))
            return true;
    return false;
}

static bool ivls_cover(const struct ivls *s, const ProtobufCBinaryData *k)
{
    for (size_t i = 0; i < s->n; i++) {
        const struct ivl *d = &s->v[i];
        if (d->end == NULL) {
            if (bytes_eq(d->key, k))
                return true;
        } else if (bytes_order(d->key->data, d->key->len, k->data, k->len) <= 0 &&
                   bytes_order(k->data, k->len, d->end->data, d->end->len) < 0) {
            return true;
        }
    }
    return false;
}

static void sets_free(struct keys *p, struct ivls *d)
{
    free(p->v);
    free(d->v);
    memset(p, 0, sizeof(*p));
    memset(d, 0, sizeof(*d));
}

static int check_intervals(Etcdserverpb__RequestOp **reqs, size_t n, struct keys *puts,
                           struct ivls *dels, int depth)
{
    int rv = 0;
    struct keys pt = {0}, pe = {0};
    struct ivls dt = {0}, de = {0};
    if (depth > TXN_MAX_DEPTH)
        return LSKV_ETOOMANYOPS;
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (reqs[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE ||
            reqs[i]->request_delete_range == NULL)
            continue;
        const Etcdserverpb__DeleteRangeRequest *d = reqs[i]->request_delete_range;
        struct ivl x = {&d->key, d->range_end.len ? &d->range_end : NULL};
        rv = ivls_add(dels, x);
    }
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (reqs[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN ||
            reqs[i]->request_txn == NULL)
            continue;
        const Etcdserverpb__TxnRequest *t = reqs[i]->request_txn;
        rv = check_intervals(t->success, t->n_success, &pt, &dt, depth + 1);
        if (rv == 0)
            rv = check_intervals(t->failure, t->n_failure, &pe, &de, depth + 1);
        for (size_t j = 0; j < pt.n && rv == 0; j++) {
            if (keys_has(puts, pt.v[j]) || ivls_cover(dels, pt.v[j]))
                rv = LSKV_EDUPKEY;
            else
                rv = keys_add(puts, pt.v[j]);
        }
        for (size_t j = 0; j < pe.n && rv == 0; j++) {
            /* A key put by both branches is fine: only one runs. */
            if ((keys_has(puts, pe.v[j]) && !keys_has(&pt, pe.v[j])) ||
                ivls_cover(dels, pe.v[j]))
                rv = LSKV_EDUPKEY;
            else
                rv = keys_add(puts, pe.v[j]);
        }
        for (size_t j = 0; j < dt.n && rv == 0; j++)
            rv = ivls_add(dels, dt.v[j]);
        for (size_t j = 0; j < de.n && rv == 0; j++)
            rv = ivls_add(dels, de.v[j]);
        sets_free(&pt, &dt);
        sets_free(&pe, &de);
    }
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (reqs[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT ||
            reqs[i]->request_put == NULL)
            continue;
        const ProtobufCBinaryData *k = &reqs[i]->request_put->key;
        if (keys_has(puts, k) || ivls_cover(dels, k))
            rv = LSKV_EDUPKEY;
        else
            rv = keys_add(puts, k);
    }
    sets_free(&pt, &dt);
    sets_free(&pe, &de);
    return rv;
}

int kvstore_validate_txn(const Etcdserverpb__TxnRequest *req, long max_ops)
{
    if (max_ops < 1 || max_ops > KV_TXN_OPS_LIMIT)
        max_ops = KV_TXN_OPS_DEFAULT;
    int rv = check_txn_request(req, max_ops, 0);
    if (rv != 0)
        return rv;
    struct keys puts = {0};
    struct ivls dels = {0};
    rv = check_intervals(req->success, req->n_success, &puts, &dels, 0);
    sets_free(&puts, &dels);
    if (rv == 0)
        rv = check_intervals(req->failure, req->n_failure, &puts, &dels, 0);
    sets_free(&puts, &dels);
    return rv;
}

/* ---- compares ---- */

struct path {
    bool *v;
    size_t n, cap;
};

struct cmp_ctx {
    kvstore *kv;
    const Etcdserverpb__Compare *c;
    struct arena *a;
    char *errmsg;
    size_t seen;
    bool ok;
};

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b ? 1 : 0;
}

/* etcd's compareKV on one key's values (all zero for a missing key). */
static bool compare_kv(const Etcdserverpb__Compare *c, int64_t version, int64_t create,
                       int64_t mod, const ProtobufCBinaryData *value, int64_t lease)
{
    int result = 0;
    int u = c->target_union_case;
    switch (c->target) {
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE: {
        ProtobufCBinaryData empty = {0, NULL};
        const ProtobufCBinaryData *v = u == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE ? &c->value
                                                                                    : &empty;
        result = bytes_order(value->data, value->len, v->data, v->len);
        break;
    }
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
        result = cmp_i64(create,
                         u == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION ? c->create_revision
                                                                                  : 0);
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
        result = cmp_i64(mod, u == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION ? c->mod_revision
                                                                                   : 0);
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
        result = cmp_i64(version,
                         u == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION ? c->version : 0);
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
        result = cmp_i64(lease, u == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE ? c->lease : 0);
        break;
    default:
        break;
    }
    switch (c->result) {
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL:
        return result == 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL:
        return result != 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER:
        return result > 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS:
        return result < 0;
    default:
        return true;
    }
}

#define STOP 1 /* visit callback: stop early (not an error) */

static int cmp_cb(void *arg, const kvindex_entry *e, const struct kvindex_hit *hit)
{
    struct cmp_ctx *x = arg;
    x->seen++;
    ProtobufCBinaryData value = {0, NULL};
    int64_t lease = 0;
    /* Only value and lease need the record; the rest is in the index. */
    if (x->c->target == ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE ||
        x->c->target == ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE) {
        Mvccpb__KeyValue *kvp;
        int rv = kv_read(x->kv, e, hit, x->a, &kvp, x->errmsg);
        if (rv != 0)
            return rv;
        value = kvp->value;
        lease = kvp->lease;
    }
    if (!compare_kv(x->c, hit->version, hit->create_revision, hit->mod.main, &value, lease)) {
        x->ok = false;
        return STOP;
    }
    return 0;
}

static int apply_compare(kvstore *kv, const Etcdserverpb__Compare *c, struct arena *a,
                         bool *ok, char *errmsg)
{
    struct keyrange r;
    kv->counts.ranges++; /* etcd's applyCompare reads with a Range */
    keyrange_from(&r, &c->key, &c->range_end);
    struct cmp_ctx x = {kv, c, a, errmsg, 0, true};
    int rv = kv_visit(kv, &r, kv->rev, cmp_cb, &x);
    if (rv < 0)
        return rv;
    if (x.seen == 0) {
        /* A missing key never matches a value compare (no way to tell a
         * missing value from an empty one); otherwise it compares as zeros. */
        ProtobufCBinaryData empty = {0, NULL};
        x.ok = c->target != ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE &&
               compare_kv(c, 0, 0, 0, &empty, 0);
    }
    *ok = x.ok;
    return 0;
}

static int compare_to_path(kvstore *kv, const Etcdserverpb__TxnRequest *t, struct path *p,
                           int depth, struct arena *a, char *errmsg)
{
    if (depth > TXN_MAX_DEPTH)
        return LSKV_ETOOMANYOPS;
    bool ok = true;
    for (size_t i = 0; i < t->n_compare && ok; i++) {
        if (t->compare[i] == NULL)
            continue;
        int rv = apply_compare(kv, t->compare[i], a, &ok, errmsg);
        if (rv != 0)
            return rv;
    }
    int rv = grow((void **)&p->v, &p->cap, p->n, sizeof(*p->v));
    if (rv != 0)
        return rv;
    p->v[p->n++] = ok;
    Etcdserverpb__RequestOp **ops = ok ? t->success : t->failure;
    size_t n = ok ? t->n_success : t->n_failure;
    for (size_t i = 0; i < n; i++) {
        if (ops[i] == NULL || ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN ||
            ops[i]->request_txn == NULL)
            continue;
        rv = compare_to_path(kv, ops[i]->request_txn, p, depth + 1, a, errmsg);
        if (rv != 0)
            return rv;
    }
    return 0;
}

/* ---- pre-checks over the path (etcd's checkRequests) ---- */

typedef int (*check_fn)(kvstore *kv, const Etcdserverpb__RequestOp *op);

static int check_put(kvstore *kv, const Etcdserverpb__RequestOp *op)
{
    if (op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT || op->request_put == NULL)
        return 0;
    const Etcdserverpb__PutRequest *req = op->request_put;
    struct kvindex_hit hit;
    if ((req->ignore_value || req->ignore_lease) &&
        !kvindex_get(kv->ix, req->key.data, req->key.len, kv->rev, &hit))
        return LSKV_EKEYNOTFOUND;
    return kv_lease_check(kv, req->lease);
}

static int check_range(kvstore *kv, const Etcdserverpb__RequestOp *op)
{
    if (op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE ||
        op->request_range == NULL)
        return 0;
    int64_t rev = op->request_range->revision;
    if (rev == 0)
        return 0;
    if (rev > kv->rev)
        return LSKV_EFUTUREREV;
    if (rev < kv->compact_main)
        return LSKV_ECOMPACTED; /* so a negative revision is "compacted", as in etcd */
    return 0;
}

static int check_requests(kvstore *kv, const Etcdserverpb__TxnRequest *t,
                          const struct path *p, size_t *cur, check_fn f)
{
    bool ok = p->v[(*cur)++];
    Etcdserverpb__RequestOp **ops = ok ? t->success : t->failure;
    size_t n = ok ? t->n_success : t->n_failure;
    for (size_t i = 0; i < n; i++) {
        if (ops[i] == NULL)
            continue;
        if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN) {
            if (ops[i]->request_txn == NULL)
                continue;
            int rv = check_requests(kv, ops[i]->request_txn, p, cur, f);
            if (rv != 0)
                return rv;
            continue;
        }
        int rv = f(kv, ops[i]);
        if (rv != 0)
            return rv;
    }
    return 0;
}

/* ---- execution (etcd's applyTxn) ---- */

static int exec_txn(kvstore *kv, const Etcdserverpb__TxnRequest *t, const struct path *p,
                    size_t *cur, struct arena *a, Etcdserverpb__TxnResponse **resp,
                    char *errmsg)
{
    bool ok = p->v[(*cur)++];
    Etcdserverpb__RequestOp **ops = ok ? t->success : t->failure;
    size_t n = ok ? t->n_success : t->n_failure;
    Etcdserverpb__TxnResponse *out = arena_alloc(a, sizeof(*out));
    if (out == NULL)
        return LSKV_ENOMEM;
    etcdserverpb__txn_response__init(out);
    /* Nested txn responses carry an empty header, as in etcd; the caller
     * sets the top-level revision. */
    out->header = kv_header(a, 0);
    out->succeeded = ok;
    if (n > 0) {
        out->responses = arena_alloc(a, n * sizeof(*out->responses));
        if (out->responses == NULL)
            return LSKV_ENOMEM;
    }
    if (out->header == NULL)
        return LSKV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        Etcdserverpb__ResponseOp *ro = arena_alloc(a, sizeof(*ro));
        if (ro == NULL)
            return LSKV_ENOMEM;
        etcdserverpb__response_op__init(ro);
        out->responses[i] = ro;
        out->n_responses = i + 1;
        const Etcdserverpb__RequestOp *op = ops[i];
        int rv = 0;
        if (op == NULL)
            continue;
        switch (op->request_case) {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
            if (op->request_range == NULL)
                break;
            ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
            kv->counts.ranges++;
            rv = kv_exec_range(kv, op->request_range, kv_read_rev(kv), a, &ro->response_range,
                               errmsg);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
            if (op->request_put == NULL)
                break;
            ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
            rv = kv_exec_put(kv, op->request_put, true, a, &ro->response_put, errmsg);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
            if (op->request_delete_range == NULL)
                break;
            ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
            rv = kv_exec_delete(kv, op->request_delete_range, a, &ro->response_delete_range,
                                errmsg);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
            if (op->request_txn == NULL)
                break;
            ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
            rv = exec_txn(kv, op->request_txn, p, cur, a, &ro->response_txn, errmsg);
            break;
        default:
            break; /* an empty op (validation rejects it): an empty response */
        }
        if (rv != 0)
            return rv;
    }
    *resp = out;
    return 0;
}

static uint64_t calls(struct kvstore_counts c)
{
    return c.ranges + c.puts + c.deletes;
}

/* etcd's isTxnReadonly: the top-level ops of both branches. */
static bool readonly(const Etcdserverpb__TxnRequest *req)
{
    for (size_t i = 0; i < req->n_success; i++)
        if (req->success[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE)
            return false;
    for (size_t i = 0; i < req->n_failure; i++)
        if (req->failure[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE)
            return false;
    return true;
}

int kvstore_txn(kvstore *kv, const Etcdserverpb__TxnRequest *req, struct arena *a,
                Etcdserverpb__TxnResponse **resp, char *errmsg)
{
    struct path p = {0};
    Etcdserverpb__TxnResponse *out = NULL;
    size_t cur;
    struct kvstore_counts before = kv->counts;
    kv_write_begin(kv);
    int rv = compare_to_path(kv, req, &p, 0, a, errmsg);
    if (rv == 0) {
        cur = 0;
        rv = check_requests(kv, req, &p, &cur, check_put);
    }
    if (rv == 0) {
        cur = 0;
        rv = check_requests(kv, req, &p, &cur, check_range);
    }
    uint64_t reads = calls(kv->counts) - calls(before);
    if (rv == 0) {
        cur = 0;
        rv = exec_txn(kv, req, &p, &cur, a, &out, errmsg);
    }
    rv = kv_write_end(kv, rv, errmsg);
    free(p.v);
    if (rv != 0)
        return rv;
    /* etcd's applier: compares in a read txn, then the ops in a write txn
     * unless every top-level op is a range; each mvcc txn of more than one
     * call counts (metricsTxnWrite.End). */
    uint64_t ops = calls(kv->counts) - calls(before) - reads;
    if (!readonly(req))
        kv->counts.txns += (reads > 1) + (ops > 1);
    else
        kv->counts.txns += reads + ops > 1;
    out->header->revision = kv->rev;
    *resp = out;
    return 0;
}
