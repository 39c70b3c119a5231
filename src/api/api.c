#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/etcd_errors.h"
#include "common/err.h"
#include "common/log.h"
#include "common/pbdepth.h"

void api_fill_header(struct api *api, Etcdserverpb__ResponseHeader *h)
{
    struct consensus_status st;
    consensus_get_status(api->node, &st);
    h->cluster_id = api->cluster_id;
    h->member_id = api->member_id;
    h->raft_term = st.term;
    h->revision = kvstore_revision(api->kv);
}

void *api_decode(grpc_call *call, const ProtobufCMessageDescriptor *desc, const uint8_t *msg,
                 size_t len, struct arena *a)
{
    /* protobuf-c recurses per nested message: the depth is checked on the
     * bytes first. Only a Txn nests in etcd's requests; one this deep cannot
     * pass etcd's op budget, so it gets etcd's answer. */
    int rv = pbdepth_check(desc, msg, len, PBDEPTH_MAX);
    if (rv != 0) {
        if (rv == LSKV_ETOODEEP && desc == &etcdserverpb__txn_request__descriptor)
            etcd_error_finish(call, LSKV_ETOOMANYOPS);
        else if (rv == LSKV_ETOODEEP)
            grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                             "lskv: request nests messages too deep");
        else
            etcd_error_finish(call, rv);
        return NULL;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, &a->pb, len, msg);
    if (m == NULL)
        grpc_call_finish(call, GRPC_STATUS_INTERNAL,
                         "grpc: error unmarshalling request: malformed protobuf");
    return m;
}

void api_reply(grpc_call *call, const ProtobufCMessage *msg)
{
    uint8_t stackbuf[512];
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = n <= sizeof stackbuf ? stackbuf : malloc(n);
    if (buf == NULL) {
        grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "lskv: out of memory");
        return;
    }
    protobuf_c_message_pack(msg, buf);
    if (grpc_call_send(call, buf, n) == 0)
        grpc_call_finish(call, GRPC_STATUS_OK, NULL);
    else
        grpc_call_finish(call, GRPC_STATUS_CANCELLED, NULL);
    if (buf != stackbuf)
        free(buf);
}

/* etcd's quota cost is non-zero for a Put and for a Txn with a put in a
 * top-level branch (etcdserver/quota.go costTxn). */
static bool txn_puts(const Etcdserverpb__TxnRequest *t)
{
    for (size_t i = 0; i < t->n_success; i++)
        if (t->success[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
            return true;
    for (size_t i = 0; i < t->n_failure; i++)
        if (t->failure[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
            return true;
    return false;
}

static void space_alarm_raised(struct api *api, bool was)
{
    if (!was && api->space->alarm)
        LOG_WARN("api", "raising NOSPACE alarm: %s; writes that add data are refused until "
                 "`etcdctl alarm disarm`", api->space->why);
}

int api_admit_write(struct api *api, enum command_op op, const ProtobufCMessage *req,
                    size_t len, uint64_t *cost)
{
    *cost = 0;
    if (api->space == NULL)
        return 0;
    bool was = api->space->alarm;
    int rv;
    if (op == COMMAND_PUT || op == COMMAND_LEASE_GRANT ||
        (op == COMMAND_TXN && txn_puts((const Etcdserverpb__TxnRequest *)req)))
        rv = diskspace_admit_put(api->space, recstore_disk_bytes(api->records), len, cost);
    else
        rv = diskspace_admit_other(api->space, len, cost);
    space_alarm_raised(api, was);
    return rv;
}

void api_write_done(struct api *api, uint64_t cost)
{
    if (api->space != NULL)
        diskspace_done(api->space, cost);
}

int api_auth_info(struct api *api, grpc_call *call, const char **user, uint64_t *rev)
{
    *user = "";
    *rev = 0;
    const char *token = grpc_call_token(call);
    if (api->auth == NULL)
        return 0;
    if (token == NULL) {
        const char *cn = api->client_cert_auth ? grpc_call_cert_cn(call) : NULL;
        if (cn != NULL) {
            *user = cn;
            *rev = api->auth->revision;
        }
        return 0;
    }
    if (api->jwt != NULL) {
        /* etcd's JWT: the revision is the token's, so a token made before an
         * auth change meets "revision of auth store is old" */
        if (jwt_verify(api->jwt, token, (int64_t)time(NULL), api->jwt_user,
                       sizeof api->jwt_user, rev) != 0)
            return LSKV_EINVALIDTOKEN;
        *user = api->jwt_user;
        return 0;
    }
    if (api->tokens == NULL)
        return LSKV_EINVALIDTOKEN;
    int rv = auth_tokens_lookup(api->tokens, api->auth, token, uv_now(api->loop), user);
    if (rv != 0) {
        *user = "";
        return rv;
    }
    *rev = api->auth->revision; /* etcd's simple token: the store's revision now */
    return 0;
}

int api_authorize(struct api *api, grpc_call *call, enum command_op op,
                  const ProtobufCMessage *req)
{
    if (api->auth == NULL || grpc_call_internal(call))
        return 0;
    Lskvcommandpb__Command c = LSKVCOMMANDPB__COMMAND__INIT;
    const char *user;
    int rv = api_auth_info(api, call, &user, &c.auth_revision);
    if (rv != 0)
        return rv;
    c.username = (char *)user;
    c.request_id = 1; /* a client's request: checked */
    c.op_case = (Lskvcommandpb__Command__OpCase)op;
    struct command_target t = {.kv = api->kv, .leases = api->leases, .auth = api->auth};
    return command_authorize(&t, &c, req);
}

/* The caller to check: 1 with *user and *rev, 0 when nothing is checked
 * (auth off, or the server's own call), or an error of api_auth_info. */
static int caller_to_check(struct api *api, grpc_call *call, const char **user, uint64_t *rev)
{
    if (api->auth == NULL || grpc_call_internal(call))
        return 0;
    int rv = api_auth_info(api, call, user, rev);
    return rv != 0 ? rv : 1;
}

int api_authorize_range(struct api *api, grpc_call *call, ProtobufCBinaryData key,
                        ProtobufCBinaryData range_end)
{
    const char *user;
    uint64_t rev;
    int rv = caller_to_check(api, call, &user, &rev);
    if (rv <= 0)
        return rv;
    return authstore_check(api->auth, user, rev, key.data, key.len, range_end.data,
                           range_end.len, AUTH_READ);
}

int api_authorize_admin(struct api *api, grpc_call *call)
{
    const char *user;
    uint64_t rev;
    int rv = caller_to_check(api, call, &user, &rev);
    if (rv <= 0)
        return rv;
    return authstore_check_admin(api->auth, user);
}

void api_raise_corrupt(struct api *api, const char *errmsg)
{
    if (!api->corrupt_alarm)
        LOG_ERROR("api", "integrity fault, raising CORRUPT alarm: %s",
                  errmsg && *errmsg ? errmsg : "(no detail)");
    else
        LOG_ERROR("api", "integrity fault: %s", errmsg && *errmsg ? errmsg : "(no detail)");
    api->corrupt_alarm = true;
}

void api_fail(struct api *api, grpc_call *call, int code, const char *errmsg)
{
    if (code == LSKV_ENOSPACE && api->space != NULL && !api->space->alarm) {
        snprintf(api->space->why, sizeof api->space->why, "%s",
                 errmsg && *errmsg ? errmsg : "a raft log segment could not be allocated");
        api->space->alarm = true;
        space_alarm_raised(api, false);
    }
    if (code == LSKV_ECORRUPT) {
        api_raise_corrupt(api, errmsg);
    } else if (errmsg && *errmsg) {
        LOG_DEBUG("api", "%s: %s", lskv_errname(code), errmsg);
    }
    etcd_error_finish(call, code);
}

static void unimplemented(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)msg;
    (void)len;
    (void)ctx;
    grpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, "lskv: this etcd method is not implemented yet");
}

/* etcd RPCs that lskv does not serve yet: clients get a clear UNIMPLEMENTED. */
static const struct {
    const char *path;
    bool streaming;
} later[] = {
    {"/etcdserverpb.Maintenance/Downgrade", false},
};

int api_serve_call(void *arg, uint8_t kind, const uint8_t *req, size_t len, uint8_t **reply,
                   size_t *reply_len)
{
    struct api *api = arg;
    if (kind == API_CALL_MEMBER_CHECK)
        return api->node == NULL ? LSKV_ENOTLEADER /* not serving yet */
                                 : cluster_service_serve_call(api, req, len, reply, reply_len);
    if (kind == API_CALL_HASH_KV)
        return api->node == NULL ? LSKV_ENOTLEADER
                                 : corrupt_check_serve_call(api, req, len, reply, reply_len);
    return lease_service_serve_call(arg, kind, req, len, reply, reply_len);
}

size_t api_methods(struct api *api, struct grpc_method *methods, size_t max)
{
    struct grpc_method tmp[96];
    size_t n = 0;
    n += kv_service_methods(api, tmp + n);
    n += maint_service_methods(api, tmp + n);
    n += cluster_service_methods(api, tmp + n);
    n += lease_service_methods(api, tmp + n);
    n += watch_service_methods(api, tmp + n);
    n += receipt_service_methods(api, tmp + n);
    n += concurrency_service_methods(api, tmp + n);
    n += auth_service_methods(api, tmp + n);
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++)
        tmp[n++] = (struct grpc_method){.path = later[i].path,
                                        .streaming = later[i].streaming,
                                        .on_message = unimplemented,
                                        .ctx = api};
    if (n > max)
        n = max;
    memcpy(methods, tmp, n * sizeof *methods);
    return n;
}
