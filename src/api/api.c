#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    {"/etcdserverpb.Maintenance/Hash", false},
    {"/etcdserverpb.Maintenance/Snapshot", false},
    {"/etcdserverpb.Maintenance/MoveLeader", false},
    {"/etcdserverpb.Maintenance/Downgrade", false},
    {"/etcdserverpb.Auth/AuthEnable", false},
    {"/etcdserverpb.Auth/AuthDisable", false},
    {"/etcdserverpb.Auth/Authenticate", false},
    {"/etcdserverpb.Auth/UserAdd", false},
    {"/etcdserverpb.Auth/UserGet", false},
    {"/etcdserverpb.Auth/UserList", false},
    {"/etcdserverpb.Auth/UserDelete", false},
    {"/etcdserverpb.Auth/UserChangePassword", false},
    {"/etcdserverpb.Auth/UserGrantRole", false},
    {"/etcdserverpb.Auth/UserRevokeRole", false},
    {"/etcdserverpb.Auth/RoleAdd", false},
    {"/etcdserverpb.Auth/RoleGet", false},
    {"/etcdserverpb.Auth/RoleList", false},
    {"/etcdserverpb.Auth/RoleDelete", false},
    {"/etcdserverpb.Auth/RoleGrantPermission", false},
    {"/etcdserverpb.Auth/RoleRevokePermission", false},
};

int api_serve_call(void *arg, uint8_t kind, const uint8_t *req, size_t len, uint8_t **reply,
                   size_t *reply_len)
{
    struct api *api = arg;
    if (kind == API_CALL_MEMBER_CHECK)
        return api->node == NULL ? LSKV_ENOTLEADER /* not serving yet */
                                 : cluster_service_serve_call(api, req, len, reply, reply_len);
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
