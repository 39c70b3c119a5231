/* Notes on the design.
 *
 * (1) The table is written by hand from etcd 3.4's rpc.proto
 *     (google.api.http options): every route is POST with body "*".
 *     When two routes share a URL (Hash and HashKV both claim
 *     maintenance/hash) the first registered wins, as in grpc-gateway's mux.
 * (2) Go's http.ServeMux sits in front: "/v3/" and "/v3beta/" go to the
 *     gateway (unknown: "Not Found", wrong method: 405), /health, /version
 *     and /metrics are plain handlers, anything else is "404 page not found".
 * (3) Errors from a gRPC call carry etcd's trailer metadata, which makes Go
 *     answer with chunked encoding and a Grpc-Trailer-Content-Type trailer;
 *     curl and friends show the same body either way.
 * (4) Streaming rows (streaming = true: client, server or bidirectional
 *     streams alike) are served by net/json_call.c as grpc-gateway's
 *     ForwardResponseStream does; a new row needs nothing more than its
 *     entry here and a streaming method in the gRPC server. */
#include "http/gateway.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/json.h"
#include "proto/lskvserver.pb-c.h"
#include "proto/rpc.pb-c.h"
#include "proto/v3election.pb-c.h"
#include "proto/v3lock.pb-c.h"

static const struct gateway_rpc rpcs[] = {
    {"kv/range", "/etcdserverpb.KV/Range", &etcdserverpb__range_request__descriptor,
     &etcdserverpb__range_response__descriptor, false},
    {"kv/put", "/etcdserverpb.KV/Put", &etcdserverpb__put_request__descriptor,
     &etcdserverpb__put_response__descriptor, false},
    {"kv/deleterange", "/etcdserverpb.KV/DeleteRange", &etcdserverpb__delete_range_request__descriptor,
     &etcdserverpb__delete_range_response__descriptor, false},
    {"kv/txn", "/etcdserverpb.KV/Txn", &etcdserverpb__txn_request__descriptor,
     &etcdserverpb__txn_response__descriptor, false},
    {"kv/compaction", "/etcdserverpb.KV/Compact", &etcdserverpb__compaction_request__descriptor,
     &etcdserverpb__compaction_response__descriptor, false},
    {"watch", "/etcdserverpb.Watch/Watch", &etcdserverpb__watch_request__descriptor,
     &etcdserverpb__watch_response__descriptor, true},
    {"lease/grant", "/etcdserverpb.Lease/LeaseGrant", &etcdserverpb__lease_grant_request__descriptor,
     &etcdserverpb__lease_grant_response__descriptor, false},
    {"lease/revoke", "/etcdserverpb.Lease/LeaseRevoke", &etcdserverpb__lease_revoke_request__descriptor,
     &etcdserverpb__lease_revoke_response__descriptor, false},
    {"kv/lease/revoke", "/etcdserverpb.Lease/LeaseRevoke", &etcdserverpb__lease_revoke_request__descriptor,
     &etcdserverpb__lease_revoke_response__descriptor, false},
    {"lease/keepalive", "/etcdserverpb.Lease/LeaseKeepAlive", &etcdserverpb__lease_keep_alive_request__descriptor,
     &etcdserverpb__lease_keep_alive_response__descriptor, true},
    {"lease/timetolive", "/etcdserverpb.Lease/LeaseTimeToLive", &etcdserverpb__lease_time_to_live_request__descriptor,
     &etcdserverpb__lease_time_to_live_response__descriptor, false},
    {"kv/lease/timetolive", "/etcdserverpb.Lease/LeaseTimeToLive", &etcdserverpb__lease_time_to_live_request__descriptor,
     &etcdserverpb__lease_time_to_live_response__descriptor, false},
    {"lease/leases", "/etcdserverpb.Lease/LeaseLeases", &etcdserverpb__lease_leases_request__descriptor,
     &etcdserverpb__lease_leases_response__descriptor, false},
    {"kv/lease/leases", "/etcdserverpb.Lease/LeaseLeases", &etcdserverpb__lease_leases_request__descriptor,
     &etcdserverpb__lease_leases_response__descriptor, false},
    {"cluster/member/add", "/etcdserverpb.Cluster/MemberAdd", &etcdserverpb__member_add_request__descriptor,
     &etcdserverpb__member_add_response__descriptor, false},
    {"cluster/member/remove", "/etcdserverpb.Cluster/MemberRemove", &etcdserverpb__member_remove_request__descriptor,
     &etcdserverpb__member_remove_response__descriptor, false},
    {"cluster/member/update", "/etcdserverpb.Cluster/MemberUpdate", &etcdserverpb__member_update_request__descriptor,
     &etcdserverpb__member_update_response__descriptor, false},
    {"cluster/member/list", "/etcdserverpb.Cluster/MemberList", &etcdserverpb__member_list_request__descriptor,
     &etcdserverpb__member_list_response__descriptor, false},
    {"cluster/member/promote", "/etcdserverpb.Cluster/MemberPromote", &etcdserverpb__member_promote_request__descriptor,
     &etcdserverpb__member_promote_response__descriptor, false},
    {"maintenance/alarm", "/etcdserverpb.Maintenance/Alarm", &etcdserverpb__alarm_request__descriptor,
     &etcdserverpb__alarm_response__descriptor, false},
    {"maintenance/status", "/etcdserverpb.Maintenance/Status", &etcdserverpb__status_request__descriptor,
     &etcdserverpb__status_response__descriptor, false},
    {"maintenance/tx_status", "/etcdserverpb.Maintenance/TxStatus", &lskvserverpb__tx_status_request__descriptor,
     &lskvserverpb__tx_status_response__descriptor, false},
    {"receipt/get_receipt", "/etcdserverpb.Receipt/GetReceipt", &lskvserverpb__get_receipt_request__descriptor,
     &lskvserverpb__get_receipt_response__descriptor, false},
    {"receipt/get_consistency_proof", "/etcdserverpb.Receipt/GetConsistencyProof",
     &lskvserverpb__get_consistency_proof_request__descriptor,
     &lskvserverpb__get_consistency_proof_response__descriptor, false},
    {"maintenance/defragment", "/etcdserverpb.Maintenance/Defragment", &etcdserverpb__defragment_request__descriptor,
     &etcdserverpb__defragment_response__descriptor, false},
    {"maintenance/hash", "/etcdserverpb.Maintenance/Hash", &etcdserverpb__hash_request__descriptor,
     &etcdserverpb__hash_response__descriptor, false},
    {"maintenance/snapshot", "/etcdserverpb.Maintenance/Snapshot", &etcdserverpb__snapshot_request__descriptor,
     &etcdserverpb__snapshot_response__descriptor, true},
    {"maintenance/transfer-leadership", "/etcdserverpb.Maintenance/MoveLeader", &etcdserverpb__move_leader_request__descriptor,
     &etcdserverpb__move_leader_response__descriptor, false},
    /* v3lockpb and v3electionpb (v3lock/v3election *.pb.gw.go), registered
     * on the same mux by etcd's embed/serve.go. */
    {"lock/lock", "/v3lockpb.Lock/Lock", &v3lockpb__lock_request__descriptor,
     &v3lockpb__lock_response__descriptor, false},
    {"lock/unlock", "/v3lockpb.Lock/Unlock", &v3lockpb__unlock_request__descriptor,
     &v3lockpb__unlock_response__descriptor, false},
    {"election/campaign", "/v3electionpb.Election/Campaign", &v3electionpb__campaign_request__descriptor,
     &v3electionpb__campaign_response__descriptor, false},
    {"election/proclaim", "/v3electionpb.Election/Proclaim", &v3electionpb__proclaim_request__descriptor,
     &v3electionpb__proclaim_response__descriptor, false},
    {"election/leader", "/v3electionpb.Election/Leader", &v3electionpb__leader_request__descriptor,
     &v3electionpb__leader_response__descriptor, false},
    {"election/observe", "/v3electionpb.Election/Observe", &v3electionpb__leader_request__descriptor,
     &v3electionpb__leader_response__descriptor, true},
    {"election/resign", "/v3electionpb.Election/Resign", &v3electionpb__resign_request__descriptor,
     &v3electionpb__resign_response__descriptor, false},
    {"auth/enable", "/etcdserverpb.Auth/AuthEnable", &etcdserverpb__auth_enable_request__descriptor,
     &etcdserverpb__auth_enable_response__descriptor, false},
    {"auth/disable", "/etcdserverpb.Auth/AuthDisable", &etcdserverpb__auth_disable_request__descriptor,
     &etcdserverpb__auth_disable_response__descriptor, false},
    {"auth/authenticate", "/etcdserverpb.Auth/Authenticate", &etcdserverpb__authenticate_request__descriptor,
     &etcdserverpb__authenticate_response__descriptor, false},
    {"auth/user/add", "/etcdserverpb.Auth/UserAdd", &etcdserverpb__auth_user_add_request__descriptor,
     &etcdserverpb__auth_user_add_response__descriptor, false},
    {"auth/user/get", "/etcdserverpb.Auth/UserGet", &etcdserverpb__auth_user_get_request__descriptor,
     &etcdserverpb__auth_user_get_response__descriptor, false},
    {"auth/user/list", "/etcdserverpb.Auth/UserList", &etcdserverpb__auth_user_list_request__descriptor,
     &etcdserverpb__auth_user_list_response__descriptor, false},
    {"auth/user/delete", "/etcdserverpb.Auth/UserDelete", &etcdserverpb__auth_user_delete_request__descriptor,
     &etcdserverpb__auth_user_delete_response__descriptor, false},
    {"auth/user/changepw", "/etcdserverpb.Auth/UserChangePassword", &etcdserverpb__auth_user_change_password_request__descriptor,
     &etcdserverpb__auth_user_change_password_response__descriptor, false},
    {"auth/user/grant", "/etcdserverpb.Auth/UserGrantRole", &etcdserverpb__auth_user_grant_role_request__descriptor,
     &etcdserverpb__auth_user_grant_role_response__descriptor, false},
    {"auth/user/revoke", "/etcdserverpb.Auth/UserRevokeRole", &etcdserverpb__auth_user_revoke_role_request__descriptor,
     &etcdserverpb__auth_user_revoke_role_response__descriptor, false},
    {"auth/role/add", "/etcdserverpb.Auth/RoleAdd", &etcdserverpb__auth_role_add_request__descriptor,
     &etcdserverpb__auth_role_add_response__descriptor, false},
    {"auth/role/get", "/etcdserverpb.Auth/RoleGet", &etcdserverpb__auth_role_get_request__descriptor,
     &etcdserverpb__auth_role_get_response__descriptor, false},
    {"auth/role/list", "/etcdserverpb.Auth/RoleList", &etcdserverpb__auth_role_list_request__descriptor,
     &etcdserverpb__auth_role_list_response__descriptor, false},
    {"auth/role/delete", "/etcdserverpb.Auth/RoleDelete", &etcdserverpb__auth_role_delete_request__descriptor,
     &etcdserverpb__auth_role_delete_response__descriptor, false},
    {"auth/role/grant", "/etcdserverpb.Auth/RoleGrantPermission", &etcdserverpb__auth_role_grant_permission_request__descriptor,
     &etcdserverpb__auth_role_grant_permission_response__descriptor, false},
    {"auth/role/revoke", "/etcdserverpb.Auth/RoleRevokePermission", &etcdserverpb__auth_role_revoke_permission_request__descriptor,
     &etcdserverpb__auth_role_revoke_permission_response__descriptor, false},
};

#define N_RPCS (sizeof rpcs / sizeof rpcs[0])

const struct gateway_rpc *gateway_rpc_by_method(const char *method)
{
    for (size_t i = 0; i < N_RPCS; i++)
        if (strcmp(rpcs[i].method, method) == 0)
            return &rpcs[i];
    return NULL;
}

bool gateway_rpc_server_stream(const struct gateway_rpc *rpc)
{
    /* etcd 3.4's rpc.proto and v3election.proto: "returns (stream X)"
     * with a plain request. */
    return rpc->streaming && (strcmp(rpc->method, "/etcdserverpb.Maintenance/Snapshot") == 0 ||
                              strcmp(rpc->method, "/v3electionpb.Election/Observe") == 0);
}

static bool path_is(const char *path, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(path, want, len) == 0;
}

void gateway_route(const char *method, const char *target, struct gateway_route *out)
{
    out->rpc = NULL;
    size_t len = strcspn(target, "?#");
    const char *rest = NULL;
    if (len >= 4 && strncmp(target, "/v3/", 4) == 0)
        rest = target + 4;
    else if (len >= 8 && strncmp(target, "/v3beta/", 8) == 0)
        rest = target + 8;
    if (rest != NULL) {
        size_t rlen = len - (size_t)(rest - target);
        for (size_t i = 0; i < N_RPCS; i++) {
            if (path_is(rest, rlen, rpcs[i].url)) {
                out->rpc = &rpcs[i];
                if (strcmp(method, "POST") != 0)
                    out->kind = GATEWAY_BAD_METHOD;
                else if (rpcs[i].streaming)
                    out->kind = GATEWAY_STREAMING;
                else
                    out->kind = GATEWAY_RPC;
                return;
            }
        }
        out->kind = GATEWAY_NOT_FOUND;
        return;
    }
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (path_is(target, len, "/health"))
        out->kind = get ? GATEWAY_HEALTH : GATEWAY_BAD_METHOD;
    else if (path_is(target, len, "/version"))
        out->kind = get ? GATEWAY_VERSION : GATEWAY_BAD_METHOD;
    else if (path_is(target, len, "/metrics"))
        out->kind = GATEWAY_METRICS;
    else
        out->kind = GATEWAY_NO_ROUTE;
}

int gateway_http_status(int grpc_code)
{
    static const int map[] = {
        200, /* OK */
        408, /* CANCELLED */
        500, /* UNKNOWN */
        400, /* INVALID_ARGUMENT */
        504, /* DEADLINE_EXCEEDED */
        404, /* NOT_FOUND */
        409, /* ALREADY_EXISTS */
        403, /* PERMISSION_DENIED */
        429, /* RESOURCE_EXHAUSTED */
        412, /* FAILED_PRECONDITION */
        409, /* ABORTED */
        400, /* OUT_OF_RANGE */
        501, /* UNIMPLEMENTED */
        500, /* INTERNAL */
        503, /* UNAVAILABLE */
        500, /* DATA_LOSS */
        401, /* UNAUTHENTICATED */
    };
    if (grpc_code < 0 || (size_t)grpc_code >= sizeof map / sizeof map[0])
        return 500;
    return map[grpc_code];
}

const char *gateway_reason(int s)
{
    switch (s) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Request Entity Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

unsigned gateway_retry_after_s(int grpc_code, const char *trailer_name,
                               const char *trailer_value)
{
    if (grpc_code != 14 /* UNAVAILABLE */ || trailer_name == NULL || trailer_value == NULL ||
        strcmp(trailer_name, "retry-after-ms") != 0)
        return 0;
    char *end = NULL;
    unsigned long long ms = strtoull(trailer_value, &end, 10);
    if (end == trailer_value || *end != '\0' || trailer_value[0] == '-')
        return 0;
    if (ms > 86400000ULL) /* a day: enough for any hint, and no overflow */
        ms = 86400000ULL;
    unsigned s = (unsigned)((ms + 999) / 1000);
    return s ? s : 1;
}

char *gateway_error_body(int grpc_code, const char *message, size_t *len)
{
    struct json_buf b = {0};
    size_t mlen = message ? strlen(message) : 0;
    char code[32];
    json_buf_puts(&b, "{\"error\":");
    json_buf_string(&b, message ? message : "", mlen);
    json_buf_puts(&b, ",\"message\":");
    json_buf_string(&b, message ? message : "", mlen);
    snprintf(code, sizeof code, ",\"code\":%d}", grpc_code);
    json_buf_puts(&b, code);
    if (b.err) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

char *gateway_stream_error(int grpc_code, const char *message, size_t *len)
{
    struct json_buf b = {0};
    int http = gateway_http_status(grpc_code);
    char num[64];
    snprintf(num, sizeof num, "{\"error\":{\"grpc_code\":%d,\"http_code\":%d", grpc_code, http);
    json_buf_puts(&b, num);
    if (message != NULL && message[0] != '\0') {
        json_buf_puts(&b, ",\"message\":");
        json_buf_string(&b, message, strlen(message));
    }
    json_buf_puts(&b, ",\"http_status\":");
    const char *reason = gateway_reason(http);
    json_buf_string(&b, reason, strlen(reason));
    json_buf_puts(&b, "}}");
    if (b.err) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

char *gateway_http1_chunk(const char *data, size_t data_len, bool chunked, bool last,
                          size_t *len)
{
    char head[24] = "";
    int n = 0;
    if (chunked && data_len > 0)
        n = snprintf(head, sizeof head, "%zx\r\n", data_len);
    size_t tail = chunked && data_len > 0 ? 2 : 0;
    size_t end = chunked && last ? 5 : 0;
    size_t total = (size_t)n + data_len + tail + end;
    char *out = malloc(total + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, head, (size_t)n);
    if (data_len)
        memcpy(out + n, data, data_len);
    memcpy(out + (size_t)n + data_len, "\r\n", tail);
    memcpy(out + (size_t)n + data_len + tail, "0\r\n\r\n", end);
    out[total] = '\0';
    *len = total;
    return out;
}

char *gateway_http1_response(const struct gateway_response *r, int http_minor, bool close,
                             size_t *len)
{
    bool chunked = r->grpc_trailer && http_minor >= 1;
    char retry[40] = "";
    if (r->retry_after_s > 0)
        snprintf(retry, sizeof retry, "Retry-After: %u\r\n", r->retry_after_s);
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.%d %d %s\r\n"
                     "%s"
                     "Access-Control-Allow-Headers: accept, content-type, authorization\r\n"
                     "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\n"
                     "Access-Control-Allow-Origin: *\r\n"
                     "Content-Type: %s\r\n"
                     "%s%s%s%s",
                     http_minor >= 1 ? 1 : 0, r->status, gateway_reason(r->status),
                     r->allow_get ? "Allow: GET\r\n" : "", r->content_type, r->grpc_metadata ? "Grpc-Metadata-Content-Type: application/grpc\r\n" : "",
                     (r->status == 404 || r->status == 405) &&
                             strncmp(r->content_type, "text/plain", 10) == 0
                         ? "X-Content-Type-Options: nosniff\r\n" : "",
                     close ? "Connection: close\r\n" : "", retry);
    if (n < 0 || (size_t)n >= sizeof head)
        return NULL;
    if (r->streamed) {
        /* Go sends chunked for HTTP/1.1; 1.0 reads until close. */
        if (http_minor >= 1)
            n += snprintf(head + n, sizeof head - (size_t)n, "Transfer-Encoding: chunked\r\n");
        n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
        if ((size_t)n >= sizeof head)
            return NULL;
        *len = (size_t)n;
        return strdup(head);
    }
    if (chunked)
        n += snprintf(head + n, sizeof head - (size_t)n,
                      "Trailer: Grpc-Trailer-Content-Type\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n",
                      r->body_len);
    else
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n\r\n",
                      r->body_len);
    static const char tail[] = "\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n";
    size_t tlen = chunked ? sizeof tail - 1 : 0;
    if (chunked && r->body_len == 0) {
        /* A zero-size chunk would end the body early: no chunk at all. */
        n -= 3;
        tlen -= 2;
    }
    char *out = malloc((size_t)n + r->body_len + tlen + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, head, (size_t)n);
    if (r->body_len)
        memcpy(out + n, r->body, r->body_len);
    if (tlen)
        memcpy(out + n + r->body_len, chunked && r->body_len == 0 ? tail + 2 : tail, tlen);
    out[(size_t)n + r->body_len + tlen] = '\0';
    *len = (size_t)n + r->body_len + tlen;
    return out;
}
