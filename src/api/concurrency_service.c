/* v3lockpb.Lock and v3electionpb.Election, as etcd 3.4's servers
 * (etcdserver/api/v3lock, v3election) run clientv3/concurrency's Mutex and
 * Election over an in-process client, but without the client: each step
 * is a proposal of the Txn or DeleteRange etcd's client would send, and the
 * waiting (concurrency's waitDeletes and Observe's watches) is a check of
 * the store after every applied entry that changed a key under the call's
 * prefix (concurrency_service_applied, from the state machine's observer).
 *
 * Notes on the design.
 *
 * (1) The session. etcd's servers build a concurrency.Session with
 *     WithLease(req.lease) and orphan it at once: the lease is the
 *     client's, nothing keeps it alive. Lease 0 (clientv3.NoLease) makes
 *     NewSession grant a lease of concurrency's default TTL (60 s) first,
 *     and the key hangs on that one. So does this file (step GRANT).
 * (2) Lock(name, lease): key = "name/<lease in %x>". Txn: if the key's
 *     create revision is 0, put it (value "", the lease) and read the
 *     prefix's first-created key; else read the key and the first-created
 *     key. my_rev = the header's revision or the key's create revision. If
 *     the first-created key is ours (or none), the answer is the txn's
 *     header; else the call waits (WAIT) until no key under the prefix has
 *     a create revision below my_rev, and answers with the header of that
 *     moment. A wait cut short by the client deletes the key (Mutex.Unlock).
 * (3) As in etcd 3.4, the wait looks only at the keys before ours: a waiter
 *     whose own lease expires or is revoked keeps waiting and succeeds once
 *     those keys are gone (its key no longer exists then). etcd 3.5 added a
 *     check; 3.4's clients do not expect it.
 * (4) Campaign: the same with the value; a key that exists with another
 *     value is proclaimed first (PROCLAIM). The answer carries the header of
 *     the campaign txn and the leader key (name, key, rev, lease). A wait
 *     cut short by the client resigns (txn: create revision = rev, delete).
 * (5) Errors: etcd's servers return the in-process client's errors, which
 *     gRPC turns into UNKNOWN with the error's text ("etcdserver: requested
 *     lease not found", "election: no leader", "election: not leader",
 *     "\"leader\" field must be provided"). conc_fail does the same. Our own
 *     limit (CONC_MAX_CALLS calls at once) answers etcd's "too many
 *     requests" (RESOURCE_EXHAUSTED).
 * (6) Observe: the first-created key under the prefix (after a barrier, as
 *     the client's linearizable Get) is sent, then every put of that key;
 *     when it is deleted, the next leader is looked up again; with none, the
 *     first put under the prefix is the next leader (header revision = its
 *     mod revision). A client that does not read while CONC_OBSERVE_MAX_BYTES
 *     wait for it loses the stream (etcd's watch would drop it too).
 * (7) A call is freed when it is answered and no proposal of it is in
 *     flight; the client's cancel during a proposal only marks it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/etcd_errors.h"
#include "common/arena.h"
#include "common/err.h"
#include "common/log.h"
#include "proto/v3election.pb-c.h"
#include "proto/v3lock.pb-c.h"
#include "statemachine/fsm.h"

#define MODULE "concurrency"
#define CONC_SESSION_TTL 60               /* concurrency.defaultSessionTTL, seconds */
#define CONC_MAX_CALLS 4096               /* Lock/Campaign/Observe calls at once */
#define CONC_OBSERVE_MAX_BYTES (4u << 20) /* unsent Observe responses per call */

static const char ERR_NOT_LEADER[] = "election: not leader";
static const char ERR_NO_LEADER[] = "election: no leader";
static const char ERR_MISSING_LEADER[] = "\"leader\" field must be provided";

enum conc_kind { K_LOCK, K_UNLOCK, K_CAMPAIGN, K_PROCLAIM, K_RESIGN, K_LEADER, K_OBSERVE };

enum conc_step {
    S_GRANT,    /* granting the session lease (lease 0) */
    S_ENTER,    /* the Lock/Campaign/Proclaim/Resign txn */
    S_PROCLAIM, /* Campaign: proclaiming the new value on an old key */
    S_WAIT,     /* waiting for the keys created before ours to go */
    S_BARRIER,  /* Observe: the read point before the first lookup */
    S_OBSERVE,  /* Observe: streaming */
};

struct conc_call {
    struct api *api;
    grpc_call *call;      /* NULL once answered */
    enum conc_kind kind;
    enum conc_step step;
    struct arena arena;   /* the request and what is copied from it */
    ProtobufCBinaryData name, prefix, prefix_end, key, value;
    int64_t lease;
    int64_t my_rev;       /* our key's create revision */
    bool in_flight;       /* a proposal or barrier of ours is pending */
    bool listed;          /* in api->conc_calls */
    uint8_t *hdr;         /* Campaign: the packed header of its txn */
    size_t hdr_len;
    /* Observe */
    bool following;       /* a leader key is being followed */
    uint8_t *leader;      /* its key (malloc'ed) */
    size_t leader_len;
    struct conc_call *prev, *next;
};

/* ---- life cycle ---- */

static void list_add(struct conc_call *cc)
{
    struct api *api = cc->api;
    cc->prev = NULL;
    cc->next = api->conc_calls;
    if (api->conc_calls != NULL)
        api->conc_calls->prev = cc;
    api->conc_calls = cc;
    cc->listed = true;
}

static void list_remove(struct conc_call *cc)
{
    if (!cc->listed)
        return;
    if (cc->prev != NULL)
        cc->prev->next = cc->next;
    else
        cc->api->conc_calls = cc->next;
    if (cc->next != NULL)
        cc->next->prev = cc->prev;
    cc->listed = false;
}

static void call_free(struct conc_call *cc)
{
    list_remove(cc);
    cc->api->n_conc_calls--;
    free(cc->leader);
    free(cc->hdr);
    arena_close(&cc->arena);
    free(cc);
}

/* Ends the gRPC side; the struct goes now or when its proposal returns. */
static void finish(struct conc_call *cc, enum grpc_status status, const char *message)
{
    list_remove(cc);
    if (cc->call != NULL) {
        grpc_call_set_data(cc->call, NULL);
        grpc_call_finish(cc->call, status, message);
        cc->call = NULL;
    }
    if (!cc->in_flight)
        call_free(cc);
}

/* Note (5): errors reach the client as the in-process client's error text. */
static void conc_fail(struct conc_call *cc, int code, const char *errmsg)
{
    if (code == LSKV_ECORRUPT)
        api_raise_corrupt(cc->api, errmsg);
    else if (errmsg != NULL && *errmsg)
        LOG_DEBUG(MODULE, "%s: %s", lskv_errname(code), errmsg);
    finish(cc, GRPC_STATUS_UNKNOWN, etcd_error_from(code).message);
}

static void reply(struct conc_call *cc, const ProtobufCMessage *msg)
{
    if (cc->call != NULL) {
        grpc_call_set_data(cc->call, NULL);
        api_reply(cc->call, msg);
        cc->call = NULL;
    }
    finish(cc, GRPC_STATUS_OK, NULL);
}

static struct conc_call *call_new(struct api *api, grpc_call *call, enum conc_kind kind)
{
    if (api->n_conc_calls >= CONC_MAX_CALLS) {
        etcd_error_finish(call, LSKV_ETOOMANYREQUESTS);
        return NULL;
    }
    struct conc_call *cc = calloc(1, sizeof *cc);
    if (cc == NULL) {
        grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "lskv: out of memory");
        return NULL;
    }
    cc->api = api;
    cc->call = call;
    cc->kind = kind;
    arena_init(&cc->arena);
    api->n_conc_calls++;
    grpc_call_set_data(call, cc);
    return cc;
}

/* ---- keys ---- */

/* prefix = name + "/" and its range end (the last byte is '/': +1). */
static int set_prefix(struct conc_call *cc, ProtobufCBinaryData name)
{
    uint8_t *p = arena_alloc(&cc->arena, name.len + 1);
    uint8_t *e = arena_alloc(&cc->arena, name.len + 1);
    if (p == NULL || e == NULL)
        return LSKV_ENOMEM;
    if (name.len)
        memcpy(p, name.data, name.len);
    p[name.len] = '/';
    memcpy(e, p, name.len + 1);
    e[name.len] = '/' + 1;
    cc->name = name;
    cc->prefix = (ProtobufCBinaryData){.len = name.len + 1, .data = p};
    cc->prefix_end = (ProtobufCBinaryData){.len = name.len + 1, .data = e};
    return 0;
}

/* key = prefix + the lease as Go's %x prints an int64. */
static int set_key(struct conc_call *cc)
{
    char hex[24];
    uint64_t mag = cc->lease < 0 ? 0 - (uint64_t)cc->lease : (uint64_t)cc->lease;
    int n = snprintf(hex, sizeof hex, "%s%" PRIx64, cc->lease < 0 ? "-" : "", mag);
    uint8_t *k = arena_alloc(&cc->arena, cc->prefix.len + (size_t)n);
    if (k == NULL)
        return LSKV_ENOMEM;
    memcpy(k, cc->prefix.data, cc->prefix.len);
    memcpy(k + cc->prefix.len, hex, (size_t)n);
    cc->key = (ProtobufCBinaryData){.len = cc->prefix.len + (size_t)n, .data = k};
    return 0;
}

static bool in_prefix(const struct conc_call *cc, const uint8_t *key, size_t len)
{
    return len >= cc->prefix.len && memcmp(key, cc->prefix.data, cc->prefix.len) == 0;
}

/* ---- proposals ---- */

struct proposal {
    struct api *api;
    struct conc_call *cc; /* NULL: fire and forget (clean-up) */
    uint64_t cost;
};

static void on_result(void *arg, int status, void *result);

/* Proposes req as op for cc (NULL: a clean-up nobody waits for). etcd's
 * checks and quota apply as to a client's request. */
static int propose(struct api *api, struct conc_call *cc, enum command_op op,
                   const ProtobufCMessage *req)
{
    const struct command_kind *kind = command_kind_of(op);
    int rv = kind->validate ? kind->validate(req, &api->limits) : 0;
    if (rv != 0)
        return rv;
    size_t n = protobuf_c_message_get_packed_size(req);
    if (n > api->max_request_bytes)
        return LSKV_ETOOLARGE;
    struct proposal *p = calloc(1, sizeof *p);
    uint8_t *body = malloc(n ? n : 1);
    uint8_t *cmd = NULL;
    size_t cmd_len = 0;
    if (p == NULL || body == NULL) {
        rv = LSKV_ENOMEM;
        goto err;
    }
    protobuf_c_message_pack(req, body);
    if ((rv = api_admit_write(api, op, req, n, &p->cost)) != 0)
        goto err;
    struct command_meta meta = {.request_id = ++api->last_request_id,
                                .origin_member = api->member_id};
    /* The caller's identity, as etcd's v3lock/v3election clients carry the
     * caller's token (a clean-up nobody waits for carries none: with auth
     * enabled it is refused at apply, and the key goes with its lease). */
    if (cc != NULL && cc->call != NULL &&
        ((rv = api_auth_info(api, cc->call, &meta.username, &meta.auth_revision)) != 0 ||
         (rv = api_authorize(api, cc->call, op, req)) != 0))
        goto err_after_admit;
    if ((rv = command_wrap(op, &meta, body, n, &cmd, &cmd_len)) != 0)
        goto err_after_admit;
    p->api = api;
    p->cc = cc;
    rv = consensus_propose(api->node, meta.request_id, cmd, cmd_len, on_result, p);
    free(cmd);
    if (rv != 0)
        goto err_after_admit;
    free(body);
    api->writes_in_flight++;
    if (cc != NULL)
        cc->in_flight = true;
    return 0;
err_after_admit:
    api_write_done(api, p->cost);
err:
    free(body);
    free(p);
    return rv;
}

static Etcdserverpb__RequestOp *op_range(struct arena *a, ProtobufCBinaryData key,
                                         ProtobufCBinaryData end, bool first_create)
{
    Etcdserverpb__RequestOp *op = arena_alloc(a, sizeof *op);
    Etcdserverpb__RangeRequest *r = arena_alloc(a, sizeof *r);
    if (op == NULL || r == NULL)
        return NULL;
    etcdserverpb__request_op__init(op);
    etcdserverpb__range_request__init(r);
    r->key = key;
    if (first_create) { /* clientv3.WithFirstCreate() */
        r->range_end = end;
        r->sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
        r->sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
        r->limit = 1;
    }
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    op->request_range = r;
    return op;
}

static Etcdserverpb__RequestOp *op_put(struct arena *a, ProtobufCBinaryData key,
                                       ProtobufCBinaryData value, int64_t lease)
{
    Etcdserverpb__RequestOp *op = arena_alloc(a, sizeof *op);
    Etcdserverpb__PutRequest *p = arena_alloc(a, sizeof *p);
    if (op == NULL || p == NULL)
        return NULL;
    etcdserverpb__request_op__init(op);
    etcdserverpb__put_request__init(p);
    p->key = key;
    p->value = value;
    p->lease = lease;
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op->request_put = p;
    return op;
}

/* A txn "if create_revision(key) == rev then success else failure". */
static int propose_txn(struct api *api, struct conc_call *cc, ProtobufCBinaryData key,
                       int64_t rev, Etcdserverpb__RequestOp **success, size_t n_success,
                       Etcdserverpb__RequestOp **failure, size_t n_failure)
{
    for (size_t i = 0; i < n_success; i++)
        if (success[i] == NULL)
            return LSKV_ENOMEM;
    for (size_t i = 0; i < n_failure; i++)
        if (failure[i] == NULL)
            return LSKV_ENOMEM;
    Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
    cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
    cmp.key = key;
    cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
    cmp.create_revision = rev;
    Etcdserverpb__Compare *cmps[1] = {&cmp};
    Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
    txn.compare = cmps;
    txn.n_compare = 1;
    txn.success = success;
    txn.n_success = n_success;
    txn.failure = failure;
    txn.n_failure = n_failure;
    return propose(api, cc, COMMAND_TXN, &txn.base);
}

/* Lock: Mutex.Unlock; Campaign: Election.Resign. Nobody waits for it. */
static void abandon(struct conc_call *cc)
{
    struct arena a;
    arena_init(&a);
    int rv;
    if (cc->kind == K_LOCK) {
        Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
        d.key = cc->key;
        rv = propose(cc->api, NULL, COMMAND_DELETE_RANGE, &d.base);
    } else {
        Etcdserverpb__RequestOp *del[1] = {command_op_delete(&a, cc->key)};
        rv = propose_txn(cc->api, NULL, cc->key, cc->my_rev, del, 1, NULL, 0);
    }
    if (rv == LSKV_ESHUTDOWN || rv == LSKV_ENOTLEADER)
        LOG_DEBUG(MODULE, "no clean-up of an abandoned lock or campaign: %s", lskv_strerror(rv));
    else if (rv != 0)
        LOG_WARN(MODULE, "cannot propose the clean-up of an abandoned lock or campaign: %s",
                 lskv_strerror(rv));
    arena_close(&a);
}

/* ---- steps ---- */

static void start_enter(struct conc_call *cc);
static void check_wait(struct conc_call *cc);

/* Note (1): lease 0 gets a fresh lease of the session TTL first. */
static void start_session(struct conc_call *cc)
{
    if (cc->lease != 0) {
        start_enter(cc);
        return;
    }
    Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    g.ttl = CONC_SESSION_TTL;
    int rv = lease_service_new_id(&g.id);
    if (rv == 0) {
        cc->step = S_GRANT;
        rv = propose(cc->api, cc, COMMAND_LEASE_GRANT, &g.base);
    }
    if (rv != 0)
        conc_fail(cc, rv, NULL);
}

static void start_enter(struct conc_call *cc)
{
    struct arena *a = &cc->arena;
    int rv = 0;
    cc->step = S_ENTER;
    switch (cc->kind) {
    case K_LOCK: {
        if ((rv = set_key(cc)) != 0)
            break;
        ProtobufCBinaryData empty = {0, NULL};
        Etcdserverpb__RequestOp *then[2] = {op_put(a, cc->key, empty, cc->lease),
                                            op_range(a, cc->prefix, cc->prefix_end, true)};
        Etcdserverpb__RequestOp *els[2] = {op_range(a, cc->key, empty, false),
                                           op_range(a, cc->prefix, cc->prefix_end, true)};
        rv = propose_txn(cc->api, cc, cc->key, 0, then, 2, els, 2);
        break;
    }
    case K_CAMPAIGN: {
        if ((rv = set_key(cc)) != 0)
            break;
        ProtobufCBinaryData empty = {0, NULL};
        Etcdserverpb__RequestOp *then[1] = {op_put(a, cc->key, cc->value, cc->lease)};
        Etcdserverpb__RequestOp *els[1] = {op_range(a, cc->key, empty, false)};
        rv = propose_txn(cc->api, cc, cc->key, 0, then, 1, els, 1);
        break;
    }
    case K_PROCLAIM: {
        Etcdserverpb__RequestOp *then[1] = {op_put(a, cc->key, cc->value, cc->lease)};
        rv = propose_txn(cc->api, cc, cc->key, cc->my_rev, then, 1, NULL, 0);
        break;
    }
    case K_RESIGN: {
        Etcdserverpb__RequestOp *then[1] = {command_op_delete(a, cc->key)};
        rv = propose_txn(cc->api, cc, cc->key, cc->my_rev, then, 1, NULL, 0);
        break;
    }
    default:
        rv = LSKV_EINVAL;
        break;
    }
    if (rv != 0)
        conc_fail(cc, rv, NULL);
}

static Mvccpb__KeyValue *range_first(Etcdserverpb__ResponseOp *op)
{
    if (op == NULL || op->response_case != ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE ||
        op->response_range == NULL || op->response_range->n_kvs == 0)
        return NULL;
    return op->response_range->kvs[0];
}

static void enter_wait(struct conc_call *cc)
{
    cc->step = S_WAIT;
    list_add(cc);
    check_wait(cc); /* entries may have applied since ours */
}

static void answer_campaign(struct conc_call *cc, Etcdserverpb__ResponseHeader *hdr)
{
    V3electionpb__LeaderKey lk = V3ELECTIONPB__LEADER_KEY__INIT;
    lk.name = cc->name;
    lk.key = cc->key;
    lk.rev = cc->my_rev;
    lk.lease = cc->lease;
    V3electionpb__CampaignResponse resp = V3ELECTIONPB__CAMPAIGN_RESPONSE__INIT;
    resp.header = hdr;
    resp.leader = &lk;
    reply(cc, &resp.base);
}

static void after_txn(struct conc_call *cc, Etcdserverpb__TxnResponse *t)
{
    switch (cc->kind) {
    case K_LOCK: {
        cc->my_rev = t->header ? t->header->revision : 0;
        if (!t->succeeded) {
            Mvccpb__KeyValue *mine = t->n_responses > 0 ? range_first(t->responses[0]) : NULL;
            if (mine == NULL) {
                conc_fail(cc, LSKV_EIO, "lock txn: own key missing");
                return;
            }
            cc->my_rev = mine->create_revision;
        }
        Mvccpb__KeyValue *owner = t->n_responses > 1 ? range_first(t->responses[1]) : NULL;
        if (owner == NULL || owner->create_revision == cc->my_rev) {
            V3lockpb__LockResponse resp = V3LOCKPB__LOCK_RESPONSE__INIT;
            resp.header = t->header;
            resp.key = cc->key;
            reply(cc, &resp.base);
            return;
        }
        enter_wait(cc);
        return;
    }
    case K_CAMPAIGN: {
        cc->my_rev = t->header ? t->header->revision : 0;
        if (t->header != NULL) {
            cc->hdr_len = etcdserverpb__response_header__get_packed_size(t->header);
            cc->hdr = malloc(cc->hdr_len ? cc->hdr_len : 1);
            if (cc->hdr == NULL) {
                conc_fail(cc, LSKV_ENOMEM, NULL);
                return;
            }
            etcdserverpb__response_header__pack(t->header, cc->hdr);
        }
        if (!t->succeeded) {
            Mvccpb__KeyValue *mine = t->n_responses > 0 ? range_first(t->responses[0]) : NULL;
            if (mine == NULL) {
                conc_fail(cc, LSKV_EIO, "campaign txn: own key missing");
                return;
            }
            cc->my_rev = mine->create_revision;
            if (mine->value.len != cc->value.len ||
                (cc->value.len && memcmp(mine->value.data, cc->value.data, cc->value.len))) {
                cc->step = S_PROCLAIM;
                struct arena *a = &cc->arena;
                Etcdserverpb__RequestOp *then[1] = {op_put(a, cc->key, cc->value, cc->lease)};
                int rv = propose_txn(cc->api, cc, cc->key, cc->my_rev, then, 1, NULL, 0);
                if (rv != 0)
                    conc_fail(cc, rv, NULL);
                return;
            }
        }
        enter_wait(cc);
        return;
    }
    case K_PROCLAIM: {
        if (!t->succeeded) {
            finish(cc, GRPC_STATUS_UNKNOWN, ERR_NOT_LEADER);
            return;
        }
        V3electionpb__ProclaimResponse resp = V3ELECTIONPB__PROCLAIM_RESPONSE__INIT;
        resp.header = t->header;
        reply(cc, &resp.base);
        return;
    }
    case K_RESIGN: {
        V3electionpb__ResignResponse resp = V3ELECTIONPB__RESIGN_RESPONSE__INIT;
        resp.header = t->header;
        reply(cc, &resp.base);
        return;
    }
    default:
        break;
    }
    conc_fail(cc, LSKV_EINVAL, "unexpected txn result");
}

static void on_result(void *arg, int status, void *result)
{
    struct proposal *p = arg;
    struct fsm_result *res = result;
    struct conc_call *cc = p->cc;
    struct api *api = p->api;
    api->writes_in_flight--;
    api_write_done(api, p->cost);
    lease_service_applied(api);
    free(p);
    int rv = status ? status : res == NULL ? LSKV_EIO : res->rv;
    if (cc == NULL) { /* a clean-up nobody waits for */
        if (rv != 0 && rv != LSKV_ESHUTDOWN && rv != LSKV_ENOTLEADER)
            LOG_WARN(MODULE, "clean-up of an abandoned lock or campaign failed: %s",
                     lskv_strerror(rv));
        fsm_result_free(res);
        return;
    }
    cc->in_flight = false;
    if (cc->call == NULL) {
        /* Note (7): answered (cancelled) meanwhile; etcd cleans up nothing
         * a failed or cancelled txn may have left. */
        call_free(cc);
    } else if (rv != 0) {
        conc_fail(cc, rv, res ? res->errmsg : NULL);
    } else if (cc->step == S_GRANT) {
        struct arena a;
        arena_init(&a);
        Etcdserverpb__LeaseGrantResponse *g = etcdserverpb__lease_grant_response__unpack(
            &a.pb, res->response_len, res->response);
        if (g == NULL) {
            conc_fail(cc, LSKV_EIO, "lease grant result does not decode");
        } else {
            cc->lease = g->id;
            start_enter(cc);
        }
        arena_close(&a);
    } else if (cc->kind == K_UNLOCK) {
        struct arena a;
        arena_init(&a);
        Etcdserverpb__DeleteRangeResponse *d = etcdserverpb__delete_range_response__unpack(
            &a.pb, res->response_len, res->response);
        if (d == NULL) {
            conc_fail(cc, LSKV_EIO, "delete result does not decode");
        } else {
            V3lockpb__UnlockResponse ur = V3LOCKPB__UNLOCK_RESPONSE__INIT;
            ur.header = d->header;
            reply(cc, &ur.base);
        }
        arena_close(&a);
    } else {
        struct arena a;
        arena_init(&a);
        Etcdserverpb__TxnResponse *t =
            etcdserverpb__txn_response__unpack(&a.pb, res->response_len, res->response);
        if (t == NULL)
            conc_fail(cc, LSKV_EIO, "txn result does not decode");
        else if (cc->step == S_PROCLAIM && !t->succeeded)
            finish(cc, GRPC_STATUS_UNKNOWN, ERR_NOT_LEADER);
        else if (cc->step == S_PROCLAIM)
            enter_wait(cc);
        else
            after_txn(cc, t);
        arena_close(&a);
    }
    fsm_result_free(res);
}

/* ---- waiting ---- */

/* waitDeletes: done once no key under the prefix was created before ours. */
static void check_wait(struct conc_call *cc)
{
    struct api *api = cc->api;
    struct arena a;
    arena_init(&a);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    r.key = cc->prefix;
    r.range_end = cc->prefix_end;
    r.max_create_revision = cc->my_rev - 1;
    r.limit = 1;
    r.keys_only = true;
    Etcdserverpb__RangeResponse *resp = NULL;
    int rv = kvstore_range(api->kv, &r, &a, &resp, errmsg);
    if (rv != 0) {
        conc_fail(cc, rv, errmsg);
    } else if (resp->n_kvs == 0) {
        Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        if (cc->kind == K_LOCK) {
            api_fill_header(api, &hdr);
            V3lockpb__LockResponse lr = V3LOCKPB__LOCK_RESPONSE__INIT;
            lr.header = &hdr;
            lr.key = cc->key;
            reply(cc, &lr.base);
        } else {
            Etcdserverpb__ResponseHeader *h =
                cc->hdr ? etcdserverpb__response_header__unpack(&a.pb, cc->hdr_len, cc->hdr)
                        : NULL;
            answer_campaign(cc, h ? h : &hdr);
        }
    }
    arena_close(&a);
}

/* ---- Observe ---- */

/* Returns false when the stream ended here (cc is freed). */
static bool observe_send(struct conc_call *cc, Etcdserverpb__ResponseHeader *hdr,
                         Mvccpb__KeyValue *kv)
{
    V3electionpb__LeaderResponse resp = V3ELECTIONPB__LEADER_RESPONSE__INIT;
    resp.header = hdr;
    resp.kv = kv;
    size_t n = v3electionpb__leader_response__get_packed_size(&resp);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        finish(cc, GRPC_STATUS_RESOURCE_EXHAUSTED, "lskv: out of memory");
        return false;
    }
    v3electionpb__leader_response__pack(&resp, buf);
    (void)grpc_call_send(cc->call, buf, n); /* a cancelled call drops it */
    free(buf);
    if (grpc_call_pending_bytes(cc->call) > CONC_OBSERVE_MAX_BYTES) {
        finish(cc, GRPC_STATUS_RESOURCE_EXHAUSTED, "etcdserver: too many requests");
        return false;
    }
    return true;
}

static int follow(struct conc_call *cc, const uint8_t *key, size_t len)
{
    uint8_t *k = malloc(len ? len : 1);
    if (k == NULL)
        return LSKV_ENOMEM;
    if (len)
        memcpy(k, key, len);
    free(cc->leader);
    cc->leader = k;
    cc->leader_len = len;
    cc->following = true;
    return 0;
}

/* Leader (and Observe's look-up): the first-created key under the prefix. */
static int first_created(struct api *api, struct conc_call *cc, struct arena *a,
                         Etcdserverpb__RangeResponse **resp, char *errmsg)
{
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    r.key = cc->prefix;
    r.range_end = cc->prefix_end;
    r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
    r.limit = 1;
    int rv = kvstore_range(api->kv, &r, a, resp, errmsg);
    if (rv == 0 && (*resp)->header == NULL) {
        (*resp)->header = arena_alloc(a, sizeof *(*resp)->header);
        if ((*resp)->header == NULL)
            return LSKV_ENOMEM;
        etcdserverpb__response_header__init((*resp)->header);
    }
    if (rv == 0)
        api_fill_header(api, (*resp)->header);
    return rv;
}

static void observe_lookup(struct conc_call *cc)
{
    struct arena a;
    arena_init(&a);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    Etcdserverpb__RangeResponse *resp = NULL;
    cc->following = false;
    int rv = first_created(cc->api, cc, &a, &resp, errmsg);
    if (rv != 0) {
        conc_fail(cc, rv, errmsg);
    } else if (resp->n_kvs > 0) {
        if ((rv = follow(cc, resp->kvs[0]->key.data, resp->kvs[0]->key.len)) != 0)
            conc_fail(cc, rv, NULL);
        else
            (void)observe_send(cc, resp->header, resp->kvs[0]);
    }
    arena_close(&a);
}

static void observe_change(struct conc_call *cc, const struct kv_record *rec)
{
    Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
    kv.key = (ProtobufCBinaryData){.len = rec->key_len, .data = (uint8_t *)rec->key};
    kv.value = (ProtobufCBinaryData){.len = rec->value_len, .data = (uint8_t *)rec->value};
    kv.create_revision = rec->create_revision;
    kv.mod_revision = rec->mod_revision;
    kv.version = rec->version;
    kv.lease = rec->lease;
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(cc->api, &hdr);
    if (!cc->following) {
        hdr.revision = rec->mod_revision; /* as concurrency's observe */
        if (follow(cc, rec->key, rec->key_len) != 0) {
            conc_fail(cc, LSKV_ENOMEM, NULL);
            return;
        }
    }
    (void)observe_send(cc, &hdr, &kv);
}

/* One applied entry's changes; cc may be freed here (the stream ended). An
 * entry changes a key at most once (etcd refuses a txn that writes one
 * twice), so one change is all that can concern the stream: the leader's
 * put or deletion, or with no leader the first put under the prefix. A new
 * leader is followed from the next revision on, as concurrency's observe
 * watches it from rev+1. */
static void observe_applied(struct conc_call *cc, const struct kv_record *changes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct kv_record *rec = &changes[i];
        if (!in_prefix(cc, rec->key, rec->key_len))
            continue;
        if (cc->following) {
            if (rec->key_len != cc->leader_len || memcmp(rec->key, cc->leader, rec->key_len))
                continue;
            if (rec->tombstone)
                observe_lookup(cc);
            else
                observe_change(cc, rec);
            return;
        }
        if (!rec->tombstone) {
            observe_change(cc, rec);
            return;
        }
    }
}

void concurrency_service_applied(struct api *api)
{
    if (api->conc_calls == NULL)
        return; /* nobody waits (and before serving, replay finds no api) */
    size_t n = 0;
    const struct kv_record *changes = kvstore_changes(api->kv, &n);
    if (n == 0)
        return;
    struct conc_call *next;
    for (struct conc_call *cc = api->conc_calls; cc != NULL; cc = next) {
        next = cc->next; /* cc may be answered and freed below */
        if (cc->step == S_OBSERVE) {
            observe_applied(cc, changes, n);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (changes[i].tombstone && in_prefix(cc, changes[i].key, changes[i].key_len)) {
                check_wait(cc);
                break;
            }
        }
    }
}

/* ---- handlers ---- */

static void on_cancel(grpc_call *call, void *ctx)
{
    (void)ctx;
    struct conc_call *cc = grpc_call_get_data(call);
    if (cc == NULL) {
        grpc_call_finish(call, GRPC_STATUS_CANCELLED, NULL);
        return;
    }
    if (cc->step == S_WAIT)
        abandon(cc); /* Mutex.Lock / Election.Campaign clean up a failed wait */
    finish(cc, GRPC_STATUS_CANCELLED, NULL);
}

static void *decode(struct conc_call *cc, const ProtobufCMessageDescriptor *desc,
                    const uint8_t *msg, size_t len)
{
    grpc_call *call = cc->call;
    grpc_call_set_data(call, NULL); /* api_decode may finish the call */
    void *req = api_decode(call, desc, msg, len, &cc->arena);
    if (req == NULL) {
        cc->call = NULL; /* answered by api_decode */
        finish(cc, GRPC_STATUS_OK, NULL);
    } else {
        grpc_call_set_data(call, cc);
    }
    return req;
}

/* Lock and Campaign: the prefix of the name, then the session. */
static void start_named(struct conc_call *cc, ProtobufCBinaryData name, int64_t lease)
{
    cc->lease = lease;
    int rv = set_prefix(cc, name);
    if (rv != 0)
        conc_fail(cc, rv, NULL);
    else
        start_session(cc);
}

static void lock_lock(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct conc_call *cc = call_new(ctx, call, K_LOCK);
    if (cc == NULL)
        return;
    V3lockpb__LockRequest *req = decode(cc, &v3lockpb__lock_request__descriptor, msg, len);
    if (req != NULL)
        start_named(cc, req->name, req->lease);
}

static void election_campaign(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct conc_call *cc = call_new(ctx, call, K_CAMPAIGN);
    if (cc == NULL)
        return;
    V3electionpb__CampaignRequest *req =
        decode(cc, &v3electionpb__campaign_request__descriptor, msg, len);
    if (req == NULL)
        return;
    cc->value = req->value;
    start_named(cc, req->name, req->lease);
}

/* Proclaim and Resign: concurrency.ResumeElection on the leader key. */
static void resume(struct conc_call *cc, const V3electionpb__LeaderKey *leader)
{
    if (leader == NULL) {
        finish(cc, GRPC_STATUS_UNKNOWN, ERR_MISSING_LEADER);
        return;
    }
    cc->name = leader->name;
    cc->key = leader->key;
    cc->my_rev = leader->rev;
    cc->lease = leader->lease;
    /* The session's lease is granted first when 0 (Note (1)); the put then
     * carries that new lease, as etcd's does. */
    if (cc->lease == 0)
        start_session(cc);
    else
        start_enter(cc);
}

static void election_proclaim(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct conc_call *cc = call_new(ctx, call, K_PROCLAIM);
    if (cc == NULL)
        return;
    V3electionpb__ProclaimRequest *req =
        decode(cc, &v3electionpb__proclaim_request__descriptor, msg, len);
    if (req == NULL)
        return;
    cc->value = req->value;
    resume(cc, req->leader);
}

static void election_resign(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct conc_call *cc = call_new(ctx, call, K_RESIGN);
    if (cc == NULL)
        return;
    V3electionpb__ResignRequest *req =
        decode(cc, &v3electionpb__resign_request__descriptor, msg, len);
    if (req != NULL)
        resume(cc, req->leader);
}

static void after_barrier(void *arg, int status, void *result)
{
    (void)result;
    struct conc_call *cc = arg;
    cc->in_flight = false;
    if (cc->call == NULL) {
        call_free(cc);
        return;
    }
    if (status != 0) {
        conc_fail(cc, status, NULL);
        return;
    }
    if (cc->kind == K_OBSERVE) {
        cc->step = S_OBSERVE;
        list_add(cc);
        observe_lookup(cc);
        return;
    }
    struct arena a;
    arena_init(&a);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    Etcdserverpb__RangeResponse *resp = NULL;
    int rv = first_created(cc->api, cc, &a, &resp, errmsg);
    if (rv != 0) {
        conc_fail(cc, rv, errmsg);
    } else if (resp->n_kvs == 0) {
        finish(cc, GRPC_STATUS_UNKNOWN, ERR_NO_LEADER);
    } else {
        V3electionpb__LeaderResponse lr = V3ELECTIONPB__LEADER_RESPONSE__INIT;
        lr.header = resp->header;
        lr.kv = resp->kvs[0];
        reply(cc, &lr.base);
    }
    arena_close(&a);
}

/* Leader and Observe: a linearizable read of the prefix (clientv3's Get). */
static void leader_read(grpc_call *call, const uint8_t *msg, size_t len, struct api *api,
                        enum conc_kind kind)
{
    struct conc_call *cc = call_new(api, call, kind);
    if (cc == NULL)
        return;
    V3electionpb__LeaderRequest *req =
        decode(cc, &v3electionpb__leader_request__descriptor, msg, len);
    if (req == NULL)
        return;
    int rv = set_prefix(cc, req->name);
    if (rv == 0) {
        cc->step = S_BARRIER;
        rv = consensus_barrier(api->node, after_barrier, cc);
    }
    if (rv != 0)
        conc_fail(cc, rv, NULL);
    else
        cc->in_flight = true;
}

static void election_leader(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    leader_read(call, msg, len, ctx, K_LEADER);
}

static void election_observe(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    leader_read(call, msg, len, ctx, K_OBSERVE);
}

/* Unlock: a plain delete of the key (the client's Delete). */
static void lock_unlock(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct conc_call *cc = call_new(ctx, call, K_UNLOCK);
    if (cc == NULL)
        return;
    V3lockpb__UnlockRequest *req = decode(cc, &v3lockpb__unlock_request__descriptor, msg, len);
    if (req == NULL)
        return;
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = req->key;
    cc->step = S_ENTER;
    int rv = propose(cc->api, cc, COMMAND_DELETE_RANGE, &d.base);
    if (rv != 0)
        conc_fail(cc, rv, NULL);
}

size_t concurrency_service_methods(struct api *api, struct grpc_method *m)
{
    static const struct {
        const char *path;
        grpc_message_fn fn;
    } table[] = {
        {"/v3lockpb.Lock/Lock", lock_lock},
        {"/v3lockpb.Lock/Unlock", lock_unlock},
        {"/v3electionpb.Election/Campaign", election_campaign},
        {"/v3electionpb.Election/Proclaim", election_proclaim},
        {"/v3electionpb.Election/Leader", election_leader},
        /* Server streaming: one request message (delivered as a unary
         * one's), then any number of responses. */
        {"/v3electionpb.Election/Observe", election_observe},
        {"/v3electionpb.Election/Resign", election_resign},
    };
    size_t n = sizeof table / sizeof table[0];
    for (size_t i = 0; i < n; i++)
        m[i] = (struct grpc_method){.path = table[i].path, .on_message = table[i].fn,
                                    .on_cancel = on_cancel, .ctx = api};
    return n;
}
