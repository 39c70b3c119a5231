/* gRPC server: HTTP/2 (nghttp2) on libuv TCP, h2c prior knowledge for http://
 * URLs and TLS with ALPN "h2" (OpenSSL) for https:// URLs.
 *
 * The server frames gRPC messages (5-byte prefix), enforces the receive limit,
 * routes :path to a method, and sends headers, messages and trailers
 * (grpc-status, percent-encoded grpc-message). Unknown method:
 * UNIMPLEMENTED; compressed message: UNIMPLEMENTED; oversized message:
 * RESOURCE_EXHAUSTED, as grpc-go says it. Everything runs on the loop thread.
 *
 * Call life cycle: the server creates a grpc_call for each request stream and
 * hands it to the method's on_message (or on_half_close). From that first
 * callback on, the handler owns the duty to call grpc_call_finish exactly
 * once, possibly much later (after Raft commit). If
 * the client resets the stream or the connection drops first, the call is
 * marked cancelled (on_cancel is called, if set) and stays valid until the
 * handler finishes it; sends on a cancelled call are dropped.
 *
 * With json_gateway, the same handlers also serve the JSON API: the gateway
 * turns the JSON body into the request message(s), hands the handler an
 * ordinary call (unary, or a stream fed with one message per JSON value
 * of the body), and renders its responses as JSON (same life cycle; the
 * call is cancelled when the HTTP connection or stream goes away).
 * Every call is counted for /metrics by method and status. */
#ifndef LSKV_NET_GRPC_SERVER_H
#define LSKV_NET_GRPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/tls.h"

typedef struct grpc_server grpc_server;
typedef struct grpc_call grpc_call;

/* gRPC status codes (grpc/doc/statuscodes.md). */
enum grpc_status {
    GRPC_STATUS_OK = 0,
    GRPC_STATUS_CANCELLED = 1,
    GRPC_STATUS_UNKNOWN = 2,
    GRPC_STATUS_INVALID_ARGUMENT = 3,
    GRPC_STATUS_DEADLINE_EXCEEDED = 4,
    GRPC_STATUS_NOT_FOUND = 5,
    GRPC_STATUS_ALREADY_EXISTS = 6,
    GRPC_STATUS_PERMISSION_DENIED = 7,
    GRPC_STATUS_RESOURCE_EXHAUSTED = 8,
    GRPC_STATUS_FAILED_PRECONDITION = 9,
    GRPC_STATUS_ABORTED = 10,
    GRPC_STATUS_OUT_OF_RANGE = 11,
    GRPC_STATUS_UNIMPLEMENTED = 12,
    GRPC_STATUS_INTERNAL = 13,
    GRPC_STATUS_UNAVAILABLE = 14,
    GRPC_STATUS_DATA_LOSS = 15,
    GRPC_STATUS_UNAUTHENTICATED = 16,
};

/* One request message. msg is borrowed for the duration of the callback.
 * For unary methods this is called exactly once per call, after the client
 * half-closed; for streaming methods once per message as it arrives. */
typedef void (*grpc_message_fn)(grpc_call *call, const uint8_t *msg, size_t len,
                                void *ctx);
/* Streaming only: the client half-closed its side (no more messages). If
 * on_half_close is NULL and no message was delivered yet, the server ends the
 * call itself with OK (the handler never saw it). */
typedef void (*grpc_half_close_fn)(grpc_call *call, void *ctx);
/* The stream was reset or the connection closed before grpc_call_finish. */
typedef void (*grpc_cancel_fn)(grpc_call *call, void *ctx);

struct grpc_method {
    const char *path;           /* "/etcdserverpb.KV/Range" */
    bool streaming;             /* bidirectional stream (Watch, LeaseKeepAlive) */
    bool server_streaming;      /* unary request, streamed answer (Snapshot): the
                                   grpc_type label only; served as unary */
    grpc_message_fn on_message; /* required */
    grpc_half_close_fn on_half_close; /* streaming only; may be NULL */
    grpc_cancel_fn on_cancel;   /* may be NULL */
    void *ctx;                  /* passed to the callbacks */
};

struct grpc_server_config {
    const char *const *listen_urls; /* "http://127.0.0.1:2379", "https://[::1]:2379" */
    size_t n_listen_urls;
    struct tls_options tls; /* cert and key required when any URL is https:// */
    size_t max_recv_message_bytes; /* larger messages: RESOURCE_EXHAUSTED; 0 = 2 MiB */
    /* Server-wide bound on request bytes held while they arrive (partial
     * messages, unary messages before half-close, gateway bodies). A call
     * that would take the total above it is refused with RESOURCE_EXHAUSTED
     * "etcdserver: too many requests" (HTTP 429 on the gateway) and its
     * bytes are freed. 0 = 256 MiB. */
    size_t max_buffered_request_bytes;
    const struct grpc_method *methods; /* copied */
    size_t n_methods;
    /* The grpc-gateway JSON API on the same port (HTTP/1.1, and HTTP/2
     * requests that are not gRPC), with GET /health, /version, /metrics
     * (see http/gateway.h). false: HTTP/1.1 gets 505. */
    bool json_gateway;
    const char *server_version;  /* /version "etcdserver"; NULL = "3.4.23" */
    const char *cluster_version; /* /version "etcdcluster"; NULL = "3.4.0" */
    const char *build_version;   /* /version "lskv" (extra field); NULL = none */
    /* etcd's --listen-metrics-urls: non-NULL makes this a server of GET
     * /metrics and /health only (json_gateway on, no methods), answered from
     * metrics_of's figures and by a health read through metrics_of. Close it
     * before metrics_of. */
    grpc_server *metrics_of;
    /* etcd's --max-concurrent-streams: streams (calls) one client
     * connection may have open at once (HTTP/2 SETTINGS; nghttp2 refuses
     * more), and gateway calls at once, since etcd's gateway is one gRPC
     * client connection of its own server: later ones wait their turn.
     * 0 = H2_MAX_CONCURRENT_STREAMS (net/h2.h), the most allowed. */
    uint32_t max_concurrent_streams;
};

/* Binds every listen URL and starts accepting. Errors: negated errno (bind),
 * LSKV_EINVAL (bad URL, https without cert), LSKV_EIO (TLS setup),
 * LSKV_ENOMEM. errmsg gets the story. On error nothing is returned, but
 * handles opened so far are closing: run the loop to let them go. */
int grpc_server_open(uv_loop_t *loop, const struct grpc_server_config *config,
                     grpc_server **out, char *errmsg);

/* The port the i-th listen URL is bound to (useful with port 0), or 0. */
uint16_t grpc_server_port(const grpc_server *srv, size_t i);

/* Stops listening, sends GOAWAY to every connection, closes them; cb fires once
 * everything is closed, after which srv is freed. Calls not yet finished are
 * cancelled (their handlers must still finish them). */
void grpc_server_close(grpc_server *srv, void (*cb)(void *arg), void *arg);

/* Queues one response message (copied); the first send also sends the
 * response headers. Errors: LSKV_ESHUTDOWN when the call is cancelled or its
 * connection is gone (the message is dropped), LSKV_EINVAL after finish or
 * for a message over 4 GiB, LSKV_ENOMEM. */
int grpc_call_send(grpc_call *call, const uint8_t *msg, size_t len);

/* Ends the call with trailers grpc-status (and grpc-message, percent-encoded
 * by us, if message is not NULL); with no message sent before it is a
 * "trailers-only" response. message is copied. On a cancelled call nothing is
 * sent. After this the call must not be used; it is freed by the server. */
void grpc_call_finish(grpc_call *call, enum grpc_status status, const char *message);

/* Adds one trailer of the handler's own (name "retry-after-ms", value "50")
 * to those grpc_call_finish sends; a second call replaces the first. Both
 * are copied. The JSON gateway sees it too (a "retry-after-ms" trailer on
 * UNAVAILABLE becomes HTTP 202 with Retry-After). Errors: LSKV_EINVAL
 * (name not a lower-case token, a grpc- or pseudo-header name, value not
 * printable ASCII, or the call is finished), LSKV_ENOMEM. */
int grpc_call_set_trailer(grpc_call *call, const char *name, const char *value);

bool grpc_call_cancelled(const grpc_call *call);

/* Response bytes queued on this call that HTTP/2 flow control has not let
 * out yet: a streaming handler (Watch) can slow down when a client does not
 * read. */
size_t grpc_call_pending_bytes(const grpc_call *call);
/* The same, summed over every call of the server. */
size_t grpc_server_pending_out_bytes(const grpc_server *srv);

/* Per-call slot for the handler's own state. */
void grpc_call_set_data(grpc_call *call, void *data);
void *grpc_call_get_data(const grpc_call *call);

/* The client's address "ip:port" ("[ip6]:port"), for logs. Borrowed, valid
 * until finish. */
const char *grpc_call_peer(const grpc_call *call);

/* The auth token the client sent (etcd's gRPC metadata "token", else
 * "authorization"; the gateway's Authorization header), at most
 * GRPC_TOKEN_MAX bytes (a longer one is cut, so it matches no token), or
 * NULL for none. Borrowed, valid until finish. */
#define GRPC_TOKEN_MAX 4096
const char *grpc_call_token(const grpc_call *call);
/* Whether the call is the server's own (the JSON gateway's /health):
 * handlers skip auth checks for it. */
bool grpc_call_internal(const grpc_call *call);
/* The CN of the client's verified TLS certificate on a gRPC call (etcd's
 * AuthInfoFromTLS), or NULL: no TLS, no verified certificate, or a call of
 * the JSON gateway (etcd ignores the CN of gateway requests). Borrowed,
 * valid until finish. */
const char *grpc_call_cert_cn(const grpc_call *call);

/* The figures of max_buffered_request_bytes, for /metrics and tests:
 * request bytes held now, and calls refused so far. */
size_t grpc_server_buffered_bytes(const grpc_server *srv);
uint64_t grpc_server_refused_calls(const grpc_server *srv);

/* Adds a figure of the caller's to /metrics (see http/metrics.h,
 * metrics_add_gauge: name, type and help are static strings). Errors:
 * LSKV_ENOMEM (no room left). */
int grpc_server_add_gauge(grpc_server *srv, const char *name, const char *type,
                          const char *help, uint64_t (*fn)(void *arg), void *arg);
/* The same with labels (metrics_add_labeled), and a histogram
 * (metrics_add_histogram). Errors: LSKV_ENOMEM. */
int grpc_server_add_labeled(grpc_server *srv, const char *name, const char *type,
                            const char *help, const char *labels, uint64_t (*fn)(void *arg),
                            void *arg);
struct metrics_histogram;
int grpc_server_add_histogram(grpc_server *srv, const char *name, const char *help,
                              const struct metrics_histogram *h);
/* metrics_add_histogram_vec (http/metrics.h) on this server's registry. */
int grpc_server_add_histogram_vec(grpc_server *srv, const char *name, const char *help,
                                  const char *label,
                                  const struct metrics_histogram *(*series)(void *arg, size_t i,
                                                                            char *value,
                                                                            size_t size),
                                  void *arg);

/* For tests and fuzzing: serves one connection without a socket. Feed it
 * client bytes with h2_conn_feed and close it with h2_conn_close
 * (net/h2.h); responses are produced and dropped. Errors: LSKV_ENOMEM,
 * LSKV_ESHUTDOWN (server closing). */
struct h2_conn;
int grpc_server_open_mem_conn(grpc_server *srv, struct h2_conn **out);

#endif
