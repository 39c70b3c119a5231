/* Inside the front door: what grpc_server.c offers the JSON gateway
 * (json_call.c, http1_conn.c) and what they offer it back. Not for use
 * outside src/net/.
 *
 * An *external call* is a grpc_call whose response does not go to an
 * HTTP/2 stream but to a transport (the JSON gateway): the handler sees an
 * ordinary unary call. Life cycle, as for stream calls: the call stays
 * valid until the handler finishes it; the transport's finish runs exactly
 * once (unless the transport detached first), after which the transport
 * must forget the call; grpc_call_detach (the HTTP side went away) cancels
 * the call (on_cancel runs) and the transport hears nothing more. */
#ifndef LSKV_NET_GATEWAY_GLUE_H
#define LSKV_NET_GATEWAY_GLUE_H

#include "http/gateway.h"
#include "http/metrics.h"
#include "net/grpc_server.h"
#include "net/h2.h"

struct grpc_call_transport {
    /* One response message (borrowed). Returns 0 or an LSKV_E* code. */
    int (*send)(void *arg, const uint8_t *msg, size_t len);
    /* The handler finished; message and the extra trailer (grpc_call_set_
     * trailer) may be NULL; all borrowed. */
    void (*finish)(void *arg, enum grpc_status status, const char *message,
                   const char *trailer_name, const char *trailer_value);
    /* Response bytes the transport holds, not yet taken by the client
     * (grpc_call_pending_bytes); NULL: 0. */
    size_t (*pending)(void *arg);
    /* The server's own call (/health's reads): not subject to auth, as
     * etcd's checkHealth reads through the server without a user. */
    bool internal;
};

/* Starts a unary call of method path with request msg (borrowed), from
 * peer with the client's auth token (NULL: none; grpc_call_token). The
 * handler may finish it before this returns (then *out is NULL). Errors:
 * LSKV_ENOTFOUND (no such method), LSKV_EUNIMPLEMENTED (streaming method),
 * LSKV_ENOMEM; the transport is not called then. */
int grpc_server_call_external(grpc_server *srv, const char *path, const uint8_t *msg,
                              size_t len, const char *peer, const char *token,
                              const struct grpc_call_transport *t, void *arg,
                              grpc_call **out);

/* Opens a call of the streaming method path with no message yet; feed it
 * with grpc_call_external_message and end the request side with
 * grpc_call_external_half_close, as a gRPC client would. Errors:
 * LSKV_ENOTFOUND (no such method), LSKV_EUNIMPLEMENTED (not streaming),
 * LSKV_ENOMEM. */
int grpc_server_stream_external(grpc_server *srv, const char *path, const char *peer,
                                const char *token, const struct grpc_call_transport *t,
                                void *arg, grpc_call **out);
/* One request message (borrowed) to the handler of an external streaming
 * call. Returns false when the call is over (the handler finished it, in
 * this call or before: finish ran and the call is gone). */
bool grpc_call_external_message(grpc_call *call, const uint8_t *msg, size_t len);
/* No more request messages. Returns false when the call is over. */
bool grpc_call_external_half_close(grpc_call *call);

/* The transport is gone before finish: cancel the call. */
void grpc_call_detach(grpc_call *call);

/* The gateway's share of --max-concurrent-streams: etcd serves the JSON
 * gateway through one gRPC client connection of its own, so at most that
 * many gateway calls run at once and later ones wait, oldest first, as
 * grpc-go queues streams over the limit (a client may give up meanwhile).
 * A slot is zeroed by its owner before the first acquire. */
struct gateway_slot {
    struct gateway_slot *next;
    void (*granted)(void *arg);
    void *arg;
    bool held, waiting;
};
/* true: s is held now. false: s waits; granted(arg) runs later, on the
 * loop and outside any gateway call, once it is held. */
bool grpc_server_gateway_acquire(grpc_server *srv, struct gateway_slot *s,
                                 void (*granted)(void *arg), void *arg);
/* Gives s back if held (the oldest waiter is granted), or leaves the queue
 * if waiting. Idempotent. */
void grpc_server_gateway_release(grpc_server *srv, struct gateway_slot *s);

/* Gateway settings of the server. */
struct metrics *grpc_server_metrics(grpc_server *srv);
/* The server whose /metrics and /health this one serves (--listen-metrics-
 * urls), or NULL for a client server. */
grpc_server *grpc_server_metrics_of(const grpc_server *srv);
size_t grpc_server_max_recv(const grpc_server *srv);
/* The largest JSON body the gateway reads: room for a protobuf of
 * grpc_server_max_recv bytes as base64 (4/3) plus GATEWAY_JSON_SLACK_BYTES
 * of names and punctuation. etcd converts before it applies gRPC's limit,
 * so the limit goes to the converted message (json_call.c); only larger
 * bodies get 413. */
#define GATEWAY_JSON_SLACK_BYTES (1u << 20)
size_t grpc_server_max_json_body(const grpc_server *srv);
/* Request bytes held by a transport, against the server-wide budget
 * (grpc_server.c invariant 5): old_bytes were counted before, new_bytes
 * now. Returns false, counting nothing new, when a growth would exceed the
 * budget; the transport must then refuse the request (429) and free. */
bool grpc_server_buffer_adjust(grpc_server *srv, size_t old_bytes, size_t new_bytes);
/* The /version body, NUL-terminated. */
const char *grpc_server_version_body(const grpc_server *srv);

/* ---- json_call.c: one gateway request, transport independent ---- */

struct json_call;

/* Where the answer goes. Everything passed is borrowed for the duration
 * of the callback. */
struct json_call_sink {
    /* The answer, or with resp->streamed its head only (the body follows
     * through piece). Runs exactly once. */
    void (*answer)(void *arg, const struct gateway_response *resp);
    /* Streamed answers: the next piece of the body; last: it is the final
     * one (data may be empty) and the answer is complete. Must not call
     * back into json_call. */
    void (*piece)(void *arg, const char *data, size_t len, bool last);
    /* Answer bytes the transport holds that the client has not taken. */
    size_t (*pending)(void *arg);
    /* A streamed answer cannot go on (json_call.c note 3): reset the
     * stream or close the connection soon, and then json_call_cancel; not
     * from inside this callback. */
    void (*abort)(void *arg);
};

/* The most answer bytes a streamed gateway call lets its transport hold
 * (json_call.c note 3): past this the stream ends with "etcdserver: too
 * many requests". Watch stops sending at its own 4 MiB per stream first. */
#define GATEWAY_STREAM_MAX_PENDING_BYTES (8u << 20)

/* Serves one HTTP request (method "POST", target "/v3/kv/range", body
 * borrowed; token: the Authorization header, or NULL). The answer is complete (sink->answer of a whole answer, or
 * sink->piece with last) exactly once, possibly before this returns (then
 * the result is NULL), unless json_call_cancel comes first. sink is
 * borrowed until then. body_done false (streaming routes only, see
 * json_call_streams_body): more of the body follows through
 * json_call_body. */
struct json_call *json_call_start(grpc_server *srv, const char *method, const char *target,
                                  const uint8_t *body, size_t len, bool body_done,
                                  const char *peer, const char *token,
                                  const struct json_call_sink *sink, void *arg);
/* Whether the route's body may be fed as it arrives (a streaming method:
 * each JSON value is sent as soon as it is complete, as Go's decoder
 * goroutine does). */
bool json_call_streams_body(const char *method, const char *target);
/* More body bytes (borrowed) of a call started with body_done false, while
 * its answer is not complete; done: the body is complete. The answer may
 * complete in here (the sink hears it, and jc is gone after this
 * returns). Bytes after the answer completed are the transport's to drop. */
void json_call_body(struct json_call *jc, const uint8_t *data, size_t len, bool done);
/* The HTTP side went away: nothing more is said to the sink. */
void json_call_cancel(struct json_call *jc);

/* ---- http1_conn.c: an HTTP/1.x connection on an h2_conn in raw mode ---- */

struct http1_conn;
/* Errors: LSKV_ENOMEM. */
int http1_conn_open(grpc_server *srv, h2_conn *c, struct http1_conn **out);
/* Bytes from the client. */
void http1_conn_input(struct http1_conn *hc, const uint8_t *data, size_t len);
/* The connection is closing: cancel what is in flight, write nothing more. */
void http1_conn_closed(struct http1_conn *hc);
/* After http1_conn_closed, when the connection is freed. */
void http1_conn_free(struct http1_conn *hc);

#endif
