/* etcdserverpb.KV: Range, Put, DeleteRange, Txn, Compact.
 *
 * Reads: a serializable Range is answered from local state at once; a
 * linearizable one waits on a consensus barrier first (many reads share one
 * barrier). Writes: etcd's request checks, then one proposal; the answer is
 * the response apply produced, sent once the entry is committed and applied. */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "common/arena.h"
#include "common/err.h"
#include "common/log.h"
#include "statemachine/fsm.h"

struct kv_request {
    struct api *api;
    grpc_call *call;
    struct arena arena;
    Etcdserverpb__RangeRequest *range; /* linearizable range waiting on a barrier */
    uint64_t space_cost;               /* a write's disk bytes (api_admit_write) */
};

static struct kv_request *request_new(struct api *api, grpc_call *call)
{
    struct kv_request *r = malloc(sizeof *r);
    if (r == NULL)
        return NULL;
    r->api = api;
    r->call = call;
    r->range = NULL;
    r->space_cost = 0;
    arena_init(&r->arena);
    return r;
}

static void request_free(struct kv_request *r)
{
    arena_close(&r->arena);
    free(r);
}

static void answer_range(struct api *api, grpc_call *call, Etcdserverpb__RangeRequest *req,
                         struct arena *a)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    Etcdserverpb__RangeResponse *resp = NULL;
    int rv = kvstore_range(api->kv, req, a, &resp, errmsg);
    if (rv != 0) {
        api_fail(api, call, rv, errmsg);
        return;
    }
    if (resp->header == NULL) {
        resp->header = arena_calloc(a, 1, sizeof *resp->header);
        if (resp->header == NULL) {
            api_fail(api, call, LSKV_ENOMEM, NULL);
            return;
        }
        etcdserverpb__response_header__init(resp->header);
    }
    int64_t revision = resp->header->revision;
    api_fill_header(api, resp->header);
    if (revision != 0)
        resp->header->revision = revision;
    api_reply(call, &resp->base);
}

static void range_after_barrier(void *arg, int status, void *result)
{
    (void)result;
    struct kv_request *r = arg;
    if (status != 0)
        api_fail(r->api, r->call, status, NULL);
    else
        answer_range(r->api, r->call, r->range, &r->arena);
    request_free(r);
}

static void kv_range(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct kv_request *r = request_new(api, call);
    if (r == NULL) {
        api_fail(api, call, LSKV_ENOMEM, NULL);
        return;
    }
    Etcdserverpb__RangeRequest *req =
        api_decode(call, &etcdserverpb__range_request__descriptor, msg, len, &r->arena);
    if (req == NULL) {
        request_free(r);
        return;
    }
    int rv = kvstore_validate_range(req);
    if (rv == 0)
        rv = api_authorize_range(api, call, req->key, req->range_end);
    /* etcd's doSerialize: a token of another auth revision (a JWT made on
     * a member ahead of this one) is old too */
    const char *user;
    uint64_t rev;
    if (rv == 0 && api->auth != NULL && api->auth->enabled &&
        api_auth_info(api, call, &user, &rev) == 0 && rev != 0 && rev != api->auth->revision)
        rv = LSKV_EAUTHOLDREV;
    if (rv != 0) {
        api_fail(api, call, rv, NULL);
        request_free(r);
        return;
    }
    if (req->serializable) {
        answer_range(api, call, req, &r->arena);
        request_free(r);
        return;
    }
    r->range = req;
    rv = consensus_barrier(api->node, range_after_barrier, r);
    if (rv != 0) {
        api_fail(api, call, rv, NULL);
        request_free(r);
    }
}

static void write_done(void *arg, int status, void *result)
{
    struct kv_request *r = arg;
    struct fsm_result *res = result;
    r->api->writes_in_flight--;
    api_write_done(r->api, r->space_cost);
    lease_service_applied(r->api);
    if (status != 0)
        api_fail(r->api, r->call, status, NULL);
    else if (res == NULL)
        api_fail(r->api, r->call, LSKV_EIO, "apply produced no result");
    else if (res->rv != 0)
        api_fail(r->api, r->call, res->rv, res->errmsg);
    else if (grpc_call_send(r->call, res->response, res->response_len) == 0)
        grpc_call_finish(r->call, GRPC_STATUS_OK, NULL);
    else
        grpc_call_finish(r->call, GRPC_STATUS_CANCELLED, NULL);
    fsm_result_free(res);
    request_free(r);
}

/* Proposes cmd for call; answers the call on any failure. Takes cmd and
 * the write's disk cost. */
static void propose(struct api *api, grpc_call *call, uint64_t request_id, uint8_t *cmd,
                    size_t len, uint64_t cost)
{
    struct kv_request *r = request_new(api, call);
    if (r == NULL) {
        free(cmd);
        api_write_done(api, cost);
        api_fail(api, call, LSKV_ENOMEM, NULL);
        return;
    }
    r->space_cost = cost;
    int rv = consensus_propose(api->node, request_id, cmd, len, write_done, r);
    free(cmd);
    if (rv != 0) {
        api_write_done(api, cost);
        api_fail(api, call, rv, NULL);
        request_free(r);
    } else {
        api->writes_in_flight++;
    }
}

/* The common shape of every write: size limit, decode, the op's checks
 * (command table), envelope, propose. */
static void handle_write(struct api *api, grpc_call *call, const uint8_t *msg, size_t len,
                         enum command_op op)
{
    if (len > api->max_request_bytes) {
        api_fail(api, call, LSKV_ETOOLARGE, NULL);
        return;
    }
    const struct command_kind *kind = command_kind_of(op);
    struct arena a;
    arena_init(&a);
    ProtobufCMessage *req = api_decode(call, kind->request, msg, len, &a);
    if (req == NULL)
        goto out;
    /* etcd checks its quota before the request (v3rpc/quota.go). */
    uint64_t cost = 0;
    int rv = api_admit_write(api, op, req, len, &cost);
    if (rv == 0 && kind->validate)
        rv = kind->validate(req, &api->limits);
    /* etcd checks at apply only; lskv checks here too, so that a denied
     * request leaves no trace (no entry, no revision), and again at apply. */
    if (rv == 0)
        rv = api_authorize(api, call, op, req);
    if (rv != 0) {
        api_write_done(api, cost);
        api_fail(api, call, rv, NULL);
        goto out;
    }
    api_propose_cost(api, call, op, msg, len, cost);
out:
    arena_close(&a);
}

void api_propose(struct api *api, grpc_call *call, enum command_op op, const uint8_t *body,
                 size_t len)
{
    api_propose_cost(api, call, op, body, len, 0);
}

void api_propose_cost(struct api *api, grpc_call *call, enum command_op op,
                      const uint8_t *body, size_t len, uint64_t cost)
{
    struct command_meta meta = {.request_id = ++api->last_request_id,
                                .origin_member = api->member_id};
    uint8_t *cmd = NULL;
    size_t cmd_len = 0;
    /* The envelope carries who asked, checked again at apply. */
    int rv = api_auth_info(api, call, &meta.username, &meta.auth_revision);
    if (rv == 0)
        rv = command_wrap(op, &meta, body, len, &cmd, &cmd_len);
    if (rv != 0) {
        api_write_done(api, cost);
        api_fail(api, call, rv, NULL);
    } else {
        propose(api, call, meta.request_id, cmd, cmd_len, cost);
    }
}

static void kv_put(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    handle_write(ctx, call, msg, len, COMMAND_PUT);
}

static void kv_delete_range(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    handle_write(ctx, call, msg, len, COMMAND_DELETE_RANGE);
}

static void kv_txn(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    handle_write(ctx, call, msg, len, COMMAND_TXN);
}

static void kv_compact(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    handle_write(ctx, call, msg, len, COMMAND_COMPACTION);
}

size_t kv_service_methods(struct api *api, struct grpc_method *m)
{
    static const struct {
        const char *path;
        grpc_message_fn fn;
    } table[] = {
        {"/etcdserverpb.KV/Range", kv_range},
        {"/etcdserverpb.KV/Put", kv_put},
        {"/etcdserverpb.KV/DeleteRange", kv_delete_range},
        {"/etcdserverpb.KV/Txn", kv_txn},
        {"/etcdserverpb.KV/Compact", kv_compact},
    };
    size_t n = sizeof table / sizeof table[0];
    for (size_t i = 0; i < n; i++)
        m[i] = (struct grpc_method){.path = table[i].path, .on_message = table[i].fn, .ctx = api};
    return n;
}
