/* The grpc-gateway JSON API as etcd 3.4 serves it: which HTTP request maps
 * to which gRPC method (with its request and response message types), and
 * how answers look (HTTP status per gRPC code, error bodies, headers).
 * No I/O here: net/json_call.c runs the calls, net/http1_conn.c and
 * net/grpc_server.c carry the bytes.
 *
 * Routes (POST, body = request message as JSON, under /v3/ and /v3beta/):
 * kv/range, kv/put, kv/deleterange, kv/txn, kv/compaction, watch
 * (streaming), lease/grant, lease/revoke, lease/keepalive (streaming),
 * lease/timetolive,
 * lease/leases (kv/lease/... aliases), cluster/member/{add,remove,update,
 * list,promote}, maintenance/{alarm,status,defragment,hash,snapshot,
 * transfer-leadership,tx_status}, auth/..., receipt/get_receipt,
 * lock/{lock,unlock}, election/{campaign,proclaim,leader,observe,resign}.
 * Plus GET /health, /version, /metrics. */
#ifndef LSKV_HTTP_GATEWAY_H
#define LSKV_HTTP_GATEWAY_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

enum gateway_kind {
    GATEWAY_RPC,         /* a unary gRPC method: rpc is set */
    GATEWAY_HEALTH,      /* GET /health */
    GATEWAY_VERSION,     /* GET /version */
    GATEWAY_METRICS,     /* GET /metrics */
    GATEWAY_NOT_FOUND,   /* 404 from grpc-gateway: "Not Found\n" */
    GATEWAY_NO_ROUTE,    /* 404 from Go's mux: "404 page not found\n" */
    GATEWAY_BAD_METHOD,  /* 405 "Method Not Allowed\n" */
    GATEWAY_STREAMING,   /* a streaming method (watch, keepalive, snapshot): the
                          * body is a sequence of request messages, the answer
                          * a sequence of {"result":...} lines (json_call.c) */
};

struct gateway_rpc {
    const char *url;     /* "kv/range" (after "/v3/") */
    const char *method;  /* "/etcdserverpb.KV/Range" */
    const ProtobufCMessageDescriptor *request;
    const ProtobufCMessageDescriptor *response;
    bool streaming;      /* a streaming method (client, server or both) */
};

struct gateway_route {
    enum gateway_kind kind;
    const struct gateway_rpc *rpc; /* GATEWAY_RPC and GATEWAY_STREAMING */
};

/* Routes an HTTP request (method "POST", target "/v3/kv/range?x=y"; the
 * query is ignored). Never fails: unknown targets get a 404 kind. */
void gateway_route(const char *method, const char *target, struct gateway_route *out);

/* The gateway's row for a gRPC method path, or NULL. */
const struct gateway_rpc *gateway_rpc_by_method(const char *method);

/* A server-streaming method (one request, many answers): etcd 3.4 has two,
 * Maintenance/Snapshot and Election/Observe; every other streaming row is
 * bidirectional. Decided by method path, so a new row needs no flag. */
bool gateway_rpc_server_stream(const struct gateway_rpc *rpc);

/* HTTP status for a gRPC status code (grpc-gateway's HTTPStatusFromCode). */
int gateway_http_status(int grpc_code);

/* The reason phrase for an HTTP status ("Not Found"). */
const char *gateway_reason(int http_status);

/* An answer that is "not ready yet" (gRPC UNAVAILABLE with a retry-after-ms
 * trailer, as GetReceipt gives it) is HTTP 202 with Retry-After: the hint
 * in whole seconds, rounded up, at least 1. Returns those seconds, or 0 for
 * any other answer (an ordinary error). */
unsigned gateway_retry_after_s(int grpc_code, const char *trailer_name,
                               const char *trailer_value);

/* grpc-gateway's error body {"error":m,"message":m,"code":c}, malloc'd and
 * NUL-terminated; NULL when out of memory. */
char *gateway_error_body(int grpc_code, const char *message, size_t *len);

/* One answer, independent of the transport (HTTP/1.1 or HTTP/2). */
struct gateway_response {
    int status;               /* HTTP status */
    const char *content_type; /* "application/json" */
    const char *body;
    size_t body_len;
    bool grpc_metadata;       /* a gRPC call answered: Grpc-Metadata-Content-Type */
    bool grpc_trailer;        /* a gRPC call failed: Grpc-Trailer-Content-Type trailer */
    bool allow_get;           /* 405 from a GET-only handler: "Allow: GET" */
    unsigned retry_after_s;   /* > 0: "Retry-After: N" (a 202 "not ready yet") */
    bool streamed;            /* only the head: the body follows in pieces, as
                               * grpc-gateway's ForwardResponseStream writes it
                               * (chunked on HTTP/1.1, until close on 1.0) */
};

/* Formats the HTTP/1.x status line and headers (CORS headers as etcd sends
 * them, Content-Type, Retry-After, Content-Length or chunked with a trailer). chunked
 * is used for grpc_trailer answers when http_minor >= 1. close adds
 * "Connection: close". A streamed answer gets the head only ("Transfer-
 * Encoding: chunked" on HTTP/1.1; the caller frames the pieces with
 * gateway_http1_chunk). Returns a malloc'd buffer holding the whole response
 * including the body (and the chunk framing), or NULL when out of memory. */
char *gateway_http1_response(const struct gateway_response *r, int http_minor, bool close,
                             size_t *len);

/* One piece of a streamed body (HTTP/1.1 chunked framing when chunked;
 * as is otherwise); last adds the terminating zero-size chunk. Returns a
 * malloc'd buffer of *len bytes, or NULL when out of memory. */
char *gateway_http1_chunk(const char *data, size_t data_len, bool chunked, bool last,
                          size_t *len);

/* grpc-gateway's error chunk of a stream that failed, without a newline:
 * {"error":{"grpc_code":c,"http_code":h,"message":m,"http_status":s}}.
 * malloc'd and NUL-terminated; NULL when out of memory. */
char *gateway_stream_error(int grpc_code, const char *message, size_t *len);

#endif
