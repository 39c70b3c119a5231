/* Notes on the design.
 *
 * Terms: a *call* is one gRPC request stream; the *stream side* is the HTTP/2
 * stream in nghttp2; the *handler side* is the method's code, which owns the
 * call from the first callback we make to it (on_message or on_half_close)
 * until it calls grpc_call_finish.
 *
 * Invariants:
 * (1) A call is freed exactly when the stream side is gone (stream closed or
 *     connection closed) and the handler side is done (never owned, or
 *     finished), and none of our callbacks into the handler is running
 *     (in_cb == 0). call_maybe_free is the one place that frees.
 * (2) The response is produced once: resp_done is set by the handler's
 *     finish or by the server's own error (oversized message, ...); after
 *     that, sends are refused and further request bytes are dropped.
 * (3) When the stream side goes away before the handler finished, the call
 *     is marked cancelled and on_cancel runs exactly once.
 * (4) Every nghttp2 callback first checks that the connection is alive: a
 *     handler may close the server (and so this connection) from inside a
 *     callback, after which stream user data may point to freed calls.
 * (5) Bytes buffered for partial request messages (and unary messages
 *     waiting for half-close, JSON bodies, HTTP/1 input) are counted per
 *     connection and for the whole server (buffered_add/buffered_sub), and
 *     bounded: per connection by CONN_MAX_BUFFERED_BYTES (the connection is
 *     closed), server-wide by max_buffered (issue 8 point 6). A call whose
 *     bytes take the server over max_buffered is refused on the spot and its
 *     bytes freed; the others go on. We refuse rather than stop reading:
 *     a paused connection holds its buffers, and if every connection held
 *     part of a message, nobody could finish and free anything (deadlock).
 *     The answer is etcd's ErrGRPCTooManyRequests (RESOURCE_EXHAUSTED
 *     "etcdserver: too many requests"; 429 on the gateway): clients report
 *     it and do not retry it blindly (clientv3 retries only UNAVAILABLE),
 *     which is what a server that is out of room needs.
 * (6) A request's grpc-timeout runs from its headers: at the deadline a call
 *     not yet answered is ended as abort_call ends it (the handler is told
 *     through on_cancel and still finishes it; what it started, such as a
 *     proposal, goes on, so a write may still be applied, as in etcd). A
 *     malformed value resets the stream (PROTOCOL_ERROR), as grpc-go does.
 *
 * Response shape (grpc/doc/PROTOCOL-HTTP2.md): HEADERS (:status 200,
 * content-type application/grpc), DATA (5-byte prefixed messages), HEADERS
 * with grpc-status / grpc-message and END_STREAM. When the call ends before
 * any message, one HEADERS frame carries everything ("trailers-only"). If the
 * client has not half-closed when our END_STREAM goes out, we reset the
 * stream with NO_ERROR, as grpc-go does.
 *
 * JSON gateway (json_gateway): HTTP/1.x connections are handed to
 * http1_conn.c; HTTP/2 requests that are not gRPC (not POST, or another
 * content-type) become *JSON streams* here: the body is collected and given
 * to json_call.c at end of stream, which runs the method as an *external
 * call* (a grpc_call with a transport instead of a stream; see
 * net/gateway_glue.h) and hands back an answer we send as one response;
 * a streaming method's answer comes as a head and pieces (json_sink),
 * written as DATA as they come. Invariant 1 holds for external calls with
 * "stream side" = "transport side": it is gone when the transport
 * detached or heard finish. An external streaming call is fed by the
 * gateway (grpc_call_external_message, _half_close) as a client stream
 * would be; its pending bytes are the transport's. */
#include "net/grpc_server.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "net/gateway_glue.h"
#include "net/grpc_frame.h"
#include "net/h2.h"
#include "net/listener.h"
#include "net/tls.h"

#define DEFAULT_MAX_RECV_BYTES (2u << 20)
#define CONN_MAX_BUFFERED_BYTES (64u << 20)
#define DEFAULT_MAX_BUFFERED_BYTES (256u << 20)
/* etcd rpctypes.ErrGRPCTooManyRequests (invariant 5). */
#define TOO_MANY_REQUESTS "etcdserver: too many requests"

struct listener {
    uv_tcp_t tcp;
    grpc_server *srv;
    bool tls;
};

struct gconn {
    grpc_server *srv;
    h2_conn *h2;              /* NULL once the connection closed */
    struct gconn *prev, *next; /* srv->conns, while alive */
    grpc_call *calls;         /* calls whose stream is alive */
    size_t buffered;          /* invariant 5 */
    bool dead;
    struct http1_conn *h1;    /* JSON gateway over HTTP/1.x, or NULL */
};

struct grpc_server {
    grpc_server *metrics_of; /* grpc_server_config.metrics_of */
    uv_loop_t *loop;
    struct listener *listeners;
    size_t n_listeners;
    tls_ctx *tls;
    struct grpc_method *methods; /* copies, paths strdup'd */
    size_t n_methods;
    size_t max_recv;
    size_t buffered, max_buffered; /* invariant 5 */
    size_t out_pending;            /* every call's out queue, in bytes */
    uint64_t refused;              /* calls refused by invariant 5 */
    nghttp2_session_callbacks *callbacks;
    struct h2_conn_hooks hooks;
    struct gconn *conns;
    size_t n_open; /* listener handles and connections not yet freed */
    bool closing;
    void (*close_cb)(void *arg);
    void *close_arg;
    /* JSON gateway and metrics. */
    bool gateway;
    uint32_t max_streams;  /* per connection, and gateway calls at once */
    uint32_t gw_active;    /* gateway slots held */
    struct gateway_slot *gw_head, *gw_tail; /* waiting, oldest first */
    uv_timer_t gw_timer;   /* grants slots outside the releasing call */
    bool gw_timer_open;
    struct metrics *metrics;
    const char **metric_paths;
    uint8_t *metric_types; /* enum metrics_rpc_type */
    char version_body[512];
};

struct outq {
    uint8_t *buf;
    size_t off, len, cap; /* pending bytes are buf[off..len) */
};

struct grpc_call {
    grpc_server *srv;
    struct gconn *conn;        /* NULL once the stream side is gone */
    grpc_call *prev, *next;    /* conn->calls */
    int32_t stream_id;
    const struct grpc_method *method; /* NULL until routed */
    /* Request. */
    char path[256];
    bool path_too_long;
    bool is_post;
    char content_type[64];
    bool has_content_type;
    char encoding[32];
    bool timeout_set, bad_timeout; /* grpc-timeout */
    int64_t timeout_ns;
    uv_timer_t *deadline; /* armed while a deadline runs */
    struct grpc_deframer deframer;
    uint8_t *unary_msg; /* unary: the one message, held until half-close */
    size_t unary_len;
    unsigned n_msgs;
    bool delivered;     /* a message or half-close reached the handler */
    /* Ownership (invariant 1). */
    bool stream_gone;
    bool handler_owned;
    bool handler_finished;
    int in_cb;
    bool cancelled;
    /* Response. */
    bool headers_sent;
    bool resp_done;
    bool deferred; /* the data source returned NGHTTP2_ERR_DEFERRED */
    enum grpc_status status;
    char *message; /* percent-encoded, or NULL */
    char *trailer_name, *trailer_value; /* grpc_call_set_trailer, or NULL */
    struct outq out;
    void *data;
    char peer[80];
    char *token;     /* grpc_call_token; malloc'ed or NULL */
    bool token_meta; /* token came from "token" (it wins over "authorization") */
    /* External call: the response goes to the transport. */
    const struct grpc_call_transport *ext;
    void *ext_arg;
    /* JSON stream (HTTP/2 request for the gateway). */
    bool json;
    bool json_too_large;
    bool json_refused; /* invariant 5 */
    bool json_live;    /* a streaming route: the body goes to jc as it comes */
    char http_method[16];
    uint8_t *json_body;
    size_t json_len, json_cap;
    struct json_call *jc;
};

/* ---- helpers ---- */

static size_t call_buffered(const grpc_call *call)
{
    return grpc_deframer_buffered(&call->deframer) + (call->unary_msg ? call->unary_len : 0) +
           call->json_len;
}

/* Invariant 5. */
static void buffered_add(struct gconn *gc, size_t n)
{
    gc->buffered += n;
    gc->srv->buffered += n;
}

static void buffered_sub(struct gconn *gc, size_t n)
{
    gc->buffered -= n;
    gc->srv->buffered -= n;
}

static size_t method_index(const grpc_call *call)
{
    return (size_t)(call->method - call->srv->methods);
}

/* The handler now owns the call. */
/* Each message of a stream is handed over here: the call starts (and is
 * counted in grpc_server_started_total) at the first only. */
static void call_own(grpc_call *call)
{
    if (!call->delivered)
        metrics_started(call->srv->metrics, method_index(call));
    call->handler_owned = true;
    call->delivered = true;
}

static nghttp2_session *call_session(grpc_call *call)
{
    if (call->conn == NULL || call->conn->dead)
        return NULL;
    return h2_conn_session(call->conn->h2);
}

static void deadline_closed(uv_handle_t *h)
{
    free(h);
}

/* The answer is out (or the call is gone): its deadline no longer matters. */
static void call_disarm(grpc_call *call)
{
    if (call->deadline == NULL)
        return;
    uv_close((uv_handle_t *)call->deadline, deadline_closed);
    call->deadline = NULL;
}

static void call_free(grpc_call *call)
{
    free(call->token);
    call_disarm(call);
    grpc_deframer_free(&call->deframer);
    free(call->unary_msg);
    free(call->message);
    free(call->trailer_name);
    free(call->trailer_value);
    /* The queue went with the stream (call_stream_gone): a call may outlive
     * its server, so call->srv is not touched here. */
    free(call->out.buf);
    free(call->json_body);
    free(call);
}

/* Invariant 1. */
static void call_maybe_free(grpc_call *call)
{
    if (call->in_cb > 0 || !call->stream_gone)
        return;
    if (call->handler_owned && !call->handler_finished)
        return;
    call_free(call);
}

static void call_unlink(grpc_call *call)
{
    struct gconn *gc = call->conn;
    if (gc == NULL)
        return;
    buffered_sub(gc, call_buffered(call));
    if (call->prev)
        call->prev->next = call->next;
    else
        gc->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;
    call->conn = NULL;
}

/* The stream side is gone (invariant 3). May free the call. */
static void call_stream_gone(grpc_call *call)
{
    call_unlink(call);
    call->stream_gone = true;
    /* Nothing queued can go out any more; the server is still there. */
    call->srv->out_pending -= call->out.len - call->out.off;
    free(call->out.buf);
    memset(&call->out, 0, sizeof call->out);
    if (call->jc != NULL) {
        struct json_call *jc = call->jc;
        call->jc = NULL;
        json_call_cancel(jc);
    }
    if (call->handler_owned && !call->handler_finished && !call->cancelled) {
        call->cancelled = true;
        metrics_handled(call->srv->metrics, method_index(call), GRPC_STATUS_CANCELLED);
        if (call->method && call->method->on_cancel) {
            call->in_cb++;
            call->method->on_cancel(call, call->method->ctx);
            call->in_cb--;
        }
    }
    call_maybe_free(call);
}

static int outq_append(struct outq *q, const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    if (q->off > 0 && q->off == q->len)
        q->off = q->len = 0;
    if (q->len + na + nb > q->cap) {
        if (q->off > 0) {
            memmove(q->buf, q->buf + q->off, q->len - q->off);
            q->len -= q->off;
            q->off = 0;
        }
        size_t cap = q->cap ? q->cap : 1024;
        while (cap < q->len + na + nb)
            cap *= 2;
        if (cap > q->cap) {
            uint8_t *p = realloc(q->buf, cap);
            if (p == NULL)
                return LSKV_ENOMEM;
            q->buf = p;
            q->cap = cap;
        }
    }
    if (na) /* an empty piece on an empty queue: no buffer at all */
        memcpy(q->buf + q->len, a, na);
    if (nb)
        memcpy(q->buf + q->len + na, b, nb);
    q->len += na + nb;
    return 0;
}

/* outq_append on call's queue, counted in the server's out_pending. */
static int call_out_append(grpc_call *call, const uint8_t *a, size_t na, const uint8_t *b,
                           size_t nb)
{
    int rv = outq_append(&call->out, a, na, b, nb);
    if (rv == 0)
        call->srv->out_pending += na + nb;
    return rv;
}

#define NV(n, v)                                                               \
    {                                                                          \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE \
    }

static size_t status_nva(nghttp2_nv *nva, size_t i, char *code, size_t code_size,
                         const grpc_call *call)
{
    snprintf(code, code_size, "%d", (int)call->status);
    nva[i++] = (nghttp2_nv)NV("grpc-status", code);
    if (call->message != NULL && call->message[0] != '\0')
        nva[i++] = (nghttp2_nv)NV("grpc-message", call->message);
    if (call->trailer_name != NULL)
        nva[i++] = (nghttp2_nv){(uint8_t *)call->trailer_name, (uint8_t *)call->trailer_value,
                                strlen(call->trailer_name), strlen(call->trailer_value),
                                NGHTTP2_NV_FLAG_NONE};
    return i;
}

static ssize_t data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                         size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                         void *user_data)
{
    (void)user_data;
    grpc_call *call = source->ptr;
    struct outq *q = &call->out;
    size_t avail = q->len - q->off;
    if (avail > 0) {
        size_t n = avail < length ? avail : length;
        memcpy(buf, q->buf + q->off, n);
        q->off += n;
        call->srv->out_pending -= n;
        if (q->off == q->len && q->cap > 65536) {
            free(q->buf);
            memset(q, 0, sizeof *q);
        }
        return (ssize_t)n;
    }
    if (!call->resp_done) {
        call->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    if (call->json)
        return 0;
    nghttp2_nv nva[3];
    char code[16];
    size_t n = status_nva(nva, 0, code, sizeof code, call);
    if (nghttp2_submit_trailer(session, stream_id, nva, n) == 0)
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    return 0;
}

/* Produces the final status (invariant 2). http_status is 200 except for
 * requests that are not gRPC at all. */
static void respond(grpc_call *call, int http_status, enum grpc_status status,
                    const char *message)
{
    if (call->resp_done)
        return;
    call->resp_done = true;
    call_disarm(call);
    call->status = status;
    if (message != NULL)
        call->message = grpc_frame_percent_encode(message);
    nghttp2_session *session = call_session(call);
    if (session == NULL)
        return;
    if (!call->headers_sent) {
        call->headers_sent = true;
        char hs[8], code[16];
        snprintf(hs, sizeof hs, "%d", http_status);
        nghttp2_nv nva[5] = {NV(":status", hs), NV("content-type", "application/grpc")};
        size_t n = status_nva(nva, 2, code, sizeof code, call);
        nghttp2_submit_response(session, call->stream_id, nva, n, NULL);
    } else if (call->deferred) {
        call->deferred = false;
        nghttp2_session_resume_data(session, call->stream_id);
    }
    h2_conn_kick(call->conn->h2);
}

/* The server ends a call on its own (bad request bytes). If the handler owns
 * it, the handler is told through on_cancel and must still finish it. */
static void abort_call(grpc_call *call, enum grpc_status status, const char *message)
{
    if (call->resp_done)
        return;
    respond(call, 200, status, message);
    if (call->handler_owned && !call->handler_finished && !call->cancelled) {
        call->cancelled = true;
        metrics_handled(call->srv->metrics, method_index(call), status);
        if (call->method->on_cancel) {
            call->in_cb++;
            call->method->on_cancel(call, call->method->ctx);
            call->in_cb--;
        }
    }
}

/* grpc-timeout (invariant 6). etcd 3.4's handlers return the context's
 * error, which its grpc-go sends as UNKNOWN "context deadline exceeded";
 * before the handler has the request, grpc-go's own read of it fails with
 * DEADLINE_EXCEEDED and the same text. */
#define DEADLINE_TEXT "context deadline exceeded"
#define GRPC_DEADLINE_GRACE_MS 20

static void on_deadline(uv_timer_t *t)
{
    grpc_call *call = t->data;
    if (call->resp_done || call->handler_finished)
        return;
    bool in_handler = call->handler_owned || (call->method != NULL && call->method->streaming);
    call->in_cb++;
    abort_call(call, in_handler ? GRPC_STATUS_UNKNOWN : GRPC_STATUS_DEADLINE_EXCEEDED,
               DEADLINE_TEXT);
    call->in_cb--;
    call_maybe_free(call);
}

static void arm_deadline(grpc_call *call)
{
    if (!call->timeout_set || call->resp_done || call->json || call->method == NULL)
        return;
    if (call->timeout_ns <= 0) {
        abort_call(call, GRPC_STATUS_DEADLINE_EXCEEDED, DEADLINE_TEXT);
        return;
    }
    uv_timer_t *t = malloc(sizeof *t);
    if (t == NULL)
        return; /* no deadline rather than no answer */
    uv_timer_init(call->srv->loop, t);
    t->data = call;
    call->deadline = t;
    /* From now, not from the loop's cached time, and a little later than
     * the value: the client's own deadline, set before it sent the headers,
     * passes first, so that a gRPC client reports its own DEADLINE_EXCEEDED
     * as it does with etcd (whose answer takes its goroutines a moment). */
    uv_update_time(call->srv->loop);
    uint64_t ms = ((uint64_t)call->timeout_ns + 999999) / 1000000 + GRPC_DEADLINE_GRACE_MS;
    uv_timer_start(t, on_deadline, ms, 0);
}

static bool service_known(const grpc_server *srv, const char *service, size_t len)
{
    for (size_t i = 0; i < srv->n_methods; i++) {
        const char *p = srv->methods[i].path;
        if (p[0] == '/' && strncmp(p + 1, service, len) == 0 && p[1 + len] == '/')
            return true;
    }
    return false;
}

static const struct json_call_sink json_sink; /* below, with the JSON stream code */

/* Request headers are complete: validate and route. */
static void start_call(grpc_call *call)
{
    grpc_server *srv = call->conn->srv;
    char msg[400];
    const char *ct = call->content_type;
    size_t ctl = strlen("application/grpc");
    bool grpc_ct = call->has_content_type && strncmp(ct, "application/grpc", ctl) == 0 &&
                   (ct[ctl] == '\0' || ct[ctl] == '+' || ct[ctl] == ';');
    if (srv->gateway && (!call->is_post || !grpc_ct)) {
        call->json = true; /* served at end of stream (json_dispatch) */
        if (json_call_streams_body(call->http_method, call->path)) {
            /* A streaming route: its body goes to the call as it comes. */
            call->json_live = true;
            call->jc = json_call_start(srv, call->http_method, call->path, NULL, 0, false,
                                       call->peer, call->token, &json_sink, call);
        }
        return;
    }
    if (!call->is_post) {
        respond(call, 405, GRPC_STATUS_UNIMPLEMENTED, "gRPC requires method POST");
        return;
    }
    if (!grpc_ct) {
        snprintf(msg, sizeof msg, "invalid gRPC request content-type \"%s\"", ct);
        respond(call, 415, GRPC_STATUS_INTERNAL, msg);
        return;
    }
    for (size_t i = 0; i < srv->n_methods && !call->path_too_long; i++) {
        if (strcmp(srv->methods[i].path, call->path) == 0) {
            call->method = &srv->methods[i];
            break;
        }
    }
    if (call->method == NULL) {
        /* grpc-go's texts (server.go handleStream). */
        const char *sm = call->path[0] == '/' ? call->path + 1 : call->path;
        const char *slash = strrchr(sm, '/');
        if (call->path_too_long || slash == NULL)
            snprintf(msg, sizeof msg, "malformed method name: \"%.200s\"", call->path);
        else if (!service_known(srv, sm, (size_t)(slash - sm)))
            snprintf(msg, sizeof msg, "unknown service %.*s", (int)(slash - sm), sm);
        else
            snprintf(msg, sizeof msg, "unknown method %s for service %.*s", slash + 1,
                     (int)(slash - sm), sm);
        respond(call, 200, GRPC_STATUS_UNIMPLEMENTED, msg);
        return;
    }
    if (call->encoding[0] != '\0' && strcmp(call->encoding, "identity") != 0) {
        snprintf(msg, sizeof msg, "grpc: Decompressor is not installed for grpc-encoding \"%s\"",
                 call->encoding);
        respond(call, 200, GRPC_STATUS_UNIMPLEMENTED, msg);
    }
}

/* One complete request message (grpc_deframer_cb). */
static int on_grpc_message(void *arg, const uint8_t *msg, size_t len)
{
    grpc_call *call = arg;
    if (call->resp_done || call->cancelled || call->stream_gone)
        return 1; /* stop: nobody wants the rest */
    if (!call->method->streaming) {
        if (++call->n_msgs > 1) {
            abort_call(call, GRPC_STATUS_UNIMPLEMENTED,
                       "grpc: received more than one request message for a unary RPC");
            return 1;
        }
        call->unary_msg = malloc(len ? len : 1);
        if (call->unary_msg == NULL) {
            abort_call(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "grpc: out of memory");
            return 1;
        }
        memcpy(call->unary_msg, msg, len);
        call->unary_len = len;
        return 0;
    }
    call_own(call);
    call->n_msgs++;
    metrics_grpc_bytes(call->srv->metrics, len, 0);
    call->method->on_message(call, msg, len, call->method->ctx);
    return 0;
}

/* The HEADERS of the gateway's answer on a JSON stream; with a body
 * unless HEAD. */
static void json_headers(grpc_call *call, nghttp2_session *session,
                         const struct gateway_response *r)
{
    char hs[8];
    snprintf(hs, sizeof hs, "%d", r->status);
    char retry[16];
    nghttp2_nv nva[7] = {
        NV(":status", hs),
        NV("content-type", r->content_type),
        NV("access-control-allow-origin", "*"),
        NV("access-control-allow-methods", "POST, GET, OPTIONS, PUT, DELETE"),
        NV("access-control-allow-headers", "accept, content-type, authorization"),
    };
    size_t n = 5;
    if (r->grpc_metadata)
        nva[n++] = (nghttp2_nv)NV("grpc-metadata-content-type", "application/grpc");
    if (r->retry_after_s > 0) {
        snprintf(retry, sizeof retry, "%u", r->retry_after_s);
        nva[n++] = (nghttp2_nv)NV("retry-after", retry);
    }
    call->headers_sent = true;
    bool head = strcmp(call->http_method, "HEAD") == 0;
    nghttp2_data_provider prd = {.source.ptr = call, .read_callback = data_read};
    nghttp2_submit_response(session, call->stream_id, nva, n, head ? NULL : &prd);
    h2_conn_kick(call->conn->h2);
}

/* The gateway's answer for a JSON stream (json_call_sink). */
static void json_respond(void *arg, const struct gateway_response *r)
{
    grpc_call *call = arg;
    if (!r->streamed)
        call->jc = NULL;
    if (call->resp_done)
        return;
    if (!r->streamed)
        call->resp_done = true;
    nghttp2_session *session = call_session(call);
    if (session == NULL)
        return;
    if (call_out_append(call, (const uint8_t *)r->body, r->body_len, NULL, 0) != 0) {
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
        h2_conn_kick(call->conn->h2);
        return;
    }
    json_headers(call, session, r);
}

/* One piece of a streamed answer (json_call_sink). */
static void json_piece(void *arg, const char *data, size_t len, bool last)
{
    grpc_call *call = arg;
    if (last) {
        call->jc = NULL;
        call->resp_done = true;
    }
    nghttp2_session *session = call_session(call);
    if (session == NULL)
        return;
    if (call_out_append(call, (const uint8_t *)data, len, NULL, 0) != 0) {
        /* Not finished from here (the sink contract): the reset closes the
         * stream from nghttp2's send path, which cancels the call. */
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
    } else if (call->deferred) {
        call->deferred = false;
        nghttp2_session_resume_data(session, call->stream_id);
    }
    h2_conn_kick(call->conn->h2);
}

static size_t json_pending(void *arg)
{
    const grpc_call *call = arg;
    return call->out.len - call->out.off;
}

static void json_abort(void *arg)
{
    grpc_call *call = arg;
    nghttp2_session *session = call_session(call);
    if (session == NULL)
        return;
    /* Closed when nghttp2 sends it (on_stream_close): json_call_cancel. */
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_CANCEL);
    h2_conn_kick(call->conn->h2);
}

static const struct json_call_sink json_sink = {
    .answer = json_respond, .piece = json_piece, .pending = json_pending, .abort = json_abort};

/* A JSON stream's request is complete: run it through the gateway. */
static void json_dispatch(grpc_call *call)
{
    if (call->json_refused) {
        size_t len = 0;
        char *body = gateway_error_body(GRPC_STATUS_RESOURCE_EXHAUSTED, TOO_MANY_REQUESTS, &len);
        struct gateway_response r = {.status = gateway_http_status(GRPC_STATUS_RESOURCE_EXHAUSTED),
                                     .content_type = "application/json",
                                     .body = body ? body : "",
                                     .body_len = body ? len : 0};
        json_respond(call, &r);
        free(body);
        return;
    }
    if (call->json_too_large) {
        static const char body[] = "request too large\n";
        struct gateway_response r = {.status = 413,
                                     .content_type = "text/plain; charset=utf-8",
                                     .body = body,
                                     .body_len = sizeof body - 1};
        json_respond(call, &r);
        return;
    }
    const char *method = strcmp(call->http_method, "HEAD") == 0 ? "GET" : call->http_method;
    call->jc = json_call_start(call->srv, method, call->path, call->json_body, call->json_len,
                               true, call->peer, call->token, &json_sink, call);
    if (call->conn != NULL)
        buffered_sub(call->conn, call->json_len);
    free(call->json_body);
    call->json_body = NULL;
    call->json_len = call->json_cap = 0;
}

/* The client half-closed. */
static void end_of_request(grpc_call *call)
{
    if (call->json_live) {
        if (call->jc != NULL)
            json_call_body(call->jc, NULL, 0, true);
        return;
    }
    if (call->json && !call->resp_done && call->jc == NULL) {
        json_dispatch(call);
        return;
    }
    if (call->resp_done || call->method == NULL || call->cancelled)
        return;
    if (grpc_deframer_partial(&call->deframer)) {
        /* grpc-go: io.ErrUnexpectedEOF as codes.Internal. */
        abort_call(call, GRPC_STATUS_INTERNAL, "unexpected EOF");
        return;
    }
    const struct grpc_method *m = call->method;
    if (!m->streaming) {
        if (call->n_msgs == 0) {
            abort_call(call, GRPC_STATUS_INTERNAL,
                       "grpc: no request message received for a unary RPC");
            return;
        }
        uint8_t *msg = call->unary_msg;
        size_t len = call->unary_len;
        if (call->conn)
            buffered_sub(call->conn, len);
        call->unary_msg = NULL;
        call_own(call);
        metrics_grpc_bytes(call->srv->metrics, len, 0);
        m->on_message(call, msg, len, m->ctx);
        free(msg);
        return;
    }
    if (m->on_half_close != NULL) {
        call_own(call);
        m->on_half_close(call, m->ctx);
    } else if (!call->delivered) {
        respond(call, 200, GRPC_STATUS_OK, NULL);
    }
}

/* ---- nghttp2 callbacks (invariant 4: check gc->dead first) ---- */

static grpc_call *stream_call(nghttp2_session *session, int32_t stream_id)
{
    return nghttp2_session_get_stream_user_data(session, stream_id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    struct gconn *gc = ud;
    if (gc->dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    grpc_call *call = calloc(1, sizeof *call);
    if (call == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream */
    call->srv = gc->srv;
    call->conn = gc;
    call->stream_id = frame->hd.stream_id;
    grpc_deframer_init(&call->deframer, gc->srv->max_recv);
    snprintf(call->peer, sizeof call->peer, "%s", gc->h2 ? h2_conn_peer(gc->h2) : "?");
    call->next = gc->calls;
    if (gc->calls)
        gc->calls->prev = call;
    gc->calls = call;
    nghttp2_session_set_stream_user_data(session, call->stream_id, call);
    return 0;
}

static void copy_value(char *dst, size_t size, const uint8_t *v, size_t len, bool *too_long)
{
    if (len >= size) {
        if (too_long)
            *too_long = true;
        len = size - 1;
    }
    memcpy(dst, v, len);
    dst[len] = '\0';
}

/* Keeps the client's token (cut at GRPC_TOKEN_MAX). Errors: LSKV_ENOMEM. */
static int call_set_token(grpc_call *call, const char *v, size_t len)
{
    if (len > GRPC_TOKEN_MAX)
        len = GRPC_TOKEN_MAX;
    char *t = strndup(v ? v : "", len);
    if (t == NULL)
        return LSKV_ENOMEM;
    free(call->token);
    call->token = t;
    return 0;
}

static bool name_is(const uint8_t *name, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags;
    struct gconn *gc = ud;
    if (gc->dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* client trailers carry nothing for us */
    grpc_call *call = stream_call(session, frame->hd.stream_id);
    if (call == NULL)
        return 0;
    if (name_is(name, namelen, ":path")) {
        copy_value(call->path, sizeof call->path, value, valuelen, &call->path_too_long);
    } else if (name_is(name, namelen, ":method")) {
        call->is_post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
        copy_value(call->http_method, sizeof call->http_method, value, valuelen, NULL);
    } else if (name_is(name, namelen, "content-type")) {
        call->has_content_type = true;
        copy_value(call->content_type, sizeof call->content_type, value, valuelen, NULL);
    } else if (name_is(name, namelen, "grpc-encoding")) {
        copy_value(call->encoding, sizeof call->encoding, value, valuelen, NULL);
    } else if (name_is(name, namelen, "token") ||
               (name_is(name, namelen, "authorization") && !call->token_meta)) {
        if (call_set_token(call, (const char *)value, valuelen) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream */
        call->token_meta = name_is(name, namelen, "token");
    } else if (name_is(name, namelen, "grpc-timeout")) {
        call->timeout_set = true;
        call->bad_timeout = grpc_timeout_parse(value, valuelen, &call->timeout_ns) != 0;
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    struct gconn *gc = ud;
    if (gc->dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    grpc_call *call = stream_call(session, frame->hd.stream_id);
    if (call == NULL)
        return 0;
    call->in_cb++;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        if (call->bad_timeout) {
            /* grpc-go: "malformed time-out", the stream reset, nothing routed. */
            call->resp_done = true;
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                      NGHTTP2_PROTOCOL_ERROR);
            h2_conn_kick(gc->h2);
        } else {
            start_call(call);
            arm_deadline(call);
        }
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !gc->dead)
        end_of_request(call);
    call->in_cb--;
    call_maybe_free(call);
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *ud)
{
    (void)flags;
    struct gconn *gc = ud;
    if (gc->dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    grpc_call *call = stream_call(session, stream_id);
    if (call != NULL && call->json_live) {
        if (call->jc != NULL) {
            call->in_cb++;
            json_call_body(call->jc, data, len, false);
            call->in_cb--;
            call_maybe_free(call);
        }
        return 0;
    }
    if (call != NULL && call->json) {
        if (call->json_too_large || call->json_refused || call->resp_done || call->jc != NULL)
            return 0;
        if (call->json_len + len > grpc_server_max_json_body(gc->srv)) {
            call->json_too_large = true;
            return 0;
        }
        if (call->json_len + len > call->json_cap) {
            size_t cap = call->json_cap ? call->json_cap : 1024;
            while (cap < call->json_len + len)
                cap *= 2;
            uint8_t *b = realloc(call->json_body, cap);
            if (b == NULL) {
                call->json_too_large = true;
                return 0;
            }
            call->json_body = b;
            call->json_cap = cap;
        }
        memcpy(call->json_body + call->json_len, data, len);
        call->json_len += len;
        buffered_add(gc, len);
        if (gc->srv->buffered > gc->srv->max_buffered) {
            /* Invariant 5: refused (at end of stream), bytes freed now. */
            call->json_refused = true;
            gc->srv->refused++;
            buffered_sub(gc, call->json_len);
            free(call->json_body);
            call->json_body = NULL;
            call->json_len = call->json_cap = 0;
            return 0;
        }
        if (gc->buffered > CONN_MAX_BUFFERED_BYTES)
            nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM);
        return 0;
    }
    if (call == NULL || call->method == NULL || call->resp_done || call->cancelled)
        return 0;
    call->in_cb++;
    size_t before = call_buffered(call);
    int rv = grpc_deframer_push(&call->deframer, data, len, on_grpc_message, call);
    bool refused = false;
    if (call->conn != NULL) {
        size_t after = call_buffered(call);
        if (after >= before)
            buffered_add(call->conn, after - before);
        else
            buffered_sub(call->conn, before - after);
        if (rv == 0 && after > before && gc->srv->buffered > gc->srv->max_buffered) {
            /* Invariant 5: this call's bytes took the server over. */
            gc->srv->refused++;
            abort_call(call, GRPC_STATUS_RESOURCE_EXHAUSTED, TOO_MANY_REQUESTS);
            buffered_sub(call->conn, call->unary_msg ? call->unary_len : 0);
            free(call->unary_msg);
            call->unary_msg = NULL;
            refused = true; /* the deframer is freed below */
        }
    }
    char msg[200];
    switch (rv) {
    case LSKV_ETOOLARGE:
        grpc_frame_too_large_text(msg, sizeof msg, call->deframer.too_large_len,
                                  call->deframer.max_bytes);
        abort_call(call, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
        break;
    case LSKV_EUNIMPLEMENTED:
        /* grpc-go rpc_util.go checkRecvPayload. */
        if (call->encoding[0] == '\0' || strcmp(call->encoding, "identity") == 0) {
            abort_call(call, GRPC_STATUS_INTERNAL,
                       "grpc: compressed flag set with identity or empty encoding");
        } else {
            snprintf(msg, sizeof msg,
                     "grpc: Decompressor is not installed for grpc-encoding \"%s\"",
                     call->encoding);
            abort_call(call, GRPC_STATUS_UNIMPLEMENTED, msg);
        }
        break;
    case LSKV_ECORRUPT:
        snprintf(msg, sizeof msg, "grpc: received unexpected payload format %u",
                 call->deframer.prefix[0]);
        abort_call(call, GRPC_STATUS_INTERNAL, msg);
        break;
    case LSKV_ENOMEM:
        abort_call(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "grpc: out of memory");
        break;
    default:
        break;
    }
    if ((rv != 0 || refused) && call->conn != NULL) {
        /* The deframer is dead; give its memory back now. */
        buffered_sub(call->conn, grpc_deframer_buffered(&call->deframer));
        grpc_deframer_free(&call->deframer);
    }
    call->in_cb--;
    call_maybe_free(call);
    if (!gc->dead && gc->buffered > CONN_MAX_BUFFERED_BYTES)
        nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM);
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    struct gconn *gc = ud;
    if (gc->dead)
        return 0;
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        nghttp2_session_get_stream_remote_close(session, frame->hd.stream_id) == 0)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *ud)
{
    (void)error_code;
    struct gconn *gc = ud;
    if (gc->dead)
        return 0;
    grpc_call *call = stream_call(session, stream_id);
    if (call == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    call_stream_gone(call);
    return 0;
}

/* ---- connections ---- */

static void maybe_closed(grpc_server *srv);

static void conn_on_close(void *ud)
{
    struct gconn *gc = ud;
    gc->dead = true;
    gc->h2 = NULL;
    if (gc->prev)
        gc->prev->next = gc->next;
    else
        gc->srv->conns = gc->next;
    if (gc->next)
        gc->next->prev = gc->prev;
    gc->prev = gc->next = NULL;
    while (gc->calls != NULL)
        call_stream_gone(gc->calls);
    if (gc->h1 != NULL)
        http1_conn_closed(gc->h1);
}

static void conn_on_free(void *ud)
{
    struct gconn *gc = ud;
    grpc_server *srv = gc->srv;
    http1_conn_free(gc->h1);
    free(gc);
    srv->n_open--;
    maybe_closed(srv);
}

/* The client speaks HTTP/1.x: the JSON gateway serves the connection. */
static void conn_on_http1(void *ud, h2_conn *c, const uint8_t *data, size_t len)
{
    struct gconn *gc = ud;
    if (gc->dead)
        return;
    if (gc->h1 == NULL && http1_conn_open(gc->srv, c, &gc->h1) != 0) {
        h2_conn_close(c);
        return;
    }
    http1_conn_input(gc->h1, data, len);
}

static struct gconn *conn_new(grpc_server *srv)
{
    struct gconn *gc = calloc(1, sizeof *gc);
    if (gc == NULL)
        return NULL;
    gc->srv = srv;
    gc->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = gc;
    srv->conns = gc;
    srv->n_open++;
    return gc;
}

static void conn_abandon(struct gconn *gc)
{
    gc->srv->conns = gc->next;
    if (gc->next)
        gc->next->prev = NULL;
    gc->srv->n_open--;
    free(gc);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct listener *l = server->data;
    grpc_server *srv = l->srv;
    if (status < 0 || srv->closing)
        return;
    struct gconn *gc = conn_new(srv);
    if (gc == NULL)
        return;
    struct h2_conn_config cfg = {
        .callbacks = srv->callbacks,
        .ud = gc,
        .hooks = &srv->hooks,
        .tls = l->tls ? srv->tls : NULL,
        .max_streams = srv->max_streams,
    };
    if (h2_conn_accept(server, &cfg, &gc->h2) != 0)
        conn_abandon(gc);
}

int grpc_server_open_mem_conn(grpc_server *srv, struct h2_conn **out)
{
    if (srv->closing)
        return LSKV_ESHUTDOWN;
    struct gconn *gc = conn_new(srv);
    if (gc == NULL)
        return LSKV_ENOMEM;
    struct h2_conn_config cfg = {
        .callbacks = srv->callbacks, .ud = gc, .hooks = &srv->hooks, .tls = NULL};
    if (h2_conn_open_mem(&cfg, &gc->h2) != 0) {
        conn_abandon(gc);
        return LSKV_ENOMEM;
    }
    *out = gc->h2;
    return 0;
}

/* ---- server ---- */

static void server_free(grpc_server *srv)
{
    for (size_t i = 0; i < srv->n_methods; i++)
        free((char *)srv->methods[i].path);
    free(srv->methods);
    free(srv->listeners);
    metrics_close(srv->metrics);
    free(srv->metric_paths);
    free(srv->metric_types);
    tls_ctx_close(srv->tls);
    nghttp2_session_callbacks_del(srv->callbacks);
    free(srv);
}

static void maybe_closed(grpc_server *srv)
{
    if (!srv->closing || srv->n_open > 0)
        return;
    void (*cb)(void *) = srv->close_cb;
    void *arg = srv->close_arg;
    server_free(srv);
    if (cb)
        cb(arg);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    grpc_server *srv = l->srv;
    srv->n_open--;
    maybe_closed(srv);
}

static uint64_t gauge_buffered(void *arg)
{
    return grpc_server_buffered_bytes(arg);
}

static uint64_t gauge_refused(void *arg)
{
    return grpc_server_refused_calls(arg);
}

int grpc_server_add_gauge(grpc_server *srv, const char *name, const char *type,
                          const char *help, uint64_t (*fn)(void *arg), void *arg)
{
    return metrics_add_gauge(srv->metrics, name, type, help, fn, arg);
}

int grpc_server_add_labeled(grpc_server *srv, const char *name, const char *type,
                            const char *help, const char *labels, uint64_t (*fn)(void *arg),
                            void *arg)
{
    return metrics_add_labeled(srv->metrics, name, type, help, labels, fn, arg);
}

int grpc_server_add_histogram(grpc_server *srv, const char *name, const char *help,
                              const struct metrics_histogram *h)
{
    return metrics_add_histogram(srv->metrics, name, help, h);
}

int grpc_server_add_histogram_vec(grpc_server *srv, const char *name, const char *help,
                                  const char *label, metrics_series_fn series, void *arg)
{
    return metrics_add_histogram_vec(srv->metrics, name, help, label, series, arg);
}

int grpc_server_open(uv_loop_t *loop, const struct grpc_server_config *config,
                     grpc_server **out, char *errmsg)
{
    int rv = 0;
    struct url *urls = NULL;
    grpc_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return LSKV_ENOMEM;
    srv->loop = loop;
    srv->max_recv = config->max_recv_message_bytes ? config->max_recv_message_bytes
                                                   : DEFAULT_MAX_RECV_BYTES;
    if (srv->max_recv > UINT32_MAX)
        srv->max_recv = UINT32_MAX;
    srv->max_buffered = config->max_buffered_request_bytes ? config->max_buffered_request_bytes
                                                           : DEFAULT_MAX_BUFFERED_BYTES;
    srv->hooks.on_close = conn_on_close;
    srv->hooks.on_free = conn_on_free;
    srv->gateway = config->json_gateway;
    srv->max_streams = config->max_concurrent_streams ? config->max_concurrent_streams
                                                      : H2_MAX_CONCURRENT_STREAMS;
    srv->metrics_of = config->metrics_of;
    srv->hooks.on_http1 = config->json_gateway ? conn_on_http1 : NULL;
    {
        int n = snprintf(srv->version_body, sizeof srv->version_body,
                         "{\"etcdserver\":\"%.100s\",\"etcdcluster\":\"%.100s\"",
                         config->server_version ? config->server_version : "3.4.23",
                         config->cluster_version ? config->cluster_version : "3.4.0");
        if (config->build_version != NULL)
            snprintf(srv->version_body + n, sizeof srv->version_body - (size_t)n,
                     ",\"lskv\":\"%.100s\"}", config->build_version);
        else
            snprintf(srv->version_body + n, sizeof srv->version_body - (size_t)n, "}");
    }
    if (nghttp2_session_callbacks_new(&srv->callbacks) != 0) {
        free(srv);
        return LSKV_ENOMEM;
    }
    nghttp2_session_callbacks *cb = srv->callbacks;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);

    srv->methods = calloc(config->n_methods ? config->n_methods : 1, sizeof *srv->methods);
    if (srv->methods == NULL) {
        rv = LSKV_ENOMEM;
        goto err;
    }
    for (size_t i = 0; i < config->n_methods; i++) {
        srv->methods[i] = config->methods[i];
        srv->methods[i].path = strdup(config->methods[i].path);
        srv->n_methods++;
        if (srv->methods[i].path == NULL) {
            rv = LSKV_ENOMEM;
            goto err;
        }
        if (config->methods[i].on_message == NULL) {
            errmsg_printf(errmsg, "method %s: on_message is required", config->methods[i].path);
            rv = LSKV_EINVAL;
            goto err;
        }
    }

    srv->metric_paths = calloc(srv->n_methods ? srv->n_methods : 1, sizeof *srv->metric_paths);
    srv->metric_types = calloc(srv->n_methods ? srv->n_methods : 1, sizeof *srv->metric_types);
    if (srv->metric_paths == NULL || srv->metric_types == NULL) {
        rv = LSKV_ENOMEM;
        goto err;
    }
    for (size_t i = 0; i < srv->n_methods; i++) {
        srv->metric_paths[i] = srv->methods[i].path;
        srv->metric_types[i] = srv->methods[i].streaming          ? METRICS_BIDI_STREAM
                               : srv->methods[i].server_streaming ? METRICS_SERVER_STREAM
                                                                  : METRICS_UNARY;
    }
    rv = metrics_open(srv->metric_paths, srv->metric_types, srv->n_methods, &srv->metrics);
    if (rv != 0)
        goto err;
    metrics_add_gauge(srv->metrics, "lskv_buffered_request_bytes", "gauge",
                      "Request bytes held while they arrive (--max-buffered-request-bytes).",
                      gauge_buffered, srv);
    metrics_add_gauge(srv->metrics, "lskv_refused_requests_total", "counter",
                      "Requests refused with 'etcdserver: too many requests' for want of "
                      "buffer room.",
                      gauge_refused, srv);

    urls = calloc(config->n_listen_urls ? config->n_listen_urls : 1, sizeof *urls);
    srv->listeners =
        calloc(config->n_listen_urls ? config->n_listen_urls : 1, sizeof *srv->listeners);
    if (urls == NULL || srv->listeners == NULL) {
        rv = LSKV_ENOMEM;
        goto err;
    }
    bool any_tls = false;
    for (size_t i = 0; i < config->n_listen_urls; i++) {
        rv = url_parse(config->listen_urls[i], 0, &urls[i], errmsg);
        if (rv != 0)
            goto err;
        any_tls |= urls[i].tls;
    }
    if (any_tls) {
        if (config->tls.cert_file == NULL || config->tls.key_file == NULL) {
            errmsg_printf(errmsg, "https:// listen URL needs a certificate and key file");
            rv = LSKV_EINVAL;
            goto err;
        }
        rv = tls_ctx_open(&config->tls, &srv->tls, errmsg);
        if (rv != 0)
            goto err;
    }
    for (size_t i = 0; i < config->n_listen_urls; i++) {
        struct listener *l = &srv->listeners[i];
        l->srv = srv;
        l->tls = urls[i].tls;
        uv_tcp_init(loop, &l->tcp);
        l->tcp.data = l;
        srv->n_listeners++;
        srv->n_open++;
        rv = listener_listen(&l->tcp, &urls[i], on_connection, errmsg);
        if (rv != 0)
            goto err;
    }
    uv_timer_init(loop, &srv->gw_timer);
    srv->gw_timer.data = srv;
    srv->gw_timer_open = true;
    srv->n_open++;
    free(urls);
    *out = srv;
    return 0;
err:
    free(urls);
    /* Closes what was opened; the loop frees the rest. */
    grpc_server_close(srv, NULL, NULL);
    return rv;
}

/* ---- the gateway's concurrent calls (gateway_glue.h) ---- */

static void on_gw_timer_closed(uv_handle_t *h)
{
    grpc_server *srv = h->data;
    srv->n_open--;
    maybe_closed(srv);
}

/* Grants free slots to the oldest waiters, one at a time: a granted call
 * may finish, release and so grant again from within. */
static void gw_grant(uv_timer_t *t)
{
    grpc_server *srv = t->data;
    while (srv->gw_head != NULL && srv->gw_active < srv->max_streams && !srv->closing) {
        struct gateway_slot *s = srv->gw_head;
        srv->gw_head = s->next;
        if (srv->gw_head == NULL)
            srv->gw_tail = NULL;
        s->next = NULL;
        s->waiting = false;
        s->held = true;
        srv->gw_active++;
        s->granted(s->arg);
    }
}

bool grpc_server_gateway_acquire(grpc_server *srv, struct gateway_slot *s,
                                 void (*granted)(void *arg), void *arg)
{
    if (s->held)
        return true;
    if (s->waiting)
        return false;
    if (srv->gw_active < srv->max_streams && srv->gw_head == NULL) {
        srv->gw_active++;
        s->held = true;
        return true;
    }
    s->granted = granted;
    s->arg = arg;
    s->waiting = true;
    s->next = NULL;
    if (srv->gw_tail != NULL)
        srv->gw_tail->next = s;
    else
        srv->gw_head = s;
    srv->gw_tail = s;
    return false;
}

void grpc_server_gateway_release(grpc_server *srv, struct gateway_slot *s)
{
    if (s->held) {
        s->held = false;
        srv->gw_active--;
        if (srv->gw_head != NULL && srv->gw_timer_open)
            uv_timer_start(&srv->gw_timer, gw_grant, 0, 0);
        return;
    }
    if (!s->waiting)
        return;
    struct gateway_slot **p = &srv->gw_head, *prev = NULL;
    while (*p != NULL && *p != s) {
        prev = *p;
        p = &(*p)->next;
    }
    if (*p == s) {
        *p = s->next;
        if (srv->gw_tail == s)
            srv->gw_tail = prev;
    }
    s->waiting = false;
    s->next = NULL;
}

uint16_t grpc_server_port(const grpc_server *srv, size_t i)
{
    if (i >= srv->n_listeners)
        return 0;
    return listener_port(&srv->listeners[i].tcp);
}

void grpc_server_close(grpc_server *srv, void (*cb)(void *arg), void *arg)
{
    if (srv->closing)
        return;
    srv->closing = true;
    srv->close_cb = cb;
    srv->close_arg = arg;
    for (size_t i = 0; i < srv->n_listeners; i++)
        uv_close((uv_handle_t *)&srv->listeners[i].tcp, on_listener_closed);
    if (srv->gw_timer_open) {
        srv->gw_timer_open = false;
        uv_close((uv_handle_t *)&srv->gw_timer, on_gw_timer_closed);
    }
    /* Each shutdown unlinks its connection (conn_on_close), cancelling its
     * calls; what is still closing is counted in n_open. */
    while (srv->conns != NULL)
        h2_conn_shutdown(srv->conns->h2);
    maybe_closed(srv);
}

/* ---- calls ---- */

int grpc_call_send(grpc_call *call, const uint8_t *msg, size_t len)
{
    if (call->handler_finished || len > UINT32_MAX)
        return LSKV_EINVAL;
    if (call->cancelled || call->resp_done)
        return LSKV_ESHUTDOWN;
    metrics_grpc_bytes(call->srv->metrics, 0, len);
    if (call->ext != NULL)
        return call->ext->send(call->ext_arg, msg, len);
    nghttp2_session *session = call_session(call);
    if (session == NULL)
        return LSKV_ESHUTDOWN;
    uint8_t prefix[GRPC_FRAME_PREFIX_BYTES];
    grpc_frame_prefix(prefix, (uint32_t)len);
    int rv = call_out_append(call, prefix, sizeof prefix, msg, len);
    if (rv != 0)
        return rv;
    if (!call->headers_sent) {
        call->headers_sent = true;
        nghttp2_nv nva[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
        nghttp2_data_provider prd = {.source.ptr = call, .read_callback = data_read};
        if (nghttp2_submit_response(session, call->stream_id, nva, 2, &prd) != 0)
            return LSKV_ENOMEM;
    } else if (call->deferred) {
        call->deferred = false;
        nghttp2_session_resume_data(session, call->stream_id);
    }
    h2_conn_kick(call->conn->h2);
    return 0;
}

/* A lower-case token (RFC 9110), not reserved for gRPC or HTTP/2 itself. */
static bool trailer_name_ok(const char *name)
{
    if (name[0] == '\0' || name[0] == ':' || strncmp(name, "grpc-", 5) == 0)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("-_.", *p)))
            return false;
    return true;
}

int grpc_call_set_trailer(grpc_call *call, const char *name, const char *value)
{
    if (call->handler_finished || !trailer_name_ok(name))
        return LSKV_EINVAL;
    for (const char *p = value; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return LSKV_EINVAL;
    char *n = strdup(name), *v = strdup(value);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return LSKV_ENOMEM;
    }
    free(call->trailer_name);
    free(call->trailer_value);
    call->trailer_name = n;
    call->trailer_value = v;
    return 0;
}

void grpc_call_finish(grpc_call *call, enum grpc_status status, const char *message)
{
    if (call->handler_finished)
        return; /* a second finish is a handler bug; ignore it safely */
    call->handler_finished = true;
    if (!call->cancelled) {
        metrics_handled(call->srv->metrics, method_index(call), status);
        if (call->ext != NULL)
            call->ext->finish(call->ext_arg, status, message, call->trailer_name,
                              call->trailer_value);
        else
            respond(call, 200, status, message);
    }
    if (call->ext != NULL)
        call->stream_gone = true; /* the transport has let go */
    call_maybe_free(call);
}

/* ---- external calls (JSON gateway) ---- */

/* A new external call of method path. A one-shot call needs a method
 * registered unary; a stream may also drive one registered unary: a
 * server-streaming method (one request, then many sends, as Observe), given
 * one message only. Errors: LSKV_ENOTFOUND, LSKV_EUNIMPLEMENTED (a one-shot
 * call of a streaming method), LSKV_ENOMEM. */
static int external_new(grpc_server *srv, const char *path, bool streaming, const char *peer,
                        const char *token, const struct grpc_call_transport *t, void *arg,
                        grpc_call **out)
{
    *out = NULL;
    const struct grpc_method *m = NULL;
    for (size_t i = 0; i < srv->n_methods; i++)
        if (strcmp(srv->methods[i].path, path) == 0)
            m = &srv->methods[i];
    if (m == NULL)
        return LSKV_ENOTFOUND;
    if (m->streaming && !streaming)
        return LSKV_EUNIMPLEMENTED;
    grpc_call *call = calloc(1, sizeof *call);
    if (call == NULL)
        return LSKV_ENOMEM;
    call->srv = srv;
    call->method = m;
    call->ext = t;
    call->ext_arg = arg;
    call->stream_id = -1;
    snprintf(call->path, sizeof call->path, "%s", path);
    snprintf(call->peer, sizeof call->peer, "%s", peer ? peer : "?");
    if (token != NULL && call_set_token(call, token, strlen(token)) != 0) {
        free(call);
        return LSKV_ENOMEM;
    }
    *out = call;
    return 0;
}

int grpc_server_call_external(grpc_server *srv, const char *path, const uint8_t *msg,
                              size_t len, const char *peer, const char *token,
                              const struct grpc_call_transport *t, void *arg,
                              grpc_call **out)
{
    grpc_call *call = NULL;
    int rv = external_new(srv, path, false, peer, token, t, arg, &call);
    if (rv != 0)
        return rv;
    *out = call;
    call->n_msgs = 1;
    call_own(call);
    call->in_cb++;
    metrics_grpc_bytes(call->srv->metrics, len, 0);
    call->method->on_message(call, msg, len, call->method->ctx);
    call->in_cb--;
    if (call->handler_finished)
        *out = NULL;
    call_maybe_free(call);
    return 0;
}

int grpc_server_stream_external(grpc_server *srv, const char *path, const char *peer,
                                const char *token, const struct grpc_call_transport *t,
                                void *arg, grpc_call **out)
{
    return external_new(srv, path, true, peer, token, t, arg, out);
}

/* After a callback into the handler of an external stream: is it still on?
 * Frees the call when it is over (invariant 1). */
static bool external_alive(grpc_call *call)
{
    call->in_cb--;
    bool alive = !call->handler_finished && !call->stream_gone;
    call_maybe_free(call);
    return alive;
}

bool grpc_call_external_message(grpc_call *call, const uint8_t *msg, size_t len)
{
    if (call->handler_finished || call->stream_gone ||
        (!call->method->streaming && call->n_msgs > 0)) /* unary: one request */
        return false;
    call_own(call);
    call->n_msgs++;
    call->in_cb++;
    metrics_grpc_bytes(call->srv->metrics, len, 0);
    call->method->on_message(call, msg, len, call->method->ctx);
    return external_alive(call);
}

bool grpc_call_external_half_close(grpc_call *call)
{
    if (call->handler_finished || call->stream_gone)
        return false;
    const struct grpc_method *m = call->method;
    call->in_cb++;
    if (m->on_half_close != NULL) {
        call_own(call);
        m->on_half_close(call, m->ctx);
    } else if (!call->delivered) {
        /* The handler never saw the call: end it as the server does for
         * streams (end_of_request). */
        call->handler_owned = true;
        metrics_started(call->srv->metrics, method_index(call));
        grpc_call_finish(call, GRPC_STATUS_OK, NULL);
    }
    return external_alive(call);
}

void grpc_call_detach(grpc_call *call)
{
    if (call->ext == NULL || call->handler_finished || call->stream_gone)
        return;
    call->stream_gone = true;
    if (!call->cancelled && call->handler_owned) { /* else the handler never saw it */
        call->cancelled = true;
        metrics_handled(call->srv->metrics, method_index(call), GRPC_STATUS_CANCELLED);
        if (call->method->on_cancel) {
            call->in_cb++;
            call->method->on_cancel(call, call->method->ctx);
            call->in_cb--;
        }
    }
    call_maybe_free(call);
}

grpc_server *grpc_server_metrics_of(const grpc_server *srv)
{
    return srv->metrics_of;
}

struct metrics *grpc_server_metrics(grpc_server *srv)
{
    return srv->metrics;
}

size_t grpc_server_max_recv(const grpc_server *srv)
{
    return srv->max_recv;
}

size_t grpc_server_max_json_body(const grpc_server *srv)
{
    /* max_recv <= UINT32_MAX, so this does not overflow. */
    return srv->max_recv + srv->max_recv / 3 + 2 + GATEWAY_JSON_SLACK_BYTES;
}

bool grpc_server_buffer_adjust(grpc_server *srv, size_t old_bytes, size_t new_bytes)
{
    if (new_bytes > old_bytes && srv->buffered - old_bytes + new_bytes > srv->max_buffered) {
        srv->refused++;
        return false;
    }
    srv->buffered = srv->buffered - old_bytes + new_bytes;
    return true;
}

size_t grpc_server_buffered_bytes(const grpc_server *srv)
{
    return srv->buffered;
}

uint64_t grpc_server_refused_calls(const grpc_server *srv)
{
    return srv->refused;
}

const char *grpc_server_version_body(const grpc_server *srv)
{
    return srv->version_body;
}

bool grpc_call_cancelled(const grpc_call *call)
{
    return call->cancelled;
}

size_t grpc_server_pending_out_bytes(const grpc_server *srv)
{
    return srv->out_pending;
}

size_t grpc_call_pending_bytes(const grpc_call *call)
{
    if (call->ext != NULL)
        return call->ext->pending != NULL ? call->ext->pending(call->ext_arg) : 0;
    return call->out.len - call->out.off;
}

void grpc_call_set_data(grpc_call *call, void *data)
{
    call->data = data;
}

void *grpc_call_get_data(const grpc_call *call)
{
    return call->data;
}

const char *grpc_call_peer(const grpc_call *call)
{
    return call->peer;
}

bool grpc_call_internal(const grpc_call *call)
{
    return call->ext != NULL && call->ext->internal;
}

const char *grpc_call_token(const grpc_call *call)
{
    return call->token;
}

const char *grpc_call_cert_cn(const grpc_call *call)
{
    if (call->json || call->ext != NULL || call->conn == NULL || call->conn->h2 == NULL)
        return NULL;
    return h2_conn_cert_cn(call->conn->h2);
}
